"""A run folder: the name of every file in it, the statuses a run can end in, what a run
recorded (``History``) and how it is written and read: ``metrics.csv`` (streamed while
training), ``history.npz`` (metrics, dashboard frames and the problem's geometry) and
``summary.json``; and the summary numbers ("final", "best", "late") defined once, for runs
and sweeps alike.

Readers (viz, sweep summaries) use ``load``; nothing here needs the trainer or torch.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

# Every file of a run folder (a sweep folder adds SUMMARY_CSV and SWEEP_PNG).
METRICS_CSV = "metrics.csv"
HISTORY_NPZ = "history.npz"
SUMMARY_JSON = "summary.json"
MODEL_PT = "model.pt"
CHECKPOINT_PT = "checkpoint.pt"
CONFIG_YAML = Path(".hydra") / "config.yaml"
DASHBOARD_PNG = "dashboard.png"
ANIMATION_MP4 = "animation.mp4"
ANIMATION_GIF = "animation.gif"
SUMMARY_CSV = "summary.csv"
SWEEP_PNG = "sweep.png"

# How a run ends (summary.json "status"); a sweep adds FAILED (a folder without a summary)
# and MISSING (a launched job without a folder).
FINISHED, DIVERGED, INTERRUPTED = "finished", "diverged", "interrupted"
FAILED, MISSING = "failed", "missing"

LATE_FRACTION = 0.2  # "late" values: the mean over the last 20% of the steps done


@dataclass
class Geometry:
    """The problem as a picture needs it. In 2D, ``plot_x`` is a flattened (g, g) grid in
    'ij' order: ``plot_x.reshape(g, g, 2)[i, j] == (u[i], u[j])``."""

    input_dim: int
    plot_x: np.ndarray  # (P, d)
    plot_shape: tuple[int, ...]  # (P,) in 1D, (g, g) in 2D
    plot_target: np.ndarray  # (P,)
    train_x: np.ndarray  # (N, d)
    train_y: np.ndarray  # (N,)
    train_box: tuple[float, float]  # [lo, hi] in every dimension
    test_box: tuple[float, float]


@dataclass
class History:
    """Metrics per recorded step (NaN where not measured), frames of the prediction on the
    plot grid, the geometry, and ``meta`` (the summary: lr, name, status, loss terms, ...)."""

    metrics: dict[str, np.ndarray]
    frame_steps: np.ndarray  # (F,)
    frame_pred: np.ndarray  # (F, P)
    geometry: Geometry
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def loss_terms(self) -> list[str]:
        """Columns of the objective's terms, e.g. ['loss_data', 'loss_l2']."""
        return [c for c in self.metrics if c.startswith("loss_")]

    @property
    def eigenvalue_columns(self) -> list[str]:
        return ["sharpness"] + sorted(
            (c for c in self.metrics if c.startswith("lambda_")), key=lambda c: int(c.split("_")[1])
        )


class MetricsWriter:
    """Appends one CSV row per step and hands it to the OS at most ``flush_seconds`` later, so
    a killed process still leaves a readable ``metrics.csv``; ``close`` also fsyncs."""

    def __init__(self, path: str | os.PathLike, columns: list[str], *, append: bool = False, flush_seconds: float = 0.2):
        self.columns = columns
        self._file = open(path, "a" if append else "w", newline="")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if not append:
            self._writer.writerow(columns)
        self._flush_seconds = flush_seconds
        self._last_flush = time.monotonic()

    def write(self, row: Mapping[str, float]) -> None:
        self._writer.writerow([_format(row.get(c)) for c in self.columns])
        now = time.monotonic()
        if now - self._last_flush >= self._flush_seconds:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            os.fsync(self._file.fileno())
            self._file.close()


def _format(value: Any) -> str:
    if value is None:
        return ""  # not measured at this step
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return repr(float(value))  # shortest round-trip form ('nan', 'inf' too): the CSV is exact


def read_metrics_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of a metrics CSV as float arrays (empty cells, not measured, are NaN); a partly written last
    line (a killed process) is dropped."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return {}
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    data = np.array([[float(v) if v != "" else np.nan for v in r] for r in body], dtype=np.float64).reshape(len(body), len(header))
    return {name: data[:, i] for i, name in enumerate(header)}


