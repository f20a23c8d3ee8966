"""``spectrum.png``: the Hessian's spectral density along a run (SLQ, from ``spectrum.npz``) on a
symmetric-log eigenvalue axis, with the 2/lr line and the measured sharpness and lambda_min;
beside it the density at the first and the last measured step."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import numpy as np
from matplotlib import patheffects
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ..rundir import SPECTRUM_PNG, History, load, load_spectrum
from .style import COLORS

DYNAMIC_RANGE = 1e-4  # densities below this fraction of the largest are drawn as empty


def render_spectrum(run_dir: str | Path, dpi: int = 100) -> Optional[Path]:
    """Draw ``spectrum.png`` from the run's files; None (and nothing written) without a spectrum."""
    run_dir = Path(run_dir)
    arrays = load_spectrum(run_dir)
    if arrays is None or len(arrays["step"]) == 0:
        return None
    history = load(run_dir) if (run_dir / "history.npz").exists() else None
    fig = spectrum_figure(arrays, history)
    path = run_dir / SPECTRUM_PNG
    fig.savefig(path, dpi=dpi)
    return path


def spectrum_figure(arrays: Mapping[str, np.ndarray], history: Optional[History] = None) -> Figure:
    """The density over training (left) and at the first and last measured steps (right)."""
    fig = Figure(figsize=(12.0, 5.0), layout="constrained")
    over_time, profile = fig.subplots(1, 2, width_ratios=[2.2, 1.0], sharey=True)
    linthresh = float(arrays["linthresh"])
    _draw_over_time(over_time, arrays, history)
    _draw_profiles(profile, arrays)
    for ax in (over_time, profile):
        ax.set_yscale("symlog", linthresh=linthresh)
        ax.axhline(0.0, color=COLORS["now"], lw=0.6, alpha=0.5)
        _limit_to_support(ax, arrays)
    lr = float(arrays["lr"]) if "lr" in arrays else None
    if lr:
        for ax in (over_time, profile):
            ax.axhline(2.0 / lr, color=COLORS["eos"], lw=1.4, ls="--", label=f"2/lr = {2.0 / lr:.4g}")
    over_time.legend(loc="lower left", fontsize=8, framealpha=0.85)
    fig.suptitle(f"Hessian spectral density (SLQ: {int(arrays['probes'])} probes x {int(arrays['lanczos_steps'])} "
                 f"Lanczos steps, broadening {float(arrays['sigma']):g} decades; symmetric log axis, linear within "
                 f"±{linthresh:g})", fontsize=10)
    return fig


def _draw_over_time(ax, arrays: Mapping[str, np.ndarray], history: Optional[History]) -> None:
    steps, eigenvalues, density = arrays["step"], arrays["eigenvalue"], arrays["density"]
    top = float(density.max()) if density.size and density.max() > 0 else 1.0
    shown = np.where(density > DYNAMIC_RANGE * top, density, np.nan)
    mesh = ax.pcolormesh(_step_edges(steps), _edges(eigenvalues), shown.T, cmap="viridis",
                         norm=LogNorm(vmin=DYNAMIC_RANGE * top, vmax=top), shading="flat")
    ax.figure.colorbar(mesh, ax=ax, label="density per decade of |λ| (log)", pad=0.01)
    if history is not None:
        m, step = history.metrics, history.metrics.get("step")
        for column, color, label in (("sharpness", COLORS["sharpness"], "sharpness λ_max"),
                                     ("lambda_min", COLORS["gen_error"], "λ_min")):
            if column in m and step is not None and np.isfinite(m[column]).any():
                keep = np.isfinite(m[column])
                ax.plot(step[keep], m[column][keep], color=color, lw=1.5, label=label,
                        path_effects=[patheffects.withStroke(linewidth=3.2, foreground="white")])
    ax.set_xlabel("step")
    ax.set_ylabel("eigenvalue λ")
    ax.set_title("density over training", loc="left")


def _draw_profiles(ax, arrays: Mapping[str, np.ndarray]) -> None:
    steps, eigenvalues, density = arrays["step"], arrays["eigenvalue"], arrays["density"]
    rows = [0, len(steps) - 1] if len(steps) > 1 else [0]
    for row, color in zip(rows, ("#999999", COLORS["loss"])):
        ax.plot(density[row], eigenvalues, color=color, lw=1.3, label=f"step {int(steps[row])}")
    ax.set_xscale("log")
    top = float(density.max()) if density.max() > 0 else 1.0
    ax.set_xlim(DYNAMIC_RANGE * top, 2 * top)
    ax.set_xlabel("density (log)")
    ax.set_title("first and last", loc="left")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.85)


def _step_edges(steps: np.ndarray) -> np.ndarray:
    """Each density holds from its step to the next measured one (the last for one interval more)."""
    steps = steps.astype(np.float64)
    last = steps[-1] - steps[-2] if len(steps) > 1 else 1.0
    return np.concatenate([steps, [steps[-1] + last]])


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (a single centre gets a cell of width 1)."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _limit_to_support(ax, arrays: Mapping[str, np.ndarray]) -> None:
    """The eigenvalue axis over where any density is drawn, a grid cell beyond, and the 2/lr line."""
    density, eigenvalues = arrays["density"], arrays["eigenvalue"]
    top = float(density.max()) if density.size else 0.0
    where = np.flatnonzero((density > DYNAMIC_RANGE * top).any(axis=0)) if top > 0 else np.arange(len(eigenvalues))
    lo, hi = eigenvalues[max(where[0] - 1, 0)], eigenvalues[min(where[-1] + 1, len(eigenvalues) - 1)]
    if "lr" in arrays and float(arrays["lr"]) > 0:
        hi = max(hi, 1.5 * 2.0 / float(arrays["lr"]))
    ax.set_ylim(lo, hi)
