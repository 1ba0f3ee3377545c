"""The standard callbacks on the real Learner with tiny synthetic problems (CPU, < 5 s each)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from learner_helpers import Scripted
from torch import nn

from fastext.amp import LossScaler
from fastext.learner import Callback, DataLoaders, Learner
from fastext.learner.callbacks import (
    CSVLogger,
    EarlyStopping,
    GradientAccumulation,
    GradientClip,
    ProgressCallback,
    Recorder,
    SaveModel,
    TerminateOnNaN,
)
from fastext.learner.metrics import accuracy

W_TRUE = torch.tensor([1.0, -2.0, 0.5, 3.0])


def regression_dls(n: int = 96, bs: int = 16, scale: float = 1.0, shuffle: bool = True,
                   n_valid: int = 40) -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + n_valid, 4, generator=g)
    y = (x @ W_TRUE + 0.1 * torch.randn(n + n_valid, generator=g))[:, None] * scale
    return DataLoaders.from_tensors(x[:n], y[:n], x[n:], y[n:], bs=bs, valid_bs=16,
                                   shuffle=shuffle, device="cpu", drop_last=False)


def linear_learner(dls: DataLoaders | None = None, **kw) -> Learner:
    torch.manual_seed(0)
    kw.setdefault("quiet", True)
    return Learner(dls or regression_dls(), nn.Linear(4, 1), F.mse_loss, **kw)


# -- Recorder ---------------------------------------------------------------------------


def test_recorder_losses_smooth_loss_and_epoch_rows():
    dls = regression_dls(n=100, bs=16)  # 7 batches, the last of 4 samples
    learn = linear_learner(dls, metrics=[F.l1_loss])
    learn.fit(2, lr=0.05)
    rec = learn.recorder
    assert rec.metric_names == ["epoch", "train_loss", "valid_loss", "l1_loss", "time"]
    assert len(rec.losses) == len(rec.smooth_losses) == 14 and rec.iters == [7, 14]

    losses = np.array(rec.losses)
    avg, smooth = 0.0, []
    for i, loss in enumerate(losses, 1):  # debiased EMA, beta 0.98
        avg = 0.98 * avg + 0.02 * loss
        smooth.append(avg / (1 - 0.98**i))
    np.testing.assert_allclose(rec.smooth_losses, smooth, rtol=1e-5)
    assert learn.smooth_loss.item() == pytest.approx(smooth[-1], rel=1e-5)

    sizes = np.array([16] * 6 + [4])  # train_loss: batch-size weighted mean of the epoch
    for epoch, row in enumerate(rec.values):
        assert row[0] == epoch
        want = (losses[7 * epoch:7 * epoch + 7] * sizes).sum() / 100
        assert row[1] == pytest.approx(want, rel=1e-6)
        assert row[-1] > 0
    assert rec.values[-1][2:4] == pytest.approx(learn.validate(), rel=1e-6)
    assert learn.final_record == pytest.approx(rec.values[-1][1:4])


def test_recorder_hypers_per_param_group_follow_the_schedule():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    learn = Learner(regression_dls(), model, F.mse_loss, quiet=True)
    learn.fit_one_cycle(2, slice(1e-3, 1e-2))
    rec = learn.recorder
    n = 2 * len(learn.dls.train)
    layer = [g["layer_group"] for g in learn.opt.param_groups]
    assert len(rec.group_lrs) == len(rec.group_moms) == n
    assert all(len(row) == len(layer) for row in rec.group_lrs)
    peak = max(range(n), key=lambda i: rec.lrs[i])
    for j, lg in enumerate(layer):  # body at 1e-3, head at 1e-2 at the peak
        assert rec.group_lrs[peak][j] == pytest.approx([1e-3, 1e-2][lg], rel=0.05)
    assert rec.lrs == [row[-1] for row in rec.group_lrs]
    assert rec.moms[0] == pytest.approx(0.95) and min(rec.moms) < 0.86  # betas[0]


def test_recorder_reads_sgd_momentum():
    learn = linear_learner(opt_func=lambda ps, lr: torch.optim.SGD(ps, lr=lr, momentum=0.7))
    learn.fit(1, lr=0.01)
    assert set(learn.recorder.moms) == {0.7} and set(learn.recorder.lrs) == {0.01}


def test_recorder_marks_cancelled_validation_as_nan():
    class SkipValid(Callback):
        def before_validate(self):
            from fastext.learner import CancelValidException

            raise CancelValidException()

    learn = linear_learner()
    learn.fit(1, lr=0.01, cbs=[SkipValid()])
    row = learn.recorder.values[0]
    assert not math.isnan(row[1]) and math.isnan(row[2])


def test_recorder_plots_are_pngs(tmp_path):
    learn = linear_learner()
    learn.fit_one_cycle(2, 1e-2)
    for path in (learn.recorder.plot_loss(tmp_path / "loss.png", skip_start=2),
                 learn.recorder.plot_sched(tmp_path / "sub" / "sched.png")):
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recorder_keeps_per_batch_numbers_on_the_device_until_read():
    learn = linear_learner()
    learn.fit(1, lr=0.01)
    rec = learn.recorder
    assert isinstance(learn.smooth_loss, torch.Tensor)
    assert rec._losses._pending == [] and len(rec._losses.host) == len(learn.dls.train)


# -- ProgressCallback -------------------------------------------------------------------


def test_progress_prints_a_table_line_per_epoch(capsys):
    learn = linear_learner(quiet=None, metrics=[F.l1_loss])
    learn.fit(3, lr=0.01)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "l1_loss", "time"]
    assert len(lines) == 4
    for epoch, (line, row) in enumerate(zip(lines[1:], learn.recorder.values, strict=True)):
        cells = line.split()
        assert cells[0] == str(epoch) and float(cells[2]) == pytest.approx(row[2], abs=1e-6)
        assert ":" in cells[-1]


def test_progress_quiet_prints_nothing(capsys):
    linear_learner(quiet=True).fit(2, lr=0.01)
    assert capsys.readouterr().out == ""


def test_progress_bar_only_on_a_terminal(capsys, monkeypatch):
    learn = linear_learner(quiet=None)
    learn.fit(1, lr=0.01)  # captured stdout is no terminal: table only
    out = capsys.readouterr().out
    assert "it/s" not in out and "epoch 0" not in out
    monkeypatch.setattr(ProgressCallback, "_show_bar", lambda self: True)
    learn.fit(1, lr=0.01)
    out = capsys.readouterr().out
    assert "epoch 0" in out and "valid" in out and learn.progress.bar is None


def test_progress_bar_needs_tqdm(capsys, monkeypatch):
    """On a terminal without tqdm installed (it is an optional dependency) the fit prints
    its table and draws no bar, instead of failing on the import."""
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tqdm" else real(name, *a))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # an import would raise
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    learn = linear_learner(quiet=None)
    assert not learn.progress._show_bar()
    learn.fit(1, lr=0.01)
    assert "train_loss" in capsys.readouterr().out


def test_progress_bar_of_validate_counts_the_given_loader(capsys, monkeypatch):
    """validate(dl) fires the validate events: the bar counts the batches of ``dl``, and no
    table line is printed."""
    learn = linear_learner(quiet=None)  # valid loader: 3 batches
    monkeypatch.setattr(ProgressCallback, "_show_bar", lambda self: True)
    x, y = learn.dls.valid.dataset
    learn.validate(DataLoaders.from_tensors(x, y, x, y, bs=40, device="cpu").valid)  # 1 batch
    out = capsys.readouterr().out
    assert "valid" in out and "0/1" in out and "/3" not in out and "epoch" not in out
    assert learn.progress.bar is None

# -- EarlyStopping ----------------------------------------------------------------------


def test_early_stopping_stops_after_patience_epochs(capsys):
    metric = Scripted([0.1, 0.3, 0.2, 0.25, 0.9, 0.9, 0.9])  # higher is better
    learn = linear_learner(metrics=[metric])
    stop = EarlyStopping(monitor="scripted", patience=2)
    learn.fit(7, lr=0.01, cbs=[stop])
    assert len(learn.recorder.values) == 4 and stop.stopped_epoch == 3
    assert stop.best == 0.3
    assert "early stopping at epoch 3" in capsys.readouterr().out


def test_early_stopping_min_delta_and_loss_names_are_lower_is_better():
    metric = Scripted([1.0, 0.95, 0.5, 0.45, 0.44], name="my_loss")
    learn = linear_learner(metrics=[metric])
    stop = EarlyStopping(monitor="my_loss", min_delta=0.1, patience=1)
    learn.fit(5, lr=0.01, cbs=[stop])
    assert stop.stopped_epoch == 1  # 0.95 is not 0.1 better than 1.0
    metric = Scripted([1.0, 0.95, 0.5, 0.45, 0.43], name="my_loss")
    learn = linear_learner(metrics=[metric])
    stop = EarlyStopping(monitor="my_loss", min_delta=0.01, patience=1)
    learn.fit(5, lr=0.01, cbs=[stop])
    assert stop.stopped_epoch is None and len(learn.recorder.values) == 5


def test_early_stopping_custom_comp_and_unknown_monitor():
    metric = Scripted([5.0, 4.0, 6.0, 3.0])
    learn = linear_learner(metrics=[metric])
    stop = EarlyStopping(monitor="scripted", comp=lambda a, b: a < b, patience=1)
    learn.fit(4, lr=0.01, cbs=[stop])
    assert stop.stopped_epoch == 2
    with pytest.raises(ValueError, match="cannot monitor"):
        linear_learner().fit(1, cbs=[EarlyStopping(monitor="accuracy")])


def test_early_stopping_on_valid_loss_of_a_stalled_fit():
    learn = linear_learner()
    learn.fit(10, lr=0.0, cbs=[EarlyStopping(patience=3)])  # lr 0: never improves
    assert len(learn.recorder.values) == 4


# -- SaveModel --------------------------------------------------------------------------


class Snapshot(Callback):
    order = 80

    def before_fit(self):
        self.states = []

    def after_epoch(self):
        self.states.append({k: v.clone() for k, v in self.learn.model.state_dict().items()})


def test_save_model_saves_on_improvement_and_loads_the_best(tmp_path):
    metric = Scripted([0.5, 0.9, 0.7, 0.8])  # best at epoch 1
    learn = linear_learner(metrics=[metric], path=tmp_path)
    save, snap = SaveModel(monitor="scripted", fname="best"), Snapshot()
    learn.fit(4, lr=0.05, cbs=[save, snap])
    assert save.best_epoch == 1 and len(save.saved) == 2
    assert (tmp_path / "models" / "best.pth").exists()
    for k, v in learn.model.state_dict().items():  # loaded back at the end
        torch.testing.assert_close(v, snap.states[1][k])
    assert not torch.equal(snap.states[1]["weight"], snap.states[3]["weight"])
    ckpt = torch.load(tmp_path / "models" / "best.pth", weights_only=True)
    assert "opt" in ckpt and ckpt["epoch"] == 1


def test_save_model_at_end_saves_and_keeps_the_last_weights(tmp_path):
    """fastai's at_end: the weights the fit ends with are saved as fname and stay loaded,
    even when an earlier epoch was better."""
    learn = linear_learner(metrics=[Scripted([0.9, 0.1])], path=tmp_path)  # best: epoch 0
    snap = Snapshot()
    save = SaveModel(monitor="scripted", with_opt=False, at_end=True)
    learn.fit(2, lr=0.05, cbs=[save, snap])
    assert save.best_epoch == 0
    torch.testing.assert_close(learn.model.weight, snap.states[1]["weight"])
    ckpt = torch.load(tmp_path / "models" / "model.pth", weights_only=True)
    assert "opt" not in ckpt
    torch.testing.assert_close(ckpt["model"]["weight"], snap.states[1]["weight"])


def test_save_model_every_epoch(tmp_path):
    learn = linear_learner(path=tmp_path)
    learn.fit(3, lr=0.05, cbs=[SaveModel(fname="ep", every_epoch=True)])
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "ep_0.pth", "ep_1.pth", "ep_2.pth"]
    other = linear_learner(path=tmp_path).load("ep_2")
    torch.testing.assert_close(other.model.weight, learn.model.weight)


# -- TerminateOnNaN ---------------------------------------------------------------------


class InjectNaN(Callback):
    """Turns the predictions of training batch ``at`` into NaN."""

    def __init__(self, at: int) -> None:
        self.at = at

    def after_pred(self):
        if self.learn.training and self.learn.train_iter == self.at:
            self.learn.pred = self.learn.pred * math.nan


def test_terminate_on_nan_stops_an_injected_nan(capsys):
    learn = linear_learner()
    learn.fit(3, lr=0.01, cbs=[InjectNaN(at=8), TerminateOnNaN()])  # batch 2 of epoch 1
    out = capsys.readouterr().out
    assert "TerminateOnNaN: the training loss is nan at epoch 1, batch 2" in out
    assert learn.nan_stopped and learn.train_iter == 8
    assert len(learn.recorder.values) == 1  # epoch 1 never finished
    assert torch.isfinite(learn.model.weight).all()  # the NaN batch never stepped


def test_terminate_on_nan_stops_a_diverging_run(capsys):
    learn = linear_learner(opt_func=torch.optim.SGD, wd=0.0)
    learn.fit(20, lr=1e10, cbs=[TerminateOnNaN()])
    assert learn.nan_stopped and learn.epoch < 19
    assert "stopping the fit" in capsys.readouterr().out


def test_terminate_on_nan_leaves_a_finite_run_alone():
    learn = linear_learner()
    learn.fit(2, lr=0.01, cbs=[TerminateOnNaN()])
    assert learn.nan_stopped is False and len(learn.recorder.values) == 2


# -- GradientClip -----------------------------------------------------------------------


class GradNorms(Callback):
    order = 30  # after GradientClip's before_step

    def before_fit(self):
        self.norms = []

    def before_step(self):
        grads = [p.grad for p in self.learn.model.parameters() if p.grad is not None]
        scale = self.learn.scaler.get_scale() if self.learn.scaler is not None else 1.0
        self.norms.append(torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])).item() / scale)


def test_gradient_clip_bounds_the_norm():
    dls = regression_dls(scale=50.0)
    unclipped = GradNorms()
    linear_learner(dls).fit(1, lr=1e-3, cbs=[unclipped])
    assert max(unclipped.norms) > 10  # clipping has something to do
    clip, norms = GradientClip(max_norm=0.5), GradNorms()
    linear_learner(dls).fit(2, lr=1e-3, cbs=[clip, norms])
    assert max(norms.norms) <= 0.5 * (1 + 1e-5)
    assert clip.last_norm.item() > 0.5  # the norm before clipping


def test_gradient_clip_with_a_loss_scaler_clips_the_true_norm():
    """With a scaler the gradients stay scaled (fp16 would flush small values if divided
    in place); the clipped norm is the unscaled one."""
    dls = regression_dls(scale=0.05)
    ref = GradientClip(max_norm=0.1)
    linear_learner(dls).fit(1, lr=1e-3, cbs=[ref])
    clip, norms = GradientClip(max_norm=0.1), GradNorms()
    learn = linear_learner(dls, precision="fp16")
    learn.scaler = LossScaler("cpu", init_scale=2.0**8)  # small enough not to overflow fp16
    learn.fit(1, lr=1e-3, cbs=[clip, norms])
    assert clip.last_norm.item() > 0.1  # clipping had something to do
    # the norm clipping saw is that of the true (unscaled) gradient, not 2**8 times it;
    # GradNorms divides the still-scaled gradients by the scale
    assert clip.last_norm.item() == pytest.approx(ref.last_norm.item(), rel=0.02)
    assert max(norms.norms) <= 0.1 * (1 + 2e-3)
    assert learn.scaler.get_scale() == 2.0**8  # no overflow, no skipped step


# -- GradientAccumulation ---------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
def test_gradient_accumulation_equals_a_doubled_batch(shuffle):
    bs = 8

    def sgd(ps, lr):
        return torch.optim.SGD(ps, lr=lr, momentum=0.0)

    acc = GradientAccumulation(n_acc=2 * bs)
    small = linear_learner(regression_dls(bs=bs, shuffle=shuffle), opt_func=sgd, wd=0.0)
    small.fit(2, lr=0.05, cbs=[acc])
    big = linear_learner(regression_dls(bs=2 * bs, shuffle=shuffle), opt_func=sgd, wd=0.0)
    big.fit(2, lr=0.05)
    assert acc.n_steps == 2 * len(big.dls.train)
    for p, q in zip(small.model.parameters(), big.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    plain = linear_learner(regression_dls(bs=bs, shuffle=shuffle), opt_func=sgd, wd=0.0)
    plain.fit(2, lr=0.05)
    assert not torch.allclose(plain.model.weight, big.model.weight, rtol=1e-4)
    # the recorded loss is each batch's own mean loss, not the scaled one: two halves
    # average to the doubled batch's loss
    pairs = np.array(small.recorder.losses).reshape(-1, 2).mean(1)
    np.testing.assert_allclose(pairs, big.recorder.losses, rtol=1e-5)


def test_gradient_accumulation_with_clipping_clips_only_the_real_step():
    acc, clip, norms = GradientAccumulation(n_acc=32), GradientClip(0.1), GradNorms()
    learn = linear_learner(regression_dls(bs=16))
    learn.fit(1, lr=1e-3, cbs=[clip, acc, norms])
    assert len(norms.norms) == acc.n_steps == 3  # 96 samples / 32
    assert max(norms.norms) <= 0.1 * (1 + 1e-5)


def test_gradient_accumulation_drops_a_partial_accumulation_at_the_end():
    acc = GradientAccumulation(n_acc=64)
    learn = linear_learner(regression_dls(n=96, bs=16))
    learn.fit(1, lr=1e-3, cbs=[acc])
    assert acc.n_steps == 1 and acc.count == 0
    assert all(p.grad is None or not p.grad.any() for p in learn.model.parameters())


def test_gradient_accumulation_with_a_loss_scaler():
    acc, clip = GradientAccumulation(n_acc=32), GradientClip(1.0)
    learn = linear_learner(regression_dls(scale=0.05), precision="fp16")
    learn.scaler = LossScaler("cpu", init_scale=2.0**8)
    before = learn.model.weight.detach().clone()
    learn.fit(2, lr=1e-2, cbs=[acc, clip])
    assert acc.n_steps == 6 and learn.scaler.get_scale() == 2.0**8
    assert not torch.equal(before, learn.model.weight)


# -- CSVLogger --------------------------------------------------------------------------


def test_csv_logger_writes_the_recorder_rows(tmp_path):
    learn = linear_learner(path=tmp_path, metrics=[F.l1_loss])
    log = CSVLogger()
    learn.fit(3, lr=0.01, cbs=[log])
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,valid_loss,l1_loss,time"
    rows = log.read_log()
    assert len(rows) == 3
    for row, rec in zip(rows, learn.recorder.values, strict=True):
        assert int(row["epoch"]) == rec[0]
        assert float(row["train_loss"]) == rec[1] and float(row["l1_loss"]) == rec[3]
    again = CSVLogger()
    learn.fit(2, lr=0.01, cbs=[again])  # a new fit overwrites
    assert len(again.read_log()) == 2


def test_csv_logger_append(tmp_path):
    learn = linear_learner(path=tmp_path)
    learn.fit(2, lr=0.01, cbs=[CSVLogger("logs/h.csv", append=True)])
    learn.fit(1, lr=0.01, cbs=[CSVLogger("logs/h.csv", append=True)])
    lines = (tmp_path / "logs" / "h.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("epoch,") and lines[3].startswith("0,")


def test_default_callbacks_are_present():
    learn = linear_learner(metrics=[accuracy])
    assert isinstance(learn.recorder, Recorder) and isinstance(learn.progress, ProgressCallback)
    assert [type(c).__name__ for c in learn.cbs] == ["Recorder", "ProgressCallback"]


@pytest.mark.parametrize("fused", [False, True], ids=["BatchNorm2d", "BatchNormReLU2d"])
def test_precise_bn_recomputes_running_stats_with_the_final_weights(fused):
    """After the fit, every BatchNorm's running statistics are those of its input over the
    training set, computed with the final weights (what a momentum average taken while the
    weights moved is not). One training batch, so the average of batch variances is the
    set's unbiased variance whatever the shuffle order."""
    from fastext.learner import PreciseBN
    from fastext.nn import BatchNormReLU2d

    torch.manual_seed(0)
    x = torch.randn(48, 2, 6, 6) * 2 + 1
    y = x.mean((1, 2, 3))[:, None]
    dls = DataLoaders.from_tensors(x, y, x[:16], y[:16], bs=48, device="cpu")
    bn = BatchNormReLU2d(4) if fused else torch.nn.BatchNorm2d(4)
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), bn, torch.nn.Flatten(),
                                torch.nn.Linear(4 * 4 * 4, 1))
    learn = Learner(dls, model, F.mse_loss, quiet=True, cbs=[PreciseBN()])
    learn.fit(3, lr=1e-1)
    with torch.no_grad():
        feats = model[0](x)
    torch.testing.assert_close(bn.running_mean, feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(bn.running_var, feats.var((0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1  # restored
    # Without it, the momentum average of three steps is far from them.
    model2 = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4),
                                 torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 1))
    Learner(dls, model2, F.mse_loss, quiet=True).fit(3, lr=1e-1)
    with torch.no_grad():
        feats2 = model2[0](x)
    assert not torch.allclose(model2[1].running_var, feats2.var((0, 2, 3)), rtol=1e-2)


class TwoInputs(nn.Module):
    """``forward(x_cat, x_cont)``, like the tabular model: batches are (x_cat, x_cont, y)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.bn, self.lin = nn.Embedding(5, 3), nn.BatchNorm1d(2), nn.Linear(5, 1)

    def forward(self, x_cat, x_cont):
        return self.lin(torch.cat([self.emb(x_cat), self.bn(x_cont)], 1))


def test_precise_bn_feeds_the_batches_as_the_learner_does():
    """PreciseBN splits each batch into inputs and target as the Learner does (a model with
    two inputs gets both), so the statistics are those of the second input over the set."""
    from fastext.learner import PreciseBN, TensorLoader

    g = torch.Generator().manual_seed(0)
    xc, xn = torch.randint(0, 5, (64,), generator=g), torch.randn(64, 2, generator=g) * 3 + 1
    y = torch.randn(64, 1, generator=g)
    dls = DataLoaders(TensorLoader((xc, xn, y), bs=16), TensorLoader((xc, xn, y), bs=16),
                      device="cpu")
    torch.manual_seed(0)
    model = TwoInputs()
    learn = Learner(dls, model, F.mse_loss, quiet=True, cbs=[PreciseBN()])
    learn.fit(1, lr=1e-2)
    torch.testing.assert_close(model.bn.running_mean, xn.mean(0))
    # four batches of 16: the average of their unbiased variances
    var = torch.stack([xn[i:i + 16].var(0) for i in range(0, 64, 16)]).mean(0)
    torch.testing.assert_close(model.bn.running_var, var)
    assert model.bn.momentum == 0.1 and not model.training  # restored (validation left eval)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_precise_bn_in_mixed_precision(precision):
    """fp16 models get half inputs and bf16 runs under autocast, as in training."""
    from fastext.learner import PreciseBN

    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(0)) * 3 + 1
    y = x.sum(1, keepdim=True)
    dls = DataLoaders.from_tensors(x, y, x, y, bs=16, shuffle=False, device="cpu")
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 4), nn.BatchNorm1d(4),
                          nn.Linear(4, 1))
    learn = Learner(dls, model, F.mse_loss, quiet=True, precision=precision, cbs=[PreciseBN()])
    learn.fit(1, lr=1e-2)
    torch.testing.assert_close(model[0].running_mean, x.mean(0), rtol=1e-2, atol=1e-2)
    with torch.no_grad(), learn._autocast():
        feats = model[1](model[0](x.half() if precision == "fp16" else x)).float()
    torch.testing.assert_close(model[2].running_mean, feats.mean(0), rtol=2e-2, atol=2e-2)
    assert model[0].momentum == model[2].momentum == 0.1
