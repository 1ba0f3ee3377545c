"""Loss landscapes around trained minima: with vs without BatchNorm, small vs large batches.

Two small CNNs (:func:`fastext.tools.nets.mnist_cnn`: six convs, global pooling, a linear
head), identical but for BatchNorm, are trained the same way with the Learner
(``fit_one_cycle``, lr 1e-2, 15 epochs on 3,334 MNIST training images, until both fit them:
minima, not points on the way). Around each minimum the training loss is evaluated on a grid
in the plane of two random filter-normalised directions (Li et al., 2018) and drawn as
contours on one colour scale. The number printed with the plot is the flatness: the mean loss
rise at distances up to 0.5 along 16 random filter-normalised directions (lower = flatter; one
plane alone varies a lot, its own number is in each panel's title). The same is done for one
BN net trained with batches of 32 and one with batches of 1024 (same epochs, so the latter
takes 32x fewer steps and stops at a higher loss), and the loss is drawn along the straight
line from the one minimum to the other (Keskar et al., 2017).

``fastext run landscape [--json PATH]`` records ``flatness_bn``, ``flatness_nobn``,
``flatness_small_batch``, ``flatness_large_batch`` (the 16-direction numbers), the same per
plotted plane (``..._plane``), the centre losses, ``figures`` (PNG paths) and ``csv`` (the
grids). ``--epochs N`` sets the training epochs (default 15); ``--quick`` trains on 500
images of the shipped subset with a coarse grid and few directions.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.files import find_data_dir
from ..data.mnist import find_mnist
from ..tools.landscape import (
    flatness,
    flatness_along_directions,
    loss_along_line,
    loss_surface,
    plot_line,
    plot_surfaces,
    save_line_csv,
    save_surface_csv,
)
from ..tools.nets import load_mnist_train, mnist_cnn, train_mnist
from ._common import epochs_or, write_json

__all__ = ["cli_main", "run"]

FULL = {"n_train": 4000, "n_eval": 1000, "steps": 21, "n_dirs": 16, "small_bs": 32,
        "large_bs": 1024, "epochs": 15}
QUICK = {"n_train": 500, "n_eval": 200, "steps": 5, "n_dirs": 2, "small_bs": 32,
         "large_bs": 250, "epochs": 1}
RADIUS, SPAN, LR, BS = 0.5, 1.0, 1e-2, 128


def run(data: str | None = None, epochs: int | None = None, quick: bool = False,
        out_dir: str | Path = "out", json_path: str | Path | None = None,
        seed: int = 0) -> dict[str, Any]:
    """Trains the four nets, draws the surfaces and the line, prints the flatness numbers,
    returns (and optionally writes) the record described in the module docstring."""
    cfg = QUICK if quick else FULL
    epochs = epochs_or(epochs, cfg["epochs"])
    wall = time.perf_counter()
    if quick and data is None:
        data = str(find_data_dir("mnist-small"))
    path, kind = find_mnist(data)
    n_train = min(cfg["n_train"], 2000 if kind == "mnist-small" else 60_000)
    x, y = load_mnist_train(path, n_train)
    # the landscape of the training loss, on the first n_eval training images (channels-last,
    # the layout the Learner gives conv nets)
    batches = [(xb.contiguous(memory_format=torch.channels_last), yb) for xb, yb in
               zip(x[:cfg["n_eval"]].split(500), y[:cfg["n_eval"]].split(500), strict=True)]
    loss = F.cross_entropy
    out = Path(out_dir)
    print(f"landscape: {kind}, {n_train} training images, {epochs} epoch(s) per net, "
          f"{cfg['steps']}x{cfg['steps']} grid over [-{SPAN:g}, {SPAN:g}]^2, loss on "
          f"{cfg['n_eval']} training images", flush=True)

    def trained(bn: bool, bs: int, lr: float = LR) -> torch.nn.Module:
        torch.manual_seed(seed)  # same initial weights for every net of one architecture
        model = mnist_cnn(bn=bn)
        start = time.perf_counter()
        learn = train_mnist(model, x, y, epochs=epochs, lr=lr, bs=bs, seed=seed)
        valid_loss = learn.validate()[0]
        print(f"  trained {'BN' if bn else 'no-BN'} net, batch {bs}: held-out loss "
              f"{valid_loss:.4f} ({time.perf_counter() - start:.1f} s)", flush=True)
        return model

    def surface(model: torch.nn.Module, name: str) -> Any:
        start = time.perf_counter()
        s = loss_surface(model, loss, batches, steps=cfg["steps"], span=SPAN, seed=seed)
        csvs.append(str(save_surface_csv(s, out / f"landscape_{name}.csv")))
        flat[name] = flatness_along_directions(model, loss, batches, RADIUS, cfg["n_dirs"],
                                               seed=seed + 1)
        plane[name] = flatness(s, RADIUS)
        print(f"  surface {name}: centre loss {s.center_loss:.4f}, flatness {flat[name]:.4f} "
              f"({cfg['n_dirs']} directions; this plane {plane[name]:.4f}) "
              f"({time.perf_counter() - start:.1f} s)", flush=True)
        return s

    csvs: list[str] = []
    flat: dict[str, float] = {}
    plane: dict[str, float] = {}
    bn_net, nobn_net = trained(True, BS), trained(False, BS)
    s_bn, s_nobn = surface(bn_net, "bn"), surface(nobn_net, "nobn")
    small, large = trained(True, cfg["small_bs"]), trained(True, cfg["large_bs"])
    s_small, s_large = surface(small, "small_batch"), surface(large, "large_batch")

    alphas = np.linspace(-0.5, 1.5, 41 if not quick else 9)
    line = loss_along_line(small, small.state_dict(), large.state_dict(), loss, batches, alphas)
    csvs.append(str(save_line_csv(alphas, {"loss": line}, out / "landscape_line.csv")))
    figures = [
        str(plot_surfaces([s_bn, s_nobn], ["with BatchNorm", "without BatchNorm"],
                          out / "landscape_bn_vs_nobn.png", RADIUS,
                          f"training loss around the minimum; flatness ({cfg['n_dirs']} "
                          f"directions, r={RADIUS:g}): BN {flat['bn']:.3f}, no BN "
                          f"{flat['nobn']:.3f}")),
        str(plot_surfaces([s_small, s_large], [f"batch {cfg['small_bs']}",
                                                f"batch {cfg['large_bs']}"],
                          out / "landscape_small_vs_large_batch.png", RADIUS,
                          f"BN net, small vs large batch; flatness ({cfg['n_dirs']} "
                          f"directions, r={RADIUS:g}): {flat['small_batch']:.3f} vs "
                          f"{flat['large_batch']:.3f}")),
        str(plot_line(alphas, {"training loss": line}, out / "landscape_line.png",
                      xlabel=f"alpha (0: batch {cfg['small_bs']} minimum, 1: batch "
                             f"{cfg['large_bs']} minimum)",
                      title="loss along the line between the two minima")),
    ]
    verdict = "flatter" if flat["bn"] < flat["nobn"] else "NOT flatter"
    print(f"flatness (mean loss rise out to radius {RADIUS:g} along {cfg['n_dirs']} random "
          f"filter-normalised directions; lower = flatter): BN {flat['bn']:.4f}, no BN "
          f"{flat['nobn']:.4f} -> the BatchNorm minimum is {verdict}")
    print(f"flatness: batch {cfg['small_bs']} {flat['small_batch']:.4f}, batch "
          f"{cfg['large_bs']} {flat['large_batch']:.4f}")
    wall_seconds = time.perf_counter() - wall
    print(f"wall time  {wall_seconds:.0f} s")
    print("figures    " + ", ".join(figures), flush=True)
    record = {"demo": "landscape", "data": kind, "epochs": epochs, "radius": RADIUS,
              "flatness_bn": flat["bn"], "flatness_nobn": flat["nobn"],
              "flatness_small_batch": flat["small_batch"],
              "flatness_large_batch": flat["large_batch"],
              **{f"flatness_{k}_plane": v for k, v in plane.items()},
              "n_dirs": cfg["n_dirs"],
              "center_loss_bn": s_bn.center_loss, "center_loss_nobn": s_nobn.center_loss,
              "center_loss_small_batch": s_small.center_loss,
              "center_loss_large_batch": s_large.center_loss,
              "small_bs": cfg["small_bs"], "large_bs": cfg["large_bs"],
              "line_alphas": alphas.tolist(), "line_losses": line.tolist(),
              "figures": figures, "csv": csvs, "wall_seconds": wall_seconds}
    write_json(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """``fastext run landscape``: :func:`run` with the command line's arguments."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, out_dir=args.out,
               json_path=args.json)
