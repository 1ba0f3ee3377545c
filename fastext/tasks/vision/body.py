"""Backbones for vision tasks: a torchvision architecture (or any module) cut before its
pooling layer, with weights from a local file when the user has one.

No weights are downloaded: ``pretrained`` is a path to a state dict in torchvision's format
(e.g. ``resnet34-b627a593.pth`` copied from another machine), or ``None`` for random init.

>>> body = create_body("resnet18", in_channels=1)
>>> body(torch.randn(2, 1, 64, 64)).shape
torch.Size([2, 512, 2, 2])
>>> num_features(body)
512
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import torch
from torch import nn

from ...data.files import load_torch_file
from ...nn.modes import eval_mode

__all__ = ["ARCHS", "conv_body", "create_body", "load_body_weights",
           "load_pretrained", "num_features"]


def _torchvision(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return build


#: Architecture name -> constructor of the full (uncut) torchvision model, random weights.
ARCHS: dict[str, Callable[[], nn.Module]] = {
    name: _torchvision(name)
    for name in ("resnet18", "resnet34", "resnet50", "vgg16_bn", "densenet121")
}


def load_pretrained(model: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """Loads a torchvision-format state dict from ``path`` into ``model`` (strict), on the CPU.

    Raises:
        FileNotFoundError: no such file (nothing is ever downloaded).
        DataError: a file torch cannot read (:func:`fastext.data.load_torch_file`).
        RuntimeError: the file does not fit the architecture (missing/unexpected keys).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained weights not found: {path} (fastext never downloads "
                                "weights; copy a torchvision .pth file here)")
    state = load_torch_file(path)
    if type(model).__name__ == "DenseNet" and isinstance(state, dict):
        state = _rename_densenet_keys(state)
    model.load_state_dict(state)
    return model


#: torchvision's published DenseNet checkpoints name ``denselayerN.norm.1.weight`` what the
#: model now calls ``denselayerN.norm1.weight`` (dots are no longer allowed in module names).
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                               r"((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _rename_densenet_keys(state: dict) -> dict:
    """``state`` with old-style DenseNet keys renamed as torchvision does when it loads them.

    >>> list(_rename_densenet_keys({"features.denseblock1.denselayer1.norm.1.weight": 0}))
    ['features.denseblock1.denselayer1.norm1.weight']
    """
    out = {}
    for key, value in state.items():
        m = _OLD_DENSENET_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def load_body_weights(body: nn.Module, path: str | os.PathLike[str]) -> nn.Module:
    """:func:`load_pretrained` into a body given as it is (``cut=False`` in the learners):
    the file must hold that module's own state dict (e.g. ``torch.save(body.state_dict(),
    path)``); a full torchvision model's file does not fit it, and the error says so."""
    try:
        return load_pretrained(body, path)
    except RuntimeError as e:
        raise RuntimeError(f"{path} does not fit the body given with cut=False: with "
                           "cut=False the file must hold that module's own state dict; a "
                           "torchvision model's file goes with its name or the uncut model "
                           f"(cut=True). {str(e).splitlines()[0]}") from e


def _cut(model: nn.Module) -> nn.Module:
    """The layers before the global pooling: torchvision's ``features`` (VGG, DenseNet, with
    a final ReLU for DenseNet whose classifier applies it), else the children up to the
    last pooling layer (ResNet: everything before ``avgpool``)."""
    if hasattr(model, "features"):
        feats = model.features
        if type(model).__name__ == "DenseNet":
            return nn.Sequential(feats, nn.ReLU(inplace=True))
        return feats
    children = list(model.children())
    for i in range(len(children) - 1, -1, -1):
        if isinstance(children[i], (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d)):
            return nn.Sequential(*children[:i])
    raise ValueError(f"cannot find the pooling layer of {type(model).__name__}; pass a module "
                     "that is already cut (the body) instead")


