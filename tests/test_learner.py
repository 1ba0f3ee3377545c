"""The Learner's core: schedules point by point, layer groups and freezing,
discriminative LRs, precision modes, checkpoints and resume, and real training on MNIST."""

import functools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fastext
from fastext.data.files import find_data_dir
from fastext.data.mnist import load_mnist, normalize
from fastext.learner import Callback, DataLoaders, Learner, combined_cos, ulmfit_slice


def toy_dls(n=256, bs=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    k = n * 3 // 4
    return DataLoaders.from_tensors(x[:k], y[:k], x[k:], y[k:], bs=bs, device="cpu")


def toy_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))


def toy_learner(**kw):
    return Learner(toy_dls(), toy_model(), F.cross_entropy, quiet=True, **kw)


class Track(Callback):
    """Records the hyper-parameters the optimizer holds at every training step."""

    order = 70

    def before_fit(self):
        self.lrs, self.moms = [], []

    def before_step(self):
        groups = self.learn.opt.param_groups
        self.lrs.append([g["lr"] for g in groups])
        self.moms.append([g["betas"][0] if "betas" in g else g["momentum"] for g in groups])


def test_one_cycle_curves_point_by_point():
    learn = toy_learner()
    track = Track()
    learn.fit_one_cycle(3, 1e-2, div=25, div_final=1e5, pct_start=0.25, cbs=[track])
    n = 3 * len(learn.dls.train)
    for k in range(n):
        pos = k / n
        if pos < 0.25:
            p = pos / 0.25
            lr = 1e-2 / 25 + (1 + math.cos(math.pi * (1 - p))) * (1e-2 - 1e-2 / 25) / 2
            mom = 0.95 + (1 + math.cos(math.pi * (1 - p))) * (0.85 - 0.95) / 2
        else:
            p = (pos - 0.25) / 0.75
            lr = 1e-2 + (1 + math.cos(math.pi * (1 - p))) * (1e-2 / 1e5 - 1e-2) / 2
            mom = 0.85 + (1 + math.cos(math.pi * (1 - p))) * (0.95 - 0.85) / 2
        assert track.lrs[k] == pytest.approx([lr] * len(track.lrs[k]), rel=1e-9)
        assert track.moms[k] == pytest.approx([mom] * len(track.moms[k]), rel=1e-9)


def test_flat_cos_and_rmsprop_momentum():
    learn = Learner(toy_dls(), toy_model(), F.cross_entropy, quiet=True,
                    opt_func=functools.partial(fastext.optim.RMSprop, momentum=0.9))
    track = Track()
    learn.fit_flat_cos(2, 1e-3, pct_start=0.5, cbs=[track])
    n = 2 * len(learn.dls.train)
    for k in range(n):
        pos = k / n
        want = 1e-3 if pos < 0.5 else 1e-3 + (1 + math.cos(math.pi * (1 - (pos - 0.5) / 0.5))) * (
            1e-3 / 1e5 - 1e-3) / 2
        assert track.lrs[k][0] == pytest.approx(want, rel=1e-9)
    one_cycle = Track()
    learn.fit_one_cycle(1, 1e-3, cbs=[one_cycle])  # RMSprop: "mom" drives `momentum`
    assert one_cycle.moms[0][0] == pytest.approx(0.95) and min(m[0] for m in one_cycle.moms) < 0.9
    plain = Learner(toy_dls(), toy_model(), F.cross_entropy, quiet=True,
                    opt_func=fastext.optim.RMSprop)
    plain.fit_one_cycle(1, 1e-3)  # built without momentum: the schedule leaves it off
    assert all(g["momentum"] == 0 for g in plain.opt.param_groups)


def test_combined_cos_endpoints():
    f = combined_cos(0.3, np.array([1.0, 2.0]), np.array([10.0, 20.0]), np.array([0.0, 0.0]))
    assert np.allclose(f(0.0), [1, 2]) and np.allclose(f(0.3), [10, 20]) and np.allclose(f(1.0), 0)


def test_weight_decay_skips_norm_and_bias():
    learn = toy_learner()
    opt = learn.create_opt()
    by_id = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    m = learn.model
    assert by_id[id(m[0].weight)] == 0.1 and by_id[id(m[3].weight)] == 0.1
    assert by_id[id(m[0].bias)] == 0 and by_id[id(m[1].weight)] == 0 and by_id[id(m[1].bias)] == 0
    assert isinstance(opt, fastext.optim.AdamW)


