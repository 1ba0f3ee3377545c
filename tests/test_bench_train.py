"""Smoke test of ``python -m fastext.bench train --quick``: schema and sanity of the output,
never speed (timed assertions do not belong in the test suite)."""

from __future__ import annotations

import math

import pytest
import torch
from bench_helpers import quick_suite_run

from fastext.bench import SUITES
from fastext.bench.report import format_table
from fastext.bench.train import (
    CASE,
    DIV,
    DIV_FINAL,
    LR_MAX,
    MOMS,
    batch_order,
    fastai_available,
    one_cycle_scheduler,
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[int, dict]:
    """One quick CPU run of the train suite (shared by the tests below)."""
    return quick_suite_run(tmp_path_factory.mktemp("bench"), "train")


def test_registered():
    assert SUITES["train"] == "fastext.bench.train"


def test_json_rows(quick_run):
    rc, doc = quick_run
    assert rc == 0
    assert doc["suite"] == "train" and doc["device"] == "cpu"
    impls = [row["impl"] for row in doc["rows"]]
    assert len(impls) == len(set(impls))  # one row per implementation
    # fastai is optional: its row is there exactly when it can be imported.
    assert set(impls) == {"plain-pytorch", "fastext"} | ({"fastai"} if fastai_available()
                                                          else set())
    for row in doc["rows"]:
        assert set(row) == {"case", "impl", "ms", "accuracy"}
        assert row["case"] == CASE
        assert isinstance(row["ms"], float) and math.isfinite(row["ms"]) and row["ms"] > 0
        assert 0.0 <= row["accuracy"] <= 1.0


def test_table(quick_run):
    _, doc = quick_run
    table = format_table(doc)
    assert "| case | impl | ms | fastext speed-up | accuracy |" in table
    assert "GB/s |" not in table  # training runs move no countable bytes
    assert f"| {CASE} | fastext |" in table and "1.00x" in table


def test_batch_order_is_the_learners():
    # plain-pytorch (and fastai, through shuffle_fn) follow the permutation that fastext's
    # TensorLoader draws for its first epoch, so all see the same batches.
    from fastext.learner import TensorLoader

    x = torch.arange(10)
    dl = TensorLoader((x,), bs=4, shuffle=True, seed=3)
    got = [b[0].tolist() for b in dl]
    assert got == [x[i].tolist() for i in batch_order(10, 3).split(4)]


def test_one_cycle_scheduler_endpoints():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=LR_MAX)
    sched = one_cycle_scheduler(opt, 100)
    lrs, moms = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["betas"][0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(LR_MAX / DIV)
    assert max(lrs) == pytest.approx(LR_MAX, rel=1e-3)
    assert lrs[-1] == pytest.approx(LR_MAX / DIV_FINAL)
    assert moms[0] == pytest.approx(MOMS[0]) and min(moms) == pytest.approx(MOMS[1], abs=1e-3)
