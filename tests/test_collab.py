"""Collaborative filtering: the models against hand computations, the loaders' split and
vocabularies, training that beats the global mean, weight decay's effect, predict on raw
ids, the interpretation (biases, PCA against sklearn), bad inputs and the demo."""

from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.decomposition import PCA

from fastext.tasks.collab import (
    CollabDataLoaders,
    EmbeddingDotBias,
    EmbeddingNN,
    collab_learner,
)
from fastext.tasks.tabular import NA, TabularModel


def low_rank_ratings(n_users=120, n_items=80, density=0.5, seed=0):
    """Ratings 0.5..5 from a rank-2 model plus user and item effects, half of them observed."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(n_users, 2)), rng.normal(size=(n_items, 2))
    score = 3.0 + u @ v.T * 0.8 + rng.normal(0, 0.5, n_users)[:, None] \
        + rng.normal(0, 0.5, n_items)[None, :]
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    r = np.clip(np.round(score[users, items] * 2) / 2, 0.5, 5.0)
    return pd.DataFrame({"user": users + 1000, "item": [f"m{i}" for i in items], "rating": r})


def test_embedding_dot_bias_matches_hand_computation(device):
    m = EmbeddingDotBias(4, 6, n_factors=3, y_range=(0.0, 5.5)).to(device)
    x = torch.tensor([[0, 5], [3, 2], [3, 0]], device=device)
    u, i = m.user_weight.weight[x[:, 0]], m.item_weight.weight[x[:, 1]]
    raw = (u * i).sum(1) + m.user_bias.weight[x[:, 0], 0] + m.item_bias.weight[x[:, 1], 0]
    torch.testing.assert_close(m(x), 5.5 * torch.sigmoid(raw))
    free = EmbeddingDotBias(4, 6, n_factors=3, y_range=None).to(device)
    u, i = free.user_weight.weight[x[:, 0]], free.item_weight.weight[x[:, 1]]
    raw = (u * i).sum(1) + free.user_bias.weight[x[:, 0], 0] + free.item_bias.weight[x[:, 1], 0]
    torch.testing.assert_close(free(x), raw)
    assert free.item_factors() is free.item_weight.weight


def test_embedding_nn_is_tabular_model_without_continuous():
    torch.manual_seed(0)
    m = EmbeddingNN([(4, 3), (6, 5)], layers=(8,), y_range=(0.0, 5.5)).eval()
    ref = TabularModel([(4, 3), (6, 5)], 0, 1, layers=(8,), y_range=(0.0, 5.5)).eval()
    ref.load_state_dict(m.tab.state_dict())
    x = torch.tensor([[0, 5], [3, 2]])
    torch.testing.assert_close(m(x), ref(x, torch.zeros(2, 0)).squeeze(1))
    assert m.item_factors().shape == (6, 5)
    with pytest.raises(ValueError, match="two embeddings"):
        EmbeddingNN([(4, 3)])


def test_models_reject_bad_input():
    m = EmbeddingDotBias(4, 6, n_factors=3)
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        m(torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="integers"):
        m(torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive"):
        EmbeddingDotBias(0, 6)
    with pytest.raises(ValueError, match="y_range"):
        EmbeddingDotBias(4, 6, y_range=(5.0, 0.0))


def test_loaders_split_vocab_and_encode():
    df = low_rank_ratings()
    dls = CollabDataLoaders.from_df(df, valid_pct=0.2, seed=7, bs=32, device="cpu")
    n = len(df)
    x_train, y_train = dls.train.dataset
    x_valid, y_valid = dls.valid.dataset
    assert len(x_valid) == round(0.2 * n) and len(x_train) + len(x_valid) == n
    # The split is the seeded permutation: validation rows are its first 20%.
    order = torch.randperm(n, generator=torch.Generator().manual_seed(7)).numpy()
    valid_rows = df.iloc[order[:len(x_valid)]]
    assert torch.equal(y_valid, torch.tensor(valid_rows["rating"].to_numpy(), dtype=torch.float32))
    # Vocabularies come from the training rows only, '#na#' first.
    train_rows = df.iloc[order[len(x_valid):]]
    # integer ids in numeric order, as fastai's CategoryMap (names stay strings)
    assert dls.classes["user"] == [NA, *(str(u) for u in sorted(train_rows["user"].unique()))]
    assert dls.classes["item"] == [NA, *sorted(train_rows["item"].unique())]
    codes = dls.encode(train_rows["user"].tolist(), train_rows["item"].tolist())
    assert torch.equal(codes, x_train) and (codes > 0).all()  # training rows, in order
    # Raw ids round-trip through the vocabularies, ints or numpy ints alike.
    u, it = train_rows.iloc[0]["user"], train_rows.iloc[0]["item"]
    pair = dls.encode(np.int64(u), it)
    assert dls.classes["user"][pair[0, 0]] == str(u) and dls.classes["item"][pair[0, 1]] == it
    assert torch.equal(dls.encode(u, [it, it]), pair.repeat(2, 1))  # a scalar broadcasts
    with pytest.raises(KeyError, match="not seen in training"):
        dls.encode(999_999, it)
    with pytest.raises(ValueError, match="users but"):
        dls.encode([u, u, u], [it, it])
    assert dls.item_counts.sum() == len(x_train) and dls.item_counts[0] == 0
    assert dls.rating_range == (train_rows["rating"].min(), train_rows["rating"].max())


def test_loaders_bad_input():
    df = low_rank_ratings()
    with pytest.raises(KeyError, match="stars"):
        CollabDataLoaders.from_df(df, rating_name="stars")
    with pytest.raises(TypeError, match="numeric"):
        CollabDataLoaders.from_df(df.assign(rating=df["rating"].astype(str)))
    with pytest.raises(ValueError, match="missing or infinite"):
        CollabDataLoaders.from_df(df.assign(rating=df["rating"].where(df.index != 3)))
    with pytest.raises(ValueError, match="valid_pct"):
        CollabDataLoaders.from_df(df, valid_pct=0.0)
    with pytest.raises(ValueError, match="missing user/item ids"):
        CollabDataLoaders.from_df(df.assign(item=df["item"].where(df.index != 5)))
    with pytest.raises(TypeError, match="DataFrame"):
        CollabDataLoaders.from_df(df.to_numpy())
    with pytest.raises(ValueError, match="user, item and rating"):
        CollabDataLoaders.from_df(df[["user", "item"]])


def test_dot_bias_beats_global_mean_and_weight_decay_shrinks_factors():
    df = low_rank_ratings()
    dls = CollabDataLoaders.from_df(df, seed=0, bs=64, device="cpu")
    mean = dls.train.dataset[1].mean()
    baseline = float((dls.valid.dataset[1] - mean).square().mean().sqrt())
    learners = {}
    for wd in (0.0, 0.1):
        torch.manual_seed(0)
        learn = collab_learner(dls, n_factors=8, wd=wd, quiet=True)
        learn.fit_one_cycle(8, 1e-2)
        learners[wd] = learn
    rmse = learners[0.1].validate()[1]
    assert rmse < 0.85 * baseline, (rmse, baseline)
    # The RMSE metric equals the root of the validation MSE loss, computed by hand too.
    x_valid, y_valid = dls.valid.dataset
    with torch.no_grad():
        pred = learners[0.1].model.eval()(x_valid)
    assert rmse == pytest.approx(float((pred - y_valid).square().mean().sqrt()), rel=1e-5)
    norms = {wd: float(learn.model.item_weight.weight.detach().norm())
             for wd, learn in learners.items()}
    assert norms[0.1] < norms[0.0]
    assert learners[0.1].model.y_range == (0.0, 5.5)  # auto: 0 .. 1.1 x the top rating


@pytest.mark.parametrize(("low", "high", "want"), [
    (0.5, 5.0, (0.0, 5.5)),    # the course's MovieLens range
    (1.0, 5.0, (0.0, 5.5)),
    (0.0, 5.0, (-0.5, 5.55)),  # 0 rated: widened below as above (0 was the asymptote)
    (-1.0, 5.0, (-1.6, 5.66)),
    (0.0, 0.0, (-0.1, 0.01)),  # one rating value: still strictly inside
])
def test_auto_y_range_keeps_every_rating_strictly_inside(low, high, want):
    rng = np.random.default_rng(0)
    n = 200
    r = rng.uniform(low, high, n).round(1)
    r[:50], r[50:100] = low, high  # both extremes among the training rows
    df = pd.DataFrame({"u": rng.integers(0, 20, n), "i": rng.integers(0, 30, n), "rating": r})
    dls = CollabDataLoaders.from_df(df, bs=32, device="cpu")
    assert dls.rating_range == (low, high)
    dot, mlp = collab_learner(dls, quiet=True), collab_learner(dls, use_nn=True, quiet=True)
    for lo, hi in (dot.model.y_range, mlp.model.tab.y_range):
        assert (lo, hi) == pytest.approx(want)
        # a sigmoid reaches neither end: both extreme ratings need a finite logit
        assert lo < low and high < hi or (low > 0 and lo == 0.0 and high < hi)


def test_embedding_nn_learner_trains():
    df = low_rank_ratings()
    dls = CollabDataLoaders.from_df(df, seed=0, bs=64, device="cpu")
    torch.manual_seed(0)
    learn = collab_learner(dls, use_nn=True, layers=(32,), emb_szs={"item": 6}, quiet=True)
    assert learn.model.item_factors().shape == (len(dls.classes["item"]), 6)
    baseline = float((dls.valid.dataset[1] - dls.train.dataset[1].mean()).square().mean().sqrt())
    learn.fit_one_cycle(6, 1e-2)
    assert learn.validate()[1] < 0.9 * baseline
    with pytest.raises(TypeError, match="EmbeddingDotBias"):
        learn.item_biases()


def test_embedding_nn_trains_when_the_last_training_batch_would_hold_one_row():
    """81 ratings leave 65 training rows: at bs=64 the last batch held one row, which the
    MLP's BatchNorm cannot train on. The training loader drops a last partial batch."""
    rng = np.random.default_rng(0)
    n = 81
    df = pd.DataFrame({"user": rng.integers(0, 10, n), "item": rng.integers(0, 10, n),
                       "rating": rng.integers(1, 6, n).astype(float)})
    dls = CollabDataLoaders.from_df(df, bs=64, device="cpu")
    assert len(dls.train.dataset[0]) == 65
    assert len(dls.train) == 1 and [len(x) for x, _ in dls.train] == [64]
    assert sum(len(x) for x, _ in dls.valid) == 16  # validation keeps every row
    learn = collab_learner(dls, use_nn=True, layers=(8,), quiet=True)
    learn.fit_one_cycle(1, 1e-2)
    assert np.isfinite(learn.validate()[0])
    # drop_last=False keeps every row; a single partial batch is never dropped
    keep_all = CollabDataLoaders.from_df(df, bs=64, drop_last=False, device="cpu")
    assert [len(x) for x, _ in keep_all.train] == [64, 1]
    one_batch = CollabDataLoaders.from_df(df, bs=100, device="cpu")
    assert [len(x) for x, _ in one_batch.train] == [65]


