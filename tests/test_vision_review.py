"""Regressions from the vision review: random-resized crop bounds, 16-bit and palette files,
decompression bombs, pretrained weights with cut=False and ImageNet stats, per-sample
F-beta, Grad-CAM inputs and layers, per-submodule mode restoring, DenseNet checkpoint keys,
(H, W) progressive sizes. Each against torchvision, sklearn or a formula."""

import copy
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fastext.data import DataError
from fastext.data.camvid import load_camvid
from fastext.learner import Learner
from fastext.learner.callback import Callback
from fastext.learner.metrics import FBeta
from fastext.learner.progressive import ProgressiveResize
from fastext.tasks.vision.body import conv_body, create_body, num_features
from fastext.tasks.vision.data import BatchAugment, ImageDataLoaders, load_images
from fastext.tasks.vision.interpret import ClassificationInterpretation, grad_cam
from fastext.tasks.vision.learner import VisionModel, create_head, vision_learner
from fastext.tasks.vision.unet import (
    DynamicUnet,
    SegmentationDataLoaders,
    pixel_cross_entropy,
    unet_learner,
)

torchvision = pytest.importorskip("torchvision")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _crop_fractions(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Width and height of each crop as fractions of the image's."""
    return theta[:, 0, 0].abs(), theta[:, 1, 1]


# -- 1. random-resized crop ----------------------------------------------------------------

def _aspect_kw(aspect):
    return {} if aspect == 1 else {"aspect": aspect}  # the default is a square image


@pytest.mark.parametrize("scale", [(0.3, 0.9), (0.8, 1.0)])
@pytest.mark.parametrize("aspect", [1.0, 4 / 3, 0.9])
def test_random_crop_area_and_ratio_stay_in_range(aspect, scale):
    lo, hi = scale
    ratio = (3 / 4, 4 / 3)
    aug = BatchAugment(stats=None, flip=0.5, scale=scale, ratio=ratio, seed=1)
    sw, sh = _crop_fractions(aug._affine(4000, **_aspect_kw(aspect)))
    # torchvision's fallback after 10 draws that do not fit: the whole image (its ratio is
    # within `ratio` here)
    full = (sw == 1) & (sh == 1)
    area, pixel_ratio = sw * sh, sw / sh * aspect  # (w/W)(h/H); (w/h) in pixels
    assert bool(((area >= lo - 1e-6) & (area <= hi + 1e-6) | full).all())
    assert bool(((pixel_ratio >= ratio[0] - 1e-5) & (pixel_ratio <= ratio[1] + 1e-5)).all())
    assert bool((sw <= 1).all() and (sh <= 1).all())
    assert full.float().mean() < (0.01 if hi < 1 else 0.2)


@pytest.mark.parametrize("hw", [(16, 16), (8, 32), (32, 8), (12, 16)])
def test_random_crop_fallback_is_torchvisions_central_crop(hw):
    h, w = hw
    ratio = (3 / 4, 4 / 3)
    aug = BatchAugment(stats=None, flip=0.0, scale=(1.0, 1.0), ratio=ratio)
    theta = aug._affine(50, **_aspect_kw(w / h))
    # scale (1, 1) never fits but a crop of the image's own ratio: torchvision falls back
    tv = torchvision.transforms.RandomResizedCrop(1, scale=(1.0, 1.0), ratio=ratio)
    i, j, ch, cw = tv.get_params(torch.zeros(1, h, w), tv.scale, tv.ratio)
    sw, sh = _crop_fractions(theta)
    torch.testing.assert_close(sw, torch.full((50,), cw / w), atol=1 / w, rtol=0)
    torch.testing.assert_close(sh, torch.full((50,), ch / h), atol=1 / h, rtol=0)
    assert bool((theta[:, :, 2] == 0).all())  # central


def test_scale_one_and_flip_give_the_image_or_its_mirror():
    x = torch.randint(0, 256, (8, 1, 12, 16), dtype=torch.uint8)  # aspect 4/3: in ratio
    y = torch.zeros(8, dtype=torch.long)
    dls = ImageDataLoaders.from_tensors(x, y, x, y, ["a"], bs=8, stats=((0.0,), (1.0,)),
                                        flip=0.5, scale=(1.0, 1.0), shuffle=False,
                                        device="cpu")
    xb = (next(iter(dls.train))[0] * 255).round().to(torch.uint8)
    kinds = [torch.equal(xb[i], x[i]) or torch.equal(xb[i], x[i].flip(-1)) for i in range(8)]
    assert all(kinds)


def test_batch_augment_rejects_inverted_ranges():
    with pytest.raises(ValueError, match="scale"):
        BatchAugment(scale=(0.9, 0.5))
    with pytest.raises(ValueError, match="ratio"):
        BatchAugment(ratio=(2.0, 1.0))


# -- 3, 9, 10. decoding: 16-bit, decompression bombs, palette masks ------------------------

def test_16bit_and_float_images_are_rescaled_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    Image.fromarray((ramp / 65535).astype(np.float32)).save(tmp_path / "f32.tif")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    assert Image.open(tmp_path / "f32.tif").mode == "F"
    want = torch.from_numpy(np.rint(ramp / 257).astype(np.uint8))
    for ch in (1, 3):
        x, kept = load_images([tmp_path / "g16.png", tmp_path / "f32.tif"], 16, channels=ch)
        assert kept == [0, 1]
        for img in x:
            for c in img:
                assert (c.int() - want.int()).abs().max() <= 1


def _camvid_dir(root, image, masks):
    d = root / "camvid_tiny"
    (d / "images").mkdir(parents=True)
    (d / "labels").mkdir()
    (d / "codes.txt").write_text("a\nb\nc\nVoid\n")
    for i, m in enumerate(masks):
        image.save(d / "images" / f"f{i}.png")
        m.save(d / "labels" / f"f{i}_P.png")
    return d


def test_camvid_palette_and_16bit_masks_keep_their_class_ids(tmp_path):
    rng = np.random.default_rng(0)
    ids = [rng.integers(0, 4, (6, 8)).astype(np.uint8) for _ in range(2)]
    pal = Image.fromarray(ids[0], mode="P")
    pal.putpalette(rng.integers(0, 256, 768).astype(np.uint8).tobytes())  # colours != ids
    wide = Image.fromarray(ids[1].astype(np.uint16))  # I;16 mask: ids, not brightness
    assert (pal.mode, wide.mode) == ("P", "I;16")
    g16 = Image.fromarray(np.full((6, 8), 257 * 100, np.uint16))  # a 16-bit grey image
    cv = load_camvid(_camvid_dir(tmp_path, g16, [pal, wide]))
    assert torch.equal(cv.masks, torch.from_numpy(np.stack(ids)).long())
    assert bool((cv.images == 100).all())
    resized = load_camvid(tmp_path / "camvid_tiny", size=(12, 16))  # nearest: ids stay ids
    assert torch.equal(resized.masks, cv.masks.repeat_interleave(2, 1).repeat_interleave(2, 2))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "LA"])
