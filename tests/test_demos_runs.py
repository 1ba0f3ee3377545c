"""Demos run on tiny data: progressive resizing ends at the size it is scored at, segmentation
without a Void class and on a fixed thread count, hpsearch-vs-random keeps the trial logs of
different objectives apart, the Adult demo checks its reloaded model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

SMALL = Path(__file__).resolve().parents[1] / "data" / "mnist-small"


# -- progressive ----------------------------------------------------------------------------

@pytest.mark.parametrize("epochs", [1, 2, 3, 5])
def test_progressive_schedule_always_ends_at_the_scored_size(epochs):
    from fastext.demos.progressive import SIZE, schedule
    from fastext.learner.progressive import ProgressiveResize

    cb = ProgressiveResize(schedule(epochs))
    assert cb.size_at(0) is not None and cb.size_at(epochs - 1) == SIZE
    assert (cb.size_at(0) < SIZE) == (epochs > 1)  # it does resize when it can


def test_progressive_two_epochs_trains_at_the_final_size(one_thread):
    """With 2 epochs the arm used to train at 28 px only and be scored at 56."""
    from fastext.demos import progressive

    rec = progressive.run(data=SMALL, epochs=2, n_train=64, n_test=32)
    assert rec["sizes"] == {"0": 28, "1": 56} and rec["epochs"] == 2


def test_progressive_quick_runs_the_whole_schedule(one_thread):
    from fastext.demos import progressive

    rec = progressive.run(data=SMALL, quick=True)
    assert rec["epochs"] == 3 and rec["sizes"] == {"0": 16, "1": 28, "2": 56}
    assert rec["n_train"] == progressive.QUICK_TRAIN


# -- segment --------------------------------------------------------------------------------

def _camvid(root: Path, codes: list[str], n: int = 12) -> Path:
    """``n`` frames of 48x64 (the demo's training size, so nothing is resized): random
    images, masks of horizontal bands of the classes."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "codes.txt").write_text("\n".join(codes) + "\n")
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        mask = np.repeat((np.arange(48) // 16 + i) % len(codes), 64).reshape(48, 64)
        Image.fromarray(img).save(root / "images" / f"f{i:02d}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "labels" / f"f{i:02d}_P.png")
    return root


def test_segment_without_a_void_class_scores_every_pixel(tmp_path):
    from fastext.demos import segment

    data = _camvid(tmp_path / "camvid_tiny", ["Road", "Sky", "Car"])
    rec = segment.run(data=data, quick=True, out=tmp_path / "out")
    assert 0 <= rec["pixel_acc_no_void"] <= 1 and 0 < rec["majority_baseline"] <= 1
    assert rec["majority_class"] in ("Road", "Sky", "Car")


def test_segment_runs_on_one_thread_by_default(tmp_path, monkeypatch):
    """Its thread count was 1 or all cores depending on the machine's load average, so the
    seeded figures changed from run to run; now one thread, as the other demos."""
    import os

    from fastext.demos import segment

    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0), raising=False)  # idle
    data = _camvid(tmp_path / "camvid_tiny", ["Road", "Sky", "Void"])
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rec = segment.run(data=data, quick=True, out=tmp_path / "out")
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(old)
    assert rec["threads"] == 1


# -- hpsearch-vs-random ---------------------------------------------------------------------

def test_hpsearch_vs_random_keeps_logs_of_other_data_or_sizes_apart(tmp_path, monkeypatch,
                                                                    one_thread):
    """The trial logs store only space, method and seed: a run on other sizes resumed the
    first run's trials and recorded them as its own."""
    from fastext.demos import hpsearch_vs_random as demo

    logs: list[Path] = []
    search = demo.search

    def spy(*args, **kwargs):
        logs.append(Path(kwargs["log"]))
        return search(*args, **kwargs)

    monkeypatch.setattr(demo, "search", spy)
    tiny = {"seeds": 1, "trials": 2, "n_init": 2, "n_train": 60, "n_valid": 40}
    monkeypatch.setattr(demo, "QUICK", tiny)
    first = demo.run(data=SMALL, quick=True, out_dir=tmp_path, progress=False)
    monkeypatch.setattr(demo, "QUICK", {**tiny, "n_train": 80})
    second = demo.run(data=SMALL, quick=True, out_dir=tmp_path, progress=False)
    assert (first["n_train"], second["n_train"]) == (60, 80)
    assert len(logs) == 4 and not set(logs[:2]) & set(logs[2:])
    assert {p.parent.name for p in logs} == {"quick-mnist-small-60-40", "quick-mnist-small-80-40"}
    assert all(p.is_file() for p in logs)


# -- adult ----------------------------------------------------------------------------------

def test_adult_demo_benchmarks_the_files_it_read(tmp_path, monkeypatch):
    """The demo's follow-up benchmark reads the Adult files the demo read (it searched the
    default places whatever --data said)."""
    from fastext.data.adult import find_adult
    from fastext.demos import adult

    try:
        path = find_adult()
    except FileNotFoundError:
        pytest.skip("UCI Adult is not on this machine")
    data = tmp_path / "elsewhere" / "adult"
    shutil.copytree(path, data)
    calls = []
    monkeypatch.setattr(adult, "run_bench", lambda *a, **k: calls.append((a, k)))
    adult.run(data=data.parent, quick=True, epochs=1, progress=False, out_dir=tmp_path)
    assert calls == [(("tabular", True, data), {})]


def test_adult_demo_checks_the_reloaded_model(tmp_path, monkeypatch):
    """The docstring promised that the exported model, reloaded, predicts as the trained one;
    nothing compared them."""
    from fastext.data.adult import find_adult
    from fastext.demos import adult

    try:
        find_adult()
    except FileNotFoundError:
        pytest.skip("UCI Adult is not on this machine")
    load_tabular = adult.load_tabular

    def broken(path):  # a reload that lost the weights
        predictor = load_tabular(path)
        for p in predictor.model.parameters():
            torch.nn.init.zeros_(p) if p.ndim == 1 else torch.nn.init.normal_(p)
        return predictor

    monkeypatch.setattr(adult, "load_tabular", broken)
    with pytest.raises(RuntimeError, match="reloaded model predicts"):
        adult.run(quick=True, epochs=1, bench=False, progress=False, out_dir=tmp_path)
