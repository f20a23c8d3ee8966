"""Typed configuration: dataclass schemas for the primary config and every config group,
registered in Hydra's ConfigStore so a typo'd key or a wrong type fails at compose time.

The YAML files in ``conf/`` (installed as the package ``neuroscope.conf``) fill these in.
Each schema checks what types alone cannot express (lr > 0, ranges, ...) in ``__post_init__``,
so every typed object, whether ``to_config`` or Python code made it, is a usable one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf



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


def _open_params() -> Any:
    """A free-form ``params`` dict that takes new keys without ``+`` (Hydra closes every other
    dict): its keys are the target's keyword arguments, checked against the target's signature
    when it is built (``neuroscope.params.check_keywords``)."""
    return OmegaConf.create({}, flags={"struct": False})


@dataclass
class FunctionConfig:
    """Target function: ``_target_`` is a dotted path to ``f(x, **params) -> y`` with x of
    shape (n, input_dim) and y of shape (n,), both torch tensors."""

    _target_: str = MISSING  # dotted path of the function f(x, **params) -> y
    name: str = "custom"  # shown in titles and summaries
    input_dims: List[int] = field(default_factory=lambda: [1, 2])  # the input_dim values it supports
    params: Dict[str, Any] = field(default_factory=_open_params)  # keyword arguments of the function


@dataclass
class PDEConfig:
    """A PDE residual operator: ``_target_`` is a class (or factory) in ``neuroscope.pde``
    or a user module, called with ``params``."""

    _target_: str = MISSING  # dotted path of the PDE class, e.g. neuroscope.pde.Poisson1D or neuroscope.pde.CustomPDE
    params: Dict[str, Any] = field(default_factory=_open_params)  # arguments of the PDE class (boundary: dirichlet, neumann, periodic or none)


@dataclass
class LossConfig:
    """The objective being descended: weighted data term + L2 + optional PDE terms."""

    name: str = "mse"  # shown in titles and summaries
    data_term: DataTerm = DataTerm.mse  # mse: mean((f(x) - y)^2); l1: mean(|f(x) - y|)
    data_weight: float = 1.0  # weight of the data term, >= 0 (0: pure physics)
    l2_weight: float = 0.0  # adds l2_weight * sum(theta^2)
    pde: Optional[PDEConfig] = None  # a PDE residual term; set by the PDE loss options (poisson1d, ...)
    pde_weight: float = 1.0  # weight of mean(r^2), the PDE residual at the collocation points, >= 0
    bc_weight: float = 1.0  # weight of mean(b^2), the boundary and initial conditions, >= 0
    n_collocation: int = 256  # PDE collocation points inside the training box
    n_boundary: int = 64  # PDE boundary points, split between the faces

    def __post_init__(self) -> None:
        for key in ("data_weight", "l2_weight", "pde_weight", "bc_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"loss.{key}={getattr(self, key)} is not allowed: loss weights must be >= 0.")
        for key in ("n_collocation", "n_boundary"):
            if self.pde is not None and getattr(self, key) < 1:
                raise ConfigError(
                    f"loss.{key}={getattr(self, key)} is not allowed with the PDE loss loss={self.name}: "
                    "it needs at least one point of each kind (n_collocation >= 1, n_boundary >= 1)."
                )


@dataclass
class ModelConfig:
    """The network; ``_target_`` builds it from (input_dim, width, depth, activation, bias)."""

    _target_: str = "neuroscope.model.MLP"  # what builds the network from (input_dim, width, depth, activation, bias)
    name: str = "mlp"  # shown in titles and summaries
    width: int = 16  # neurons per hidden layer, >= 1
    depth: int = 2  # hidden layers, >= 0
    activation: Activation = Activation.tanh  # the nonlinearity of the hidden layers
    bias: bool = True  # bias terms in every layer

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 0:
            raise ConfigError(
                f"model.width={self.width}, model.depth={self.depth} are not allowed: width >= 1 and depth (hidden layers) >= 0."
            )


@dataclass
class DeviceConfig:
    type: DeviceType = DeviceType.auto  # auto: CUDA when available, else CPU
    dtype: DType = DType.float32  # floating-point precision of the model and data
    threads: int = 0  # torch CPU threads; 0 = auto (1 for small problems, else torch's default)

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ConfigError(f"device.threads={self.threads} is not allowed: use a count >= 1, or 0 for torch's default.")


MAX_COORDINATE = 1e6  # the largest |lo|, |hi| of data.train_range and data.test_range
MAX_SEED = 2**63 - 1  # torch's generators take a signed 64-bit seed


@dataclass
class DataConfig:
    n_train: int = 64  # training points, >= 1 (a square grid in 2D with sampling=grid)
    train_range: List[float] = field(default_factory=lambda: [-math.pi, math.pi])  # training box [lo, hi] in every input dimension
    test_range: List[float] = field(default_factory=lambda: [-2 * math.pi, 2 * math.pi])  # test box [lo, hi], contains train_range; outside it: generalization
    noise: float = 0.0  # std of Gaussian noise added to training targets
    sampling: Sampling = Sampling.grid  # grid: evenly spaced; uniform: at random (training and PDE points)
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
            if not all(abs(v) <= MAX_COORDINATE for v in r):  # also refuses inf and nan
                raise ConfigError(
                    f"data.{key}={r} is not allowed: both ends must be finite numbers of at most {MAX_COORDINATE:g} "
                    "in absolute value (inputs that large overflow the network's float arithmetic)."
                )
        (tlo, thi), (glo, ghi) = self.train_range, self.test_range
        if not (glo <= tlo and thi <= ghi):
            raise ConfigError(
                f"data.test_range={list(self.test_range)} does not contain data.train_range={list(self.train_range)}: "
                "the test box must contain the training box (its part outside it measures generalization)."
            )


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

    def __post_init__(self) -> None:
        if self.every < 0 or self.probes < 1 or self.steps < 2 or self.points < 2:
            raise ConfigError(
                f"curvature.density: every={self.every}, probes={self.probes}, steps={self.steps}, points={self.points} "
                "are not allowed: every >= 1 steps or 0 for off, probes >= 1, Lanczos steps >= 2, grid points >= 2."
            )
        if not (self.sigma > 0 and self.linthresh > 0 and self.lambda_max > self.linthresh):
            raise ConfigError(
                f"curvature.density: sigma={self.sigma}, linthresh={self.linthresh}, lambda_max={self.lambda_max} are not "
                "allowed: sigma > 0 (decades on the symmetric-log axis), linthresh > 0 and lambda_max > linthresh."
            )


@dataclass
class CurvatureConfig:
    every: int = 10  # measure every N steps; 0 = off
    method: CurvatureMethod = CurvatureMethod.lanczos  # lanczos: warm-started; power: cold power iteration; exact: dense Hessian (small nets)
    k: int = 1  # top-k eigenpairs
    tol: float = 1e-4  # stop when ||Hv - lambda v|| <= tol * |lambda|
    max_iter: int = 30  # most Lanczos/power iterations per measurement, >= 1
    hvp: HvpVariant = HvpVariant.auto  # Hessian-vector products: reuse the gradient graph, recompute it, func (torch.func), or auto (times reuse and func, keeps the faster)
    lambda_min: bool = False  # also the smallest eigenvalue, from the same Lanczos run
    terms: bool = False  # the top eigenvalue of each loss term's Hessian: sharpness_<term>
    ggn: bool = False  # the top eigenvalue of the Gauss-Newton matrix: sharpness_ggn
    trace_probes: int = 0  # Hutchinson's trace with this many probes (trace, trace_se); 0 = off
    trace_every: int = 0  # its schedule; 0 = with the sharpness (curvature.every)
    density: DensityConfig = field(default_factory=DensityConfig)  # the spectral density over training (stochastic Lanczos quadrature)

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ConfigError(f"curvature.every={self.every} is not allowed: measure every N >= 1 steps, or 0 for off.")
        if self.k < 1:
            raise ConfigError(f"curvature.k={self.k} is not allowed: track at least the top eigenpair (k >= 1).")
        if not self.tol > 0:
            raise ConfigError(f"curvature.tol={self.tol} is not allowed: the residual tolerance must be > 0 (default 1e-4).")
        if self.max_iter < 1:
            raise ConfigError(f"curvature.max_iter={self.max_iter} is not allowed: at least one iteration (default 30).")
        if self.method is not CurvatureMethod.exact and self.k > self.max_iter:
            raise ConfigError(
                f"curvature.k={self.k} is larger than curvature.max_iter={self.max_iter}: {self.method.value} finds at most "
                f"max_iter eigenpairs. Set curvature.max_iter >= {self.k} or a smaller k."
            )
        self._check_spectrum()

    def _check_spectrum(self) -> None:
        """The whole-spectrum settings: each needs what it is measured with."""
        for key in ("lambda_min", "terms", "ggn"):
            if getattr(self, key) and self.every < 1:
                raise ConfigError(f"curvature.{key}=true is measured with the sharpness, which is off (curvature.every=0): "
                                  "set curvature.every to N >= 1 steps, or leave it false.")
        if self.lambda_min and CurvatureMethod(self.method) is CurvatureMethod.power:
            raise ConfigError("curvature.lambda_min=true needs curvature.method=lanczos or exact: power iteration finds "
                              "only the eigenvalue of largest magnitude.")
        if self.trace_probes < 0 or self.trace_probes == 1 or self.trace_every < 0:
            raise ConfigError(
                f"curvature.trace_probes={self.trace_probes}, curvature.trace_every={self.trace_every}: use trace_probes "
                ">= 2 (a standard error needs two probes) or 0 for off, and trace_every >= 1 steps or 0 for curvature.every."
            )
        if self.trace_probes and not (self.trace_every or self.every):
            raise ConfigError(f"curvature.trace_probes={self.trace_probes} has no schedule: curvature.every=0 and "
                              "curvature.trace_every=0; set curvature.trace_every to N >= 1 steps.")


@dataclass
class VizConfig:
    format: VideoFormat = VideoFormat.mp4  # the animation's format (GIF when MP4 cannot be written); none: dashboard.png only
    frames: int = 100  # evenly spaced frames over the run
    fps: int = 20  # animation frames per second, >= 1
    dpi: int = 100  # dots per inch, >= 10
    size: List[float] = field(default_factory=lambda: [12.0, 9.0])  # inches
    live: bool = False  # show the dashboard in a window while training (needs a display)

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

    _target_: str = "neuroscope.optimizers.GradientDescent"  # the update rule class (an UpdateRule)
    name: str = "gd"  # gd, heavy_ball or nesterov: shown in summaries
    momentum: float = 0.0  # β, the momentum in [0, 1) (0 for gd)

    def __post_init__(self) -> None:
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"optimizer.momentum={self.momentum} is not allowed: the momentum β must be in [0, 1) (e.g. 0.9).")


@dataclass
class ReferenceConfig:
    """A reference run beside GD (neuroscope.flow): ``_target_`` null for none; ``flow``
    integrates gradient flow with an adaptive Runge-Kutta method under rtol/atol."""

    _target_: Optional[str] = None  # the reference class (neuroscope.flow.GradientFlow), or null for none
    name: str = "none"  # none or flow: shown in summaries
    rtol: float = 1e-6  # the flow integrator's relative tolerance per step
    atol: float = 1e-9  # its absolute tolerance
    max_substeps: int = 10000  # Runge-Kutta steps per GD step before the flow is given up

    def __post_init__(self) -> None:
        if not (self.rtol > 0 and self.atol >= 0):
            raise ConfigError(f"reference.rtol={self.rtol}, reference.atol={self.atol}: rtol must be > 0 and atol >= 0 (e.g. rtol=1e-6).")
        if self.max_substeps < 1:
            raise ConfigError(f"reference.max_substeps={self.max_substeps} is not allowed: at least one step per GD step.")


@dataclass
class Config:
    function: FunctionConfig = MISSING  # the target (for a PDE loss: its exact solution)
    loss: LossConfig = MISSING  # the objective
    model: ModelConfig = MISSING  # the network
    device: DeviceConfig = MISSING  # where and in what precision it trains
    name: str = "${function.name}-${loss.name}"  # shown in titles and summaries
    input_dim: int = 1  # 1 or 2 inputs; the function must support it
    lr: float = 0.1  # learning rate of plain gradient descent, finite and > 0
    steps: int = 1500  # gradient steps, >= 1
    seed: int = 0  # seed of the data sampling and the initial weights
    diverge_above: float = 1e10  # a loss above this (or non-finite) ends the run as diverged
    progress: bool = True  # tqdm progress bar
    data: DataConfig = field(default_factory=DataConfig)  # the point sets
    curvature: CurvatureConfig = field(default_factory=CurvatureConfig)  # the sharpness measurements
    viz: VizConfig = field(default_factory=VizConfig)  # the dashboard and animation
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)  # resumable checkpoints
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)  # the update rule: gd (default), heavy_ball, nesterov
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)  # a reference run beside GD: none (default) or flow (gradient flow)
    resume: Optional[str] = None  # a run directory to continue (only steps, viz.*, progress, checkpoint.*, device.threads, diverge_above may change)

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
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed={self.seed} is not allowed: use an integer from 0 to 2**63 - 1 ({MAX_SEED}).")
        if not self.diverge_above > 0:  # also refuses nan
            raise ConfigError(
                f"diverge_above={self.diverge_above} is not allowed: a run diverges when its loss exceeds this, "
                "so it must be > 0 (default 1e10; inf: only a non-finite loss counts)."
            )
        if self.loss.pde is not None and self.curvature.hvp is HvpVariant.func:
            raise ConfigError(
                f"curvature.hvp=func cannot measure the sharpness of the PDE loss loss={self.loss.name}: torch.func "
                "cannot trace a loss that differentiates the network by its inputs. Use curvature.hvp=auto, reuse or recompute."
            )
        dims = list(self.function.input_dims)
        if self.input_dim not in dims:
            raise ConfigError(
                f"function={self.function.name} does not support input_dim={self.input_dim}: it supports "
                f"input_dim in {dims}. Pick another function or set input_dim={dims[0]}."
            )
        from .params import check_shared

        check_shared(self.function, self.loss)  # one source for what a PDE and its exact solution share
        if self.curvature.ggn and DataTerm(self.loss.data_term) is DataTerm.l1 and self.loss.data_weight > 0:
            raise ConfigError(
                "curvature.ggn=true needs every loss term to be a sum of squares, but loss.data_term=l1 is not (its "
                "Gauss-Newton matrix is zero almost everywhere): use loss.data_term=mse or curvature.ggn=false."
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
