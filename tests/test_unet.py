"""U-Net segmentation: shapes, ICNR, hooks, skip connections, losses and the no-Void metric,
the CamVid tiny loader, batched augmentation, and a short training against the majority
class; each against a reference computation or a hand-built case."""

import copy
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fastext.data.camvid import find_camvid, load_camvid, load_codes, split_indices
from fastext.learner import DataLoaders
from fastext.nn import BatchNormReLU2d
from fastext.tasks.vision.body import create_body
from fastext.tasks.vision.unet import (
    DynamicUnet,
    PixelAccuracy,
    PixelShuffleUpsample,
    SegmentationDataLoaders,
    SegmentAugment,
    UnetBlock,
    icnr_,
    pixel_accuracy,
    pixel_cross_entropy,
    pixel_mse,
    unet_learner,
)

pytest.importorskip("torchvision")


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest


@pytest.fixture(scope="module")
def r18_unet():
    return DynamicUnet(create_body("resnet18"), n_out=7, img_size=(64, 64)).eval()


def _small_encoder(c_in=3):
    """A cheap Sequential encoder (stem at full size, then three stride-2 stages)."""
    def stage(a, b, s):
        return nn.Sequential(nn.Conv2d(a, b, 3, s, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
    return nn.Sequential(stage(c_in, 16, 1), stage(16, 24, 2), stage(24, 32, 2),
                         stage(32, 48, 2))


def _has_camvid():
    try:
        find_camvid()
    except FileNotFoundError:
        return False
    return True


needs_camvid = pytest.mark.skipif(not _has_camvid(), reason="CamVid tiny not found")


# -- model shapes and structure ---------------------------------------------------------------

@pytest.mark.parametrize("size", [(64, 64), (61, 83), (33, 47), (96, 128), (45, 32)])
def test_resnet_unet_output_matches_odd_input_sizes(r18_unet, size):
    with torch.no_grad():
        out = r18_unet(torch.randn(2, 3, *size))
    assert out.shape == (2, 7, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("last_cross,blur", [(True, False), (False, True)])
def test_options_and_other_encoders_keep_the_input_size(last_cross, blur):
    net = DynamicUnet(_small_encoder(1), n_out=2, img_size=(32, 32), last_cross=last_cross,
                      blur=blur)
    assert net.skip_idxs == [0, 1, 2]  # stages after which the resolution drops
    for size in [(32, 32), (29, 37), (17, 20)]:
        assert net(torch.randn(3, 1, *size)).shape == (3, 2, *size)


def test_resnet_stages_hooked_at_each_resolution():
    net = DynamicUnet(create_body("resnet34"), n_out=3, img_size=(96, 128))
    # resnet body = conv1, bn1, relu, maxpool, layer1..layer4: the last child of each resolution
    assert net.skip_idxs == [2, 4, 5, 6]
    assert [tuple(s) for s in net.skip_shapes] == [(64, 48, 64), (64, 24, 32), (128, 12, 16),
                                                   (256, 6, 8)]
    assert len(net.blocks) == 4


def test_bad_encoders_and_n_out_are_refused():
    with pytest.raises(TypeError, match="nn.Sequential"):
        DynamicUnet(create_body("resnet18")[0], n_out=2)
    flat = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    with pytest.raises(ValueError, match="never changes resolution"):
        DynamicUnet(flat, n_out=2)
    with pytest.raises(ValueError, match="n_out"):
        DynamicUnet(_small_encoder(), n_out=0)


# -- ICNR and PixelShuffle ---------------------------------------------------------------------

def test_icnr_repeats_one_kernel_over_each_shuffle_group():
    w = icnr_(torch.empty(4 * 9, 5, 3, 3), scale=3)
    groups = w.view(4, 9, 5, 3, 3)
    assert torch.equal(groups, groups[:, :1].expand_as(groups))
    assert not torch.equal(groups[0, 0], groups[1, 0])  # different output channels differ
    with pytest.raises(ValueError, match="multiple"):
        icnr_(torch.empty(6, 2, 1, 1), scale=2)


@pytest.mark.parametrize("scale", [2, 3])
def test_icnr_pixel_shuffle_starts_without_checkerboard(scale):
    up = PixelShuffleUpsample(6, 4, scale=scale)
    x = torch.randn(2, 6, 5, 7)
    out = up(x)
    assert out.shape == (2, 4, 5 * scale, 7 * scale)
    # every scale x scale block is constant: the output is a nearest upsample of its corners
    corners = out[..., ::scale, ::scale]
    assert torch.equal(out, corners.repeat_interleave(scale, -2).repeat_interleave(scale, -1))
    # and equal to the reference: one conv with each group's shared kernel, then nearest
    conv = up[0]
    ref_w = conv.weight[::scale * scale]
    ref = F.interpolate(F.relu(F.conv2d(x, ref_w)), scale_factor=scale, mode="nearest")
    torch.testing.assert_close(out, ref)
    assert out.abs().sum() > 0


def test_without_icnr_the_shuffle_output_has_a_checkerboard():
    """The property test above can fail: a plain init breaks the blocks."""
    up = PixelShuffleUpsample(6, 4)
    nn.init.kaiming_normal_(up[0].weight)
    out = up(torch.randn(2, 6, 5, 7))
    assert not torch.allclose(out, out[..., ::2, ::2].repeat_interleave(2, -2)
                              .repeat_interleave(2, -1))


# -- hooks and skip connections ----------------------------------------------------------------

def _n_hooks(module):
    return sum(len(m._forward_hooks) for m in module.modules())


def test_hooks_exist_only_during_forward_even_when_it_fails():
    net = DynamicUnet(create_body("resnet18"), n_out=3, img_size=(64, 64))
    assert _n_hooks(net) == 0
    seen = []
    net.blocks[0].register_forward_pre_hook(lambda m, a: seen.append(_n_hooks(net.encoder)))
    net(torch.randn(1, 3, 64, 64))
    assert seen == [0]  # the encoder's hooks were gone before the decoder ran
    assert _n_hooks(net.encoder) == 0
    with pytest.raises(RuntimeError):
        net(torch.randn(1, 5, 64, 64))  # wrong channel count fails inside the encoder
    assert _n_hooks(net.encoder) == 0


def test_model_deep_copies_and_pickles_with_the_same_function(tmp_path):
    net = DynamicUnet(_small_encoder(), n_out=4, img_size=(32, 32)).eval()
    twin = copy.deepcopy(net)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(twin(x), net(x))
    torch.save(net, tmp_path / "m.pt")
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)
    torch.testing.assert_close(loaded(x), net(x))


def test_skip_connections_carry_the_encoder_stage_outputs():
    net = DynamicUnet(create_body("resnet18"), n_out=3, img_size=(64, 64)).eval()
    x = torch.randn(2, 3, 61, 75)
    # reference: run the encoder's children by hand and keep the hooked stages' outputs
    ref, h = [], x
    with torch.no_grad():
        for i, layer in enumerate(net.encoder):
            h = layer(h)
            if i in net.skip_idxs:
                ref.append(h.clone())
    got = []
    for blk in net.blocks:
        blk.register_forward_pre_hook(lambda m, args: got.append(args[1].clone()))
    with torch.no_grad():
        net(x)
    assert len(got) == 4
    for a, b in zip(got, reversed(ref), strict=True):
        torch.testing.assert_close(a, b)


def test_unet_block_concatenates_bn_skip_with_the_upsampled_map():
    blk = UnetBlock(8, 4, 6).eval()
    x, skip = torch.randn(1, 8, 3, 3), torch.randn(1, 4, 6, 6)
    up = blk.up(x)
    ref = blk.convs(F.relu(torch.cat([up, blk.skip_bn(skip)], 1)))
    torch.testing.assert_close(blk(x, skip), ref)
    # the output depends on the skip (a U-Net, not an autoencoder)
    assert not torch.allclose(blk(x, skip), blk(x, skip + 1.0))


# -- losses and metric ------------------------------------------------------------------------

def test_pixel_accuracy_no_void_by_hand():
    # 1 image, 2x3 pixels, 3 classes; class 2 is Void
    pred = torch.zeros(1, 3, 2, 3)
    pred[0, 0, 0, :] = 1.0  # row 0 predicts class 0
    pred[0, 1, 1, :] = 1.0  # row 1 predicts class 1
    target = torch.tensor([[[0, 1, 2], [1, 1, 0]]])
    # non-void pixels: (0,0) ok, (0,1) wrong, (1,0) ok, (1,1) ok, (1,2) wrong -> 3/5
    assert pixel_accuracy(pred, target, ignore_index=2).item() == pytest.approx(3 / 5)
    # with Void counted: the Void pixel is predicted 0 -> wrong -> 3/6
    assert pixel_accuracy(pred, target).item() == pytest.approx(3 / 6)


def test_pixel_accuracy_metric_is_pixel_weighted_over_batches():
    g = torch.Generator().manual_seed(0)
    preds = [torch.randn(n, 4, 5, 6, generator=g) for n in (3, 1)]
    targs = [torch.randint(0, 4, (n, 5, 6), generator=g) for n in (3, 1)]
    targs[1][:] = 3  # the second batch is all Void: it must weigh nothing
    m = PixelAccuracy(ignore_index=3)
    m.reset()
    for p, t in zip(preds, targs, strict=True):
        m.accumulate(SimpleNamespace(pred=p, yb=(t,)))
    p, t = np.concatenate([x.argmax(1).numpy() for x in preds]), torch.cat(targs).numpy()
    keep = t != 3
    assert m.value == pytest.approx((p[keep] == t[keep]).mean())
    assert m.name == "pixel_acc_no_void" and PixelAccuracy().name == "pixel_acc"
    m.reset()
    m.accumulate(SimpleNamespace(pred=preds[1], yb=(targs[1],)))
    assert np.isnan(m.value)
    with pytest.raises(ValueError, match="not"):
        pixel_accuracy(torch.randn(2, 3, 4, 4), torch.zeros(2, 5, 4, dtype=torch.long))


def test_pixel_cross_entropy_against_log_softmax_and_ignore():
    pred, targ = torch.randn(2, 5, 3, 4), torch.randint(0, 5, (2, 3, 4))
    logp = pred.log_softmax(1).gather(1, targ[:, None])[:, 0]
    torch.testing.assert_close(pixel_cross_entropy(pred, targ), -logp.mean())
    keep = targ != 4
    torch.testing.assert_close(pixel_cross_entropy(pred, targ, ignore_index=4),
                               -logp[keep].mean())
    torch.testing.assert_close(pixel_cross_entropy(pred, targ.to(torch.uint8)), -logp.mean())
    with pytest.raises(TypeError, match="integer"):
        pixel_cross_entropy(pred, targ.float())


def test_pixel_mse_and_shape_check():
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(pixel_mse(a, b), ((a - b) ** 2).mean())
    with pytest.raises(ValueError, match="shape"):
        pixel_mse(a, b[:, :1])


# -- CamVid tiny ------------------------------------------------------------------------------

@needs_camvid
def test_camvid_tiny_loads_with_masks_in_code_range():
    cv = load_camvid()
    assert len(cv) == 100 and cv.images.shape == (100, 3, 96, 128)
    assert cv.images.dtype == torch.uint8 and cv.masks.dtype == torch.int64
    assert cv.masks.shape == (100, 96, 128)
    assert len(cv.codes) == 32 and cv.codes[cv.void_code] == "Void" and cv.void_code == 30
    assert 0 <= int(cv.masks.min()) and int(cv.masks.max()) <= 31
    # reference: PIL reads of one pair
    root = find_camvid()
    name = cv.names[7]
    img = np.asarray(Image.open(root / "images" / f"{name}.png").convert("RGB"))
    mask = np.asarray(Image.open(root / "labels" / f"{name}_P.png"))
    assert np.array_equal(cv.images[7].permute(1, 2, 0).numpy(), img)
    assert np.array_equal(cv.masks[7].numpy(), mask)
    small = load_camvid(size=(48, 64))
    assert small.images.shape == (100, 3, 48, 64)
    assert set(small.masks.unique().tolist()) <= set(cv.masks.unique().tolist())  # nearest


def _fake_camvid(root, n=3, bad_value=None, drop_mask=None):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "codes.txt").write_text("Road\nSky\nVoid\n")
    for i in range(n):
        Image.fromarray(np.full((6, 8, 3), 40 * i, np.uint8)).save(root / "images" / f"f{i}.png")
        mask = np.full((6, 8), i % 3, np.uint8)
        if bad_value is not None and i == 1:
            mask[0, 0] = bad_value
        if drop_mask != i:
            Image.fromarray(mask).save(root / "labels" / f"f{i}_P.png")
    return root


def test_camvid_loader_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="camvid_tiny"):
        load_camvid(tmp_path / "nowhere")
    cv = load_camvid(_fake_camvid(tmp_path / "ok"))
    assert cv.codes == ["Road", "Sky", "Void"] and cv.void_code == 2
    assert cv.masks[:, 0, 0].tolist() == [0, 1, 2] and cv.names == ["f0", "f1", "f2"]
    with pytest.raises(FileNotFoundError, match="f1_P.png"):
        load_camvid(_fake_camvid(tmp_path / "nomask", drop_mask=1))
    with pytest.raises(ValueError, match="class 7"):
        load_camvid(_fake_camvid(tmp_path / "bad", bad_value=7))
    (tmp_path / "nolabels").mkdir()
    (tmp_path / "nolabels" / "codes.txt").write_text("a\n")
    (tmp_path / "nolabels" / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="labels"):
        load_camvid(tmp_path / "nolabels")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="no classes"):
        load_codes(tmp_path / "empty.txt")


