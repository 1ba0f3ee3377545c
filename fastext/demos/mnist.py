"""The main job: a small CNN on MNIST trained with the Learner (LR range test, then 1cycle
with the fused AdamW), one epoch, on the CPU.

``python -m fastext run mnist`` trains on the full 60k images (or the shipped 2,000-image
subset when the full set is absent), reports the accuracy on the test set and the wall time,
writes the LR-finder, loss and schedule plots, then runs the optimizer benchmark.

>>> import tempfile
>>> from fastext.demos.mnist import run
>>> result = run(quick=True, bench=False, progress=False, out_dir=tempfile.mkdtemp())
... # doctest: +ELLIPSIS
mnist: mnist-small (1280 train, 500 test images) from ...
figures       ...mnist_lr_find.png, ...mnist_loss.png, ...mnist_schedule.png
>>> result["data"], result["epochs"]
('mnist-small', 1)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.files import find_data_dir
from ..data.mnist import find_mnist, load_mnist, normalize
from ..learner import DataLoaders, Learner
from ..learner import accuracy as accuracy_metric
from ._common import epochs_or, run_bench, write_json

__all__ = ["build_model", "param_groups", "run"]

# The stride-2 conv stack: 28 -> 14 -> 7 -> 4 -> 2 -> 1 pixels, then 10 logits.
CHANNELS = (16, 32, 64, 128)
# --quick: enough batches to exercise the whole path, not to learn much.
QUICK_BATCHES = 5


def _conv_bn_relu(c_in: int, c_out: int, ks: int = 3) -> nn.Sequential:
    # No conv bias: the BatchNorm shift that follows makes it redundant.
    return nn.Sequential(nn.Conv2d(c_in, c_out, ks, stride=2, padding=ks // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def build_model(channels: tuple[int, ...] = CHANNELS) -> nn.Sequential:
    """conv -> BatchNorm -> ReLU blocks with stride 2, down to a 1x1 map of 10 logits.

    The first conv is 5x5: a 3x3 kernel would give each output only 9 input pixels to
    summarise, too few to be worth 16 channels (fastai's reasoning for a larger stem).

    >>> build_model()(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    layers: list[nn.Module] = [_conv_bn_relu(1, channels[0], ks=5)]
    layers += [_conv_bn_relu(a, b) for a, b in zip(channels[:-1], channels[1:], strict=True)]
    layers += [nn.Conv2d(channels[-1], 10, 3, stride=2, padding=1), nn.Flatten()]
    return nn.Sequential(*layers)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only, none on BatchNorm and biases (fastai's
    default: decaying a BN scale fights the normalisation instead of regularising).

    >>> [len(g["params"]) for g in param_groups(build_model(), 0.1)]
    [5, 9]
    """
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def run(data: str | os.PathLike[str] | None = None, epochs: int | None = None,
        quick: bool = False, json_path: str | os.PathLike[str] | None = None,
        bench: bool = True, progress: bool = True, seed: int = 0,
        batch_size: int = 256, lr: float = 1e-2, out_dir: str | os.PathLike[str] = "out",
        ) -> dict[str, Any]:
    """Train on MNIST with the Learner (LR range test, then 1cycle with fused AdamW), print
    accuracy, time, data source and the figures written (under ``out_dir``), optionally write
    JSON and run the optimizer benchmark. Returns the JSON record.

    ``quick`` trains a few batches on the shipped subset (for tests). ``data`` names a
    directory with the four idx ``.gz`` files; by default the full set is used if found.

    >>> import tempfile
    >>> r = run(quick=True, bench=False, progress=False, out_dir=tempfile.mkdtemp())
    ... # doctest: +ELLIPSIS
    mnist: ...
    >>> sorted(r)
    ['accuracy', 'data', 'demo', 'epochs', 'figures', 'train_seconds']
    """
    epochs = epochs_or(epochs, 1)
    if quick and data is None:
        data = find_data_dir("mnist-small")
    wall_start = time.perf_counter()
    path, kind = find_mnist(data)
    torch.manual_seed(seed)
    x_train, y_train = load_mnist(path, "train")
    x_valid, y_valid = load_mnist(path, "test")
    if quick:
        keep = QUICK_BATCHES * batch_size
        x_train, y_train = x_train[:keep], y_train[:keep]
    dls = DataLoaders.from_tensors(normalize(x_train), y_train, normalize(x_valid), y_valid,
                                   bs=batch_size, seed=seed, device="cpu",
                                   drop_last=False)  # as the README's figures were measured
    print(f"mnist: {kind} ({len(x_train)} train, {len(x_valid)} test images) "
          f"from {path}; {epochs} epoch(s), batch {batch_size}, torch threads "
          f"{torch.get_num_threads()}", flush=True)
    out = Path(out_dir)
    learn = Learner(dls, build_model(), F.cross_entropy, metrics=[accuracy_metric], path=out,
                    quiet=not progress)
    figures = [out / "mnist_lr_find.png", out / "mnist_loss.png", out / "mnist_schedule.png"]
    out.mkdir(parents=True, exist_ok=True)
    # The LR range test (model and optimizer are restored afterwards); the fit keeps the
    # course's default 1e-2 so that runs are comparable, and says what the test suggests.
    suggested = learn.lr_find(num_it=20 if quick else 100, plot=figures[0])
    print(f"lr_find       valley suggestion {suggested.valley:.2e} (fitting at lr_max {lr:.0e})")

    start = time.perf_counter()
    learn.fit_one_cycle(epochs, lr)
    train_seconds = time.perf_counter() - start
    loss, accuracy = learn.validate()
    learn.recorder.plot_loss(figures[1])
    learn.recorder.plot_sched(figures[2])
    wall_seconds = time.perf_counter() - wall_start

    print(f"test accuracy {accuracy:.4f}  (test loss {loss:.4f})")
    print(f"train time    {train_seconds:.1f} s  (wall {wall_seconds:.1f} s with loading, "
          "lr_find and evaluation)")
    print(f"data          {kind} ({path})")
    print("figures       " + ", ".join(str(f) for f in figures), flush=True)
    result = {"demo": "mnist", "accuracy": accuracy, "train_seconds": train_seconds,
              "data": kind, "epochs": epochs, "figures": [str(f) for f in figures]}
    write_json(result, json_path)
    if bench:
        run_bench("optim", quick)
    return result


def cli_main(args: Any) -> dict[str, Any]:
    """``fastext run mnist``: :func:`run` with the command line's arguments."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json,
               bench=not args.bench_off, out_dir=args.out)
