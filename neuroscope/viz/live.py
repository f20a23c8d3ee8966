"""The dashboard as a live window while training: whether one can be shown, and the window
that redraws whenever the trainer hands over the history so far."""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Optional

import matplotlib as mpl
from matplotlib.figure import Figure

from ..config import VizConfig
from ..rundir import History
from .dashboard import Dashboard
from .render import first_line, resolve_viz

log = logging.getLogger(__name__)


def live_view_available() -> tuple[bool, str]:
    """Whether a live window can be shown: a display, and an interactive matplotlib backend
    that opens a figure. The string says which backend, or why not."""
    if sys.platform.startswith("linux") or "bsd" in sys.platform:
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return False, "neither DISPLAY nor WAYLAND_DISPLAY is set"
    from matplotlib.backends import BackendFilter, backend_registry

    interactive = set(backend_registry.list_builtin(BackendFilter.INTERACTIVE)) - {"webagg", "nbagg", "notebook"}
    requested = os.environ.get("MPLBACKEND", "").strip().lower()
    if requested and requested not in interactive:
        return False, f"MPLBACKEND={requested} is not an interactive backend"
    import matplotlib.pyplot as plt

    current = (mpl.get_backend(auto_select=False) or "").lower()
    candidates = [current] if current in interactive else []
    usual = ("macosx", "qtagg", "tkagg") if sys.platform == "darwin" else ("qtagg", "tkagg", "gtk4agg", "gtk3agg", "wxagg")
    candidates += [b for b in usual if b not in candidates]
    previous = mpl.get_backend(auto_select=False)
    tried = []
    for name in candidates:
        try:
            plt.switch_backend(name)
            fig = plt.figure()
            plt.close(fig)
            return True, f"matplotlib backend {name}"
        except Exception as e:
            why = first_line(e)
            tried.append(f"{name}: {why if len(why) <= 60 else why[:57] + '...'}")
    try:
        plt.switch_backend(previous or "agg")
    except Exception:
        plt.switch_backend("agg")
    return False, "no interactive matplotlib backend opens a window (" + "; ".join(tried) + ")"


class LiveDashboard:
    """The dashboard in a window, redrawn whenever the trainer hands over the history so far.
    ``meta`` fills what a live History lacks (``lr`` for the 2/lr line, ``steps``, ``name``).
    Closing the window just stops the updates; training goes on."""

    def __init__(self, viz: Any = None, *, meta: Optional[dict] = None):
        self.viz = resolve_viz(viz) if not isinstance(viz, VizConfig) else viz
        self.meta = dict(meta or {})
        self._dash: Optional[Dashboard] = None
        self._closed = False

    def update(self, history: History) -> None:
        if self._closed:
            return
        import matplotlib.pyplot as plt

        try:
            if self._dash is None:
                dpi = float(self.viz.dpi)
                fig = plt.figure(figsize=tuple(self.viz.size), dpi=dpi, facecolor="white")
                self._dash = Dashboard(history, self.viz, figure=fig, live=True, meta=self.meta)
                fig.canvas.mpl_connect("close_event", lambda event: self._mark_closed())
                fig.canvas.mpl_connect("resize_event", lambda event: self._dash.invalidate())
                plt.show(block=False)
            else:
                self._dash.set_history(history)
            self._dash.update(self._dash.n_frames - 1)
            self._dash.canvas.flush_events()
        except Exception as e:  # a broken window must never stop training
            log.warning("live view stopped (%s: %s)", type(e).__name__, first_line(e))
            self.close()

    def _mark_closed(self) -> None:
        self._closed = True

    @property
    def figure(self) -> Optional[Figure]:
        return self._dash.fig if self._dash is not None else None

    def close(self) -> None:
        self._closed = True
        if self._dash is not None:
            import matplotlib.pyplot as plt

            plt.close(self._dash.fig)
