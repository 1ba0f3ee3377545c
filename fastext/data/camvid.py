"""CamVid tiny (fastai's ``CAMVID_TINY``) from its local folder: 100 street-scene frames
(``images/<name>.png``, RGB, 128x96), their per-pixel class masks (``labels/<name>_P.png``,
mode L, values 0..31) and ``codes.txt`` (line i names class i; ``Void`` is 30). Nothing is
downloaded; the folder is found by :func:`~fastext.data.files.find_data_dir`.

Everything is decoded once into tensors (the set is 2.3 MB), so loaders slice batches
instead of reading files per item.

>>> cv = load_camvid()  # doctest: +SKIP
>>> cv.images.shape, cv.masks.shape, cv.codes[cv.void_code]  # doctest: +SKIP
(torch.Size([100, 3, 96, 128]), torch.Size([100, 96, 128]), 'Void')
>>> train_idx, valid_idx = split_indices(100, valid_pct=0.2, seed=0)
>>> len(train_idx), len(valid_idx), len(set(train_idx.tolist()) & set(valid_idx.tolist()))
(80, 20, 0)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .files import DataError, find_data_dir, reading
from .images import WIDE_MODES, to_8bit

__all__ = ["CAMVID_NAME", "CamVid", "find_camvid", "load_camvid", "load_codes",
           "split_indices"]

#: The folder name of the data set under a data root.
CAMVID_NAME = "camvid_tiny"


@dataclass
class CamVid:
    """The decoded data set.

    Attributes:
        images: uint8 (N, 3, H, W). masks: int64 (N, H, W), class indices into ``codes``.
        codes: class names (``codes[i]`` is class i). names: file stems, in order.
        void_code: index of ``"Void"`` in ``codes`` (``None`` if there is no such class).
    """

    images: Tensor
    masks: Tensor
    codes: list[str]
    names: list[str]
    void_code: int | None

    def __len__(self) -> int:
        return len(self.images)


def find_camvid(root: str | os.PathLike[str] | None = None) -> Path:
    """The CamVid tiny folder: ``root`` itself or ``root/camvid_tiny`` when given, otherwise
    the usual search (``$FASTEXT_DATA``, ``<repo>/data``, ``<repo>/../shared/data``).

    Raises:
        FileNotFoundError: no folder with ``codes.txt``, ``images/`` and ``labels/``.
    """
    path = find_data_dir(CAMVID_NAME, root, required=("codes.txt",))
    for sub in ("images", "labels"):
        if not (path / sub).is_dir():
            raise FileNotFoundError(f"CamVid folder {path} has no {sub}/ subfolder")
    return path


def load_codes(path: str | os.PathLike[str]) -> list[str]:
    """Class names from ``codes.txt`` (one a line, blank lines ignored).

    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "codes.txt"; _ = f.write_text("Road\\nSky\\n\\nVoid\\n")
    >>> load_codes(f)
    ['Road', 'Sky', 'Void']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no codes file {path}")
    with reading(path, "not UTF-8 text"):
        text = path.read_text(encoding="utf-8")
    codes = [line.strip() for line in text.splitlines() if line.strip()]
    if not codes:
        raise DataError(f"{path} names no classes")
    return codes