def test_camvid_grey_masks_saved_in_colour_modes_keep_their_class_ids(tmp_path, mode):
    """Grey masks exported as 24-bit (R = G = B) or with alpha loaded before the palette
    fix (as convert("L")); a real colour mask is refused."""
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 4, (6, 8)).astype(np.uint8)
    grey = Image.fromarray(ids, "L").convert(mode)
    img = Image.fromarray(np.zeros((6, 8, 3), np.uint8))
    cv = load_camvid(_camvid_dir(tmp_path, img, [grey]))
    assert torch.equal(cv.masks[0], torch.from_numpy(ids).long())
    coloured = np.stack([ids, ids, (ids + 1) % 4], -1).astype(np.uint8)
    Image.fromarray(coloured, "RGB").save(tmp_path / "camvid_tiny" / "labels" / "f0_P.png")
    with pytest.raises(DataError, match="mode RGB holds colours"):
        load_camvid(tmp_path / "camvid_tiny")


def test_decompression_bomb_is_skipped_with_the_usual_warning(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # 2000 px > 2 x the limit: an error
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable.*bomb\.png.*DecompressionBomb"):
        x, kept = load_images([tmp_path / "small.png", tmp_path / "bomb.png"], 4)
    assert kept == [0] and x.shape == (1, 3, 4, 4)


# -- 2, 4. pretrained weights: cut=False, ImageNet stats -----------------------------------

def _cls_dls(stats="data", channels=3):
    x = torch.randint(0, 256, (12, channels, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 3, (12,))
    return ImageDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], ["a", "b", "c"], bs=4,
                                         stats=stats, device="cpu")


