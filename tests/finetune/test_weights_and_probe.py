"""The convex linear probe, sample and class weights, and frozen parts in inference mode.

- ``head_solver``: with a frozen backbone and cached features the head is solved exactly, as
  sklearn's ``LogisticRegression`` / ``Ridge`` on the backbone's features;
- ``fit(X, y, sample_weight=...)`` and ``class_weight``: weights rescaled to average 1, a weighted
  loss on the gradient path, carried through pipelines, cross-validation, calibration and the
  internal validation split;
- frozen blocks run in inference mode while the rest of the network trains (dropout, stochastic
  depth, BatchNorm statistics), which is what makes cached and uncached fits agree.
"""

import copy
import warnings
from collections import OrderedDict

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torchvision.ops import StochasticDepth

from skadapt import PretrainedFineTuner, PretrainedFineTunerRegressor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRADIENT = dict(max_epochs=4, batch_size=16, lr=1e-2, random_state=0)


# --------------------------------------------------------------------------- helpers
def _backbone(n_out=3):
    """A tiny 'pretrained' network: a frozen 6 -> 16 body and a linear head to replace."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, n_out))


def _features(module, X):
    """The head's input, by hand: the layers before the last Linear of a copy, in eval mode."""
    body = nn.Sequential(*copy.deepcopy(module)[:-1]).eval()
    with torch.no_grad():
        return body(torch.from_numpy(np.asarray(X, dtype=np.float32))).numpy()


def _task(n=150, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    codes = (X[:, 0] + X[:, 1] > 0).astype(int)
    if n_classes == 3:
        codes[X[:, 2] > 0.8] = 2
    return X, np.array(["ant", "bee", "cat"])[codes]


def _imbalanced(n, rare_fraction, seed):
    """Overlapping Gaussians; the rare class is shifted along two features."""
    rng = np.random.default_rng(seed)
    rare = rng.random(n) < rare_fraction
    X = rng.normal(size=(n, 6)).astype(np.float32)
    X[rare, :2] += 1.0
    return X, np.where(rare, "rare", "common")


def _mean_one(weights):
    """The rescaling the estimator applies: only the ratios of the weights matter."""
    weights = np.asarray(weights, dtype=np.float64)
    return weights * len(weights) / weights.sum()


# --------------------------------------------------------------------------- convex probe
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("head_C", [1.0, 0.1])
def test_convex_head_is_logistic_regression_on_the_backbone_features(n_classes, head_C):
    X, y = _task(n_classes=n_classes)
    module = _backbone()
    clf = PretrainedFineTuner(module, head_C=head_C, random_state=0).fit(X, y)
    assert clf.training_path_ == "cached backbone features"
    assert clf.head_solver_ == "convex"
    assert clf.head_solution_["converged"] and clf.head_solution_["n_iter"] >= 1
    assert len(clf.history_) == 1

    features = _features(module, X)
    reference = LogisticRegression(C=head_C, max_iter=1000).fit(features, y)
    assert_array_equal(clf.classes_, reference.classes_)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), n_classes)
    assert_allclose(proba, reference.predict_proba(features), atol=1e-5)
    # the solution lives in the network's own head: the full network predicts with it
    with torch.no_grad():
        logits = clf.module_.eval()(torch.from_numpy(X))
    assert_allclose(torch.softmax(logits, dim=1).numpy(), proba, atol=1e-5)


def test_gradient_head_solver_trains_epochs_on_the_cached_features():
    X, y = _task()
    clf = PretrainedFineTuner(_backbone(), head_solver="gradient", **GRADIENT).fit(X, y)
    assert clf.head_solver_ == "gradient"
    assert clf.training_path_ == "cached backbone features"
    assert len(clf.history_) == GRADIENT["max_epochs"]
    assert getattr(clf, "head_solution_", None) is None
    # a refit by gradient does not keep the solution of an earlier convex fit
    clf.set_params(head_solver="auto").fit(X, y)
    assert clf.head_solver_ == "convex" and clf.head_solution_["converged"]
    clf.set_params(head_solver="gradient").fit(X, y)
    assert getattr(clf, "head_solution_", None) is None


def test_auto_head_solver_trains_by_gradient_when_the_backbone_trains_or_the_loss_is_custom():
    X, y = _task()
    full = PretrainedFineTuner(_backbone(), freeze="none", **GRADIENT).fit(X, y)
    assert full.head_solver_ == "gradient" and len(full.history_) == GRADIENT["max_epochs"]
    custom = PretrainedFineTuner(_backbone(), criterion=nn.CrossEntropyLoss, **GRADIENT).fit(X, y)
    assert custom.head_solver_ == "gradient" and len(custom.history_) == GRADIENT["max_epochs"]


