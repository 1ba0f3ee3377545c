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

from PIL import Image, ImageDraw

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
    the original size (bilinear). Deterministic given ``(img, seed)``."""
    if not isinstance(img, Image.Image):
        raise TypeError(f"crappify takes a PIL image, got {type(img).__name__}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    lo, hi = quality
    if not 1 <= lo <= hi <= 95:
        raise ValueError(f"quality must be a range within 1..95, got {quality}")
    mode, (w, h) = img.mode, img.size
    work = img if mode in ("RGB", "L") else img.convert("RGB")
    small = work.resize((max(1, round(w * scale)), max(1, round(h * scale))),
                        Image.Resampling.BILINEAR, reducing_gap=None)
    q, corner = crappify_params(seed, small.size, quality)
    if stamp:
        ImageDraw.Draw(small).text(corner, str(q), fill=255 if small.mode == "L" else (255,) * 3)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=q)
    buf.seek(0)
    with Image.open(buf) as jpeg:
        out = jpeg.convert(small.mode).resize((w, h), Image.Resampling.BILINEAR)
    return out if out.mode == mode else out.convert(mode)
