"""skadapt: adapt pretrained deep models to a new domain, the scikit-learn way."""

from skadapt.finetune import PretrainedFineTuner, PretrainedFineTunerRegressor
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
    "Differencer",
    "FeatureSelector",
    "LagFeatures",
    "PretrainedFineTuner",
    "PretrainedFineTunerRegressor",
    "RowCleaner",
    "clean_rows",
]
__version__ = "0.1.0"
