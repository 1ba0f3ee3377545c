"""Gaps of the vision task against the course (fastai): fastai's three layer groups of a
torchvision body, get_preds / predict / export / TTA, interpretation of any single-label
classifier learner, Grad-CAM overlays in colour. Each test compares with a reference: fastai's
split written by torchvision's parameter names, the model run by hand on the validation
batches, sklearn's confusion matrix."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from fastext.learner import Callback, DataLoaders, Learner
from fastext.tasks.vision.body import conv_body
from fastext.tasks.vision.data import ImageDataLoaders, load_images
from fastext.tasks.vision.learner import vision_learner
from fastext.tasks.vision.unet import SegmentationDataLoaders, unet_learner

torchvision = pytest.importorskip("torchvision")


def _tiny_dls(n=12, channels=3, size=32, multi=False, **kw):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    y = ((torch.rand(n, 3, generator=g) < 0.5).float() if multi
         else torch.randint(0, 3, (n,), generator=g))
    k = n * 2 // 3
    return ImageDataLoaders.from_tensors(x[:k], y[:k], x[k:], y[k:], ["a", "b", "c"], bs=4,
                                         device="cpu", **kw)


def _ids(params):
    return {id(p) for p in params}


def _named_groups(model, prefixes_low, prefixes_high):
    """fastai's low / high groups of a torchvision model, by parameter name."""
    low = [p for n, p in model.named_parameters() if n.startswith(tuple(prefixes_low))]
    high = [p for n, p in model.named_parameters() if n.startswith(tuple(prefixes_high))]
    return _ids(low), _ids(high)


# -- 1. layer groups -------------------------------------------------------------------------

def test_resnet_learner_has_fastais_three_groups_and_slice_rates():
    tv = torchvision.models.resnet34(weights=None)
    learn = vision_learner(_tiny_dls(), tv, quiet=True)  # the body shares tv's parameters
    low, high = _named_groups(tv, ["conv1.", "bn1.", "layer1.", "layer2."],
                              ["layer3.", "layer4."])
    groups = learn.layer_groups()
    assert [_ids(g) for g in groups] == [low, high, _ids(learn.model.head.parameters())]
    lrs = learn.lr_range(slice(1e-5, 1e-3))
    np.testing.assert_allclose(lrs, [1e-5, 1e-4, 1e-3], rtol=1e-12)  # fastai's even_mults
    learn.set_hypers(lr=lrs)
    lr_of = {id(p): g["lr"] for g in learn.opt.param_groups for p in g["params"]}
    for name, p in tv.named_parameters():
        if name.startswith("fc."):  # cut off with the pooling
            continue
        want = 1e-4 if name.startswith(("layer3", "layer4")) else 1e-5
        assert lr_of[id(p)] == pytest.approx(want), name


class _Lrs(Callback):
    order = 60  # after the ParamScheduler has set the batch's rates

    def before_fit(self):
        self.rows = []

    def before_batch(self):
        if self.learn.training:
            by_group = {g["layer_group"]: g["lr"] for g in self.learn.opt.param_groups}
            self.rows.append([by_group[i] for i in sorted(by_group)])


def test_fit_one_cycle_slice_spreads_the_rates_over_three_groups():
    learn = vision_learner(_tiny_dls(), "resnet18", quiet=True)
    rec = _Lrs()
    learn.fit_one_cycle(1, slice(1e-5, 1e-3), cbs=[rec])
    rows = np.array(rec.rows)
    assert rows.shape[1] == 3
    np.testing.assert_allclose(rows[:, 1] / rows[:, 0], 10, rtol=1e-9)
    np.testing.assert_allclose(rows[:, 2] / rows[:, 1], 10, rtol=1e-9)


def test_freeze_and_freeze_to_follow_fastai(tmp_path):
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp_path / "w.pth")
    learn = vision_learner(_tiny_dls(stats="imagenet"), "resnet18",
                           pretrained=tmp_path / "w.pth", quiet=True)
    bn = {id(p) for m in learn.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
          for p in m.parameters()}

    def trainable(group):  # all params trainable / only the BatchNorm ones (train_bn)
        return all(p.requires_grad for p in group)

    def frozen(group):
        return all(p.requires_grad == (id(p) in bn) for p in group)

    low, high, head = learn.layer_groups()
    assert frozen(low) and frozen(high) and trainable(head)  # freeze(): the head only
    learn.freeze_to(1)
    assert frozen(low) and trainable(high) and trainable(head)
    learn.freeze_to(-2)  # negative counts from the end, as fastai
    assert frozen(low) and trainable(high) and trainable(head)
    learn.unfreeze()
    assert trainable(low) and trainable(high)


