"""What the task modules hand to copies, checkpoints, exports and logs: per-epoch image
augmentation (resume / lr_find replay), tabular exports with NumPy column names, deep copies
of an AWD-LSTM after a training step, and hpsearch logs of tuple / NumPy choices."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fastext.learner import Callback, CancelFitException, Learner
from fastext.learner.lr_find import lr_find
from fastext.tasks.tabular import TabularDataLoaders, load_tabular, tabular_learner
from fastext.tasks.text.awd_lstm import AWDLSTM, AWDLSTMLanguageModel, RNNRegularizer
from fastext.tasks.vision.data import BatchAugment, ImageDataLoaders
from fastext.tasks.vision.unet import SegmentationDataLoaders, SegmentAugment
from fastext.tools.hp.search import search
from fastext.tools.hp.space import Choice, LogUniform, Space
from fastext.tools.hp.trials import TrialLog


# -- 1. image augmentation drawn per epoch ------------------------------------------------------
def _images(n: int = 32, side: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, side, side), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    m = torch.randint(0, 3, (n, side, side), generator=g)
    return x, y, m


def _epoch_inputs(dl, epoch: int) -> list[Tensor]:
    dl.set_epoch(epoch)
    return [b[0].clone() for b in dl]


@pytest.mark.parametrize("kind", ["classify", "segment"])
def test_set_epoch_replays_the_epochs_augmentations(kind: str) -> None:
    x, y, m = _images()
    if kind == "classify":
        dls = ImageDataLoaders.from_tensors(x, y, x[:4], y[:4], ["a", "b"], bs=8,
                                            device="cpu")
    else:  # the segmentation default (scale 1) only flips: add a zoom to test both draws
        dls = SegmentationDataLoaders.from_tensors(x, m, x[:4], m[:4], ["a", "b", "c"], bs=8,
                                                   flip=0.5, scale=(0.5, 1.0), device="cpu")
    e0, e1 = _epoch_inputs(dls.train, 0), _epoch_inputs(dls.train, 1)
    # replaying an epoch (resume, lr_find's restore) sees the same augmented batches ...
    assert all(torch.equal(a, b) for a, b in zip(e0, _epoch_inputs(dls.train, 0), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(e1, _epoch_inputs(dls.train, 1), strict=True))
    # ... whatever ran in between, and a later epoch still draws other augmentations
    _epoch_inputs(dls.train, 5)
    assert all(torch.equal(a, b) for a, b in zip(e1, _epoch_inputs(dls.train, 1), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(e0, e1, strict=True))


def test_loader_augmentation_keeps_its_distribution() -> None:
    # the same draws as before, only per epoch: about half the images flipped, crops in range
    aug = BatchAugment(flip=0.5, scale=(1.0, 1.0), ratio=(1.0, 1.0), seed=3)
    x = torch.randint(0, 256, (400, 1, 4, 4), dtype=torch.uint8)
    out = aug(x, generator=aug.epoch_generator(0))
    flipped = torch.tensor([not torch.equal(o, x[i].float() / 255) for i, o in enumerate(out)])
    assert 0.4 < flipped.float().mean().item() < 0.6
    seg = SegmentAugment(None, flip=0.5, scale=(0.3, 0.6), seed=0)
    xb, yb = seg(x[:, :1].expand(-1, 3, -1, -1), x[:, 0].long(),
                 generator=seg.epoch_generator(2))
    assert xb.shape == (400, 3, 4, 4) and yb.shape == (400, 4, 4)


class _StopAfterFirstEpoch(Callback):
    def after_epoch(self) -> None:
        if self.learn.epoch == 0:
            self.learn.save("ck")
            raise CancelFitException


def _image_learner(tmp: Path) -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 10, 10), dtype=torch.uint8, generator=g)
    y = (x[:, 0].float().mean((1, 2)) > 127).long()
    dls = ImageDataLoaders.from_tensors(x[:32], y[:32], x[32:], y[32:], ["a", "b"], bs=8,
                                        device="cpu", seed=0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    return Learner(dls, model, F.cross_entropy, quiet=True, path=tmp)


def _max_diff(a: Learner, b: Learner) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in
               zip(a.model.parameters(), b.model.parameters(), strict=True))


def test_resumed_fit_with_augmentation_matches_the_uninterrupted_one(tmp_path: Path) -> None:
    full = _image_learner(tmp_path)
    full.fit_one_cycle(2, 1e-2)
    part = _image_learner(tmp_path)
    part.fit_one_cycle(2, 1e-2, cbs=[_StopAfterFirstEpoch()])
    res = _image_learner(tmp_path)
    res.load("ck")
    res.fit_one_cycle(2, 1e-2, start_epoch=1)
    assert _max_diff(full, res) == 0.0


def test_lr_find_before_a_fit_leaves_the_augmented_fit_unchanged(tmp_path: Path) -> None:
    a = _image_learner(tmp_path)
    a.fit(1, 1e-2)
    b = _image_learner(tmp_path)
    lr_find(b, num_it=5)
    b.fit(1, 1e-2)
    assert _max_diff(a, b) == 0.0


# -- 2. NumPy strings as tabular column names ---------------------------------------------------
def test_export_with_numpy_string_names_loads_weights_only(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": list("xyzx") * 16, "b": np.arange(64.0), "c": np.arange(64.0) % 5,
                       "t": ["no", "yes"] * 32})
    cat, cont = list(np.array(["a"])), list(np.array(["b", "c"]))  # numpy.str_ names
    y_name = np.array(["t"])[0]
    dls = TabularDataLoaders.from_df(df, cat, cont, y_name, bs=16, device="cpu")
    # numpy flags and sizes go into the exported model config too
    learn = tabular_learner(dls, layers=[np.int64(8)], quiet=True, use_bn=np.bool_(True))
    learn.fit(1, 1e-2)
    path = learn.export(tmp_path / "m.pkl")
    pred = load_tabular(path)  # torch.load(weights_only=True) inside
    assert all(type(n) is str for n in [*pred.proc.cat_names, *pred.proc.cont_names])
    assert type(pred.proc.y_name) is str
    rows = df.iloc[:10]
    a, b = learn.predict(rows), pred.predict(rows)
    assert (np.asarray(a[0]) == np.asarray(b[0])).all()
    torch.testing.assert_close(a[1], b[1])


# -- 3. AWD-LSTM copies after a training step ---------------------------------------------------
def _trained_lm() -> tuple[AWDLSTMLanguageModel, Tensor]:
    torch.manual_seed(0)
    lm = AWDLSTMLanguageModel(vocab_sz=30, emb_sz=8, n_hid=12, n_layers=2).train()
    out = lm(torch.randint(0, 30, (4, 6)))
    return lm, out


def test_awd_lstm_deep_copies_and_pickles_after_a_forward_with_grad() -> None:
    lm, out = _trained_lm()
    out.sum().backward()
    twin = copy.deepcopy(lm)
    avg = torch.optim.swa_utils.AveragedModel(lm)
    buf = io.BytesIO()
    torch.save(lm, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = torch.randint(0, 30, (3, 5))
    for other in (twin, avg.module, loaded):
        assert other.decoder.decoder.weight is other.encoder.encoder.weight  # still tied
        for m in (lm, other):
            m.eval()
            m.reset()
        torch.testing.assert_close(other(x), lm(x))


def test_copy_leaves_the_original_regularisation_inputs_intact() -> None:
    # RNNRegularizer reads raw_out / dropped_out (graph tensors) within the step: a copy taken
    # mid-step (an EMA or "best" snapshot) must not strip them from the model being trained
    lm, out = _trained_lm()
    twin = copy.deepcopy(lm)
    assert twin.raw_out is None and twin.dropped_out is None and twin.decoder.dropped is None
    assert lm.raw_out is not None and lm.raw_out.requires_grad
    assert all(r.last_weights["weight_hh_l0"].requires_grad for r in lm.encoder.rnns)
    loss = out.float().logsumexp(-1).mean()
    reg = RNNRegularizer(alpha=2.0, beta=1.0)
    reg.learn = SimpleNamespace(training=True, model=lm, loss_grad=loss, scaler=None)
    reg.after_loss()  # AR + TAR on the original, after the copy
    ref = 2.0 * lm.dropped_out.pow(2).mean() \
        + (lm.raw_out[:, 1:] - lm.raw_out[:, :-1]).pow(2).mean()
    torch.testing.assert_close(reg.learn.loss_grad, loss + ref)
    reg.learn.loss_grad.backward()
    assert lm.encoder.rnns[0].module.weight_hh_l0.grad is not None


def test_awd_lstm_classifier_encoder_deep_copies_after_a_forward_with_grad() -> None:
    torch.manual_seed(0)
    enc = AWDLSTM(30, emb_sz=6, n_hid=10, n_layers=2).train()
    enc(torch.randint(2, 30, (3, 7)), torch.tensor([7, 4, 2])).sum().backward()
    twin = copy.deepcopy(enc)
    assert all(r.last_weights == {} for r in twin.rnns)


# -- 4. hpsearch choices JSON does not round-trip -----------------------------------------------
def test_tuple_choice_search_resumes_and_gives_tuples_back(tmp_path: Path) -> None:
    seen: list[object] = []

    def objective(p: dict) -> float:
        seen.append(p["layers"])
        return p["lr"] + len(p["layers"])

    def space() -> Space:
        return Space(lr=LogUniform(1e-3, 1), layers=Choice([(64,), (128, 64)]))

    log = tmp_path / "t.json"
    full = search(objective, space(), n_trials=5, n_init=2, seed=1, method="rf",
                  progress=False, n_candidates=50)
    search(objective, space(), n_trials=3, n_init=2, seed=1, method="rf", log=log,
           progress=False, n_candidates=50)
    res = search(objective, space(), n_trials=5, n_init=2, seed=1, method="rf", log=log,
                 progress=False, n_candidates=50)
    assert all(isinstance(v, tuple) for v in seen)  # the objective gets the options as given
    assert [t.params for t in res.trials] == [t.params for t in full.trials]
    assert all(isinstance(t.params["layers"], tuple) for t in res.trials)
    stored = json.loads(log.read_text())
    assert stored["space"]["layers"]["options"] == [[64], [128, 64]]
    assert Space.from_dict(stored["space"]) == space()


def test_numpy_integer_choice_is_logged(tmp_path: Path) -> None:
    got: list[object] = []

    def objective(p: dict) -> float:
        got.append(p["bs"])
        return p["lr"]

    space = Space(lr=LogUniform(1e-3, 1), bs=Choice(list(np.array([32, 64]))))
    log = tmp_path / "n.json"
    r = search(objective, space, n_trials=3, n_init=2, method="random", log=log, progress=False)
    assert [t.status for t in r.trials] == ["ok"] * 3
    assert all(type(v) is int and v in (32, 64) for v in got)
    doc = json.loads(log.read_text())
    assert [t["params"]["bs"] for t in doc["trials"]] == got
    again = search(objective, space, n_trials=4, n_init=2, method="random", log=log,
                   progress=False)
    assert len(again.trials) == 4


def test_choice_options_are_distinct_as_json_and_a_space_json_cannot_hold_fails_early(
        tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="distinct"):
        Choice([(64,), [64]])  # one option once written to the log
    assert Choice([1, True]).encode(True) == 1.0  # still two options
    assert Choice([(64,), (128, 64)]).encode([128, 64]) == 1.0
    calls: list[dict] = []
    with pytest.raises(TypeError, match="JSON"):
        TrialLog.open(tmp_path / "f.json", Space(act=Choice([torch.relu, torch.tanh])),
                      "random", 0)
    with pytest.raises(TypeError, match="JSON"):
        search(calls.append, Space(act=Choice([torch.relu, torch.tanh])), n_trials=1,
               method="random", log=tmp_path / "g.json", progress=False)
    assert calls == []  # refused before the objective ran
    # in memory, any options still work
    r = search(lambda p: 0.0, Space(act=Choice([torch.relu, torch.tanh])), n_trials=2,
               method="random", progress=False)
    assert r.trials[0].params["act"] in (torch.relu, torch.tanh)
