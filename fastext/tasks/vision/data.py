"""Image data for the vision tasks: files and labels in, loaders of normalised batches out.

Images are decoded with PIL once, resized to a fixed base size and kept as uint8 tensors;
batches are sliced from them (no per-image Python collation) and augmented as whole batches
on the training device (random-resized crop and flip through one ``affine_grid`` /
``grid_sample``, then normalisation). Unreadable files are skipped with a warning when the
data is built, never mid-epoch. Progressive resizing uses the loaders' ``set_size``.

>>> import tempfile, numpy as np
>>> from PIL import Image
>>> root = Path(tempfile.mkdtemp())
>>> for label in ("cat", "dog"):
...     (root / label).mkdir()
...     for i in range(4):
...         Image.fromarray(np.full((10, 12, 3), i * 40, np.uint8)).save(root / label / f"{i}.png")
>>> dls = ImageDataLoaders.from_folder(root, valid_pct=0.25, size=8, bs=2, device="cpu")
>>> dls.vocab, len(dls.train_items), len(dls.valid_items)
(['cat', 'dog'], 6, 2)
>>> xb, yb = next(iter(dls.train))
>>> xb.shape, xb.dtype, yb.dtype
(torch.Size([2, 3, 8, 8]), torch.float32, torch.int64)
"""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...data.camvid import split_indices
from ...data.images import to_8bit
from ...data.labels import sorted_classes, training_classes
from ...data.table import column, label_column, read_table, valid_flags
from ...learner.data import DataLoaders, TensorLoader, drops_last_batch

__all__ = ["IMAGENET_STATS", "IMAGE_EXTENSIONS", "BatchAugment", "ImageDataLoaders",
           "ImageLoader", "SeededAugment", "get_image_files", "image_tensor", "load_images",
           "multi_hot", "parent_label", "warn_unless_imagenet_stats"]

