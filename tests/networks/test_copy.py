"""copy_module: what copy.deepcopy gives, for the modules the network memo copies every fit."""

import copy

import pytest
import torch
import torchvision
from torch import nn

from skadapt.networks._copy import copy_module
from tests.finetune.conftest import TinyCNN


def _same_copy(original: nn.Module, twin: nn.Module, reference: nn.Module) -> None:
    """``twin`` (copy_module's) matches ``reference`` (deepcopy's) and shares nothing with
    ``original``."""
    assert type(twin) is type(reference)
    assert [name for name, _ in twin.named_modules()] == [n for n, _ in reference.named_modules()]
    for (name, a), (_, b), (_, c) in zip(twin.named_modules(), reference.named_modules(),
                                         original.named_modules(), strict=True):
        assert type(a) is type(b) and a.training == b.training, name
        assert set(vars(a)) == set(vars(b)), name
        assert a is not c
    ours = twin.state_dict(keep_vars=True)
    theirs = reference.state_dict(keep_vars=True)
    source = original.state_dict(keep_vars=True)
    assert list(ours) == list(theirs)
    for name, tensor in ours.items():
        assert type(tensor) is type(theirs[name]), name
        assert torch.equal(tensor, theirs[name]) and tensor.stride() == theirs[name].stride(), name
        assert tensor.requires_grad == theirs[name].requires_grad, name
        assert tensor.untyped_storage().data_ptr() != source[name].untyped_storage().data_ptr()


@pytest.mark.parametrize("make", [
    TinyCNN,
    lambda: torchvision.models.resnet18(num_classes=3),
    lambda: torchvision.models.mobilenet_v3_small(num_classes=3).eval(),
    lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2),
], ids=["tiny", "resnet18", "mobilenet-eval", "transformer"])
def test_copies_as_deepcopy_does(make):
    torch.manual_seed(0)
    module = make()
    next(module.children()).requires_grad_(False)  # a frozen part, as in a frozen backbone
    twin = copy_module(module)
    _same_copy(module, twin, copy.deepcopy(module))
    x = torch.randn(2, 3, 40, 40) if not isinstance(module, nn.TransformerEncoder) \
        else torch.randn(2, 5, 8)
    module.eval(), twin.eval()
    with torch.no_grad():
        assert torch.equal(module(x), twin(x))
    with torch.no_grad():  # training the copy leaves the original as it was
        next(twin.parameters()).add_(1.0)
    assert not torch.equal(next(twin.parameters()), next(module.parameters()))


def test_shared_tensors_and_modules_stay_shared():
    """Tied weights (one Parameter twice), one module reached twice, two buffers viewing one
    storage: shared in the copy as in the original, as deepcopy keeps them."""
    embed = nn.Embedding(5, 4)
    out = nn.Linear(4, 5, bias=False)
    out.weight = embed.weight
    block = nn.Linear(4, 4)
    net = nn.ModuleDict({"embed": embed, "out": out, "a": block, "b": block})
    whole = torch.arange(6.0)
    net.register_buffer("whole", whole)
    net.register_buffer("part", whole[:3])
    twin = copy_module(net)
    assert twin["out"].weight is twin["embed"].weight
    assert twin["a"] is twin["b"]
    assert twin.part.untyped_storage().data_ptr() == twin.whole.untyped_storage().data_ptr()
    assert twin.whole.untyped_storage().data_ptr() != whole.untyped_storage().data_ptr()


def test_modules_with_their_own_copying_hooks_and_odd_tensors_go_through_deepcopy():
    calls = []

    class Custom(nn.Linear):
        def __deepcopy__(self, memo):
            calls.append("deepcopy")
            twin = nn.Linear(self.in_features, self.out_features)
            twin.load_state_dict(self.state_dict())
            return twin

    net = nn.Sequential(Custom(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    net[2].register_buffer("scale", torch.ones(2))
    net[2].scale.note = "kept"  # an attribute of the tensor itself (deepcopy copies it)
    seen = []
    net[2].register_forward_hook(lambda module, args, out: seen.append(1))
    twin = copy_module(net)
    assert calls == ["deepcopy"] and type(twin[0]) is nn.Linear
    assert twin[2].scale.note == "kept" and twin[2].scale is not net[2].scale
    twin(torch.ones(1, 2))
    assert seen == [1]  # the hook came along


def test_channels_last_and_compiled_modules():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(memory_format=torch.channels_last)
    net.compile()
    twin = copy_module(net)
    assert "_compiled_call_impl" not in vars(twin)
    assert twin[0].weight.is_contiguous(memory_format=torch.channels_last)
    _same_copy(net, twin, copy.deepcopy(net))


def test_a_getstate_returning_the_modules_own_dict_leaves_the_original_alone():
    class Exposed(nn.Linear):
        def __getstate__(self):
            return self.__dict__

    net = nn.Sequential(Exposed(2, 2))
    weight = net[0].weight
    twin = copy_module(net)
    assert net[0].weight is weight and twin[0].weight is not weight
    assert torch.equal(twin[0].weight, weight)