def _first_conv(module: nn.Module, what: str = "the body",
                ) -> tuple[nn.Module | None, str, nn.Conv2d]:
    """The first ``Conv2d`` of ``module`` in definition order (``named_modules``' pre-order,
    so a conv nested in an earlier child comes before a later direct child), with its parent
    and its attribute name there; the parent is ``None`` when ``module`` is itself the conv.
    Shared by :func:`create_body`, :func:`num_features` and the U-Net.

    >>> net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3)), nn.Conv2d(8, 16, 3))
    >>> parent, name, conv = _first_conv(net)
    >>> parent is net[0], name, conv.in_channels
    (True, '0', 3)
    """
    for full_name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            if not full_name:
                return None, "", m
            parent_name, _, name = full_name.rpartition(".")
            return module.get_submodule(parent_name), name, m
    raise ValueError(f"{what} has no Conv2d")


def _adapt_input(body: nn.Module, in_channels: int) -> None:
    """Gives the first conv ``in_channels`` inputs. Its RGB filters, pretrained or not, are
    summed into a grey channel (1) or repeated cyclically and rescaled (more than 3), so that a
    pretrained stem keeps its meaning."""
    parent, name, conv = _first_conv(body)
    if conv.in_channels == in_channels:
        return
    if parent is None:
        raise ValueError("the body is a single Conv2d: wrap it in an nn.Sequential to change "
                         "its input channels")
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        w = conv.weight
        if in_channels == 1:
            new.weight.copy_(w.sum(1, keepdim=True))
        else:
            idx = torch.arange(in_channels) % w.shape[1]
            new.weight.copy_(w[:, idx] * (w.shape[1] / in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    setattr(parent, name, new)


def create_body(arch: str | nn.Module, pretrained: str | os.PathLike[str] | None = None,
                in_channels: int = 3) -> nn.Module:
    """The convolutional body of ``arch``: a name in :data:`ARCHS` or a torchvision-style
    module, with weights from the local file ``pretrained`` (torchvision format) if given,
    cut before its global pooling, taking ``in_channels`` input channels."""
    if isinstance(arch, str):
        if arch not in ARCHS:
            raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)} "
                             "(or pass a module)")
        model = ARCHS[arch]()
    elif isinstance(arch, nn.Module):
        model = arch
    else:
        raise TypeError(f"arch must be a name or an nn.Module, got {type(arch).__name__}")
    if pretrained is not None:
        load_pretrained(model, pretrained)
    body = _cut(model)
    _adapt_input(body, in_channels)
    return body


def num_features(body: nn.Module, in_channels: int | None = None, size: int = 64) -> int:
    """Channels of ``body``'s output, found by running it once on a small dummy batch."""
    if in_channels is None:
        in_channels = _first_conv(body)[2].in_channels
    with eval_mode(body), torch.no_grad():
        p = next(body.parameters())
        out = body(torch.zeros(1, in_channels, size, size, device=p.device, dtype=p.dtype))
    return out.shape[1]


def conv_body(in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128, 256),
              strides: tuple[int, ...] = (2, 2, 2, 2), norm: bool = True) -> nn.Sequential:
    """A plain body for small images: per width, a 3x3 conv (stride from ``strides``) ->
    BatchNorm -> ReLU. ``strides`` decides the output resolution (a Grad-CAM wants a map
    that is not too coarse).

    ``norm=False`` leaves the BatchNorms out (conv -> ReLU, still without biases): the body
    then maps an all-zero region to exactly zero in every block (zero padding included), so
    on images whose background is zero after normalisation, a block's activations, and a
    Grad-CAM taken there, can only be non-zero where some input in the receptive field is.

    >>> conv_body(1, (8, 16), (2, 1))(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 16, 14, 14])
    >>> x = torch.zeros(1, 1, 28, 28)
    >>> x[0, 0, 10, 10] = 1.0
    >>> out = conv_body(1, (8, 16), (1, 1), norm=False)(x)
    >>> bool(out[..., :8, :].eq(0).all()), bool(out[..., 13:, :].eq(0).all())
    (True, True)
    """
    if len(widths) != len(strides) or not widths:
        raise ValueError("widths and strides must be non-empty and of equal length")
    layers: list[nn.Module] = []
    c = in_channels
    for w, s in zip(widths, strides, strict=True):
        conv = nn.Conv2d(c, w, 3, s, 1, bias=False)
        layers.append(nn.Sequential(conv, nn.BatchNorm2d(w), nn.ReLU(inplace=True)) if norm
                      else nn.Sequential(conv, nn.ReLU(inplace=True)))
        c = w
    return nn.Sequential(*layers)
