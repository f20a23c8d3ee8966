"""Shared helpers: configs composed exactly as a user types them, made small and quiet."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuroscope import compose

# Small, quick runs: a few steps, no video, no progress bar.
FAST = ["steps=30", "viz.format=none", "viz.frames=5", "progress=false"]


def fast_config(*overrides: str):
    return compose([*FAST, *overrides])


def run_cli(args: list[str], cwd: Path, timeout: float = 240, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m neuroscope ARGS`` as a user would, in ``cwd``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "neuroscope", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def single_run_dir(root: Path) -> Path:
    """The one run directory Hydra made under root/outputs/<date>/<time>."""
    dirs = [p.parent for p in (root / "outputs").glob("*/*/summary.json")]
    assert len(dirs) == 1, f"expected one run directory, found {dirs}"
    return dirs[0]



@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny nets: intra-op threads only add overhead (and thrash on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
