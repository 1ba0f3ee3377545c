"""The ``bn_relu`` suite: fastext's fused :class:`fastext.nn.BatchNormReLU2d` against
``nn.BatchNorm2d`` followed by ``nn.ReLU``, alone and inside a ResNet-18 training step.

Cases:

* ``N{n}xC{c}x{h}x{w}/{nchw,channels_last}``: one forward + backward of BatchNorm + ReLU in
  training mode on an fp32 activation of that shape and memory format (N32xC64x56x56,
  N64xC128x28x28, N256xC16x14x14; ``--quick``: N4xC8x14x14). One timed call is
  ``torch.autograd.grad(module(x), (x, weight, bias), grad)`` with a fixed random ``grad``, so
  no ``.grad`` is accumulated by any implementation. Implementations:

  - ``torch-eager``: ``nn.BatchNorm2d`` then ``nn.ReLU()`` (not in place),
  - ``torch-compile``: the same two modules under ``torch.compile`` (compiled once per case,
    before timing); left out of a case when compiling or running the compiled module fails,
  - ``fastext``: ``BatchNormReLU2d``.

  ``gbs`` is ``8 * N*C*H*W * 4`` bytes over the time: the passes a fused forward + backward
  cannot avoid (forward: read x for the statistics, read x and write y; backward: read x and
  dy for the reductions, read x and dy again and write dx).

* ``abn-stack-step/b{batch}``: one training step (as the ResNet-18 rows below: forward,
  cross-entropy, backward, SGD step) of a small conv stack (:func:`abn_stack_models`: a
  stride-2 stem and three 3x3 convs of 64 channels; 16 images of 64x64 on the CPU, 64 of
  224x224 on CUDA, ``--quick``: 4 of 16x16), each conv followed by ``nn.BatchNorm2d`` and
  ``nn.LeakyReLU`` (``torch-eager``) or by :class:`fastext.nn.InPlaceABN2d` (``fastext``),
  with time and memory as the ResNet-18 rows.

* ``resnet18-step/b{batch}``: one training step of ``torchvision.models.resnet18(num_classes=10)``
  (forward, cross-entropy, backward, ``torch.optim.SGD`` step) on a fixed random batch of 32
  images, 112x112 on the CPU and 224x224 on CUDA (``--quick``: 4 images of 32x32), timed
  ``STEP_REPS_FACTOR`` times the suite's reps (recorded as the row's ``reps``).
  ``torch-eager`` is the stock model, ``fastext`` the same initial weights after
  :func:`fastext.nn.fuse_bn_relu`. These rows have no ``gbs``; they carry memory instead:

  - on CUDA, ``peak_mb``: ``torch.cuda.max_memory_allocated()`` during one step, after
    ``torch.cuda.reset_peak_memory_stats()``, minus what was allocated when the step began
    (so the parameters and optimizer state of both models, resident all along, do not
    count);
  - on the CPU, where torch keeps no allocator statistics, ``saved_mb``: the bytes of the
    tensors autograd saves for backward during one forward + loss, caught with
    ``torch.autograd.graph.saved_tensors_hooks``. Each storage counts once (a tensor saved
    by two nodes, or views of one buffer, are one allocation) and the model's parameters
    are left out (they are resident anyway). This is the activation memory held at the
    start of backward, which is where a training step peaks.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import fastext.nn

from . import importable
from .timing import time_alternating

NAME = "bn_relu"

#: Activation shapes (N, C, H, W) of the BatchNorm + ReLU cases.
SHAPES: list[tuple[int, int, int, int]] = [(32, 64, 56, 56), (64, 128, 28, 28),
                                           (256, 16, 14, 14)]
QUICK_SHAPES: list[tuple[int, int, int, int]] = [(4, 8, 14, 14)]

#: Memory formats every shape is run in (case suffix -> torch memory format).
FORMATS: dict[str, torch.memory_format] = {"nchw": torch.contiguous_format,
                                           "channels_last": torch.channels_last}

#: Ideal bytes moved per activation element, in units of the element size (see module doc).
PASSES = 8

#: ResNet-18 step: batch size, and image side per device type (``--quick``: 4 images, 32x32).
BATCH = 32
IMAGE_SIZE = {"cpu": 112, "cuda": 224}
QUICK_BATCH, QUICK_IMAGE_SIZE = 4, 32
NUM_CLASSES = 10
SEED = 0

#: The whole-step cases time this many times the suite's reps: what the fused layers save
#: there (under a tenth of a CPU ResNet-18 step) is no larger than the convolutions'
#: run-to-run spread, which a 10-rep median does not average out.
STEP_REPS_FACTOR = 3


def torchvision_available() -> bool:
    """Whether the ResNet-18 step (which needs torchvision) can run."""
    return importable("torchvision")


def case_name(shape: tuple[int, int, int, int], fmt: str) -> str:
    """``(32, 64, 56, 56), "nchw"`` -> ``"N32xC64x56x56/nchw"``."""
    n, c, h, w = shape
    return f"N{n}xC{c}x{h}x{w}/{fmt}"


def bn_relu_modules(channels: int, device: torch.device) -> dict[str, nn.Module]:
    """Implementation name -> module computing BatchNorm2d + ReLU in training mode, all from
    the same (default) initial parameters. ``torch-compile`` is not compiled yet."""
    eager = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU()).to(device)
    return {
        "torch-eager": eager,
        "torch-compile": copy.deepcopy(eager),
        "fastext": fastext.nn.BatchNormReLU2d(channels).to(device),
    }


def _bn_params(module: nn.Module) -> tuple[Tensor, Tensor]:
    """The (weight, bias) of the single BatchNorm inside ``module``."""
    bn = next(m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))
    return bn.weight, bn.bias


def fwd_bwd(fn: Callable[[Tensor], Tensor], module: nn.Module, x: Tensor,
            grad: Tensor) -> Callable[[], object]:
    """One forward + backward of ``fn`` (``module`` or its compiled form) on ``x``: the
    gradients w.r.t. ``x`` and the BatchNorm's weight and bias, returned rather than
    accumulated into ``.grad``."""
    inputs = (x, *_bn_params(module))

    def call() -> tuple[Tensor, ...]:
        return torch.autograd.grad(fn(x), inputs, grad)

    return call


def _bn_relu_rows(device: torch.device, reps: int, quick: bool, warmup: int,
                  progress: Callable[[str], None]) -> list[dict]:
    rows: list[dict] = []
    shapes = QUICK_SHAPES if quick else SHAPES
    gen = torch.Generator(device=device).manual_seed(SEED)
    for shape in shapes:
        for fmt, memory_format in FORMATS.items():
            case = case_name(shape, fmt)
            x = torch.randn(shape, generator=gen, device=device).to(memory_format=memory_format)
            x.requires_grad_(True)
            grad = torch.randn(shape, generator=gen, device=device).to(
                memory_format=memory_format)
            modules = bn_relu_modules(shape[1], device)
            calls: dict[str, Callable[[], object]] = {}
            for impl, module in modules.items():
                if impl != "torch-compile":
                    calls[impl] = fwd_bwd(module, module, x, grad)
                    continue
                progress(f"{case} compiling")
                try:
                    torch._dynamo.reset()  # fresh caches: no recompile limit across cases
                    call = fwd_bwd(torch.compile(module, dynamic=False), module, x, grad)
                    call()  # compile forward and backward now, outside the timing
                except Exception as e:  # no compiler toolchain, unsupported backend, ...
                    progress(f"{case} torch-compile left out: {type(e).__name__}: {e}")
                    continue
                calls[impl] = call
            progress(f"{case} timing {len(calls)} impls x {reps} reps")
            times = time_alternating(calls, device, reps=reps, warmup=warmup)
            nbytes = PASSES * x.numel() * x.element_size()
            rows += [{"case": case, "impl": impl, "ms": ms, "gbs": nbytes / (ms * 1e-3) / 1e9}
                     for impl, ms in times.items()]
            del calls, modules, x, grad
    return rows


def resnet18_models(device: torch.device) -> dict[str, nn.Module]:
    """``torch-eager`` -> torchvision ResNet-18 (10 classes, seeded), ``fastext`` -> a copy of
    it with :func:`fastext.nn.fuse_bn_relu` applied; both in training mode on ``device``."""
    import torchvision

    torch.manual_seed(SEED)
    eager = torchvision.models.resnet18(num_classes=NUM_CLASSES).to(device).train()
    fused = fastext.nn.fuse_bn_relu(copy.deepcopy(eager))
    return {"torch-eager": eager, "fastext": fused}


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor,
               y: Tensor) -> Callable[[], object]:
    """One SGD training step of ``model`` on the batch ``(x, y)``."""

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return step


def saved_bytes(model: nn.Module, x: Tensor, y: Tensor) -> int:
    """Bytes of the distinct storages autograd saves for backward during one forward + loss
    of ``model`` on ``(x, y)``, the model's parameters left out (see the module doc)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    del loss  # frees the graph
    return sum(storages.values())


