"""Package-wide settings: :func:`set_config`, :func:`get_config` and :func:`config_context`.

In the manner of ``sklearn.set_config``. One setting so far:

- ``cache_memory_mb``: the bound, in MiB, of the in-memory embedding cache that every estimator of
  the process shares (the fine-tuner's ``feature_cache``, ``PretrainedFeatureExtractor(cache=True)``).
  Until ``set_config`` sets it, it comes from the ``SKADAPT_CACHE_MEMORY_BYTES`` environment
  variable (a number of bytes), else it is 512 MiB.

The settings belong to the process, not to a thread: the cache they bound is one per process, so
a ``config_context`` in one thread is seen by the others while it lasts. Processes that joblib
starts (``GridSearchCV(n_jobs=4)``) do not see ``set_config``; they read the environment
variable, so set it before Python starts to bound them too.

This module imports nothing heavy (no torch): ``import skadapt`` stays fast.
"""

from __future__ import annotations

import math
import numbers
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from skadapt._environment import environment_number

__all__ = ["config_context", "get_config", "set_config"]

CACHE_MEMORY_ENV_VARIABLE = "SKADAPT_CACHE_MEMORY_BYTES"
DEFAULT_CACHE_MEMORY_MB = 512
_MIB = 2**20

_LOCK = threading.Lock()
# What set_config set; None: not set, the environment variable or the default applies.
_SETTINGS: dict[str, float | None] = {"cache_memory_mb": None}


def set_config(*, cache_memory_mb: float | None = None) -> None:
    """Change skadapt's settings for this process; a setting left at ``None`` is not changed.

    Parameters
    ----------
    cache_memory_mb : float, optional
        Bound, in MiB, of the in-memory embedding cache shared by every estimator of the process
        (least recently used entries go first). ``0`` keeps nothing in memory (a ``cache_dir``
        still works). It applies from the next fit or transform; a smaller bound drops the least
        recently used entries then. Default, until set: the ``SKADAPT_CACHE_MEMORY_BYTES``
        environment variable (bytes), else 512.

    Raises
    ------
    ValueError
        For a value that is not a finite number >= 0.

    See Also
    --------
    config_context : the same, for a ``with`` block only.
    get_config : the current settings.

    Examples
    --------
    >>> from skadapt import get_config, set_config
    >>> set_config(cache_memory_mb=1024)
    >>> get_config()["cache_memory_mb"]
    1024
    """
    if cache_memory_mb is not None:
        cache_memory_mb = _check_memory_mb(cache_memory_mb)
        with _LOCK:
            _SETTINGS["cache_memory_mb"] = cache_memory_mb


def get_config() -> dict:
    """The current settings, as a new dict (see :func:`set_config` for each).

    Returns
    -------
    dict
        ``{"cache_memory_mb": float}``: the value set, else the one the environment variable or
        the default gives.

    Raises
    ------
    ValueError
        When the bound comes from a ``SKADAPT_CACHE_MEMORY_BYTES`` that is not a number >= 0.

    Examples
    --------
    >>> from skadapt import config_context, get_config
    >>> with config_context(cache_memory_mb=64):
    ...     get_config()["cache_memory_mb"]
    64
    """
    with _LOCK:
        settings = dict(_SETTINGS)
    if settings["cache_memory_mb"] is None:
        settings["cache_memory_mb"] = _environment_memory_bytes() / _MIB
    return settings


@contextmanager
def config_context(*, cache_memory_mb: float | None = None) -> Iterator[None]:
    """Change settings inside a ``with`` block only: on leaving it, they are what they were.

    Parameters
    ----------
    cache_memory_mb : float, optional
        As in :func:`set_config`; ``None`` leaves it as it is.

    Examples
    --------
    >>> from skadapt import config_context, get_config
    >>> before = get_config()["cache_memory_mb"]
    >>> with config_context(cache_memory_mb=0):
    ...     get_config()["cache_memory_mb"]
    0
    >>> get_config()["cache_memory_mb"] == before
    True
    """
    with _LOCK:
        saved = dict(_SETTINGS)
    set_config(cache_memory_mb=cache_memory_mb)
    try:
        yield
    finally:
        with _LOCK:
            _SETTINGS.update(saved)


def cache_memory_bytes() -> int:
    """The bound of the shared in-memory embedding cache, in bytes (what the caches read)."""
    with _LOCK:
        memory_mb = _SETTINGS["cache_memory_mb"]
    if memory_mb is None:
        return _environment_memory_bytes()
    return round(memory_mb * _MIB)


def _check_memory_mb(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"cache_memory_mb={value!r}: pass a size in MiB, a number >= 0 (0 keeps "
                         "nothing in memory).")
    return value


def _environment_memory_bytes() -> int:
    return environment_number(CACHE_MEMORY_ENV_VARIABLE, DEFAULT_CACHE_MEMORY_MB * _MIB,
                              unit="bytes", integer=True, zero="0 keeps nothing in memory")
