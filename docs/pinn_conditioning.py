"""Draws docs/pinn_conditioning.png from a finished ``neuroscope -m experiment=pinn_conditioning``
sweep folder, and prints the table of lambda_max(pde) / lambda_max(bc) per frequency:

    python docs/pinn_conditioning.py SWEEP_DIR [OUT_PNG]
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from neuroscope.rundir import load_spectrum, read_metrics_csv  # noqa: E402
from neuroscope.sweep.jobs import load_sweep  # noqa: E402

COLORS = ["#1f77b4", "#ff7f0e", "#d62728"]


def main(sweep_dir: str, out: str = "docs/pinn_conditioning.png") -> None:
    jobs = sorted(load_sweep(sweep_dir).jobs, key=lambda j: float(j.overrides["function.params.frequency"]))
    fig = Figure(figsize=(12.0, 4.6), layout="constrained")
    curves, densities = fig.subplots(1, 2, width_ratios=[1.5, 1.0])
    print("| k | λ_max(pde)/λ_max(bc) at step 0 | at the peak of λ_max(pde) | late (last 20%) |")
    print("|---|---|---|---|")
    for job, color in zip(jobs, COLORS):
        k = float(job.overrides["function.params.frequency"]) / math.pi
        m = read_metrics_csv(job.run_dir / "metrics.csv")
        keep = np.isfinite(m["sharpness_pde"])
        step, pde, bc = m["step"][keep], m["sharpness_pde"][keep], m["sharpness_bc"][keep]
        curves.plot(step, pde, color=color, lw=1.6, label=f"k = {k:g}π: residual (pde) term")
        curves.plot(step, bc, color=color, lw=1.2, ls="--", label=f"k = {k:g}π: boundary (bc) term")
        peak = int(np.argmax(pde))
        late = step >= 0.8 * step[-1]
        print(f"| {k:g}π | {pde[0] / bc[0]:.3g} ({pde[0]:.3g} / {bc[0]:.3g}) | {pde[peak] / bc[peak]:.3g} "
              f"({pde[peak]:.3g} / {bc[peak]:.3g}, step {int(step[peak])}) | "
              f"{pde[late].mean() / bc[late].mean():.3g} ({pde[late].mean():.3g} / {bc[late].mean():.3g}) |")
        spectrum = load_spectrum(job.run_dir)
        if spectrum is not None:
            densities.plot(spectrum["density"][-1], spectrum["eigenvalue"], color=color, lw=1.3,
                           label=f"k = {k:g}π, step {int(spectrum['step'][-1])}")
            linthresh = float(spectrum["linthresh"])
    lr = jobs[0].lr
    curves.axhline(2.0 / lr, color="#555555", lw=1.0, ls=":", label=f"2/lr = {2.0 / lr:g}")
    curves.set_yscale("log")
    curves.set_xlabel("step")
    curves.set_ylabel("top eigenvalue of the term's Hessian")
    curves.set_title("Per-term sharpness, Poisson 1D, u* = sin(kx)", loc="left")
    curves.legend(fontsize=8, ncol=1, loc="lower right", framealpha=0.85)
    curves.grid(True, which="major", alpha=0.3)
    densities.set_yscale("symlog", linthresh=linthresh)
    densities.set_xscale("log")
    densities.set_xlim(1e-4, 2.0)
    densities.set_ylim(-1e2, 1e4)
    densities.set_xlabel("density (SLQ; per decade, log)")
    densities.set_ylabel("eigenvalue of the whole objective's Hessian")
    densities.set_title("Spectral density at the last step", loc="left")
    densities.legend(fontsize=8, loc="lower right", framealpha=0.85)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
