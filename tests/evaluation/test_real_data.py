"""evaluate() on real review sentences from ../shared: a text classifier a person can read about."""

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from skadapt.evaluation import evaluate

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SENTENCES = SHARED / "data" / "sentiment_labelled_sentences"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SENTENCES.is_dir(), reason=f"real data not found at {SENTENCES} (../shared is absent)"
    ),
]


def test_sentiment_of_real_reviews(tmp_path):
    reviews = pd.read_csv(
        SENTENCES / "yelp_labelled.txt",
        sep="\t",
        header=None,
        names=["text", "label"],
        quoting=csv.QUOTE_NONE,
    )
    labels = reviews["label"].map({0: "negative", 1: "positive"})
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression())
    report = evaluate(model, reviews["text"].tolist(), labels, cv=5)
    summary = report.to_frame()
    assert 0.7 < summary.loc["accuracy", "mean"] < 1 and summary.loc["roc_auc", "mean"] > 0.8
    assert report.confusion_matrix.to_numpy().sum() == 1000
    assert list(report.per_class.index[:2]) == ["negative", "positive"]
    numbers = json.loads(report.save(tmp_path).with_name("report.json").read_text())
    assert numbers["per_class"]["positive"]["support"] == 500
