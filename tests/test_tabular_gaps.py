"""Tabular gaps from a review: each test fails on the code before its fix.

1. ``y_kind="auto"`` follows fastai v2's rule for ``TabularDataLoaders`` without a
   ``y_block`` (``TabularPandas``: the target is a ``RegressionBlock`` when its column is
   numeric, a ``CategoryBlock`` otherwise): Rossmann's integer ``Sales`` is a regression.
2. The course's Rossmann helpers ``add_datepart`` and ``cont_cat_split``, checked against
   hand-computed values, Python's ``datetime`` and pandas' accessors.
"""

from __future__ import annotations

import datetime
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from fastext.tasks.tabular import (
    TabularDataLoaders,
    TabularProcessor,
    add_datepart,
    auto_y_kind,
    cont_cat_split,
    tabular_learner,
)


def rossmann(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Rossmann-like rows: an integer ``Sales`` target, as the raw CSV has it."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"Store": rng.integers(1, 20, n).astype(str),
                       "DayOfWeek": rng.integers(1, 8, n), "Promo": rng.integers(0, 2, n),
                       "CompetitionDistance": rng.uniform(100, 5000, n)})
    noise = rng.normal(0, 300, n)
    df["Sales"] = (3000 + 2000 * df["Promo"] + 30 * df["DayOfWeek"] + noise).round().astype(int)
    return df


CATS, CONTS = ["Store", "DayOfWeek", "Promo"], ["CompetitionDistance"]


# -- 1. the target kind -------------------------------------------------------------------
def test_integer_sales_target_is_a_regression():
    df = rossmann()
    dls = TabularDataLoaders.from_df(df.iloc[:240], CATS, CONTS, "Sales", valid_df=df.iloc[240:],
                                     bs=32, device="cpu")
    proc = dls.proc
    assert proc.y_kind == "regression" and proc.n_out == 1 and proc.y_classes is None
    # the target travels as its values, (N, 1) float32, as fastai's RegressionBlock
    y = dls.valid.dataset[2]
    assert y.shape == (60, 1) and y.dtype == torch.float32
    np.testing.assert_array_equal(y.reshape(-1).numpy(), df["Sales"].iloc[240:].to_numpy())
    learn = tabular_learner(dls, layers=[8], quiet=True)
    assert learn.model.eval()(*next(iter(dls.valid))[:2]).shape == (60, 1)
    values, _ = learn.predict(df.iloc[:3])
    assert values.dtype == np.float32 and values.shape == (3,)
    # a frame with Sales values never seen in training is no error for a regression
    assert proc.transform(df.assign(Sales=df["Sales"] + 1)).y.shape == (300, 1)


def fastai_y_kind(y: pd.Series) -> str:
    """fastai's expression, on a one-column frame."""
    frame = y.to_frame()
    numeric = len(frame.select_dtypes(include="number").columns) == len(frame.columns)
    return "regression" if numeric else "category"


@pytest.mark.parametrize("y", [
    pd.Series([5, 7, 5], dtype="int64"), pd.Series([5, 7, 5], dtype="int32"),
    pd.Series([5, 7, 5], dtype="uint8"), pd.Series([5, 7, 5], dtype="Int64"),
    pd.Series([0.5, 1.5, 0.5], dtype="float32"), pd.Series([0.5, 1.5, 0.5]),
    pd.Series([0.5, 1.5, 0.5], dtype="Float64"), pd.Series([True, False, True]),
    pd.Series(["<50k", ">=50k", "<50k"]), pd.Series([5, 7, 5], dtype=object),
    pd.Series(pd.Categorical([5, 7, 5])), pd.to_datetime(pd.Series(["2020-01-01"] * 3)),
], ids=lambda y: str(y.dtype))
def test_auto_y_kind_is_fastais_rule(y):
    assert auto_y_kind(y) == fastai_y_kind(y)
    df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": y})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 0/1 hint is tested below
        assert TabularProcessor([], ["x"], "y").fit(df).y_kind == fastai_y_kind(y)


def test_a_duration_target_stays_categorical():
    """pandas 3 counts timedeltas as "number"; fastai's rule meant numbers, and a duration
    cannot be regressed on without a unit: it stays classes, as before."""
    y = pd.to_timedelta(pd.Series([1, 2, 1]), "D")
    assert auto_y_kind(y) == "category"


