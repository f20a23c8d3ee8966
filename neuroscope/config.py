"""Typed configuration: dataclass schemas for the primary config and every config group,
registered in Hydra's ConfigStore so a typo'd key or a wrong type fails at compose time.

The YAML files in ``conf/`` (installed as the package ``neuroscope.conf``) fill these in.
Each schema checks what types alone cannot express (lr > 0, ranges, ...) in ``__post_init__``,
so every typed object, whether ``to_config`` or Python code made it, is a usable one.
"""
from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import typing
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


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

    def __post_init__(self) -> None:
        for key in ("data_weight", "l2_weight", "pde_weight", "bc_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"loss.{key}={getattr(self, key)} is not allowed: loss weights must be >= 0.")


@dataclass
class ModelConfig:
    """The network; ``_target_`` builds it from (input_dim, width, depth, activation, bias)."""

    _target_: str = "neuroscope.model.MLP"
    name: str = "mlp"
    width: int = 16
    depth: int = 2  # hidden layers
    activation: Activation = Activation.tanh
    bias: bool = True

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 0:
            raise ConfigError(
                f"model.width={self.width}, model.depth={self.depth} are not allowed: width >= 1 and depth (hidden layers) >= 0."
            )


@dataclass
class DeviceConfig:
    type: DeviceType = DeviceType.auto
    dtype: DType = DType.float32
    threads: int = 0  # torch CPU threads; 0 = auto (1 for small problems, else torch's default)

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ConfigError(f"device.threads={self.threads} is not allowed: use a count >= 1, or 0 for torch's default.")


@dataclass
class DataConfig:
    n_train: int = 64
    train_range: List[float] = field(default_factory=lambda: [-math.pi, math.pi])
    test_range: List[float] = field(default_factory=lambda: [-2 * math.pi, 2 * math.pi])
    noise: float = 0.0  # std of Gaussian noise added to training targets
    sampling: Sampling = Sampling.grid
    n_test: int = 256  # in-box test points per run (a square grid in 2D)
    n_plot: int = 400  # plot-grid points (a square grid in 2D)

    def __post_init__(self) -> None:
        if self.n_train < 1:
            raise ConfigError(f"data.n_train={self.n_train} is not allowed: at least one training point is needed (n_train >= 1).")
        for key in ("n_test", "n_plot"):
            if getattr(self, key) < 2:
                raise ConfigError(f"data.{key}={getattr(self, key)} is not allowed: use at least 2 points.")
        if self.noise < 0:
            raise ConfigError(f"data.noise={self.noise} is not allowed: the noise standard deviation must be >= 0.")
        for key in ("train_range", "test_range"):
            r = list(getattr(self, key))
            if len(r) != 2 or not r[0] < r[1]:
                raise ConfigError(f"data.{key}={r} is not allowed: give [lo, hi] with lo < hi; it applies to every input dimension.")
        (tlo, thi), (glo, ghi) = self.train_range, self.test_range
        if not (glo <= tlo and thi <= ghi):
            raise ConfigError(
                f"data.test_range={list(self.test_range)} does not contain data.train_range={list(self.train_range)}: "
                "the test box must contain the training box (its part outside it measures generalization)."
            )


@dataclass
class CurvatureConfig:
    every: int = 10  # measure every N steps; 0 = off
    method: CurvatureMethod = CurvatureMethod.lanczos
    k: int = 1  # top-k eigenpairs
    tol: float = 1e-4  # stop when ||Hv - lambda v|| <= tol * |lambda|
    max_iter: int = 30
    hvp: HvpVariant = HvpVariant.auto

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ConfigError(f"curvature.every={self.every} is not allowed: measure every N >= 1 steps, or 0 for off.")
        if self.k < 1:
            raise ConfigError(f"curvature.k={self.k} is not allowed: track at least the top eigenpair (k >= 1).")
        if not self.tol > 0:
            raise ConfigError(f"curvature.tol={self.tol} is not allowed: the residual tolerance must be > 0 (default 1e-4).")
        if self.max_iter < 1:
            raise ConfigError(f"curvature.max_iter={self.max_iter} is not allowed: at least one iteration (default 30).")


@dataclass
class VizConfig:
    format: VideoFormat = VideoFormat.mp4
    frames: int = 100  # evenly spaced frames over the run
    fps: int = 20
    dpi: int = 100
    size: List[float] = field(default_factory=lambda: [12.0, 9.0])  # inches
    live: bool = False

    def __post_init__(self) -> None:
        if self.frames < 1 or self.fps < 1 or self.dpi < 10:
            raise ConfigError(f"viz.frames={self.frames}, viz.fps={self.fps}, viz.dpi={self.dpi}: frames and fps must be >= 1 and dpi >= 10.")
        if len(self.size) != 2 or min(self.size) <= 0:
            raise ConfigError(f"viz.size={list(self.size)} is not allowed: give [width, height] in inches, both > 0.")
        if self.size[0] * self.dpi > 8000 or self.size[1] * self.dpi > 8000:
            raise ConfigError(f"viz.size={list(self.size)} at viz.dpi={self.dpi} is over 8000 pixels a side.")


@dataclass
class CheckpointConfig:
    every: int = 0  # save a resumable checkpoint every N steps; 0 = off

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ConfigError(f"checkpoint.every={self.every} is not allowed: use N >= 1 steps, or 0 for off.")


@dataclass
class OptimizerConfig:
    """The update rule (neuroscope.optimizers): ``_target_`` an UpdateRule class, built with ``momentum``."""

    _target_: str = "neuroscope.optimizers.GradientDescent"
    name: str = "gd"
    momentum: float = 0.0  # β

    def __post_init__(self) -> None:
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optimizer.momentum={self.momentum} is not allowed: the momentum β must be in [0, 1) (e.g. 0.9).")


@dataclass
class ReferenceConfig:
    """A reference run beside GD (neuroscope.flow): ``_target_`` null for none; ``flow``
    integrates gradient flow with an adaptive Runge-Kutta method under rtol/atol."""

    _target_: Optional[str] = None
    name: str = "none"
    rtol: float = 1e-6
    atol: float = 1e-9
    max_substeps: int = 10000  # Runge-Kutta steps per GD step before the flow is given up

    def __post_init__(self) -> None:
        if not (self.rtol > 0 and self.atol >= 0):
            raise ConfigError(f"reference.rtol={self.rtol}, reference.atol={self.atol}: rtol must be > 0 and atol >= 0 (e.g. rtol=1e-6).")
        if self.max_substeps < 1:
            raise ConfigError(f"reference.max_substeps={self.max_substeps} is not allowed: at least one step per GD step.")


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
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    resume: Optional[str] = None  # a run directory to continue

    def __post_init__(self) -> None:
        """The checks across groups; each group's own fields were checked when it was made."""
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"lr={self.lr} is not allowed: the learning rate must be a finite number > 0 (e.g. lr=0.05).")
        if self.steps < 1:
            raise ConfigError(f"steps={self.steps} is not allowed: a run needs at least one gradient step (steps >= 1).")
        if self.input_dim not in (1, 2):
            raise ConfigError(
                f"input_dim={self.input_dim} is not allowed: NeuroScope trains on 1D or 2D inputs (input_dim=1 or 2)."
            )
        dims = list(self.function.input_dims)
        if self.input_dim not in dims:
            raise ConfigError(
                f"function={self.function.name} does not support input_dim={self.input_dim}: it supports "
                f"input_dim in {dims}. Pick another function or set input_dim={dims[0]}."
            )


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
        ("optimizer", OptimizerConfig),
        ("reference", ReferenceConfig),
    ]:
        cs.store(name=f"{group}_schema", node=node, package=group)


