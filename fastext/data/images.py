"""PIL images wider than 8 bits per sample: which modes they are, and how they become 8-bit.

``convert("L")`` / ``convert("RGB")`` clips such images at 255 (a 16-bit image comes out
almost all white) instead of scaling them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["WIDE_MODES", "to_8bit"]

#: PIL modes wider than 8 bits, with the numpy dtype of their raw bytes.
WIDE_MODES = {"I;16": "<u2", "I;16L": "<u2", "I;16B": ">u2", "I;16N": "=u2", "I": "=i4",
              "F": "=f4"}


def to_8bit(im: Any) -> Any:
    """PIL image ``im`` with a 16/32-bit mode rescaled to an 8-bit ``"L"`` image (others as
    they are): integer modes are read as 16-bit (0..65535, as PIL holds 16-bit PNG and TIFF
    files), so divided by 257; ``"F"`` as floats in [0, 1], so times 255. Values beyond
    the range clip.

    >>> from PIL import Image
    >>> im = to_8bit(Image.fromarray(np.array([[0, 257, 65535]], np.uint16)))
    >>> im.mode, np.asarray(im).tolist()
    ('L', [[0, 1, 255]])
    """
    from PIL import Image

    if im.mode not in WIDE_MODES:
        return im
    a = np.asarray(im, dtype=np.float64)
    a = a * 255 if im.mode == "F" else a / 257
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
