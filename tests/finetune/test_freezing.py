"""Freezing, staged and gradual unfreezing, BatchNorm policy and learning rates, checked on real fits."""

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback

from skadapt import PretrainedFineTuner
from skadapt.finetune._freezing import frozen_at_epoch, groups_to_unfreeze
from skadapt.networks import resolve_network
from tests.finetune.conftest import TinyCNN

GROUPS = ["stem", "stage1", "stage2", "stage3"]


def _fit(checkpoint, images, **params):
    X, y = images
    defaults = dict(weights=str(checkpoint), max_epochs=2, batch_size=16, lr=1e-2,
                    validation_fraction=None, random_state=0)
    return PretrainedFineTuner(TinyCNN, **{**defaults, **params}).fit(X, y)


def _changed_groups(clf, checkpoint):
    """Which layer groups differ from the checkpoint in any parameter or BatchNorm buffer."""
    before = torch.load(checkpoint, weights_only=True)
    after = clf.module_.state_dict()
    changed = set()
    for key, value in before.items():
        if key.startswith("fc."):
            continue
        if not torch.equal(value, after[key]):
            changed.add(key.split(".")[0])
    return changed


def test_layer_groups_of_a_user_module(tiny_checkpoint):
    clf = PretrainedFineTuner(TinyCNN, weights=str(tiny_checkpoint))
    table = clf.layer_table()
    assert list(table["group"]) == ["head", *GROUPS]
    assert list(table["trainable"]) == [1.0, 0.0, 0.0, 0.0, 0.0]


class StateAtTrainBegin(Callback):
    """A copy of the module's state dict when training starts (the new head as initialized)."""

    def on_train_begin(self, net, **kwargs):
        self.state_ = {key: value.clone() for key, value in net.module_.state_dict().items()}


def test_backbone_frozen_bit_for_bit_including_batchnorm_statistics(tiny_checkpoint, images):
    """A frozen backbone trained through keeps every weight and BatchNorm statistic, bit for bit.

    ``feature_cache=False`` runs the backbone in every training batch, under ``train()``: its
    BatchNorm layers would update their running statistics (and count the batches) unless the
    frozen parts stay in inference mode on every batch. Only the head trains."""
    start = StateAtTrainBegin()
    clf = _fit(tiny_checkpoint, images, freeze="backbone", feature_cache=False,
               callbacks=[("start", start)])
    assert clf.training_path_.startswith("full network")
    before = torch.load(tiny_checkpoint, weights_only=True)
    after = clf.module_.state_dict()
    backbone = [key for key in before if not key.startswith("fc.")]
    statistics = [key for key in backbone
                  if key.rsplit(".", 1)[1] in ("running_mean", "running_var", "num_batches_tracked")]
    assert len(statistics) == 3 * 4  # the four BatchNorm layers' statistics are among those compared
    assert [key for key in backbone if not torch.equal(before[key], after[key])] == []
    assert [key for key in backbone if not torch.equal(start.state_[key], after[key])] == []
    assert after["fc.weight"].shape == (2, 16)
    assert not torch.equal(start.state_["fc.weight"], after["fc.weight"])  # the head did train
    assert not torch.equal(start.state_["fc.bias"], after["fc.bias"])
    optimized = {id(p) for g in clf.optimizer_.param_groups for p in g["params"]}
    assert optimized == {id(p) for p in clf.module_.fc.parameters()}
    assert all(p.grad is None for n, p in clf.module_.named_parameters() if not n.startswith("fc"))


def test_freeze_int_trains_the_last_k_groups(tiny_checkpoint, images):
    clf = _fit(tiny_checkpoint, images, freeze=2)
    assert _changed_groups(clf, tiny_checkpoint) == {"stage2", "stage3"}


def test_freeze_patterns(tiny_checkpoint, images):
    clf = _fit(tiny_checkpoint, images, freeze=["stem.*", "stage1.*"])
    assert _changed_groups(clf, tiny_checkpoint) == {"stage2", "stage3"}


def test_train_bn_updates_affine_parameters_but_not_running_statistics(tiny_checkpoint, images):
    clf = _fit(tiny_checkpoint, images, freeze="backbone", train_bn=True)
    before = torch.load(tiny_checkpoint, weights_only=True)
    after = clf.module_.state_dict()
    assert not torch.equal(before["stage1.1.weight"], after["stage1.1.weight"])
    assert torch.equal(before["stage1.1.running_mean"], after["stage1.1.running_mean"])
    assert torch.equal(before["stage1.0.weight"], after["stage1.0.weight"])


