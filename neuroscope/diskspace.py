"""What a run will write, estimated before it trains, and the check that the disk can take it:
a run refused up front loses nothing; one that fills the disk halfway loses its pictures."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .config import OutputError, VideoFormat, VizConfig
from .rundir import ANIMATION_GIF, ANIMATION_MP4, CHECKPOINT_PT, DASHBOARD_PNG, HISTORY_NPZ, METRICS_CSV, MODEL_PT

CSV_BYTES_PER_VALUE = 20  # the shortest round-trip form of a double, and a comma
FILE_OVERHEAD = 65536  # a torch file's zip records (one per tensor); summary.json and config.yaml
# Bytes per pixel of the pictures, about three times what the default dashboard takes (1200 x
# 900 pixels, 100 frames: PNG 0.12 MB, MP4 0.18 MB, GIF 0.7 MB), so that a busier figure fits too.
PNG_BYTES_PER_PIXEL = 0.35
VIDEO_BYTES_PER_PIXEL = {VideoFormat.mp4: 0.005, VideoFormat.gif: 0.02, VideoFormat.none: 0.0}


def estimate_run_bytes(
    *, n_params: int, dtype_bytes: int, steps: int, n_columns: int, frames: int, plot_points: int, viz: VizConfig,
    pictures: bool = True,
) -> dict[str, int]:
    """Bytes of each file a run writes, at most about (``pictures``: the dashboard and video too).
    The checkpoint counts twice: a new one is written beside the old before it replaces it."""
    rows = steps + 1
    weights = n_params * dtype_bytes + FILE_OVERHEAD
    state = rows * n_columns * 9 + frames * plot_points * 8  # pickled floats; the prediction frames
    pixels = int(viz.size[0] * viz.dpi) * int(viz.size[1] * viz.dpi)
    video = ANIMATION_GIF if VideoFormat(viz.format) is VideoFormat.gif else ANIMATION_MP4
    files = {
        METRICS_CSV: rows * n_columns * CSV_BYTES_PER_VALUE,
        HISTORY_NPZ: rows * n_columns * 8 + (frames + 3) * plot_points * 8,
        MODEL_PT: weights,
        CHECKPOINT_PT: 2 * (weights + state),
        DASHBOARD_PNG: int(pixels * PNG_BYTES_PER_PIXEL),
        video: int(frames * pixels * VIDEO_BYTES_PER_PIXEL[VideoFormat(viz.format)]),
    }
    return files if pictures else {k: v for k, v in files.items() if k not in (DASHBOARD_PNG, video)}


def check_free_space(run_dir: str | os.PathLike, estimate: dict[str, int]) -> None:
    """OutputError, before training, when the disk of ``run_dir`` has less free space than
    the run is estimated to write."""
    need = sum(estimate.values())
    free = shutil.disk_usage(run_dir).free
    if free < need:
        parts = ", ".join(f"{name} {_mb(n)}" for name, n in estimate.items() if n)
        raise OutputError(
            f"{Path(run_dir)} has {_mb(free)} free, but this run will write about {_mb(need)} ({parts}). "
            "Free some disk space, choose another place with hydra.run.dir=PATH (CLI) or out_dir=PATH (Python API), "
            "or write less: fewer steps, viz.frames, a smaller viz.size or viz.format=none."
        )


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"
