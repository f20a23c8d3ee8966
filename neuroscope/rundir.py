"""A run folder: the name of every file in it, the statuses a run can end in, what a run
recorded (``History``) and how it is written and read: ``metrics.csv`` (streamed while
training), ``history.npz`` (metrics, dashboard frames and the problem's geometry),
``summary.json`` and ``spectrum.npz`` (spectral densities, when measured); and the summary numbers ("final", "best", "late") defined once, for runs
and sweeps alike.

Readers (viz, sweep summaries) use ``load``; nothing here needs the trainer or torch.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator, Mapping, Optional

import numpy as np

from .config import UserError

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
LOCK_FILE = ".neuroscope.lock"  # held (flock) by the one process writing into the folder
PARTIAL = ".partial"  # the mark of a file being written: dashboard.partial.png, renamed when complete
# The files one run writes; another run into the same folder removes them first (stale_run_files).
RUN_FILES = (METRICS_CSV, HISTORY_NPZ, SUMMARY_JSON, MODEL_PT, CHECKPOINT_PT, DASHBOARD_PNG, ANIMATION_MP4, ANIMATION_GIF)
SPECTRUM_NPZ = "spectrum.npz"  # SLQ spectral densities along the run (curvature.density)
SPECTRUM_PNG = "spectrum.png"

# How a run ends (summary.json "status"); a sweep adds FAILED (a folder without a summary)
# and MISSING (a launched job without a folder).
FINISHED, DIVERGED, INTERRUPTED = "finished", "diverged", "interrupted"
FAILED, MISSING = "failed", "missing"

FINAL_COLUMNS = ("loss", "test_error", "gen_error", "rel_l2", "rel_l2_gen", "sharpness")
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
    # a PDE run's residual and boundary points, subsampled for the picture (empty otherwise)
    collocation_x: np.ndarray = field(default_factory=lambda: np.empty((0, 1)))  # (C, d)
    boundary_x: np.ndarray = field(default_factory=lambda: np.empty((0, 1)))  # (B, d)
    axis_names: tuple[str, ...] = ()  # one per input dimension, e.g. ("x", "t"); () for x or x₁, x₂


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
            (c for c in self.metrics if re.fullmatch(r"lambda_\d+", c)), key=lambda c: int(c.split("_")[1])
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
        self.write_cells([format_cell(row.get(c)) for c in self.columns])

    def write_cells(self, cells: list[str]) -> None:
        """A row already formatted (``format_cell`` of each column's value, in column order)."""
        self._writer.writerow(cells)
        now = time.monotonic()
        if now - self._last_flush >= self._flush_seconds:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        self._file.flush()

    def sync(self) -> int:
        """Flush and fsync, so every row written so far is on disk; returns the file's length
        in bytes (what a checkpoint records as the rows it covers)."""
        self.flush()
        os.fsync(self._file.fileno())
        return os.fstat(self._file.fileno()).st_size

    def close(self) -> None:
        if not self._file.closed:
            try:
                self.sync()
            finally:  # a full disk: the file is closed all the same, with the rows it could take
                self._file.close()


def format_cell(value: Any) -> str:
    """A metrics.csv cell: empty for not measured, a bool or int as a whole number, a float in
    its shortest round-trip form."""
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


def copy_metric_rows(src: str | os.PathLike, dst: str | os.PathLike, *, length: int, below_step: int) -> None:
    """Copy the header and the rows with step < ``below_step`` among the first ``length`` bytes
    of one metrics CSV (the rows a checkpoint counted) to another, byte for byte, so a resumed
    run continues the file as if never stopped; whatever the source flushed after those bytes
    is ignored. A source shorter than ``length`` is a ValueError."""
    with open(src, "rb") as f:
        head = f.read(length)
    if len(head) < length or not head.endswith(b"\n"):
        raise ValueError(f"{src} does not start with the {length} bytes of complete rows its checkpoint counted")
    lines = head.decode().splitlines(keepends=True)
    kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) < below_step]
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
        collocation_x=np.asarray(g.collocation_x, dtype=np.float64),
        boundary_x=np.asarray(g.boundary_x, dtype=np.float64),
        axis_names=np.asarray(list(g.axis_names), dtype=str),
        metric_order=np.asarray(list(history.metrics)),
    )
    path = run_dir / HISTORY_NPZ
    with atomic_path(path) as tmp:
        _savez(tmp, arrays)
    return path


