"""Checkpoints and continuing a run from one: the checkpoint file (weights plus the whole
TrainState), the config of the run to continue with what may change applied, and the restored
state it continues from. (Not ``resume.py``: that name would shadow ``neuroscope.resume``.)
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from . import rundir as hist
from .config import Config, ConfigError, to_config
from .rundir import CHECKPOINT_PT, CONFIG_YAML, DIVERGED, FINISHED
from .trainer import TrainState

log = logging.getLogger("neuroscope")

# What `neuroscope resume=RUN_DIR ...` may change; everything else comes from the run itself.
RESUMABLE_KEYS = ("steps", "viz", "progress", "checkpoint", "device.threads", "diverge_above", "resume")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, state: TrainState) -> None:
    """Write a resumable checkpoint atomically: weights plus the whole TrainState."""
    payload = {
        "format": 1,
        "model": model.state_dict(),
        "state": {
            "step": state.step,
            "metrics": state.metrics,
            "frame_steps": list(state.frame_steps),
            "frame_pred": torch.as_tensor(np.asarray(state.frame_pred, dtype=np.float64)),
            "tracker": state.tracker,
            "optimizer": state.optimizer,
            "reference": state.reference,
            "nonfinite": state.nonfinite,
            "train_seconds": state.train_seconds,
        },
    }
    tmp = f"{path}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], TrainState]:
    payload = torch.load(path, map_location="cpu", weights_only=False)  # our own file format
    s = payload["state"]
    state = TrainState(
        step=int(s["step"]),
        metrics={k: list(v) for k, v in s["metrics"].items()},
        frame_steps=[int(v) for v in s["frame_steps"]],
        frame_pred=[row.numpy() for row in s["frame_pred"]],
        tracker=s["tracker"],
        optimizer=s.get("optimizer", {}),  # absent in checkpoints made before momentum and references
        reference=s.get("reference", {}),
        nonfinite=dict(s["nonfinite"]),
        train_seconds=float(s["train_seconds"]),
    )
    return payload["model"], state


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
    merged.merge_with(OmegaConf.from_dotlist([o.lstrip("+~") for o in overrides if not o.startswith("resume=")]))
    merged.resume = str(src)
    return to_config(merged)


def continue_run(src: Path, config: Config, model: nn.Module, run_dir: Path) -> TrainState:
    """Load the run in ``src`` into ``model`` and copy its metric rows into ``run_dir``;
    returns the state the trainer continues from."""
    weights, state = load_checkpoint(src / CHECKPOINT_PT)
    state = _restore(config, state, src)
    model.load_state_dict(weights)
    hist.copy_metric_rows(src / hist.METRICS_CSV, run_dir / hist.METRICS_CSV, below_step=state.step)
    log.info("resuming %s at step %d, to step %d", src, state.step, config.steps)
    return state


def _restore(config: Config, state: TrainState, src: Path) -> TrainState:
    """Make a loaded TrainState continue to ``config.steps``; a finished run re-records its last row."""
    status = hist.read_summary(src).get("status")
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