@pytest.mark.parametrize(("build", "low", "high"), [
    (lambda: torchvision.models.densenet121(weights=None),
     ["features.conv0", "features.norm0", "features.denseblock1.", "features.transition1.",
      "features.denseblock2."],
     ["features.transition2.", "features.denseblock3.", "features.transition3.",
      "features.denseblock4.", "features.norm5."]),
    (lambda: torchvision.models.squeezenet1_1(weights=None),
     [f"features.{i}." for i in range(5)], [f"features.{i}." for i in range(5, 13)]),
    (lambda: torchvision.models.alexnet(weights=None),
     [f"features.{i}." for i in range(6)], [f"features.{i}." for i in range(6, 13)]),
])
def test_other_torchvision_bodies_split_as_fastai(build, low, high):
    tv = build()
    learn = vision_learner(_tiny_dls(), tv, quiet=True)  # cut: the body shares tv's params
    ref_low, ref_high = _named_groups(tv, low, high)
    assert [_ids(g) for g in learn.layer_groups()] == [
        ref_low, ref_high, _ids(learn.model.head.parameters())]


@pytest.mark.parametrize("cfg", ["A", "D"])
def test_vgg_features_split_at_22_as_fastai(cfg):
    from torchvision.models.vgg import cfgs, make_layers

    feats = make_layers(cfgs[cfg], batch_norm=True)  # a VGG's features, its fastai body
    learn = vision_learner(_tiny_dls(), feats, cut=False, quiet=True)
    groups = learn.layer_groups()
    ref_low = _ids(p for n, p in feats.named_parameters() if int(n.split(".")[0]) < 22)
    assert len(groups) == 3 and _ids(groups[0]) == ref_low
    assert _ids(groups[1]) == _ids(feats.parameters()) - ref_low


def test_a_custom_body_keeps_fastais_default_split():
    learn = vision_learner(_tiny_dls(), conv_body(3, (8, 16), (2, 2)), cut=False, quiet=True)
    assert [_ids(g) for g in learn.layer_groups()] == [_ids(learn.model.body.parameters()),
                                                        _ids(learn.model.head.parameters())]


def test_unet_groups_split_the_resnet_encoder_as_fastai():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    m = torch.randint(0, 3, (4, 32, 32))
    dls = SegmentationDataLoaders.from_tensors(x[:2], m[:2], x[2:], m[2:], list("abc"), bs=2,
                                               device="cpu")
    learn = unet_learner(dls, "resnet34", quiet=True)
    enc = learn.model.encoder
    groups = learn.layer_groups()
    assert [_ids(g) for g in groups] == [_ids(enc[:6].parameters()), _ids(enc[6:].parameters()),
                                         _ids(learn.model.decoder.parameters())]
    np.testing.assert_allclose(learn.lr_range(slice(1e-3 / 400, 1e-3 / 4)),
                               [2.5e-6, 2.5e-5, 2.5e-4])


# -- 2. get_preds ----------------------------------------------------------------------------

def _mlp_learner(loss, n_out=3, targets=None, **kw):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 4, generator=g)
    y = torch.randint(0, n_out, (20,), generator=g) if targets is None else targets
    dls = DataLoaders.from_tensors(x[:12], y[:12], x[12:], y[12:], bs=4, device="cpu")
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5),
                          nn.Linear(8, n_out))
    return Learner(dls, model, loss, quiet=True, **kw), x[12:], y[12:]


def _by_hand(model, x):
    model = model.eval()
    with torch.no_grad():
        return model(x)


def test_get_preds_softmax_for_cross_entropy_with_inputs_and_decoded():
    from fastext.learner.predict import get_preds

    learn, x, y = _mlp_learner(F.cross_entropy)
    learn.model.train()
    learn.model[1].eval()  # a frozen submodule keeps its own flag
    inp, preds, targs, dec = get_preds(learn, with_input=True, with_decoded=True)
    assert [m.training for m in learn.model] == [True, False, True, True]
    torch.testing.assert_close(inp, x)
    torch.testing.assert_close(preds, _by_hand(learn.model, x).softmax(1))
    assert torch.equal(targs, y) and torch.equal(dec, preds.argmax(1))


