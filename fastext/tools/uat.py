"""Universal approximation: one-hidden-layer MLPs of growing width fitted to a 1-D function.

The theorem (Cybenko 1989; Hornik 1991) says one hidden layer of enough units approximates any
continuous function on an interval as closely as asked. With ReLU units a net of width ``w``
is a piecewise-linear function with up to ``w`` kinks, and the best such function misses a
smooth target by ``O(1 / w^2)``: doubling the width should cut the error about four-fold until
optimisation, not capacity, is the limit. This tool fits each width with the Learner
(full-batch ``fit_one_cycle``, hidden units spread over the interval at the start) and plots
the error against the width.

>>> r = approximation_errors([1, 4], target="sin", epochs=2, progress=False)
>>> r["widths"], len(r["errors"])
([1, 4], 2)

Command line::

    fastext uat --widths 1,2,4,8,16,32,64 --target wiggle --out out/uat
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window (before pyplot is imported)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from .._argtypes import check_output_dir, int_at_least, positive_float  # noqa: E402
from ..learner import DataLoaders, Learner  # noqa: E402
from ..learner.figures import save_figure as _save  # noqa: E402

__all__ = [
    "ACTIVATIONS", "TARGETS", "add_arguments", "approximation_errors", "cli_main", "fit_width",
    "one_hidden_layer", "plot_errors", "plot_fits", "rmse", "spread_init_",
]

#: Target functions on [-1, 1] (torch in, torch out).
TARGETS: dict[str, Callable[[Tensor], Tensor]] = {
    "sin": lambda x: torch.sin(math.pi * x),
    "wiggle": lambda x: torch.sin(3 * math.pi * x) * torch.exp(-2 * x ** 2) + 0.5 * x,
    "abs": lambda x: x.abs(),
    "step": lambda x: (x > 0.1).to(x.dtype),
}
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh,
                                           "sigmoid": nn.Sigmoid}


def one_hidden_layer(width: int, activation: str = "relu") -> nn.Sequential:
    """``Linear(1, width) -> activation -> Linear(width, 1)``: ``3 * width + 1`` parameters.

    >>> sum(p.numel() for p in one_hidden_layer(8).parameters())
    25
    """
    if isinstance(width, bool) or int(width) != width or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    return nn.Sequential(nn.Linear(1, int(width)), ACTIVATIONS[activation](),
                         nn.Linear(int(width), 1))


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    """Root mean squared error.

    >>> rmse(np.array([0.0, 2.0]), np.array([0.0, 0.0]))
    1.4142135623730951
    """
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {target.shape}")
    return float(np.sqrt(np.mean((pred - target) ** 2)))


def _target(target: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if callable(target):
        return target
    if target not in TARGETS:
        raise ValueError(f"target must be one of {sorted(TARGETS)} or a function, "
                         f"got {target!r}")
    return TARGETS[target]


def _grid(n: int) -> Tensor:
    return torch.linspace(-1.0, 1.0, n).unsqueeze(1)


def spread_init_(model: nn.Sequential, generator: torch.Generator | None = None) -> nn.Sequential:
    """Places every hidden unit's kink (ReLU) or midpoint (tanh, sigmoid), ``x = -b / w``,
    uniformly inside [-1, 1], with slopes ``|w|`` in [1, 3] of random sign; the output layer
    keeps its default init. With PyTorch's default init many kinks fall outside the domain
    and gradient descent is slow to move them (it fits low frequencies first), so a wide net
    can stay stuck near a line; the theorem is about what a width can represent, and this
    start lets training reach it (the constructive proofs place units the same way).

    >>> m = spread_init_(one_hidden_layer(64), torch.Generator().manual_seed(0))
    >>> kinks = -m[0].bias / m[0].weight[:, 0]
    >>> bool(kinks.abs().max() <= 1)
    True
    """
    first = model[0]
    width = first.out_features
    with torch.no_grad():
        slope = torch.empty(width).uniform_(1.0, 3.0, generator=generator)
        sign = torch.randint(0, 2, (width,), generator=generator) * 2 - 1
        kink = torch.empty(width).uniform_(-1.0, 1.0, generator=generator)
        first.weight.copy_((slope * sign)[:, None])
        first.bias.copy_(-slope * sign * kink)
    return model


def fit_width(width: int, target: str | Callable[[Tensor], Tensor] = "wiggle",
              n_train: int = 256, n_test: int = 1001, epochs: int = 40, lr: float = 3e-2,
              activation: str = "relu", seed: int = 0, steps_per_epoch: int = 50,
              ) -> tuple[nn.Module, float]:
    """Fits a one-hidden-layer net of ``width`` units to ``target`` on [-1, 1]:
    ``n_train`` evenly spaced points, full-batch ``fit_one_cycle`` with AdamW, no weight
    decay (capacity, not regularisation, is the question), from :func:`spread_init_`. An
    epoch is ``steps_per_epoch`` full-batch steps (the points repeated), so the Learner
    validates every few dozen steps rather than after each. Returns the model and its RMSE on
    ``n_test`` evenly spaced points (a finer grid than the training one).

    Raises:
        ValueError: bad sizes, or the target gives NaN/inf or a wrong shape.
    """
    f = _target(target)
    if n_train < 2 or n_test < 2 or epochs < 1 or steps_per_epoch < 1:
        raise ValueError(f"need n_train, n_test >= 2 and epochs, steps_per_epoch >= 1, got "
                         f"{n_train}, {n_test}, {epochs}, {steps_per_epoch}")
    x_train, x_test = _grid(n_train), _grid(n_test)
    y_train, y_test = f(x_train), f(x_test)
    for name, y, x in (("train", y_train, x_train), ("test", y_test, x_test)):
        if y.shape != x.shape:
            raise ValueError(f"the target maps {tuple(x.shape)} to {tuple(y.shape)}")
        if not torch.isfinite(y).all():
            raise ValueError(f"the target is NaN or infinite on the {name} grid")
    torch.manual_seed(seed)
    model = spread_init_(one_hidden_layer(width, activation))
    dls = DataLoaders.from_tensors(x_train.repeat(steps_per_epoch, 1),
                                   y_train.repeat(steps_per_epoch, 1), x_test, y_test,
                                   bs=n_train, valid_bs=n_test, shuffle=False, device="cpu")
    learn = Learner(dls, model, F.mse_loss, wd=0.0, quiet=True)
    learn.fit_one_cycle(epochs, lr)
    model.eval()
    with torch.no_grad():
        pred = model(x_test)
    return model, rmse(pred.numpy().ravel(), y_test.numpy().ravel())


def approximation_errors(widths: Sequence[int], target: str | Callable = "wiggle",
                         epochs: int = 40, lr: float = 3e-2, activation: str = "relu",
                         seed: int = 0, progress: bool = True, **kwargs: Any,
                         ) -> dict[str, Any]:
    """Fits every width; returns ``{"widths", "errors" (test RMSE), "models", "slope"}``,
    where ``slope`` is the least-squares slope of log(error) against log(width) (about -2
    when the error falls as ``1 / width^2``; NaN with fewer than two widths)."""
    widths = [int(w) for w in widths]
    if not widths:
        raise ValueError("no widths given")
    errors, models = [], []
    for w in widths:
        model, err = fit_width(w, target, epochs=epochs, lr=lr, activation=activation,
                               seed=seed, **kwargs)
        errors.append(err)
        models.append(model)
        if progress:
            print(f"width {w:5d}  test RMSE {err:.5f}", flush=True)
    slope = (float(np.polyfit(np.log(widths), np.log(errors), 1)[0])
             if len(set(widths)) > 1 and min(errors) > 0 else math.nan)
    return {"widths": widths, "errors": errors, "models": models, "slope": slope}


def plot_errors(widths: Sequence[int], errors: Sequence[float], path: str | os.PathLike[str],
                title: str = "approximation error vs width", activation: str = "relu") -> Path:
    """Test RMSE against width on log-log axes; for ReLU with a ``1 / width^2`` guide line
    (a piecewise-linear fit's bound, which says nothing of smooth activations)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    name = "ReLU" if activation == "relu" else activation
    ax.loglog(widths, errors, "o-", label=f"one hidden layer ({name})")
    if activation == "relu":
        w = np.asarray(widths, dtype=float)
        mid = len(w) // 2  # the guide passes through the middle point: its slope matters
        ax.loglog(w, errors[mid] * (w / w[mid]) ** -2.0, "k--", lw=0.8, label="~ 1 / width²")
    ax.set_xlabel("hidden units")
    ax.set_ylabel("test RMSE")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_fits(widths: Sequence[int], models: Sequence[nn.Module],
              target: str | Callable[[Tensor], Tensor], path: str | os.PathLike[str],
              n: int = 1001) -> Path:
    """The target and each width's fit on [-1, 1]."""
    x = _grid(n)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x.ravel(), _target(target)(x).ravel(), "k", lw=2.5, alpha=0.35, label="target")
    with torch.no_grad():
        for w, m in zip(widths, models, strict=True):
            m.eval()
            ax.plot(x.ravel(), m(x).ravel(), lw=1, label=f"width {w}")
    ax.set_xlabel("x")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("one-hidden-layer fits", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)



