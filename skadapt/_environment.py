"""Settings read from environment variables: one parser, one error message.

Every ``SKADAPT_*`` number (the in-memory cache's bound, the network memo's bounds, the disk cache
locks' timeout) is read by :func:`environment_number`, which says which variable is wrong and what
it takes.
"""

from __future__ import annotations

import math
import os

__all__ = ["environment_number"]


def environment_number(name: str, default: float, *, unit: str, integer: bool = False,
                       zero: str | None = None) -> float:
    """The number in the environment variable ``name``, or ``default`` when it is not set.

    Parameters
    ----------
    name : str
        The variable.
    default : float
        Returned when the variable is not set.
    unit : str
        What the number counts, for the error message (``"bytes"``, ``"seconds"``).
    integer : bool, default=False
        Whether it must be a whole number.
    zero : str, optional
        What 0 means (then 0 is allowed); by default the number must be > 0.

    Raises
    ------
    ValueError
        Naming the variable and the values it takes, when it is not such a number.

    Examples
    --------
    >>> import os
    >>> os.environ["SKADAPT_EXAMPLE_S"] = "2.5"
    >>> environment_number("SKADAPT_EXAMPLE_S", 120.0, unit="seconds")
    2.5
    >>> del os.environ["SKADAPT_EXAMPLE_S"]
    >>> environment_number("SKADAPT_EXAMPLE_S", 120.0, unit="seconds")
    120.0
    """
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero is not None else value > 0)):
        bound = f">= 0 ({zero})" if zero is not None else "> 0"
        kind = "a whole number" if integer else "a number"
        raise ValueError(f"{name}={text!r}: set it to {kind} of {unit} {bound}, or unset it for "
                         "the default.")
    return value
