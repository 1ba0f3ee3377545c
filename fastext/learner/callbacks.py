"""The Learner's standard callbacks: recording, progress, early stopping, checkpoints, NaN
guard, gradient clipping and accumulation, CSV logging, BatchNorm statistics after a fit.

Orders (lower runs first within an event): :class:`TerminateOnNaN` 0,
:class:`GradientAccumulation` 10 (its cancelled step must come before clipping and unscaling),
:class:`GradientClip` 20, :class:`Recorder` 50, :class:`CSVLogger` 55,
:class:`ProgressCallback` 60, :class:`SaveModel` 65, :class:`EarlyStopping` 70 (a tracker
ends the fit after the epoch's row has been recorded, written and printed), :class:`PreciseBN`
80 (after SaveModel's reload of the best weights).

Nothing here reads a tensor on the host during a training step except :class:`TerminateOnNaN`
(opt-in): the Recorder keeps its per-batch numbers on the device and reads them once per epoch.

Under data-parallel training (:func:`~fastext.learner.distributed.data_parallel_size` > 1)
every rank must end a fit at the same batch, or the others wait forever in DDP's all-reduce:
the Recorder's epoch ``train_loss`` is the mean over all ranks' samples, and
:class:`TerminateOnNaN` and :class:`EarlyStopping` stop when any rank says so. A single
process runs no collective.

The trackers (:class:`EarlyStopping`, :class:`SaveModel`) and :class:`GradientAccumulation`
carry state from epoch to epoch: it goes into :meth:`Learner.save` (their ``state_dict``) and
back into them in a fit resumed from that checkpoint (``start_epoch``).

>>> import torch
>>> from fastext.learner import DataLoaders, Learner
>>> x = torch.randn(64, 3); y = x @ torch.tensor([1.0, -2.0, 0.5])
>>> dls = DataLoaders.from_tensors(x[:48], y[:48, None], x[48:], y[48:, None], bs=16, device="cpu")
>>> learn = Learner(dls, torch.nn.Linear(3, 1), torch.nn.functional.mse_loss, quiet=True,
...                 cbs=[EarlyStopping(patience=2), GradientClip(1.0)])
>>> learn.fit(3, lr=1e-2)
>>> learn.recorder.metric_names
['epoch', 'train_loss', 'valid_loss', 'time']
>>> len(learn.recorder.values), len(learn.recorder.losses)
(3, 9)
"""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .callback import Callback, CancelBatchException, CancelFitException
from .distributed import (
    all_reduce_sum,
    any_rank,
    barrier,
    data_parallel_size,
    get_rank,
    rank_zero,
)
from .figures import save_figure as _save

__all__ = ["CSVLogger", "EarlyStopping", "GradientAccumulation", "GradientClip",
           "ProgressCallback", "Recorder", "SaveModel", "TerminateOnNaN", "TrackerCallback"]


def _batch_size(learn: Any) -> int:
    first = learn.yb[0] if learn.yb else learn.xb[0]
    return first.shape[0] if first.ndim else 1


def _to_float(v: Any) -> float:
    return float(v.item()) if isinstance(v, Tensor) else float(v)


def _group_mom(group: dict[str, Any]) -> float | Tensor:
    if "betas" in group:
        return group["betas"][0]
    return group.get("momentum", math.nan)


