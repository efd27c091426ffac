"""The layer table: one row per layer group of a fine-tuner's network, what trains and how fast."""

from __future__ import annotations

import pandas as pd

from skadapt.finetune._freezing import group_learning_rates
from skadapt.finetune._schedule import Schedule

__all__ = ["layer_table"]


def layer_table(network, schedule: Schedule, *, epoch: int | None = None,
                frozen: set[str] | None = None) -> pd.DataFrame:
    """One row per layer group (input side first, after the head) of ``network`` in ``epoch``.

    Parameters
    ----------
    network : ResolvedNetwork
    schedule : Schedule
        The fine-tuner's schedule: which groups are frozen in ``epoch`` and the rates.
    epoch : int, optional
        The epoch (0-based) whose state to show; default 0.
    frozen : set of str, optional
        The parameters frozen now, for a fitted estimator (default: the schedule's at ``epoch``).

    Returns
    -------
    pandas.DataFrame
        Columns ``group``, ``depth``, ``n_params``, ``trainable`` (fraction of the group's
        parameters that train), ``lr`` (0 for a frozen group). ``depth`` counts groups from the
        head (head: -1).

    Examples
    --------
    >>> import torch
    >>> from skadapt.networks import resolve_network
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> table = layer_table(resolve_network(net, n_outputs=2), Schedule(freeze="none"))
    >>> table[["group", "depth", "n_params", "lr"]].to_string(index=False)
    'group  depth  n_params    lr\\n head     -1        18 0.001\\n    0      0        40 0.001'
    """
    epoch = epoch or 0
    if frozen is None:
        frozen = schedule.frozen(network, epoch)
    rates = group_learning_rates(network, base_lr=schedule.base_lr(epoch),
                                 backbone_lr_mult=schedule.backbone_lr_mult,
                                 layer_decay=schedule.layer_decay)
    head, groups = rates[0], rates[:0:-1]  # the groups back in input order
    sizes = {n: p.numel() for n, p in network.module.named_parameters()}
    rows = []
    for depth, (name, params, lr) in zip([-1, *range(len(groups) - 1, -1, -1)], [head, *groups]):
        total = sum(sizes[p] for p in params)
        trained = sum(sizes[p] for p in params if p not in frozen)
        rows.append({"group": name, "depth": depth, "n_params": total,
                     "trainable": trained / total if total else 0.0,
                     "lr": lr if trained else 0.0})
    return pd.DataFrame(rows)
