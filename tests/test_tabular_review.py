"""Tabular preprocessing and training, from a review: each test fails on the code before its
fix. References: sklearn's StandardScaler, fastai's documented behaviour (regression targets
shaped as the model's output, CategoryMap's class order, one class per value and type), the
course's metrics written out as formulas."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from sklearn.preprocessing import StandardScaler

from fastext.tasks.tabular import (
    NA,
    Categorify,
    Normalize,
    TabularDataLoaders,
    TabularProcessor,
    load_tabular,
    tabular_learner,
)


# -- 1. a constant float column is constant -------------------------------------------------
@pytest.mark.parametrize("value", [0.1, 1 / 3, 2.675])
@pytest.mark.parametrize("n", [3, 100, 10_000])
def test_constant_float_column_scales_as_standard_scaler(value, n):
    rng = np.random.default_rng(n)
    train = pd.DataFrame({"k": [value] * n, "v": rng.normal(size=n),
                          "tiny": 1e5 + 1e-6 * np.arange(n)})  # varies, if barely: scaled
    valid = pd.DataFrame({"k": [value, 0.2, value + 1.0], "v": [0.0, 1.0, -1.0],
                          "tiny": [1e5, 1e5 + 1e-6, 1e5 - 1e-6]})
    cols = ["k", "v", "tiny"]
    norm = Normalize().fit(train, cols)
    ref = StandardScaler().fit(train[cols])
    np.testing.assert_allclose([norm.stds[c] for c in cols], ref.scale_, rtol=1e-9)
    assert norm.stds["k"] == 1.0
    np.testing.assert_allclose(norm.transform(valid)[cols].to_numpy(),
                               ref.transform(valid[cols]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(norm.transform(train)["k"], 0.0, atol=1e-12)


def test_constant_column_does_not_blow_up_a_model_input():
    df = pd.DataFrame({"a": list("xy") * 40, "k": 0.1, "t": ["p", "q"] * 40})
    proc = TabularProcessor(["a"], ["k"], "t").fit(df)
    cont = proc.transform(pd.DataFrame({"a": ["x"], "k": [0.2]})).cont
    assert cont.item() == pytest.approx(0.1)  # (0.2 - 0.1) / 1, not 7e15


# -- 2. regression targets have the model's output shape ------------------------------------
def exp_rmspe(pred, targ):
    """The course's Rossmann metric, verbatim."""
    pred, targ = torch.exp(pred), torch.exp(targ)
    pct_var = (targ - pred) / targ
    return torch.sqrt((pct_var ** 2).mean())


def regression_frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.choice(list("xyz"), n), "v": rng.normal(size=n)})
    df["ly"] = np.log(1000 + 200 * df.v.clip(-3, 3) + 100 * (df.a == "x"))
    return df


def test_course_metric_sees_matching_shapes_and_reports_the_true_value(tmp_path):
    df = regression_frame()
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(df.iloc[:300], ["a"], ["v"], "ly", valid_df=df.iloc[300:],
                                     bs=32, device="cpu")
    cat, cont, y = next(iter(dls.train))
    learn = tabular_learner(dls, layers=[16], y_range=(0.0, float(df.ly.max()) * 1.2),
                            metrics=[exp_rmspe], quiet=True)
    assert y.shape == (32, 1) == learn.model(cat, cont).shape
    learn.fit_one_cycle(2, 3e-2)
    loss, reported = learn.validate()
    # Reference: the metric on each batch's flat predictions and targets, batch-weighted.
    learn.model.eval()
    total = sq = n = 0.0
    with torch.no_grad():
        for c, x, t in dls.valid:
            out = learn.model(c, x).reshape(-1)
            total += float(exp_rmspe(out, t.reshape(-1))) * len(t)
            sq += float((out - t.reshape(-1)).square().sum())
            n += len(t)
    assert reported == pytest.approx(total / n, rel=1e-5)
    assert loss == pytest.approx(sq / n, rel=1e-5)  # the built-in MSE, per element
    # test_dl with targets, predict and the export still agree, values flat (N,).
    assert learn.validate(dl=dls.test_dl(df.iloc[300:])) == pytest.approx([loss, reported])
    values, tensor = learn.predict(df.iloc[300:])
    assert values.shape == (100,) and tensor.shape == (100,)
    back = load_tabular(learn.export(tmp_path / "reg.pth"))
    torch.testing.assert_close(back.predict(df.iloc[300:])[1], tensor)
    assert isinstance(back.predict(df.iloc[300])[0], float)


