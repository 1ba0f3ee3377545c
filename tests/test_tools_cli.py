"""``fastext hpsearch|landscape|uat`` report bad input as ``fastext run`` does: a value out of
range is refused while parsing (exit 2), a bad ``--space``/``--objective``/``--model``, an
output path that cannot be written, missing data or an unreadable file is one line on stderr
(``fastext TOOL: ...``) and exit code 2, before any work; they used to be tracebacks (exit 1),
some only after the whole run. ``fastext run NAME`` checks ``--json`` and ``--out`` up front.

The work itself is a stub wherever a refusal could come too late, so that each case takes
well under a second, also on code that would not refuse it.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from fastext import cli
from fastext.data.files import find_data_dir
from fastext.tools.hp.space import Space, Uniform
from fastext.tools.hp.trials import TrialLog

SMALL = find_data_dir("mnist-small")  # 2000 training images
SPACE = json.dumps({"x": {"type": "uniform", "low": 0, "high": 1}})


class WouldRun(Exception):
    """Raised by the stubs: the tool started its work instead of refusing the arguments."""


def _one_line(capsys: pytest.CaptureFixture[str], tool: str) -> str:
    """The one stderr line a refusal prints, checked to be ``fastext TOOL: ...``."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fastext {tool}: "), err
    return lines[0]


@pytest.fixture
def objective_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """``--objective stub_objective_mod:f``: records its calls (none when refused up front)."""
    calls: list[dict[str, Any]] = []
    mod = types.ModuleType("stub_objective_mod")
    mod.f = lambda params: calls.append(params) or float(params["x"])  # type: ignore[attr-defined]
    mod.not_callable = 3  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "stub_objective_mod", mod)
    return calls


@pytest.fixture
def no_tool_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """The expensive steps of the tools raise :class:`WouldRun`: a refusal must come first."""
    import fastext.tools.landscape as ls
    import fastext.tools.nets as nets
    import fastext.tools.uat as uat

    def would_run(*args: Any, **kwargs: Any) -> Any:
        raise WouldRun

    monkeypatch.setattr(nets, "train_mnist", would_run)
    monkeypatch.setattr(ls, "loss_surface", would_run)
    monkeypatch.setattr(uat, "approximation_errors", would_run)


# -- refused while parsing ----------------------------------------------------------------
BOUNDS = [
    ("landscape", "--epochs", "0"), ("landscape", "--steps", "1"), ("landscape", "--bs", "0"),
    ("landscape", "--n-train", "0"), ("landscape", "--n-eval", "0"),
    ("landscape", "--n-dirs", "0"), ("landscape", "--lr", "0"), ("landscape", "--span", "-1"),
    ("landscape", "--radius", "nan"), ("landscape", "--seed", "-1"),
    ("hpsearch", "--trials", "0"), ("hpsearch", "--init", "1"),
    ("hpsearch", "--candidates", "0"), ("hpsearch", "--n-train", "0"),
    ("hpsearch", "--n-valid", "-5"),
    ("uat", "--epochs", "0"), ("uat", "--lr", "inf"), ("uat", "--lr", "-0.1"),
    ("uat", "--seed", "-1"),
]


@pytest.mark.parametrize(("tool", "option", "value"), BOUNDS)
def test_out_of_range_values_are_refused_while_parsing(tool: str, option: str, value: str,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str],
                                                      ) -> None:
    """``fastext uat --epochs 0`` was a ValueError traceback after the parse; others ran
    with nonsense (no training, an empty grid) or failed deep inside."""
    import importlib

    module = importlib.import_module(cli.TOOLS[tool])
    ran: list[Any] = []
    monkeypatch.setattr(module, "cli_main", lambda args: ran.append(args) or 0)
    with pytest.raises(SystemExit) as e:
        cli.main([tool, option, value])
    assert e.value.code == 2 and ran == []
    assert f"argument {option}:" in capsys.readouterr().err


# -- hpsearch -----------------------------------------------------------------------------
@pytest.mark.parametrize("space", ["MISSING", "{bad", "{}", "[1, 2]",
                                   '{"lr": {"type": "log", "low": 0, "high": 1}}'])
