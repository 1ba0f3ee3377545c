"""The Learner as the course's notebooks call it: one metric alone (``metrics=error_rate``),
``fit_one_cycle(max_lr=..., moms=(0.8, 0.7))`` and ``learn.to_fp16()`` after construction;
each against the spelling fastext had before (a metric list, ``lr_max``, three momenta,
``precision=`` at construction)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastext.learner import DataLoaders, Learner
from fastext.learner.callbacks import Recorder
from fastext.learner.metrics import FBeta, accuracy, error_rate


def _dls() -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 4, generator=g)
    y = (x.sum(1) > 0).long()
    return DataLoaders.from_tensors(x[:192], y[:192], x[192:], y[192:], bs=32, device="cpu")


def _model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))


def _fit(learn: Learner, **kw) -> list[float]:
    torch.manual_seed(5)
    learn.fit_one_cycle(2, **kw)
    return learn.validate()


@pytest.mark.parametrize("metric", [error_rate, FBeta(beta=1.0), FBeta])
def test_one_metric_alone_is_a_list_of_one(metric):
    dls = _dls()
    one = Learner(dls, _model(), F.cross_entropy, metrics=metric, quiet=True)
    listed = Learner(dls, _model(), F.cross_entropy, quiet=True,
                     metrics=[metric() if isinstance(metric, type) else metric])
    assert len(one.metrics) == 1
    assert _fit(one, lr_max=1e-2) == _fit(listed, lr_max=1e-2)


def test_max_lr_and_two_momenta_are_the_course_spelling():
    dls = _dls()
    course = Learner(dls, _model(), F.cross_entropy, metrics=accuracy, quiet=True)
    spelled = Learner(dls, _model(), F.cross_entropy, metrics=accuracy, quiet=True)
    assert _fit(course, max_lr=slice(1e-3, 1e-2), moms=(0.8, 0.7)) == _fit(
        spelled, lr_max=slice(1e-3, 1e-2), moms=(0.8, 0.7, 0.8))
    moms = [row[0] for row in course.recorder.group_moms]  # down to 0.7, back up to 0.8
    assert moms[0] == pytest.approx(0.8) and min(moms) == pytest.approx(0.7, abs=1e-3)
    assert moms[-1] == pytest.approx(0.8, abs=5e-3)  # the last batch is just before the end
    with pytest.raises(TypeError, match="not both"):
        course.fit_one_cycle(1, 1e-2, max_lr=1e-2)
    with pytest.raises(ValueError, match="moms"):
        course.fit_one_cycle(1, 1e-2, moms=(0.9,))
    assert Learner(dls, _model(), moms=(0.9, 0.8)).moms == (0.9, 0.8, 0.9)


def test_to_fp16_after_construction_trains_as_precision_fp16():
    dls = _dls()
    built = Learner(dls, _model(), F.cross_entropy, quiet=True, precision="fp16")
    later = Learner(dls, _model(), F.cross_entropy, quiet=True).to_fp16()
    assert later.precision == "fp16" and later.scaler is not None
    assert _fit(built, lr_max=1e-2) == _fit(later, lr_max=1e-2)
    for p, q in zip(built.model.parameters(), later.model.parameters(), strict=True):
        assert p.dtype == q.dtype and torch.equal(p, q)


def test_precision_changes_keep_the_optimizer_state_and_the_fp32_masters():
    dls = _dls()
    learn = Learner(dls, _model(), F.cross_entropy, quiet=True)
    _fit(learn, lr_max=1e-2)
    before = {id(p): {k: v.clone() for k, v in learn.opt.state[p].items()}
              for p in learn.model.parameters()}
    learn.to_fp16()
    assert learn.model[0].weight.dtype == torch.float16
    assert learn.model[1].weight.dtype == torch.float32  # BatchNorm stays fp32
    for p in learn.model.parameters():  # Adam's moments carried over in fp32
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(learn.opt.state[p][k], before[id(p)][k], rtol=0, atol=0)
    _fit(learn, lr_max=1e-3)
    masters = {id(p): learn.opt.state[p]["master"].clone() for p in learn.model.parameters()
               if "master" in learn.opt.state[p]}
    assert len(masters) == 4  # the two Linear layers' weights and biases
    learn.to_fp32()
    assert learn.scaler is None and all(p.dtype == torch.float32 for p in learn.model.parameters())
    for p in learn.model.parameters():
        if id(p) in masters:  # the fp32 masters, not the fp16 rounding of them
            assert torch.equal(p, masters[id(p)]) and "master" not in learn.opt.state[p]
    assert any(not torch.equal(m, m.half().float()) for m in masters.values())
    learn.to_bf16()
    assert learn.precision == "bf16" and learn.model[0].weight.dtype == torch.float32
    _fit(learn, lr_max=1e-3)


def test_precision_cannot_change_during_a_fit():
    class Switch(Recorder.__base__):  # a plain Callback
        def before_epoch(self):
            self.learn.to_fp16()

    learn = Learner(_dls(), _model(), F.cross_entropy, quiet=True, cbs=[Switch()])
    with pytest.raises(RuntimeError, match="during a fit"):
        learn.fit(1)


def test_get_preds_is_a_learner_method():
    learn = Learner(_dls(), _model(), F.cross_entropy, quiet=True)
    probs, targs = learn.get_preds()
    with torch.no_grad():
        learn.model.eval()
        ref = torch.cat([F.softmax(learn.model(x), 1) for x, _ in learn.dls.valid])
    torch.testing.assert_close(probs, ref)
    assert torch.equal(targs, torch.cat([y for _, y in learn.dls.valid]))


def test_a_refused_to_fp16_leaves_the_learner_as_it_was():
    from functools import partial

    from fastext.optim import AdamW, RMSprop

    for opt_func in (torch.optim.SGD, partial(AdamW, flat=True)):
        learn = Learner(_dls(), _model(), F.cross_entropy, quiet=True, opt_func=opt_func)
        _fit(learn, lr_max=1e-2)
        weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
        opt = learn.opt
        with pytest.raises(ValueError):
            learn.to_fp16()
        assert learn.precision == "fp32" and learn.scaler is None and learn.opt is opt
        for k, v in learn.model.state_dict().items():
            assert v.dtype == weights[k].dtype and torch.equal(v, weights[k])
    # an opt_func that binds decoupled_weight_decay keeps the caller's choice
    learn = Learner(_dls(), _model(), quiet=True,
                    opt_func=partial(RMSprop, decoupled_weight_decay=False))
    learn.create_opt()
    assert not any(g.get("decoupled_weight_decay") for g in learn.opt.param_groups)


def test_get_preds_takes_bare_tensor_batches_and_ragged_outputs():
    from fastext.learner.predict import get_preds

    learn = Learner(_dls(), _model(), F.cross_entropy, quiet=True)
    x = torch.randn(12, 4)
    probs, targs = get_preds(learn, dl=[x[:8], x[8:]])  # inputs only, no targets
    learn.model.eval()
    with torch.no_grad():
        torch.testing.assert_close(probs, F.softmax(learn.model(x), 1))
    assert targs is None

    class PerStep(nn.Module):  # (bs, seq, classes): sequence lengths differ between batches
        def forward(self, x):
            return x.unsqueeze(-1).repeat(1, 1, 3)

    seq = Learner(_dls(), PerStep(), lambda p, t: p.sum(), quiet=True)
    batches = [(torch.randn(2, 5), torch.zeros(2, 5)), (torch.randn(2, 1), torch.zeros(2, 1))]
    preds, _ = get_preds(seq, dl=batches, act=lambda t: t * 2)
    assert len(preds) == 4 and preds[0].shape == (5, 3) and preds[3].shape == (1, 3)
    torch.testing.assert_close(preds[3], batches[1][0][1].unsqueeze(-1).repeat(1, 3) * 2)
