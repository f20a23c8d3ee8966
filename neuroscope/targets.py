"""What a ``_target_`` of each kind must be (a model class, a PDE class, an update rule, a
function of the user's own), checked by ``resolve_target`` (here) before anything it names is called."""
from __future__ import annotations

import inspect
import logging
import sys
from typing import Any

from .config import ConfigError

# What each kind of ``_target_`` must be, checked before it is called (a config, also one read
# from a run folder by resume=, must not be able to run arbitrary code such as subprocess.run).
TARGET_KINDS = {
    "function": "a Python function defined in neuroscope.functions or in your own module (not in Python's "
    "standard library or an installed package), e.g. mypackage.mymodule.myfunc",
    "model": "a torch.nn.Module subclass, e.g. neuroscope.model.MLP",
    "pde": "a subclass of neuroscope.pde.PDEProblem, e.g. neuroscope.pde.Poisson1D or neuroscope.pde.CustomPDE",
    "optimizer": "a subclass of neuroscope.optimizers.UpdateRule, e.g. neuroscope.optimizers.HeavyBall",
    "reference": "neuroscope.flow.GradientFlow or a subclass of it",
}

# The base class a target of each class kind must subclass, as (module, name).
BASE_CLASSES = {"model": ("torch.nn", "Module"), "pde": ("neuroscope.pde", "PDEProblem"),
                "optimizer": ("neuroscope.optimizers", "UpdateRule"), "reference": ("neuroscope.flow", "GradientFlow")}


def wrong_kind(obj: Any, kind: str) -> str:
    """Why ``obj`` is not a target of ``kind``; '' if it is one."""
    what = f"it names a {type(obj).__name__} ({getattr(obj, '__qualname__', obj)!s:.60})"
    if kind in BASE_CLASSES:
        import importlib

        module, name = BASE_CLASSES[kind]
        base = getattr(importlib.import_module(module), name)
        return "" if isinstance(obj, type) and issubclass(obj, base) else what
    if not inspect.isfunction(obj):
        return what
    module = str(getattr(obj, "__module__", ""))
    if module == "neuroscope.functions" or (not module.startswith("neuroscope") and not _library_module(module)):
        return ""
    return f"it names {module}.{obj.__qualname__}, a function of a library or of NeuroScope's machinery"


def _library_module(name: str) -> bool:
    """Whether module ``name`` is part of Python or of an installed package (stdlib, site-packages)."""
    import site
    import sysconfig
    from pathlib import Path

    if name == "__main__":  # the user's script or notebook
        return False
    file = getattr(sys.modules.get(name), "__file__", None)
    if file is None:
        return True
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.update(site.getsitepackages() + [site.getusersitepackages()])
    path = Path(file).resolve()
    return any(path.is_relative_to(Path(r).resolve()) for r in roots if r)


def import_failure(error: BaseException) -> str:
    """The reason an import failed, in one line: the first missing attribute if that is what
    it came down to, else the innermost cause (get_object wraps both in an ImportError)."""
    chain: list[BaseException] = []  # from the last exception raised back to the first
    e: BaseException | None = error
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    root = next((c for c in reversed(chain) if isinstance(c, AttributeError)), chain[-1])
    return f"{type(root).__name__}: {' '.join(str(root).split())}"


def resolve_target(path: str, *, key: str, kind: str = "function") -> Any:
    """The object a ``_target_`` names ("package.module.attr") if it is of ``kind`` (a key of
    ``TARGET_KINDS``), else a ConfigError of one paragraph naming the key. A path into the
    standard library is refused before anything is imported."""
    from hydra.utils import get_object

    allowed = TARGET_KINDS[kind]
    if str(path).split(".")[0] in (*sys.stdlib_module_names, "builtins"):
        raise _refused(path, key, allowed, "it is in Python's standard library")
    hydra_log = logging.getLogger("hydra.utils")
    disabled, hydra_log.disabled = hydra_log.disabled, True  # it logs the failure on its own, in several lines
    try:
        obj = get_object(path)
    except Exception as e:
        reason = import_failure(e)
        raise ConfigError(
            f"{key}={path!r} cannot be imported ({reason}). Give the dotted path of {allowed}, with its module on PYTHONPATH."
        ) from None
    finally:
        hydra_log.disabled = disabled
    wrong = wrong_kind(obj, kind)
    if wrong:
        raise _refused(path, key, allowed, wrong)
    return obj


def _refused(path: str, key: str, allowed: str, why: str) -> ConfigError:
    return ConfigError(
        f"{key}={path!r} is refused: {why}, but it must be {allowed}. NeuroScope checks what a _target_ is "
        "before calling it, so that no config (nor a run folder read by resume=) can run other code."
    )
