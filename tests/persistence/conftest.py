"""Fitted tiny estimators and helpers shared by the persistence tests."""

import json

import numpy as np
import pytest

from skadapt.persistence._format import MANIFEST, sha256_of
from tests.persistence._modules import TinyNet


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny networks: one torch thread (see the suite's conftest)."""


@pytest.fixture(scope="module")
def data():
    X = np.random.default_rng(0).normal(size=(40, 4)).astype("float32")
    y = np.where(X[:, 0] > 0, "pos", "neg")
    return X, y


@pytest.fixture(scope="module")
def fitted(data, one_torch_thread):
    """A classifier trained end to end on arrays, its network referenced by its class."""
    from skadapt import PretrainedFineTuner

    X, y = data
    return PretrainedFineTuner(TinyNet, freeze="none", max_epochs=2, batch_size=16,
                               random_state=0).fit(X, y)


def rehash(folder) -> None:
    """Record the current SHA-256 of every file in the manifest (a consistent but edited folder)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: sha256_of(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def edit_config(folder, change) -> None:
    """Apply ``change`` to the folder's config.json (a dict) and rehash it."""
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    rehash(folder)
