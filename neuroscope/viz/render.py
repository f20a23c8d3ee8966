"""Drawing a run's pictures from its files alone: ``render(run_dir)`` writes ``dashboard.png``,
the animation (MP4, else GIF) and, when the run measured densities, ``spectrum.png``;
``resolve_viz`` turns any form of viz settings into a checked VizConfig, and ``main`` is the ``neuroscope-render RUN_DIR [viz.KEY=VALUE ...]`` command.

Tests force the MP4 failure path by monkeypatching ``write_mp4`` in this module.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..config import ConfigError, UserError, VideoFormat, VizConfig
from ..plainyaml import load_yaml_plain, select_plain, yaml_error
from ..rundir import ANIMATION_GIF, ANIMATION_MP4, CONFIG_YAML, DASHBOARD_PNG, atomic_path, load
from .dashboard import Dashboard
from .spectrum import render_spectrum
from .writers import save_png, write_gif, write_gif_pillow, write_mp4, write_mp4_halves

log = logging.getLogger(__name__)


@dataclass
class RenderResult:
    png: Path
    video: Optional[Path]  # None when viz.format=none or no writer worked
    frames: int  # frames in the video (0 without one)
    seconds: float
    spectrum: Optional[Path] = None  # spectrum.png, when the run has a spectrum.npz


def first_line(e: BaseException) -> str:
    """An exception's message in one line, for a log or an error line."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# ----------------------------------------------------------------------------- viz settings


