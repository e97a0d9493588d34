"""Infinite-width NTK and NNGP kernels as scikit-learn kernels.

:class:`NTK` (Θ∞⁽ᴸ⁾) and :class:`NNGP` (Σ⁽ᴸ⁾) follow scikit-learn's ``Kernel`` contract, so they
work wherever its kernels do: ``GaussianProcessRegressor``, ``GaussianProcessClassifier``,
sums and products with ``ConstantKernel`` or ``WhiteKernel``, and as a callable kernel of
``SVC`` or ``KernelRidge``. The bias scale β is a hyperparameter (optimised on a log scale
unless its bounds are ``"fixed"``); depth and activation are fixed parameters.

>>> import numpy as np
>>> from sklearn.gaussian_process import GaussianProcessRegressor
>>> from ntkfast.sklearn import NTK
>>> x = np.random.default_rng(0).standard_normal((20, 3))
>>> y = np.sin(x[:, 0])
>>> gp = GaussianProcessRegressor(kernel=NTK(depth=3, beta=0.1, beta_bounds="fixed"))
>>> gp.fit(x, y).predict(x[:2]).shape
(2,)
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from . import activations as _activations
from ._optional import missing_extra
from .kernels import limit_kernel, limit_kernel_diagonal

try:
    from sklearn.gaussian_process.kernels import Hyperparameter, Kernel
except ImportError as _err:
    raise missing_extra("ntkfast.sklearn", "sklearn", {"sklearn": _err}) from _err

__all__ = ["NNGP", "NTK"]

#: Relative step in β of the central difference that gives ∂K/∂log β.
GRADIENT_STEP = 1e-4


def _rows(x: ArrayLike) -> np.ndarray:
    """np.atleast_2d, as scikit-learn's kernels do, leaving anything that is not array-like
    (sparse matrices) for ntkfast's validation to reject with a clear message."""
    return x if hasattr(x, "toarray") else np.atleast_2d(x)  # type: ignore[return-value]


# scikit-learn has no type information, so its Kernel base class is Any to mypy.
class _LimitKernel(Kernel):  # type: ignore[misc]
    """Shared code of :class:`NTK` and :class:`NNGP`; ``_kind`` names the kernel."""

    _kind = ""

    def __init__(
        self,
        depth: int = 4,
        activation: str | _activations.Activation = "relu",
        beta: float = 0.1,
        beta_bounds: tuple[float, float] | Literal["fixed"] = (1e-5, 1e5),
    ) -> None:
        # Checked here, as scikit-learn users expect of kernels; stored unchanged so that
        # clone() and get_params() round-trip.
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
            raise ValueError(f"depth must be an integer ≥ 1, got {depth!r}")
        _activations.get(activation)
        if (
            isinstance(beta, (bool, np.bool_))
            or not isinstance(beta, (int, float, np.integer, np.floating))
            or not math.isfinite(beta)
            or beta < 0
        ):
            raise ValueError(f"beta must be a finite number ≥ 0, got {beta!r}")
        if isinstance(beta_bounds, str):
            if beta_bounds != "fixed":
                raise ValueError(f'beta_bounds must be a pair or "fixed", got {beta_bounds!r}')
        else:
            try:
                lo, hi = np.asarray(beta_bounds, dtype=float).ravel()
            except (TypeError, ValueError):
                raise ValueError(
                    f'beta_bounds must be a pair (low, high) or "fixed", got {beta_bounds!r}'
                ) from None
            if not (0 < lo < hi < np.inf):
                raise ValueError(f"beta_bounds must satisfy 0 < low < high, got {beta_bounds!r}")
            if beta == 0:
                raise ValueError(
                    'beta = 0 can only be used with beta_bounds="fixed" (β is optimised on a '
                    "log scale)"
                )
        self.depth = depth
        self.activation = activation
        self.beta = beta
        self.beta_bounds = beta_bounds

    @property
    def hyperparameter_beta(self) -> Hyperparameter:
        return Hyperparameter("beta", "numeric", self.beta_bounds)

    def _kernel(
        self, x: np.ndarray, y: np.ndarray | None = None, beta: float | None = None
    ) -> np.ndarray:
        return limit_kernel(
            x,
            y,
            depth=self.depth,
            activation=self.activation,
            beta=self.beta if beta is None else beta,
            get=self._kind,
        )

    def __call__(
        self, X: ArrayLike, Y: ArrayLike | None = None, eval_gradient: bool = False
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """K(X, Y) of shape (n_X, n_Y) (Y None: K(X, X)).

        With ``eval_gradient``, also ∂K/∂log β of shape (n_X, n_X, 1) (or (n_X, n_X, 0) when
        β is fixed), by a central difference with relative step 1e-4 in β (about 1e-8
        relative error).
        """
        X = _rows(X)
        if eval_gradient and Y is not None:
            raise ValueError("Gradient can only be evaluated when Y is None.")
        K = self._kernel(X, None if Y is None else _rows(Y))
        if not eval_gradient:
            return K
        if self.hyperparameter_beta.fixed:
            return K, np.empty((X.shape[0], X.shape[0], 0))
        step = GRADIENT_STEP
        # In float64 whatever the inputs' dtype: a float32 difference quotient would lose
        # four digits (its rounding, ~1e-7, divided by the step).
        X64 = np.asarray(X, dtype=np.float64)
        up = self._kernel(X64, beta=self.beta * math.exp(step))
        down = self._kernel(X64, beta=self.beta * math.exp(-step))
        gradient = ((up - down) / (2 * step)).astype(K.dtype, copy=False)
        return K, gradient[:, :, np.newaxis]

    def diag(self, X: ArrayLike) -> np.ndarray:
        """K(x, x) for every row, shape (n_X,), in O(n_X (n0 + depth))."""
        return limit_kernel_diagonal(
            _rows(X),
            depth=self.depth,
            activation=self.activation,
            beta=self.beta,
            get=self._kind,
        )

    def is_stationary(self) -> bool:
        """False: the kernels depend on the inputs' norms, not only on x − x'."""
        return False

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(depth={self.depth!r}, activation={self.activation!r}, "
            f"beta={self.beta:.3g})"
        )


class NTK(_LimitKernel):
    """The infinite-width neural tangent kernel Θ∞⁽ᴸ⁾ as a scikit-learn kernel.

    Parameters
    ----------
    depth : int
        L ≥ 1, the number of dense layers.
    activation : str or ntkfast.activations.Activation
        As for :func:`ntkfast.limit_kernel` (a fixed parameter).
    beta : float
        Bias scale β ≥ 0 (the hyperparameter ``beta``; > 0 unless its bounds are "fixed").
    beta_bounds : pair of floats or "fixed"
        Bounds for optimising β, on a log scale.

    The kernel of ``GaussianProcessRegressor(kernel=NTK(...), alpha=a)`` predicts the mean of
    an infinitely wide network trained to convergence on the squared loss when a → 0 (the
    closed form of :func:`ntkfast.dynamics.mse_flow` at t = ∞ with f₀ = 0).
    """

    _kind = "ntk"


class NNGP(_LimitKernel):
    """The infinite-width NNGP kernel Σ⁽ᴸ⁾ (the network's output covariance at
    initialisation) as a scikit-learn kernel; parameters as for :class:`NTK`."""

    _kind = "nngp"
