"""The LR range test: on a 1,000-image MNIST slice (sweep, suggestions, restore, plot) and the
suggestion functions on synthetic curves with known answers."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch import nn

from fastext.data import load_mnist, normalize
from fastext.learner import Callback, DataLoaders, Learner
from fastext.learner.lr_find import (
    LRFinder,
    SuggestedLRs,
    lr_find,
    minimum,
    slide,
    steep,
    valley,
)
from fastext.optim import AdamW

N_TRAIN, BS = 1000, 64  # 16 batches an epoch: a 100-batch sweep spans 7 epochs


@pytest.fixture(scope="module")
def mnist() -> tuple[torch.Tensor, ...]:
    x, y = load_mnist(split="train")
    x = normalize(x[:N_TRAIN + 200])
    y = y[:N_TRAIN + 200]
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def make_learner(mnist, flat: bool = False, **kwargs) -> Learner:
    torch.manual_seed(0)
    dls = DataLoaders.from_tensors(*mnist, bs=BS, device="cpu")
    # BatchNorm: running statistics are buffers the sweep changes and lr_find must restore.
    # Two children groups -> two layer groups [body, head] for discriminative learning rates.
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.BatchNorm1d(64), nn.ReLU(),
                          nn.Linear(64, 10))
    opt_func = functools.partial(AdamW, flat=flat)
    return Learner(dls, model, nn.functional.cross_entropy, opt_func=opt_func, quiet=True,
                   **kwargs)


def snapshot(learn: Learner) -> dict:
    """Everything lr_find promises to restore, cloned."""
    def clone(obj):
        if isinstance(obj, torch.Tensor):
            return obj.detach().clone()
        if isinstance(obj, dict):
            return {k: clone(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(clone(v) for v in obj)
        return obj

    return {"model": clone(learn.model.state_dict()),
            "opt": None if learn.opt is None else clone(learn.opt.state_dict()),
            "grads": [None if p.grad is None else p.grad.clone()
                      for p in learn.model.parameters()],
            "modes": [m.training for m in learn.model.modules()],
            "rng": torch.get_rng_state(),
            "loop": (learn.epoch, learn.train_iter)}


def assert_same(a, b, where: str = "") -> None:
    """Bit-identical nested structures (tensors compared with torch.equal, dtype included)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            assert_same(u, v, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


class LRSpy(Callback):
    """Records every param group's lr as the optimizer is about to step."""

    order = 100

    def __init__(self) -> None:
        self.seen: list[list[float]] = []

    def before_step(self) -> None:
        self.seen.append([float(g["lr"]) for g in self.learn.opt.param_groups])


def loss_at(res: SuggestedLRs, lr: float) -> float:
    return float(np.interp(math.log(lr), np.log(res.lrs), res.losses))


# -- on MNIST ------------------------------------------------------------------------------------
def test_restores_the_learner_and_sweeps_exponentially(mnist) -> None:
    learn = make_learner(mnist)
    learn.fit(1, lr=slice(1e-4, 1e-2))  # optimizer state, discriminative lrs, eval mode after
    before = snapshot(learn)
    spy = learn.add_cb(LRSpy())
    res = lr_find(learn)
    learn.remove_cb(spy)

    assert_same(before, snapshot(learn))

    # The lr set on the optimizer is exactly the exponential sweep; the body keeps its ratio.
    start, end, num_it = 1e-7, 10.0, 100
    expected = [start * (end / start) ** (i / (num_it - 1)) for i in range(num_it)]
    head = [lrs[-1] for lrs in spy.seen]
    body = [lrs[0] for lrs in spy.seen]
    assert len(head) == len(res.lrs) <= num_it
    for i in (0, 1, 17, 50, len(head) - 1):
        assert head[i] == pytest.approx(expected[i], rel=1e-12)
        assert body[i] == pytest.approx(expected[i] / 100, rel=1e-9)
    assert np.array_equal(res.lrs, head)


def test_suggestions_and_plot(mnist, tmp_path) -> None:
    learn = make_learner(mnist)
    png = tmp_path / "plots" / "lr_find.png"
    res = learn.lr_find(suggest_funcs=(valley, steep, minimum, slide), plot=png)
    assert isinstance(res, SuggestedLRs) and res._fields == ("valley", "steep", "minimum", "slide")
    for name, lr in zip(res._fields, res, strict=True):
        assert 1e-7 <= lr <= 10, name
        assert loss_at(res, lr) < res.losses[0], name
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_runs_num_it_batches_over_epochs_without_validation(mnist) -> None:
    learn = make_learner(mnist)
    valid_batches = []

    class Watch(Callback):
        def after_loss(self) -> None:
            if not self.learn.training:
                valid_batches.append(self.learn.iter)

    learn.add_cb(Watch())
    res = lr_find(learn, start_lr=1e-6, end_lr=1e-3, num_it=40)  # 40 batches: 3 epochs of 16
    assert len(res.lrs) == len(res.raw_losses) == 40
    assert res.lrs[-1] == pytest.approx(1e-3, rel=1e-12)  # the sweep ends at end_lr
    assert valid_batches == []
    assert learn.opt is None  # as before: the next fit creates a fresh optimizer


def test_smoothed_loss_is_the_debiased_ema(mnist) -> None:
    learn = make_learner(mnist)
    res = lr_find(learn, num_it=20, suggest_funcs=())
    assert res._fields == ()
    avg, beta = 0.0, 0.98
    for i, raw in enumerate(res.raw_losses):
        avg = beta * avg + (1 - beta) * raw
        assert res.losses[i] == pytest.approx(avg / (1 - beta ** (i + 1)), rel=1e-12)


def test_stops_early_on_divergence(mnist) -> None:
    learn = make_learner(mnist)
    res = lr_find(learn, start_lr=1e-5, end_lr=1e8, num_it=100)
    n = len(res.lrs)
    assert n < 100
    assert res.losses[-1] > 4 * res.losses.min() or not math.isfinite(res.losses[-1])
    assert (res.losses[:-1] <= 4 * np.minimum.accumulate(res.losses[:-1])).all()
    assert 1e-5 <= res.valley <= res.lrs[-1]
    # Without stop_div it runs the whole sweep.
    res = lr_find(learn, start_lr=1e-5, end_lr=1e8, num_it=40, stop_div=False)
    assert len(res.lrs) == 40


def test_non_finite_loss(mnist) -> None:
    """A NaN loss ends the sweep (stop_div) or, without it, cuts the curve the suggestions
    see; NaN from the first batch is an error, and the learner is still restored."""
    calls = []

    def nan_after(n: int):
        def loss(pred, y):
            calls.append(None)
            out = nn.functional.cross_entropy(pred, y)
            return out * math.nan if len(calls) > n else out
        return loss

    learn = make_learner(mnist)
    learn.loss_func = nan_after(30)
    res = lr_find(learn, num_it=40, suggest_funcs=(valley, steep, minimum, slide))
    assert len(res.lrs) == 31 and math.isnan(res.losses[-1])
    assert all(1e-7 <= lr <= res.lrs[29] for lr in res)

    calls.clear()
    res = lr_find(learn, num_it=40, stop_div=False, suggest_funcs=(minimum,))
    assert len(res.lrs) == 40 and np.isnan(res.losses[30:]).all()
    assert res.minimum <= res.lrs[29]

    calls.clear()
    learn.loss_func = nan_after(0)
    before = snapshot(learn)
    with pytest.raises(RuntimeError, match="no finite loss"):
        lr_find(learn, num_it=10)
    assert_same(before, snapshot(learn))


@pytest.mark.parametrize("flat", [False, True])
def test_fit_after_lr_find_equals_fit_without(mnist, flat: bool) -> None:
    """The learner is as if lr_find never ran: the same training gives the same bits,
    with a fresh optimizer (created by the sweep, then dropped) or a trained one."""
    def train(with_lr_find: bool) -> dict:
        learn = make_learner(mnist, flat=flat)
        learn.create_opt()  # state-less optimizer: the flat one must not keep sweep state
        if with_lr_find:
            lr_find(learn, num_it=20)
        learn.fit(1, lr=1e-3)
        if with_lr_find:
            lr_find(learn, num_it=20)
        learn.fit(1, lr=1e-3)
        return snapshot(learn)

    assert_same(train(False), train(True))


def test_restores_when_the_sweep_raises(mnist) -> None:
    learn = make_learner(mnist)
    learn.fit(1, lr=1e-3)
    before = snapshot(learn)

    class Boom(Callback):
        def after_step(self) -> None:
            if self.learn.train_iter == 5:
                raise RuntimeError("boom")

    boom = learn.add_cb(Boom())
    with pytest.raises(RuntimeError, match="boom"):
        lr_find(learn)
    learn.remove_cb(boom)
    assert_same(before, snapshot(learn))
    assert not any(isinstance(cb, LRFinder) for cb in learn.cbs)


def test_suggestions_are_clipped_to_the_swept_range(mnist) -> None:
    def too_low(lrs: np.ndarray, losses: np.ndarray) -> float:
        return 0.0

    def too_high(lrs: np.ndarray, losses: np.ndarray) -> float:
        return 1e9

    learn = make_learner(mnist)
    res = learn.lr_find(start_lr=1e-5, end_lr=1e-1, num_it=20,
                        suggest_funcs=(too_low, too_high, functools.partial(slide, lr_diff=3),
                                       slide))
    assert res._fields == ("too_low", "too_high", "slide", "slide_2")
    assert res.too_low == 1e-5 and res.too_high == pytest.approx(1e-1)


def test_finder_arguments() -> None:
    for bad in (dict(start_lr=0), dict(start_lr=1.0, end_lr=0.1), dict(num_it=1),
                dict(beta=1.0)):
        with pytest.raises(ValueError):
            LRFinder(**bad)
    f = LRFinder(1e-3, 1e3, num_it=7)
    assert [f.sweep_lr(i) for i in (0, 3, 6)] == pytest.approx([1e-3, 1.0, 1e3], rel=1e-12)
    assert f.name == "lr_finder"


# -- suggestion functions on synthetic curves ---------------------------------------------------
LRS = np.geomspace(1e-6, 1.0, 61)  # ten points a decade


def test_valley_is_halfway_down_the_longest_descent() -> None:
    # Flat at 3, then a strict descent over indices 20..40, then a rise: the longest
    # decreasing subsequence is one flat point + the 21 descending ones, ending at 40.
    losses = np.r_[np.full(20, 3.0), np.linspace(2.9, 1.0, 21), np.linspace(1.5, 9.0, 20)]
    length, end = 22, 40
    start = end - length
    idx = start + int(length / 3) + int(length / 3 / 2)
    assert idx == 18 + 7 + 3  # fastai's midpoint, a little short of the middle (29.5)
    assert valley(LRS, losses) == LRS[idx]
    # A pure V: descent over 0..30 (31 points), start counted at -1 as fastai does.
    v = np.abs(np.arange(61) - 30.0)
    assert valley(LRS, v) == LRS[-1 + 10 + 5]
    # Nothing decreases: fastai would index lrs[-1] (the largest lr); we give the first.
    assert valley(LRS, np.linspace(1.0, 2.0, 61)) == LRS[0]
    assert valley(LRS[:1], np.array([2.0])) == LRS[0]


def test_steep_is_the_steepest_descent_against_log_lr() -> None:
    # Piecewise linear in log10(lr): slope -0.1 everywhere but -3 between points 40 and 41.
    losses = 5.0 - 0.01 * np.arange(61)
    losses[41:] -= 0.3
    assert steep(LRS, losses) == LRS[40]
    # Smooth: 2 - tanh(log10(lr) + 3) falls fastest at lr = 1e-3 (index 30).
    assert steep(LRS, 2 - np.tanh(np.log10(LRS) + 3)) in (LRS[29], LRS[30])
    assert steep(LRS[:1], np.array([1.0])) == LRS[0]


def test_minimum_is_a_tenth_of_the_lowest_loss_lr() -> None:
    losses = (np.log10(LRS) + 2.0) ** 2  # lowest at lr = 1e-2 (index 40)
    assert minimum(LRS, losses) == pytest.approx(1e-3, rel=1e-12)


def test_slide_stops_where_the_gradients_agree() -> None:
    # Flat up to 40, then quadratic. np.gradient's central difference is first nonzero at 39,
    # so the window (15 wide) last straddles the bend with its right end at 39.
    losses = np.r_[np.full(40, 2.0), 2.0 + 0.05 * np.arange(1, 22) ** 2]
    assert slide(LRS, losses) == LRS[39 - 15]
    assert slide(LRS, losses, lr_diff=5, adjust_value=0.5) == LRS[39 - 5] * 0.5
    # A straight line: the gradients agree at once, the suggestion is the first window's left.
    assert slide(LRS, np.linspace(3.0, 1.0, 61)) == LRS[60 - 15]
    # Curves shorter than the window shrink it instead of failing.
    assert LRS[0] <= slide(LRS[:8], np.r_[np.full(4, 2.0), [2.1, 2.5, 3.5, 6.0]]) <= LRS[7]


def test_suggestion_functions_reject_mismatched_curves() -> None:
    for f in (valley, steep, minimum, slide):
        with pytest.raises(ValueError):
            f(LRS, LRS[:-1])
        with pytest.raises(ValueError):
            f(np.array([]), np.array([]))


def test_tracker_and_logger_callbacks_sit_out_the_sweep(mnist, tmp_path) -> None:
    """EarlyStopping does not cut a sweep of several epochs short (validation is skipped, so
    nothing ever improves), SaveModel writes no checkpoints of the sweep, CSVLogger leaves the
    log alone; the learner's callbacks are back, in order, afterwards."""
    from fastext.learner import CSVLogger, EarlyStopping, SaveModel

    log = tmp_path / "history.csv"
    log.write_text("the real training's log\n")
    learn = make_learner(mnist, path=tmp_path,
                         cbs=[EarlyStopping(patience=1), SaveModel(every_epoch=True),
                              CSVLogger()])
    cbs = list(learn.cbs)
    res = lr_find(learn, num_it=40, stop_div=False)  # 40 batches: 3 epochs of 16
    assert len(res.lrs) == 40 and res.lrs[-1] == pytest.approx(10.0)
    assert not (tmp_path / "models").exists()
    assert log.read_text() == "the real training's log\n"
    assert learn.cbs == cbs
    assert learn.early_stopping in cbs and learn.save_model in cbs


def test_fit_default_lr_does_not_reset_the_sweep_ratios(mnist) -> None:
    """fit() without lr sets learn.lr on every group; lr_find hands the groups' current lrs
    to its fit, so the sweep keeps their ratios (and the learner's defaults are what a plain
    fit after it uses)."""
    learn = make_learner(mnist)
    learn.fit_one_cycle(1, slice(1e-4, 1e-2))
    spy = learn.add_cb(LRSpy())
    lrs = {g["layer_group"]: g["lr"] for g in learn.opt.param_groups}
    lr_find(learn, num_it=10)
    ratio = lrs[0] / lrs[1]
    assert spy.seen and all(s[0] == pytest.approx(s[-1] * ratio, rel=1e-9) for s in spy.seen)
    spy.seen.clear()
    learn.fit(1)
    assert spy.seen and all(s == [learn.lr] * len(s) for s in spy.seen)
