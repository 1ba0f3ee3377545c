"""Loss landscapes: filter normalisation against a per-filter hand computation, the surface
and the line against direct evaluations of perturbed copies, BatchNorm handling, flatness,
plots and CSVs written, the CLI and the demo in quick mode."""

from __future__ import annotations

import copy
import json
import types

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastext import cli
from fastext.data.files import find_data_dir
from fastext.tools import landscape as ls
from fastext.tools.nets import load_mnist_train, mnist_cnn

PNG = b"\x89PNG\r\n\x1a\n"


def toy(bn=True, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, 4, 3, padding=1)]
    layers += [nn.BatchNorm2d(4)] if bn else []
    layers += [nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)]
    return nn.Sequential(*layers)


def toy_batches(n=2, bs=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(bs, 1, 6, 6, generator=g), torch.randint(0, 3, (bs,), generator=g))
            for _ in range(n)]


# -- filter normalisation -----------------------------------------------------------------
def test_filter_normalize_by_hand():
    g = torch.Generator().manual_seed(0)
    w_conv, d_conv = torch.randn(5, 3, 3, 3, generator=g), torch.randn(5, 3, 3, 3, generator=g)
    w_lin, d_lin = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    w_b, d_b = torch.randn(4, generator=g), torch.randn(4, generator=g)
    out = ls.filter_normalize([d_conv, d_lin, d_b], [w_conv, w_lin, w_b])
    for d, w, o in ((d_conv, w_conv, out[0]), (d_lin, w_lin, out[1])):
        for i in range(w.shape[0]):  # each filter: d_i / |d_i| * |w_i|, direction kept
            want = d[i] / d[i].norm() * w[i].norm()
            torch.testing.assert_close(o[i], want, rtol=1e-5, atol=1e-6)
    assert torch.equal(out[2], torch.zeros(4))  # biases / BN ignored
    kept = ls.filter_normalize([d_b], [w_b], ignore_bias_bn=False)[0]
    torch.testing.assert_close(kept, d_b / d_b.norm() * w_b.norm())


def test_filter_normalize_edge_cases():
    # a zero filter in the direction stays zero (no 0/0); a zero weight filter gives zero
    d = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    out = ls.filter_normalize([d], [w])[0]
    assert torch.equal(out, torch.zeros(2, 2))
    out64 = ls.filter_normalize([torch.ones(2, 3, dtype=torch.float64)],
                                [torch.ones(2, 3, dtype=torch.float64)])[0]
    assert out64.dtype == torch.float64
    with pytest.raises(ValueError, match="shape"):
        ls.filter_normalize([torch.ones(2, 3)], [torch.ones(3, 2)])
    with pytest.raises(ValueError, match="direction tensors"):
        ls.filter_normalize([torch.ones(2)], [])
    with pytest.raises(TypeError, match="floating"):
        ls.filter_normalize([torch.ones(2, 2, dtype=torch.long)], [torch.ones(2, 2)])


def test_filter_normalized_direction_is_scale_invariant():
    """Scaling a conv that BatchNorm follows changes nothing; the filter-normalised direction
    scales with it, so the perturbed net's loss is unchanged too: the point of the method."""
    model, batches = toy(bn=True), toy_batches()
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        scaled[0].weight.mul_(7.0)
    dirs = [ls.filter_normalized_direction(m, torch.Generator().manual_seed(3))
            for m in (model, scaled)]
    torch.testing.assert_close(dirs[1][0], 7.0 * dirs[0][0])
    s1 = ls.loss_surface(model, F.cross_entropy, batches, (dirs[0], dirs[0]), steps=3)
    s2 = ls.loss_surface(scaled, F.cross_entropy, batches, (dirs[1], dirs[1]), steps=3)
    np.testing.assert_allclose(s1.losses, s2.losses, rtol=1e-4)


