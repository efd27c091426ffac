"""Loading executes no pickle: every unpickling entry point raises, and the model still loads."""

import pickle

import numpy as np
import torch

import skadapt


def _forbidden(*args, **kwargs):
    raise AssertionError("loading a safe model must not unpickle anything")


class _ForbiddenUnpickler:
    def __init__(self, *args, **kwargs):
        _forbidden()


def test_loading_runs_no_pickle_and_no_torch_load(fitted, data, tmp_path, monkeypatch):
    X, _ = data
    expected = fitted.predict_proba(X)
    folder = skadapt.save(fitted, tmp_path / "model")
    monkeypatch.setattr(pickle, "load", _forbidden)
    monkeypatch.setattr(pickle, "loads", _forbidden)
    monkeypatch.setattr(pickle, "Unpickler", _ForbiddenUnpickler)
    monkeypatch.setattr(torch, "load", _forbidden)
    loaded = skadapt.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)


def test_the_weights_file_is_safetensors_not_a_pickle(fitted, tmp_path):
    folder = skadapt.save(fitted, tmp_path / "model")
    head = (folder / "weights.safetensors").read_bytes()[:16]
    assert not head.startswith(b"\x80")  # pickle's protocol marker
    assert not head.startswith(b"PK")  # torch.save's zip archive
