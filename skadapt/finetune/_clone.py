"""``sklearn.clone`` for the estimators that take a pretrained network: the network is shared.

``sklearn.clone`` deep-copies every parameter that is not an estimator, so each of the 41 clones of
a 5-fold, 8-point grid search copied the ``model`` module (6-8 ms for a ResNet20, about 60 ms for
MiniLM's 90 MB, measured alone), although no estimator ever changes it: fitting builds its own copy
of the network (``skadapt.networks``). :func:`clone_sharing_model` passes ``model`` to the clone as it is, as
``clone`` passes a string, and clones every other parameter as sklearn does.
"""

from __future__ import annotations

import copy

from sklearn.base import BaseEstimator, clone

__all__ = ["clone_sharing_model"]


def clone_sharing_model(estimator: BaseEstimator) -> BaseEstimator:
    """An unfitted copy of ``estimator`` with the same parameters; ``model`` is not copied.

    Examples
    --------
    >>> import torch
    >>> from sklearn.base import clone
    >>> from skadapt import PretrainedFeatureExtractor
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 2))
    >>> extractor = PretrainedFeatureExtractor(net, batch_size=16)
    >>> twin = clone(extractor)
    >>> twin.model is net, twin.batch_size, twin is extractor
    (True, 16, False)
    """
    params = estimator.get_params(deep=False)
    twin = type(estimator)(**{name: value if name == "model" else clone(value, safe=False)
                              for name, value in params.items()})
    # what sklearn's clone carries over besides the parameters: metadata routing, set_output
    for attribute in ("_metadata_request", "_sklearn_output_config"):
        if attribute in estimator.__dict__:
            setattr(twin, attribute, copy.deepcopy(estimator.__dict__[attribute]))
    return twin
