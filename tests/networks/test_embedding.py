"""The embedding engine: tap a layer's input or output, pool it to one vector per sample."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from skadapt.networks._embedding import (
    embed,
    embed_layers,
    first_tensor,
    pool,
    recording,
    tap,
    tap_one,
)


def _randn(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (3, 4, 2, 5, 6)])
def test_feature_maps_are_pooled_over_their_spatial_dimensions(shape):
    maps = _randn(*shape)
    spatial = tuple(range(2, len(shape)))
    torch.testing.assert_close(pool(maps), maps.mean(spatial), rtol=0, atol=0)
    torch.testing.assert_close(pool(maps, "max"), maps.amax(spatial), rtol=0, atol=0)
    assert pool(maps).shape == (3, 4)


def test_channels_last_maps_give_what_their_channels_first_copy_gives():
    maps = _randn(3, 4, 5, 6)
    last = maps.permute(0, 2, 3, 1)  # (n, h, w, c)
    for pooling in ("mean", "max"):
        torch.testing.assert_close(pool(last, pooling, channels_last=True), pool(maps, pooling))
    assert pool(last).shape == (3, 5), "without the flag the height is taken for channels"


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_padding_does_not_change_a_sequences_embedding(pooling):
    tokens = _randn(1, 3, 4)
    padded = torch.cat([tokens, torch.full((1, 5, 4), 1e3)], dim=1)  # 5 padding tokens
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0, 0]])
    torch.testing.assert_close(pool(padded, pooling, mask=mask), pool(tokens, pooling),
                               rtol=1e-6, atol=1e-6)
    if pooling != "cls":
        assert not torch.allclose(pool(padded, pooling), pool(tokens, pooling)), "no mask"


def test_token_values_and_a_mask_that_does_not_fit():
    tokens = torch.tensor([[[1.0, -1.0], [3.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(tokens, mask=mask).tolist() == [[2.0, 2.0]]
    assert pool(tokens, "max", mask=mask).tolist() == [[3.0, 5.0]]
    assert pool(tokens, "cls", mask=mask).tolist() == [[1.0, -1.0]]
    # a mask of another length (a layer that changes the sequence) is not applied
    torch.testing.assert_close(pool(tokens, mask=torch.ones(1, 2)), tokens.mean(1))
    empty = pool(tokens, mask=torch.zeros(1, 3))
    assert empty.tolist() == [[0.0, 0.0]], "no real token: zeros, not NaN"


def test_rows_are_kept_and_cls_needs_a_token_sequence():
    rows = _randn(3, 4)
    assert torch.equal(pool(rows), rows) and torch.equal(pool(rows, "max"), rows)
    assert pool(torch.arange(3.0)).shape == (3, 1)
    for shape in [(3, 4), (3, 4, 5, 6)]:
        with pytest.raises(ValueError, match=r"pooling='cls' takes the first token .* shape "
                                             + repr(shape).replace("(", r"\(").replace(")", r"\)")):
            pool(_randn(*shape), "cls")
    with pytest.raises(ValueError, match="pooling='avg': pass one of"):
        pool(rows, "avg")


def test_the_first_tensor_of_tuples_and_model_outputs():
    a, b = torch.zeros(1), torch.ones(1)
    assert first_tensor(a) is a
    assert first_tensor((a, b)) is a
    assert first_tensor((None, [b, a])) is b
    assert first_tensor(OrderedDict(last_hidden_state=b, hidden_states=(a,))) is b
    with pytest.raises(TypeError, match="a tuple holding no tensor"):
        first_tensor((None, "x"))


# --------------------------------------------------------------------------- tapping
class _Counting(nn.Module):
    """Linear layers that count their finished calls; ``twice`` runs the middle layer twice."""

    def __init__(self, twice=False):
        super().__init__()
        self.first, self.middle, self.last = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2)
        self.twice = twice
        self.calls = {"first": 0, "middle": 0, "last": 0}
        for name in self.calls:
            getattr(self, name).register_forward_hook(
                lambda _m, _args, _out, name=name: self.calls.__setitem__(name, self.calls[name] + 1))

    def forward(self, x):
        x = self.middle(torch.relu(self.first(x)))
        if self.twice:
            x = self.middle(x)
        return self.last(x)


def test_a_layers_input_is_what_the_layer_before_gives():
    net = _Counting()
    x = _randn(5, 4)
    seen = tap(net, {"in": net.middle, "out_first": net.first}, x, side="input")
    torch.testing.assert_close(seen["in"], torch.relu(net.first(x)))
    torch.testing.assert_close(seen["out_first"], x)
    torch.testing.assert_close(tap_one(net, net.middle, x),
                               net.middle(torch.relu(net.first(x))))


def test_the_forward_stops_once_every_tapped_layer_ran():
    net = _Counting()
    tap_one(net, net.middle, _randn(5, 4))
    assert net.calls == {"first": 1, "middle": 1, "last": 0}
    tap_one(net, net.last, _randn(5, 4), side="input")
    assert net.calls["last"] == 0, "a pre-hook stops before the layer runs"
    tap(net, {"a": net.first, "b": net.middle}, _randn(5, 4), stop=False)
    assert net.calls == {"first": 3, "middle": 3, "last": 1}
    assert all(len(layer._forward_hooks) == 1 and not layer._forward_pre_hooks
               for layer in (net.first, net.middle, net.last)), "only the counters' hooks remain"


def test_a_layer_that_runs_twice_keeps_its_first_or_last_call():
    net = _Counting(twice=True)
    x = _randn(5, 4)
    once = net.middle(torch.relu(net.first(x)))
    first = tap(net, {"m": net.middle}, x)["m"]
    last = tap(net, {"m": net.middle}, x, stop=False)["m"]
    torch.testing.assert_close(first, once)
    torch.testing.assert_close(last, net.middle(once))
    with recording({"m": net.middle}) as seen:
        net(x)
    assert len(seen["m"]) == 2


def test_a_layer_the_forward_never_runs():
    net = _Counting()
    unused = nn.Linear(4, 4)
    assert tap(net, {"used": net.first, "unused": unused}, _randn(2, 4)).keys() == {"used"}
    with pytest.raises(ValueError, match="the head Linear did not run in the network's forward "
                                         "pass: pick a head that does"):
        tap_one(net, unused, _randn(2, 4), what="head")


# --------------------------------------------------------------------------- embeddings
class _Encoder(nn.Module):
    """Token states of a toy text encoder: takes keyword arguments, returns a ModelOutput-like
    mapping, like a Hugging Face encoder."""

    def __init__(self):
        super().__init__()
        self.embeddings = nn.Embedding(10, 3)
        self.layer = nn.Linear(3, 3)

    def forward(self, input_ids, attention_mask):
        return OrderedDict(last_hidden_state=self.layer(self.embeddings(input_ids)))


def test_embed_masks_texts_and_pools_a_layer_or_the_whole_output():
    torch.manual_seed(0)
    encoder = _Encoder()
    short = dict(input_ids=torch.tensor([[1, 2]]), attention_mask=torch.tensor([[1, 1]]))
    padded = dict(input_ids=torch.tensor([[1, 2, 0, 0]]), attention_mask=torch.tensor([[1, 1, 0, 0]]))
    with torch.no_grad():
        for layer in (None, encoder.layer, encoder.embeddings):
            alone, with_padding = (embed(encoder, x, layer=layer) for x in (short, padded))
            torch.testing.assert_close(with_padding, alone)
            assert alone.shape == (1, 3) and alone.dtype == torch.float32
    maps = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    x = _randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(embed(maps, x, layer=maps[1], pooling="max"),
                                   torch.relu(maps[0](x)).amax((2, 3)))
        torch.testing.assert_close(embed(maps.double(), x.double()), maps(x.double()).float())


def test_embed_layers_pools_every_layer_in_one_forward_pass():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 5, 3), nn.Flatten(), nn.Linear(5 * 4 * 4, 2))
    runs = []
    net.register_forward_pre_hook(lambda *_: runs.append(1))
    x = _randn(2, 3, 8, 8)
    with torch.no_grad():
        pooled = embed_layers(net, {"a": net[0], "b": net[1], "head": net[3]}, x)
        assert len(runs) == 1
        torch.testing.assert_close(pooled["a"], net[0](x).mean((2, 3)))
        torch.testing.assert_close(pooled["b"], embed(net, x, layer=net[1]))
        torch.testing.assert_close(pooled["head"], net(x))
