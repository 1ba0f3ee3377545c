"""Smoke test of ``python -m fastext.bench bn_relu --quick``: schema and sanity of the output,
never speed (timed assertions do not belong in the test suite)."""

from __future__ import annotations

import math

import pytest
import torch
from bench_helpers import quick_suite_run

from fastext.bench import SUITES
from fastext.bench.bn_relu import (
    ABN_QUICK,
    FORMATS,
    QUICK_BATCH,
    QUICK_SHAPES,
    STEP_REPS_FACTOR,
    case_name,
    saved_bytes,
    torchvision_available,
)
from fastext.bench.report import format_table

RESNET_CASE = f"resnet18-step/b{QUICK_BATCH}"
ABN_CASE = f"abn-stack-step/b{ABN_QUICK[0]}"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[int, dict]:
    """One quick CPU run of the bn_relu suite (shared by the tests below)."""
    return quick_suite_run(tmp_path_factory.mktemp("bench"), "bn_relu")


def _positive_finite(v: object) -> bool:
    return isinstance(v, float) and math.isfinite(v) and v > 0


def test_registered():
    assert SUITES["bn_relu"] == "fastext.bench.bn_relu"


def test_bn_relu_rows(quick_run):
    rc, doc = quick_run
    assert rc == 0
    assert doc["suite"] == "bn_relu" and doc["device"] == "cpu"
    cases = [case_name(s, f) for s in QUICK_SHAPES for f in FORMATS]
    for case in cases:
        rows = [r for r in doc["rows"] if r["case"] == case]
        impls = [r["impl"] for r in rows]
        assert len(impls) == len(set(impls))  # one row per implementation
        # torch-compile is there only where compiling works on this machine.
        assert {"torch-eager", "fastext"} <= set(impls) <= {"torch-eager", "torch-compile",
                                                            "fastext"}
        for row in rows:
            assert set(row) == {"case", "impl", "ms", "gbs"}
            assert _positive_finite(row["ms"]) and _positive_finite(row["gbs"])


@pytest.mark.skipif(not torchvision_available(), reason="torchvision not installed")
def test_resnet_rows(quick_run):
    _, doc = quick_run
    rows = [r for r in doc["rows"] if r["case"].startswith("resnet18-step/")]
    assert sorted(r["impl"] for r in rows) == ["fastext", "torch-eager"]
    for row in rows:
        assert row["case"] == RESNET_CASE
        assert set(row) == {"case", "impl", "ms", "saved_mb", "reps"}  # CPU: no gbs
        assert _positive_finite(row["ms"]) and _positive_finite(row["saved_mb"])
        assert row["reps"] == STEP_REPS_FACTOR * doc["reps"]  # a step is timed longer


def test_abn_stack_rows(quick_run):
    """The InPlace-ABN stack keeps one activation per block where BatchNorm + LeakyReLU keep
    three (the conv's output, the BatchNorm's, the activation's)."""
    _, doc = quick_run
    rows = {r["impl"]: r for r in doc["rows"] if r["case"] == ABN_CASE}
    assert sorted(rows) == ["fastext", "torch-eager"]
    for row in rows.values():
        assert set(row) == {"case", "impl", "ms", "saved_mb", "reps"}
        assert _positive_finite(row["ms"]) and _positive_finite(row["saved_mb"])
        assert row["reps"] == STEP_REPS_FACTOR * doc["reps"]
    assert rows["fastext"]["saved_mb"] < 0.5 * rows["torch-eager"]["saved_mb"]


def test_table(quick_run):
    _, doc = quick_run
    table = format_table(doc)
    for case in (case_name(QUICK_SHAPES[0], "nchw"), case_name(QUICK_SHAPES[0], "channels_last")):
        assert f"| {case} | fastext |" in table and f"| {case} | torch-eager |" in table
    if torchvision_available():
        assert f"| {RESNET_CASE} | fastext |" in table  # a row without gbs: "— | —"


class _Product(torch.nn.Module):
    """``relu(x) * w`` (``twice``: ``relu(x) * relu(x) * w`` with one relu output)."""

    def __init__(self, twice: bool) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.twice = twice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.relu(x)
        return (r * r if self.twice else r) * self.w


def test_saved_bytes_counts_storages_once():
    x = torch.randn(4, 10, requires_grad=True)
    y = torch.zeros(4, dtype=torch.int64)
    # Both save r (by relu and by a mul; one storage), w (a parameter: left out) and the
    # cross-entropy's tensors; `twice` saves r twice more (one storage) and the product r*r.
    extra = saved_bytes(_Product(twice=True), x, y) - saved_bytes(_Product(twice=False), x, y)
    assert extra == x.numel() * x.element_size()


def test_compile_failure_leaves_row_out(monkeypatch):
    from fastext.bench import bn_relu

    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(bn_relu, "torchvision_available", lambda: False)  # no ResNet rows
    messages: list[str] = []
    rows = bn_relu.run(torch.device("cpu"), reps=1, quick=True, progress=messages.append,
                       warmup=0)
    assert {r["impl"] for r in rows if "/b" not in r["case"]} == {"torch-eager", "fastext"}
    assert any("torch-compile left out: RuntimeError" in m for m in messages)
