"""Multi-process data-parallel training for the Learner (``torchrun``).

Run a training script with ``torchrun --nproc_per_node N train.py`` and train inside
:func:`distrib_ctx` (or add :class:`DistributedTrainer` to the learner's callbacks)::

    learn = Learner(dls, model, loss_func, metrics=[accuracy])
    with distrib_ctx(learn):      # init the process group, wrap and shard during each fit
        learn.fit_one_cycle(5, 1e-3)
    if rank_zero():
        learn.save("final")

During a fit :class:`DistributedTrainer`

* wraps ``learn.model`` in :class:`~torch.nn.parallel.DistributedDataParallel` (unwrapped
  again after the fit, so the layer groups, ``freeze`` and checkpoints see the plain model);
* shards the training loader: every epoch all ranks draw the same global permutation (from
  the loader's seed and the epoch, no communication) and rank ``r`` takes every
  ``world_size``-th sample from position ``r``, padded like
  :class:`~torch.utils.data.DistributedSampler` so that all ranks run the same number of
  batches. With a per-rank batch size ``bs`` the union of the ranks' ``i``-th batches is the
  ``i``-th batch of a single process with batch size ``world_size * bs``, and DDP's gradient
  averaging makes the step that of the single process;
* shards the validation loader into contiguous, unpadded blocks, validates through the plain
  module (no collective per batch, so uneven blocks are fine) and sums the validation loss
  and every metric's accumulated state (:attr:`Metric` counters) over the ranks, so
  ``learn.valid_loss`` / ``learn.metric_values`` on every rank equal single-process
  validation over the whole set;
* keeps the non-zero ranks quiet (``learn.quiet``), so only rank 0 prints progress.

All of this is undone when the fit ends, also when an exception ends it (``Learner.fit``
fires ``finally_fit`` in its ``finally``, which calls :meth:`DistributedTrainer.restore`),
whether the callback came from :func:`distrib_ctx`, from the learner's callbacks or from
``fit(cbs=...)``.

Checkpoints and log files are rank 0's job: callbacks that write files call
:func:`rank_zero`. Decisions that end a fit are every rank's, taken alike, or the ranks left
in the fit would wait forever in DDP's all-reduce: the Recorder's epoch ``train_loss`` is
the sample-weighted mean over the ranks (so ``EarlyStopping`` / ``SaveModel`` on it agree;
its per-batch losses stay this rank's), ``lr_find`` records the loss averaged over the
ranks, and ``TerminateOnNaN`` and ``EarlyStopping`` stop when any rank says so
(:func:`any_rank`). These collectives run only while :func:`data_parallel_size` > 1: a
single process pays nothing for them.

Only one :class:`DistributedTrainer` per learner: :func:`distrib_ctx` adds none when the
learner already has one, and a second one in a fit is refused.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from .callback import Callback
from .data import TensorLoader

if TYPE_CHECKING:
    from .learner import Learner
    from .metrics import Metric

__all__ = ["DistributedTrainer", "ShardedTensorLoader", "all_reduce_sum", "any_rank", "barrier",
           "data_parallel_size", "distrib_ctx", "get_rank", "get_world_size", "rank_zero",
           "setup_distributed", "shard_loader", "unwrap_model"]


# -- process group ---------------------------------------------------------------------------
def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """This process's rank: the process group's, else ``$RANK`` (torchrun), else 0."""
    return dist.get_rank() if _initialized() else int(os.environ.get("RANK", "0"))


def get_world_size() -> int:
    """Number of processes: the process group's, else ``$WORLD_SIZE``, else 1."""
    return dist.get_world_size() if _initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank_zero() -> bool:
    """True in the process that logs and writes files (rank 0, or a single process).

    >>> rank_zero()
    True
    """
    return get_rank() == 0


def barrier() -> None:
    """Waits for all ranks (nothing outside a multi-process group)."""
    if _multi_rank():
        dist.barrier()


def _multi_rank() -> bool:
    return _initialized() and dist.get_world_size() > 1


def data_parallel_size(learn: Learner) -> int:
    """The number of ranks ``learn`` trains over together: the world size while its model is
    wrapped in ``DistributedDataParallel`` or one of its :class:`DistributedTrainer` s is
    active (a fit under :func:`distrib_ctx`), else 1. Ranks that share a process group but
    train on their own get 1: their callbacks must not wait for each other.

    >>> from fastext.learner import DataLoaders, Learner
    >>> x = torch.zeros(4, 1); dls = DataLoaders.from_tensors(x, x, x, x, bs=2, device="cpu")
    >>> data_parallel_size(Learner(dls, nn.Linear(1, 1), quiet=True))
    1
    """
    if not _multi_rank():
        return 1
    coupled = isinstance(learn.model, DistributedDataParallel) or any(
        isinstance(cb, DistributedTrainer) and cb.active for cb in learn.cbs)
    return dist.get_world_size() if coupled else 1