def test_split_is_seeded_disjoint_and_a_fifth():
    tr, va = split_indices(100, 0.2, seed=0)
    tr2, va2 = split_indices(100, 0.2, seed=0)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert len(va) == 20 and sorted(torch.cat([tr, va]).tolist()) == list(range(100))
    assert not torch.equal(split_indices(100, 0.2, seed=1)[1], va)
    with pytest.raises(ValueError):
        split_indices(10, 1.5)


def test_split_never_leaves_a_side_empty():
    # round(2 * 0.8) = 2 used to put every item in the validation set
    for n, pct, n_valid in ((2, 0.8, 1), (2, 0.1, 1), (3, 0.9, 2), (10, 0.96, 9)):
        tr, va = split_indices(n, pct, seed=0)
        assert (len(tr), len(va)) == (n - n_valid, n_valid)
        assert sorted(torch.cat([tr, va]).tolist()) == list(range(n))


# -- data loaders and augmentation -------------------------------------------------------------

def test_flip_moves_image_and_mask_together():
    x = torch.randint(0, 256, (16, 3, 5, 7), dtype=torch.uint8)
    y = x[:, 0].long()  # the mask is the image's first channel: they must stay equal
    aug = SegmentAugment(None, flip=0.5, seed=3)
    xb, yb = aug(x, y)
    assert torch.equal((xb[:, 0] * 255).round().long(), yb)
    flipped = [not torch.equal(yb[i], y[i]) for i in range(16)]
    assert 0 < sum(flipped) < 16
    for i in range(16):
        assert torch.equal(yb[i], y[i].flip(-1) if flipped[i] else y[i])


