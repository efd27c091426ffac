"""Step 2 of the workflow: fine-tune a pretrained network as an sklearn estimator."""

from skadapt.finetune._accelerate import AcceleratedFineTuner, AcceleratedFineTunerRegressor
from skadapt.finetune._classifier import PretrainedFineTuner
from skadapt.finetune._extractor import PretrainedFeatureExtractor
from skadapt.finetune._lr_finder import LRFinderResult, lr_find
from skadapt.finetune._regressor import PretrainedFineTunerRegressor

__all__ = ["AcceleratedFineTuner", "AcceleratedFineTunerRegressor", "LRFinderResult",
           "PretrainedFeatureExtractor", "PretrainedFineTuner",
           "PretrainedFineTunerRegressor", "lr_find"]