def test_discriminative_lrs_land_in_groups():
    learn = toy_learner()  # body/head: two layer groups
    learn.create_opt()
    assert learn.n_groups == 2
    learn.set_hypers(lr=learn.lr_range(slice(1e-4, 1e-2)))
    got = {g["layer_group"]: g["lr"] for g in learn.opt.param_groups}
    assert got == {0: pytest.approx(1e-4), 1: pytest.approx(1e-2)}
    assert learn.lr_range(slice(1e-2)).tolist() == pytest.approx([1e-3, 1e-2])
    assert learn.lr_range(slice(3e-3, 3e-3)).tolist() == [3e-3, 3e-3]
    s = ulmfit_slice(1e-2)
    assert s.start == pytest.approx(1e-2 / 2.6**4) and s.stop == 1e-2
    track = Track()
    learn.fit_one_cycle(1, slice(1e-4, 1e-2), cbs=[track])
    groups = [g["layer_group"] for g in learn.opt.param_groups]
    body, head = groups.index(0), groups.index(1)
    for lrs in track.lrs:  # the schedule keeps the 100x ratio between the groups
        assert lrs[head] / lrs[body] == pytest.approx(100)


def test_freeze_keeps_body_bit_identical_but_trains_bn_and_head():
    learn = toy_learner()
    learn.freeze()
    body_w = learn.model[0].weight.detach().clone()
    bn_w = learn.model[1].weight.detach().clone()
    head_w = learn.model[3].weight.detach().clone()
    learn.fit(1, 1e-2)
    assert torch.equal(learn.model[0].weight, body_w)
    assert not torch.equal(learn.model[1].weight, bn_w)  # train_bn
    assert not torch.equal(learn.model[3].weight, head_w)
    learn.unfreeze()
    learn.fit(1, 1e-2)
    assert not torch.equal(learn.model[0].weight, body_w)


def test_fine_tune_runs_frozen_then_unfrozen():
    learn = toy_learner()
    body_w = learn.model[0].weight.detach().clone()
    seen = []

    class Frozen(Callback):
        def before_fit(self):
            seen.append(self.learn.model[0].weight.requires_grad)

    learn.fine_tune(1, base_lr=1e-2, freeze_epochs=1, cbs=[Frozen()])
    assert seen == [False, True] and not torch.equal(learn.model[0].weight, body_w)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_trains(precision):
    ref = toy_learner()
    ref.fit_one_cycle(4, 1e-2)
    learn = toy_learner(precision=precision)
    before = learn.validate()[0]
    learn.fit_one_cycle(4, 1e-2)
    after, ref_after = learn.validate()[0], ref.validate()[0]
    assert after < before - 0.1 and abs(after - ref_after) < 0.05, (before, after, ref_after)
    if precision == "fp16":
        assert learn.model[0].weight.dtype == torch.float16
        assert learn.model[1].weight.dtype == torch.float32  # BatchNorm stays fp32
        assert learn.opt.state[learn.model[0].weight]["master"].dtype == torch.float32
        assert learn.scaler is not None


def test_bad_precision_is_a_clear_error():
    with pytest.raises(ValueError, match="precision"):
        toy_learner(precision="fp8")


def test_checkpoint_loads_with_weights_only(tmp_path):
    learn = toy_learner(path=tmp_path)
    learn.fit(1, 1e-2)
    file = learn.save("m")
    state = torch.load(file, weights_only=True)
    assert set(state) >= {"model", "opt", "epoch", "train_iter", "rng"}
    other = Learner(toy_dls(), toy_model(seed=5), F.cross_entropy, quiet=True, path=tmp_path)
    other.load("m")
    for a, b in zip(learn.model.parameters(), other.model.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError):
        other.load("missing")


