"""The ``fastext`` command line without a tool's optional dependency: each case runs in a
fresh interpreter where one package cannot be imported (``sys.modules[name] = None``, as
Python treats a package that is not there), so the other tests keep theirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import contextlib, io, json, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # "No module named ...", as if it were not installed
from fastext import cli

out = {}
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    out["info"] = cli.main(["info"])
out["info_json"] = sorted(json.loads(buf.getvalue()))
parser = cli._parser()
out["run"] = parser.parse_args(["run", "mnist", "--quick"]).name
with contextlib.redirect_stdout(io.StringIO()) as help_text:
    try:
        parser.parse_args(["--help"])
    except SystemExit:
        pass
out["help"] = help_text.getvalue()
out["tools"] = {}
for tool in sorted(cli.TOOLS):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        # a stub takes any arguments; a real tool gets the ones it knows
        args = parser.parse_args([tool])
        rc = cli.main([tool, "--whatever", "1"]) if getattr(args, "unavailable", False) \
            else None
    out["tools"][tool] = {"unavailable": getattr(args, "unavailable", False), "rc": rc,
                          "stderr": err.getvalue()}
print("RESULT" + json.dumps(out))
"""


def run_without(*packages: str) -> dict:
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "COLUMNS": "200"}  # help lines unwrapped
    proc = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(packages)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line.removeprefix("RESULT"))


@pytest.mark.parametrize("missing, pip, unavailable", [
    ("sklearn", "scikit-learn", {"hpsearch"}),
    ("pandas", "pandas", {"landscape"}),
    ("matplotlib", "matplotlib", {"hpsearch", "landscape", "uat"}),
])
def test_a_missing_optional_dependency_only_disables_its_tools(missing, pip, unavailable):
    """``fastext info`` and ``run`` work; the tools that need the package are listed as
    unavailable and, when invoked, name it and return 1; the others parse as usual."""
    out = run_without(missing)
    assert out["info"] == 0 and "torch" in out["info_json"]
    assert out["run"] == "mnist"
    for tool, got in out["tools"].items():
        if tool in unavailable:
            assert got["unavailable"] and got["rc"] == 1, (tool, got)
            assert f"needs {pip}" in got["stderr"] and "fastext[tools]" in got["stderr"]
            assert f"(unavailable: needs {pip})" in " ".join(out["help"].split())
        else:
            assert not got["unavailable"] and got["stderr"] == "", (tool, got)


def test_the_tools_extra_declares_their_dependencies():
    """pyproject's ``tools`` extra (which the stubs point to) holds what the tools import."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    from fastext import cli

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"][cli.TOOLS_EXTRA]
    assert {"matplotlib", "scikit-learn", "pandas"} <= set(extra)
    assert not {"matplotlib", "scikit-learn", "pandas"} & set(project["dependencies"])


# -- fastext run: arguments and errors (in this process; the demo itself is a stub) ----------

@pytest.fixture
def demo_calls(monkeypatch):
    """``fastext run NAME`` calls a stub instead of the demo; returns the (name, args) seen."""
    import fastext.demos

    calls = []
    monkeypatch.setattr(fastext.demos, "load",
                        lambda name: lambda args: calls.append((name, args)) or {})
    return calls


def test_run_refuses_epochs_below_one(demo_calls, capsys):
    """``--epochs 0`` meant the demo's default and ``-1`` trained nothing."""
    from fastext import cli

    for bad in ("0", "-1", "two"):
        with pytest.raises(SystemExit) as e:
            cli.main(["run", "mnist", "--epochs", bad])
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "must be >= 1, got 0" in err and "must be >= 1, got -1" in err
    assert "not an integer: 'two'" in err
    assert demo_calls == []
    assert cli.main(["run", "mnist", "--epochs", "3"]) == 0 and demo_calls[0][1].epochs == 3


def test_run_refuses_options_the_demo_does_not_take(demo_calls, capsys):
    """The tour's steps have their own epochs and hpsearch-vs-random searches them; only the
    demos with a feature loss (and the tour, for its superres step) use ``--weights``: such an
    option was silently ignored."""
    from fastext import cli

    assert cli.main(["run", "tour", "--epochs", "3"]) == 2
    assert "fastext run tour: --epochs is not taken: each step" in capsys.readouterr().err
    assert cli.main(["run", "hpsearch-vs-random", "--epochs", "3"]) == 2
    assert "fastext run hpsearch-vs-random: --epochs is not taken" in capsys.readouterr().err
    assert cli.main(["run", "mnist", "--weights", "vgg.pth"]) == 2
    assert capsys.readouterr().err == ("fastext run mnist: --weights is used only by gan, "
                                       "superres, tour\n")
    assert demo_calls == []
    for name in ("superres", "gan", "tour"):
        assert cli.main(["run", name, "--weights", "vgg.pth"]) == 0
    assert [(name, args.weights) for name, args in demo_calls] == [
        ("superres", "vgg.pth"), ("gan", "vgg.pth"), ("tour", "vgg.pth")]
    demo_calls.clear()
    assert cli.main(["run", "uat", "--data", "somewhere"]) == 2  # it was silently ignored
    assert capsys.readouterr().err == ("fastext run uat: --data is not taken: it fits "
                                       "synthetic functions\n")
    assert demo_calls == []


def test_run_with_a_missing_data_folder_is_one_line_and_exit_2(tmp_path, capsys):
    """A full traceback before; and the hint said to set $FASTEXT_DATA, which --data
    overrides."""
    from fastext import cli

    nowhere = tmp_path / "nowhere"
    assert cli.main(["run", "adult", "--data", str(nowhere), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastext run adult: no data directory 'adult'")
    assert str(nowhere / "adult") in err and "Check --data DIR" in err
    assert "FASTEXT_DATA" not in err and "Traceback" not in err
    assert err.count("\n") == 1  # the places searched, joined on the one line


def test_run_with_an_unreadable_data_file_names_it_and_exits_2(tmp_path, capsys):
    from fastext import cli

    d = tmp_path / "tinyshakespeare"
    d.mkdir()
    (d / "input.txt").write_bytes(b"First \xff\xfe Citizen\n")
    assert cli.main(["run", "shakespeare-lm", "--quick", "--data", str(tmp_path),
                     "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fastext run shakespeare-lm: {d / 'input.txt'}: not UTF-8 text")