def test_zoom_crop_keeps_image_and_mask_aligned():
    # blocks of constant class; the image encodes the class in its first channel
    y = torch.randint(0, 8, (8, 6, 8)).repeat_interleave(8, 1).repeat_interleave(8, 2)
    x = (y * 30).to(torch.uint8)[:, None].expand(-1, 3, -1, -1).contiguous()
    xb, yb = SegmentAugment(None, flip=0.5, scale=(0.3, 0.6), seed=0)(x, y)
    assert yb.dtype == y.dtype and yb.shape == y.shape
    got = (xb[:, 0] * 255 / 30).round().long()
    # wherever the mask's 3x3 neighbourhood is one class, the bilinear image must show that
    # class exactly (output pixels are >= 0.55 source pixels apart at this zoom, so a bilinear
    # tap from another class would make a neighbour's nearest tap differ too)
    yf = yb[:, None].float()
    interior = (F.max_pool2d(yf, 3, 1) == -F.max_pool2d(-yf, 3, 1))[:, 0]
    assert interior.float().mean() > 0.5
    assert torch.equal(got[:, 1:-1, 1:-1][interior], yb[:, 1:-1, 1:-1][interior])
    assert (got == yb).float().mean() > 0.8  # the rest differs only on class edges
    assert not torch.equal(yb, y)  # it did zoom
    assert set(yb.unique().tolist()) <= set(y.unique().tolist())