def step_peak_bytes(step: Callable[[], object], device: torch.device) -> int:
    """Peak CUDA memory allocated during one call of ``step``, above what was allocated
    when it began."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def _step_rows(case: str, models: dict[str, nn.Module], x: Tensor, y: Tensor,
               device: torch.device, reps: int, warmup: int,
               progress: Callable[[str], None]) -> list[dict]:
    """Training-step rows of ``case``: time and memory (see the module doc) per model."""
    steps = {impl: train_step(m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9), x, y)
             for impl, m in models.items()}
    reps *= STEP_REPS_FACTOR
    progress(f"{case} timing {len(steps)} impls x {reps} reps")
    times = time_alternating(steps, device, reps=reps, warmup=warmup)
    rows = []
    for impl, ms in times.items():
        progress(f"{case} {impl} memory")
        row: dict = {"case": case, "impl": impl, "ms": ms, "reps": reps}
        if device.type == "cuda":
            row["peak_mb"] = step_peak_bytes(steps[impl], device) / 2**20
        else:
            row["saved_mb"] = saved_bytes(models[impl], x, y) / 2**20
        rows.append(row)
    return rows


def _batch(device: torch.device, batch: int, size: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator(device=device).manual_seed(SEED)
    x = torch.randn(batch, 3, size, size, generator=gen, device=device)
    return x, torch.randint(0, NUM_CLASSES, (batch,), generator=gen, device=device)


def _resnet_rows(device: torch.device, reps: int, quick: bool, warmup: int,
                 progress: Callable[[str], None]) -> list[dict]:
    batch = QUICK_BATCH if quick else BATCH
    size = QUICK_IMAGE_SIZE if quick else IMAGE_SIZE[device.type]
    case = f"resnet18-step/b{batch}"
    progress(f"{case} building models")
    x, y = _batch(device, batch, size)
    return _step_rows(case, resnet18_models(device), x, y, device, reps, warmup, progress)


#: The InPlace-ABN stack: batch and image side per device type (``--quick``: 4 of 16x16),
#: channels, and convolutions after the stride-2 stem.
ABN_BATCH_SIZE = {"cpu": (16, 64), "cuda": (64, 224)}
ABN_QUICK = (4, 16)
ABN_WIDTH, ABN_DEPTH = 64, 3


def abn_stack_models(device: torch.device) -> dict[str, nn.Module]:
    """``torch-eager``: a stride-2 conv stem and ABN_DEPTH 3x3 convs of ABN_WIDTH channels,
    each followed by ``nn.BatchNorm2d`` and ``nn.LeakyReLU(0.01)``, then pooling and a
    linear layer; ``fastext``: the same initial weights, :class:`fastext.nn.InPlaceABN2d`
    in place of each BatchNorm + LeakyReLU pair (whose scale is ``|w| + eps``: the same
    computation up to eps on BatchNorm's default weights)."""

    def stack(block: Callable[[int], list[nn.Module]]) -> nn.Module:
        torch.manual_seed(SEED)
        w = ABN_WIDTH
        layers = [nn.Conv2d(3, w, 3, stride=2, padding=1, bias=False), *block(w)]
        for _ in range(ABN_DEPTH):
            layers += [nn.Conv2d(w, w, 3, padding=1, bias=False), *block(w)]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w, NUM_CLASSES)]
        return nn.Sequential(*layers).to(device).train()

    # Seeded alike, and BatchNorm draws no random numbers: the same convs and linear layer.
    return {"torch-eager": stack(lambda w: [nn.BatchNorm2d(w), nn.LeakyReLU(0.01)]),
            "fastext": stack(lambda w: [fastext.nn.InPlaceABN2d(w)])}


