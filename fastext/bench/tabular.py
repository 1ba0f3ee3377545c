"""The ``tabular`` suite: one epoch of UCI Adult with fastext's ``tabular_learner`` and with
fastai 2.8's ``tabular_learner`` (when fastai is importable), on the same model.

Both train the same architecture at the same size: embeddings for the 8 categorical columns
sized by the same rule (``min(600, round(1.6 * n**0.56))``, ``#na#`` counted), BatchNorm on
the 6 continuous columns, ``Linear -> ReLU -> BatchNorm`` blocks of [200, 100] and a
2-way output (the row's ``params`` gives each model's parameter count). Both preprocess
the same way beforehand (Categorify, FillMissing, Normalize fitted on adult.data; not
timed), shuffle the 32,561 training rows and drop the last partial batch, and run
``fit_one_cycle(1, 1e-2)`` with weight decay 0.1 (fastext: its fused AdamW; fastai: its
``Adam`` with decoupled weight decay) followed by the validation pass over the 16,281 rows of
adult.test (batches twice as large). ``ms`` is that epoch, from building the learner to
the validation accuracy (``accuracy``); cases differ by batch size: fastai's default 64 and
the demo's 256.

fastai's loader collates each batch from its DataFrame (``TabDataLoader`` indexes the
processed frame with the batch's rows and converts the result to tensors), where fastext
slices the batch out of tensors built once. Implementations alternate, each is warmed up
untimed on two batches first, and all run on torch's current thread count (set it with
``OMP_NUM_THREADS``; the JSON's ``machine.torch_threads`` records it). ``--quick``: the
first 5 batches of adult.data and 500 test rows.

fastai is not a dependency of fastext: run this suite from an environment that has both,
e.g. ``/tmp/fastai-venv/bin/python -m fastext.bench tabular``. A run that names no suite
leaves it out where fastai is missing (:func:`skip_by_default`); named, it then times fastext
alone. It needs pandas and the Adult files (:func:`missing`).
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from . import importable, one_line

if TYPE_CHECKING:  # pandas is imported where used: `python -m fastext.bench` runs without it
    import pandas as pd

NAME = "tabular"
#: The data set it reads (``--data DIR``: see :func:`load_data`).
DATA = "UCI Adult"

#: Whole epochs per implementation and case unless --reps says otherwise.
DEFAULT_REPS = {"cpu": 5, "cuda": 5}
#: Training batch sizes, one case each: fastai's default and the adult demo's.
BATCH_SIZES = (64, 256)
LR, WD, LAYERS, SEED = 1e-2, 0.1, (200, 100), 0
#: --quick: training batches (of the largest size) and test rows kept.
QUICK_BATCHES, QUICK_TEST = 5, 500
WARMUP_BATCHES = 2


@dataclass(frozen=True)
class AdultFrames:
    """The raw training and test frames."""

    train: pd.DataFrame
    test: pd.DataFrame

    def head(self, n_train: int, n_test: int) -> AdultFrames:
        return AdultFrames(self.train.iloc[:n_train], self.test.iloc[:n_test])


def load_data(quick: bool = False,
              root: str | os.PathLike[str] | None = None) -> AdultFrames:
    """adult.data and adult.test (from ``root`` when given), cut short with ``quick``."""
    from ..data.adult import load_adult

    data = AdultFrames(load_adult(root, "train"), load_adult(root, "test"))
    return data.head(QUICK_BATCHES * max(BATCH_SIZES), QUICK_TEST) if quick else data


def _names() -> tuple[list[str], list[str]]:
    from ..data.adult import ADULT_CAT_NAMES, ADULT_CONT_NAMES

    return list(ADULT_CAT_NAMES), list(ADULT_CONT_NAMES)


def missing(device: torch.device, quick: bool = False,
            data: str | os.PathLike[str] | None = None) -> str | None:
    """What this suite lacks to run here (pandas, the Adult files, under ``data`` when
    given), or ``None``."""
    if not importable("pandas"):
        return "needs pandas (pip install pandas)"
    from ..data.adult import find_adult

    try:
        find_adult(data)
    except FileNotFoundError as e:
        return f"UCI Adult not found: {one_line(e)}"
    return None


def available(device: torch.device) -> bool:
    """Whether the suite can run here: pandas installed and the Adult files found."""
    return missing(device) is None


def skip_by_default(device: torch.device) -> str | None:
    """Why a run that names no suite leaves this one out: the suite compares fastext with
    fastai, so without fastai there is nothing to compare."""
    if fastai_available():
        return None
    return "fastai is not installed (name the suite to time fastext alone)"


def fastext_setup(data: AdultFrames, bs: int, device: torch.device) -> Callable[[], tuple]:
    """Preprocesses (untimed) and returns the timed epoch: ``() -> (accuracy, params)``."""
    from ..tasks.tabular import TabularDataLoaders, tabular_learner

    cats, conts = _names()
    dls = TabularDataLoaders.from_df(data.train, cats, conts, "salary", valid_df=data.test,
                                     bs=bs, seed=SEED, device=device)

    def epoch() -> tuple[float, int]:
        torch.manual_seed(SEED)
        learn = tabular_learner(dls, layers=LAYERS, wd=WD, quiet=True)
        learn.fit_one_cycle(1, LR)
        return float(learn.final_record[-1]), sum(p.numel() for p in learn.model.parameters())

    return epoch


def fastai_available() -> bool:
    """Whether fastai is installed (the ``fastai`` row needs it)."""
    return importable("fastai")


def fastai_setup(data: AdultFrames, bs: int, device: torch.device) -> Callable[[], tuple]:
    """fastai's standard path: ``TabularDataLoaders.from_df`` with the three procs fitted on
    the training rows (untimed), then the timed epoch of ``tabular_learner``."""
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation noise from fastai's dependencies
        from fastai.tabular.all import (
            Categorify,
            CategoryBlock,
            FillMissing,
            Normalize,
            TabularDataLoaders,
            accuracy,
            tabular_learner,
        )

    cats, conts = _names()
    df = pd.concat([data.train, data.test], ignore_index=True)
    for c in cats + ["salary"]:  # fastai expects object columns, not pandas' string dtype
        df[c] = df[c].astype(object)
    valid_idx = list(range(len(data.train), len(df)))
    dls = TabularDataLoaders.from_df(df, procs=[Categorify, FillMissing, Normalize],
                                     cat_names=cats, cont_names=conts, y_names="salary",
                                     y_block=CategoryBlock(), valid_idx=valid_idx, bs=bs,
                                     val_bs=2 * bs, device=device)

    def epoch() -> tuple[float, int]:
        torch.manual_seed(SEED)
        learn = tabular_learner(dls, layers=list(LAYERS), metrics=accuracy, wd=WD)
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(1, LR)
        return float(learn.final_record[-1]), sum(p.numel() for p in learn.model.parameters())

    return epoch


def implementations() -> dict[str, Callable]:
    """Implementation name -> ``(data, bs, device) -> epoch``; fastai only when installed."""
    impls: dict[str, Callable] = {"fastext": fastext_setup}
    if fastai_available():
        impls["fastai"] = fastai_setup
    return impls


def run(device: torch.device, reps: int, quick: bool = False,
        progress: Callable[[str], None] = lambda msg: None, warmup: int = 3,
        data: str | os.PathLike[str] | None = None) -> list[dict]:
    """Rows ``{"case": "adult/1epoch/bs64", "impl", "ms", "accuracy", "params"}``: the
    median over ``reps`` alternating epochs (in a seeded shuffled order per round, as
    :func:`fastext.bench.timing.time_alternating` does)."""
    from .timing import shuffled_rounds, synchronize

    device = torch.device(device)
    progress("loading Adult")
    frames = load_data(quick, data)
    impls = implementations()
    if "fastai" not in impls:
        progress("fastai not installed: fastext alone, nothing to compare with")
    rows = []
    for bs in BATCH_SIZES:
        case = f"adult/1epoch/bs{bs}"
        if warmup > 0:
            small = frames.head(WARMUP_BATCHES * bs, 2 * bs)
            for name, setup in impls.items():
                progress(f"{case} {name} warm-up")
                setup(small, bs, device)()
        progress(f"{case} preprocessing")
        epochs = {name: setup(frames, bs, device) for name, setup in impls.items()}
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in impls}
        for r, order in enumerate(shuffled_rounds(list(epochs), reps)):
            for name in order:
                epoch = epochs[name]
                progress(f"{case} {name} run {r + 1}/{reps}")
                synchronize(device)
                start = time.perf_counter()
                acc, params = epoch()
                synchronize(device)
                results[name].append(((time.perf_counter() - start) * 1e3, acc, params))
        rows += [{"case": case, "impl": name,
                  "ms": statistics.median(ms for ms, _, _ in runs),
                  "accuracy": statistics.median(acc for _, acc, _ in runs),
                  "params": runs[0][2]}
                 for name, runs in results.items()]
    return rows
