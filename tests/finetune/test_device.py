"""``device="auto"`` and what only a CUDA device gets (pinned memory, non-blocking copies), tested
on the CPU by faking what torch reports (``_device.py``, ``_estimator.py``)."""

import numpy as np
import pytest
import torch
from torch import nn

from skadapt import PretrainedFineTuner
from skadapt.finetune import _device
from skadapt.finetune._adapters import Inputs
from skadapt.finetune._datasets import InputDataset
from skadapt.finetune._device import auto_device, resolve_device

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _available(monkeypatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (True, False, "cuda"),
                                                 (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, expected):
    _available(monkeypatch, cuda, mps)
    assert auto_device() == expected
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device(None) == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")  # an explicit device is kept
    assert PretrainedFineTuner(nn.Linear(2, 2)).device == expected


def test_a_bad_device_names_the_choices():
    with pytest.raises(ValueError, match="device='gpu0'.*'mps'"):
        resolve_device("gpu0")


def test_mps_available_copes_with_a_torch_without_mps(monkeypatch):
    monkeypatch.delattr(torch.backends, "mps")
    assert _device.mps_available() is False


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _dataset():
    X = np.zeros((6, 4), np.float32)
    return InputDataset(Inputs(kind="array", items=X), np.zeros(6, np.int64), transform=None)


@pytest.mark.parametrize("device, pinned", [("cuda", True), ("cuda:0", True), ("cpu", False),
                                            ("mps", False)])
def test_the_dataloaders_pin_memory_only_for_cuda(device, pinned):
    clf = PretrainedFineTuner(_net(), device=device)
    for training in (True, False):
        assert clf.get_iterator(_dataset(), training=training).pin_memory is pinned


def test_auto_on_a_cuda_machine_pins_and_a_user_setting_wins(monkeypatch):
    _available(monkeypatch, cuda=True, mps=False)
    assert PretrainedFineTuner(_net()).get_iterator(_dataset(), training=True).pin_memory
    clf = PretrainedFineTuner(_net(), iterator_train__pin_memory=False)
    assert not clf.get_iterator(_dataset(), training=True).pin_memory


def test_batches_are_copied_without_blocking_only_to_cuda(monkeypatch):
    X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clf = PretrainedFineTuner(_net(), freeze="none", max_epochs=1, validation_fraction=None,
                              device="cpu").fit(X, y)
    calls = []
    to = torch.Tensor.to

    def recording(self, *args, **kwargs):
        calls.append(kwargs.get("non_blocking", False))
        return to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording)
    clf.infer(torch.from_numpy(X))
    assert calls == [False]
    # what infer does once the device is a GPU (the copy itself stays on the CPU here)
    monkeypatch.setattr(type(clf), "_on_cuda", lambda self: True)
    clf.infer(torch.from_numpy(X))
    assert calls == [False, True]
