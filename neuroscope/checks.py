"""Everything that can be checked before a run trains, in one place: the device, what every
``_target_`` builds (on a probe, before any real data), the PDE against ``input_dim``, the
curvature settings against the model, and the memory the run needs against what the machine
has. The CLI's preflight calls ``checked_config`` for a run and for each config of a sweep
before Hydra makes a folder; ``run.run`` calls it too, so the Python API gets the same checks.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from .checkpoint import resume_config
from .config import Config, ConfigError, CurvatureMethod, DType
from .targets import resolve_target
from .typed import to_config
from .losses import build_pde
from .run import build_model, build_target, resolve_device

PROBE_POINTS = 3  # points a target, model or PDE is tried on before the run builds anything
CPU_PROBE_PARAMS = 2_000_000  # models up to this size are probed on the CPU (8 MB of float32 weights at most)


def checked_config(cfg: Any, overrides: Sequence[str] = ()) -> Config:
    """The typed config a run will train with (for ``resume=``, the source run's own with
    ``overrides`` applied), after every check of ``check_runnable``."""
    config = to_config(cfg)
    if config.resume:
        config = resume_config(Path(config.resume), overrides)
    key = None if config.resume else repr(config)  # a resume also depends on the files it reads
    if key is None or key not in _CHECKED:
        check_runnable(config)
    if key is not None:
        _CHECKED.add(key)
    return config


# The configs this process has checked, by their repr: the CLI's preflight checks each run's
# config (each swept value's) before Hydra starts, and run.run, called by Hydra for the same
# config, does not probe it again. Everything check_runnable looks at is in the config (the
# device and free memory change nothing in the seconds between the two).
_CHECKED: set[str] = set()


def check_runnable(config: Config) -> None:
    """Raise a one-paragraph ConfigError for anything that would stop the run once started."""
    device, dtype = resolve_device(config.device)
    n_params = probe_model(config)
    check_memory(config, n_params, device)
    build_target(config.function, probe=_box_points(config, dtype=torch.float64))
    pde = build_pde(config.loss, config.input_dim)
    if pde is not None:
        probe_pde(config, pde)
    k, method = config.curvature.k, config.curvature.method
    if config.curvature.every and k > n_params:
        raise ConfigError(
            f"curvature.k={k} is larger than the model's {n_params} parameters: the Hessian has only {n_params} "
            f"eigenvalues. Use curvature.k <= {n_params} (curvature.method={method.value})."
        )


def _box_points(config: Config, dtype: torch.dtype) -> torch.Tensor:
    """``PROBE_POINTS`` points along the diagonal of the test box, its corners included."""
    lo, hi = (float(v) for v in config.data.test_range)
    return torch.linspace(lo, hi, PROBE_POINTS, dtype=dtype)[:, None].repeat(1, config.input_dim)


def probe_model(config: Config) -> int:
    """Build ``model._target_`` and run it on a probe: it must map (n, input_dim) to (n,).
    Returns its parameter count. It is built on the meta device first (no memory); a model
    of up to ``CPU_PROBE_PARAMS`` parameters is then probed on the CPU, a larger one on the
    meta device (whose Python kernels import torch._dynamo and sympy: 1.2 s of a default
    run's start-up, against microseconds for the default model on the CPU)."""
    m = config.model
    resolve_target(m._target_, key="model._target_", kind="model")  # imported here, outside the meta device
    where = f"model._target_={m._target_!r} with input_dim={config.input_dim}, model.width={m.width}, model.depth={m.depth}"
    with torch.device("meta"):
        model = _built_model(config, where)
    n_params = sum(p.numel() for p in model.parameters())
    on_cpu = n_params <= CPU_PROBE_PARAMS
    if on_cpu:
        with torch.random.fork_rng(devices=[]):  # the probe's initial weights leave no trace on the seeded RNG
            model = _built_model(config, where)
    with torch.device("cpu" if on_cpu else "meta"):
        try:
            y = model(torch.zeros(PROBE_POINTS, config.input_dim))
        except Exception as e:
            if not isinstance(e, NotImplementedError) or on_cpu:
                raise ConfigError(f"{where} fails on {PROBE_POINTS} inputs ({type(e).__name__}: {' '.join(str(e).split())}).") from None
            y = None  # an operation the meta device lacks: the run itself will tell
    if y is not None and (not isinstance(y, torch.Tensor) or tuple(y.shape) != (PROBE_POINTS,)):
        raise ConfigError(f"{where} returns {type(y).__name__} of shape {tuple(getattr(y, 'shape', ()))} for {PROBE_POINTS} "
                          "inputs: a model maps (n, input_dim) to (n,) (not (n, 1), which would broadcast in the loss).")
    return n_params


def _built_model(config: Config, where: str) -> Any:
    try:
        return build_model(config.model, config.input_dim)
    except Exception as e:
        raise ConfigError(f"{where} could not be built ({type(e).__name__}: {' '.join(str(e).split())}): it is called "
                          "with input_dim, width, depth, activation and bias, like neuroscope.model.MLP.") from None


def probe_pde(config: Config, pde: Any) -> None:
    """The PDE's exact solution, residual and boundary residual on a few points, each of shape (n,)."""
    lo, hi = (float(v) for v in config.data.train_range)
    gen = torch.Generator().manual_seed(0)
    x = pde.collocation_points(lo, hi, PROBE_POINTS, gen, torch.float64)
    xb = pde.boundary_points(lo, hi, config.loss.n_boundary, gen, torch.float64)

    def field(z: torch.Tensor) -> torch.Tensor:  # a smooth stand-in for the network
        return torch.sin(z).sum(dim=1)

    where = f"loss={config.loss.name} ({config.loss.pde._target_})"
    for name, call, n in [("solution", lambda: pde.solution(x), len(x)), ("residual", lambda: pde.residual(field, x), len(x)),
                          ("boundary residual", lambda: pde.boundary_residual(field, xb), len(xb))]:
        try:
            y = call()
        except Exception as e:
            raise ConfigError(f"{where}: its {name} raised {type(e).__name__} ({' '.join(str(e).split())}) on {n} points.") from None
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != (n,):
            raise ConfigError(f"{where}: its {name} returned shape {tuple(getattr(y, 'shape', ()))} for {n} points; it must "
                              "return one value per point, shape (n,) (not (n, 1), which would broadcast in the loss).")


# ------------------------------------------------------------------------------------- memory


def memory_estimate(config: Config, n_params: int) -> dict[str, float]:
    """Bytes the run holds at its peak, by part (rough upper estimates, not a measurement)."""
    item = 8 if config.device.dtype is DType.float64 else 4
    c, d = config.curvature, config.data
    span = (d.test_range[1] - d.test_range[0]) / (d.train_range[1] - d.train_range[0])
    points = d.n_train + d.n_test * span**config.input_dim + d.n_plot
    if config.loss.pde is not None:
        points += config.loss.n_collocation + config.loss.n_boundary
    grad_passes = 6 if config.loss.pde is not None else 3  # forward, backward, double backward for HVPs
    parts = {
        "parameters": 4.0 * n_params * item,  # weights, gradient, update, checkpoint copy
        "activations": float(points) * config.model.width * max(config.model.depth, 1) * item * grad_passes * 2,
        "history": config.steps * (16.0 + c.k) * 32 + config.viz.frames * float(d.n_plot) * 16,
    }
    if c.every and c.method is CurvatureMethod.exact:
        parts["dense Hessian"] = 4.0 * n_params**2 * 8
    elif c.every:
        parts["eigenvector basis"] = (c.max_iter + 2.0) * n_params * 8
    return parts


def available_memory(device: torch.device) -> Optional[float]:
    """Bytes free on ``device``: free GPU memory on CUDA, available RAM on the CPU (None if unknown)."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return float(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        try:
            return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None


def check_memory(config: Config, n_params: int, device: torch.device) -> None:
    """Refuse a run whose estimated peak memory exceeds what ``device`` has free."""
    parts = memory_estimate(config, n_params)
    total, free = sum(parts.values()), available_memory(device)
    if free is None or total <= free:
        return
    biggest = max(parts, key=parts.get)
    detail = ", ".join(f"{k} {_bytes(v)}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if v >= 0.01 * total)
    advice = {
        "dense Hessian": "use curvature.method=lanczos (matrix-free) or a smaller model",
        "history": "use fewer steps or viz.frames",
    }.get(biggest, "use a smaller model.width / model.depth or fewer points (data.n_*, loss.n_*)")
    raise ConfigError(
        f"This run needs about {_bytes(total)} of memory ({detail}; model.width={config.model.width}, "
        f"model.depth={config.model.depth}: {n_params:,} parameters), but {'the GPU' if device.type == 'cuda' else 'this machine'} "
        f"has {_bytes(free)} available: {advice}."
    )


def _bytes(n: float) -> str:
    units = ["B", "KB", "MB", "GB", "TB", "PB"]
    i = min(int(math.log(max(n, 1), 1000)), len(units) - 1)
    return f"{n / 1000**i:.3g} {units[i]}"
