"""``neuroscope --help`` is a help page generated from the schemas, and ``--version`` names
NeuroScope's version."""
from __future__ import annotations

import dataclasses
import re
import typing
from importlib.resources import files

import pytest

import neuroscope
from neuroscope.config import Config

from .conftest import run_cli


def dotted_fields(cls: type, prefix: str = "") -> list[str]:
    """Every field of a schema, recursively (into Optional groups too), as dotted keys."""
    keys = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        inner = next((a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)), tp)
        keys.append(prefix + f.name)
        if dataclasses.is_dataclass(inner):
            keys += dotted_fields(inner, f"{prefix}{f.name}.")
    return keys


@pytest.fixture(scope="module")
def help_page(tmp_path_factory) -> str:
    proc = run_cli(["--help"], tmp_path_factory.mktemp("help"), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_lists_every_schema_setting_with_its_type_value_and_meaning(help_page):
    lines = help_page.splitlines()
    groups = {k for k in dotted_fields(Config) if any(j.startswith(k + ".") for j in dotted_fields(Config))}
    for key in dotted_fields(Config):
        if key in groups:
            assert any(re.match(rf"{re.escape(key)}: \S", ln) for ln in lines), f"group {key} has no heading"
            continue
        (i,) = [i for i, ln in enumerate(lines) if re.match(rf"  {re.escape(key)}  \S.* = ", ln)]
        assert lines[i + 1].startswith("      ") and lines[i + 1].strip(), f"{key} has no meaning"
    for key in ("curvature.hvp", "curvature.max_iter", "data.n_test", "data.n_plot", "resume"):
        assert f"  {key}  " in help_page


def test_help_gives_allowed_values_and_the_values_of_the_overrides_before_it(tmp_path):
    page = run_cli(["lr=0.07", "--help"], tmp_path, timeout=120).stdout
    assert "  lr  float = 0.07" in page  # the value this command line gives
    assert "(one of: lanczos, power, exact)" in page and "(one of: auto, reuse, recompute, func)" in page
    assert "  curvature.max_iter  int = 30" in page and "  model.activation  choice = tanh" in page


def test_help_lists_each_config_group_with_its_options_resume_and_launchers(help_page):
    conf = files("neuroscope.conf")
    for group in (p for p in conf.iterdir() if p.is_dir() and not p.name.startswith("_") and p.name != "hydra"):
        options = sorted(p.name[:-5] for p in group.iterdir() if p.name.endswith(".yaml"))
        assert f"{group.name}: {', '.join(options)}" in help_page
    for text in ("resume=RUN_DIR", "hydra/launcher=joblib", "hydra/launcher=submitit_slurm", "hydra/sweeper=optuna"):
        assert text in help_page


def test_version_names_neuroscopes_version(tmp_path):
    proc = run_cli(["--version"], tmp_path, timeout=60, fresh=True)
    assert proc.returncode == 0 and f"neuroscope {neuroscope.__version__}" in proc.stdout
