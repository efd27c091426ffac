"""PretrainedFeatureExtractor: embeddings of images, arrays and rows, cached."""

import pickle
import warnings

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_files
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from benchmarks.cifar_resnet import SHARED, CifarResNet, checkpoint_path
from skadapt.finetune._adapters import adapt_inputs
from skadapt.finetune._cached_features import cached_backbone_features
from skadapt.finetune._embedding_cache import shared_cache
from skadapt.finetune._extractor import PretrainedFeatureExtractor
from skadapt.finetune._transforms import make_transform
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
    for pooling, expected in (("mean", stage2.mean((2, 3))), ("max", stage2.amax((2, 3)))):
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


def _small_vit():
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                             mlp_dim=32)


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
    plain = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, feature_cache=False)
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
                                       feature_cache=False).fit_transform(paths)
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


def _constraint(name, got):
    return rf"The '{name}' parameter of PretrainedFeatureExtractor must be .* Got {got} instead"


@pytest.mark.parametrize("params, error, match", [
    (dict(pooling="median"), InvalidParameterError, r"The 'pooling' parameter of "
     r"PretrainedFeatureExtractor must be a str among .*'avg' \(deprecated\).* Got 'median'"),
    (dict(batch_size=0), InvalidParameterError, _constraint("batch_size", 0)),
    (dict(batch_size=True), InvalidParameterError, _constraint("batch_size", True)),
    (dict(num_workers=-1), InvalidParameterError, _constraint("num_workers", -1)),
    (dict(image_size=1.5), InvalidParameterError, _constraint("image_size", 1.5)),
    (dict(empty_text="skip"), InvalidParameterError, _constraint("empty_text", "'skip'")),
    (dict(feature_cache="yes"), InvalidParameterError, _constraint("feature_cache", "'yes'")),
    (dict(feature_cache=True), InvalidParameterError, _constraint("feature_cache", True)),
    (dict(cache="yes"), InvalidParameterError, _constraint("cache", "'yes'")),
    (dict(progress=1), InvalidParameterError, _constraint("progress", 1)),
    (dict(layer=3), InvalidParameterError, _constraint("layer", 3)),
    (dict(feature_cache=False, cache_dir="somewhere"), InvalidParameterError,
     "cache_dir is set but feature_cache=False"),
    (dict(device="gpu0"), ValueError, "device='gpu0'"),
])
def test_bad_parameters_fail_in_fit_with_a_clear_message(images, params, error, match):
    X, _ = images
    with pytest.raises(error, match=match):
        PretrainedFeatureExtractor(TinyCNN, **params).fit(X)
    if error is InvalidParameterError:  # what tests of the former checks caught still catches it
        assert issubclass(error, ValueError) and issubclass(error, TypeError)


def test_a_deprecated_cache_false_with_cache_dir_names_cache():
    X, _ = color_task(n=4)
    with pytest.warns(FutureWarning), \
            pytest.raises(InvalidParameterError, match="cache_dir is set but cache=False"):
        PretrainedFeatureExtractor(TinyCNN, cache=False, cache_dir="somewhere").fit(X)


def test_avg_and_cache_still_work_with_a_future_warning(tiny_checkpoint, images, cache):
    X, _ = images
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spellings warn about nothing
        mean = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, layer="stage2",
                                          pooling="mean").fit_transform(X)
    cache.reset_stats()
    avg = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, layer="stage2",
                                     pooling="avg")
    with pytest.warns(FutureWarning, match="pooling='avg' is deprecated.*pass pooling='mean'"):
        avg.fit(X)
    np.testing.assert_array_equal(avg.transform(X), mean)
    assert cache.stats.misses == 0, "'avg' and 'mean' are one cache entry"
    assert avg.pooling == "avg" and clone(avg).get_params()["pooling"] == "avg"

    cache.reset_stats()
    cached = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, layer="stage2",
                                        cache=True)
    with pytest.warns(FutureWarning, match=r"cache=True is deprecated.*feature_cache='auto'"):
        cached.fit(X)
    np.testing.assert_array_equal(cached.transform(X), mean)
    assert cache.stats.hits == len(X) + 1 and cache.stats.misses == 0
    assert clone(cached).get_params()["cache"] is True

    cache.reset_stats()
    uncached = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, layer="stage2",
                                          cache=False)  # wins over feature_cache="auto"
    with pytest.warns(FutureWarning, match="cache=False is deprecated.*feature_cache=False"):
        uncached.fit(X)
    np.testing.assert_allclose(uncached.transform(X), mean, rtol=1e-6, atol=1e-7)  # batching
    assert cache.stats.hits == cache.stats.misses == 0


def test_cls_pooling_refuses_images_and_takes_a_transformers_first_token():
    X = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    for layer in (None, "layer2"):  # (n, d) features, (n, c, h, w) maps
        with pytest.raises(ValueError, match="pooling='cls' takes the first token of a token "
                                             "sequence"):
            PretrainedFeatureExtractor("resnet18", layer=layer, pooling="cls").fit(X)
    torch.manual_seed(0)
    vit = _small_vit()
    embedder = PretrainedFeatureExtractor(vit, layer="encoder.layers.encoder_layer_1",
                                          pooling="cls").fit(X)
    with torch.no_grad():
        tokens = vit.encoder.layers(vit.encoder.dropout(
            torch.cat([vit.class_token.expand(3, -1, -1), vit._process_input(torch.as_tensor(X))],
                      dim=1) + vit.encoder.pos_embedding))
    np.testing.assert_allclose(embedder.transform(X), tokens[:, 0].numpy(), rtol=1e-5, atol=1e-5)


def test_channels_last_maps_are_pooled_over_their_spatial_dimensions():
    from torchvision.models import SwinTransformer

    torch.manual_seed(0)
    swin = SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                           window_size=[2, 2], num_classes=3).eval()
    X = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    embedder = PretrainedFeatureExtractor(swin, layer="features.1").fit(X)
    with torch.no_grad():
        maps = swin.features[1](swin.features[0](torch.as_tensor(X)))  # (n, h, w, c)
    assert maps.shape == (2, 8, 8, 8)
    np.testing.assert_allclose(embedder.transform(X), maps.mean((1, 2)).numpy(), rtol=1e-5,
                               atol=1e-6)


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
def test_files_go_through_the_transform(tiny_checkpoint, images, tmp_path):
    X, _ = images
    paths = _save_images(tmp_path, X[:5])
    transform = make_transform("files", train=False, image_size=16)
    network = resolve_network(TinyCNN, tiny_checkpoint, n_outputs=2)
    features = cached_backbone_features(network, adapt_inputs(paths), transform, cache=None,
                                        batch_size=2, num_workers=0, device="cpu")
    embedder = PretrainedFeatureExtractor(TinyCNN, weights=tiny_checkpoint, image_size=16)
    np.testing.assert_allclose(features.numpy(), embedder.fit_transform(paths), rtol=1e-5,
                               atol=1e-6)


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
