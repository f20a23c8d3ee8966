"""A sweep over ``seed`` and other keys, aggregated over the seeds: per value of the other keys,
the mean and the min-max band of each curve, the mean and the range of each final error, and
the table ``summary_by_<keys>.csv`` (mean, std and count over the seeds of every number)."""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..rundir import DIVERGED
from .jobs import METRIC_COLUMNS, Job, Sweep

SEED_KEY = "seed"


def seed_swept(sweep: Sweep) -> bool:
    """Whether the sweep varies the seed together with another key (then it is aggregated)."""
    return SEED_KEY in sweep.swept_keys and len(sweep.swept_keys) > 1


def other_keys(sweep: Sweep) -> list[str]:
    return [k for k in sweep.swept_keys if k != SEED_KEY]


def by_seed_name(sweep: Sweep) -> str:
    """``summary_by_lr.csv`` for a sweep of lr and seed (keys joined by '_')."""
    return f"summary_by_{'_'.join(other_keys(sweep))}.csv"


def seed_groups(jobs: Sequence[Job], keys: Sequence[str]) -> list[tuple[tuple, list[Job]]]:
    """Jobs bucketed by their values of ``keys`` (the seeds of one setting together), in first-seen order."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(tuple(job.overrides.get(k) for k in keys), []).append(job)
    return list(groups.items())


@dataclass
class Band:
    """A curve over the seeds: the steps, the mean, and the min and max at each step."""

    x: np.ndarray
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def band(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> Optional[Band]:
    """Mean and min-max over the curves at each step any of them recorded (a seed that stopped
    early counts up to its last step); None without a point."""
    curves = [(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)) for x, y in curves if len(x)]
    if not curves:
        return None
    steps = np.unique(np.concatenate([x for x, _ in curves]))
    table = np.full((len(curves), len(steps)), np.nan)
    for row, (x, y) in zip(table, curves):
        row[np.searchsorted(steps, x)] = np.where(np.isfinite(y), y, np.nan)
    seen = ~np.all(np.isnan(table), axis=0)
    steps, table = steps[seen], table[:, seen]
    with np.errstate(all="ignore"):
        return Band(x=steps, mean=np.nanmean(table, axis=0), lo=np.nanmin(table, axis=0), hi=np.nanmax(table, axis=0))


def stats(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if not len(v):
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def write_by_seed(sweep: Sweep, path: str | os.PathLike) -> Path:
    """A row per setting of the other swept keys: how many seeds ran and diverged, and for each
    number of summary.csv its mean, std and count over the seeds that finished it."""
    path = Path(path)
    keys = other_keys(sweep)
    columns = keys + ["seeds", "diverged"] + [f"{m}_{s}" for m in METRIC_COLUMNS for s in ("mean", "std", "count")]
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for values, jobs in seed_groups(sweep.jobs, keys):
            ok = [j for j in jobs if j.status != DIVERGED]
            row = [*values, len(jobs), sum(j.status == DIVERGED for j in jobs)]
            for m in METRIC_COLUMNS:
                mean, std, n = stats([j.values.get(m, math.nan) for j in ok])
                row += [repr(mean), repr(std), n]
            writer.writerow(["" if v is None else v for v in row])
    os.replace(tmp, path)
    return path