def test_resume_mid_fit_is_bit_identical(tmp_path):
    """Stop a 4-epoch 1cycle fit after epoch 2, reload the checkpoint into a fresh learner,
    resume: the final weights equal those of the uninterrupted run, bit for bit."""
    full = toy_learner(path=tmp_path)
    full.fit_one_cycle(4, 1e-2)

    class StopAfter(Callback):
        def after_epoch(self):
            if self.learn.epoch == 1:
                self.learn.save("ckpt")
                raise fastext.learner.CancelFitException

    part = toy_learner(path=tmp_path)
    part.fit_one_cycle(4, 1e-2, cbs=[StopAfter()])
    resumed = Learner(toy_dls(), toy_model(seed=9), F.cross_entropy, quiet=True, path=tmp_path)
    resumed.load("ckpt")
    resumed.fit_one_cycle(4, 1e-2, start_epoch=2)
    for a, b in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(full.model.buffers(), resumed.model.buffers(), strict=True):
        assert torch.equal(a, b)


def test_cancel_step_still_zeroes_and_cancel_batch_keeps_gradients():
    """fastai's order: CancelStepException skips the step but not the zero_grad after it;
    CancelBatchException raised in before_step skips both (gradient accumulation). At lr 0
    the weights stay put, so each batch's own gradient is that of an uncancelled run."""
    def second_grads(exc):
        grads = []

        class SkipFirst(Callback):
            def before_step(self):
                grads.append(self.learn.model[3].weight.grad.clone())
                if exc is not None and self.learn.iter == 0:
                    raise exc

        toy_learner().fit(1, 0.0, cbs=[SkipFirst()])
        return grads[0], grads[1]

    g0, g1 = second_grads(None)
    assert not torch.allclose(g1, g0 + g1)
    torch.testing.assert_close(second_grads(fastext.learner.CancelStepException)[1], g1)
    torch.testing.assert_close(second_grads(fastext.learner.CancelBatchException)[1], g0 + g1)


def mnist_10k():
    root = find_data_dir("mnist")
    x, y = load_mnist(root, "train")
    xv, yv = load_mnist(root, "test")
    return (normalize(x[:10_000]), y[:10_000], normalize(xv[:2_000]), yv[:2_000])


def test_mnist_one_cycle_reaches_97_percent():
    try:
        data = mnist_10k()
    except FileNotFoundError:
        pytest.skip("full MNIST not found (../shared/data/mnist): CI always has it")
    from fastext.demos.mnist import build_model
    from fastext.learner.metrics import accuracy

    torch.manual_seed(0)
    dls = DataLoaders.from_tensors(*data, bs=128, device="cpu")
    learn = Learner(dls, build_model(), F.cross_entropy, metrics=[accuracy], quiet=True)
    learn.fit_one_cycle(2, 1e-2)
    loss, acc = learn.validate()
    assert acc >= 0.97, acc