#: (mean, std) per RGB channel of ImageNet: the stats of every torchvision backbone.
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def get_image_files(path: str | os.PathLike[str], recurse: bool = True,
                    extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """Image files under ``path`` (by extension, case-insensitive), sorted."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no image folder {path}")
    pattern = "**/*" if recurse else "*"
    exts = {e.lower() for e in extensions}
    return sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in exts)


def parent_label(path: Path) -> str:
    """The name of the folder holding ``path`` (ImageNet-style ``<class>/<file>`` layout)."""
    return Path(path).parent.name


#: PIL mode each supported channel count decodes to (grey, RGB, RGB + alpha).
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _fit_image(im: Any, size: tuple[int, int], channels: int) -> Tensor:
    """A PIL image as uint8 (channels, h, w) for ``size = (h, w)``: 16-bit images rescaled
    to 8 bits (:func:`~fastext.data.images.to_8bit`), resized (bilinear, antialiased by PIL)
    so that it covers ``size`` with its aspect ratio kept (for a square: the shorter side
    to ``size``), then centre-cropped."""
    from PIL import Image

    im = to_8bit(im).convert(_MODES[channels])
    h, w = size
    iw, ih = im.size
    scale = max(w / iw, h / ih)
    nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
    im = im.resize((nw, nh), Image.BILINEAR)
    left, top = (nw - w) // 2, (nh - h) // 2
    im = im.crop((left, top, left + w, top + h))
    t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return t.view(h, w, channels).permute(2, 0, 1).contiguous()


def _decode(path: Path, size: int, channels: int) -> Tensor:
    """One image file as uint8 (channels, size, size): :func:`_fit_image` to a square."""
    from PIL import Image

    with Image.open(path) as im:
        return _fit_image(im, (size, size), channels)


def image_tensor(item: str | os.PathLike[str] | Any, size: int | tuple[int, int],
                 channels: int = 3) -> Tensor:
    """One image (a file path, a PIL image or a uint8 tensor (C, H, W) or (H, W)) as the
    loaders store it: uint8 (channels, h, w), decoded, resized and centre-cropped as
    :func:`load_images` does (a tensor already of that shape is taken as it is).

    >>> image_tensor(torch.full((3, 6, 9), 7, dtype=torch.uint8), 4).shape
    torch.Size([3, 4, 4])
    """
    from PIL import Image

    h, w = (size, size) if isinstance(size, int) else size
    if channels not in _MODES:
        raise ValueError(f"channels must be one of {sorted(_MODES)}, got {channels!r}")
    if isinstance(item, Tensor):
        t = item if item.dim() == 3 else item[None]
        if t.dtype != torch.uint8 or t.dim() != 3 or t.shape[0] not in _MODES:
            raise TypeError(f"an image tensor must be uint8 (C, H, W) with C in "
                            f"{sorted(_MODES)}, got {item.dtype} {tuple(item.shape)}")
        if tuple(t.shape) == (channels, h, w):
            return t.contiguous()
        arr = t.permute(1, 2, 0).cpu().numpy()
        item = Image.fromarray(arr[..., 0] if t.shape[0] == 1 else arr, _MODES[t.shape[0]])
    if isinstance(item, Image.Image):
        return _fit_image(item, (h, w), channels)
    with Image.open(Path(item)) as im:
        return _fit_image(im, (h, w), channels)


def load_images(paths: Sequence[Path], size: int, channels: int = 3,
                ) -> tuple[Tensor, list[int]]:
    """Decodes ``paths`` into one uint8 tensor (N, channels, size, size). Files PIL cannot
    read are left out with one warning naming them (as are images past PIL's
    decompression-bomb limit); returns the tensor and the indices of the files kept.
    ``channels`` is 1 (grey), 3 (RGB) or 4 (RGB + alpha)."""
    from PIL import Image

    if channels not in _MODES:  # checked here: _decode's errors count as unreadable files
        raise ValueError(f"channels must be one of {sorted(_MODES)}, got {channels!r}")
    images, kept, bad = [], [], []
    for i, p in enumerate(paths):
        try:
            images.append(_decode(Path(p), size, channels))
            kept.append(i)
        # PIL's errors for broken files; a decompression bomb is no OSError
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            bad.append(f"{p} ({type(e).__name__}: {e})")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s): " + "; ".join(bad[:5])
                      + (" ..." if len(bad) > 5 else ""), stacklevel=2)
    if not images:
        raise ValueError(f"none of the {len(paths)} image files could be read")
    return torch.stack(images), kept


def multi_hot(labels: Sequence[Sequence[str]], vocab: Sequence[str]) -> Tensor:
    """float (N, len(vocab)) targets with 1 where the label occurs.

    >>> multi_hot([["a"], ["b", "a"], []], ["a", "b"]).tolist()
    [[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]
    """
    index = {v: i for i, v in enumerate(vocab)}
    out = torch.zeros(len(labels), len(vocab))
    for row, labs in enumerate(labels):
        for lab in labs:
            if lab not in index:
                raise ValueError(f"label {lab!r} is not in the vocabulary")
            out[row, index[lab]] = 1.0
    return out


def _epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s augmentations, mixed from ``(seed, epoch)`` by numpy's
    ``SeedSequence`` rather than ``seed + epoch``, so the draws do not share a stream with
    the shuffling order (which the loaders seed with ``seed + epoch``), nor epoch ``k + 1``
    of seed ``s`` with epoch ``k`` of seed ``s + 1``.

    >>> _epoch_seed(0, 0) == _epoch_seed(0, 0), _epoch_seed(0, 1) == _epoch_seed(1, 0)
    (True, False)
    """
    state = np.random.SeedSequence([seed % 2**64, epoch]).generate_state(1, np.uint64)
    return int(state[0])


class SeededAugment:
    """The random source of a batched augmentation: ``generator(g)`` is ``g`` when a loader
    passes one (:meth:`epoch_generator` of its epoch, so an epoch's draws depend only on
    ``(seed, epoch)``), else one generator seeded with ``seed`` at construction."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed)

    def epoch_generator(self, epoch: int) -> torch.Generator:
        """A fresh generator for epoch ``epoch``'s draws, seeded from ``(seed, epoch)``."""
        return torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))

    def generator(self, generator: torch.Generator | None) -> torch.Generator:
        return self.gen if generator is None else generator