def _savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """``np.savez_compressed``'s file (np.load reads it), deflated at level 1: 3-4x faster than
    savez_compressed's level 6 and 0.5% larger on a run's history (mostly float64 frames, which
    barely compress); an ensemble writes one per member."""
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


def load(run_dir: str | os.PathLike) -> History:
    """Read a run directory's ``history.npz`` and ``summary.json``; a file that is not one
    NeuroScope wrote (truncated, foreign) is a one-paragraph UserError."""
    run_dir = Path(run_dir)
    path = run_dir / HISTORY_NPZ
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a NeuroScope run directory whose run got past its first step?")
    try:
        with np.load(path, allow_pickle=False) as z:
            history = _history_from(z)
    except Exception as e:  # a truncated zip, a foreign file, a missing or misshapen array
        raise damaged(path, e) from None
    history.meta = read_summary(run_dir)
    return history


def _history_from(z: Any) -> History:
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
    for name in ("collocation_x", "boundary_x"):  # files written before these existed lack them
        if name in z.files:
            setattr(geometry, name, z[name])
    if "axis_names" in z.files:
        geometry.axis_names = tuple(str(v) for v in z["axis_names"])
    history = History(metrics=metrics, frame_steps=z["frame_steps"], frame_pred=z["frame_pred"], geometry=geometry)
    n_rows, n_plot = len(metrics.get("step", ())), len(geometry.plot_x)
    if any(len(v) != n_rows for v in metrics.values()) or history.frame_pred.shape != (len(history.frame_steps), n_plot):
        raise ValueError(f"its arrays disagree in length (metrics of {n_rows} rows, frames {history.frame_pred.shape} "
                         f"for {len(history.frame_steps)} steps and {n_plot} plot points)")
    return history


def damaged(path: Path, error: BaseException) -> UserError:
    """The error for a run-folder file that cannot be read as NeuroScope wrote it."""
    why = " ".join(str(error).split())[:200]
    return UserError(
        f"{path} is damaged or not a NeuroScope file ({type(error).__name__}: {why}). Nothing was changed; "
        "rerun the experiment to get it again (metrics.csv, if intact, still has the metrics)."
    )


