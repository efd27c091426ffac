"""sklearn's own estimator checks on the fine-tuners, with a tiny user network of lazy layers.

A lazy first layer (``nn.LazyLinear``) lets one network fit the many feature counts the checks use.
"""

from sklearn.utils.estimator_checks import parametrize_with_checks
from torch import nn

from skadapt import PretrainedFineTuner, PretrainedFineTunerRegressor

# Checks that cannot pass on a skorch NeuralNet, each with the reason.
SKORCH_LIMITS = {
    "check_no_attributes_set_in_init": (
        "skorch's NeuralNet.__init__ sets history_, initialized_ and virtual_params_ itself"
    ),
    "check_do_not_raise_errors_in_init_or_set_params": (
        "skorch's set_params rebuilds callbacks at once, so callbacks=<int> fails there, not in fit"
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
