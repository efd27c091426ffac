"""The network sources: torchvision names and user modules, checkpoints, heads and layer groups."""

import urllib.error

import pytest
import safetensors.torch
import torch
import torchvision
from torch import nn

from benchmarks.cifar_resnet import CifarResNet, checkpoint_path
from skadapt.networks import (
    Preprocessing,
    load_checkpoint,
    preprocessing_of,
    resolve_network,
)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Tiny(nn.Module):
    """A user's own small network: a parameter on the root, a container with its own parameter."""

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.body = _Body()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, n_classes)

    def forward(self, x):
        return self.fc(self.pool(self.body(self.stem(x * self.scale))).flatten(1))


class _Body(nn.Module):
    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(1))
        self.block1 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.block2 = nn.Conv2d(6, 6, 1)

    def forward(self, x):
        return self.block2(self.block1(x) + self.shift)


def _trained_tiny(n_classes: int = 10) -> Tiny:
    """A Tiny with non-default weights and BatchNorm statistics, as a trained network has."""
    torch.manual_seed(0)
    model = Tiny(n_classes)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param))
        model(torch.randn(8, 3, 8, 8) * 3 + 1)  # train mode: moves the running statistics
    return model


def _assert_backbone_equal(network, source: nn.Module) -> None:
    """Every tensor outside the head is the source's, bit for bit."""
    head = tuple(h + "." for h in network.head)
    state = network.module.state_dict()
    compared = 0
    for key, value in source.state_dict().items():
        if not key.startswith(head):
            assert torch.equal(state[key], value), key
            compared += 1
    assert compared > 0


def _assert_groups_partition_backbone(network) -> None:
    """Every non-head parameter in exactly one group, groups in named_parameters order."""
    head = tuple(h + "." for h in network.head)
    backbone = [n for n, _ in network.module.named_parameters() if not n.startswith(head)]
    assert [p for group in network.groups for p in group.params] == backbone
    names = [group.name for group in network.groups]
    assert len(set(names)) == len(names)
    for group in network.groups:
        assert group.params and group.modules
        assert not any(m == h or m.startswith(h + ".") for m in group.modules for h in network.head)


# --------------------------------------------------------------------------- torchvision families
# name -> (input side for one eval forward, head names, exact groups or None)
FAMILIES = {
    "resnet18": (64, ("fc",), ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]),
    "mobilenet_v3_small": (64, ("classifier.3",),
                           [f"features.{i}" for i in range(13)] + ["classifier"]),
    "squeezenet1_0": (64, ("classifier.1",), None),
    "vit_b_16": (224, ("heads.head",), ["conv_proj"] + [
        f"encoder.layers.encoder_layer_{i}" for i in range(12)] + ["encoder.ln"]),
    "densenet121": (64, ("classifier",), None),
    "efficientnet_b0": (64, ("classifier.1",), [f"features.{i}" for i in range(9)]),
    "convnext_tiny": (64, ("classifier.2",), [f"features.{i}" for i in range(8)] + ["classifier"]),
    "swin_t": (64, ("head",), [f"features.{i}" for i in range(8)] + ["norm"]),
    "shufflenet_v2_x0_5": (64, ("fc",), ["conv1", "stage2", "stage3", "stage4", "conv5"]),
    "mnasnet0_5": (64, ("classifier.1",), None),
    "regnet_y_400mf": (64, ("fc",), ["stem"] + [f"trunk_output.block{i}" for i in range(1, 5)]),
    "googlenet": (64, ("fc",), None),  # built without the auxiliary classifiers
    "inception_v3": (224, ("fc",), None),
    "vgg11": (64, ("classifier.6",), [f"features.{i}" for i in (0, 3, 6, 8, 11, 13, 16, 18)]
              + ["classifier.0", "classifier.3"]),
    "alexnet": (64, ("classifier.6",), None),
    "maxvit_t": (224, ("classifier.5",), ["stem"] + [f"blocks.{i}" for i in range(4)]
                 + ["classifier"]),
}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_torchvision_family_gets_new_head_and_layer_groups(name):
    side, expected_head, expected_groups = FAMILIES[name]
    torch.manual_seed(0)
    network = resolve_network(name, weights=None, n_outputs=3)

    assert network.head == expected_head
    for head in network.head:
        layer = network.module.get_submodule(head)
        assert getattr(layer, "out_features", getattr(layer, "out_channels", None)) == 3
    with torch.no_grad():
        out = network.module.eval()(torch.randn(1, 3, side, side))
    assert out.shape == (1, 3)

    _assert_groups_partition_backbone(network)
    assert len(network.groups) >= 4
    if expected_groups is not None:
        assert [group.name for group in network.groups] == expected_groups
    # no weights: the family's standard preprocessing, read from its DEFAULT entry offline
    default = torchvision.models.get_model_weights(name).DEFAULT
    assert network.preprocessing == preprocessing_of(default)


