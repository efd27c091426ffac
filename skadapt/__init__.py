"""skadapt: adapt pretrained deep models to a new domain, the scikit-learn way."""

from skadapt.finetune import PretrainedFineTuner, PretrainedFineTunerRegressor

__all__ = ["PretrainedFineTuner", "PretrainedFineTunerRegressor"]
__version__ = "0.1.0"
