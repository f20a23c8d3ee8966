"""Shared helpers: configs composed exactly as a user types them, made small and quiet."""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from neuroscope import compose

# Small, quick runs: a few steps, no video, no progress bar.
FAST = ["steps=30", "viz.format=none", "viz.frames=5", "progress=false"]


def fast_config(*overrides: str):
    return compose([*FAST, *overrides])


def run_cli(args: list[str], cwd: Path, timeout: float = 240, env_extra: dict | None = None,
            module: str = "neuroscope", fresh: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m neuroscope ARGS`` (or another ``module``) as a user would, in ``cwd``.

    A call with the test process's environment runs in a process forked from the fork server
    (tests/forkserver.py: the libraries already imported, the command itself fresh); one that
    changes the environment (env_extra: thread counts, PYTHONPATH, read as Python and torch
    start), one with ``fresh``, or any call with NEUROSCOPE_TEST_FRESH=1 set, runs in a new
    interpreter."""
    if fresh or env_extra or os.environ.get(FRESH_ENV) == "1":
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
        return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout, env=env)
    return forked(module, args, Path(cwd), timeout)


FRESH_ENV = "NEUROSCOPE_TEST_FRESH"
_server: subprocess.Popen | None = None


def _fork_server() -> subprocess.Popen:
    """The fork server of this test process (each xdist worker has its own), started once."""
    global _server
    if _server is None or _server.poll() is not None:
        _server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("forkserver.py"))],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        assert "ready" in _answer(_server, 300), "the fork server did not start"
        atexit.register(_server.stdin.close)
    return _server


def _answer(server: subprocess.Popen, timeout: float) -> dict | None:
    """The server's next answer line, read from the unbuffered pipe; None after ``timeout`` s."""
    line, fd, deadline = b"", server.stdout.fileno(), time.monotonic() + timeout
    while not line.endswith(b"\n"):
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            return None
        byte = os.read(fd, 1)
        assert byte, f"the fork server ended (exit {server.wait()})"
        line += byte
    return json.loads(line)


def forked(module: str, args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``python -m module ARGS`` in a child of the fork server; as subprocess.run reports it."""
    server = _fork_server()
    with tempfile.TemporaryDirectory(prefix="forked-") as captured:
        out, err = Path(captured, "stdout"), Path(captured, "stderr")
        request = {"module": module, "argv": [str(a) for a in args], "cwd": str(cwd.resolve()),
                   "env": dict(os.environ, PYTHONUNBUFFERED="1"), "stdout": str(out), "stderr": str(err)}
        server.stdin.write((json.dumps(request) + "\n").encode())
        pid = _answer(server, 60)["pid"]
        answer = _answer(server, timeout)
        if answer is None:
            os.kill(pid, signal.SIGKILL)
            _answer(server, 60)
            raise subprocess.TimeoutExpired([module, *args], timeout, out.read_text(), err.read_text())
        code = answer["status"]
        return subprocess.CompletedProcess([sys.executable, "-m", module, *args], code, out.read_text(), err.read_text())


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


# Fixtures that cost nothing to set up again: no reason to keep their tests on one worker.
CHEAP_SHARED = {"one_thread"}


def pytest_collection_modifyitems(items):
    """Under pytest-xdist (``--dist loadgroup``), the tests reading one module- or class-scoped
    fixture (a run trained once, a help page) go to one worker, so it is computed once."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        shared = sorted(
            name for name, defs in (info.name2fixturedefs.items() if info else ())
            if name not in CHEAP_SHARED and defs and defs[-1].scope in ("module", "class", "package")
        )
        if shared:
            item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{shared[0]}"))