def test_vit_container_parameters_join_the_next_group():
    network = resolve_network("vit_b_16", n_outputs=2)
    groups = {group.name: group for group in network.groups}
    assert groups["conv_proj"].params[0] == "class_token"
    assert groups["encoder.layers.encoder_layer_0"].params[0] == "encoder.pos_embedding"


def test_group_holding_the_head_lists_only_its_other_modules():
    network = resolve_network("mobilenet_v3_small", n_outputs=2)
    classifier = network.groups[-1]
    assert classifier.modules == ("classifier.0",)
    assert classifier.params == ("classifier.0.weight", "classifier.0.bias")


# --------------------------------------------------------------------------- layer-group rule
class _Uneven(nn.Module):
    """A small first child, and a second whose biggest grandchild is a leaf."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(2, 2))
        self.b = nn.Sequential(nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)), nn.ReLU(),
                               nn.Linear(32, 32))
        self.out = nn.Linear(32, 1)


def test_groups_split_the_biggest_splittable_group_until_there_are_four():
    network = resolve_network(_Uneven, n_outputs=2)
    assert [g.name for g in network.groups] == ["a", "b.0.0", "b.0.1", "b.2"]
    assert network.head == ("out",)
    _assert_groups_partition_backbone(network)


def test_user_module_groups_and_container_parameters():
    network = resolve_network(Tiny, n_outputs=2)
    # body (the biggest) splits, then body.block1 (bigger than stem)
    assert [g.name for g in network.groups] == [
        "stem", "body.block1.0", "body.block1.1", "body.block2"]
    stem, conv, _, _ = network.groups
    assert stem.params[0] == "scale"  # the root's own parameter joins the next group
    assert conv.params == ("body.shift", "body.block1.0.weight", "body.block1.0.bias")
    assert conv.modules == ("body.block1.0",)
    _assert_groups_partition_backbone(network)


class _OnlyOwnParameters(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(4))
        self.fc = nn.Linear(4, 3)


def test_parameters_owned_by_the_root_alone_form_one_group():
    network = resolve_network(_OnlyOwnParameters, n_outputs=2)
    assert [(g.name, g.params) for g in network.groups] == [("backbone", ("embedding",))]


# --------------------------------------------------------------------------- user modules
def test_user_instance_is_copied_not_mutated():
    model = _trained_tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    network = resolve_network(model, n_outputs=2)
    assert network.module is not model
    assert model.fc.out_features == 10 and network.module.fc.out_features == 2
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    _assert_backbone_equal(network, model)
    assert network.module.fc.weight.data_ptr() != model.fc.weight.data_ptr()


def test_explicit_head_and_conv_heads():
    class ConvOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.out = nn.Conv2d(4, 10, 1, bias=False)

        def forward(self, x):
            return self.out(self.features(x)).mean((2, 3))

    with pytest.raises(ValueError, match="no nn.Linear.*pass head="):
        resolve_network(ConvOnly, n_outputs=2)
    network = resolve_network(ConvOnly, n_outputs=2, head="out")
    new = network.module.out
    assert isinstance(new, nn.Conv2d) and new.out_channels == 2 and new.in_channels == 4
    assert new.bias is None and new.kernel_size == (1, 1)
    assert network.module(torch.randn(2, 3, 8, 8)).shape == (2, 2)


def test_bad_head_names_get_candidates():
    with pytest.raises(ValueError, match=r"head='stemm'.*'stem'"):
        resolve_network(Tiny, head="stemm")
    with pytest.raises(ValueError, match=r"head='stem' is a Sequential.*'stem.0'"):
        resolve_network(Tiny, head="stem")


def test_torchvision_instance_uses_the_family_head():
    network = resolve_network(torchvision.models.squeezenet1_1(), n_outputs=4)
    assert network.head == ("classifier.1",)
    assert network.module.classifier[1].out_channels == 4


def test_googlenet_without_aux_classifiers_has_one_head():
    model = torchvision.models.googlenet(aux_logits=False, init_weights=True)
    assert resolve_network(model).head == ("fc",)


@pytest.mark.parametrize("model, error, message", [
    (3, TypeError, "model must be a torchvision model name"),
    (CifarResNet(20).state_dict(), TypeError, "got a OrderedDict"),
    (nn.Linear, TypeError, r"could not build Linear\(\) with no arguments"),
    ("resnet181", ValueError, "did you mean 'resnet18'"),
    ("ResNet50", ValueError, "did you mean 'resnet50'"),
    ("fasterrcnn_resnet50_fpn", ValueError, "not a torchvision classification model"),
])
def test_bad_models_get_clear_errors(model, error, message):
    with pytest.raises(error, match=message):
        resolve_network(model)


@pytest.mark.parametrize("n_outputs", [0, -1, 1.5, True])
def test_bad_n_outputs(n_outputs):
    with pytest.raises(ValueError, match="n_outputs"):
        resolve_network(Tiny, n_outputs=n_outputs)


def test_torchvision_weights_names_do_not_apply_to_user_modules():
    with pytest.raises(FileNotFoundError, match="'DEFAULT'.*torchvision model name"):
        resolve_network(Tiny, weights="DEFAULT")
    with pytest.raises(ValueError, match="torchvision model name"):
        resolve_network(Tiny, weights=torchvision.models.ResNet18_Weights.DEFAULT)


# --------------------------------------------------------------------------- checkpoints
def _save(state, path):
    if path.suffix == ".safetensors":
        safetensors.torch.save_file(dict(state), path)
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".th", ".bin", ".safetensors"])
def test_plain_state_dict_checkpoints_load_into_user_modules(tmp_path, suffix):
    source = _trained_tiny()
    path = _save(source.state_dict(), tmp_path / f"tiny{suffix}")
    for weights in (path, str(path)):
        network = resolve_network(Tiny, weights=weights, n_outputs=2)
        _assert_backbone_equal(network, source)
        assert network.module.fc.out_features == 2
        assert network.preprocessing is None


@pytest.mark.parametrize("nesting", ["state_dict", "model_state_dict", "model", "module"])
def test_nested_data_parallel_checkpoints_are_unwrapped(tmp_path, nesting):
    source = _trained_tiny()
    wrapped = nn.DataParallel(source).state_dict()
    assert all(key.startswith("module.") for key in wrapped)
    path = _save({"epoch": 7, "best_acc": 0.9, nesting: wrapped}, tmp_path / "tiny.pth")
    _assert_backbone_equal(resolve_network(Tiny, weights=path), source)
    assert list(load_checkpoint(path)) == list(source.state_dict())


def test_modules_whose_own_keys_start_with_module_keep_them(tmp_path):
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.module = Tiny()

    source = Wrapper()
    source.module.load_state_dict(_trained_tiny().state_dict())
    path = _save(source.state_dict(), tmp_path / "wrapper.pt")
    network = resolve_network(Wrapper, weights=path, n_outputs=2)
    assert network.head == ("module.fc",)
    _assert_backbone_equal(network, source)


def test_torchvision_name_reloads_its_own_checkpoint(tmp_path):
    torch.manual_seed(1)
    source = torchvision.models.resnet18()
    path = _save(source.state_dict(), tmp_path / "resnet18.pth")
    network = resolve_network("resnet18", weights=path, n_outputs=2)
    _assert_backbone_equal(network, source)
    assert network.module.fc.out_features == 2
    assert network.preprocessing.crop_size == 224  # the family's standard preprocessing


def test_mismatching_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    state = {f"backbone.{k}": v for k, v in _trained_tiny().state_dict().items()}
    state["extra.weight"] = torch.zeros(1)
    path = _save(state, tmp_path / "prefixed.pt")
    with pytest.raises(ValueError) as info:
        resolve_network(Tiny, weights=path)
    message = str(info.value)
    n_keys = len(Tiny().state_dict())
    n_batch_counters = 2  # torch fills in a missing BatchNorm num_batches_tracked itself
    assert f"{n_keys - n_batch_counters} missing key(s): [scale, stem.0.weight" in message
    assert f"{n_keys + 1} unexpected key(s): [backbone.scale" in message
    assert "... (" in message  # long lists are cut
    assert str(path) in message and "prefix 'backbone.'" in message


def test_checkpoint_head_must_match_the_module_as_built(tmp_path):
    path = _save(_trained_tiny(n_classes=5).state_dict(), tmp_path / "five.pt")
    with pytest.raises(ValueError, match=r"shape mismatch.*fc.weight: checkpoint \(5, 6\) vs model "
                                         r"\(10, 6\).*number of classes"):
        resolve_network(Tiny, weights=path)
    # built for the checkpoint's classes, it loads and the head is replaced afterwards
    network = resolve_network(Tiny(n_classes=5), weights=path, n_outputs=2)
    assert network.module.fc.out_features == 2


def test_unreadable_checkpoints_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        resolve_network(Tiny, weights=tmp_path / "missing.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    with pytest.raises(ValueError, match=r"unsupported checkpoint suffix '.txt'"):
        resolve_network(Tiny, weights=text)
    pickled = _save(Tiny(), tmp_path / "whole_model.pt")
    with pytest.raises(ValueError, match=r"Save the model's state_dict\(\)"):
        resolve_network(Tiny, weights=pickled)
    odd = _save({"epoch": 3, "weights": Tiny().state_dict()}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"non-tensor entries \['epoch', 'weights'\]"):
        resolve_network(Tiny, weights=odd)


# --------------------------------------------------------------------------- torchvision weights
def _offline_hub(monkeypatch, tmp_path):
    """A private, empty torch hub cache, and no network: any download attempt fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_torchvision_weights_load_through_the_hub_cache(monkeypatch, tmp_path):
    cache = _offline_hub(monkeypatch, tmp_path)
    cache.mkdir(parents=True)
    torch.manual_seed(2)
    source = torchvision.models.resnet18()
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    torch.save(source.state_dict(), cache / weights.url.rsplit("/", 1)[-1])

    for spec in ("DEFAULT", "IMAGENET1K_V1", "ResNet18_Weights.IMAGENET1K_V1", weights):
        network = resolve_network("resnet18", weights=spec, n_outputs=2)
        _assert_backbone_equal(network, source)
        assert network.preprocessing == Preprocessing(
            resize_size=256, crop_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
            interpolation="bilinear")