# -- evaluation ----------------------------------------------------------------------------
def reference_loss(model, batches, bn_batch_stats):
    """Perturbed copies evaluated the plain way: eval mode, BN in train mode if asked."""
    m = copy.deepcopy(model)
    m.eval()
    if bn_batch_stats:
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.train()
    with torch.no_grad():
        total = sum(F.cross_entropy(m(x), y, reduction="sum").item() for x, y in batches)
    return total / sum(len(y) for _, y in batches)


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_surface_matches_direct_evaluation_and_restores_the_model(bn_mode):
    model, batches = toy(bn=True), toy_batches()
    model.train()
    with torch.no_grad():
        model[1].running_mean.fill_(0.3)
    before = copy.deepcopy(model.state_dict())
    g = torch.Generator().manual_seed(5)
    d1 = ls.filter_normalized_direction(model, g)
    d2 = ls.filter_normalized_direction(model, g)
    s = ls.loss_surface(model, F.cross_entropy, batches, (d1, d2), steps=3, span=0.5,
                        bn=bn_mode)
    for i, b in enumerate(s.ys):
        for j, a in enumerate(s.xs):
            moved = copy.deepcopy(model)
            with torch.no_grad():
                for p, u, v in zip(moved.parameters(), d1, d2, strict=True):
                    p.add_(a * u + b * v)
            want = reference_loss(moved, batches, bn_mode == "batch")
            assert s.losses[i, j] == pytest.approx(want, rel=1e-5)
    assert s.center_loss == pytest.approx(reference_loss(model, batches, bn_mode == "batch"),
                                          rel=1e-6)
    after = model.state_dict()
    for k, v in before.items():  # weights, running stats and counters all as they were
        assert torch.equal(after[k], v), k
    assert model.training and model[1].momentum == 0.1


def test_default_directions_ignore_bias_and_bn():
    model, batches = toy(bn=True), toy_batches()
    s = ls.loss_surface(model, F.cross_entropy, batches, steps=3, seed=1)
    g = torch.Generator().manual_seed(1)
    d1 = ls.filter_normalized_direction(model, g)
    assert all(torch.equal(d, torch.zeros_like(d)) for d in d1 if d.dim() <= 1)
    d2 = ls.filter_normalized_direction(model, g)
    s2 = ls.loss_surface(model, F.cross_entropy, batches, (d1, d2), steps=3)
    np.testing.assert_allclose(s.losses, s2.losses, rtol=1e-6)


def test_line_between_two_models():
    batches = toy_batches()
    a, b = toy(bn=True, seed=0), toy(bn=True, seed=1)
    with torch.no_grad():
        b[1].running_var.fill_(2.0)
    state_a = copy.deepcopy(a.state_dict())
    alphas = [-0.5, 0.0, 0.3, 1.0]
    got = ls.loss_along_line(a, a.state_dict(), b.state_dict(), F.cross_entropy, batches,
                             alphas, bn="running")
    for alpha, v in zip(alphas, got, strict=True):
        mixed = copy.deepcopy(a)
        mixed.load_state_dict({k: torch.lerp(*(x.to(wide(t)) for x in (state_a[k], t)),
                                             alpha).to(t.dtype)
                               if t.is_floating_point() else state_a[k]
                               for k, t in b.state_dict().items()})
        assert v == pytest.approx(reference_loss(mixed, batches, False), rel=1e-5)
    assert all(torch.equal(a.state_dict()[k], t) for k, t in state_a.items())
    with pytest.raises(KeyError, match="differ"):
        ls.loss_along_line(a, a.state_dict(), toy(bn=False).state_dict(), F.cross_entropy,
                           batches, [0.0])


def wide(t):
    """The dtype loss_along_line interpolates ``t`` in: half precision up to float32,
    float32 and float64 as they are."""
    return torch.promote_types(t.dtype, torch.float32)