class _DeviceLog:
    """Scalars appended as tensors on their device, read back to the host in one go."""

    def __init__(self, chunk: int = 256) -> None:
        self.chunk, self.host, self._chunks, self._pending = chunk, [], [], []

    def append(self, t: Tensor) -> None:
        self._pending.append(t)
        if len(self._pending) >= self.chunk:  # bounds the number of live tensors (no sync)
            self._chunks.append(torch.stack(self._pending))
            self._pending = []

    def flush(self) -> list[float]:
        parts = self._chunks + ([torch.stack(self._pending)] if self._pending else [])
        if parts:
            self.host.extend(torch.cat(parts).tolist())
        self._chunks, self._pending = [], []
        return self.host

    def __len__(self) -> int:
        return len(self.host) + sum(len(c) for c in self._chunks) + len(self._pending)


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Recorder(Callback):
    """Records the training losses, hyper-parameters and the epoch table of a fit.

    Per training batch: the loss (:attr:`losses`), the debiased exponential moving average
    of the loss with ``beta`` (:attr:`smooth_losses`, also set as ``learn.smooth_loss``, a
    tensor), the learning rate and momentum (``betas[0]`` for Adam-like optimizers,
    ``momentum`` otherwise) of every param group (:attr:`group_lrs`, :attr:`group_moms`,
    one list per batch) and of the last group (:attr:`lrs`, :attr:`moms`, as fastai's).
    Per epoch: ``[epoch, train_loss, valid_loss, *metrics, seconds]`` in :attr:`values`,
    named by :attr:`metric_names`; ``train_loss`` is the batch-size weighted mean of the
    epoch's losses, and ``learn.final_record`` is ``[train_loss, valid_loss, *metrics]``.
    In data-parallel training ``train_loss`` is that mean over the samples of all ranks
    (one all-reduce per epoch), so that trackers on it decide alike on every rank; the
    per-batch series stay this rank's.
    Everything is reset at the start of each fit. A :meth:`Learner.validate` outside a fit's
    epoch leaves the table and ``final_record`` alone.

    >>> import torch
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(40, 2); dls = DataLoaders.from_tensors(x, x, x, x, bs=8, device="cpu")
    >>> learn = Learner(dls, torch.nn.Linear(2, 2), torch.nn.functional.mse_loss, quiet=True)
    >>> learn.fit(2, lr=0.1)
    >>> rec = learn.recorder
    >>> len(rec.losses), rec.lrs[0], rec.group_moms[0]
    (10, 0.1, [0.9, 0.9])
    >>> [row[0] for row in rec.values], rec.values[-1][1] < rec.values[0][1]
    ([0, 1], True)
    """

    order = 50

    def __init__(self, beta: float = 0.98) -> None:
        self.beta = beta
        self._reset()

    def _reset(self) -> None:
        self._losses, self._smooth = _DeviceLog(), _DeviceLog()
        self._hypers: list[list[tuple[Any, Any]]] = []
        self.values: list[list[float]] = []
        self.iters: list[int] = []
        self.metric_names: list[str] = ["epoch", "train_loss", "valid_loss", "time"]
        self._avg: Tensor | None = None
        self._count = 0
        self._in_epoch = False

    # -- recorded series ------------------------------------------------------------------
    @property
    def losses(self) -> list[float]:
        """The training loss of every batch of the fit."""
        return self._losses.flush()

    @property
    def smooth_losses(self) -> list[float]:
        """The debiased moving average of the training loss after every batch."""
        return self._smooth.flush()

    @property
    def group_lrs(self) -> list[list[float]]:
        """Learning rate of every param group, per training batch."""
        return [[_to_float(lr) for lr, _ in row] for row in self._hypers]

    @property
    def group_moms(self) -> list[list[float]]:
        """Momentum of every param group, per training batch."""
        return [[_to_float(m) for _, m in row] for row in self._hypers]

    @property
    def lrs(self) -> list[float]:
        """Learning rate of the last param group (the head), per training batch."""
        return [_to_float(row[-1][0]) for row in self._hypers]

    @property
    def moms(self) -> list[float]:
        """Momentum of the last param group, per training batch."""
        return [_to_float(row[-1][1]) for row in self._hypers]

    # -- events ---------------------------------------------------------------------------
    def before_fit(self) -> None:
        self._reset()
        names = [m.name for m in getattr(self.learn, "metrics", [])]
        self.metric_names = ["epoch", "train_loss", "valid_loss", *names, "time"]
        self.learn.smooth_loss = torch.tensor(math.nan)

    def before_epoch(self) -> None:
        self._in_epoch = True
        self._start = time.perf_counter()
        self._epoch_sum: Tensor | float = 0.0
        self._epoch_n = 0
        self._epoch_loss: float | None = None  # the epoch's train loss, once computed
        self._valid: list[float] | None = None

    def after_loss(self) -> None:
        if not self.learn.training:
            return
        loss = self.learn.loss.detach().float()
        self._avg = loss * (1 - self.beta) if self._avg is None else self._avg.lerp(
            loss, 1 - self.beta)
        self._count += 1
        smooth = self._avg / (1 - self.beta**self._count)
        self.learn.smooth_loss = smooth
        self._losses.append(loss)
        self._smooth.append(smooth)
        bs = _batch_size(self.learn)
        self._epoch_sum = self._epoch_sum + loss * bs
        self._epoch_n += bs
        opt = self.learn.opt
        self._hypers.append([(g["lr"], _group_mom(g)) for g in opt.param_groups])

    def before_validate(self) -> None:
        if self._in_epoch:  # not a standalone learn.validate()
            self._valid = None

    def after_cancel_validate(self) -> None:
        if self._in_epoch:
            self._valid = [math.nan] * (1 + len(self.learn.metrics))

    def after_validate(self) -> None:
        if not self._in_epoch:
            return
        if self._valid is None:
            self._valid = [float(self.learn.valid_loss), *map(float, self.learn.metric_values)]
        self.learn.final_record = [self._train_loss(), *self._valid]

    def _train_loss(self) -> float:
        # computed once an epoch: after_validate and after_epoch fire on every rank alike,
        # so the first of them is where all ranks meet for the reduction
        if self._epoch_loss is None:
            total, n = self._epoch_sum, float(self._epoch_n)
            if data_parallel_size(self.learn) > 1:
                total, n = all_reduce_sum([total, n]).tolist()
            self._epoch_loss = _to_float(total) / n if n else math.nan
        return self._epoch_loss

    def after_epoch(self) -> None:
        valid = self._valid or [math.nan] * (1 + len(self.learn.metrics))
        seconds = time.perf_counter() - self._start
        self.values.append([self.learn.epoch, self._train_loss(), *valid, seconds])
        self._losses.flush()
        self._smooth.flush()
        self.iters.append(len(self._losses))
        self._in_epoch = False

    # -- plots ----------------------------------------------------------------------------
    def plot_loss(self, path: str | Path, skip_start: int = 5, with_valid: bool = True) -> Path:
        """Writes a PNG of the training loss (raw and smoothed) per batch, from batch
        ``skip_start`` on, and the validation loss at the end of each epoch."""
        fig, ax = _figure()
        losses, smooth = self.losses, self.smooth_losses
        xs = range(skip_start, len(losses))
        ax.plot(xs, losses[skip_start:], alpha=0.3, label="train (batch)")
        ax.plot(xs, smooth[skip_start:], label="train (smoothed)")
        if with_valid and self.values:
            col = self.metric_names.index("valid_loss")
            pts = [(i, row[col]) for i, row in zip(self.iters, self.values, strict=False)
                   if i > skip_start]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label="valid")
        ax.set_xlabel("batch")
        ax.set_ylabel("loss")
        ax.legend()
        return _save(fig, path)

    def plot_sched(self, path: str | Path) -> Path:
        """Writes a PNG of the learning rate and momentum of each layer group per batch."""
        fig, (ax_lr, ax_mom) = _figure(ncols=2, figsize=(10, 4))
        groups = self.learn.opt.param_groups if self.learn.opt is not None else []
        layer = [g.get("layer_group", i) for i, g in enumerate(groups)]
        lrs, moms = self.group_lrs, self.group_moms
        n_cols = len(lrs[0]) if lrs else 0
        shown: set[Any] = set()
        for j in range(n_cols):
            lg = layer[j] if j < len(layer) else j
            if lg in shown:  # decay / no-decay groups of one layer group share a schedule
                continue
            shown.add(lg)
            ax_lr.plot([r[j] for r in lrs], label=f"group {lg}")
            ax_mom.plot([r[j] for r in moms], label=f"group {lg}")
        ax_lr.set_xlabel("batch")
        ax_lr.set_ylabel("learning rate")
        ax_mom.set_xlabel("batch")
        ax_mom.set_ylabel("momentum")
        if shown:
            ax_lr.legend()
        return _save(fig, path)


