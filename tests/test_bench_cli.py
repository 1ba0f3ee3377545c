"""The benchmark command line and the scripts around it: what ``python -m fastext.bench``
checks before it runs anything, what it records, how the suites alternate, how the tables and
the plot treat fastext's own variants, and the two GPU shell scripts' argument and file
handling (never a build, never a timing)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

import fastext.bench as bench
from fastext.bench import main

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"case": "c", "impl": "fastext", "ms": 1.0}, {"case": "c", "impl": "torch", "ms": 2.0}]


@pytest.fixture
def fake_suite(monkeypatch):
    """Suite ``fake``: records the keywords of each ``run`` call in ``.calls``; the bandwidth
    is not measured (its 768 MB triad would dominate these tests)."""
    suite = types.ModuleType("fake_bench_suite")
    suite.NAME = "fake"
    suite.calls = []

    def run(**kwargs):
        suite.calls.append(kwargs)
        return [dict(r) for r in ROWS]

    suite.run = run
    monkeypatch.setitem(sys.modules, suite.__name__, suite)
    monkeypatch.setitem(bench.SUITES, "fake", suite.__name__)
    monkeypatch.setattr(bench, "measure_bandwidth", lambda device, numel=None: 1.0)
    return suite


# -- bench/error_paths.py and bench/native_trace.c --------------------------------------------
def _error_paths():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import error_paths
    finally:
        sys.path.pop(0)
    return error_paths


def test_error_paths_all_raise_here(capsys):
    """Every refused call the GPU check probes raises here, one process each (the script the
    static libstdc++ of the GPU machine was found with)."""
    assert _error_paths().main(["--no-trace"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= len(_error_paths().CASES)
    assert all(line.split()[2] == "raised" for line in lines), lines


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="needs a C compiler for bench/native_trace.c")
def test_native_trace_reports_a_crash(tmp_path, capsys):
    """A segfaulting case rerun under the preloaded tracer prints the signal, the faulting
    frame and the native stack (library+offset)."""
    ep = _error_paths()
    tracer = ep.build_tracer(tmp_path)
    assert ep.outcome(ep.run_case("import ctypes; ctypes.string_at(0)", "cpu")).startswith(
        "CRASHED")
    ep.trace("import ctypes; ctypes.string_at(0)", "cpu", tracer)
    out = capsys.readouterr().out
    assert "native_trace: signal 11" in out
    assert re.search(r"native_trace: fault \S+\+0x[0-9a-f]+", out)
    assert re.search(r"native_trace: frame \S*python\S*\+0x[0-9a-f]+", out)


# -- bench/gpu_check.sh ---------------------------------------------------------------------
@pytest.mark.parametrize("args", [[], [""], ["--help"], ["a-file/out"]],
                         ids=["no-argument", "empty", "option", "cannot-create"])
def test_gpu_check_without_outdir_refuses_and_does_nothing(tmp_path, args):
    # Stand-ins for what the script's steps run: had a step started, calls.log would exist
    # (they also keep a broken script from building or testing anything here).
    fake_bin, calls = tmp_path / "bin", tmp_path / "calls.log"
    fake_bin.mkdir()
    for tool in ("python3", "nvidia-smi", "timeout"):
        (fake_bin / tool).write_text(f'#!/bin/sh\necho {tool} "$@" >> {calls}\n')
        (fake_bin / tool).chmod(0o755)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    if args == ["a-file/out"]:  # a folder that cannot be made: its parent is a file
        args = [str(tmp_path / "a-file" / "out")]
        (tmp_path / "a-file").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env["PATH"] = f"{fake_bin}{os.pathsep}{env['PATH']}"
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert ("cannot create or write the folder" if "a-file" in "".join(args)
            else "usage: bash bench/gpu_check.sh OUTDIR") in r.stderr
    assert not calls.exists() and list(cwd.iterdir()) == []


# -- scripts/gpu_torch_check.sh -------------------------------------------------------------
def test_gpu_torch_check_copies_tracked_and_new_files(tmp_path):
    """The build copy holds the tracked files still there and the new (untracked, not
    ignored) ones; a tracked file deleted in the work tree does not stop it."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "gpu_torch_check.sh", repo / "scripts")
    files = {".gitignore": "*.log\n", "kept.py": "", "deleted.py": "", "sub/dir/nested.txt": ""}
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo,
                       check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "files")
    (repo / "deleted.py").unlink()
    (repo / "new.py").write_text("")
    (repo / "build.log").write_text("")  # ignored
    # DEST is relative to where the script is called from, not to the checkout
    r = subprocess.run(["bash", "repo/scripts/gpu_torch_check.sh", "--copy-tree", "copy"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    copy = tmp_path / "copy"
    got = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file())
    assert got == [".gitignore", "kept.py", "new.py", "scripts/gpu_torch_check.sh",
                   "sub/dir/nested.txt"]


# -- checks before anything runs ------------------------------------------------------------
def test_train_refuses_without_full_mnist(monkeypatch, tmp_path, fake_suite, capsys):
    """Without --quick the train suite needs full MNIST: where only the shipped subset is
    found it refuses, naming where it looked, instead of timing the subset."""
    from fastext.bench import train
    from fastext.data import files

    search = files.search_places  # full MNIST only in tmp_path (absent); the subset as usual
    monkeypatch.setattr(files, "search_places", lambda name, root: (
        [tmp_path / "mnist"] if name == "mnist" and root is None else search(name, root)))
    with pytest.raises(FileNotFoundError, match="full MNIST") as e:
        train.load_data(quick=False)
    assert str(tmp_path / "mnist") in str(e.value)
    assert train.missing(torch.device("cpu"), quick=True) is None
    with pytest.raises(SystemExit) as e:
        main(["fake", "train", "--reps", "1"])
    assert e.value.code == 2 and fake_suite.calls == []  # refused before any suite ran
    err = capsys.readouterr().err
    assert "suite train cannot run here: full MNIST" in err and str(tmp_path / "mnist") in err


@pytest.fixture
def data_suite(monkeypatch):
    """Suite ``fakedata``, which reads a data set: records the keywords of each ``run`` and
    ``missing`` call."""
    suite = types.ModuleType("fake_data_suite")
    suite.NAME, suite.DATA = "fakedata", "fake data"
    suite.calls, suite.missing_calls = [], []

    def run(**kwargs):
        suite.calls.append(kwargs)
        return [dict(r) for r in ROWS]

    def missing(device, quick, **kwargs):
        suite.missing_calls.append(kwargs)
        return None

    suite.run, suite.missing = run, missing
    monkeypatch.setitem(sys.modules, suite.__name__, suite)
    monkeypatch.setitem(bench.SUITES, "fakedata", suite.__name__)
    return suite


def test_data_goes_to_the_suites_that_read_data(fake_suite, data_suite, tmp_path):
    """--data reaches the run and the check of a suite that reads a data set, and no other
    suite; without --data neither is given one."""
    assert main(["fake", "fakedata", "--reps", "1", "--data", str(tmp_path)]) == 0
    assert data_suite.calls[-1]["data"] == str(tmp_path)
    assert data_suite.missing_calls[-1] == {"data": str(tmp_path)}
    assert "data" not in fake_suite.calls[-1]
    assert main(["fakedata", "--reps", "1"]) == 0
    assert "data" not in data_suite.calls[-1] and data_suite.missing_calls[-1] == {}


def test_data_without_a_suite_that_reads_data_is_refused(fake_suite, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["fake", "--data", str(tmp_path)])
    assert e.value.code == 2 and fake_suite.calls == []
    err = capsys.readouterr().err
    assert "--data: no suite named reads a data set" in err and "train" in err


def test_train_and_tabular_search_only_the_data_folder_given(tmp_path):
    """The real suites with --data: a folder without the data set is named in the refusal
    (not searched around); a subset is not full MNIST; --quick takes the subset there."""
    from fastext.bench import tabular, train
    from fastext.data.files import find_data_dir

    cpu = torch.device("cpu")
    assert bench.reads_data("train") and bench.reads_data("tabular")
    assert not bench.reads_data("optim")
    assert str(tmp_path) in train.missing(cpu, quick=False, data=tmp_path)
    assert str(tmp_path) in train.missing(cpu, quick=True, data=tmp_path)
    subset = find_data_dir("mnist-small")
    assert "holds a subset" in train.missing(cpu, quick=False, data=subset)
    assert train.missing(cpu, quick=True, data=subset) is None
    quick = train.load_data(quick=True, data=subset)
    assert len(quick.y_train) == train.QUICK_BATCHES * train.BATCH_SIZE
    assert len(quick.y_valid) == train.QUICK_TEST
    if bench.importable("pandas"):
        assert str(tmp_path) in tabular.missing(cpu, data=tmp_path)


def test_default_run_and_named_suite_without_pandas():
    """`python -m fastext.bench` with no suite named skips the tabular suite where pandas is
    missing; naming it is refused in one line."""
    code = textwrap.dedent("""
        import sys, types
        sys.modules["pandas"] = None  # as if pandas were not installed
        import fastext.bench as bench
        fake = types.ModuleType("fake_suite")
        fake.run = lambda **kw: [{"case": "c", "impl": "fastext", "ms": 1.0}]
        sys.modules["fake_suite"] = fake
        bench.SUITES = {"tabular": "fastext.bench.tabular", "fake": "fake_suite"}
        bench.measure_bandwidth = lambda device, numel=None: 1.0
        print("default run rc", bench.main(["--quick"]), flush=True)
        bench.main(["tabular", "--quick"])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "default run rc 0" in r.stdout, r.stderr
    assert "skipping tabular: needs pandas" in r.stderr
    assert r.returncode == 2
    assert "error: suite tabular cannot run here: needs pandas" in r.stderr
    assert "Traceback" not in r.stderr


def test_default_run_skips_tabular_without_fastai(monkeypatch, fake_suite, capsys):
    """The tabular suite compares with fastai: a run naming no suite leaves it out where
    fastai is missing (named, it still runs, timing fastext alone)."""
    from fastext.bench import tabular

    monkeypatch.setattr(tabular, "fastai_available", lambda: False)
    monkeypatch.setattr(tabular, "missing", lambda device, quick=False: None, raising=False)
    monkeypatch.setattr(bench, "SUITES", {"tabular": "fastext.bench.tabular",
                                          "fake": fake_suite.__name__})
    assert main(["--quick", "--reps", "1"]) == 0
    assert len(fake_suite.calls) == 1
    assert "skipping tabular: fastai is not installed" in capsys.readouterr().err
    assert tabular.skip_by_default(torch.device("cpu")) is not None


def test_named_suite_missing_its_package_is_refused(monkeypatch, fake_suite, capsys):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed
    with pytest.raises(SystemExit) as e:
        main(["fake", "feature_loss", "--quick"])
    assert e.value.code == 2 and fake_suite.calls == []
    assert "suite feature_loss cannot run here: needs torchvision" in capsys.readouterr().err


def test_plot_without_matplotlib_is_refused_up_front(monkeypatch, fake_suite, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(SystemExit) as e:
        main(["fake", "--quick", "--plot", str(tmp_path / "p.png")])
    assert e.value.code == 2 and fake_suite.calls == []
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_plot_with_nothing_to_compare_is_a_note(monkeypatch, fake_suite, tmp_path, capsys):
    """A run whose suites timed fastext alone (tabular without fastai) ended in a traceback
    after all the work; it now says there is nothing to plot."""
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(fake_suite, "run", lambda **kw: [dict(ROWS[0])])  # fastext alone
    out = tmp_path / "p.png"
    argv = ["fake", "--reps", "1", "--plot", str(out), "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    assert "no suite has a counterpart to fastext to plot" in capsys.readouterr().err
    assert not out.exists() and (tmp_path / "r.json").is_file()


def test_json_folder_is_created_up_front(fake_suite, tmp_path):
    path = tmp_path / "new" / "folder" / "r.json"
    assert main(["fake", "--quick", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["rows"] == ROWS
    # a folder that cannot be created is refused before any suite runs
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as e:
        main(["fake", "--quick", "--json", str(tmp_path / "file" / "r.json")])
    assert e.value.code == 2 and len(fake_suite.calls) == 1


def test_plot_folder_is_created_and_a_folder_path_refused_up_front(fake_suite, tmp_path):
    """--plot into a folder not there yet crashed after every suite ran, and --plot at a
    folder wrote the chart beside it (DIR.png); now the first works as --json does and the
    second is refused before any suite runs."""
    pytest.importorskip("matplotlib")
    path = tmp_path / "new" / "folder" / "speedup.png"
    assert main(["fake", "--quick", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as e:
        main(["fake", "--quick", "--plot", str(tmp_path)])
    assert e.value.code == 2 and len(fake_suite.calls) == 1
    assert not (tmp_path.parent / f"{tmp_path.name}.png").exists()


# -- what is recorded -----------------------------------------------------------------------
@pytest.mark.parametrize("argv, reps, warmup, quick", [
    (["--quick"], 3, 1, True),
    (["--quick", "--reps", "7"], 7, 1, True),  # an explicit --reps is kept in quick mode
    (["--reps", "2"], 2, 3, False),
    ([], 10, 3, False),  # the default of a suite without DEFAULT_REPS, on the CPU
])
def test_json_records_reps_warmup_quick(fake_suite, tmp_path, argv, reps, warmup, quick):
    path = tmp_path / "r.json"
    assert main(["fake", "--json", str(path), *argv]) == 0
    assert {k: fake_suite.calls[-1][k] for k in ("reps", "warmup", "quick")} == {
        "reps": reps, "warmup": warmup, "quick": quick}
    doc = json.loads(path.read_text())
    assert (doc["reps"], doc["warmup"], doc["quick"]) == (reps, warmup, quick)


def test_documented_suite_interface_is_what_run_suite_passes(fake_suite):
    bench.run_suite("fake", torch.device("cpu"), reps=1, quick=True, stream_gbs=1.0)
    documented = re.search(r"``run\(([^)]*)\) -> rows``", bench.__doc__).group(1)
    assert {a.strip() for a in documented.split(",")} == set(fake_suite.calls[-1])


def test_reps_help_names_the_suites_defaults():
    from fastext.bench import tabular, train

    text = " ".join(bench._parser().format_help().split())  # unwrapped
    assert f"train {train.DEFAULT_REPS['cpu']}" in text
    assert f"tabular {tabular.DEFAULT_REPS['cpu']}" in text
    assert "cpu {cpu} / cuda {cuda}".format(**bench.DEFAULT_REPS) in text


# -- alternation ----------------------------------------------------------------------------
def _assert_six_shuffled_rounds(names: list[str]) -> None:
    """Six rounds of implementations a, b, c, each once per round, not in one fixed order."""
    rounds = [names[i:i + 3] for i in range(0, len(names), 3)]
    assert all(sorted(r) == list("abc") for r in rounds) and len(rounds) == 6
    assert len({tuple(r) for r in rounds}) > 1


def test_train_alternates_in_a_seeded_shuffled_order(monkeypatch):
    from fastext.bench import train

    calls: list[str] = []

    def impl(name):
        def run(model, data, device, seed):
            calls.append(name)
            return 0.5
        return run

    monkeypatch.setattr(train, "implementations", lambda: {n: impl(n) for n in "abc"})
    tiny = train.MnistTensors(torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64),
                              torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.int64))
    monkeypatch.setattr(train, "load_data", lambda quick=False, data=None: tiny)
    rows = train.run(torch.device("cpu"), reps=6, warmup=0)
    assert [r["impl"] for r in rows] == list("abc")
    _assert_six_shuffled_rounds(calls)
    first = list(calls)
    calls.clear()
    train.run(torch.device("cpu"), reps=6, warmup=0)
    assert calls == first  # seeded: the same orders on every run


def test_tabular_alternates_in_a_seeded_shuffled_order(monkeypatch):
    from fastext.bench import tabular

    calls: list[tuple[int, str]] = []

    def setup_of(name):
        def setup(data, bs, device):
            def epoch():
                calls.append((bs, name))
                return 0.5, 10
            return epoch
        return setup

    class Frames:  # stands in for AdultFrames
        def head(self, n_train, n_test):
            return self

    monkeypatch.setattr(tabular, "implementations", lambda: {n: setup_of(n) for n in "abc"})
    monkeypatch.setattr(tabular, "load_data", lambda quick=False, data=None: Frames())
    tabular.run(torch.device("cpu"), reps=6, warmup=0)
    for bs in tabular.BATCH_SIZES:
        names = [n for b, n in calls if b == bs]
        _assert_six_shuffled_rounds(names)
    first = list(calls)
    calls.clear()
    tabular.run(torch.device("cpu"), reps=6, warmup=0)
    assert calls == first  # seeded: the same orders on every run


# -- tables and plot ------------------------------------------------------------------------
VARIANT_DOC = {"suite": "optim", "device": "cpu", "torch": "x", "stream_gbs": 1.0,
               "machine": {}, "rows": [{"case": "c", "impl": "torch-foreach", "ms": 3.0},
                                       {"case": "c", "impl": "fastext", "ms": 1.0},
                                       {"case": "c", "impl": "fastext-flat", "ms": 0.5}]}


def test_fastext_variants_are_not_counterparts(monkeypatch, tmp_path):
    figure = pytest.importorskip("matplotlib.figure")

    from fastext.bench.report import format_table, speedups, write_plot

    assert speedups(VARIANT_DOC["rows"]) == {("c", "torch-foreach"): 3.0, ("c", "fastext"): 1.0}
    table = format_table(VARIANT_DOC)
    assert "| c | torch-foreach | 3.000 | 3.00x |" in table
    assert "| c | fastext-flat | 0.500 | variant |" in table

    legends: list[str] = []
    save = figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        legends.extend(t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(figure.Figure, "savefig", spy)
    write_plot([VARIANT_DOC], str(tmp_path / "p.png"))
    assert legends == ["vs torch-foreach"]
    only_variants = {**VARIANT_DOC, "rows": VARIANT_DOC["rows"][1:]}
    with pytest.raises(ValueError):  # nothing to compare with
        write_plot([only_variants], str(tmp_path / "q.png"))


def test_committed_results_still_format():
    """Result files written before ``reps``/``warmup``/``quick`` existed still read."""
    from fastext.bench.report import format_table

    docs = [json.loads(p.read_text()) for p in sorted((ROOT / "bench" / "results").glob("*.json"))]
    suites = [d for d in docs if {"suite", "device", "stream_gbs", "rows"} <= set(d)]
    assert suites
    for doc in suites:
        assert f"## {doc['suite']}" in format_table(doc)
