"""The free-form ``params`` dicts (``function.params``, ``loss.pde.params``): their keys are
checked against the signature of the callable they are passed to, and a parameter a PDE
shares with its exact solution has one source, ``function.params`` (or ``function`` itself
for the solution's name), which the loss options interpolate.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Mapping, Optional

from .config import ConfigError, FunctionConfig, LossConfig


def accepted_keywords(fn: Callable, skip: int = 0) -> Optional[list[str]]:
    """The parameters ``fn`` takes by keyword after its first ``skip`` (the inputs: x, u), or
    None when it takes ``**kwargs`` or has no signature to read."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters[skip:] if p.kind in kinds]


def check_keywords(fn: Callable, params: Mapping[str, Any], *, key: str, target: str, skip: int = 0) -> None:
    """A ConfigError naming the first key of ``params`` that ``fn`` does not take, and every
    parameter it does take."""
    accepted = accepted_keywords(fn, skip)
    unknown = [k for k in params if accepted is not None and k not in accepted]
    if not unknown:
        return
    guess = difflib.get_close_matches(unknown[0], accepted, n=1)
    hint = f" Did you mean {key}.{guess[0]}?" if guess else ""
    takes = f"its parameters are {', '.join(accepted)}" if accepted else "it takes no parameters"
    raise ConfigError(f"{target} does not accept {key}.{unknown[0]}: {takes} (set one with {key}.NAME=VALUE).{hint}")


def check_shared(function: FunctionConfig, loss: LossConfig) -> None:
    """The PDE's parameters that its exact solution (``function``) also has must agree with it:
    a key of ``loss.pde.params`` (or of a dict in it, such as a CustomPDE's ``coefficients`` or
    ``solution_params``) named like a key of ``function.params``, and a ``solution`` name or
    dotted path. Otherwise test_error would measure the distance to another problem's solution."""
    if loss.pde is None:
        return
    fparams = dict(function.params)
    for key, value in _entries(dict(loss.pde.params)):
        name = key.rsplit(".", 1)[-1]
        if name in fparams and value != fparams[name]:
            raise ConfigError(
                f"loss.pde.params.{key}={value!r} disagrees with function.params.{name}={fparams[name]!r}: the PDE and "
                f"its exact solution (function={function.name}, what test_error compares with) share this parameter, "
                f"and its one source is function.params.{name} (loss={loss.name} reads it from there). "
                f"Set function.params.{name}={value!r} instead: it moves both."
            )
    solution = loss.pde.params.get("solution")
    if isinstance(solution, str) and solution not in (function.name, function._target_):
        where = "function._target_" if "." in solution else "function"
        raise ConfigError(
            f"loss.pde.params.solution={solution!r} disagrees with function={function.name} ({function._target_}), "
            f"the exact solution test_error compares with: its one source is {where} (loss={loss.name} reads it "
            f"from there). Set {where}={solution} instead: it moves both."
        )


def _entries(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(dotted key, value) for each entry of ``params`` and of the dicts directly in it."""
    out: list[tuple[str, Any]] = []
    for key, value in params.items():
        if isinstance(value, Mapping):
            out += [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            out.append((str(key), value))
    return out
