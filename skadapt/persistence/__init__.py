"""Safe persistence: a fitted estimator saved as JSON and safetensors, loaded without pickle.

``save(estimator, path)`` writes a folder (``config.json``, ``weights.safetensors`` and a
``manifest.json`` with the format version and the SHA-256 of every file); ``load(path)`` checks
it and rebuilds the estimator without running pickle or ``torch.load``. Any problem with a folder
(a missing or modified file, another format version, a class that cannot be imported, a value
that has no safe form) raises :class:`PersistenceError`.
"""

from skadapt.persistence._api import load, save
from skadapt.persistence._errors import PersistenceError

__all__ = ["PersistenceError", "load", "save"]
