"""Feature (perceptual) loss: pixel L1 plus L1 over a frozen network's features and over their
Gram matrices (the course's super-resolution loss, after Johnson et al. 2016 and Gatys et al.).

``FeatureLoss(backbone, layer_ids, layer_wgts)`` takes the activations of ``backbone`` (an
``nn.Sequential``, e.g. torchvision's ``vgg16_bn().features``) after the children at
``layer_ids`` and computes, for an output image ``x`` and its target ``t``::

    L1(x, t) + sum_i w_i * L1(f_i(x), f_i(t)) + sum_i w_i**2 * gram_wgt * L1(G(f_i(x)), G(f_i(t)))

with ``G(f) = f f^T / (C H W)`` per image. The backbone is copied, cut after the last layer
needed, frozen and kept in eval mode; the target's features are computed without grad. With
``fused=True`` (the default) every term runs in one native call,
:func:`fastext.ops.feature_loss` (one reduction pass per pair, one GEMM per Gram matrix
forward and one backward, using the Gram gradient's symmetry); ``fused=False`` is the plain
PyTorch, hook-based formula (the reference the fused path is tested and benchmarked against).
Each term's value is kept in :attr:`FeatureLoss.metrics` (tensors, no host sync); the
Learner shows them with :class:`fastext.learner.metrics.LossTerm`.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
...                     nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
>>> loss_fn = FeatureLoss(net, layer_ids=[1, 4], layer_wgts=[5.0, 15.0])
>>> x, t = torch.rand(2, 3, 16, 16, requires_grad=True), torch.rand(2, 3, 16, 16)
>>> loss = loss_fn(x, t); loss.backward()
>>> sorted(loss_fn.metrics)
['feat_0', 'feat_1', 'gram_0', 'gram_1', 'pixel']
>>> ref = FeatureLoss(net, [1, 4], [5.0, 15.0], fused=False)(x, t)
>>> torch.allclose(loss, ref, rtol=1e-5)
True
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import ops

__all__ = ["FeatureLoss", "feature_terms", "gram_matrix", "relu_before_pools"]


def gram_matrix(x: Tensor) -> Tensor:
    """Per-image Gram matrix of (N, C, H, W) features: ``f f^T / (C H W)``, (N, C, C); (N, C)
    features are (N, C, 1). The course's style term compares these: which channels fire
    together, wherever they fire.

    >>> x = torch.tensor([[[[1.0, 0.0]], [[2.0, 2.0]]]])  # one image, C=2, H=1, W=2
    >>> gram_matrix(x)
    tensor([[[0.2500, 0.5000],
             [0.5000, 2.0000]]])
    >>> torch.equal(gram_matrix(x), gram_matrix(x.flip(-1)))  # blind to where
    True
    """
    n, c = x.shape[:2]
    f = x.reshape(n, c, -1)
    return f @ f.transpose(1, 2) / f[0].numel()


def feature_terms(input: Tensor, target: Tensor, f_in: Sequence[Tensor], f_t: Sequence[Tensor],
                  wgts: Sequence[float], gram_wgts: Sequence[float], fused: bool = True) -> Tensor:
    """The loss's terms from the images and their features: ``[L1(input, target),
    w_i * L1(f_i), ..., g_i * L1(G(f_i)), ...]`` (float32, float64 for float64 inputs).
    ``fused``: one :func:`fastext.ops.feature_loss` call; else the formula in stock ops."""
    if fused:
        n = len(wgts)
        terms = ops.feature_loss([input, *f_in], [target, *f_t], [1.0, *wgts], [0.0, *gram_wgts])
        return torch.cat([terms[:n + 1], terms[n + 2:]])  # drop the pixels' (zero) Gram term
    # As the op: each pair computed in float32 (float64 for float64), the terms float64
    # when any pair is float64.
    def up(x: Tensor) -> Tensor:
        return x.to(torch.promote_types(x.dtype, torch.float32))

    dt = functools.reduce(torch.promote_types, [a.dtype for a in (input, *f_in)], torch.float32)
    pairs = list(zip(f_in, f_t, wgts, gram_wgts, strict=True))
    return torch.stack(
        [F.l1_loss(up(input), up(target)).to(dt)]
        + [(F.l1_loss(up(a), up(b)) * w).to(dt) for a, b, w, _ in pairs]
        + [(F.l1_loss(gram_matrix(up(a)), gram_matrix(up(b))) * g).to(dt)
           for a, b, _, g in pairs])


def relu_before_pools(backbone: nn.Sequential) -> list[int]:
    """Indices of the children just before each ``MaxPool2d``: the course's feature layers
    (for ``vgg16_bn().features``: [5, 12, 22, 32, 42])."""
    kids = list(backbone.children())
    return [i - 1 for i, m in enumerate(kids) if isinstance(m, nn.MaxPool2d) and i > 0]


class FeatureLoss(nn.Module):
    """Pixel L1 + weighted feature L1 + weighted Gram L1 over a frozen backbone.

    Args:
        backbone: ``nn.Sequential`` whose children are run in order (copied; the original
            is left untouched).
        layer_ids: children whose outputs are the features (e.g. the ReLUs before the
            pools: :func:`relu_before_pools`).
        layer_wgts: one weight per feature layer.
        gram_wgt: the Gram terms' weight is ``w_i**2 * gram_wgt`` (course default 5e3).
        gram_wgts: per-layer Gram weights instead (overrides ``gram_wgt``), e.g. from
            :meth:`calibrated` for a backbone whose activations are not VGG's.
        stats: ``(mean, std)`` per channel to normalise images with before the backbone
            (e.g. ImageNet's for torchvision weights); the pixel term uses the raw images.
        fused: one native call for all terms (L1 only); ``False`` for plain PyTorch.

    The target is a constant: it gets no gradient on either path, even when it requires one
    (the fused op cannot give it one, so the plain path does not either). With
    ``fused=True`` the loss is differentiable once (``create_graph=True`` raises); use
    ``fused=False`` for second derivatives.
    """

    def __init__(self, backbone: nn.Sequential, layer_ids: Sequence[int],
                 layer_wgts: Sequence[float], gram_wgt: float = 5e3,
                 stats: tuple[Sequence[float], Sequence[float]] | None = None,
                 fused: bool = True, gram_wgts: Sequence[float] | None = None) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Sequential):
            raise TypeError(f"backbone must be an nn.Sequential, got {type(backbone).__name__}")
        ids = [int(i) for i in layer_ids]
        if not ids or len(ids) != len(layer_wgts):
            raise ValueError("give one weight per feature layer (and at least one layer)")
        kids = list(backbone.children())
        if min(ids) < 0 or max(ids) >= len(kids) or sorted(set(ids)) != ids:
            raise ValueError(f"layer_ids must be increasing indices below {len(kids)}, got {ids}")
        body = copy.deepcopy(nn.Sequential(*kids[:ids[-1] + 1]))
        for m in body.modules():  # a stored feature must not be changed by a later layer
            if hasattr(m, "inplace"):
                m.inplace = False
        self.body = body.eval().requires_grad_(False)
        self.layer_ids, self.wgts = ids, [float(w) for w in layer_wgts]
        self.gram_wgt, self.fused = float(gram_wgt), fused
        if gram_wgts is not None and len(gram_wgts) != len(ids):
            raise ValueError("give one Gram weight per feature layer")
        self.gram_wgts = ([float(g) for g in gram_wgts] if gram_wgts is not None
                          else [w * w * self.gram_wgt for w in self.wgts])
        if stats is not None:
            mean, std = (torch.tensor(s, dtype=torch.float32).view(1, -1, 1, 1) for s in stats)
            self.register_buffer("mean", mean, persistent=False)
            self.register_buffer("std", std, persistent=False)
        else:
            self.mean = self.std = None
        self.metrics: dict[str, Tensor] = {}

    @property
    def names(self) -> list[str]:
        """Term names, in the order of the terms: pixel, feat_i..., gram_i..."""
        n = len(self.wgts)
        return ["pixel"] + [f"feat_{i}" for i in range(n)] + [f"gram_{i}" for i in range(n)]

    def train(self, mode: bool = True) -> FeatureLoss:
        """The backbone stays in eval mode (frozen BatchNorm statistics) whatever ``mode``."""
        super().train(mode)
        self.body.eval()
        return self

    def _prep(self, x: Tensor) -> Tensor:
        if self.mean is None:
            return x
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def _features(self, x: Tensor) -> list[Tensor]:
        out, want = [], set(self.layer_ids)
        for i, m in enumerate(self.body):
            x = m(x)
            if i in want:
                out.append(x)
        return out

    def _hooked_features(self, x: Tensor) -> list[Tensor]:
        """The reference's way: forward hooks on the feature layers, the whole body run."""
        out: list[Tensor] = []
        handles = [self.body[i].register_forward_hook(lambda m, a, o: out.append(o))
                   for i in self.layer_ids]
        try:
            self.body(x)
        finally:
            for h in handles:
                h.remove()
        return out

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """The total loss (a scalar); the terms are left in :attr:`metrics`."""
        if input.shape != target.shape:
            raise ValueError(f"input {tuple(input.shape)} and target {tuple(target.shape)} "
                             "must have the same shape")
        target = target.detach().to(input.dtype)  # a constant on both paths (see the class doc)
        feats = self._features if self.fused else self._hooked_features
        f_in = feats(self._prep(input))
        with torch.no_grad():
            f_t = feats(self._prep(target))
        terms = feature_terms(input, target, f_in, f_t, self.wgts, self.gram_wgts, self.fused)
        self.metrics = dict(zip(self.names, terms.detach(), strict=True))
        return terms.sum()

    @torch.no_grad()
    def calibrated(self, inputs: Tensor, targets: Tensor, ratio: float = 1.0) -> FeatureLoss:
        """A copy whose feature and Gram weights make every term ``ratio`` times the pixel
        term on ``(inputs, targets)`` (e.g. degraded images and their originals): the
        course's weights suit VGG16's activations, not those of another backbone."""
        unit = copy.copy(self)
        unit.wgts, unit.gram_wgts = [1.0] * len(self.wgts), [1.0] * len(self.wgts)
        unit(inputs, targets)
        m, n = unit.metrics, len(self.wgts)
        pixel = float(m["pixel"])
        out = copy.copy(self)
        out.wgts = [ratio * pixel / max(float(m[f"feat_{i}"]), 1e-12) for i in range(n)]
        out.gram_wgts = [ratio * pixel / max(float(m[f"gram_{i}"]), 1e-12) for i in range(n)]
        out.metrics = {}
        return out

