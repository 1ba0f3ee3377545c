"""The main job's driver (``fastext run tour``): figures are collected from every record and
listed, each step is timed, a step that fails stops the job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastext.demos import REGISTRY, tour


def test_figures_of_finds_paths_anywhere():
    record = {"png": "a.png", "pngs": ["b.png", "c.csv", "d.txt"],
              "nested": {"samples": ("e.png",)}, "acc": 0.9}
    assert tour.figures_of(record) == ["a.png", "b.png", "c.csv", "e.png"]


def test_every_tour_step_is_a_demo():
    assert all(name in REGISTRY for name, _ in tour.TOUR)
    assert tour.TOUR[0][0] == "mnist"  # lr_find + fit_one_cycle first


def test_quick_tour_lists_its_figures(tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.setattr(tour, "TOUR", [("mnist", 1), ("uat", 2)])
    result = tour.run(quick=True, out_dir=tmp_path, json_path=tmp_path / "tour.json",
                      bench=False)
    names = [s["demo"] for s in result["steps"]]
    assert names == ["mnist", "uat"]
    assert all(s["seconds"] >= 0 for s in result["steps"])
    assert len(result["figures"]) >= 5  # mnist's three plots, uat's two
    for f in result["figures"]:
        assert f.endswith((".png", ".csv")) and Path(f).exists()
    out = capsys.readouterr().out
    assert "figures written:" in out and result["figures"][0] in out
    assert json.loads((tmp_path / "tour.json").read_text())["figures"] == result["figures"]


def test_failing_step_stops_the_job(tmp_path, monkeypatch):
    monkeypatch.setattr(tour, "TOUR", [("mnist", 1)])

    def boom(args):
        raise RuntimeError("no data")

    monkeypatch.setattr(tour, "load", lambda name: boom)
    with pytest.raises(RuntimeError, match="no data"):
        tour.run(quick=True, out_dir=tmp_path, bench=False)


def test_data_and_weights_reach_every_step_that_takes_them(tmp_path, monkeypatch):
    """``--data`` went to the mnist step only and ``--weights`` to none; the command line
    refuses ``--epochs`` for the tour (see test_cli)."""
    from fastext import cli
    from fastext.demos import TAKE_WEIGHTS

    seen = {}
    monkeypatch.setattr(tour, "load", lambda name: lambda args: seen.setdefault(name, args))
    data, weights = tmp_path / "data", tmp_path / "vgg16_bn.pth"
    assert cli.main(["run", "tour", "--quick", "--no-bench", "--data", str(data),
                     "--weights", str(weights), "--out", str(tmp_path)]) == 0
    assert list(seen) == [name for name, _ in tour.TOUR if name in REGISTRY]
    for name, args in seen.items():
        assert args.data == str(data), name
        assert args.weights == (str(weights) if name in TAKE_WEIGHTS else None), name
        assert args.epochs == dict(tour.TOUR)[name]
    assert seen["superres"].weights == str(weights)
