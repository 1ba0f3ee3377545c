"""End-to-end demos run by ``fastext run NAME``.

Each demo is a module of this package exposing ``cli_main(args) -> dict``: it takes the parsed
``run`` arguments (``data``, ``epochs``, ``quick``, ``json``, ``out``, ``bench_off``,
``weights``), runs the demo, writes ``args.json`` when given, and returns the record.
:data:`REGISTRY` maps each demo name to its module; a name whose module is not in this build is
simply not offered. ``fastext run`` refuses ``--weights`` for a demo outside
:data:`TAKE_WEIGHTS`, ``--epochs`` for one in :data:`FIXED_EPOCHS` and ``--data`` for one in
:data:`NO_DATA`, rather than ignore them. ``--no-bench`` is taken by every demo: only those in
:data:`WITH_BENCH` run a benchmark after the demo.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

__all__ = ["FIXED_EPOCHS", "NO_DATA", "REGISTRY", "TAKE_WEIGHTS", "WITH_BENCH", "available",
           "load"]

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

#: The demos that use ``--weights`` (local VGG16-BN weights for the feature loss); the tour
#: hands them to its superres step.
TAKE_WEIGHTS: frozenset[str] = frozenset({"superres", "gan", "tour"})

#: The demos whose epochs ``--epochs`` cannot set, and why.
FIXED_EPOCHS: dict[str, str] = {
    "tour": "each step has its own epoch count (fastext.demos.tour.TOUR); run a step by "
            "itself to set its epochs",
    "hpsearch-vs-random": "the epochs are one of the hyperparameters searched",
}


#: The demos that read no data set, and what they use instead.
NO_DATA: dict[str, str] = {"uat": "it fits synthetic functions"}

#: The demos that run a benchmark after the demo (``--no-bench`` skips it).
WITH_BENCH: frozenset[str] = frozenset({"mnist", "adult", "tour"})


def available() -> list[str]:
    """The demo names whose module exists in this build, sorted."""
    return sorted(name for name, mod in REGISTRY.items()
                  if importlib.util.find_spec(f"{__name__}.{mod}") is not None)


def load(name: str) -> Callable[[Any], dict[str, Any]]:
    """The ``cli_main`` of demo ``name`` (imported on demand so ``fastext info`` stays fast)."""
    return importlib.import_module(f"{__name__}.{REGISTRY[name]}").cli_main