@pytest.mark.parametrize("params", [dict(freeze="none"), dict(feature_cache=False),
                                    dict(criterion=nn.CrossEntropyLoss)])
def test_convex_head_solver_refuses_a_fit_it_cannot_solve(params):
    X, y = _task(n=40)
    with pytest.raises(ValueError, match="head_solver"):
        PretrainedFineTuner(_backbone(), head_solver="convex", **params).fit(X, y)


@pytest.mark.parametrize("bad", [dict(head_solver="lbfgs"), dict(head_C=0), dict(head_C=-1.0)])
def test_bad_head_solver_parameters_are_refused(bad):
    X, y = _task(n=40)
    with pytest.raises(ValueError, match=next(iter(bad))):
        PretrainedFineTuner(_backbone(), **bad).fit(X, y)


@pytest.mark.parametrize("two_targets", [False, True])
def test_convex_head_of_a_regressor_is_ridge_on_the_backbone_features(two_targets):
    X, _ = _task()
    y = X @ np.arange(6.0) + 0.5
    if two_targets:
        y = np.c_[y, -2 * y + 1.0]
    module = _backbone(n_out=1)
    reg = PretrainedFineTunerRegressor(module, head_C=0.5).fit(X, y)
    assert reg.head_solver_ == "convex"
    features = _features(module, X)
    predicted = reg.predict(X)
    assert predicted.shape == y.shape
    assert_allclose(predicted, Ridge(alpha=2.0).fit(features, y).predict(features), atol=1e-4)
    # weighted: Ridge with the weights rescaled to average 1
    weights = np.linspace(0.0, 3.0, len(X))
    reg.fit(X, y, sample_weight=weights)
    reference = Ridge(alpha=2.0).fit(features, y, sample_weight=_mean_one(weights))
    assert_allclose(reg.predict(X), reference.predict(features), atol=1e-4)


def test_convex_head_without_bias_is_solved_without_intercept():
    X, y = _task()
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3, bias=False))
    clf = PretrainedFineTuner(module).fit(X, y)
    assert clf.head_solver_ == "convex" and clf.module_[-1].bias is None
    features = _features(module, X)
    reference = LogisticRegression(fit_intercept=False, max_iter=1000).fit(features, y)
    assert_allclose(clf.predict_proba(X), reference.predict_proba(features), atol=1e-5)
    target = X @ np.arange(6.0) + 3.0
    reg = PretrainedFineTunerRegressor(module).fit(X, target)
    ridge = Ridge(alpha=1.0, fit_intercept=False).fit(features, target)
    assert_allclose(reg.predict(X), ridge.predict(features), atol=1e-4)


# --------------------------------------------------------------------------- weights
@pytest.mark.parametrize("constant", [1.0, 3.0])
def test_equal_sample_weights_are_no_weights(constant):
    X, y = _task(n=80)
    params = dict(freeze="none", **GRADIENT)
    plain = PretrainedFineTuner(_backbone(), **params).fit(X, y)
    weighted = PretrainedFineTuner(_backbone(), **params).fit(
        X, y, sample_weight=np.full(len(X), constant))
    assert_array_equal(weighted.predict_proba(X), plain.predict_proba(X))
    assert_array_equal(weighted.history[:, "train_loss"], plain.history[:, "train_loss"])


def test_integer_weights_on_the_gradient_path_are_repeated_samples():
    """sum(w_i * loss_i) / n with weights of mean 1 is the mean loss over the data with each sample
    repeated w_i times: with one batch per epoch the two fits are the same."""
    X, y = _task(n=90)
    weights = np.where(np.arange(len(X)) % 3 == 0, 2.0, 1.0)
    params = dict(freeze="none", max_epochs=5, lr=1e-2, batch_size=-1, random_state=0)
    weighted = PretrainedFineTuner(_backbone(), **params).fit(X, y, sample_weight=weights)
    repeated = np.r_[np.arange(len(X)), np.flatnonzero(weights == 2)]
    reference = PretrainedFineTuner(_backbone(), **params).fit(X[repeated], y[repeated])
    assert_allclose(weighted.predict_proba(X), reference.predict_proba(X), atol=1e-6)
    assert_allclose(weighted.history[:, "train_loss"], reference.history[:, "train_loss"],
                    rtol=1e-5)
    plain = PretrainedFineTuner(_backbone(), **params).fit(X, y)
    assert np.abs(weighted.predict_proba(X) - plain.predict_proba(X)).max() > 1e-3


