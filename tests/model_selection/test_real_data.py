"""Splits and leakage checks on real data from ../shared: review sentences and photo files."""

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skadapt.model_selection import leakage_report, train_val_test_split

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SENTENCES = SHARED / "data" / "sentiment_labelled_sentences"
HYMENOPTERA = SHARED / "data" / "hymenoptera_data"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SENTENCES.is_dir() or not HYMENOPTERA.is_dir(),
        reason=f"real data not found under {SHARED} (../shared is absent)",
    ),
]


def _amazon_reviews() -> pd.DataFrame:
    return pd.read_csv(
        SENTENCES / "amazon_cells_labelled.txt",
        sep="\t",
        header=None,
        names=["text", "label"],
        quoting=csv.QUOTE_NONE,
    )


def test_a_random_split_of_real_reviews_leaks_their_repeated_sentences():
    reviews = _amazon_reviews()
    texts, labels = reviews["text"].tolist(), reviews["label"].to_numpy()
    train, _, test, *_ = train_val_test_split(texts, labels, random_state=0)
    report = leakage_report(train, test).set_index("kind")
    # the data repeat some sentences ("Great phone!"): count the copies that straddle the split
    expected = sum(text in set(train) for text in test)
    assert expected > 0 and report.loc["exact_duplicate", "count"] == expected


def test_grouping_copies_together_removes_the_leak():
    reviews = _amazon_reviews()
    normalized = reviews["text"].str.lower().str.replace(r"[^\w\s]", " ", regex=True).str.split()
    copies = pd.factorize(normalized.str.join(" "))[0]  # one group per sentence and its near copies
    train, val, test, *_ = train_val_test_split(
        reviews["text"].tolist(), reviews["label"], groups=copies, random_state=0
    )
    assert len(train) + len(val) + len(test) == len(reviews)
    assert leakage_report(train, test).empty and leakage_report(train, val).empty


def test_real_photos_are_compared_by_content():
    train = sorted(str(path) for path in (HYMENOPTERA / "train").rglob("*.jpg"))
    val = sorted(str(path) for path in (HYMENOPTERA / "val").rglob("*.jpg"))
    assert leakage_report(train, val).empty  # the tutorial's parts share no file
    smuggled = [*val[:20], train[7]]
    report = leakage_report(train, smuggled)
    assert report["count"].tolist() == [1] and Path(train[7]).name in report.loc[0, "examples"][0]
    assert np.all(report["kind"] == "exact_duplicate")
