"""timm models through the registry: ``model="timm/<name>"``, with timm's tiny ``test_*`` models
built with random weights and saved locally. Nothing is downloaded."""

import joblib
import numpy as np
import pytest
import safetensors.torch
import torch

from skadapt import PretrainedFeatureExtractor, PretrainedFineTuner, shift_profile
from skadapt.networks import Preprocessing, resolve_network, source_of

timm = pytest.importorskip("timm", reason="the optional timm extra is not installed")

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# timm name -> (its classifier, its coarse groups as skadapt names them)
MODELS = {
    "test_vit": ("head", ["patch_embed"] + [f"blocks.{i}" for i in range(6)]),
    "test_efficientnet": ("classifier", ["conv_stem"] + [f"blocks.{i}" for i in range(5)]),
    "test_convnext": ("head.fc", ["stem"] + [f"stages.{i}" for i in range(4)] + ["head.norm"]),
}


def _tiny_task(n=24, size=32, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    X = rng.normal(size=(n, 3, size, size)).astype(np.float32)
    X[y == 0, 0] += 1.5
    X[y == 1, 2] += 1.5
    return X, np.where(y == 0, "red", "blue")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A 'pretrained' test_convnext (random weights) saved as .safetensors and as .pth."""
    torch.manual_seed(0)
    model = timm.create_model("test_convnext")
    folder = tmp_path_factory.mktemp("timm")
    safetensors.torch.save_file(model.state_dict(), folder / "convnext.safetensors")
    torch.save({"state_dict": model.state_dict()}, folder / "convnext.pth")
    return model, folder


def _backbone_equal(network, source) -> None:
    head = tuple(h + "." for h in network.head)
    state = network.module.state_dict()
    compared = [k for k in source.state_dict() if not k.startswith(head)]
    assert compared
    for key in compared:
        assert torch.equal(state[key], source.state_dict()[key]), key


@pytest.mark.parametrize("name", list(MODELS))
def test_timm_names_get_their_classifier_replaced_and_their_own_groups(name):
    head, groups = MODELS[name]
    network = resolve_network(f"timm/{name}", n_outputs=3)
    assert source_of(f"timm/{name}").name == "timm" and network.source == "timm"
    assert network.head == (head,)
    assert network.module.get_submodule(head).out_features == 3
    assert [group.name for group in network.groups] == groups
    backbone = [n for n, _ in network.module.named_parameters() if not n.startswith(head + ".")]
    assert [p for group in network.groups for p in group.params] == backbone
    assert network.preprocessing.crop_size == 160  # from timm's pretrained_cfg, no download
    with torch.no_grad():
        assert network.module.eval()(torch.randn(2, 3, 160, 160)).shape == (2, 3)


def test_the_pretrained_tag_chooses_the_preprocessing():
    network = resolve_network("timm/test_resnet.r160_in1k", n_outputs=2)
    assert network.preprocessing == Preprocessing(
        resize_size=168, crop_size=160, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        interpolation="bilinear")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_load_bit_for_bit_and_the_head_is_new(saved, suffix):
    source, folder = saved
    network = resolve_network("timm/test_convnext", weights=folder / f"convnext{suffix}",
                              n_outputs=2)
    _backbone_equal(network, source)
    assert network.module.head.fc.out_features == 2


def test_a_checkpoint_of_another_architecture_is_a_clear_error(saved):
    _, folder = saved
    with pytest.raises(ValueError, match=r"does not match timm's 'test_vit'.*missing key"):
        resolve_network("timm/test_vit", weights=folder / "convnext.safetensors")
    with pytest.raises(FileNotFoundError, match="pass 'DEFAULT'"):
        resolve_network("timm/test_vit", weights=folder / "absent.safetensors")


def test_default_weights_offline_say_how_to_pass_a_local_file(monkeypatch):
    from timm.models import _builder

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(_builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(_builder, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"could not download timm's pretrained weights for "
                                           r"'test_vit'.*OSError.*pass a local file"):
        resolve_network("timm/test_vit", weights="DEFAULT")


def test_unknown_names_and_options_get_clear_errors():
    with pytest.raises(ValueError, match="did you mean 'timm/resnet18'"):
        resolve_network("timm/resnet18x")
    with pytest.raises(ValueError, match="head=None"):
        resolve_network("timm/test_vit", head="head")
    with pytest.raises(ValueError, match="pass None, 'DEFAULT' or the path"):
        resolve_network("timm/test_vit", weights="IMAGENET1K_V1")


@pytest.mark.parametrize("name", list(MODELS))
def test_a_frozen_timm_backbone_trains_its_head_on_cached_features(name):
    X, y = _tiny_task(size=160 if name == "test_vit" else 32)
    clf = PretrainedFineTuner(f"timm/{name}", freeze="backbone", augment=False, max_epochs=2,
                              random_state=0).fit(X, y)
    assert clf.training_path_ == "cached backbone features"
    gradient = PretrainedFineTuner(f"timm/{name}", freeze="backbone", augment=False,
                                   feature_cache=False, head_solver="gradient", max_epochs=1,
                                   random_state=0).fit(X, y)
    assert gradient.training_path_.startswith("full network")
    assert clf.predict(X).shape == (len(X),)


def test_timm_models_fit_predict_freeze_by_groups_and_round_trip(tmp_path):
    X, y = _tiny_task()
    clf = PretrainedFineTuner("timm/test_efficientnet", freeze=2, layer_decay=0.5, lr=1e-2,
                              max_epochs=2, batch_size=8, random_state=0).fit(X, y)
    table = clf.layer_table().set_index("group")
    trained = table.index[table.trainable > 0].tolist()
    assert trained == ["head", "blocks.3", "blocks.4"]  # timm's last two blocks
    assert table.loc["blocks.3", "lr"] == pytest.approx(table.loc["blocks.4", "lr"] * 0.5)
    lrs = {group["name"]: group["base_lr"] for group in clf.optimizer_.param_groups}
    assert lrs == {"head": 1e-2, "blocks.4": 1e-2, "blocks.3": 5e-3}
    path = tmp_path / "timm.joblib"
    joblib.dump(clf, path)
    again = joblib.load(path)
    np.testing.assert_allclose(again.predict_proba(X), clf.predict_proba(X), rtol=1e-5)


def test_the_extractor_embeds_with_timm_pre_logits_features():
    X, _ = _tiny_task(n=6)
    embedder = PretrainedFeatureExtractor("timm/test_convnext").fit(X)
    features = embedder.transform(X)
    model = embedder.network_.module
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(torch.from_numpy(X)),
                                      pre_logits=True)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_shift_profile_follows_timm_blocks():
    X, _ = _tiny_task(n=20)
    profile = shift_profile(X[:10], X[10:] + 1.0, model="timm/test_resnet", cv=2, random_state=0)
    assert profile.group.tolist() == ["conv1", "layer1", "layer2", "layer3", "layer4"]


def test_a_model_timm_built_keeps_its_options_and_drop_path_is_off_while_frozen(tmp_path):
    torch.manual_seed(0)
    built = timm.create_model("test_vit", img_size=32, drop_path_rate=0.3, drop_rate=0.0)
    assert source_of(built).name == "timm"
    network = resolve_network(built, n_outputs=2)
    assert network.head == ("head",) and network.module is not built
    assert [group.name for group in network.groups][:2] == ["patch_embed", "blocks.0"]
    X, y = _tiny_task()
    # drop-path is random in training mode: frozen blocks run in inference mode, so the frozen
    # backbone's features are deterministic and cacheable
    clf = PretrainedFineTuner(built, freeze="backbone", augment=False, max_epochs=1,
                              random_state=0).fit(X, y)
    assert clf.training_path_ == "cached backbone features"
    path = tmp_path / "vit.pth"
    torch.save(built.state_dict(), path)
    _backbone_equal(resolve_network(built, weights=path), built)


@pytest.mark.parametrize("name, head", [("test_efficientnet", "classifier.fc"),
                                        ("test_resnet", "fc.fc"), ("test_convnext", "head.fc")])
def test_timm_head_dropout_trains_with_the_head_and_keeps_the_cache(name, head):
    # EfficientNet and ResNet apply drop_rate as a function before their classifier: it becomes a
    # Dropout module in front of the new head, the same computation, reproducible on cached features
    built = timm.create_model(name, drop_rate=0.25)
    network = resolve_network(built, n_outputs=2)
    assert network.head == (head,)
    dropout = network.module.get_submodule(head.rpartition(".")[0] + ".drop")
    assert isinstance(dropout, torch.nn.Dropout) and dropout.p == 0.25
    X, y = _tiny_task()
    clf = PretrainedFineTuner(built, augment=False, head_solver="gradient", max_epochs=1,
                              random_state=0).fit(X, y)
    assert clf.training_path_ == "cached backbone features"
    network.module.eval()
    built.eval()
    with torch.no_grad():  # in inference mode the network is the one timm built, new head aside
        x = torch.from_numpy(X[:2])
        features = built.forward_head(built.forward_features(x), pre_logits=True)
        expected = network.module.get_submodule(head)(features)
        np.testing.assert_allclose(network.module(x).numpy(), expected.numpy(), rtol=1e-5,
                                   atol=1e-6)
