"""``fastext run progressive``: progressive resizing on MNIST upscaled to 56 px. The same CNN
and epoch budget train twice: once at 16 -> 28 -> 56 px (the early epochs on small, cheap
images), once at 56 px throughout; both are scored at 56 px on the test set. With fewer than
3 epochs the progressive arm still ends at 56 px (see :func:`schedule`). ``--quick`` runs the
3-epoch schedule on 128 training images. Figures: ``acc_progressive``, ``acc_fixed``,
``s_progressive``, ``s_fixed`` (training seconds)."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from ..learner.progressive import ProgressiveResize
from ..tasks.vision.body import conv_body
from ..tasks.vision.data import ImageDataLoaders
from ..tasks.vision.learner import vision_learner
from ._common import epochs_or
from ._vision import mnist_split, subset, write_record

__all__ = ["SIZE", "cli_main", "run", "schedule"]

SIZE = 56
#: --quick: training and test images (3 epochs, the whole schedule).
QUICK_TRAIN, QUICK_TEST = 128, 64


def schedule(epochs: int) -> dict[int, int]:
    """The progressive arm's image size from each epoch on: 16, 28, then :data:`SIZE`; with
    fewer than 3 epochs a shorter ramp that still ends at :data:`SIZE`, the size both arms
    are scored at (an arm never trained there would be scored on images it has not seen).

    >>> schedule(5), schedule(2), schedule(1)
    ({0: 16, 1: 28, 2: 56}, {0: 28, 1: 56}, {0: 56})
    """
    if epochs >= 3:
        return {0: 16, 1: 28, 2: SIZE}
    return {0: SIZE // 2, 1: SIZE} if epochs == 2 else {0: SIZE}


def _upscale(x: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(x.unsqueeze(1).float(), size=(SIZE, SIZE), mode="bilinear",
                       align_corners=False)
    return up.round().clamp(0, 255).to(torch.uint8)


def run(data: Any = None, epochs: int | None = None, quick: bool = False,
        json_path: Any = None, n_train: int = 12000, n_test: int = 2000,
        seed: int = 0) -> dict[str, Any]:
    """Trains both ways; returns the record."""
    epochs = epochs_or(epochs, 3)
    (xtr, ytr), (xte, yte), kind = mnist_split(data)
    if quick:
        n_train, n_test, epochs = QUICK_TRAIN, QUICK_TEST, 3
    x, y = subset(xtr, ytr, n_train, seed)
    xt, yt = subset(xte, yte, n_test, seed)
    x, xt = _upscale(x), _upscale(xt)
    digits = [str(d) for d in range(10)]
    sizes = schedule(epochs)
    results = {}
    for name, cbs in (("progressive", [ProgressiveResize(sizes)]), ("fixed", [])):
        dls = ImageDataLoaders.from_tensors(x, y, xt, yt, digits, bs=128,
                                            stats=((0.1307,), (0.3081,)), flip=0.0,
                                            scale=(0.8, 1.0), seed=seed, device="cpu")
        torch.manual_seed(seed)
        learn = vision_learner(dls, conv_body(1), cut=False, cbs=cbs, quiet=quick)
        print(f"progressive: {name}, {epochs} epochs on {len(x)} {kind} digits at "
              f"{sizes if cbs else SIZE} px")
        t0 = time.perf_counter()
        learn.fit_one_cycle(epochs, 1e-2)
        seconds = time.perf_counter() - t0
        results[name] = (float(learn.validate()[1]), seconds)  # at 56 px after the fit
    record = {"acc_progressive": results["progressive"][0], "acc_fixed": results["fixed"][0],
              "s_progressive": round(results["progressive"][1], 2),
              "s_fixed": round(results["fixed"][1], 2), "epochs": epochs,
              "sizes": {str(k): v for k, v in sizes.items()}, "n_train": len(x),
              "n_test": len(xt), "data": kind}
    write_record(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """Entry point of ``fastext run progressive``."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json)