def _read(path: Path, mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """One image file as an RGB array (``mode="RGB"``, 16-bit files rescaled to 8 bits),
    resized bilinearly to ``size`` = (H, W) when given."""
    from PIL import Image

    # PIL decodes lazily: a truncated file fails in convert(), not in open()
    with reading(path, "not a readable image"), Image.open(path) as im:
        im = to_8bit(im).convert(mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(im)


#: Mask modes whose pixel values are the class indices themselves: grey, palette (the
#: index, not its colour), 1-bit and 16/32-bit integer.
_INDEX_MODES = ("L", "P", "1", *(m for m in WIDE_MODES if m != "F"))


def _read_mask(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """A mask file's class indices as int64 (H, W), resized to ``size`` = (H, W) by nearest
    neighbour (a class index must stay a class index). Palette masks give their indices;
    16-bit masks keep their values (class ids are never rescaled like image brightness);
    grey saved as RGB, RGBA or LA (equal colour channels) gives that grey.

    Raises:
        DataError: a colour (or float with fractions) mask: its values are not class ids.
    """
    from PIL import Image

    with reading(path, "not a readable image"), Image.open(path) as im:
        mode = im.mode
        if mode in _INDEX_MODES or mode == "F":
            idx = np.asarray(im)
        else:  # grey saved as RGB(A) / LA (R = G = B) is still class ids; colours are not
            a = np.asarray(im)
            bands = im.getbands()
            colour = a[..., [i for i, b in enumerate(bands) if b != "A"]] if a.ndim == 3 else a
            if colour.ndim != 3 or not (colour == colour[..., :1]).all():
                raise DataError(f"{path}: a mask in mode {mode} holds colours, not class "
                                "indices (save masks as L, P or 16-bit grey images of class "
                                "ids)")
            idx = colour[..., 0]
    if mode == "F" and not np.array_equal(idx, np.rint(idx)):
        raise DataError(f"{path}: float mask with non-integer values, not class indices")
    idx = idx.astype(np.int64)
    if size is not None and idx.shape != tuple(size):
        im32 = Image.fromarray(idx.astype(np.int32), "I")  # mode I resizes any class id
        idx = np.asarray(im32.resize((size[1], size[0]), Image.NEAREST)).astype(np.int64)
    return idx


def load_camvid(root: str | os.PathLike[str] | None = None,
                size: tuple[int, int] | None = None) -> CamVid:
    """Decodes every image and its mask ``labels/<stem>_P.png``, in sorted file order.

    Args:
        root: the folder (or a data root holding ``camvid_tiny/``); default: the usual search.
        size: (H, W) to resize to; default the files' own size (all must then agree).

    Raises:
        FileNotFoundError: no folder, no images, or an image without its mask.
        DataError (a ValueError naming the file): an image or mask that cannot be decoded,
            a mask value outside ``codes``, or images of different sizes.
    """
    path = find_camvid(root)
    codes = load_codes(path / "codes.txt")
    files = sorted(p for p in (path / "images").iterdir() if p.suffix.lower() == ".png")
    if not files:
        raise FileNotFoundError(f"no .png images in {path / 'images'}")
    images, masks = [], []
    for f in files:
        mask_file = path / "labels" / f"{f.stem}_P.png"
        if not mask_file.is_file():
            raise FileNotFoundError(f"image {f.name} has no mask {mask_file}")
        img, mask = _read(f, "RGB", size), _read_mask(mask_file, size)
        if img.shape[:2] != mask.shape:
            raise DataError(f"{f}: {img.shape[:2]} pixels but its mask is {mask.shape}")
        if mask.min() < 0 or mask.max() >= len(codes):
            bad = int(mask.min()) if mask.min() < 0 else int(mask.max())
            raise DataError(f"{mask_file}: holds class {bad} but codes.txt names classes "
                            f"0..{len(codes) - 1} only")
        images.append(img)
        masks.append(mask)
    shapes = {m.shape for m in masks}
    if len(shapes) > 1:
        raise DataError(f"{path / 'images'}: images of different sizes {sorted(shapes)}: pass "
                        "size=(H, W)")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack(masks))
    void = codes.index("Void") if "Void" in codes else None
    return CamVid(x, y, codes, [f.stem for f in files], void)


def split_indices(n: int, valid_pct: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(train, valid) indices of a random split of ``n`` items; ``round(n * valid_pct)``
    validate, but at least one and at most ``n - 1`` (neither side is ever empty). The same
    ``seed`` gives the same split on every machine.

    >>> [len(i) for i in split_indices(2, valid_pct=0.8)]
    [1, 1]
    """
    if not 0 < valid_pct < 1:
        raise ValueError(f"valid_pct must be in (0, 1), got {valid_pct}")
    if n < 2:
        raise ValueError(f"need at least 2 items to split, got {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_valid = min(n - 1, max(1, round(n * valid_pct)))
    return order[n_valid:], order[:n_valid]