def test_progressive_resizing_changes_batch_size_keeps_model_and_opt():
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 3, (64,))
    dls = DataLoaders.from_tensors(x[:48], y[:48], x[48:], y[48:], bs=16, device="cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    learn = Learner(dls, model, F.cross_entropy, quiet=True)
    seen = []

    class Sizes(Callback):
        def before_batch(self):
            seen.append((self.learn.epoch, self.learn.training, self.learn.xb[0].shape[-1]))

    learn.fit(3, 1e-3, cbs=[fastext.learner.ProgressiveResize({0: 14, 2: 28}), Sizes()])
    opt = learn.opt
    assert {s for e, t, s in seen if e < 2} == {14} and {s for e, t, s in seen if e == 2} == {28}
    assert learn.opt is opt and next(iter(dls.train))[0].shape[-1] == 28  # reset after the fit


def test_progressive_resizing_resets_when_the_fit_is_interrupted():
    """A fit ended by an exception (Ctrl-C in a notebook) left the loaders at the small size
    for every later fit, validation and prediction."""
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 3, (32,))
    dls = DataLoaders.from_tensors(x[:24], y[:24], x[24:], y[24:], bs=8, device="cpu")
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    learn = Learner(dls, model, F.cross_entropy, quiet=True)

    class Interrupt(Callback):
        def after_batch(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        learn.fit(1, 1e-3, cbs=[fastext.learner.ProgressiveResize({0: 14}), Interrupt()])
    assert next(iter(dls.train))[0].shape[-1] == 28


def test_from_folder(tmp_path):
    from PIL import Image

    for split in ("train", "valid"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / split / label / f"{i}.png")
    dls = DataLoaders.from_folder(tmp_path, bs=4, device="cpu")
    xb, yb = next(iter(dls.train))
    assert xb.shape == (4, 3, 8, 8) and set(yb.tolist()) <= {0, 1}
    with pytest.raises(FileNotFoundError):
        DataLoaders.from_folder(tmp_path / "nowhere")


def test_from_folder_size_takes_images_of_different_sizes(tmp_path):
    """Pets-style folders (every image its own size) batch once ``size`` is given, each
    image resized and centre-cropped as torchvision's Resize + CenterCrop do."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    for split in ("train", "valid"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(3):
                im = Image.new("RGB", (10 + 3 * i, 7 + i), (i * 40, 20, 0))
                im.save(tmp_path / split / label / f"{i}.png")
    dls = DataLoaders.from_folder(tmp_path, bs=6, device="cpu", size=6, drop_last=False)
    xb, _ = next(iter(dls.valid))
    assert xb.shape == (6, 3, 6, 6)
    first = Image.open(tmp_path / "valid" / "cat" / "0.png").convert("RGB")
    ref = TF.to_tensor(TF.center_crop(TF.resize(first, 6), 6))
    torch.testing.assert_close(xb[0], ref)
    with pytest.raises(TypeError, match="not both"):
        DataLoaders.from_folder(tmp_path, size=6, transform=TF.to_tensor)


def test_channels_last_for_conv_models():
    x = torch.randn(32, 3, 8, 8)
    y = torch.randint(0, 2, (32,))
    dls = DataLoaders.from_tensors(x[:24], y[:24], x[24:], y[24:], bs=8, device="cpu")

    def conv():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))

    seen = []

    class Layout(Callback):
        def before_batch(self):
            seen.append(self.learn.xb[0].is_contiguous(memory_format=torch.channels_last))

    # SGD: Adam's normalised steps would magnify the layouts' last-bit differences
    fast = Learner(dls, conv(), F.cross_entropy, quiet=True, opt_func=torch.optim.SGD)
    plain = Learner(dls, conv(), F.cross_entropy, quiet=True, opt_func=torch.optim.SGD,
                    channels_last=False)
    assert fast.channels_last and not plain.channels_last
    assert fast.model[0].weight.is_contiguous(memory_format=torch.channels_last)
    fast.fit(2, 1e-2, cbs=[Layout()])
    plain.fit(2, 1e-2)
    assert all(seen)
    for a, b in zip(fast.model.parameters(), plain.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # same training, other layout
    assert not toy_learner().channels_last  # no convolution: left alone


def test_fp16_load_without_optimizer_state_keeps_the_loaded_weights(tmp_path):
    learn = toy_learner(precision="fp16", path=tmp_path)
    learn.fit(1, 1e-2)
    learn.save("a", with_opt=False)
    saved = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(2, 1e-2)
    learn.load("a", with_opt=False)
    learn.fit(1, lr=0.0, wd=0.0)  # a zero step must not write the old fp32 masters back
    for a, b in zip(learn.model.parameters(), saved, strict=True):
        assert torch.equal(a, b)


def test_weight_decay_set_by_fit_reaches_the_decay_groups():
    learn = toy_learner(wd=0.0)
    learn.fit(1, 1e-3, wd=0.05)
    wds = {g["apply_wd"]: g["weight_decay"] for g in learn.opt.param_groups}
    assert wds == {True: 0.05, False: 0.0}


def test_splitter_keeps_a_tied_weight_in_one_group():
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10)
    head.weight = emb.weight  # tied encoder / decoder, as in a language model
    model = nn.Sequential(emb, nn.Flatten(), head)
    groups = fastext.learner.body_head_splitter(model)
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids)) == 2


def test_fp16_needs_a_master_weight_optimizer():
    with pytest.raises(ValueError, match="master weights"):
        toy_learner(precision="fp16", opt_func=torch.optim.AdamW).create_opt()


def test_fp16_takes_an_opt_func_that_forwards_its_keywords():
    """A wrapper ``(params, **kw)`` around fastext's AdamW was refused as if it could not
    keep master weights."""
    def my_adam(params, **kw):
        return fastext.optim.AdamW(params, betas=(0.9, 0.99), **kw)

    opt = toy_learner(precision="fp16", opt_func=my_adam).create_opt()
    assert opt.master_weights and opt.param_groups[0]["betas"] == (0.9, 0.99)


def test_save_and_load_resolve_a_name_alike(tmp_path):
    """A name with a dot is a checkpoint under model_dir for save and load alike; a path
    ending in .pth is that file for both."""
    learn = toy_learner(path=tmp_path)
    learn.fit(1, 1e-2)
    assert learn.save("stage-1.5") == tmp_path / "models" / "stage-1.5.pth"
    other = Learner(toy_dls(), toy_model(seed=5), F.cross_entropy, quiet=True, path=tmp_path)
    other.load("stage-1.5")
    for a, b in zip(learn.model.parameters(), other.model.parameters(), strict=True):
        assert torch.equal(a, b)
    file = tmp_path / "elsewhere" / "final.pth"
    assert learn.save(file) == file and file.exists()
    assert learn.model_file(file) == file
    Learner(toy_dls(), toy_model(seed=6), F.cross_entropy, quiet=True).load(file)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["stage-1.5.pth"]


def test_save_model_at_end_reloads_a_name_with_a_dot(tmp_path):
    learn = toy_learner(path=tmp_path)
    learn.fit(2, 1e-2, cbs=[fastext.learner.SaveModel(fname="best_lr0.01")])
    assert (tmp_path / "models" / "best_lr0.01.pth").exists()


class CancelValidBatch(Callback):
    """Cancels validation batch ``at`` in ``event`` (before its prediction or its loss)."""

    run_train = False

    def __init__(self, at, event="before_batch"):
        self.at = at
        setattr(self, event, self._cancel)

    def _cancel(self):
        if self.learn.iter == self.at:
            raise fastext.learner.CancelBatchException


@pytest.mark.parametrize("event", ["before_batch", "after_pred"])
def test_validate_leaves_out_a_cancelled_batch(event):
    """A cancelled validation batch counts in neither the loss nor the metrics (it used to
    pair the previous batch's prediction and loss with its targets)."""
    from fastext.learner import accuracy

    dls = toy_dls(n=64, bs=16)  # valid: 16 samples
    dls = DataLoaders.from_tensors(*dls.train.dataset, *dls.valid.dataset, bs=16, valid_bs=6,
                                   device="cpu")  # valid batches of 6, 6, 4
    x, y = dls.valid.dataset
    learn = Learner(dls, toy_model(), F.cross_entropy, quiet=True, metrics=[accuracy])
    learn.model.eval()
    with torch.no_grad():
        pred = learn.model(x)
    for skip, keep in ((1, [*range(6), *range(12, 16)]), (2, list(range(12)))):
        learn.add_cb(cb := CancelValidBatch(skip, event))
        loss, acc = learn.validate()
        learn.remove_cb(cb)
        assert loss == pytest.approx(F.cross_entropy(pred[keep], y[keep]).item(), rel=1e-6)
        assert acc == pytest.approx(accuracy(pred[keep], y[keep]).item(), rel=1e-6)


def test_validate_on_an_empty_set_is_nan():
    from fastext.learner import accuracy

    x = torch.randn(48, 8)
    y = (x[:, 0] > 0).long()
    dls = DataLoaders.from_tensors(x, y, x[:0], y[:0], bs=16, device="cpu")
    learn = Learner(dls, toy_model(), F.cross_entropy, quiet=True, metrics=[accuracy])
    loss, acc = learn.validate()
    assert math.isnan(loss) and math.isnan(acc)


def test_validate_fires_the_validate_events():
    """validate() runs the phase with its events, as fastai's does (callbacks such as the
    language model's ResetRNNState rely on before_validate); a cancelled validation gives
    NaN; the Recorder's epoch table is left alone."""
    events = []

    class Events(Callback):
        def before_validate(self):
            events.append(("before_validate", self.learn.dl))

        def after_batch(self):
            events.append(("batch", self.learn.iter))

        def after_validate(self):
            events.append(("after_validate", self.learn.valid_loss))

    dls = toy_dls()
    dls = DataLoaders.from_tensors(*dls.train.dataset, *dls.valid.dataset, bs=32, valid_bs=32,
                                   device="cpu")  # valid: two batches of 32
    learn = Learner(dls, toy_model(), F.cross_entropy, quiet=True)
    learn.fit(1, 1e-2)
    row, final = list(learn.recorder.values[-1]), list(learn.final_record)
    learn.add_cb(Events())
    loss = learn.validate()[0]
    assert events == [("before_validate", learn.dls.valid), ("batch", 0), ("batch", 1),
                      ("after_validate", loss)]
    other = DataLoaders.from_tensors(*learn.dls.valid.dataset, *learn.dls.valid.dataset,
                                     bs=64, device="cpu").valid
    events.clear()
    learn.validate(other)
    assert events[0] == ("before_validate", other) and len(events) == 3
    assert learn.recorder.values[-1] == row and learn.final_record == final
    assert len(learn.recorder.values) == 1

    class Cancel(Callback):
        def before_validate(self):
            raise fastext.learner.CancelValidException

    learn = toy_learner(metrics=[fastext.learner.accuracy], cbs=[Cancel()])
    assert all(math.isnan(v) for v in learn.validate())


def test_fit_without_lr_or_wd_uses_the_learner_defaults():
    """As fastai's fit: lr=None is ``learn.lr`` (not where the last schedule left the
    optimizer), wd=None is ``learn.wd`` (not the last fit's wd)."""
    learn = toy_learner(lr=3e-3, wd=0.02)
    learn.fit_one_cycle(1, 1e-2, wd=0.3)
    track = Track()
    learn.fit(1, cbs=[track])
    assert track.lrs and all(lrs == [3e-3] * len(lrs) for lrs in track.lrs)
    wds = {g["apply_wd"]: g["weight_decay"] for g in learn.opt.param_groups}
    assert wds == {True: 0.02, False: 0.0}
    learn.fit(1, slice(1e-3, 1e-2), wd=0.05)
    learn.fit(1, cbs=[track])
    assert all(lrs == [3e-3] * len(lrs) for lrs in track.lrs)
    assert {g["weight_decay"] for g in learn.opt.param_groups if g["apply_wd"]} == {0.02}


@pytest.mark.parametrize("norm", ["instance", "rms"])
def test_instance_and_rms_norm_are_normalisation_layers(norm):
    """No weight decay on their weights, and trainable in frozen groups with train_bn."""
    x = torch.randn(8, 3, 8, 8)
    y = torch.zeros(8).long()
    dls = DataLoaders.from_tensors(x, y, x, y, bs=4, device="cpu")
    layer = nn.InstanceNorm2d(4, affine=True) if norm == "instance" else nn.RMSNorm([4, 6, 6])
    model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), layer, nn.ReLU()),
                          nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))
    learn = Learner(dls, model, F.cross_entropy, quiet=True)
    learn.create_opt()
    wd = {id(p): g["weight_decay"] for g in learn.opt.param_groups for p in g["params"]}
    assert wd[id(layer.weight)] == 0.0 and wd[id(model[0][0].weight)] == 0.1
    learn.freeze()
    assert layer.weight.requires_grad and not model[0][0].weight.requires_grad
    learn.train_bn = False
    learn.freeze()
    assert not layer.weight.requires_grad


