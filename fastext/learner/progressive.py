"""Progressive resizing: train on small images first, then larger ones, keeping the model
and the optimizer (the course's trick for faster training and a regularising effect)."""

from __future__ import annotations

import numbers

from .callback import Callback

__all__ = ["ProgressiveResize"]

Size = int | tuple[int, int]


def _integer(v: object) -> bool:
    """An int, numpy's included (``np.linspace(...).astype(int)``), but not a bool."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_size(size: object) -> Size:
    """``size`` as a positive int or an (H, W) tuple of positive ints; a square (H, H)
    becomes the int H, which every loader's ``set_size`` takes."""
    def positive(v: object) -> bool:
        return _integer(v) and v >= 1  # type: ignore[operator]

    if positive(size):
        return int(size)  # type: ignore[call-overload]
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(map(positive, size)):
        h, w = map(int, size)
        return h if h == w else (h, w)
    raise ValueError(f"a size must be a positive int or an (H, W) pair of them, got {size!r}")


class ProgressiveResize(Callback):
    """Sets the DataLoaders' image size at given epochs.

    ``sizes`` maps an epoch to the size used from that epoch on, e.g. ``{0: 64, 3: 128}``;
    a size is an int (a square) or an ``(H, W)`` pair, e.g. ``{0: (48, 64), 2: (96, 128)}``.
    The model must accept any input size (e.g. end in adaptive pooling). After the fit the
    loaders go back to their stored size, however the fit ends.

    Non-square sizes need loaders whose ``set_size`` takes ``(H, W)`` and which say so with
    a true ``takes_hw_size`` attribute (the segmentation loaders); the plain loaders resize
    to squares only, so the fit refuses to start with them.

    >>> cb = ProgressiveResize({0: 64, 3: 128})
    >>> cb.size_at(2), cb.size_at(3)
    (64, 128)
    >>> ProgressiveResize({0: (48, 64), 2: (96, 96)}).sizes
    {0: (48, 64), 2: 96}
    """

    order = 5  # before any callback that looks at the batch

    def __init__(self, sizes: dict[int, Size]) -> None:
        if not sizes or any(not _integer(e) or e < 0 for e in sizes):
            raise ValueError("sizes must map epochs (ints >= 0) to positive sizes")
        self.sizes = {int(e): _check_size(s) for e, s in sorted(sizes.items())}

    def size_at(self, epoch: int) -> Size | None:
        current = None
        for start, size in self.sizes.items():
            if epoch >= start:
                current = size
        return current

    def before_fit(self) -> None:
        hw = [s for s in self.sizes.values() if isinstance(s, tuple)]
        if hw and not getattr(self.learn.dls, "takes_hw_size", False):
            raise ValueError(f"{type(self.learn.dls).__name__} resizes to squares only, got "
                             f"(H, W) sizes {hw}: use int sizes, or loaders whose set_size "
                             "takes (H, W) (e.g. SegmentationDataLoaders)")

    def before_epoch(self) -> None:
        self.learn.dls.set_size(self.size_at(self.learn.epoch))

    def after_fit(self) -> None:  # before other callbacks' after_fit see the loaders
        self.learn.dls.set_size(None)

    def finally_fit(self) -> None:  # also when an exception (Ctrl-C) ended the fit
        self.learn.dls.set_size(None)
