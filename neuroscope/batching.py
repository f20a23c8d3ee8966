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
import itertools
import json
from enum import Enum
from typing import Any, Optional, Sequence

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


MLP_TARGET = "neuroscope.model.MLP"
_SOLO = itertools.count()


def solo_reason(config: Config) -> Optional[str]:
    """The setting that makes ``config`` train only alone (an ensemble of one), or None. These
    features are one run's: the per-term curvature survey (curvature.terms, ggn, trace_probes,
    density), the gradient-flow reference, the live view, a custom model (its parameters have
    no member dimension) and resume= (a folder resumes on its own)."""
    c = config.curvature
    checks = (
        (c.terms, "curvature.terms=true"), (c.ggn, "curvature.ggn=true"), (c.trace_probes, f"curvature.trace_probes={c.trace_probes}"),
        (c.density.every, f"curvature.density.every={c.density.every}"),
        (config.reference._target_ is not None, f"reference._target_={config.reference._target_}"),
        (config.viz.live, "viz.live=true"), (config.model._target_ != MLP_TARGET, f"model._target_={config.model._target_}"),
        (config.resume, f"resume={config.resume}"),
    )
    return next((why for on, why in checks if on), None)


def batch_key(config: Config) -> str:
    """A string equal for two configs exactly when they can train in one ensemble: the config
    without the ``BATCHABLE`` keys, plus which loss terms are on (weight > 0). A config that
    trains only alone (``solo_reason``) gets a key of its own, equal to no other."""
    if solo_reason(config):
        return f"solo-{next(_SOLO)}"
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
