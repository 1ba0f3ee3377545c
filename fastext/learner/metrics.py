"""Validation metrics: per-batch functions averaged over the dataset, and whole-dataset metrics.

A metric is either a plain function ``f(pred, *yb) -> scalar tensor``, which
:func:`as_metric` wraps in an :class:`AvgMetric` (the batch-size weighted mean over the
validation set), or a :class:`Metric` that accumulates its own statistics over the whole set
(:class:`FBeta`, :class:`RMSE`). The Learner calls ``reset`` before validation,
``accumulate(learn)`` after each batch (reading ``learn.pred`` and ``learn.yb``) and reads
``value`` at the end.

Accumulators stay tensors on the model's device; the only host read is ``value``.

>>> import torch
>>> pred, targ = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]]), torch.tensor([0, 1, 1])
>>> round(accuracy(pred, targ).item(), 4), round(error_rate(pred, targ).item(), 4)
(0.6667, 0.3333)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from .callback import snake_case

__all__ = [
    "Metric", "AvgMetric", "as_metric", "accuracy", "error_rate", "top_k_accuracy", "TopK",
    "accuracy_multi", "FBeta", "RMSE", "rmse", "ExpRMSPE", "exp_rmspe", "mse", "mae",
    "LossTerm",
]


def _func_name(func: Callable) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def _batch_size(learn: Any) -> int:
    yb = getattr(learn, "yb", ())
    first = yb[0] if len(yb) else learn.pred
    return first.shape[0] if first.ndim else 1


class Metric:
    """A metric accumulated over a whole validation pass.

    Subclasses override :meth:`reset`, :meth:`accumulate` and :attr:`value`; :attr:`name`
    defaults to the snake_case class name.

    >>> import torch
    >>> from types import SimpleNamespace
    >>> class Count(Metric):
    ...     def reset(self): self.n = 0
    ...     def accumulate(self, learn): self.n += len(learn.pred)
    ...     @property
    ...     def value(self): return float(self.n)
    >>> m = Count(); m.reset(); m.accumulate(SimpleNamespace(pred=torch.zeros(3))); m.value
    3.0
    >>> m.name
    'count'
    """

    _name: str | None = None

    def reset(self) -> None:
        """Forget everything accumulated (called before each validation pass)."""

    def accumulate(self, learn: Any) -> None:
        """Add the batch in ``learn.pred`` / ``learn.yb`` to the statistics."""
        raise NotImplementedError

    @property
    def value(self) -> float:
        """The metric over everything accumulated since the last :meth:`reset`."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """Column name in the Recorder's table."""
        return self._name if self._name is not None else snake_case(type(self).__name__)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class AvgMetric(Metric):
    """Batch-size weighted mean of ``func(pred, *yb)`` over the batches of a pass.

    With equal per-sample weights this is the metric of the whole set, whatever the size of
    the last batch.

    >>> import torch
    >>> from types import SimpleNamespace
    >>> m = AvgMetric(accuracy); m.reset()
    >>> m.accumulate(SimpleNamespace(pred=torch.eye(2), yb=(torch.tensor([0, 1]),)))
    >>> m.accumulate(SimpleNamespace(pred=torch.eye(2)[:1], yb=(torch.tensor([1]),)))
    >>> round(m.value, 4), m.name
    (0.6667, 'accuracy')
    """

    def __init__(self, func: Callable[..., Tensor], name: str | None = None) -> None:
        self.func = func
        self._name = name if name is not None else _func_name(func)
        self.reset()

    def reset(self) -> None:
        self.total: Tensor | float = 0.0
        self.count = 0

    def accumulate(self, learn: Any) -> None:
        bs = _batch_size(learn)
        val = self.func(learn.pred, *learn.yb)
        val = val.detach().float() if isinstance(val, Tensor) else float(val)
        self.total = self.total + val * bs
        self.count += bs

    @property
    def value(self) -> float:
        if self.count == 0:
            return math.nan
        total = self.total.item() if isinstance(self.total, Tensor) else self.total
        return total / self.count


def as_metric(m: Metric | Callable[..., Tensor]) -> Metric:
    """A :class:`Metric` as it is, a ``Metric`` subclass instantiated, a function wrapped in
    :class:`AvgMetric`.

    >>> as_metric(accuracy)
    AvgMetric('accuracy')
    >>> as_metric(RMSE)
    RMSE('rmse')
    """
    if isinstance(m, Metric):
        return m
    if isinstance(m, type) and issubclass(m, Metric):
        return m()
    if callable(m):
        return AvgMetric(m)
    raise TypeError(f"not a metric: {m!r}")


