"""The ``optim`` suite: one ``optimizer.step()`` of fastext's fused AdamW / RMSprop against
torch.optim's for-loop, foreach and fused implementations.

Workloads (each run with AdamW and with RMSprop):

* ``resnet50``: the 161 parameter tensors of ``torchvision.models.resnet50()`` (25.6M params),
* ``10M``: one tensor of 10,000,000 elements (pure bandwidth),
* ``1000x``: 1,000 small tensors of 256..8192 elements (launch / per-tensor overhead).

``gbs`` is the traffic an optimizer cannot avoid divided by the step time: fp32 AdamW reads
p, g, m, v and writes p, m, v (28 B/param); RMSprop reads p, g, v and writes p, v (20 B/param).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import fastext

NAME = "optim"

#: Bytes an fp32 step must move per parameter (defaults: no amsgrad, no momentum, not centered).
BYTES_PER_PARAM = {"AdamW": 28, "RMSprop": 20}

#: Constructor arguments shared by every implementation of one optimizer.
OPTIM_KWARGS: dict[str, dict] = {
    "AdamW": {"lr": 1e-3, "weight_decay": 0.01},
    "RMSprop": {"lr": 1e-3},
}

OptFactory = Callable[[list[torch.Tensor]], torch.optim.Optimizer]


def implementations(opt_name: str) -> dict[str, OptFactory]:
    """Implementation name -> factory building that optimizer over a list of params.

    ``torch-fused`` exists for AdamW only: torch has no fused RMSprop. ``fastext-flat`` is
    fastext with ``flat=True`` (params, grads and states as views of one buffer each).
    """
    kw = OPTIM_KWARGS[opt_name]
    torch_cls = getattr(torch.optim, opt_name)
    fast_cls = getattr(fastext.optim, opt_name)
    impls: dict[str, OptFactory] = {
        "torch-forloop": lambda ps: torch_cls(ps, foreach=False, **kw),
        "torch-foreach": lambda ps: torch_cls(ps, foreach=True, **kw),
    }
    if opt_name == "AdamW":
        impls["torch-fused"] = lambda ps: torch_cls(ps, fused=True, **kw)
    impls["fastext"] = lambda ps: fast_cls(ps, **kw)
    # The same optimizer with flat=True: every buffer updated as one slot.
    impls["fastext-flat"] = lambda ps: fast_cls(ps, flat=True, **kw)
    return impls


def _resnet50_shapes_by_hand() -> list[tuple[int, ...]]:
    """ResNet-50's parameter shapes in ``model.parameters()`` order, without torchvision."""
    shapes: list[tuple[int, ...]] = [(64, 3, 7, 7), (64,), (64,)]
    inplanes = 64
    for planes, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True):
        for b in range(blocks):
            out = planes * 4
            shapes += [(planes, inplanes, 1, 1), (planes,), (planes,),
                       (planes, planes, 3, 3), (planes,), (planes,),
                       (out, planes, 1, 1), (out,), (out,)]
            if b == 0:  # downsample: 1x1 conv + BN on the block's shortcut
                shapes += [(out, inplanes, 1, 1), (out,), (out,)]
            inplanes = out
    return shapes + [(1000, 2048), (1000,)]


def resnet50_shapes() -> list[tuple[int, ...]]:
    """Parameter shapes of ``torchvision.models.resnet50(weights=None)`` (161 tensors,
    25,557,032 params), built on the meta device so that no memory is allocated. Falls back
    to the same list written out by hand when torchvision is not installed."""
    try:
        import torchvision
    except ImportError:
        return _resnet50_shapes_by_hand()
    with torch.device("meta"):
        model = torchvision.models.resnet50(weights=None)
    return [tuple(p.shape) for p in model.parameters()]


def workloads(quick: bool = False) -> dict[str, list[tuple[int, ...]]]:
    """Workload name -> parameter shapes. ``quick`` divides every size by 50 (flattening
    resnet50's tensors; for ``1000x`` it keeps 1/50 of the tensors) for smoke tests."""
    gen = torch.Generator().manual_seed(0)  # same 1000x sizes in every run
    small = [(int(n),) for n in torch.randint(256, 8193, (1000,), generator=gen)]
    loads = {"resnet50": resnet50_shapes(), "10M": [(10_000_000,)], "1000x": small}
    if quick:
        loads = {
            "resnet50": [(max(1, _numel(s) // 50),) for s in loads["resnet50"]],
            "10M": [(10_000_000 // 50,)],
            "1000x": small[: len(small) // 50],
        }
    return loads


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def make_params(shapes: list[tuple[int, ...]], device: torch.device,
                seed: int = 0) -> list[torch.nn.Parameter]:
    """fp32 params with random gradients set once; the same ``seed`` gives every
    implementation identical (but separate) params and grads."""
    gen = torch.Generator(device=device).manual_seed(seed)
    params = []
    for shape in shapes:
        p = torch.nn.Parameter(torch.randn(shape, generator=gen, device=device))
        p.grad = torch.randn(shape, generator=gen, device=device)
        params.append(p)
    return params


def run(device: torch.device, reps: int, quick: bool = False,
        progress: Callable[[str], None] = lambda msg: None,
        warmup: int = 3) -> list[dict]:
    """Time every (optimizer, workload) case for every implementation.

    Returns rows ``{"case": "AdamW/resnet50", "impl": "fastext", "ms": ..., "gbs": ...}``.
    """
    from .timing import time_alternating

    loads = workloads(quick)
    cases = [(opt, load) for opt in BYTES_PER_PARAM for load in loads]
    total = sum(len(implementations(opt)) for opt, _ in cases)
    done = 0
    rows: list[dict] = []
    for opt_name, load in cases:
        case = f"{opt_name}/{load}"
        shapes = loads[load]
        nparams = sum(_numel(s) for s in shapes)
        steps: dict[str, Callable[[], object]] = {}
        optimizers = []
        for impl, factory in implementations(opt_name).items():
            done += 1
            progress(f"{case} {impl} {done}/{total}")
            opt = factory(make_params(shapes, device))
            optimizers.append(opt)
            steps[impl] = opt.step
        progress(f"{case} timing {len(steps)} impls x {reps} reps")
        times = time_alternating(steps, device, reps=reps, warmup=warmup)
        nbytes = BYTES_PER_PARAM[opt_name] * nparams
        for impl, ms in times.items():
            rows.append({"case": case, "impl": impl, "ms": ms, "gbs": nbytes / (ms * 1e-3) / 1e9})
        del steps, optimizers  # free this case's params and state before the next one
    return rows
