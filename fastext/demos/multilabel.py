"""``fastext run multilabel``: multi-label classification of MNIST mosaics (each 56x56 image
holds 1-4 digits; the labels are the digits present) with ``vision_learner``, sigmoid + BCE
and a 0.5 threshold. Validation mosaics are built from the MNIST *test* digits, so no digit
image is seen in both. Figures: ``accuracy_multi``, ``f1_macro``."""

from __future__ import annotations

import time
from typing import Any

import torch

from ..tasks.vision.body import conv_body
from ..tasks.vision.data import ImageDataLoaders
from ..tasks.vision.learner import vision_learner
from ..tasks.vision.multilabel import DIGITS, mnist_mosaics
from ._common import epochs_or
from ._vision import mnist_split, write_record

__all__ = ["cli_main", "run"]


def run(data: Any = None, epochs: int | None = None, quick: bool = False,
        json_path: Any = None, n_train: int = 12000, n_valid: int = 2000, bs: int = 128,
        lr: float = 1e-2, seed: int = 0) -> dict[str, Any]:
    """Trains and evaluates; returns the record (also written to ``json_path``)."""
    epochs = epochs_or(epochs, 5)
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    (xtr, ytr), (xte, yte), kind = mnist_split(data)
    if quick:
        n_train, n_valid, epochs = 256, 128, 1
    x_train, y_train = mnist_mosaics(xtr, ytr, n_train, seed=seed)
    x_valid, y_valid = mnist_mosaics(xte, yte, n_valid, seed=seed + 1)
    dls = ImageDataLoaders.from_tensors(x_train, y_train, x_valid, y_valid, DIGITS, bs=bs,
                                        flip=0.0, scale=(0.85, 1.0), seed=seed, device="cpu")
    print(f"multilabel: {n_train} train / {n_valid} valid mosaics of {kind} digits, "
          f"{epochs} epochs")
    learn = vision_learner(dls, conv_body(1), cut=False, quiet=quick)
    learn.fit_one_cycle(epochs, lr)
    _, acc, f1 = learn.validate()
    record = {"accuracy_multi": float(acc), "f1_macro": float(f1), "epochs": epochs,
              "n_train": n_train, "n_valid": n_valid, "data": kind,
              "seconds": round(time.perf_counter() - t0, 1)}
    write_record(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """Entry point of ``fastext run multilabel``."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json)
