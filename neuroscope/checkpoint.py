"""Checkpoints and continuing a run from one: the checkpoint file (weights plus the whole
TrainState), the config of the run to continue with what may change applied, and the restored
state it continues from. (Not ``resume.py``: that name would shadow ``neuroscope.resume``.)
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import hashlib
import json
import io
import logging
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from . import rundir as hist
from .config import Config, ConfigError
from .typed import to_config
from .rundir import CHECKPOINT_PT, CONFIG_YAML, DIVERGED, FINISHED
from .trainer import TrainState

log = logging.getLogger("neuroscope")

# What `neuroscope resume=RUN_DIR ...` may change; everything else comes from the run itself.
RESUMABLE_KEYS = ("steps", "viz", "progress", "checkpoint", "device.threads", "diverge_above", "resume")


FORMAT = 2  # the layout below; 1 (pickled, before weights_only loading) is not read
TRACKER_KEYS = frozenset({"eigenvectors", "by_parity", "costs", "expected_hvps", "measurements", "generator"})


@dataclass
class Checkpoint:
    """What ``checkpoint.pt`` holds: tensors and plain Python values only, so that
    ``torch.load(weights_only=True)`` reads it and nothing in the file is ever executed."""

    weights: dict[str, Tensor]
    state: TrainState
    config: dict[str, Any]  # the run's config as plain data (``config_data``)
    fingerprint: str  # of ``config``
    metrics_bytes: int  # metrics.csv's length when this was written: exactly the rows below state.step
    status: Optional[str] = None  # None while training; how the run ended, in the end-of-run checkpoint


def config_data(config: Config) -> dict[str, Any]:
    """A config as plain data, interpolations resolved: what a checkpoint records."""
    return copy.deepcopy(_data(config))


def config_yaml(config: Config) -> str:
    """A config as the YAML of ``.hydra/config.yaml``, for a run Hydra did not make."""
    key = repr(config)
    if key not in _YAML:
        _remember(_YAML, key, OmegaConf.to_yaml(OmegaConf.create(_data(config))))
    return _YAML[key]


_DATA: dict[str, dict[str, Any]] = {}
_YAML: dict[str, str] = {}


def _remember(cache: dict[str, Any], key: str, value: Any) -> None:
    if len(cache) >= 4096:
        cache.clear()
    cache[key] = value


def _data(config: Config) -> dict[str, Any]:
    """``config`` as plain data, converted once per distinct config (a run needs it at its start
    and at every checkpoint, an ensemble for every member): what ``OmegaConf.to_container`` of
    ``OmegaConf.structured(config)`` gives (resolved, enums by name), read off the dataclasses
    directly (0.2 ms, against 25-50 ms through OmegaConf); a config holding anything else than
    plain values goes through OmegaConf."""
    key = repr(config)  # every field, recursively: equal reprs are equal configs
    if key not in _DATA:
        try:
            data = plain_data(config)
        except TypeError:
            data = OmegaConf.to_container(OmegaConf.structured(config), resolve=True, enum_to_str=True)
        _remember(_DATA, key, data)
    return _DATA[key]


def plain_data(value: Any) -> Any:
    """A dataclass tree of plain values as OmegaConf's structured conversion gives it: fields in
    order, enums by name, tuples as lists, an int in a float field as a float. A TypeError for
    any other kind of value (OmegaConf decides about those)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        hints = _float_fields(type(value))
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            if f.name in hints and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            out[f.name] = plain_data(v)
        return out
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("a dict with keys that are not strings")
        return {k: plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"a {type(value).__name__} value")


@functools.lru_cache(maxsize=None)
def _float_fields(cls: type) -> frozenset[str]:
    """The fields of dataclass ``cls`` typed float or Optional[float]."""
    hints = typing.get_type_hints(cls)
    return frozenset(name for name, hint in hints.items() if hint is float or hint == Optional[float])


def fingerprint(data: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, state: TrainState, *, config: Config, metrics_bytes: int,
    status: Optional[str] = None,
) -> None:
    """Write a resumable checkpoint atomically and durably. ``metrics_bytes`` must be the length of
    a metrics.csv already fsynced with every row below ``state.step``: a checkpoint never claims a
    row that is not on disk."""
    data = config_data(config)
    payload = {
        "format": FORMAT,
        "model": model.state_dict(),
        "state": {
            "step": state.step,
            # one float64 tensor a column: pickling 20k Python floats one by one took 10 ms a checkpoint
            "metrics": {k: torch.tensor(v, dtype=torch.float64) for k, v in state.metrics.items()},
            "frame_steps": list(state.frame_steps),
            "frame_pred": torch.as_tensor(np.asarray(state.frame_pred, dtype=np.float64)),
            "tracker": state.tracker,
            "survey": state.survey,
            "optimizer": state.optimizer,
            "reference": state.reference,
            "nonfinite": state.nonfinite,
            "train_seconds": state.train_seconds,
        },
        "config": data,
        "fingerprint": fingerprint(data),
        "metrics_bytes": int(metrics_bytes),
        "status": status,
    }
    write_torch(path, payload)


