"""Universal approximation: the one-hidden-layer net, the error measure against numpy, the
initial spread of units, wide beats narrow and beats the best straight line, bad input,
figures written, the CLI and the demo in quick mode."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import pytest
import torch
from torch import nn

from fastext import cli
from fastext.tools import uat

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("width", [1, 7, 64])
def test_one_hidden_layer_shape_and_parameter_count(width):
    m = uat.one_hidden_layer(width, "tanh")
    assert [type(x) for x in m] == [nn.Linear, nn.Tanh, nn.Linear]
    assert sum(p.numel() for p in m.parameters()) == 3 * width + 1
    assert m(torch.zeros(5, 1)).shape == (5, 1)


@pytest.mark.parametrize("width", [0, -3, 2.5, True])
def test_bad_widths_and_activations(width):
    with pytest.raises(ValueError, match="width"):
        uat.one_hidden_layer(width)
    with pytest.raises(ValueError, match="activation"):
        uat.one_hidden_layer(4, "gelu")


def test_rmse_against_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert uat.rmse(a, b) == pytest.approx(math.sqrt(sum((a - b) ** 2) / 50), rel=1e-12)
    with pytest.raises(ValueError, match="shapes"):
        uat.rmse(a, b[:10])


def test_spread_init_places_every_unit_inside_the_interval():
    m = uat.spread_init_(uat.one_hidden_layer(500), torch.Generator().manual_seed(1))
    w, b = m[0].weight[:, 0], m[0].bias
    kinks = -b / w
    assert kinks.min() >= -1 and kinks.max() <= 1
    assert kinks.min() < -0.9 and kinks.max() > 0.9  # spread over the whole interval
    assert w.abs().min() >= 1 and w.abs().max() <= 3 and (w > 0).any() and (w < 0).any()


def test_fit_width_error_is_the_test_rmse_of_the_returned_model():
    model, err = uat.fit_width(4, "sin", epochs=1, steps_per_epoch=20, n_test=301)
    x = np.linspace(-1, 1, 301)
    with torch.no_grad():
        pred = model(torch.tensor(x, dtype=torch.float32)[:, None]).numpy().ravel()
    want = np.sqrt(np.mean((pred - np.sin(np.pi * x)) ** 2))
    assert err == pytest.approx(want, rel=1e-5)


def test_wide_beats_narrow_and_the_best_line():
    """The best straight line (numpy least squares on the test grid) misses sin(pi x) by
    RMSE 0.39; a one-hidden-layer net of 32 units gets far closer, one unit does not."""
    x = np.linspace(-1, 1, 1001)
    y = np.sin(np.pi * x)
    line = np.polyval(np.polyfit(x, y, 1), x)
    line_err = np.sqrt(np.mean((line - y) ** 2))
    _, narrow = uat.fit_width(1, "sin", epochs=6)
    _, wide = uat.fit_width(32, "sin", epochs=6)
    assert wide < line_err / 5 and wide < narrow / 5
    assert narrow > line_err * 0.5  # one hinge cannot bend twice


def test_approximation_errors_slope_by_hand():
    r = uat.approximation_errors([1, 4, 16], "abs", epochs=1, progress=False)
    lw, le = np.log(r["widths"]), np.log(r["errors"])
    slope = ((lw - lw.mean()) * (le - le.mean())).sum() / ((lw - lw.mean()) ** 2).sum()
    assert r["slope"] == pytest.approx(slope, rel=1e-9)
    assert len(r["models"]) == 3
    assert math.isnan(uat.approximation_errors([4], "abs", epochs=1, progress=False)["slope"])


def test_bad_targets_and_arguments():
    with pytest.raises(ValueError, match="target must be"):
        uat.fit_width(2, "cosh")
    with pytest.raises(ValueError, match="NaN"):
        uat.fit_width(2, lambda x: torch.log(x), epochs=1)
    with pytest.raises(ValueError, match="maps"):
        uat.fit_width(2, lambda x: x.sum(1), epochs=1)
    with pytest.raises(ValueError, match="n_train"):
        uat.fit_width(2, "sin", n_train=1)
    with pytest.raises(ValueError, match="no widths"):
        uat.approximation_errors([], progress=False)
    # a custom function works like a named one
    _, err = uat.fit_width(2, lambda x: 0.5 * x, epochs=2)
    assert err < 0.05


def test_plots_are_written(tmp_path):
    r = uat.approximation_errors([1, 3], "step", epochs=1, progress=False)
    a = uat.plot_errors(r["widths"], r["errors"], tmp_path / "e.png")
    b = uat.plot_fits(r["widths"], r["models"], "step", tmp_path / "sub" / "f.png")
    for f in (a, b):
        assert f.read_bytes()[:8] == PNG and f.stat().st_size > 5000


def test_cli(tmp_path, capsys):
    assert cli.main(["uat", "--widths", "1,3", "--epochs", "1", "--target", "sin",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "width     1" in out and "slope" in out
    assert (tmp_path / "uat_errors.png").is_file() and (tmp_path / "uat_fits.png").is_file()
    for bad in ("1,x", "0,2", ""):
        with pytest.raises(SystemExit):
            cli.main(["uat", "--widths", bad])


def test_cli_names_the_activation_it_fitted(tmp_path, capsys, monkeypatch):
    """The printed line and the plot's legend said ReLU (and drew ReLU's 1/width² bound)
    whatever --activation was."""
    legends: list[list[str]] = []
    save = uat._save

    def spy(fig, path):
        legends.append([t.get_text() for t in fig.axes[0].get_legend().get_texts()])
        return save(fig, path)

    monkeypatch.setattr(uat, "_save", spy)
    for act, bound in (("tanh", False), ("relu", True)):
        assert cli.main(["uat", "--widths", "1,3", "--epochs", "1", "--target", "sin",
                         "--activation", act, "--out", str(tmp_path)]) == 0
        assert ("capacity bound for ReLU" in capsys.readouterr().out) == bound
    errors_legends = [lg for lg in legends if lg and lg[0].startswith("one hidden layer")]
    assert errors_legends == [["one hidden layer (tanh)"],
                              ["one hidden layer (ReLU)", "~ 1 / width²"]]


def test_demo_quick(tmp_path):
    from fastext.demos import uat as demo

    args = types.SimpleNamespace(data=None, epochs=None, quick=True, json=str(tmp_path / "r.json"),
                                 out=str(tmp_path), bench_off=True)
    record = demo.cli_main(args)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert {"widths", "errors", "slope", "figures"} <= set(doc)
    assert doc["widths"] == demo.QUICK_WIDTHS and len(doc["errors"]) == len(doc["widths"])
    assert doc["errors"] == record["errors"] and all(e > 0 for e in doc["errors"])
    for f in doc["figures"]:
        assert open(f, "rb").read(8) == PNG
