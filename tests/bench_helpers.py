"""Shared by the benchmark-suite tests: one quick CPU run of a suite, its JSON read back."""

import json
from pathlib import Path

from fastext.bench import main


def quick_suite_run(folder: Path, suite: str, *extra: str) -> tuple[int, dict]:
    """Runs ``python -m fastext.bench SUITE --quick --device cpu --json ...``."""
    json_path = folder / f"{suite}.json"
    rc = main([suite, "--quick", "--device", "cpu", "--json", str(json_path), *extra])
    return rc, json.loads(json_path.read_text())