def test_get_preds_sigmoid_for_bce_identity_for_mse_and_no_targets():
    from fastext.learner.predict import get_preds

    t = (torch.rand(20, 3, generator=torch.Generator().manual_seed(1)) < 0.5).float()
    learn, x, y = _mlp_learner(nn.BCEWithLogitsLoss(), targets=t)
    preds, targs, dec = get_preds(learn, with_decoded=True)
    torch.testing.assert_close(preds, _by_hand(learn.model, x).sigmoid())
    assert torch.equal(targs, y) and torch.equal(dec, preds > 0.5)
    learn, x, _ = _mlp_learner(F.mse_loss, targets=torch.randn(20, 3))
    preds, _ = get_preds(learn)
    torch.testing.assert_close(preds, _by_hand(learn.model, x))
    preds, targs = get_preds(learn, dl=[(x[:5],), (x[5:],)])  # inputs only: no targets
    assert targs is None
    torch.testing.assert_close(preds, _by_hand(learn.model, x))


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.lin = nn.Embedding(5, 3), nn.Linear(2, 3)

    def forward(self, cat, cont):
        return self.emb(cat) + self.lin(cont)


def _two_input_learner():
    """A learner whose batches hold two inputs (categories, continuous) and a target."""
    g = torch.Generator().manual_seed(0)
    cat, cont = torch.randint(0, 5, (10,), generator=g), torch.randn(10, 2, generator=g)
    y = torch.randint(0, 3, (10,), generator=g)
    batches = [(cat[:6], cont[:6], y[:6]), (cat[6:], cont[6:], y[6:])]
    learn = Learner(DataLoaders(batches, batches, "cpu"), _TwoInputs(), F.cross_entropy,
                    quiet=True)
    return learn, (cat, cont, y)


def test_get_preds_splits_several_inputs_as_the_learner():
    from fastext.learner.predict import get_preds

    learn, (cat, cont, y) = _two_input_learner()
    (c, x), preds, targs = get_preds(learn, with_input=True)
    assert torch.equal(c, cat) and torch.equal(x, cont) and torch.equal(targs, y)
    with torch.no_grad():
        torch.testing.assert_close(preds, learn.model(cat, cont).softmax(1))


# -- 2. predict, export, TTA -----------------------------------------------------------------

def _folder(root, n=5):
    rng = np.random.default_rng(0)
    for k, label in enumerate(("cat", "dog", "fox")):
        (root / label).mkdir(parents=True)
        for i in range(n):  # not square and not at the loaders' size: resized and cropped
            arr = rng.integers(0, 80, (20 + i, 27, 3), dtype=np.uint8)
            arr[..., k] += 150
            Image.fromarray(arr).save(root / label / f"{i}.png")
    return root


def _valid_outputs(learn):
    """The model's probabilities on the validation loader, run by hand."""
    outs = []
    with torch.no_grad():
        learn.model.eval()
        for xb, _ in learn.dls.valid:
            outs.append(learn.model(xb).float())
    return torch.cat(outs)


@pytest.fixture(scope="module")
def pets(tmp_path_factory):
    root = _folder(tmp_path_factory.mktemp("pets"))
    dls = ImageDataLoaders.from_folder(root, valid_pct=0.4, size=24, bs=4, device="cpu",
                                       stats="imagenet")
    learn = vision_learner(dls, "resnet18", quiet=True, path=root)
    learn.fit(1, 1e-3)  # BatchNorm statistics that are not the initial ones
    return learn


