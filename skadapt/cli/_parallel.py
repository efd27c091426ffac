"""Where the command line's searches run their fits: here, local processes, or a Dask cluster.

``skadapt fit --cv K`` fits K folds; ``--n-jobs N`` fits N at a time in local processes (joblib),
``--scheduler ADDRESS`` on the workers of a Dask cluster, through joblib's Dask backend (needs
``pip install 'skadapt[dask]'``). ADDRESS is a scheduler's address (``tcp://host:8786``) or a
scheduler file (JSON, written by ``dask scheduler --scheduler-file`` or ``dask-mpi``).

Only the standard library and joblib are imported until a scheduler is asked for.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import joblib

__all__ = ["connect", "parallel_folds"]

CONNECT_TIMEOUT_S = 20.0  # how long to try reaching the scheduler before giving up


def connect(address: str):
    """A ``distributed.Client`` of the scheduler at ``address`` (or in the scheduler file).

    Raises
    ------
    ImportError
        When Dask's ``distributed`` is not installed.
    OSError
        When no scheduler answers there.
    """
    try:
        import distributed
    except ImportError:
        raise ImportError("--scheduler needs Dask: pip install 'skadapt[dask]' (dask and "
                          "distributed, the same versions as on the cluster).") from None
    is_file = address.endswith(".json") or os.path.isfile(address)
    if is_file and not os.path.isfile(address):
        raise FileNotFoundError(f"--scheduler {address!r}: no such scheduler file; pass the file "
                                "that 'dask scheduler --scheduler-file' wrote, or an address "
                                "like tcp://host:8786.")
    where = {"scheduler_file": address} if is_file else {"address": address}
    try:
        return distributed.Client(**where, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, ValueError, TypeError) as error:  # refused, timed out, malformed address
        raise OSError(f"--scheduler {address!r}: cannot reach a Dask scheduler there "
                      f"({' '.join(str(error).split()) or type(error).__name__}). Start one "
                      "('dask scheduler', then 'dask worker ADDRESS' on each machine) and pass "
                      "its address, e.g. tcp://host:8786.") from None


def _check_importable(client, scheduler: str, module: str) -> None:
    try:
        client.run(importlib.import_module, module)
    except ImportError as error:
        raise ImportError(f"the workers of the Dask cluster at {scheduler} cannot import "
                          f"{module!r}, which defines the network ({error}): install it on "
                          "them, or pass --model path/to/file.py:Name (the file is sent to "
                          "them).") from None


@contextlib.contextmanager
def parallel_folds(scheduler: str | None, n_jobs: int | None,
                   upload: Sequence[str | os.PathLike] = (),
                   modules: Sequence[str] = ()) -> Iterator[int | None]:
    """Within the block, joblib runs on the cluster at ``scheduler`` (when given); yields the
    ``n_jobs`` to pass to the search: ``n_jobs`` as given, else every worker of the cluster, else
    one process (None).

    Parameters
    ----------
    scheduler : str or None
        A Dask scheduler's address or scheduler file; None: this machine.
    n_jobs : int or None
        Fits at a time (joblib's ``n_jobs``: -1 for as many as there are workers or cores).
    upload : sequence of paths
        Python files the workers must import (a ``--model file.py:Name``): sent to every worker.
    modules : sequence of str
        Modules the workers must import (where the network's class is defined): checked on
        every worker first, since a task the workers cannot unpickle would never finish.

    Examples
    --------
    >>> with parallel_folds(None, 2) as n_jobs:
    ...     n_jobs
    2
    """
    if scheduler is None:
        yield n_jobs
        return
    client = connect(scheduler)
    try:
        for file in upload:  # imported by the workers when a task needs it
            client.upload_file(str(Path(file).resolve()), load=False)
        for module in modules:
            _check_importable(client, scheduler, module)
        if sum(client.ncores().values()) == 1:
            warnings.warn(f"the Dask cluster at {scheduler} has one worker thread: joblib then "
                          "fits one job at a time, here rather than on the worker; start more "
                          "workers (or threads).", UserWarning, stacklevel=3)
        with joblib.parallel_config(backend="dask", client=client):
            yield -1 if n_jobs is None else n_jobs
    finally:
        client.close()
