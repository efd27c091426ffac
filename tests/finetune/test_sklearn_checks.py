"""sklearn's own estimator checks on the fine-tuners and the feature extractor.

The checks use many feature counts: the fine-tuners get a network whose first layer is lazy
(``nn.LazyLinear``); the extractor, which has no ``random_state`` (a pretrained network is the
same every fit), a network without random weights before its head, so its embeddings are the same
every fit, as the checks require.
"""

import pytest
import torch
from sklearn.utils.estimator_checks import check_param_validation, parametrize_with_checks
from torch import nn

from skadapt import PretrainedFeatureExtractor, PretrainedFineTuner, PretrainedFineTunerRegressor

# Checks that cannot pass on a skorch NeuralNet, each with the reason.
SKORCH_LIMITS = {
    "check_no_attributes_set_in_init": (
        "skorch's NeuralNet.__init__ sets history_, initialized_ and virtual_params_ itself"
    ),
    "check_do_not_raise_errors_in_init_or_set_params": (
        "skorch's set_params rebuilds callbacks at once, so callbacks=<int> fails there, not in fit"
    ),
    "check_sample_weight_equivalence_on_dense_data": (
        "stochastic gradient training on shuffled minibatches: a sample of weight 2 is its duplicate "
        "only in expectation (the convex head is exact, but these checks train the whole network)"
    ),
}


class LazyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.LazyLinear(16), nn.ReLU())
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        return self.out(self.body(x))


SETTINGS = dict(freeze="none", max_epochs=20, lr=1e-2, random_state=0)


@parametrize_with_checks(
    [PretrainedFineTuner(LazyMLP, **SETTINGS), PretrainedFineTunerRegressor(LazyMLP, **SETTINGS)],
    expected_failed_checks=lambda estimator: SKORCH_LIMITS,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", [PretrainedFineTuner(LazyMLP, **SETTINGS),
                                       PretrainedFineTunerRegressor(LazyMLP, **SETTINGS),
                                       PretrainedFeatureExtractor(LazyMLP)],
                         ids=lambda estimator: type(estimator).__name__)
def test_every_parameter_is_declared_and_validated_when_fit_starts(estimator):
    """sklearn's own check (run by its test suite, not by parametrize_with_checks): every
    parameter has a constraint, and a value of a wrong type or outside its range raises
    InvalidParameterError naming the parameter, before any data is read."""
    check_param_validation(type(estimator).__name__, estimator)


class RowSummary(nn.Module):
    """Embeds a row as the mean and the maximum of its squashed values, whatever its length."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(2, 2)

    def forward(self, x):
        squashed = torch.tanh(x)
        return self.head(torch.stack([squashed.mean(1), squashed.amax(1)], dim=1))


@parametrize_with_checks([PretrainedFeatureExtractor(RowSummary)])
def test_sklearn_transformer_checks_on_the_extractor(estimator, check):
    check(estimator)
