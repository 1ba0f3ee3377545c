"""Crappified pairs, their loaders, and PSNR / SSIM against float64 references of the
formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fastext.tasks.gen.crappify import crappify, crappify_params
from fastext.tasks.gen.data import PairDataLoaders, crappy_pairs
from fastext.tasks.gen.metrics import PSNR, SSIM, detail_ratio, psnr, ssim


def photo(w=64, h=48, mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    arr = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    return img.convert(mode) if mode != "RGB" else img


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
def test_crappify_is_deterministic_and_keeps_size_and_mode(mode):
    img = photo(mode=mode)
    a, b, c = crappify(img, 7), crappify(img, 7), crappify(img, 8)
    assert a.size == img.size and a.mode == img.mode
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    assert a.tobytes() != img.tobytes()


def test_crappify_quality_range_and_stamp():
    qs = [crappify_params(s, (32, 24))[0] for s in range(400)]
    assert min(qs) == 10 and max(qs) == 70  # the whole range is drawn
    q, (x, y) = crappify_params(3, (32, 24), (40, 40))
    assert q == 40 and 0 <= x <= 16 and 0 <= y <= 12
    img = photo()
    assert crappify(img, 1).tobytes() != crappify(img, 1, stamp=False).tobytes()
    # the degradation grows as the quality drops
    err = [np.abs(np.asarray(crappify(img, 0, quality=(q, q), stamp=False), float)
                  - np.asarray(img, float)).mean() for q in (90, 10)]
    assert err[1] > err[0]


@pytest.mark.parametrize("bad", [dict(scale=0), dict(scale=1.5), dict(quality=(70, 10)),
                                 dict(quality=(0, 50))])
def test_crappify_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        crappify(photo(), 0, **bad)
    with pytest.raises(TypeError):
        crappify(np.zeros((4, 4, 3)), 0)


def test_crappy_pairs_uses_one_seed_per_image():
    clean = torch.from_numpy(np.stack([np.asarray(photo(seed=i)) for i in range(3)])
                             ).permute(0, 3, 1, 2).contiguous()
    crappy = crappy_pairs(clean, seed=5)
    assert crappy.shape == clean.shape and crappy.dtype == torch.uint8
    for i in range(3):
        want = np.asarray(crappify(Image.fromarray(clean[i].permute(1, 2, 0).numpy()), 5 + i))
        assert torch.equal(crappy[i], torch.from_numpy(want.copy()).permute(2, 0, 1))
    gray = crappy_pairs(clean[:, :1], seed=0)
    assert gray.shape == (3, 1, 48, 64)
    with pytest.raises(TypeError):
        crappy_pairs(clean.float(), 0)


def test_pair_loaders_split_range_and_paired_flips():
    n = 10
    ramp = torch.arange(16, dtype=torch.uint8).repeat(n, 3, 8, 1) * 16  # left-right asymmetric
    dls = PairDataLoaders.from_tensors(ramp, ramp.clone(), valid_pct=0.3, bs=4, seed=1)
    tr, va = dls.train.loader, dls.valid.loader
    assert len(tr.x) == 7 and len(va.x) == 3
    flipped = 0
    for _ in range(3):
        for xb, yb in dls.train:
            assert xb.dtype == torch.float32 and 0 <= xb.min() and xb.max() <= 1
            assert torch.equal(xb, yb)  # the same flip for input and target
            flipped += int((xb[:, 0, 0, 0] > xb[:, 0, 0, -1]).sum())
    assert flipped > 0
    for xb, _ in dls.valid:  # never flipped
        assert (xb[:, 0, 0, 0] < xb[:, 0, 0, -1]).all()
    again = PairDataLoaders.from_tensors(ramp, ramp.clone(), valid_pct=0.3, bs=4, seed=1)
    assert torch.equal(next(iter(again.train))[0], next(iter(
        PairDataLoaders.from_tensors(ramp, ramp.clone(), valid_pct=0.3, bs=4, seed=1).train))[0])
    with pytest.raises(ValueError):
        PairDataLoaders.from_indices(ramp, ramp, torch.tensor([0, 1]), torch.tensor([1, 2]))
    with pytest.raises(TypeError):
        PairDataLoaders.from_tensors(ramp.float(), ramp.float())


def ssim_reference(x: np.ndarray, y: np.ndarray, data_range=1.0, window=11, sigma=1.5):
    """Wang et al. 2004 in float64 numpy, one image (C, H, W), 'valid' positions."""
    g = np.exp(-((np.arange(window) - (window - 1) / 2) ** 2) / (2 * sigma ** 2))
    k = np.outer(g, g) / g.sum() ** 2
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for a, b in zip(x, y, strict=True):
        h, w = a.shape[0] - window + 1, a.shape[1] - window + 1

        def blur(t, h=h, w=w):
            return np.array([[np.sum(t[i:i + window, j:j + window] * k) for j in range(w)]
                             for i in range(h)])

        ma, mb = blur(a), blur(b)
        saa, sbb, sab = blur(a * a) - ma ** 2, blur(b * b) - mb ** 2, blur(a * b) - ma * mb
        s = ((2 * ma * mb + c1) * (2 * sab + c2)) / ((ma ** 2 + mb ** 2 + c1) * (saa + sbb + c2))
        vals.append(s.mean())
    return float(np.mean(vals))


def test_psnr_and_ssim_match_references():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 16, 20)
    y = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    for i in range(3):
        mse = float(((x[i].double() - y[i].double()) ** 2).mean())
        assert math.isclose(float(psnr(x, y)[i]), 10 * math.log10(1 / mse), rel_tol=1e-5)
        assert math.isclose(float(ssim(x, y)[i]),
                            ssim_reference(x[i].double().numpy(), y[i].double().numpy()),
                            rel_tol=1e-5)
    assert psnr(x, x).isinf().all() and torch.allclose(ssim(x, x), torch.ones(3))
    noisier = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert (psnr(x, noisier) < psnr(x, y)).all() and (ssim(x, noisier) < ssim(x, y)).all()
    with pytest.raises(ValueError):
        psnr(x, y[:, :1])
    with pytest.raises(ValueError):
        ssim(x[..., :8, :8], y[..., :8, :8])


def _detail_reference(x: np.ndarray) -> float:
    """Mean squared 4-neighbour Laplacian over the valid positions, by explicit shifts."""
    lap = (x[:, :-2, 1:-1] + x[:, 2:, 1:-1] + x[:, 1:-1, :-2] + x[:, 1:-1, 2:]
           - 4 * x[:, 1:-1, 1:-1])
    return float((lap ** 2).mean())


def test_detail_ratio_matches_reference_and_orders_blur_and_noise():
    torch.manual_seed(0)
    x = torch.rand(3, 2, 9, 12)
    y = torch.rand(3, 2, 9, 12)
    r = detail_ratio(x, y)
    for i in range(3):
        want = (_detail_reference(x[i].double().numpy())
                / _detail_reference(y[i].double().numpy()))
        assert math.isclose(float(r[i]), want, rel_tol=1e-6)
    assert torch.equal(detail_ratio(x, x), torch.ones(3))
    blurred = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    noisy = x + 0.3 * torch.randn_like(x)
    assert (detail_ratio(blurred, x) < 1).all() and (detail_ratio(noisy, x) > 1).all()
    with pytest.raises(ValueError):
        detail_ratio(x, y[:, :1])
    with pytest.raises(ValueError, match="3 pixels"):
        detail_ratio(x[..., :2, :], y[..., :2, :])


def test_learner_metrics_average_over_images():
    from types import SimpleNamespace

    x = torch.rand(4, 3, 16, 16)
    y = (x + 0.1).clamp(0, 1)
    for metric, fn in ((PSNR(), psnr), (SSIM(), ssim)):
        metric.reset()
        metric.accumulate(SimpleNamespace(pred=x[:1], yb=(y[:1],)))
        metric.accumulate(SimpleNamespace(pred=x[1:], yb=(y[1:],)))
        assert math.isclose(metric.value, float(fn(x, y).mean()), rel_tol=1e-6)
    assert PSNR().name == "psnr" and SSIM().name == "ssim"


@pytest.mark.parametrize("blur", [False, True])
def test_restoration_unet_starts_as_the_identity_with_or_without_blur(blur):
    """``blur`` smooths after every PixelShuffle (the GAN demo's generator); either way the
    zeroed final conv makes the untrained net return its input."""
    from torch import nn

    from fastext.tasks.gen.restorer import restoration_unet

    net = restoration_unet("resnet18", (32, 48), blur=blur).eval()
    pools = [m for m in net.modules() if isinstance(m, nn.AvgPool2d)]
    assert bool(pools) == blur
    x = torch.rand(2, 3, 32, 48)
    torch.testing.assert_close(net(x), x)


HIGH_BIT = {"I;16": ("<u2", 60000), "I;16B": (">u2", 60000), "I": ("=i4", 1_000_000),
            "F": ("=f4", 3.5)}


def _high_bit_photo(mode, seed=0):
    dtype, top = HIGH_BIT[mode]
    arr = np.asarray(photo(seed=seed).convert("L"), dtype=np.float64) / 255 * top + top / 20
    arr = np.minimum(arr, top)
    if mode != "F":
        arr = np.rint(arr)
    return Image.frombytes(mode, (arr.shape[1], arr.shape[0]), arr.astype(dtype).tobytes()), arr


@pytest.mark.parametrize("mode", list(HIGH_BIT))
def test_crappify_high_bit_depth_keeps_the_value_range(mode):
    """A 16-bit or 32-bit image is degraded through 8 bits and mapped back: same mode and
    range, values near the input's (as a JPEG of the image scaled to 8 bits gives them),
    not clipped to 0..255 as before; a constant image stays constant."""
    img, arr = _high_bit_photo(mode)
    out = crappify(img, 5)
    assert out.mode == mode and out.size == img.size
    got = np.asarray(out, dtype=np.float64)
    lo, hi = arr.min(), arr.max()
    assert lo <= got.min() and got.max() <= hi
    # The reference: the same degradation of the 8-bit image, scaled to the range.
    step = (hi - lo) / 255
    l8 = Image.fromarray(np.rint((arr - lo) / step).astype(np.uint8))
    ref = np.asarray(crappify(l8, 5), dtype=np.float64) * step + lo
    np.testing.assert_allclose(got, ref if mode == "F" else np.rint(ref), rtol=1e-6)
    assert abs(got.mean() - arr.mean()) < 0.05 * (hi - lo)
    flat = Image.frombytes(mode, (8, 6), np.full((6, 8), 7, HIGH_BIT[mode][0]).tobytes())
    assert crappify(flat, 1, stamp=False).tobytes() == flat.tobytes()


def test_crappify_16_bit_png_round_trip(tmp_path):
    img, arr = _high_bit_photo("I;16")
    img.save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as png:
        out = crappify(png, 3)
    assert out.mode == png.mode
    assert np.asarray(out).max() > 255 and abs(np.asarray(out, float).mean() - arr.mean()) < 3000


def test_crappify_refuses_non_finite_float_images():
    arr = np.ones((6, 8), np.float32)
    arr[2, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        crappify(Image.frombytes("F", (8, 6), arr.tobytes()), 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_crappify_keeps_alpha(mode):
    """The colour is degraded as without alpha; the alpha channel is kept, shrunk and grown
    back as the image is (no stamp, no JPEG), not replaced by opaque."""
    colour = photo(mode=mode[:-1])
    alpha = np.zeros((48, 64), np.uint8)
    alpha[:24] = 255
    img = colour.copy()
    img.putalpha(Image.fromarray(alpha))
    out = crappify(img, 4)
    assert out.mode == mode and out.size == img.size
    assert out.convert(mode[:-1]).tobytes() == crappify(colour, 4).tobytes()
    a = Image.fromarray(alpha)
    want = a.resize((32, 24), Image.Resampling.BILINEAR, reducing_gap=None).resize(
        (64, 48), Image.Resampling.BILINEAR)
    assert out.getchannel("A").tobytes() == want.tobytes()
    got = np.asarray(out.getchannel("A"))
    assert (got[:20] == 255).all() and (got[28:] == 0).all()


def test_detail_ratio_of_flat_images_is_finite():
    """A flat target (a black or grey frame): two flat images give 1, not 0/0; detail added
    to it is measured against the floor (8-bit quantisation noise), not 0, so the batch
    mean stays finite; ordinary images get the plain ratio."""
    x = torch.rand(3, 3, 16, 16)
    x[1] = 0.5
    pred = x.clone()
    pred[1] += 0.01 * torch.randn(3, 16, 16)
    r = detail_ratio(pred, x)
    assert torch.isfinite(r).all() and r[0] == 1 and r[2] == 1
    floor = 20 / 12 / 255 ** 2
    assert math.isclose(float(r[1]), _detail_reference(pred[1].double().numpy()) / floor,
                        rel_tol=1e-6)
    assert detail_ratio(x[1:2], x[1:2]).item() == 1.0
    assert detail_ratio(torch.zeros(2, 1, 5, 5), torch.zeros(2, 1, 5, 5)).tolist() == [1.0, 1.0]
    big = detail_ratio(x[1:2] * 255, x[1:2] * 255, data_range=255.0)
    assert big.item() == 1.0


def test_restoration_unet_pretrained_encoder_sees_imagenet_normalised_input(tmp_path):
    import torchvision

    from fastext.tasks.gen.restorer import restoration_unet
    from fastext.tasks.vision.data import IMAGENET_STATS

    def first_conv(net):
        return next(m for m in net.body.modules() if isinstance(m, torch.nn.Conv2d))

    torch.manual_seed(0)
    ref = torchvision.models.resnet18()
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    net = restoration_unet("resnet18", (32, 32), fuse=False,
                           pretrained=tmp_path / "resnet18.pth")
    conv1 = first_conv(net)
    torch.testing.assert_close(conv1.weight, ref.conv1.weight)  # the file's weights
    seen = []
    conv1.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(net(x), x)  # still the identity at step 0, in the image's range
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET_STATS)
    torch.testing.assert_close(seen[0], (x - mean) / std)
    plain = restoration_unet("resnet18", (32, 32), fuse=False)
    seen.clear()
    first_conv(plain).register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    plain(x)
    torch.testing.assert_close(seen[0], x)  # random init: the input as it is
    with pytest.raises(ValueError, match="3 ImageNet"):
        restoration_unet("resnet18", (32, 32), in_channels=1,
                         pretrained=tmp_path / "resnet18.pth")
