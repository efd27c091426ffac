"""The single-column parsers: what text reads as which value, and what stays unreadable."""

import numpy as np
import pandas as pd
import pytest

from skadapt.preprocessing._parsing import (
    BooleanParser,
    CategoryParser,
    DateParser,
    NumberParser,
    infer_kind,
    mark_missing,
)


def _series(*values):
    return pd.Series(list(values), dtype=object)


def test_missing_markers_in_any_case_and_spacing_become_nan():
    values, n_markers, n_trimmed = mark_missing(
        _series("", "NA", " n/a ", "NULL", "?", "-", "None", "kept", " padded ")
    )
    assert values.isna().tolist() == [True] * 7 + [False, False]
    assert values.iloc[-1] == "padded"
    assert (n_markers, n_trimmed) == (7, 1)


def test_extra_missing_markers_are_added_to_the_built_in_ones():
    values, n_markers, _ = mark_missing(_series("unknown", "N/A", "x"), ["Unknown"])
    assert values.isna().tolist() == [True, True, False]
    assert n_markers == 2


def test_numbers_stored_as_text():
    parsed = NumberParser().transform(_series("1,234.5", "42", "3.1e2", "12%", "-7", "1,234,567"))
    np.testing.assert_allclose(parsed.values, [1234.5, 42, 310, 0.12, -7, 1234567])
    assert parsed.n_unparseable == 0 and parsed.n_rewritten == 6


@pytest.mark.parametrize("text", ["abc", "1,2", "12,34.5", "inf", "1.2.3"])
def test_text_that_is_not_a_number_is_unparseable(text):
    parsed = NumberParser().transform(_series(text))
    assert parsed.values.isna().all() and parsed.n_unparseable == 1


def test_numeric_columns_keep_their_dtype():
    column = pd.Series([1.5, np.nan], dtype="float32")
    assert NumberParser().transform(column).values.dtype == np.float32


def test_booleans_stored_as_text():
    parsed = BooleanParser().transform(_series("yes", "No", "Y", "n", "TRUE", "false", "1", "0"))
    assert parsed.values.tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert BooleanParser().transform(_series("maybe")).n_unparseable == 1


def test_one_date_format_is_found_by_skrub():
    parser = DateParser().fit(_series("2024-01-05", "2024-02-29"))
    assert parser.formats_ == ["%Y-%m-%d"]


def test_mixed_date_formats_in_one_column():
    column = _series("2024-01-05", "05/02/2024", "23/02/2024", "Jan 3, 2024", "garbage")
    parser = DateParser().fit(column)
    parsed = parser.transform(column)
    expected = pd.to_datetime(["2024-01-05", "2024-02-05", "2024-02-23", "2024-01-03", None])
    pd.testing.assert_series_equal(
        parsed.values, pd.Series(expected, dtype="datetime64[ns]"), check_names=False
    )
    assert parsed.n_unparseable == 1
    # "23/02" can only be day-first, so the ambiguous "05/02" is read day-first too
    assert "%d/%m/%Y" in parser.formats_ and "%m/%d/%Y" not in parser.formats_


def test_categories_that_differ_by_case_or_spaces_become_the_most_frequent_spelling():
    column = mark_missing(_series("Paris", " paris", "Paris", "PARIS ", "Lyon", "lyon"))[0]
    parsed = CategoryParser().fit(column).transform(column)
    assert parsed.values.tolist() == ["Paris"] * 4 + ["Lyon"] * 2
    assert parsed.n_rewritten == 3


def test_allowed_categories_give_the_spelling():
    column = _series("red", "RED", "Green")
    parser = CategoryParser(allowed=["Red", "green"]).fit(column)
    assert parser.transform(column).values.tolist() == ["Red", "Red", "green"]


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["1", "0", "1"], "boolean"),
        (["yes", "no", None], "boolean"),
        (["1", "2", "0"], "number"),
        (["1,200", "3.5", "n/a-ish", "4", "5", "6", "7", "8", "9", "10"], "number"),
        (["2024-01-01", "2024-02-01"], "datetime"),
        (["red", "blue", "3"], "category"),
    ],
)
def test_infer_kind(values, kind):
    assert infer_kind(mark_missing(pd.Series(values, dtype=object))[0], 0.9) == kind
