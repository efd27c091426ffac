"""PretrainedFeatureExtractor and the fine-tuner's cached frozen-backbone path."""

import pickle
import re

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone
from sklearn.datasets import load_files
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from torch import nn

from benchmarks.cifar_resnet import SHARED, CifarResNet, checkpoint_path
from skadapt.finetune._cache import EmbeddingCache, shared_cache
from skadapt.finetune._extractor import (
    PretrainedFeatureExtractor,
    cache_applicable,
    cached_backbone_features,
    head_only_module,
    why_cache_not_applicable,
)
from skadapt.finetune._inputs import adapt_inputs, make_transform
from skadapt.networks import resolve_network
from tests.finetune.conftest import TinyCNN, color_task

HYMENOPTERA = SHARED / "data" / "hymenoptera_data"


@pytest.fixture(autouse=True)
def cache():
    """The process-wide cache, emptied, with fresh counts, for every test."""
    cache = shared_cache()
    cache.clear()
    cache.reset_stats()
    yield cache
    cache.clear()


def _reference(checkpoint) -> TinyCNN:
    model = TinyCNN()
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    return model.eval()


def _features(model: TinyCNN, X) -> np.ndarray:
    with torch.no_grad():
        x = model.stage3(model.stage2(model.stage1(model.stem(torch.as_tensor(X)))))
        return model.pool(x).flatten(1).numpy()


def _save_images(folder, X):
    """The arrays of color_task as PNG files (values clipped into 0..255)."""
    paths = []
    for i, image in enumerate(X):
        pixels = np.clip(image.transpose(1, 2, 0) * 40 + 128, 0, 255).astype(np.uint8)
        path = folder / f"img{i}.png"
        PIL.Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


# --------------------------------------------------------------------------- embeddings
def test_embeddings_are_what_the_network_feeds_its_head(tiny_checkpoint, images):
    X, _ = images
    embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint).fit(X)
    Z = embedder.transform(X)
    assert Z.dtype == np.float32 and Z.shape == (len(X), 16)
    np.testing.assert_allclose(Z, _features(_reference(tiny_checkpoint), X), rtol=1e-5,
                               atol=1e-6)
    assert embedder.n_features_out_ == 16
    assert embedder.get_feature_names_out().tolist() == [f"emb{i}" for i in range(16)]


def test_a_linear_probe_pipeline_learns(tiny_checkpoint, images):
    X, y = images
    probe = make_pipeline(PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint),
                          LogisticRegression(max_iter=2000))
    X_test, y_test = color_task(n=64, seed=1)
    assert probe.fit(X, y).score(X_test, y_test) > 0.9


def test_pandas_output_names_the_embedding_columns(tiny_checkpoint, images, tmp_path):
    X, _ = images
    paths = _save_images(tmp_path, X[:6])
    frame = pd.DataFrame({"photo": paths, "other": range(6)}, index=[f"s{i}" for i in range(6)])
    embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, image_size=16,
                                          path_column="photo").set_output(transform="pandas")
    out = embedder.fit_transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == [f"emb{i}" for i in range(16)]
    assert list(out.index) == list(frame.index)


def test_files_and_pil_images_of_the_same_pictures_embed_alike(tiny_checkpoint, images, tmp_path):
    X, _ = images
    paths = _save_images(tmp_path, X[:5])
    embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, image_size=16)
    from_files = embedder.fit(paths).transform(paths)
    pictures = [PIL.Image.open(path).convert("RGB") for path in paths]
    np.testing.assert_allclose(embedder.transform(pictures), from_files, rtol=1e-5, atol=1e-6)


def test_a_layer_group_gives_its_pooled_output(tiny_checkpoint, images):
    X, _ = images
    reference = _reference(tiny_checkpoint)
    with torch.no_grad():
        stage2 = reference.stage2(reference.stage1(reference.stem(torch.as_tensor(X))))
    for pooling, expected in (("avg", stage2.mean((2, 3))), ("max", stage2.amax((2, 3)))):
        embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, layer="stage2",
                                              pooling=pooling).fit(X)
        np.testing.assert_allclose(embedder.transform(X), expected.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"layer='stage9'.*\['stem', 'stage1', 'stage2'"):
        PretrainedFeatureExtractor(TinyCNN, layer="stage9").fit(X)


def test_torchvision_models_by_name():
    X = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    assert PretrainedFeatureExtractor("resnet18").fit_transform(X).shape == (3, 512)
    assert PretrainedFeatureExtractor("resnet18", layer="layer2").fit_transform(X).shape == (3, 128)


