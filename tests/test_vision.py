"""Vision tasks: image data, bodies and heads, vision_learner, multi-label mosaics, Grad-CAM
and interpretation, each against a reference computation or a hand-built case."""

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.overrides import TorchFunctionMode

from fastext.data import DataError
from fastext.data.camvid import split_indices
from fastext.nn import BatchNormReLU2d
from fastext.tasks.vision.body import conv_body, create_body, load_pretrained, num_features
from fastext.tasks.vision.data import (
    BatchAugment,
    ImageDataLoaders,
    _resolve_stats,
    get_image_files,
    load_images,
    multi_hot,
)
from fastext.tasks.vision.interpret import (
    ClassificationInterpretation,
    bounding_boxes,
    grad_cam,
    mass_in_box,
    save_cam_overlays,
)
from fastext.tasks.vision.learner import AdaptiveConcatPool2d, create_head, vision_learner
from fastext.tasks.vision.multilabel import mnist_mosaics

torchvision = pytest.importorskip("torchvision")


def _folder(root, classes=("cat", "dog"), n=4, size=(10, 12)):
    for k, label in enumerate(classes):
        (root / label).mkdir(parents=True)
        for i in range(n):
            arr = np.full((*size, 3), 30 * i + 100 * k, np.uint8)
            Image.fromarray(arr).save(root / label / f"{i}.png")
    return root


# -- data ----------------------------------------------------------------------------------

def test_from_folder_split_labels_and_shapes(tmp_path):
    dls = ImageDataLoaders.from_folder(_folder(tmp_path), valid_pct=0.25, size=8, bs=3,
                                       device="cpu", seed=1)
    assert dls.vocab == ["cat", "dog"] and dls.n_out == 2 and not dls.multi_label
    assert len(dls.train_items) == 6 and len(dls.valid_items) == 2
    assert not set(dls.train_items) & set(dls.valid_items)
    x, y = dls.train.dataset
    assert x.shape == (6, 3, 8, 8) and x.dtype == torch.uint8
    for path, label in zip(dls.train_items, y.tolist(), strict=True):
        assert dls.vocab[label] == path.parent.name
    xb, yb = next(iter(dls.valid))
    assert xb.shape == (2, 3, 8, 8) and xb.dtype == torch.float32


def test_from_folder_train_valid_folders(tmp_path):
    _folder(tmp_path / "train")
    _folder(tmp_path / "valid", n=2)
    dls = ImageDataLoaders.from_folder(tmp_path, size=6, bs=2, device="cpu")
    assert len(dls.train_items) == 8 and len(dls.valid_items) == 4
    with pytest.raises(FileNotFoundError, match="valid_pct"):
        ImageDataLoaders.from_folder(tmp_path / "train", size=6)


def test_unreadable_files_are_skipped_with_a_warning(tmp_path):
    root = _folder(tmp_path)
    (root / "cat" / "broken.png").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image"):
        dls = ImageDataLoaders.from_folder(root, valid_pct=0.25, size=8, device="cpu")
    assert all(p.name != "broken.png" for p in dls.train_items + dls.valid_items)
    with pytest.raises(FileNotFoundError):
        ImageDataLoaders.from_folder(tmp_path / "missing", valid_pct=0.2)


def test_decode_resizes_the_shorter_side_and_centre_crops(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 10:30] = 255  # a bright centre band, half the width
    Image.fromarray(arr).save(tmp_path / "a.png")
    x, kept = load_images([tmp_path / "a.png"], size=10)
    assert kept == [0] and x.shape == (1, 3, 10, 10)
    assert x[0, :, :, 1:-1].min() > 200  # the crop is the band (its edges blur a little)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_load_images_channels(tmp_path, channels):
    """Grey, RGB and RGBA files decode to the asked channel count (PIL's conversions)."""
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 90  # red, partly transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgba[..., 0], "L").save(tmp_path / "b.png")
    x, kept = load_images([tmp_path / "a.png", tmp_path / "b.png"], size=6, channels=channels)
    assert kept == [0, 1] and x.shape == (2, channels, 6, 6)
    want = {1: Image.open(tmp_path / "a.png").convert("L"), 3: Image.fromarray(rgba[..., :3]),
            4: Image.fromarray(rgba, "RGBA")}[channels]
    assert torch.equal(x[0], torch.from_numpy(np.array(want)).reshape(6, 6, -1).permute(2, 0, 1))
    if channels == 4:
        assert (x[0, 3] == 90).all() and (x[1, 3] == 255).all()  # grey files are opaque


