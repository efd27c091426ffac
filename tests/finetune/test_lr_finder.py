"""The learning-rate range test: its schedule, early stop, suggestions, and a caller left untouched."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from skorch.callbacks import Callback
from torch import nn

import skadapt
from skadapt import LRFinderResult, PretrainedFineTuner, PretrainedFineTunerRegressor, lr_find
from skadapt.finetune._lr_finder import suggest
from tests.finetune.conftest import TinyCNN, color_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def _data(n=64):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4)).astype("float32")
    return X, np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")


def _clf(**params):
    return PretrainedFineTuner(_mlp(), **{"freeze": "none", "batch_size": 16, "random_state": 0,
                                          **params})


@pytest.fixture(scope="module")
def result():
    X, y = _data()
    return lr_find(_clf(), X, y)


def test_the_rates_grow_exponentially_from_start_to_end():
    X, y = _data()
    found = lr_find(_clf(), X, y, start_lr=1e-5, end_lr=1e-2, num_iter=20)
    assert len(found.lrs) == 20  # no blow-up below 1e-2: every step ran, cycling over 4 batches
    assert found.lrs[0] == pytest.approx(1e-5) and found.lrs[-1] == pytest.approx(1e-2)
    np.testing.assert_allclose(found.lrs[1:] / found.lrs[:-1], (1e3) ** (1 / 19))
    assert len(found.losses) == len(found.smoothed) == 20


def test_the_smoothed_loss_is_a_bias_corrected_moving_average(result):
    beta, average = 0.95, 0.0
    for i, loss in enumerate(result.losses):
        average = beta * average + (1 - beta) * loss
        assert result.smoothed[i] == pytest.approx(average / (1 - beta ** (i + 1)))
    assert result.smoothed[0] == pytest.approx(result.losses[0])


def test_a_diverging_run_stops_early():
    X, y = _data()
    found = lr_find(_clf(), X, y, end_lr=1e6, num_iter=100)
    assert len(found.lrs) < 100
    assert found.smoothed[-1] > 4 * found.smoothed.min()  # stopped once it blew up
    assert (found.smoothed[:-1] <= 4 * np.minimum.accumulate(found.smoothed)[:-1]).all()


def test_the_suggestion_lies_where_the_loss_still_falls(result):
    # here lr 1e-2 to 1e-1 trains well in a few epochs; 1e-4 barely moves the loss
    assert 1e-4 <= result.suggestion <= 1
    assert result.lrs[0] <= result.suggestion <= result.lrs[-1]
    at = np.searchsorted(result.lrs, result.suggestion)
    assert result.smoothed[at + 5] < result.smoothed[at]  # still descending beyond it
    assert result.method == "valley"


@pytest.mark.parametrize("method", ["steepest", "minimum"])
def test_the_other_suggestions(result, method):
    lr = suggest(result.lrs, result.smoothed, method=method, num_iter=100)
    assert 1e-4 <= lr <= 1
    if method == "minimum":  # a tenth of the rate at the lowest smoothed loss of the window
        window = slice(10, len(result.lrs) - 5)
        assert lr == pytest.approx(result.lrs[window][np.argmin(result.smoothed[window])] / 10)


def test_valley_takes_the_middle_of_the_longest_descent():
    lrs = np.logspace(-6, 0, 40)
    losses = np.r_[np.full(10, 2.0), np.linspace(2.0, 0.5, 20), np.linspace(0.6, 3.0, 10)]
    losses[:10] += np.linspace(0.0, 0.01, 10)  # a slightly falling plateau is not the valley
    # the descent runs from index 9 to 29: the middle of its middle third is 9 + 6 + 3
    lr = suggest(lrs, losses, method="valley", num_iter=0)  # num_iter=0: no noisy start to skip
    assert lr == pytest.approx(lrs[9 + 6 + 3])


def test_a_fitted_estimator_keeps_its_weights_bit_for_bit():
    X, y = _data()
    clf = _clf(max_epochs=2).fit(X, y)
    before = {key: value.clone() for key, value in clf.module_.state_dict().items()}
    history, lr = len(clf.history_), clf.lr
    lr_find(clf, X, y, num_iter=20)
    after = clf.module_.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert (len(clf.history_), clf.lr) == (history, lr)


def test_an_unfitted_estimator_stays_unfitted():
    X, y = _data()
    clf = _clf()
    params = clf.get_params()
    lr_find(clf, X, y, num_iter=10)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    assert not hasattr(clf, "classes_") and clf.get_params().keys() == params.keys()


def test_random_state_makes_the_curve_reproducible():
    X, y = _data()
    curves = []
    for global_seed in (1, 2):  # the caller's random state does not matter: random_state does
        clf = _clf()
        torch.manual_seed(global_seed)
        curves.append(lr_find(clf, X, y, num_iter=20).losses)
    np.testing.assert_array_equal(*curves)


class _RecordRates(Callback):
    """Each training step's learning rate per parameter group."""

    steps: list = []  # a class attribute: shared with the deep copy that lr_find's clone makes

    def on_grad_computed(self, net, named_parameters, **kwargs):
        self.steps.append({group["name"]: group["lr"] for group in net.optimizer_.param_groups})


