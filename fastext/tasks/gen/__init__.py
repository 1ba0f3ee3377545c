"""Image generation (the course's lesson 7): crappified pairs, the feature network behind the
feature loss, PSNR / SSIM, and GAN training (critic, switchers, GANLearner)."""

from .crappify import crappify
from .data import PairDataLoaders, crappy_pairs
from .metrics import PSNR, SSIM, psnr, ssim

__all__ = ["PSNR", "SSIM", "PairDataLoaders", "crappify", "crappy_pairs", "psnr", "ssim"]
