"""The one error of the persistence package: a saved folder that cannot be written or read."""

from __future__ import annotations

__all__ = ["PersistenceError"]


class PersistenceError(ValueError):
    """A model folder that cannot be saved or loaded safely: a missing or tampered file, an
    incompatible format version, a class that cannot be imported, or a parameter that the safe
    format cannot represent. The message names the file or the value, and what to do.

    Examples
    --------
    >>> from skadapt.persistence import PersistenceError
    >>> issubclass(PersistenceError, ValueError)
    True
    """
