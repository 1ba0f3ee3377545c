"""Tabular data: preprocessing against sklearn's encoders/imputers/scalers, the model against
the same network built from stock PyTorch modules, loaders, training that beats the majority
class on UCI Adult, predict/export round trips, bad inputs, the demo and the bench suite."""

from __future__ import annotations

import datetime
import json
import math
import types

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OrdinalEncoder, StandardScaler
from torch import nn

from fastext.learner import TensorLoader
from fastext.tasks.tabular import (
    NA,
    Categorify,
    ColumnEmbeddings,
    FillMissing,
    Normalize,
    SlicedTensorLoader,
    TabularDataLoaders,
    TabularModel,
    TabularProcessor,
    emb_sz_rule,
    load_tabular,
    tabular_learner,
)


def frames(seed=0, n=200):
    """A train and a test frame with strings, ints as categories, NaNs and an unseen class."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue", None], n, p=[0.4, 0.3, 0.2, 0.1])
    size = rng.normal(10, 3, n)
    size[rng.random(n) < 0.15] = np.nan
    df = pd.DataFrame({"color": color, "level": rng.integers(1, 4, n), "size": size,
                       "weight": rng.exponential(2.0, n), "flag": rng.random(n) < 0.5})
    df["label"] = np.where(df["weight"] + (df["color"] == "red") > 2, "big", "small")
    test = df.sample(50, random_state=seed).reset_index(drop=True)
    test.loc[0, "color"] = "purple"  # never seen in training
    test.loc[1, "level"] = 7
    return df, test


def adult_or_skip():
    from fastext.data.adult import load_adult

    try:
        return load_adult(split="train"), load_adult(split="test")
    except FileNotFoundError as e:  # the shared data are not on this machine
        pytest.skip(f"UCI Adult not found: {e}")


# -- the three steps against sklearn ---------------------------------------------------
def test_categorify_matches_sklearn_ordinal_encoder():
    train, test = frames()
    cat = Categorify().fit(train, ["color", "level"])
    got = cat.transform(test)
    enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                         encoded_missing_value=-1)
    enc.fit(train[["color"]].astype(object).fillna(np.nan))
    want = enc.transform(test[["color"]].astype(object).fillna(np.nan))[:, 0] + 1
    assert got["color"].tolist() == want.astype(int).tolist()
    assert cat.classes["color"] == [NA, "blue", "green", "red"]
    assert got.loc[0, "color"] == 0  # unseen "purple" -> #na#
    assert (got["color"][test["color"].isna()] == 0).all()  # missing -> #na#
    # Integer categories: sorted by value, unseen 7 -> #na#, same class for 2, 2.0, "2".
    assert cat.classes["level"] == [NA, "1", "2", "3"]
    assert got.loc[1, "level"] == 0
    again = cat.transform(pd.DataFrame({"color": ["red"] * 3,
                                        "level": pd.Series([2, 2.0, np.int64(2)], dtype=object)}))
    assert again["level"].tolist() == [2, 2, 2]


def test_fill_missing_matches_sklearn_simple_imputer():
    train, test = frames()
    test.loc[2, "weight"] = np.nan  # complete in training: filled, but no indicator column
    fm = FillMissing().fit(train, ["size", "weight"])
    got = fm.transform(test)
    imp = SimpleImputer(strategy="median", add_indicator=True).fit(train[["size", "weight"]])
    want = imp.transform(test[["size", "weight"]])
    assert fm.na_names == ["size_na"]
    np.testing.assert_allclose(got[["size", "weight"]].to_numpy(), want[:, :2])
    assert got["size_na"].tolist() == want[:, 2].astype(bool).tolist()
    assert "weight_na" not in got


def test_normalize_matches_sklearn_standard_scaler():
    train, test = frames()
    train = train.assign(const=5.0)
    test = test.assign(const=7.0)
    cols = ["weight", "const"]
    got = Normalize().fit(train, cols).transform(test)[cols].to_numpy()
    want = StandardScaler().fit(train[cols]).transform(test[cols])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[:, 1].tolist() == [2.0] * len(test)  # constant column: std taken as 1


def test_processor_pipeline_and_round_trip(tmp_path):
    train, test = frames()
    proc = TabularProcessor(["color", "level", "flag"], ["size", "weight"], "label").fit(train)
    assert proc.cat_names == ["color", "level", "flag", "size_na"]
    assert proc.y_kind == "category" and proc.y_classes == ["big", "small"]
    t = proc.transform(test)
    assert t.cat.dtype == torch.int64 and t.cont.dtype == torch.float32
    assert t.cat.shape == (50, 4) and t.cont.shape == (50, 2) and t.y.shape == (50,)
    # Reference: fill with the training median, then the filled training column's stats.
    filled = train["size"].fillna(train["size"].median())
    ref = (test["size"].fillna(train["size"].median()) - filled.mean()) / filled.std(ddof=0)
    np.testing.assert_allclose(t.cont[:, 0].numpy(), ref.to_numpy(), rtol=1e-5, atol=1e-6)
    assert t.cat[:, 3].tolist() == [2 if m else 1 for m in test["size"].isna()]
    assert t.y.tolist() == [0 if v == "big" else 1 for v in test["label"]]
    # Saved and restored through torch.load(weights_only=True): the same tensors.
    torch.save(proc.state_dict(), tmp_path / "proc.pth")
    back = TabularProcessor.from_state_dict(torch.load(tmp_path / "proc.pth", weights_only=True))
    t2 = back.transform(test)
    assert all(torch.equal(a, b) for a, b in zip(t, t2, strict=True))
    # One row as a Series (object dtype throughout) is processed like the frame's row.
    row = back.transform(test.iloc[3].to_frame().T)
    assert torch.equal(row.cat[0], t.cat[3]) and torch.allclose(row.cont[0], t.cont[3])
    # Without the target column: inputs only.
    assert back.transform(test.drop(columns="label")).y is None


def test_regression_target_auto_and_decode():
    train, _ = frames()
    proc = TabularProcessor(["color"], ["size"], "weight").fit(train)
    assert proc.y_kind == "regression" and proc.n_out == 1
    y = proc.transform(train).y
    assert y.dtype == torch.float32 and y.shape == (len(train), 1)  # the model's output shape
    torch.testing.assert_close(y, torch.tensor(train["weight"].values[:, None],
                                               dtype=torch.float32))
    cls = TabularProcessor(["color"], ["size"], "label").fit(train)
    assert cls.decode_y(np.array([1, 0])).tolist() == ["small", "big"]


def test_date_and_duration_categories_keep_their_class():
    """Dates and durations are one class whatever their unit or their Python type: a
    row turned into a frame (what predict(Series) does) holds pd.Timestamp/pd.Timedelta
    objects, and np.timedelta64 (an np.integer) no longer breaks fitting."""
    df = pd.DataFrame({"d": pd.to_datetime(["2020-01-01", "2020-02-01"] * 4),
                       "t": pd.to_timedelta([1, 2] * 4, "D"), "x": np.arange(8.0),
                       "y": list("abab") * 2})
    proc = TabularProcessor(["d", "t"], ["x"], "y").fit(df)
    assert proc.classes == {"d": [NA, "2020-01-01T00:00:00", "2020-02-01T00:00:00"],
                            "t": [NA, "P1DT0H0M0S", "P2DT0H0M0S"]}
    expect = [[1, 1], [2, 2]] * 4
    assert proc.transform(df).cat.tolist() == expect
    assert proc.transform(df.iloc[1].to_frame().T).cat.tolist() == [[2, 2]]
    other_unit = df.assign(d=df["d"].astype("datetime64[s]"), t=df["t"].astype("timedelta64[s]"))
    assert proc.transform(other_unit).cat.tolist() == expect
    objects = pd.DataFrame({
        "d": pd.Series([datetime.datetime(2020, 2, 1), datetime.date(2020, 1, 1), None,
                        np.datetime64("2020-03-01")], dtype=object),
        "t": pd.Series([datetime.timedelta(days=2), np.timedelta64(24, "h"), pd.NaT,
                        pd.Timedelta(days=3)], dtype=object),
        "x": [1.0, 2.0, 3.0, 4.0]})
    assert proc.transform(objects).cat.tolist() == [[2, 2], [1, 1], [0, 0], [0, 0]]
    # predict on one row (a Series) gives what the same row gets in a frame
    dls = TabularDataLoaders.from_df(df, ["d", "t"], ["x"], "y", valid_df=df, bs=4,
                                     device="cpu")
    learn = tabular_learner(dls, layers=[4], quiet=True)
    _, probs = learn.predict(df)
    for i in (0, 1):
        _, p = learn.predict(df.iloc[i])
        torch.testing.assert_close(p, probs[i])


# -- bad input -----------------------------------------------------------------------------
def test_bad_inputs_give_clear_errors():
    train, test = frames()
    proc = TabularProcessor(["color"], ["size"], "label")
    with pytest.raises(RuntimeError, match="not fitted"):
        proc.transform(test)
    with pytest.raises(KeyError, match="nope"):
        TabularProcessor(["nope"], ["size"], "label").fit(train)
    with pytest.raises(KeyError, match="target"):
        TabularProcessor(["color"], ["size"], "missing_y").fit(train)
    with pytest.raises(TypeError, match="'color'.*non-numeric"):
        TabularProcessor([], ["color"], "label").fit(train)
    with pytest.raises(ValueError, match="both categorical and continuous"):
        TabularProcessor(["size"], ["size"], "label")
    with pytest.raises(ValueError, match="also listed as an input"):
        TabularProcessor(["label"], ["size"], "label")
    with pytest.raises(TypeError, match="list of column names"):
        TabularProcessor("color", ["size"])
    with pytest.raises(ValueError, match="empty"):
        TabularProcessor(["color"], ["size"], "label").fit(train.iloc[:0])
    with pytest.raises(TypeError, match="DataFrame"):
        TabularProcessor(["color"], ["size"], "label").fit(train.to_numpy())
    with pytest.raises(ValueError, match="y_kind"):
        TabularProcessor(["color"], ["size"], "label", y_kind="ordinal")
    inf = train.assign(weight=train["weight"].where(train.index != 3, np.inf))
    with pytest.raises(ValueError, match="infinite"):
        TabularProcessor(["color"], ["weight"], "label").fit(inf)
    dates = train.assign(when=pd.Timestamp("2020-01-01"))
    with pytest.raises(TypeError, match="dates"):
        TabularProcessor([], ["when"], "label").fit(dates)
    with pytest.raises(ValueError, match="has missing values"):
        TabularProcessor(["color"], ["size"], "label", fill_missing=False).fit(train)
    with pytest.raises(ValueError, match="target column 'label' has missing"):
        TabularProcessor(["color"], ["weight"], "label").fit(
            train.assign(label=train["label"].where(train.index != 0)))
    with pytest.raises(ValueError, match="no values"):
        FillMissing().fit(train.assign(size=np.nan), ["size"])
    fitted = TabularProcessor(["color"], ["size"], "label").fit(train)
    with pytest.raises(ValueError, match="not seen in training"):
        fitted.transform(test.assign(label="huge"))
    with pytest.raises(KeyError, match="size"):
        fitted.transform(test.drop(columns="size"))
    with pytest.raises(TypeError, match="'size'"):
        fitted.transform(test.assign(size="ten"))
    with pytest.raises(KeyError, match="unknown categorical"):
        fitted.emb_szs({"shape": 3})


# -- model ---------------------------------------------------------------------------------
def test_emb_sz_rule():
    for n in (1, 2, 3, 10, 17, 42, 1000, 10**5, 10**8):
        assert emb_sz_rule(n) == min(600, round(1.6 * n**0.56))
    assert emb_sz_rule(10**8) == 600


def test_column_embeddings_match_nn_embedding(device):
    szs = [(5, 3), (2, 1), (40, 7)]
    emb = ColumnEmbeddings(szs).to(device)
    ref = nn.ModuleList(nn.Embedding(n, d) for n, d in szs).to(device)
    with torch.no_grad():
        for i, e in enumerate(ref):
            e.weight.copy_(emb.table(i))
    x = torch.stack([torch.randint(0, n, (33,)) for n, _ in szs], 1).to(device)
    out = emb(x)
    want = torch.cat([e(x[:, i]) for i, e in enumerate(ref)], 1)
    assert torch.equal(out, want) and emb.width == 11 and len(emb) == 3
    g = torch.randn_like(out)
    (out * g).sum().backward()
    (want * g).sum().backward()
    for i, e in enumerate(ref):
        torch.testing.assert_close(emb.weight.grad[emb.offsets[i]:emb.offsets[i + 1]],
                                   e.weight.grad.reshape(-1))
    assert emb.state_dict().keys() == {"weight"}
    if device == "cpu":  # on CUDA a bad code is a device-side assert, as in nn.Embedding
        bad = x.clone()
        bad[0, 1] = 2  # column 1 has 2 classes: code 2 would read column 2's table
        with pytest.raises(RuntimeError, match="out of range"):
            emb(bad)
        bad[0, 1] = -1
        with pytest.raises(RuntimeError, match="out of range"):
            emb(bad)


def reference_model(m: TabularModel) -> nn.Module:
    """The same network from stock modules (an nn.Embedding per column), m's weights."""
    cfg = m.config

    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeds = nn.ModuleList(nn.Embedding(n, d) for n, d in cfg["emb_szs"])
            self.bn_cont = nn.BatchNorm1d(cfg["n_cont"])
            sizes = [sum(d for _, d in cfg["emb_szs"]) + cfg["n_cont"], *cfg["layers"]]
            layers = []
            for a, b in zip(sizes[:-1], sizes[1:], strict=True):
                layers += [nn.Linear(a, b, bias=False), nn.ReLU(), nn.BatchNorm1d(b)]
            layers.append(nn.Linear(sizes[-1], cfg["out_sz"]))
            self.layers = nn.Sequential(*layers)

        def forward(self, xc, xn):
            e = torch.cat([emb(xc[:, i]) for i, emb in enumerate(self.embeds)], 1)
            return self.layers(torch.cat([e, self.bn_cont(xn)], 1))

    ref = Ref()
    with torch.no_grad():
        for i, e in enumerate(ref.embeds):
            e.weight.copy_(m.embeds.table(i))
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("embeds")}
    ref.load_state_dict(sd, strict=False)
    return ref