def test_a_frozen_backbone_works(tiny_checkpoint):
    X, y = color_task(n=32)
    clf = PretrainedFineTuner(TinyCNN, tiny_checkpoint, freeze="backbone", batch_size=16,
                              random_state=0)
    found = lr_find(clf, X, y, num_iter=12)
    assert len(found.lrs) >= 6 and np.isfinite(found.losses).all()
    assert 1e-7 <= found.suggestion <= 10


def test_each_layer_group_keeps_its_discriminative_ratio(tiny_checkpoint):
    X, y = color_task(n=32)
    _RecordRates.steps.clear()
    clf = PretrainedFineTuner(TinyCNN, tiny_checkpoint, freeze=1, backbone_lr_mult=0.1,
                              batch_size=16, random_state=0, callbacks=[_RecordRates()])
    found = lr_find(clf, X, y, start_lr=1e-5, end_lr=1e-3, num_iter=6)
    steps = _RecordRates.steps
    assert [set(step) for step in steps] == [{"head", "stage3"}] * 6  # what epoch 0 trains
    np.testing.assert_allclose([step["head"] for step in steps], found.lrs)
    np.testing.assert_allclose([step["stage3"] for step in steps], 0.1 * found.lrs)


def test_a_regressor_and_a_dataframe():
    X, _ = _data()
    y = X @ np.array([1.0, -2.0, 0.5, 0.0])
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    reg = PretrainedFineTunerRegressor(net, freeze="none", batch_size=16, random_state=0)
    found = lr_find(reg, pd.DataFrame(X), y, end_lr=0.1, num_iter=30)
    assert len(found.lrs) == 30 and found.suggestion > 0


def test_to_frame_has_one_row_per_step(result):
    frame = result.to_frame()
    assert list(frame.columns) == ["lr", "loss", "smoothed_loss"]
    assert len(frame) == len(result.lrs)
    np.testing.assert_array_equal(frame["smoothed_loss"], result.smoothed)


def test_plot_draws_the_curve_on_a_log_axis_with_the_suggestion(result):
    from matplotlib.axes import Axes

    ax = result.plot()
    assert isinstance(ax, Axes) and ax.get_xscale() == "log"
    assert any("suggestion (valley)" in line.get_label() for line in ax.get_lines())
    low, high = ax.get_ylim()
    assert low <= result.smoothed.min() and high >= result.smoothed[0]


def test_the_result_is_frozen_and_public(result):
    assert isinstance(result, LRFinderResult) and skadapt.lr_find is lr_find
    with pytest.raises(AttributeError):
        result.suggestion = 1.0
    with pytest.raises(ValueError):
        result.lrs[0] = 1.0
    assert "valley" in repr(result)


@pytest.mark.parametrize("kwargs, message", [
    ({"start_lr": 0}, "start_lr=0: pass a positive learning rate"),
    ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr=1.0 must be below end_lr=0.1"),
    ({"end_lr": -1.0}, "end_lr=-1.0: pass a positive"),
    ({"num_iter": 4}, "num_iter=4: pass an int >= 5"),
    ({"suggestion": "best"}, "suggestion='best': pass one of"),
    ({"smooth": 0}, "smooth=0"),
    ({"diverge": 1}, "diverge=1"),
])
def test_bad_parameters_name_themselves(kwargs, message):
    X, y = _data(8)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        lr_find(_clf(), X, y, **kwargs)


def test_a_curve_that_blows_up_at_once_says_to_lower_start_lr():
    X, y = _data()
    with pytest.raises(ValueError, match=r"blew up after [1-4] step.*lower start_lr"):
        lr_find(_clf(), X, y, start_lr=1e4, end_lr=1e6)


def test_a_network_with_no_finite_loss_is_refused():
    X, y = _data()
    net = _mlp()
    with torch.no_grad():
        net[0].weight.fill_(float("inf"))  # broken "pretrained" weights: NaN before any update
    with pytest.raises(ValueError, match="not finite at the first step, before any update"):
        lr_find(PretrainedFineTuner(net, freeze="none"), X, y)


def test_a_pipeline_is_refused_with_advice():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _data(8)
    with pytest.raises(TypeError, match="pass its last step"):
        lr_find(make_pipeline(StandardScaler(), _clf()), X, y)
