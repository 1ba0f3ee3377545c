"""The course's get_transforms in BatchAugment: dihedral flips and rotations against
torchvision's functional ops, zoom against the bilinear sampling of a linear ramp computed
by hand, lighting against fastai's logit formula, the probabilities, reproducibility from
the seed, validation batches untouched, and the options reaching the loaders."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fastext.tasks.vision.data import BatchAugment, ImageDataLoaders

torchvision = pytest.importorskip("torchvision")
TF = pytest.importorskip("torchvision.transforms.functional")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _dihedral(img):
    """The 8 symmetries of a square image with torchvision's ops."""
    rots = [TF.rotate(img, 90 * k) for k in range(4)]
    return rots + [TF.hflip(r) for r in rots]


def test_flip_vert_gives_each_dihedral_symmetry_equally_often():
    x = torch.arange(36, dtype=torch.uint8).view(1, 1, 6, 6).expand(800, 3, 6, 6) * 7
    aug = BatchAugment(flip=1.0, scale=(1.0, 1.0), flip_vert=True)
    out = aug(x, generator=_gen(0))
    refs = torch.stack([r.float() / 255 for r in _dihedral(x[0])])
    which = []
    for o in out:
        d = (refs - o).abs().flatten(1).amax(1)
        assert float(d.min()) < 1e-5  # exactly one of the 8, up to rounding
        which.append(int(d.argmin()))
    counts = np.bincount(which, minlength=8)
    # 800 draws of 8 equally likely: each count ~ Binomial(800, 1/8), sd ~9.4
    assert (np.abs(counts - 100) < 40).all(), counts


def test_flip_without_flip_vert_is_a_horizontal_flip_only():
    x = torch.randint(0, 256, (200, 1, 5, 5), dtype=torch.uint8, generator=_gen(1))
    out = BatchAugment(flip=0.5, scale=(1.0, 1.0))(x, generator=_gen(2))
    pairs = list(zip(out, x.float() / 255, strict=True))
    mirrored = [bool(torch.allclose(o, TF.hflip(i))) for o, i in pairs]
    same = [bool(torch.allclose(o, i)) for o, i in pairs]
    assert all(m or s for m, s in zip(mirrored, same, strict=True))
    assert 60 < sum(mirrored) < 140


def _angles(aug, n, seed, aspect):
    """The rotation each image got (degrees), read off the thetas of the same draws."""
    th = aug._affine(n, _gen(seed), aspect)
    return torch.rad2deg(torch.atan2(th[:, 1, 0] / aspect, th[:, 0, 0]))