register_configs()


def to_config(cfg: DictConfig | Config) -> Config:
    """The typed, checked config object of a composed config (a Config passes through: it was
    checked when it was made)."""
    if isinstance(cfg, Config):
        return cfg
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} must be given (the config leaves it as ???): set it on the command line, "
            f"e.g. {missing[0]}=mypackage.mymodule.myfunc for a _target_."
        )
    # to_object builds the groups' dataclasses, then Config, so every __post_init__ check runs;
    # OmegaConf wraps only a TypeError from a constructor, so a ConfigError arrives as it was raised.
    return OmegaConf.to_object(cfg)


def resolve_target(path: str, *, key: str) -> Any:
    """The object a ``_target_`` names ("package.module.attr"), or a ConfigError of one
    paragraph naming the key."""
    from hydra.utils import get_object

    hydra_log = logging.getLogger("hydra.utils")
    disabled, hydra_log.disabled = hydra_log.disabled, True  # it logs the failure on its own, in several lines
    try:
        return get_object(path)
    except Exception as e:
        reason = _import_failure(e)
    finally:
        hydra_log.disabled = disabled
    raise ConfigError(
        f"{key}={path!r} cannot be imported ({reason}). Give the dotted path of an importable callable, "
        "e.g. neuroscope.functions.sin or mypackage.mymodule.myfunc, with its module on PYTHONPATH."
    )


def _import_failure(error: BaseException) -> str:
    """The reason an import failed, in one line: the first missing attribute if that is what
    it came down to, else the innermost cause (get_object wraps both in an ImportError)."""
    chain: list[BaseException] = []  # from the last exception raised back to the first
    e: BaseException | None = error
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    root = next((c for c in reversed(chain) if isinstance(c, AttributeError)), chain[-1])
    return f"{type(root).__name__}: {' '.join(str(root).split())}"


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
