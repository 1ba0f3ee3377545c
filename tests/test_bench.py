"""Smoke test of ``python -m fastext.bench optim --quick``: schema and sanity of the output,
never speed (timed assertions do not belong in the test suite)."""

from __future__ import annotations

import math

import pytest
from bench_helpers import quick_suite_run

from fastext.bench import main
from fastext.bench.optim import _resnet50_shapes_by_hand, resnet50_shapes

EXPECTED_IMPLS = {
    "AdamW": {"torch-forloop", "torch-foreach", "torch-fused", "fastext",
              "fastext-flat"},
    "RMSprop": {"torch-forloop", "torch-foreach", "fastext", "fastext-flat"},
}
WORKLOADS = {"resnet50", "10M", "1000x"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick CPU run writing both the JSON and the plot (shared by the tests below)."""
    out = tmp_path_factory.mktemp("bench")
    png_path = out / "optim.png"
    rc, doc = quick_suite_run(out, "optim", "--plot", str(png_path))
    return rc, doc, png_path


def test_json_schema(quick_run):
    rc, doc, _ = quick_run
    assert rc == 0
    assert set(doc) == {"suite", "device", "torch", "stream_gbs", "machine", "build", "malloc",
                        "date", "reps", "warmup", "quick", "rows"}
    assert (doc["reps"], doc["warmup"], doc["quick"]) == (3, 1, True)  # --quick's defaults
    assert doc["suite"] == "optim"
    assert doc["device"] == "cpu"
    assert isinstance(doc["torch"], str)
    assert isinstance(doc["stream_gbs"], float) and math.isfinite(doc["stream_gbs"])
    assert doc["stream_gbs"] > 0
    assert isinstance(doc["machine"], dict) and doc["machine"]["cores"] >= 1
    assert "cpu_isa" in doc["build"]
    for row in doc["rows"]:
        assert set(row) == {"case", "impl", "ms", "gbs"}
        for key in ("ms", "gbs"):
            assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] > 0


def test_every_case_has_all_impls(quick_run):
    _, doc, _ = quick_run
    impls: dict[str, set[str]] = {}
    for row in doc["rows"]:
        impls.setdefault(row["case"], set()).add(row["impl"])
    expected = {f"{opt}/{w}": names for opt, names in EXPECTED_IMPLS.items() for w in WORKLOADS}
    assert impls == expected
    assert len(doc["rows"]) == sum(len(v) for v in expected.values())  # no duplicates


def test_plot_is_png(quick_run):
    _, _, png = quick_run
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_printed(quick_run):
    from fastext.bench.report import format_table

    _, doc, _ = quick_run
    table = format_table(doc)
    assert "| case | impl | ms | GB/s | % of stream | fastext speed-up |" in table
    assert "| AdamW/resnet50 | fastext |" in table and "1.00x" in table


def test_resnet50_shapes():
    shapes = resnet50_shapes()
    assert len(shapes) == 161
    assert sum(math.prod(s) for s in shapes) == 25_557_032
    assert shapes == _resnet50_shapes_by_hand()  # the fallback without torchvision agrees


def test_unknown_suite_is_an_error():
    with pytest.raises(SystemExit):
        main(["no-such-suite"])


_HEAP_CHECK = """
import ctypes, sys, torch
from fastext.bench.timing import reuse_freed_memory
if sys.argv[1] == "on" and reuse_freed_memory() is None:
    sys.exit(3)
libc = ctypes.CDLL(None)
libc.sbrk.restype = ctypes.c_void_p
t = torch.empty(6272 * 1024)  # 25.7 MB of float32: one of the bn_relu benchmark's activations
print(int(t.data_ptr() < libc.sbrk(0)))  # below the program break: from the reusable heap
"""


def _from_heap(setting: str) -> bool:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", _HEAP_CHECK, setting], capture_output=True,
                       text=True)
    if r.returncode == 3:
        pytest.skip("the C library is not glibc")
    assert r.returncode == 0, r.stderr
    return r.stdout.strip() == "1"


def test_reuse_freed_memory_serves_large_tensors_from_the_heap():
    """After the call a 25 MB tensor comes from glibc's heap, whose freed blocks are reused;
    by default it is mapped afresh (and page-faulted in again) on every allocation."""
    assert _from_heap("on")
    assert not _from_heap("off")


def test_time_alternating_shuffles_each_round():
    """Every implementation runs once per round (after the warm-up rounds), in an order
    shuffled per round: none always follows the same other one."""
    from fastext.bench.timing import time_alternating

    calls: list[str] = []
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    times = time_alternating(fns, "cpu", reps=12, warmup=1)
    assert set(times) == set("abc") and all(t >= 0 for t in times.values())
    rounds = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert len(rounds) == 13 and all(sorted(r) == list("abc") for r in rounds)
    timed = rounds[1:]
    assert len({tuple(r) for r in timed}) > 1
    predecessors_of_a = {r[r.index("a") - 1] for r in timed if r.index("a") > 0}
    assert predecessors_of_a == {"b", "c"}


def test_gpu_diag_runs(tmp_path):
    """bench/gpu_diag.py, which the GPU job runs after the suites, works here on the CPU
    (small shapes): a script error must not cost a GPU run. Its figures mean nothing on the
    CPU and are not checked."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "gpu_diag.py"
    out = tmp_path / "diag.json"
    subprocess.run([sys.executable, str(script), str(out)], check=True, capture_output=True)
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    cases = {(r["case"], r["impl"]) for r in rows}
    methods = {r["method"] for r in doc["suite_method"]}
    assert methods == {"alternating, eager + fastext", "blocks of 20 calls"}
    assert {("AdamW/10M", "fastext"), ("RMSprop/10M", "fastext"),
            ("RMSprop/resnet50", "fastext-flat")} <= cases
    assert all(r["host_us"] > 0 for r in rows)
