"""``fuse_bn_relu``: swaps BatchNorm -> ReLU pairs for the fused module, in place."""

from __future__ import annotations

from torch import Tensor, nn

from .batchnorm import BatchNormReLU1d, BatchNormReLU2d

__all__ = ["fuse_bn_relu"]

_FUSED = {nn.BatchNorm1d: BatchNormReLU1d, nn.BatchNorm2d: BatchNormReLU2d}


def _fused_copy(bn: nn.Module, cls: type | None = None, **kwargs) -> nn.Module:
    """The fused module (or a ``cls`` built with ``kwargs`` besides BatchNorm's arguments)
    holding ``bn``'s parameters and buffers (same tensors), absent ones included
    (``bias=False``, ``affine=False``, ``track_running_stats=False`` register ``None``):
    its own, made on the meta device, are all replaced."""
    fused = (cls or _FUSED[type(bn)])(bn.num_features, bn.eps, bn.momentum, bn.affine,
                                      bn.track_running_stats, device="meta", **kwargs)
    fused._parameters = dict(bn._parameters)
    fused._buffers = dict(bn._buffers)
    fused._non_persistent_buffers_set = set(bn._non_persistent_buffers_set)
    fused.train(bn.training)
    return fused


# A module's own hooks, of every kind: the fused module would run none of them.
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
               "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
               "_load_state_dict_post_hooks")


def _hooked(m: nn.Module) -> bool:
    return any(getattr(m, name, None) for name in _HOOK_DICTS)


def _identity_for(m: nn.Module) -> nn.Identity:
    """What takes a fused ReLU's place, in its train/eval mode."""
    return nn.Identity().train(m.training)


def _fusable(bn: nn.Module | None, relu: nn.Module | None) -> bool:
    return (type(bn) in _FUSED and type(relu) is nn.ReLU
            and not _hooked(bn) and not _hooked(relu))


class _FusedBasicBlock(nn.Module):
    """torchvision's BasicBlock with bn1+relu fused; same submodule names (state_dict)."""

    @staticmethod
    def fusable(block: nn.Module) -> bool:
        return _fusable(block.bn1, block.relu)

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1 = block.conv1, _fused_copy(block.bn1)
        self.conv2, self.bn2 = block.conv2, block.bn2
        self.relu, self.downsample, self.stride = block.relu, block.downsample, block.stride
        self.training = block.training  # its own flag: the children keep theirs

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        out += identity  # in place, as torchvision's block: no new activation
        return self.relu(out)  # add -> ReLU stays as it was


class _FusedBottleneck(nn.Module):
    """torchvision's Bottleneck with bn1+relu and bn2+relu fused; same submodule names."""

    @staticmethod
    def fusable(block: nn.Module) -> bool:
        return _fusable(block.bn1, block.relu) and _fusable(block.bn2, block.relu)

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1, self.bn1 = block.conv1, _fused_copy(block.bn1)
        self.conv2, self.bn2 = block.conv2, _fused_copy(block.bn2)
        self.conv3, self.bn3 = block.conv3, block.bn3
        self.relu, self.downsample, self.stride = block.relu, block.downsample, block.stride
        self.training = block.training  # its own flag: the children keep theirs

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv3(self.bn2(self.conv2(self.bn1(self.conv1(x))))))
        out += identity
        return self.relu(out)


def _torchvision_resnet():
    try:
        from torchvision.models import resnet
    except ImportError:
        return None
    return resnet


def _keeps_forward(model: nn.Module, cls: type, *names: str) -> bool:
    """Whether ``model`` is a ``cls`` that runs ``cls``'s own forward (``names``): a
    subclass with its own may use the modules otherwise (a BN's output twice, the ReLU
    elsewhere), so its pairs are not known to be fusable."""
    return isinstance(model, cls) and all(
        getattr(type(model), n) is getattr(cls, n) for n in names)


def fuse_bn_relu(model: nn.Module) -> nn.Module:
    """Replaces, in place, every ``BatchNorm1d/2d`` directly followed by a ``ReLU`` with the
    fused module: consecutive children of ``nn.Sequential``s, torchvision ResNet blocks
    (``bn -> relu`` inside; the ``add -> relu`` at the end is left alone) and the ResNet stem.
    Only modules known to run those pairs are changed: ``nn.Sequential``s and torchvision's
    ``ResNet`` that keep their class's ``forward`` (not subclasses with their own), and the
    blocks by exact type.
    Parameters and buffers are shared, not copied, so an optimizer built before keeps
    working. Works in train and eval mode; returns ``model``. A block whose norm layer is not
    ``BatchNorm1d/2d`` (``FrozenBatchNorm2d``, ``GroupNorm``) or whose activation is not a
    ``ReLU`` is left as it is; so is a pair (or ResNet block) where a module being replaced
    has hooks of any kind (forward, backward, state_dict), which the fused module would
    not run.

    >>> m = fuse_bn_relu(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()))
    >>> [type(c).__name__ for c in m]
    ['Conv2d', 'BatchNormReLU2d', 'Identity']
    """
    resnet = _torchvision_resnet()
    blocks = {} if resnet is None else {resnet.BasicBlock: _FusedBasicBlock,
                                        resnet.Bottleneck: _FusedBottleneck}
    for name, child in list(model.named_children()):
        fused_block = blocks.get(type(child))
        if fused_block is not None and not _hooked(child) and fused_block.fusable(child):
            setattr(model, name, fused_block(child))
        else:
            fuse_bn_relu(child)
    if _keeps_forward(model, nn.Sequential, "forward"):
        keys = list(model._modules)
        for a, b in zip(keys, keys[1:], strict=False):
            if _fusable(model._modules[a], model._modules[b]):
                model._modules[a] = _fused_copy(model._modules[a])
                model._modules[b] = _identity_for(model._modules[b])
    # torchvision ResNet stem: relu(bn1(conv1(x))); its `relu` is used nowhere else.
    if (resnet is not None and _keeps_forward(model, resnet.ResNet, "forward", "_forward_impl")
            and _fusable(model.bn1, model.relu)):
        model.bn1, model.relu = _fused_copy(model.bn1), _identity_for(model.relu)
    return model