class BatchAugment(SeededAugment):
    """Batched augmentation of uint8 image batches on their device, the course's
    ``get_transforms``: a random-resized crop (area fraction in ``scale``, aspect ratio in
    ``ratio``), a horizontal flip with probability ``flip`` per image (with ``flip_vert``:
    one of the 8 dihedral symmetries of the square, drawn uniformly, with probability
    ``flip``; ``flip=1`` is fastai v1's ``dihedral_affine``), a rotation by up to
    ``max_rotate`` degrees and a zoom-in by up to ``max_zoom`` (each with probability
    ``p_affine``), all done as one affine ``grid_sample`` (bilinear, reflection padding);
    then brightness and contrast changes of up to ``max_lighting`` (each with probability
    ``p_lighting``), ``/255`` and normalisation by ``stats``. With ``train=False`` only the
    normalisation runs. The defaults leave rotation, zoom and lighting out.

    As fastai: a rotation draws its angle uniformly in ``[-max_rotate, max_rotate]``; a zoom
    its factor ``z`` uniformly in ``[1, max_zoom]`` and its centre uniformly where the
    zoomed window stays inside the image; lighting works on the logits of the pixels in
    [0, 1]: brightness adds ``logit(b)``, ``b`` uniform in ``0.5 * (1 -+ max_lighting)``,
    then contrast multiplies by ``c``, log-uniform in ``[1 - max_lighting,
    1 / (1 - max_lighting)]``.

    The random draws come from ``generator`` when one is given: :class:`ImageLoader` passes
    :meth:`epoch_generator` of its epoch, so an epoch's augmentations depend only on
    ``(seed, epoch)`` (resuming, ``lr_find`` and ``set_epoch`` replay them exactly). Called
    on its own, it draws from one generator seeded with ``seed`` at construction.

    >>> aug = BatchAugment(stats=((0.5,), (0.5,)))
    >>> x = torch.full((2, 1, 4, 4), 255, dtype=torch.uint8)
    >>> aug(x, train=False).unique().tolist()
    [1.0]
    >>> planet = BatchAugment(flip_vert=True, max_rotate=10, max_zoom=1.05, max_lighting=0.1)
    >>> planet(x).shape
    torch.Size([2, 1, 4, 4])
    """

    def __init__(self, stats: tuple[Sequence[float], Sequence[float]] | None = None,
                 flip: float = 0.5, scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), seed: int = 0, *,
                 flip_vert: bool = False, max_rotate: float = 0.0, max_zoom: float = 1.0,
                 max_lighting: float = 0.0, p_affine: float = 0.75,
                 p_lighting: float = 0.75) -> None:
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must satisfy 0 < lo <= hi, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {ratio}")
        if max_rotate < 0 or max_zoom < 1 or not 0 <= max_lighting < 1:
            raise ValueError(f"need max_rotate >= 0, max_zoom >= 1 and 0 <= max_lighting < 1, "
                             f"got {max_rotate}, {max_zoom}, {max_lighting}")
        if not (0 <= p_affine <= 1 and 0 <= p_lighting <= 1):
            raise ValueError(f"probabilities must be in [0, 1], got {p_affine}, {p_lighting}")
        super().__init__(seed)
        self.flip, self.flip_vert = flip, flip_vert
        self.stats, self.scale, self.ratio = stats, tuple(scale), tuple(ratio)
        self.max_rotate, self.max_zoom, self.p_affine = max_rotate, max_zoom, p_affine
        self.max_lighting, self.p_lighting = max_lighting, p_lighting

    #: Draws per image before the central-crop fallback (torchvision's RandomResizedCrop).
    tries = 10

    @property
    def geometric(self) -> bool:
        """Whether training batches are resampled (some flip, crop, rotation or zoom)."""
        return (self.flip > 0 or self.scale != (1.0, 1.0) or self.max_rotate > 0
                or self.max_zoom > 1)

    def _crop(self, n: int, g: torch.Generator, aspect: float) -> Tensor:
        """(n, 3, 3) random-resized crops: as torchvision's ``RandomResizedCrop``, a crop's
        area fraction is drawn in ``scale`` and its aspect ratio (pixels, width / height)
        log-uniformly in ``ratio``, up to :attr:`tries` times until it fits the image; else
        a central crop, the whole image when its own ratio is within ``ratio``, so
        ``scale=(1, 1)`` keeps it whole."""
        area = torch.empty(n, self.tries).uniform_(*self.scale, generator=g)
        log_r = torch.empty(n, self.tries).uniform_(
            math.log(self.ratio[0]), math.log(self.ratio[1]), generator=g)
        r = log_r.exp() / aspect  # crop ratio in units of the image's width and height
        sw, sh = (area * r).sqrt(), (area / r).sqrt()  # sides as fractions of the image's
        fits = (sw <= 1) & (sh <= 1)
        first = fits.to(torch.uint8).argmax(1, keepdim=True)  # first draw that fits
        sw, sh = sw.gather(1, first)[:, 0], sh.gather(1, first)[:, 0]
        # the fallback: the largest central crop whose ratio is clamped into `ratio`
        lo, hi = self.ratio
        fw, fh = ((1.0, aspect / lo) if aspect < lo else (hi / aspect, 1.0) if aspect > hi
                  else (1.0, 1.0))
        fallback = ~fits.any(1)
        sw = torch.where(fallback, torch.tensor(fw), sw)
        sh = torch.where(fallback, torch.tensor(fh), sh)
        tx = (torch.rand(n, generator=g) * 2 - 1) * (1 - sw) * ~fallback
        ty = (torch.rand(n, generator=g) * 2 - 1) * (1 - sh) * ~fallback
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, 0, 0], m[:, 0, 2], m[:, 1, 1], m[:, 1, 2] = sw, tx, sh, ty
        return m

    def _flips(self, n: int, g: torch.Generator) -> Tensor:
        """(n, 3, 3): a horizontal flip, or with ``flip_vert`` a dihedral symmetry ``k``
        uniform in 0..7 (bit 0 mirrors x, bit 1 mirrors y, bit 2 swaps the axes), each with
        probability ``flip``."""
        on = torch.rand(n, generator=g) < self.flip
        m = torch.eye(3).repeat(n, 1, 1)
        if not self.flip_vert:
            m[:, 0, 0] = torch.where(on, -1.0, 1.0)
            return m
        k = torch.randint(0, 8, (n,), generator=g) * on
        sx = torch.where(k & 1 > 0, -1.0, 1.0)
        sy = torch.where(k & 2 > 0, -1.0, 1.0)
        swap = k & 4 > 0
        m[:, 0, 0] = torch.where(swap, 0.0, sx)
        m[:, 0, 1] = torch.where(swap, sx, 0.0)
        m[:, 1, 0] = torch.where(swap, sy, 0.0)
        m[:, 1, 1] = torch.where(swap, 0.0, sy)
        return m

    def _rotations(self, n: int, g: torch.Generator, aspect: float) -> Tensor:
        """(n, 3, 3): with probability ``p_affine`` a rotation by an angle uniform in
        ``[-max_rotate, max_rotate]`` degrees, counter-clockwise on screen for a positive
        angle (torchvision's ``rotate``), about the centre, in pixels (the normalised
        coordinates of a non-square image scaled by its aspect ratio ``width / height``)."""
        on = torch.rand(n, generator=g) < self.p_affine
        deg = torch.empty(n).uniform_(-self.max_rotate, self.max_rotate, generator=g) * on
        a = torch.deg2rad(deg)
        c, s = a.cos(), a.sin()
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s / aspect, s * aspect, c
        return m

    def _zooms(self, n: int, g: torch.Generator) -> Tensor:
        """(n, 3, 3): with probability ``p_affine`` a zoom-in by ``z`` uniform in
        ``[1, max_zoom]`` whose window (sides ``1 / z``) has its centre drawn uniformly
        where the window stays inside the image (fastai's ``rand_zoom``)."""
        on = torch.rand(n, generator=g) < self.p_affine
        z = torch.empty(n).uniform_(1.0, self.max_zoom, generator=g)
        z = torch.where(on, z, 1.0)
        cx, cy = torch.rand(n, generator=g), torch.rand(n, generator=g)
        side = 1 / z
        m = torch.eye(3).repeat(n, 1, 1)
        m[:, 0, 0] = m[:, 1, 1] = side
        m[:, 0, 2], m[:, 1, 2] = (1 - side) * (2 * cx - 1), (1 - side) * (2 * cy - 1)
        return m

    def _affine(self, n: int, generator: torch.Generator | None = None,
                aspect: float = 1.0) -> Tensor:
        """(n, 2, 3) ``affine_grid`` thetas for images of width / height ``aspect``: the
        crop of the flipped, rotated, zoomed output (``crop @ zoom @ rotation @ flip``,
        mapping output coordinates to input ones). Rotation and zoom draw nothing when
        they are off, so the default draws are the crop's and flip's alone."""
        g = self.generator(generator)
        m = self._crop(n, g, aspect)
        flips = self._flips(n, g)
        if self.max_zoom > 1:
            m = m @ self._zooms(n, g)
        if self.max_rotate > 0:
            m = m @ self._rotations(n, g, aspect)
        return (m @ flips)[:, :2].contiguous()

    def _lighting(self, x: Tensor, g: torch.Generator) -> Tensor:
        """Brightness then contrast on the logits of ``x`` (in [0, 1], clamped 1e-7 from
        the ends), each per image with probability ``p_lighting``; images that get
        neither are left exactly as they were."""
        n, m = len(x), self.max_lighting
        b_on = torch.rand(n, generator=g) < self.p_lighting
        b = torch.empty(n).uniform_(0.5 * (1 - m), 0.5 * (1 + m), generator=g)
        c_on = torch.rand(n, generator=g) < self.p_lighting
        log_c = torch.empty(n).uniform_(math.log(1 - m), -math.log(1 - m), generator=g)
        shift = torch.where(b_on, torch.logit(b), 0.0).view(-1, 1, 1, 1).to(x.device)
        mult = torch.where(c_on, log_c.exp(), 1.0).view(-1, 1, 1, 1).to(x.device)
        lit = torch.sigmoid((torch.logit(x, eps=1e-7) + shift) * mult)
        return torch.where((b_on | c_on).view(-1, 1, 1, 1).to(x.device), lit, x)

    def __call__(self, x: Tensor, train: bool = True,
                 generator: torch.Generator | None = None) -> Tensor:
        x = x.float().div_(255)
        if train and self.geometric:
            theta = self._affine(len(x), generator, x.shape[-1] / x.shape[-2]).to(x.device)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                              align_corners=False)
        if train and self.max_lighting > 0:
            x = self._lighting(x, self.generator(generator))
        if self.stats is not None:
            mean = torch.tensor(self.stats[0], device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.stats[1], device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x


class ImageLoader:
    """Batches ``(images, targets)`` from uint8 image and target tensors: each batch moves to
    ``device`` and goes through ``augment`` there (training batches augmented, validation
    ones only normalised). Shuffled each epoch when ``shuffle`` (default: ``train``);
    ``drop_last`` leaves out a last partial batch. Like the shuffling order, a training
    epoch's augmentations are drawn from that epoch's number (the augmentation's
    ``epoch_generator``), so ``set_epoch(k)`` replays epoch ``k`` exactly."""

    def __init__(self, images: Tensor, targets: Tensor, augment: BatchAugment, bs: int,
                 train: bool, device: torch.device, seed: int = 0, drop_last: bool = False,
                 shuffle: bool | None = None) -> None:
        self.base = TensorLoader((images, targets), bs,
                                 shuffle=train if shuffle is None else shuffle,
                                 drop_last=drop_last, seed=seed)
        self.augment, self.train, self.device = augment, train, device

    def __len__(self) -> int:
        return len(self.base)

    @property
    def epoch(self) -> int:
        return self.base.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.base.epoch = value

    @property
    def dataset(self) -> tuple[Tensor, ...]:
        return self.base.tensors

    def _augment_kwargs(self) -> dict[str, torch.Generator]:
        """``{"generator": ...}`` for this epoch's training augmentations, read before the
        base loader advances its epoch; empty for validation or an augmentation without
        ``epoch_generator`` (any ``augment(x, train)`` callable still works)."""
        make = getattr(self.augment, "epoch_generator", None)
        if not self.train or make is None:
            return {}
        return {"generator": make(self.base.epoch)}

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        kw = self._augment_kwargs()
        for xb, yb in self.base:
            xb = xb.to(self.device, non_blocking=True)
            yield self.augment(xb, self.train, **kw), yb.to(self.device, non_blocking=True)


class ImageDataLoaders(DataLoaders):
    """Train / valid image loaders with the labels' vocabulary.

    Attributes: ``vocab`` (the classes, sorted: names, or whatever values the label function
    returned, e.g. ``[False, True]``), ``multi_label``, ``n_out`` (outputs a model needs),
    ``stats`` (normalisation used), ``train_items`` / ``valid_items`` (the files).
    """

    def __init__(self, train: ImageLoader, valid: ImageLoader, vocab: list[Hashable],
                 multi_label: bool, stats: tuple, device: torch.device,
                 train_items: list[Path] | None = None,
                 valid_items: list[Path] | None = None) -> None:
        super().__init__(train, valid, device)
        self.vocab, self.multi_label, self.stats = vocab, multi_label, stats
        self.n_out = len(vocab)
        self.train_items, self.valid_items = train_items or [], valid_items or []

    @classmethod
    def from_tensors(cls, x_train: Tensor, y_train: Tensor, x_valid: Tensor,  # type: ignore[override]
                     y_valid: Tensor, vocab: Sequence[Hashable], bs: int = 64,
                     stats: str | tuple = "data", augment: bool | BatchAugment = True,
                     flip: float = 0.5, scale: tuple[float, float] = (0.35, 1.0),
                     seed: int = 0, device: str | torch.device | None = None,
                     valid_bs: int | None = None, shuffle: bool = True,
                     drop_last: bool = True, flip_vert: bool = False,
                     max_rotate: float = 0.0, max_zoom: float = 1.0,
                     max_lighting: float = 0.0, p_affine: float = 0.75,
                     p_lighting: float = 0.75) -> ImageDataLoaders:
        """Loaders over uint8 image tensors (N, C, H, W) and targets: class indices, or
        multi-hot float rows for multi-label data. ``stats``: ``"data"`` (the training
        images' own per-channel mean/std), ``"imagenet"`` (3-channel images only), or
        ``(mean, std)`` with one value per channel.

        Training batches hold ``bs`` images, shuffled each epoch when ``shuffle``; with
        ``drop_last`` (default, as in fastai) a last partial training batch is left out when
        there are more than ``bs`` images (a batch of one would break BatchNorm).
        Validation batches hold ``valid_bs`` (default ``2 * bs``) images, none dropped.
        Unknown keyword arguments raise ``TypeError``.

        Training augmentation (:class:`BatchAugment`; validation batches are only
        normalised): ``flip``, ``scale`` and the course's ``get_transforms`` options
        ``flip_vert``, ``max_rotate``, ``max_zoom``, ``max_lighting``, ``p_affine``,
        ``p_lighting`` (the planet lesson: ``flip_vert=True, max_lighting=0.1,
        max_zoom=1.05``). ``augment=False`` turns it all off; ``augment=`` a
        :class:`BatchAugment` uses that one instead (a copy taking the loaders' stats when
        its own ``stats`` is ``None``), and the options here are then ignored.

        >>> x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
        >>> y = torch.randint(0, 2, (8,))
        >>> dls = ImageDataLoaders.from_tensors(x[:6], y[:6], x[6:], y[6:], ["a", "b"],
        ...     bs=3, flip_vert=True, max_rotate=10, max_lighting=0.2, device="cpu")
        >>> dls.train.loader.augment.max_rotate, dls.train.loader.augment.flip_vert
        (10, True)
        """
        if x_train.dtype != torch.uint8 or x_train.dim() != 4:
            raise TypeError(f"images must be uint8 (N, C, H, W), got {x_train.dtype} "
                            f"{tuple(x_train.shape)}")
        dev = torch.device(device) if device is not None else (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        st = _resolve_stats(stats, x_train)
        if isinstance(augment, BatchAugment):
            aug = augment
            if aug.stats is None:  # a copy: the caller's object stays as it was
                aug = copy.copy(aug)
                aug.stats, aug.gen = st, torch.Generator()
                aug.gen.set_state(augment.gen.get_state())
            st = aug.stats
        elif augment:
            aug = BatchAugment(st, flip=flip, scale=scale, seed=seed, flip_vert=flip_vert,
                               max_rotate=max_rotate, max_zoom=max_zoom,
                               max_lighting=max_lighting, p_affine=p_affine,
                               p_lighting=p_lighting)
        else:
            aug = BatchAugment(st, flip=0.0, scale=(1.0, 1.0), seed=seed)
        multi = y_train.dim() == 2
        train = ImageLoader(x_train, y_train, aug, bs, train=True, device=dev, seed=seed,
                            drop_last=drops_last_batch(len(x_train), bs, drop_last),
                            shuffle=shuffle)
        valid = ImageLoader(x_valid, y_valid, aug, valid_bs or 2 * bs, train=False,
                            device=dev)
        return cls(train, valid, list(vocab), multi, st, dev)

    @classmethod
    def from_label_func(cls, files: Sequence[str | os.PathLike[str]],
                        label_func: Callable[[Path], Hashable | Sequence[Hashable]],
                        valid_pct: float = 0.2, seed: int = 0, size: int = 224,
                        channels: int = 3, **kwargs: object) -> ImageDataLoaders:
        """Images ``files`` labelled by ``label_func(path)``: one class (a name, or any
        hashable value such as the ``bool`` of fastai's ``is_cat``), or a list, tuple or set
        of classes for multi-label data. A random ``valid_pct`` of them (fixed by ``seed``,
        at least one image on each side) validates. ``kwargs`` go to :meth:`from_tensors`."""
        files = [Path(f) for f in files]
        return cls.from_lists(files, [label_func(f) for f in files], valid_pct=valid_pct,
                              seed=seed, size=size, channels=channels, **kwargs)

    @classmethod
    def from_name_re(cls, files: Sequence[str | os.PathLike[str]], pat: str,
                     valid_pct: float = 0.2, seed: int = 0, size: int = 224,
                     channels: int = 3, **kwargs: object) -> ImageDataLoaders:
        """Images labelled by the first group of the regular expression ``pat`` searched in
        each file's name (the pets lesson: ``r"^(.*)_\\d+\\.jpg$"``); a name it does not
        match is a ``ValueError`` naming the file. Split and ``kwargs`` as in
        :meth:`from_label_func`."""
        regex = re.compile(pat)
        if regex.groups < 1:
            raise ValueError(f"pattern {pat!r} has no group to take the label from")

        def label(f: Path) -> str:
            m = regex.search(f.name)
            if m is None or m.group(1) is None:
                raise ValueError(f"pattern {pat!r} does not match the file name {f.name!r}")
            return m.group(1)

        return cls.from_label_func(files, label, valid_pct, seed, size, channels, **kwargs)

    @classmethod
    def from_df(cls, df: Any, path: str | os.PathLike[str] = ".", fn_col: int | str = 0,
                label_col: int | str = 1, label_delim: str | None = None,
                folder: str | None = None, suffix: str = "", valid_col: int | str | None = None,
                valid_pct: float = 0.2, seed: int = 0, size: int = 224, channels: int = 3,
                **kwargs: object) -> ImageDataLoaders:
        """Images named in a pandas DataFrame: file ``path/folder/<fn_col><suffix>``, label
        in ``label_col``; with ``label_delim`` each label is a string of tags (the planet
        lesson's ``"clear primary road"``, ``label_delim=" "``) and the data is multi-label
        (an empty string: no tag). Columns by position or name, as fastai's ``from_df``.
        ``valid_col`` names a boolean column marking the validation rows; without it a
        random ``valid_pct`` validates (fixed by ``seed``). Every named file must exist
        (``FileNotFoundError`` naming the first missing ones); ``kwargs`` go to
        :meth:`from_tensors`.

        >>> import pandas as pd, tempfile
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for i in range(4):
        ...     Image.new("RGB", (10, 12), (60 * i, 0, 0)).save(root / f"im{i}.png")
        >>> df = pd.DataFrame({"image_name": [f"im{i}" for i in range(4)],
        ...                    "tags": ["clear road", "haze", "clear", "haze road"]})
        >>> dls = ImageDataLoaders.from_df(df, root, label_delim=" ", suffix=".png",
        ...                                size=8, bs=2, device="cpu")
        >>> dls.vocab, dls.multi_label
        (['clear', 'haze', 'road'], True)
        """
        root = Path(path) / folder if folder is not None else Path(path)
        files = [root / f"{fn}{suffix}" for fn in column(df, fn_col, "file name column")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of the {len(files)} files the table names do not exist, "
                f"e.g. {', '.join(missing[:3])} (check path, folder and suffix)")
        labels: list[Any] = label_column(df, label_col)
        if label_delim is not None:
            if not all(isinstance(lab, str) for lab in labels):
                raise TypeError(f"label_delim {label_delim!r} splits strings: column "
                                f"{label_col!r} holds other values")
            labels = [[t for t in lab.split(label_delim) if t] for lab in labels]
        valid = None if valid_col is None else valid_flags(df, valid_col)
        return cls.from_lists(files, labels, valid=valid, valid_pct=valid_pct, seed=seed,
                              size=size, channels=channels, **kwargs)

    @classmethod
    def from_csv(cls, path: str | os.PathLike[str], csv_fname: str = "labels.csv",
                 **kwargs: Any) -> ImageDataLoaders:
        """:meth:`from_df` on ``path/csv_fname`` read by pandas (header row expected); the
        planet lesson: ``from_csv(path, "train_v2.csv", folder="train-jpg", suffix=".jpg",
        label_delim=" ")``. Every column is read as text (file names such as ``0001``
        stay as written; ``valid_col``'s ``"False"`` is false)."""
        df = read_table(path, csv_fname, dtype=str, keep_default_na=False)
        return cls.from_df(df, path, **kwargs)

    @classmethod
    def from_lists(cls, files: Sequence[str | os.PathLike[str]],
                   labels: Sequence[Hashable | Sequence[Hashable]],
                   valid: Sequence[bool] | None = None, valid_pct: float = 0.2, seed: int = 0,
                   size: int = 224, channels: int = 3,
                   **kwargs: object) -> ImageDataLoaders:
        """Images ``files`` with their ``labels`` (one class each, or a list, tuple or set of
        classes for multi-label data), the validation rows marked by ``valid`` or, without
        it, a random ``valid_pct`` (fixed by ``seed``, at least one image on each side).
        Unreadable files are left out with a warning; the vocabulary comes from the images
        kept, and with ``valid`` a class met only in validation is a ``ValueError``."""
        files = [Path(f) for f in files]
        if len(labels) != len(files) or (valid is not None and len(valid) != len(files)):
            raise ValueError(f"{len(files)} files need as many labels (got {len(labels)})"
                             + ("" if valid is None else f" and valid flags ({len(valid)})"))
        if valid is None:
            if not 0 < valid_pct < 1:
                raise ValueError(f"valid_pct must be in (0, 1), got {valid_pct}")
            if len(files) < 2:
                raise ValueError(f"need at least 2 images, got {len(files)}")
        images, kept = load_images(files, size, channels)
        files, labels = [files[i] for i in kept], [labels[i] for i in kept]
        multi = any(isinstance(lab, _MULTI) for lab in labels)
        lists = [list(lab) if isinstance(lab, _MULTI) else [lab] for lab in labels]
        if valid is None:
            ti, vi = split_indices(len(files), valid_pct, seed)
        else:
            flags = torch.tensor([bool(valid[i]) for i in kept], dtype=torch.bool)
            ti, vi = (~flags).nonzero().squeeze(1), flags.nonzero().squeeze(1)
            if len(ti) == 0 or len(vi) == 0:
                raise ValueError(f"the valid flags leave {len(ti)} training and {len(vi)} "
                                 "validation images: both sides need one")
            training_classes([lab for i in ti.tolist() for lab in lists[i]],
                             [lab for i in vi.tolist() for lab in lists[i]])
        vocab = sorted_classes([lab for labs in lists for lab in labs])
        if multi:
            targets = multi_hot(lists, vocab)
        else:
            index = {v: i for i, v in enumerate(vocab)}
            targets = torch.tensor([index[lab] for lab in labels])
        dls = cls.from_tensors(images[ti], targets[ti], images[vi], targets[vi], vocab,
                               seed=seed, **kwargs)
        dls.train_items = [files[i] for i in ti.tolist()]
        dls.valid_items = [files[i] for i in vi.tolist()]
        return dls

    @classmethod
    def from_folder(cls, path: str | os.PathLike[str], train: str = "train",  # type: ignore[override]
                    valid: str = "valid", valid_pct: float | None = None, seed: int = 0,
                    size: int = 224, channels: int = 3, **kwargs: object) -> ImageDataLoaders:
        """ImageNet-style folders, labelled by their parent folder: ``path/train/<class>/*``
        and ``path/valid/<class>/*``, or, with ``valid_pct``, ``path/<class>/*`` split at
        random (fixed by ``seed``). ``kwargs`` go to :meth:`from_tensors`."""
        path = Path(path)
        if valid_pct is not None:
            return cls.from_label_func(get_image_files(path), parent_label, valid_pct, seed,
                                       size, channels, **kwargs)
        for sub in (train, valid):
            if not (path / sub).is_dir():
                raise FileNotFoundError(f"no folder {path / sub} (or pass valid_pct to split "
                                        f"{path} at random)")
        tf, vf = get_image_files(path / train), get_image_files(path / valid)
        ti, tk = load_images(tf, size, channels)
        vi, vk = load_images(vf, size, channels)
        tf, vf = [tf[i] for i in tk], [vf[i] for i in vk]
        vocab = training_classes([parent_label(f) for f in tf], [parent_label(f) for f in vf])
        index = {v: i for i, v in enumerate(vocab)}
        dls = cls.from_tensors(ti, torch.tensor([index[parent_label(f)] for f in tf]), vi,
                               torch.tensor([index[parent_label(f)] for f in vf]), vocab,
                               seed=seed, **kwargs)
        dls.train_items, dls.valid_items = tf, vf
        return dls


#: Label types that ``from_label_func`` reads as several classes of one image.
_MULTI = (list, tuple, set, frozenset)


def _channel_stats(x: Tensor, chunk: int = 1 << 20,
                   ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (unbiased, floored at 1e-3) of uint8 images ``x``
    (N, C, H, W) scaled to [0, 1]. Sums and sums of squares accumulate in float64 over
    slices of about ``chunk`` elements, so the extra memory stays near ``16 * chunk`` bytes
    however many images there are.

    >>> x = torch.tensor([0, 255, 0, 255], dtype=torch.uint8).view(4, 1, 1, 1)
    >>> mean, std = _channel_stats(x)
    >>> mean, [round(s, 6) for s in std]  # std of 0, 1, 0, 1 with ddof=1: sqrt(1/3)
    ((0.5,), [0.57735])
    """
    n, c = x.shape[:2]
    count = n * x[0, 0].numel() if n else 0
    if count < 2:
        raise ValueError(f"stats='data' needs at least 2 values per channel, got {count} "
                         f"({n} training image(s))")
    total = torch.zeros(c, dtype=torch.float64, device=x.device)
    squares = torch.zeros(c, dtype=torch.float64, device=x.device)
    for part in x.split(max(1, chunk // max(1, x[0].numel()))):
        p = part.to(torch.float64)
        total += p.sum((0, 2, 3))
        squares += p.square_().sum((0, 2, 3))
    mean = total / count
    var = ((squares - total * mean) / (count - 1)).clamp_min(0)
    return (tuple((mean / 255).tolist()),
            tuple((var.sqrt() / 255).clamp_min(1e-3).tolist()))


def _resolve_stats(stats: str | tuple, x_train: Tensor,
                   ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (mean, std) per channel that normalise ``x_train`` (uint8 (N, C, H, W)):
    ``"data"`` (its own, :func:`_channel_stats`), ``"imagenet"`` or an explicit
    ``(mean, std)``. Shared by the classification and segmentation loaders.

    Raises:
        ValueError: the stats do not give one mean and one std per channel of ``x_train``
            (they would broadcast and change the batches' channel count), or ``stats`` is
            none of the three forms.
    """
    c = x_train.shape[1]
    if isinstance(stats, str) and stats == "imagenet":
        if c != 3:
            raise ValueError(f"ImageNet stats need 3-channel images, got {c} channel(s)")
        return IMAGENET_STATS
    if isinstance(stats, str) and stats == "data":
        return _channel_stats(x_train)
    if isinstance(stats, tuple) and len(stats) == 2:
        mean, std = tuple(stats[0]), tuple(stats[1])
        if len(mean) != c or len(std) != c:
            raise ValueError(f"stats give {len(mean)} mean and {len(std)} std value(s) for "
                             f"{c}-channel images: need {c} of each")
        return mean, std
    raise ValueError(f"stats must be 'data', 'imagenet' or (mean, std), got {stats!r}")


def warn_unless_imagenet_stats(dls: object, in_channels: int, stacklevel: int = 3) -> None:
    """Warns (``UserWarning``) when loaders of 3-channel images are normalised by other
    stats than ImageNet's: torchvision weights were trained on ImageNet-normalised inputs,
    so a pretrained body sees shifted inputs (the course normalises with the pretrained
    model's stats). Called by the learners when they load ``pretrained`` weights. Silent
    for loaders without ``stats`` and for other channel counts (no ImageNet stats exist
    for them)."""
    stats = getattr(dls, "stats", None)
    if stats is None or in_channels != 3:
        return
    try:
        same = all(len(a) == len(b) and all(math.isclose(float(u), v, abs_tol=1e-6)
                                            for u, v in zip(a, b, strict=True))
                   for a, b in zip(stats, IMAGENET_STATS, strict=True))
    except (TypeError, ValueError):  # not a (mean, std) pair: nothing to compare
        return
    if not same:
        mean, std = ([round(float(v), 3) for v in part] for part in stats)
        warnings.warn(f"pretrained weights expect ImageNet-normalised inputs, but the loaders "
                      f"use mean {mean} std {std}: build them with stats='imagenet'",
                      UserWarning, stacklevel=stacklevel)