def test_failed_download_says_to_pass_a_local_checkpoint(monkeypatch, tmp_path):
    _offline_hub(monkeypatch, tmp_path)
    expected = (r"could not download ResNet18_Weights.IMAGENET1K_V1 for resnet18 "
                r"\(URLError.*unreachable.*local checkpoint")
    with pytest.raises(RuntimeError, match=expected):
        resolve_network("resnet18", weights="IMAGENET1K_V1")


def test_unknown_weights_name_lists_the_available_ones():
    available = r"\['IMAGENET1K_V1', 'DEFAULT'\]"
    with pytest.raises(ValueError, match=r"weights='IMAGENET1K_V9'.*" + available):
        resolve_network("resnet18", weights="IMAGENET1K_V9")
    with pytest.raises(ValueError, match="do not belong to resnet18"):
        resolve_network("resnet18", weights=torchvision.models.ResNet50_Weights.DEFAULT)


def test_preprocessing_follows_the_weights_without_downloading():
    swag = preprocessing_of(torchvision.models.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1)
    assert (swag.resize_size, swag.crop_size, swag.interpolation) == (384, 384, "bicubic")
    v2 = preprocessing_of(torchvision.models.ResNet50_Weights.IMAGENET1K_V2)
    assert (v2.resize_size, v2.crop_size, v2.mean) == (232, 224, IMAGENET_MEAN)