def test_tabular_model_matches_stock_pytorch(device):
    torch.manual_seed(1)
    m = TabularModel([(4, 3), (10, 5)], n_cont=3, out_sz=2, layers=[16, 8]).to(device)
    ref = reference_model(m).to(device)
    xc = torch.stack([torch.randint(0, 4, (32,)), torch.randint(0, 10, (32,))], 1).to(device)
    xn = torch.randn(32, 3, device=device)
    for train in (True, False):
        m.train(train)
        ref.train(train)
        torch.testing.assert_close(m(xc, xn), ref(xc, xn))
    # Parameter count: embeddings, BN(cont), [Linear(no bias)+BN] x 2, final Linear.
    n = 4 * 3 + 10 * 5 + 2 * 3 + (11 * 16 + 2 * 16) + (16 * 8 + 2 * 8) + (8 * 2 + 2)
    assert sum(p.numel() for p in m.parameters()) == n


def test_tabular_model_options_and_shapes():
    m = TabularModel([(3, 2)], 0, 1, layers=[4], ps=0.5, embed_p=0.1, y_range=(-1.0, 2.0))
    out = m(torch.tensor([[0], [2]]), torch.zeros(2, 0))
    assert out.shape == (2, 1) and bool(((out > -1) & (out < 2)).all())
    assert any(isinstance(x, nn.Dropout) for x in m.layers)
    only_cont = TabularModel([], 4, 3, layers=[])
    assert only_cont(torch.zeros(5, 0, dtype=torch.long), torch.randn(5, 4)).shape == (5, 3)
    with pytest.raises(ValueError, match="x_cat must be"):
        m(torch.tensor([[0, 1]]), torch.zeros(1, 0))
    with pytest.raises(ValueError, match="x_cont must be"):
        m(torch.tensor([[0]]), torch.zeros(1, 2))
    with pytest.raises(TypeError, match="integer class indices"):
        m(torch.tensor([[0.0]]), torch.zeros(1, 0))
    with pytest.raises(ValueError, match="at least one"):
        TabularModel([], 0, 1)
    with pytest.raises(ValueError, match="dropout values"):
        TabularModel([(3, 2)], 1, 1, layers=[4, 4], ps=[0.1])
    with pytest.raises(ValueError, match="y_range"):
        TabularModel([(3, 2)], 1, 1, y_range=(2.0, 1.0))


