"""Progressive resizing: train on small images first, then larger ones, keeping the model
and the optimizer (the course's trick for faster training and a regularising effect)."""

from __future__ import annotations

from .callback import Callback

__all__ = ["ProgressiveResize"]


class ProgressiveResize(Callback):
    """Sets the DataLoaders' image size at given epochs.

    ``sizes`` maps an epoch to the size used from that epoch on, e.g. ``{0: 64, 3: 128}``.
    The model must accept any input size (e.g. end in adaptive pooling). After the fit the
    loaders go back to their stored size, however the fit ends.

    >>> cb = ProgressiveResize({0: 64, 3: 128})
    >>> cb.size_at(2), cb.size_at(3)
    (64, 128)
    """

    order = 5  # before any callback that looks at the batch

    def __init__(self, sizes: dict[int, int]) -> None:
        if not sizes or min(sizes) < 0 or any(s < 1 for s in sizes.values()):
            raise ValueError("sizes must map epochs >= 0 to positive sizes")
        self.sizes = dict(sorted(sizes.items()))

    def size_at(self, epoch: int) -> int | None:
        current = None
        for start, size in self.sizes.items():
            if epoch >= start:
                current = size
        return current

    def before_epoch(self) -> None:
        self.learn.dls.set_size(self.size_at(self.learn.epoch))

    def after_fit(self) -> None:  # before other callbacks' after_fit see the loaders
        self.learn.dls.set_size(None)

    def finally_fit(self) -> None:  # also when an exception (Ctrl-C) ended the fit
        self.learn.dls.set_size(None)
