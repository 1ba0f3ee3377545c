"""Loss landscapes: loss along the line between two weight vectors; filter-normalised 2-D surfaces.

Li et al. (2018), *Visualizing the Loss Landscape of Neural Nets*: perturb the trained weights
along random directions whose every filter is rescaled to the norm of the matching filter of
the weights ("filter normalisation"), so that nets of different weight scales (a ReLU net is
unchanged when a layer is scaled up and the next scaled down; a BatchNorm net when a conv is
scaled) are compared on equal terms. A flat minimum keeps its loss low over a wide region
around it; a sharp one does not (the course's "flat vs bumpy" picture).

BatchNorm layers normalise with the statistics of each evaluation batch by default
(``bn="batch"``: the landscape the optimiser sees while training, and a perturbed network's
stored running statistics would no longer describe its activations); their running statistics
are left untouched. ``bn="running"`` uses eval mode throughout.

>>> import torch
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> batches = [(torch.randn(16, 3), torch.randint(0, 2, (16,)))]
>>> s = loss_surface(model, torch.nn.functional.cross_entropy, batches, steps=5, span=1.0)
>>> s.losses.shape, bool(abs(s.center_loss - s.losses[2, 2]) < 1e-6)
((5, 5), True)

Command line::

    fastext landscape --model mnist-cnn --out out/landscape       # trains it first
    fastext landscape --model pkg.module:factory --weights model.pth --weights-b other.pth
"""

from __future__ import annotations

import argparse
import copy
import inspect
import math
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window (before pyplot is imported)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from .._argtypes import (  # noqa: E402
    UsageError,
    check_output_dir,
    import_object,
    int_at_least,
    positive_float,
)
from ..learner.figures import save_figure as _save  # noqa: E402

__all__ = [
    "Surface", "add_arguments", "cli_main", "evaluate_loss", "filter_normalize",
    "filter_normalized_direction", "flatness", "flatness_along_directions", "loss_along_line",
    "loss_surface", "plot_line", "plot_surfaces", "random_direction", "save_line_csv",
    "save_surface_csv",
]

Batches = Sequence[tuple[Tensor, Tensor]]
LossFunc = Callable[[Tensor, Tensor], Tensor]
_BN = nn.modules.batchnorm._BatchNorm
BN_MODES = ("batch", "running")