def write_torch(path: str | os.PathLike, obj: object) -> None:
    """``torch.save`` into memory, then an atomic write: a full disk is then an OSError (torch's
    own file writer reports it as a RuntimeError) and leaves no partial file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    hist.write_atomic(path, buffer.getbuffer())


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint as plain data (``weights_only=True``); anything that is not one of ours
    (a foreign pickle, a truncated file, another format) is a ConfigError saying what is wrong."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by what is wrong
        raise _not_ours(path, _load_failure(e)) from None
    if not isinstance(payload, dict):
        raise _not_ours(path, f"it holds a {type(payload).__name__}, not NeuroScope's dict of state")
    if payload.get("format") != FORMAT:
        raise _not_ours(path, f"its format is {payload.get('format')!r}, and this NeuroScope reads format {FORMAT} only")
    try:
        s = payload["state"]
        tracker = dict(s["tracker"])
        if tracker and (set(tracker) != TRACKER_KEYS or not isinstance(tracker["generator"], Tensor)):
            raise ValueError(f"the curvature tracker's state has keys {sorted(tracker)}, not {sorted(TRACKER_KEYS)}")
        state = TrainState(
            step=int(s["step"]),
            metrics={str(k): v.tolist() if isinstance(v, Tensor) else [float(x) for x in v] for k, v in s["metrics"].items()},
            frame_steps=[int(v) for v in s["frame_steps"]],
            frame_pred=[row.numpy() for row in s["frame_pred"]],
            tracker=tracker,
            survey=dict(s.get("survey", {})),
            optimizer=dict(s.get("optimizer", {})),
            reference=dict(s.get("reference", {})),
            nonfinite={str(k): int(v) for k, v in s["nonfinite"].items()},
            train_seconds=float(s["train_seconds"]),
        )
        weights = {str(k): v for k, v in payload["model"].items() if isinstance(v, Tensor)}
        if len(weights) != len(payload["model"]):
            raise ValueError("its model weights are not all tensors")
        status = payload["status"]
        return Checkpoint(
            weights=weights, state=state, config=dict(payload["config"]), fingerprint=str(payload["fingerprint"]),
            metrics_bytes=int(payload["metrics_bytes"]), status=None if status is None else str(status),
        )
    except KeyError as e:
        raise _not_ours(path, f"it has no {e} entry") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise _not_ours(path, f"an entry is malformed ({e})") from None


def _load_failure(e: Exception) -> str:
    """Why torch.load refused a file, in one line (its weights_only message is several paragraphs)."""
    foreign = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    if foreign:
        return f"it asks to call or build {foreign.group(1)}, which a checkpoint of tensors and plain values never does"
    first = next((line for line in str(e).splitlines() if line.strip()), "")
    return f"it cannot be read as a torch checkpoint ({type(e).__name__}: {first.strip()[:200]})"


def _not_ours(path: str | os.PathLike, what: str) -> ConfigError:
    return ConfigError(
        f"{path} is not a NeuroScope checkpoint this version can resume from: {what}. It was read as plain data "
        "(torch.load with weights_only=True), so nothing in it was executed. Resume from a run folder NeuroScope wrote, "
        "or start a new run."
    )


def check_resume_target(src: str | os.PathLike, run_dir: str | os.PathLike) -> None:
    """Refuse to resume a run into its own folder, before anything is written there."""
    if Path(src).resolve() == Path(run_dir).resolve():
        raise ConfigError(
            f"resume={src} would write the resumed run into the folder it continues ({run_dir}): its config.yaml, "
            "metrics.csv and checkpoint.pt would be replaced while they are read. Pick another folder for the resumed "
            f"run, e.g. hydra.run.dir={Path(src)}-resumed (CLI) or out_dir=... (Python API); {src} was left as it was."
        )


def resume_config(resume_dir: str | os.PathLike, overrides: Sequence[str] = ()) -> Config:
    """The config of the run in ``resume_dir`` with ``overrides`` (steps, viz.*, ...) applied."""
    src = Path(resume_dir)
    if not (src / CHECKPOINT_PT).exists() or not (src / CONFIG_YAML).exists():
        raise ConfigError(
            f"resume={src} is not a run directory that can be resumed: it needs {CHECKPOINT_PT} and {CONFIG_YAML} "
            "(every finished or interrupted run writes them; a run killed without checkpoint.every has none)."
        )
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    bad = [k for k in keys if not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS)]
    if bad:
        raise ConfigError(
            f"resume continues a run with its own config, so {', '.join(bad)} cannot change; only "
            f"{', '.join(k for k in RESUMABLE_KEYS if k != 'resume')} (and viz.*, checkpoint.*) can."
        )
    merged = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.load(src / CONFIG_YAML))
    check_unchanged(src, to_config(merged), read_checkpoint(src / CHECKPOINT_PT))
    merged.merge_with(OmegaConf.from_dotlist([o.lstrip("+~") for o in overrides if not o.startswith("resume=")]))
    merged.resume = str(src)
    return to_config(merged)


def check_unchanged(src: Path, config: Config, checkpoint: Checkpoint) -> None:
    """The config in ``src``'s config.yaml must be the one its checkpoint was trained with."""
    now = config_data(config)
    if fingerprint(now) == checkpoint.fingerprint == fingerprint(checkpoint.config):
        return
    changed = [
        f"{key} ({before!r} in {CHECKPOINT_PT}, {after!r} in {CONFIG_YAML})"
        for key, (before, after) in _differences(checkpoint.config, now).items()
    ]
    raise ConfigError(
        f"resume={src}: its {CONFIG_YAML} is not the config the run was trained with, which {CHECKPOINT_PT} records: "
        f"{'; '.join(changed) or 'the recorded fingerprint does not match'}. The file was edited after the run, so "
        f"resuming would continue a different experiment. Undo the edit (only {', '.join(k for k in RESUMABLE_KEYS if k != 'resume')} may "
        "change, on the command line), or start a new run."
    )


