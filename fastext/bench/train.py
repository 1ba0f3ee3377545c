"""The ``train`` suite: one whole training run of a small MNIST CNN, by hand in plain
PyTorch, with :class:`fastext.learner.Learner`, and with fastai's ``Learner`` (when fastai is
importable).

Every implementation trains the same network, :func:`fastext.demos.mnist.build_model`
(four stride-2 conv -> BatchNorm -> ReLU blocks, then a stride-2 conv to 10 logits and a
flatten), from the same initial weights (the same torch seed), on the same batches (full
MNIST, 60k train images, batch 256, last partial batch kept, one permutation drawn from the
same seed), for one epoch with the same one-cycle schedule: lr warms up (cosine) from
``1e-2/25`` to ``1e-2`` over the first 25% of the steps and anneals to ``1e-2/1e5``; ``beta1``
goes 0.95 -> 0.85 -> 0.95; AdamW with decoupled weight decay 0.1 on the conv weights only
(not on BatchNorm parameters and biases). Then the 10k test images are evaluated in
batches of 512. Case name: ``mnist-cnn/1epoch``.

Implementations:

* ``plain-pytorch``: a hand-written loop, ``torch.optim.AdamW`` (default betas and eps) +
  ``torch.optim.lr_scheduler.OneCycleLR`` (``cycle_momentum`` drives ``betas[0]``,
  ``anneal_strategy="cos"``, ``div_factor=25``, ``final_div_factor=1e5/25``), batches
  gathered from the in-memory tensors with the permutation.
* ``fastext``: ``Learner(dls, model, F.cross_entropy, metrics=[accuracy], quiet=True)`` and
  ``learn.fit_one_cycle(1, 1e-2)`` over ``DataLoaders.from_tensors(..., bs=256, seed=...)``
  (its fused AdamW, same betas and eps as torch's).
* ``fastai``: fastai's ``Learner(dls, model, loss_func=F.cross_entropy, opt_func=Adam,
  wd=0.1, metrics=accuracy)`` and ``fit_one_cycle(1, 1e-2)`` with progress bars and logging
  off. fastai's ``Adam`` keeps its own defaults (decoupled "true" weight decay, ``sqr_mom``
  0.99, ``eps`` 1e-5) and skips weight decay on BatchNorm and biases (``wd_bn_bias=False``).
  Its data come through fastai's standard path, a ``TfmdDL`` over the dataset of (image,
  label) tensors, which indexes items one at a time and collates them (``fa_collate``), in
  process (``num_workers=0``), in the same order (the loader's ``shuffle_fn`` returns the
  shared permutation). Present only when ``import fastai`` works (it is not a dependency of
  fastext: install it in a separate environment that also sees fastext).

``ms`` is the wall time of a whole run, from building the data loaders and optimizer to the
test-set accuracy (reading MNIST from disk and normalising it happen once, up front, and the
model is built from the seed before the clock starts); ``accuracy`` is that run's accuracy
on the test set, as the implementation reports it. Implementations run one after the other,
in the same process, with the same ``torch.set_num_threads``; before timing, each one runs
untimed on two batches (imports, lazy initialisation, oneDNN primitive caches).

Repetitions: a run takes seconds to minutes, so each implementation runs **once** by default
(:data:`DEFAULT_REPS`); with ``--reps N`` (N > 1) the implementations alternate and the median
is reported. ``--quick`` trains on the first
five batches of the shipped 2,000-image subset and tests on its 500 test images. Without
``--quick`` the suite refuses to run where full MNIST is not found (:func:`full_mnist_dir`)
rather than time the subset under the full run's name.
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import importable, one_line

NAME = "train"
#: The data set it reads (``--data DIR``: see :func:`load_data`).
DATA = "MNIST"

#: Whole training runs per implementation unless --reps says otherwise.
DEFAULT_REPS = {"cpu": 1, "cuda": 1}

#: The single case of this suite.
CASE = "mnist-cnn/1epoch"

#: Hyper-parameters shared by every implementation (fastai's ``fit_one_cycle`` defaults
#: plus the course's weight decay).
BATCH_SIZE, VALID_BATCH_SIZE = 256, 512
LR_MAX, PCT_START, DIV, DIV_FINAL = 1e-2, 0.25, 25.0, 1e5
MOMS: tuple[float, float, float] = (0.95, 0.85, 0.95)
WD = 0.1
SEED = 0

#: ``--quick``: training batches of the shipped subset used (not 4: ``OneCycleLR`` divides
#: by zero when ``pct_start * total_steps == 1``).
QUICK_BATCHES = 5
#: ``--quick``: test images used (all of the shipped subset's).
QUICK_TEST = 500
#: Training batches of the untimed warm-up run.
WARMUP_BATCHES = 2


@dataclass(frozen=True)
class MnistTensors:
    """Normalised MNIST in memory: images float32 ``(N, 1, 28, 28)``, labels int64 ``(N,)``."""

    x_train: Tensor
    y_train: Tensor
    x_valid: Tensor
    y_valid: Tensor

    def head(self, n_train: int, n_valid: int) -> MnistTensors:
        """The first ``n_train`` training and ``n_valid`` test samples."""
        return MnistTensors(self.x_train[:n_train], self.y_train[:n_train],
                            self.x_valid[:n_valid], self.y_valid[:n_valid])


def full_mnist_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory of full MNIST (60k training images): the ``mnist`` folder
    :func:`fastext.data.files.find_data_dir` finds (under ``root`` alone when given).

    Raises:
        FileNotFoundError: not found, or what was found is a subset (as the shipped
            2,000-image one); the one-line message names every place searched.
    """
    from ..data.files import find_data_dir
    from ..data.mnist import MNIST_FILES, find_mnist

    try:
        path = find_data_dir("mnist", root, required=MNIST_FILES["train"] + MNIST_FILES["test"])
    except FileNotFoundError as e:
        raise FileNotFoundError(f"full MNIST (60k training images) not found (--quick uses "
                                f"the shipped subset): {one_line(e)}") from None
    if find_mnist(path)[1] != "mnist":
        raise FileNotFoundError(f"full MNIST (60k training images) not found: {path} holds a "
                                f"subset (--quick uses a subset)")
    return path


