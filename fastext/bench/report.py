"""Presenting benchmark results: machine description, progress lines, Markdown tables and
the speed-up bar chart."""

from __future__ import annotations

import math
import os
import platform
import sys
from collections.abc import Sequence

import torch

from ..learner.figures import save_figure

BASELINE = "fastext"  # the implementation every other one is compared with


def is_variant(impl: str) -> bool:
    """Whether ``impl`` is a variant of fastext's own (``fastext-flat``): not a counterpart,
    so it gets no speed-up ratio and no bar."""
    return impl != BASELINE and impl.startswith(BASELINE)


def machine_info(device: torch.device | str) -> dict:
    """CPU model, core count and torch's thread count; the GPU's name when ``device`` is CUDA."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # not Linux
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform()}
    dev = torch.device(device)
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


class Progress:
    """Progress lines on stderr, ``[suite] message``; overwritten in place on a terminal so
    that a long run leaves one line behind, appended one per line otherwise (CI logs)."""

    def __init__(self, suite: str, stream=None) -> None:
        self.suite = suite
        self.stream = stream if stream is not None else sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._width = 0

    def __call__(self, msg: str) -> None:
        """Show ``msg`` as the current step."""
        line = f"[{self.suite}] {msg}"
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the in-place line (no-op when not on a terminal)."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def speedups(rows: Sequence[dict]) -> dict[tuple[str, str], float]:
    """(case, impl) -> time of ``impl`` / time of fastext on the same case (> 1: fastext
    is faster), for fastext itself (1.0) and its counterparts. Cases without a fastext row
    and fastext's own variants (:func:`is_variant`) are left out."""
    base = {r["case"]: r["ms"] for r in rows if r["impl"] == BASELINE}
    return {(r["case"], r["impl"]): r["ms"] / base[r["case"]] for r in rows
            if r["case"] in base and not is_variant(r["impl"])}


def _bw_label(result: dict) -> str:
    # On CUDA the reference is a device-to-device copy, not a STREAM triad.
    return "copy" if result["device"] == "cuda" else "stream"


def format_table(result: dict) -> str:
    """One suite's result object as a header line plus a Markdown table. The speed-up of a
    fastext variant (``fastext-flat``) reads ``variant``: it is no counterpart."""
    m = result.get("machine", {})
    where = m.get("gpu") or f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores"
    bw = _bw_label(result)
    # Suites that count host syncs per call (``amp`` on CUDA) get one more column, suites
    # that train (``train``) an accuracy column; those without bytes moved (``train``)
    # have no GB/s columns.
    syncs = any("host_syncs" in r for r in result["rows"])
    acc = any("accuracy" in r for r in result["rows"])
    gbs = any("gbs" in r for r in result["rows"])
    lines = [
        f"## {result['suite']} — {result['device']}, torch {result['torch']}, "
        f"{bw} {result['stream_gbs']:.1f} GB/s, {where}",
        "",
        "| case | impl | ms |" + (f" GB/s | % of {bw} |" if gbs else "") + " fastext speed-up |"
        + (" host syncs |" if syncs else "") + (" accuracy |" if acc else ""),
        "|---|---|---:|" + ("---:|---:|" if gbs else "") + "---:|" + ("---:|" if syncs else "")
        + ("---:|" if acc else ""),
    ]
    ups = speedups(result["rows"])
    for r in result["rows"]:
        up = ups.get((r["case"], r["impl"]))
        line = f"| {r['case']} | {r['impl']} | {r['ms']:.3f} |"
        if gbs and "gbs" in r:
            pct = (100.0 * r["gbs"] / result["stream_gbs"] if result["stream_gbs"] > 0
                   else math.nan)
            line += f" {r['gbs']:.1f} | {pct:.0f}% |"
        elif gbs:
            line += " — | — |"
        if is_variant(r["impl"]):
            line += " variant |"
        else:
            line += f" {'—' if up is None else f'{up:.2f}x'} |"
        if syncs:
            line += f" {r.get('host_syncs', '—')} |"
        if acc:
            line += f" {r['accuracy']:.4f} |" if "accuracy" in r else " — |"
        lines.append(line)
    return "\n".join(lines)


def write_plot(results: Sequence[dict], path: str) -> None:
    """Bar chart (PNG) of fastext's speed-up over each counterpart, per case; one panel per
    suite. A bar above 1 means fastext is faster. fastext's own variants (``fastext-flat``)
    get no bars."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    def counterpart(impl: str) -> bool:
        return impl != BASELINE and not is_variant(impl)

    # a suite whose counterparts could not run here (e.g. tabular without fastai) has no bars
    results = [r for r in results if any(counterpart(x["impl"]) for x in r["rows"])]
    if not results:
        raise ValueError("no suite has a counterpart to fastext to plot")
    fig, axes = plt.subplots(len(results), 1, figsize=(10, 4 * len(results)), squeeze=False)
    for ax, result in zip(axes[:, 0], results, strict=True):
        ups = speedups(result["rows"])
        cases = list(dict.fromkeys(r["case"] for r in result["rows"]))
        impls = list(dict.fromkeys(r["impl"] for r in result["rows"] if counterpart(r["impl"])))
        width = 0.8 / max(1, len(impls))
        for i, impl in enumerate(impls):
            xs = [c + (i - (len(impls) - 1) / 2) * width for c in range(len(cases))]
            ys = [ups.get((case, impl), math.nan) for case in cases]  # NaN: no such impl
            bars = ax.bar(xs, ys, width, label=f"vs {impl}")
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        finite = [u for u in ups.values() if math.isfinite(u) and u > 0]
        if finite and max(finite) / min(finite) > 10:  # 0.6x and 30x on one readable axis
            ax.set_yscale("log")
        ax.set_xticks(range(len(cases)), cases, rotation=20, ha="right")
        ax.set_ylabel("fastext speed-up (x)")
        m = result.get("machine", {})
        ax.set_title(f"{result['suite']} on {result['device']} "
                     f"({m.get('gpu') or m.get('cpu', '?')}), torch {result['torch']}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)  # PNG whatever the suffix, its folder created