# --------------------------------------------------------------------------- real checkpoints
@pytest.mark.slow
@pytest.mark.parametrize("depth", [20, 56])
def test_real_cifar_checkpoints_load_bit_for_bit(depth):
    path = checkpoint_path(depth)
    if not path.is_file():
        pytest.skip(f"pretrained checkpoint not found at {path} (../shared is absent)")
    model = CifarResNet if depth == 20 else CifarResNet(depth)
    network = resolve_network(model, weights=path, n_outputs=2)

    raw = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    state = network.module.state_dict()
    # the checkpoints predate BatchNorm's num_batches_tracked: torch's loading fills it in
    extra = set(state) - {k.removeprefix("module.") for k in raw}
    assert extra and all(k.endswith("num_batches_tracked") for k in extra)
    for key, value in raw.items():
        key = key.removeprefix("module.")
        if not key.startswith("linear."):
            assert torch.equal(state[key], value), key
    assert network.head == ("linear",) and network.module.linear.out_features == 2
    assert [g.name for g in network.groups] == ["conv1", "bn1", "layer1", "layer2", "layer3"]
    with torch.no_grad():
        assert network.module.eval()(torch.randn(2, 3, 96, 96)).shape == (2, 2)


def test_a_bare_linear_layer_is_a_network_that_is_all_head():
    network = resolve_network(torch.nn.Linear(4, 10), n_outputs=3)
    assert network.head == ("0",) and network.groups == ()
    assert network.module(torch.zeros(2, 4)).shape == (2, 3)


