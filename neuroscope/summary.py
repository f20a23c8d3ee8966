"""What ``summary.json`` says of a run: its status, settings, summary values, curvature
bookkeeping and the environment it ran in; and the log lines that report it.
"""
from __future__ import annotations

import functools
import logging
import platform
import sys
from typing import Any

import numpy as np
import torch

from . import rundir as hist
from .config import Config
from .optimizers import build_rule
from .rundir import DIVERGED
from .trainer import TrainState

log = logging.getLogger("neuroscope")


def make_summary(
    config: Config, history: hist.History, status: str, state: TrainState, *, device: torch.device, n_params: int,
    members: int = 1,
) -> dict[str, Any]:
    """The contents of summary.json (the run adds wall_seconds and resumed_from). ``members``:
    how many runs trained in one ensemble with this one (1: alone); its train_seconds is that
    ensemble's loop time, shared by all of them."""
    m = history.metrics
    steps_done = int(m["step"][-1]) if len(m["step"]) else 0
    edge = edge_entries(config)
    values = hist.summary_values(m, edge["edge"])
    measured = np.isfinite(m["sharpness"])
    return {
        "status": status,
        "name": config.name,
        "function": config.function.name,
        "loss": config.loss.name,
        "lr": config.lr,
        "two_over_lr": 2.0 / config.lr,
        **edge,
        "steps": config.steps,
        "steps_done": steps_done,
        "diverged_at_step": steps_done if status == DIVERGED else None,
        "input_dim": config.input_dim,
        "seed": config.seed,
        "n_params": n_params,
        "loss_terms": [c for c in m if c.startswith("loss_")],
        **values,
        "curvature": {
            "measurements": int(measured.sum()),
            "hvps_total": int(np.nansum(m["hvps"])) if "hvps" in m else 0,
            "not_converged": int(np.sum(m["eig_converged"] == 0)) if "eig_converged" in m else 0,
        },
        "reference": reference_cost(m),
        "nonfinite": dict(state.nonfinite),
        "train_seconds": state.train_seconds,
        "ensemble_members": members,
        "environment": environment(device, config),
    }


def edge_entries(config: Config) -> dict[str, Any]:
    """The update rule and its edge of stability, as summary.json (and the dashboard) name them."""
    rule = build_rule(config.optimizer)
    return {"optimizer": rule.label, "momentum": rule.momentum, "edge": rule.edge(config.lr), "edge_label": rule.edge_label}


def reference_cost(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """What following the gradient flow cost per GD step (empty without ``reference=flow``)."""
    if "flow_gradients" not in metrics or len(metrics["flow_gradients"]) < 2:
        return {}
    return {"gradients_per_step": float(np.nanmean(metrics["flow_gradients"][1:])),
            "substeps_per_step": float(np.nanmean(metrics["flow_substeps"][1:]))}


def environment(device: torch.device, config: Config) -> dict[str, Any]:
    """Versions, platform, device and command line: what a rerun needs to match."""
    return {
        **_versions(),
        "device": str(device) + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        "dtype": config.device.dtype.value,
        "threads": torch.get_num_threads(),
        "argv": sys.argv,
    }


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    """The libraries' versions and the platform: the same for every run of a process (and
    ``platform.platform()`` reads the interpreter's binary: ~10 ms an ensemble member)."""
    import hydra
    import omegaconf

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "hydra": hydra.__version__,
        "omegaconf": omegaconf.__version__,
        "matplotlib": _version("matplotlib"),
        "platform": platform.platform(),
    }


def _version(package: str) -> str:
    """An installed package's version without importing it (matplotlib costs 0.2-0.7 s, and
    a run that draws nothing, or draws in another process, need not import it)."""
    from importlib import metadata

    module = sys.modules.get(package)
    try:
        return module.__version__ if module is not None else metadata.version(package)
    except (metadata.PackageNotFoundError, AttributeError):
        return "unknown"


def log_outcome(summary: dict[str, Any]) -> None:
    """The run's final values, and warnings for what it could not measure well."""
    final, done = summary["final"], summary["steps_done"]

    def value(key: str) -> str:  # a value from an earlier step (a diverged run, curvature every N) says which
        step = summary.get("final_step", {}).get(key)
        number = final.get(key)
        text = "–" if number is None else f"{number:.3g}" if key.startswith("rel_l2") else f"{number:.4g}"
        return text + ("" if step is None or step == done else f" (step {step})")

    log.info("%s after %d steps: loss %s, test error %s, gen error %s, relative L2 %s (outside the box %s), "
             "sharpness %s (%s = %g)", summary["status"], done, *(value(k) for k in (
                 "loss", "test_error", "gen_error", "rel_l2", "rel_l2_gen", "sharpness")), summary["edge_label"], summary["edge"])
    if summary["nonfinite"]:
        log.warning("non-finite values were recorded: %s (see metrics.csv)", summary["nonfinite"])
    if summary["curvature"]["not_converged"]:
        log.warning("%d curvature measurements did not converge to curvature.tol (eig_converged = 0 in metrics.csv)",
                    summary["curvature"]["not_converged"])
