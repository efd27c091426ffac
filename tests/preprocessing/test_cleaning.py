"""DataCleaner: formats, wrong values, imputation learned in fit, dropped columns, the record."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from skadapt.preprocessing import DataCleaner


def _messy():
    return pd.DataFrame(
        {
            "income": ["1,234.5", " 42 ", "3.1e2", "n/a", "1,000"],
            "rate": ["12%", "50%", "?", "7.5%", "100%"],
            "member": ["yes", "No", "Y", "n", "-"],
            "city": ["Paris", " paris", "PARIS ", "Lyon", "lyon"],
            "joined": ["2024-01-05", "05/02/2024", "23/02/2024", "Jan 3, 2024", ""],
            "age": ["34", "41", "250", "-3", "29"],
        },
        index=[10, 11, 12, 13, 14],
    )


def _messages(cleaner):
    return "\n".join(cleaner.report_["message"])


def test_formats_become_proper_dtypes():
    out = DataCleaner().fit_transform(_messy())
    np.testing.assert_allclose(out["income"], [1234.5, 42, 310, 655, 1000])  # n/a -> median
    np.testing.assert_allclose(out["rate"], [0.12, 0.5, 0.31, 0.075, 1.0])
    assert out["member"].dtype == bool and out["member"].tolist() == [True, False, True, False,
                                                                      False]
    assert out["city"].tolist() == ["Paris", "Paris", "Paris", "Lyon", "Lyon"]
    assert out["joined"].dtype == "datetime64[ns]"
    assert out["joined"].iloc[2] == pd.Timestamp("2024-02-23")
    assert out.index.tolist() == [10, 11, 12, 13, 14]


def test_out_of_range_values_become_missing_then_the_median_of_valid_values():
    cleaner = DataCleaner(valid_ranges={"age": (0, 120)}).fit(_messy())
    out = cleaner.transform(_messy())
    assert out["age"].tolist() == [34, 41, 34, 34, 29]  # median of 34, 41, 29
    messages = _messages(cleaner)
    assert "age: 2 values out of range [0, 120] -> missing" in messages
    assert "age: 2 missing values (2 out of range) -> median 34" in messages


def test_clipping_instead_of_missing():
    out = DataCleaner(valid_ranges={"age": (0, 120)}, on_invalid="clip").fit_transform(_messy())
    assert out["age"].tolist() == [34, 41, 120, 0, 29]


def test_open_range_and_date_range():
    X = pd.DataFrame({"x": [-5.0, 1.0, 1e9], "d": ["2019-05-01", "2021-01-01", "2022-03-04"]})
    cleaner = DataCleaner(valid_ranges={"x": (0, None), "d": ("2020-01-01", None)},
                          imputation=None)
    out = cleaner.fit_transform(X)
    assert out["x"].isna().tolist() == [True, False, False]
    assert out["d"].isna().tolist() == [True, False, False]


def test_allowed_categories_reject_others_and_use_the_given_spelling():
    X = pd.DataFrame({"color": ["red", "RED", "Green", "blue", "red"]})
    cleaner = DataCleaner(allowed_categories={"color": ["Red", "Green"]}).fit(X)
    assert cleaner.transform(X)["color"].tolist() == ["Red", "Red", "Green", "Red", "Red"]
    assert "color: 1 value not in allowed_categories -> missing" in _messages(cleaner)


@pytest.mark.parametrize("method", ["iqr", "zscore"])
def test_outlier_bounds_are_learned_in_fit_and_applied_in_transform(method):
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": np.append(rng.normal(10, 1, 200), 60.0)})
    cleaner = DataCleaner(outliers=method, imputation=None).fit(train)
    assert np.isnan(cleaner.transform(train)["x"].iloc[-1])
    # the bounds are the training data's: 30 is an outlier there, though not among these rows
    test = pd.DataFrame({"x": [10.0, 30.0, 30.0, 30.0]})
    assert cleaner.transform(test)["x"].isna().tolist() == [False, True, True, True]
    assert "x: 1 outlier outside [" in _messages(cleaner)


def test_imputation_values_come_from_fit_not_from_the_data_transformed():
    cleaner = DataCleaner().fit(pd.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "a", "b"]}))
    out = cleaner.transform(pd.DataFrame({"x": [np.nan, 100.0, 100.0], "c": ["?", "b", "b"]}))
    assert out["x"].tolist() == [2.0, 100.0, 100.0]
    assert out["c"].tolist() == ["a", "b", "b"]


def test_per_column_strategy_constant_and_indicator():
    X = pd.DataFrame({"x": [1.0, np.nan, 5.0, 6.0], "y": [1.0, np.nan, 3.0, 3.0],
                      "c": ["a", None, "b", "b"]})
    cleaner = DataCleaner(
        imputation={"x": "mean", "y": "constant", "c": None},
        fill_value={"y": -1},
        add_indicator=["x"],
    ).fit(X)
    out = cleaner.transform(X)
    assert out["x"].tolist() == [1.0, 4.0, 5.0, 6.0]
    assert out["y"].tolist() == [1.0, -1.0, 3.0, 3.0]
    assert out["c"].isna().tolist() == [False, True, False, False]
    assert out["missingindicator_x"].tolist() == [False, True, False, False]
    assert list(cleaner.get_feature_names_out()) == ["x", "y", "c", "missingindicator_x"]


def test_indicator_flags_wrong_values_too():
    X = pd.DataFrame({"age": ["30", "n/a", "300"]})
    cleaner = DataCleaner(valid_ranges={"age": (0, 120)}, add_indicator=True).fit(X)
    assert cleaner.transform(X)["missingindicator_age"].tolist() == [False, True, True]


def test_constant_and_duplicate_columns_are_dropped_when_asked():
    X = pd.DataFrame({"a": [1, 2, 3], "same": [7, 7, 7], "a_copy": ["1", "2", "3"],
                      "empty": ["n/a", "?", ""]})
    cleaner = DataCleaner(drop_constant=True, drop_duplicate_columns=True).fit(X)
    assert list(cleaner.transform(X).columns) == ["a"]
    assert cleaner.dropped_columns_ == {"same": "constant: 7", "a_copy": "duplicate of 'a'",
                                        "empty": "no value at all"}
    assert "a_copy: dropped (duplicate of 'a')" in _messages(cleaner)
    assert list(DataCleaner().fit_transform(X[["a", "same"]]).columns) == ["a", "same"]


def test_a_column_with_no_value_is_an_error_unless_dropping():
    with pytest.raises(ValueError, match="'empty' has no value left.*drop_constant=True"):
        DataCleaner().fit(pd.DataFrame({"a": [1, 2], "empty": ["n/a", "?"]}))


def test_a_few_typos_do_not_turn_numbers_into_categories():
    X = pd.DataFrame({"income": [str(v) for v in range(20)] + ["12O"]})
    cleaner = DataCleaner().fit(X)
    assert cleaner.column_kinds_ == {"income": "number"}
    assert "income: 1 value not readable as number (e.g. '12O') -> missing" in _messages(cleaner)


def test_column_types_override_inference():
    X = pd.DataFrame({"zip": ["02134", "10001", "02134"]})
    out = DataCleaner(column_types={"zip": "category"}).fit_transform(X)
    assert out["zip"].tolist() == ["02134", "10001", "02134"]


def test_numpy_in_numpy_out_with_positional_names():
    X = np.array([[1.0, np.nan], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    cleaner = DataCleaner(valid_ranges={"x0": (0, 4)})
    out = cleaner.fit_transform(X)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, [[1, 5], [3, 4], [2, 6]])
    assert list(cleaner.get_feature_names_out()) == ["x0", "x1"]


def test_set_output_pandas_on_numpy_input():
    out = DataCleaner().set_output(transform="pandas").fit_transform(np.array([[1.0], [np.nan]]))
    assert list(out.columns) == ["x0"] and out["x0"].tolist() == [1.0, 1.0]


def test_fit_resample_drops_rows_and_keeps_y_aligned_but_transform_keeps_every_row():
    X = pd.DataFrame({"a": ["1", "1 ", "2", "3"], "b": ["x", "x", "y", "z"]}, index=list("pqrs"))
    y = pd.Series(["cat", "cat", "n/a", "dog"], index=list("pqrs"))
    cleaner = DataCleaner()
    X_clean, y_kept = cleaner.fit_resample(X, y)
    assert X_clean.index.tolist() == ["p", "s"] and y_kept.index.tolist() == ["p", "s"]
    assert cleaner.removed_rows_.to_dict("list") == {
        "row": ["q", "r"], "reason": ["duplicate of 'p'", "missing target"]
    }
    assert "rows: 2 removed (1 duplicate, 1 missing target)" in _messages(cleaner)
    assert len(cleaner.transform(X)) == 4
    cleaner.fit(X)
    assert not hasattr(cleaner, "removed_rows_")  # a record from fit_resample would be stale


def test_fit_resample_valid_target():
    X = np.arange(8).reshape(4, 2).astype(float)
    X_clean, y_kept = DataCleaner(valid_target=(0, 10)).fit_resample(X, np.array([1, 50, 3, -1]))
    assert X_clean.tolist() == [[0, 1], [4, 5]] and y_kept.tolist() == [1, 3]


def test_clone_and_pickle_keep_behaviour():
    cleaner = DataCleaner(valid_ranges={"age": (0, 120)}).fit(_messy())
    restored = pickle.loads(pickle.dumps(cleaner))
    pd.testing.assert_frame_equal(restored.transform(_messy()), cleaner.transform(_messy()))
    assert clone(cleaner).get_params() == cleaner.get_params()


# -- errors that name the column and the fix ----------------------------------------------------


def test_unknown_column_in_a_parameter_suggests_the_close_name():
    with pytest.raises(ValueError, match=r"valid_ranges names column\(s\) 'agee' \(did you mean "
                                         r"'age'\?\)"):
        DataCleaner(valid_ranges={"agee": (0, 120)}).fit(_messy())


def test_declared_column_with_no_parseable_value():
    X = pd.DataFrame({"age": ["old", "young", "n/a"]})
    with pytest.raises(ValueError, match="'age' must be read as number.*none of its values"):
        DataCleaner(valid_ranges={"age": (0, 120)}).fit(X)


def test_inf_is_an_error_naming_the_column():
    with pytest.raises(ValueError, match="'x' contains inf.*replace"):
        DataCleaner().fit(pd.DataFrame({"x": [1.0, np.inf]}))


def test_transform_with_missing_or_extra_columns():
    cleaner = DataCleaner().fit(_messy())
    with pytest.raises(ValueError, match="(?s)seen at fit time, yet now missing.*- age.*"
                                         "feature_names_in_"):
        cleaner.transform(_messy().drop(columns="age"))
    with pytest.raises(ValueError, match="(?s)unseen at fit time.*- extra"):
        cleaner.transform(_messy().assign(extra=1))


def test_a_column_of_another_dtype_at_transform_names_the_column():
    cleaner = DataCleaner().fit(pd.DataFrame({"when": ["2024-01-01", "2024-02-01"]}))
    with pytest.raises(TypeError, match="'when' was read as datetime in fit, but now has dtype"):
        cleaner.transform(pd.DataFrame({"when": [3.5, 4.0]}))


def test_values_of_a_wrong_type_name_the_column():
    X = pd.DataFrame({"tags": [["a"], ["b"]]})
    with pytest.raises(TypeError, match="'tags' holds a value of type list"):
        DataCleaner().fit(X)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"valid_ranges": {"age": ("a", 3)}}, TypeError, "bound 'a' is not a number"),
        ({"valid_ranges": {"age": 120}}, TypeError, r"must be a \(low, high\) pair"),
        ({"valid_ranges": {"age": (120, 0)}}, ValueError, "low > high"),
        ({"valid_ranges": {"city": (0, 1)}, "column_types": {"city": "category"}}, ValueError,
         "use allowed_categories"),
        ({"imputation": {"city": "median"}}, ValueError,
         "'median' does not apply to column 'city', read as category"),
        ({"column_types": {"age": "integer"}}, ValueError, "use one of"),
        ({"on_invalid": "drop"}, ValueError, "on_invalid"),
    ],
)
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        DataCleaner(**params).fit(_messy())
