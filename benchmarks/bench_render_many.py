"""Pictures of many run folders (a batched sweep's members), side by side in one process:
``render(run_dir)`` for each folder in turn against ``render_many(run_dirs)`` (worker
processes), on N copies of one synthetic 1D run (the default run's shape: 1500 steps,
sharpness every 10). Prints seconds, the speed-up, and whether every file is byte-identical
to what ``render`` wrote alone.

    python benchmarks/bench_render_many.py [--n 16] [--format none|mp4] [--frames 100] [--workers 0]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_render import synthetic_run  # noqa: E402

from neuroscope.config import VizConfig  # noqa: E402
from neuroscope.rundir import ANIMATION_MP4, DASHBOARD_PNG  # noqa: E402
from neuroscope.viz import render, render_many  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="run folders (default 16)")
    parser.add_argument("--format", default="none", help="viz.format (default none: dashboard.png only)")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0, help="render_many's workers (default 0: one per core)")
    args = parser.parse_args()
    viz = VizConfig(frames=args.frames, format=args.format)
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "one" / "run0"
        synthetic_run(first, 1, args.frames)
        sets = {}
        for name in ("alone", "many"):
            sets[name] = [Path(tmp) / name / f"run{i}" for i in range(args.n)]
            for d in sets[name]:
                shutil.copytree(first, d, dirs_exist_ok=True)
        started = time.perf_counter()
        for d in sets["alone"]:
            render(d, viz)
        alone = time.perf_counter() - started
        started = time.perf_counter()
        outcomes = render_many(sets["many"], viz=viz, workers=args.workers)
        many = time.perf_counter() - started
        files = [DASHBOARD_PNG] + ([ANIMATION_MP4] if args.format == "mp4" else [])
        same = all((a / f).read_bytes() == (b / f).read_bytes() for a, b in zip(sets["alone"], sets["many"]) for f in files)
    print(f"{args.n} folders, viz.format={args.format}, {args.frames} frames")
    print(f"render() one after another  {alone:6.2f} s  ({alone / args.n:.2f} s per folder)")
    print(f"render_many(workers={args.workers})     {many:6.2f} s  ({many / args.n:.2f} s per folder)   "
          f"speed-up {alone / many:.2f}x")
    print(f"outcomes: {sorted(set(outcomes))}; files byte-identical to render() alone: {same}")


if __name__ == "__main__":
    main()
