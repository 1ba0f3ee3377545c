"""``fastext run gradcam``: where does a trained MNIST classifier look? A small CNN (its last
conv block at 7x7) trains for one epoch; Grad-CAM heat maps of 100 test digits are compared
with each digit's bounding box (pixels > 0). Also writes the interpretation plots: the top
losses and the confusion matrix. Figures: ``mass_in_box`` (mean fraction of the heat map
inside the box), ``accuracy``, and the PNG paths."""

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

__all__ = ["cli_main", "run"]


def run(data: Any = None, epochs: int | None = None, quick: bool = False,
        json_path: Any = None, out_dir: Any = "out", n_train: int = 20000,
        n_cams: int = 100, seed: int = 0) -> dict[str, Any]:
    """Trains, computes the heat maps and plots; returns the record."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    (xtr, ytr), (xte, yte), kind = mnist_split(data)
    if quick:
        n_train, n_cams = 512, 16
        xte, yte = xte[:256], yte[:256]
    x, y = subset(xtr.unsqueeze(1), ytr, n_train, seed)
    digits = [str(d) for d in range(10)]
    dls = ImageDataLoaders.from_tensors(x, y, xte.unsqueeze(1), yte, digits, bs=128,
                                        stats=((0.1307,), (0.3081,)), flip=0.0,
                                        scale=(0.8, 1.0), seed=seed, device="cpu")
    torch.manual_seed(seed)
    body = conv_body(1, (32, 64, 128, 128), (2, 2, 1, 1))  # 28 -> 7 -> 7: a 7x7 map
    learn = vision_learner(dls, body, cut=False, quiet=quick)
    print(f"gradcam: training a CNN on {len(x)} {kind} digits")
    learn.fit_one_cycle(epochs or 1, 1e-2)
    accuracy = float(learn.validate()[1])

    # Grad-CAM at the last conv block, on the first n_cams test digits
    xb = next(iter(dls.valid))[0][:n_cams]
    raw = xte[:n_cams]
    cams = grad_cam(learn.model, learn.model.body[-1], xb)
    mass = mass_in_box(cams, raw).mean().item()
    preds = learn.model.eval()(xb).argmax(1)
    titles = [f"pred {int(p)}" for p in preds[:16]]
    cam_png = save_cam_overlays(raw[:16], cams[:16], out / "gradcam.png", titles)
    interp = ClassificationInterpretation.from_learner(learn)
    top_png = interp.plot_top_losses(10, out / "gradcam_top_losses.png")
    cm_png = interp.plot_confusion_matrix(out / "gradcam_confusion.png")
    confused = interp.most_confused(min_val=2)[:5]
    print("most confused (actual, predicted, count):", confused)
    record = {"mass_in_box": mass, "accuracy": accuracy, "n_cams": len(raw),
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
