import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import FunctionTransformer

from skadapt.model_selection import LeakageError, leakage_report


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _kinds(report):
    return dict(zip(report["kind"], report["count"]))


def test_clean_parts_give_an_empty_report_with_the_columns(rng):
    train, test = rng.normal(size=(30, 4)), rng.normal(size=(20, 4))
    report = leakage_report(train, test, y=(rng.integers(0, 2, 30), rng.integers(0, 2, 20)))
    assert report.empty and list(report.columns) == ["kind", "detail", "count", "examples"]


def test_duplicate_rows_across_parts_are_found(rng):
    train = rng.normal(size=(30, 4))
    test = np.vstack([rng.normal(size=(8, 4)), train[[3, 7]]])
    report = leakage_report(train, test)
    assert _kinds(report) == {"exact_duplicate": 2}
    assert report.loc[0, "examples"] == ["train[3] = test[8]", "train[7] = test[9]"]


def test_dataframe_rows_compare_without_target_group_and_time_columns():
    train = pd.DataFrame(
        {
            "a": [1.0, 2.0, 3.0],
            "b": list("xyz"),
            "label": [0, 1, 0],
            "user": [1, 2, 3],
            "day": [1, 2, 3],
        }
    )
    # same features as train row 1, but another label, user and day, and columns in another order
    test = pd.DataFrame(
        {"b": ["y", "q"], "a": [2.0, 9.0], "label": [0, 1], "user": [8, 9], "day": [5, 6]}
    )
    assert leakage_report(train, test).empty
    report = leakage_report(train, test, y="label", groups="user", order="day")
    assert _kinds(report) == {"exact_duplicate": 1}


def test_identical_image_files_are_found_by_content(tmp_path, rng):
    image = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))
    for name in ("train_a.png", "test_copy.png"):
        image.save(tmp_path / name)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "train_b.png")
    Image.fromarray(np.ones((8, 8, 3), np.uint8)).save(tmp_path / "test_c.png")
    train = [str(tmp_path / "train_a.png"), tmp_path / "train_b.png"]
    report = leakage_report(train, [tmp_path / "test_c.png", str(tmp_path / "test_copy.png")])
    assert _kinds(report) == {"exact_duplicate": 1}
    assert "files with the same content" in report.loc[0, "detail"]
    assert "test_copy.png" in report.loc[0, "examples"][0]


def test_pil_images_are_compared_by_pixels(rng):
    pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    train = [Image.fromarray(pixels), Image.fromarray(pixels[::-1].copy())]
    test = [Image.fromarray(pixels.copy())]
    assert _kinds(leakage_report(train, test)) == {"exact_duplicate": 1}


def test_texts_exact_and_after_normalization_are_separate_findings():
    train = ["Great phone, works well!", "Battery died after a week.", "Café was fine"]
    test = ["Battery died after a week.", "great  PHONE works well", "cafe was FINE.", "Terrible."]
    report = leakage_report(pd.Series(train), test)
    assert _kinds(report) == {"exact_duplicate": 1, "near_duplicate": 2}
    pd.testing.assert_frame_equal(leakage_report(np.array(train), np.array(test)), report)
    near = report.set_index("kind").loc["near_duplicate", "examples"]
    assert near[0].startswith("train[0] = test[1]")


def test_near_duplicates_by_embedding_with_any_transformer(rng):
    base = rng.normal(size=(40, 20))
    noisy_copies = base[:3] + rng.normal(scale=1e-3, size=(3, 20))
    test = np.vstack([noisy_copies, rng.normal(size=(10, 20)), base[[5]]])
    report = leakage_report(base, test, extractor=FunctionTransformer())
    # the exact copy is reported as exact, not again as near
    assert _kinds(report) == {"exact_duplicate": 1, "near_duplicate": 3}
    pca = PCA(n_components=3)
    leakage_report(base, test, extractor=pca)
    assert not hasattr(pca, "components_")  # the caller's extractor is not fitted in place


def test_near_duplicate_texts_with_a_text_extractor():
    train = ["the pasta was cold and the waiter rude", "loved the dessert"]
    test = ["the pasta was cold and the waiter was rude", "parking is hard"]
    report = leakage_report(train, test, extractor=TfidfVectorizer(), similarity=0.8)
    assert _kinds(report) == {"near_duplicate": 1}
    assert "cosine" in report.loc[0, "examples"][0]