def missing(device: torch.device, quick: bool = False,
            data: str | os.PathLike[str] | None = None) -> str | None:
    """What this suite lacks to run here, or ``None``: full MNIST (under ``data`` when
    given), unless ``quick``, which also takes a subset."""
    from ..data.mnist import find_mnist

    try:
        if quick:
            if data is not None:  # else the shipped subset, always there
                find_mnist(data)
        else:
            full_mnist_dir(data)
    except FileNotFoundError as e:
        return one_line(e)
    return None


def load_data(quick: bool = False,
              data: str | os.PathLike[str] | None = None) -> MnistTensors:
    """Full MNIST (or, with ``quick``, the first :data:`QUICK_BATCHES` batches of the shipped
    subset and its 500 test images), read and normalised once; from ``data`` when given
    (with ``quick``, the full set or a subset there, cut as the shipped subset is).

    Raises:
        FileNotFoundError: without ``quick``, full MNIST is not found (see
            :func:`full_mnist_dir`).
    """
    from ..data.files import find_data_dir
    from ..data.mnist import find_mnist, load_mnist, normalize

    if quick:
        root = find_mnist(data)[0] if data is not None else find_data_dir("mnist-small")
    else:
        root = full_mnist_dir(data)
    x_train, y_train = load_mnist(root, "train")
    x_valid, y_valid = load_mnist(root, "test")
    tensors = MnistTensors(normalize(x_train), y_train, normalize(x_valid), y_valid)
    if quick:
        tensors = tensors.head(QUICK_BATCHES * BATCH_SIZE, QUICK_TEST)
    return tensors