def test_predict_matches_the_validation_loader(pets):
    learn = pets
    ref = _valid_outputs(learn).softmax(1)
    for i, f in enumerate(learn.dls.valid_items):
        label, idx, probs = learn.predict(f)
        torch.testing.assert_close(probs, ref[i], rtol=1e-4, atol=1e-5)
        assert int(idx) == int(ref[i].argmax()) and label == learn.dls.vocab[int(idx)]
    f = learn.dls.valid_items[0]
    with Image.open(f) as im:  # a PIL image and a uint8 tensor go the same way
        _, _, from_pil = learn.predict(im.copy())
    arr = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
    _, _, from_tensor = learn.predict(arr)
    torch.testing.assert_close(from_pil, ref[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(from_tensor, ref[0], rtol=1e-4, atol=1e-5)


def test_predict_follows_progressive_resizing(pets):
    learn = pets
    learn.dls.set_size(16)
    try:
        ref = _valid_outputs(learn).softmax(1)
        _, _, probs = learn.predict(learn.dls.valid_items[1])
    finally:
        learn.dls.set_size(None)
    torch.testing.assert_close(probs, ref[1], rtol=1e-4, atol=1e-5)


def test_export_then_load_learner_predicts_the_same_in_a_fresh_object(pets, tmp_path):
    from fastext.tasks.vision.learner import load_learner

    learn = pets
    file = learn.export(tmp_path / "pets.pth")
    torch.load(file, weights_only=True)  # plain data only
    fresh = load_learner(file)
    assert fresh.model is not learn.model and fresh.vocab == learn.dls.vocab
    for f in learn.dls.valid_items:
        want = learn.predict(f)
        got = fresh.predict(f)
        assert got[0] == want[0] and torch.equal(got[1], want[1])
        torch.testing.assert_close(got[2], want[2], rtol=1e-4, atol=1e-5)


def test_export_of_a_module_body_needs_its_factory(tmp_path):
    from fastext.tasks.vision.learner import load_learner

    torch.manual_seed(0)
    learn = vision_learner(_tiny_dls(channels=1), conv_body(1, (8, 16), (2, 2)), cut=False,
                           quiet=True)
    x = learn.dls.valid.dataset[0][0]
    file = learn.export(tmp_path / "m.pth")
    with pytest.raises(ValueError, match="model_factory"):
        load_learner(file)
    fresh = load_learner(file, lambda: vision_learner(
        _tiny_dls(channels=1), conv_body(1, (8, 16), (2, 2)), cut=False, quiet=True).model)
    torch.testing.assert_close(fresh.predict(x)[2], learn.predict(x)[2])


def test_multi_label_predict_thresholds_sigmoid_probabilities(tmp_path):
    from fastext.tasks.vision.learner import load_learner

    torch.manual_seed(0)
    learn = vision_learner(_tiny_dls(multi=True), "resnet18", quiet=True)
    ref = _valid_outputs(learn).sigmoid()
    x = learn.dls.valid.dataset[0]
    for i in range(len(x)):
        labels, hot, probs = learn.predict(x[i])
        torch.testing.assert_close(probs, ref[i], rtol=1e-4, atol=1e-5)
        assert torch.equal(hot, ref[i] > 0.5)
        want = [c for c, p in zip(learn.dls.vocab, ref[i].tolist(), strict=True) if p > 0.5]
        assert labels == want
    fresh = load_learner(learn.export(tmp_path / "ml.pth"))
    assert fresh.multi_label and fresh.predict(x[0])[0] == learn.predict(x[0])[0]


def test_tta_mixes_plain_and_augmented_predictions_as_fastai():
    torch.manual_seed(0)
    learn = vision_learner(_tiny_dls(flip=1.0, scale=(1.0, 1.0)), "resnet18", quiet=True)
    images, y = learn.dls.valid.dataset
    mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in learn.dls.stats)
    with torch.no_grad():
        learn.model.eval()
        plain = learn.model((images.float() / 255 - mean) / std).softmax(1)
        mirrored = learn.model((images.flip(-1).float() / 255 - mean) / std).softmax(1)
    preds, targs = learn.tta(n=2, beta=0.25)  # every augmented pass is the mirror here
    torch.testing.assert_close(preds, 0.25 * plain + 0.75 * mirrored, rtol=1e-4, atol=1e-5)
    assert torch.equal(targs, y)


# -- 4. interpretation of any classifier, Grad-CAM in colour ---------------------------------

def test_interpretation_of_a_tabular_learner_matches_sklearn():
    import pandas as pd
    from sklearn.metrics import confusion_matrix

    from fastext.tasks.tabular import TabularDataLoaders, tabular_learner
    from fastext.tasks.vision.interpret import ClassificationInterpretation

    df = pd.DataFrame({"a": list("xyz") * 20, "b": np.arange(60.0), "t": ["p", "q", "r"] * 20})
    torch.manual_seed(0)
    learn = tabular_learner(TabularDataLoaders.from_df(df, ["a"], ["b"], "t", bs=8,
                                                       device="cpu"), quiet=True)
    interp = ClassificationInterpretation.from_learner(learn)
    logits, ys = [], []
    learn.model.eval()
    with torch.no_grad():
        for cat, cont, yb in learn.dls.valid:
            logits.append(learn.model(cat, cont))
            ys.append(yb)
    logits, ys = torch.cat(logits), torch.cat(ys)
    torch.testing.assert_close(interp.preds, logits)
    assert torch.equal(interp.targets, ys) and interp.vocab == ["p", "q", "r"]
    ref = confusion_matrix(ys.numpy(), logits.argmax(1).numpy(), labels=[0, 1, 2])
    assert interp.confusion_matrix().tolist() == ref.tolist()
    torch.testing.assert_close(interp.losses, F.cross_entropy(logits, ys, reduction="none"))


def test_cam_overlays_show_rgb_images_in_colour(tmp_path, monkeypatch):
    import matplotlib.axes

    from fastext.tasks.vision.interpret import save_cam_overlays

    shown = []
    real = matplotlib.axes.Axes.imshow

    def spy(self, arr, *a, **k):
        shown.append(np.asarray(arr))
        return real(self, arr, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", spy)
    img = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    img[:, 0] = 255  # red
    img[1, 2, :4] = 102
    save_cam_overlays(img, torch.rand(2, 8, 8), tmp_path / "cam.png")
    images = shown[::2]  # each image, then its heat map
    for got, im in zip(images, img, strict=True):
        np.testing.assert_allclose(got, im.permute(1, 2, 0).float().numpy() / 255)
    grey = torch.randint(0, 256, (1, 1, 8, 8), dtype=torch.uint8)
    shown.clear()
    save_cam_overlays(grey, torch.rand(1, 8, 8), tmp_path / "grey.png")
    np.testing.assert_allclose(shown[0], grey[0, 0].float().numpy())


def test_interpretation_inputs_of_several_tensors_do_not_plot(tmp_path):
    from fastext.tasks.vision.interpret import ClassificationInterpretation

    learn, (cat, cont, y) = _two_input_learner()
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.vocab == ["0", "1", "2"] and torch.equal(interp.targets, y)
    with pytest.raises(ValueError, match="images"):
        interp.plot_top_losses(2, tmp_path / "top.png")
    interp.plot_confusion_matrix(tmp_path / "cm.png")


def test_load_images_and_predict_decode_alike(tmp_path):
    """The predictor's decoding is load_images' (the valid loader's stored images)."""
    from fastext.tasks.vision.data import image_tensor

    root = _folder(tmp_path / "imgs", n=2)
    files = sorted(root.rglob("*.png"))
    x, _ = load_images(files, 16)
    for f, want in zip(files, x, strict=True):
        assert torch.equal(image_tensor(f, 16), want)


def test_interpretation_of_a_text_classifier_names_its_classes():
    """Text batches are (ids, lengths, labels): two inputs, padded per batch."""
    from fastext.tasks.text.clas_data import classifier_dataloaders
    from fastext.tasks.text.learners import text_classifier_learner
    from fastext.tasks.text.tokenize import Vocab, tokenize_texts
    from fastext.tasks.vision.interpret import ClassificationInterpretation

    texts = ["a good film", "bad", "really very good indeed", "bad bad film", "good",
             "not good at all, bad", "fine film", "awful and bad"] * 2
    labels = torch.tensor([1, 0] * 8)  # neg, pos
    toks = tokenize_texts(texts)
    vocab = Vocab.build(toks, min_freq=1)
    docs = [vocab.numericalize(t) for t in toks]
    dls = classifier_dataloaders(docs, labels, docs, labels, vocab, ["neg", "pos"], bs=4,
                                 device="cpu")
    torch.manual_seed(0)
    learn = text_classifier_learner(dls, emb_sz=8, n_hid=12, n_layers=2, quiet=True)
    interp = ClassificationInterpretation.from_learner(learn)
    logits, ys = [], []
    learn.model.eval()
    with torch.no_grad():
        for x, lengths, yb in dls.valid:
            logits.append(learn.model(x, lengths).float())
            ys.append(yb)
    torch.testing.assert_close(interp.preds, torch.cat(logits))
    assert torch.equal(interp.targets, torch.cat(ys)) and interp.vocab == ["neg", "pos"]
