"""A sweep as a table: ``summary.csv`` (a row per job, found or missing, exact values), the
same rows for a terminal, and the one-paragraph account of what a summary wrote."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..rundir import FAILED, MISSING
from .jobs import METRIC_COLUMNS, Job, Sweep


@dataclass
class SweepResult:
    sweep: Sweep
    csv: Path
    png: Optional[Path]
    by_seed: Optional[Path] = None  # summary_by_<keys>.csv: the numbers over the seeds


def table_columns(sweep: Sweep) -> list[str]:
    spectrum = sorted({k for job in sweep.jobs for k in job.values if k not in METRIC_COLUMNS})  # late_<column>
    fixed = ["status", "lr"] + METRIC_COLUMNS + spectrum + ["steps", "steps_done", "wall_seconds", "job", "note"]
    return list(sweep.swept_keys) + [c for c in fixed if c not in sweep.swept_keys]


def job_row(job: Job, sweep: Sweep) -> dict[str, Any]:
    row: dict[str, Any] = {k: job.overrides.get(k) for k in sweep.swept_keys}
    row.update(status=job.status, job=job.name, steps=job.steps, steps_done=job.steps_done,
               wall_seconds=job.wall_seconds, note=job.note, **job.values)
    if "lr" not in sweep.swept_keys:
        row["lr"] = job.lr
    return row


def _cell(value: Any) -> str:
    if value is None:
        return ""  # unknown
    if isinstance(value, float):
        return repr(value)  # exact; 'nan' where a job has no such value
    return str(value)


def write_table(sweep: Sweep, path: str | os.PathLike) -> Path:
    """``summary.csv``: a row per job (found or missing), one column per swept key first."""
    path = Path(path)
    columns = table_columns(sweep)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for job in sweep.jobs:
            row = job_row(job, sweep)
            writer.writerow([_cell(row.get(c)) for c in columns])
    os.replace(tmp, path)
    return path


def format_table(sweep: Sweep) -> str:
    """The table for a terminal: swept keys, status and the main numbers."""
    columns = list(sweep.swept_keys) + ["status", "final_loss", "final_test_error", "final_gen_error",
                                        "max_sharpness", "late_sharpness_over_edge", "steps_done"]
    heads = [c.replace("final_", "").replace("late_sharpness_over_edge", "late λ/(2/lr)") for c in columns]
    rows = []
    for job in sweep.jobs:
        row = job_row(job, sweep)
        cells = []
        for c in columns:
            v = row.get(c)
            cells.append("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v))
        rows.append(cells)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def describe(result: SweepResult) -> str:
    """What a summary wrote, and why each failed or missing job has no numbers."""
    files = ", ".join(str(p) for p in (result.csv, result.by_seed, result.png) if p)
    lines = [f"sweep summary ({len(result.sweep.jobs)} jobs: {result.sweep.counts_text()}): {files}"]
    for job in result.sweep.jobs:
        if job.status in (MISSING, FAILED):
            lines.append(f"{job.status} job {job.name}: {job.note}")
    return "\n".join(lines)