def copy_metric_rows(src: str | os.PathLike, dst: str | os.PathLike, *, below_step: int) -> None:
    """Copy the header and the rows with step < ``below_step`` of one metrics CSV to another,
    byte for byte (a resumed run continues the file as if never stopped)."""
    with open(src, newline="") as f:
        lines = f.read().splitlines(keepends=True)
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.strip() and ln.endswith("\n") and int(ln.split(",", 1)[0]) < below_step]
    with open(dst, "w", newline="") as f:
        f.writelines(kept)


def save(history: History, run_dir: str | os.PathLike) -> Path:
    """Write ``history.npz`` atomically (temp file, then rename)."""
    run_dir = Path(run_dir)
    g = history.geometry
    arrays: dict[str, np.ndarray] = {f"metric/{k}": np.asarray(v) for k, v in history.metrics.items()}
    arrays.update(
        frame_steps=np.asarray(history.frame_steps),
        frame_pred=np.asarray(history.frame_pred),
        input_dim=np.asarray(g.input_dim),
        plot_x=g.plot_x,
        plot_shape=np.asarray(g.plot_shape),
        plot_target=g.plot_target,
        train_x=g.train_x,
        train_y=g.train_y,
        train_box=np.asarray(g.train_box, dtype=np.float64),
        test_box=np.asarray(g.test_box, dtype=np.float64),
        metric_order=np.asarray(list(history.metrics)),
    )
    path = run_dir / HISTORY_NPZ
    tmp = run_dir / (HISTORY_NPZ + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load(run_dir: str | os.PathLike) -> History:
    """Read a run directory's ``history.npz`` and ``summary.json``."""
    run_dir = Path(run_dir)
    path = run_dir / HISTORY_NPZ
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a NeuroScope run directory whose run got past its first step?")
    with np.load(path) as z:
        order = [str(k) for k in z["metric_order"]]
        metrics = {k: z[f"metric/{k}"] for k in order}
        geometry = Geometry(
            input_dim=int(z["input_dim"]),
            plot_x=z["plot_x"],
            plot_shape=tuple(int(s) for s in z["plot_shape"]),
            plot_target=z["plot_target"],
            train_x=z["train_x"],
            train_y=z["train_y"],
            train_box=tuple(float(v) for v in z["train_box"]),
            test_box=tuple(float(v) for v in z["test_box"]),
        )
        history = History(metrics=metrics, frame_steps=z["frame_steps"], frame_pred=z["frame_pred"], geometry=geometry)
    history.meta = read_summary(run_dir)
    return history


def write_summary(run_dir: str | os.PathLike, summary: Mapping[str, Any]) -> Path:
    path = Path(run_dir) / SUMMARY_JSON
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(run_dir) / SUMMARY_JSON
    return json.loads(path.read_text()) if path.exists() else {}


def _jsonable(value: Any) -> Any:
    """Plain JSON: numpy scalars to Python, non-finite floats to strings ('nan', 'inf')."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    return value



# ----------------------------------------------------------------------------- summary values


def last_value(metrics: Mapping[str, np.ndarray], column: str) -> float:
    """The last recorded (non-NaN) value of a column; NaN if there is none."""
    v = np.asarray(metrics.get(column, ()), dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v[-1]) if len(v) else math.nan


def best_value(metrics: Mapping[str, np.ndarray], column: str) -> float:
    """The smallest finite value of a column; NaN if there is none."""
    v = np.asarray(metrics.get(column, ()), dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.min()) if len(v) else math.nan


def summary_values(metrics: Mapping[str, np.ndarray], edge: float) -> dict[str, Any]:
    """The numbers a run's summary and a sweep's table report, from a metrics table:
    ``final`` (last recorded value), ``best`` (smallest), the largest sharpness and
    ``late_sharpness_over_edge``: the mean sharpness over the last ``LATE_FRACTION`` of the
    steps done, divided by ``edge``, the update rule's edge of stability (2/lr for GD)."""
    step = np.asarray(metrics.get("step", ()), dtype=np.float64)
    sharp = np.asarray(metrics.get("sharpness", np.full(len(step), np.nan)), dtype=np.float64)
    finite = np.isfinite(sharp)
    late = sharp[finite & (step >= (1 - LATE_FRACTION) * step[-1])] if len(step) else sharp[:0]
    return {
        "final": {c: last_value(metrics, c) for c in ("loss", "test_error", "gen_error", "sharpness")},
        "best": {c: best_value(metrics, c) for c in ("loss", "test_error", "gen_error")},
        "max_sharpness": float(sharp[finite].max()) if finite.any() else math.nan,
        "late_sharpness_over_edge": float(late.mean() / edge) if len(late) and edge > 0 else math.nan,
    }
