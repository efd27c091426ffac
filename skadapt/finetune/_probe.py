"""The convex linear probe: a new linear head solved exactly on cached backbone features.

With the backbone frozen for the whole fit and its features cached, the network is a linear model
on fixed features: a convex problem, solved here as such rather than by a few epochs of stochastic
gradient descent. Classifiers get multinomial (binary: binomial) logistic regression with an L2
penalty by L-BFGS, regressors ridge regression in closed form, both sklearn's own solvers (the
CLIP-style linear probe), with ``C`` as in ``LogisticRegression`` (``alpha = 1 / C`` for ridge).
The solution is written into the network's ``nn.Linear`` head, so the full network predicts with it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from torch import nn

MAX_ITER = 1000


def solve_classifier_head(head: nn.Linear, features: np.ndarray, codes: np.ndarray,
                          sample_weight: np.ndarray | None, C: float) -> dict:
    """Fit ``head`` (``n_classes`` outputs) as L2-penalized logistic regression on ``features``.

    Returns what was solved: ``solver``, ``n_iter``, ``converged``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 3)).astype("float32"); codes = (X[:, 0] > 0).astype(int)
    >>> head = nn.Linear(3, 2)
    >>> info = solve_classifier_head(head, X, codes, None, C=1.0)
    >>> bool((head(torch.from_numpy(X)).argmax(1).numpy() == codes).mean() > 0.9)
    True
    """
    model = LogisticRegression(C=C, max_iter=MAX_ITER, fit_intercept=head.bias is not None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(features, codes, sample_weight=sample_weight)
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: softmax over (-z/2, z/2) is the sigmoid of z
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.concatenate([-intercept / 2,
                                                                           intercept / 2])
    _write(head, coef, intercept)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return {"solver": "logistic regression (L-BFGS)", "n_iter": int(np.max(model.n_iter_)),
            "converged": converged}


def solve_regressor_head(head: nn.Linear, features: np.ndarray, y: np.ndarray,
                         sample_weight: np.ndarray | None, C: float) -> dict:
    """Fit ``head`` as ridge regression (``alpha = 1 / C``) on ``features``; ``y`` is 2-d."""
    model = Ridge(alpha=1.0 / C, fit_intercept=head.bias is not None)
    model.fit(features, y, sample_weight=sample_weight)
    _write(head, np.atleast_2d(model.coef_).reshape(y.shape[1], -1),
           np.atleast_1d(model.intercept_))
    return {"solver": "ridge regression (closed form)", "n_iter": 1, "converged": True}


def _write(head: nn.Linear, coef: np.ndarray, intercept: np.ndarray) -> None:
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(coef, dtype=head.weight.dtype))
        if head.bias is not None:
            head.bias.copy_(torch.as_tensor(intercept, dtype=head.bias.dtype))