def _reduce_device() -> torch.device:
    # NCCL reduces CUDA tensors only; gloo (and a "cpu:gloo,cuda:nccl" group) host tensors
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: Sequence[float | Tensor]) -> Tensor:
    """``values`` (scalars) summed element-wise over the ranks, as a float64 host tensor:
    one all-reduce in a multi-process group, which every rank must reach at the same point;
    the values themselves in a single process.

    >>> all_reduce_sum([1.5, torch.tensor(2)]).tolist()
    [1.5, 2.0]
    """
    device = _reduce_device() if _multi_rank() else torch.device("cpu")
    t = torch.stack([torch.as_tensor(v).to(device, torch.float64).reshape(()) for v in values])
    if _multi_rank():
        dist.all_reduce(t)
    return t.cpu()


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on at least one rank, so that every rank takes the same
    decision (to stop a fit, say): one all-reduce (MAX) in a multi-process group, which
    every rank must reach at the same point; ``flag`` itself in a single process.

    >>> any_rank(False), any_rank(True)
    (False, True)
    """
    if not _multi_rank():
        return bool(flag)
    t = torch.tensor(float(bool(flag)), device=_reduce_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def setup_distributed(backend: str | None = None) -> tuple[int, int]:
    """Joins the process group torchrun describes (``$WORLD_SIZE`` > 1, ``$RANK``,
    ``$LOCAL_RANK``, ``$MASTER_ADDR``, ``$MASTER_PORT``) unless already in one; returns
    ``(rank, world_size)`` and ``(0, 1)`` for a single process.

    ``backend`` defaults to ``nccl`` where CUDA is available (the process then uses GPU
    ``$LOCAL_RANK`` as its current device, so ``"cuda"`` means its own GPU) and ``gloo``
    otherwise.

    >>> setup_distributed() if "WORLD_SIZE" not in os.environ else (0, 1)
    (0, 1)
    """
    if _initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if "nccl" in backend:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (other models as they are)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


# -- sharded loaders ---------------------------------------------------------------------
def _shard_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous block of ``n`` items (sizes differ by at most one)."""
    return rank * n // world_size, (rank + 1) * n // world_size


