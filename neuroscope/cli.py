"""The ``neuroscope`` command: Hydra composes the config, ``run.run`` does the rest.

Errors a person can fix (a bad value, a missing CUDA device, an unwritable directory) are
printed as one paragraph with exit status 2, never as a traceback.
"""
from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from .config import ConfigError, UserError, explain_compose_error, to_config  # importing config registers the schemas

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
    if result.exit_code:
        sys.exit(result.exit_code)
    from .sweep import objective_value

    return objective_value(result.summary)  # what a sweeper such as Optuna minimizes: the final gen_error


def preflight(argv: list[str]) -> list[str]:
    """Check the config the command asks for before Hydra starts, so a bad override gets our
    one-paragraph message (exit 2). For a sweep, each swept value is checked, and the returned
    extra override names job folders by the swept keys only (``0_lr=0.01``)."""
    multirun = any(a in ("-m", "--multirun") for a in argv)
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return []  # --help, --cfg, -cn ...: Hydra's own business
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from . import compose
    from .run import check_output_root

    parser = OverridesParser.create()
    args = [a for a in argv if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    try:
        parsed = parser.parse_overrides(args)
    except Exception as e:
        raise ConfigError(f"Cannot parse the overrides {args}: {' '.join(str(e).split())}") from None
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    composed = compose(plain + [a for a in argv if a.lstrip("+~").startswith("hydra")], return_hydra_config=True)
    check_output_root(Path(composed.hydra.sweep.dir if multirun else composed.hydra.run.dir))
    del composed.hydra
    to_config(composed)
    if multirun:
        _check_swept_values(composed, plain, parsed, parser)
        fixed = [o.get_key_element().lstrip("+~") for o in parsed if not o.is_sweep_override()]
        return [f"hydra.job.config.override_dirname.exclude_keys=[{','.join(fixed + ['experiment'])}]"]
    return []


def _check_swept_values(composed: DictConfig, plain: list[str], parsed: list["Override"], parser: "OverridesParser") -> None:
    """Check each swept value on its own against the config without sweeps: a value is set on a
    copy of ``composed``, as Hydra sets it; a group option (function=..., experiment=...), and an
    override that adds or deletes a key, needs a composition of its own."""
    from . import compose

    groups = _config_groups()
    for o in parsed:
        if not o.is_discrete_sweep():  # interval sweeps (Optuna) have no values to list
            continue
        for value in o.sweep_string_iterator():
            line = f"{o.get_key_element()}={value}"
            if o.key_or_group.split("@")[0] in groups or o.is_add() or o.is_delete():
                to_config(compose(plain + [line]))
                continue
            (job,) = parser.parse_overrides([line])
            cfg = copy.deepcopy(composed)
            try:
                OmegaConf.update(cfg, job.key_or_group, job.value(), merge=True, force_add=job.is_force_add())
            except Exception as e:
                failed = ConfigCompositionException(f"Error merging override {line}")  # as Hydra words it
                failed.__cause__ = e
                raise ConfigError(explain_compose_error(failed, [line])) from None
            to_config(cfg)


def _config_groups() -> set[str]:
    """The config groups in neuroscope.conf (function, loss, ...): its folders."""
    from importlib.resources import files

    return {p.name for p in files("neuroscope.conf").iterdir() if p.is_dir() and not p.name.startswith("_")}


def main() -> None:
    try:
        sys.argv += preflight(sys.argv[1:])
    except UserError as e:
        print(f"neuroscope: error: {e}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
