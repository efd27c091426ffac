"""Step 2 of the workflow: fine-tune a pretrained network as an sklearn estimator."""

from skadapt.finetune._estimator import PretrainedFineTuner, PretrainedFineTunerRegressor
from skadapt.finetune._extractor import PretrainedFeatureExtractor

__all__ = ["PretrainedFeatureExtractor", "PretrainedFineTuner", "PretrainedFineTunerRegressor"]