def test_nearly_equal_weights_fit_like_no_weights_with_a_sum_reduction_criterion():
    """weighted_loss accepts criteria with reduction='sum', so weights of (almost) 1 must give
    (almost) the unweighted fit: the loss must not change scale when one weight moves by 1e-6."""
    X, _ = _task(n=64)
    y = X @ np.arange(6.0) / 5
    params = dict(freeze="none", criterion=nn.MSELoss, criterion__reduction="sum",
                  optimizer=torch.optim.SGD, lr=1e-3, lr_schedule="constant", warmup=0.0,
                  max_epochs=3, batch_size=16, random_state=0)
    nearly_equal = np.ones(len(X))
    nearly_equal[0] += 1e-6
    plain = PretrainedFineTunerRegressor(_backbone(1), **params).fit(X, y)
    weighted = PretrainedFineTunerRegressor(_backbone(1), **params).fit(
        X, y, sample_weight=nearly_equal)
    assert_allclose(weighted.history[:, "train_loss"], plain.history[:, "train_loss"], rtol=1e-3)
    assert_allclose(weighted.predict(X), plain.predict(X), atol=1e-3)


def test_convex_head_with_zero_weights_is_weighted_logistic_regression():
    X, y = _task()
    module = _backbone()
    weights = np.where(np.arange(len(X)) % 4 == 0, 0.0, 1.0)
    weights[1::4] = 5.0
    clf = PretrainedFineTuner(module).fit(X, y, sample_weight=weights)
    features = _features(module, X)
    reference = LogisticRegression(max_iter=1000).fit(features, y, sample_weight=_mean_one(weights))
    assert_allclose(clf.predict_proba(X), reference.predict_proba(features), atol=1e-5)
    # only the ratios matter
    scaled = PretrainedFineTuner(module).fit(X, y, sample_weight=7 * weights)
    assert_allclose(scaled.predict_proba(X), clf.predict_proba(X), atol=1e-6)
    plain = PretrainedFineTuner(module).fit(X, y)
    assert np.abs(plain.predict_proba(X) - clf.predict_proba(X)).max() > 1e-3


def test_class_weight_dict_by_label_times_sample_weight_on_the_convex_head():
    X, y = _task()
    module = _backbone()
    sample_weight = np.linspace(0.5, 2.0, len(X))
    class_weight = {"bee": 3.0, "cat": 0.5}  # "ant" weighs 1
    clf = PretrainedFineTuner(module, class_weight=class_weight).fit(
        X, y, sample_weight=sample_weight)
    combined = sample_weight * np.array([{"ant": 1.0, **class_weight}[label] for label in y])
    features = _features(module, X)
    reference = LogisticRegression(max_iter=1000).fit(features, y, sample_weight=_mean_one(combined))
    assert_allclose(clf.predict_proba(X), reference.predict_proba(features), atol=1e-5)


