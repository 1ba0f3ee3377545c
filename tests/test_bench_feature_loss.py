"""Smoke test of ``python -m fastext.bench feature_loss --quick``: schema, the value check and
the plot, never speed (timed assertions do not belong in the test suite)."""

from __future__ import annotations

import math

import pytest
from bench_helpers import quick_suite_run

from fastext.bench import SUITES
from fastext.bench.feature_loss import QUICK_BATCH, QUICK_SIZE
from fastext.bench.report import write_plot

pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    rc, doc = quick_suite_run(folder, "feature_loss", "--plot", str(folder / "fl.png"))
    return rc, doc, folder / "fl.png"


def test_registered():
    assert SUITES["feature_loss"] == "fastext.bench.feature_loss"


def test_rows(quick_run):
    rc, doc, png = quick_run
    assert rc == 0 and doc["suite"] == "feature_loss"
    cases = {f"vgg16_bn-terms/b{QUICK_BATCH}x{QUICK_SIZE}",
             f"vgg16_bn-module/b{QUICK_BATCH}x{QUICK_SIZE}"}
    assert {r["case"] for r in doc["rows"]} == cases
    for case in cases:
        rows = {r["impl"]: r for r in doc["rows"] if r["case"] == case}
        assert set(rows) == {"hooks-reference", "fastext"}
        assert all(math.isfinite(r["ms"]) and r["ms"] > 0 for r in rows.values())
        assert rows["fastext"]["rel_diff"] < 1e-5  # the same value as the reference
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_leaves_out_suites_without_counterparts(quick_run, tmp_path):
    _, doc, _ = quick_run
    alone = {**doc, "suite": "alone", "rows": [r for r in doc["rows"] if r["impl"] == "fastext"]}
    write_plot([doc, alone], str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 0
    with pytest.raises(ValueError):
        write_plot([alone], str(tmp_path / "q.png"))
