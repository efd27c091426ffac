"""``PretrainedFineTunerRegressor``: a pretrained network fine-tuned as a scikit-learn regressor.

What is particular to regression lives here: float targets of one or several outputs, ``predict``
shaped like ``y``. Everything else is the shared core (``_estimator._PretrainedNet``).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import RegressorMixin
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.metaestimators import available_if

from skadapt.finetune._estimator import _PretrainedNet, check_y
from skadapt.finetune._probe import solve_regressor_head

__all__ = ["PretrainedFineTunerRegressor"]


class PretrainedFineTunerRegressor(RegressorMixin, _PretrainedNet):
    """Fine-tune a pretrained network as a scikit-learn regressor.

    The same parameters as :class:`PretrainedFineTuner`; the new head has one output per target
    column of ``y`` and the default criterion is ``MSELoss``. Targets are used as given: scale them
    (e.g. with ``TransformedTargetRegressor``) when they are far from unit scale.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt import PretrainedFineTunerRegressor
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> X = np.random.default_rng(0).normal(size=(80, 3)).astype("float32")
    >>> y = X @ np.array([1.0, -2.0, 0.5])
    >>> reg = PretrainedFineTunerRegressor(net, freeze="none", max_epochs=3, random_state=0)
    >>> reg.fit(X, y).predict(X[:2]).shape
    (2,)
    """

    _default_criterion = torch.nn.MSELoss
    _solve_head = staticmethod(solve_regressor_head)

    def _validate_params(self) -> None:
        if self.class_weight is not None:
            raise InvalidParameterError(
                f"The 'class_weight' parameter of {type(self).__name__} must be None (class "
                "weights are for classifiers: weigh a regressor's samples with fit(X, y, "
                f"sample_weight=...)). Got {self.class_weight!r} instead.")
        super()._validate_params()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _check_target(self, y, n_samples):
        y = check_y(y, n_samples)
        try:
            y = y.astype(np.float32)
        except (TypeError, ValueError) as error:
            raise ValueError("y must be numeric for a regressor; use PretrainedFineTuner for "
                             "class labels.") from error
        if not np.isfinite(y).all():
            raise ValueError("y has NaN or infinite values: drop or impute them before fitting.")
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        self.y_ndim_ = y.ndim
        return self._encode_target(y)

    def _encode_target(self, y):
        y = np.asarray(y, dtype=np.float32)
        return y.reshape(len(y), -1)

    def _n_outputs(self):
        return self.n_outputs_

    @available_if(lambda self: False)
    def predict_proba(self, X):
        """Not available: a regressor predicts values (skorch's NeuralNet defines this)."""

    def predict(self, X):
        """Predicted targets, shaped like the ``y`` given to ``fit``."""
        out = self._forward_numpy(X).astype(np.float64)
        return out.ravel() if self.y_ndim_ == 1 else out