def test_class_weight_naming_an_unknown_label_is_refused():
    X, y = _task(n=40)
    with pytest.raises(ValueError, match="zebra"):
        PretrainedFineTuner(_backbone(), class_weight={"ant": 2.0, "zebra": 3.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight"):
        PretrainedFineTuner(_backbone(), class_weight="balance").fit(X, y)


def test_a_regressor_refuses_class_weight():
    X, _ = _task(n=40)
    with pytest.raises(ValueError, match="class_weight"):
        PretrainedFineTunerRegressor(_backbone(1), class_weight="balanced").fit(X, X[:, 0])


@pytest.mark.parametrize("params", [
    dict(),  # the convex head
    dict(head_solver="gradient", max_epochs=20, lr=1e-2, batch_size=32),
    dict(freeze="none", max_epochs=20, lr=1e-2, batch_size=32),
])
def test_balanced_class_weight_raises_balanced_accuracy_on_an_imbalanced_task(params):
    X, y = _imbalanced(300, 0.1, seed=1)
    X_test, y_test = _imbalanced(2000, 0.5, seed=2)
    scores = {}
    for class_weight in (None, "balanced"):
        clf = PretrainedFineTuner(_backbone(), class_weight=class_weight, random_state=0, **params)
        scores[class_weight] = balanced_accuracy_score(y_test, clf.fit(X, y).predict(X_test))
    assert scores["balanced"] > scores[None] + 0.05, scores


@pytest.mark.parametrize("sample_weight, message", [
    (np.r_[-1.0, np.ones(39)], r"sample_weight is not usable: .*non-negative number per sample \(40\)"),
    (np.ones(39), r"sample_weight is not usable: .*one non-negative number per sample \(40\)"),
    (np.zeros(40), "sample_weight is not usable: .*at least one non-zero"),
])
def test_unusable_sample_weights_get_clear_errors(sample_weight, message):
    X, y = _task(n=40)
    with pytest.raises(ValueError, match=message):
        PretrainedFineTuner(_backbone()).fit(X, y, sample_weight=sample_weight)


def test_sample_weight_is_routed_through_a_pipeline():
    X, y = _task()
    weights = np.where(y == "bee", 10.0, 1.0)
    pipe = Pipeline([("scale", StandardScaler()), ("net", PretrainedFineTuner(_backbone()))])
    pipe.fit(X, y, net__sample_weight=weights)
    X_scaled = StandardScaler().fit_transform(X)
    direct = PretrainedFineTuner(_backbone()).fit(X_scaled, y, sample_weight=weights)
    assert_allclose(pipe.predict_proba(X), direct.predict_proba(X_scaled), atol=1e-6)
    plain = PretrainedFineTuner(_backbone()).fit(X_scaled, y)
    assert np.abs(plain.predict_proba(X_scaled) - direct.predict_proba(X_scaled)).max() > 1e-2


def test_cross_validate_passes_each_fold_its_sample_weights():
    X, y = _task()
    weights = np.where(y == "bee", 10.0, 1.0)
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_validate(PretrainedFineTuner(_backbone()), X, y, cv=cv,
                            params={"sample_weight": weights}, return_estimator=True)
    for (train, _), fitted in zip(cv.split(X), scores["estimator"], strict=True):
        by_hand = PretrainedFineTuner(_backbone()).fit(X[train], y[train],
                                                       sample_weight=weights[train])
        assert_allclose(fitted.predict_proba(X), by_hand.predict_proba(X), atol=1e-6)
        unweighted = PretrainedFineTuner(_backbone()).fit(X[train], y[train])
        assert np.abs(fitted.predict_proba(X) - unweighted.predict_proba(X)).max() > 1e-2


def test_calibrated_classifier_fits_each_fold_with_its_sample_weights():
    X, y = _task(n_classes=2)
    weights = np.where(y == "bee", 20.0, 1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calibrated = CalibratedClassifierCV(PretrainedFineTuner(_backbone()), cv=2).fit(
            X, y, sample_weight=weights)
    assert not [w for w in caught if "sample" in str(w.message).lower()]
    unweighted = CalibratedClassifierCV(PretrainedFineTuner(_backbone()), cv=2).fit(X, y)
    assert calibrated.predict_proba(X)[:, 1].mean() > unweighted.predict_proba(X)[:, 1].mean()
    folds = StratifiedKFold(2).split(X, y)
    for (train, _), fold in zip(folds, calibrated.calibrated_classifiers_, strict=True):
        by_hand = PretrainedFineTuner(_backbone()).fit(X[train], y[train],
                                                       sample_weight=weights[train])
        assert_allclose(fold.estimator.predict_proba(X), by_hand.predict_proba(X), atol=1e-6)
        unweighted = PretrainedFineTuner(_backbone()).fit(X[train], y[train])
        assert np.abs(fold.estimator.predict_proba(X) - unweighted.predict_proba(X)).max() > 1e-2


@pytest.mark.parametrize("params", [dict(freeze="none"), dict(head_solver="gradient")])
def test_the_internal_validation_split_carries_the_weights(params):
    """valid_loss is the weighted loss of the held-out samples: sum(w_i * loss_i) / n_valid."""
    X, y = _task(n=150)
    weights = np.where(np.arange(len(X)) % 2 == 0, 0.2, 4.0)
    clf = PretrainedFineTuner(_backbone(), validation_fraction=0.2, **params, **GRADIENT)
    clf.fit(X, y, sample_weight=weights)
    history = clf.history_
    assert len(history) == GRADIENT["max_epochs"]
    assert {"train_loss", "valid_loss", "valid_acc"} <= set(history[-1])
    assert clf.validation_["n_validation"] == 30 and not clf.validation_["early_stopping"]

    codes = np.searchsorted(clf.classes_, y)
    _, valid = train_test_split(np.arange(len(X)), test_size=0.2, random_state=0, stratify=codes)
    proba = clf.predict_proba(X[valid])
    losses = -np.log(proba[np.arange(len(valid)), codes[valid]])
    assert_allclose(history[-1, "valid_loss"], np.mean(_mean_one(weights)[valid] * losses),
                    rtol=1e-4)
    assert history[-1, "valid_acc"] == pytest.approx(np.mean(proba.argmax(1) == codes[valid]))


# --------------------------------------------------------------------------- inference mode
class _Residual(nn.Module):
    """A residual block with stochastic depth (drop-path), as in ResNets' successors."""

    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(width, width)
        self.drop_path = StochasticDepth(0.5, "row")

    def forward(self, x):
        return x + self.drop_path(torch.relu(self.linear(x)))


def _stochastic_net():
    """Frozen blocks with dropout, BatchNorm and stochastic depth, then a dropout and the head."""
    torch.manual_seed(0)
    net = nn.Sequential(OrderedDict(
        block1=nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5)),
        block2=_Residual(16),
        dropout=nn.Dropout(0.5),
        fc=nn.Linear(16, 3),
    ))
    net.train()  # non-trivial BatchNorm running statistics, as a pretrained network has
    with torch.no_grad():
        net(torch.randn(64, 6) * 2 + 0.5)
    return net.eval()


def _record_training_modes(net):
    """Every training-mode forward pass of (a copy of) ``net`` records the mode of each part."""
    seen = []

    def record(module, _inputs):
        if module.training:
            seen.append({name: sub.training for name, sub in module.named_modules()})

    net.register_forward_pre_hook(record)
    return seen


def test_frozen_blocks_run_in_inference_mode_while_the_head_and_its_dropout_train():
    X, y = _task(n=64)
    net = _stochastic_net()
    seen = _record_training_modes(net)
    PretrainedFineTuner(net, freeze="backbone", feature_cache=False, head_solver="gradient",
                        **GRADIENT).fit(X, y)
    assert len(seen) == GRADIENT["max_epochs"] * 4  # every training batch
    frozen = {name for name in seen[0] if name.startswith(("block1", "block2"))}
    assert frozen >= {"block1", "block1.3", "block2", "block2.drop_path"}
    for modes in seen:
        assert not any(modes[name] for name in frozen), modes
        assert modes[""] and modes["dropout"] and modes["fc"], modes


def test_nothing_frozen_means_everything_trains():
    X, y = _task(n=64)
    net = _stochastic_net()
    seen = _record_training_modes(net)
    PretrainedFineTuner(net, freeze="none", **GRADIENT).fit(X, y)
    assert len(seen) == GRADIENT["max_epochs"] * 4
    assert all(all(modes.values()) for modes in seen)


def test_train_bn_trains_frozen_batchnorm_affine_parameters_but_not_its_statistics():
    X, y = _task(n=64)
    net = _stochastic_net()
    clf = PretrainedFineTuner(net, freeze="backbone", train_bn=True, **GRADIENT).fit(X, y)
    assert clf.training_path_.startswith("full network")
    before, after = net.state_dict(), clf.module_.state_dict()
    for name in ("block1.1.running_mean", "block1.1.running_var", "block1.1.num_batches_tracked",
                 "block1.0.weight", "block1.0.bias", "block2.linear.weight"):
        assert torch.equal(after[name], before[name]), name
    bn = clf.module_.block1[1]
    assert bn.weight.requires_grad and bn.bias.requires_grad
    assert not torch.equal(after["block1.1.weight"], before["block1.1.weight"])
    assert not torch.equal(after["block1.1.bias"], before["block1.1.bias"])


def test_cached_and_uncached_fits_agree_with_dropout_and_stochastic_depth_in_the_frozen_backbone():
    X, y = _task(n=96)
    params = dict(freeze="backbone", head_solver="gradient", **GRADIENT)
    cached = PretrainedFineTuner(_stochastic_net(), **params).fit(X, y)
    uncached = PretrainedFineTuner(_stochastic_net(), feature_cache=False, **params).fit(X, y)
    assert cached.training_path_ == "cached backbone features"
    assert uncached.training_path_ == "full network (feature_cache=False)"
    assert_allclose(cached.predict_proba(X), uncached.predict_proba(X), atol=1e-5)
    assert_allclose(cached.history[:, "train_loss"], uncached.history[:, "train_loss"], rtol=1e-4)
    assert cached.history[-1, "train_loss"] < cached.history[0, "train_loss"]  # the head learned