def _flat_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    a, b = a.reshape(-1), b.reshape(-1)
    if a.numel() != b.numel():
        raise ValueError(f"predictions ({a.numel()}) and targets ({b.numel()}) differ in size")
    return a, b


def accuracy(pred: Tensor, targ: Tensor, axis: int = -1) -> Tensor:
    """Fraction of samples whose argmax over ``axis`` equals the target class.

    >>> import torch
    >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])).item()
    0.5
    """
    p, t = _flat_pair(pred.argmax(dim=axis), targ)
    return (p == t).float().mean()


def error_rate(pred: Tensor, targ: Tensor, axis: int = -1) -> Tensor:
    """``1 - accuracy``.

    >>> import torch
    >>> error_rate(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])).item()
    0.5
    """
    return 1 - accuracy(pred, targ, axis=axis)


def top_k_accuracy(pred: Tensor, targ: Tensor, k: int = 5, axis: int = -1) -> Tensor:
    """Fraction of samples whose target is among the ``k`` highest scores over ``axis``.

    >>> import torch
    >>> pred = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    >>> top_k_accuracy(pred, torch.tensor([1, 0]), k=2).item()
    0.5
    """
    k = min(k, pred.shape[axis])
    top = pred.topk(k, dim=axis).indices
    top = top.movedim(axis, -1).reshape(-1, k)
    _, t = _flat_pair(top[:, 0], targ)
    return (top == t.unsqueeze(-1)).any(dim=-1).float().mean()


def TopK(k: int = 5, axis: int = -1) -> AvgMetric:  # noqa: N802 (reads as a metric class)
    """Top-``k`` accuracy as a metric named ``top_{k}_accuracy``.

    >>> TopK(3)
    AvgMetric('top_3_accuracy')
    """
    return AvgMetric(functools.partial(top_k_accuracy, k=k, axis=axis), name=f"top_{k}_accuracy")


def accuracy_multi(pred: Tensor, targ: Tensor, thresh: float = 0.5,
                   sigmoid: bool = True) -> Tensor:
    """Multi-label accuracy: the fraction of (sample, label) pairs where ``pred > thresh``
    agrees with the multi-hot target (``pred`` passes through a sigmoid first by default).

    >>> import torch
    >>> pred = torch.tensor([[3.0, -3.0], [3.0, 3.0]])
    >>> accuracy_multi(pred, torch.tensor([[1, 0], [0, 1]])).item()
    0.75
    """
    if sigmoid:
        pred = pred.sigmoid()
    p, t = _flat_pair(pred > thresh, targ.bool())
    return (p == t).float().mean()


def mse(pred: Tensor, targ: Tensor) -> Tensor:
    """Mean squared error over all elements.

    >>> import torch
    >>> mse(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])).item()
    2.0
    """
    p, t = _flat_pair(pred, targ)
    return (p.float() - t.float()).square().mean()


def mae(pred: Tensor, targ: Tensor) -> Tensor:
    """Mean absolute error over all elements.

    >>> import torch
    >>> mae(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])).item()
    1.0
    """
    p, t = _flat_pair(pred, targ)
    return (p.float() - t.float()).abs().mean()


