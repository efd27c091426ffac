"""Step 2 of the workflow: fine-tune a pretrained network as an sklearn estimator."""

from skadapt.finetune._estimator import PretrainedFineTuner, PretrainedFineTunerRegressor

__all__ = ["PretrainedFineTuner", "PretrainedFineTunerRegressor"]