def _seg_dls(stats="data"):
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 3, (6, 32, 32))
    return SegmentationDataLoaders.from_tensors(x[:4], y[:4], x[4:], y[4:], ["a", "b", "c"],
                                                bs=2, stats=stats, device="cpu")


@pytest.mark.parametrize("which", ["vision", "unet"])
def test_cut_false_loads_pretrained_into_the_given_body(tmp_path, which):
    src = create_body("resnet18")
    torch.save(src.state_dict(), tmp_path / "body.pth")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "full.pth")
    make = ((lambda body, **kw: vision_learner(_cls_dls("imagenet"), body, **kw))
            if which == "vision" else
            (lambda body, **kw: unet_learner(_seg_dls("imagenet"), body, **kw)))
    learn = make(create_body("resnet18"), cut=False, pretrained=tmp_path / "body.pth",
                 fuse=False, quiet=True)
    body = learn.model.body if which == "vision" else learn.model.encoder
    for (k, a), b in zip(body.state_dict().items(), src.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=k)
    assert not body[0].weight.requires_grad  # frozen, as with cut=True
    with pytest.raises(FileNotFoundError):
        make(create_body("resnet18"), cut=False, pretrained=tmp_path / "none.pth", quiet=True)
    with pytest.raises(RuntimeError, match="cut=False"):
        make(create_body("resnet18"), cut=False, pretrained=tmp_path / "full.pth", quiet=True)


@pytest.mark.parametrize("which", ["vision", "unet"])
def test_pretrained_with_non_imagenet_stats_warns(tmp_path, which):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    make = ((lambda st: vision_learner(_cls_dls(st), "resnet18", pretrained=tmp_path / "r18.pth",
                                       quiet=True))
            if which == "vision" else
            (lambda st: unet_learner(_seg_dls(st), "resnet18", pretrained=tmp_path / "r18.pth",
                                     quiet=True)))
    with pytest.warns(UserWarning, match="stats='imagenet'"):
        make("data")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make("imagenet")
        make(((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))  # the same numbers, given


def test_no_stats_warning_without_pretrained_or_for_grey_images(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vision_learner(_cls_dls("data"), "resnet18", quiet=True)
        vision_learner(_cls_dls("data", channels=1), "resnet18", quiet=True,
                       pretrained=tmp_path / "r18.pth")  # no ImageNet stats for 1 channel


# -- 5. per-sample F-beta -------------------------------------------------------------------

@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_fbeta_samples_matches_sklearn(beta):
    from types import SimpleNamespace

    from sklearn.metrics import fbeta_score

    g = torch.Generator().manual_seed(0)
    pred = torch.randn(40, 7, generator=g)
    targ = (torch.rand(40, 7, generator=g) < 0.25).float()
    targ[:3] = 0  # no true labels...
    pred[:2] = -10  # ...and none predicted in rows 0, 1; predicted only in row 2
    targ[3, :] = 1  # a row with every label
    m = FBeta(beta=beta, average="samples", thresh=0.2)
    m.reset()
    for sl in (slice(0, 25), slice(25, 40)):  # over batches: a mean over all samples
        m.accumulate(SimpleNamespace(pred=pred[sl], yb=(targ[sl],)))
    p = (pred.sigmoid() > 0.2).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's zero_division warning
        ref_default = fbeta_score(targ.numpy(), p, beta=beta, average="samples")
    ref0 = fbeta_score(targ.numpy(), p, beta=beta, average="samples", zero_division=0)
    assert m.value == pytest.approx(ref0, abs=1e-12)
    assert m.value == pytest.approx(ref_default, abs=1e-12)
    with pytest.raises(ValueError, match="multi-label"):
        FBeta(average="samples")


# -- 6, 7, smaller: Grad-CAM --------------------------------------------------------------

def _cam_reference(model, layer_name, x, cls):
    model = copy.deepcopy(model).eval()
    acts = {}
    model.get_submodule(layer_name).register_forward_hook(
        lambda m, i, o: acts.__setitem__("a", o))
    out = model(x)
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), cls].sum(), acts["a"])
    cam = F.relu((g.mean((2, 3), keepdim=True) * acts["a"]).sum(1, keepdim=True))
    cam = F.interpolate(cam.float(), x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam / cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)


