"""Each job's own log file while a batched group trains in one process (hydra/launcher=batched).

Hydra's job logging writes a job's lines to ``<job folder>/<job name>.log``; a group of jobs
trains in one process, so its records are sent on to the file of the member they are about.
A record names its member by ``extra={"run_dir": RUN_DIR}`` or by having the member's run
folder among its %-arguments (``log.info("%s: ...", run_dir)``, as run.run's start line
does); a record that names none goes to every member of ``JobLogs.active`` (the whole group
unless narrowed: a trainer running one member at a time narrows it to that member).
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import configure_log
from omegaconf import OmegaConf

if TYPE_CHECKING:
    from .batched import Job


class JobLogs:
    """Each member's own log file while its group trains: the job logging's file handlers
    (configured for the first member, as Hydra configures a job's) replaced by one handler
    that sends a record to the file of the member it names (``extra={"run_dir": ...}``, or
    the run folder as an argument of the message, as run.run's lines give it), and a record
    that names none to the members ``active`` lists (the whole group unless narrowed)."""

    def __init__(self, jobs: list["Job"]) -> None:
        self.jobs = jobs
        self.active: list[Path] = [j.output_dir.resolve() for j in jobs]
        self._files: dict[Path, list[logging.Handler]] = {d: [] for d in self.active}
        self._replaced: list[logging.Handler] = []

    def install(self) -> None:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            paths = [OmegaConf.select(j.config, f"hydra.job_logging.handlers.{handler.name}.filename") for j in self.jobs]
            if handler.name is None or any(p is None for p in paths):
                continue
            root.removeHandler(handler)
            handler.close()
            self._replaced.append(handler)
            for job, path in zip(self.jobs, paths):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                member = logging.FileHandler(path, mode=handler.mode, encoding=handler.encoding)
                member.setFormatter(handler.formatter)
                member.setLevel(handler.level)
                self._files[job.output_dir.resolve()].append(member)
        if self._replaced:
            root.addHandler(_Router(self))

    def targets(self, record: logging.LogRecord) -> list[Path]:
        named = [getattr(record, "run_dir", None)] + list(record.args if isinstance(record.args, tuple) else ())
        hits: list[Path] = []
        for value in named:  # each resolved once, then looked up: a group's records cost O(1) each, not O(members)
            folder = _resolved(os.fspath(value), os.getcwd()) if value and isinstance(value, (str, os.PathLike)) else None
            if folder in self._files and folder not in hits:
                hits.append(folder)
        return hits or self.active

    def emit(self, record: logging.LogRecord) -> None:
        for folder in self.targets(record):
            for handler in self._files[folder]:
                if record.levelno >= handler.level:
                    handler.handle(record)

    def close(self) -> None:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, _Router) and h.logs is self]:
            root.removeHandler(handler)
        for handlers in self._files.values():
            for handler in handlers:
                handler.close()


@functools.lru_cache(maxsize=4096)
def _resolved(value: str | bytes, cwd: str) -> Optional[Path]:
    """The folder a log argument names, resolved (from ``cwd``) as the members' folders are (None: not a path)."""
    try:
        return (Path(cwd) / os.fsdecode(value)).resolve()
    except (OSError, ValueError, RuntimeError):
        return None


class _Router(logging.Handler):
    def __init__(self, logs: JobLogs) -> None:
        super().__init__()
        self.logs = logs

    def emit(self, record: logging.LogRecord) -> None:
        self.logs.emit(record)


@contextlib.contextmanager
def job_logs(jobs: Sequence["Job"], verbose: Any) -> Iterator[JobLogs]:
    """The job logging of ``jobs[0]`` (console + file, as Hydra configures a job's), its files
    split per member (:class:`JobLogs`) while active."""
    for job in jobs:  # the log files go there
        job.output_dir.mkdir(parents=True, exist_ok=True)
    HydraConfig.instance().cfg = jobs[0].hydra_cfg
    configure_log(jobs[0].config.hydra.job_logging, verbose)
    logs = JobLogs(list(jobs))
    logs.install()
    try:
        yield logs
    finally:
        logs.close()
