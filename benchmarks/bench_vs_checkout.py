"""One run's training time here against another checkout of NeuroScope (e.g. main), measured in
one process, interleaved: each repeat imports one checkout's package afresh and trains the same
config; prints the best training seconds (summary.json's train_seconds) of each and the ratio,
and whether the metrics.csv bytes are equal.

    python benchmarks/bench_vs_checkout.py /path/to/other/checkout [--repeats 5] [overrides ...]
"""
from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def train_with(root: Path, overrides: list[str], out: Path) -> float:
    """Train ``overrides`` with the package in ``root`` (imported afresh); the training seconds."""
    for name in [m for m in sys.modules if m == "neuroscope" or m.startswith("neuroscope.")]:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        neuroscope = importlib.import_module("neuroscope")
        assert Path(neuroscope.__file__).resolve().is_relative_to(root.resolve()), neuroscope.__file__
        result = neuroscope.train(neuroscope.compose(overrides), out_dir=str(out))
    finally:
        sys.path.remove(str(root))
    return float(result.summary["train_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="the other checkout's root (holding its neuroscope/ package)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args, extra = parser.parse_known_args()
    args.overrides += extra
    overrides = ["viz.format=none", "progress=false", *args.overrides]
    best = {"here": float("inf"), "other": float("inf")}
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = [("here", HERE), ("other", args.other)] if r % 2 == 0 else [("other", args.other), ("here", HERE)]
            for label, root in order:
                out = Path(tmp) / f"{label}{r}"
                best[label] = min(best[label], train_with(root, overrides, out))
            same &= (Path(tmp) / f"here{r}" / "metrics.csv").read_bytes() == (Path(tmp) / f"other{r}" / "metrics.csv").read_bytes()
    print(f"training seconds, best of {args.repeats}: here {best['here']:.3f}, {args.other} {best['other']:.3f}, "
          f"ratio here/other {best['here'] / best['other']:.3f}; metrics.csv bytes equal: {same}")


if __name__ == "__main__":
    main()
