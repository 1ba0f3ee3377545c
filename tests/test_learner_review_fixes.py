"""Trainer fixes from a report-only review, each against fastai's behaviour: a cancelled
step still zeroes the gradients, and so on (one test per finding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastext.learner import DataLoaders, Learner
from fastext.learner.callback import Callback, CancelStepException
from fastext.learner.callbacks import GradientAccumulation


class SkipNonFiniteStep(Callback):
    """fastai's 'skip the bad step' pattern."""

    def before_fit(self) -> None:
        self.skipped = 0

    def before_step(self) -> None:
        if not all(torch.isfinite(p.grad).all() for p in self.learn.model.parameters()
                   if p.grad is not None):
            self.skipped += 1
            raise CancelStepException()


def test_a_cancelled_step_still_zeroes_the_gradients():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x.sum(1) > 0).long()
    x[20] = float("nan")  # one bad sample, in the second batch of every epoch
    dls = DataLoaders.from_tensors(x, y, x[32:], y[32:], bs=16, device="cpu", shuffle=False)
    learn = Learner(dls, nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)),
                    F.cross_entropy, quiet=True)
    cb = SkipNonFiniteStep()
    learn.fit(3, 1e-2, cbs=[cb])
    assert cb.skipped == 3  # one per epoch: the NaN gradient did not stay for later batches
    assert int(learn.opt.state[learn.model[0].weight]["step"]) == 3 * 4 - 3
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_gradient_accumulation_still_accumulates():
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])

    def run(bs: int, cbs: list) -> nn.Linear:
        torch.manual_seed(1)
        model = nn.Linear(3, 1)
        d = DataLoaders.from_tensors(x, y, x, y, bs=bs, device="cpu", shuffle=False)
        Learner(d, model, F.mse_loss, quiet=True, opt_func=torch.optim.SGD, wd=0).fit(
            2, 0.1, cbs=cbs)
        return model

    acc, whole = run(16, [GradientAccumulation(n_acc=32)]), run(32, [])
    torch.testing.assert_close(acc.weight, whole.weight)


def _linear(tmp_path=None, n=64, bs=16, **kw) -> Learner:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    dls = DataLoaders.from_tensors(x, y, x, y, bs=bs, device="cpu", **kw)
    torch.manual_seed(1)
    return Learner(dls, nn.Linear(3, 1), F.mse_loss, quiet=True, path=tmp_path or ".")


class Interrupt(Callback):
    def after_batch(self) -> None:
        if self.learn.iter == 1:
            raise KeyboardInterrupt


def test_an_interrupted_fit_drops_pending_gradients_and_closes_the_log(tmp_path):
    from fastext.learner.callbacks import CSVLogger

    learn = _linear(tmp_path)
    log = CSVLogger()
    with pytest.raises(KeyboardInterrupt):
        learn.fit(1, 0.1, cbs=[GradientAccumulation(n_acc=64), log, Interrupt()])
    assert all(p.grad is None or not p.grad.any() for p in learn.model.parameters())
    assert log._file is None  # closed, not leaked to the next fit


def test_load_takes_a_bare_state_dict(tmp_path):
    learn = _linear(tmp_path)
    other = nn.Linear(3, 1)
    (tmp_path / "models").mkdir()
    torch.save(other.state_dict(), tmp_path / "models" / "plain.pth")
    learn.load("plain")
    torch.testing.assert_close(learn.model.weight, other.weight)


def test_exp_rmspe_is_the_whole_set_value():
    from fastext.learner.metrics import exp_rmspe

    torch.manual_seed(0)
    t = torch.rand(50, 1) * 3 + 5  # log sales
    p = t + 0.2 * torch.randn(50, 1)
    dls = DataLoaders.from_tensors(p, t, p, t, bs=8, valid_bs=16, device="cpu")
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(1.0), model.bias.zero_()  # the identity: pred == p
    learn = Learner(dls, model, F.mse_loss, metrics=exp_rmspe, quiet=True)
    ref = ((t.double().exp() - p.double().exp()) / t.double().exp()).square().mean().sqrt()
    assert learn.validate()[1] == pytest.approx(float(ref), rel=1e-5)


def test_callback_names_are_fastais():
    from fastext.learner.callbacks import CSVLogger, PreciseBN, TerminateOnNaN

    assert [c().name for c in (CSVLogger, PreciseBN, TerminateOnNaN)] == [
        "csv_logger", "precise_bn", "terminate_on_na_n"]
    learn = _linear()
    learn.add_cb(CSVLogger())
    assert isinstance(learn.csv_logger, CSVLogger)


@pytest.mark.parametrize("n, batches", [(65, 4), (64, 4), (16, 1), (10, 1)])
def test_training_loaders_drop_a_last_partial_batch(n, batches):
    from torch.utils.data import TensorDataset

    x = torch.randn(n, 2)
    for dls in (DataLoaders.from_tensors(x, x, x, x, bs=16, device="cpu"),
                DataLoaders.from_dsets(TensorDataset(x, x), TensorDataset(x, x), bs=16,
                                       device="cpu")):
        assert len(dls.train) == batches and len(list(dls.train)) == batches
        assert len(dls.valid) == -(-n // 32)  # validation keeps every sample
    assert len(DataLoaders.from_tensors(x, x, x, x, bs=16, drop_last=False).train) == -(-n // 16)


def test_learner_decays_rmsprop_decoupled_as_fastai():
    """fastai's true_wd: RMSprop's step does not depend on the loss's scale, so neither may
    the weight decay's pull (coupled L2 swamped a loss divided by 1000)."""
    from fastext.optim import RMSprop

    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([[3.0, -2.0, 1.5, 4.0]]).T
    dls = DataLoaders.from_tensors(x[:192], y[:192], x[192:], y[192:], bs=32, device="cpu",
                                   shuffle=False)
    weights = []
    for scale in (1.0, 1e-3):
        torch.manual_seed(1)
        learn = Learner(dls, nn.Linear(4, 1), lambda p, t, s=scale: F.mse_loss(p, t) * s,
                        opt_func=RMSprop, quiet=True)
        learn.fit_one_cycle(5, 3e-2)
        assert all(g["decoupled_weight_decay"] for g in learn.opt.param_groups)
        weights.append(learn.model.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-3, atol=1e-3)
