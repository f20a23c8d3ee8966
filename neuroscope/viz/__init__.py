"""Pictures of runs and sweeps, drawn from run-folder files alone (no torch here): the
dashboard (``render``, ``Dashboard``, ``LiveDashboard``) and its video writers."""
from .dashboard import Dashboard
from .live import LiveDashboard, live_view_available
from .render import RenderResult, main, render, render_many, resolve_viz
from .writers import write_gif, write_mp4

__all__ = ["Dashboard", "LiveDashboard", "RenderResult", "live_view_available", "main", "render", "render_many", "resolve_viz",
           "write_gif", "write_mp4"]