def test_tabular_rows_through_a_users_mlp():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3))
    X = np.random.default_rng(0).normal(size=(10, 5)).astype(np.float32)
    embedder = PretrainedFeatureExtractor(mlp).fit(X)
    with torch.no_grad():
        expected = mlp[1](mlp[0](torch.as_tensor(X))).numpy()
    np.testing.assert_allclose(embedder.transform(X), expected, rtol=1e-5, atol=1e-6)
    assert embedder.n_features_in_ == 5
    with pytest.raises(ValueError, match="X has 4 features, but PretrainedFeatureExtractor is "
                                         "expecting 5"):
        embedder.transform(X[:, :4])


# --------------------------------------------------------------------------- caching
def _forward_sizes(embedder):
    sizes = []
    embedder.network_.module.register_forward_pre_hook(lambda _m, args: sizes.append(len(args[0])))
    return sizes


def test_the_backbone_runs_once_per_distinct_sample(tiny_checkpoint, images, cache):
    X, _ = images
    embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, batch_size=32).fit(X)
    sizes = _forward_sizes(embedder)
    first = embedder.transform(X)
    assert sum(sizes) == len(X) - 1, "the sample seen in fit is already cached"
    doubled = embedder.transform(np.concatenate([X, X[:10]]))
    assert sum(sizes) == len(X) - 1
    np.testing.assert_array_equal(doubled[: len(X)], first)
    np.testing.assert_array_equal(doubled[len(X):], first[:10])
    assert cache.stats.misses == len(X)


def test_grid_search_folds_and_grid_points_share_the_embeddings(tiny_checkpoint, images, cache):
    X, y = images
    probe = make_pipeline(PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint),
                          LogisticRegression(max_iter=2000))
    search = GridSearchCV(probe, {"logisticregression__C": [0.1, 1.0, 10.0]}, cv=4).fit(X, y)
    assert search.best_score_ > 0.8
    assert cache.stats.misses == len(X), "each of the 96 images went through the backbone once"
    assert cache.stats.hits > 10 * len(X)


def test_no_cache_means_no_lookups_and_the_same_embeddings(tiny_checkpoint, images, cache):
    X, _ = images
    cached = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint).fit_transform(X)
    cache.reset_stats()
    plain = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, cache=False)
    np.testing.assert_allclose(plain.fit_transform(X), cached, rtol=1e-6, atol=1e-7)
    assert cache.stats.hits == cache.stats.misses == 0


def test_other_weights_miss_the_cache(tiny_checkpoint, images, cache, tmp_path):
    X, _ = images
    first = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint).fit_transform(X)
    other = tmp_path / "other.pt"
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["stage3.0.weight"] = state["stage3.0.weight"] * 1.5
    torch.save(state, other)
    cache.reset_stats()
    second = PretrainedFeatureExtractor(TinyCNN, weights=other).fit_transform(X)
    assert cache.stats.misses == len(X), "only the sample embedded in fit is found again"
    assert not np.allclose(first, second)
    np.testing.assert_allclose(second, _features(_reference(other), X), rtol=1e-5, atol=1e-6)


def test_other_preprocessing_layer_or_pooling_miss_the_cache(tiny_checkpoint, images, cache):
    X, _ = images
    PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint).fit_transform(X)
    for changed in (dict(mean=(0.1, 0.1, 0.1)), dict(image_size=12), dict(layer="stage3"),
                    dict(pooling="max")):
        cache.reset_stats()
        PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, **changed).fit_transform(X)
        assert cache.stats.misses == len(X), changed


def test_an_edited_image_file_is_embedded_again(tiny_checkpoint, images, tmp_path, cache):
    X, _ = images
    paths = _save_images(tmp_path, X[:4])
    embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, image_size=16)
    before = embedder.fit_transform(paths)
    PIL.Image.new("RGB", (16, 16), "white").save(paths[2])
    cache.reset_stats()
    after = embedder.transform(paths)
    assert cache.stats.misses == 1 and cache.stats.hits == 3
    np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 1, 3]])
    fresh = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, image_size=16,
                                       cache=False).fit_transform(paths)
    np.testing.assert_allclose(after, fresh, rtol=1e-6, atol=1e-7)


def test_the_disk_cache_serves_a_process_with_empty_memory(tiny_checkpoint, images, tmp_path):
    X, _ = images
    embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, cache_dir=tmp_path)
    first = embedder.fit_transform(X)
    disk = shared_cache(tmp_path)
    disk.clear()  # the memory store is the process's: as if a new process started
    disk.reset_stats()
    np.testing.assert_array_equal(embedder.transform(X), first)
    assert disk.stats.disk_hits == len(X) and disk.stats.misses == 0


