"""Which parameters train, when, and at what learning rate.

This module is the only place in skadapt that touches ``requires_grad``.

Vocabulary
----------
layer group
    One entry of ``ResolvedNetwork.groups`` (see ``skadapt.networks``): the backbone split into
    ordered groups, input side first. The new head is not a group; it always trains.
freeze
    What is frozen when training starts: ``"none"`` (nothing), ``"backbone"`` (every group),
    an int ``k`` (every group except the last ``k``), or a list of ``fnmatch`` patterns naming frozen
    parameters (e.g. ``["conv1.*", "layer1.*"]``).
unfreeze
    What becomes trainable once stage 2 begins at epoch ``unfreeze_at``: ``"all"`` or an int ``m``
    (the ``m`` frozen groups nearest the head). With ``unfreeze_every=n``, groups thaw one at a time,
    one more every ``n`` epochs, up to that limit (gradual unfreezing).
depth
    A group's distance from the head: the last group has depth 0. Its learning rate is
    ``base_lr * backbone_lr_mult * layer_decay ** depth``; the head's is ``base_lr``.

adapter parameters
    New parameters added inside the backbone, such as LoRA's (``network.adapter_params``, see
    ``skadapt.text``). Like the head, they always train: ``freeze`` and the schedule apply to the
    pretrained weights only, so ``freeze="backbone"`` with LoRA trains the adapters and the head.

Frozen parts run in inference mode during training (Keras's ``training=False``): their BatchNorm
running statistics do not move (the bug Keras's transfer-learning guide warns about), and their
dropout, drop-path and drop-connect are off, so a frozen backbone computes exactly what it computes at
predict time (which is what lets its features be cached). ``train_bn=True`` keeps the affine
parameters of frozen BatchNorm layers trainable, while their statistics stay frozen.
"""

from __future__ import annotations

import fnmatch
import math
import numbers
from collections.abc import Iterable

import torch
from torch import nn


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def frozen_by_spec(network, freeze) -> set[str]:
    """Names of the parameters that ``freeze`` freezes (head and adapter parameters never are)."""
    always_train = set(head_parameters(network)) | set(getattr(network, "adapter_params", ()))
    if isinstance(freeze, str):
        groups = network.groups if freeze == "backbone" else ()
    elif _is_int(freeze):
        groups = network.groups[: max(len(network.groups) - freeze, 0)]
    else:
        names = [n for n, _ in network.module.named_parameters() if n not in always_train]
        return {n for n in names if any(fnmatch.fnmatchcase(n, p) for p in freeze)}
    return {name for group in groups for name in group.params} - always_train


