"""The work of ``hydra/launcher=batched`` (hydra_plugins/neuroscope_batched): every job of a
sweep composed once, checked, grouped by ``batching.group_by_key`` and trained group by group
with ``ensemble.train_group``, one training loop per group, in this process.

Each job is set up the way ``hydra.core.utils.run_job`` sets one up: its output folder, its
``.hydra/`` files (config.yaml, hydra.yaml, overrides.yaml), its log file, ``HydraConfig`` and
the callbacks' ``on_job_start`` / ``on_job_end``, and it gets one ``JobReturn`` whose value is
what the task function returns (``objective_value``), in job order. Only the training is
shared: the task function is not called per job.

A job whose config fails its checks fails alone (its folder has the ``.hydra/`` files and
its log the one-paragraph error; the sweep exits 2 once the others ran, as a run exits 2). A
signal stops the group training (train_group saves every member ``interrupted``) and no
further group is launched; a second one stops at once, with the task function's exit status.
"""
from __future__ import annotations

import copy
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from hydra.core.config_loader import ConfigLoader
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, env_override, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from .. import stopping
from ..config import Config, ConfigError, UserError
from .callback import objective_value
from .joblogs import job_logs

if TYPE_CHECKING:
    from hydra.plugins.launcher import Launcher

    from ..run import RunResult

log = logging.getLogger("neuroscope")


@dataclass
class Job:
    """One job of the sweep: its composed config (with ``hydra``), what the task gets (without
    it), its typed config once checked, or the error that stopped it."""

    num: int
    config: DictConfig
    task_cfg: DictConfig
    overrides: list[str]
    hydra_cfg: Optional[DictConfig] = None  # what HydraConfig holds for this job
    typed: Optional[Config] = None
    error: Optional[BaseException] = None
    result: Optional["RunResult"] = None
    ret: Optional[JobReturn] = None
    config_yaml: str = ""  # .hydra/config.yaml as written

    @property
    def output_dir(self) -> Path:
        return Path(self.config.hydra.runtime.output_dir)


