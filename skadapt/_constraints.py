"""Parameter constraints that sklearn's ``_param_validation`` lacks, for ``_parameter_constraints``.

sklearn's ``Interval(Integral, ...)`` accepts ``True`` as 1: a flag passed where a number belongs
(``max_epochs=True``) is almost always a mistake, so :class:`Number` refuses booleans.
:class:`StrList` is a list of strings (``freeze=["conv1.*", "layer1.*"]``).

Both plug into sklearn's ``validate_parameter_constraints``, whose ``InvalidParameterError`` (a
``ValueError`` and a ``TypeError``) names the parameter, the valid values and what was passed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.utils._param_validation import Interval, Options

__all__ = ["Number", "StrList"]


class Number(Interval):
    """sklearn's ``Interval``, refusing booleans.

    Examples
    --------
    >>> from numbers import Integral
    >>> Number(Integral, 1, None, closed="left").is_satisfied_by(True)
    False
    >>> str(Number(Integral, 1, None, closed="left"))
    'an int in the range [1, inf)'
    """

    def is_satisfied_by(self, val) -> bool:
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


class StrList(Options):
    """A list or tuple of strings (e.g. parameter-name patterns).

    An ``Options`` only so that sklearn's ``make_constraint`` takes it as it is.

    Examples
    --------
    >>> StrList().is_satisfied_by(["conv1.*"]), StrList().is_satisfied_by("conv1.*")
    (True, False)
    """

    def __init__(self) -> None:
        super().__init__(Sequence, set())

    def is_satisfied_by(self, val) -> bool:
        return (isinstance(val, Sequence) and not isinstance(val, str)
                and all(isinstance(item, str) for item in val))

    def __str__(self) -> str:
        return "a list of str"
