"""Sharpness, the top eigenvalues of the Hessian of the training objective, measured matrix-free:
operators on the flat parameter vector (``operators``), eigen-solvers over them (``solvers``) and
the tracker the trainer calls (``tracker``).

Conventions
-----------
* Flat vector = ``torch.cat([p.reshape(-1) for p in params])``, parameters in a fixed order.
* Eigenvalues come largest ALGEBRAIC first: a large negative eigenvalue is never sharpness.
  (Power iteration is the exception by nature: it finds the largest-magnitude eigenvalue.)
* Solvers keep their Krylov vectors and do every reduction in float64, whatever the dtype of
  the network; the Hessian-vector products themselves run in the parameters' dtype.
"""

from .base import EigenResult, Operator, flatten, unflatten
from .operators import HVP_VARIANTS, HessianOperator, HvpCosts, exact_hessian, gradient, measure_hvp_costs
from .solvers import SOLVERS, Solver, dense_eigenpairs, lanczos, power_iteration
from .tracker import COLD_MIN_ITER, SharpnessTracker

__all__ = [
    "COLD_MIN_ITER", "EigenResult", "HVP_VARIANTS", "HessianOperator", "HvpCosts", "Operator", "SOLVERS",
    "SharpnessTracker", "Solver", "dense_eigenpairs", "exact_hessian", "flatten", "gradient", "lanczos",
    "measure_hvp_costs", "power_iteration", "unflatten",
]