# --------------------------------------------------------------------------- sklearn contract
def test_clone_params_pickle_and_not_fitted(tiny_checkpoint, images):
    X, _ = images
    embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, layer="stage3",
                                          batch_size=7, device="cpu")
    assert clone(embedder).get_params() == embedder.get_params()
    with pytest.raises(NotFittedError):
        embedder.transform(X)
    with pytest.raises(NotFittedError):
        embedder.get_feature_names_out()
    embedder.fit(X)
    restored = pickle.loads(pickle.dumps(embedder))
    np.testing.assert_array_equal(restored.transform(X), embedder.transform(X))
    assert not hasattr(clone(embedder), "network_")


def test_cross_validation_of_a_probe_with_pandas_output(tiny_checkpoint, images):
    X, y = images
    probe = make_pipeline(PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint),
                          LogisticRegression(max_iter=2000)).set_output(transform="pandas")
    assert cross_val_score(probe, X, y, cv=3).mean() > 0.8


@pytest.mark.parametrize("params, error, match", [
    (dict(pooling="mean"), ValueError, "pooling='mean'"),
    (dict(batch_size=0), ValueError, "batch_size=0"),
    (dict(num_workers=-1), ValueError, "num_workers=-1"),
    (dict(cache="yes"), TypeError, "cache='yes'"),
    (dict(cache=False, cache_dir="somewhere"), ValueError, "cache_dir is set but cache=False"),
    (dict(layer=3), TypeError, "layer=3"),
    (dict(device="gpu0"), ValueError, "device='gpu0'"),
])
def test_bad_parameters_fail_in_fit_with_a_clear_message(images, params, error, match):
    X, _ = images
    with pytest.raises(error, match=match):
        PretrainedFeatureExtractor(TinyCNN, **params).fit(X)


def test_images_of_unknown_size_are_a_clear_error(tmp_path, images):
    paths = _save_images(tmp_path, images[0][:2])
    with pytest.raises(ValueError, match="image_size"):
        PretrainedFeatureExtractor(TinyCNN).fit(paths)


def test_a_network_that_cannot_take_x_fails_in_fit_naming_the_shape():
    mlp = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3))
    # checked against the first layer before torch runs
    with pytest.raises(ValueError, match=r"X has 4 features, the network's first layer \(an "
                                         r"nn.Linear\) expects 5"):
        PretrainedFeatureExtractor(mlp).fit(np.ones((3, 4), dtype=np.float32))
    # what the first layer cannot tell (a flattening network) still fails naming the shape
    flat = nn.Sequential(nn.Flatten(), nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3))
    with pytest.raises(ValueError, match=r"shape \(1, 2, 2\).*mat1 and mat2"):
        PretrainedFeatureExtractor(flat).fit(np.ones((3, 1, 2, 2), dtype=np.float32))


def test_progress_bar_on_request(tiny_checkpoint, images, capsys):
    X, _ = images
    PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint).fit_transform(X)
    assert "embedding" not in capsys.readouterr().err
    shared_cache().clear()
    PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, progress=True).fit_transform(X)
    assert "embedding" in capsys.readouterr().err


# --------------------------------------------------------------------------- fine-tuner's path
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


def test_training_flags_are_restored(tiny_checkpoint, images):
    X, _ = images
    network = _network(tiny_checkpoint)
    network.module.train()
    network.module.stage1[1].eval()  # as the fine-tuner keeps frozen BatchNorm layers
    flags = [m.training for m in network.module.modules()]
    cached_backbone_features(network, adapt_inputs(X[:4]), None, cache=None, batch_size=4,
                             num_workers=0, device="cpu")
    assert [m.training for m in network.module.modules()] == flags


def test_files_go_through_the_transform(tiny_checkpoint, images, tmp_path):
    X, _ = images
    paths = _save_images(tmp_path, X[:5])
    transform = make_transform("files", train=False, image_size=16)
    features = cached_backbone_features(_network(tiny_checkpoint), adapt_inputs(paths), transform,
                                        cache=None, batch_size=2, num_workers=0, device="cpu")
    embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, image_size=16)
    np.testing.assert_allclose(features.numpy(), embedder.fit_transform(paths), rtol=1e-5,
                               atol=1e-6)