def _abn_rows(device: torch.device, reps: int, quick: bool, warmup: int,
              progress: Callable[[str], None]) -> list[dict]:
    batch, size = ABN_QUICK if quick else ABN_BATCH_SIZE[device.type]
    case = f"abn-stack-step/b{batch}"
    progress(f"{case} building models")
    x, y = _batch(device, batch, size)
    return _step_rows(case, abn_stack_models(device), x, y, device, reps, warmup, progress)


def run(device: torch.device, reps: int, quick: bool = False,
        progress: Callable[[str], None] = lambda msg: None,
        warmup: int = 3) -> list[dict]:
    """Time every BatchNorm + ReLU case, the InPlace-ABN stack's step, then the ResNet-18
    step (when torchvision is installed), for every implementation.

    Returns rows ``{"case": "N32xC64x56x56/nchw", "impl": "fastext", "ms": ..., "gbs": ...}``
    and ``{"case": "resnet18-step/b32", "impl": "fastext", "ms": ..., "saved_mb": ...}``
    (``peak_mb`` instead of ``saved_mb`` on CUDA).
    """
    rows = _bn_relu_rows(device, reps, quick, warmup, progress)
    rows += _abn_rows(device, reps, quick, warmup, progress)
    if torchvision_available():
        rows += _resnet_rows(device, reps, quick, warmup, progress)
    else:
        progress("torchvision not installed: resnet18-step left out")
    return rows
