"""sklearn's common estimator checks over every preprocessing transformer."""

from sklearn.ensemble import RandomForestClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from skadapt.preprocessing import (
    ChannelStandardizer,
    DataCleaner,
    Differencer,
    FeatureSelector,
    LagFeatures,
)

ESTIMATORS = [
    DataCleaner(),
    DataCleaner(outliers="iqr", add_indicator=True, drop_duplicate_columns=True),
    FeatureSelector(method="anova", k=2),
    FeatureSelector(method="collinearity"),
    FeatureSelector(method="model", estimator=RandomForestClassifier(n_estimators=5,
                                                                     random_state=0)),
    ChannelStandardizer(),
    Differencer(),
    LagFeatures(lags=(1, 2), windows=(3,)),
]

# Outputs at row t depend on the rows before it, by design: computing on a subset of rows, or
# on shuffled rows, cannot give the same values as on the whole ordered series.
_ORDERED = {
    "check_methods_subset_invariance": "row t uses rows before it: subsets change the history",
    "check_methods_sample_order_invariance": "row t uses rows before it: order is the point",
}


def expected_failed_checks(estimator):
    if isinstance(estimator, Differencer | LagFeatures):
        return _ORDERED
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