def test_string_target_is_unchanged():
    """The Adult demo's target: text stays classes, in sorted order."""
    df = pd.DataFrame({"age": [30.0, 40.0, 50.0, 60.0],
                       "salary": [">=50k", "<50k", "<50k", ">=50k"]})
    proc = TabularProcessor([], ["age"], "salary").fit(df)
    assert proc.y_kind == "category" and proc.y_classes == ["<50k", ">=50k"]
    assert proc.transform(df).y.tolist() == [1, 0, 0, 1]


def test_integer_class_labels_need_y_kind_category():
    df = pd.DataFrame({"x": np.arange(12.0), "y": [3, 1, 2, 10] * 3})
    proc = TabularProcessor([], ["x"], "y", y_kind="category").fit(df)
    assert proc.y_classes == ["1", "2", "3", "10"] and proc.n_out == 4
    assert proc.transform(df).y.tolist() == [2, 0, 1, 3] * 3


def test_a_binary_integer_target_under_auto_gets_a_one_line_hint():
    df = pd.DataFrame({"x": np.arange(8.0), "y": [0, 1] * 4})
    with pytest.warns(UserWarning, match="y_kind='category'") as record:
        proc = TabularProcessor([], ["x"], "y").fit(df)
    assert proc.y_kind == "regression" and len(record) == 1
    assert "\n" not in str(record[0].message) and record[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # quiet: explicit kinds, wider integers, floats
        TabularProcessor([], ["x"], "y", y_kind="regression").fit(df)
        TabularProcessor([], ["x"], "y", y_kind="category").fit(df)
        TabularProcessor([], ["x"], "y").fit(df.assign(y=[1, 2, 3, 4, 5] + [1, 2, 3]))
        TabularProcessor([], ["x"], "y").fit(df.assign(y=df["y"].astype(float)))
        TabularProcessor([], CONTS, "Sales").fit(rossmann())


def test_unseen_labels_message_is_short_and_counts_them():
    df = rossmann()
    train, valid = df.iloc[:200], df.iloc[200:]
    proc = TabularProcessor(CATS, CONTS, "Sales", y_kind="category").fit(train)
    unseen = sorted(set(valid["Sales"]) - set(train["Sales"]))  # the reference, by hand
    assert len(unseen) > 10
    with pytest.raises(ValueError) as err:
        proc.transform(valid)
    msg = str(err.value)
    assert len(msg) < 400 and "\n" not in msg
    assert str([str(v) for v in unseen[:10]])[:-1] + ", ...]" in msg  # the first 10, by value
    assert f"({len(unseen)} in all)" in msg
    assert f"({len(proc.y_classes)} in all)" in msg
    assert "y_kind='regression'" in msg  # numbers: the hint that fits
    text = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]})
    with pytest.raises(ValueError, match=r"label\(s\) \['c'\] not seen") as err:
        TabularProcessor([], ["x"], "y").fit(text).transform(text.assign(y=["a", "c"]))
    assert "regression" not in str(err.value)


# -- 2. add_datepart ----------------------------------------------------------------------
FASTAI_COLUMNS = ["Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear", "Is_month_end",
                  "Is_month_start", "Is_quarter_end", "Is_quarter_start", "Is_year_end",
                  "Is_year_start", "Elapsed"]

# date: Year, Month, ISO week, Day, Dayofweek (Mon 0), Dayofyear, month end/start,
# quarter end/start, year end/start, seconds since 1970 -- worked out by hand
HAND = {
    "2015-07-31": [2015, 7, 31, 31, 4, 212, True, False, False, False, False, False,
                   1438300800],
    "2015-12-31": [2015, 12, 53, 31, 3, 365, True, False, True, False, True, False,
                   1451520000],
    "2016-01-01": [2016, 1, 53, 1, 4, 1, False, True, False, True, False, True, 1451606400],
    "2016-02-29": [2016, 2, 9, 29, 0, 60, True, False, False, False, False, False,
                   1456704000],
    "1969-12-31": [1969, 12, 1, 31, 2, 365, True, False, True, False, True, False, -86400],
}


