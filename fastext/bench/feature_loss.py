"""The ``feature_loss`` suite: the fused feature loss against the plain PyTorch, hook-based
formula of the course (``impl`` ``hooks-reference``), forward + backward, batch 8 at 128 px.

Cases:

* ``vgg16_bn-terms/b8x128``: the loss terms alone, from the pixels (8, 3, 128, 128) and the
  activations of ``torchvision.models.vgg16_bn`` (random weights, eval mode) at the course's
  slices, the ReLUs before the 3rd, 4th and 5th pools: (8, 256, 32, 32), (8, 512, 16, 16),
  (8, 512, 8, 8), weights 5, 15, 2 and ``gram_wgt`` 5e3. One timed call computes the summed
  loss from leaf tensors and ``torch.autograd.grad`` of it w.r.t. the output image's pixels
  and features: ``fastext`` is :func:`fastext.ops.feature_loss` (one call), the reference the
  formula in stock ops (an L1 per pair, a Gram matrix per slice for input and target, an L1
  per Gram pair, autograd's backward). This is the part fastext replaces.
* ``vgg16_bn-module/b8x128``: the whole :class:`fastext.nn.FeatureLoss` forward + backward,
  the backbone's forward for output and target and its backward included
  (``fused=True`` against ``fused=False``, which collects features with forward hooks).
  The backbone's convolutions dominate here, so the ratio shows what a training step gains.

Every ``fastext`` row carries ``rel_diff``: ``|fastext - reference| / |reference|`` of the
loss value. ``gbs`` (terms case) counts the 5 passes over the pairs a fused forward +
backward cannot avoid (read input and target twice, write the gradient); the Gram GEMMs are
extra work on top.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..nn.feature_loss import FeatureLoss, feature_terms, relu_before_pools
from . import importable
from .timing import time_alternating

NAME = "feature_loss"
BATCH, SIZE = 8, 128
QUICK_BATCH, QUICK_SIZE = 2, 32
WGTS = [5.0, 15.0, 2.0]
GRAM_WGT = 5e3
DEFAULT_REPS = {"cpu": 10, "cuda": 50}
SEED = 0


def missing(device: torch.device, quick: bool = False) -> str | None:
    """What this suite lacks to run here, or ``None``: torchvision (the VGG16-BN backbone)."""
    return None if importable("torchvision") else "needs torchvision (pip install torchvision)"


def _backbone(device: torch.device) -> tuple[torch.nn.Sequential, list[int]]:
    import torchvision

    torch.manual_seed(SEED)
    vgg = torchvision.models.vgg16_bn(weights=None).features.to(device).eval()
    return vgg, relu_before_pools(vgg)[2:5]


def _loss(xs: list[Tensor], ts: list[Tensor], fused: bool) -> Tensor:
    """The summed loss from the pixels (first) and the feature slices."""
    gram_wgts = [w * w * GRAM_WGT for w in WGTS]
    return feature_terms(xs[0], ts[0], xs[1:], ts[1:], WGTS, gram_wgts, fused).sum()


def reference_loss(xs: list[Tensor], ts: list[Tensor]) -> Tensor:
    """The course's formula in stock PyTorch ops."""
    return _loss(xs, ts, fused=False)


def fused_loss(xs: list[Tensor], ts: list[Tensor]) -> Tensor:
    """The same loss in one native call."""
    return _loss(xs, ts, fused=True)


def _terms_row(device: torch.device, reps: int, warmup: int, batch: int, size: int,
               progress: Callable[[str], None]) -> list[dict]:
    vgg, ids = _backbone(device)
    gen = torch.Generator(device=device).manual_seed(SEED)
    out, tgt = (torch.rand(batch, 3, size, size, generator=gen, device=device) for _ in range(2))
    with torch.no_grad():
        f_out, f_tgt = (FeatureLoss(vgg, ids, WGTS)._features(v) for v in (out, tgt))
    xs = [v.detach().clone().requires_grad_() for v in (out, *f_out)]
    ts = [v.detach() for v in (tgt, *f_tgt)]
    del vgg
    calls = {impl: (lambda fn=fn: torch.autograd.grad(fn(xs, ts), xs))
             for impl, fn in (("hooks-reference", reference_loss), ("fastext", fused_loss))}
    case = f"vgg16_bn-terms/b{batch}x{size}"
    progress(f"{case} timing 2 impls x {reps} reps")
    times = time_alternating(calls, device, reps=reps, warmup=warmup)
    with torch.no_grad():
        ref, ours = reference_loss(xs, ts).double(), fused_loss(xs, ts).double()
    nbytes = 5 * sum(x.numel() * x.element_size() for x in xs)
    rows = [{"case": case, "impl": impl, "ms": ms, "gbs": nbytes / (ms * 1e-3) / 1e9}
            for impl, ms in times.items()]
    rows[-1]["rel_diff"] = float((ours - ref).abs() / ref.abs())
    return rows


def _module_rows(device: torch.device, reps: int, warmup: int, batch: int, size: int,
                 progress: Callable[[str], None]) -> list[dict]:
    vgg, ids = _backbone(device)
    losses = {"hooks-reference": FeatureLoss(vgg, ids, WGTS, GRAM_WGT, fused=False),
              "fastext": FeatureLoss(vgg, ids, WGTS, GRAM_WGT)}
    del vgg
    gen = torch.Generator(device=device).manual_seed(SEED)
    out, tgt = (torch.rand(batch, 3, size, size, generator=gen, device=device) for _ in range(2))
    out.requires_grad_()
    calls = {impl: (lambda fn=fn: torch.autograd.grad(fn(out, tgt), out))
             for impl, fn in losses.items()}
    case = f"vgg16_bn-module/b{batch}x{size}"
    progress(f"{case} timing 2 impls x {reps} reps")
    times = time_alternating(calls, device, reps=reps, warmup=warmup)
    with torch.no_grad():
        ref, ours = (losses[k](out, tgt).double() for k in ("hooks-reference", "fastext"))
    rows = [{"case": case, "impl": impl, "ms": ms, "reps": reps} for impl, ms in times.items()]
    rows[-1]["rel_diff"] = float((ours - ref).abs() / ref.abs())
    return rows


def run(device: torch.device, reps: int, quick: bool, progress: Callable[[str], None],
        warmup: int = 3) -> list[dict]:
    """Rows ``{"case", "impl", "ms", "gbs"?, "rel_diff"?}`` for both cases."""
    batch, size = (QUICK_BATCH, QUICK_SIZE) if quick else (BATCH, SIZE)
    rows = _terms_row(device, reps, warmup, batch, size, progress)
    # The whole module costs ~30x more per call, one warm-up is enough; its convolutions
    # vary from call to call by more than the loss terms differ, so it keeps every
    # repetition (a median of 3 on the 2-core VM ranged over 0.79-1.03x).
    rows += _module_rows(device, reps, min(warmup, 1), batch, size, progress)
    return rows