def test_segmentation_loaders_normalise_and_check_input():
    x = torch.randint(0, 256, (10, 3, 12, 16), dtype=torch.uint8)
    y = torch.randint(0, 3, (10, 12, 16))
    dls = SegmentationDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], ["a", "b", "Void"],
                                               bs=4, device="cpu")
    mean, std = dls.stats
    xb, yb = next(iter(dls.valid))  # no augmentation on the valid set
    ref = (x[8:].float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(
        std).view(1, 3, 1, 1)
    torch.testing.assert_close(xb, ref)
    assert torch.equal(yb, y[8:]) and dls.void_code == 2 and dls.n_out == 3
    dls.set_size((6, 8))  # progressive resizing: masks follow their images
    xs, ys = next(iter(dls.valid))
    assert xs.shape == (2, 3, 6, 8) and ys.shape == (2, 6, 8) and ys.dtype == torch.int64
    assert torch.equal(ys, y[8:, ::2, ::2])  # nearest at an exact factor of 2 picks these
    dls.set_size(None)
    assert next(iter(dls.valid))[1].shape == (2, 12, 16)
    with pytest.raises(TypeError, match="uint8"):
        SegmentationDataLoaders.from_tensors(x[:8].float(), y[:8], x[8:], y[8:], "abc")
    with pytest.raises(TypeError, match="integer"):
        SegmentationDataLoaders.from_tensors(x[:8], y[:8].float(), x[8:], y[8:], "abc")
    with pytest.raises(ValueError, match="outside"):
        SegmentationDataLoaders.from_tensors(x[:8], y[:8] + 5, x[8:], y[8:], "abc")
    with pytest.raises(ValueError, match="do not match"):
        SegmentationDataLoaders.from_tensors(x[:8], y[:7], x[8:], y[8:], "abc")


def test_segmentation_stats_must_give_one_value_per_channel():
    # ImageNet's 3 values broadcast over grey images: batches came out with 3 channels
    x = torch.randint(0, 256, (10, 1, 12, 16), dtype=torch.uint8)
    y = torch.randint(0, 3, (10, 12, 16))
    with pytest.raises(ValueError, match="3-channel"):
        SegmentationDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], "abc", bs=4,
                                             stats="imagenet", device="cpu")
    with pytest.raises(ValueError, match="1-channel"):
        SegmentationDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], "abc", bs=4,
                                             stats=((0.5,) * 3, (0.2,) * 3), device="cpu")
    dls = SegmentationDataLoaders.from_tensors(x[:8], y[:8], x[8:], y[8:], "abc", bs=4,
                                               device="cpu")
    arr = x[:8].numpy().astype(np.float64) / 255
    np.testing.assert_allclose(dls.stats[0], [arr.mean()], rtol=1e-9)
    np.testing.assert_allclose(dls.stats[1], [arr.std(ddof=1)], rtol=1e-9)
    assert next(iter(dls.train))[0].shape == (4, 1, 12, 16)


