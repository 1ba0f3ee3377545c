"""The feature network behind the feature loss, honest without downloaded weights.

With a local torchvision ``vgg16_bn`` weights file the course's backbone is used as is
(ImageNet statistics, features at the ReLUs before the 3rd, 4th and 5th pools). Without one,
a random VGG would give features that mean nothing, so :func:`train_feature_net` first
trains a small VGG-style encoder (conv-BN-ReLU x2 then max-pool, per stage) as the encoder
of a U-Net segmenting CamVid's frames: its activations then carry edges, textures and object
parts of these very scenes. Either way the result is a :class:`FeatureNet`: the
``nn.Sequential`` body, the layer ids and weights to take, the normalisation stats, and a
line saying what it is.

>>> body = vgg_body((8, 16))
>>> [type(m).__name__ for m in body][:4], relu_before_pools(body)
(['Conv2d', 'BatchNorm2d', 'ReLU', 'Conv2d'], [5, 12])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..._messages import first_line
from ...data.files import DataError, load_torch_file
from ...nn.feature_loss import FeatureLoss, relu_before_pools
from ..vision.data import IMAGENET_STATS

__all__ = ["FeatureNet", "load_vgg16_bn", "train_feature_net", "vgg_body"]



@dataclass
class FeatureNet:
    """A frozen feature extractor for :class:`~fastext.nn.FeatureLoss`."""

    body: nn.Sequential
    layer_ids: list[int]
    layer_wgts: list[float]
    stats: tuple[Sequence[float], Sequence[float]]
    description: str

    def loss(self, gram_wgt: float = 5e3, fused: bool = True) -> FeatureLoss:
        """The course's feature loss over this network."""
        return FeatureLoss(self.body, self.layer_ids, self.layer_wgts, gram_wgt,
                           stats=self.stats, fused=fused)


def vgg_body(widths: Sequence[int] = (32, 64, 128, 256), in_channels: int = 3) -> nn.Sequential:
    """A flat VGG-style body: per stage two conv3x3-BN-ReLU, then a 2x2 max-pool."""
    layers: list[nn.Module] = []
    ci = in_channels
    for co in widths:
        for _ in range(2):
            layers += [nn.Conv2d(ci, co, 3, padding=1, bias=False), nn.BatchNorm2d(co),
                       nn.ReLU(inplace=True)]
            ci = co
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


def load_vgg16_bn(weights: str | os.PathLike[str]) -> FeatureNet:
    """torchvision's ``vgg16_bn`` features with weights from a local file (a whole-model
    state dict as torchvision saves it, or the ``features`` part alone)."""
    import torchvision

    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"no vgg16_bn weights file at {path}")
    state = load_torch_file(path)
    if not isinstance(state, dict):
        raise DataError(f"{path}: not a state dict (a {type(state).__name__})")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    body = torchvision.models.vgg16_bn(weights=None).features
    try:
        body.load_state_dict(state)
    except RuntimeError as e:  # other keys or shapes: another architecture's weights
        raise DataError(f"{path}: not vgg16_bn weights ({first_line(e)})") from e
    return FeatureNet(body, relu_before_pools(body)[2:5], [5.0, 15.0, 2.0], IMAGENET_STATS,
                      f"vgg16_bn with ImageNet weights from {path}")


def train_feature_net(images: Tensor, masks: Tensor, codes: Sequence[str], epochs: int = 12,
                      lr: float = 3e-3, bs: int = 8, seed: int = 0,
                      widths: Sequence[int] = (32, 64, 128, 256),
                      quiet: bool = False) -> tuple[FeatureNet, dict[str, Any]]:
    """Trains :func:`vgg_body` as a U-Net encoder segmenting ``images`` (uint8 (N, 3, H, W))
    into ``masks`` (N, H, W) and returns it as a :class:`FeatureNet` (features at the ReLUs
    before the 2nd, 3rd and 4th pools) with a record of the training (pixel accuracy on the
    training frames: the net is only a feature extractor, it is not scored as a segmenter).
    """
    from ..vision.unet import PixelAccuracy, SegmentationDataLoaders, unet_learner

    torch.manual_seed(seed)
    dls = SegmentationDataLoaders.from_tensors(images, masks, images[:bs], masks[:bs], codes,
                                               bs=bs, flip=0.5, scale=(0.6, 1.0), seed=seed,
                                               device="cpu")
    body = vgg_body(widths)
    learn = unet_learner(dls, body, cut=False, fuse=False, quiet=quiet,
                         metrics=[PixelAccuracy(dls.void_code)])
    learn.fit_one_cycle(epochs, lr)
    acc = float(learn.validate()[1])
    body = learn.model.encoder
    ids = relu_before_pools(body)
    net = FeatureNet(body.cpu(), ids[1:4], [5.0, 15.0, 2.0], dls.stats,
                     f"VGG-style net ({'-'.join(map(str, widths))} channels) trained here as a "
                     f"CamVid segmentation encoder ({len(images)} frames, {epochs} epochs)")
    return net, {"feature_net_epochs": epochs, "feature_net_train_pixel_acc": acc}
