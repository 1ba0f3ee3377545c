"""The Learner: a model, its data, a loss and an optimizer, trained with the course's schedule.

The training loop is a fixed sequence of events (see :mod:`fastext.learner.callback`);
everything optional (recording, progress, schedules, clipping, early stopping, LR finder,
distributed training) is a callback.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._values import plain
from ..amp import LossScaler, to_fp16
from ..data.files import save_torch_file
from ..optim import AdamW
from .callback import (
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidException,
)
from .data import DataLoaders
from .distributed import unwrap_model
from .lr_find import SuggestedLRs
from .schedule import ParamScheduler, combine_scheds, combined_cos, sched_cos, sched_no

__all__ = ["ULMFIT_DIV", "Learner", "body_head_splitter", "ulmfit_slice"]

#: ULMFiT's ratio between the learning rates of consecutive layer groups is 2.6, so four
#: groups down the lowest runs at lr / 2.6**4.
ULMFIT_DIV = 2.6**4

#: Normalisation layers (fastai's ``norm_types``, plus LayerNorm, GroupNorm and RMSNorm): no
#: weight decay unless ``wd_bn_bias``, trainable in frozen groups with ``train_bn``.
_BN = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.LayerNorm,
       nn.GroupNorm, nn.RMSNorm)
PRECISIONS = ("fp32", "fp16", "bf16")


def ulmfit_slice(lr: float) -> slice:
    """``slice(lr / 2.6**4, lr)``: ULMFiT's discriminative learning rates."""
    return slice(lr / ULMFIT_DIV, lr)


def body_head_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Layer groups [body, head]: the model's ``body``/``head`` attributes if it has them,
    else all but the last child and the last child of a multi-child module, else one group
    (empty groups are dropped)."""
    if hasattr(model, "body") and hasattr(model, "head"):
        groups = [model.body, model.head]
    else:
        children = list(model.children())
        if len(children) < 2:
            return [list(model.parameters())]
        groups = [nn.ModuleList(children[:-1]), children[-1]]
    seen: set[int] = set()  # a tied weight (e.g. LM encoder/decoder) goes in its first group
    out = []
    for g in groups:
        params = [p for p in g.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:  # a parameter-free last child (e.g. Flatten) makes no group
            out.append(params)
    return out


def _takes(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` has a parameter called ``name`` that the caller left open (a
    ``**kwargs`` does not count; a ``functools.partial`` that binds it does not take it)."""
    if isinstance(func, functools.partial) and name in func.keywords:
        return False
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):  # a builtin without a signature
        return False


def _three_moms(moms: Sequence[float]) -> tuple[float, float, float]:
    """1cycle momenta as (start, middle, end): fastai v1's two-value ``(max, min)`` (the
    course's ``moms=(0.8, 0.7)``) goes back up to its first value, as fastai v1's schedule.

    >>> _three_moms((0.8, 0.7)), _three_moms((0.95, 0.85, 0.95))
    ((0.8, 0.7, 0.8), (0.95, 0.85, 0.95))
    """
    moms = tuple(float(m) for m in moms)
    if len(moms) == 2:
        return (moms[0], moms[1], moms[0])
    if len(moms) != 3:
        raise ValueError(f"moms must be (start, middle, end) or (max, min), got {moms}")
    return moms  # type: ignore[return-value]


def _default_loss(pred: Tensor, *yb: Tensor) -> Tensor:
    raise ValueError("Learner needs a loss_func")