# -- loaders -------------------------------------------------------------------------------
def test_sliced_loader_gives_tensor_loaders_batches():
    x, y = torch.randn(103, 4), torch.arange(103)
    for drop_last in (False, True):
        a = SlicedTensorLoader((x, y), bs=16, shuffle=True, drop_last=drop_last, seed=5)
        b = TensorLoader((x, y), bs=16, shuffle=True, drop_last=drop_last, seed=5)
        assert len(a) == len(b)
        for _ in range(2):  # two epochs: the permutation changes, alike in both
            for (xa, ya), (xb, yb) in zip(a, b, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_dataloaders_split_and_fit_on_train_only():
    train, _ = frames(n=400)
    dls = TabularDataLoaders.from_df(train, ["color"], ["size", "weight"], "label",
                                     valid_pct=0.25, bs=32, seed=3, device="cpu")
    n_train, n_valid = len(dls.train.dataset[0]), len(dls.valid.dataset[0])
    assert (n_train, n_valid) == (300, 100)
    assert len(dls.train) == 300 // 32  # the last partial batch is dropped
    # Normalisation statistics come from the 300 training rows only.
    order = torch.randperm(400, generator=torch.Generator().manual_seed(3)).numpy()
    rows = train.iloc[order[100:]]
    assert dls.proc.norm.means["weight"] == pytest.approx(rows["weight"].mean())
    with pytest.raises(ValueError, match="valid_pct"):
        TabularDataLoaders.from_df(train, ["color"], ["size"], "label", valid_pct=1.5)


# -- training, prediction, export --------------------------------------------------------
def test_adult_training_beats_majority_class_and_exports(tmp_path):
    from fastext.data.adult import ADULT_CAT_NAMES, ADULT_CONT_NAMES

    train, test = adult_or_skip()
    train, test = train.iloc[:6000], test.iloc[:3000]
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(train, list(ADULT_CAT_NAMES), list(ADULT_CONT_NAMES),
                                     "salary", valid_df=test, bs=128, device="cpu")
    learn = tabular_learner(dls, layers=[64, 32], quiet=True)
    learn.fit_one_cycle(3, 1e-2)
    loss, acc = learn.validate()
    majority = (test["salary"] == train["salary"].mode()[0]).mean()
    assert acc > majority + 0.04, (acc, majority)  # about 0.84 against 0.77
    # predict on raw rows = argmax of the model on the processed rows, as validate() saw them.
    labels, probs = learn.predict(test)
    assert probs.shape == (3000, 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(3000))
    assert (labels == test["salary"].to_numpy()).mean() == pytest.approx(acc)
    one_label, one_probs = learn.predict(test.iloc[7])
    assert one_label == labels[7] and torch.allclose(one_probs, probs[7])
    # The test loader gives the same figures as validate().
    assert learn.validate(dl=dls.test_dl(test))[1] == pytest.approx(acc)
    # Export -> load: the same predictions from raw rows, with no training data around.
    path = learn.export(tmp_path / "adult.pth")
    state = torch.load(path, weights_only=True)  # loads without unpickling code
    assert state["format"] == "fastext.tabular/1"
    loaded = load_tabular(path)
    labels2, probs2 = loaded.predict(test.drop(columns="salary"))
    assert (labels2 == labels).all() and torch.allclose(probs2, probs, atol=1e-6)
    assert not loaded.model.training


def test_regression_learner_beats_mean_baseline():
    rng = np.random.default_rng(0)
    n = 2000
    df = pd.DataFrame({"g": rng.choice(list("abcd"), n), "x": rng.normal(size=n)})
    df["y"] = 2.0 * df["x"] + df["g"].map({"a": -2.0, "b": 0.0, "c": 1.0, "d": 3.0}) \
        + rng.normal(scale=0.3, size=n)
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(df, ["g"], ["x"], "y", bs=64, device="cpu")
    learn = tabular_learner(dls, layers=[32], y_range=(-10.0, 10.0), quiet=True)
    learn.fit_one_cycle(5, 1e-2)
    valid_y = dls.valid.dataset[2]
    baseline = float((valid_y - dls.train.dataset[2].mean()).square().mean())
    mse = learn.validate()[0]
    assert mse < 0.1 * baseline, (mse, baseline)
    learn.model.train()
    next(learn.model.children()).eval()  # a part kept in eval mode stays so
    modes = [m.training for m in learn.model.modules()]
    values, tensor = learn.predict(df.iloc[:5])
    assert [m.training for m in learn.model.modules()] == modes
    assert values.shape == (5,) and torch.allclose(torch.from_numpy(values), tensor)
    assert isinstance(learn.predict(df.iloc[0])[0], float)


def test_load_tabular_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported"):
        load_tabular(tmp_path / "none.pth")
    torch.save({"model": {}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a fastext tabular export"):
        load_tabular(tmp_path / "other.pth")


def test_adult_loader():
    from fastext.data.adult import ADULT_COLUMNS, load_adult

    train, test = adult_or_skip()
    assert train.shape == (32561, 15) and test.shape == (16281, 15)
    assert list(train.columns) == list(ADULT_COLUMNS)
    assert set(test["salary"]) == {"<=50K", ">50K"}  # the trailing '.' is gone
    assert test["salary"].value_counts().to_dict() == {"<=50K": 12435, ">50K": 3846}
    assert train["workclass"].isna().sum() == 1836  # '?' read as missing
    with pytest.raises(ValueError, match="split"):
        load_adult(split="valid")


def test_data_loaders_missing_files(tmp_path):
    from fastext.data.adult import load_adult
    from fastext.data.movielens import load_ratings

    with pytest.raises(FileNotFoundError, match="adult"):
        load_adult(tmp_path)
    with pytest.raises(FileNotFoundError, match="ml-latest-small"):
        load_ratings(tmp_path)
    bad = tmp_path / "adult"
    bad.mkdir()
    (bad / "adult.data").write_text("39, State-gov, 77516\n")
    (bad / "adult.test").write_text("|1x3 Cross validator\n")
    with pytest.raises(ValueError, match="fewer than 15 fields"):
        load_adult(bad)


# -- demo and bench ------------------------------------------------------------------------
def test_adult_demo_quick(tmp_path):
    adult_or_skip()
    from fastext.demos.adult import cli_main

    args = types.SimpleNamespace(data=None, epochs=1, quick=True, json=str(tmp_path / "a.json"),
                                 out=str(tmp_path), bench_off=True)
    threads = torch.get_num_threads()
    record = cli_main(args)
    assert torch.get_num_threads() == threads  # the demo's one thread is undone
    saved = json.loads((tmp_path / "a.json").read_text())
    assert saved == record
    assert {"accuracy", "baseline_accuracy", "epoch_seconds", "reloaded_accuracy"} <= set(saved)
    assert 0 <= saved["accuracy"] <= 1 and saved["reloaded_accuracy"] == saved["accuracy"]
    for png in ("adult_lr_find.png", "adult_loss.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_tabular_quick(tmp_path):
    adult_or_skip()
    from bench_helpers import quick_suite_run

    from fastext.bench import SUITES
    from fastext.bench.tabular import available, fastai_available

    assert SUITES["tabular"] == "fastext.bench.tabular" and available(torch.device("cpu"))
    rc, doc = quick_suite_run(tmp_path, "tabular")
    assert rc == 0 and doc["suite"] == "tabular"
    impls = {"fastext"} | ({"fastai"} if fastai_available() else set())
    assert {(r["case"], r["impl"]) for r in doc["rows"]} == {
        (f"adult/1epoch/bs{bs}", i) for bs in (64, 256) for i in impls}
    for row in doc["rows"]:
        assert set(row) == {"case", "impl", "ms", "accuracy", "params"}
        assert math.isfinite(row["ms"]) and row["ms"] > 0 and 0 <= row["accuracy"] <= 1
    # Same model size for every implementation.
    assert len({r["params"] for r in doc["rows"]}) == 1


def test_loss_for_classification_is_cross_entropy():
    train, _ = frames()
    dls = TabularDataLoaders.from_df(train, ["color"], ["weight"], "label", bs=16, device="cpu")
    learn = tabular_learner(dls, layers=[8], quiet=True)
    cat, cont, y = next(iter(dls.valid))
    pred = learn.model.eval()(cat, cont)
    assert learn.loss_func(pred, y) == F.cross_entropy(pred, y)
    assert learn.n_groups == 1


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_learner_on_device(device, precision, tmp_path):
    rng = np.random.default_rng(0)
    n = 1200
    df = pd.DataFrame({"g": rng.choice(list("abcd"), n), "h": rng.integers(0, 30, n),
                       "x": rng.normal(size=n)})
    df["y"] = np.where(2 * df["x"] + df["g"].map({"a": -2, "b": 0, "c": 1, "d": 3}) > 0,
                       "pos", "neg")
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(df, ["g", "h"], ["x"], "y", bs=64, device=device)
    learn = tabular_learner(dls, layers=[32], precision=precision, quiet=True)
    learn.fit_one_cycle(3, 1e-2)
    acc = learn.validate()[1]
    assert acc > 0.85, acc  # the classes split 55/45; the rule is learnable
    labels, probs = learn.predict(df.iloc[:50])
    assert probs.device.type == "cpu" and labels.shape == (50,)
    loaded = load_tabular(learn.export(tmp_path / "m.pth"), device=device)
    assert next(loaded.model.parameters()).device.type == device
    agree = (loaded.predict(df.iloc[:50])[0] == labels).mean()
    assert agree == 1.0 if precision != "fp16" else agree > 0.9  # fp32 masters vs the fp16 model