class ShardedTensorLoader:
    """One rank's part of a :class:`~fastext.learner.data.TensorLoader`.

    ``even=True`` (training): every epoch the global order is the one the wrapped loader
    would draw (``randperm`` seeded with ``seed + epoch``, or the stored order); it is
    padded with its own start to a multiple of ``world_size`` (or truncated to one with
    ``drop_last``), and this rank takes positions ``rank, rank + world_size, ...``, batched
    by the wrapped loader's ``bs``. Every rank has the same number of batches.
    ``even=False`` (validation): a contiguous block of the global order, unpadded.

    The epoch counter is the wrapped loader's, so ``set_epoch`` and resuming agree with it.

    >>> def data(): return TensorLoader((torch.arange(10),), bs=2, shuffle=True, seed=3)
    >>> r0, r1 = ([b[0] for b in ShardedTensorLoader(data(), r, 2)] for r in range(2))
    >>> whole = [b[0] for b in TensorLoader((torch.arange(10),), bs=4, shuffle=True, seed=3)]
    >>> [sorted(torch.cat([a, b]).tolist()) == sorted(w.tolist())
    ...  for a, b, w in zip(r0, r1, whole, strict=True)]
    [True, True, True]
    """

    def __init__(self, loader: TensorLoader, rank: int, world_size: int,
                 even: bool = True) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size}")
        self.loader, self.rank, self.world_size, self.even = loader, rank, world_size, even

    @property
    def epoch(self) -> int:
        return self.loader.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.loader.epoch = value

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def dataset(self) -> tuple[Tensor, ...]:
        return self.loader.tensors

    @property
    def bs(self) -> int:
        return self.loader.bs

    def _n_total(self) -> int:
        return len(self.loader.tensors[0])

    def _n_local(self) -> int:
        n, w = self._n_total(), self.world_size
        if not self.even:
            start, stop = _shard_range(n, self.rank, w)
            return stop - start
        return n // w if self.loader.drop_last else -(-n // w)

    def __len__(self) -> int:
        m, bs = self._n_local(), self.loader.bs
        return m // bs if self.loader.drop_last else -(-m // bs)

    def indices(self, epoch: int) -> Tensor:
        """This rank's sample indices for ``epoch``, in order."""
        n, w = self._n_total(), self.world_size
        if self.loader.shuffle:  # TensorLoader's permutation, drawn the same on every rank
            g = torch.Generator().manual_seed(self.loader.seed + epoch)
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if not self.even:
            start, stop = _shard_range(n, self.rank, w)
            return order[start:stop]
        if self.loader.drop_last:
            order = order[: n // w * w]
        elif n % w and n:
            pad = -(-n // w) * w - n
            order = torch.cat([order, order.repeat(-(-pad // n))[:pad]])
        return order[self.rank :: w]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        idx = self.indices(self.loader.epoch)
        self.loader.epoch += 1
        bs = self.loader.bs
        for i in range(len(self)):
            sel = idx[i * bs : (i + 1) * bs]
            yield tuple(t[sel] for t in self.loader.tensors)


def _check_sampler(dl: DataLoader) -> None:
    """Sharding replaces the loader's sampler: only the two whose order it reproduces (all
    of the dataset, in order or shuffled once each) are taken; any other would be dropped."""
    s = dl.sampler
    if type(s) is RandomSampler and (s.replacement or s._num_samples is not None):
        what = f"RandomSampler(replacement={s.replacement}, num_samples={s._num_samples})"
    elif type(s) in (SequentialSampler, RandomSampler) and s.data_source is dl.dataset:
        return
    else:
        what = type(s).__name__
    raise TypeError(f"cannot shard a DataLoader with sampler {what}: sharding replaces the "
                    "sampler, so it takes only SequentialSampler (shuffle=False) and a plain "
                    "RandomSampler (shuffle=True) over the loader's dataset; shard this one "
                    "by rank yourself (e.g. a Subset per rank)")


def _shard_dataloader(dl: DataLoader, rank: int, world_size: int, even: bool,
                      seed: int | None) -> DataLoader:
    if isinstance(dl.dataset, IterableDataset):
        raise TypeError("cannot shard a DataLoader over an IterableDataset; shard the stream "
                        "itself by rank")
    if dl.batch_size is None:
        raise TypeError(f"cannot shard a DataLoader with a custom batch_sampler "
                        f"({type(dl.batch_sampler).__name__})")
    _check_sampler(dl)
    sampler: Any
    if even:
        if seed is None:
            seed = dl.generator.initial_seed() if dl.generator is not None else 0
        sampler = DistributedSampler(dl.dataset, world_size, rank,
                                     shuffle=isinstance(dl.sampler, RandomSampler), seed=seed,
                                     drop_last=dl.drop_last)
    else:
        sampler = range(*_shard_range(len(dl.dataset), rank, world_size))
    kwargs: dict[str, Any] = dict(
        batch_size=dl.batch_size, sampler=sampler, num_workers=dl.num_workers,
        collate_fn=dl.collate_fn, pin_memory=dl.pin_memory, drop_last=dl.drop_last,
        timeout=dl.timeout, worker_init_fn=dl.worker_init_fn, generator=dl.generator,
        multiprocessing_context=dl.multiprocessing_context)
    if dl.num_workers > 0:
        kwargs.update(prefetch_factor=dl.prefetch_factor,
                      persistent_workers=dl.persistent_workers)
    return DataLoader(dl.dataset, **kwargs)


def shard_loader(loader: Any, rank: int, world_size: int, even: bool = True,
                 seed: int | None = None) -> Any:
    """This rank's part of ``loader``: a :class:`ShardedTensorLoader` for a
    :class:`~fastext.learner.data.TensorLoader`; for a ``torch.utils.data.DataLoader`` a new
    one with a :class:`~torch.utils.data.DistributedSampler` (``even``; shuffling as the
    original, ``seed`` default the loader's generator seed or 0) or a contiguous block of the
    dataset (``even=False``). Other settings (batch size, workers, collate) are kept. The
    sampler is replaced, so a DataLoader must have the default one (``SequentialSampler``
    or a plain ``RandomSampler``): any other sampler or a ``batch_sampler`` is a
    ``TypeError``."""
    if isinstance(loader, TensorLoader):
        return ShardedTensorLoader(loader, rank, world_size, even)
    if isinstance(loader, DataLoader):
        return _shard_dataloader(loader, rank, world_size, even, seed)
    raise TypeError(f"cannot shard a {type(loader).__name__}: DistributedTrainer supports "
                    "TensorLoader and torch.utils.data.DataLoader")


# -- reducing validation statistics ------------------------------------------------------------
def _state_names(m: Metric) -> list[str]:
    """The attributes a metric accumulates: ``m.dist_state`` if it names them, else those
    ``reset()`` sets (run on a blank instance). They must combine across ranks by addition
    (numbers, tensors; ``None`` meaning nothing yet) or concatenation (lists)."""
    names = getattr(m, "dist_state", None)
    if names is not None:
        return list(names)
    probe = object.__new__(type(m))
    try:
        type(m).reset(probe)
    except Exception as e:  # reset reads configuration the blank instance lacks
        raise TypeError(f"cannot tell which attributes of metric {m!r} to sum over the ranks; "
                        "give it a `dist_state` tuple of attribute names") from e
    return list(vars(probe))


def _to_cpu(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach().cpu()
    if isinstance(x, list):
        return [_to_cpu(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_to_cpu(v) for v in x)
    return x


def _to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, list):
        return [_to_device(v, device) for v in x]
    return x


def _combine(values: list[Any], what: str) -> Any:
    """Sum of the ranks' values in rank order (every rank gets the same result)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    out = present[0]
    for v in present[1:]:
        if isinstance(out, (Tensor, int, float)) and isinstance(v, (Tensor, int, float)) \
                and not isinstance(out, bool):
            out = out + v
        elif isinstance(out, list) and isinstance(v, list):
            out = out + v
        elif v != out:
            raise TypeError(f"cannot combine {what} across ranks: {type(out).__name__} "
                            f"and {type(v).__name__}")
    return out


# -- the callback -----------------------------------------------------------------------
class DistributedTrainer(Callback):
    """Data-parallel training over the ranks of the process group (see the module doc).

    Does nothing in a single process, so a script can always add it. ``ddp_kwargs`` go to
    :class:`~torch.nn.parallel.DistributedDataParallel` (e.g. ``find_unused_parameters``);
    ``seed`` seeds the shuffling of ``torch.utils.data.DataLoader`` shards.

    Order 40: before the Recorder (50) reads the reduced validation results and before the
    ProgressCallback (60) prints. One per learner: a fit with a second one (say the
    learner's own and one in ``fit(cbs=...)``) is refused in ``before_fit``.
    """

    order = 40

    def __init__(self, seed: int | None = None, **ddp_kwargs: Any) -> None:
        self.seed, self.ddp_kwargs = seed, ddp_kwargs
        self._saved: dict[str, Any] | None = None
        self._ddp: DistributedDataParallel | None = None
        self._in_valid = False

    @property
    def active(self) -> bool:
        """Whether a fit is running distributed (model wrapped, loaders sharded)."""
        return self._saved is not None

    # -- fit -------------------------------------------------------------------------------
    def before_fit(self) -> None:
        if not _multi_rank() or self.active:
            return
        learn = self.learn
        twins = [cb for cb in learn.cbs if isinstance(cb, DistributedTrainer) and cb is not self]
        if twins:  # the second would shard the shards and wrap DDP in DDP
            raise RuntimeError(f"DistributedTrainer: this fit has {1 + len(twins)} of them "
                               "(the learner's cbs, distrib_ctx, fit(cbs=...)); keep one")
        rank, world = dist.get_rank(), dist.get_world_size()
        self._states = [_state_names(m) for m in learn.metrics]
        train, valid = learn.dls.train, learn.dls.valid
        self._saved = {"model": learn.model, "splitter": learn.splitter, "quiet": learn.quiet,
                       "train": train.loader, "valid": valid.loader}
        train.loader = shard_loader(train.loader, rank, world, even=True, seed=self.seed)
        valid.loader = shard_loader(valid.loader, rank, world, even=False, seed=self.seed)
        device = next(learn.model.parameters()).device
        kwargs = dict(self.ddp_kwargs)
        if device.type == "cuda":
            kwargs.setdefault("device_ids", [device.index])
        learn.model = DistributedDataParallel(learn.model, **kwargs)
        learn.splitter = _unwrapping(self._saved["splitter"])  # layer groups of the module
        if rank != 0:
            learn.quiet = True
        # the Learner counted the batches of the unsharded loader before this event
        learn.n_iter = len(train)
        learn.train_iter = getattr(learn, "start_epoch", 0) * learn.n_iter
        learn.pct_train = learn.train_iter / max(1, learn.n_epoch * learn.n_iter)

    def after_fit(self) -> None:
        self.restore()

    def finally_fit(self) -> None:
        self.restore()

    def restore(self) -> None:
        """Puts back the plain model, the unsharded loaders, the splitter and ``quiet``
        (after the fit, or after an exception ended it: ``Learner.fit``'s ``finally_fit``
        event, and :func:`distrib_ctx` on leaving). Does nothing when not active."""
        if self._saved is None:
            return
        learn, saved = self.learn, self._saved
        learn.model = saved["model"]
        learn.splitter, learn.quiet = saved["splitter"], saved["quiet"]
        learn.dls.train.loader, learn.dls.valid.loader = saved["train"], saved["valid"]
        self._saved, self._ddp, self._in_valid = None, None, False

    # -- validation ------------------------------------------------------------------------
    def before_validate(self) -> None:
        if not self.active or not isinstance(self.learn.model, DistributedDataParallel):
            return
        self._ddp = self.learn.model
        module = self._ddp.module
        if self._ddp.broadcast_buffers:  # validate rank 0's running statistics everywhere
            for b in module.buffers():
                dist.broadcast(b, 0)
        # the plain module: DDP's forward may run collectives, and the shards are uneven
        self.learn.model = module
        self._in_valid = True
        self._total = torch.zeros((), dtype=torch.float64,
                                  device=next(module.parameters()).device)
        self._count = 0
        self._cancelled = False

    def after_batch(self) -> None:
        learn = self.learn
        if self._in_valid and not learn.training and learn.batch_done:  # as _do_validate
            n = len(learn.yb[0])
            self._total = self._total + learn.loss.detach().double() * n
            self._count += n

    def after_cancel_validate(self) -> None:
        self._cancelled = True

    def after_validate(self) -> None:
        if not self._in_valid:
            return
        learn = self.learn
        learn.model = self._ddp
        self._in_valid = False
        if self._cancelled or learn.dl is not learn.dls.valid:
            return  # another loader (not sharded): every rank has seen all of it
        local = {"loss": (_to_cpu(self._total), self._count),
                 "metrics": [{k: _to_cpu(getattr(m, k, None)) for k in names}
                             for m, names in zip(learn.metrics, self._states, strict=True)]}
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, local)
        total = math.fsum(float(g["loss"][0]) for g in gathered)
        count = sum(g["loss"][1] for g in gathered)
        learn.valid_loss = total / count if count else math.nan
        device = learn.dls.device
        for i, (m, names) in enumerate(zip(learn.metrics, self._states, strict=True)):
            for k in names:
                value = _combine([g["metrics"][i][k] for g in gathered], f"{m!r}.{k}")
                setattr(m, k, _to_device(value, device))
        learn.metric_values = [float(m.value) for m in learn.metrics]


def _unwrapping(splitter: Callable[[nn.Module], Any]) -> Callable[[nn.Module], Any]:
    def split(model: nn.Module) -> Any:
        return splitter(unwrap_model(model))

    return split


@contextmanager
def distrib_ctx(learn: Learner, backend: str | None = None, seed: int | None = None,
                **ddp_kwargs: Any) -> Iterator[Learner]:
    """Within the block the learner trains data-parallel over the torchrun ranks: joins
    the process group (:func:`setup_distributed`), adds a :class:`DistributedTrainer`
    (unless the learner has one already: then ``seed`` and ``ddp_kwargs`` must be left out,
    they are that one's), and on exit removes the one it added and leaves the group if this
    call joined it. In a single process it only yields the learner.

    Leaving is collective: after the block every rank waits for the others (a barrier), so
    that none tears the group down while a peer still talks to it (in CI a gloo rank once
    died with SIGABRT at that moment). After an exception the group is left as it is: a peer
    may be blocked in a collective that will never complete, and destroying the group could
    then hang this rank too; the process exits with the error and torchrun stops the rest."""
    own = next((cb for cb in learn.cbs if isinstance(cb, DistributedTrainer)), None)
    if own is not None and (seed is not None or ddp_kwargs):
        raise ValueError("distrib_ctx: the learner has a DistributedTrainer already; give "
                         "seed and DDP arguments to it, not to distrib_ctx")
    joined = not _initialized()
    _, world = setup_distributed(backend)
    added = None
    if world > 1 and own is None:  # a second trainer would shard the shards
        added = learn.add_cb(DistributedTrainer(seed=seed, **ddp_kwargs))
    completed = False
    try:
        yield learn
        completed = True
    finally:
        if added is not None:
            added.restore()
            learn.remove_cb(added)
        if joined and completed and _initialized():
            dist.barrier()
            dist.destroy_process_group()