def save_spectrum(arrays: Optional[Mapping[str, np.ndarray]], run_dir: str | os.PathLike) -> Optional[Path]:
    """Write ``spectrum.npz`` atomically from ``CurvatureSurvey.spectrum()`` arrays (plus ``lr``);
    nothing when ``arrays`` is None (no density was asked for)."""
    if arrays is None:
        return None
    path = Path(run_dir) / SPECTRUM_NPZ
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def load_spectrum(run_dir: str | os.PathLike) -> Optional[dict[str, np.ndarray]]:
    """The arrays of a run's ``spectrum.npz``, or None when it has none."""
    path = Path(run_dir) / SPECTRUM_NPZ
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_summary(run_dir: str | os.PathLike, summary: Mapping[str, Any]) -> Path:
    return write_atomic(Path(run_dir) / SUMMARY_JSON, json.dumps(_jsonable(summary), indent=2, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------- writing safely


def partial_path(path: str | os.PathLike) -> Path:
    """Where ``path`` is written before it is complete: ``dashboard.png`` -> ``dashboard.partial.png``
    (the extension stays last: numpy, Pillow and ffmpeg choose the format by it)."""
    path = Path(path)
    return path.with_name(f"{path.stem}{PARTIAL}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the partial path to write ``path`` through; when the block ends normally the
    file is synced to disk and renamed to ``path`` (a reader sees the old file or the whole new
    one, never half of one). On any error, a signal included, the partial file is removed
    and the error goes on: no temporary file outlives a failed write."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes | memoryview | str) -> Path:
    """Write ``data`` to ``path`` through :func:`atomic_path`. A full disk is an OSError (ENOSPC)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def stale_run_files(run_dir: str | os.PathLike) -> list[Path]:
    """The files of an earlier run in ``run_dir`` (and partial files a killed one left)."""
    run_dir = Path(run_dir)
    partials = [partial_path(run_dir / n) for n in RUN_FILES]
    return [p for p in [*(run_dir / n for n in RUN_FILES), *partials] if p.exists()]


def lock_run_dir(run_dir: str | os.PathLike) -> IO[str]:
    """Take the run folder's lock (``LOCK_FILE``, flock, released when the returned file is
    closed or the process ends, however it ends). BlockingIOError if another process holds it."""
    f = open(Path(run_dir) / LOCK_FILE, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise
    f.truncate(0)
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def lock_holder(run_dir: str | os.PathLike) -> Optional[str]:
    """The pid (as the lock file says it) of the process holding ``run_dir``'s lock, or None."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return None
    try:
        lock = lock_run_dir(run_dir)
    except BlockingIOError:
        return path.read_text().strip() or "?"
    except OSError:
        return None
    lock.close()
    return None


def read_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's summary.json ({} when there is none); a damaged one is a UserError."""
    path = Path(run_dir) / SUMMARY_JSON
    if not path.exists():
        return {}
    try:
        summary = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise damaged(path, e) from None
    if not isinstance(summary, dict):
        raise damaged(path, ValueError(f"it holds a JSON {type(summary).__name__}, not an object"))
    return summary


def _jsonable(value: Any) -> Any:
    """Strict JSON: numpy scalars to Python, non-finite floats (not measured, or diverged) to null."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value



# ----------------------------------------------------------------------------- summary values


def last_finite(metrics: Mapping[str, np.ndarray], column: str) -> tuple[float, Any]:
    """The last finite value of a column and the step it was recorded at; (NaN, None) if there is none."""
    v = np.asarray(metrics.get(column, ()), dtype=np.float64)
    steps = np.asarray(metrics.get("step", np.arange(len(v))), dtype=np.float64)
    (where,) = np.nonzero(np.isfinite(v))
    return (float(v[where[-1]]), int(steps[where[-1]])) if len(where) else (math.nan, None)


def best_value(metrics: Mapping[str, np.ndarray], column: str) -> float:
    """The smallest finite value of a column; NaN if there is none."""
    v = np.asarray(metrics.get(column, ()), dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.min()) if len(v) else math.nan


def summary_values(metrics: Mapping[str, np.ndarray], edge: float) -> dict[str, Any]:
    """The numbers a run's summary and a sweep's table report, from a metrics table:
    ``final`` (the last finite value of each column, with ``final_step``, the step it is
    from: of a diverged run, the values before it blew up), ``best`` (smallest), the largest sharpness and
    ``late_sharpness_over_edge``: the mean sharpness over the last ``LATE_FRACTION`` of the
    steps done, divided by ``edge``, the update rule's edge of stability (2/lr for GD)."""
    step = np.asarray(metrics.get("step", ()), dtype=np.float64)
    sharp = np.asarray(metrics.get("sharpness", np.full(len(step), np.nan)), dtype=np.float64)
    finite = np.isfinite(sharp)
    late = late_mean(metrics, "sharpness")
    final = {c: last_finite(metrics, c) for c in FINAL_COLUMNS}
    values = {
        "final": {c: value for c, (value, _) in final.items()},
        "final_step": {c: at for c, (_, at) in final.items()},
        "best": {c: best_value(metrics, c) for c in ("loss", "test_error", "gen_error", "rel_l2", "rel_l2_gen")},
        "max_sharpness": float(sharp[finite].max()) if finite.any() else math.nan,
        "late_sharpness_over_edge": late / edge if edge > 0 else math.nan,
    }
    spectrum = {c: late_mean(metrics, c) for c in metrics if is_spectrum_column(c)}
    if spectrum:  # only runs that measured them: other summaries stay as they were
        values["late"] = spectrum
    return values


def is_spectrum_column(column: str) -> bool:
    """A whole-spectrum column whose late value summaries carry: ``sharpness_<term>``,
    ``sharpness_ggn``, ``sharpness_over_abs_lambda_min``, ``lambda_min``, ``trace``."""
    return column.startswith("sharpness_") or column in ("lambda_min", "trace")


def late_mean(metrics: Mapping[str, np.ndarray], column: str) -> float:
    """The mean of a column's finite values over the last ``LATE_FRACTION`` of the steps done."""
    step = np.asarray(metrics.get("step", ()), dtype=np.float64)
    v = np.asarray(metrics.get(column, np.full(len(step), np.nan)), dtype=np.float64)
    late = v[np.isfinite(v) & (step >= (1 - LATE_FRACTION) * step[-1])] if len(step) else v[:0]
    return float(late.mean()) if len(late) else math.nan
