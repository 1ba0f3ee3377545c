"""Drop-in fused layers: ``BatchNormReLU1d/2d`` and ``fuse_bn_relu(model)``."""

from .batchnorm import BatchNormReLU1d, BatchNormReLU2d
from .functional import bn_relu
from .fuse import fuse_bn_relu

__all__ = ["BatchNormReLU1d", "BatchNormReLU2d", "bn_relu", "fuse_bn_relu"]
