"""Which runs can train together as one ensemble: the one place that says it.

Runs batch when their configs differ only in keys that change no tensor shape and no code
path: each member then has its own value of these (a learning rate, a seed, a loss weight, its
own data noise), and the ensemble's tensors carry them along a leading member dimension.
Everything else (the function, input_dim, the model, the loss terms present, the device and
dtype, the curvature settings, the update rule, ...) must be equal, so a sweep over widths
splits into one group per width.
"""
from __future__ import annotations

import dataclasses
import json
from enum import Enum
from typing import Any, Sequence

from .config import Config

BATCHABLE: tuple[str, ...] = (
    "lr",  # per-member step size (and edge 2/lr)
    "seed",  # per-member data sampling, initial weights and curvature start vectors
    "name",  # titles only
    "diverge_above",  # per-member divergence threshold
    "progress",  # the group has one bar
    "data.noise",  # per-member training targets
    "loss.data_weight",  # per-member term weights; which terms are present must match (see batch_key)
    "loss.l2_weight",
    "loss.pde_weight",
    "loss.bc_weight",
    "viz",  # rendering happens per member, after training
)
"""Dotted config keys whose values may differ between the members of one ensemble; a key
names its whole subtree ("viz" is every viz.* key)."""

_WEIGHTS = ("data_weight", "l2_weight", "pde_weight", "bc_weight")


def batch_key(config: Config) -> str:
    """A string equal for two configs exactly when they can train in one ensemble: the config
    without the ``BATCHABLE`` keys, plus which loss terms are on (weight > 0)."""
    tree = _plain(dataclasses.asdict(config))
    for key in BATCHABLE:
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node[p]
        node.pop(leaf, None)
    tree["terms_on"] = [w for w in _WEIGHTS if float(getattr(config.loss, w)) > 0]
    return json.dumps(tree, sort_keys=True, default=str)


def group_by_key(configs: Sequence[Config], max_batch: int = 0) -> list[list[int]]:
    """Indices of ``configs`` split into ensembles: equal ``batch_key``s together, in order of
    first appearance, each group at most ``max_batch`` long (0: no cap)."""
    groups: dict[str, list[list[int]]] = {}
    for i, config in enumerate(configs):
        chunks = groups.setdefault(batch_key(config), [[]])
        if max_batch and len(chunks[-1]) >= max_batch:
            chunks.append([])
        chunks[-1].append(i)
    return [chunk for chunks in groups.values() for chunk in chunks]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value
