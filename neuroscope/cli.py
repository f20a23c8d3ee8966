"""The ``neuroscope`` command: Hydra composes the config, ``run.run`` does the rest.

Errors a person can fix (a bad value, a missing CUDA device, an unwritable directory) are
printed as one paragraph with exit status 2, never as a traceback.
"""
from __future__ import annotations

import atexit
import copy
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, UserError  # importing config registers the schemas

from .typed import explain_compose_error
from .stopping import Interrupted
from .helptext import version_line  # also registers the resolver of the --help page

if TYPE_CHECKING:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Override

log = logging.getLogger("neuroscope")


@hydra.main(version_base="1.3", config_path="pkg://neuroscope.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    from .run import run

    hydra_cfg = HydraConfig.get()
    try:
        result = run(cfg, hydra_cfg.runtime.output_dir, overrides=list(hydra_cfg.overrides.task))
    except UserError as e:
        log.error("%s", e)
        sys.exit(2)
    except Interrupted as e:  # a second signal: stop at once, every file already written is whole
        log.error("%s; the files already written are kept", e)
        sys.exit(e.exit_code)
    # In a sweep an interrupted job returns: its launcher must not kill the jobs still saving,
    # and the sweep's exit status says it was interrupted (sweep.SweepSummary).
    if result.exit_code and hydra_cfg.mode != RunMode.MULTIRUN:
        sys.exit(result.exit_code)
    from .sweep import objective_value

    return objective_value(result.summary)  # what a sweeper such as Optuna minimizes: the final gen_error


# Flags that only show something (Hydra's help, a config, its info): no run, no checks.
SHOW_FLAGS = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion", "--version")


@dataclass
class Command:
    """What ``neuroscope ARGS`` asks for, as Hydra reads it: the overrides (``+group=``
    written ``group=``), multirun or not, and a config dir / config name if given."""

    overrides: list[str]
    multirun: bool
    config_dir: Optional[str]
    config_name: str

    def compose(self, overrides: list[str], **kwargs: Any) -> DictConfig:
        """The config these overrides give, composed as Hydra will (--config-dir, --config-name)."""
        from . import compose

        search = [f"hydra.searchpath=[file://{Path(self.config_dir).absolute()}]"] if self.config_dir else []
        return compose(search + overrides, self.config_name, **kwargs)

    def argv(self) -> list[str]:
        """The command for Hydra, flags first: Hydra's own parser takes no override after a flag
        (``neuroscope steps=30 -m lr=0.1,0.2`` would be 'unrecognized arguments')."""
        flags = ["--multirun"] if self.multirun else []
        flags += ["--config-dir", self.config_dir] if self.config_dir is not None else []
        flags += ["--config-name", self.config_name] if self.config_name != "config" else []
        return flags + self.overrides


def preflight(argv: list[str]) -> list[str]:
    """Check the config the command asks for before Hydra starts, so that bad input gets our
    one-paragraph message (exit 2) and no run folder: every check of ``checks.checked_config``,
    for a sweep on each swept value. Returns the arguments to give Hydra: ``+group=x`` as
    ``group=x``, and for a sweep an override naming job folders by the swept keys only
    (``0_lr=0.01``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from .checks import checked_config
    from .run import check_output_root

    command = _read_command(argv)
    if command is None:
        return argv  # only shows something, or flags Hydra itself explains
    parser = OverridesParser.create()
    parsed = _parse(parser, [o for o in command.overrides if not _is_hydra(o)])
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    hydra_args = [o for o in command.overrides if _is_hydra(o)]
    composed = command.compose(plain + hydra_args, return_hydra_config=True)
    where = "hydra.sweep.dir" if command.multirun else "hydra.run.dir"
    if not str(OmegaConf.select(composed, where)).strip():
        raise ConfigError(f"{where}='' is not allowed: give the directory the run's files go to, e.g. {where}=outputs/mine.")
    check_output_root(Path(OmegaConf.select(composed, where)))
    swept = _swept(parser, composed, parsed)
    if composed.resume is not None and not command.multirun:
        _check_resume(composed)
    if not command.multirun:
        _check_not_in_use(Path(composed.hydra.run.dir))
    del composed.hydra
    checked_config(composed, plain)
    if not command.multirun:
        _refuse_sweep_preset(swept, command.overrides)
        return command.argv()
    _check_swept_values(command, composed, plain, swept, parser)
    fixed = [o.get_key_element().lstrip("+~") for o in parsed if not o.is_sweep_override()]
    nested = [o.get_key_element().lstrip("+~") for o in swept if any("/" in str(v) for v in _values(o))]
    exclude = ",".join(dict.fromkeys(fixed + nested + ["experiment"]))  # '/' in a value would nest job folders
    return command.argv() + [f"hydra.job.config.override_dirname.exclude_keys=[{exclude}]"]


def _check_resume(composed: DictConfig) -> None:
    """``resume=RUN_DIR``: before Hydra writes the new run's .hydra/ folder, refuse RUN_DIR itself
    as that folder (Hydra would replace the config the resume reads); ``checked_config`` then
    checks that the run can be continued (its checkpoint, its config, what the overrides change)."""
    from .checkpoint import check_resume_target

    check_resume_target(composed.resume, composed.hydra.run.dir)


def _read_command(argv: list[str]) -> Optional[Command]:
    """The command in ``argv``; None when Hydra should have it as it is (a show flag, a flag
    preflight does not know)."""
    import argparse

    if any(a.split("=", 1)[0] in SHOW_FLAGS for a in argv):
        if any(a in ("-m", "--multirun") for a in argv) and any(a.split("=", 1)[0] in SHOW_FLAGS[2:] for a in argv):
            raise ConfigError(
                "-m/--multirun cannot be combined with --cfg, --info or --shell-completion: they show the config of one run. "
                "Drop -m and give one value per swept key (e.g. neuroscope experiment=eos_sweep lr=0.1 --cfg hydra); "
                "the sweep itself is under hydra.sweeper.params."
            )
        return None
    reader = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    reader.add_argument("overrides", nargs="*")
    reader.add_argument("-m", "--multirun", action="store_true")
    reader.add_argument("-cd", "--config-dir")
    reader.add_argument("-cn", "--config-name", default="config")
    try:
        args, unknown = reader.parse_known_intermixed_args(argv)
    except argparse.ArgumentError:
        return None
    if unknown:
        return None
    if args.config_dir is not None and not Path(args.config_dir).is_dir():
        raise ConfigError(f"--config-dir {args.config_dir} is not a directory: give the folder that holds your config groups "
                          "(e.g. myconf with myconf/function/bump.yaml).")
    return Command([_normalised_override(o) for o in args.overrides], args.multirun, args.config_dir, args.config_name)


def _is_hydra(override: str) -> bool:
    return override.lstrip("+~").startswith("hydra")


def _normalised_override(arg: str) -> str:
    """``+experiment=x`` as ``experiment=x``: every group of neuroscope.conf is in the defaults
    list already (Hydra says "Multiple values for experiment" to the '+' form)."""
    key = arg.split("=", 1)[0]
    return arg.lstrip("+") if "=" in arg and key.startswith("+") and key.lstrip("+") in _config_groups() else arg


def _parse(parser: "OverridesParser", args: list[str]) -> list["Override"]:
    """The parsed overrides; one that does not parse is a paragraph (with the likely cause
    when the shell split a setting at a space: ``lr =0.1``)."""
    try:
        return parser.parse_overrides(args)
    except Exception as e:
        why = " ".join(str(e).split())
    for a, b in zip(args, args[1:]):
        if ("=" not in a and b.startswith("=")) or (a.endswith("=") and "=" not in b):
            raise ConfigError(
                f"'{a}' and '{b}' look like one setting that the shell split at a space: write {a}{b} with no spaces "
                "around '=' (quote a value that contains spaces: 'name=my run')."
            )
    raise ConfigError(f"Cannot parse the overrides {args}: {why}")


def _swept(parser: "OverridesParser", composed: DictConfig, parsed: list["Override"]) -> list["Override"]:
    """The sweep overrides of the command line, and those of an experiment preset
    (``hydra.sweeper.params``) whose key the command line does not set."""
    given = {o.get_key_element().lstrip("+~") for o in parsed}
    params = OmegaConf.select(composed, "hydra.sweeper.params", default=None) or {}
    preset = [f"{k}={v}" for k, v in params.items() if k not in given]
    try:
        preset_parsed = parser.parse_overrides(preset)
    except Exception:  # a sweeper's own syntax: the sweeper will say
        preset_parsed = []
    return [o for o in parsed + preset_parsed if o.is_sweep_override()]


def _values(o: "Override") -> list[str]:
    return list(o.sweep_string_iterator()) if o.is_discrete_sweep() else []


def _refuse_sweep_preset(swept: list["Override"], overrides: list[str]) -> None:
    """A sweep (an experiment preset's or the command line's) without -m is an error, not one job."""
    if swept:
        keys = ", ".join(f"{o.get_key_element()} over {','.join(_values(o)) or 'a range'}" for o in swept)
        raise ConfigError(
            f"This config is a sweep ({keys}) but -m was not given, so it would run one job only: run the sweep with "
            f"neuroscope -m {' '.join(overrides)}, or give one value per swept key for a single run (a list value is written [a,b]) "
            f"(e.g. {swept[0].get_key_element()}={(_values(swept[0]) or ['0.1'])[0]})."
        )


def _check_swept_values(command: Command, composed: DictConfig, plain: list[str], swept: list["Override"],
                        parser: "OverridesParser") -> None:
    """Check each swept value on its own against the config without sweeps: a value is set on a
    copy of ``composed``, as Hydra sets it; a group option (function=..., experiment=...), and an
    override that adds or deletes a key, needs a composition of its own."""
    from .checks import checked_config

    groups = _config_groups()
    for o in swept:
        cfg = None  # one copy of ``composed`` per key: each value replaces the one before
        for value in dict.fromkeys(_values(o)):  # interval sweeps (Optuna) have no values to list
            line = f"{o.get_key_element()}={value}"
            if o.key_or_group.split("@")[0] in groups or o.is_add() or o.is_delete():
                checked_config(command.compose(plain + [line]), plain + [line])
                continue
            (job,) = parser.parse_overrides([line])
            if cfg is None or isinstance(job.value(), dict):  # a mapping merges into what is there: a fresh copy
                cfg = copy.deepcopy(composed)
            try:
                OmegaConf.update(cfg, job.key_or_group, job.value(), merge=True, force_add=job.is_force_add())
            except Exception as e:
                failed = ConfigCompositionException(f"Error merging override {line}")  # as Hydra words it
                failed.__cause__ = e
                raise ConfigError(explain_compose_error(failed, [line])) from None
            checked_config(cfg, plain + [line])


def _check_not_in_use(run_dir: Path) -> None:
    """Refuse a run into a folder another run is writing, before Hydra writes its files there."""
    from .rundir import lock_holder
    from .run import busy_error

    pid = lock_holder(run_dir) if run_dir.is_dir() else None
    if pid is not None:
        raise busy_error(run_dir, pid)


def _config_groups() -> set[str]:
    """The config groups in neuroscope.conf (function, loss, ...): its folders."""
    from importlib.resources import files

    return {p.name for p in files("neuroscope.conf").iterdir() if p.is_dir() and not p.name.startswith("_")}


def main() -> None:
    atexit.register(skip_final_collections)  # runs when this process exits, not when main returns
    if "--version" in sys.argv[1:]:  # ours, not Hydra's (which names only Hydra)
        print(version_line())
        sys.exit(0)
    try:
        sys.argv[1:] = preflight(sys.argv[1:])
    except UserError as e:
        print(f"neuroscope: error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        _hydra_main()
    except Interrupted as e:  # a sweep's parent, signalled twice
        print(f"neuroscope: {e}; the files already written are kept", file=sys.stderr)
        sys.exit(e.exit_code)


def skip_final_collections() -> None:
    """At exit: let the interpreter's finalization skip the collector's passes over what lives.

    Measured on the default run (2 cores): 1.0-1.8 s passed between the last atexit handler
    and the process's end, 0.5-0.7 s of it for ``import torch`` alone. Nothing waits there (no
    thread, pool or subprocess is left; ffmpeg was waited for): it is Python 3.11's
    finalization, whose full collections walk every live object (~380,000 once torch, sympy,
    matplotlib and Hydra are imported). ``gc.freeze()`` moves them to the permanent
    generation, which those collections skip: the exit then takes 0.15-0.2 s. It is safe
    because the rest of a normal exit still happens: every other atexit handler (the
    logging flush, a sweep's summary; LIFO, the ones registered after this run before it),
    the join of non-daemon threads, stdio flushes; and every object outside a reference
    cycle is still freed when the modules are cleared, so an open file still closes. Only
    cyclic garbage is left for the OS to reclaim with the process. (``os._exit`` would save
    0.1 s more but skip those steps.)"""
    import gc

    gc.disable()
    gc.freeze()


if __name__ == "__main__":
    main()
