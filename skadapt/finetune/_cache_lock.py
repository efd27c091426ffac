"""Lock files that let processes sharing an embedding cache folder compute each entry once.

When several processes (the workers of a Dask cluster, ``GridSearchCV(n_jobs=4)``) miss the same
entries of a shared ``cache_dir`` at the same time, each would run the backbone over them. Before
computing an entry, a process *claims* it: it creates ``<entry>.lock`` beside the entry's file
with ``O_CREAT | O_EXCL``, which exactly one process can do. The others leave that entry to it and
wait for its file to appear.

A process that dies must not make the others wait for ever, so a lock expires:

- a lock holds the holder's host name and process id; on the same host, a lock whose process is
  gone is stale at once;
- otherwise it is stale when its file has not been touched for ``stale_after`` seconds. While it
  computes, the holder touches its locks every ``stale_after / 6`` seconds (:class:`Heartbeat`, a
  thread), so a long batch does not make its locks look abandoned.

A stale lock is deleted and the entry claimed again. Two waiters may both find the same lock
stale; then an entry may be computed twice, which costs time but never correctness: entries are
written atomically and checksummed by the disk store (``_embedding_cache._DiskStore``).

The default ``stale_after`` is 120 seconds, or the ``SKADAPT_CACHE_LOCK_STALE_S`` environment
variable (seconds).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from skadapt._environment import environment_number

__all__ = ["STALE_AFTER_ENV_VARIABLE", "Heartbeat", "break_if_stale", "is_stale", "release",
           "stale_after", "try_lock"]

STALE_AFTER_ENV_VARIABLE = "SKADAPT_CACHE_LOCK_STALE_S"
DEFAULT_STALE_AFTER_S = 120.0
_HOST = socket.gethostname()


def stale_after() -> float:
    """Seconds after which an untouched lock is stale: ``SKADAPT_CACHE_LOCK_STALE_S``, else 120."""
    return environment_number(STALE_AFTER_ENV_VARIABLE, DEFAULT_STALE_AFTER_S, unit="seconds")


def try_lock(path: Path) -> bool:
    """Create the lock file ``path``; False when another process (or thread) holds it.

    Other errors (a read-only folder, a full disk) are raised: the caller goes on without locks.
    """
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(handle, f"{_HOST}\n{os.getpid()}\n{time.time():.3f}\n".encode())
    finally:
        os.close(handle)
    return True


def release(path: Path) -> None:
    """Delete a lock this process holds (nothing when it is already gone)."""
    try:
        path.unlink()
    except OSError:
        pass


def is_stale(path: Path, stale_after: float, now: float | None = None) -> bool:
    """Whether the lock ``path`` was left by a dead process: its holder is a process of this host
    that no longer runs, or its file was not touched for ``stale_after`` seconds. A missing lock
    is not stale (there is nothing to break)."""
    try:
        modified = path.stat().st_mtime
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    if (time.time() if now is None else now) - modified > stale_after:
        return True
    host, _, rest = text.partition("\n")
    pid_text = rest.partition("\n")[0]
    if host != _HOST or not pid_text.isdigit():
        return False  # another machine's process, or a lock still being written: wait for it
    return not _process_alive(int(pid_text))


def break_if_stale(path: Path, stale_after: float) -> bool:
    """Delete the lock ``path`` when it is stale; whether it was."""
    if is_stale(path, stale_after):
        release(path)
        return True
    return False


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    except OSError:
        return True  # cannot tell: assume alive, the timeout still applies
    return True


class Heartbeat:
    """Touch lock files every ``interval`` seconds from a thread, while the ``with`` block runs.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> lock = pathlib.Path(tempfile.mkdtemp()) / "entry.lock"
    >>> try_lock(lock), try_lock(lock)
    (True, False)
    >>> with Heartbeat([lock], interval=10.0):
    ...     pass  # compute the entry; the lock stays fresh
    >>> release(lock); try_lock(lock)
    True
    """

    def __init__(self, paths: Iterable[Path], interval: float):
        self.paths = list(paths)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="skadapt-cache-lock-heartbeat",
                                        daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            for path in self.paths:
                try:
                    os.utime(path)
                except OSError:
                    pass  # broken by a waiter that found it stale: it may compute it too
