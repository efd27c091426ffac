"""Hugging Face image models through the registry: tiny random ViT and ConvNeXt saved to local
folders with their image-processor configs. Nothing is downloaded."""

import joblib
import numpy as np
import pytest
import torch

from skadapt import PretrainedFeatureExtractor, PretrainedFineTuner
from skadapt.networks import Preprocessing, resolve_network, source_of, takes_texts

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vit")
    torch.manual_seed(0)
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, image_size=32, patch_size=8,
                                    num_labels=5)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def convnext(tmp_path_factory):
    folder = tmp_path_factory.mktemp("convnext")
    torch.manual_seed(0)
    config = transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                                         num_labels=3, image_size=32)
    transformers.ConvNextForImageClassification(config).save_pretrained(folder)
    transformers.ConvNextImageProcessor(size={"shortest_edge": 32}).save_pretrained(folder)
    return folder


def _tiny_task(n=24, size=32, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 3, size, size)).astype(np.float32)
    X[y == 0, 0] += 1.5
    X[y == 1, 2] += 1.5
    return X, np.where(y == 0, "red", "blue")


def test_image_folders_go_to_the_vision_source_and_keep_their_weights(vit):
    assert source_of(vit).name == "huggingface-vision" and not takes_texts(vit)
    network = resolve_network(vit, n_outputs=3)
    assert network.head == ("head",) and network.module.head.out_features == 3
    assert [group.name for group in network.groups] == [
        "backbone.embeddings", "backbone.layers.0", "backbone.layers.1"]
    assert network.groups[-1].params[-1].startswith("backbone.layernorm")  # final norm joins last
    saved = transformers.ViTForImageClassification.from_pretrained(vit).vit.state_dict()
    state = network.module.backbone.state_dict()
    for key, value in state.items():
        assert torch.equal(value, saved[key]), key
    assert network.preprocessing == Preprocessing(
        resize_size=32, crop_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        interpolation="bilinear")


def test_convnext_stages_are_the_groups_and_crop_pct_sets_the_resize(convnext):
    network = resolve_network(convnext, n_outputs=2)
    assert [group.name for group in network.groups] == [
        "backbone.embeddings", "backbone.encoder.stages.0", "backbone.encoder.stages.1"]
    assert (network.preprocessing.resize_size, network.preprocessing.crop_size) == (36, 32)
    assert network.preprocessing.interpolation == "bicubic"


def test_weights_and_head_do_not_apply(vit):
    with pytest.raises(ValueError, match="weights are in its folder"):
        resolve_network(vit, weights="DEFAULT")
    with pytest.raises(ValueError, match="head=None"):
        resolve_network(vit, head="classifier")


@pytest.mark.parametrize("which", ["vit", "convnext"])
def test_a_frozen_encoder_trains_its_head_on_cached_features(which, request):
    folder = request.getfixturevalue(which)
    X, y = _tiny_task()
    clf = PretrainedFineTuner(folder, freeze="backbone", augment=False, max_epochs=2,
                              random_state=0).fit(X, y)
    assert clf.training_path_ == "cached backbone features"
    assert clf.predict(X).shape == (len(X),)


def test_fit_predict_freeze_by_groups_layer_decay_and_round_trip(vit, tmp_path):
    X, y = _tiny_task()
    clf = PretrainedFineTuner(vit, freeze=1, layer_decay=0.5, lr=1e-2, max_epochs=2,
                              batch_size=8, random_state=0).fit(X, y)
    table = clf.layer_table().set_index("group")
    assert table.index[table.trainable > 0].tolist() == ["head", "backbone.layers.1"]
    lrs = {group["name"]: group["base_lr"] for group in clf.optimizer_.param_groups}
    assert lrs == {"head": 1e-2, "backbone.layers.1": 1e-2}
    assert table.loc["backbone.layers.0", "lr"] == 0.0  # frozen
    joblib.dump(clf, tmp_path / "vit.joblib")
    again = joblib.load(tmp_path / "vit.joblib")
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), rtol=1e-5)


def test_image_files_use_the_processor_config(vit, tmp_path):
    from PIL import Image

    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (48, 40), color=(200 * (i % 2), 0, 100)).save(path)
        paths.append(str(path))
    embedder = PretrainedFeatureExtractor(vit).fit(paths)  # no image_size needed
    assert embedder.transform(paths).shape == (4, 32)


def test_shift_profile_follows_the_encoder_layers(convnext):
    from skadapt import shift_profile

    X, _ = _tiny_task(n=20)
    profile = shift_profile(X[:10], X[10:] + 1.0, model=convnext, cv=2, random_state=0)
    assert profile.group.tolist() == ["backbone.embeddings", "backbone.encoder.stages.0",
                                      "backbone.encoder.stages.1"]
    assert profile.auc.notna().all()


def _dinov2():
    return (transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, image_size=32, patch_size=8),
            transformers.Dinov2Model,
            transformers.BitImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32}))


def _resnet():
    return (transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                      layer_type="basic"),
            transformers.ResNetModel, transformers.ConvNextImageProcessor(size={"shortest_edge": 32}))


def _swin():
    return (transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=8, depths=[1, 1],
                                    num_heads=[2, 2], window_size=4),
            transformers.SwinModel,
            transformers.ViTImageProcessor(size={"height": 32, "width": 32}))


@pytest.mark.parametrize("build, groups", [
    (_dinov2, ["backbone.embeddings", "backbone.encoder.layer.0", "backbone.encoder.layer.1"]),
    (_resnet, ["backbone.embedder", "backbone.encoder.stages.0", "backbone.encoder.stages.1"]),
    (_swin, ["backbone.embeddings", "backbone.encoder.layers.0", "backbone.encoder.layers.1"]),
], ids=["dinov2", "resnet", "swin"])
def test_other_families_resolve_with_their_layers_as_groups(build, groups, tmp_path):
    config, model_class, processor = build()
    torch.manual_seed(0)
    model_class(config).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    network = resolve_network(tmp_path, n_outputs=2)
    assert [group.name for group in network.groups] == groups
    assert network.preprocessing.crop_size == 32
    with torch.no_grad():
        assert network.module.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 2)