def batch_order(n: int, seed: int) -> Tensor:
    """The training permutation every implementation follows: the one
    :class:`fastext.learner.TensorLoader` draws for its first epoch (``torch.randperm`` from
    a generator seeded with ``seed``)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def build_model(seed: int) -> nn.Module:
    """The benchmark's CNN (:func:`fastext.demos.mnist.build_model`), initialised from
    ``torch.manual_seed(seed)``."""
    from ..demos.mnist import build_model as mnist_cnn

    torch.manual_seed(seed)
    return mnist_cnn()


def one_cycle_scheduler(opt: torch.optim.Optimizer,
                        total_steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """``OneCycleLR`` set up as fastai's ``fit_one_cycle``: ``LR_MAX/DIV`` -> ``LR_MAX``
    -> ``LR_MAX/DIV_FINAL`` with cosine phases, ``betas[0]`` through :data:`MOMS`."""
    return torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR_MAX, total_steps=total_steps, pct_start=PCT_START,
        anneal_strategy="cos", cycle_momentum=True, base_momentum=MOMS[1],
        max_momentum=MOMS[0], div_factor=DIV, final_div_factor=DIV_FINAL / DIV)


@torch.no_grad()
def _test_accuracy(model: nn.Module, data: MnistTensors, device: torch.device) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for xb, yb in zip(data.x_valid.split(VALID_BATCH_SIZE), data.y_valid.split(VALID_BATCH_SIZE),
                      strict=True):
        correct += (model(xb.to(device)).argmax(1) == yb.to(device)).sum()
    return int(correct) / max(1, len(data.y_valid))


def run_plain_pytorch(model: nn.Module, data: MnistTensors, device: torch.device,
                      seed: int) -> float:
    """Train ``model`` one epoch in a hand-written loop; returns the test accuracy."""
    from ..demos.mnist import param_groups

    model.to(device)
    opt = torch.optim.AdamW(param_groups(model, WD), lr=LR_MAX)
    order = batch_order(len(data.y_train), seed).split(BATCH_SIZE)
    sched = one_cycle_scheduler(opt, len(order))
    model.train()
    for idx in order:
        xb, yb = data.x_train[idx].to(device), data.y_train[idx].to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return _test_accuracy(model, data, device)


def run_fastext(model: nn.Module, data: MnistTensors, device: torch.device,
                seed: int) -> float:
    """Train ``model`` one epoch with :class:`fastext.learner.Learner`; returns the test
    accuracy that its validation reports."""
    from ..learner import DataLoaders, Learner
    from ..learner.metrics import accuracy

    dls = DataLoaders.from_tensors(data.x_train, data.y_train, data.x_valid, data.y_valid,
                                   bs=BATCH_SIZE, valid_bs=VALID_BATCH_SIZE, seed=seed,
                                   device=device)
    learn = Learner(dls, model, F.cross_entropy, wd=WD, metrics=[accuracy], quiet=True)
    learn.fit_one_cycle(1, LR_MAX, div=DIV, div_final=DIV_FINAL, pct_start=PCT_START, moms=MOMS)
    return float(learn.final_record[-1])


def fastai_available() -> bool:
    """Whether fastai is installed (it is optional: the ``fastai`` row needs it)."""
    return importable("fastai")


def _import_fastai() -> None:
    """Import the fastai modules the ``fastai`` implementation uses (seconds; not timed).
    ``fastai.callback.schedule`` adds ``fit_one_cycle`` and ``fastai.callback.progress``
    ``no_bar`` to fastai's ``Learner``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation noise from fastai's dependencies
        import fastai.callback.progress  # noqa: F401
        import fastai.callback.schedule  # noqa: F401
        import fastai.data.core  # noqa: F401
        import fastai.learner  # noqa: F401


