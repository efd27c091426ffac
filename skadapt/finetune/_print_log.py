"""skorch's per-epoch table, built only when it is printed.

skorch's ``PrintLog`` formats every epoch's history row into a table even when ``verbose=0``
silences its ``print``; a grid search of short head fits on cached features spent about 3% of its
time formatting tables that nobody saw.
"""

from __future__ import annotations

from skorch.callbacks import PrintLog

__all__ = ["QuietPrintLog"]


class QuietPrintLog(PrintLog):
    """``PrintLog`` (same parameters, same output) that skips its work when it would print
    nothing: ``verbose=0`` with the default ``print`` sink.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skadapt import PretrainedFineTuner
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2))
    >>> X = np.random.default_rng(0).normal(size=(8, 3, 2, 2)).astype("float32")
    >>> def fit(verbose):
    ...     return PretrainedFineTuner(net, freeze="none", max_epochs=1, validation_fraction=None,
    ...                                verbose=verbose).fit(X, np.arange(8) % 2)
    >>> _ = fit(verbose=0)  # no table built, nothing printed
    >>> _ = fit(verbose=1)  # doctest: +ELLIPSIS
      epoch ...
    """

    def on_epoch_end(self, net, **kwargs):
        if self.sink is print and not net.verbose:
            return
        super().on_epoch_end(net, **kwargs)