def test_add_datepart_columns_and_hand_computed_values():
    df = pd.DataFrame({"Date": list(HAND), "Sales": range(len(HAND))})
    out = add_datepart(df, "Date")
    assert out is df  # in place, as the course's add_datepart(train, "Date") relies on
    assert list(df.columns) == ["Sales", *FASTAI_COLUMNS]  # "Date" -> no prefix, dropped
    assert df[FASTAI_COLUMNS].values.tolist() == list(HAND.values())
    assert df["Elapsed"].dtype == np.float64  # fastai's: float, NaN for a missing date


def test_add_datepart_matches_pandas_accessors_with_nat_rows():
    dates = pd.Series(pd.date_range("2019-12-20", periods=30, freq="37h"))
    dates[[3, 17]] = pd.NaT
    df = add_datepart(pd.DataFrame({"saledate": dates}), "saledate", drop=False, time=True)
    dt = dates.dt
    want = {"Year": dt.year, "Month": dt.month, "Week": dates.dt.isocalendar().week,
            "Day": dt.day, "Dayofweek": dt.day_of_week, "Dayofyear": dt.day_of_year,
            "Is_month_end": dt.is_month_end, "Is_month_start": dt.is_month_start,
            "Is_quarter_end": dt.is_quarter_end, "Is_quarter_start": dt.is_quarter_start,
            "Is_year_end": dt.is_year_end, "Is_year_start": dt.is_year_start,
            "Hour": dt.hour, "Minute": dt.minute, "Second": dt.second}
    for name, ref in want.items():
        got = df["sale" + name]
        np.testing.assert_array_equal(got.astype("float64"), ref.astype("float64"), err_msg=name)
    seconds = [np.nan if pd.isna(d) else d.to_pydatetime().replace(
        tzinfo=datetime.timezone.utc).timestamp() for d in dates]
    np.testing.assert_array_equal(df["saleElapsed"], seconds)
    nat = df.loc[[3, 17]]
    assert nat["saleYear"].isna().all() and not nat["saleIs_month_end"].any()  # as fastai
    assert df["saledate"].equals(dates)  # drop=False keeps the column
    # fastai's documented check: one row with a missing Elapsed, 13 columns
    doc = add_datepart(pd.DataFrame({"date": ["2019-12-04", None, "2019-11-15", "2019-10-24"]}),
                       "date")
    assert list(doc.columns) == FASTAI_COLUMNS and doc[doc.Elapsed.isna()].shape == (1, 13)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_elapsed_is_seconds_whatever_the_unit(unit):
    """pandas 3 parses strings to microseconds: int64 // 10**9 would be 1000x off."""
    col = pd.Series(pd.to_datetime(["2015-07-31 12:00:00", "1969-12-31 23:59:59"]))
    df = add_datepart(pd.DataFrame({"d": col.astype(f"datetime64[{unit}]")}), "d", prefix="d_")
    assert df["d_Elapsed"].tolist() == [1438344000.0, -1.0]


def test_elapsed_floors_fractions_of_a_second():
    """As fastai's integer division: half a second before 1970 is second -1."""
    col = pd.Series(pd.to_datetime(["1969-12-31 23:59:59.500", "2015-07-31 12:00:00.750"]))
    assert add_datepart(pd.DataFrame({"Date": col}), "Date")["Elapsed"].tolist() == [-1.0,
                                                                         1438344000.0]


def test_time_zone_aware_dates():
    local = pd.Series(pd.to_datetime(["2020-01-01 05:00", "2020-06-30 23:30"])
                      ).dt.tz_localize("US/Eastern")
    df = add_datepart(pd.DataFrame({"t": local}), "t", time=True)
    assert df["tHour"].tolist() == [5, 23] and df["tDay"].tolist() == [1, 30]  # local parts
    assert df["tIs_quarter_end"].tolist() == [False, True]
    assert df["tElapsed"].tolist() == [ts.timestamp() for ts in local]  # UTC seconds


