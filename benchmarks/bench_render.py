"""Dashboard rendering speed, side by side: NeuroScope's renderer (artists once, blitting,
RGBA piped to ffmpeg) against the naive recipe (FuncAnimation clearing and re-plotting every
axis each frame, saved with matplotlib's default FFMpegWriter), on the same synthetic 1D and
2D runs at 1200x900 (12x9 in, dpi 100). Prints ms/frame, the speed-up, and the cost of one
full ``fig.canvas.draw()`` for scale; then the frame loop as one MP4 stream against the two
halves render() writes (the second drawn in a forked process), interleaved, best of --repeat.

    python benchmarks/bench_render.py [--frames 200] [--ref-frames 30]
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import imageio_ffmpeg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.animation import FFMpegWriter, FuncAnimation  # noqa: E402

from neuroscope import rundir as hist  # noqa: E402
from neuroscope.viz import Dashboard, render, write_mp4  # noqa: E402
from neuroscope.viz.writers import write_mp4_halves  # noqa: E402
from neuroscope.config import VizConfig  # noqa: E402

LR = 0.1
STEPS = 1500


def synthetic_run(run_dir: Path, dim: int, frames: int) -> hist.History:
    """A converging sin fit with sharpness rising to 2/lr, measured every 10 steps."""
    t = np.arange(STEPS + 1, dtype=np.float64)
    measured = t % 10 == 0
    sharp = (2 / LR) * (1 - 0.8 * np.exp(-t / 100)) + 0.6 * np.sin(t / 7) * (t > 300)
    loss_data = 0.5 * np.exp(-t / 150) + 1e-3 * (1 + 0.5 * np.sin(t / 3) ** 2)
    metrics = {
        "step": t,
        "loss": loss_data + 1e-3,
        "loss_data": loss_data,
        "loss_l2": np.full_like(t, 1e-3),
        "test_error": 1.2 * loss_data,
        "gen_error": 2.0 + np.exp(-t / 300),
        "sharpness": np.where(measured, sharp, np.nan),
        "lambda_2": np.where(measured, sharp / 2, np.nan),
        "projection": np.where(measured, 1e-4 * np.exp(t / 300) * (1.5 + np.sin(t)), np.nan),
    }
    lo, hi = -math.pi, math.pi
    if dim == 1:
        plot_x = np.linspace(2 * lo, 2 * hi, 400)[:, None]
        shape: tuple[int, ...] = (400,)
        target = np.sin(plot_x[:, 0])
        train_x = np.linspace(lo, hi, 64)[:, None]
        train_y = np.sin(train_x[:, 0])
    else:
        u = np.linspace(2 * lo, 2 * hi, 32)
        plot_x = np.stack(np.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
        shape = (32, 32)
        target = np.sin(plot_x[:, 0]) * np.cos(plot_x[:, 1])
        v = np.linspace(lo, hi, 8)
        train_x = np.stack(np.meshgrid(v, v, indexing="ij"), -1).reshape(-1, 2)
        train_y = np.sin(train_x[:, 0]) * np.cos(train_x[:, 1])
    frame_steps = np.round(np.linspace(0, STEPS, frames)).astype(np.int64)
    frame_pred = np.array([(1 - np.exp(-s / 150)) * target + 0.2 * np.exp(-s / 150) for s in frame_steps])
    geometry = hist.Geometry(dim, plot_x, shape, target, train_x, train_y, (lo, hi), (2 * lo, 2 * hi))
    history = hist.History(metrics, frame_steps, frame_pred, geometry)
    run_dir.mkdir(parents=True, exist_ok=True)
    hist.save(history, run_dir)
    hist.write_summary(run_dir, {"name": f"bench-{dim}d", "lr": LR, "status": "finished", "steps": STEPS,
                                 "steps_done": STEPS, "input_dim": dim, "diverged_at_step": None})
    history.meta = hist.read_summary(run_dir)
    return history


def naive_animation(history: hist.History, path: Path, frames: int) -> float:
    """The textbook recipe: every frame clears each axis and plots everything again; saved
    through FuncAnimation.save with the default FFMpegWriter. Returns seconds."""
    g, m = history.geometry, history.metrics
    fig = plt.figure(figsize=(12, 9), dpi=100)
    ax_fit = fig.add_subplot(2, 2, 1, projection="3d" if g.input_dim == 2 else None)
    ax_loss, ax_sharp, ax_proj = (fig.add_subplot(2, 2, k) for k in (2, 3, 4))
    steps = m["step"]
    picks = np.round(np.linspace(0, len(history.frame_steps) - 1, frames)).astype(int)

    def draw(i: int) -> None:
        f = picks[i]
        step = history.frame_steps[f]
        k = int(np.searchsorted(steps, step, side="right"))
        for ax in (ax_fit, ax_loss, ax_sharp, ax_proj):
            ax.clear()
        if g.input_dim == 1:
            x = g.plot_x[:, 0]
            ax_fit.axvspan(*g.train_box, alpha=0.1, color="orange", label="training box")
            ax_fit.plot(x, g.plot_target, color="grey", lw=2.5, label="target")
            ax_fit.plot(x, history.frame_pred[f], label="prediction")
            ax_fit.plot(g.train_x[:, 0], g.train_y, "k.", label="training points")
            ax_fit.legend(loc="upper center", ncol=4)
        else:
            n = g.plot_shape[0]
            X, Y = g.plot_x[:, 0].reshape(n, n), g.plot_x[:, 1].reshape(n, n)
            ax_fit.plot_surface(X, Y, history.frame_pred[f].reshape(n, n), cmap="viridis", alpha=0.9)
            ax_fit.plot_wireframe(X, Y, g.plot_target.reshape(n, n), color="k", lw=0.5, alpha=0.5)
        ax_fit.set_title("fit")
        for c in ["loss", *history.loss_terms, "test_error", "gen_error"]:
            ax_loss.plot(steps[:k], m[c][:k], label=c)
        ax_loss.set_yscale("log")
        ax_loss.legend()
        for c in history.eigenvalue_columns:
            ok = ~np.isnan(m[c][:k])
            ax_sharp.plot(steps[:k][ok], m[c][:k][ok], label=c)
        ax_sharp.axhline(2 / LR, color="r", ls="--", label=f"2/lr = {2 / LR:g}")
        ax_sharp.legend()
        ok = ~np.isnan(m["projection"][:k])
        ax_proj.plot(steps[:k][ok], m["projection"][:k][ok])
        ax_proj.set_yscale("log")
        fig.suptitle(f"step {step} / {STEPS}   lr = {LR}")

    anim = FuncAnimation(fig, draw, frames=frames, blit=False, repeat=False)
    started = time.perf_counter()
    anim.save(str(path), writer=FFMpegWriter(fps=20))
    seconds = time.perf_counter() - started
    draw(frames - 1)
    full = min(_timed(fig.canvas.draw) for _ in range(3))
    plt.close(fig)
    return seconds, full


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="frames for NeuroScope's renderer (default 200)")
    parser.add_argument("--ref-frames", type=int, default=30, help="frames for the naive reference (default 30)")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs of our renderer (default 2)")
    args = parser.parse_args()
    matplotlib.rcParams["animation.ffmpeg_path"] = imageio_ffmpeg.get_ffmpeg_exe()

    print(f"{args.frames} frames (naive reference: {args.ref_frames}) at 1200x900, 12x9 in, dpi 100")
    print(f"{'run':<4} {'ours: render()':>16} {'ours: frames only':>18} {'naive':>12} {'speed-up':>9} {'full draw':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for dim in (1, 2):
            run = Path(tmp) / f"run{dim}d"
            history = synthetic_run(run, dim, args.frames)
            viz = VizConfig(frames=args.frames)
            total = min(render(run, viz).seconds for _ in range(args.repeat))
            # the per-frame loop alone (draw + encode), without loading, set-up and the PNG
            dash = Dashboard(hist.load(run), viz)
            dash.update(0)
            loop = min(_timed(lambda: write_mp4(run / "loop.mp4", dash.frames(), viz.fps)) for _ in range(args.repeat))
            naive, full = naive_animation(history, Path(tmp) / f"naive{dim}d.mp4", args.ref_frames)
            ours_ms, loop_ms, naive_ms = 1e3 * total / args.frames, 1e3 * loop / args.frames, 1e3 * naive / args.ref_frames
            print(f"{dim}D   {ours_ms:13.1f} ms {loop_ms:15.1f} ms {naive_ms:9.1f} ms {naive_ms / ours_ms:8.1f}x {1e3 * full:7.0f} ms")
    print("ours: render() = whole call (load, set-up, PNG, every frame, encoding) / frames;"
          " frames only = draw + encode loop; speed-up = naive / render().")
    halves(args.frames, args.repeat)


def halves(frames: int, repeat: int) -> None:
    """One MP4 stream against two halves (in parallel, and one after the other), ms/frame."""
    print(f"\n{frames} frames, the frame loop: {'run':<4} {'one stream':>11} {'halves, forked':>15} {'halves in turn':>15} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for dim in (1, 2):
            run = Path(tmp) / f"run{dim}d"
            synthetic_run(run, dim, frames)
            dash = Dashboard(hist.load(run), VizConfig(frames=frames))
            dash.update(dash.n_frames - 1)
            best = {"one": math.inf, "forked": math.inf, "in turn": math.inf}
            for _ in range(repeat):
                best["one"] = min(best["one"], _timed(lambda: write_mp4(run / "a.mp4", dash.frames(), 20)))
                best["forked"] = min(best["forked"], _timed(lambda: write_mp4_halves(run / "b.mp4", dash, 20, parallel=True)))
                best["in turn"] = min(best["in turn"], _timed(lambda: write_mp4_halves(run / "c.mp4", dash, 20, parallel=False)))
            ms = {k: 1e3 * v / frames for k, v in best.items()}
            print(f"{'':<27}{dim}D   {ms['one']:8.1f} ms {ms['forked']:12.1f} ms {ms['in turn']:12.1f} ms "
                  f"{ms['one'] / ms['forked']:5.2f}x")


if __name__ == "__main__":
    main()
