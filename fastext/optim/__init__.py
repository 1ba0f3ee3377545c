"""Drop-in fused optimizers: swap ``torch.optim.AdamW`` for ``fastext.optim.AdamW``."""

from .adamw import AdamW
from .rmsprop import RMSprop

__all__ = ["AdamW", "RMSprop"]
