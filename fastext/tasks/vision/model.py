"""The transfer-learning model: a torchvision body cut before its pooling, fastai's head
(concat pooling, batchnorm, dropout, linear layers) and the split of the two into the
course's three layer groups for discriminative learning rates.

>>> body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
>>> model = VisionModel(body, create_head(8, 4))
>>> model(torch.randn(2, 3, 16, 16)).shape
torch.Size([2, 4])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ...learner import body_head_splitter
from ...nn import fuse_bn_relu
from .body import create_body, load_body_weights, num_features

__all__ = ["AdaptiveConcatPool2d", "VisionModel", "body_split", "create_head",
           "vision_splitter"]


class AdaptiveConcatPool2d(nn.Module):
    """Average and max pooling side by side: 2x the channels, both summaries of the map."""

    def __init__(self, size: int = 1) -> None:
        super().__init__()
        self.avg, self.max = nn.AdaptiveAvgPool2d(size), nn.AdaptiveMaxPool2d(size)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.max(x), self.avg(x)], 1)


def create_head(nf: int, n_out: int, lin_ftrs: Sequence[int] = (512,), ps: float = 0.5,
                concat_pool: bool = True) -> nn.Sequential:
    """Pool -> Flatten -> [BN -> Dropout -> Linear -> ReLU] per hidden size -> BN ->
    Dropout -> Linear(n_out). Dropout is ``ps / 2`` before the hidden layers and ``ps``
    before the last (the course's head)."""
    pool = AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1)
    sizes = [nf * (2 if concat_pool else 1), *lin_ftrs, n_out]
    layers: list[nn.Module] = [pool, nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        layers += [nn.BatchNorm1d(a), nn.Dropout(ps if last else ps / 2), nn.Linear(a, b)]
        if not last:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


# -- layer groups: fastai's model_meta splits of torchvision bodies ------------------------
#: Where fastai (``model_meta``) splits the layers of each torchvision family's body (the
#: cut model's ``features`` for all but ResNet): ``body[:i]`` is the low group.
_SPLIT_AT = {"resnet": 6, "densenet": 7, "vgg": 22, "alexnet": 6, "squeezenet": 5}
#: Layers that leave a VGG / AlexNet layer pattern as it is (fused BatchNorm -> ReLU pairs
#: leave an Identity and a fused norm behind).
_PATTERN_NEUTRAL = (nn.ReLU, nn.Identity, nn.modules.batchnorm._BatchNorm, nn.Dropout)


def _is_resnet_body(body: nn.Module) -> bool:
    """A torchvision ResNet cut before its pooling: stem (4 layers) and 4 stages of blocks."""
    return (isinstance(body, nn.Sequential) and len(body) == 8
            and all(isinstance(body[i], nn.Sequential) and len(body[i]) > 0
                    and all(hasattr(b, "conv1") and hasattr(b, "conv2") for b in body[i])
                    for i in range(4, 8)))


def _conv_pattern(body: nn.Sequential) -> list[int | str] | None:
    """Conv widths with ``"M"`` for max-pools (torchvision's VGG ``cfgs`` notation) of a flat
    conv body, or ``None`` when it holds anything else."""
    out: list[int | str] = []
    for m in body:
        if isinstance(m, nn.Conv2d):
            out.append(m.out_channels)
        elif isinstance(m, nn.MaxPool2d):
            out.append("M")
        elif not isinstance(m, _PATTERN_NEUTRAL):
            return None
    return out


def _family(body: nn.Module) -> tuple[str, nn.Sequential] | None:
    """The torchvision family of ``body`` and the sequence fastai splits (ResNet: the body;
    DenseNet: its ``features``; VGG, AlexNet, SqueezeNet: the body, their ``features``),
    recognised from its layers so that a body made anywhere (``cut=False``, the
    restoration U-Net) splits alike; ``None`` for any other body."""
    if not isinstance(body, nn.Sequential) or len(body) == 0:
        return None
    if _is_resnet_body(body):
        return "resnet", body
    feats = body[0] if isinstance(body[0], nn.Sequential) else body
    if "transition2" in dict(feats.named_children()):
        return "densenet", feats
    if any(type(m).__name__ == "Fire" for m in body):
        return "squeezenet", body
    pattern = _conv_pattern(body)
    first = body[0]
    if (pattern is not None and isinstance(first, nn.Conv2d)
            and first.kernel_size == (11, 11) and pattern == [64, "M", 192, "M", 384, 256,
                                                                   256, "M"]):
        return "alexnet", body
    if pattern is not None and pattern in _vgg_cfgs():
        return "vgg", body
    return None


def _vgg_cfgs() -> list[list[int | str]]:
    from torchvision.models.vgg import cfgs

    return list(cfgs.values())


def body_split(body: nn.Module) -> tuple[list[nn.Module], list[nn.Module]] | None:
    """The low and high layers of a torchvision body, split where fastai's ``model_meta``
    splits them (``_resnet_split`` and kin): ResNet ``body[:6]`` (stem, layer1, layer2) |
    ``body[6:]`` (layer3, layer4); DenseNet ``features[:7]`` | the rest; VGG
    ``features[:22]``; AlexNet ``features[:6]``; SqueezeNet ``features[:5]`` (fastai v2's
    three groups; v1 split SqueezeNet once more). ``None`` for another body (fastai's
    ``default_split``: the body is one group).

    >>> from fastext.tasks.vision.body import create_body
    >>> low, high = body_split(create_body("resnet18"))
    >>> [type(m).__name__ for m in low][-2:], len(high)
    (['Sequential', 'Sequential'], 2)
    >>> body_split(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())) is None
    True
    """
    found = _family(body)
    if found is None:
        return None
    name, seq = found
    i = _SPLIT_AT[name]
    low, high = list(seq)[:i], list(seq)[i:]
    if seq is not body:  # DenseNet: what follows its features (the final ReLU) goes high
        high += list(body)[1:]
    return low, high


def _params(parts: Sequence[nn.Module | Sequence[nn.Module]]) -> list[list[nn.Parameter]]:
    """Parameter lists of ``parts`` (a module or a list of modules each); a parameter goes
    in its first group only, and empty groups are dropped."""
    seen: set[int] = set()
    out = []
    for part in parts:
        modules = [part] if isinstance(part, nn.Module) else list(part)
        params = [p for m in modules for p in m.parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            out.append(params)
    return out


def vision_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """Layer groups of a :class:`VisionModel`: ``[low body, high body, head]`` for a
    torchvision body (:func:`body_split`), else ``[body, head]``; ``freeze()`` trains the
    head only, ``slice(lo, hi)`` spreads its rates geometrically over the groups.

    >>> from fastext.tasks.vision.body import create_body
    >>> model = VisionModel(create_body("resnet34"), create_head(512, 2))
    >>> [len(g) for g in vision_splitter(model)]
    [48, 60, 8]
    """
    if not (hasattr(model, "body") and hasattr(model, "head")):
        return body_head_splitter(model)
    split = body_split(model.body)
    return _params([*split, model.head] if split else [model.body, model.head])


class VisionModel(nn.Module):
    """``head(body(x))``; :func:`vision_splitter` makes its layer groups."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _vision_model(arch: str | nn.Module, n_out: int, pretrained: Any = None,
                  in_channels: int = 3, lin_ftrs: Sequence[int] = (512,), ps: float = 0.5,
                  concat_pool: bool = True, cut: bool = True, fuse: bool = True,
                  ) -> VisionModel:
    """The model :func:`vision_learner` trains (also rebuilt by :func:`load_learner`)."""
    if cut or isinstance(arch, str):
        body = create_body(arch, pretrained, in_channels)
    else:  # the module is the body: the weights go into it as it is
        body = arch if pretrained is None else load_body_weights(arch, pretrained)
    if fuse:
        body = fuse_bn_relu(body)
    head = create_head(num_features(body, in_channels), n_out, lin_ftrs, ps, concat_pool)
    return VisionModel(body, head)
