"""Done-when: the step-1 pipeline on a messy DataFrame, searched with GridSearchCV.

DataCleaner -> ColumnTransformer(StandardScaler on numbers, OneHotEncoder on categories)
-> FeatureSelector -> LogisticRegression, with StratifiedKFold, searching the selection method
and k; the selected features are named by the pipeline.
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skadapt.preprocessing import DataCleaner, FeatureSelector

NUMERIC = ["income", "age", "member", "noise_a", "noise_b"]


def messy_customers(n=240, seed=0):
    """Who buys: income, membership and city matter; age and the noise columns do not."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 15_000, n).round(2)
    member = rng.random(n) < 0.5
    city = rng.choice(["Paris", "Lyon", "Nice"], n)
    logit = (income - 50_000) / 6_000 + 2.5 * member - 2.0 * (city == "Nice")
    y = np.where(logit + rng.normal(0, 0.5, n) > np.median(logit), "buy", "skip")
    X = pd.DataFrame({
        "income": [f"{v:,.2f}" for v in income],  # "52,345.10": numbers with separators
        "age": [f" {a} " for a in rng.integers(18, 80, n)],
        "member": [rng.choice(["yes", "Y", "true"] if m else ["no", "N", "false"])
                   for m in member],
        "city": [rng.choice([c, c.lower(), c.upper(), f" {c} "]) for c in city],
        "noise_a": rng.normal(size=n),
        "noise_b": [f"{v:.3f}" for v in rng.normal(size=n)],
    })
    X.loc[rng.choice(n, 12, replace=False), "income"] = "n/a"
    X.loc[rng.choice(n, 8, replace=False), "age"] = rng.choice(["?", "-", "NA", ""], 8)
    X.loc[rng.choice(n, 6, replace=False), "age"] = rng.choice(["250", "-3", "999"], 6)
    X.loc[rng.choice(n, 5, replace=False), "member"] = "null"
    return X, y


def step_one_pipeline():
    return Pipeline([
        ("clean", DataCleaner(valid_ranges={"age": (0, 120)})),
        ("encode", ColumnTransformer([
            ("num", StandardScaler(), NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ])),
        ("select", FeatureSelector(random_state=0)),
        ("model", LogisticRegression()),
    ])


@pytest.fixture(scope="module")
def search():
    X, y = messy_customers()
    grid = {"select__method": ["model", "anova", "mutual_info"], "select__k": [2, 4]}
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    return GridSearchCV(step_one_pipeline(), grid, cv=cv, error_score="raise").fit(X, y)


def test_the_search_learns_the_target(search):
    assert search.best_score_ > 0.85  # chance is 0.5
    assert search.best_params_["select__k"] == 4  # income, member and the city matter


def test_the_pipeline_names_the_selected_features(search):
    names = list(search.best_estimator_[:-1].get_feature_names_out())
    assert len(names) == 4
    assert {"num__income", "num__member"} <= set(names)
    assert "cat__city_Nice" in names
    assert not {"num__noise_a", "num__noise_b"} & set(names)


def test_the_cleaner_read_the_messy_columns(search):
    cleaner = search.best_estimator_["clean"]
    assert cleaner.column_kinds_ == {"income": "number", "age": "number", "member": "boolean",
                                     "city": "category", "noise_a": "number",
                                     "noise_b": "number"}
    report = "\n".join(cleaner.report_["message"])
    assert "age: 6 values out of range [0, 120] -> missing" in report
    assert "income: 12 missing markers -> missing" in report


def test_predicting_on_new_messy_rows_keeps_every_row(search):
    X_new = pd.DataFrame({"income": ["80,000", "n/a", "12,000.5"], "age": ["33", "?", "500"],
                          "member": ["Y", "no", "TRUE"], "city": [" NICE", "paris", "Berlin"],
                          "noise_a": [0.1, np.nan, 0.3], "noise_b": ["0.2", "-", "1e-1"]})
    predictions = search.predict(X_new)
    assert len(predictions) == 3 and set(predictions) <= {"buy", "skip"}
