"""Image generation (the course's lesson 7): crappified pairs, the feature network behind the
feature loss, PSNR / SSIM, the restoration U-Net, and GAN training (critic, switchers,
GANLearner)."""

from .crappify import crappify
from .data import PairDataLoaders, crappy_pairs
from .features import FeatureNet, load_vgg16_bn, vgg_body
from .gan import AdaptiveGANSwitcher, FixedGANSwitcher, GANLearner, basic_critic
from .metrics import PSNR, SSIM, psnr, ssim
from .restorer import restoration_unet

__all__ = ["PSNR", "SSIM", "AdaptiveGANSwitcher", "FeatureNet", "FixedGANSwitcher", "GANLearner",
           "PairDataLoaders", "basic_critic", "crappify", "crappy_pairs", "load_vgg16_bn",
           "psnr", "restoration_unet", "ssim", "vgg_body"]