def test_segmentation_train_loader_drops_a_last_partial_batch():
    x = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    y = torch.randint(0, 3, (12, 8, 8))

    def sizes(dl):
        return [len(xb) for xb, _ in dl]

    dls = SegmentationDataLoaders.from_tensors(x[:9], y[:9], x[9:], y[9:], "abc", bs=4,
                                               device="cpu")
    assert sizes(dls.train) == [4, 4] and sizes(dls.valid) == [3]
    keep = SegmentationDataLoaders.from_tensors(x[:9], y[:9], x[9:], y[9:], "abc", bs=4,
                                                valid_bs=2, drop_last=False, shuffle=False,
                                                flip=0.0, device="cpu")
    assert sizes(keep.train) == [4, 4, 1] and sizes(keep.valid) == [2, 1]
    assert torch.equal(torch.cat([yb for _, yb in keep.train]), y[:9])  # in order
    few = SegmentationDataLoaders.from_tensors(x[:3], y[:3], x[9:], y[9:], "abc", bs=4,
                                               device="cpu")
    assert sizes(few.train) == [3]


# -- the learner ------------------------------------------------------------------------------

def test_unet_learner_groups_freeze_and_pretrained_file(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 3, (4, 32, 32))
    dls = SegmentationDataLoaders.from_tensors(x[:2], y[:2], x[2:], y[2:], ["a", "b", "c"],
                                               bs=2, stats="imagenet", device="cpu")
    learn = unet_learner(dls, "resnet18", pretrained=tmp_path / "r18.pth", quiet=True)
    *low_high, dec = learn.layer_groups()  # the encoder is fastai's two groups
    assert len(low_high) == 2
    enc = [p for g in low_high for p in g]
    assert len(enc) == len(list(learn.model.encoder.parameters())) and len(dec) > 0
    torch.testing.assert_close(learn.model.encoder[0].weight, ref.conv1.weight)
    bn_ids = {id(p) for m in learn.model.encoder.modules()
              if isinstance(m, (nn.BatchNorm2d, BatchNormReLU2d)) for p in m.parameters()}
    assert all(p.requires_grad == (id(p) in bn_ids) for p in enc)  # frozen but BN
    assert all(p.requires_grad for p in dec)
    learn.unfreeze()
    assert all(p.requires_grad for p in enc)
    assert any(isinstance(m, BatchNormReLU2d) for m in learn.model.modules())  # fused
    with pytest.raises(FileNotFoundError):
        unet_learner(dls, "resnet18", pretrained=tmp_path / "none.pth")