def _figure(ncols: int = 1, figsize: tuple[float, float] = (6, 4)) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # no pyplot: no global backend, no GUI

    fig = Figure(figsize=figsize, layout="tight")
    axes = fig.subplots(1, ncols)
    return fig, axes


class ProgressCallback(Callback):
    """A tqdm bar over the batches of each training and validation phase (only when stdout
    is a terminal) and one table line per epoch; nothing at all when ``learn.quiet``.

    >>> import torch
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(40, 2); dls = DataLoaders.from_tensors(x, x, x, x, bs=8, device="cpu")
    >>> learn = Learner(dls, torch.nn.Linear(2, 2), torch.nn.functional.mse_loss)
    >>> learn.fit(1, lr=0.1)  # doctest: +ELLIPSIS
    epoch  train_loss  valid_loss  time
    0      ...
    """

    order = 60

    def __init__(self, min_width: int = 10) -> None:
        self.min_width = min_width
        self.bar: Any = None

    @property
    def quiet(self) -> bool:
        return bool(getattr(self.learn, "quiet", False))

    def _show_bar(self) -> bool:
        # tqdm is optional (the `tasks` extra): without it the epoch lines still print
        return (not self.quiet and sys.stdout.isatty()
                and importlib.util.find_spec("tqdm") is not None)

    def _line(self, cells: list[str]) -> str:
        widths = [max(self.min_width, len(n)) for n in self._names]
        widths[0] = max(5, len(self._names[0]))
        return "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    def before_fit(self) -> None:
        rec = getattr(self.learn, "recorder", None)
        self._names = list(rec.metric_names) if rec is not None else []
        if not self.quiet and self._names:
            print(self._line(self._names), flush=True)

    def _open(self, total: int, desc: str) -> None:
        self._close()
        if self._show_bar():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False, file=sys.stdout,
                            dynamic_ncols=True)
            self._last_postfix = 0.0

    def _close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def before_train(self) -> None:
        self._open(len(self.learn.dls.train), f"epoch {self.learn.epoch}")

    def before_validate(self) -> None:
        self._open(len(self.learn.dl), "valid")  # the loader validate() was given

    def after_batch(self) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.monotonic()
        if self.learn.training and now - self._last_postfix > 0.5:  # a host read, twice a second
            self._last_postfix = now
            smooth = getattr(self.learn, "smooth_loss", None)
            if smooth is not None:
                self.bar.set_postfix(loss=f"{_to_float(smooth):.4f}", refresh=False)

    def after_train(self) -> None:
        self._close()

    def after_validate(self) -> None:
        self._close()

    def after_epoch(self) -> None:
        self._close()
        rec = getattr(self.learn, "recorder", None)
        if self.quiet or rec is None or not rec.values:
            return
        row = rec.values[-1]
        cells = [str(int(row[0])), *(f"{v:.6f}" for v in row[1:-1]), _fmt_time(row[-1])]
        print(self._line(cells), flush=True)

    def finally_fit(self) -> None:  # also when an exception (Ctrl-C) ended the fit
        self._close()