def test_line_keeps_float64_exact_at_the_ends():
    """A float64 model is interpolated in float64: alpha 0 is exactly ``a`` (and 1 ``b``),
    not ``a`` rounded through float32; half precision is still interpolated in float32."""
    torch.manual_seed(0)
    a, b = nn.Linear(5, 3).double(), nn.Linear(5, 3).double()
    with torch.no_grad():
        for p in a.parameters():  # bits below float32's precision
            p.add_(torch.randn_like(p) * 1e-3)
    batches = [(torch.randn(64, 5, dtype=torch.float64) * 100, torch.randint(0, 3, (64,)))]
    sa, sb = copy.deepcopy(a.state_dict()), copy.deepcopy(b.state_dict())
    got = ls.loss_along_line(a, sa, sb, F.cross_entropy, batches, [0.0, 1.0])
    assert got[0] == ls.evaluate_loss(a, F.cross_entropy, batches)
    assert got[1] == ls.evaluate_loss(b, F.cross_entropy, batches)
    half_a, half_b = torch.tensor([1.0, 2.0], dtype=torch.bfloat16), torch.tensor([2.0, 4.0])
    assert torch.equal(ls._lerp(half_a, half_b.bfloat16(), 0.5),
                       torch.tensor([1.5, 3.0], dtype=torch.bfloat16))


def test_evaluate_loss_errors_and_dropout_off():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.9))
    batches = [(torch.randn(8, 3), torch.randint(0, 3, (8,)))]
    a = ls.evaluate_loss(model, F.cross_entropy, batches)
    assert a == ls.evaluate_loss(model, F.cross_entropy, batches)  # deterministic: no dropout
    with pytest.raises(ValueError, match="bn"):
        ls.evaluate_loss(model, F.cross_entropy, batches, bn="frozen")
    with pytest.raises(ValueError, match="no evaluation"):
        ls.evaluate_loss(model, F.cross_entropy, [])
    with pytest.raises(ValueError, match="steps"):
        ls.loss_surface(model, F.cross_entropy, batches, steps=1)
    with pytest.raises(ValueError, match="span"):
        ls.loss_surface(model, F.cross_entropy, batches, span=0.0)


def test_flatness_by_hand():
    xs = np.linspace(-1, 1, 5)
    gx, gy = np.meshgrid(xs, xs)
    s = ls.Surface(xs, xs, 1.0 + gx ** 2 + 2 * gy ** 2, 1.0)
    inside = np.hypot(gx, gy) <= 0.5
    assert ls.flatness(s, 0.5) == pytest.approx((gx ** 2 + 2 * gy ** 2)[inside].mean())
    assert ls.flatness(s, 0.5) < ls.flatness(s, 1.0)
    s.losses[2, 3] = np.inf
    assert ls.flatness(s, 0.5) == np.inf
    with pytest.raises(ValueError, match="no grid point"):
        ls.flatness(ls.Surface(np.array([-1.0, 1.0]), np.array([-1.0, 1.0]),
                               np.ones((2, 2)), 1.0), 0.5)


def test_flatness_along_directions_by_hand():
    model, batches = toy(bn=True), toy_batches()
    before = copy.deepcopy(model.state_dict())
    got = ls.flatness_along_directions(model, F.cross_entropy, batches, radius=0.6, n_dirs=3,
                                       n_radii=2, seed=4)
    g = torch.Generator().manual_seed(4)
    dirs = [ls.filter_normalized_direction(model, g) for _ in range(3)]
    center = reference_loss(model, batches, True)
    rises = []
    for d in dirs:
        for t in (0.3, -0.3, 0.6, -0.6):
            moved = copy.deepcopy(model)
            with torch.no_grad():
                for p, u in zip(moved.parameters(), d, strict=True):
                    p.add_(t * u)
            rises.append(reference_loss(moved, batches, True) - center)
    assert got == pytest.approx(np.mean(rises), rel=1e-5, abs=1e-7)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    # only trainable weights move, and biases not at all: a net whose one trainable
    # parameter is a bias sits on a perfectly flat landscape
    frozen = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    frozen[1].weight.requires_grad_(False)
    assert ls.flatness_along_directions(frozen, F.cross_entropy, batches) == 0.0
    with pytest.raises(ValueError, match="n_dirs"):
        ls.flatness_along_directions(model, F.cross_entropy, batches, n_dirs=0)
    with pytest.raises(ValueError, match="radius"):
        ls.flatness_along_directions(model, F.cross_entropy, batches, radius=-1.0)