class _AfterHead(nn.Module):
    """Scales its head's output: the head is not the network's last operation."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.body(x))) * 2


class _FunctionalDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 32)
        self.fc = nn.Linear(32, 2)

    def forward(self, x):
        return self.fc(F.dropout(torch.relu(self.body(x)), 0.5, self.training))


class _CountsInTraining(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.fc = nn.Linear(6, 2)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        if self.training:
            self.calls += 1
        return self.fc(self.body(x))


def _resolved(module):
    return resolve_network(module, n_outputs=2)


def test_cache_applies_to_last_linear_heads_on_deterministic_backbones(tiny_checkpoint):
    assert cache_applicable(_network(tiny_checkpoint))
    assert cache_applicable(_network(tiny_checkpoint), example_input=torch.randn(2, 3, 16, 16))
    assert cache_applicable(resolve_network(nn.Sequential(nn.Linear(4, 8), nn.ReLU(),
                                                          nn.Dropout(0.3), nn.Linear(8, 3))))


@pytest.mark.parametrize("module, match", [
    (nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.ReLU(), nn.Linear(8, 3)),
     r"layers \['1'\] are random in training mode"),
    (nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8, track_running_stats=False), nn.Linear(8, 3)),
     "no running statistics"),
])
def test_cache_does_not_apply_to_random_or_batch_dependent_backbones(module, match):
    reason = why_cache_not_applicable(_resolved(module))
    assert reason is not None and re.search(match, reason), reason
    assert not cache_applicable(_resolved(module))


def _small_vit():
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                             mlp_dim=32, dropout=0.2, attention_dropout=0.2)


@pytest.mark.parametrize("model, size", [("efficientnet_b0", 224), (_small_vit, 32)])
def test_frozen_backbones_with_dropout_and_stochastic_depth_are_cacheable(model, size):
    """Their stochastic depth and dropout are off while frozen (frozen means inference mode), so
    training-time features are the inference-time ones: checked by running the network."""
    torch.manual_seed(0)
    network = resolve_network(model if isinstance(model, str) else model(), n_outputs=2)
    assert why_cache_not_applicable(network, example_input=torch.randn(2, 3, size, size)) is None


def test_squeezenets_conv_head_is_not_cacheable():
    reason = why_cache_not_applicable(resolve_network("squeezenet1_1", n_outputs=2))
    assert "Conv2d" in reason


@pytest.mark.parametrize("module, match", [
    (_AfterHead(), "not its head's"),
    (_FunctionalDropout(), "computes differently in training mode"),
])
def test_running_an_example_finds_what_the_structure_hides(module, match):
    network = _resolved(module)
    assert cache_applicable(network), "the structure alone looks fine"
    reason = why_cache_not_applicable(network, example_input=lambda: torch.randn(8, 4))
    assert reason is not None and match in reason


def test_the_example_run_leaves_buffers_and_flags_as_they_were():
    network = _resolved(_CountsInTraining())
    network.module.train()
    assert cache_applicable(network, example_input=torch.randn(3, 4))
    assert float(network.module.calls) == 0 and network.module.training


# --------------------------------------------------------------------------- real data
@pytest.mark.slow
@pytest.mark.skipif(not HYMENOPTERA.is_dir(),
                    reason=f"real data not found at {HYMENOPTERA} (../shared is absent)")
def test_resnet20_embeddings_of_ants_and_bees_make_a_linear_probe():
    def folder(split):
        bunch = load_files(HYMENOPTERA / split, load_content=False, shuffle=False)
        return list(bunch.filenames), np.asarray(bunch.target_names)[bunch.target]

    (X_train, y_train), (X_val, y_val) = folder("train"), folder("val")
    embedder = PretrainedFeatureExtractor(CifarResNet(20), weights=str(checkpoint_path(20)),
                                          image_size=64, num_workers=2)
    probe = make_pipeline(embedder, LogisticRegression(max_iter=5000)).fit(X_train, y_train)
    assert probe.score(X_val, y_val) > 0.6
    # the fine-tuner's path computes the same features, from the same cache key content
    network = resolve_network(CifarResNet(20), str(checkpoint_path(20)), n_outputs=2)
    transform = make_transform("files", train=False, image_size=64)
    features = cached_backbone_features(network, adapt_inputs(X_val[:20]), transform, cache=None,
                                        batch_size=20, num_workers=0, device="cpu")
    np.testing.assert_allclose(features.numpy(), probe[0].transform(X_val[:20]), rtol=1e-4,
                               atol=1e-5)


class _SkipsALayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.unused = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.stem(x)))


def test_a_layer_the_forward_never_runs_is_a_clear_error():
    X = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="layer Linear did not run in the network's forward pass"):
        PretrainedFeatureExtractor(_SkipsALayer(), layer="unused").fit_transform(X)
