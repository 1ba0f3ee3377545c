"""Random-forest hyper-parameter search: space sampling and encoding, EI against a hand
computation on a toy forest, resuming from a log, failures recorded, figures written, the
MNIST objective, the CLI and the demo in quick mode."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import types

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestRegressor

from fastext import cli
from fastext.data.files import find_data_dir
from fastext.tools import hpsearch
from fastext.tools.hp.mnist_objective import MNIST_MLP_SPACE, MnistMLPObjective
from fastext.tools.hp.report import partial_dependences
from fastext.tools.hp.surrogate import _local_candidates, fill_failures
from fastext.tools.hpsearch import (
    Choice,
    Int,
    LogUniform,
    Space,
    Trial,
    TrialLog,
    Uniform,
    expected_improvement,
    fit_forest,
    forest_mean_std,
    propose,
    run_trial,
    search,
)

SPACE = Space(lr=LogUniform(1e-5, 1.0), drop=Uniform(0.0, 0.5), epochs=Int(1, 4),
              bs=Choice([32, 64, 128]), act=Choice(["relu", "tanh"]))


def quadratic(p):
    """A smooth objective with its minimum at lr=1e-2, drop=0.1, epochs=3, bs=64, act=tanh."""
    return ((math.log10(p["lr"]) + 2) ** 2 + (p["drop"] - 0.1) ** 2 * 10
            + (p["epochs"] - 3) ** 2 * 0.1 + (p["bs"] != 64) * 0.2 + (p["act"] == "relu") * 0.3)


# -- the space -------------------------------------------------------------------------
def test_sampling_stays_in_range_and_has_the_right_distribution():
    rng = np.random.default_rng(0)
    configs = SPACE.sample(rng, 4000)
    lr = np.array([c["lr"] for c in configs])
    assert lr.min() >= 1e-5 and lr.max() <= 1.0
    # log-uniform: each decade holds a fifth of the draws
    counts = np.histogram(np.log10(lr), bins=5, range=(-5, 0))[0]
    assert np.all(np.abs(counts / 4000 - 0.2) < 0.03)
    drop = np.array([c["drop"] for c in configs])
    assert 0 <= drop.min() and drop.max() <= 0.5 and abs(drop.mean() - 0.25) < 0.01
    epochs = [c["epochs"] for c in configs]
    assert set(epochs) == {1, 2, 3, 4} and all(isinstance(e, int) for e in epochs)
    assert {c["bs"] for c in configs} == {32, 64, 128}
    assert {c["act"] for c in configs} == {"relu", "tanh"}
    assert all(isinstance(c["lr"], float) for c in configs)
    json.dumps(configs)  # plain Python values: the log can hold them


def test_sampling_is_reproducible():
    a = SPACE.sample(np.random.default_rng(3), 5)
    b = SPACE.sample(np.random.default_rng(3), 5)
    assert a == b and SPACE.sample(np.random.default_rng(4), 5) != a


def test_encoding_by_hand():
    x = SPACE.encode([{"lr": 1e-3, "drop": 0.2, "epochs": 2, "bs": 128, "act": "relu"},
                      {"lr": 1.0, "drop": 0.0, "epochs": 4, "bs": 32, "act": "tanh"}])
    np.testing.assert_allclose(x, [[-3, 0.2, 2, 2, 0], [0, 0, 4, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(SPACE.bounds, [[-5, 0], [0, 0.5], [1, 4], [0, 2], [0, 1]])
    assert SPACE.labels() == ["log10(lr)", "drop", "epochs", "bs", "act"]


def test_decode_inverts_encode_and_snaps():
    configs = SPACE.sample(np.random.default_rng(1), 50)
    back = SPACE.decode(SPACE.encode(configs))
    for a, b in zip(configs, back, strict=True):
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-12)
        assert b["drop"] == pytest.approx(a["drop"], abs=1e-15)
        assert (b["epochs"], b["bs"], b["act"]) == (a["epochs"], a["bs"], a["act"])
    # off-grid and out-of-range rows snap to the nearest valid configuration
    snapped = SPACE.decode(np.array([[1.5, -1.0, 2.6, 7.0, 0.4]]))[0]
    assert snapped == {"lr": 1.0, "drop": 0.0, "epochs": 3, "bs": 128, "act": "relu"}


def test_space_json_round_trip():
    spec = json.loads(json.dumps(SPACE.to_dict()))
    assert Space.from_dict(spec) == SPACE
    assert hpsearch.load_space(json.dumps(spec)) == SPACE


@pytest.mark.parametrize("make, err", [
    (lambda: LogUniform(0.0, 1.0), ValueError),
    (lambda: LogUniform(1.0, 1e-3), ValueError),
    (lambda: Uniform(0.0, float("nan")), ValueError),
    (lambda: Uniform("a", 1.0), TypeError),
    (lambda: Int(1.5, 3), TypeError),
    (lambda: Int(3, 3), ValueError),
    (lambda: Choice([]), ValueError),
    (lambda: Choice([1, 1]), ValueError),
    (lambda: Choice("abc"), TypeError),
    (lambda: Space(), ValueError),
    (lambda: Space(lr=(1e-5, 1)), TypeError),
    (lambda: Space.from_dict({"lr": {"type": "gauss"}}), ValueError),
    (lambda: Space.from_dict({"lr": {"type": "log", "low": 1}}), ValueError),
])
def test_bad_spaces_are_refused(make, err):
    with pytest.raises(err):
        make()


def test_bad_configurations_are_refused():
    good = {"lr": 1e-3, "drop": 0.2, "epochs": 2, "bs": 64, "act": "relu"}
    with pytest.raises(KeyError, match="lacks"):
        SPACE.encode([{k: v for k, v in good.items() if k != "bs"}])
    for key, bad in (("lr", 2.0), ("lr", float("nan")), ("epochs", 2.5), ("bs", 48),
                     ("act", "gelu"), ("drop", "x")):
        with pytest.raises((ValueError, TypeError), match=key):
            SPACE.encode([{**good, key: bad}])
    assert Choice([1, True]).encode(True) == 1.0 and Choice([1, True]).encode(1) == 0.0


# -- the surrogate ---------------------------------------------------------------------
def test_forest_mean_std_is_over_the_trees():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(30, 2))
    y = np.sin(3 * x[:, 0]) + x[:, 1]
    forest = fit_forest(x, y, seed=1, n_estimators=20)
    xq = rng.uniform(size=(7, 2))
    per_tree = np.array([t.predict(xq) for t in forest.estimators_])
    mu, sigma = forest_mean_std(forest, xq)
    np.testing.assert_allclose(mu, forest.predict(xq), rtol=1e-12)  # sklearn's own average
    np.testing.assert_allclose(sigma, per_tree.std(axis=0), rtol=1e-12)
    assert (sigma > 0).any()


def test_ei_on_a_toy_forest_matches_a_hand_computation():
    # Two trees that disagree by construction: leaf values are known exactly.
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([1.0, 0.5, 0.2, 0.9])
    forest = RandomForestRegressor(n_estimators=3, bootstrap=True, random_state=0).fit(x, y)
    xq = np.array([[0.0], [1.2], [2.1], [2.9]])
    preds = np.array([t.predict(xq) for t in forest.estimators_])
    best = 0.2
    mu, sigma = forest_mean_std(forest, xq)
    got = expected_improvement(mu, sigma, best, xi=0.01)
    normal = statistics.NormalDist()
    for k in range(len(xq)):
        m = statistics.fmean(preds[:, k])
        s = statistics.pstdev(preds[:, k])
        gain = best - 0.01 - m
        want = max(gain, 0.0) if s == 0 else gain * normal.cdf(gain / s) + s * normal.pdf(
            gain / s)
        assert got[k] == pytest.approx(want, rel=1e-9, abs=1e-15)


def test_ei_against_monte_carlo_and_edge_cases():
    rng = np.random.default_rng(0)
    mu, sigma, best = np.array([0.3, 0.5, 0.9]), np.array([0.2, 0.05, 0.4]), 0.45
    samples = rng.normal(mu, sigma, size=(400_000, 3))
    mc = np.maximum(best - samples, 0).mean(axis=0)
    np.testing.assert_allclose(expected_improvement(mu, sigma, best), mc, rtol=0.02)
    # zero spread: the plain improvement; far above the best: zero, never negative
    assert expected_improvement(np.array([0.1, 0.9]), np.zeros(2), 0.5).tolist() == [0.4, 0.0]
    assert expected_improvement(np.array([50.0]), np.array([1.0]), 0.0)[0] >= 0
    with pytest.raises(ValueError, match="sigma"):
        expected_improvement(np.zeros(1), -np.ones(1), 0.0)
    # more uncertainty at the same mean is worth more
    ei = expected_improvement(np.array([0.5, 0.5]), np.array([0.1, 0.3]), 0.4)
    assert ei[1] > ei[0]


def test_fit_forest_and_fill_failures_refuse_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        fit_forest(np.zeros((3, 1)), np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        fit_forest(np.zeros((1, 1)), np.zeros(1))
    with pytest.raises(ValueError, match="no finished"):
        fill_failures(np.array([np.nan, np.inf]))
    # failures are worse than the worst finished trial: by the spread, or by |worst| (>= 1)
    assert fill_failures(np.array([1.0, np.inf, 3.0])).tolist() == [1.0, 5.0, 3.0]
    assert fill_failures(np.array([-4.0, np.nan, -4.0])).tolist() == [-4.0, 0.0, -4.0]
    assert fill_failures(np.array([0.0, np.nan])).tolist() == [0.0, 1.0]


def test_failures_tied_with_the_finished_trials_still_teach_the_forest():
    """An objective that finishes at one value where it does not fail: failures filled at
    that same value gave a flat forest: importances all 0, the parameter that decides
    failure unseen."""
    space = Space(a=Uniform(0.0, 1.0), b=Uniform(0.0, 1.0))
    r = search(lambda p: 1.0 if p["a"] < 0.5 else math.nan, space, n_trials=10, n_init=6,
               seed=0, progress=False)
    imp = r.importances()
    assert imp["a"] > 0.9 and math.isclose(sum(imp.values()), 1.0)


def test_propose_picks_the_argmax_of_ei_among_valid_candidates():
    space = Space(x=Uniform(0.0, 1.0), k=Choice([1, 2, 3]))
    configs = space.sample(np.random.default_rng(0), 12)
    x = space.encode(configs)
    y = np.array([(c["x"] - 0.7) ** 2 + 0.1 * (c["k"] != 2) for c in configs])
    cfg, info = propose(space, x, y, np.random.default_rng(5), n_candidates=500,
                        local_fraction=0.5, seed=3)
    space.encode([cfg])  # a valid configuration
    assert info["ei"] >= 0 and info["sigma"] >= 0
    assert info["predicted"] == pytest.approx(math.exp(info["mu"]))  # log(y) was modelled
    # recompute: same candidates from the same rng, same forest, same EI argmax
    rng = np.random.default_rng(5)
    order = np.argsort(np.log(y), kind="stable")[:3]
    cands = [*space.sample(rng, 250),
             *space.decode(_local_candidates(space, x[order], rng, 250, 0.1))]
    forest = fit_forest(x, np.log(y), seed=3)
    mu, sigma = forest_mean_std(forest, space.encode(cands))
    ei = expected_improvement(mu, sigma, float(np.log(y).min()))
    assert cands[int(np.argmax(ei))] == cfg


def test_local_candidates_stay_in_bounds():
    b = SPACE.bounds
    c = _local_candidates(SPACE, b[:, 1][None, :], np.random.default_rng(0), 500, 0.5)
    assert (c >= b[:, 0]).all() and (c <= b[:, 1]).all()


# -- the loop, the log, failures ---------------------------------------------------------
def test_rf_search_beats_random_on_a_smooth_objective():
    wins = 0
    for seed in range(3):
        rf = search(quadratic, SPACE, n_trials=20, n_init=6, seed=seed, progress=False)
        rnd = search(quadratic, SPACE, n_trials=20, method="random", seed=seed, progress=False)
        # the same seed gives both searches the same initial random trials
        assert [t.params for t in rf.trials[:6]] == [t.params for t in rnd.trials[:6]]
        assert [t.proposer for t in rf.trials] == ["random"] * 6 + ["rf"] * 14
        wins += rf.best.value <= rnd.best.value
    assert wins >= 2


def test_resume_from_a_log_continues_the_same_search(tmp_path):
    log = tmp_path / "log.json"
    whole = search(quadratic, SPACE, n_trials=10, n_init=4, seed=7, progress=False)
    calls = []

    def counted(p):
        calls.append(p)
        return quadratic(p)

    search(counted, SPACE, n_trials=6, n_init=4, seed=7, log=log, progress=False)
    assert len(json.loads(log.read_text())["trials"]) == 6
    resumed = search(counted, SPACE, n_trials=10, n_init=4, seed=7, log=log, progress=False)
    assert len(calls) == 10  # the first six were read back, not rerun
    assert [t.params for t in resumed.trials] == [t.params for t in whole.trials]
    assert [t.value for t in resumed.trials] == [t.value for t in whole.trials]
    # a finished log is not rerun
    search(counted, SPACE, n_trials=10, n_init=4, seed=7, log=log, progress=False)
    assert len(calls) == 10
    # the log opened beforehand (as the CLI does, to refuse a bad one before the objective
    # loads its data) is the same resume
    book = TrialLog.open(log, SPACE, "rf", 7)
    resumed = search(counted, SPACE, n_trials=11, n_init=4, seed=7, log=book, progress=False)
    assert len(calls) == 11
    assert [t.params for t in resumed.trials[:10]] == [t.params for t in whole.trials]
    assert len(json.loads(log.read_text())["trials"]) == 11
    with pytest.raises(ValueError, match="another space, method or seed"):
        search(counted, SPACE, n_trials=12, n_init=4, seed=8, log=book, progress=False)


def test_a_log_from_another_search_is_refused(tmp_path):
    log = tmp_path / "log.json"
    search(quadratic, SPACE, n_trials=3, n_init=2, seed=0, log=log, progress=False)
    with pytest.raises(ValueError, match="seed"):
        search(quadratic, SPACE, n_trials=4, n_init=2, seed=1, log=log, progress=False)
    with pytest.raises(ValueError, match="method"):
        search(quadratic, SPACE, n_trials=4, method="random", seed=0, log=log, progress=False)
    with pytest.raises(ValueError, match="space"):
        search(quadratic, Space(lr=LogUniform(1e-5, 1.0)), n_trials=4, seed=0, log=log,
               progress=False)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a JSON"):
        TrialLog.open(tmp_path / "bad.json", SPACE, "rf", 0)
    (tmp_path / "other.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a fastext"):
        TrialLog.open(tmp_path / "other.json", SPACE, "rf", 0)


@pytest.mark.parametrize("trials, why", [
    (None, "KeyError: trials"),
    ([{"number": 0}], "TypeError: .*params"),
    ([{"number": 0, "params": {"lr": 5.0, "drop": 0.1, "epochs": 2, "bs": 32, "act": "relu"},
       "value": 1.0, "status": "ok"}], "ValueError: .*outside"),
])
def test_a_damaged_log_is_refused_before_any_trial(tmp_path, trials, why):
    """A log with the right format marker but a key missing, a trial cut short or a value
    outside the space: a ValueError at open (the CLI's one-line error), not a KeyError or
    TypeError, nor a ValueError from the surrogate mid-search."""
    log = tmp_path / "log.json"
    search(quadratic, SPACE, n_trials=2, n_init=2, seed=0, log=log, progress=False)
    doc = json.loads(log.read_text())
    if trials is None:
        del doc["trials"]
    else:
        doc["trials"] = trials
    log.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=f"damaged hpsearch log.*{why}"):
        TrialLog.open(log, SPACE, "rf", 0)


def test_resuming_a_longer_log_gives_the_trials_asked_for(tmp_path):
    log = tmp_path / "log.json"
    search(quadratic, SPACE, n_trials=6, n_init=4, seed=3, log=log, progress=False)
    fresh = search(quadratic, SPACE, n_trials=3, n_init=4, seed=3, progress=False)
    resumed = search(quadratic, SPACE, n_trials=3, n_init=4, seed=3, log=log, progress=False)
    assert [t.params for t in resumed.trials] == [t.params for t in fresh.trials]
    assert resumed.summary()["n_trials"] == 3
    assert len(json.loads(log.read_text())["trials"]) == 6  # the log keeps them all


def test_failing_and_diverging_trials_are_recorded_not_fatal(tmp_path):
    def fragile(p):
        if p["lr"] > 0.1:
            raise RuntimeError("exploded")
        if p["lr"] > 0.01:
            return float("nan")
        return {"value": quadratic(p), "accuracy": 0.5}

    log = tmp_path / "log.json"
    r = search(fragile, SPACE, n_trials=14, n_init=6, seed=2, log=log, progress=False)
    statuses = [t.status for t in r.trials]
    assert "failed" in statuses and "diverged" in statuses and "ok" in statuses
    failed = next(t for t in r.trials if t.status == "failed")
    assert failed.value is None and "RuntimeError: exploded" in failed.error
    assert r.best.params["lr"] <= 0.01 and r.best.info == {"accuracy": 0.5}
    doc = json.loads(log.read_text())
    assert [t["status"] for t in doc["trials"]] == statuses
    x, y = r.xy()
    assert np.isnan(y[[s != "ok" for s in statuses]]).all()


def test_run_trial_statuses():
    assert run_trial(lambda p: 1.5, {"a": 1}, 0).value == 1.5
    assert run_trial(lambda p: float("inf"), {}, 0).status == "diverged"
    t = run_trial(lambda p: {"loss": 1.0}, {}, 0)
    assert t.status == "failed" and "value" in t.error
    assert run_trial(lambda p: "abc", {}, 0).status == "failed"
    with pytest.raises(KeyboardInterrupt):
        run_trial(lambda p: (_ for _ in ()).throw(KeyboardInterrupt), {}, 0)
    with pytest.raises(ValueError, match="finite"):
        Trial(0, {}, float("nan"), "ok")
    with pytest.raises(ValueError, match="status"):
        Trial(0, {}, 1.0, "fine")


def test_objective_info_keeps_tensors_and_numpy_scalars_as_json_numbers(tmp_path):
    """What an objective reports besides the value (a metric tensor, numpy scalars) is kept
    as Python numbers, so the log, a resumed search and the summary all hold it."""
    def objective(p):
        return {"value": torch.tensor(p["x"] ** 2), "accuracy": torch.tensor(0.5),
                "f1": np.float32(0.25), "n": np.int64(3), "hist": np.array([1, 2]),
                "flag": np.bool_(True), "per_class": {1: torch.tensor([0.5, 0.75])}}

    want = {"accuracy": 0.5, "f1": 0.25, "n": 3, "hist": [1, 2], "flag": True,
            "per_class": {"1": [0.5, 0.75]}}
    space, log = Space(x=Uniform(0.0, 1.0)), tmp_path / "log.json"
    r = search(objective, space, n_trials=3, n_init=2, log=log, progress=False)
    assert [t.status for t in r.trials] == ["ok"] * 3
    assert all(t.info == want for t in r.trials)
    assert [type(r.best.info[k]) for k in ("accuracy", "f1", "n", "flag")] == \
        [float, float, int, bool]
    assert [t["info"] for t in json.loads(log.read_text())["trials"]] == [want] * 3
    assert json.loads(json.dumps(r.summary()))["best_info"] == want
    resumed = search(objective, space, n_trials=4, n_init=2, log=log, progress=False)
    assert [t.info for t in resumed.trials] == [want] * 4
    # an entry JSON cannot hold fails that trial, with a clear message; the search goes on
    bad = search(lambda p: {"value": p["x"], "model": object()}, space, n_trials=2,
                 n_init=2, log=tmp_path / "bad.json", progress=False)
    assert [t.status for t in bad.trials] == ["failed"] * 2
    assert "info['model'] (object) cannot go into the JSON log" in bad.trials[0].error


def test_any_non_negative_seed_works_and_a_negative_one_is_refused_up_front(tmp_path):
    """The forests' random_state stays within sklearn's [0, 2**32 - 1] whatever the seed
    (seed * 10_007 + i used to leave it from seed 429_197 on, after the random trials)."""
    space = Space(x=Uniform(0.0, 1.0))
    for seed in (500_000, 20240601, 2**40):
        r = search(lambda p: (p["x"] - 0.3) ** 2, space, n_trials=4, n_init=2, seed=seed,
                   n_candidates=200, progress=False)
        assert [t.proposer for t in r.trials] == ["random"] * 2 + ["rf"] * 2
        assert set(r.importances()) == {"x"}
    calls = []
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        search(calls.append, space, n_trials=2, n_init=2, seed=-1, progress=False)
    assert calls == []  # refused before the first trial
    # the CLI refuses it while parsing; a large one goes through to the forest
    with pytest.raises(SystemExit):
        cli.main(["hpsearch", "--objective", "math:sqrt", "--seed", "-1"])
    argv = ["hpsearch", "--objective", "builtins:len", "--space",
            '{"x": {"type": "uniform", "low": 0, "high": 1}}', "--trials", "3", "--init", "2",
            "--candidates", "50", "--seed", "20240601", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    doc = json.loads((tmp_path / "hpsearch_log.json").read_text())
    assert doc["seed"] == 20240601 and doc["trials"][-1]["proposer"] == "rf"


def test_search_argument_errors():
    with pytest.raises(ValueError, match="method"):
        search(quadratic, SPACE, method="grid")
    with pytest.raises(ValueError, match="n_trials"):
        search(quadratic, SPACE, n_trials=0)
    with pytest.raises(ValueError, match="n_init"):
        search(quadratic, SPACE, n_init=1)
    everything_fails = search(lambda p: 1 / 0, SPACE, n_trials=4, n_init=2, progress=False)
    with pytest.raises(ValueError, match="no trial finished"):
        _ = everything_fails.best


# -- report ----------------------------------------------------------------------------
def test_importances_and_partial_dependence(tmp_path):
    space = Space(a=Uniform(0.0, 1.0), b=Uniform(0.0, 1.0), c=Choice([1, 2, 3]))
    r = search(lambda p: 10 * p["a"] + 0.01 * p["b"], space, n_trials=20, n_init=20,
               progress=False)
    imp = r.importances()
    assert list(imp)[0] == "a" and imp["a"] > 0.9 and sum(imp.values()) == pytest.approx(1)
    pds = partial_dependences(r)
    grid, avg = pds["a"]
    assert np.corrcoef(grid, avg)[0, 1] > 0.95  # rises with a
    # sklearn's average = mean prediction with column a set to the grid value
    forest, (x, _) = r.forest(), r.xy()
    for g, want in zip(grid[::7], avg[::7], strict=False):
        xg = x.copy()
        xg[:, 0] = g
        assert forest.predict(xg).mean() == pytest.approx(want, rel=1e-9)
    png = hpsearch.plot_partial_dependence(r, tmp_path / "pd.png")
    hist = hpsearch.plot_history([r], tmp_path / "h.png")
    for f in (png, hist):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000
    s = r.summary()
    assert s["best_value"] == r.best.value and s["counts"]["ok"] == 20


# -- the MNIST objective, the CLI, the demo -------------------------------------------
SMALL = find_data_dir("mnist-small")
GOOD = {"lr": 3e-3, "wd": 0.01, "pct_start": 0.3, "bs": 64, "dropout": 0.1, "epochs": 2}


def test_mnist_objective_learns_is_deterministic_and_diverges_at_huge_lr():
    obj = MnistMLPObjective(SMALL, n_train=1000, n_valid=400)
    a, b = obj(GOOD), obj(GOOD)
    assert a == b and a["accuracy"] > 0.8 and a["value"] < 0.7
    assert obj({**GOOD, "lr": 1e-5})["value"] > a["value"]
    assert run_trial(obj, {**GOOD, "lr": 1e6, "wd": 1e-4}, 0).status == "diverged"
    MNIST_MLP_SPACE.encode([GOOD])  # the example lies in the default space
    with pytest.raises(ValueError, match="holds 2000"):
        MnistMLPObjective(SMALL, n_train=1900, n_valid=200)


def test_cli_hpsearch_writes_log_summary_and_figures(tmp_path, capsys):
    space = json.dumps({"lr": {"type": "log", "low": 1e-3, "high": 3e-2},
                        "bs": {"type": "choice", "options": [64, 128]},
                        "wd": {"type": "log", "low": 1e-3, "high": 0.1},
                        "pct_start": {"type": "uniform", "low": 0.2, "high": 0.5},
                        "dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
                        "epochs": {"type": "int", "low": 1, "high": 2}})
    argv = ["hpsearch", "--trials", "4", "--init", "2", "--data", str(SMALL), "--n-train",
            "500", "--n-valid", "200", "--space", space, "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "best config" in out and "importances" in out
    summary = json.loads((tmp_path / "hpsearch_summary.json").read_text())
    assert summary["n_trials"] == 4 and set(summary["best_params"]) == set(json.loads(space))
    for f in summary["figures"].values():
        assert (tmp_path / f.split("/")[-1]).stat().st_size > 0
    # running again resumes: nothing new to do
    assert cli.main(argv) == 0
    assert "resuming" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "hpsearch_log.json").read_text())["trials"]) == 4


def test_cli_objective_errors():
    with pytest.raises(ValueError, match="mnist-mlp"):
        hpsearch.load_objective("nonsense")
    with pytest.raises(ModuleNotFoundError):
        hpsearch.load_objective("no_such_module_xyz:f")
    assert hpsearch.load_objective("math:sqrt")(4.0) == 2.0
    with pytest.raises(FileNotFoundError):
        hpsearch.load_space("missing.json")
    p = argparse.ArgumentParser()
    hpsearch.add_arguments(p)
    args = p.parse_args(["--objective", "math:sqrt"])
    assert hpsearch.cli_main(args) == 2  # no space to search


def test_demo_quick(tmp_path):
    from fastext.demos import hpsearch_vs_random

    args = types.SimpleNamespace(data=None, epochs=None, quick=True, json=str(tmp_path / "r.json"),
                                 out=str(tmp_path), bench_off=True)
    record = hpsearch_vs_random.cli_main(args)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc == json.loads(json.dumps(record))
    assert {"trials", "rows", "rf_wins"} <= set(doc)
    assert len(doc["rows"]) >= 1
    for row in doc["rows"]:
        assert set(row) >= {"seed", "rf_best", "random_best"}
        assert row["rf_best"] > 0 and row["random_best"] > 0
    assert doc["rf_wins"] == sum(r["rf_best"] <= r["random_best"] for r in doc["rows"])
    for f in doc["figures"]:
        assert (tmp_path / f.split("/")[-1]).is_file()
