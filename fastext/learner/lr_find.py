"""The LR range test (Leslie Smith; fastai v2's ``lr_find``): train a few batches while the
learning rate grows exponentially, record the smoothed loss, suggest a learning rate from the
curve, then put the learner back exactly as it was.

>>> import numpy as np
>>> lrs = np.geomspace(1e-5, 1.0, 50)
>>> losses = 2 - np.tanh(np.log10(lrs) + 2)       # falls fastest at lr = 1e-2
>>> f"{steep(lrs, losses):.1e}"
'9.1e-03'

Semantics follow fastai v2's ``callback/schedule.py`` (``LRFinder``, ``valley``, ``steep``,
``minimum``, ``slide``) with these differences: the sweep ends *at* ``end_lr``
(``lr_i = start * (end/start) ** (i / (num_it - 1))``; fastai stops one step short, at
``i / num_it``), a non-finite smoothed loss also counts as divergence, the learning rates of
several param groups keep their ratios (the largest sweeps ``start_lr..end_lr``), every
suggestion is clipped into the swept range (fastai's ``minimum`` can fall below
``start_lr``), and model, optimizer, loss scaler, RNG and loop counters are restored
afterwards, also when the sweep raises. As fastai's trackers do during ``lr_find``, the
learner's tracker callbacks (``EarlyStopping``, ``SaveModel``) sit the sweep out, and so does
``CSVLogger``.
"""

from __future__ import annotations

import collections
import copy
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .callback import Callback, CancelFitException, CancelValidException
from .callbacks import CSVLogger, TrackerCallback, _batch_size
from .distributed import all_reduce_sum, data_parallel_size

if TYPE_CHECKING:
    from .learner import Learner

__all__ = ["LRFinder", "SuggestedLRs", "lr_find", "minimum", "plot_lr_find", "slide", "steep",
           "valley"]

#: A suggestion function: ``f(lrs, losses) -> lr`` over the trimmed, finite smoothed curve
#: (both 1-d float64 arrays of the same length >= 1, ``lrs`` increasing).
SuggestFunc = Callable[[np.ndarray, np.ndarray], float]


# -- suggestions (fastai v2's definitions) ---------------------------------------------------
def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The middle of the longest valley: fastai's ``valley`` (its default suggestion).

    The "valley" is the longest strictly decreasing subsequence of ``losses``, ``L`` points
    ending at index ``e`` and taken to start at ``s = e - L``; the suggestion is the lr at
    ``s + int(L/3) + int(L/6)``, about halfway down (clipped to a valid index).

    >>> lrs = np.geomspace(1e-6, 1.0, 13)
    >>> losses = np.abs(np.arange(13) - 6.0)     # down over indices 0..6: L = 7, s = -1
    >>> bool(valley(lrs, losses) == lrs[2])      # -1 + int(7/3) + int(7/6)
    True
    """
    lrs, losses = _as_curve(lrs, losses)
    n = len(losses)
    # lds[i]: length of the longest strictly decreasing subsequence ending at i.
    lds = np.ones(n, dtype=np.int64)
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            lds[i] = lds[:i][higher].max() + 1
    end = int(np.argmax(lds))  # the first index reaching the longest length
    start = end - int(lds[end])
    sections = (end - start) / 3
    idx = start + int(sections) + int(sections / 2)
    return float(lrs[min(max(idx, 0), n - 1)])


def steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The lr where the loss falls fastest against ``log(lr)``: the left end of the segment
    with the most negative slope (fastai's ``steep``).

    >>> lrs = np.geomspace(1e-3, 1.0, 4)
    >>> float(steep(lrs, np.array([3., 2.9, 1.0, 0.9])))
    0.01
    """
    lrs, losses = _as_curve(lrs, losses)
    if len(lrs) < 2:
        return float(lrs[0])
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """A tenth of the lr at the lowest loss (fastai's ``minimum``).

    >>> float(minimum(np.array([1e-3, 1e-2, 1e-1]), np.array([2.0, 1.0, 5.0])))
    0.001
    """
    lrs, losses = _as_curve(lrs, losses)
    return float(lrs[int(np.argmin(losses))]) / 10


def slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005,
          adjust_value: float = 1.0) -> float:
    """fastai's interval slide rule: move a window of ``lr_diff`` points leftwards from the
    end of the curve while the loss gradients (per point, ``np.gradient``) at its two ends
    differ by more than ``thresh``; suggest the window's left end at the last position where
    they still differed, times ``adjust_value``. The window shrinks to the curve's length.

    >>> losses = np.r_[np.full(50, 2.0), 2.0 + 0.1 * np.arange(1, 51) ** 2]
    >>> lrs = np.geomspace(1e-6, 1.0, 100)
    >>> bend = 49                           # the first nonzero central difference
    >>> bool(slide(lrs, losses) == lrs[bend - 15])
    True
    """
    lrs, losses = _as_curve(lrs, losses)
    n = len(losses)
    if n < 2:
        return float(lrs[0]) * adjust_value
    lr_diff = min(lr_diff, n - 1)
    grad = np.gradient(losses)
    right, left = n - 1, n - 1 - lr_diff
    found = lrs[left]
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        found = lrs[left]
        right, left = right - 1, left - 1
    return float(found) * adjust_value


def _as_curve(lrs: Any, losses: Any) -> tuple[np.ndarray, np.ndarray]:
    lrs = np.asarray(lrs, dtype=np.float64).reshape(-1)
    losses = np.asarray(losses, dtype=np.float64).reshape(-1)
    if len(lrs) != len(losses) or len(lrs) == 0:
        raise ValueError(f"need equal, non-zero numbers of lrs and losses, got {len(lrs)} "
                         f"and {len(losses)}")
    return lrs, losses