def launch(launcher: "Launcher", job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Launch the jobs ``job_overrides`` names (numbered from ``initial_job_idx``); their
    JobReturns in job order (only the jobs launched, when a signal stopped the sweep)."""
    from ..batching import group_by_key

    setup_globals()
    base: DictConfig = launcher.config
    max_batch = _max_batch(base)
    stopping.in_sweep(Path(str(base.hydra.sweep.dir)))  # a signal also stops the groups still to come
    configure_log(base.hydra.hydra_logging, base.hydra.verbose)
    Path(str(base.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    log.info("Launching %d jobs as ensembles (hydra/launcher=batched, max_batch=%s)", len(job_overrides), max_batch or "no cap")
    composer, checker = composer_of(launcher), Checker()
    jobs = [composer.job(list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)]
    for job in jobs:
        log.info("\t#%d : %s", job.num, " ".join(filter_overrides(job.overrides)))
        checker.check(job)
    good = [j for j in jobs if j.error is None]
    alone = [[j] for j in good if j.typed.resume]  # a resumed run continues its own folder, on its own
    batched = [j for j in good if not j.typed.resume]
    groups = fitting([[batched[i] for i in g] for g in group_by_key([j.typed for j in batched], max_batch)]) + alone
    log.info("%d jobs in %d ensemble%s: %s", len(good), len(groups), "s" * (len(groups) != 1),
             "; ".join(f"#{g[0].num}.. ({len(g)})" if len(g) > 1 else f"#{g[0].num}" for g in groups) or "none")
    for job in jobs:
        if job.error is not None:
            _fail(launcher, job)
    for i, group in enumerate(groups):
        if stopping.sweep_signal() is not None:
            left = sum(len(g) for g in groups[i:])
            log.warning("the sweep was interrupted (%s): %d job%s not launched", stopping.signal_name(stopping.sweep_signal()),
                        left, "s" * (left != 1))
            break
        _run_group(launcher, group)
        configure_log(base.hydra.hydra_logging, base.hydra.verbose)
    failed = [j for j in jobs if isinstance(j.error, UserError)]
    if failed:  # as a run with a bad config exits, once every other job ran
        log.error("%d job%s could not run (%s); the other jobs' files are kept", len(failed), "s" * (len(failed) != 1),
                  ", ".join(f"#{j.num}" for j in failed))
        sys.exit(2)
    return [j.ret for j in jobs if j.ret is not None]


def fitting(groups: list[list[Job]]) -> list[list[Job]]:
    """The groups, each split where needed so that the ensemble fits the memory its device has
    free: an ensemble holds about what its members would hold as separate runs, so members are
    taken in order while the sum of their estimates (``checks.memory_estimate``) fits."""
    from .. import checks
    from ..run import resolve_device

    fitted = []
    for group in groups:
        free = checks.available_memory(resolve_device(group[0].typed.device)[0])
        n_params = checks.probe_model(group[0].typed)
        chunk, used = [], 0.0
        for job in group:
            need = sum(checks.memory_estimate(job.typed, n_params).values())
            if chunk and free is not None and used + need > free:
                fitted.append(chunk)
                chunk, used = [], 0.0
            chunk.append(job)
            used += need
        fitted.append(chunk)
        if free is not None and len(fitted[-1]) < len(group):
            log.info("jobs #%d..: %d jobs split into ensembles that fit the %.3g GB of free memory", group[0].num, len(group),
                     free / 1e9)
    return fitted


def _max_batch(base: DictConfig) -> int:
    value = OmegaConf.select(base, "hydra.launcher.max_batch", default=0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"hydra.launcher.max_batch={value} is not allowed: give the most jobs one ensemble may train "
                          "at once, a whole number >= 1, or 0 for no cap (e.g. hydra.launcher.max_batch=64).")
    return value


def composer_of(launcher: "Launcher") -> "Composer":
    """The launcher's Composer, made (and installed as its sweeper's config loader) on first use."""
    composer = getattr(launcher, "composer", None)
    if composer is None:
        loader = launcher.hydra_context.config_loader
        composer = launcher.composer = Composer(launcher, loader.inner if isinstance(loader, ComposingLoader) else loader)
        launcher.hydra_context.config_loader = ComposingLoader(composer.loader, composer)
    return composer


class Composer:
    """Each job's config as Hydra composes a sweep job's (``load_sweep_config``), composing
    only once per distinct set of config groups and keys: a job whose overrides differ from an
    already composed job's only in plain values (``lr=0.2``, ``model.width=8``; no group, no
    ``+``/``~``, no hydra key, no list or dict) is that job's config with its values set as
    Hydra sets a value override (``OmegaConf.update``), its ``hydra.overrides.task`` and
    ``hydra.job.override_dirname`` as Hydra computes them. Composing costs about as much as a
    short run; this keeps a sweep's start-up from growing with its length."""

    def __init__(self, launcher: "Launcher", loader: ConfigLoader) -> None:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self.launcher = launcher
        self.loader = loader  # Hydra's own
        self.parser = OverridesParser.create()
        self.composed: dict[tuple[str, ...], tuple[DictConfig, DictConfig]] = {}  # by the sweeper, to check them
        self.templates: dict[tuple, tuple[DictConfig, DictConfig]] = {}  # (config, task config) as composed
        self.groups = set(OmegaConf.select(launcher.config, "hydra.runtime.choices", default={}) or {})

    def job(self, overrides: list[str], num: int) -> Job:
        """The job, with HydraConfig set to it (as run_job sets it)."""
        config, task_cfg = self.composed.pop(tuple(overrides), None) or self._configs(overrides)
        with open_dict(config):
            config.hydra.job.id = num
            config.hydra.job.num = num
        sweep = config.hydra.sweep
        if "${hydra:" in str(OmegaConf.to_container(sweep, resolve=False)):
            HydraConfig.instance().set_config(config)  # the folder names use this job's HydraConfig
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = os.path.abspath(os.path.join(str(sweep.dir), str(sweep.subdir)))
        HydraConfig.instance().set_config(config)
        return Job(num=num, config=config, task_cfg=task_cfg, overrides=[str(o) for o in config.hydra.overrides.task],
                   hydra_cfg=HydraConfig.instance().cfg)

    def _configs(self, overrides: list[str]) -> tuple[DictConfig, DictConfig]:
        """The job's config and its task config (the config without ``hydra``)."""
        parsed = self.parser.parse_overrides(overrides)
        shape = tuple((o.key_or_group, None if self._plain(o) else o.input_line) for o in parsed)
        template = self.templates.get(shape)
        if template is not None:
            try:
                return self._patched(template[0], parsed), self._patched(template[1], parsed, hydra=False)
            except Exception:  # compose it whole: Hydra says what is wrong
                pass
        config = self.loader.load_sweep_config(self.launcher.config, overrides)
        task_cfg = copy.deepcopy(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        self.templates.setdefault(shape, (copy.deepcopy(config), copy.deepcopy(task_cfg)))
        return config, task_cfg

    def _plain(self, o: Any) -> bool:
        return (not o.is_hydra_override() and not o.is_add() and not o.is_delete() and not o.is_force_add()
                and o.package is None and not o.is_sweep_override() and o.key_or_group not in self.groups
                and not isinstance(o.value(), (dict, list)))

    @staticmethod
    def _patched(template: DictConfig, parsed: list[Any], hydra: bool = True) -> DictConfig:
        config = copy.deepcopy(template)
        task = [o for o in parsed if not o.is_hydra_override()]
        for o in task:
            OmegaConf.update(config, o.key_or_group, o.value(), merge=True)
        if not hydra:
            return config
        dirname = config.hydra.job.config.override_dirname
        lines = sorted(o.input_line for o in task if o.key_or_group not in dirname.exclude_keys)
        with open_dict(config.hydra):
            config.hydra.overrides.task = [o.input_line for o in task]
            # as Hydra names a job (its config loader's get_overrides_dirname)
            config.hydra.job.override_dirname = re.sub("=", dirname.kv_sep, dirname.item_sep.join(lines))
        return config


class ComposingLoader(ConfigLoader):
    """Hydra's config loader, but a sweep job's config (``load_sweep_config``, which a sweeper
    calls for every job to check that it composes before launching it) comes from the
    Composer, and is kept for the launcher: every job of the sweep is composed once, not once
    by Hydra per job to check it and again to run it. Everything else is Hydra's loader's."""

    def __init__(self, inner: ConfigLoader, composer: Composer) -> None:
        self.inner, self.composer = inner, composer

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        if master_config is not self.composer.launcher.config:
            return self.inner.load_sweep_config(master_config, sweep_overrides)
        key = tuple(sweep_overrides)
        if key not in self.composer.composed:
            self.composer.composed[key] = self.composer._configs(list(sweep_overrides))
        return self.composer.composed[key][0]

    def load_configuration(self, *args: Any, **kwargs: Any) -> DictConfig:
        return self.inner.load_configuration(*args, **kwargs)

    def get_search_path(self) -> Any:
        return self.inner.get_search_path()

    def get_sources(self) -> Any:
        return self.inner.get_sources()

    def list_groups(self, parent_name: str) -> Any:
        return self.inner.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.compute_defaults_list(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # anything else Hydra's loader has
        return getattr(self.inner, name)


class Checker:
    """Each job's typed config, with every check its run makes (``checks.checked_config``): the
    schema's checks for every job, the checks of what the run builds (``check_runnable``: the
    device, the model, the function, the PDE, memory) once per ensemble key, since jobs with
    one ``batch_key`` differ only in values those checks do not look at. A UserError is kept
    as the job's error."""

    def __init__(self) -> None:
        self.seen: dict[str, Optional[UserError]] = {}

    def check(self, job: Job) -> None:
        from ..batching import batch_key
        from ..checks import check_runnable, checked_config
        from ..typed import to_config

        HydraConfig.instance().cfg = job.hydra_cfg  # ${hydra:...} in the config resolve against this job
        try:
            config = to_config(job.task_cfg)
            if config.resume:
                job.typed = checked_config(job.task_cfg, job.overrides)
                return
            key = batch_key(config)
            if key not in self.seen:
                try:
                    check_runnable(config)
                    self.seen[key] = None
                except UserError as e:
                    self.seen[key] = e
            if self.seen[key] is not None:
                raise self.seen[key]
            job.typed = config
        except UserError as e:
            job.error = e


def _start(launcher: "Launcher", job: Job) -> None:
    """What run_job does before the task function: HydraConfig, the folder, the .hydra/ files,
    the job's logging, ``on_job_start``."""
    HydraConfig.instance().cfg = job.hydra_cfg
    job.output_dir.mkdir(parents=True, exist_ok=True)
    if job.config.hydra.output_subdir is not None:
        hydra_dir = job.output_dir / str(job.config.hydra.output_subdir)
        job.config_yaml = OmegaConf.to_yaml(job.task_cfg)
        for name, text in (("config.yaml", job.config_yaml), ("hydra.yaml", OmegaConf.to_yaml(job.hydra_cfg)),
                           ("overrides.yaml", OmegaConf.to_yaml(job.config.hydra.overrides.task))):
            _save_config(text, name, hydra_dir)
    with env_override(dict(job.config.hydra.job.env_set)):
        launcher.hydra_context.callbacks.on_job_start(config=job.config, task_function=launcher.task_function)


def _save_config(text: str, filename: str, folder: Path) -> None:
    """As Hydra writes a job's .hydra/ files (the YAML of the node, UTF-8)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(text, encoding="utf-8")


def _finish(launcher: "Launcher", job: Job, status: JobStatus, value: Any) -> None:
    """The job's JobReturn, as run_job makes it, and ``on_job_end``."""
    HydraConfig.instance().cfg = job.hydra_cfg
    ret = JobReturn(overrides=list(job.overrides), cfg=job.task_cfg, hydra_cfg=job.hydra_cfg,
                    working_dir=os.getcwd(), task_name=JobRuntime.instance().get("name"), status=status)
    ret.return_value = value
    job.ret = ret
    for handler in logging.getLogger().handlers:
        handler.flush()
    launcher.hydra_context.callbacks.on_job_end(config=job.config, job_return=ret)


def _fail(launcher: "Launcher", job: Job) -> None:
    """A job that cannot run: its folder, .hydra/ files and log with the error, as its run
    would leave them (the task function logs a UserError and exits 2)."""
    with job_logs([job], launcher.config.hydra.verbose):
        _start(launcher, job)
        log.error("%s", job.error)
    _finish(launcher, job, JobStatus.FAILED, job.error)


def _run_group(launcher: "Launcher", group: list[Job]) -> None:
    """Train one group as one ensemble and record each member's outcome."""
    from ..stopping import Interrupted

    with job_logs(group, launcher.config.hydra.verbose):
        for job in group:
            _start(launcher, job)
        HydraConfig.instance().cfg = group[0].hydra_cfg
        try:
            with env_override(dict(group[0].config.hydra.job.env_set)):
                _train(group)
        except UserError as e:  # e.g. the disk cannot take the group's files: every member fails with it
            log.error("%s", e)
            for job in group:
                job.error = e
        except Interrupted as e:  # a second signal: stop at once, as the task function does
            log.error("%s; the files already written are kept", e)
            sys.exit(e.exit_code)
        except Exception as e:  # a crash: each member fails with it, as a crashing task function's job does
            log.exception("the ensemble of jobs %s failed", ", ".join(f"#{j.num}" for j in group))
            for job in group:
                job.error = e
    for job in group:
        _restore_config(job)
        if job.error is None:
            _finish(launcher, job, JobStatus.COMPLETED, objective_value(job.result.summary))
        else:
            _finish(launcher, job, JobStatus.FAILED, job.error)


def _train(group: list[Job]) -> None:
    """``ensemble.train_group`` on the group's configs and folders (the group's resume overrides
    for a resumed run, alone in its group)."""
    overrides = group[0].overrides if group[0].typed.resume else ()
    configs = [j.task_cfg if j.typed.resume else j.typed for j in group]
    from .. import ensemble  # looked up at call time: one training loop for the whole group

    written = all(j.config_yaml for j in group)  # _start wrote each job's .hydra/config.yaml
    results = ensemble.train_group(configs, [j.output_dir for j in group], overrides=overrides, configs_written=written)
    for job, result in zip(group, results):
        job.result = result


def _restore_config(job: Job) -> None:
    """Keep ``.hydra/config.yaml`` as Hydra wrote it (a trainer that does not see this job's
    HydraConfig would write the typed config there instead)."""
    if job.config.hydra.output_subdir is None or not job.config_yaml:
        return
    path = job.output_dir / str(job.config.hydra.output_subdir) / "config.yaml"
    if path.exists() and path.read_text(encoding="utf-8") != job.config_yaml:
        _save_config(job.config_yaml, "config.yaml", path.parent)
