"""skadapt: adapt pretrained deep models to a new domain, the scikit-learn way."""

from skadapt.evaluation import EvaluationReport, evaluate
from skadapt.finetune import PretrainedFineTuner, PretrainedFineTunerRegressor
from skadapt.model_selection import LeakageError, leakage_report, train_val_test_split
from skadapt.preprocessing import (
    ChannelStandardizer,
    DataCleaner,
    Differencer,
    FeatureSelector,
    LagFeatures,
    RowCleaner,
    clean_rows,
)

__all__ = [
    "ChannelStandardizer",
    "DataCleaner",
    "EvaluationReport",
    "LeakageError",
    "Differencer",
    "FeatureSelector",
    "LagFeatures",
    "PretrainedFineTuner",
    "PretrainedFineTunerRegressor",
    "RowCleaner",
    "clean_rows",
    "evaluate",
    "leakage_report",
    "train_val_test_split",
]
__version__ = "0.1.0"
