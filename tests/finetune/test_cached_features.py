"""The cached frozen-backbone features: the head's input for every sample, computed once."""

import numpy as np
import torch
from torch import nn

from skadapt.finetune._adapters import adapt_inputs
from skadapt.finetune._cacheability import head_only_module
from skadapt.finetune._cached_features import cached_backbone_features, cached_embeddings
from skadapt.finetune._embedding_cache import EmbeddingCache
from skadapt.finetune._transforms import make_transform
from skadapt.networks import resolve_network
from tests.finetune.conftest import TinyCNN


def _network(checkpoint, n_outputs=2):
    return resolve_network(TinyCNN, checkpoint, n_outputs=n_outputs)


def test_head_of_cached_features_is_the_network_output(tiny_checkpoint, images):
    X, _ = images
    network = _network(tiny_checkpoint)
    features = cached_backbone_features(network, adapt_inputs(X), None, cache=None,
                                        batch_size=16, num_workers=0, device="cpu")
    assert features.shape == (len(X), 16) and features.dtype == torch.float32
    network.module.eval()
    with torch.no_grad():
        torch.testing.assert_close(head_only_module(network)(features),
                                   network.module(torch.as_tensor(X)), rtol=1e-5, atol=1e-5)
    assert head_only_module(network) is network.module.fc


def test_a_dropout_feeding_the_head_is_part_of_the_head_module():
    network = resolve_network("mobilenet_v3_small", n_outputs=3)
    X = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    features = cached_backbone_features(network, adapt_inputs(X), None, cache=None,
                                        batch_size=4, num_workers=0, device="cpu")
    head = head_only_module(network)
    assert isinstance(head[0], nn.Dropout) and not head[0].inplace
    assert head[1] is network.module.classifier[3]
    network.module.eval()
    head.eval()
    with torch.no_grad():
        torch.testing.assert_close(head(features), network.module(torch.as_tensor(X)),
                                   rtol=1e-4, atol=1e-5)
    kept = features.clone()
    head.train()
    head(features)
    torch.testing.assert_close(features, kept, rtol=0, atol=0)


def test_new_heads_reuse_the_features_and_new_preprocessing_does_not(tiny_checkpoint, images):
    X, _ = images
    cache = EmbeddingCache()
    inputs = adapt_inputs(X)
    run = dict(cache=cache, batch_size=32, num_workers=0, device="cpu")
    first = cached_backbone_features(_network(tiny_checkpoint), inputs, None, **run)
    second = cached_backbone_features(_network(tiny_checkpoint, n_outputs=5), inputs, None, **run)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    assert (cache.stats.misses, cache.stats.hits) == (len(X), len(X))
    normalize = make_transform("array", train=False, mean=(0.5, 0.5, 0.5), std=(2.0, 2.0, 2.0))
    cached_backbone_features(_network(tiny_checkpoint), inputs, normalize, **run)
    assert cache.stats.misses == 2 * len(X)


def test_the_features_follow_the_precision_and_are_cached_apart(tiny_checkpoint, images):
    X, _ = images
    cache = EmbeddingCache()
    run = dict(cache=cache, batch_size=32, num_workers=0, device="cpu")
    full = cached_backbone_features(_network(tiny_checkpoint), adapt_inputs(X), None, **run)
    half = cached_backbone_features(_network(tiny_checkpoint), adapt_inputs(X), None,
                                    precision="bf16-mixed", **run)
    assert cache.stats.misses == 2 * len(X)  # bfloat16 features never stand in for float32 ones
    assert 0 < (half - full).abs().max() < 0.1  # computed under bfloat16 autocast


def test_training_flags_are_restored(tiny_checkpoint, images):
    X, _ = images
    network = _network(tiny_checkpoint)
    network.module.train()
    network.module.stage1[1].eval()  # as the fine-tuner keeps frozen BatchNorm layers
    flags = [m.training for m in network.module.modules()]
    cached_backbone_features(network, adapt_inputs(X[:4]), None, cache=None, batch_size=4,
                             num_workers=0, device="cpu")
    assert [m.training for m in network.module.modules()] == flags


def test_each_distinct_sample_is_computed_once_and_rows_keep_their_order():
    X = np.repeat(np.arange(4, dtype=np.float32)[:, None], 3, axis=1)[[0, 1, 0, 2, 1, 3]]
    batches = []

    def forward(x):
        batches.append(len(x))
        return x.numpy() * 2

    cache = EmbeddingCache()
    run = dict(cache=cache, computation="double", batch_size=2, num_workers=0)
    first = cached_embeddings(forward, adapt_inputs(X), None, **run)
    np.testing.assert_array_equal(first, X * 2)
    assert first.dtype == np.float32 and sum(batches) == 4, "4 distinct rows of 6"
    again = cached_embeddings(forward, adapt_inputs(X[::-1].copy()), None, **run)
    np.testing.assert_array_equal(again, X[::-1] * 2)
    assert sum(batches) == 4, "all cached"
    other = cached_embeddings(forward, adapt_inputs(X), None, **{**run, "computation": "other"})
    assert sum(batches) == 8 and np.array_equal(other, first), "another computation: recomputed"
