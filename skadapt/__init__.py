"""skadapt: adapt pretrained deep models to a new domain, the scikit-learn way."""

from skadapt.evaluation import EvaluationReport, evaluate
from skadapt.finetune import (
    PretrainedFeatureExtractor,
    PretrainedFineTuner,
    PretrainedFineTunerRegressor,
)
from skadapt.model_selection import (
    DomainShiftResult,
    LeakageError,
    compare_models,
    domain_shift,
    leakage_report,
    shift_profile,
    train_val_test_split,
)
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
    "DomainShiftResult",
    "EvaluationReport",
    "LeakageError",
    "Differencer",
    "FeatureSelector",
    "LagFeatures",
    "PretrainedFeatureExtractor",
    "PretrainedFineTuner",
    "PretrainedFineTunerRegressor",
    "RowCleaner",
    "clean_rows",
    "compare_models",
    "domain_shift",
    "evaluate",
    "leakage_report",
    "shift_profile",
    "train_val_test_split",
]
__version__ = "0.1.0"