# --------------------------------------------------------------------------- issue 13
def test_torchvision_names_without_weights_use_the_family_standard_preprocessing():
    # no download: the DEFAULT entry's transforms() metadata is in the enum
    assert resolve_network("resnet18", weights=None).preprocessing == Preprocessing(
        resize_size=256, crop_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        interpolation="bilinear")
    inception = resolve_network("inception_v3", weights=None).preprocessing
    assert (inception.resize_size, inception.crop_size) == (342, 299)


def test_inception_v3_trains_on_224_pixels_without_its_auxiliary_head():
    torch.manual_seed(0)
    network = resolve_network("inception_v3", n_outputs=2)
    assert network.module.AuxLogits is None and network.head == ("fc",)
    out = network.module.train()(torch.randn(2, 3, 224, 224))  # the aux head failed here
    assert out.shape == (2, 2)


def test_inception_checkpoints_with_or_without_the_auxiliary_head_load(tmp_path):
    torch.manual_seed(0)
    with_aux = torchvision.models.inception_v3(init_weights=True)
    path = tmp_path / "inception.pt"
    torch.save(with_aux.state_dict(), path)
    network = resolve_network("inception_v3", weights=path, n_outputs=2)
    assert network.module.AuxLogits is None
    _assert_backbone_equal(network, nn.ModuleDict({k: v for k, v in with_aux.named_children()
                                                   if k != "AuxLogits"}))
    with_aux.AuxLogits = None
    without = tmp_path / "inception_no_aux.pt"
    torch.save(with_aux.state_dict(), without)
    assert resolve_network("inception_v3", weights=without).module.AuxLogits is None


@pytest.mark.parametrize("shape, message", [
    ((4, 1, 16, 16), r"X has 1 channel, the network's first layer expects 3: repeat the gray "
                     r"channel \(np.repeat\(X, 3, axis=1\)\) or pass image files"),
    ((4, 4, 16, 16), r"X has 4 channels, the network's first layer expects 3: pass arrays of "
                     r"shape \(n_samples, 3, height, width\)"),
    ((4, 768), r"X has shape \(4, 768\), but the network's first layer is a Conv2d that expects "
               r"\(n_samples, 3, height, width\) images"),
])
def test_arrays_that_cannot_enter_the_first_layer_get_a_clear_error(shape, message):
    from skadapt.networks import check_array_input

    network = resolve_network(Tiny, n_outputs=2)
    with pytest.raises(ValueError, match=message):
        check_array_input(network, shape)
    check_array_input(network, (4, 3, 16, 16))  # what it expects passes
    mlp = resolve_network(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2)))
    with pytest.raises(ValueError, match="X has 5 features, the network's first layer"):
        check_array_input(mlp, (4, 5))
    check_array_input(mlp, (4, 6))


def test_images_below_an_architecture_minimum_get_a_clear_error():
    from skadapt import PretrainedFineTuner
    from skadapt.networks import check_array_input

    network = resolve_network("inception_v3", n_outputs=2)
    assert network.min_input_size == 75  # torchvision's min_size, below its 299 px crop
    assert resolve_network("vit_b_16").min_input_size is None  # 224 is its one size, not a limit
    with pytest.raises(ValueError, match=r"X's images are 32x32 pixels, but the network needs at "
                                         r"least 75x75: pass image_size=299"):
        check_array_input(network, (2, 3, 32, 32))
    check_array_input(network, (2, 3, 32, 32), image_size=96)  # resized first: fine
    X = torch.randn(4, 3, 32, 32).numpy()
    with pytest.raises(ValueError, match="needs at least 75x75"):
        PretrainedFineTuner("inception_v3", max_epochs=1).fit(X, [0, 1, 0, 1])
