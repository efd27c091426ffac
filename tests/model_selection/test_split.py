import numpy as np
import pandas as pd
import pytest

from skadapt.model_selection import train_val_test_split


def _labels(n_per_class=(70, 20, 10)):
    return np.repeat(np.arange(len(n_per_class)), n_per_class)


def test_default_is_70_15_15_and_covers_every_sample_once():
    X = np.arange(200).reshape(100, 2)
    y = _labels()
    X_train, X_val, X_test, y_train, y_val, y_test = train_val_test_split(X, y, random_state=0)
    assert (len(X_train), len(X_val), len(X_test)) == (70, 15, 15)
    ids = np.concatenate([X_train[:, 0], X_val[:, 0], X_test[:, 0]]) // 2
    assert sorted(ids) == list(range(100))
    # X and y stay aligned
    np.testing.assert_array_equal(y[X_test[:, 0] // 2], y_test)


def test_stratified_by_default_for_class_labels():
    y = _labels((60, 30, 10))
    _, _, _, y_train, y_val, y_test = train_val_test_split(
        np.zeros((100, 1)), y, val_size=0.2, test_size=0.2, random_state=0
    )
    for part, size in ((y_train, 60), (y_val, 20), (y_test, 20)):
        np.testing.assert_array_equal(np.bincount(part), np.array([60, 30, 10]) * size // 100)


def test_same_seed_same_split_and_a_different_seed_another():
    X, y = np.arange(100), _labels()
    first = train_val_test_split(X, y, random_state=3)[2]
    np.testing.assert_array_equal(first, train_val_test_split(X, y, random_state=3)[2])
    assert not np.array_equal(
        np.sort(first), np.sort(train_val_test_split(X, y, random_state=4)[2])
    )


def test_keeps_the_type_of_lists_and_dataframes():
    texts = [f"text {i}" for i in range(40)]
    parts = train_val_test_split(texts, [i % 2 for i in range(40)], random_state=0)
    assert all(isinstance(part, list) for part in parts)
    frame = pd.DataFrame({"a": range(40), "b": list("xy") * 20}, index=[f"r{i}" for i in range(40)])
    X_train, X_val, X_test, y_train, _, _ = train_val_test_split(frame, frame["b"], random_state=0)
    assert isinstance(X_train, pd.DataFrame) and list(X_train.columns) == ["a", "b"]
    assert (X_train.index == y_train.index).all()  # labels survive, rows stay aligned with y


def test_groups_never_span_two_parts():
    groups = np.repeat(np.arange(20), 5)
    X = np.arange(100)
    X_train, X_val, X_test, *_ = train_val_test_split(X, None, groups=groups, random_state=0)
    part_groups = [set(groups[part]) for part in (X_train, X_val, X_test)]
    assert not (
        part_groups[0] & part_groups[1]
        or part_groups[0] & part_groups[2]
        or part_groups[1] & part_groups[2]
    )
    assert [len(g) for g in part_groups] == [14, 3, 3]  # sizes count groups


def test_groups_by_column_name():
    frame = pd.DataFrame({"patient": np.repeat(list("abcdefghij"), 3), "x": range(30)})
    train, val, test, *_ = train_val_test_split(
        frame, None, groups="patient", val_size=2, test_size=2, random_state=0
    )
    assert set(train.patient).isdisjoint(test.patient) and set(val.patient).isdisjoint(test.patient)
    assert (val.patient.nunique(), test.patient.nunique()) == (2, 2)


def test_ordered_data_is_contiguous_in_time_with_a_gap():
    times = pd.date_range("2024-01-01", periods=100, freq="D").to_numpy()
    shuffled = np.random.default_rng(0).permutation(100)
    X, order = np.arange(100)[shuffled], times[shuffled]
    X_train, X_val, X_test, *_ = train_val_test_split(X, None, order=order, gap=2)
    np.testing.assert_array_equal(X_train, np.arange(66))
    np.testing.assert_array_equal(X_val, np.arange(68, 83))
    np.testing.assert_array_equal(X_test, np.arange(85, 100))


def test_order_true_keeps_rows_as_they_are_and_ties_are_never_cut():
    days = np.repeat(np.arange(10), 10)  # ten samples per day
    X_train, X_val, X_test, *_ = train_val_test_split(
        np.arange(100), None, order=days, test_size=0.25
    )
    assert set(days[X_train]).isdisjoint(days[X_val]) and set(days[X_val]).isdisjoint(days[X_test])
    assert days[X_train].max() < days[X_val].min() <= days[X_val].max() < days[X_test].min()
    X_train, _, X_test, *_ = train_val_test_split(list("abcdefghijklmnopqrst"), None, order=True)
    assert X_train[0] == "a" and X_test[-1] == "t"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_size": 0.5, "test_size": 0.5}, "leaving none to train on"),
        ({"val_size": 1.5}, "val_size must be a fraction"),
        ({"test_size": 0}, "test_size=0 must be between 1 and 39"),
        ({"gap": 3}, "only applies to ordered data"),
        ({"order": True, "stratify": True}, "ordered data is never shuffled"),
        ({"groups": np.arange(40) % 2}, "at least 3 distinct groups"),
        ({"groups": "patient"}, "names a column, but X is a ndarray"),
    ],
)
def test_impossible_requests_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_val_test_split(np.zeros((40, 2)), np.arange(40) % 2, **kwargs)


def test_a_class_too_small_to_stratify_is_named():
    y = np.array([0] * 30 + [1] * 30 + [2] * 2)
    with pytest.raises(ValueError, match=r"at least 3 samples.*2 \(2\).*stratify=False"):
        train_val_test_split(np.zeros((62, 1)), y, stratify=True)
    # without stratification the same data split fine
    assert len(train_val_test_split(np.zeros((62, 1)), y, stratify=False)[0]) == 42


def test_stratify_true_needs_class_labels():
    with pytest.raises(ValueError, match="needs class labels"):
        train_val_test_split(np.zeros((30, 1)), np.linspace(0, 1, 30), stratify=True)
    # a continuous target is simply not stratified under "auto"
    assert len(train_val_test_split(np.zeros((30, 1)), np.linspace(0, 1, 30))[0]) == 20
