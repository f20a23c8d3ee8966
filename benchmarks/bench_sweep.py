"""Whole sweeps, side by side: N-job lr sweeps of the default problem run as the user runs them
(``neuroscope -m lr=... hydra/launcher=X``), for the basic, joblib (2 workers) and batched
launchers, N = 1, 4, 16, 64, 256; 1000 steps, curvature.every=10, viz.format=none.

Printed per N and launcher: the command's wall time (start-up, composing, training, saving,
dashboard.png per job, summary), µs per model-step of the whole command (wall / (N x steps))
and of the training loops alone (each job's summary.json train_seconds, which an ensemble's
members share: the sum over jobs of train_seconds / ensemble_members, over N x steps), each
launcher's time against batched's at the same N, and the peak memory (RSS) of the command. The launchers of
one N run back to back, so the ratios compare like with like on a loaded machine.

    python benchmarks/bench_sweep.py                 # N = 1 4 16 64 256 (basic/joblib up to 64)
    python benchmarks/bench_sweep.py --quick         # N = 1 4
    python benchmarks/bench_sweep.py --sizes 16 64 --launchers basic batched --steps 500
    python benchmarks/bench_sweep.py --sizes 1024 4096 --launchers batched device=cuda   # on a GPU
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

LAUNCHERS = {
    "basic": ["hydra/launcher=basic"],
    "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "batched": ["hydra/launcher=batched"],
}
GB = 2**30


@dataclass
class Measured:
    launcher: str
    n: int
    seconds: float
    peak_rss: int  # bytes, the command's largest process (its children included once waited)
    ok: bool
    tail: str = ""
    loop_seconds: float = float("nan")  # the training loops' time, each ensemble counted once


def lrs(n: int) -> list[str]:
    """n learning rates that all train (none diverges): 0.02 .. 0.2, evenly spaced."""
    return [f"{0.02 + 0.18 * i / max(n - 1, 1):.6g}" for i in range(n)]


def neuroscope() -> list[str]:
    script = Path(sys.executable).parent / "neuroscope"
    return [str(script)] if script.exists() else [sys.executable, "-m", "neuroscope"]


def measure(launcher: str, n: int, steps: int, extra: list[str], root: Path) -> Measured:
    """One whole command; its wall time and peak RSS (wait4's rusage of that child)."""
    sweep_dir = root / f"{launcher}_{n}"
    # device.threads as a user leaves it (0: auto): one thread for a run of the default problem
    # (each joblib worker's too), two for a batched ensemble large enough to gain from them
    args = ["-m", f"lr={','.join(lrs(n))}", f"steps={steps}", "curvature.every=10", "viz.format=none", "progress=false",
            f"hydra.sweep.dir={sweep_dir}", *LAUNCHERS[launcher], *extra]
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([*neuroscope(), *args], stdout=log, stderr=subprocess.STDOUT, cwd=root)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        tail = log.read()[-2000:]
    loops = loop_seconds(sweep_dir)
    shutil.rmtree(sweep_dir, ignore_errors=True)
    return Measured(launcher, n, seconds, usage.ru_maxrss * 1024, proc.returncode == 0, tail, loops)


def loop_seconds(sweep_dir: Path) -> float:
    """The training loops' seconds of a sweep: train_seconds / ensemble_members summed over its jobs."""
    total = 0.0
    for path in sweep_dir.glob("*/summary.json"):
        summary = json.loads(path.read_text())
        total += summary["train_seconds"] / summary.get("ensemble_members", 1)
    return total


def row(m: Measured, steps: int, batched: Optional[Measured]) -> str:
    per_step = m.seconds / (m.n * steps) * 1e6
    per_loop_step = m.loop_seconds / (m.n * (steps + 1)) * 1e6  # a run of `steps` steps records steps + 1 rows
    ratio = f"{m.seconds / batched.seconds:>8.2f}x" if batched and batched.ok and m.ok else f"{'':>9}"
    loop_ratio = (f"{m.loop_seconds / batched.loop_seconds:>8.2f}x" if batched and batched.ok and m.ok and batched.loop_seconds > 0
                  else f"{'':>9}")
    state = "" if m.ok else "  FAILED: " + " | ".join(m.tail.strip().splitlines()[-3:])
    return (f"{m.n:>6} {m.launcher:<8}{m.seconds:>10.1f}{per_step:>12.1f}{ratio}{per_loop_step:>12.1f}{loop_ratio}"
            f"{m.peak_rss / 2**20:>11.0f}{state}")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16, 64, 256], help="jobs per sweep (N)")
    parser.add_argument("--quick", action="store_true", help="N = 1 4 only")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--launchers", nargs="+", default=list(LAUNCHERS), choices=list(LAUNCHERS))
    parser.add_argument("--unbatched-max", type=int, default=64,
                        help="largest N for basic and joblib (256 jobs one after another take ~20 min); batched runs every N")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every command, e.g. device=cuda")
    args = parser.parse_args()
    if args.quick:
        args.sizes = [1, 4]
    if "joblib" in args.launchers and importlib.util.find_spec("hydra_plugins.hydra_joblib_launcher") is None:
        print("hydra-joblib-launcher is not installed (pip install '.[joblib]'): joblib skipped")
        args.launchers.remove("joblib")
    return args


def main() -> None:
    args = arguments()
    print(f"lr sweeps of the default problem, {args.steps} steps, curvature.every=10, viz.format=none, device.threads auto"
          f"{', overrides: ' + ' '.join(args.overrides) if args.overrides else ''}; whole commands, one after another")
    print(f"{'':>15}{'whole command':>31}{'training loops':>21}")
    print(f"{'N':>6} {'launcher':<8}{'seconds':>10}{'µs/m-step':>12}{'vs batch':>9}{'µs/m-step':>12}{'vs batch':>9}{'peak MiB':>11}")
    results: list[Measured] = []
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        for n in args.sizes:
            order = [l for l in args.launchers if l == "batched" or n <= args.unbatched_max]
            done = {l: measure(l, n, args.steps, args.overrides, Path(tmp)) for l in order}
            for launcher in order:
                print(row(done[launcher], args.steps, done.get("batched")), flush=True)
            results += done.values()
    for m in results:
        if m.launcher == "batched" and m.ok and m.n == max(args.sizes):
            verdict = "under" if m.peak_rss < 2 * GB else "OVER"
            print(f"batched N={m.n}: peak memory {m.peak_rss / GB:.2f} GB ({verdict} the 2 GB target)")
    if not all(m.ok for m in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
