"""Crappify: the course's way to make (degraded, clean) training pairs for image restoration.

An image is shrunk, a number is stamped on it as text, it is re-encoded as a JPEG at a random
quality, and it is brought back to its size: blur, blocking and ringing artefacts and an
overlay a restoration model must learn to remove. Everything random comes from ``seed``.

>>> from PIL import Image
>>> img = Image.new("RGB", (64, 48), (120, 60, 200))
>>> a, b = crappify(img, seed=3), crappify(img, seed=3)
>>> a.size, a.mode, a.tobytes() == b.tobytes()
((64, 48), 'RGB', True)
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw

from ...data.images import WIDE_MODES

__all__ = ["crappify", "crappify_params"]


def crappify_params(seed: int, size: tuple[int, int], quality: tuple[int, int] = (10, 70)
                    ) -> tuple[int, tuple[int, int]]:
    """The JPEG quality and the stamp's top-left corner that ``seed`` gives for an image
    (already shrunk) of ``size`` (W, H): the stamped number is the quality, as in the course."""
    rng = random.Random(seed)
    q = rng.randint(*quality)
    w, h = size
    return q, (rng.randint(0, max(0, w // 2)), rng.randint(0, max(0, h // 2)))


def crappify(img: Image.Image, seed: int, *, scale: float = 0.5,
             quality: tuple[int, int] = (10, 70), stamp: bool = True) -> Image.Image:
    """A degraded copy of ``img``, same size and mode: shrunk by ``scale`` (bilinear, with
    antialiasing), a number stamped on it, JPEG at a quality drawn from ``quality``, back to
    the original size (bilinear). Deterministic given ``(img, seed)``.

    A JPEG holds 8 bits per sample, so images of more (``I;16*``, ``I``, ``F``) have their
    value range ``[min, max]`` mapped linearly onto 0..255, are degraded as ``L``, and are
    mapped back: the result keeps the mode and the range, quantised to 256 levels (a
    constant image, with no range to map the stamp onto, comes back unchanged; ``F`` with
    NaN or inf is refused). An alpha channel (``RGBA``, ``LA``, ``PA``, ...) is kept: it is
    shrunk and grown back like the colour, with no stamp or JPEG (those degrade the colour
    only).
    """
    if not isinstance(img, Image.Image):
        raise TypeError(f"crappify takes a PIL image, got {type(img).__name__}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    lo, hi = quality
    if not 1 <= lo <= hi <= 95:
        raise ValueError(f"quality must be a range within 1..95, got {quality}")
    mode = img.mode
    if mode in WIDE_MODES:
        return _crappify_high_bit(img, seed, scale, quality, stamp)
    if "A" in img.getbands():
        base = img if mode in ("RGBA", "LA") else img.convert("RGBA")
        colour = _degrade(base.convert(base.mode[:-1]), seed, scale, quality, stamp)
        alpha = _shrink(base.getchannel("A"), scale).resize(img.size, Image.Resampling.BILINEAR)
        out = Image.merge(base.mode, (*colour.split(), alpha))
    else:
        out = _degrade(img if mode in ("RGB", "L") else img.convert("RGB"), seed, scale,
                       quality, stamp)
    return out if out.mode == mode else out.convert(mode)


def _shrink(img: Image.Image, scale: float) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                      Image.Resampling.BILINEAR, reducing_gap=None)


def _degrade(work: Image.Image, seed: int, scale: float, quality: tuple[int, int],
             stamp: bool) -> Image.Image:
    """The degradation of an ``RGB`` or ``L`` image, in its mode."""
    small = _shrink(work, scale)
    q, corner = crappify_params(seed, small.size, quality)
    if stamp:
        ImageDraw.Draw(small).text(corner, str(q), fill=255 if small.mode == "L" else (255,) * 3)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=q)
    buf.seek(0)
    with Image.open(buf) as jpeg:
        return jpeg.convert(small.mode).resize(work.size, Image.Resampling.BILINEAR)


def _crappify_high_bit(img: Image.Image, seed: int, scale: float, quality: tuple[int, int],
                       stamp: bool) -> Image.Image:
    """``_degrade`` of an ``I;16*``, ``I`` or ``F`` image through 8 bits (see ``crappify``)."""
    arr = np.asarray(img, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError("crappify needs finite pixel values (an F image has NaN or inf)")
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        return img.copy()
    step = (hi - lo) / 255
    l8 = Image.fromarray(np.rint((arr - lo) / step).astype(np.uint8))
    out = np.asarray(_degrade(l8, seed, scale, quality, stamp), dtype=np.float64) * step + lo
    if img.mode != "F":
        out = np.rint(out)
    return Image.frombytes(img.mode, img.size, out.astype(WIDE_MODES[img.mode]).tobytes())
