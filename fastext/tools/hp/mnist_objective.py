"""A small, fast objective for searches: an MLP trained on part of the MNIST training images
with the Learner (``fit_one_cycle``, fused AdamW), scored by the loss on held-out training
images (the test set is never looked at while tuning).

The images are read and normalised once, when the objective is built; a trial (5,000 images,
up to 3 epochs) then takes well under a second on two idle CPU cores.

>>> from fastext.data.files import find_data_dir
>>> obj = MnistMLPObjective(find_data_dir("mnist-small"), n_train=256, n_valid=128)
>>> r = obj({"lr": 3e-3, "wd": 0.1, "pct_start": 0.3, "bs": 64, "dropout": 0.1,
...          "epochs": 1})
>>> sorted(r), r["value"] > 0
(['accuracy', 'value'], True)
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...data.mnist import load_mnist, normalize
from ...learner import Callback, CancelFitException, DataLoaders, Learner, accuracy
from .space import Choice, Int, LogUniform, Space, Uniform

__all__ = ["MNIST_MLP_SPACE", "MnistMLPObjective", "mlp"]

#: The default space: wide enough that some corners diverge or barely learn.
MNIST_MLP_SPACE = Space(
    lr=LogUniform(1e-5, 1.0),
    wd=LogUniform(1e-4, 1.0),
    pct_start=Uniform(0.05, 0.95),
    bs=Choice([64, 128, 256, 512]),
    dropout=Uniform(0.0, 0.8),
    epochs=Int(1, 3),
)


def mlp(hidden: int, dropout: float) -> nn.Sequential:
    """784 -> hidden -> ReLU -> dropout -> 10 logits.

    >>> mlp(32, 0.1)(torch.zeros(2, 784)).shape
    torch.Size([2, 10])
    """
    return nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, 10))


class MnistMLPObjective:
    """``objective(params) -> {"value": valid loss, "accuracy": valid accuracy}``.

    Params (see :data:`MNIST_MLP_SPACE`): ``lr`` (1cycle's maximum), ``wd``, ``pct_start``,
    ``bs``, ``dropout``, ``epochs``, and optionally ``hidden`` (else the constructor's).
    Train on the first ``n_train`` training images, validate on the last ``n_valid``
    (disjoint). Every call starts from the same seed, so a configuration always scores the
    same.

    Raises:
        ValueError: the split holds fewer than ``n_train + n_valid`` images.
    """

    space = MNIST_MLP_SPACE

    def __init__(self, data: str | os.PathLike[str] | None = None, n_train: int = 5000,
                 n_valid: int = 2000, hidden: int = 128, seed: int = 0) -> None:
        if n_train < 1 or n_valid < 1:
            raise ValueError(f"n_train and n_valid must be >= 1, got {n_train}, {n_valid}")
        x, y = load_mnist(data, "train")
        if n_train + n_valid > len(x):
            raise ValueError(f"{n_train} + {n_valid} images asked for, the training split "
                             f"holds {len(x)}")
        x = normalize(x).flatten(1)
        self.x_train, self.y_train = x[:n_train].clone(), y[:n_train].clone()
        self.x_valid, self.y_valid = x[-n_valid:].clone(), y[-n_valid:].clone()
        self.seed, self.hidden = seed, hidden

    def __call__(self, params: dict[str, Any]) -> dict[str, float]:
        torch.manual_seed(self.seed)
        dls = DataLoaders.from_tensors(self.x_train, self.y_train, self.x_valid, self.y_valid,
                                       bs=int(params["bs"]), seed=self.seed, device="cpu")
        model = mlp(int(params.get("hidden", self.hidden)), float(params["dropout"]))
        learn = Learner(dls, model, F.cross_entropy, metrics=[accuracy], wd=float(params["wd"]),
                        quiet=True)
        learn.fit_one_cycle(int(params["epochs"]), float(params["lr"]),
                            pct_start=float(params["pct_start"]), cbs=[_StopOnNonFinite()])
        if learn.nan_stopped:
            return {"value": float("nan"), "accuracy": float("nan")}
        loss, acc = learn.validate()
        return {"value": loss, "accuracy": acc}


class _StopOnNonFinite(Callback):
    """Ends the fit at the first NaN/inf training loss and sets ``learn.nan_stopped``
    (TerminateOnNaN's job, without its message: the search logs the divergence itself)."""

    def before_fit(self) -> None:
        self.learn.nan_stopped = False

    def after_loss(self) -> None:
        if self.learn.training and not bool(torch.isfinite(self.learn.loss.detach()).all()):
            self.learn.nan_stopped = True
            raise CancelFitException
