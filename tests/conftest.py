"""Fixtures shared by the whole test suite."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests: tiny forward passes gain nothing from more, and on a
    shared 2-core machine spin-waiting threads make them (and MiniLM's training) several times
    slower. The caller's setting is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