def run_fastai(model: nn.Module, data: MnistTensors, device: torch.device, seed: int) -> float:
    """Train ``model`` one epoch with fastai's ``Learner``; returns the test accuracy that
    its recorder reports."""
    from fastai.data.core import DataLoaders, TfmdDL
    from fastai.learner import Learner
    from fastai.metrics import accuracy
    from fastai.optimizer import Adam
    from torch.utils.data import TensorDataset

    order = batch_order(len(data.y_train), seed).tolist()

    class SeededDL(TfmdDL):
        """A ``TfmdDL`` whose shuffle is the benchmark's permutation."""

        def shuffle_fn(self, idxs: list[int]) -> list[int]:
            return [idxs[i] for i in order]

    train = SeededDL(TensorDataset(data.x_train, data.y_train), bs=BATCH_SIZE, shuffle=True,
                     drop_last=False, num_workers=0, device=device)
    valid = TfmdDL(TensorDataset(data.x_valid, data.y_valid), bs=VALID_BATCH_SIZE,
                   shuffle=False, drop_last=False, num_workers=0, device=device)
    learn = Learner(DataLoaders(train, valid, device=device), model, loss_func=F.cross_entropy,
                    opt_func=Adam, wd=WD, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, LR_MAX, div=DIV, div_final=DIV_FINAL, pct_start=PCT_START,
                            moms=MOMS)
    return float(learn.final_record[-1])


#: ``(model, data, device, seed) -> test accuracy``: one whole training run.
Impl = Callable[[nn.Module, MnistTensors, torch.device, int], float]


def implementations() -> dict[str, Impl]:
    """Implementation name -> training run; ``fastai`` only when it is installed."""
    impls: dict[str, Impl] = {"plain-pytorch": run_plain_pytorch, "fastext": run_fastext}
    if fastai_available():
        impls["fastai"] = run_fastai
    return impls


def run(device: torch.device, reps: int, quick: bool = False,
        progress: Callable[[str], None] = lambda msg: None,
        warmup: int = 3, data: str | os.PathLike[str] | None = None) -> list[dict]:
    """Train ``reps`` times (alternating, in a seeded shuffled order per round, as
    :func:`fastext.bench.timing.time_alternating` does) with every implementation, on MNIST
    from ``data`` when given (see :func:`load_data`).

    Returns rows ``{"case": "mnist-cnn/1epoch", "impl": ..., "ms": ..., "accuracy": ...}``.
    ``warmup > 0`` runs each implementation untimed on :data:`WARMUP_BATCHES` batches first.
    """
    from .timing import shuffled_rounds, synchronize

    device = torch.device(device)
    progress("loading MNIST")
    tensors = load_data(quick, data)
    impls = implementations()
    if "fastai" in impls:
        progress("importing fastai")
        _import_fastai()
    threads = torch.get_num_threads()

    def one_run(name: str, d: MnistTensors) -> tuple[float, float]:
        model = build_model(SEED)
        synchronize(device)
        start = time.perf_counter()
        acc = impls[name](model, d, device, SEED)
        synchronize(device)
        ms = (time.perf_counter() - start) * 1e3
        if torch.get_num_threads() != threads:  # keep every run on the same thread count
            warnings.warn(f"{name} changed torch's thread count to {torch.get_num_threads()}; "
                          f"restored {threads}", stacklevel=2)
            torch.set_num_threads(threads)
        return ms, acc

    if warmup > 0:
        small = tensors.head(WARMUP_BATCHES * BATCH_SIZE, VALID_BATCH_SIZE)
        for name in impls:
            progress(f"{CASE} {name} warm-up")
            one_run(name, small)

    results: dict[str, list[tuple[float, float]]] = {name: [] for name in impls}
    # alternating, shuffled per round: no implementation always runs after the same other one
    for r, order in enumerate(shuffled_rounds(list(impls), reps)):
        for name in order:
            progress(f"{CASE} {name} run {r + 1}/{reps}")
            results[name].append(one_run(name, tensors))
    return [{"case": CASE, "impl": name,
             "ms": statistics.median(ms for ms, _ in runs),
             "accuracy": statistics.median(acc for _, acc in runs)}
            for name, runs in results.items()]
