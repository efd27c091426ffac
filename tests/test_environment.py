"""Numbers read from SKADAPT_* environment variables: one parser, errors that name the variable."""

import pytest

from skadapt._environment import environment_number
from skadapt.networks import _memo


def test_a_set_variable_wins_over_the_default(monkeypatch):
    monkeypatch.setenv("SKADAPT_TEST_N", "7")
    assert environment_number("SKADAPT_TEST_N", 3, unit="things", integer=True) == 7
    monkeypatch.delenv("SKADAPT_TEST_N")
    assert environment_number("SKADAPT_TEST_N", 3, unit="things", integer=True) == 3


@pytest.mark.parametrize(("text", "integer", "zero"), [
    ("many", False, None), ("nan", False, "off"), ("inf", False, "off"), ("-1", False, "off"),
    ("0", False, None), ("2.5", True, "off"),
])
def test_a_bad_value_names_the_variable_and_what_it_takes(monkeypatch, text, integer, zero):
    monkeypatch.setenv("SKADAPT_TEST_N", text)
    bound = ">= 0" if zero else "> 0"
    with pytest.raises(ValueError, match=rf"SKADAPT_TEST_N='{text}': set it to .* {bound}"):
        environment_number("SKADAPT_TEST_N", 3, unit="things", integer=integer, zero=zero)


def test_zero_is_allowed_where_it_means_something(monkeypatch):
    monkeypatch.setenv("SKADAPT_TEST_N", "0")
    assert environment_number("SKADAPT_TEST_N", 3, unit="things", zero="off") == 0


def test_the_network_memo_reads_its_bounds(monkeypatch):
    monkeypatch.setenv(_memo.SIZE_ENV_VARIABLE, "2")
    monkeypatch.setenv(_memo.MB_ENV_VARIABLE, "1.5")
    memo = _memo._NetworkMemo()
    assert (memo.max_networks, memo.max_bytes) == (2, int(1.5 * 2**20))
    monkeypatch.setenv(_memo.SIZE_ENV_VARIABLE, "-2")
    with pytest.raises(ValueError, match="SKADAPT_NETWORK_MEMO_SIZE='-2'"):
        _memo._NetworkMemo()