def test_extractor_without_transform_is_a_type_error():
    with pytest.raises(TypeError, match="extractor must have fit_transform and transform"):
        leakage_report(np.zeros((3, 2)), np.ones((3, 2)), extractor=object())


def test_groups_in_both_parts():
    report = leakage_report(
        np.zeros((4, 1)), np.ones((3, 1)), groups=(["ann", "bob", "cy", "cy"], ["cy", "dee", "bob"])
    )
    assert _kinds(report) == {"shared_group": 2}
    assert "2 test samples" in report.loc[0, "detail"]


def test_time_ranges_that_overlap():
    days = pd.date_range("2024-01-01", periods=10).to_numpy()
    assert leakage_report(np.zeros((6, 1)), np.ones((4, 1)), order=(days[:6], days[6:])).empty
    report = leakage_report(
        np.zeros((6, 1)), np.ones((4, 1)), order=(days[2:8], days[[0, 1, 8, 9]])
    )
    assert _kinds(report) == {"time_overlap": 2}
    assert "train spans 2024-01-03 00:00:00 to 2024-01-08 00:00:00" in report.loc[0, "detail"]


def test_a_feature_that_gives_the_label_away(rng):
    n = 200
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {
            "noise": rng.normal(size=n),
            "status": np.where(y == 1, "refund", "ok"),
            "amount": rng.normal(size=n) + y,
        }
    )
    report = leakage_report(frame.iloc[:150], frame.iloc[150:], y=(y[:150], y[150:]))
    assert _kinds(report) == {"predictive_feature": 1}
    assert report.loc[0, "examples"][0].startswith("'status'")
    # with no test labels, cross-validation on train finds it too
    assert _kinds(leakage_report(frame.iloc[:150], frame.iloc[150:], y=(y[:150], None))) == {
        "predictive_feature": 1
    }


def test_a_continuous_target_copied_into_a_column(rng):
    target = rng.normal(size=100)
    frame = pd.DataFrame({"x": rng.normal(size=100), "target_cm": target * 100, "target": target})
    report = leakage_report(frame.iloc[:70], frame.iloc[70:], y="target")
    assert report.loc[0, "examples"][0].startswith("'target_cm' (R²")


def test_raise_on_findings_carries_the_report():
    train = ["a text", "another text"]
    with pytest.raises(LeakageError, match="exact_duplicate") as caught:
        leakage_report(train, ["a text"], raise_on_findings=True)
    assert caught.value.report["count"].tolist() == [1]
    assert isinstance(caught.value, ValueError)
    assert leakage_report(train, ["new text"], raise_on_findings=True).empty


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"y": "label"}, ValueError, "names a column, but train is not a DataFrame"),
        ({"groups": ([1, 2, 3],)}, ValueError, "pair"),
        (
            {"groups": ([1, 2], [1, 2, 3])},
            ValueError,
            "groups for train has 2 values for 3 samples",
        ),
        ({"similarity": 0}, ValueError, "similarity must be in"),
    ],
)
def test_bad_arguments_are_explained(kwargs, error, message):
    with pytest.raises(error, match=message):
        leakage_report(np.zeros((3, 2)), np.ones((3, 2)), **kwargs)


def test_parts_of_different_kinds_are_refused():
    with pytest.raises(TypeError, match="train holds texts but test holds rows"):
        leakage_report(["a", "b"], np.zeros((2, 2)))


def test_a_date_recorded_only_for_one_class_gives_it_away():
    # refunds get a refund date, other rows none: the date column alone names the label
    y = np.array([0, 1] * 30)
    dates = pd.Series(pd.date_range("2024-01-01", periods=60)).where(y == 1)
    frame = pd.DataFrame({"refund_date": dates, "order_id": np.arange(60), "label": y})
    report = leakage_report(frame.iloc[:40], frame.iloc[40:], y="label")
    assert _kinds(report) == {"predictive_feature": 1}
    assert report.loc[0, "examples"][0].startswith("'refund_date'")
