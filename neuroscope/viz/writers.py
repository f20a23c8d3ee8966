"""Writers that receive finished frames: MP4 and GIF through one ffmpeg pipe (raw RGBA on
stdin), Pillow's GIF as the last resort, and the atomic PNG save."""
from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np


class FrameSource(Protocol):
    """What the GIF writers need of a dashboard: frames drawn on demand."""

    @property
    def n_frames(self) -> int: ...

    def update(self, frame_index: int) -> None: ...

    def rgba(self) -> np.ndarray: ...

    def frames(self) -> Iterator[np.ndarray]: ...


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

    tmp = path.with_name(path.stem + ".partial.png")
    Image.fromarray(rgba[..., :3].copy()).save(tmp, dpi=(dpi, dpi), compress_level=6)
    os.replace(tmp, path)