class RMSE(Metric):
    """Root mean squared error over the whole set: ``sqrt(sum of squared errors / number of
    elements)``, not a mean of batch RMSEs.

    >>> import torch
    >>> from types import SimpleNamespace
    >>> m = RMSE(); m.reset()
    >>> m.accumulate(SimpleNamespace(pred=torch.tensor([0.0, 0.0]), yb=(torch.tensor([1.0, 1.0]),)))
    >>> m.accumulate(SimpleNamespace(pred=torch.tensor([0.0]), yb=(torch.tensor([4.0]),)))
    >>> m.value
    2.449489742783178
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sse: Tensor | float = 0.0
        self.n = 0

    def accumulate(self, learn: Any) -> None:
        p, t = _flat_pair(learn.pred.detach(), learn.yb[0])
        self.sse = self.sse + self.errors(p.float(), t.float()).square().sum()
        self.n += p.numel()

    @staticmethod
    def errors(pred: Tensor, targ: Tensor) -> Tensor:
        """The per-element errors whose root mean square this metric is."""
        return pred - targ

    @property
    def value(self) -> float:
        if self.n == 0:
            return math.nan
        sse = self.sse.item() if isinstance(self.sse, Tensor) else self.sse
        return math.sqrt(sse / self.n)


rmse = RMSE()
"""A ready :class:`RMSE` (one shared instance; use ``RMSE()`` for learners validating at once)."""


class ExpRMSPE(RMSE):
    """Root mean squared percentage error of ``exp`` of predictions and targets over the whole
    set (the Rossmann lesson's metric on log sales; fastai's ``exp_rmspe``, an accumulated
    metric): ``sqrt(mean(((exp(t) - exp(p)) / exp(t))^2))``. Averaging per-batch values
    instead (the course's function as a plain metric) gives a lower, biased figure.

    >>> import torch
    >>> from types import SimpleNamespace
    >>> m = ExpRMSPE(); m.reset()
    >>> t = torch.tensor([1.0, 2.0]).log()
    >>> m.accumulate(SimpleNamespace(pred=torch.tensor([1.1, 1.0]).log(), yb=(t,)))
    >>> round(m.value, 6)  # sqrt((0.1 ** 2 + 0.5 ** 2) / 2)
    0.360555
    """

    @staticmethod
    def errors(pred: Tensor, targ: Tensor) -> Tensor:
        return torch.expm1(pred - targ)  # -(exp(t) - exp(p)) / exp(t), without overflow


exp_rmspe = ExpRMSPE()
"""A ready :class:`ExpRMSPE` (one shared instance)."""


class FBeta(Metric):
    """F-beta score over the whole set, as ``sklearn.metrics.fbeta_score``.

    Multi-class (``thresh=None``): the predicted class is the argmax of the last axis and
    the targets are class indices; ``macro`` averages over the classes that occur in the
    targets or the predictions. Multi-label (``thresh`` given): a label is predicted where
    ``sigmoid(pred) > thresh`` (``sigmoid=False`` for probabilities) and the targets are
    multi-hot; ``macro`` averages over all labels. ``micro`` pools the counts;
    ``weighted`` weights each class by its support; ``samples`` (multi-label only: the
    planet lesson's F2) averages each sample's own F-beta over the samples; ``binary``
    scores the class (or label) ``pos_label`` alone, sklearn's and fastai's default for
    two-class data (fastext's default is ``macro``, which any data takes). An undefined
    score counts as 0 (sklearn's default ``zero_division``), also for a sample with no true
    and no predicted label.

    >>> import torch
    >>> from types import SimpleNamespace
    >>> m = FBeta(average="macro"); m.reset()
    >>> m.accumulate(SimpleNamespace(pred=torch.eye(3)[[0, 1, 1]], yb=(torch.tensor([0, 1, 2]),)))
    >>> round(m.value, 4), m.name
    (0.5556, 'f1_score')
    >>> m = FBeta(average="samples", thresh=0.5, sigmoid=False); m.reset()
    >>> m.accumulate(SimpleNamespace(pred=torch.tensor([[1.0, 1.0], [0.0, 0.0]]),
    ...                              yb=(torch.tensor([[1.0, 0.0], [0.0, 0.0]]),)))
    >>> round(m.value, 4)  # (F1 of sample 0 = 2/3, sample 1 undefined = 0) / 2
    0.3333
    >>> m = FBeta(average="binary"); m.reset()  # class 1: tp 1, fp 1, fn 0
    >>> m.accumulate(SimpleNamespace(pred=torch.eye(2)[[1, 1, 0]], yb=(torch.tensor([1, 0, 0]),)))
    >>> round(m.value, 4)
    0.6667
    """

    def __init__(self, beta: float = 1.0,
                 average: Literal["macro", "micro", "weighted", "samples", "binary"] = "macro",
                 thresh: float | None = None, sigmoid: bool = True,
                 name: str | None = None, pos_label: int = 1) -> None:
        if average not in ("macro", "micro", "weighted", "samples", "binary"):
            raise ValueError("average must be 'macro', 'micro', 'weighted', 'samples' or "
                             f"'binary', not {average!r}")
        self.pos_label = pos_label
        if average == "samples" and thresh is None:  # as sklearn: one label per sample
            raise ValueError("average='samples' is for multi-label data: give thresh")
        self.beta, self.average, self.thresh, self.sigmoid = beta, average, thresh, sigmoid
        b = f"{beta:g}".replace(".", "_")
        self._name = name if name is not None else f"f{b}_score"
        self.reset()

    @property
    def dist_state(self) -> tuple[str, ...]:
        """The accumulators the distributed trainer sums over the ranks (this average's)."""
        return ("sample_sum", "n_samples") if self.average == "samples" else ("tp", "fp", "fn")

    def reset(self) -> None:
        self.tp: Tensor | None = None
        self.fp: Tensor | None = None
        self.fn: Tensor | None = None
        self.sample_sum: Tensor | None = None  # sum of per-sample scores ("samples")
        self.n_samples = 0

    def _masks(self, pred: Tensor, targ: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted and true labels as bool (samples, classes)."""
        n_class = pred.shape[-1]
        pred = pred.detach().reshape(-1, n_class)
        if self.thresh is None:  # multi-class
            p = torch.nn.functional.one_hot(pred.argmax(-1), n_class).bool()
            t = torch.nn.functional.one_hot(targ.reshape(-1).long(), n_class).bool()
        else:  # multi-label
            p = (pred.float().sigmoid() if self.sigmoid else pred) > self.thresh
            t = targ.reshape(-1, n_class).bool()
        return p, t

    def _fbeta(self, tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
        b2 = self.beta**2
        den = (1 + b2) * tp + b2 * fn + fp
        return (1 + b2) * tp / den.where(den > 0, torch.ones_like(den))  # tp = 0 where den = 0

    def accumulate(self, learn: Any) -> None:
        p, t = self._masks(learn.pred, learn.yb[0])
        if self.average == "samples":  # one score per row, over its labels
            f = self._fbeta(*((x.sum(1).double()) for x in (p & t, p & ~t, ~p & t)))
            total = f.sum()
            self.sample_sum = total if self.sample_sum is None else self.sample_sum + total
            self.n_samples += len(f)
            return
        tp, fp, fn = (p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0)
        if self.tp is None:
            self.tp, self.fp, self.fn = tp, fp, fn
        else:
            self.tp, self.fp, self.fn = self.tp + tp, self.fp + fp, self.fn + fn

    @property
    def value(self) -> float:
        if self.average == "samples":
            if self.sample_sum is None or self.n_samples == 0:
                return math.nan
            return self.sample_sum.item() / self.n_samples
        if self.tp is None:
            return math.nan
        tp, fp, fn = (x.double() for x in (self.tp, self.fp, self.fn))
        if self.average == "micro":
            tp, fp, fn = tp.sum(), fp.sum(), fn.sum()
        f = self._fbeta(tp, fp, fn)
        if self.average == "micro":
            return f.item()
        if self.average == "binary":
            if not 0 <= self.pos_label < len(f):
                raise ValueError(f"pos_label {self.pos_label} is not one of the {len(f)} "
                                 "classes")
            return f[self.pos_label].item()
        if self.average == "weighted":
            support = tp + fn
            total = support.sum()
            return (f * support).sum().div(total).item() if total > 0 else 0.0
        if self.thresh is None:  # sklearn's multi-class labels: those seen in targets or preds
            seen = (tp + fp + fn) > 0
            return f[seen].mean().item() if seen.any() else 0.0
        return f.mean().item()


class LossTerm(Metric):
    """One term of a loss function that keeps its terms in a ``metrics`` dict of tensors
    (e.g. :class:`fastext.nn.FeatureLoss`): its batch-size weighted mean over the
    validation set.

    >>> from types import SimpleNamespace
    >>> m = LossTerm("gram_0"); m.reset()
    >>> loss = SimpleNamespace(metrics={"gram_0": torch.tensor(2.0)})
    >>> m.accumulate(SimpleNamespace(loss_func=loss, pred=torch.zeros(4), yb=()))
    >>> m.name, m.value
    ('gram_0', 2.0)
    """

    def __init__(self, term: str) -> None:
        self.term, self._name = term, term

    def reset(self) -> None:
        self.total: Tensor | None = None
        self.count = 0

    def accumulate(self, learn: Any) -> None:
        n = _batch_size(learn)
        value = learn.loss_func.metrics[self.term].detach() * n
        self.total = value if self.total is None else self.total + value
        self.count += n

    @property
    def value(self) -> float:
        return float(self.total) / self.count if self.count else float("nan")