def test_predict_and_interpretation(tmp_path):
    df = low_rank_ratings()
    dls = CollabDataLoaders.from_df(df, seed=0, bs=64, device="cpu")
    torch.manual_seed(0)
    learn = collab_learner(dls, n_factors=4, quiet=True)
    learn.fit_one_cycle(2, 1e-2)
    users, items = df["user"].iloc[:10].tolist(), df["item"].iloc[:10].tolist()
    known = [(u, i) for u, i in zip(users, items, strict=True)
             if str(u) in dls.classes["user"] and i in dls.classes["item"]]
    us, its = zip(*known, strict=True)
    learn.model.train()
    next(learn.model.children()).eval()  # a part kept in eval mode stays so
    modes = [m.training for m in learn.model.modules()]
    preds = learn.predict(list(us), list(its))
    # predict evaluates in eval mode and gives every submodule its own mode back
    assert [m.training for m in learn.model.modules()] == modes
    learn.model.train()
    want = learn.model.eval()(dls.encode(list(us), list(its)))
    torch.testing.assert_close(preds, want)
    one = learn.predict(us[0], its[0])
    assert one.shape == () and float(one) == pytest.approx(float(preds[0]))

    labels = {f"m{i}": f"Movie {i}" for i in range(80)}
    top, bottom = learn.item_biases(5, most_rated=None, labels=labels)
    bias = learn.model.item_bias.weight.detach()[1:, 0].numpy()  # without '#na#'
    assert top["bias"].tolist() == pytest.approx(sorted(bias, reverse=True)[:5])
    assert bottom["bias"].tolist() == pytest.approx(sorted(bias)[:5])
    assert all(name.startswith("Movie ") for name in top["item"])
    # The 10 most-rated only: biases among those, counts from the training rows.
    top10, _ = learn.item_biases(3, most_rated=10)
    assert (top10["n_ratings"] >= np.sort(dls.item_counts)[-10]).all()

    png = tmp_path / "pca.png"
    coords = learn.item_pca(png, most_rated=30, n_labels=5, labels=labels)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(coords) == 30
    order = np.argsort(-dls.item_counts[1:], kind="stable")[:30] + 1
    want = PCA(n_components=2).fit_transform(
        learn.model.item_weight.weight.detach().numpy()[order])
    np.testing.assert_allclose(coords[["pc1", "pc2"]].to_numpy(), want, rtol=1e-4, atol=1e-6)