def test_freeze_to_counts_negative_groups_from_the_end_without_wrapping():
    learn = toy_learner(train_bn=False)  # two layer groups: [Linear, BatchNorm], [Linear]
    trainable = {}
    for n in (-1, -2, -3, -5, 0, 1, 2, 3):
        learn.freeze_to(n)
        trainable[n] = [p.requires_grad for p in learn.model.parameters()]
    everything, head = [True] * 6, [False] * 4 + [True] * 2
    assert trainable == {-1: head, -2: everything, -3: everything, -5: everything,
                         0: everything, 1: head, 2: [False] * 6, 3: [False] * 6}


@pytest.mark.parametrize("shape", [(32, 64), (64, 32), (48, 48)])
def test_progressive_resizing_squares_rectangular_batches(shape):
    """set_size(s) gives s x s batches, also when one side already is s."""
    x = torch.randn(8, 3, *shape)
    y = torch.zeros(8).long()
    dls = DataLoaders.from_tensors(x, y, x, y, bs=4, valid_bs=4, device="cpu")
    for s in (32, 64, 128):
        dls.set_size(s)
        assert next(iter(dls.train))[0].shape == (4, 3, s, s)
        assert next(iter(dls.valid))[0].shape == (4, 3, s, s)
    dls.set_size(None)
    assert next(iter(dls.train))[0].shape == (4, 3, *shape)
