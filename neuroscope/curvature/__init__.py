"""The curvature of the training objective, measured matrix-free: operators on the flat parameter
vector (the Hessian in ``operators``, the Gauss-Newton matrix in ``ggn``), eigen-solvers over them
(``solvers``), the trace and spectral density (``spectrum``), and what the trainer calls: the
sharpness tracker (``tracker``) and the survey of terms, trace and density (``survey``).

Conventions
-----------
* Flat vector = ``torch.cat([p.reshape(-1) for p in params])``, parameters in a fixed order.
* Eigenvalues come largest ALGEBRAIC first: a large negative eigenvalue is never sharpness.
  (Power iteration is the exception by nature: it finds the largest-magnitude eigenvalue.)
* An ensemble (``members``): E models with every parameter stacked along a leading member
  dimension; member vectors are the rows of an (E, P) matrix, row e flat over ``p[e]``. The
  summed loss has a block-diagonal Hessian: one product serves every member. A single model is
  the ensemble of one: one solver code path.
* Solvers keep their Krylov vectors and do every reduction in float64, whatever the dtype of
  the network; the Hessian-vector products themselves run in the parameters' dtype.
"""

from .base import EigenResult, MemberOperator, Operator, flatten, unflatten
from .ggn import GaussNewtonOperator
from .operators import (
    HVP_VARIANTS, HessianOperator, HvpCosts, MatrixOperator, exact_hessian, gradient, measure_hvp_costs,
)
from .members import MemberBlock, MemberLayout, MemberRows, as_members, member_hessians
from .solvers import SOLVERS, Krylov, Solver, batched_krylov, batched_lanczos, dense_eigenpairs, krylov, lanczos, power_iteration
from .spectrum import SpectralDensity, TraceEstimate, hutchinson_trace, spectral_density, symexp, symlog
from .survey import BOTTOM_COLUMNS, CurvatureSurvey, DensityGrid, bottom_columns
from .tracker import COLD_MIN_ITER, SharpnessTracker

__all__ = [
    "BOTTOM_COLUMNS", "COLD_MIN_ITER", "CurvatureSurvey", "DensityGrid", "EigenResult", "GaussNewtonOperator",
    "HVP_VARIANTS", "HessianOperator", "HvpCosts", "Krylov", "MatrixOperator", "MemberBlock", "MemberLayout",
    "MemberOperator", "MemberRows", "Operator", "SOLVERS", "SharpnessTracker", "Solver", "SpectralDensity",
    "TraceEstimate", "as_members", "batched_krylov", "batched_lanczos", "bottom_columns", "dense_eigenpairs",
    "exact_hessian", "flatten", "gradient", "hutchinson_trace", "krylov", "lanczos", "measure_hvp_costs", "member_hessians",
    "power_iteration", "spectral_density", "symexp", "symlog", "unflatten",
]