def test_movielens_loader_and_demo_quick(tmp_path):
    from fastext.data.movielens import load_ratings

    try:
        ratings = load_ratings(titles=True)
    except FileNotFoundError as e:
        pytest.skip(f"MovieLens latest-small not found: {e}")
    assert ratings.shape == (100836, 5)
    assert ratings["userId"].nunique() == 610 and ratings["movieId"].nunique() == 9724
    from fastext.demos.movielens import cli_main

    args = types.SimpleNamespace(data=None, epochs=1, quick=True,
                                 json=str(tmp_path / "m.json"), out=str(tmp_path),
                                 bench_off=True)
    record = cli_main(args)
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved == record
    assert {"rmse", "rmse_wd0", "rmse_nn", "baseline_rmse", "top_bias", "bottom_bias"} \
        <= set(saved)
    assert saved["rmse"] > 0 and saved["rmse_wd0"] > 0 and len(saved["top_bias"]) == 10
    assert (tmp_path / "movielens_pca.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("use_nn", [False, True])
def test_collab_learner_on_device(device, use_nn):
    df = low_rank_ratings()
    dls = CollabDataLoaders.from_df(df, seed=0, bs=64, device=device)
    torch.manual_seed(0)
    learn = collab_learner(dls, n_factors=8, use_nn=use_nn, layers=(32,), quiet=True)
    learn.fit_one_cycle(4, 1e-2)
    baseline = float((dls.valid.dataset[1] - dls.train.dataset[1].mean()).square().mean().sqrt())
    assert learn.validate()[1] < baseline
    pred = learn.predict(df["user"].iloc[0], df["item"].iloc[0])
    assert pred.device.type == "cpu" and 0 < float(pred) < 5.5
