"""The ``amp`` suite: one optimizer step with loss scaling, ``scaler.step(opt);
scaler.update()``, of fastext's :class:`fastext.amp.LossScaler` + fused AdamW against
``torch.amp.GradScaler`` + torch's foreach and fused AdamW.

Workload: the 161 parameter tensors of ``torchvision.models.resnet50()`` (25.6M fp32 params,
see :func:`fastext.bench.optim.resnet50_shapes`), gradients set once; ``--quick`` shrinks
them as the ``optim`` suite does. Case name: ``AdamW+scaler/resnet50``.

Implementations:

* ``torch-gradscaler``: ``torch.amp.GradScaler`` + ``torch.optim.AdamW(foreach=True)``
  (a separate unscale / inf-check pass, a host sync to read ``found_inf``, then the step),
* ``torch-gradscaler-fused``: ``torch.amp.GradScaler`` + ``torch.optim.AdamW(fused=True)``
  (the scaler hands ``grad_scale`` / ``found_inf`` to the fused kernel),
* ``fastext``: ``fastext.amp.LossScaler`` + ``fastext.optim.AdamW``.

**The scale is pinned to 1.0.** Unscaling multiplies the gradients in place by ``1/scale``
on every step; since the benchmark sets the gradients once and steps them many times, the
default scale (2**16) would shrink them to denormals within a few repetitions, which makes
some kernels far slower and the comparison unfair. Every scaler is therefore built with
``init_scale=1.0, growth_interval=10**9``: the scale stays 1.0 (no inf is ever found and
growth never triggers), the gradients keep their values, and every implementation still
runs all of its passes (inf/NaN check, unscale, step, scale update).

``gbs`` counts 36 bytes per parameter: AdamW's 28 (read p, g, m, v; write p, m, v), one
read of the gradient for the inf/NaN check and one write of the unscaled gradient (which
every implementation leaves in ``.grad``; the fused ones write it in their step). On CUDA
each row also has ``host_syncs``: the number of synchronizing CUDA calls
(``torch.cuda.set_sync_debug_mode("warn")``) in one ``scaler.step(opt); scaler.update()``
after warm-up.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import torch

import fastext

from .optim import OPTIM_KWARGS, _numel, make_params, workloads

NAME = "amp"

#: The single case of this suite (the workload is ResNet-50's parameter shapes).
CASE = "AdamW+scaler/resnet50"

#: Bytes per parameter: AdamW's 28, one read of the gradient for the inf/NaN check and one
#: write of the unscaled gradient.
BYTES_PER_PARAM = 36

#: Scaler arguments shared by every implementation: keep the scale at exactly 1.0 so that the
#: in-place unscale does not shrink the (set-once) gradients to denormals over repetitions.
SCALER_KWARGS: dict[str, Any] = {"init_scale": 1.0, "growth_interval": 10**9}


class Scaler(Protocol):
    """The part of the ``torch.amp.GradScaler`` API the benchmark uses."""

    def scale(self, outputs: torch.Tensor) -> torch.Tensor: ...

    def step(self, optimizer: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any: ...

    def update(self, new_scale: float | torch.Tensor | None = None) -> None: ...


#: (scaler, optimizer) factory: device and params in, both objects out.
ImplFactory = Callable[[torch.device, list[torch.Tensor]], tuple[Scaler, torch.optim.Optimizer]]


def fastext_amp_available() -> bool:
    """Whether ``fastext.amp`` exists in this checkout. A module that exists but fails to
    import is not hidden: importing it later raises."""
    return importlib.util.find_spec("fastext.amp") is not None


def _torch(**opt_kw: Any) -> ImplFactory:
    kw = {**OPTIM_KWARGS["AdamW"], **opt_kw}

    def factory(device: torch.device,
                params: list[torch.Tensor]) -> tuple[Scaler, torch.optim.Optimizer]:
        scaler = torch.amp.GradScaler(device.type, **SCALER_KWARGS)
        return scaler, torch.optim.AdamW(params, **kw)

    return factory


def _fastext(device: torch.device,
             params: list[torch.Tensor]) -> tuple[Scaler, torch.optim.Optimizer]:
    from fastext.amp import LossScaler  # lazy: absent in checkouts that predate it

    scaler = LossScaler(device.type, **SCALER_KWARGS)
    return scaler, fastext.optim.AdamW(params, **OPTIM_KWARGS["AdamW"])


def implementations() -> dict[str, ImplFactory]:
    """Implementation name -> (scaler, optimizer) factory. ``fastext`` is left out only
    when ``fastext.amp`` does not exist (a checkout predating it)."""
    impls: dict[str, ImplFactory] = {
        "torch-gradscaler": _torch(foreach=True),
        "torch-gradscaler-fused": _torch(fused=True),
    }
    if fastext_amp_available():
        impls["fastext"] = _fastext
    return impls


def make_step(scaler: Scaler, opt: torch.optim.Optimizer,
              device: torch.device) -> Callable[[], None]:
    """The timed unit, ``scaler.step(opt); scaler.update()``. Calls ``scaler.scale`` once
    first, as a training loop would have, so that the scaler's lazily created state exists."""
    scaler.scale(torch.ones((), device=device))

    def step() -> None:
        scaler.step(opt)
        scaler.update()

    return step


def count_host_syncs(fn: Callable[[], object]) -> int:
    """Number of synchronizing CUDA calls (``.item()``, blocking copies,
    ``cudaStreamSynchronize`` ...) made by one call of ``fn``, as reported by
    ``torch.cuda.set_sync_debug_mode("warn")``. Restores the default mode (0) afterwards."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # one warning per sync, even from the same line
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    return sum(1 for w in caught if "synchronizing" in str(w.message))


def run(device: torch.device, reps: int, quick: bool = False,
        progress: Callable[[str], None] = lambda msg: None,
        warmup: int = 3) -> list[dict]:
    """Time ``scaler.step(opt); scaler.update()`` for every implementation.

    Returns rows ``{"case": "AdamW+scaler/resnet50", "impl": "fastext", "ms": ...,
    "gbs": ...}``, plus ``"host_syncs"`` (int, per step) when ``device`` is CUDA.
    """
    from .timing import time_alternating

    shapes = workloads(quick)["resnet50"]
    nparams = sum(_numel(s) for s in shapes)
    impls = implementations()
    if "fastext" not in impls:
        progress("fastext.amp not found: timing the torch implementations only")
    steps: dict[str, Callable[[], None]] = {}
    keep: list[object] = []  # scalers and optimizers alive until the rows are built
    for i, (impl, factory) in enumerate(impls.items(), 1):
        progress(f"{CASE} {impl} {i}/{len(impls)}")
        scaler, opt = factory(device, make_params(shapes, device))
        keep += [scaler, opt]
        steps[impl] = make_step(scaler, opt, device)
    progress(f"{CASE} timing {len(steps)} impls x {reps} reps")
    times = time_alternating(steps, device, reps=reps, warmup=warmup)

    syncs: dict[str, int] = {}
    if device.type == "cuda":  # after time_alternating's warm-up: state exists, no lazy init
        progress(f"{CASE} counting host syncs")
        syncs = {impl: count_host_syncs(fn) for impl, fn in steps.items()}

    rows: list[dict] = []
    nbytes = BYTES_PER_PARAM * nparams
    for impl, ms in times.items():
        row: dict[str, Any] = {"case": CASE, "impl": impl, "ms": ms,
                               "gbs": nbytes / (ms * 1e-3) / 1e9}
        if impl in syncs:
            row["host_syncs"] = syncs[impl]
        rows.append(row)
    del steps, keep
    return rows
