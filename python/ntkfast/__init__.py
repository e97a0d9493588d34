"""ntkfast: Neural Tangent Kernels of fully-connected networks, fast on multicore CPUs.

>>> import numpy as np, ntkfast as nk
>>> x = np.random.default_rng(0).standard_normal((4, 3))
>>> k = nk.limit_kernel(x, depth=4, activation="relu", beta=0.1)
>>> k.ntk.shape
(4, 4)
"""

from typing import TYPE_CHECKING, Any

from . import activations, dynamics
from ._threads import _init_from_env, get_num_threads, set_num_threads
from .kernel_operator import KernelOperator
from .kernels import Kernel, limit_kernel, limit_kernel_diagonal
from .network import MLP
from .training import DivergenceError, TrainResult, train

if TYPE_CHECKING:
    from .regression import KernelRegressor

__version__ = "0.1.0"

__all__ = [
    "DivergenceError",
    "Kernel",
    "KernelOperator",
    "KernelRegressor",
    "MLP",
    "TrainResult",
    "activations",
    "dynamics",
    "get_num_threads",
    "limit_kernel",
    "limit_kernel_diagonal",
    "set_num_threads",
    "train",
]

_init_from_env()
del _init_from_env


def __getattr__(name: str) -> Any:
    # KernelRegressor builds on scikit-learn's base classes when scikit-learn is installed:
    # imported on first use, so that `import ntkfast` imports no optional package.
    if name == "KernelRegressor":
        from .regression import KernelRegressor

        return KernelRegressor
    raise AttributeError(f"module 'ntkfast' has no attribute {name!r}")
