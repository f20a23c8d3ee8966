"""Stopping on signals. The first SIGINT or SIGTERM asks a run to stop at the end of its step
and save everything (while it renders, to stop rendering); a second one stops at once, with
:class:`Interrupted`. Within a sweep, the request also stops the jobs still to come in the
same process, and the sweep's parent passes a SIGTERM on to its worker processes.

Signal handlers belong to the process, so what they received is kept here, once per process.
Python runs handlers in the main thread only: elsewhere (a thread of a notebook) nothing is
installed and a run is stopped as any Python code is.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal that stops the run where it is: a second one (``at_once``), or a first one
    while the run renders."""

    def __init__(self, signum: int, *, at_once: bool) -> None:
        super().__init__(f"{signal.Signals(signum).name} {'again: stopping at once' if at_once else 'while rendering'}")
        self.signum = signum
        self.at_once = at_once

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@dataclass
class _Received:
    signals: list[int] = field(default_factory=list)
    rendering: bool = False  # a first signal stops the rendering too
    sweep_dir: Optional[Path] = None  # a signal also stops this sweep's runs still to come in this process


_PROCESS = _Received()


def _on_signal(signum: int, frame: object) -> None:
    again = bool(_PROCESS.signals)
    _PROCESS.signals.append(signum)
    if again or _PROCESS.rendering:
        raise Interrupted(signum, at_once=again)


def signal_name(signum: Optional[int]) -> Optional[str]:
    return signal.Signals(signum).name if signum else None


@contextlib.contextmanager
def stop_on_signals(run_dir: Optional[Path] = None) -> Iterator[Callable[[], Optional[int]]]:
    """While active, SIGINT/SIGTERM ask the run to stop at the end of the current step; yields
    a function returning the first signal received (or None). A second signal raises
    :class:`Interrupted` wherever the run is (training, saving, rendering). A run of a sweep
    that was signalled (``run_dir`` in its folder) starts stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    sweep = _PROCESS.sweep_dir
    if run_dir is None or sweep is None or not Path(run_dir).absolute().is_relative_to(sweep):
        _PROCESS.signals.clear()
    previous = {s: signal.signal(s, _on_signal) for s in SIGNALS}
    try:
        yield lambda: _PROCESS.signals[0] if _PROCESS.signals else None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _PROCESS.rendering = False


@contextlib.contextmanager
def rendering() -> Iterator[None]:
    """While active, the first signal stops the rendering (:class:`Interrupted`) too."""
    _PROCESS.rendering = True
    try:
        yield
    finally:
        _PROCESS.rendering = False


def in_sweep(sweep_dir: Path) -> None:
    """This process runs jobs of the sweep in ``sweep_dir``: a signal one of them received
    stops those still to come."""
    _PROCESS.sweep_dir = Path(sweep_dir).absolute()


def guard_sweep(sweep_dir: Path) -> None:
    """In a sweep's parent process (main thread), before any job starts. SIGINT is ignored here,
    and so in every worker process started from here (an ignored signal stays ignored in a
    child; a handler does not): Ctrl-C reaches every process of the terminal's group, each
    running job stops on it by itself, and an idle worker must not die of it (a dead worker
    makes the launcher kill the others, jobs that are saving included). SIGTERM, which only
    this process gets, is passed on to the workers as SIGINT (idle ones ignore it); a second
    one stops the sweep at once."""
    if threading.current_thread() is not threading.main_thread():
        return
    in_sweep(sweep_dir)
    _PROCESS.signals.clear()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sweep_signal)


def _on_sweep_signal(signum: int, frame: object) -> None:
    """The first SIGTERM goes on to the workers; the second stops the sweep at once (the
    launcher then ends its workers)."""
    again = bool(_PROCESS.signals)
    _PROCESS.signals.append(signum)
    if again:
        raise Interrupted(signum, at_once=True)
    for child in multiprocessing.active_children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGINT)


def sweep_signal() -> Optional[int]:
    """The first signal this process received, or None."""
    return _PROCESS.signals[0] if _PROCESS.signals else None
