"""skadapt's settings: set_config, get_config, config_context, and the cache bound they set."""

import threading

import numpy as np
import pytest

import skadapt
from skadapt import config_context, get_config, set_config
from skadapt._config import CACHE_MEMORY_ENV_VARIABLE
from skadapt.finetune._embedding_cache import EmbeddingCache, shared_cache

MIB = 2**20


@pytest.fixture(autouse=True)
def no_environment_bound(monkeypatch):
    """Each test starts from the default bound, and leaves the settings as it found them."""
    monkeypatch.delenv(CACHE_MEMORY_ENV_VARIABLE, raising=False)
    with config_context():
        yield
    monkeypatch.delenv(CACHE_MEMORY_ENV_VARIABLE, raising=False)
    shared_cache()  # back to the restored bound for the tests that follow


def test_the_default_bound_is_512_mib_and_the_names_are_public():
    assert get_config() == {"cache_memory_mb": 512}
    assert {"config_context", "get_config", "set_config"} <= set(skadapt.__all__)
    assert skadapt.set_config is set_config


def test_set_config_changes_the_bound_of_the_shared_cache_and_of_new_caches():
    set_config(cache_memory_mb=3)
    assert get_config()["cache_memory_mb"] == 3
    assert shared_cache().memory.max_bytes == 3 * MIB
    assert EmbeddingCache().memory.max_bytes == 3 * MIB
    assert EmbeddingCache(max_memory_bytes=10).memory.max_bytes == 10, "an explicit bound wins"
    set_config(cache_memory_mb=0.5)
    assert shared_cache().memory.max_bytes == MIB // 2
    set_config()  # None leaves it as it is
    assert get_config()["cache_memory_mb"] == 0.5


def test_a_smaller_bound_drops_the_least_recently_used_entries_of_the_shared_cache():
    row = np.zeros(MIB // 4, dtype=np.uint8)  # a quarter of a MiB
    with config_context(cache_memory_mb=2):
        cache = shared_cache()
        cache.clear()
        cache.put_many(["old", "new"], [row, row])
        cache.get_many(["new"])
        set_config(cache_memory_mb=0.3)
        assert shared_cache() is cache and cache.memory.max_bytes == round(0.3 * MIB)
        assert cache.memory.nbytes <= cache.memory.max_bytes
        assert "old" not in cache.memory and "new" in cache.memory


def test_config_context_restores_the_bound_even_after_an_error():
    set_config(cache_memory_mb=64)
    with config_context(cache_memory_mb=8):
        assert get_config()["cache_memory_mb"] == 8
        assert shared_cache().memory.max_bytes == 8 * MIB
    assert get_config()["cache_memory_mb"] == 64
    assert shared_cache().memory.max_bytes == 64 * MIB
    with pytest.raises(RuntimeError), config_context(cache_memory_mb=1):
        raise RuntimeError("inside")
    assert get_config()["cache_memory_mb"] == 64


def test_config_context_restores_an_unset_bound_so_the_environment_applies_again(monkeypatch):
    with config_context(cache_memory_mb=8):
        pass
    monkeypatch.setenv(CACHE_MEMORY_ENV_VARIABLE, str(5 * MIB))
    assert get_config()["cache_memory_mb"] == 5


def test_the_environment_variable_is_the_default_and_set_config_overrides_it(monkeypatch):
    monkeypatch.setenv(CACHE_MEMORY_ENV_VARIABLE, "12345")
    assert get_config()["cache_memory_mb"] == 12345 / MIB
    assert shared_cache().memory.max_bytes == 12345
    with config_context(cache_memory_mb=2):
        assert shared_cache().memory.max_bytes == 2 * MIB
    assert shared_cache().memory.max_bytes == 12345
    monkeypatch.setenv(CACHE_MEMORY_ENV_VARIABLE, "lots")
    with pytest.raises(ValueError, match=f"{CACHE_MEMORY_ENV_VARIABLE}='lots'"):
        get_config()


@pytest.mark.parametrize("value", [-1, -0.5, "512", "lots", True, float("nan"), float("inf"), [1]])
def test_a_bad_bound_raises_a_clear_value_error_and_changes_nothing(value):
    with pytest.raises(ValueError, match=r"cache_memory_mb=.*: pass a size in MiB, a number >= 0"):
        set_config(cache_memory_mb=value)
    with pytest.raises(ValueError, match="cache_memory_mb="), config_context(cache_memory_mb=value):
        pass
    assert get_config()["cache_memory_mb"] == 512


def test_unknown_settings_are_refused():
    with pytest.raises(TypeError):
        set_config(cache_memory=1)
    with pytest.raises(TypeError), config_context(memory_mb=1):
        pass


def test_the_settings_belong_to_the_process_not_to_a_thread():
    seen = []
    with config_context(cache_memory_mb=7):
        thread = threading.Thread(target=lambda: seen.append(get_config()["cache_memory_mb"]))
        thread.start()
        thread.join()
    assert seen == [7]