def test_plots_and_csvs_are_written(tmp_path):
    model, batches = toy(bn=False), toy_batches()
    s = ls.loss_surface(model, F.cross_entropy, batches, steps=4)
    csv = ls.save_surface_csv(s, tmp_path / "sub" / "s.csv")
    df = pd.read_csv(csv)
    assert list(df.columns) == ["x", "y", "loss"] and len(df) == 16
    np.testing.assert_allclose(df["loss"].to_numpy().reshape(4, 4), s.losses)
    np.testing.assert_allclose(df["x"].to_numpy().reshape(4, 4)[0], s.xs)
    s_bad = ls.Surface(s.xs, s.ys, s.losses.copy(), s.center_loss)
    s_bad.losses[0, 0] = np.inf  # an overflowed corner still plots
    png = ls.plot_surfaces([s, s_bad], ["a", "b"], tmp_path / "s.png")
    line = ls.plot_line([0, 0.5, 1], {"x": [1.0, 2.0, 1.5]}, tmp_path / "l.png")
    lcsv = ls.save_line_csv([0, 1], {"loss": [1.0, 2.0]}, tmp_path / "l.csv")
    assert list(pd.read_csv(lcsv).columns) == ["alpha", "loss"]
    for f in (png, line):
        assert f.read_bytes()[:8] == PNG and f.stat().st_size > 5000
    with pytest.raises(ValueError, match="titles"):
        ls.plot_surfaces([s], ["a", "b"], tmp_path / "x.png")


# -- CLI and demo ----------------------------------------------------------------------------
SMALL = find_data_dir("mnist-small")


def test_cli_with_saved_weights_and_line(tmp_path, capsys):
    torch.manual_seed(0)
    a, b = mnist_cnn(bn=True), mnist_cnn(bn=True)
    torch.save(a.state_dict(), tmp_path / "a.pth")
    torch.save({"model": b.state_dict(), "epoch": 0}, tmp_path / "b.pth")  # Learner's format
    argv = ["landscape", "--model", "mnist-cnn", "--weights", str(tmp_path / "a.pth"),
            "--weights-b", str(tmp_path / "b.pth"), "--data", str(SMALL), "--n-eval", "100",
            "--steps", "3", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 0
    assert "flatness" in capsys.readouterr().out
    for name in ("landscape_surface.png", "landscape_surface.csv", "landscape_line.png",
                 "landscape_line.csv"):
        assert (tmp_path / "o" / name).stat().st_size > 0
    df = pd.read_csv(tmp_path / "o" / "landscape_surface.csv")
    x, y = load_mnist_train(SMALL, 100)
    want = ls.evaluate_loss(a, F.cross_entropy, [(x, y)])
    assert df.loc[(df.x == 0) & (df.y == 0), "loss"].item() == pytest.approx(want, rel=1e-5)
    capsys.readouterr()
    assert cli.main(["landscape", "--weights", str(tmp_path / "missing.pth")]) == 2
    assert "fastext landscape: no weights file" in capsys.readouterr().err
    assert cli.main(["landscape", "--model", "resnet", "--weights", str(tmp_path / "a.pth")]) == 2
    assert "fastext landscape: --model must be one of" in capsys.readouterr().err


def test_demo_quick(tmp_path):
    from fastext.demos import landscape

    args = types.SimpleNamespace(data=None, epochs=1, quick=True, json=str(tmp_path / "r.json"),
                                 out=str(tmp_path), bench_off=True)
    record = landscape.cli_main(args)
    doc = json.loads((tmp_path / "r.json").read_text())
    assert {"flatness_bn", "flatness_nobn", "flatness_small_batch", "flatness_large_batch",
            "figures", "csv"} <= set(doc)
    assert doc["flatness_bn"] == record["flatness_bn"] and doc["epochs"] == 1
    for f in doc["figures"]:
        assert open(f, "rb").read(8) == PNG
    grid = pd.read_csv(doc["csv"][0])
    inside = np.hypot(grid.x, grid.y) <= doc["radius"] + 1e-12
    assert doc["flatness_bn_plane"] == pytest.approx(
        (grid.loss[inside] - doc["center_loss_bn"]).mean(), rel=1e-9)
    assert np.isfinite(doc["flatness_nobn"]) and len(doc["line_losses"]) == 9
