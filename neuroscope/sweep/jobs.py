"""Reading a sweep folder: every job's status, overrides and numbers, from the jobs' own
files, the launch records the callback leaves in ``.jobs/`` and Hydra's ``multirun.yaml``.

Job statuses: ``finished``, ``diverged``, ``interrupted`` (from the job's summary.json);
``failed`` (the job folder exists but has no summary.json: it crashed, was killed, or is
still running; its metrics come from whatever metrics.csv holds); ``missing`` (a job that
was launched has no folder).
"""
from __future__ import annotations

import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from omegaconf import OmegaConf

from .. import rundir as hist
from ..plainyaml import load_yaml_plain, select_plain
from ..config import OptimizerConfig, UserError
from ..optimizers import build_rule
from ..rundir import DIVERGED, FAILED, FINAL_COLUMNS, INTERRUPTED, MISSING

log = logging.getLogger("neuroscope")

MULTIRUN_YAML = "multirun.yaml"
HYDRA_DIR = hist.CONFIG_YAML.parent
LAUNCHES_DIR = ".jobs"  # one record per launched job, written by the SweepSummary callback

METRIC_COLUMNS = [f"final_{c}" for c in FINAL_COLUMNS] + ["max_sharpness", "late_sharpness_over_edge"]


@dataclass
class Job:
    """One job of a sweep, as far as its files (or its launch record) tell."""

    num: Optional[int]
    name: str  # the folder name, also for a missing job (the folder it had)
    overrides: dict[str, str]  # every task override of the job, key -> value as typed
    status: str
    run_dir: Optional[Path]
    lr: float = math.nan
    edge: float = math.nan  # its update rule's edge of stability (2/lr for GD)
    steps: Optional[int] = None  # configured
    steps_done: Optional[int] = None
    wall_seconds: Optional[float] = None
    values: dict[str, float] = field(default_factory=dict)  # METRIC_COLUMNS, and late_<column> of spectrum columns
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # metrics.csv columns
    note: str = ""


@dataclass
class Sweep:
    sweep_dir: Path
    swept_keys: list[str]
    jobs: list[Job]
    fixed: list[str] = field(default_factory=list)  # overrides common to every job, as typed
    sweeper: str = ""  # multirun.yaml's hydra.sweeper._target_ ('' when unknown)

    @property
    def grid(self) -> bool:
        """Whether the jobs are a grid of typed values (Hydra's basic sweeper, or unknown), not
        values an optimizing sweeper (Optuna, Nevergrad) chose."""
        return not self.sweeper or self.sweeper.endswith("BasicSweeper")

    @property
    def missing(self) -> list[Job]:
        return [j for j in self.jobs if j.status == MISSING]

    def counts(self) -> dict[str, int]:
        return dict(Counter(j.status for j in self.jobs))

    def counts_text(self) -> str:
        """'2 finished, 1 diverged': how many jobs ended how, in the order they first appear."""
        return ", ".join(f"{n} {s}" for s, n in self.counts().items())


@dataclass
class Launch:
    """What the callback records when Hydra starts a job: its number, its folder (relative to
    the sweep folder) and its task overrides."""

    num: int
    folder: str
    overrides: list[str]


# --------------------------------------------------------------------------------- launches


def write_launch(sweep_dir: str | os.PathLike, launch: Launch) -> Path:
    """``<sweep_dir>/.jobs/<num>.yaml``; written whole or not at all, since jobs of other
    processes write theirs at the same time."""
    folder = Path(sweep_dir) / LAUNCHES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{launch.num}.yaml"
    tmp = folder / f".{launch.num}.{os.getpid()}.tmp"
    OmegaConf.save(OmegaConf.create({"num": launch.num, "folder": launch.folder, "overrides": launch.overrides}), tmp)
    os.replace(tmp, path)
    return path


def read_launches(sweep_dir: str | os.PathLike) -> dict[int, Launch]:
    """The launch records of a sweep folder by job number; none for a sweep run without the
    callback."""
    launches = {}
    for path in sorted((Path(sweep_dir) / LAUNCHES_DIR).glob("*.yaml")):
        record = _load_yaml(path, plain=True)
        try:
            launch = Launch(num=int(record["num"]), folder=str(record["folder"]), overrides=[str(o) for o in record["overrides"]])
        except Exception as e:  # an unreadable record is one job less to report missing
            log.warning("ignoring the launch record %s (%s: %s)", path, type(e).__name__, e)
            continue
        launches[launch.num] = launch
    return launches


