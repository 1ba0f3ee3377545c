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
    tune_epochs = 3 if quick else 24
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

    # Validation during training on a fixed 500 of the test digits (cheap); the figures are
    # on all of them at the end.
    xb_val, yb_val = subset(xb_te, yb_te, 500, seed)

    def loaders() -> ImageDataLoaders:
        return ImageDataLoaders.from_tensors(xb, yb, xb_val, yb_val, vocab, bs=20, stats=stats,
                                             flip=0.0, scale=(0.8, 1.0), seed=seed,
                                             device="cpu")

    def test_acc(learn: Any) -> float:
        full = ImageDataLoaders.from_tensors(xb, yb, xb_te, yb_te, vocab, bs=256, stats=stats,
                                             augment=False, device="cpu")
        return float(learn.validate(full.valid)[1])

    frozen, unfrozen = tune_epochs // 3, tune_epochs - tune_epochs // 3
    print(f"transfer: fine-tuning on {len(xb)} images of digits 5-9: the head for {frozen} "
          f"epochs, then all layers with discriminative LRs for {unfrozen}")
    torch.manual_seed(seed)
    tuned = vision_learner(loaders(), copy.deepcopy(pre.model.body), cut=False, quiet=quick)
    tuned.freeze()
    tuned.fit_one_cycle(frozen, 1e-2)
    tuned.unfreeze()
    tuned.fit_one_cycle(unfrozen, slice(2e-4, 2e-3))
    finetuned_acc = test_acc(tuned)

    print(f"transfer: the same ResNet-18 from scratch on those {len(xb)} images, "
          f"{tune_epochs} epochs")
    torch.manual_seed(seed)
    scratch = vision_learner(loaders(), "resnet18", in_channels=1, quiet=quick)
    scratch.fit_one_cycle(tune_epochs, 1e-2)
    scratch_acc = test_acc(scratch)
    record = {"finetuned_acc": finetuned_acc, "scratch_acc": scratch_acc,
              "pretrain_acc_digits_0_4": pretrain_acc, "n_pretrain": len(xa),
              "n_finetune": len(xb), "n_test": len(xb_te), "data": kind,
              "pretrain_epochs": pre_epochs, "finetune_epochs": tune_epochs,
              "seconds": round(time.perf_counter() - t0, 1)}
    write_record(record, json_path)
    return record


def cli_main(args: Any) -> dict[str, Any]:
    """Entry point of ``fastext run transfer``."""
    return run(data=args.data, epochs=args.epochs, quick=args.quick, json_path=args.json)