def test_freeze_none_trains_everything(tiny_checkpoint, images):
    clf = _fit(tiny_checkpoint, images, freeze="none")
    assert _changed_groups(clf, tiny_checkpoint) == set(GROUPS)


def test_two_stage_unfreezes_everything_at_unfreeze_at(tiny_checkpoint, images):
    clf = _fit(tiny_checkpoint, images, freeze="backbone", unfreeze_at=2, max_epochs=3,
               unfreeze_lr=1e-3)
    n_trainable = clf.history[:, "n_trainable"]
    total = sum(p.numel() for p in clf.module_.parameters())
    assert n_trainable[0] == n_trainable[1] == 16 * 2 + 2
    assert n_trainable[2] == total
    assert _changed_groups(clf, tiny_checkpoint) == set(GROUPS)
    base = {g["name"]: g["base_lr"] for g in clf.optimizer_.param_groups}
    assert base["head"] == pytest.approx(1e-3)


def test_gradual_unfreezing_thaws_one_group_per_epoch_from_the_top(tiny_checkpoint, images):
    clf = _fit(tiny_checkpoint, images, freeze="backbone", unfreeze_at=1, unfreeze_every=1,
               unfreeze=2, max_epochs=4)
    counts = clf.history[:, "n_trainable"]
    assert counts[0] < counts[1] < counts[2] == counts[3]
    assert _changed_groups(clf, tiny_checkpoint) == {"stage2", "stage3"}


def test_discriminative_learning_rates_and_layer_decay(tiny_checkpoint, images):
    clf = _fit(tiny_checkpoint, images, freeze="none", lr=1e-2, backbone_lr_mult=0.1,
               layer_decay=0.5, max_epochs=1)
    base = {g["name"]: g["base_lr"] for g in clf.optimizer_.param_groups}
    assert base == pytest.approx({"head": 1e-2, "stage3": 1e-3, "stage2": 5e-4,
                                  "stage1": 2.5e-4, "stem": 1.25e-4})
    table = clf.layer_table().set_index("group")
    assert table.loc["stem", "lr"] == pytest.approx(1.25e-4)


def test_layer_table_previews_the_schedule_before_fit(tiny_checkpoint):
    clf = PretrainedFineTuner(TinyCNN, weights=str(tiny_checkpoint), freeze="backbone",
                              unfreeze_at=3, unfreeze=1)
    assert clf.layer_table(epoch=3).set_index("group")["trainable"].to_dict() == {
        "head": 1.0, "stem": 0.0, "stage1": 0.0, "stage2": 0.0, "stage3": 1.0}


def test_schedule_arithmetic():
    assert groups_to_unfreeze(0, None, "all", None) == 0
    assert groups_to_unfreeze(5, 3, "all", None) == np.inf
    assert groups_to_unfreeze(5, 3, 10, 2) == 2
    assert groups_to_unfreeze(9, 3, 2, 1) == 2


def test_unfreeze_all_also_thaws_pattern_frozen_parameters(tiny_checkpoint):
    network = resolve_network(TinyCNN, str(tiny_checkpoint), n_outputs=2)
    assert frozen_at_epoch(network, 1, freeze=["stem.*"], unfreeze_at=1) == set()
    assert frozen_at_epoch(network, 0, freeze=["stem.*"], unfreeze_at=1) == {
        "stem.0.weight", "stem.1.weight", "stem.1.bias"}


@pytest.mark.parametrize("bad, message", [
    (dict(freeze="head"), r"'freeze' parameter .* must be a str among .*'none'.* Got 'head'"),
    (dict(freeze=-1), r"'freeze' parameter .* an int in the range \[0, inf\).* Got -1"),
    (dict(freeze=True), r"'freeze' parameter .* Got True"),
    (dict(unfreeze="some"), r"'unfreeze' parameter .* Got 'some'"),
    (dict(unfreeze_every=2), "unfreeze_every needs unfreeze_at"),
    (dict(layer_decay=0), r"'layer_decay' parameter .* range \(0.0, inf\).* Got 0"),
])
def test_bad_schedule_parameters_get_clear_errors(bad, message, tiny_checkpoint, images):
    with pytest.raises(ValueError, match=message):
        _fit(tiny_checkpoint, images, **bad)
