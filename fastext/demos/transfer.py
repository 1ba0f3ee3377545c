"""``fastext run transfer``: transfer learning shown honestly without downloaded weights.

A ResNet-18 (torchvision's, one input channel) is first trained on MNIST digits 0-4. Its body
then starts a classifier for digits 5-9 that sees only 20 images per class: the head trains
with the body frozen, then everything with discriminative learning rates (``unfreeze`` and
``slice``). The same network trained from scratch on the same 100 images is the baseline.
Both are scored on all test images of digits 5-9. Figures: ``finetuned_acc``, ``scratch_acc``.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import Tensor

from ..tasks.vision.data import ImageDataLoaders
from ..tasks.vision.learner import vision_learner
from ._vision import mnist_split, subset, write_record

__all__ = ["cli_main", "run"]


def _digits(x: Tensor, y: Tensor, digits: range) -> tuple[Tensor, Tensor]:
    keep = (y >= digits.start) & (y < digits.stop)
    return x[keep].unsqueeze(1), y[keep] - digits.start


def _few_shot(x: Tensor, y: Tensor, per_class: int, seed: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.cat([(y == c).nonzero().squeeze(1)[torch.randperm(int((y == c).sum()),
                                                                   generator=g)[:per_class]]
                     for c in range(int(y.max()) + 1)])
    return x[idx], y[idx]


def run(data: Any = None, epochs: int | None = None, quick: bool = False,
        json_path: Any = None, n_pretrain: int = 12000, per_class: int = 20,
        seed: int = 0) -> dict[str, Any]:
    """Pretrains, fine-tunes, trains the baseline; returns the record."""
    t0 = time.perf_counter()
    (xtr, ytr), (xte, yte), kind = mnist_split(data)
    pre_epochs = 1 if quick else (epochs or 2)
    tune_epochs = 2 if quick else 12
    if quick:
        n_pretrain = 256
    # 1. pretrain on digits 0-4
    xa, ya = _digits(xtr, ytr, range(0, 5))
    xa, ya = subset(xa, ya, n_pretrain, seed)
    xa_te, ya_te = _digits(xte, yte, range(0, 5))
    if quick:
        xa_te, ya_te = xa_te[:128], ya_te[:128]
    stats = ((0.1307,), (0.3081,))  # MNIST's, for both tasks
    dls_a = ImageDataLoaders.from_tensors(xa, ya, xa_te, ya_te, [str(d) for d in range(5)],
                                          bs=128, stats=stats, flip=0.0, scale=(0.8, 1.0),
                                          seed=seed, device="cpu")
    print(f"transfer: pretraining a ResNet-18 on {len(xa)} images of digits 0-4 ({kind})")
    torch.manual_seed(seed)
    pre = vision_learner(dls_a, "resnet18", in_channels=1, quiet=quick)
    pre.fit_one_cycle(pre_epochs, 3e-3)
    pretrain_acc = float(pre.validate()[1])

    # 2. digits 5-9, 20 images per class
    xb, yb = _digits(xtr, ytr, range(5, 10))
    xb, yb = _few_shot(xb, yb, per_class, seed)
    xb_te, yb_te = _digits(xte, yte, range(5, 10))
    if quick:
        xb_te, yb_te = xb_te[:128], yb_te[:128]
    vocab = [str(d) for d in range(5, 10)]

    def loaders() -> ImageDataLoaders:
        return ImageDataLoaders.from_tensors(xb, yb, xb_te, yb_te, vocab, bs=20, stats=stats,
                                             flip=0.0, scale=(0.8, 1.0), seed=seed,
                                             device="cpu")

    print(f"transfer: fine-tuning on {len(xb)} images of digits 5-9 (head, then all layers)")
    torch.manual_seed(seed)
    tuned = vision_learner(loaders(), copy.deepcopy(pre.model.body), cut=False, quiet=quick)
    tuned.freeze()
    tuned.fit_one_cycle(tune_epochs // 3, 1e-2)
    tuned.unfreeze()
    tuned.fit_one_cycle(tune_epochs - tune_epochs // 3, slice(1e-4, 1e-3))
    finetuned_acc = float(tuned.validate()[1])

    print(f"transfer: the same ResNet-18 from scratch on those {len(xb)} images")
    torch.manual_seed(seed)
    scratch = vision_learner(loaders(), "resnet18", in_channels=1, quiet=quick)
    scratch.fit_one_cycle(tune_epochs, 1e-2)
    scratch_acc = float(scratch.validate()[1])
    record = {"finetuned_acc": finetuned_acc, "scratch_acc": scratch_acc,
              "pretrain_acc_digits_0_4": pretrain_acc, "n_pretrain": len(xa),
              "n_finetune": len(xb), "n_test": len(xb_te), "data": kind,
              "seconds": round(time.perf_counter() - t0, 1)}
    write_record(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """Entry point of ``fastext run transfer``."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json)