def test_hpsearch_bad_space_is_one_line_naming_it(space: str, tmp_path: Path,
                                                  objective_calls: list[dict[str, Any]],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file, text that is not JSON, JSON that is no space: tracebacks before."""
    if space == "MISSING":
        space = str(tmp_path / "nonexistent.json")
    elif space == "[1, 2]":  # a file holding JSON that is not an object
        (tmp_path / "list.json").write_text(space)
        space = str(tmp_path / "list.json")
    argv = ["hpsearch", "--objective", "stub_objective_mod:f", "--space", space,
            "--trials", "2", "--init", "2", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    assert _one_line(capsys, "hpsearch").startswith("fastext hpsearch: --space ")
    assert objective_calls == [] and not (tmp_path / "o").exists()


def test_hpsearch_bad_objective_is_one_line_but_its_own_bugs_keep_their_traceback(
        tmp_path: Path, objective_calls: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["hpsearch", "--space", SPACE, "--trials", "2", "--init", "2",
            "--out", str(tmp_path / "o")]
    for objective, says in (("no_such_module_xyz:f", "no module named 'no_such_module_xyz'"),
                            ("stub_objective_mod:nope", "has no 'nope'"),
                            ("stub_objective_mod:not_callable", "is not callable"),
                            ("nonsense", "expected 'package.module:name'")):
        assert cli.main([*base, "--objective", objective]) == 2
        line = _one_line(capsys, "hpsearch")
        assert f"--objective {objective}" in line or f"--objective {objective!r}" in line
        assert says in line
    # a module that is there but fails to import what it needs: its problem, shown whole
    (tmp_path / "broken_objective_mod.py").write_text("import no_such_dependency_xyz\n"
                                                      "def f(p):\n    return 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        cli.main([*base, "--objective", "broken_objective_mod:f"])
    assert objective_calls == []


def test_hpsearch_builtin_data_options_refused_with_a_custom_objective(
        tmp_path: Path, objective_calls: list[dict[str, Any]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """--data, --n-train and --n-valid feed the built-in objective only: with one of the
    user's they were silently ignored, now they are refused before any trial."""
    base = ["hpsearch", "--objective", "stub_objective_mod:f", "--space", SPACE,
            "--trials", "2", "--init", "2", "--out", str(tmp_path / "o")]
    for extra, named in ((["--data", str(SMALL)], "--data"), (["--n-train", "100"], "--n-train"),
                         (["--n-valid", "50", "--data", str(SMALL)], "--data, --n-valid")):
        assert cli.main([*base, *extra]) == 2
        line = _one_line(capsys, "hpsearch")
        assert line.startswith(f"fastext hpsearch: {named}: only for the built-in objective")
    assert objective_calls == [] and not (tmp_path / "o").exists()


def test_hpsearch_output_paths_are_checked_before_the_first_trial(
        tmp_path: Path, objective_calls: list[dict[str, Any]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """A --log naming a folder, an --out under a file, a log of another search: found only
    when the first trial was written (or as a traceback) before."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    other = tmp_path / "other_log.json"
    TrialLog(other, Space(y=Uniform(0.0, 1.0)), "rf", 0).save()
    base = ["hpsearch", "--objective", "stub_objective_mod:f", "--space", SPACE,
            "--trials", "2", "--init", "2"]
    cases = [(["--log", str(tmp_path), "--out", str(tmp_path / "o")], "--log", "is a folder"),
             (["--out", str(a_file)], "--out", "is not a folder"),
             (["--out", str(a_file / "sub")], "--out", "is a file"),
             (["--log", str(other), "--out", str(tmp_path / "o")], "--log",
              "different space")]
    for extra, option, says in cases:
        assert cli.main([*base, *extra]) == 2
        line = _one_line(capsys, "hpsearch")
        assert line.startswith(f"fastext hpsearch: {option} ") and says in line
    assert objective_calls == [] and not (tmp_path / "o").exists()
    # and good paths still work
    assert cli.main([*base, "--out", str(tmp_path / "o")]) == 0
    assert len(objective_calls) == 2


def test_hpsearch_missing_data_and_too_many_images_are_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = tmp_path / "nowhere"
    base = ["hpsearch", "--trials", "2", "--init", "2", "--out", str(tmp_path / "o")]
    assert cli.main([*base, "--data", str(nowhere)]) == 2
    assert str(nowhere) in _one_line(capsys, "hpsearch")
    assert cli.main([*base, "--data", str(SMALL), "--n-train", "1900", "--n-valid", "200"]) == 2
    line = _one_line(capsys, "hpsearch")
    assert "--n-train 1900" in line and "holds 2000" in line


# -- landscape ----------------------------------------------------------------------------
def test_landscape_missing_data_is_one_line(tmp_path: Path, no_tool_work: None,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = tmp_path / "nowhere"
    assert cli.main(["landscape", "--data", str(nowhere), "--out", str(tmp_path / "o")]) == 2
    line = _one_line(capsys, "landscape")
    assert "no data directory" in line and str(nowhere / "mnist") in line


def test_landscape_bad_arguments_are_one_line_before_any_work(
        tmp_path: Path, no_tool_work: None, capsys: pytest.CaptureFixture[str]) -> None:
    """Each used to be a traceback, some (--radius, --weights-b) after training and the
    whole surface."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all\n")
    small = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), small)
    base = ["landscape", "--data", str(SMALL), "--n-eval", "100", "--steps", "3"]
    out = ["--out", str(tmp_path / "o")]
    cases = [
        ([*out, "--model", "resnet"], "--model must be one of"),
        ([*out, "--model", "no_such_module_xyz:net"], "no module named"),
        ([*out, "--model", "torch.nn:Linear"], "must be callable without arguments"),
        ([*out, "--weights", str(tmp_path / "missing.pth")], "no weights file"),
        ([*out, "--weights", str(garbage)], f"{garbage}: not a file torch.load reads"),
        ([*out, "--weights-b", str(small)], f"--weights-b {small} does not fit the model"),
        ([*out, "--steps", "4", "--radius", "0.3"], "--radius 0.3 holds no point"),
        ([*out, "--n-train", "5000"], "5000 training images asked for, the split holds 2000"),
        (["--out", str(a_file)], f"--out {a_file} is not a folder"),
    ]
    for extra, says in cases:
        assert cli.main([*base, *extra]) == 2, extra
        assert says in _one_line(capsys, "landscape"), extra
    assert not (tmp_path / "o").exists()


