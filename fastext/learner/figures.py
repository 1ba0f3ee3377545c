"""Saving matplotlib figures to PNG, one way for the whole package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["save_figure"]


def save_figure(fig: Any, path: str | os.PathLike[str], **savefig_kw: Any) -> Path:
    """Writes ``fig`` to ``path`` as PNG (parent folders created, dpi 100 unless given) and
    releases it from pyplot when pyplot made it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    savefig_kw.setdefault("dpi", 100)
    fig.savefig(path, format="png", **savefig_kw)
    if getattr(fig.canvas, "manager", None) is not None:  # created by pyplot: free it
        import matplotlib.pyplot as plt

        plt.close(fig)
    return path
