"""``fastext run gradcam``: where does a trained MNIST classifier look? The digits sit at
random places on a 40x40 canvas (so the classifier has to find them, and a heat map spread
evenly would put only about a quarter of its mass on the digit); a small CNN (its last conv
block at 10x10) trains for one epoch; Grad-CAM heat maps at that block for 100 test digits
are compared with each digit's bounding box (pixels > 0). Also writes the interpretation
plots: the top losses and the confusion matrix. Figures: ``mass_in_box`` (mean fraction of
the heat map inside the box), ``uniform_mass`` (the same for an even map: the box's share of
the image), ``accuracy``, and the PNG paths."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..tasks.vision.body import conv_body
from ..tasks.vision.data import ImageDataLoaders
from ..tasks.vision.interpret import (
    ClassificationInterpretation,
    grad_cam,
    mass_in_box,
    save_cam_overlays,
)
from ..tasks.vision.learner import vision_learner
from ._vision import mnist_split, subset, write_record

__all__ = ["cli_main", "place_on_canvas", "run"]

CANVAS = 40


def place_on_canvas(x: torch.Tensor, canvas: int = CANVAS, seed: int = 0) -> torch.Tensor:
    """uint8 (N, 28, 28) digits pasted at seeded random offsets on black (N, 1, canvas,
    canvas) images."""
    g = torch.Generator().manual_seed(seed)
    off = torch.randint(0, canvas - 27, (len(x), 2), generator=g)
    out = torch.zeros(len(x), 1, canvas, canvas, dtype=torch.uint8)
    for i, (r, c) in enumerate(off.tolist()):
        out[i, 0, r:r + 28, c:c + 28] = x[i]
    return out


def run(data: Any = None, epochs: int | None = None, quick: bool = False,
        json_path: Any = None, out_dir: Any = "out", n_train: int = 10000,
        n_cams: int = 100, seed: int = 0,
        strides: tuple[int, ...] = (2, 2, 1, 1)) -> dict[str, Any]:
    """Trains, computes the heat maps and plots; returns the record."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    (xtr, ytr), (xte, yte), kind = mnist_split(data)
    if quick:
        n_train, n_cams = 512, 16
        xte, yte = xte[:256], yte[:256]
    x, y = subset(xtr, ytr, n_train, seed)
    x, xt = place_on_canvas(x, seed=seed), place_on_canvas(xte, seed=seed + 1)
    digits = [str(d) for d in range(10)]
    dls = ImageDataLoaders.from_tensors(x, y, xt, yte, digits, bs=128, stats="data",
                                        augment=False, seed=seed, device="cpu")
    torch.manual_seed(seed)
    body = conv_body(1, (32, 64, 128, 128), strides)
    learn = vision_learner(dls, body, cut=False, quiet=quick)
    print(f"gradcam: training a CNN on {len(x)} {kind} digits")
    learn.fit_one_cycle(epochs or 1, 1e-2)
    accuracy = float(learn.validate()[1])

    # Grad-CAM at the last conv block, on the first n_cams test digits
    xb = next(iter(dls.valid))[0][:n_cams]
    raw = xt[:n_cams]
    cams = grad_cam(learn.model, learn.model.body[-1], xb)
    mass = mass_in_box(cams, raw).mean().item()
    uniform = mass_in_box(torch.ones_like(cams), raw).mean().item()
    preds = learn.model.eval()(xb).argmax(1)
    titles = [f"pred {int(p)}" for p in preds[:16]]
    cam_png = save_cam_overlays(raw[:16], cams[:16], out / "gradcam.png", titles)
    interp = ClassificationInterpretation.from_learner(learn)
    top_png = interp.plot_top_losses(10, out / "gradcam_top_losses.png")
    cm_png = interp.plot_confusion_matrix(out / "gradcam_confusion.png")
    confused = interp.most_confused(min_val=2)[:5]
    print("most confused (actual, predicted, count):", confused)
    record = {"mass_in_box": mass, "uniform_mass": uniform, "accuracy": accuracy,
              "n_cams": len(raw),
              "most_confused": confused, "data": kind,
              "pngs": [str(cam_png), str(top_png), str(cm_png)],
              "seconds": round(time.perf_counter() - t0, 1)}
    write_record(record, json_path)
    print("figures", *record["pngs"])
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """Entry point of ``fastext run gradcam``."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json,
               out_dir=args.out)
