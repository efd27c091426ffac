import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from skadapt.evaluation import ReportComparison, compare, evaluate

CV = StratifiedKFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def reports():
    X, y = make_classification(90, 5, random_state=0)
    return {"logistic": evaluate(LogisticRegression(), X, y, cv=CV),
            "3-nn <fast>": evaluate(KNeighborsClassifier(3), X, y, cv=CV)}


def test_table_holds_mean_and_std_over_folds(reports):
    comparison = compare(reports)
    assert isinstance(comparison, ReportComparison)
    assert comparison.metrics == ["accuracy", "balanced_accuracy", "f1_macro", "roc_auc"]
    table = comparison.to_frame()
    assert list(table.index) == ["logistic", "3-nn <fast>"]
    scores = reports["logistic"].fold_scores["accuracy"]
    assert table.loc["logistic", "accuracy"] == pytest.approx(scores.mean())
    assert table.loc["logistic", "accuracy_std"] == pytest.approx(scores.std(ddof=0))
    assert table.loc["logistic", "n_folds"] == 3 and table["fit_time_s"].gt(0).all()


def test_chart_has_error_bars_and_fold_dots(reports):
    comparison = compare(reports, ["accuracy", "f1_macro"])
    ax = comparison.plot().axes[0]
    bars = [patch for patch in ax.patches]
    assert len(bars) == 2 * 2
    heights = sorted(round(bar.get_height(), 6) for bar in bars)
    expected = comparison.to_frame()[["accuracy", "f1_macro"]].to_numpy().ravel()
    np.testing.assert_allclose(heights, sorted(np.round(expected, 6)))
    dots = [line for line in ax.lines if line.get_marker() == "."]
    assert sum(len(line.get_xdata()) for line in dots) == 2 * 2 * 3  # names x metrics x folds
    from matplotlib.container import ErrorbarContainer

    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(errorbars) == 2 and all(c.has_yerr for c in errorbars)
    spans = [segment[1][1] - segment[0][1] for segment in errorbars[0].lines[2][0].get_segments()]
    logistic = reports["logistic"].fold_scores
    np.testing.assert_allclose(spans, [2 * logistic[m].std(ddof=0) for m in ("accuracy", "f1_macro")])
    assert [text.get_text() for text in ax.get_legend().get_texts()] == list(reports)


def test_page_links_the_reports_and_escapes_names(reports, tmp_path):
    comparison = compare(reports)
    path = comparison.save(tmp_path / "index.html", title="Two models", intro="a < b",
                           links={name: f"{i}/report.html" for i, name in enumerate(reports)})
    page = path.read_text()
    assert "<h1>Two models</h1>" in page and "a &lt; b" in page
    assert "3-nn &lt;fast&gt;" in page and "<fast>" not in page
    assert "href='1/report.html'" in page and "data:image/png;base64," in page
    mean = comparison.to_frame().loc["logistic", "accuracy"]
    assert f"{mean:.3f} ± " in page
    assert comparison.save(tmp_path).name == "comparison.html"


def test_a_searchs_best_settings(reports):
    X, y = make_classification(90, 5, random_state=0)
    search = GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [1, 5, 15, 25]}, cv=3,
                          scoring=["accuracy", "f1_macro"], refit="f1_macro").fit(X, y)
    comparison = compare(search, top=2)
    assert comparison.metrics == ["accuracy", "f1_macro"]
    names = list(comparison.fold_scores)
    best = search.best_params_["n_neighbors"]
    assert len(names) == 2 and names[0] == f"#1: n_neighbors={best}"
    scores = comparison.fold_scores[names[0]]["f1_macro"]
    assert scores.mean() == pytest.approx(search.best_score_)


def test_bad_inputs_say_what_to_pass(reports):
    with pytest.raises(TypeError, match="dict of named EvaluationReport"):
        compare([reports["logistic"]])
    with pytest.raises(TypeError, match="not an EvaluationReport"):
        compare({"x": 1})
    with pytest.raises(ValueError, match="metrics missing from some reports"):
        compare(reports, ["r2"])
    X, y = make_regression(30, 2, random_state=0)
    regression = evaluate(LinearRegression(), X, y, cv=3)
    with pytest.raises(ValueError, match="one task"):
        compare({**reports, "regression": regression})
    assert compare({"linear": regression}).metrics == ["r2", "rmse", "mae"]
