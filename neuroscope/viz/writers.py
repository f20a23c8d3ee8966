"""Writers that receive finished frames: MP4 and GIF through one ffmpeg pipe (raw RGBA on
stdin), Pillow's GIF as the last resort, and the atomic PNG save."""
from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Protocol, Sequence

import numpy as np

from ..rundir import atomic_path


class FrameSource(Protocol):
    """What the GIF writers need of a dashboard: frames drawn on demand."""

    @property
    def n_frames(self) -> int: ...

    def update(self, frame_index: int) -> None: ...

    def rgba(self) -> np.ndarray: ...

    def frames(self, start: int = 0, stop: Optional[int] = None) -> Iterator[np.ndarray]: ...


def ffmpeg_exe() -> str:
    """The ffmpeg binary imageio-ffmpeg ships (or the one it was told to use)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def pipe_to_ffmpeg(frames: Iterable[np.ndarray], output_args: Sequence[str], fps: int) -> int:
    """Pipe RGBA frames (all of one size) into ``ffmpeg -f rawvideo ... -i - OUTPUT_ARGS``;
    returns the frame count. Raises ValueError without frames and RuntimeError (with the end
    of ffmpeg's message) when ffmpeg fails."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError("no frames to write")
    h, w = first.shape[:2]
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgba",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", *output_args]
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty ffmpeg cannot block
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        n, broken = 0, False
        try:
            for frame in itertools.chain([first], it):
                proc.stdin.write(memoryview(np.ascontiguousarray(frame)))
                n += 1
        except BrokenPipeError:  # ffmpeg quit early: its exit code and message say why
            broken = True
        finally:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                broken = True
            code = proc.wait()
        if code != 0 or broken:
            err.seek(0)
            raise RuntimeError(f"ffmpeg exited with {code}: {err.read().decode(errors='replace').strip()[-400:]}")
    return n


def write_mp4(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: int) -> int:
    """Encode RGBA frames to an H.264 MP4 (yuv420p, which every player reads); returns the
    frame count."""
    return pipe_to_ffmpeg(frames, ["-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "23",
                                   "-movflags", "+faststart", str(path)], fps)


# From this many frames on, an MP4 is encoded as two halves (the second in a forked process
# where a second core is free), joined without re-encoding. Drawing is two thirds of a
# frame's cost and runs in Python, one core per process: the halves take 15 ms a frame on
# 2 cores against 22 ms in one process. The halves are the same whether or not they run in
# parallel, so an MP4's bytes do not depend on the machine's cores.
HALVES_FROM = 40


def write_mp4_halves(path: str | os.PathLike, source: FrameSource, fps: int, *, parallel: bool,
                     write: Callable[[str | os.PathLike, Iterable[np.ndarray], int], int] = write_mp4) -> int:
    """``write(path, source.frames(), fps)`` (an MP4 writer such as :func:`write_mp4`), in two
    halves joined by ffmpeg's concat demuxer (stream copy) from ``HALVES_FROM`` frames on; with
    ``parallel`` the second half is drawn and encoded in a forked copy of this process, and
    drawn here if that copy fails. Returns the frame count."""
    n = source.n_frames
    if n < HALVES_FROM:
        return write(path, source.frames(), fps)
    half = n // 2
    with tempfile.TemporaryDirectory(prefix="neuroscope-mp4-") as tmp:
        parts = [Path(tmp) / "0.mp4", Path(tmp) / "1.mp4"]
        child = _start_half(write, parts[1], source, half, n, fps) if parallel else None
        try:
            count = write(parts[0], source.frames(0, half), fps)
            if child is not None:
                child.join()
            if child is None or child.exitcode != 0:
                parts[1].unlink(missing_ok=True)
                write(parts[1], source.frames(half, n), fps)
        finally:
            if child is not None and child.is_alive():  # an error or a signal here: the copy goes too
                child.kill()
                child.join()
        (Path(tmp) / "parts.txt").write_text("".join(f"file '{p}'\n" for p in parts))
        _run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(Path(tmp) / "parts.txt"), "-c", "copy",
                     "-movflags", "+faststart", str(path)])
    return count + (n - half)


def _start_half(write: Callable, path: Path, source: FrameSource, start: int, stop: int, fps: int) -> Optional[object]:
    """A forked copy of this process drawing and encoding frames ``start`` to ``stop`` into
    ``path`` (it has the figure and its cached background already); None where forking is not
    the platform's way (the caller then draws them itself)."""
    import multiprocessing
    import sys

    if not sys.platform.startswith("linux"):
        return None

    def half() -> None:
        try:
            write(path, source.frames(start, stop), fps)
        except BaseException:  # noqa: BLE001 - the parent draws this half itself
            os._exit(1)

    child = multiprocessing.get_context("fork").Process(target=half, name="neuroscope-mp4-half", daemon=True)
    child.start()
    return child


def _run_ffmpeg(args: Sequence[str]) -> None:
    """``ffmpeg ARGS``; RuntimeError with the end of its message when it fails."""
    done = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg exited with {done.returncode}: {done.stderr.decode(errors='replace').strip()[-400:]}")


def write_gif(path: str | os.PathLike, source: FrameSource, fps: int) -> int:
    """A GIF by ffmpeg's palette method: a palette from a few evenly spaced frames
    (palettegen), then every frame mapped onto it (paletteuse). Returns the frame count."""
    n = source.n_frames
    probe = sorted(set(np.round(np.linspace(0, n - 1, min(n, 8))).astype(int).tolist()))

    def sample() -> Iterator[np.ndarray]:
        for i in probe:
            source.update(i)
            yield source.rgba()

    with tempfile.TemporaryDirectory() as tmp:
        palette = Path(tmp) / "palette.png"
        pipe_to_ffmpeg(sample(), ["-vf", "palettegen=max_colors=256:reserve_transparent=0:stats_mode=full", "-frames:v", "1",
                                  "-update", "1", str(palette)], fps)
        return pipe_to_ffmpeg(source.frames(), ["-i", str(palette), "-lavfi",
                                                "[0:v][1:v]paletteuse=dither=bayer:bayer_scale=5:diff_mode=rectangle",
                                                "-loop", "0", str(path)], fps)


def write_gif_pillow(path: str | os.PathLike, source: FrameSource, fps: int) -> int:
    """The last resort GIF writer (slow, large files): Pillow, one palette from the last frame."""
    from PIL import Image

    source.update(source.n_frames - 1)
    palette = Image.fromarray(source.rgba()[..., :3].copy()).quantize(colors=255, method=Image.Quantize.MEDIANCUT)
    images = [Image.fromarray(f[..., :3].copy()).quantize(palette=palette, dither=Image.Dither.NONE) for f in source.frames()]
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(20, int(round(1000 / fps))), loop=0,
                   optimize=False)
    return len(images)


def save_png(rgba: np.ndarray, path: Path, dpi: float) -> None:
    """Save the RGB of ``rgba`` to ``path`` through a temporary file, so a reader never sees
    half a picture."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(rgba[..., :3].copy()).save(tmp, dpi=(dpi, dpi), compress_level=3)  # 3: faster than 6 and 1 here, 4% larger than 6
