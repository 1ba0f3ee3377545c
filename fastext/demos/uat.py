"""The universal approximation theorem, made visible: one hidden layer, growing width.

One-hidden-layer ReLU nets of width 1, 2, 4, ..., 128 are fitted with the Learner to a wiggly
1-D function on [-1, 1] (``sin(3 pi x) exp(-2 x^2) + x / 2``), and the test error (RMSE on a
grid finer than the training points) is plotted against the width on log-log axes, next to
the fits themselves. More units, smaller error: one layer can approximate the function as
closely as asked, if it is wide enough.

``fastext run uat [--json PATH]`` records ``widths``, ``errors`` (test RMSE per width) and
``slope`` (of log error against log width; about -2 is the ReLU capacity bound for a smooth
target), plus the PNG paths. ``--epochs N``: epochs of 50 full-batch steps per width
(default 40); ``--quick``: widths 1, 4, 16 and 2 epochs. ``fastext run`` refuses ``--data``
(nothing is read).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..tools.uat import approximation_errors, plot_errors, plot_fits
from ._common import epochs_or, write_json

__all__ = ["cli_main", "run"]

WIDTHS = [1, 2, 4, 8, 16, 32, 64, 128]
QUICK_WIDTHS = [1, 4, 16]
TARGET = "wiggle"


def run(epochs: int | None = None, quick: bool = False, out_dir: str | Path = "out",
        json_path: str | Path | None = None, seed: int = 0) -> dict[str, Any]:
    """Fits every width, prints the errors, writes the two figures, returns (and optionally
    writes) the record described in the module docstring."""
    epochs = epochs_or(epochs, 2 if quick else 40)
    widths = QUICK_WIDTHS if quick else WIDTHS
    wall = time.perf_counter()
    print(f"uat: one hidden ReLU layer of width {widths} fitted to {TARGET!r} on [-1, 1], "
          f"{epochs * 50} full-batch steps each", flush=True)
    r = approximation_errors(widths, TARGET, epochs=epochs, seed=seed)
    out = Path(out_dir)
    figures = [str(plot_errors(r["widths"], r["errors"], out / "uat_errors.png")),
               str(plot_fits(r["widths"], r["models"], TARGET, out / "uat_fits.png"))]
    wall_seconds = time.perf_counter() - wall
    print(f"slope of log(error) vs log(width): {r['slope']:.2f}")
    print(f"wall time  {wall_seconds:.0f} s")
    print("figures    " + ", ".join(figures), flush=True)
    record = {"demo": "uat", "target": TARGET, "epochs": epochs, "widths": r["widths"],
              "errors": r["errors"], "slope": r["slope"], "figures": figures,
              "wall_seconds": wall_seconds}
    write_json(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """``fastext run uat``: :func:`run` with the command line's arguments."""
    return run(epochs=args.epochs, quick=args.quick, out_dir=args.out, json_path=args.json)