class TrackerCallback(Callback):
    """Base of callbacks that follow one column of the Recorder's table (``monitor``) and
    note when it improves by more than ``min_delta``.

    ``comp`` (``comp(new, best) -> bool`` for "better") defaults to less-is-better for names
    containing "loss" or "error", greater-is-better otherwise. After each epoch
    :attr:`improved` says whether the value beat :attr:`best`.

    An epoch is judged as soon as its validation is in (``after_validate``, from
    ``learn.final_record``; in ``after_epoch`` for the ``epoch`` and ``time`` columns or when
    validation did not end), so that a checkpoint written in ``after_epoch`` holds the
    tracker's state after that epoch: :meth:`state_dict` (the best value) goes into
    :meth:`Learner.save` and comes back in a fit resumed from it. :attr:`best` is reset at the
    start of each fit when ``reset_on_fit`` (else kept across fits).

    >>> TrackerCallback("valid_loss").comp(1.0, 2.0), TrackerCallback("accuracy").comp(1.0, 2.0)
    (True, False)
    """

    order = 65

    def __init__(self, monitor: str = "valid_loss",
                 comp: Callable[[float, float], bool] | None = None, min_delta: float = 0.0,
                 reset_on_fit: bool = True) -> None:
        if comp is None:
            lower = "loss" in monitor or "error" in monitor
            comp = (lambda a, b: a < b) if lower else (lambda a, b: a > b)
        self.monitor, self.comp, self.min_delta, self.reset_on_fit = (
            monitor, comp, min_delta, reset_on_fit)
        self.lower_is_better = bool(comp(0.0, 1.0))
        self.best: float | None = None
        self.improved = False
        self._pending = False  # the current epoch is not judged yet

    @property
    def state_key(self) -> str:
        """The class name and the monitored column."""
        return f"{type(self).__name__}:{self.monitor}"

    def state_dict(self) -> dict[str, Any] | None:
        """The best value so far (``None`` before the first fit: nothing to resume)."""
        return None if self.best is None else {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Takes back the best value of the fit a resumed fit continues."""
        self.best = float(state["best"])

    def _reset(self) -> None:
        """Forgets the best value (at the start of a fit, see ``reset_on_fit``)."""
        self.best = math.inf if self.lower_is_better else -math.inf

    def before_fit(self) -> None:
        names = self.learn.recorder.metric_names
        if self.monitor not in names:
            raise ValueError(f"{type(self).__name__}: cannot monitor {self.monitor!r}; "
                             f"the recorder has {names}")
        self._col = names.index(self.monitor)
        self._pending = False
        if self.reset_on_fit or self.best is None:
            self._reset()

    def before_epoch(self) -> None:
        self._pending = True

    def after_validate(self) -> None:
        # final_record is the epoch's row without its first (epoch) and last (time) cells
        if self._pending and 0 < self._col < len(self.learn.recorder.metric_names) - 1:
            self._judge(float(self.learn.final_record[self._col - 1]))

    def after_epoch(self) -> None:
        if self._pending:
            self._judge(float(self.learn.recorder.values[-1][self._col]))

    def _judge(self, value: float) -> None:
        """Notes the epoch's ``value``: :attr:`improved`, and :attr:`best` when it did."""
        self._pending = False
        # better by more than min_delta: value + min_delta < best (or value - min_delta > best)
        delta = self.min_delta if self.lower_is_better else -self.min_delta
        self.improved = bool(self.comp(value + delta, self.best)) and not math.isnan(value)
        if self.improved:
            self.best = value


class EarlyStopping(TrackerCallback):
    """Ends the fit (``CancelFitException``) when ``monitor`` has not improved by more than
    ``min_delta`` for ``patience`` epochs in a row.

    >>> import torch
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(40, 2); dls = DataLoaders.from_tensors(x, x, x, x, bs=8, device="cpu")
    >>> learn = Learner(dls, torch.nn.Linear(2, 2), torch.nn.functional.mse_loss, quiet=True)
    >>> learn.fit(10, lr=0.0, cbs=[EarlyStopping(patience=2)])  # lr 0: nothing improves
    No improvement since epoch 0: early stopping at epoch 2.
    >>> len(learn.recorder.values)
    3
    """

    order = 70

    def __init__(self, monitor: str = "valid_loss",
                 comp: Callable[[float, float], bool] | None = None, min_delta: float = 0.0,
                 patience: int = 1, reset_on_fit: bool = True) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.patience = patience

    def before_fit(self) -> None:
        super().before_fit()
        self.wait = 0
        self.stopped_epoch: int | None = None

    def state_dict(self) -> dict[str, Any] | None:
        """The best value and the epochs since it."""
        state = super().state_dict()
        return None if state is None else {**state, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Takes back the best value and the epochs since it."""
        super().load_state_dict(state)
        self.wait = int(state["wait"])

    def _judge(self, value: float) -> None:
        super()._judge(value)
        self.wait = 0 if self.improved else self.wait + 1

    def after_epoch(self) -> None:
        super().after_epoch()
        stop = self.wait >= self.patience
        if data_parallel_size(self.learn) > 1:  # a rank left alone in the fit would hang
            stop = any_rank(stop)
        if stop:
            self.stopped_epoch = self.learn.epoch
            if rank_zero():  # every rank stops; one of them says so
                print(f"No improvement since epoch {self.learn.epoch - self.wait}: "
                      f"early stopping at epoch {self.learn.epoch}.", flush=True)
            raise CancelFitException()


class SaveModel(TrackerCallback):
    """Saves the learner (``learn.save(fname, with_opt)``) whenever ``monitor`` improves and
    loads that best checkpoint back when the fit ends (fastai's ``SaveModelCallback``); with
    ``every_epoch`` saves after every epoch as ``{fname}_{epoch}`` instead, and loads
    nothing; with ``at_end`` (fastai's meaning) the weights the fit ends with are saved as
    ``fname`` and stay loaded. :attr:`best_epoch` is the epoch of the best checkpoint: with
    ``reset_on_fit=False`` the best value and its checkpoint are kept across fits, so a fit
    that never beats it still ends on the best weights. Its
    best value and epoch go into checkpoints (:meth:`state_dict`, under the class name and
    ``fname``), so that a resumed fit goes on comparing with the best of the epochs before
    the interruption rather than overwriting ``fname`` with a worse model.

    >>> import torch, tempfile
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(40, 2); dls = DataLoaders.from_tensors(x, x, x, x, bs=8, device="cpu")
    >>> learn = Learner(dls, torch.nn.Linear(2, 2), torch.nn.functional.mse_loss, quiet=True,
    ...                 path=tempfile.mkdtemp())
    >>> learn.fit(2, lr=0.1, cbs=[SaveModel(fname="best")])
    >>> (learn.path / "models" / "best.pth").exists()
    True
    """

    def __init__(self, monitor: str = "valid_loss",
                 comp: Callable[[float, float], bool] | None = None, min_delta: float = 0.0,
                 fname: str = "model", every_epoch: bool = False, with_opt: bool = True,
                 at_end: bool = False, reset_on_fit: bool = True) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.fname, self.every_epoch, self.with_opt, self.at_end = (
            fname, every_epoch, with_opt, at_end)
        self.saved: list[Path] = []
        self.best_epoch: int | None = None

    @property
    def state_key(self) -> str:
        """The class name and ``fname``."""
        return f"{type(self).__name__}:{self.fname}"

    def state_dict(self) -> dict[str, Any] | None:
        """The best value and the epoch of its checkpoint."""
        state = super().state_dict()
        return None if state is None else {**state, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Takes back the best value and the epoch of its checkpoint."""
        super().load_state_dict(state)
        self.best_epoch = state["best_epoch"]

    def _reset(self) -> None:
        # best_epoch goes with best: kept across fits (reset_on_fit=False), it still says
        # that fname holds the best weights when a later fit never improves on them
        super()._reset()
        self.best_epoch = None

    def before_fit(self) -> None:
        super().before_fit()
        self.saved = []

    def _judge(self, value: float) -> None:
        super()._judge(value)
        if self.improved and not self.every_epoch:
            self.best_epoch = self.learn.epoch

    def _save(self, name: str) -> None:
        if rank_zero():  # one writer under torchrun (every rank decides alike: see distributed)
            self.saved.append(self.learn.save(name, with_opt=self.with_opt))

    def after_epoch(self) -> None:
        super().after_epoch()
        if self.every_epoch:
            self._save(f"{self.fname}_{self.learn.epoch}")
        elif self.improved:
            self._save(self.fname)

    def after_fit(self) -> None:
        if self.at_end:
            self._save(self.fname)
        elif not self.every_epoch and self.best_epoch is not None:
            barrier()  # the other ranks wait for rank 0's checkpoint
            self.learn.load(self.fname, with_opt=self.with_opt, with_state=False)


class PreciseBN(Callback):
    """After the fit, re-estimates every BatchNorm's running statistics over the training
    set with the final weights (as ``torch.optim.swa_utils.update_bn``: one pass in train
    mode, no gradients, a cumulative average per layer), feeding the batches as the Learner
    does: inputs and target split (a model may take several inputs), fp16 inputs in half
    precision, bf16 under autocast. Momentum and train/eval modes are restored afterwards.

    The running statistics a fit leaves are a momentum average of batch statistics taken while
    the weights moved; early in a one-cycle schedule they move fast, and in evaluation the
    stale statistics no longer match the layers they normalise ("precise BN", Wu & Johnson
    2021). Measured on the super-resolution U-Net (``fastext run superres``'s generator and
    loss, 64 CamVid training frames scored on 16 others): after 3 epochs +0.38 dB over the
    crappy input without, +1.52 dB with; after the demo's 12 epochs +2.46 dB either way (by
    then the statistics have caught up). Runs after :class:`SaveModel` (which may reload the
    best weights at the end).

    >>> import torch
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(64, 3) * 3 + 1; y = x.sum(1, keepdim=True)
    >>> dls = DataLoaders.from_tensors(x, y, x, y, bs=16, device="cpu")
    >>> model = torch.nn.Sequential(torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 1))
    >>> learn = Learner(dls, model, torch.nn.functional.mse_loss, quiet=True, cbs=[PreciseBN()])
    >>> learn.fit(1, lr=1e-2)
    >>> torch.allclose(model[0].running_mean, x.mean(0), atol=1e-5)
    True
    """

    order = 80

    def after_fit(self) -> None:
        learn = self.learn
        model = learn.model
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not bns:
            return
        momenta = [m.momentum for m in bns]
        modes = [m.training for m in model.modules()]
        try:
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the batches
            model.train()
            with torch.no_grad():
                for batch in learn.dls.train:
                    learn.model_output(batch)
        finally:
            for m, momentum in zip(bns, momenta, strict=True):
                m.momentum = momentum
            for m, mode in zip(model.modules(), modes, strict=True):
                m.training = mode


class TerminateOnNaN(Callback):
    """Ends the fit when a loss is infinite or NaN, printing where, and sets
    ``learn.nan_stopped``. It reads the loss on the host after every batch (opt-in).

    In data-parallel training every rank stops when any rank sees such a loss: at that
    training batch (one all-reduce per batch), or for validation (whose shards may differ
    in length by a batch) at the end of it; the ranks that saw it print where.

    >>> import torch
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(40, 2); dls = DataLoaders.from_tensors(x, x, x, x, bs=8, device="cpu")
    >>> learn = Learner(dls, torch.nn.Linear(2, 2), torch.nn.functional.mse_loss, quiet=True)
    >>> learn.fit(3, lr=1e20, cbs=[TerminateOnNaN()])  # doctest: +ELLIPSIS
    TerminateOnNaN: the training loss is ... at epoch 0, batch ...; stopping the fit.
    >>> learn.nan_stopped
    True
    """

    order = 0

    def __init__(self) -> None:
        self._seen: str | None = None  # where this rank saw the first non-finite loss

    def before_fit(self) -> None:
        self.learn.nan_stopped = False
        self._seen = None

    def before_validate(self) -> None:
        self._seen = None

    def after_loss(self) -> None:
        loss = self.learn.loss.detach()
        bad = not bool(torch.isfinite(loss).all())
        if bad and self._seen is None:
            value = loss.float().sum().item() if loss.numel() else math.nan
            phase = "training" if self.learn.training else "validation"
            self._seen = (f"the {phase} loss is {value} at epoch {self.learn.epoch}, "
                          f"batch {self.learn.iter}")
        world = data_parallel_size(self.learn)
        if world == 1:
            if bad:
                self._stop()
        elif self.learn.training and any_rank(bad):  # the ranks step in lockstep
            self._stop(world)

    def after_validate(self) -> None:
        # validation shards may differ in length: the ranks agree once it is over
        world = data_parallel_size(self.learn)
        if world > 1 and any_rank(self._seen is not None):
            self._stop(world)

    def _stop(self, world: int = 1) -> None:
        if self._seen is not None:
            where = f" (rank {get_rank()})" if world > 1 else ""
            print(f"TerminateOnNaN{where}: {self._seen}; stopping the fit.", flush=True)
        self.learn.nan_stopped = True
        raise CancelFitException()


class GradientClip(Callback):
    """Clips the global norm of the gradients to ``max_norm`` before each step (with a loss
    scaler, on the still-scaled gradients: see :meth:`fastext.amp.LossScaler.clip_grad_norm_`).

    >>> import torch
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(40, 2); dls = DataLoaders.from_tensors(x, x, x, x, bs=8, device="cpu")
    >>> learn = Learner(dls, torch.nn.Linear(2, 2), torch.nn.functional.mse_loss, quiet=True)
    >>> clip = GradientClip(0.1); learn.fit(1, lr=0.1, cbs=[clip])
    >>> clip.last_norm is not None
    True
    """

    order = 20

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        self.max_norm, self.norm_type = max_norm, norm_type
        self.last_norm: Tensor | None = None

    def before_step(self) -> None:
        scaler = getattr(self.learn, "scaler", None)
        if scaler is not None:
            self.last_norm = scaler.clip_grad_norm_(self.learn.opt, self.max_norm, self.norm_type)
            return
        params = [p for p in self.learn.model.parameters() if p.grad is not None]
        # total norm before clipping, a device tensor (no host read)
        self.last_norm = torch.nn.utils.clip_grad_norm_(params, self.max_norm, self.norm_type)


class GradientAccumulation(Callback):
    """Steps the optimizer only once ``n_acc`` samples have gone through, accumulating the
    gradients of the batches in between: with a mean loss the update equals that of one
    batch of ``n_acc`` samples (the loss each batch back-propagates is scaled by
    ``bs / n_acc``; ``learn.loss`` itself is unchanged). In data-parallel training the
    samples are those of all ranks, ``bs * world_size`` a batch, so that the steps are those
    of a single process at the global batch size: exact when the ranks' batches are equal,
    as :class:`~fastext.learner.distributed.DistributedTrainer`'s padded shards are (the last
    global batch then counts its padding too). Samples are counted across epoch
    boundaries; a partial accumulation left when the fit ends is dropped (gradients zeroed).
    Runs before :class:`GradientClip`, so clipping and unscaling happen on real steps only.
    A checkpoint holds the count and, mid-accumulation, the gradients accumulated so far
    (:meth:`state_dict`), so a fit resumed from it steps where the uninterrupted one would.

    >>> import torch
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(64, 2); dls = DataLoaders.from_tensors(x, x, x, x, bs=8, device="cpu")
    >>> learn = Learner(dls, torch.nn.Linear(2, 2), torch.nn.functional.mse_loss, quiet=True)
    >>> acc = GradientAccumulation(n_acc=32); learn.fit(1, lr=0.1, cbs=[acc])
    >>> acc.n_steps
    2
    """

    order = 10

    def __init__(self, n_acc: int = 32) -> None:
        self.n_acc = n_acc
        self.count, self.n_steps = 0, 0

    def before_fit(self) -> None:
        self.count, self.n_steps = 0, 0
        if self.learn.opt is not None:
            self.learn.opt.zero_grad()

    def finally_fit(self) -> None:  # also when an exception (Ctrl-C) ended the fit
        if self.count and self.learn.opt is not None:
            self.learn.opt.zero_grad()
            self.count = 0

    def state_dict(self) -> dict[str, Any]:
        """The samples counted towards the next step, the steps taken in this fit, and
        while samples are counted the gradients they left (``grads``: the model's
        parameters, by position, that have one)."""
        state: dict[str, Any] = {"count": self.count, "n_steps": self.n_steps}
        if self.count:
            state["grads"] = {i: p.grad.detach().clone()
                              for i, p in enumerate(self.learn.model.parameters())
                              if p.grad is not None}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Takes back the count and the pending gradients (after ``before_fit`` zeroed
        them)."""
        self.count, self.n_steps = int(state["count"]), int(state["n_steps"])
        params = list(self.learn.model.parameters())
        with torch.no_grad():
            for i, grad in state.get("grads", {}).items():
                p = params[i]
                if p.grad is not None and p.grad.shape == grad.shape:
                    p.grad.copy_(grad)  # keeps a flat optimizer's gradient views
                else:
                    p.grad = grad.to(device=p.device, dtype=p.dtype, copy=True)

    def _global_bs(self) -> int:
        # DDP averages the ranks' gradients: a rank's share of a global batch of
        # bs * world samples is scaled by bs * world / n_acc (equal bs: no count exchanged)
        return _batch_size(self.learn) * data_parallel_size(self.learn)

    def after_loss(self) -> None:
        if self.learn.training:
            self.learn.loss_grad = self.learn.loss_grad * (self._global_bs() / self.n_acc)

    def before_step(self) -> None:
        self.count += self._global_bs()
        if self.count < self.n_acc:
            raise CancelBatchException()  # skips the step and the zero_grad after it (fastai)
        self.count = 0
        self.n_steps += 1


class CSVLogger(Callback):
    """Writes the Recorder's epoch rows to ``learn.path / fname`` (a header first, unless
    appending to a file that has one).

    >>> import torch, tempfile
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(40, 2); dls = DataLoaders.from_tensors(x, x, x, x, bs=8, device="cpu")
    >>> learn = Learner(dls, torch.nn.Linear(2, 2), torch.nn.functional.mse_loss, quiet=True,
    ...                 path=tempfile.mkdtemp())
    >>> log = CSVLogger(); learn.fit(2, lr=0.1, cbs=[log])
    >>> [row["epoch"] for row in log.read_log()]
    ['0', '1']
    """

    order = 55

    def __init__(self, fname: str | Path = "history.csv", append: bool = False) -> None:
        self.fname, self.append = Path(fname), append
        self._file: Any = None

    @property
    def path(self) -> Path:
        return self.fname if self.fname.is_absolute() else self.learn.path / self.fname

    def before_fit(self) -> None:
        if not rank_zero():  # one writer under torchrun
            return
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        has_header = self.append and path.exists() and path.stat().st_size > 0
        self._file = open(path, "a" if self.append else "w", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._file)
        if not has_header:
            self._writer.writerow(self.learn.recorder.metric_names)
            self._file.flush()

    def after_epoch(self) -> None:
        if self._file is None:
            return
        row = self.learn.recorder.values[-1]
        self._writer.writerow([int(row[0]), *(repr(float(v)) for v in row[1:-1]),
                               f"{row[-1]:.3f}"])
        self._file.flush()

    def finally_fit(self) -> None:  # also when an exception (Ctrl-C) ended the fit
        if self._file is not None:
            self._file.close()
            self._file = None

    def read_log(self) -> list[dict[str, str]]:
        """The rows of the file as dicts keyed by the header."""
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))