def test_add_datepart_on_a_column_of_mixed_types():
    col = pd.Series(["2015-07-31", datetime.date(2015, 12, 31), None,
                     datetime.datetime(2016, 1, 1), pd.Timestamp("2016-02-29"),
                     np.datetime64("1969-12-31")], dtype=object)
    df = add_datepart(pd.DataFrame({"Date": col}), "Date")
    rows = df[FASTAI_COLUMNS].values.tolist()
    want = list(HAND.values())
    assert [rows[i] for i in (0, 1, 3, 4, 5)] == want
    assert np.isnan(rows[2][0]) and np.isnan(rows[2][-1])


def test_iso_strings_of_varying_precision_and_bad_strings():
    df = add_datepart(pd.DataFrame({"d": ["2020-01-01 05:00", "2020-01-01 05:00:00.5"]}), "d",
                      time=True)
    assert df["dHour"].tolist() == [5, 5] and df["dElapsed"].tolist() == [1577854800.0] * 2
    with pytest.raises(ValueError, match="'d' does not parse as dates"):
        add_datepart(pd.DataFrame({"d": ["2020-01-01", "yesterday"]}), "d")
    with pytest.raises(KeyError, match="no column 'nope'"):
        add_datepart(pd.DataFrame({"d": ["2020-01-01"]}), "nope")


# -- 2. cont_cat_split --------------------------------------------------------------------
def test_cont_cat_split_is_fastais_rule():
    df = pd.DataFrame({"cat1": [1, 2, 3, 4], "cont1": [1.0, 2.0, 3.0, 2.0],
                       "cat2": ["a", "b", "b", "a"], "y1": [1, 0, 1, 0], "y2": [1, 1, 1, 0]})
    assert cont_cat_split(df) == (["cont1"], ["cat1", "cat2", "y1", "y2"])
    assert cont_cat_split(df, dep_var="y1") == (["cont1"], ["cat1", "cat2", "y2"])
    assert cont_cat_split(df, dep_var=["y1", "y2"]) == (["cont1"], ["cat1", "cat2"])
    # 4 distinct values: above a bound of 3, not above a bound of 4
    assert cont_cat_split(df, max_card=3) == (["cat1", "cont1"], ["cat2", "y1", "y2"])
    assert cont_cat_split(df, max_card=4)[0] == ["cont1"]


def test_cont_cat_split_by_dtype():
    n = 30
    df = pd.DataFrame({
        "many_int": np.arange(n), "many_uint8": np.arange(n, dtype=np.uint8),
        "many_nullable": pd.array([*range(n - 1), None], dtype="Int64"),
        "few_int": np.arange(n) % 3, "f32": np.ones(n, np.float32), "flag": np.arange(n) > 5,
        "text": ["a"] * n, "mixed": pd.Series([1, "a", 2.5, None, True] * 6, dtype=object),
        "ints_as_objects": pd.Series(list(range(n)), dtype=object),
        "when": pd.date_range("2020-01-01", periods=n),
        "codes": pd.Categorical(np.arange(n)), "target": np.arange(n, dtype=float)})
    cont, cat = cont_cat_split(df, dep_var="target")
    assert cont == ["many_int", "many_uint8", "many_nullable", "f32"]
    assert cat == ["few_int", "flag", "text", "mixed", "ints_as_objects", "when", "codes"]


def test_rossmann_helpers_feed_an_integer_sales_regression():
    df = rossmann(256)
    df["Date"] = pd.date_range("2015-01-01", periods=len(df), freq="D").astype(str)
    add_datepart(df, "Date")
    cont, cat = cont_cat_split(df, max_card=20, dep_var="Sales")
    assert cont == ["CompetitionDistance", "Week", "Day", "Dayofyear", "Elapsed"]
    assert "Year" in cat and "Sales" not in cat + cont
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(df, cat, cont, "Sales", bs=32, device="cpu")
    learn = tabular_learner(dls, layers=[16], quiet=True)
    assert dls.proc.y_kind == "regression"
    learn.fit_one_cycle(1, 1e-2)
    assert np.isfinite(learn.validate()[0])


def test_the_hint_points_at_the_callers_line():
    df = pd.DataFrame({"a": list("xy") * 8, "x": np.arange(16.0), "y": [0, 1] * 8})
    with pytest.warns(UserWarning, match="y_kind='category'") as record:
        TabularDataLoaders.from_df(df, ["a"], ["x"], "y", bs=4, device="cpu")
    assert record[0].filename == __file__