# -- directions -------------------------------------------------------------------------
def _params(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def random_direction(model: nn.Module, generator: torch.Generator | None = None,
                     ) -> list[Tensor]:
    """A Gaussian direction: one ``N(0, 1)`` tensor per trainable parameter (same shapes)."""
    return [torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
            for p in _params(model)]


def filter_normalize(direction: Sequence[Tensor], weights: Sequence[Tensor],
                     ignore_bias_bn: bool = True) -> list[Tensor]:
    """Rescales each filter of ``direction`` to the norm of the matching filter of
    ``weights`` (Li et al., 2018). A filter is a slice along dim 0: one output channel of a
    conv, one row (neuron) of a linear layer. 1-D tensors (biases, BatchNorm scales and
    shifts) become zero with ``ignore_bias_bn`` (the paper's choice), else are rescaled as
    a whole. A zero filter in the direction stays zero.

    >>> d = filter_normalize([torch.ones(2, 3)], [torch.tensor([[3., 4., 0.], [0., 0., 1.]])])
    >>> [round(v, 5) for v in d[0].norm(dim=1).tolist()]
    [5.0, 1.0]
    """
    if len(direction) != len(weights):
        raise ValueError(f"{len(direction)} direction tensors for {len(weights)} weights")
    out = []
    for d, w in zip(direction, weights, strict=True):
        if d.shape != w.shape:
            raise ValueError(f"direction shape {tuple(d.shape)} != weight shape {tuple(w.shape)}")
        if not torch.is_floating_point(d):
            raise TypeError(f"directions must be floating point, got {d.dtype}")
        if d.dim() <= 1:
            if ignore_bias_bn:
                out.append(torch.zeros_like(d))
                continue
            d2, w2 = d.reshape(1, -1), w.reshape(1, -1)
        else:
            d2, w2 = d.reshape(d.shape[0], -1), w.reshape(w.shape[0], -1)
        dn = d2.norm(dim=1, keepdim=True)
        scale = torch.where(dn > 0, w2.norm(dim=1, keepdim=True) / dn.clamp_min(1e-30),
                            torch.zeros_like(dn))
        out.append((d2 * scale).reshape(d.shape))
    return out


def filter_normalized_direction(model: nn.Module, generator: torch.Generator | None = None,
                                ignore_bias_bn: bool = True) -> list[Tensor]:
    """A random direction, filter-normalised to ``model``'s weights."""
    weights = [p.detach() for p in _params(model)]
    return filter_normalize(random_direction(model, generator), weights, ignore_bias_bn)


# -- evaluation -------------------------------------------------------------------------
@contextmanager
def _eval_mode(model: nn.Module, bn: str) -> Any:
    """Eval mode (no dropout); with ``bn="batch"`` BatchNorm uses batch statistics with
    momentum 0 (its running statistics stay as they are). Restores modes and buffers."""
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    modes = {m: m.training for m in model.modules()}
    buffers = {k: v.clone() for k, v in model.state_dict().items()
               if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    momenta = {}
    model.eval()
    if bn == "batch":
        for m in model.modules():
            if isinstance(m, _BN):
                momenta[m] = m.momentum
                m.momentum = 0.0
                m.train()
    try:
        yield
    finally:
        for m, mom in momenta.items():
            m.momentum = mom
        for m, t in modes.items():
            m.train(t)
        model.load_state_dict(buffers, strict=False)


def _loss(model: nn.Module, loss_func: LossFunc, batches: Batches) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in batches:
            total += float(loss_func(model(x), y)) * len(y)
            count += len(y)
    if count == 0:
        raise ValueError("no evaluation batches")
    return total / count


def evaluate_loss(model: nn.Module, loss_func: LossFunc, batches: Batches,
                  bn: str = "batch") -> float:
    """Mean per-example loss over ``batches`` (``loss_func`` returns a batch mean), with
    dropout off and BatchNorm as ``bn`` says (see the module notes); the model is unchanged."""
    with _eval_mode(model, bn):
        return _loss(model, loss_func, batches)


@contextmanager
def _restored(model: nn.Module) -> Any:
    saved = [p.detach().clone() for p in _params(model)]
    try:
        yield saved
    finally:
        with torch.no_grad():
            for p, s in zip(_params(model), saved, strict=True):
                p.copy_(s)


def _lerp(a: Tensor, b: Tensor, alpha: float) -> Tensor:
    """``a + alpha * (b - a)`` in at least float32 (fp16/bf16 upcast, float64 kept), cast
    back to ``a``'s dtype."""
    dtype = torch.promote_types(a.dtype, torch.float32)
    return a.to(dtype).lerp(b.to(dtype), alpha).to(a.dtype)


def loss_along_line(model: nn.Module, state_a: dict[str, Tensor], state_b: dict[str, Tensor],
                    loss_func: LossFunc, batches: Batches, alphas: Iterable[float],
                    bn: str = "batch") -> np.ndarray:
    """Loss at ``(1 - alpha) * a + alpha * b`` for each alpha (0 is ``a``, 1 is ``b``;
    outside [0, 1] extrapolates). ``state_a``/``state_b`` are state dicts of ``model``'s
    architecture; floating-point parameters and buffers are interpolated, integer buffers
    come from ``a``. Half-precision tensors are interpolated in float32, float32 and float64
    ones in their own precision (so alpha 0 gives exactly ``a``). The model's own state is
    restored afterwards."""
    missing = set(state_a) ^ set(state_b)
    if missing:
        raise KeyError(f"the two states differ in keys: {sorted(missing)}")
    # copies: a state dict holds references to a model's tensors, loading would change them
    state_a = {k: v.detach().clone() for k, v in state_a.items()}
    state_b = {k: v.detach().clone() for k, v in state_b.items()}
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = []
    try:
        for alpha in alphas:
            mixed = {k: (_lerp(a, state_b[k], float(alpha)) if torch.is_floating_point(a)
                         else a) for k, a in state_a.items()}
            model.load_state_dict(mixed)
            out.append(evaluate_loss(model, loss_func, batches, bn))
    finally:
        model.load_state_dict(saved)
    return np.array(out)


@dataclass
class Surface:
    """Loss on a grid around a model: ``losses[i, j]`` at ``xs[j] * d1 + ys[i] * d2`` (rows
    are y, as matplotlib's ``contour`` wants)."""

    xs: np.ndarray
    ys: np.ndarray
    losses: np.ndarray
    center_loss: float

    def to_frame(self) -> pd.DataFrame:
        """Long form: one row per grid point, columns ``x``, ``y``, ``loss``."""
        gx, gy = np.meshgrid(self.xs, self.ys)
        return pd.DataFrame({"x": gx.ravel(), "y": gy.ravel(), "loss": self.losses.ravel()})


def loss_surface(model: nn.Module, loss_func: LossFunc, batches: Batches,
                 directions: tuple[Sequence[Tensor], Sequence[Tensor]] | None = None,
                 steps: int = 21, span: float = 1.0, seed: int = 0, bn: str = "batch",
                 ignore_bias_bn: bool = True, progress: bool = False) -> Surface:
    """The loss on a ``steps`` x ``steps`` grid over ``[-span, span]^2`` in the plane of two
    directions around the model's weights (default: two random filter-normalised directions
    drawn from ``seed``). The model's weights are restored afterwards."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if not span > 0:
        raise ValueError(f"span must be > 0, got {span}")
    if directions is None:
        g = torch.Generator().manual_seed(seed)
        directions = (filter_normalized_direction(model, g, ignore_bias_bn),
                      filter_normalized_direction(model, g, ignore_bias_bn))
    d1, d2 = directions
    coords = np.linspace(-span, span, steps)
    losses = np.empty((steps, steps))
    with _restored(model) as base, _eval_mode(model, bn):
        center = _loss(model, loss_func, batches)
        params = _params(model)
        for i, b in enumerate(coords):
            for j, a in enumerate(coords):
                with torch.no_grad():
                    for p, w, u, v in zip(params, base, d1, d2, strict=True):
                        p.copy_(w + float(a) * u + float(b) * v)
                losses[i, j] = _loss(model, loss_func, batches)
            if progress:
                print(f"  surface row {i + 1}/{steps}", end="\r", flush=True)
    if progress:
        print(flush=True)
    return Surface(coords, coords.copy(), losses, center)


def flatness(surface: Surface, radius: float = 0.5) -> float:
    """Mean loss rise over the grid points within ``radius`` of the centre (filter-normalised
    units): lower is flatter. A non-finite loss (a perturbation that overflowed) counts as
    infinitely sharp.

    >>> s = Surface(np.array([-1., 0., 1.]), np.array([-1., 0., 1.]),
    ...             np.array([[9., 1., 9.], [1., 0., 1.], [9., 1., 9.]]), 0.0)
    >>> flatness(s, radius=1.0)
    0.8
    """
    gx, gy = np.meshgrid(surface.xs, surface.ys)
    inside = np.hypot(gx, gy) <= radius + 1e-12
    if not inside.any():
        raise ValueError(f"no grid point within radius {radius}")
    rise = surface.losses[inside] - surface.center_loss
    return float(rise.mean()) if np.isfinite(rise).all() else math.inf


def flatness_along_directions(model: nn.Module, loss_func: LossFunc, batches: Batches,
                              radius: float = 0.5, n_dirs: int = 16, n_radii: int = 4,
                              seed: int = 0, bn: str = "batch",
                              ignore_bias_bn: bool = True) -> float:
    """Mean loss rise at distances ``radius * k / n_radii`` (``k = 1..n_radii``, both signs)
    along ``n_dirs`` random filter-normalised directions: lower is flatter. One plane's
    :func:`flatness` rests on two directions and varies a lot from plane to plane; this
    averages over many. A non-finite loss counts as infinitely sharp. The model is restored.

    >>> import torch
    >>> m = torch.nn.Linear(2, 2)
    >>> b = [(torch.randn(8, 2), torch.randint(0, 2, (8,)))]
    >>> flatness_along_directions(m, torch.nn.functional.cross_entropy, b, n_dirs=2) >= -1
    True
    """
    if n_dirs < 1 or n_radii < 1:
        raise ValueError(f"n_dirs and n_radii must be >= 1, got {n_dirs}, {n_radii}")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    g = torch.Generator().manual_seed(seed)
    dirs = [filter_normalized_direction(model, g, ignore_bias_bn) for _ in range(n_dirs)]
    ts = [radius * k / n_radii * sign for k in range(1, n_radii + 1) for sign in (1, -1)]
    rises = []
    with _restored(model) as base, _eval_mode(model, bn):
        center = _loss(model, loss_func, batches)
        params = _params(model)
        for d in dirs:
            for t in ts:
                with torch.no_grad():
                    for p, w, u in zip(params, base, d, strict=True):
                        p.copy_(w + t * u)
                rises.append(_loss(model, loss_func, batches) - center)
    return float(np.mean(rises)) if np.isfinite(rises).all() else math.inf


# -- output -----------------------------------------------------------------------------
def save_surface_csv(surface: Surface, path: str | os.PathLike[str]) -> Path:
    """The grid as a CSV (``x,y,loss``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    surface.to_frame().to_csv(path, index=False)
    return path


def save_line_csv(alphas: Sequence[float], losses: dict[str, Sequence[float]],
                  path: str | os.PathLike[str]) -> Path:
    """Losses along a line as a CSV: column ``alpha`` and one column per curve."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"alpha": list(alphas), **{k: list(v) for k, v in losses.items()}}).to_csv(
        path, index=False)
    return path


def plot_surfaces(surfaces: Sequence[Surface], titles: Sequence[str],
                  path: str | os.PathLike[str], radius: float | None = 0.5,
                  suptitle: str | None = None) -> Path:
    """Contour plots side by side on one colour scale (log-spaced levels), each with its
    flatness in the title and the radius it is measured over drawn as a circle."""
    if len(surfaces) != len(titles):
        raise ValueError(f"{len(surfaces)} surfaces, {len(titles)} titles")
    finite = np.concatenate([s.losses[np.isfinite(s.losses)].ravel() for s in surfaces])
    lo = max(float(finite.min()), 1e-4)
    hi = max(float(finite.max()), lo * 1.01)
    levels = np.geomspace(lo, hi, 25)
    fig, axes = plt.subplots(1, len(surfaces), figsize=(4.6 * len(surfaces), 4.2),
                             squeeze=False)
    cs = None
    for ax, s, title in zip(axes.flat, surfaces, titles, strict=True):
        z = np.clip(np.nan_to_num(s.losses, nan=hi, posinf=hi), lo, hi)
        cs = ax.contourf(s.xs, s.ys, z, levels=levels, norm=matplotlib.colors.LogNorm(lo, hi),
                         cmap="viridis")
        ax.contour(s.xs, s.ys, z, levels=levels[::3], colors="white", linewidths=0.4)
        ax.plot(0, 0, "r+", markersize=10)
        if radius is not None:
            ax.add_patch(plt.Circle((0, 0), radius, fill=False, color="red", lw=0.8, ls="--"))
            title = (f"{title}\nthis plane: mean loss rise within r={radius:g}: "
                     f"{flatness(s, radius):.3f}")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("direction 1")
        ax.set_aspect("equal")
    axes.flat[0].set_ylabel("direction 2")
    fig.colorbar(cs, ax=list(axes.flat), label="loss", format="%.2g")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    return _save(fig, path)


def plot_line(alphas: Sequence[float], losses: dict[str, Sequence[float]],
              path: str | os.PathLike[str], xlabel: str = "alpha",
              title: str = "loss along the line") -> Path:
    """One curve per entry of ``losses`` against ``alphas`` (log-scaled loss axis)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ys in losses.items():
        ax.plot(alphas, ys, label=name)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)



# -- command line -----------------------------------------------------------------------
BUILTIN_MODELS = {"mnist-cnn": True, "mnist-cnn-nobn": False}


def _build_model(name: str) -> nn.Module:
    """``--model``: a built-in name or ``package.module:factory``; a name that is neither,
    or not importable, is a :class:`UsageError` (a ``ValueError``)."""
    from .nets import mnist_cnn

    if name in BUILTIN_MODELS:
        return mnist_cnn(bn=BUILTIN_MODELS[name])
    if ":" not in name:
        raise UsageError(f"--model must be one of {sorted(BUILTIN_MODELS)} or "
                         f"'package.module:factory', got {name!r}")
    factory = import_object(name, "--model")
    try:  # checked apart from the call: a TypeError inside the factory is its own bug
        inspect.signature(factory).bind()
    except TypeError as e:
        raise UsageError(f"--model {name} must be callable without arguments ({e})") from None
    except ValueError:  # no signature to read (some builtins): let the call decide
        pass
    model = factory()
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model {name}() returned {type(model).__name__}, not an nn.Module")
    return model


def _load_state(path: str) -> dict[str, Tensor]:
    """A state dict, or the model's from a Learner checkpoint. Raises FileNotFoundError for
    a missing file and DataError for one torch cannot read (``fastext landscape`` reports
    both in one line)."""
    from ..data import load_torch_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"no weights file {path}")
    state = load_torch_file(path)
    return state["model"] if isinstance(state, dict) and "model" in state else state


def _load_checked(model: nn.Module, state: Any, option: str, path: str) -> None:
    """``model.load_state_dict(state)``, its refusal (other keys or shapes, not a dict) a
    :class:`UsageError` naming the option."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as e:
        raise UsageError(f"{option} {path} does not fit the model: {e}") from None


def _check_radius(steps: int, span: float, radius: float) -> None:
    """The flatness of the plotted plane averages the grid points within ``--radius``
    (:func:`flatness` on :func:`loss_surface`'s grid): with none (an even ``--steps`` has no
    centre point) it would fail after the whole surface."""
    coords = np.linspace(-span, span, steps)
    try:
        flatness(Surface(coords, coords, np.zeros((steps, steps)), 0.0), radius)
    except ValueError:
        raise UsageError(f"--radius {radius:g} holds no point of the {steps}x{steps} grid "
                         f"over [-{span:g}, {span:g}]^2; raise it or give an odd --steps"
                         ) from None


def _mnist_train(data: str | None, n: int, asked: str) -> tuple[Tensor, Tensor]:
    """:func:`~fastext.tools.nets.load_mnist_train`; asking for more images than the split
    holds is a :class:`UsageError` naming the options that asked (``asked``)."""
    from ..data import DataError
    from .nets import load_mnist_train

    try:
        return load_mnist_train(data, n)
    except DataError:  # a ValueError too, and already one line naming the file
        raise
    except ValueError as e:
        raise UsageError(f"{asked}: {e}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``fastext landscape`` options; values out of range are refused while parsing."""
    p.add_argument("--model", default="mnist-cnn",
                   help="mnist-cnn, mnist-cnn-nobn, or 'pkg.module:factory' (an MNIST "
                        "classifier taking (N, 1, 28, 28))")
    p.add_argument("--weights", metavar="PTH",
                   help="state dict or Learner checkpoint; default: train the model first")
    p.add_argument("--weights-b", metavar="PTH",
                   help="a second set of weights: also plot the loss along the line to it")
    p.add_argument("--data", metavar="DIR", help="MNIST directory (default: found)")
    # a sixth is held out as the valid set: six images leave it one
    p.add_argument("--n-train", type=int_at_least(6), default=4000, metavar="N",
                   help="images to train on, at least 6 (a sixth held out)")
    p.add_argument("--epochs", type=int_at_least(1), default=15, metavar="N",
                   help="training epochs, at least 1")
    p.add_argument("--lr", type=positive_float, default=1e-2, help="1cycle lr_max for training")
    p.add_argument("--bs", type=int_at_least(1), default=128, metavar="N",
                   help="training batch size")
    p.add_argument("--n-eval", type=int_at_least(1), default=1000, metavar="N",
                   help="training images the loss is on")
    p.add_argument("--steps", type=int_at_least(2), default=21, metavar="N",
                   help="grid points per axis, at least 2")
    p.add_argument("--span", type=positive_float, default=1.0, help="grid half-width")
    p.add_argument("--radius", type=positive_float, default=0.5,
                   help="radius of the flatness number")
    p.add_argument("--n-dirs", type=int_at_least(1), default=16, metavar="N",
                   help="random directions the flatness number averages over")
    p.add_argument("--bn", choices=BN_MODES, default="batch",
                   help="BatchNorm statistics: of each batch (default) or the running ones")
    p.add_argument("--seed", type=int_at_least(0), default=0,
                   help="a non-negative integer")
    p.add_argument("--out", metavar="DIR", default="out/landscape")


def cli_main(args: argparse.Namespace) -> int:
    """Trains (or loads) the model, writes ``landscape_surface.png``/``.csv`` (and with
    ``--weights-b`` ``landscape_line.png``/``.csv``) under ``--out``, prints flatness.

    Raises:
        UsageError: a bad ``--model``, ``--out``, ``--radius`` for the grid, weights that do
            not fit the model, or more images than the data holds.
        FileNotFoundError, DataError: no MNIST data or weights file, or an unreadable one.
    """
    from .nets import train_mnist

    # everything that can be refused is, before the data is read and the model trained
    check_output_dir(args.out, "--out")
    _check_radius(args.steps, args.span, args.radius)
    model = _build_model(args.model)
    if args.weights:
        _load_checked(model, _load_state(args.weights), "--weights", args.weights)
    other = _load_state(args.weights_b) if args.weights_b else None
    if other is not None:  # a trial load into a copy: used only after the whole surface
        _load_checked(copy.deepcopy(model), other, "--weights-b", args.weights_b)
    asked = f"--n-eval {args.n_eval}" + ("" if args.weights else f", --n-train {args.n_train}")
    x, y = _mnist_train(args.data, max(args.n_eval, 0 if args.weights else args.n_train), asked)
    if not args.weights:
        print(f"landscape: training {args.model} on {args.n_train} images, {args.epochs} "
              f"epoch(s), lr {args.lr:g}, batch {args.bs}", flush=True)
        train_mnist(model, x[:args.n_train], y[:args.n_train], args.epochs, args.lr, args.bs,
                    args.seed)
    batches = list(zip(x[:args.n_eval].split(500), y[:args.n_eval].split(500), strict=True))
    loss_func = torch.nn.functional.cross_entropy
    print(f"landscape: {args.steps}x{args.steps} grid over [-{args.span:g}, {args.span:g}]^2, "
          f"loss on {args.n_eval} training images", flush=True)
    surface = loss_surface(model, loss_func, batches, steps=args.steps, span=args.span,
                           seed=args.seed, bn=args.bn, progress=True)
    out = Path(args.out)
    flat = flatness_along_directions(model, loss_func, batches, args.radius, args.n_dirs,
                                     seed=args.seed + 1, bn=args.bn)
    files = [plot_surfaces([surface], [args.model], out / "landscape_surface.png", args.radius,
                           f"flatness ({args.n_dirs} directions, r={args.radius:g}) "
                           f"{flat:.4f}"),
             save_surface_csv(surface, out / "landscape_surface.csv")]
    print(f"centre loss {surface.center_loss:.4f}, flatness (mean loss rise out to radius "
          f"{args.radius:g} along {args.n_dirs} random directions) {flat:.4f}; this plane "
          f"{flatness(surface, args.radius):.4f}")
    if other is not None:
        alphas = np.linspace(-0.5, 1.5, 41)
        line = loss_along_line(model, model.state_dict(), other, loss_func, batches, alphas,
                               args.bn)
        files += [plot_line(alphas, {"a -> b": line}, out / "landscape_line.png"),
                  save_line_csv(alphas, {"loss": line}, out / "landscape_line.csv")]
        print(f"line: loss at a {line[10]:.4f}, midpoint {line[20]:.4f}, b {line[30]:.4f}")
    print("figures     " + ", ".join(str(f) for f in files))
    return 0
