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