@pytest.mark.parametrize("channels", [0, 2, 5])
def test_load_images_refuses_other_channel_counts(tmp_path, channels):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="channels must be one of"):
        load_images([tmp_path / "a.png"], size=4, channels=channels)


def test_multi_label_from_label_func(tmp_path):
    root = _folder(tmp_path)

    def labels(p):
        return ["animal", p.parent.name] if p.stem != "0" else [p.parent.name]

    dls = ImageDataLoaders.from_label_func(sorted(root.glob("*/*.png")), labels, 0.25, size=8,
                                           device="cpu")
    assert dls.multi_label and dls.vocab == ["animal", "cat", "dog"]
    x, y = dls.train.dataset
    for path, row in zip(dls.train_items, y, strict=True):
        assert row.tolist() == multi_hot([labels(path)], dls.vocab)[0].tolist()


def test_data_stats_and_normalisation_match_numpy():
    x = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8)
    dls = ImageDataLoaders.from_tensors(x, torch.zeros(6, dtype=torch.long), x,
                                        torch.zeros(6, dtype=torch.long), ["a"], bs=6,
                                        device="cpu")
    arr = x.numpy().astype(np.float64) / 255
    mean, std = arr.mean((0, 2, 3)), arr.std((0, 2, 3), ddof=1)
    np.testing.assert_allclose(dls.stats[0], mean, rtol=1e-5)
    np.testing.assert_allclose(dls.stats[1], std, rtol=1e-5)
    xb, _ = next(iter(dls.valid))
    ref = (arr - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(xb.numpy(), ref, rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="uint8"):
        ImageDataLoaders.from_tensors(x.float(), torch.zeros(6), x, torch.zeros(6), ["a"])


def test_augment_flip_is_an_exact_mirror_and_crop_stays_in_range():
    x = torch.randint(0, 256, (4, 1, 6, 6), dtype=torch.uint8)
    flip = BatchAugment(flip=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(flip(x), x.float().div(255).flip(-1))
    crop = BatchAugment(scale=(0.3, 0.6))(x)
    assert crop.shape == x.shape and crop.min() >= 0 and crop.max() <= 1
    assert not torch.allclose(crop, x.float() / 255)


def test_set_size_resizes_batches():
    x = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8)
    y = torch.zeros(4, dtype=torch.long)
    dls = ImageDataLoaders.from_tensors(x, y, x, y, ["a"], bs=2, device="cpu")
    dls.set_size(8)
    assert next(iter(dls.train))[0].shape[-1] == 8
    dls.set_size(None)
    assert next(iter(dls.train))[0].shape[-1] == 16


def _batch_sizes(dl):
    return [len(xb) for xb, _ in dl]


def test_training_loader_drops_a_last_partial_batch():
    # 9 training images at bs=4 used to give batches 4, 4, 1, and the batch of one broke the
    # head's BatchNorm1d mid-epoch; fastai drops it (only when there are more images than bs)
    x = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    y = torch.randint(0, 2, (12,))
    dls = ImageDataLoaders.from_tensors(x[:9], y[:9], x[9:], y[9:], ["a", "b"], bs=4,
                                        device="cpu")
    assert _batch_sizes(dls.train) == [4, 4] and len(dls.train) == 2
    assert _batch_sizes(dls.valid) == [3]  # validation never drops
    learn = vision_learner(dls, conv_body(3, (8, 16), (2, 2)), cut=False, quiet=True)
    learn.fit(1, 1e-3)  # raised "Expected more than 1 value per channel" before
    few = ImageDataLoaders.from_tensors(x[:3], y[:3], x[9:], y[9:], ["a", "b"], bs=4,
                                        device="cpu")
    assert _batch_sizes(few.train) == [3]  # fewer images than bs: the one batch stays
    keep = ImageDataLoaders.from_tensors(x[:9], y[:9], x[9:], y[9:], ["a", "b"], bs=4,
                                         drop_last=False, device="cpu")
    assert _batch_sizes(keep.train) == [4, 4, 1]


def test_from_tensors_honours_its_loader_arguments_and_rejects_unknown_ones(tmp_path):
    x = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(20) % 2
    dls = ImageDataLoaders.from_tensors(x[:17], y[:17], x[17:], y[17:], ["a", "b"], bs=4,
                                        valid_bs=1, drop_last=False, shuffle=False,
                                        augment=False, stats=((0.0,), (1.0,)), device="cpu")
    assert _batch_sizes(dls.train) == [4, 4, 4, 4, 1] and _batch_sizes(dls.valid) == [1] * 3
    order = torch.cat([xb for xb, _ in dls.train])  # not shuffled: the images in order
    torch.testing.assert_close(order, x[:17].float() / 255)
    with pytest.raises(TypeError, match="batch_size"):
        ImageDataLoaders.from_tensors(x[:17], y[:17], x[17:], y[17:], ["a", "b"],
                                      batch_size=2, device="cpu")
    with pytest.raises(TypeError, match="batch_size"):  # through from_folder's kwargs too
        ImageDataLoaders.from_folder(_folder(tmp_path), valid_pct=0.25, size=8,
                                     batch_size=2, device="cpu")


def test_from_label_func_takes_bool_labels_as_classes(tmp_path):
    # fastbook lesson 1: is_cat returns a bool; the vocabulary is [False, True] as in fastai
    for name in ("Abyssinian_1", "Bengal_2", "Siamese_3", "beagle_1", "pug_2", "boxer_3"):
        Image.fromarray(np.full((10, 12, 3), 40, np.uint8)).save(tmp_path / f"{name}.jpg")

    def is_cat(path):
        return path.name[0].isupper()

    dls = ImageDataLoaders.from_label_func(get_image_files(tmp_path), is_cat, valid_pct=0.3,
                                           size=8, bs=2, device="cpu")
    assert dls.vocab == [False, True] and not dls.multi_label and dls.n_out == 2
    _, y = dls.train.dataset
    assert y.dtype == torch.int64
    for path, label in zip(dls.train_items, y.tolist(), strict=True):
        assert dls.vocab[label] == is_cat(path)
    ints = ImageDataLoaders.from_label_func(get_image_files(tmp_path),
                                            lambda p: int(p.stem[-1]), valid_pct=0.3,
                                            size=8, device="cpu")
    assert ints.vocab == [1, 2, 3] and not ints.multi_label


def test_split_never_leaves_the_training_set_empty(tmp_path):
    # two images and valid_pct=0.8 rounded to 2 validation images: no training image, NaN stats
    root = _folder(tmp_path, n=1)
    dls = ImageDataLoaders.from_folder(root, valid_pct=0.8, size=8, bs=2, device="cpu")
    assert len(dls.train_items) == 1 and len(dls.valid_items) == 1
    assert not any(np.isnan(dls.stats[0])) and len(dls.train) == 1
    # the split is split_indices' (one helper for images, CamVid and image pairs)
    files = get_image_files(root)
    tr, va = split_indices(2, 0.8, seed=0)
    assert dls.train_items == [files[i] for i in tr.tolist()]
    assert dls.valid_items == [files[i] for i in va.tolist()]


def test_stats_must_give_one_value_per_channel():
    grey = torch.randint(0, 256, (6, 1, 8, 8), dtype=torch.uint8)
    y = torch.zeros(6, dtype=torch.long)
    rgb_stats = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with pytest.raises(ValueError, match="1-channel"):  # broadcast to 3 channels before
        ImageDataLoaders.from_tensors(grey, y, grey, y, ["a"], stats=rgb_stats, device="cpu")
    with pytest.raises(ValueError, match="3-channel"):
        ImageDataLoaders.from_tensors(grey, y, grey, y, ["a"], stats="imagenet", device="cpu")
    with pytest.raises(ValueError, match="1-channel"):
        _resolve_stats(((0.5,), (0.5, 0.5)), grey)
    dls = ImageDataLoaders.from_tensors(grey, y, grey, y, ["a"], stats=((0.5,), (0.25,)),
                                        bs=6, device="cpu")
    xb, _ = next(iter(dls.valid))
    assert xb.shape == (6, 1, 8, 8)
    torch.testing.assert_close(xb, (grey.float() / 255 - 0.5) / 0.25)


class _LargestFloat(TorchFunctionMode):
    """Records the most elements of any floating-point tensor a torch call returns."""

    def __init__(self):
        super().__init__()
        self.most = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                self.most = max(self.most, t.numel())
        return out


def test_data_stats_are_accumulated_in_chunks():
    # stats="data" made a float32 copy of the whole training set (8x the uint8 images);
    # chunks keep every float temporary a slice of it, with float64 sums
    x = torch.randint(0, 256, (512, 3, 48, 48), dtype=torch.uint8)
    x[:256, 1] = 250  # channel means that differ, a bimodal channel
    with _LargestFloat() as mode:
        mean, std = _resolve_stats("data", x)
    assert 0 < mode.most <= x.numel() // 3
    arr = x.numpy().astype(np.float64) / 255
    np.testing.assert_allclose(mean, arr.mean((0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, arr.std((0, 2, 3), ddof=1), rtol=1e-9)
    with pytest.raises(ValueError, match="0 training image"):
        _resolve_stats("data", x[:0])


# -- bodies and heads ------------------------------------------------------------------------

@pytest.mark.parametrize(("arch", "nf"), [("resnet18", 512), ("resnet50", 2048),
                                          ("vgg16_bn", 512), ("densenet121", 1024)])
def test_bodies_are_cut_before_pooling(arch, nf):
    body = create_body(arch)
    out = body.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape[1] == nf == num_features(body) and out.shape[-1] == 2
    assert not any(isinstance(m, (nn.AdaptiveAvgPool2d, nn.Linear)) for m in body.modules())


def test_pretrained_weights_from_a_local_file(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    body = create_body("resnet18", pretrained=tmp_path / "r18.pth")
    torch.testing.assert_close(body[0].weight, ref.conv1.weight)
    grey = create_body("resnet18", pretrained=tmp_path / "r18.pth", in_channels=1)
    torch.testing.assert_close(grey[0].weight, ref.conv1.weight.sum(1, keepdim=True))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        create_body("resnet18", pretrained=tmp_path / "missing.pth")
    with pytest.raises(RuntimeError):  # weights of another architecture
        load_pretrained(torchvision.models.resnet34(weights=None), tmp_path / "r18.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="garbage.pth: not a file torch.load reads") as e:
        create_body("resnet18", pretrained=tmp_path / "garbage.pth")  # one line, not torch's
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown architecture"):
        create_body("resnet19")


class _NestedStem(nn.Module):
    """Torchvision-style: the stem conv nested in a block, then a direct strided conv."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(self.pool(self.down(self.stem(x))).flatten(1))


def test_create_body_adapts_the_first_conv_in_definition_order():
    # the direct child `down` used to be taken for the first conv (and rebuilt with 3 inputs)
    torch.manual_seed(0)
    net = _NestedStem()
    stem_w, down_w = net.stem[0].weight.detach().clone(), net.down.weight.detach().clone()
    body = create_body(net)
    assert body[1] is net.down and body[1].in_channels == 16
    assert body.eval()(torch.randn(2, 3, 16, 16)).shape == (2, 32, 8, 8)
    assert num_features(body) == 32
    grey = create_body(_NestedStem(), in_channels=1)
    assert grey[0][0].in_channels == 1 and grey[1].in_channels == 16
    net = _NestedStem()
    net.stem[0].weight.data.copy_(stem_w)
    net.down.weight.data.copy_(down_w)
    grey = create_body(net, in_channels=1)
    torch.testing.assert_close(grey[0][0].weight, stem_w.sum(1, keepdim=True))
    torch.testing.assert_close(grey[1].weight, down_w)
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    dls = ImageDataLoaders.from_tensors(x[:6], torch.arange(6) % 2, x[6:], torch.arange(2),
                                        ["a", "b"], bs=3, device="cpu")
    learn = vision_learner(dls, _NestedStem(), quiet=True)
    assert learn.model(torch.randn(2, 3, 16, 16)).shape == (2, 2)


def test_concat_pool_and_head():
    x = torch.randn(2, 5, 3, 4)
    ref = torch.cat([x.amax((2, 3), keepdim=True), x.mean((2, 3), keepdim=True)], 1)
    torch.testing.assert_close(AdaptiveConcatPool2d()(x), ref)
    head = create_head(5, 7, lin_ftrs=(16,), ps=0.4)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["AdaptiveConcatPool2d", "Flatten", "BatchNorm1d", "Dropout", "Linear",
                     "ReLU", "BatchNorm1d", "Dropout", "Linear"]
    assert head[3].p == 0.2 and head[7].p == 0.4 and head[4].in_features == 10
    assert head.eval()(x).shape == (2, 7)


def _tiny_dls(multi=False, n=16):
    x = torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8)
    y = (torch.rand(n, 3) > 0.5).float() if multi else torch.randint(0, 3, (n,))
    return ImageDataLoaders.from_tensors(x[:12], y[:12], x[12:], y[12:], ["a", "b", "c"],
                                         bs=4, device="cpu")


def test_vision_learner_pretrained_body_starts_frozen(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "w.pth")
    learn = vision_learner(_tiny_dls(), "resnet18", pretrained=tmp_path / "w.pth",
                           in_channels=1, quiet=True)
    bn = {id(p) for m in learn.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
          for p in m.parameters()}
    body = list(learn.model.body.parameters())
    assert all(not p.requires_grad for p in body if id(p) not in bn)
    assert all(p.requires_grad for p in learn.model.head.parameters())
    assert any(isinstance(m, BatchNormReLU2d) for m in learn.model.body.modules())  # fused
    learn.fit(1, 1e-3)
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


def test_vision_learner_multi_label_defaults():
    learn = vision_learner(_tiny_dls(multi=True), "resnet18", in_channels=1, quiet=True)
    pred, targ = torch.randn(4, 3), (torch.rand(4, 3) > 0.5).float()
    torch.testing.assert_close(learn.loss_func(pred, targ),
                               F.binary_cross_entropy_with_logits(pred, targ))
    learn.fit(1, 1e-3)
    names = [m.name for m in learn.metrics]
    assert names == ["accuracy_multi", "f1_macro"]


# -- multi-label mosaics -----------------------------------------------------------------

def test_mosaic_labels_are_the_digits_placed():
    digits = torch.arange(10)
    images = (digits * 20 + 10).view(10, 1, 1).expand(10, 28, 28).to(torch.uint8).contiguous()
    x, y = mnist_mosaics(images, digits, n=200, seed=3)
    for img, lab in zip(x, y, strict=True):
        cells = [img[0, 28 * r:28 * r + 28, 28 * c:28 * c + 28] for r in (0, 1) for c in (0, 1)]
        found = {int(cell[0, 0] - 10) // 20 for cell in cells if cell.max() > 0}
        assert all(bool((cell == cell[0, 0]).all()) for cell in cells)
        assert set(lab.nonzero().squeeze(1).tolist()) == found
        assert 1 <= len(found) <= 4
    x2, y2 = mnist_mosaics(images, digits, n=200, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    counts = (x.view(200, 2, 28, 2, 28).amax((2, 4)) > 0).sum((1, 2))  # cells in use
    assert set(counts.tolist()) == {1, 2, 3, 4}


# -- Grad-CAM and interpretation -----------------------------------------------------------

def test_grad_cam_matches_its_formula():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 4, 3, padding=1)
    lin = nn.Linear(4, 3)
    model = nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), lin).train()
    x = torch.randn(2, 1, 6, 6)
    target = torch.tensor([2, 0])
    cam = grad_cam(model, model[1], x, target)
    a = torch.relu(conv(x)).detach()  # at the ReLU; score = lin(mean(a)): dS/dA = w / (H*W)
    w = lin.weight.detach()[target] / 36
    ref = torch.relu((w.view(2, 4, 1, 1) * a).sum(1))
    ref = ref / ref.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    torch.testing.assert_close(cam, ref)
    assert model.training and all(p.grad is None for p in model.parameters())


def test_grad_cam_target_one_class_for_all_or_one_per_image():
    """One class broadcasts to every image (only the first image was scored, the others
    left blank); a target of another length is refused."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    x = torch.randn(4, 1, 6, 6)
    each = grad_cam(model, model[1], x, torch.tensor([2, 2, 2, 2]))
    assert each.flatten(1).amax(1).gt(0).all()
    for one in (torch.tensor(2), torch.tensor([2]), 2):
        torch.testing.assert_close(grad_cam(model, model[1], x, one), each)
    with pytest.raises(ValueError, match="one class or one per image"):
        grad_cam(model, model[1], x, torch.tensor([2, 2]))


def test_grad_cam_of_a_frozen_model_matches_the_trainable_one():
    # with every parameter frozen the hooked activation had no graph: retain_grad raised
    torch.manual_seed(0)
    body = conv_body(1, (4, 8), (2, 1))
    model = nn.Sequential(body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    x = torch.randn(3, 1, 10, 10)
    ref = grad_cam(model, body[-1], x)
    model.requires_grad_(False)
    cam = grad_cam(model, body[0], x)  # the first block: nothing before it requires grad
    assert cam.shape == (3, 10, 10)
    torch.testing.assert_close(grad_cam(model, body[-1], x), ref)
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters()) and not x.requires_grad


def test_interpretation_of_an_fp16_learner():
    # the fp16 model (half weights) was called on the loader's float32 batches
    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 1, 16, 16), dtype=torch.uint8)
    y = torch.randint(0, 2, (16,))
    dls = ImageDataLoaders.from_tensors(x[:12], y[:12], x[12:], y[12:], ["a", "b"], bs=4,
                                        device="cpu")
    learn = vision_learner(dls, conv_body(1, (8, 16), (2, 2)), cut=False, precision="fp16",
                           quiet=True)
    learn.model.train()
    interp = ClassificationInterpretation.from_learner(learn)
    assert learn.model.training  # restored
    xb, yb = next(iter(dls.valid))
    learn.model.eval()
    with torch.no_grad():
        ref = learn.model(xb.half()).float()
    torch.testing.assert_close(interp.inputs, xb)
    torch.testing.assert_close(interp.preds, ref)
    assert interp.preds.dtype == torch.float32 and torch.equal(interp.targets, yb)
    torch.testing.assert_close(interp.losses, F.cross_entropy(ref, yb, reduction="none"))


def test_mass_in_box():
    cam = torch.zeros(1, 4, 4)
    cam[0, 0, 0], cam[0, 2, 2] = 1.0, 3.0
    img = torch.zeros(1, 4, 4)
    img[0, 1:3, 1:3] = 1
    assert mass_in_box(cam, img).item() == pytest.approx(0.75)


def test_mass_in_box_of_an_even_map_is_the_box_share():
    img = torch.zeros(3, 2, 10, 8)
    img[0, 1, 2:5, 3:7] = 0.5  # box 3 x 4 on the second channel
    img[1, 0, 0, 0] = img[1, 0, 9, 7] = 1.0  # box = the whole image
    even = torch.ones(3, 10, 8)
    assert bounding_boxes(img) == [(2, 4, 3, 6), (0, 9, 0, 7), None]
    torch.testing.assert_close(mass_in_box(even, img), torch.tensor([12 / 80, 1.0, 0.0]))
    assert mass_in_box(torch.zeros(3, 10, 8), img).tolist() == [0.0, 0.0, 0.0]
    assert mass_in_box(even, img, thresh=0.6)[0].item() == 0.0  # threshold above the ink


def test_grad_cam_upsamples_a_strided_map_bilinearly():
    torch.manual_seed(1)
    body = conv_body(1, (3, 4), (2, 1), norm=False)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    model = nn.Sequential(body, head)
    x = torch.randn(2, 1, 9, 9)
    cam = grad_cam(model, body[-1], x)
    a = body(x).detach().requires_grad_()  # (2, 4, 5, 5)
    logits = head(a)
    logits.gather(1, logits.argmax(1, keepdim=True)).sum().backward()
    ref = torch.relu((a.grad.mean((2, 3), keepdim=True) * a.detach()).sum(1, keepdim=True))
    ref = F.interpolate(ref, size=(9, 9), mode="bilinear", align_corners=False)[:, 0]
    ref = ref / ref.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    assert cam.shape == (2, 9, 9)
    torch.testing.assert_close(cam, ref)


def test_grad_cam_of_a_norm_free_body_stays_near_the_ink():
    # conv_body(norm=False) has no BatchNorm and no biases: a blank region is zero in every
    # block, so the heat map is zero beyond the receptive field of the ink (2 blocks: 2 px)
    torch.manual_seed(0)
    body = conv_body(1, (4, 8), (1, 1), norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    assert all(m.bias is None for m in body.modules() if isinstance(m, nn.Conv2d))
    model = nn.Sequential(body, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    x = torch.zeros(4, 1, 16, 16)
    x[:, 0, 6:9, 7:10] = torch.rand(4, 3, 3) + 0.5
    cam = grad_cam(model, body[-1], x)
    far = torch.ones(16, 16, dtype=torch.bool)
    far[4:11, 5:12] = False
    assert cam[:, far].abs().max().item() == 0.0
    assert mass_in_box(cam, x).min().item() >= 0.0


def test_cam_overlays_with_boxes_write_a_png(tmp_path):
    img = torch.zeros(3, 1, 12, 12, dtype=torch.uint8)
    img[:, 0, 3:8, 4:9] = 200
    png = save_cam_overlays(img, torch.rand(3, 12, 12), tmp_path / "cam.png",
                            ["a", "b", "c"], bounding_boxes(img))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_interpretation_matches_sklearn(tmp_path):
    from sklearn.metrics import confusion_matrix

    torch.manual_seed(0)
    preds, targets = torch.randn(50, 3), torch.randint(0, 3, (50,))
    interp = ClassificationInterpretation(torch.rand(50, 1, 8, 8), preds, targets,
                                          F.cross_entropy(preds, targets, reduction="none"),
                                          ["a", "b", "c"])
    ref = confusion_matrix(targets.numpy(), preds.argmax(1).numpy(), labels=[0, 1, 2])
    assert interp.confusion_matrix().tolist() == ref.tolist()
    confused = interp.most_confused()
    assert [c for _, _, c in confused] == sorted((c for _, _, c in confused), reverse=True)
    assert sum(c for _, _, c in confused) == ref.sum() - np.trace(ref)
    losses, idx = interp.top_losses(5)
    assert losses.tolist() == sorted(interp.losses.tolist(), reverse=True)[:5]
    for png in (interp.plot_top_losses(4, tmp_path / "top.png"),
                interp.plot_confusion_matrix(tmp_path / "cm.png")):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- demos (quick) ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "keys"), [
    ("multilabel", {"accuracy_multi", "f1_macro"}),
    ("gradcam", {"mass_in_box", "pngs"}),
    ("progressive", {"acc_progressive", "acc_fixed", "s_progressive", "s_fixed"}),
    ("transfer", {"finetuned_acc", "scratch_acc"}),
])
def test_demo_quick_run_writes_its_figures(tmp_path, name, keys):
    from fastext.demos import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = SimpleNamespace(data=None, epochs=None, quick=True, json=tmp_path / "r.json",
                               out=tmp_path, bench_off=True)
        load(name)(args)
    record = json.loads((tmp_path / "r.json").read_text())
    assert keys <= set(record)
    for k in keys - {"pngs"}:
        assert 0 <= record[k] and (k.startswith("s_") or record[k] <= 1)