def test_l1_loss_trains_without_a_broadcast():
    df = regression_frame(256)
    dls = TabularDataLoaders.from_df(df, ["a"], ["v"], "ly", bs=64, device="cpu")
    learn = tabular_learner(dls, layers=[8], loss_func=F.l1_loss, quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Using a target size ... different to the input size"
        learn.fit_one_cycle(1, 1e-2)
        loss = learn.validate()[0]
    c, x, t = dls.valid.dataset
    with torch.no_grad():
        ref = (learn.model.eval()(c, x) - t).abs().mean()
    assert loss == pytest.approx(float(ref), rel=1e-5)


# -- 3. booleans and integers are different classes -----------------------------------------
def name(v):
    """The class name a value should get: keyed by type, then value."""
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    return v if isinstance(v, str) else str(int(v))


@pytest.mark.parametrize("values", [[1, True, 0, False, "a"], [True, 1, False, 0, "a"],
                                    [np.True_, 1.0, np.False_, 0, "a"]])
def test_booleans_and_numbers_are_distinct_order_free_classes(values):
    df = pd.DataFrame({"c": pd.Series(values * 3, dtype=object)})
    cat = Categorify().fit(df, ["c"])
    assert cat.classes["c"] == [NA, "0", "1", "False", "True", "a"]
    codes = cat.transform(df)["c"].tolist()[:5]
    assert codes == [cat.classes["c"].index(name(v)) for v in values]
    assert cat.transform(pd.DataFrame({"c": [True, False]}))["c"].tolist() == [4, 3]
    # the target path: four classes, each row decoded back to its own value
    y = pd.Series(values[:4] * 5, dtype=object)
    proc = TabularProcessor([], ["x"], "y").fit(pd.DataFrame({"x": range(20), "y": y}))
    assert proc.y_classes == ["0", "1", "False", "True"]
    enc = proc.transform(pd.DataFrame({"x": range(20), "y": y})).y
    assert proc.decode_y(enc).tolist() == [name(v) for v in y]


# -- 4. float32 categories meet their float64 values ----------------------------------------
@pytest.mark.parametrize(("dtype", "odd"), [(np.float32, 2.675), (np.float16, 1.5)])
def test_low_precision_float_categories_match_float64(dtype, odd):
    vals = [0.1, 0.2, odd, 3.0, 0.1]
    low = pd.DataFrame({"c": np.array(vals, dtype=dtype), "y": np.array(vals, dtype=dtype)})
    ref = pd.DataFrame({"c": vals, "y": vals})  # the same numbers read back from a CSV
    proc = TabularProcessor(["c"], [], "y", y_kind="category").fit(low)
    want = TabularProcessor(["c"], [], "y", y_kind="category").fit(ref)
    assert proc.classes["c"] == want.classes["c"] == [NA, "0.1", "0.2", repr(odd), "3"]
    assert proc.y_classes == want.y_classes
    a, b = proc.transform(ref), proc.transform(low)
    assert a.cat.tolist() == b.cat.tolist() == [[1], [2], [3], [4], [1]]
    assert torch.equal(a.y, b.y)


# -- 5. the target as a one-element list -----------------------------------------------------
def test_target_name_as_a_list():
    df = pd.DataFrame({"a": list("xyz") * 10, "v": range(30), "t": ["p", "q"] * 15})
    by_list = TabularDataLoaders.from_df(df, ["a"], ["v"], ["t"], device="cpu")
    by_name = TabularDataLoaders.from_df(df, ["a"], ["v"], "t", device="cpu")
    assert by_list.proc.y_name == "t" and by_list.proc.state_dict() == by_name.proc.state_dict()
    assert all(torch.equal(p, q) for p, q in zip(by_list.train.dataset, by_name.train.dataset,
                                                 strict=True))
    with pytest.raises(ValueError, match="one target column"):
        TabularDataLoaders.from_df(df, ["a"], [], ["t", "v"], device="cpu")
    with pytest.raises(ValueError, match="one target column"):
        TabularProcessor(["a"], ["v"], [])


# -- 7. class order: numbers by value, a category dtype's own order ---------------------------
def test_integer_target_classes_follow_their_values():
    df = pd.DataFrame({"x": [float(i) for i in range(12)], "y": list(range(12))})
    proc = TabularProcessor([], ["x"], "y", y_kind="category").fit(df)
    # fastai's CategoryMap: the sorted values, as strings; then class index == label
    assert proc.y_classes == [str(v) for v in sorted(df["y"].unique())]
    assert proc.transform(df).y.tolist() == df["y"].tolist()
    cat = Categorify().fit(pd.DataFrame({"c": [10, 2, 1.5, -3, 2]}), ["c"])
    assert cat.classes["c"] == [NA, "-3", "1.5", "2", "10"]


def test_category_dtype_keeps_its_order():
    c = pd.Categorical(["lo", "hi", "hi", "lo"], categories=["lo", "mid", "hi"], ordered=True)
    df = pd.DataFrame({"c": c, "y": pd.Categorical(["b", "a", "b", "a"], categories=["b", "a"]),
                       "x": [1.0, 2.0, 3.0, 4.0]})
    proc = TabularProcessor(["c"], ["x"], "y").fit(df)
    assert proc.classes["c"] == [NA, *c.categories]  # all categories, in order (CategoryMap)
    assert proc.y_classes == ["b", "a"]
    t = proc.transform(df)
    assert t.cat[:, 0].tolist() == [1, 3, 3, 1] and t.y.tolist() == [0, 1, 0, 1]


def test_export_in_the_old_class_order_loads_with_its_own_order(tmp_path):
    """A file written before the fix holds classes sorted as text ('10' before '2'), with the
    model's output rows and embedding rows in that order: it predicts as it did."""
    rng = np.random.default_rng(0)
    n = 240
    df = pd.DataFrame({"c": rng.integers(0, 12, n), "x": rng.normal(size=n)})
    df["y"] = (df["c"] + (df["x"] > 0)) % 12
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(df, ["c"], ["x"], "y", bs=32, device="cpu",
                                     y_kind="category")
    learn = tabular_learner(dls, layers=[16], quiet=True)
    learn.fit_one_cycle(1, 1e-2)
    path = learn.export(tmp_path / "new.pth")
    state = torch.load(path, weights_only=True)
    # rewrite it as the old code would have: text order, rows permuted alike
    proc = state["proc"]
    new_y, new_c = proc["y_classes"], proc["categorify"]["classes"]["c"]
    old_y, old_c = sorted(new_y), [NA, *sorted(new_c[1:])]
    assert old_y != new_y and old_c != new_c
    proc["y_classes"], proc["categorify"]["classes"]["c"] = old_y, old_c
    head = f"layers.{len(learn.model.layers) - 1}.weight"  # the output Linear
    perm = torch.tensor([new_y.index(k) for k in old_y])
    for k in (head, head.replace("weight", "bias")):
        state["model"][k] = state["model"][k][perm]
    n_c, width = learn.model.embeds.emb_szs[0]
    table = state["model"]["embeds.weight"][:n_c * width].view(n_c, width)
    table.copy_(table[torch.tensor([new_c.index(k) for k in old_c])].clone())
    torch.save(state, tmp_path / "old.pth")
    old = load_tabular(tmp_path / "old.pth")
    assert old.proc.y_classes == old_y and old.proc.classes["c"] == old_c
    labels, probs = old.predict(df)
    want_labels, want_probs = learn.predict(df)
    assert (labels == want_labels).all()
    torch.testing.assert_close(probs, want_probs[:, perm])  # column j: class old_y[j]
