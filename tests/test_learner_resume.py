"""Checkpoints and resuming: hyper-parameters given as numpy scalars still give checkpoints
that ``torch.load(weights_only=True)`` reads, the callbacks' states (SaveModel's and
EarlyStopping's best values, GradientAccumulation's pending gradients) go into checkpoints so
that an interrupted and resumed fit ends where the uninterrupted one does, and SaveModel with
``reset_on_fit=False`` ends a fit that never improves on the best weights (CPU, tiny models)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from learner_helpers import Scripted
from torch import nn

import fastext
from fastext.learner import (
    Callback,
    CancelFitException,
    DataLoaders,
    EarlyStopping,
    GradientAccumulation,
    Learner,
    SaveModel,
)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    pass


def toy_dls() -> DataLoaders:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    return DataLoaders.from_tensors(x[:192], y[:192], x[192:], y[192:], bs=32, device="cpu")


def toy_learner(path, seed: int = 0, **kw) -> Learner:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    return Learner(toy_dls(), model, F.cross_entropy, quiet=True, path=path, **kw)


def assert_same_weights(a: Learner, b: Learner) -> None:
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(p, q)


class Interrupt(Callback):
    """Ends the fit after epoch ``at``, once every other callback is done with the epoch (as
    a run killed between epochs), saving ``learn.save(save)`` first when ``save`` is given."""

    order = 90

    def __init__(self, at: int, save: str | None = None) -> None:
        self.at, self.save = at, save

    def after_epoch(self) -> None:
        if self.learn.epoch == self.at:
            if self.save is not None:
                self.learn.save(self.save)
            raise CancelFitException


# -- numpy scalars in the param groups -------------------------------------------------------


def test_numpy_hyper_parameters_give_weights_only_checkpoints(tmp_path):
    """lr and wd from numpy (a sweep over ``np.linspace``) go into the param groups as Python
    floats: the checkpoint loads with ``weights_only=True`` and SaveModel can reload
    what it wrote."""
    wd, lr = np.linspace(0.0, 0.1, 2)[1], np.float32(1e-2)
    learn = toy_learner(tmp_path, wd=wd, lr=np.float64(1e-3))
    learn.create_opt()
    assert all(type(g["lr"]) is float for g in learn.opt.param_groups)
    learn.fit(2, lr, wd=np.float64(0.05), cbs=[SaveModel(fname="best")])
    for g in learn.opt.param_groups:
        assert type(g["lr"]) is float and type(g["weight_decay"]) is float
    torch.load(learn.save("m"), weights_only=True)
    toy_learner(tmp_path, seed=1).load("m")
    # wd set by set_hypers, and numpy betas from the optimizer's partial
    opt = functools.partial(fastext.optim.AdamW, betas=(np.float64(0.9), np.float64(0.99)))
    learn = toy_learner(tmp_path, opt_func=opt)
    learn.set_hypers(lr=1e-2, wd=np.float32(0.01))
    assert learn.opt.param_groups[0]["betas"] == (0.9, 0.99)
    assert all(type(b) is float for b in learn.opt.param_groups[0]["betas"])
    assert type(learn.opt.param_groups[0]["weight_decay"]) is float
    torch.load(learn.save("m2"), weights_only=True)


def test_a_tensor_lr_stays_a_tensor(tmp_path):
    opt = functools.partial(torch.optim.AdamW, foreach=False)
    learn = toy_learner(tmp_path, opt_func=opt, lr=torch.tensor(1e-3))
    learn.create_opt()
    assert all(isinstance(g["lr"], torch.Tensor) for g in learn.opt.param_groups)


# -- callback state in checkpoints -------------------------------------------------------------

#: two good epochs, then a too high lr makes the model worse
LRS = [1e-2, 1e-2, 5.0, 5.0]


class EpochLr(Callback):
    def before_epoch(self) -> None:
        self.learn.set_hypers(lr=LRS[self.learn.epoch])


def test_resumed_save_model_keeps_the_best_of_the_epochs_before(tmp_path):
    """Interrupted after epoch 1 (the best) and resumed: the worse epochs 2 and 3 neither
    overwrite the best checkpoint nor end up loaded at the end."""
    full = toy_learner(tmp_path / "full")
    ref = SaveModel(fname="best")
    full.fit(4, 1e-2, cbs=[EpochLr(), ref])
    assert ref.best_epoch == 1

    part = toy_learner(tmp_path / "run")
    part.fit(4, 1e-2, cbs=[EpochLr(), SaveModel(fname="best"), Interrupt(1, save="ckpt")])
    resumed = toy_learner(tmp_path / "run", seed=9).load("ckpt")
    save = SaveModel(fname="best")
    resumed.fit(4, 1e-2, cbs=[EpochLr(), save], start_epoch=2)
    assert (save.best, save.best_epoch) == (ref.best, ref.best_epoch)
    assert save.saved == []  # nothing beat the best of epochs 0 and 1
    assert_same_weights(full, resumed)
    on_disk = torch.load(tmp_path / "run" / "models" / "best.pth", weights_only=True)
    for k, v in full.model.state_dict().items():
        assert torch.equal(on_disk["model"][k], v)


def test_resumed_early_stopping_stops_where_the_uninterrupted_fit_does(tmp_path):
    """Checkpoints from SaveModel(every_epoch=True), which runs before EarlyStopping, still
    hold EarlyStopping's state after that epoch: the tracker judges an epoch as soon as its
    validation is in."""
    values = [0.5, 0.9, 0.7, 0.8, 0.6, 0.95, 0.99]  # higher is better: best at 1, stop at 4

    def cbs() -> list[Callback]:
        return [SaveModel(fname="ep", every_epoch=True),
                EarlyStopping(monitor="scripted", patience=3)]

    full = toy_learner(tmp_path, metrics=[Scripted(values)])
    full.fit(7, 1e-2, cbs=[*cbs()])
    assert [row[0] for row in full.recorder.values] == [0, 1, 2, 3, 4]

    part = toy_learner(tmp_path, metrics=[Scripted(values)])
    part.fit(7, 1e-2, cbs=[*cbs(), Interrupt(2)])  # killed after epoch 2
    resumed = toy_learner(tmp_path, seed=9, metrics=[Scripted(values[3:])]).load("ep_2")
    early = cbs()
    resumed.fit(7, 1e-2, cbs=early, start_epoch=3)
    assert early[1].stopped_epoch == 4 and early[1].best == 0.9
    assert [row[0] for row in resumed.recorder.values] == [3, 4]
    assert_same_weights(full, resumed)


@pytest.mark.parametrize("kind", ["fp32", "flat", "fp16"])
def test_resume_in_the_middle_of_an_accumulation_is_bit_identical(tmp_path, kind):
    """n_acc=128 on 192 samples an epoch: after epoch 0, 64 samples' gradients wait for
    the next step; the checkpoint carries them and the count."""
    kw = {"fp32": {}, "flat": {"opt_func": functools.partial(fastext.optim.AdamW, flat=True)},
          "fp16": {"precision": "fp16"}}[kind]
    full = toy_learner(tmp_path, **kw)
    acc_full = GradientAccumulation(n_acc=128)
    full.fit(3, 1e-2, cbs=[acc_full])

    part = toy_learner(tmp_path, **kw)
    part.fit(3, 1e-2, cbs=[GradientAccumulation(n_acc=128), Interrupt(0, save="ckpt")])
    resumed = toy_learner(tmp_path, seed=9, **kw).load("ckpt")
    acc = GradientAccumulation(n_acc=128)
    resumed.fit(3, 1e-2, cbs=[acc], start_epoch=1)
    assert acc.n_steps == acc_full.n_steps == 4
    assert_same_weights(full, resumed)


def test_callback_states_in_the_checkpoint_load_weights_only(tmp_path):
    """Keys: class name and monitor (trackers), class name and fname (SaveModel), ``#2`` for
    a second callback with the same key; a checkpoint without callback states (an older
    one) still resumes; a learner saved before any fit saves no tracker state."""
    learn = toy_learner(tmp_path)
    cbs = [SaveModel(fname="best"), EarlyStopping(patience=5), EarlyStopping(patience=9),
           GradientAccumulation(n_acc=128), Interrupt(0, save="ckpt")]
    learn.fit(3, 1e-2, cbs=cbs)
    state = torch.load(tmp_path / "models" / "ckpt.pth", weights_only=True)
    saved = state["callbacks"]
    assert set(saved) == {"SaveModel:best", "EarlyStopping:valid_loss",
                          "EarlyStopping:valid_loss#2", "GradientAccumulation"}
    assert saved["SaveModel:best"] == {"best": cbs[0].best, "best_epoch": 0}
    assert saved["EarlyStopping:valid_loss"] == {"best": cbs[0].best, "wait": 0}
    acc = saved["GradientAccumulation"]
    assert acc["count"] == 64 and len(acc["grads"]) == 4
    del state["callbacks"]
    torch.save(state, tmp_path / "old.pth")
    toy_learner(tmp_path).load(tmp_path / "old.pth").fit(2, 1e-2, start_epoch=1)
    # trackers that never ran a fit have nothing to save
    fresh = toy_learner(tmp_path, cbs=[SaveModel(), EarlyStopping(), GradientAccumulation()])
    saved = torch.load(fresh.save("fresh"), weights_only=True)["callbacks"]
    assert saved == {"GradientAccumulation": {"count": 0, "n_steps": 0}}


# -- SaveModel(reset_on_fit=False) across fits -------------------------------------------------


def test_save_model_without_reset_reloads_the_best_of_an_earlier_fit(tmp_path):
    """A second fit that never beats the best of the first still ends on the best weights:
    best_epoch is kept as long as best is."""
    learn = toy_learner(tmp_path)
    save = learn.add_cb(SaveModel(fname="best", reset_on_fit=False))
    learn.fit(3, 1e-2)
    best, best_epoch = save.best, save.best_epoch
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(2, 1.0)  # too high an lr: every epoch is worse
    assert save.saved == [] and (save.best, save.best_epoch) == (best, best_epoch)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, weights[k])
    assert learn.validate()[0] == best