def _widths(text: str) -> list[int]:
    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"widths are comma-separated integers, got {text!r}") from None
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive, got {text!r}")
    return widths


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``fastext uat`` options; values out of range are refused while parsing."""
    p.add_argument("--widths", type=_widths, default=[1, 2, 4, 8, 16, 32, 64],
                   help="comma-separated hidden widths (default 1,2,4,8,16,32,64)")
    p.add_argument("--target", choices=sorted(TARGETS), default="wiggle",
                   help="function on [-1, 1] to approximate")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    p.add_argument("--epochs", type=int_at_least(1), default=40, metavar="N",
                   help="epochs of 50 full-batch steps per width, at least 1 (default 40)")
    p.add_argument("--lr", type=positive_float, default=3e-2, help="1cycle lr_max")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="a non-negative integer")
    p.add_argument("--out", metavar="DIR", default="out/uat")


def cli_main(args: argparse.Namespace) -> int:
    """Fits every width, prints the errors, writes ``uat_errors.png`` and ``uat_fits.png``.

    Raises:
        UsageError: ``--out`` cannot be a folder to write into (checked before fitting).
    """
    check_output_dir(args.out, "--out")  # the figures come after all the fitting
    print(f"uat: fitting {args.target} on [-1, 1] with one hidden {args.activation} layer, "
          f"{args.epochs * 50} full-batch steps each", flush=True)
    r = approximation_errors(args.widths, args.target, args.epochs, args.lr, args.activation,
                             args.seed)
    out = Path(args.out)
    files = [plot_errors(r["widths"], r["errors"], out / "uat_errors.png",
                         activation=args.activation),
             plot_fits(r["widths"], r["models"], args.target, out / "uat_fits.png")]
    bound = " (capacity bound for ReLU: -2)" if args.activation == "relu" else ""
    print(f"slope of log(error) vs log(width): {r['slope']:.2f}{bound}")
    print("figures  " + ", ".join(str(f) for f in files))
    return 0
