"""End-to-end demos run by ``fastext run NAME``.

Each demo is a module of this package exposing ``cli_main(args) -> dict``: it takes the parsed
``run`` arguments (``data``, ``epochs``, ``quick``, ``json``, ``out``, ``bench_off``), runs the
demo, writes ``args.json`` when given, and returns the record. :data:`REGISTRY` maps each demo
name to its module; a name whose module is not in this build is simply not offered.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

__all__ = ["REGISTRY", "available", "load"]

#: Demo name (as typed after ``fastext run``) -> module in ``fastext.demos``.
REGISTRY: dict[str, str] = {
    "tour": "tour",  # the main job (make demo): mnist, a tour of the tasks, the benchmarks
    "mnist": "mnist",
    # vision
    "multilabel": "multilabel",
    "segment": "segment",
    "transfer": "transfer",
    "gradcam": "gradcam",
    "progressive": "progressive",
    # tabular and collaborative filtering
    "adult": "adult",
    "movielens": "movielens",
    # text
    "shakespeare-lm": "shakespeare_lm",
    "imdb": "imdb",
    # image generation
    "superres": "superres",
    "gan": "gan",
    # tools
    "hpsearch-vs-random": "hpsearch_vs_random",
    "landscape": "landscape",
    "uat": "uat",
}


def available() -> list[str]:
    """The demo names whose module exists in this build, sorted."""
    return sorted(name for name, mod in REGISTRY.items()
                  if importlib.util.find_spec(f"{__name__}.{mod}") is not None)


def load(name: str) -> Callable[[Any], dict[str, Any]]:
    """The ``cli_main`` of demo ``name`` (imported on demand so ``fastext info`` stays fast)."""
    return importlib.import_module(f"{__name__}.{REGISTRY[name]}").cli_main
