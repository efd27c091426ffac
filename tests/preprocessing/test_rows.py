"""clean_rows and RowCleaner: bad rows go, X and y stay aligned, the record says why."""

import numpy as np
import pandas as pd
import pytest

from skadapt.preprocessing import RowCleaner, clean_rows


def test_duplicates_and_missing_targets_are_removed_with_reasons():
    X = pd.DataFrame({"a": [1, 1, 2, 3, 3], "b": ["x", " x", "y", "N/A", "NA"]},
                     index=[5, 6, 7, 8, 9])
    y = pd.Series(["cat", "cat", None, "dog", "dog"], index=[5, 6, 7, 8, 9])
    X_kept, y_kept, removed = clean_rows(X, y)
    assert X_kept.index.tolist() == [5, 8] and y_kept.index.tolist() == [5, 8]
    assert removed.to_dict("list") == {
        "row": [6, 7, 9],
        "reason": ["duplicate of 5", "missing target", "duplicate of 8"],
    }


def test_same_features_with_different_targets_are_not_duplicates():
    X = np.array([[1, 2], [1, 2]])
    X_kept, y_kept, removed = clean_rows(X, np.array([0, 1]))
    assert len(X_kept) == 2 and removed.empty


def test_duplicates_can_be_kept():
    X_kept, _, _ = clean_rows(np.array([[1], [1]]), np.array([0, 0]), drop_duplicates=False)
    assert len(X_kept) == 2


@pytest.mark.parametrize(
    ("valid_target", "kept", "reason"),
    [
        ((0, 10), [1.0, 3.0], "target 50.0 outside [0, 10]"),
        ((None, 10), [1.0, 3.0, -1.0], "target 50.0 outside [-inf, 10]"),
        ([1.0, 3.0, 50.0], [1.0, 50.0, 3.0], "target -1.0 not in valid_target"),
    ],
)
def test_invalid_targets(valid_target, kept, reason):
    X = np.arange(8).reshape(4, 2)
    _, y_kept, removed = clean_rows(X, np.array([1.0, 50.0, 3.0, -1.0]),
                                    valid_target=valid_target)
    assert y_kept.tolist() == kept
    assert reason in removed["reason"].tolist()


def test_inf_and_marker_targets_are_invalid():
    _, y_kept, removed = clean_rows(np.arange(3).reshape(3, 1), [1.0, np.inf, "?"])
    assert list(y_kept) == [1.0]
    assert removed["reason"].tolist() == ["target is inf", "missing target"]


def test_misaligned_y_is_an_error():
    with pytest.raises(ValueError, match="X has 3 rows but y has shape"):
        clean_rows(np.zeros((3, 2)), [1, 2])


def test_row_cleaner_is_a_sampler_for_imbalanced_learn_pipelines():
    # imbalanced-learn's Pipeline runs fit_resample at fit time only and refuses steps that
    # also transform: so a RowCleaner must never transform.
    cleaner = RowCleaner(valid_target=["a", "b"])
    assert not hasattr(cleaner, "transform")
    X = pd.DataFrame({"f": [1, 1, 2, 3]})
    X_kept, y_kept = cleaner.fit_resample(X, ["a", "a", "c", "b"])
    assert X_kept["f"].tolist() == [1, 3] and list(y_kept) == ["a", "b"]
    assert cleaner.removed_rows_["reason"].tolist() == ["duplicate of 0",
                                                        "target 'c' not in valid_target"]