def float32_cpu(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """``state_dict`` detached on the CPU, floating-point tensors as float32 (what an
    export writes, whatever precision the model trained in).

    >>> float32_cpu({"w": torch.ones(2, dtype=torch.float16), "n": torch.tensor(3)})
    {'w': tensor([1., 1.]), 'n': tensor(3)}
    """
    return {k: (v.float() if v.is_floating_point() else v).detach().cpu()
            for k, v in state_dict.items()}


class Learner:
    """Trains ``model`` on ``dls`` with ``loss_func``.

    Args:
        dls: a :class:`DataLoaders` (train and valid loaders on one device).
        model: the network; moved to ``dls.device``.
        loss_func: ``loss_func(pred, *targets) -> scalar``.
        opt_func: optimizer class or factory ``(param_groups, lr=...) -> Optimizer``
            (default the fused :class:`fastext.optim.AdamW`).
        lr: default learning rate. wd: weight decay (0.1, the course's default), decoupled
            (fastai's ``true_wd``) for AdamW and any optimizer taking
            ``decoupled_weight_decay`` (fastext's RMSprop, torch's Adam), coupled (L2) for
            the others (torch's SGD, RMSprop), and not applied to normalisation layers and
            biases unless ``wd_bn_bias``.
        metrics: functions ``f(pred, *targets)`` or :class:`Metric` objects, a list of
            them or one alone (the course's ``metrics=error_rate``).
        cbs: extra callbacks. splitter: ``model -> list of parameter lists`` (layer
            groups; default :func:`body_head_splitter`). train_bn: keep normalisation layers
            trainable in frozen groups.
        precision: ``"fp32"``, ``"fp16"`` (model converted with
            :func:`fastext.amp.to_fp16`, fp32 master weights in the fused optimizer, dynamic
            loss scaling with :class:`fastext.amp.LossScaler`) or ``"bf16"`` (autocast, no
            scaler).
        path: folder for checkpoints (``path/model_dir``) and :class:`CSVLogger`'s file (the
            plot methods write where the path given to them says).
        channels_last: keep 4-D activations in channels-last memory (oneDNN's and cuDNN's
            faster convolution layout; about 1.7x faster per batch for the MNIST demo CNN on
            this CPU). Default: on when the model has a ``Conv2d``.
        model_dir: the checkpoints' folder under ``path``. wd_bn_bias: also decay
            normalisation layers and biases.
        moms: 1cycle momenta ``(start, middle, end)`` (or ``(max, min)``, read as
            ``(max, min, max)``), AdamW's ``beta1`` or RMSprop's ``momentum``.
        quiet: no progress bar or epoch lines (``None``, the default, prints as ``False``
            does; a distributed fit sets it on the ranks that do not print).

    >>> import torch
    >>> from fastext.learner import DataLoaders, Learner
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(256, 4); y = (x.sum(1) > 0).long()
    >>> dls = DataLoaders.from_tensors(x[:192], y[:192], x[192:], y[192:], bs=32, device="cpu")
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> learn = Learner(dls, model, torch.nn.functional.cross_entropy, quiet=True)
    >>> learn.fit_one_cycle(10, 3e-2)
    >>> learn.validate()[0] < 0.2
    True
    """

    def __init__(self, dls: DataLoaders, model: nn.Module,
                 loss_func: Callable[..., Tensor] | None = None,
                 opt_func: Callable[..., torch.optim.Optimizer] = AdamW, lr: float = 1e-3,
                 wd: float = 0.1, metrics: Any = (), cbs: Iterable[Callback] = (),
                 splitter: Callable[[nn.Module], list[list[nn.Parameter]]] | None = None,
                 train_bn: bool = True, precision: str = "fp32", path: str | Path = ".",
                 model_dir: str = "models", wd_bn_bias: bool = False,
                 moms: tuple[float, ...] = (0.95, 0.85, 0.95),
                 quiet: bool | None = None, channels_last: bool | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        from .metrics import Metric, as_metric

        self.dls, self.loss_func = dls, loss_func or _default_loss
        self.opt_func, self.lr, self.wd, self.moms = opt_func, lr, wd, _three_moms(moms)
        self.splitter = splitter or body_head_splitter
        self.train_bn, self.wd_bn_bias, self.precision = train_bn, wd_bn_bias, precision
        self.path, self.model_dir, self.quiet = Path(path), model_dir, quiet
        self.model = model.to(dls.device)
        if channels_last is None:
            channels_last = any(isinstance(m, nn.Conv2d) for m in model.modules())
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if precision == "fp16":
            to_fp16(self.model)
        self.scaler = LossScaler(dls.device) if precision == "fp16" else None
        if isinstance(metrics, Metric) or callable(metrics):  # one metric alone
            metrics = [metrics]
        self.metrics = [as_metric(m) for m in metrics]
        self.opt: torch.optim.Optimizer | None = None
        self.training, self.epoch, self.n_epoch, self.iter, self.n_iter = False, 0, 1, 0, 0
        self.train_iter, self.pct_train, self.loss = 0, 0.0, torch.zeros(())
        self.batch_done = False  # set once a batch's loss is computed (and after_loss ran)
        self._fitting = False  # inside fit() (its callbacks included)
        self.cbs: list[Callback] = []
        # callback states of the last checkpoint loaded, for the next resumed fit
        self._resume_states: dict[str, Any] = {}
        from .callbacks import ProgressCallback, Recorder

        for cb in (Recorder(), ProgressCallback(), *cbs):
            self.add_cb(cb)

    # -- callbacks ------------------------------------------------------------------
    def add_cb(self, cb: Callback | type) -> Callback:
        """Adds a callback (an instance, or a class to instantiate); ``learn.<cb.name>``."""
        cb = cb() if isinstance(cb, type) else cb
        cb.learn = self
        setattr(self, cb.name, cb)
        self.cbs.append(cb)
        self.cbs.sort(key=lambda c: c.order)
        return cb

    def remove_cb(self, cb: Callback) -> None:
        """Takes ``cb`` out of the learner's callbacks (nothing if it is not there)."""
        if cb in self.cbs:
            self.cbs.remove(cb)
            if getattr(self, cb.name, None) is cb:
                delattr(self, cb.name)

    def __call__(self, event: str) -> None:
        for cb in list(self.cbs):
            cb(event)

    def _keyed_cbs(self) -> list[tuple[str, Callback]]:
        """The callbacks with their keys in a checkpoint: ``cb.state_key``, then ``#2``,
        ``#3``... appended for the later callbacks (in ``order``) with a key already taken."""
        seen: dict[str, int] = {}
        out = []
        for cb in self.cbs:
            key = cb.state_key
            seen[key] = n = seen.get(key, 0) + 1
            out.append((key if n == 1 else f"{key}#{n}", cb))
        return out

    def _with_events(self, fn: Callable[[], None], name: str, cancel: type) -> None:
        try:
            self(f"before_{name}")
            fn()
        except cancel:
            self(f"after_cancel_{name}")
        self(f"after_{name}")

    # -- optimizer and layer groups ---------------------------------------------------
    def layer_groups(self) -> list[list[nn.Parameter]]:
        """The model's parameters by layer group (the ``splitter``'s split), in order:
        discriminative learning rates and freezing go by these groups."""
        return self.splitter(unwrap_model(self.model))

    def _is_norm_or_bias(self) -> set[int]:
        ids = {id(p) for m in self.model.modules() if isinstance(m, _BN)
               for p in m.parameters(recurse=False)}
        ids |= {id(p) for n, p in self.model.named_parameters() if n.endswith("bias")}
        return ids

    def create_opt(self) -> torch.optim.Optimizer:
        """One param group per (layer group, decay or not); ``layer_group`` names the group."""
        no_decay = set() if self.wd_bn_bias else self._is_norm_or_bias()
        groups = []
        for i, params in enumerate(self.layer_groups()):
            decay = [p for p in params if id(p) not in no_decay]
            rest = [p for p in params if id(p) in no_decay]
            for ps, wd in ((decay, self.wd), (rest, 0.0)):
                if ps:
                    groups.append({"params": ps, "weight_decay": wd, "layer_group": i,
                                   "apply_wd": ps is decay})
        kwargs: dict[str, Any] = {"lr": self.lr}
        if _takes(self.opt_func, "decoupled_weight_decay"):
            # fastai's true_wd: RMSprop's normalised step would turn an L2 term into a step
            # of ~lr whatever the weight (fastext RMSprop, torch Adam; AdamW always decouples)
            kwargs["decoupled_weight_decay"] = True
        if self.precision == "fp16":
            self._check_master_weights()
            kwargs["master_weights"] = True
        self.opt = self.opt_func(groups, **kwargs)
        # numpy hyper-parameters (np.linspace, betas from an array) as Python numbers: the
        # param groups go into checkpoints
        for g in self.opt.param_groups:
            g.update({k: plain(v) for k, v in g.items() if k != "params"})
        return self.opt

    # -- precision ---------------------------------------------------------------------
    def to_fp16(self) -> Learner:
        """Mixed precision from now on, as ``Learner(precision="fp16")`` (the course's
        ``learn.to_fp16()``): fp16 model with fp32 BatchNorm, fp32 master weights in the
        optimizer, dynamic loss scaling. The optimizer's state is kept. Returns the learner.

        >>> import torch
        >>> from fastext.learner import DataLoaders, Learner
        >>> x = torch.randn(64, 4); dls = DataLoaders.from_tensors(x, x, x, x, device="cpu")
        >>> learn = Learner(dls, torch.nn.Linear(4, 4), torch.nn.functional.mse_loss).to_fp16()
        >>> learn.precision, learn.model.weight.dtype
        ('fp16', torch.float16)
        """
        return self._set_precision("fp16")

    def to_bf16(self) -> Learner:
        """bfloat16 autocast from now on, as ``Learner(precision="bf16")``; returns the
        learner."""
        return self._set_precision("bf16")

    def to_fp32(self) -> Learner:
        """Full precision from now on; after fp16 the model takes its fp32 master weights
        back (not the fp16 rounding of them). Returns the learner."""
        return self._set_precision("fp32")

    def _set_precision(self, precision: str) -> Learner:
        if self._fitting:
            raise RuntimeError("the precision cannot change during a fit")
        if precision == self.precision:
            return self
        if precision == "fp16":
            self._check_master_weights()  # refused before anything is converted
        model = unwrap_model(self.model)
        state = self.opt.state_dict() if self.opt is not None else None
        if self.precision == "fp16":
            masters = self._master_weights()
            model.float()
            with torch.no_grad():
                for p, master in masters.items():  # the fp16 params are roundings of these
                    p.copy_(master)
        before = (self.precision, self.scaler, self.opt)
        backup = ({k: v.clone() for k, v in model.state_dict().items()}
                  if precision == "fp16" and state is not None else None)
        if precision == "fp16":
            to_fp16(model)
        self.precision = precision
        self.scaler = LossScaler(self.dls.device) if precision == "fp16" else None
        if state is not None:  # same groups and hyper-parameters, the state carried over
            try:
                self.create_opt().load_state_dict(state)
            except Exception:  # an optimizer that refuses: the learner as it was
                self.precision, self.scaler, self.opt = before
                if backup is not None:
                    model.float()
                    model.load_state_dict(backup)
                raise
        return self

    def _master_weights(self) -> dict[nn.Parameter, Tensor]:
        """The optimizer's fp32 master copy of each param that has one (fp16 training)."""
        items = self.opt.state.items() if self.opt is not None else ()
        return {p: st["master"] for p, st in items if isinstance(st, dict) and "master" in st}

    def fp32_state_dict(self) -> dict[str, Tensor]:
        """The model's weights as a float32 CPU ``state_dict`` for export: after fp16
        training each param is its fp32 master weight, not the fp16 rounding the model
        holds; integer buffers keep their dtype.

        >>> import torch
        >>> x, y = torch.randn(8, 2), torch.randn(8, 1)
        >>> dls = DataLoaders.from_tensors(x, y, x, y, bs=4, device="cpu")
        >>> learn = Learner(dls, nn.Linear(2, 1), nn.MSELoss(), precision="fp16", quiet=True)
        >>> learn.fit(1, 1e-2)
        >>> sd, master = learn.fp32_state_dict(), learn.opt.state[learn.model.weight]["master"]
        >>> sd["weight"].dtype, torch.equal(sd["weight"], master), learn.model.weight.dtype
        (torch.float32, True, torch.float16)
        """
        model = unwrap_model(self.model)
        masters = self._master_weights()
        by_name = {name: masters[p] for name, p in model.named_parameters() if p in masters}
        return float32_cpu({k: by_name.get(k, v) for k, v in model.state_dict().items()})

    def _check_master_weights(self) -> None:
        params = inspect.signature(self.opt_func).parameters.values()
        if not any(p.name == "master_weights" or p.kind is p.VAR_KEYWORD for p in params):
            raise ValueError("precision='fp16' keeps fp32 master weights in the optimizer: "
                             "use fastext.optim.AdamW or RMSprop (or precision='bf16')")

    @property
    def n_groups(self) -> int:
        """Number of layer groups (read off the optimizer once it exists: the schedules ask
        every batch, and walking the model each time would cost)."""
        if self.opt is not None:
            return 1 + max(g.get("layer_group", 0) for g in self.opt.param_groups)
        return len(self.layer_groups())

    def lr_range(self, lr: float | slice | Sequence[float]) -> np.ndarray:
        """Learning rates per layer group: ``slice(lo, hi)`` spreads them geometrically,
        ``slice(hi)`` gives ``hi / 10`` to all groups but the last, a number to all."""
        n = self.n_groups
        if isinstance(lr, slice):
            if lr.start is None:
                return np.array([lr.stop / 10] * (n - 1) + [lr.stop])
            if lr.start == lr.stop:  # exactly that rate (geomspace can be an ulp off)
                return np.full(n, float(lr.stop))
            return np.geomspace(lr.start, lr.stop, n) if n > 1 else np.array([lr.stop])
        if np.ndim(lr) == 0:
            return np.full(n, float(lr))
        arr = np.asarray(lr, dtype=float)
        if len(arr) != n:
            raise ValueError(f"{len(arr)} learning rates for {n} layer groups")
        return arr

    def set_hypers(self, lr: Any = None, mom: Any = None, wd: float | None = None) -> None:
        """Sets lr / momentum (scalar or one per layer group) / weight decay on the optimizer.
        ``mom`` is ``betas[0]`` for Adam-like optimizers, ``momentum`` otherwise."""
        if self.opt is None:
            self.create_opt()
        lrs = None if lr is None else np.broadcast_to(np.asarray(lr, float), (self.n_groups,))
        moms = None if mom is None else np.broadcast_to(np.asarray(mom, float), (self.n_groups,))
        for g in self.opt.param_groups:
            i = g.get("layer_group", 0)
            if lrs is not None:
                g["lr"] = float(lrs[i])
            if moms is not None:
                if "betas" in g:
                    g["betas"] = (float(moms[i]), g["betas"][1])
                elif g.get("momentum", 0) > 0:  # an optimizer built without momentum stays so
                    g["momentum"] = float(moms[i])
            if wd is not None and g.get("apply_wd", g["weight_decay"] != 0):
                g["weight_decay"] = plain(wd)

    def freeze_to(self, n: int) -> None:
        """Trains only layer groups ``n`` onwards (negative counts from the end, as a slice
        would: ``n <= -len(groups)`` trains them all); frozen groups keep their normalisation
        layers trainable when ``train_bn``."""
        groups = self.layer_groups()
        n = max(len(groups) + n, 0) if n < 0 else min(n, len(groups))
        keep = self._norm_params() if self.train_bn else set()
        for i, params in enumerate(groups):
            for p in params:
                p.requires_grad_(i >= n or id(p) in keep)

    def _norm_params(self) -> set[int]:
        return {id(p) for m in self.model.modules() if isinstance(m, _BN)
                for p in m.parameters(recurse=False)}

    def freeze(self) -> None:
        """Trains only the last layer group (and normalisation layers with ``train_bn``)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Trains every layer group (``freeze_to(0)``)."""
        self.freeze_to(0)

    # -- the loop ---------------------------------------------------------------------
    def fit(self, n_epoch: int, lr: float | slice | Sequence[float] | None = None,
            wd: float | None = None,
            cbs: Iterable[Callback] = (), start_epoch: int = 0) -> None:
        """Trains ``n_epoch`` epochs at a constant ``lr`` (plus whatever ``cbs`` schedule)
        with weight decay ``wd``; as in fastai, ``None`` means the learner's ``lr`` / ``wd``
        (not whatever the last fit left on the optimizer). ``start_epoch`` resumes a fit
        after a checkpoint: the epochs before it are skipped, the schedules continue from
        where they were, and the callbacks get back the state the checkpoint holds for them
        (see :meth:`load`).

        However the fit ends (normally, cancelled, or by an exception that ``after_fit``
        never sees), it then fires ``finally_fit``, so that callbacks put back state they
        changed for the fit (``DistributedTrainer`` unwraps the model and unshards the
        loaders), and removes the callbacks in ``cbs``."""
        if self.opt is None:
            self.create_opt()
        self.set_hypers(lr=self.lr_range(self.lr if lr is None else lr),
                        wd=self.wd if wd is None else wd)
        added = [self.add_cb(cb) for cb in cbs]
        self.n_epoch, self.start_epoch = n_epoch, start_epoch
        self.n_iter = len(self.dls.train)
        self.train_iter = start_epoch * self.n_iter
        self.pct_train = self.train_iter / max(1, n_epoch * self.n_iter)
        self._fitting = True
        try:
            self._with_events(self._do_fit, "fit", CancelFitException)
        finally:
            self._fitting = False
            try:
                self("finally_fit")
            finally:
                for cb in added:
                    self.remove_cb(cb)

    def _do_fit(self) -> None:
        if self.start_epoch > 0:
            self._resume_callbacks()
        for epoch in range(self.start_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch", CancelEpochException)

    def _resume_callbacks(self) -> None:
        """Hands the callback states of the checkpoint last loaded to the callbacks with
        the same keys (after their ``before_fit``, which resets them); once: a later
        resumed fit needs a checkpoint loaded again."""
        states, self._resume_states = self._resume_states, {}
        for key, cb in self._keyed_cbs():
            if key in states:
                cb.load_state_dict(states[key])

    def _do_epoch(self) -> None:
        self._with_events(self._do_train, "train", CancelTrainException)
        self._do_epoch_validate()

    def _do_epoch_validate(self, dl: Iterable | None = None) -> None:
        """The validation phase on ``dl`` (default the valid loader) inside its events
        (``before_validate`` ... ``after_validate``); NaN results when it is cancelled."""
        self.dl = dl if dl is not None else self.dls.valid
        self.valid_loss, self.metric_values = math.nan, [math.nan] * len(self.metrics)
        self._with_events(self._do_validate, "validate", CancelValidException)

    def _do_train(self) -> None:
        self.training = True
        self.model.train()
        self.dl = self.dls.train
        self.dl.set_epoch(self.epoch)
        self.n_iter = len(self.dl)
        for i, batch in enumerate(self.dl):
            self.iter = i
            self._split(batch)
            self.batch_done = False
            self._with_events(self._do_one_batch, "batch", CancelBatchException)
            self.train_iter += 1
            self.pct_train = self.train_iter / (self.n_epoch * self.n_iter)

    def _split(self, batch: Sequence[Any]) -> None:
        """Inputs are all but the last element of a batch; the target is the last."""
        batch = tuple(batch)
        self.xb, self.yb = (batch[:-1], batch[-1:]) if len(batch) > 1 else (batch, ())
        if self.channels_last:
            self.xb = tuple(x.contiguous(memory_format=torch.channels_last)
                            if isinstance(x, Tensor) and x.dim() == 4 else x for x in self.xb)
        if self.precision == "fp16":
            self.xb = tuple(x.half() if torch.is_floating_point(x) else x for x in self.xb)

    def _autocast(self) -> Any:
        if self.precision == "bf16":
            return torch.autocast(self.dls.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def model_output(self, batch: Sequence[Any]) -> Any:
        """The model's output on ``batch`` fed as the training loop feeds it: the inputs
        (all but the last element) laid out and cast for ``channels_last`` and ``precision``,
        under its autocast; sets ``xb`` / ``yb``. The model's mode and the grad mode are the
        caller's (e.g. ``torch.no_grad()`` in evaluation, as ``PreciseBN`` and
        ``ClassificationInterpretation`` use it)."""
        self._split(batch)
        with self._autocast():
            return self.model(*self.xb)

    def _do_one_batch(self) -> None:
        with self._autocast():
            self.pred = self.model(*self.xb)
            self("after_pred")
            if not self.yb:
                return
            pred = self.pred.float() if self.precision == "fp16" else self.pred
            self.loss = self.loss_func(pred, *self.yb)
        self.loss_grad = self.loss if self.scaler is None else self.scaler.scale(self.loss)
        self("after_loss")
        self.batch_done = True  # pred and loss are this batch's: validation counts it
        if not self.training:
            return
        self("before_backward")
        self.loss_grad.backward()
        self("after_backward")
        self._with_events(self._do_step, "step", CancelStepException)
        # also after a cancelled step (fastai's order): a skipped bad batch's gradients must
        # not leak into the next one; accumulating callbacks cancel the batch instead
        self.opt.zero_grad()

    def _do_step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()

    def _do_validate(self) -> None:
        self.training = False
        self.model.eval()
        self.n_iter_valid = len(self.dl)
        for m in self.metrics:
            m.reset()
        total, count = torch.zeros((), device=self.dls.device, dtype=torch.float64), 0
        with torch.no_grad():
            for i, batch in enumerate(self.dl):
                self.iter = i
                self._split(batch)
                self.batch_done = False
                self._with_events(self._do_one_batch, "batch", CancelBatchException)
                if self.batch_done:  # not cancelled before its loss, nor without targets
                    n = len(self.yb[0])
                    total += self.loss.detach().double() * n
                    count += n
                    for m in self.metrics:
                        m.accumulate(self)
        # one host read per validation; NaN, as the metrics, when no sample counted
        self.valid_loss = float(total / count) if count else math.nan
        self.metric_values = [float(m.value) for m in self.metrics]

    def validate(self, dl: Iterable | None = None) -> list[float]:
        """Validation loss and metric values on ``dl`` (default the valid loader): the
        validation phase of an epoch, events included (``before_validate``,
        ``after_validate``, the batch events), as fastai's ``validate``."""
        if self.opt is None:
            self.create_opt()
        training = self.training
        try:
            self._do_epoch_validate(dl)
        finally:
            self.training = training
        return [self.valid_loss, *self.metric_values]

    # -- schedules ----------------------------------------------------------------------
    def fit_one_cycle(self, n_epoch: int,
                      lr_max: float | slice | Sequence[float] | None = None,
                      div: float = 25.0, div_final: float = 1e5, pct_start: float = 0.25,
                      wd: float | None = None, moms: tuple[float, ...] | None = None,
                      cbs: Iterable[Callback] = (), start_epoch: int = 0, *,
                      max_lr: float | slice | Sequence[float] | None = None) -> None:
        """1cycle: lr warms up (cosine) from ``lr_max/div`` to ``lr_max`` over ``pct_start``
        of the fit, then anneals to ``lr_max/div_final``; momentum goes the opposite way
        through ``moms`` (``(start, middle, end)``, or the course's ``(0.8, 0.7)`` read as
        ``(0.8, 0.7, 0.8)``). ``max_lr`` is the course's (fastai v1) name for ``lr_max``."""
        if max_lr is not None:
            if lr_max is not None:
                raise TypeError("give lr_max or max_lr (its fastai v1 name), not both")
            lr_max = max_lr
        lr_max = self.lr_range(self.lr if lr_max is None else lr_max)
        moms = self.moms if moms is None else _three_moms(moms)
        scheds = {"lr": combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final),
                  "mom": combined_cos(pct_start, *moms)}
        self.fit(n_epoch, wd=wd, cbs=[ParamScheduler(scheds), *cbs], start_epoch=start_epoch)

    def fit_flat_cos(self, n_epoch: int, lr: float | slice | None = None,
                     div_final: float = 1e5, pct_start: float = 0.75, wd: float | None = None,
                     cbs: Iterable[Callback] = (), start_epoch: int = 0) -> None:
        """Flat lr for ``pct_start`` of the fit, then cosine annealing to ``lr/div_final``."""
        lr = self.lr_range(self.lr if lr is None else lr)
        sched = combine_scheds([pct_start, 1 - pct_start],
                               [sched_no(lr, lr), sched_cos(lr, lr / div_final)])
        self.fit(n_epoch, wd=wd, cbs=[ParamScheduler({"lr": sched}), *cbs],
                 start_epoch=start_epoch)

    def fine_tune(self, epochs: int, base_lr: float = 2e-3, freeze_epochs: int = 1,
                  lr_mult: float = 100, pct_start: float = 0.3, div: float = 5.0,
                  **kwargs: Any) -> None:
        """Transfer learning: train the head with the body frozen, then everything with
        discriminative learning rates ``slice(base_lr / 2 / lr_mult, base_lr / 2)``."""
        self.freeze()
        self.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, **kwargs)
        base_lr /= 2
        self.unfreeze()
        self.fit_one_cycle(epochs, slice(base_lr / lr_mult, base_lr), pct_start=pct_start,
                           div=div, **kwargs)

    def get_preds(self, dl: Iterable | None = None, with_input: bool = False,
                  with_decoded: bool = False, act: Callable[[Tensor], Tensor] | None = None,
                  ) -> tuple[Any, ...]:
        """``(preds, targets)`` over ``dl`` (default the validation loader), the model's
        outputs through the activation its loss implies (softmax for cross-entropy, sigmoid
        for BCE-with-logits), as fastai's ``get_preds``; see
        :func:`fastext.learner.predict.get_preds`."""
        from .predict import get_preds

        return get_preds(self, dl, with_input, with_decoded, act)

    def lr_find(self, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100,
                stop_div: bool = True, suggest_funcs: Sequence[Callable] | None = None,
                plot: str | Path | None = None) -> SuggestedLRs:
        """The LR range test: an exponential sweep, model and optimizer restored afterwards;
        returns the suggestions (default ``valley``); see ``fastext.learner.lr_find``."""
        from .lr_find import lr_find, valley

        return lr_find(self, start_lr, end_lr, num_it, stop_div,
                       (valley,) if suggest_funcs is None else suggest_funcs, plot)

    # -- checkpoints ----------------------------------------------------------------
    def model_file(self, name: str | Path) -> Path:
        """Where a checkpoint called ``name`` lives (for :meth:`save` and :meth:`load`
        alike): ``name`` itself when it names a file (it ends in ``.pth`` or is absolute),
        else ``path/model_dir/name.pth`` (also for a name with a dot, such as
        ``stage-1.5``)."""
        file = Path(name)
        if file.suffix == ".pth" or file.is_absolute():
            return file
        return self.path / self.model_dir / f"{name}.pth"

    def save(self, name: str | Path, with_opt: bool = True) -> Path:
        """Writes model, optimizer, scaler, epoch, schedule position, RNG state and the
        callbacks' states (:meth:`Callback.state_dict`, e.g. a tracker's best value) to
        :meth:`model_file` (``path/model_dir/name.pth`` for a name), loadable with
        ``torch.load(weights_only=True)``. A checkpoint to resume from is written at the end
        of an epoch (``after_epoch``; the trackers have judged the epoch by then)."""
        callbacks = {key: cb_state for key, cb in self._keyed_cbs()
                     if (cb_state := cb.state_dict()) is not None}
        state: dict[str, Any] = {"model": unwrap_model(self.model).state_dict(),
                                 "epoch": self.epoch, "train_iter": self.train_iter,
                                 "rng": torch.get_rng_state(), "callbacks": callbacks}
        if with_opt and self.opt is not None:
            state["opt"] = self.opt.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return save_torch_file(state, self.model_file(name))

    def load(self, name: str | Path, with_opt: bool = True, strict: bool = True,
             with_state: bool = True) -> Learner:
        """Restores what :meth:`save` wrote (a name or a file, see :meth:`model_file`);
        ``with_state`` also restores the epoch counters and the RNGs, and keeps the
        callbacks' states for the next resumed fit. To resume a fit from a checkpoint saved
        at the end of epoch ``k``, call the same ``fit*`` with the same callbacks and
        ``start_epoch=k + 1`` (``learn.epoch + 1`` after this load): each callback with
        state in the checkpoint (``SaveModel``'s and ``EarlyStopping``'s best value,
        ``GradientAccumulation``'s pending gradients) gets it back after its
        ``before_fit``, so the resumed fit goes on as the uninterrupted one would have.
        A file holding a model's bare ``state_dict`` loads the weights alone."""
        file = self.model_file(name)
        if not file.exists():
            raise FileNotFoundError(f"no checkpoint at {file}")
        state = torch.load(file, map_location=self.dls.device, weights_only=True)
        if isinstance(state, dict) and "model" not in state and all(
                isinstance(v, Tensor) for v in state.values()):
            state = {"model": state}  # a bare state_dict, as fastai loads one
            with_state = False
        unwrap_model(self.model).load_state_dict(state["model"], strict=strict)
        if with_opt and "opt" in state:
            if self.opt is None:
                self.create_opt()
            self.opt.load_state_dict(state["opt"])
        elif self.opt is not None and hasattr(self.opt, "refresh_master_weights"):
            self.opt.refresh_master_weights()  # else stale fp32 masters overwrite the load
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if with_state:
            self.epoch, self.train_iter = state["epoch"], state["train_iter"]
            self._resume_states = state.get("callbacks", {})
            torch.set_rng_state(state["rng"].cpu())
            if "cuda_rng" in state and torch.cuda.is_available():
                torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda_rng"]])
        return self