@pytest.mark.parametrize(("h", "w"), [(16, 16), (16, 20)])
def test_rotation_matches_torchvision_rotate(h, w):
    x = torch.randint(0, 256, (6, 3, h, w), dtype=torch.uint8, generator=_gen(3))
    aug = BatchAugment(flip=0.0, scale=(1.0, 1.0), max_rotate=30, p_affine=1.0)
    out = aug(x, generator=_gen(4))
    angles = _angles(aug, 6, 4, w / h)
    assert (angles.abs() <= 30).all() and (angles.abs() > 0).all()
    for o, img, a in zip(out, x, angles.tolist(), strict=True):
        ref = TF.rotate(img.float() / 255, a, interpolation=TF.InterpolationMode.BILINEAR)
        # away from the corners, where torchvision fills and we reflect
        inner = (slice(None), slice(h // 4, h - h // 4), slice(w // 4, w - w // 4))
        torch.testing.assert_close(o[inner], ref[inner], atol=1e-4, rtol=0)


def test_rotation_angle_is_uniform_and_applied_with_p_affine():
    aug = BatchAugment(flip=0.0, scale=(1.0, 1.0), max_rotate=10)
    a = _angles(aug, 4000, 5, 1.0)
    rotated = a != 0
    assert abs(float(rotated.float().mean()) - 0.75) < 0.03  # fastai's p_affine
    assert float(a.abs().max()) <= 10 and abs(float(a[rotated].mean())) < 0.3
    assert abs(float(a[rotated].abs().mean()) - 5) < 0.3  # |U(-10, 10)| has mean 5


def test_zoom_samples_a_window_inside_the_image():
    """A linear ramp resampled bilinearly stays linear: the zoomed output is the ramp at the
    window's coordinates, computed by hand from the zoom factor and centre drawn."""
    n, s = 64, 16
    ramp = (torch.arange(s) * 8).to(torch.uint8)
    x = torch.stack([ramp.view(1, s).expand(s, s), ramp.view(s, 1).expand(s, s)])[None]
    x = x.expand(n, 2, s, s)
    aug = BatchAugment(flip=0.0, scale=(1.0, 1.0), max_zoom=1.5, p_affine=1.0)
    out = aug(x, generator=_gen(6))
    th = aug._affine(n, _gen(6), 1.0)
    z = 1 / th[:, 0, 0]
    assert torch.equal(th[:, 0, 0], th[:, 1, 1]) and ((z >= 1) & (z <= 1.5)).all()
    assert (th[:, :, 2].abs() <= (1 - 1 / z).view(-1, 1) + 1e-6).all()  # inside the image
    o = (2 * torch.arange(s) + 1) / s - 1  # output pixel centres, normalised
    for k in range(n):
        for ch, t in ((0, th[k, 0, 2]), (1, th[k, 1, 2])):
            coord = o / z[k] + t  # where each output pixel samples, normalised
            idx = ((coord + 1) * s - 1) / 2  # ... in pixel indices
            want = idx * 8 / 255
            got = out[k, ch, 0] if ch == 0 else out[k, ch, :, 0]
            inside = (idx >= 0) & (idx <= s - 1)
            torch.testing.assert_close(got[inside], want[inside], atol=1e-5, rtol=0)


def test_lighting_follows_fastais_logit_formula():
    m = 0.4
    x = torch.linspace(10, 245, 16).round().to(torch.uint8).view(1, 1, 4, 4).expand(3000, 1, 4, 4)
    aug = BatchAugment(flip=0.0, scale=(1.0, 1.0), max_lighting=m)
    out = aug(x, generator=_gen(7)).double()
    lx = torch.logit(x[0].double().flatten() / 255)
    ly = torch.logit(out.flatten(1))
    # logit(y) = c * logit(x) + c * logit(b): a line per image
    dx = lx - lx.mean()
    slope = ((ly - ly.mean(1, keepdim=True)) * dx).sum(1) / dx.square().sum()
    inter = ly.mean(1) - slope * lx.mean()
    torch.testing.assert_close(ly, slope[:, None] * lx + inter[:, None], atol=1e-3, rtol=0)
    b = torch.sigmoid(inter / slope)
    contrast, bright = (slope - 1).abs() > 1e-6, (b - 0.5).abs() > 1e-6
    assert (slope >= 1 - m - 1e-6).all() and (slope <= 1 / (1 - m) + 1e-6).all()
    assert (b >= 0.5 * (1 - m) - 1e-6).all() and (b <= 0.5 * (1 + m) + 1e-6).all()
    assert abs(float(contrast.double().mean()) - 0.75) < 0.03  # p_lighting, independently
    assert abs(float(bright.double().mean()) - 0.75) < 0.03
    assert abs(float(slope[contrast].log().mean())) < 0.02  # log-uniform: symmetric in log
    assert abs(float(b[bright].mean()) - 0.5) < 0.01
    untouched = ~contrast & ~bright
    assert torch.equal(out[untouched].float(), (x[:int(untouched.sum())].float() / 255))


def test_same_seed_same_batches_and_eval_untouched():
    x = torch.randint(0, 256, (8, 3, 12, 12), dtype=torch.uint8, generator=_gen(8))
    kw = dict(flip_vert=True, max_rotate=20, max_zoom=1.2, max_lighting=0.3)
    stats = ((0.4, 0.5, 0.6), (0.2, 0.25, 0.3))
    a, b = BatchAugment(stats, seed=3, **kw), BatchAugment(stats, seed=3, **kw)
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), BatchAugment(stats, seed=4, **kw)(x))
    assert torch.equal(a(x, generator=a.epoch_generator(2)), b(x, generator=b.epoch_generator(2)))
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in stats)
    torch.testing.assert_close(a(x, train=False), (x.float() / 255 - mean) / std)


def test_from_tensors_and_constructors_take_the_options(tmp_path):
    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8, generator=_gen(9))
    y = torch.randint(0, 2, (12,), generator=_gen(9))
    dls = ImageDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], ["a", "b"], bs=4,
                                        flip_vert=True, max_rotate=15, max_zoom=1.1,
                                        max_lighting=0.2, p_affine=0.5, p_lighting=0.6,
                                        device="cpu")
    aug = dls.train.loader.augment
    assert (aug.flip_vert, aug.max_rotate, aug.max_zoom, aug.max_lighting, aug.p_affine,
            aug.p_lighting) == (True, 15, 1.1, 0.2, 0.5, 0.6)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in dls.stats)
    xb, _ = next(iter(dls.valid))  # validation: normalised only
    torch.testing.assert_close(xb, (x[8:].float() / 255 - mean) / std)
    mine = BatchAugment(flip=0.0, scale=(1.0, 1.0), max_lighting=0.1, seed=5)
    dls = ImageDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], ["a", "b"], bs=4,
                                        augment=mine, device="cpu")
    used = dls.train.loader.augment
    assert used.max_lighting == 0.1 and used.stats == dls.stats and mine.stats is None
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for i in range(3):
            arr = np.full((8, 8, 3), 40 * i, np.uint8)
            Image.fromarray(arr).save(tmp_path / label / f"{i}.png")
    dls = ImageDataLoaders.from_folder(tmp_path, valid_pct=0.3, size=8, bs=2, device="cpu",
                                       max_rotate=12, flip_vert=True)
    assert dls.train.loader.augment.max_rotate == 12 and dls.train.loader.augment.flip_vert


def test_rejects_out_of_range_options():
    for kw in ({"max_zoom": 0.9}, {"max_lighting": 1.0}, {"max_rotate": -1},
               {"p_affine": 1.5}):
        with pytest.raises(ValueError):
            BatchAugment(**kw)
    assert math.isclose(BatchAugment().max_zoom, 1.0)  # defaults: off
