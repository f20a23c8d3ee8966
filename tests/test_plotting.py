"""The dashboard renderer, on synthetic runs written in the run-directory format: videos decode
to the configured frames and size, the GIF fallback and format=none behave, re-rendering from
the command line replaces the video, and the pictures are not blank and show 2/lr."""
from __future__ import annotations

import ast
import importlib
import logging
import math
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from neuroscope import rundir as hist
from neuroscope import viz
from neuroscope.config import VideoFormat, VizConfig
from neuroscope.viz import scales
from neuroscope.viz.style import COLORS

# the module, not the function neuroscope.viz.render: the MP4 failure test patches its write_mp4
render_module = importlib.import_module("neuroscope.viz.render")

LR = 0.1  # 2/lr = 20


def synthetic_history(*, dim: int = 1, steps: int = 400, frames: int = 41, curvature_every: int = 10, k: int = 2,
                      diverge_at: int | None = None, gen_error: bool = True, plot_n: int = 200, seed: int = 0) -> hist.History:
    """A plausible run: a sin fit converging, sharpness rising to 2/lr and hovering there, the
    update's projection on the top eigenvector growing at the edge of stability."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps + 1, dtype=np.float64)
    thr = 2 / LR
    loss_data = 0.5 * np.exp(-t / 80) + 1e-3 * (1 + 0.5 * np.sin(t / 3) ** 2)
    loss_l2 = 1e-3 * (1 - np.exp(-t / 50)) + 1e-5
    metrics = {
        "step": t,
        "loss": loss_data + loss_l2,
        "loss_data": loss_data,
        "loss_l2": loss_l2,
        "test_error": 1.2 * loss_data,
        "gen_error": 2.0 + np.exp(-t / 200) if gen_error else np.full_like(t, np.nan),
    }
    measured = (t % curvature_every == 0) if curvature_every else np.zeros_like(t, dtype=bool)
    sharp = thr * (1 - 0.8 * np.exp(-t / 100)) + 0.6 * np.sin(t / 7) * (t > 200)
    metrics["sharpness"] = np.where(measured, sharp, np.nan)
    for j in range(2, k + 1):
        metrics[f"lambda_{j}"] = np.where(measured, sharp / j, np.nan)
    metrics["projection"] = np.where(measured, 1e-4 * np.exp(t / 120) * (1 + rng.random(len(t))), np.nan)
    metrics["hvps"] = np.where(measured, 12.0, np.nan)
    if diverge_at is not None:
        metrics = {c: v[: diverge_at + 1].copy() for c, v in metrics.items()}
        for c in ("loss", "loss_data", "test_error", "gen_error", "projection"):
            metrics[c][-3:] = [1e6, 1e12, np.inf]
        metrics["sharpness"][-1] = np.nan
        metrics["sharpness"][-11] = 5 * thr
        t = t[: diverge_at + 1]
    last = int(t[-1])
    frame_steps = np.unique(np.round(np.linspace(0, last, frames)).astype(np.int64))

    lo, hi, tlo, thi = -math.pi, math.pi, -2 * math.pi, 2 * math.pi
    if dim == 1:
        plot_x = np.linspace(tlo, thi, plot_n)[:, None]
        plot_shape: tuple[int, ...] = (plot_n,)
        target = np.sin(plot_x[:, 0])
        train_x = np.linspace(lo, hi, 32)[:, None]
        train_y = np.sin(train_x[:, 0])
        inside = (plot_x[:, 0] >= lo) & (plot_x[:, 0] <= hi)
    else:
        g = int(round(math.sqrt(plot_n)))
        u = np.linspace(tlo, thi, g)
        plot_x = np.stack(np.meshgrid(u, u, indexing="ij"), axis=-1).reshape(-1, 2)
        plot_shape = (g, g)
        target = np.sin(plot_x[:, 0]) * np.cos(plot_x[:, 1])
        v = np.linspace(lo, hi, 8)
        train_x = np.stack(np.meshgrid(v, v, indexing="ij"), axis=-1).reshape(-1, 2)
        train_y = np.sin(train_x[:, 0]) * np.cos(train_x[:, 1])
        inside = np.all((plot_x >= lo) & (plot_x <= hi), axis=1)
    preds = []
    for s in frame_steps:
        a = 1 - np.exp(-s / 80)
        p = a * target + (1 - a) * 0.1 + np.where(inside, 0.0, 0.3 * a * np.tanh(plot_x[:, 0]))
        preds.append(p)
    frame_pred = np.array(preds)
    if diverge_at is not None:
        frame_pred[-1, ::3] = np.inf
        frame_pred[-1, 1::3] = np.nan
        frame_pred[-2] *= 50
    geometry = hist.Geometry(input_dim=dim, plot_x=plot_x, plot_shape=plot_shape, plot_target=target, train_x=train_x,
                             train_y=train_y, train_box=(lo, hi), test_box=(tlo, thi))
    return hist.History(metrics=metrics, frame_steps=frame_steps, frame_pred=frame_pred, geometry=geometry)


def write_run(run_dir: Path, history: hist.History, *, name: str = "synthetic", viz: dict | None = None,
              diverge_at: int | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    hist.save(history, run_dir)
    steps_done = int(history.metrics["step"][-1]) if len(history.metrics["step"]) else 0
    hist.write_summary(run_dir, {
        "name": name, "lr": LR, "status": "diverged" if diverge_at is not None else "finished",
        "steps": 400 if diverge_at is not None else steps_done, "steps_done": steps_done,
        "input_dim": history.geometry.input_dim, "function": "sin", "loss": "mse", "diverged_at_step": diverge_at,
    })
    if viz is not None:
        (run_dir / ".hydra").mkdir(exist_ok=True)
        lines = ["lr: 0.1", "viz:"] + [f"  {k}: {v}" for k, v in viz.items()]
        (run_dir / ".hydra" / "config.yaml").write_text("\n".join(lines) + "\n")
    return run_dir


SMALL = {"format": "mp4", "frames": 12, "fps": 10, "dpi": 50, "size": "[8.0, 6.0]"}  # 400x300 px


def video_info(path: Path) -> tuple[int, tuple[int, int]]:
    """(frames, (width, height)) by decoding the whole file."""
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    n = sum(1 for _ in reader)
    return n, tuple(meta["size"])


def png_pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def color_pixels(img: np.ndarray, hex_color: str, tol: int = 40) -> np.ndarray:
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return np.all(np.abs(img.astype(int) - rgb) <= tol, axis=-1)


# ------------------------------------------------------------------------------------------------


def test_mp4_at_default_size_decodes_to_configured_frames(tmp_path):
    run = write_run(tmp_path / "run", synthetic_history())
    result = viz.render(run, VizConfig(frames=6))
    assert result.video == run / "animation.mp4"
    assert video_info(result.video) == (6, (1200, 900))
    assert result.frames == 6
    assert png_pixels(result.png).shape == (900, 1200, 3)


def test_viz_read_from_the_runs_hydra_config(tmp_path):
    run = write_run(tmp_path / "run", synthetic_history(), viz=SMALL)
    result = viz.render(run)
    assert video_info(result.video) == (12, (400, 300))


def test_more_frames_requested_than_stored_uses_what_is_there(tmp_path):
    run = write_run(tmp_path / "run", synthetic_history(frames=5), viz={**SMALL, "frames": 500})
    result = viz.render(run)
    assert video_info(result.video)[0] == 5


def test_png_is_not_blank_and_shows_the_two_over_lr_line(tmp_path):
    run = write_run(tmp_path / "run", synthetic_history(), viz={**SMALL, "dpi": 100})
    png = viz.render(run).png
    img = png_pixels(png)
    assert img.std() > 20  # not a blank canvas

    history = hist.load(run)
    dash = viz.Dashboard(history, viz.resolve_viz(None, run))
    dash.update(dash.n_frames - 1)
    ax = dash.ax["sharp"]
    assert any(np.allclose(line.get_ydata(), 20.0) for line in ax.get_lines()), "no horizontal line at 2/lr"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "2/lr = 20" in labels
    # the red dashed 2/lr line's pixels sit inside the sharpness panel, at y = 20
    x0, y0, x1, y1 = ax.get_window_extent().extents
    h = img.shape[0]
    row = int(round(h - ax.transData.transform((0, 20.0))[1]))
    panel = img[int(h - y1):int(h - y0), int(x0):int(x1)]
    red = color_pixels(panel, COLORS["eos"])
    assert red.sum() > 50
    red_rows = np.nonzero(red.any(axis=1))[0] + int(h - y1)
    assert np.any(np.abs(red_rows - row) <= 2)


def test_gif_fallback_when_mp4_writing_fails(tmp_path, monkeypatch, caplog):
    run = write_run(tmp_path / "run", synthetic_history(), viz=SMALL)

    def broken_mp4(path, frames, fps):
        next(iter(frames))  # fail midway, after drawing a frame
        Path(path).write_bytes(b"garbage")
        raise RuntimeError("no H.264 encoder here")

    monkeypatch.setattr(render_module, "write_mp4", broken_mp4)
    with caplog.at_level(logging.WARNING, logger="neuroscope.viz.render"):
        result = viz.render(run)
    assert result.video == run / "animation.gif"
    assert not (run / "animation.mp4").exists() and not (run / "animation.partial.mp4").exists()
    assert any("no H.264 encoder here" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    gif = Image.open(result.video)
    assert gif.n_frames == 12 and gif.size == (400, 300)


def test_format_none_writes_no_video_but_the_png(tmp_path):
    run = write_run(tmp_path / "run", synthetic_history(), viz={**SMALL, "format": "none"})
    result = viz.render(run)
    assert result.video is None and result.frames == 0
    assert result.png.exists() and png_pixels(result.png).std() > 20
    assert not (run / "animation.mp4").exists() and not (run / "animation.gif").exists()
    # Re-drawing only the PNG leaves an earlier video alone: it is the user's to delete.
    (run / "animation.mp4").write_bytes(b"earlier")
    viz.render(run)
    assert (run / "animation.mp4").read_bytes() == b"earlier"


def test_rerender_from_the_command_line_replaces_the_video(tmp_path, capsys):
    run = write_run(tmp_path / "run", synthetic_history(), viz=SMALL)
    viz.render(run)
    assert (run / "animation.mp4").exists()
    assert viz.main([str(run), "viz.format=gif", "viz.frames=7", "viz.fps=5"]) == 0
    assert (run / "animation.gif").exists() and not (run / "animation.mp4").exists()
    assert Image.open(run / "animation.gif").n_frames == 7
    assert viz.main([str(run), "format=mp4", "viz.size=[6,4]", "viz.dpi=50"]) == 0
    assert video_info(run / "animation.mp4") == (12, (300, 200))  # frames=12 from the run's config
    assert not (run / "animation.gif").exists()
    assert "animation.mp4" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, expected",
    [
        ("viz.format=avi", "format"),
        ("viz.colour=red", "colour"),
        ("viz.fps=0", "fps"),
        ("lr=0.5", "only viz"),
        ("viz.fps", "KEY=VALUE"),
    ],
)
def test_bad_override_exits_2_with_a_one_line_message(tmp_path, capsys, override, expected):
    run = write_run(tmp_path / "run", synthetic_history(), viz=SMALL)
    with pytest.raises(SystemExit) as exit_info:
        viz.main([str(run), override])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (run / "dashboard.png").exists()


def test_missing_run_dir_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        viz.main([str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_2d_run_renders_a_surface(tmp_path):
    run = write_run(tmp_path / "run", synthetic_history(dim=2, plot_n=400), viz={**SMALL, "frames": 6})
    result = viz.render(run)
    assert video_info(result.video) == (6, (400, 300))
    dash = viz.Dashboard(hist.load(run), viz.resolve_viz(None, run))
    dash.update(dash.n_frames - 1)
    verts_z = dash.panels["fit"].verts[..., 2]
    target = dash.history.geometry.plot_target
    assert np.ptp(verts_z) > 0.5 * np.ptp(target)  # the surface took the final prediction's shape
    zlo, zhi = dash.ax["fit"].get_zlim()
    assert zlo <= target.min() and zhi >= target.max()
    assert png_pixels(result.png).std() > 20


def test_diverged_run_renders_readably(tmp_path):
    run = write_run(tmp_path / "run", synthetic_history(diverge_at=250), viz=SMALL, diverge_at=250)
    result = viz.render(run)
    assert video_info(result.video)[0] == 12
    dash = viz.Dashboard(hist.load(run), viz.resolve_viz(None, run))
    dash.update(dash.n_frames - 1)
    lo, hi = dash.ax["loss"].get_ylim()
    assert math.isfinite(lo) and math.isfinite(hi) and hi <= 1e13
    s_lo, s_hi = dash.ax["sharp"].get_ylim()
    assert s_hi <= 3 * 20 + 1e-9  # one wild eigenvalue does not squash the 2/lr line
    flo, fhi = dash.ax["fit"].get_ylim()
    assert fhi - flo < 20  # the x50 prediction is clipped, the target stays readable
    texts = [t.get_text() for ax in dash.ax.values() for t in ax.texts] + [t.get_text() for t in dash.fig.texts]
    assert any("diverged at step 250" in t for t in texts)
    assert "off scale" in " ".join(texts)
    assert "not finite at 67%" in dash.panels["fit"].fit_note.get_text()  # the inf/NaN last frame says so
    pred_y = dash.panels["fit"].pred_line.get_ydata()
    assert np.nanmax(pred_y) < fhi  # clipped below the legend strip, never drawn off to infinity


def test_every_objective_term_gets_a_curve_and_a_legend_entry(tmp_path):
    h = synthetic_history()
    n = len(h.metrics["step"])
    h.metrics["loss_pde"] = np.linspace(1.0, 1e-3, n)
    h.metrics["loss_bc"] = np.linspace(0.5, 1e-4, n)
    run = write_run(tmp_path / "run", h, viz=SMALL)
    dash = viz.Dashboard(hist.load(run), viz.resolve_viz(None, run))
    dash.update(dash.n_frames - 1)
    labels = [t.get_text() for t in dash.ax["loss"].get_legend().get_texts()]
    for term in ("data term", "l2 term", "pde term", "bc term", "training loss"):
        assert term in labels
    colors = {s.line.get_color() for s in dash.panels["loss"].series}
    assert len(colors) == len(dash.panels["loss"].series)  # tell them apart


def test_curves_grow_with_the_frames_and_limits_stay_fixed(tmp_path):
    run = write_run(tmp_path / "run", synthetic_history(), viz=SMALL)
    dash = viz.Dashboard(hist.load(run), viz.resolve_viz(None, run))
    loss_line = next(s.line for s in dash.panels["loss"].series if s.column == "loss")
    lengths, limits = [], []
    for i in range(dash.n_frames):
        dash.update(i)
        lengths.append(len(loss_line.get_xdata()))
        limits.append([ax.get_ylim() for ax in dash.ax.values()] + [dash.ax["loss"].get_xlim()])
    assert lengths == sorted(lengths) and lengths[0] < lengths[-1] == 401
    assert all(lim == limits[0] for lim in limits)
    assert dash.title.get_text().startswith("step 400 / 400")


def test_long_runs_are_decimated_but_keep_spikes():
    x = np.arange(200_000, dtype=float)
    y = np.ones_like(x)
    y[123_457] = 1e6
    dx, dy = scales.finite_series(x, y, positive=True)
    assert len(dx) <= scales.MAX_LINE_POINTS + 2
    assert dy.max() == 1e6 and dx[0] == 0 and dx[-1] == 199_999


def test_curvature_off_and_no_gen_error_leave_notes_instead_of_empty_panels(tmp_path):
    h = synthetic_history(curvature_every=0, gen_error=False, k=1)
    run = write_run(tmp_path / "run", h, viz=SMALL)
    dash = viz.Dashboard(hist.load(run), viz.resolve_viz(None, run))
    dash.update(0)
    notes = " ".join(t.get_text() for ax in dash.ax.values() for t in ax.texts)
    assert "sharpness not measured" in notes and "not measured" in notes and "generalization error" in notes


def test_live_view_unavailable_without_a_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    ok, why = viz.live_view_available()
    assert ok is False and "DISPLAY" in why


def test_live_dashboard_follows_a_growing_history(tmp_path):
    """Drawn on pyplot's (headless Agg) canvas: the same Dashboard code as the video."""
    import matplotlib.pyplot as plt

    plt.switch_backend("agg")
    full = synthetic_history(steps=400, frames=41)
    live = viz.LiveDashboard(VizConfig(size=[6.0, 4.5], dpi=50), meta={"lr": LR, "steps": 400, "name": "live"})
    try:
        for n_rows, n_frames in ((51, 6), (401, 41)):
            partial = hist.History(
                metrics={c: v[:n_rows] for c, v in full.metrics.items()},
                frame_steps=full.frame_steps[:n_frames], frame_pred=full.frame_pred[:n_frames], geometry=full.geometry,
            )
            live.update(partial)
            dash = live._dash
            assert dash is not None and dash.n_frames == n_frames
            xlim = dash.ax["loss"].get_xlim()  # planned steps: no jumps while it grows
            assert xlim[0] <= 0 and 400 <= xlim[1] < 410
            assert len(next(s.line for s in dash.panels["loss"].series if s.column == "loss").get_xdata()) == n_rows
        img = np.asarray(live.figure.canvas.buffer_rgba())
        assert img[..., :3].std() > 20
        assert dash.panels["sharp"].threshold == 20
    finally:
        live.close()


def test_viz_does_not_import_torch():
    for path in Path(viz.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "torch" not in imported, path.name
    # nor does anything it imports (the package's __init__, config, rundir)
    probe = "import sys, neuroscope.viz.render; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_resolve_viz_accepts_dataclass_mapping_and_defaults(tmp_path):
    assert viz.resolve_viz(VizConfig(fps=7)).fps == 7
    assert viz.resolve_viz({"format": "gif"}).format is VideoFormat.gif
    assert viz.resolve_viz(None, tmp_path) == VizConfig()
    assert viz.resolve_viz({"lr": 0.1, "viz": {"fps": 3}}).fps == 3  # a whole run config
