"""Drop-in fused layers: ``BatchNormReLU1d/2d``, ``fuse_bn_relu(model)``, the in-place
``InPlaceABN1d/2d`` and ``FeatureLoss``; ``convert_sync_batchnorm`` for data-parallel
training; ``eval_mode``, a block in eval mode that gives every submodule its flag back."""

from .batchnorm import BatchNormReLU1d, BatchNormReLU2d
from .feature_loss import FeatureLoss, feature_terms, gram_matrix, relu_before_pools
from .functional import bn_relu, inplace_abn
from .fuse import fuse_bn_relu
from .inplace_bn import InPlaceABN1d, InPlaceABN2d
from .modes import eval_mode
from .sync_bn import SyncBatchNormReLU, convert_sync_batchnorm

__all__ = ["BatchNormReLU1d", "BatchNormReLU2d", "FeatureLoss", "InPlaceABN1d", "InPlaceABN2d",
           "SyncBatchNormReLU", "bn_relu", "convert_sync_batchnorm", "eval_mode", "fuse_bn_relu",
           "feature_terms", "gram_matrix", "inplace_abn", "relu_before_pools"]