# -- uat ----------------------------------------------------------------------------------
def test_uat_refuses_an_out_it_cannot_write_before_fitting(
        tmp_path: Path, no_tool_work: None, capsys: pytest.CaptureFixture[str]) -> None:
    """The figures are written after every width is fitted: a file given as --out was an
    error only then."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for out, says in ((a_file, "is not a folder"), (a_file / "sub", "is a file")):
        assert cli.main(["uat", "--widths", "1", "--epochs", "1", "--out", str(out)]) == 2
        assert says in _one_line(capsys, "uat")
    # a failure in the work itself is not an argument error: it keeps its traceback
    with pytest.raises(WouldRun):
        cli.main(["uat", "--widths", "1", "--epochs", "1", "--out", str(tmp_path / "o")])


# -- fastext run NAME ---------------------------------------------------------------------
@pytest.fixture
def demo_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``fastext run NAME`` calls a stub instead of the demo; returns the names it ran."""
    import fastext.demos

    calls: list[str] = []
    monkeypatch.setattr(fastext.demos, "load",
                        lambda name: lambda args: calls.append(name) or {})
    return calls


def test_run_checks_json_and_out_before_the_demo(tmp_path: Path, demo_calls: list[str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """``fastext run uat --quick --json /tmp`` ran the demo, then died with
    IsADirectoryError."""
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    out = ["--out", str(tmp_path / "o")]
    cases = [([*out, "--json", str(tmp_path)], f"--json {tmp_path} is a folder"),
             ([*out, "--json", str(a_file / "r.json")], f"its folder {a_file} is not a folder"),
             (["--out", str(a_file)], f"--out {a_file} is not a folder")]
    for extra, says in cases:
        assert cli.main(["run", "uat", "--quick", *extra]) == 2
        line = _one_line(capsys, "run uat")
        assert says in line, line
    assert demo_calls == []
    assert cli.main(["run", "uat", "--quick", *out, "--json", str(tmp_path / "r.json")]) == 0
    assert demo_calls == ["uat"]