def _small_model():
    return VisionModel(conv_body(1, (8, 16), (2, 1)), create_head(16, 3))


def test_grad_cam_fp16_model_takes_a_float32_batch():
    model = _small_model()
    x = torch.randn(3, 1, 16, 16)
    cls = torch.tensor([0, 1, 2])
    ref = _cam_reference(model, "body.1", x, cls)
    model.half()
    cam = grad_cam(model, model.body[-1], x, cls)
    assert cam.dtype == torch.float32 and cam.shape == (3, 16, 16)
    torch.testing.assert_close(cam, ref, atol=2e-2, rtol=0)


def test_grad_cam_takes_an_inference_mode_tensor():
    model = _small_model()
    with torch.inference_mode():
        xi = torch.randn(2, 1, 16, 16)
    cam = grad_cam(model, model.body[-1], xi, 1)
    torch.testing.assert_close(cam, _cam_reference(model, "body.1", xi.clone(),
                                                   torch.tensor([1, 1])))


def test_grad_cam_refuses_layers_it_cannot_use():
    model = _small_model()
    x = torch.randn(2, 1, 16, 16)
    with pytest.raises(ValueError, match="never called"):
        grad_cam(model, nn.Conv2d(1, 8, 3), x)  # not part of the model
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        grad_cam(model, model.head[1], x)  # Flatten: a 2-D output
    with pytest.raises(ValueError, match="target classes"):
        grad_cam(model, model.body[-1], x, 3)
    assert sum(len(m._forward_hooks) for m in model.modules()) == 0


def test_interpretation_refuses_multi_label_loaders():
    x = torch.randint(0, 256, (12, 1, 16, 16), dtype=torch.uint8)
    y = (torch.rand(12, 3) < 0.4).float()
    dls = ImageDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], ["a", "b", "c"], bs=4,
                                        device="cpu")
    learn = vision_learner(dls, conv_body(1, (8,), (2,)), cut=False, quiet=True)
    with pytest.raises(ValueError, match="single-label"):
        ClassificationInterpretation.from_learner(learn)
    dls.multi_label = False  # the targets alone still tell
    with pytest.raises(ValueError, match="single-label"):
        ClassificationInterpretation.from_learner(learn)


# -- 8. every submodule's train/eval flag comes back ---------------------------------------

def _modes(model):
    return [m.training for m in model.modules()]


def test_mode_of_every_submodule_is_restored():
    model = _small_model().train()
    model.body.eval()  # a frozen body keeping its BatchNorm statistics
    before = _modes(model)
    grad_cam(model, model.body[-1], torch.randn(2, 1, 16, 16))
    assert _modes(model) == before
    num_features(model.body, 1)
    assert _modes(model) == before

    enc = create_body("resnet18").train()
    enc[1].eval()
    before = _modes(enc)
    DynamicUnet(enc, 3, img_size=(32, 32))
    assert _modes(enc) == before

    x = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
    y = torch.randint(0, 3, (8,))
    dls = ImageDataLoaders.from_tensors(x[:4], y[:4], x[4:], y[4:], ["a", "b", "c"], bs=4,
                                        device="cpu")
    learn = vision_learner(dls, conv_body(1, (8,), (2,)), cut=False, quiet=True)
    learn.model.train()
    learn.model.body.eval()
    before = _modes(learn.model)
    ClassificationInterpretation.from_learner(learn)
    assert _modes(learn.model) == before


# -- 11. DenseNet checkpoints with torchvision's old keys -----------------------------------

def test_densenet_old_checkpoint_keys_load(tmp_path):
    ref = torchvision.models.densenet121(weights=None)
    sd = ref.state_dict()
    old_style = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))([12])\."
                           r"(weight|bias|running_mean|running_var)$")
    old = {}
    for k, v in sd.items():  # the published files' names: norm.1.weight for norm1.weight,
        if k.endswith("num_batches_tracked"):  # and no batch counters (they predate them)
            continue
        m = old_style.match(k)
        old[f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else k] = v
    assert any(".norm.1." in k for k in old)
    torch.save(old, tmp_path / "densenet121-old.pth")
    body = create_body("densenet121", pretrained=tmp_path / "densenet121-old.pth")
    got = body[0].state_dict()
    for k, v in ref.features.state_dict().items():
        torch.testing.assert_close(got[k], v, msg=k)