def groups_to_unfreeze(epoch: int, unfreeze_at, unfreeze, unfreeze_every) -> float:
    """How many frozen groups (nearest the head first) are thawed at ``epoch``; ``inf`` means all."""
    if unfreeze_at is None or epoch < unfreeze_at:
        return 0
    limit = math.inf if unfreeze == "all" else unfreeze
    if unfreeze_every is None:
        return limit
    return min(limit, 1 + (epoch - unfreeze_at) // unfreeze_every)


def frozen_at_epoch(network, epoch: int, *, freeze, unfreeze_at=None, unfreeze="all",
                    unfreeze_every=None) -> set[str]:
    """Names of the parameters frozen during ``epoch`` under the whole schedule."""
    frozen = frozen_by_spec(network, freeze)
    n_thaw = groups_to_unfreeze(epoch, unfreeze_at, unfreeze, unfreeze_every)
    if n_thaw == 0:
        return frozen
    partly_frozen = [g for g in reversed(network.groups) if frozen.intersection(g.params)]
    thawed = partly_frozen if math.isinf(n_thaw) else partly_frozen[: int(n_thaw)]
    for group in thawed:
        frozen.difference_update(group.params)
    if math.isinf(n_thaw):
        frozen.clear()  # "all" also thaws pattern-frozen parameters outside any group
    return frozen


def head_parameters(network) -> list[str]:
    """Parameter names of the new head."""
    prefixes = tuple(h + "." for h in network.head)
    return [n for n, _ in network.module.named_parameters() if n.startswith(prefixes)]


def inference_mode_modules(module: nn.Module, frozen: set[str]) -> list[nn.Module]:
    """The parts of ``module`` that run in inference mode while the network trains.

    Frozen means inference mode (Keras's ``training=False``): a frozen part's dropout,
    drop-path / drop-connect / stochastic depth and BatchNorm all behave as at predict time,
    whatever ``train()`` says. The parts are

    - the largest submodules whose parameters are all in ``frozen``;
    - the parameterless submodules (dropout, pooling, a BatchNorm without affine parameters...)
      whose parent also holds trainable parameters, when the part they feed is frozen: the next
      sibling holding parameters, in registration order (or the previous one, when none follows).
      So the dropout just before a new head trains with it, and one between frozen blocks does not.

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 8), nn.Dropout(0.5),
    ...                     nn.Linear(8, 2))
    >>> [type(m).__name__ for m in inference_mode_modules(net, {"0.weight", "0.bias",
    ...                                                         "2.weight", "2.bias"})]
    ['Linear', 'Dropout', 'Linear']
    """
    params_under: dict[str, list[str]] = {}
    for param_name, _ in module.named_parameters():
        parts = param_name.split(".")
        for depth in range(len(parts)):
            params_under.setdefault(".".join(parts[:depth]), []).append(param_name)

    def all_frozen(name: str) -> bool:
        names = params_under.get(name, [])
        return bool(names) and all(n in frozen for n in names)

    found: list[nn.Module] = []

    def visit(name: str, sub: nn.Module) -> None:
        if all_frozen(name):
            found.append(sub)
            return
        children = [(f"{name}.{child}" if name else child, mod)
                    for child, mod in sub.named_children()]
        holders = [i for i, (child, _) in enumerate(children) if child in params_under]
        for i, (child, mod) in enumerate(children):
            if child in params_under:
                visit(child, mod)
                continue
            fed = [j for j in holders if j > i] or [j for j in holders if j < i][-1:]
            if fed and all_frozen(children[fed[0]][0]):
                found.append(mod)

    visit("", module)
    return found


def apply_freeze(module: nn.Module, frozen: set[str], *, train_bn: bool = False) -> list[nn.Module]:
    """Set ``requires_grad`` from ``frozen``; return the modules to keep in inference mode.

    With ``train_bn=True`` the affine parameters of BatchNorm layers inside frozen parts stay
    trainable, while those layers (their running statistics) stay in inference mode.
    """
    inference = inference_mode_modules(module, frozen)
    trainable_bn = set()
    if train_bn:
        trainable_bn = {id(p) for part in inference for sub in part.modules()
                        if isinstance(sub, nn.modules.batchnorm._BatchNorm)
                        for p in sub.parameters(recurse=False)}
    for name, param in module.named_parameters():
        param.requires_grad_(name not in frozen or id(param) in trainable_bn)
    return inference


def set_inference_mode(modules: Iterable[nn.Module]) -> None:
    """Put the frozen parts back in inference mode (skorch sets ``train()`` on every batch)."""
    for sub in modules:
        sub.eval()


def group_learning_rates(network, *, base_lr: float, backbone_lr_mult: float = 1.0,
                         layer_decay: float = 1.0) -> list[tuple[str, list[str], float]]:
    """``(name, parameter names, learning rate)`` of the head, then of each layer group from the
    head's side: the head trains at ``base_lr``, a group at depth ``d`` (0 next to the head) at
    ``base_lr * backbone_lr_mult * layer_decay ** d``."""
    rates = [("head", head_parameters(network), base_lr)]
    for depth, group in enumerate(reversed(network.groups)):
        rates.append((group.name, group.params, base_lr * backbone_lr_mult * layer_decay**depth))
    return rates


def parameter_groups(network, *, base_lr: float, backbone_lr_mult: float = 1.0,
                     layer_decay: float = 1.0) -> list[dict]:
    """Optimizer parameter groups for the trainable parameters, each with its own learning rate
    (see :func:`group_learning_rates`).

    Each dict carries ``name`` (the layer group, or ``"head"``) and ``base_lr`` (the rate before
    the learning-rate schedule scales it).
    """
    named = dict(network.module.named_parameters())
    groups = []
    for name, param_names, lr in group_learning_rates(
            network, base_lr=base_lr, backbone_lr_mult=backbone_lr_mult, layer_decay=layer_decay):
        params = [named[n] for n in param_names if named[n].requires_grad]
        if params:
            groups.append({"params": params, "lr": lr, "base_lr": lr, "name": name})
    return groups


def sync_optimizer(optimizer: torch.optim.Optimizer, wanted: list[dict]) -> None:
    """Bring ``optimizer`` in line with ``wanted`` groups, keeping the state of existing ones.

    Newly trainable parameters join as new groups (or extend their group); every group takes its
    new ``base_lr``. Parameters never leave an optimizer: a schedule only thaws.
    """
    by_name = {g.get("name"): g for g in optimizer.param_groups}
    for spec in wanted:
        group = by_name.get(spec["name"])
        if group is None:
            optimizer.add_param_group(dict(spec))
            continue
        known = {id(p) for p in group["params"]}
        group["params"].extend(p for p in spec["params"] if id(p) not in known)
        group["base_lr"] = group["lr"] = spec["base_lr"]
