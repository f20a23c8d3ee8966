"""The settings table of ``neuroscope --help`` and the ``--version`` line.

The table is generated at --help time from the dataclass schemas in config.py: every field,
recursively, with its type, its value in the composed config (the defaults, or what the
command line before ``--help`` sets), its allowed values (enum members, booleans) and its
meaning, read from the comment on the field's line. So it lists what the schemas hold and
cannot drift from them. ``conf/hydra/help/neuroscope.yaml`` places it in Hydra's help
template through the resolver ``neuroscope_settings``.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import linecache
import tokenize
import typing
from enum import Enum
from typing import Any, Iterator, Optional

from omegaconf import DictConfig, OmegaConf

from . import __version__
from .config import Config

INDENT = 6  # where a setting's meaning starts under its key


@functools.lru_cache(maxsize=None)
def field_comments(cls: type) -> dict[str, str]:
    """The comment on each field's line of a dataclass's source: field name -> text. Cached:
    reading and tokenizing the source was most of a run's 0.2-0.7 s spent on this page, which
    Hydra's compose resolves (twice per run) though only ``--help`` shows it."""
    comments: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    first_name: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(_class_source(cls)).readline):
        row = tok.start[0]
        if tok.type == tokenize.NAME and row not in first_name:
            first_name[row] = tok.string
        elif tok.type == tokenize.COMMENT and first_name.get(row) in names:
            comments.setdefault(first_name[row], tok.string.lstrip("#").strip())
    return comments


def _class_source(cls: type) -> str:
    """``inspect.getsource(cls)`` (decorators included) from one parse of its module's file;
    inspect parses the whole file again for every class."""
    spans = _top_level_classes(inspect.getsourcefile(cls) or "")
    if cls.__qualname__ not in spans:
        return inspect.getsource(cls)
    start, end = spans[cls.__qualname__]
    return "".join(linecache.getlines(inspect.getsourcefile(cls))[start - 1:end])


@functools.lru_cache(maxsize=None)
def _top_level_classes(path: str) -> dict[str, tuple[int, int]]:
    """Each top-level class of the file at ``path``: name -> (first line, last line), 1-based."""
    if not path:
        return {}
    tree = ast.parse("".join(linecache.getlines(path)))
    return {node.name: (min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno)
            for node in tree.body if isinstance(node, ast.ClassDef)}


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(the type inside Optional[...], whether None is allowed)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union and len(args) == 1:
        return args[0], True
    return tp, False


def type_name(tp: Any) -> str:
    inner, optional = _unwrap(tp)
    origin = typing.get_origin(inner)
    if isinstance(inner, type) and issubclass(inner, Enum):
        name = "choice"
    elif origin in (list, typing.List):
        name = f"list of {type_name(typing.get_args(inner)[0])}"
    elif origin in (dict, typing.Dict):
        name = "dict"
    else:
        name = getattr(inner, "__name__", str(inner))
    return f"{name} or null" if optional else name


def allowed_values(tp: Any) -> Optional[str]:
    inner, optional = _unwrap(tp)
    values = None
    if isinstance(inner, type) and issubclass(inner, Enum):
        values = [m.value for m in inner]
    elif inner is bool:
        values = ["true", "false"]
    if values is None:
        return None
    return ", ".join(values + (["null"] if optional else []))


def schema_fields(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, Any, str, bool]]:
    """(dotted key, type, meaning, is_group) of every field of ``cls``, recursively: its own
    settings first, then each group (an Optional one such as loss.pde too) and its fields."""
    hints = _type_hints(cls)
    comments = field_comments(cls)
    rows = [(prefix + f.name, hints[f.name], comments.get(f.name, "")) for f in dataclasses.fields(cls)]
    groups = [(key, tp, meaning) for key, tp, meaning in rows if dataclasses.is_dataclass(_unwrap(tp)[0])]
    yield from ((key, tp, meaning, False) for key, tp, meaning in rows if (key, tp, meaning) not in groups)
    for key, tp, meaning in groups:
        yield key, tp, meaning, True
        yield from schema_fields(_unwrap(tp)[0], key + ".")


def _raw_value(root: Optional[DictConfig], key: str, seen: Optional[dict[str, Any]] = None) -> str:
    """The value of ``key`` in the composed config as written (interpolations kept), or '-';
    ``seen`` keeps each parent's plain form for the next key of the same table."""
    if root is None:
        return "-"
    parent, _, leaf = key.rpartition(".")
    seen = {} if seen is None else seen
    if parent not in seen:
        node = OmegaConf.select(root, parent, default=None) if parent else root
        seen[parent] = OmegaConf.to_container(node, resolve=False, enum_to_str=True) if isinstance(node, DictConfig) else None
    plain = seen[parent]
    if not isinstance(plain, dict) or leaf not in plain:
        return "-"
    return _show(plain[leaf])


def _show(value: Any) -> str:
    """A value as one would type it on the command line."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def settings_table(root: Optional[DictConfig] = None) -> str:
    """Every setting: ``key  type = value`` and, under it, its meaning and allowed values."""
    lines, seen = ["top level: the run"], {}
    for key, tp, meaning, group in schema_fields():
        if group:
            lines += ["", f"{key}: {meaning}"]
            continue
        allowed = allowed_values(tp)
        lines += [f"  {key}  {type_name(tp)} = {_raw_value(root, key, seen)}",
                  " " * INDENT + meaning + (f" (one of: {allowed})" if allowed else "")]
    return "\n".join(lines)


def _settings_resolver(*, _root_: DictConfig) -> str:
    # Hydra fills the template with string.Template: a '$' of ours (an interpolation) is '$$'
    return settings_table(_root_).replace("$", "$$")


def version_line() -> str:
    import hydra

    return f"neuroscope {__version__} (Hydra {hydra.__version__})"


OmegaConf.register_new_resolver("neuroscope_settings", _settings_resolver, replace=True)