def resolve_viz(viz: Any = None, run_dir: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> VizConfig:
    """A validated VizConfig from a VizConfig, a mapping/DictConfig with its keys, or (None)
    the ``viz`` section of ``run_dir/.hydra/config.yaml`` (defaults if absent), with dotlist
    ``overrides`` (``format=gif`` or ``viz.format=gif``) on top. Raises ConfigError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    layers = _viz_layers(viz, run_dir)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(VizConfig), *layers, OmegaConf.from_dotlist(_viz_dotlist(overrides)))
        result = OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        raise ConfigError(
            f"viz.{key} is not a viz setting (there are: {', '.join(VizConfig.__dataclass_fields__)}); "
            "only viz.* settings can change when re-rendering a finished run."
        ) from None
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"viz.{key}: {first_line(e)}" if key else first_line(e)) from None
    return result


def _viz_layers(viz: Any, run_dir: str | os.PathLike | None) -> list[Any]:
    """The viz settings given (or the run's own, when none are) as OmegaConf merge layers."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if viz is None and run_dir is not None:
        path = Path(run_dir) / CONFIG_YAML
        if not path.exists():
            return []
        try:
            data = load_yaml_plain(path)
            section = data.get("viz") if isinstance(data, dict) else None
            if section is None:
                return []
            section = OmegaConf.create(section) if "${" not in str(section) else OmegaConf.create(data).viz
            OmegaConf.merge(OmegaConf.structured(VizConfig), section)  # is it usable?
            return [section]
        except (OmegaConfBaseException, OSError, ValueError, yaml_error()) as e:
            log.warning("ignoring the viz settings in %s (%s); using the defaults", path, first_line(e))
            return []
    if isinstance(viz, VizConfig):
        return [OmegaConf.structured(viz)]
    if isinstance(viz, (DictConfig, dict)):
        if "viz" in viz and "format" not in viz:  # a whole run config was handed over
            viz = viz["viz"]
        return [OmegaConf.structured(viz) if isinstance(viz, VizConfig) else viz]
    if viz is not None:
        raise ConfigError(f"viz={viz!r} is not a viz configuration (give a VizConfig, a mapping with its keys, or None).")
    return []


def _viz_dotlist(overrides: Sequence[str]) -> list[str]:
    """``viz.KEY=VALUE`` or ``KEY=VALUE`` overrides as an OmegaConf dotlist of viz keys."""
    dotlist = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"'{item}' is not an override: write KEY=VALUE, e.g. viz.format=gif.")
        if key.startswith("viz."):
            key = key[4:]
        elif "." in key:
            raise ConfigError(f"'{item}': only viz.* settings can change when re-rendering a finished run.")
        dotlist.append(f"{key}={value}")
    return dotlist


# ----------------------------------------------------------------------------- render


FACT_KEYS = {"width": "model.width", "depth": "model.depth", "activation": "model.activation", "k": "curvature.k"}


def config_facts(run_dir: str | os.PathLike) -> dict[str, Any]:
    """What the header shows of the run's ``.hydra/config.yaml`` (model width, depth and
    activation, curvature k); the keys it lacks, or all of them for a folder without one, are left out."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(run_dir) / CONFIG_YAML
    try:
        cfg = load_yaml_plain(path) if path.exists() else None
    except (OmegaConfBaseException, OSError, ValueError, yaml_error()) as e:
        log.warning("header: cannot read %s (%s)", path, first_line(e))
        cfg = None
    if not isinstance(cfg, dict):
        return {}
    found = {key: select_plain(cfg, dotted) for key, dotted in FACT_KEYS.items()}
    return {k: v for k, v in found.items() if isinstance(v, (int, str)) and not isinstance(v, bool)}


def render(run_dir: str | os.PathLike, viz: Any = None, *, reuse: bool = False) -> RenderResult:
    """Draw ``dashboard.png`` (always) and ``animation.mp4`` (``animation.gif`` when no MP4
    can be written, nothing when ``viz.format=none``) from the run's files. ``viz``: a
    VizConfig, a mapping with its keys, or None for the run's own ``.hydra/config.yaml``.
    ``reuse``: draw into the figure of the last run rendered so in this process when it has
    the same layout (``Dashboard.show_run``: the same pixels, about half the drawing)."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
    history = load(run_dir)
    history.meta = {**config_facts(run_dir), **history.meta}
    viz = resolve_viz(viz, run_dir)
    dash = _dashboard(history, viz, reuse)

    dash.update(dash.n_frames - 1)
    png = run_dir / DASHBOARD_PNG
    save_png(dash.rgba(), png, viz.dpi)
    spectrum = render_spectrum(run_dir, viz.dpi)

    video, frames = _write_video(run_dir, dash, viz)
    if video is None and VideoFormat(viz.format) is not VideoFormat.none:
        log.error("no animation written for %s; %s is there", run_dir, png.name)
    for stale in (run_dir / ANIMATION_MP4, run_dir / ANIMATION_GIF) if video is not None else ():
        if stale != video and stale.exists():  # a new video replaces one of the other format
            stale.unlink(missing_ok=True)
            log.info("removed %s from an earlier render", stale)
    return RenderResult(png=png, video=video, frames=frames if video else 0, seconds=time.perf_counter() - started,
                        spectrum=spectrum)


_LAST: list[Dashboard] = []  # the figure render(reuse=True) drew last, in this process


def _dashboard(history: Any, viz: VizConfig, reuse: bool) -> Dashboard:
    """A dashboard showing ``history``: the last one reused when it can show it, else a new one."""
    if reuse and _LAST and _LAST[0].viz == viz and _LAST[0].show_run(history):
        return _LAST[0]
    dash = Dashboard(history, viz)
    if reuse:
        _LAST[:] = [dash]
    return dash


def _write_video(run_dir: Path, dash: Dashboard, viz: VizConfig) -> tuple[Optional[Path], int]:
    """The animation in ``viz.format``; an MP4 that cannot be written becomes a GIF (ffmpeg's,
    else Pillow's). Each writer writes a partial file, renamed only when complete and removed
    on any failure or signal (rundir.atomic_path)."""
    fmt = VideoFormat(viz.format)
    if fmt is VideoFormat.mp4:
        target = run_dir / ANIMATION_MP4
        try:
            with atomic_path(target) as partial:
                frames = write_mp4_halves(partial, dash, viz.fps, parallel=_halves_in_parallel(), write=write_mp4)
            return target, frames
        except Exception as e:  # no encoder, broken binary, disk full ...: a GIF still shows the run
            log.warning("could not write %s (%s: %s); writing %s instead", target.name, type(e).__name__, first_line(e),
                        ANIMATION_GIF)
            fmt = VideoFormat.gif
    if fmt is VideoFormat.gif:
        target = run_dir / ANIMATION_GIF
        for writer in (write_gif, write_gif_pillow):
            try:
                with atomic_path(target) as partial:
                    frames = writer(partial, dash, viz.fps)
                return target, frames
            except Exception as e:
                log.warning("%s failed (%s: %s)", writer.__name__, type(e).__name__, first_line(e))
    return None, 0


# ----------------------------------------------------------------------------- many folders

DONE, FAILED = "done", "failed"  # what render_many says of each folder (summary.json's "render")
_IN_WORKER = False  # True in render_many's worker processes


def render_many(run_dirs: Sequence[str | os.PathLike], *, viz: Any = None, workers: int = 0) -> list[str]:
    """``render(run_dir, viz)`` for each folder, in ``workers`` processes (0: one per CPU
    core this process may use that the load average says is idle, this one's included, at
    most one per folder; 1: here, one after another). Each
    folder gets exactly the files ``render`` writes for it alone (each worker runs ``render``
    itself). Returns, per folder in order, "done" or "failed".

    Failures stay with their folder: an error (a damaged folder, a failing encoder) is logged
    and that folder is "failed", the others are drawn; a worker that dies (a crash, the OOM
    killer) loses only its folder, the folders it took down with it are drawn again, each in
    a process of its own. Workers ignore SIGINT and SIGTERM; a signal that makes this process
    raise (inside ``stopping.rendering()``) lets the folders being drawn finish, draws no
    more, and goes on. Workers are forked where the platform can (matplotlib, imported here
    already, comes with them), else spawned."""
    dirs = [Path(d) for d in run_dirs]
    n = min(len(dirs), workers if workers > 0 else _idle_cores() + 1)
    if n <= 1:
        return [_render_or_log(d, viz) for d in dirs]
    outcomes = _render_in_pool(dirs, viz, n)
    for i, outcome in enumerate(outcomes):
        if outcome is None:  # its worker died: again alone, so that only a folder that kills its process fails
            (outcomes[i],) = _render_in_pool([dirs[i]], viz, 1)
            if outcomes[i] is None:
                log.error("rendering %s killed its worker process; re-render with: neuroscope-render %s", dirs[i], dirs[i])
                outcomes[i] = FAILED
    return outcomes


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _render_or_log(run_dir: Path, viz: Any) -> str:
    """``render`` one folder: "done", or "failed" with the reason logged."""
    try:
        result = render(run_dir, viz, reuse=True)
    except Exception as e:
        _LAST.clear()  # a figure a failure left half drawn is not drawn into again
        log.error("rendering %s failed (%s: %s); re-render with: neuroscope-render %s", run_dir, type(e).__name__,
                  first_line(e), run_dir)
        return FAILED
    log.info("dashboard: %s%s", result.png, f", animation: {result.video}" if result.video else "")
    return DONE


def _render_in_pool(dirs: list[Path], viz: Any, workers: int) -> list[Optional[str]]:
    """Each folder's outcome from a pool of ``workers`` processes; None where a worker died."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method), initializer=_worker_start)
    try:
        futures = [pool.submit(_render_or_log, d, viz) for d in dirs]
        outcomes: list[Optional[str]] = []
        for future in futures:
            try:
                outcomes.append(future.result())
            except BrokenProcessPool:
                outcomes.append(None)
        return outcomes
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _worker_start() -> None:
    """A render worker leaves signals to the process that started it (which stops handing out
    folders); a folder being drawn is finished, never left half written."""
    import signal

    global _IN_WORKER
    _IN_WORKER = True
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    _forget_fonts()


def _forget_fonts() -> None:
    """In a forked worker: drop what holds the parent's FreeType fonts, which cannot be used
    across a fork (matplotlib itself empties only its font cache at a fork): the mathtext
    parses (log-axis tick labels) and the figure the parent drew last. Text drawn with them
    fails ("FT_Load_Glyph failed: invalid outline") once the parent has drawn before forking."""
    import matplotlib.mathtext

    matplotlib.mathtext.MathTextParser._parse_cached.cache_clear()
    _LAST.clear()


def _idle_cores(proc: str = "/proc") -> int:
    """The cores this process may use besides its own that nothing else keeps busy now: the
    tasks running elsewhere (``_running_elsewhere``), else the one-minute load average less one
    (this process). The load average is a minute late: after this process trained on two
    threads it reads 2 on an idle machine, and the dashboards would be drawn one at a time."""
    cores = _usable_cores()
    others = _running_elsewhere(proc)
    if others is None:
        try:
            others = max(os.getloadavg()[0] - 1.0, 0.0)
        except (AttributeError, OSError):
            others = 0.0
    return max(0, min(cores - 1, int(cores - 1 - others + 0.5)))


def _running_elsewhere(proc: str = "/proc", samples: int = 5, gap: float = 0.004) -> Optional[float]:
    """How many tasks of other processes are running, on average over ``samples`` looks at
    Linux's count of running tasks (/proc/loadavg) less this process's running threads; None
    where there is no /proc."""
    total = 0
    try:
        for i in range(samples):
            running = int(Path(proc, "loadavg").read_text().split()[3].split("/")[0])
            own = 0
            for task in os.scandir(Path(proc, "self", "task")):
                with contextlib.suppress(OSError):  # a thread that ended meanwhile
                    stat = Path(task.path, "stat").read_text()
                    own += stat[stat.rindex(")") + 2] == "R"
            total += max(running - own, 0)
            if i < samples - 1:
                time.sleep(gap)
    except (OSError, ValueError, IndexError):
        return None
    return total / samples


def _halves_in_parallel() -> bool:
    """Whether an MP4's second half may take another core: not in a render_many worker (the
    workers have the cores already), and only where a core is idle. Either way the file's
    bytes are the same."""
    return not _IN_WORKER and _idle_cores() >= 1


# ----------------------------------------------------------------------------- command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``neuroscope-render RUN_DIR [viz.KEY=VALUE ...]``: re-render a finished run with other
    viz settings (merged over the run's own). Returns 0; a bad argument exits with 2."""
    parser = argparse.ArgumentParser(
        prog="neuroscope-render",
        description="Re-draw dashboard.png and the animation of a NeuroScope run from its files.",
        epilog="example: neuroscope-render outputs/2025-01-01/12-00-00 viz.format=gif viz.fps=10 viz.frames=60",
    )
    parser.add_argument("run_dir", help="a run directory (holds history.npz and summary.json)")
    parser.add_argument("overrides", nargs="*", help="viz settings: viz.format=mp4|gif|none, viz.frames, viz.fps, viz.dpi, viz.size=[w,h]")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        parser.exit(2, f"neuroscope-render: error: run directory {run_dir} does not exist\n")
    try:
        viz = resolve_viz(None, run_dir, args.overrides)
        result = render(run_dir, viz)
    except (UserError, FileNotFoundError) as e:  # a bad viz setting, a missing or damaged file
        parser.exit(2, f"neuroscope-render: error: {e}\n")
    video = f" and {result.video.name} ({result.frames} frames)" if result.video else ""
    spectrum = f" and {result.spectrum.name}" if result.spectrum else ""
    print(f"wrote {result.png}{video}{spectrum} in {result.seconds:.1f} s")
    return 0
