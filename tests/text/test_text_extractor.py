"""PretrainedFeatureExtractor on Hugging Face text encoders: sentence embeddings, cached."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

from skadapt import PretrainedFeatureExtractor
from tests.text.conftest import minilm, sentiment_task, transformers

SHORT, LONG = "so good", "the battery died after two days and the screen cracked on the first drop"


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    mask = mask.unsqueeze(-1).float()
    return ((states * mask).sum(1) / mask.sum(1)).numpy()


def test_minilm_embeddings_are_its_sentence_transformers_embeddings():
    """Mean of the last token states over the real tokens, as sentence-transformers computes it."""
    path = minilm.get_model_path()
    texts = [SHORT, LONG, "fine"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoder = transformers.AutoModel.from_pretrained(path).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        expected = _masked_mean(encoder(**batch).last_hidden_state, batch["attention_mask"])
    embedder = PretrainedFeatureExtractor(path).fit(texts)
    np.testing.assert_allclose(embedder.transform(texts), expected, rtol=1e-4, atol=1e-5)
    assert embedder.get_feature_names_out().shape == (384,)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_a_texts_embedding_does_not_depend_on_the_padding_of_its_batch(tiny_bert, pooling):
    alone = PretrainedFeatureExtractor(tiny_bert, pooling=pooling, feature_cache=False).fit([SHORT])
    padded = PretrainedFeatureExtractor(tiny_bert, pooling=pooling, feature_cache=False).fit([SHORT])
    np.testing.assert_allclose(padded.transform([SHORT, LONG])[0], alone.transform([SHORT])[0],
                               rtol=1e-5, atol=1e-6)


def _encoder_and_batch(path):
    """The encoder as transformers loads it, and SHORT and LONG as one padded batch."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    encoder = transformers.AutoModel.from_pretrained(path).eval()
    return encoder, tokenizer([SHORT, LONG], padding=True, return_tensors="pt")


def test_a_layer_group_gives_its_token_states_pooled(tiny_bert):
    embedder = PretrainedFeatureExtractor(tiny_bert, layer="backbone.embeddings").fit([SHORT])
    encoder, batch = _encoder_and_batch(tiny_bert)
    with torch.no_grad():
        states = encoder.embeddings(input_ids=batch["input_ids"],
                                    token_type_ids=batch["token_type_ids"])
    np.testing.assert_allclose(embedder.transform([SHORT, LONG]),
                               _masked_mean(states, batch["attention_mask"]), rtol=1e-5, atol=1e-6)


def test_cls_pooling_is_the_first_token_state_of_the_last_layer(tiny_bert):
    embedder = PretrainedFeatureExtractor(tiny_bert, pooling="cls").fit([SHORT])
    encoder, batch = _encoder_and_batch(tiny_bert)
    with torch.no_grad():
        states = encoder(**batch).last_hidden_state
    np.testing.assert_allclose(embedder.transform([SHORT, LONG]), states[:, 0].numpy(), rtol=1e-5,
                               atol=1e-6)


def test_the_encoder_runs_once_per_distinct_text(tiny_bert):
    texts, _ = sentiment_task(20)
    embedder = PretrainedFeatureExtractor(tiny_bert, batch_size=8).fit(texts)  # fit embeds one
    runs = []
    embedder.network_.module.backbone.register_forward_pre_hook(lambda *_: runs.append(1))
    first = embedder.transform(texts)
    n_batches = len(runs)
    assert n_batches == int(np.ceil(len(set(texts[1:])) / 8))
    np.testing.assert_array_equal(embedder.transform(texts[::-1]), first[::-1])  # all cached
    assert len(runs) == n_batches


def test_max_length_truncates_and_is_part_of_the_cache_key(tiny_bert):
    full = PretrainedFeatureExtractor(tiny_bert, max_length=64).fit([LONG]).transform([LONG])
    cut = PretrainedFeatureExtractor(tiny_bert, max_length=4).fit([LONG]).transform([LONG])
    assert not np.allclose(full, cut)
    only_first_tokens = PretrainedFeatureExtractor(tiny_bert, max_length=4, feature_cache=False)
    np.testing.assert_allclose(only_first_tokens.fit([LONG]).transform([LONG]), cut, rtol=1e-6)


def test_a_linear_probe_on_minilm_embeddings_learns_the_toy_sentiment_task():
    texts, y = sentiment_task(60)
    probe = make_pipeline(PretrainedFeatureExtractor(minilm.get_model_path()),
                          LogisticRegression(max_iter=1000))
    assert cross_val_score(probe, np.asarray(texts), y, cv=3).mean() >= 0.9


def test_bad_texts_and_text_parameters_are_named(tiny_bert):
    with pytest.raises(ValueError, match="empty texts at positions 1.*empty_text='allow'"):
        PretrainedFeatureExtractor(tiny_bert).fit(["fine", ""])
    allowed = PretrainedFeatureExtractor(tiny_bert, empty_text="allow").fit(["fine", None])
    np.testing.assert_array_equal(allowed.transform([None]), allowed.transform([""]))
    with pytest.raises(ValueError, match="'max_length' parameter .* Got 1 instead"):
        PretrainedFeatureExtractor(tiny_bert, max_length=1).fit(["fine"])
    with pytest.raises(ValueError, match="weights="):
        PretrainedFeatureExtractor(tiny_bert, weights="DEFAULT").fit(["fine"])
