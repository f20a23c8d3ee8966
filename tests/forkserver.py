"""A fork server for the suite's command-line tests: ``python -m neuroscope ARGS`` without
paying ``import torch`` (2.5 s or more on a busy 2-core machine) for every call.

The server imports the heavy *libraries* once (torch, hydra, matplotlib, numpy; never
neuroscope itself, so NeuroScope's import-time state is fresh in every call), then forks a
child per request. The child is a new process as a user's command is one: it gets the
request's working directory, environment, argv and sys.path[0] (``python -m`` puts the working
directory there), its own stdout and stderr files, stdin from /dev/null, and runs the module
as ``__main__`` with runpy; its exit status is the interpreter's (SystemExit codes, 1 and a
traceback for an uncaught exception, killed by SIGINT for an uncaught KeyboardInterrupt).

Protocol, one JSON object per line: the client writes
``{"module", "argv", "cwd", "env", "stdout", "stderr"}``; the server answers ``{"pid"}`` at
once and ``{"status"}`` (a returncode as subprocess reports it) when the child has ended.
The client (tests/conftest.py) runs it; ``NEUROSCOPE_TEST_FRESH=1`` bypasses it.
"""
from __future__ import annotations

import json
import os
import signal
import sys

PRELOAD = ("numpy", "torch", "torch.func", "torch._dynamo", "sympy", "omegaconf", "hydra", "hydra.core.config_store",
           "matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg")


def preload() -> None:
    """Import the libraries every call would import; a missing optional one is skipped."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def exit_code(code: object) -> int:
    """What the interpreter exits with for ``SystemExit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_module(module: str) -> int:
    """Run ``module`` as ``python -m`` does; the exit status the interpreter would give."""
    import runpy
    import threading
    import traceback

    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = exit_code(stop.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:  # noqa: BLE001 - the interpreter prints any uncaught exception
        traceback.print_exc()
        code = 1
    threading._shutdown()  # what the interpreter does at exit: join threads, run their atexit hooks
    import atexit

    atexit._run_exitfuncs()
    return code


def child(request: dict, protocol: tuple[int, int]) -> None:
    """In the forked process: become the requested command, run it, exit with its status."""
    for fd in protocol:
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.path[0] = os.getcwd()
    sys.argv = ["-m", *request["argv"]]  # runpy sets argv[0] to the module's file, as -m does
    code = run_module(request["module"])
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


def serve() -> None:
    """Answer requests until the client closes the pipe."""
    requests = os.fdopen(os.dup(0), "r")
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # nothing but the protocol goes to the client's pipe
    preload()
    answers.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in requests:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            child(request, (requests.fileno(), answers.fileno()))
        answers.write(json.dumps({"pid": pid}) + "\n")
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    serve()
