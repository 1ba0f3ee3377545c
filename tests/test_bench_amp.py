"""Smoke test of ``python -m fastext.bench amp --quick``: schema and sanity of the output,
never speed (timed assertions do not belong in the test suite)."""

from __future__ import annotations

import math

import pytest
from bench_helpers import quick_suite_run

from fastext.bench import SUITES
from fastext.bench.amp import CASE, SCALER_KWARGS
from fastext.bench.report import format_table

EXPECTED_IMPLS = {"torch-gradscaler", "torch-gradscaler-fused", "fastext"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[int, dict]:
    """One quick CPU run of the amp suite (shared by the tests below)."""
    return quick_suite_run(tmp_path_factory.mktemp("bench"), "amp")


def test_registered():
    assert SUITES["amp"] == "fastext.bench.amp"


def test_json_schema(quick_run):
    rc, doc = quick_run
    assert rc == 0
    assert doc["suite"] == "amp"
    assert doc["device"] == "cpu"
    assert doc["rows"]
    for row in doc["rows"]:
        assert set(row) == {"case", "impl", "ms", "gbs"}  # no host_syncs on the CPU
        assert row["case"] == CASE
        for key in ("ms", "gbs"):
            assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] > 0


def test_every_impl_present(quick_run):
    _, doc = quick_run
    impls = [row["impl"] for row in doc["rows"]]
    assert len(impls) == len(set(impls))  # no duplicates
    assert set(impls) == EXPECTED_IMPLS


def test_table(quick_run):
    _, doc = quick_run
    table = format_table(doc)
    assert "| case | impl | ms | GB/s | % of stream | fastext speed-up |" in table
    assert "host syncs" not in table  # CPU rows carry no sync counts
    assert f"| {CASE} | fastext |" in table and "1.00x" in table


def test_table_host_syncs_column():
    doc = {"suite": "amp", "device": "cuda", "torch": "x", "stream_gbs": 100.0,
           "machine": {"gpu": "G"},
           "rows": [{"case": CASE, "impl": "torch-gradscaler", "ms": 2.0, "gbs": 50.0,
                     "host_syncs": 1},
                    {"case": CASE, "impl": "fastext", "ms": 1.0, "gbs": 100.0,
                     "host_syncs": 0}]}
    table = format_table(doc)
    assert "| fastext speed-up | host syncs |" in table
    assert f"| {CASE} | torch-gradscaler | 2.000 | 50.0 | 50% | 2.00x | 1 |" in table
    assert f"| {CASE} | fastext | 1.000 | 100.0 | 100% | 1.00x | 0 |" in table


def test_scale_pinned_to_one():
    # The suite's premise: with these settings the scale neither grows nor shrinks, so the
    # set-once gradients keep their values over many steps.
    import torch

    p = torch.nn.Parameter(torch.ones(4))
    p.grad = torch.full((4,), 3.0)
    opt = torch.optim.AdamW([p], foreach=True)
    scaler = torch.amp.GradScaler("cpu", **SCALER_KWARGS)
    scaler.scale(torch.ones(()))
    for _ in range(5):
        scaler.step(opt)
        scaler.update()
    assert scaler.get_scale() == 1.0
    assert torch.equal(p.grad, torch.full((4,), 3.0))