def swept_keys(multirun: Any) -> list[str]:
    """The keys a multirun sweeps, from its ``multirun.yaml``: ``hydra.sweeper.params`` and
    the task overrides, the later override of a key winning, as in the sweeper ('+key'
    adds key). ``[]`` where the overrides cannot be parsed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(multirun, "hydra.sweeper.params", default=None) or {}
    task = list(OmegaConf.select(multirun, "hydra.overrides.task", default=None) or [])
    lines = [f"{k}={v}" for k, v in params.items()] + [str(t) for t in task]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except Exception as e:  # a sweep syntax this reader does not know: the keys that vary win
        log.warning("cannot parse the sweep in multirun.yaml (%s: %s); swept keys: those that differ between jobs",
                    type(e).__name__, e)
        return []
    final = {o.get_key_element(): o for o in parsed}
    return [k.lstrip("+~") for k, o in final.items() if o.is_sweep_override()]


# ------------------------------------------------------------------------------------ jobs


def _to_float(value: Any) -> float:
    """A number of summary.json as a float: null (not measured) is NaN, and so is anything else
    that is not a number (older runs wrote 'nan' and 'inf' as strings: those are read as such)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def as_number(value: Any) -> Optional[float]:
    """A value as typed on the command line, as a number; None if it is none."""
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _split_override(line: str) -> tuple[str, str]:
    key, _, value = line.partition("=")
    return key.lstrip("+~"), value


def _load_yaml(path: Path, *, plain: bool = False) -> Any:
    """A YAML file of the sweep: a DictConfig, or with ``plain`` plain data (libyaml: a job's
    files, read three per job; ``_select`` reads both); None when absent or unreadable."""
    if not path.exists():
        return None
    try:
        return load_yaml_plain(path) if plain else OmegaConf.load(path)
    except Exception as e:
        log.warning("cannot read %s (%s: %s)", path, type(e).__name__, e)
        return None


def _select(cfg: Any, key: str) -> Any:
    """``key`` (dotted) of a config or of plain data (``select_plain``), None where it has none."""
    if cfg is None:
        return None
    if isinstance(cfg, (dict, list)):
        return select_plain(cfg, key)
    return OmegaConf.select(cfg, key, default=None)


def _job_folders(sweep_dir: Path) -> list[Path]:
    return [p for p in sorted(sweep_dir.iterdir()) if p.is_dir() and not p.name.startswith(".") and any(
        (p / f).exists() for f in (HYDRA_DIR, hist.METRICS_CSV, hist.SUMMARY_JSON))]


def _job_num(folder: Path, hydra_yaml: Any) -> Optional[int]:
    num = _select(hydra_yaml, "hydra.job.num")
    if isinstance(num, int):
        return num
    m = re.match(r"(\d+)(_|$)", folder.name)
    return int(m.group(1)) if m else None


def _last_error(folder: Path) -> str:
    """The last ERROR line of the job's log, if any (why a job failed)."""
    for log_file in sorted(folder.glob("*.log")):
        try:
            lines = [ln for ln in log_file.read_text(errors="replace").splitlines() if "[ERROR]" in ln]
        except OSError:
            continue
        if lines:
            return lines[-1].split("[ERROR]", 1)[1].lstrip(" -")[:300]
    return ""


def metrics_values(metrics: Mapping[str, np.ndarray], edge: float) -> dict[str, float]:
    """METRIC_COLUMNS from a metrics table, as a run's summary defines them (``hist.summary_values``)."""
    values = hist.summary_values(metrics, edge)
    row = {f"final_{k}": v for k, v in values["final"].items()}
    row.update(max_sharpness=values["max_sharpness"], late_sharpness_over_edge=values["late_sharpness_over_edge"])
    row.update({f"late_{k}": v for k, v in values.get("late", {}).items()})
    return row


def _from_summary(job: Job, summary: Mapping[str, Any]) -> None:
    """Status, numbers and note of a job that wrote its summary.json."""
    job.status = str(summary.get("status", FAILED))
    final = summary.get("final", {})
    job.values = {f"final_{k}": _to_float(final.get(k)) for k in FINAL_COLUMNS}
    job.values["max_sharpness"] = _to_float(summary.get("max_sharpness"))
    job.values["late_sharpness_over_edge"] = _to_float(summary.get("late_sharpness_over_edge"))
    job.values.update({f"late_{k}": _to_float(v) for k, v in summary.get("late", {}).items()})
    job.steps_done = int(summary["steps_done"]) if "steps_done" in summary else None
    job.wall_seconds = _to_float(summary.get("wall_seconds"))
    if job.status == DIVERGED:
        job.note = f"diverged at step {summary.get('diverged_at_step', job.steps_done)}"
    elif job.status == INTERRUPTED:
        job.note = f"interrupted after step {job.steps_done}"


def _from_metrics(job: Job, folder: Path) -> None:
    """Numbers and note of a job without summary.json: whatever its metrics.csv holds."""
    job.values = metrics_values(job.metrics, job.edge)
    done = len(job.metrics.get("step", []))
    job.steps_done = int(job.metrics["step"][-1]) if done else None
    why = _last_error(folder)
    job.note = job.note or (
        f"no summary.json (crashed, killed or still running); metrics.csv has {done} rows" if done
        else "no summary.json and no metrics (the job stopped before its first step)"
    ) + (f"; log: {why}" if why else "")