# -- 12. progressive resizing to (H, W) ----------------------------------------------------

def test_progressive_sizes_validate():
    cb = ProgressiveResize({0: (48, 64), 2: [96, 96], 3: 100})
    assert cb.sizes == {0: (48, 64), 2: 96, 3: 100}
    assert cb.size_at(1) == (48, 64) and cb.size_at(2) == 96
    # numpy integers, as np.linspace(...).astype(int) gives, are ints (plain ones kept)
    sizes = np.linspace(16, 48, 3).astype(int)
    cb = ProgressiveResize({np.int64(e): s for e, s in zip(range(3), sizes, strict=True)})
    assert cb.sizes == {0: 16, 1: 32, 2: 48}
    assert all(type(k) is int and type(v) is int for k, v in cb.sizes.items())
    for bad in ({0: (0, 4)}, {0: (4, 4, 4)}, {0: 1.5}, {0: True}, {-1: 8}, {}, {0: (4, "a")}):
        with pytest.raises(ValueError):
            ProgressiveResize(bad)


class _Shapes(Callback):
    def before_fit(self):
        self.seen = []

    def after_pred(self):
        if self.learn.training:
            self.seen.append((self.learn.epoch, tuple(self.learn.xb[0].shape[-2:])))


def test_progressive_hw_sizes_reach_the_segmentation_batches():
    x = torch.randint(0, 256, (4, 3, 24, 32), dtype=torch.uint8)
    y = torch.randint(0, 3, (4, 24, 32))
    dls = SegmentationDataLoaders.from_tensors(x, y, x, y, ["a", "b", "c"], bs=2,
                                               device="cpu")
    shapes = _Shapes()
    learn = Learner(dls, nn.Conv2d(3, 3, 1), pixel_cross_entropy, quiet=True,
                    cbs=[ProgressiveResize({0: (12, 16), 1: (24, 20)}), shapes])
    learn.fit(2, 1e-3)
    assert sorted(set(shapes.seen)) == [(0, (12, 16)), (1, (24, 20))]
    assert tuple(next(iter(dls.train))[0].shape[-2:]) == (24, 32)  # restored after the fit


def test_progressive_refuses_hw_sizes_for_square_only_loaders():
    dls = _cls_dls(channels=1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    learn = Learner(dls, model, F.cross_entropy, quiet=True,
                    cbs=[ProgressiveResize({0: (16, 24)})])
    with pytest.raises(ValueError, match="squares only"):
        learn.fit(1, 1e-3)
    shapes = _Shapes()
    learn = Learner(dls, model, F.cross_entropy, quiet=True,
                    cbs=[ProgressiveResize({0: (16, 16)}), shapes])  # a square pair is fine
    learn.fit(1, 1e-3)
    assert set(shapes.seen) == {(0, (16, 16))}


def test_fbeta_samples_sums_over_ranks_like_one_pass():
    from types import SimpleNamespace

    from fastext.learner.distributed import _combine, _state_names

    g = torch.Generator().manual_seed(1)
    pred, targ = torch.randn(30, 5, generator=g), (torch.rand(30, 5, generator=g) < 0.3).float()
    whole, parts = FBeta(average="samples", thresh=0.5), []
    whole.reset()
    whole.accumulate(SimpleNamespace(pred=pred, yb=(targ,)))
    for sl in (slice(0, 11), slice(11, 30)):  # two ranks' shards
        m = FBeta(average="samples", thresh=0.5)
        m.reset()
        m.accumulate(SimpleNamespace(pred=pred[sl], yb=(targ[sl],)))
        parts.append(m)
    merged = FBeta(average="samples", thresh=0.5)
    for k in _state_names(merged):
        setattr(merged, k, _combine([getattr(m, k) for m in parts], k))
    assert merged.value == pytest.approx(whole.value, abs=1e-12)