def test_unet_learner_image_to_image_with_pixel_mse():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 24, 32, generator=g)
    target = x.flip(-1)  # a learnable image-to-image map
    dls = DataLoaders.from_tensors(x[:6], target[:6], x[6:], target[6:], bs=3, device="cpu")
    learn = unet_learner(dls, _small_encoder(), n_out=3, cut=False, loss_func=pixel_mse,
                         y_range=(0.0, 1.0), fuse=False, quiet=True)
    assert learn.metrics == []
    out = learn.model(x[:2])
    assert out.shape == (2, 3, 24, 32) and 0 <= out.min() and out.max() <= 1
    before = learn.validate()[0]
    learn.fit_one_cycle(4, 1e-2)
    after = learn.validate()[0]
    assert after < before


@needs_camvid
def test_short_training_beats_the_majority_class():
    torch.manual_seed(0)
    cv = load_camvid(size=(48, 64))
    tr, va = split_indices(len(cv), 0.2, seed=0)
    tr, va = tr[:32], va[:8]
    dls = SegmentationDataLoaders.from_tensors(cv.images[tr], cv.masks[tr], cv.images[va],
                                               cv.masks[va], cv.codes, bs=8, device="cpu")
    learn = unet_learner(dls, _small_encoder(), cut=False, quiet=True)
    learn.fit_one_cycle(6, 1e-2)
    acc = learn.validate()[1]
    ytr, yva = cv.masks[tr], cv.masks[va]
    majority = torch.bincount(ytr[ytr != 30], minlength=32).argmax()
    baseline = (yva[yva != 30] == majority).float().mean().item()
    # reference accuracy from the model's own predictions, computed with numpy
    learn.model.eval()
    with torch.no_grad():
        xb, _ = dls.valid.loader.augment(cv.images[va], yva, train=False)
        pred = learn.model(xb).argmax(1).numpy()
    keep = yva.numpy() != 30
    assert acc == pytest.approx((pred[keep] == yva.numpy()[keep]).mean())
    assert acc > baseline + 0.1, (acc, baseline)


# -- the demo --------------------------------------------------------------------------------

@needs_camvid
def test_segment_demo_quick_writes_its_figures(tmp_path):
    from fastext.demos import load

    args = SimpleNamespace(data=None, epochs=None, quick=True, json=tmp_path / "r.json",
                           out=tmp_path / "out", bench_off=True)
    rec = load("segment")(args)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert {"pixel_acc_no_void", "majority_baseline", "seconds"} <= set(saved)
    assert saved["pixel_acc_no_void"] == pytest.approx(rec["pixel_acc_no_void"])
    assert 0 <= saved["pixel_acc_no_void"] <= 1
    png = tmp_path / "out" / "segment_predictions.png"
    assert png.is_file() and Image.open(png).size[0] > 100