def _read_job(folder: Path, launch: Optional[Launch]) -> Job:
    # the job's number: its launch record's, when that names this folder; else its hydra.yaml's
    known = launch is not None and launch.folder == folder.name
    num = launch.num if known else _job_num(folder, _load_yaml(folder / HYDRA_DIR / "hydra.yaml", plain=True))
    recorded = _load_yaml(folder / HYDRA_DIR / "overrides.yaml", plain=True)
    lines = [str(x) for x in recorded] if recorded is not None else (launch.overrides if launch else [])
    job = Job(num=num, name=folder.name, overrides=dict(_split_override(x) for x in lines), status=FAILED, run_dir=folder)
    try:
        summary = hist.read_summary(folder)
    except UserError as e:  # one damaged job must not stop the summary of the others
        summary, job.note = {}, str(e)
    # the config only for what the summary does not say (a job that did not finish)
    config = None if all(k in summary for k in ("lr", "steps", "edge")) else _load_yaml(folder / hist.CONFIG_YAML, plain=True)
    if (folder / hist.METRICS_CSV).exists():
        try:
            job.metrics = hist.read_metrics_csv(folder / hist.METRICS_CSV)
        except Exception as e:
            job.note = f"metrics.csv unreadable ({type(e).__name__}: {e})"
    job.lr = _to_float(summary.get("lr", _select(config, "lr")))
    if math.isnan(job.lr) and "lr" in job.overrides:
        job.lr = _to_float(job.overrides["lr"])
    job.edge = _edge(summary, config, job.lr)
    steps = summary.get("steps", _select(config, "steps"))
    job.steps = int(steps) if steps is not None else None
    if summary:
        _from_summary(job, summary)
    else:
        _from_metrics(job, folder)
    return job


def _edge(summary: Mapping[str, Any], config: Any, lr: float) -> float:
    """A job's edge of stability: its summary.json's, else its config's update rule's at its lr
    (gradient descent's 2/lr for a config without an optimizer)."""
    if "edge" in summary:
        return _to_float(summary["edge"])
    if not lr > 0:
        return math.nan
    node = _select(config, "optimizer") or {}
    try:
        return build_rule(OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(OptimizerConfig), node))).edge(lr)
    except UserError:
        return math.nan


def _missing_job(launch: Launch, multirun: Any) -> Job:
    """A launched job whose folder is gone: what its launch record and multirun.yaml tell."""
    overrides = dict(_split_override(x) for x in launch.overrides)
    steps = as_number(overrides.get("steps", _select(multirun, "steps")))
    lr = _to_float(overrides.get("lr", _select(multirun, "lr")))
    return Job(num=launch.num, name=launch.folder, overrides=overrides, status=MISSING, run_dir=None,
               lr=lr, edge=_edge({}, multirun, lr), steps=int(steps) if steps is not None else None,
               values={c: math.nan for c in METRIC_COLUMNS}, note="job folder not found")


def _fixed_overrides(jobs: list[Job], swept: list[str]) -> list[str]:
    """The overrides, as typed, that every job shares and no sweep varies."""
    keys = [k for k in dict.fromkeys(k for j in jobs for k in j.overrides) if k not in swept]
    return [f"{k}={jobs[0].overrides[k]}" for k in keys if all(j.overrides.get(k) == jobs[0].overrides.get(k) for j in jobs)]


def load_sweep(sweep_dir: str | os.PathLike) -> Sweep:
    """Everything a summary needs from a multirun folder: its jobs, launched and found."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir} is not a directory: give a multirun folder, e.g. outputs/multirun/<date>/<time>.")
    multirun = _load_yaml(sweep_dir / MULTIRUN_YAML)
    folders = _job_folders(sweep_dir)
    if multirun is None and not folders:
        inner = sorted(p.parent for p in sweep_dir.glob(f"*/{MULTIRUN_YAML}"))
        hint = f" Sweeps inside it: {', '.join(str(p) for p in inner)}." if inner else ""
        raise FileNotFoundError(
            f"{sweep_dir} holds no {MULTIRUN_YAML} and no job folders: it is not a sweep folder "
            f"(neuroscope -m ... writes them under outputs/multirun/<date>/<time>).{hint}"
        )
    launches = read_launches(sweep_dir)
    jobs = [_read_job(folder, launches.get(_job_num(folder, None))) for folder in folders]
    seen = {j.num for j in jobs}
    jobs += [_missing_job(launch, multirun) for num, launch in launches.items() if num not in seen]
    jobs.sort(key=lambda j: (j.num is None, j.num if j.num is not None else 0, j.name))
    swept = swept_keys(multirun) if multirun is not None else []
    if not swept:  # not known from multirun.yaml: the keys whose values differ between jobs
        keys = list(dict.fromkeys(k for j in jobs for k in j.overrides))
        swept = [k for k in keys if len({j.overrides.get(k) for j in jobs}) > 1]
    return Sweep(sweep_dir=sweep_dir, swept_keys=swept, jobs=jobs, fixed=_fixed_overrides(jobs, swept),
                 sweeper=str(_select(multirun, "hydra.sweeper._target_") or ""))