# -- the callback ------------------------------------------------------------------------------
class LRFinder(Callback):
    """Training with an exponentially growing learning rate; records lr and smoothed loss.

    Before training batch ``i`` (0-based) every param group gets
    ``start_lr * (end_lr / start_lr) ** (i / (num_it - 1))`` times its ratio to the largest
    group lr at the start of the fit (discriminative learning rates keep their ratios). After
    each batch it records that lr in ``lrs``, the batch loss in ``raw_losses`` and the
    debiased exponential moving average of the loss (``beta`` 0.98) in ``losses``. It ends
    the fit after ``num_it`` batches, or, with ``stop_div``, as soon as the smoothed loss is
    not finite or exceeds 4x the best so far; the fit gets as many epochs as ``num_it``
    batches take (``learn.n_epoch``, set in ``before_fit`` from the loader the fit runs
    over, sharded or not). Validation is skipped. It does not restore anything:
    :func:`lr_find` does.

    In data-parallel training the loss recorded is that of the global batch (the ranks'
    losses averaged, weighted by their batch sizes: one all-reduce per batch), so every rank
    records the curve of a single process at the global batch size and stops at the same
    batch.

    >>> finder = LRFinder(1e-4, 1.0, num_it=5)
    >>> [f"{finder.sweep_lr(i):.0e}" for i in range(5)]
    ['1e-04', '1e-03', '1e-02', '1e-01', '1e+00']
    """

    order = 60  # after the Recorder (50), with the schedulers: the last word on the lr
    run_valid = False

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100,
                 stop_div: bool = True, beta: float = 0.98) -> None:
        if not 0 < start_lr < end_lr:
            raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
        if num_it < 2:
            raise ValueError(f"num_it must be at least 2, got {num_it}")
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        self.start_lr, self.end_lr, self.num_it = float(start_lr), float(end_lr), int(num_it)
        self.stop_div, self.beta = stop_div, beta
        self._reset()

    @property
    def name(self) -> str:
        return "lr_finder"

    def sweep_lr(self, i: int) -> float:
        """The lr of sweep step ``i`` (0 .. num_it - 1)."""
        return self.start_lr * (self.end_lr / self.start_lr) ** (i / (self.num_it - 1))

    def _reset(self) -> None:
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.raw_losses: list[float] = []
        self.n_batch, self.best_loss = 0, math.inf
        self._avg, self._count, self._lr, self._have_loss = 0.0, 0, math.nan, False
        self._ratios: list[float] = []

    def before_fit(self) -> None:
        self._reset()
        # after a DistributedTrainer (order 40) has sharded the loader: n_iter is per rank
        self.learn.n_epoch = max(1, math.ceil(self.num_it / max(1, self.learn.n_iter)))
        lrs = [float(g["lr"]) for g in self.learn.opt.param_groups]
        top = max(lrs, default=0.0)
        self._ratios = [lr / top if top > 0 else 1.0 for lr in lrs]

    def before_batch(self) -> None:
        self._have_loss = False
        self._lr = self.sweep_lr(self.n_batch)
        for group, ratio in zip(self.learn.opt.param_groups, self._ratios, strict=True):
            value = self._lr * ratio
            if isinstance(group["lr"], Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def after_loss(self) -> None:
        self._have_loss = True

    def after_batch(self) -> None:
        self.n_batch += 1
        # not a batch cancelled before its loss, nor one without targets
        have = self._have_loss
        loss = float(self.learn.loss.detach()) if have else math.nan  # the one host read
        if data_parallel_size(self.learn) > 1:  # the global batch's loss, on every rank
            bs = _batch_size(self.learn) if have else 0
            total, n = all_reduce_sum([loss * bs if have else 0.0, bs]).tolist()
            have, loss = n > 0, total / n if n else math.nan
        if have:
            self._count += 1
            self._avg = self.beta * self._avg + (1 - self.beta) * loss
            smooth = self._avg / (1 - self.beta**self._count)
            self.lrs.append(self._lr)
            self.losses.append(smooth)
            self.raw_losses.append(loss)
            self.best_loss = min(self.best_loss, smooth)
            if self.stop_div and (not math.isfinite(smooth) or smooth > 4 * self.best_loss):
                raise CancelFitException()
        if self.n_batch >= self.num_it:
            raise CancelFitException()

    def before_validate(self) -> None:
        raise CancelValidException()


# -- the result ----------------------------------------------------------------------------------
class SuggestedLRs(tuple):
    """Base of the named tuples :func:`lr_find` returns: one field per suggestion function,
    named after it (``res.valley``), plus the recorded curve as attributes ``lrs`` and
    ``losses`` (smoothed) and ``raw_losses``, numpy arrays over every recorded batch."""

    __slots__ = ()
    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray


@functools.lru_cache(maxsize=64)
def _suggested_type(names: tuple[str, ...]) -> type:
    # rename: a name that is no identifier (a lambda's) becomes _0, _1, ...
    base = collections.namedtuple("SuggestedLRs", names, rename=True)  # type: ignore[misc]
    # No __slots__: instances get a __dict__ for the curve attributes.
    return type("SuggestedLRs", (base, SuggestedLRs), {"__doc__": SuggestedLRs.__doc__})


def _func_name(func: Callable[..., Any]) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", "suggestion")


def _unique(names: Sequence[str]) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        base, k = name, 2
        while name in out:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    return tuple(out)


# -- snapshot / restore ----------------------------------------------------------------------------
_LOOP_ATTRS = ("epoch", "n_epoch", "start_epoch", "iter", "n_iter", "train_iter", "pct_train",
               "training")


def _clone(obj: Any) -> Any:
    """A deep copy in which each tensor is cloned on its own (a view into a flat buffer copies
    just its elements)."""
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return type(obj)((k, _clone(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_clone(v) for v in obj)
    return copy.deepcopy(obj)


@contextmanager
def _restored(learn: Learner) -> Iterator[None]:
    """Runs the block, then puts back model weights and buffers, gradients, train/eval modes,
    the optimizer (or its absence), the loss scaler, the torch RNGs and the loop counters."""
    model = learn.model
    params = list(model.parameters())
    model_state = _clone(model.state_dict())
    grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
    modes = [m.training for m in model.modules()]
    opt = learn.opt
    opt_state = None if opt is None else _clone(opt.state_dict())
    scaler = getattr(learn, "scaler", None)
    scaler_state = _clone(scaler.state_dict()) if scaler is not None else None
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    loop = {k: getattr(learn, k) for k in _LOOP_ATTRS if hasattr(learn, k)}
    try:
        yield
    finally:
        with torch.no_grad():
            model.load_state_dict(model_state)
            if opt is None:
                learn.opt = None  # the next fit creates a fresh one, as it would have
            else:
                learn.opt = opt
                # Zero the live state in place first: a flat optimizer (flat=True) keeps its
                # state in buffers that load_state_dict does not clear for params that had
                # no state before the sweep.
                for state in opt.state.values():
                    for value in state.values():
                        if isinstance(value, Tensor):
                            value.zero_()
                opt.load_state_dict(opt_state)
            for p, g in zip(params, grads, strict=True):
                if g is None:
                    p.grad = None
                elif p.grad is not None and p.grad.shape == g.shape:
                    p.grad.copy_(g)  # keeps a flat optimizer's gradient views
                else:
                    p.grad = g
        for m, mode in zip(model.modules(), modes, strict=True):
            m.training = mode
        if scaler is not None and scaler_state:
            scaler.load_state_dict(scaler_state)
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        for k, v in loop.items():
            setattr(learn, k, v)


# -- lr_find -------------------------------------------------------------------------------------
#: The learner's callbacks that sit the sweep out: its epochs are not training epochs (no
#: early stopping, no checkpoints of the sweep's weights, no rows in the training log).
_EPOCH_LEVEL = (TrackerCallback, CSVLogger)


def _group_lrs(learn: Learner) -> np.ndarray:
    """The optimizer's current lr per layer group (the largest of its param groups')."""
    lrs = np.zeros(learn.n_groups)
    for g in learn.opt.param_groups:
        i = g.get("layer_group", 0)
        lrs[i] = max(lrs[i], float(g["lr"]))
    return lrs


def _curve_for_suggestions(lrs: np.ndarray, losses: np.ndarray,
                           num_it: int) -> tuple[np.ndarray, np.ndarray]:
    """fastai's trimming: drop everything from the first non-finite loss, then the first
    ``num_it // 10`` and the last 5 points (kept whole when that would leave fewer than 2)."""
    bad = np.nonzero(~np.isfinite(losses))[0]
    if len(bad):
        lrs, losses = lrs[:bad[0]], losses[:bad[0]]
    start, end = num_it // 10, len(losses) - 5
    if end - start >= 2:
        lrs, losses = lrs[start:end], losses[start:end]
    return lrs, losses


def lr_find(learn: Learner, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100,
            stop_div: bool = True, suggest_funcs: Sequence[SuggestFunc] | None = (valley,),
            plot: str | Path | None = None) -> SuggestedLRs:
    """The LR range test: trains up to ``num_it`` batches (over as many epochs as that takes)
    with the lr growing exponentially from ``start_lr`` to ``end_lr`` (see :class:`LRFinder`),
    then restores the learner: model, optimizer state, gradients, loss scaler, RNG state and
    loop counters are bit-identical afterwards, also when the sweep raises (an optimizer
    that did not exist before is dropped again; the other callbacks' own records, such as
    the Recorder's history, do show the sweep). The learner's tracker callbacks
    (``EarlyStopping``, ``SaveModel``) and ``CSVLogger`` sit the sweep out. The sweep starts
    from the learning rates the optimizer holds (their ratios between layer groups are
    kept) and runs with the learner's ``wd``.

    Returns a named tuple with one suggested lr per function in ``suggest_funcs`` (fields
    named after them: :func:`valley`, :func:`steep`, :func:`minimum`, :func:`slide`, or your
    own ``f(lrs, losses) -> lr``), each clipped into the swept range, and the recorded curve
    as ``.lrs``, ``.losses`` (smoothed) and ``.raw_losses``. The functions see fastai's
    trimmed curve (from the first non-finite loss on dropped, then the first ``num_it // 10``
    and the last 5 points). ``plot``: write a PNG of smoothed loss against lr (log scale)
    with the suggestions marked (needs matplotlib).

    >>> import torch
    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.randn(512, 8); y = (x[:, 0] > 0).long()
    >>> dls = DataLoaders.from_tensors(x[:448], y[:448], x[448:], y[448:], bs=32, device="cpu")
    >>> learn = Learner(dls, torch.nn.Linear(8, 2), torch.nn.functional.cross_entropy,
    ...                 quiet=True)
    >>> res = lr_find(learn, num_it=30, suggest_funcs=(valley, steep))
    >>> res._fields, bool(1e-7 <= res.valley <= 10), len(res.lrs) <= 30, learn.opt is None
    (('valley', 'steep'), True, True, True)
    """
    finder = LRFinder(start_lr, end_lr, num_it, stop_div)
    n_epoch = 1  # the finder sets it once the fit's loader (sharded or not) is known
    quiet, cbs = learn.quiet, learn.cbs
    learn.quiet = True  # the sweep's epochs are not training epochs: print no table
    learn.cbs = [cb for cb in cbs if not isinstance(cb, _EPOCH_LEVEL)]
    try:
        with _restored(learn):
            if learn.opt is None:
                learn.create_opt()
            # fit(lr=None) would reset every group to learn.lr: hand it the current lrs
            learn.fit(n_epoch, lr=_group_lrs(learn), cbs=[finder])
    finally:
        learn.quiet, learn.cbs = quiet, cbs
    lrs = np.asarray(finder.lrs, dtype=np.float64)
    losses = np.asarray(finder.losses, dtype=np.float64)
    funcs = tuple(suggest_funcs or ())
    values: list[float] = []
    if funcs:
        c_lrs, c_losses = _curve_for_suggestions(lrs, losses, num_it)
        if len(c_lrs) == 0:
            raise RuntimeError("lr_find recorded no finite loss (an empty train loader, or "
                               "a loss not finite from the first batch on: try a smaller "
                               "start_lr)")
        hi = float(lrs.max())
        values = [float(np.clip(f(c_lrs, c_losses), start_lr, hi)) for f in funcs]
    result = _suggested_type(_unique([_func_name(f) for f in funcs]))(*values)
    result.lrs, result.losses = lrs, losses
    result.raw_losses = np.asarray(finder.raw_losses, dtype=np.float64)
    if plot is not None:
        plot_lr_find(lrs, losses, plot, dict(zip(result._fields, values, strict=True)))
    return result


def plot_lr_find(lrs: Sequence[float], losses: Sequence[float], path: str | Path,
                 suggestions: dict[str, float] | None = None, skip_end: int = 5) -> Path:
    """Writes a PNG of ``losses`` against ``lrs`` (log x axis) to ``path``, without the last
    ``skip_end`` points (as fastai; kept when that would leave fewer than 2) and non-finite
    ones, each suggestion marked on the curve and labelled with its value.

    >>> import tempfile, pathlib
    >>> lrs = np.geomspace(1e-5, 1.0, 50); losses = 2 - np.tanh(np.log10(lrs) + 2)
    >>> out = plot_lr_find(lrs, losses, pathlib.Path(tempfile.mkdtemp()) / "lr.png",
    ...                    {"steep": steep(lrs, losses)})
    >>> out.read_bytes()[:4] == b"\\x89PNG"
    True
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is an optional dependency
        raise ImportError("plotting the LR finder needs matplotlib (pip install "
                          "'fastext[bench]')") from e
    lrs_a, losses_a = (np.asarray(a, dtype=np.float64) for a in (lrs, losses))
    if skip_end and len(lrs_a) - skip_end >= 2:
        lrs_a, losses_a = lrs_a[:-skip_end], losses_a[:-skip_end]
    ok = np.isfinite(losses_a)
    lrs_a, losses_a = lrs_a[ok], losses_a[ok]
    fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot(lrs_a, losses_a, color="C0")
    ax.set_xscale("log")
    ax.set_xlabel("Learning rate")
    ax.set_ylabel("Loss (smoothed)")
    ax.set_title("LR range test")
    if suggestions and len(lrs_a):
        log_lrs = np.log(lrs_a)
        for k, (name, lr) in enumerate(suggestions.items()):
            at = float(np.interp(math.log(lr), log_lrs, losses_a))
            ax.plot([lr], [at], "o", color=f"C{k + 1}", label=f"{name}: {lr:.2e}")
        ax.legend(loc="best")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