def _differences(before: Any, after: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """The dotted keys whose values differ between two nested dicts."""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return {} if before == after else {prefix: (before, after)}
    found: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(before) | set(after), key=str):
        found.update(_differences(before.get(key), after.get(key), f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return found


def continue_run(src: Path, config: Config, model: nn.Module, run_dir: Path) -> TrainState:
    """Load the run in ``src`` into ``model`` and copy its durable metric rows (the bytes its
    checkpoint counted) into ``run_dir``; returns the state the trainer continues from."""
    checkpoint = read_checkpoint(src / CHECKPOINT_PT)
    state = _restore(config, checkpoint, src)
    try:
        model.load_state_dict(checkpoint.weights)
    except RuntimeError as e:
        raise _not_ours(src / CHECKPOINT_PT, f"its weights do not fit the model of its config ({str(e).splitlines()[0]})") from None
    metrics = src / hist.METRICS_CSV
    try:
        hist.copy_metric_rows(metrics, run_dir / hist.METRICS_CSV, length=checkpoint.metrics_bytes, below_step=state.step)
        copied = hist.read_metrics_csv(run_dir / hist.METRICS_CSV)
    except (OSError, ValueError) as e:
        raise ConfigError(f"resume={src}: its {hist.METRICS_CSV} cannot be continued ({e}).") from None
    if not _same_rows(copied, state.metrics):
        raise ConfigError(
            f"resume={src}: its {hist.METRICS_CSV} does not hold the rows {CHECKPOINT_PT} recorded (steps 0 to "
            f"{state.step - 1}): the file was changed after the run. Restore it, or start a new run."
        )
    log.info("resuming %s at step %d, to step %d", src, state.step, config.steps)
    return state


def _same_rows(csv_columns: dict[str, np.ndarray], metrics: dict[str, list[float]]) -> bool:
    """Whether metrics.csv's rows are the checkpoint's, value for value (NaN where not measured)."""
    return set(csv_columns) == set(metrics) and all(
        np.array_equal(csv_columns[c], np.asarray(v, dtype=np.float64), equal_nan=True) for c, v in metrics.items()
    )


def _restore(config: Config, checkpoint: Checkpoint, src: Path) -> TrainState:
    """Make a loaded TrainState continue to ``config.steps``; a finished run re-records its last row."""
    state, status = checkpoint.state, checkpoint.status
    last = state.step - 1
    if status == DIVERGED:
        raise ConfigError(f"resume={src}: that run diverged at step {last}; there is nothing to continue. Start a new run.")
    if status == FINISHED:  # its last row had no update: record it again, with one
        if config.steps <= last:
            raise ConfigError(f"resume={src} finished at step {last}; give a larger steps (e.g. steps={2 * last}) to continue it.")
        state.metrics = {k: v[:last] for k, v in state.metrics.items()}
        if state.frame_steps and state.frame_steps[-1] == last:
            state.frame_steps, state.frame_pred = state.frame_steps[:-1], state.frame_pred[:-1]
        state.step = last
    elif config.steps < last:
        raise ConfigError(f"resume={src} already recorded step {last}; steps={config.steps} must be at least that.")
    return state
