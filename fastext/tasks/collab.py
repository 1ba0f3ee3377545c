"""Collaborative filtering with embeddings: ``EmbeddingDotBias`` (user and item factors and
biases, a dot product squashed into ``y_range``) and ``EmbeddingNN`` (the two embeddings
concatenated through an MLP), ``collab_learner``, ``predict(user, item)`` on raw ids, and
interpretation: the items with the highest and lowest learned bias, and a 2-D PCA of the
item factors saved as a labelled PNG.

>>> import pandas as pd
>>> ratings = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3] * 8, "item": list("abcabc") * 8,
...                         "rating": [5.0, 3.0, 4.0, 1.0, 2.0, 4.0] * 8})
>>> dls = CollabDataLoaders.from_df(ratings, bs=8, device="cpu")
>>> learn = collab_learner(dls, n_factors=4, quiet=True)
>>> learn.fit_one_cycle(1, 5e-3)
>>> learn.predict(1, "a").shape
torch.Size([])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.camvid import split_indices
from ..learner import RMSE, DataLoaders, Learner, TensorLoader
from ..learner.data import drops_last_batch
from ..nn.modes import eval_mode
from .tabular import Categorify, SlicedTensorLoader, TabularModel, _codes, _key, emb_sz_rule

__all__ = ["CollabDataLoaders", "CollabLearner", "EmbeddingDotBias", "EmbeddingNN",
           "collab_learner"]


def _check_pairs(x: Tensor) -> None:
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"expected (batch, 2) user/item indices, got {tuple(x.shape)}")
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise TypeError(f"user/item indices must be integers, got {x.dtype}")


def _squash(x: Tensor, y_range: tuple[float, float] | None) -> Tensor:
    if y_range is None:
        return x
    lo, hi = y_range
    return torch.sigmoid(x) * (hi - lo) + lo


def _check_range(y_range: tuple[float, float] | None) -> tuple[float, float] | None:
    if y_range is None:
        return None
    lo, hi = map(float, y_range)
    if not lo < hi:
        raise ValueError(f"y_range must be (lo, hi) with lo < hi, got {y_range}")
    return lo, hi


class EmbeddingDotBias(nn.Module):
    """Predicts ``user · item + user_bias + item_bias``, squashed into ``y_range`` by a
    sigmoid (``None``: not squashed). Input: ``(batch, 2)`` int64 (user index, item index).

    >>> m = EmbeddingDotBias(3, 4, n_factors=5, y_range=(0.0, 5.5))
    >>> out = m(torch.tensor([[0, 1], [2, 3]]))
    >>> out.shape, bool(((out > 0) & (out < 5.5)).all())
    (torch.Size([2]), True)
    """

    def __init__(self, n_users: int, n_items: int, n_factors: int = 50,
                 y_range: tuple[float, float] | None = (0.0, 5.5)) -> None:
        super().__init__()
        if min(n_users, n_items, n_factors) < 1:
            raise ValueError("n_users, n_items and n_factors must be positive")
        self.y_range = _check_range(y_range)
        self.user_weight = nn.Embedding(n_users, n_factors)
        self.item_weight = nn.Embedding(n_items, n_factors)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        for e in (self.user_weight, self.item_weight, self.user_bias, self.item_bias):
            nn.init.trunc_normal_(e.weight, std=0.01, a=-0.02, b=0.02)

    def item_factors(self) -> Tensor:
        """The item factors, ``(n_items, n_factors)``."""
        return self.item_weight.weight

    def forward(self, x: Tensor) -> Tensor:
        _check_pairs(x)
        users, items = x[:, 0], x[:, 1]
        dot = (self.user_weight(users) * self.item_weight(items)).sum(1)
        out = dot + self.user_bias(users).squeeze(1) + self.item_bias(items).squeeze(1)
        return _squash(out, self.y_range)


class EmbeddingNN(nn.Module):
    """User and item embeddings concatenated and passed through an MLP
    (:class:`fastext.tasks.tabular.TabularModel` with two categorical inputs and none
    continuous), one output squashed into ``y_range``.

    >>> m = EmbeddingNN([(3, 4), (5, 6)], layers=(8,))
    >>> m(torch.tensor([[0, 1], [2, 4]])).shape
    torch.Size([2])
    """

    def __init__(self, emb_szs: Sequence[tuple[int, int]], layers: Sequence[int] = (100, 50),
                 ps: float | Sequence[float] = 0.0, embed_p: float = 0.0,
                 y_range: tuple[float, float] | None = (0.0, 5.5)) -> None:
        super().__init__()
        if len(emb_szs) != 2:
            raise ValueError(f"EmbeddingNN takes two embeddings (users, items), got {len(emb_szs)}")
        self.tab = TabularModel(emb_szs, 0, 1, layers, ps, embed_p, _check_range(y_range))

    def item_factors(self) -> Tensor:
        """The item embeddings, ``(n_items, width)``."""
        return self.tab.embeds.table(1)

    def forward(self, x: Tensor) -> Tensor:
        _check_pairs(x)
        return self.tab(x, x.new_zeros((len(x), 0), dtype=torch.float32)).squeeze(1)


class CollabDataLoaders(DataLoaders):
    """Loaders of ``((user, item) index pairs, rating)`` batches from a ratings frame, with
    the user and item classes (index 0 is ``#na#``: an id not seen in training).

    ``from_df`` splits the rows at random (``valid_pct``, seeded), fits the user and item
    vocabularies on the training rows only, and slices whole batches out of the pre-built
    tensors. The training loader drops a last partial batch, as fastai's does (in
    :class:`EmbeddingNN` a batch of one breaks BatchNorm).
    """

    def __init__(self, train: Any, valid: Any, categorify: Categorify, user_name: str,
                 item_name: str, rating_name: str, rating_range: tuple[float, float],
                 item_counts: np.ndarray, device: str | torch.device | None = None) -> None:
        super().__init__(train, valid, device)
        self.categorify, self.rating_range, self.item_counts = categorify, rating_range, item_counts
        self.user_name, self.item_name, self.rating_name = user_name, item_name, rating_name

    @property
    def classes(self) -> dict[str, list[str]]:
        """``{user_name: [...], item_name: [...]}``, class names as strings."""
        return self.categorify.classes

    @classmethod
    def from_df(cls, ratings: pd.DataFrame, user_name: str | None = None,
                item_name: str | None = None, rating_name: str | None = None,
                valid_pct: float = 0.2, seed: int = 0, bs: int = 64,
                valid_bs: int | None = None, drop_last: bool = True,
                device: str | torch.device | None = None) -> CollabDataLoaders:
        """Column names default to the frame's first three columns (user, item, rating).
        ``drop_last`` drops the training loader's last partial batch when there is more than
        one batch (the rows left out change with each epoch's shuffle).
        A validation user or item absent from the training rows gets index 0 (``#na#``),
        whose embedding is never trained: its prediction stays near the middle of
        ``y_range``."""
        if not isinstance(ratings, pd.DataFrame):
            raise TypeError(f"expected a pandas DataFrame, got {type(ratings).__name__}")
        cols = list(ratings.columns)
        if len(cols) < 3 and None in (user_name, item_name, rating_name):
            raise ValueError("ratings need user, item and rating columns")
        user_name = user_name or cols[0]
        item_name = item_name or cols[1]
        rating_name = rating_name or cols[2]
        missing = [c for c in (user_name, item_name, rating_name) if c not in cols]
        if missing:
            raise KeyError(f"column(s) {missing} not in the ratings frame (it has {cols})")
        r = ratings[rating_name]
        if not pd.api.types.is_numeric_dtype(r) or pd.api.types.is_bool_dtype(r):
            raise TypeError(f"ratings column {rating_name!r} must be numeric, got {r.dtype}")
        if r.isna().any() or not np.isfinite(r.to_numpy(np.float64)).all():
            raise ValueError(f"ratings column {rating_name!r} has missing or infinite values")
        ids = ratings[[user_name, item_name]]
        if ids.isna().any().any():
            raise ValueError(f"missing {user_name}/{item_name} ids in the ratings frame")
        if len(ratings) < 2:
            raise ValueError("need at least two ratings to split")
        train_idx, valid_idx = split_indices(len(ratings), valid_pct, seed)
        train, valid = ratings.iloc[train_idx.numpy()], ratings.iloc[valid_idx.numpy()]
        cat = Categorify().fit(train, [user_name, item_name])

        def tensors(df: pd.DataFrame) -> tuple[Tensor, Tensor]:
            x = np.stack([_codes(df[user_name], cat.classes[user_name]),
                          _codes(df[item_name], cat.classes[item_name])], 1)
            return torch.from_numpy(x), torch.from_numpy(df[rating_name].to_numpy(np.float32))

        x_train, y_train = tensors(train)
        counts = np.bincount(x_train[:, 1].numpy(), minlength=len(cat.classes[item_name]))
        rng = (float(train[rating_name].min()), float(train[rating_name].max()))
        return cls(SlicedTensorLoader((x_train, y_train), bs, shuffle=True,
                                      drop_last=drops_last_batch(len(train), bs, drop_last),
                                      seed=seed),
                   TensorLoader(tensors(valid), valid_bs or 2 * bs), cat, user_name, item_name,
                   rating_name, rng, counts, device)

    def encode(self, users: Any, items: Any) -> Tensor:
        """``(n, 2)`` index pairs for raw user and item ids (scalars or sequences).

        Raises:
            KeyError: an id not seen in training (its embedding was never trained).
        """
        users, items = np.atleast_1d(np.asarray(users, dtype=object)), \
            np.atleast_1d(np.asarray(items, dtype=object))
        if users.ndim != 1 or items.ndim != 1:
            raise ValueError("users and items must be scalars or 1-d sequences")
        if len(users) != len(items) and 1 not in (len(users), len(items)):
            raise ValueError(f"{len(users)} users but {len(items)} items")
        users, items = np.broadcast_arrays(users, items)
        cols = []
        for name, ids in ((self.user_name, users), (self.item_name, items)):
            codes = _codes(pd.Series(ids, dtype=object), self.classes[name])
            if (codes == 0).any():
                unknown = [ids[i] for i in np.flatnonzero(codes == 0)[:5]]
                raise KeyError(f"{name} {unknown} not seen in training")
            cols.append(codes)
        return torch.from_numpy(np.stack(cols, 1))


class CollabLearner(Learner):
    """A :class:`fastext.learner.Learner` for ratings: :meth:`predict` on raw ids plus the
    interpretation helpers (the loop is the Learner's, unchanged)."""

    dls: CollabDataLoaders

    @torch.no_grad()
    def predict(self, users: Any, items: Any) -> Tensor:
        """Predicted ratings for raw ids (a 0-d tensor for one pair)."""
        x = self.dls.encode(users, items).to(self.dls.device)
        with eval_mode(self.model):
            out = self.model(x).float().cpu()
        return out[0] if np.ndim(users) == 0 and np.ndim(items) == 0 else out

    def _items(self, most_rated: int | None) -> np.ndarray:
        """Item indices (not ``#na#``), the ``most_rated`` with most training ratings first."""
        counts = self.dls.item_counts.copy()
        counts[0] = -1
        order = np.argsort(-counts, kind="stable")
        order = order[counts[order] > 0]
        return order if most_rated is None else order[:most_rated]

    def item_names(self, idx: np.ndarray, labels: Mapping[Any, str] | None = None) -> list[str]:
        """The raw item ids of item indices, or their ``labels`` (keyed by raw id or by its
        string form) where given."""
        classes = self.dls.classes[self.dls.item_name]
        names = [classes[i] for i in idx]
        if labels is None:
            return names
        by_key = {_key(k): v for k, v in labels.items()}
        return [str(by_key.get(n, n)) for n in names]

    def item_biases(self, n: int = 10, most_rated: int | None = 1000,
                    labels: Mapping[Any, str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The ``n`` items with the highest and the ``n`` with the lowest learned bias among
        the ``most_rated`` items with most training ratings (all rated items with ``None``).
        Returns two frames ``(item, bias, n_ratings)``, highest and lowest first.

        The bias is what the model thinks of an item whoever rates it: a low bias marks a
        film disliked even by users whose tastes it matches.
        """
        if not isinstance(self.model, EmbeddingDotBias):
            raise TypeError("item biases exist only in an EmbeddingDotBias model")
        idx = self._items(most_rated)
        bias = self.model.item_bias.weight.detach().float().cpu().numpy()[idx, 0]
        df = pd.DataFrame({"item": self.item_names(idx, labels), "bias": bias,
                           "n_ratings": self.dls.item_counts[idx]})
        df = df.sort_values("bias", ascending=False, kind="stable").reset_index(drop=True)
        return df.head(n), df.iloc[::-1].head(n).reset_index(drop=True)

    def item_pca(self, path: str | Path | None = None, most_rated: int | None = 1000,
                 n_labels: int = 40, labels: Mapping[Any, str] | None = None) -> pd.DataFrame:
        """Projects the item factors of the ``most_rated`` items onto their first two
        principal components (sklearn's PCA); with ``path`` saves a scatter plot with the
        ``n_labels`` most-rated items labelled. Returns ``(item, pc1, pc2, n_ratings)``."""
        from sklearn.decomposition import PCA

        idx = self._items(most_rated)
        if len(idx) < 2:
            raise ValueError("need at least two rated items for a PCA")
        weight = self.model.item_factors().detach().float().cpu().numpy()[idx]
        xy = PCA(n_components=2).fit_transform(weight)
        df = pd.DataFrame({"item": self.item_names(idx, labels), "pc1": xy[:, 0],
                           "pc2": xy[:, 1], "n_ratings": self.dls.item_counts[idx]})
        if path is not None:
            _plot_pca(df, Path(path), n_labels)
        return df


def _plot_pca(df: pd.DataFrame, path: Path, n_labels: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 12))
    ax.scatter(df["pc1"], df["pc2"], s=6, c="lightgray")
    top = df.head(n_labels)  # df comes most-rated first
    ax.scatter(top["pc1"], top["pc2"], s=12, c="tab:blue")
    for _, row in top.iterrows():
        ax.annotate(str(row["item"])[:40], (row["pc1"], row["pc2"]), fontsize=8,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("first principal component of the item factors")
    ax.set_ylabel("second principal component")
    ax.set_title(f"Item factors, PCA of the {len(df)} most-rated items")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _auto_range(r_min: float, r_max: float) -> tuple[float, float]:
    """``collab_learner``'s ``y_range="auto"``: ratings ``[r_min, r_max]`` strictly inside.

    >>> _auto_range(0.5, 5.0), _auto_range(0.0, 5.0), _auto_range(-1.0, 5.0)
    ((0.0, 5.5), (-0.5, 5.55), (-1.6, 5.66))
    """
    # a rating of 0 would sit on the sigmoid's lower asymptote, as r_max would on the upper
    span = (r_max - r_min) or max(abs(r_max), 1.0)  # one rating value: still a margin
    lo = 0.0 if r_min > 0 else r_min - 0.1 * span
    return lo, r_max + 0.1 * (r_max - lo)


def _mse(pred: Tensor, targ: Tensor) -> Tensor:
    return F.mse_loss(pred.reshape(-1), targ.reshape(-1).to(pred.dtype))


def _one_group(model: nn.Module) -> list[list[nn.Parameter]]:
    return [list(model.parameters())]


def collab_learner(dls: CollabDataLoaders, n_factors: int = 50, use_nn: bool = False,
                   emb_szs: Mapping[str, int] | None = None, layers: Sequence[int] = (100, 50),
                   y_range: tuple[float, float] | None | str = "auto",
                   metrics: Sequence[Any] | None = None, **kwargs: Any) -> CollabLearner:
    """A :class:`CollabLearner` with MSE loss and the RMSE metric.

    ``use_nn=False``: :class:`EmbeddingDotBias` with ``n_factors``; ``True``:
    :class:`EmbeddingNN` with embedding widths by the tabular rule (``emb_szs`` overrides
    them by column name) and hidden ``layers``. ``y_range="auto"`` is ``(lo, hi)`` for
    training ratings in ``[r_min, r_max]``: a sigmoid never reaches its ends, so every rating
    must lie strictly inside. ``lo`` is 0 when ``r_min > 0``, else ``r_min`` less 10% of
    the ratings' span; ``hi`` is ``r_max`` plus 10% of ``r_max - lo``. So the course's
    ``(0, 5.5)`` for ratings 0.5 or 1 to 5, ``(-0.5, 5.55)`` for 0 to 5, ``(-1.6, 5.66)``
    for -1 to 5. ``None`` leaves the output unsquashed. Other keyword arguments go to
    :class:`fastext.learner.Learner`.
    """
    if isinstance(y_range, str):
        if y_range != "auto":
            raise ValueError(f"y_range must be (lo, hi), None or 'auto', got {y_range!r}")
        y_range = _auto_range(*dls.rating_range)
    n_users = len(dls.classes[dls.user_name])
    n_items = len(dls.classes[dls.item_name])
    if use_nn:
        sizes = dict(emb_szs or {})
        widths = [int(sizes.get(name, emb_sz_rule(n))) for name, n in
                  ((dls.user_name, n_users), (dls.item_name, n_items))]
        model: nn.Module = EmbeddingNN([(n_users, widths[0]), (n_items, widths[1])], layers,
                                       y_range=y_range)
    else:
        model = EmbeddingDotBias(n_users, n_items, n_factors, y_range)
    kwargs.setdefault("splitter", _one_group)
    return CollabLearner(dls, model, _mse, metrics=[RMSE()] if metrics is None else metrics,
                         **kwargs)

