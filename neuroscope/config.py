"""Typed configuration: dataclass schemas for the primary config and every config group,
registered in Hydra's ConfigStore so a typo'd key or a wrong type fails at compose time.

The YAML files in ``conf/`` (installed as the package ``neuroscope.conf``) fill these in;
``validate`` adds the checks that types alone cannot express (lr > 0, ranges, ...).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class UserError(Exception):
    """An error a person can fix; its message is one paragraph (the CLI prints it, exit 2)."""


class ConfigError(UserError, ValueError):
    """A configuration a run cannot use."""


class OutputError(UserError):
    """The run directory cannot take the run's files (not writable, disk full)."""


class Activation(Enum):
    tanh = "tanh"
    relu = "relu"
    gelu = "gelu"
    silu = "silu"
    softplus = "softplus"
    sigmoid = "sigmoid"
    elu = "elu"


class DataTerm(Enum):
    mse = "mse"  # mean((f(x) - y)^2)
    l1 = "l1"  # mean(|f(x) - y|)


class DeviceType(Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DType(Enum):
    float32 = "float32"
    float64 = "float64"


class CurvatureMethod(Enum):
    lanczos = "lanczos"  # warm-started Lanczos, the default tracker
    power = "power"  # cold power iteration (PyHessian's algorithm), kept as a reference
    exact = "exact"  # dense Hessian, small nets only


class HvpVariant(Enum):
    auto = "auto"
    reuse = "reuse"
    recompute = "recompute"
    func = "func"


class VideoFormat(Enum):
    mp4 = "mp4"
    gif = "gif"
    none = "none"


class Sampling(Enum):
    grid = "grid"  # evenly spaced (a square grid in 2D)
    uniform = "uniform"  # uniform random in the training box


@dataclass
class FunctionConfig:
    """Target function: ``_target_`` is a dotted path to ``f(x, **params) -> y`` with x of
    shape (n, input_dim) and y of shape (n,), both torch tensors."""

    _target_: str = MISSING
    name: str = "custom"
    input_dims: List[int] = field(default_factory=lambda: [1, 2])
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PDEConfig:
    """A PDE residual operator: ``_target_`` is a class (or factory) in ``neuroscope.pde``
    or a user module, called with ``params``."""

    _target_: str = MISSING
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class LossConfig:
    """The objective being descended: weighted data term + L2 + optional PDE terms."""

    name: str = "mse"
    data_term: DataTerm = DataTerm.mse
    data_weight: float = 1.0
    l2_weight: float = 0.0  # adds l2_weight * sum(theta^2)
    pde: Optional[PDEConfig] = None
    pde_weight: float = 1.0
    bc_weight: float = 1.0
    n_collocation: int = 256
    n_boundary: int = 64


@dataclass
class ModelConfig:
    """The network; ``_target_`` builds it from (input_dim, width, depth, activation, bias)."""

    _target_: str = "neuroscope.model.MLP"
    name: str = "mlp"
    width: int = 16
    depth: int = 2  # hidden layers
    activation: Activation = Activation.tanh
    bias: bool = True


@dataclass
class DeviceConfig:
    type: DeviceType = DeviceType.auto
    dtype: DType = DType.float32
    threads: int = 0  # torch CPU threads; 0 = auto (1 for small problems, else torch's default)


@dataclass
class DataConfig:
    n_train: int = 64
    train_range: List[float] = field(default_factory=lambda: [-math.pi, math.pi])
    test_range: List[float] = field(default_factory=lambda: [-2 * math.pi, 2 * math.pi])
    noise: float = 0.0  # std of Gaussian noise added to training targets
    sampling: Sampling = Sampling.grid
    n_test: int = 256  # in-box test points per run (a square grid in 2D)
    n_plot: int = 400  # plot-grid points (a square grid in 2D)


@dataclass
class DensityConfig:
    """The spectral density by stochastic Lanczos quadrature, into spectrum.npz / spectrum.png."""

    every: int = 0  # every N steps; 0 = off
    probes: int = 4  # random probes per density
    steps: int = 40  # Lanczos steps per probe
    sigma: float = 0.1  # Gaussian broadening on the symmetric-log axis, in decades
    points: int = 361  # grid points on that axis
    linthresh: float = 1e-3  # |eigenvalues| below this are on the axis' linear part
    lambda_max: float = 1e6  # the grid spans [-lambda_max, lambda_max]


@dataclass
class CurvatureConfig:
    every: int = 10  # measure every N steps; 0 = off
    method: CurvatureMethod = CurvatureMethod.lanczos
    k: int = 1  # top-k eigenpairs
    tol: float = 1e-4  # stop when ||Hv - lambda v|| <= tol * |lambda|
    max_iter: int = 30
    hvp: HvpVariant = HvpVariant.auto
    lambda_min: bool = False  # also the smallest eigenvalue, from the same Lanczos run
    terms: bool = False  # the top eigenvalue of each loss term's Hessian: sharpness_<term>
    ggn: bool = False  # the top eigenvalue of the Gauss-Newton matrix: sharpness_ggn
    trace_probes: int = 0  # Hutchinson's trace with this many probes (trace, trace_se); 0 = off
    trace_every: int = 0  # its schedule; 0 = with the sharpness (curvature.every)
    density: DensityConfig = field(default_factory=DensityConfig)


@dataclass
class VizConfig:
    format: VideoFormat = VideoFormat.mp4
    frames: int = 100  # evenly spaced frames over the run
    fps: int = 20
    dpi: int = 100
    size: List[float] = field(default_factory=lambda: [12.0, 9.0])  # inches
    live: bool = False


@dataclass
class CheckpointConfig:
    every: int = 0  # save a resumable checkpoint every N steps; 0 = off


@dataclass
class Config:
    function: FunctionConfig = MISSING
    loss: LossConfig = MISSING
    model: ModelConfig = MISSING
    device: DeviceConfig = MISSING
    name: str = "${function.name}-${loss.name}"  # shown in titles and summaries
    input_dim: int = 1
    lr: float = 0.1
    steps: int = 1500
    seed: int = 0
    diverge_above: float = 1e10  # a loss above this (or non-finite) ends the run as diverged
    progress: bool = True  # tqdm progress bar
    data: DataConfig = field(default_factory=DataConfig)
    curvature: CurvatureConfig = field(default_factory=CurvatureConfig)
    viz: VizConfig = field(default_factory=VizConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    resume: Optional[str] = None  # a run directory to continue


def register_configs() -> None:
    """Register the schemas: the primary one, and one per group, ``<group>_schema``, that the
    group's YAML options extend (stored outside any group, so ``--help`` lists only real options)."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
    for group, node in [
        ("function", FunctionConfig),
        ("loss", LossConfig),
        ("model", ModelConfig),
        ("device", DeviceConfig),
    ]:
        cs.store(name=f"{group}_schema", node=node, package=group)


register_configs()


def resolve_target(path: str, *, key: str) -> Any:
    """Import the object a ``_target_`` names ("package.module.attr"), or fail with one
    paragraph naming the key."""
    import importlib

    parts = path.split(".")
    error: Exception | None = None
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError as e:
            error = e
            continue
        except Exception as e:  # the module exists but fails to import
            error = e
            break
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
            return obj
        except AttributeError as e:
            error = e
            break
    reason = f"{type(error).__name__}: {error}" if error else "not a dotted path"
    raise ConfigError(
        f"{key}={path!r} cannot be imported ({reason}). Give the dotted path of an importable callable, "
        "e.g. neuroscope.functions.sin or mypackage.mymodule.myfunc, with its module on PYTHONPATH."
    )


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
        guess = difflib.get_close_matches(leaf, allowed, n=1)
        hint = f" Did you mean {(parent + '.') if parent else ''}{guess[0]}?" if guess else ""
        where = f"'{parent}'" if parent else "the top level"
        return f"{full_key} is not a setting: {where} has {', '.join(allowed)}.{hint}"
    text = " ".join(str(cause).split("full_key:")[0].split())
    head = " ".join(str(error).split()) if cause is not error else ""
    return f"{head}: {text}" if head and text not in head else (text or head)


def _field_type(node: Any, name: str) -> Any:
    if not dataclasses.is_dataclass(node):
        return None
    for f in dataclasses.fields(node):
        if f.name == name:
            t = typing.get_type_hints(node).get(name)
            args = [a for a in typing.get_args(t) if a is not type(None)]
            return args[0] if args else t
    return None


def _fail(message: str) -> None:
    raise ConfigError(message)


def _validate_spectrum(cfg: Any) -> None:
    """The whole-spectrum settings under ``curvature``: each needs what it is measured with."""
    c, d = cfg.curvature, cfg.curvature.density
    for key in ("lambda_min", "terms", "ggn"):
        if getattr(c, key) and c.every < 1:
            _fail(f"curvature.{key}=true is measured with the sharpness, which is off (curvature.every=0): "
                  "set curvature.every to N >= 1 steps, or leave it false.")
    if c.lambda_min and CurvatureMethod(c.method) is CurvatureMethod.power:
        _fail("curvature.lambda_min=true needs curvature.method=lanczos or exact: power iteration finds only the "
              "eigenvalue of largest magnitude.")
    if c.ggn and DataTerm(cfg.loss.data_term) is DataTerm.l1 and cfg.loss.data_weight > 0:
        _fail("curvature.ggn=true needs every loss term to be a sum of squares, but loss.data_term=l1 is not "
              "(its Gauss-Newton matrix is zero almost everywhere): use loss.data_term=mse or curvature.ggn=false.")
    if c.trace_probes < 0 or c.trace_probes == 1 or c.trace_every < 0:
        _fail(f"curvature.trace_probes={c.trace_probes}, curvature.trace_every={c.trace_every}: use trace_probes >= 2 "
              "(a standard error needs two probes) or 0 for off, and trace_every >= 1 steps or 0 for curvature.every.")
    if c.trace_probes and not (c.trace_every or c.every):
        _fail(f"curvature.trace_probes={c.trace_probes} has no schedule: curvature.every=0 and curvature.trace_every=0; "
              "set curvature.trace_every to N >= 1 steps.")
    if d.every < 0 or d.probes < 1 or d.steps < 2 or d.points < 2:
        _fail(f"curvature.density: every={d.every}, probes={d.probes}, steps={d.steps}, points={d.points} are not "
              "allowed: every >= 1 steps or 0 for off, probes >= 1, Lanczos steps >= 2, grid points >= 2.")
    if not (d.sigma > 0 and d.linthresh > 0 and d.lambda_max > d.linthresh):
        _fail(f"curvature.density: sigma={d.sigma}, linthresh={d.linthresh}, lambda_max={d.lambda_max} are not "
              "allowed: sigma > 0 (decades on the symmetric-log axis), linthresh > 0 and lambda_max > linthresh.")


def validate(cfg: Any) -> None:
    """Checks beyond types; each failure is one paragraph naming the value and what is allowed."""
    if not cfg.lr > 0 or not math.isfinite(cfg.lr):
        _fail(f"lr={cfg.lr} is not allowed: the learning rate must be a finite number > 0 (e.g. lr=0.05).")
    if cfg.steps < 1:
        _fail(f"steps={cfg.steps} is not allowed: a run needs at least one gradient step (steps >= 1).")
    if cfg.input_dim not in (1, 2):
        _fail(f"input_dim={cfg.input_dim} is not allowed: NeuroScope trains on 1D or 2D inputs (input_dim=1 or 2).")
    dims = list(cfg.function.input_dims)
    if cfg.input_dim not in dims:
        _fail(
            f"function={cfg.function.name} does not support input_dim={cfg.input_dim}: it supports "
            f"input_dim in {dims}. Pick another function or set input_dim={dims[0]}."
        )
    d = cfg.data
    if d.n_train < 1:
        _fail(f"data.n_train={d.n_train} is not allowed: at least one training point is needed (n_train >= 1).")
    for key in ("n_test", "n_plot"):
        if getattr(d, key) < 2:
            _fail(f"data.{key}={getattr(d, key)} is not allowed: use at least 2 points.")
    if d.noise < 0:
        _fail(f"data.noise={d.noise} is not allowed: the noise standard deviation must be >= 0.")
    for key in ("train_range", "test_range"):
        r = list(getattr(d, key))
        if len(r) != 2 or not r[0] < r[1]:
            _fail(f"data.{key}={r} is not allowed: give [lo, hi] with lo < hi; it applies to every input dimension.")
    (tlo, thi), (glo, ghi) = d.train_range, d.test_range
    if not (glo <= tlo and thi <= ghi):
        _fail(
            f"data.test_range={list(d.test_range)} does not contain data.train_range={list(d.train_range)}: "
            "the test box must contain the training box (its part outside it measures generalization)."
        )
    m = cfg.model
    if m.width < 1 or m.depth < 0:
        _fail(f"model.width={m.width}, model.depth={m.depth} are not allowed: width >= 1 and depth (hidden layers) >= 0.")
    c = cfg.curvature
    if c.every < 0:
        _fail(f"curvature.every={c.every} is not allowed: measure every N >= 1 steps, or 0 for off.")
    if c.k < 1:
        _fail(f"curvature.k={c.k} is not allowed: track at least the top eigenpair (k >= 1).")
    if not c.tol > 0:
        _fail(f"curvature.tol={c.tol} is not allowed: the residual tolerance must be > 0 (default 1e-4).")
    if c.max_iter < 1:
        _fail(f"curvature.max_iter={c.max_iter} is not allowed: at least one iteration (default 30).")
    _validate_spectrum(cfg)
    v = cfg.viz
    if v.frames < 1 or v.fps < 1 or v.dpi < 10:
        _fail(f"viz.frames={v.frames}, viz.fps={v.fps}, viz.dpi={v.dpi}: frames and fps must be >= 1 and dpi >= 10.")
    if len(v.size) != 2 or min(v.size) <= 0:
        _fail(f"viz.size={list(v.size)} is not allowed: give [width, height] in inches, both > 0.")
    lc = cfg.loss
    for key in ("data_weight", "l2_weight", "pde_weight", "bc_weight"):
        if getattr(lc, key) < 0:
            _fail(f"loss.{key}={getattr(lc, key)} is not allowed: loss weights must be >= 0.")
    if cfg.checkpoint.every < 0:
        _fail(f"checkpoint.every={cfg.checkpoint.every} is not allowed: use N >= 1 steps, or 0 for off.")
    if cfg.device.threads < 0:
        _fail(f"device.threads={cfg.device.threads} is not allowed: use a count >= 1, or 0 for torch's default.")
