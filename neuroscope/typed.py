"""From a composed config to the typed one: ``to_config`` (keys outside the schema refused,
failing interpolations explained, every dataclass's own checks run), and Hydra's composition
errors as one paragraph that names the bad value and what is allowed."""
from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .config import Config, ConfigError


def to_config(cfg: DictConfig | Config) -> Config:
    """The typed, checked config object of a composed config (a Config passes through: it was
    checked when it was made)."""
    if isinstance(cfg, Config):
        return cfg
    unknown = unknown_keys(cfg, Config)
    if unknown:
        raise ConfigError(
            f"{', '.join(unknown)} {'is not a setting' if len(unknown) == 1 else 'are not settings'} of NeuroScope "
            "(added with '+'?): a run only takes the keys its schema has, so that it can be checked and resumed. "
            "Free-form values go under function.params or loss.pde.params; `neuroscope --cfg job` shows every key."
        )
    from omegaconf.errors import OmegaConfBaseException

    try:
        missing = sorted(OmegaConf.missing_keys(cfg))
        # to_object builds the groups' dataclasses, then Config, so every __post_init__ check runs;
        # OmegaConf wraps only a TypeError from a constructor, so a ConfigError arrives as it was raised.
        config = None if missing else OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:  # an interpolation that cannot resolve, a value of the wrong type
        text = " ".join(str(e).split("full_key:")[0].split())
        raise ConfigError(f"{getattr(e, 'full_key', None) or 'the config'} cannot be used: {text}. Give a plain value or an "
                          "interpolation of a key that exists (e.g. name=${function.name}).") from None
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} must be given (the config leaves it as ???): set it on the command line, "
            f"e.g. {missing[0]}=mypackage.mymodule.myfunc for a _target_."
        )
    return config


def unknown_keys(cfg: DictConfig, schema: Any, prefix: str = "") -> list[str]:
    """The keys of ``cfg`` that its dataclass ``schema`` has no field for (a '+key=value'
    override), recursively; the free-form dicts (function.params, loss.pde.params) are not looked into."""
    if not dataclasses.is_dataclass(schema) or not isinstance(cfg, DictConfig):
        return []
    names = {f.name for f in dataclasses.fields(schema)}
    found = []
    for key in cfg.keys():
        if key not in names:
            found.append(f"{prefix}{key}")
        elif not OmegaConf.is_missing(cfg, key) and OmegaConf.is_dict(cfg._get_node(key)):
            found += unknown_keys(cfg._get_node(key), _field_type(schema, str(key)), f"{prefix}{key}.")
    return found


def explain_compose_error(error: BaseException, overrides: list[str]) -> str:
    """Hydra's composition errors as one paragraph that names the bad value and what is allowed."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = error.__cause__ or error
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and "/" in error.missing_cfg_file:
        group, _, option = error.missing_cfg_file.rpartition("/")
        allowed = ", ".join(o for o in (error.options or []) if o != "base")
        return f"{group}={option} is not an option of the config group '{group}': choose one of {allowed}."
    if isinstance(cause, (ConfigKeyError, ConfigAttributeError)) and getattr(cause, "full_key", None):
        full_key = str(cause.full_key)
        parent, _, leaf = full_key.rpartition(".")
        node: Any = Config
        for part in parent.split(".") if parent else []:
            node = _field_type(node, part)
        allowed = sorted(f.name for f in dataclasses.fields(node)) if dataclasses.is_dataclass(node) else []
        guess = [(parent + "." if parent else "") + g for g in difflib.get_close_matches(leaf, allowed, n=1)]
        guess = guess or _settings_named(leaf, Config)
        hint = f" Did you mean {' or '.join(guess)}?" if guess else ""
        where = f"'{parent}'" if parent else "the top level"
        return f"{full_key} is not a setting: {where} has {', '.join(allowed)}.{hint}"
    text = " ".join(str(cause).split("full_key:")[0].split())
    head = " ".join(str(error).split()) if cause is not error else ""
    return f"{head}: {text}" if head and text not in head else (text or head)


def _settings_named(leaf: str, node: Any, prefix: str = "") -> list[str]:
    """The dotted keys below ``node`` whose last part is ``leaf`` (``width`` -> ``model.width``)."""
    found = []
    for f in dataclasses.fields(node) if dataclasses.is_dataclass(node) else ():
        if f.name == leaf and prefix:
            found.append(prefix + leaf)
        found += _settings_named(leaf, _field_type(node, f.name), f"{prefix}{f.name}.")
    return found


@functools.lru_cache(maxsize=None)
def _field_type(node: Any, name: str) -> Any:
    """The type of field ``name`` of dataclass ``node`` (Optional[X] as X); None for no such
    field. Cached: ``typing.get_type_hints`` was a third of ``to_config``'s time, paid for every
    swept value a sweep's preflight checks (schemas do not change while a process runs)."""
    if not dataclasses.is_dataclass(node):
        return None
    for f in dataclasses.fields(node):
        if f.name == name:
            t = typing.get_type_hints(node).get(name)
            args = [a for a in typing.get_args(t) if a is not type(None)]
            return args[0] if args else t
    return None
