"""Drop-in fused layers: ``BatchNormReLU1d/2d``, ``fuse_bn_relu(model)`` and ``FeatureLoss``."""

from .batchnorm import BatchNormReLU1d, BatchNormReLU2d
from .feature_loss import FeatureLoss, gram_matrix, relu_before_pools
from .functional import bn_relu
from .fuse import fuse_bn_relu

__all__ = ["BatchNormReLU1d", "BatchNormReLU2d", "FeatureLoss", "bn_relu", "fuse_bn_relu",
           "gram_matrix", "relu_before_pools"]
