"""NeuroScope: watch full-batch gradient descent train a small MLP, with its fit,
generalization error and sharpness against the 2/lr edge of stability.

Notebook use, no Hydra runtime needed::

    from neuroscope import compose, train, render
    cfg = compose(["function=sin_cos2d", "input_dim=2", "lr=0.05"])
    result = train(cfg, out_dir="outputs/nb")
    render(result.run_dir)
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

__version__ = "0.1.0"
__all__ = ["compose", "train", "resume", "render", "ConfigError", "OutputError", "UserError"]

from .config import ConfigError, OutputError, UserError
from .plugins import make_discoverable

make_discoverable()  # hydra/launcher=batched, also in a default editable install

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from .run import RunResult


def compose(overrides: Sequence[str] = (), config_name: str = "config", *, return_hydra_config: bool = False) -> "DictConfig":
    """The config ``neuroscope OVERRIDES...`` would run, composed with Hydra's compose API.
    Bad overrides raise ConfigError with Hydra's message."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from .typed import explain_compose_error  # importing it registers the schemas too

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("neuroscope.conf", version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)
    except Exception as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(explain_compose_error(e, list(overrides))) from None


def train(cfg: Any, out_dir: Optional[str] = None, *, render: bool = False, progress: bool = False, overrides: Sequence[str] = ()) -> "RunResult":
    """Run one experiment into ``out_dir`` (default: a new folder under outputs/). Returns
    the History, summary, trained model and run directory; ``render=True`` also draws."""
    import time
    from pathlib import Path

    from .run import run

    if out_dir is None:
        out_dir = Path("outputs") / "api" / time.strftime("%Y-%m-%d_%H-%M-%S")
    return run(cfg, out_dir, render=render, progress=progress, overrides=overrides)


def resume(run_dir: str, overrides: Sequence[str] = (), out_dir: Optional[str] = None, *, render: bool = False, progress: bool = False) -> "RunResult":
    """Continue the run in ``run_dir`` (interrupted or finished) into a new directory;
    ``overrides`` may change only steps, viz.*, progress, checkpoint.*, device.threads."""
    overrides = [*overrides, f"resume={run_dir}"]
    return train(compose(overrides), out_dir, render=render, progress=progress, overrides=overrides)


def render(run_dir: str, viz: Any = None):
    """Draw ``dashboard.png`` and the animation of a finished run from its files."""
    from .viz import render as _render

    return _render(run_dir, viz)
