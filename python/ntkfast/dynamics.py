"""Training dynamics in function space: kernel gradient descent and its closed form for MSE.

For a cost C with functional derivative d|_f (Jacot et al. 2018, SPEC §1), kernel gradient
descent with a fixed kernel K moves the outputs on the N training inputs X by

    ∂_t f(x) = −(1/N) Σ_i K(x, x_i) d|_{f_t}(x_i).

For C(f) = ½‖f − y‖²_{p_in} (d|_f = f − y) and Θ̃ = K(X, X) this has the closed form

    f_t(X) = y + exp(−t Θ̃/N) (f_0(X) − y)
    f_t(x) = f_0(x) − K(x, X) Θ̃⁻¹ (I − exp(−t Θ̃/N)) (f_0(X) − y).

Kernels here are one (N, N) matrix shared by all outputs (the NTK of an n_L-output network
is Θ ⊗ Id); outputs are arrays of shape (N,) or (N, k).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.integrate import solve_ivp
from scipy.special import log_softmax, softmax

from ._linalg import eigh, solve_spd
from ._validation import as_finite_array

__all__ = [
    "MSE",
    "CrossEntropy",
    "KernelFlow",
    "MSEFlow",
    "gaussian_limit",
    "kernel_flow",
    "mse_flow",
    "quantiles",
]

# Eigenvalues below −EIG_TOL · λ_max mean the kernel is not positive semi-definite beyond
# rounding; those within are rounding and are set to 0 silently.
EIG_TOL = 1e-10

#: Largest |f| and |∂_t f| at t = 0 that kernel_flow integrates: beyond it the ODE solver's
#: error norms (squares of f / atol) overflow and the integration fails.
FLOW_LIMIT = 1e100


def _square_kernel(k: ArrayLike, name: str) -> NDArray[np.float64]:
    k = as_finite_array(k, name, (2,))
    if k.shape[0] != k.shape[1] or k.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty square (N, N) matrix, got shape {k.shape}")
    return 0.5 * (k + k.T)


def _targets(y: ArrayLike, n: int, name: str) -> NDArray[np.float64]:
    y = as_finite_array(y, name, (1, 2))
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} rows but the kernel is {n} × {n}")
    return y


def _cross(k: ArrayLike, n: int, name: str) -> NDArray[np.float64]:
    k = as_finite_array(k, name, (2,))
    if k.shape[1] != n:
        raise ValueError(
            f"{name} must have shape (M, {n}) to match the training kernel, got {k.shape}"
        )
    return k


def _times(t: ArrayLike, *, increasing: bool) -> tuple[np.ndarray, bool]:
    """Times as a 1-D float array (and whether a scalar was given); t ≥ 0, ∞ allowed."""
    arr = np.asarray(t)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"t must be a real number or array of times, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    scalar = arr.ndim == 0
    arr = np.atleast_1d(arr)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"t must be a number or a non-empty 1-D array, got shape {arr.shape}")
    if np.isnan(arr).any() or (arr < 0).any():
        raise ValueError("times must be ≥ 0 (and not NaN)")
    if increasing:
        if not np.isfinite(arr).all():
            raise ValueError("kernel_flow needs finite times; use mse_flow for t = ∞")
        if (np.diff(arr) <= 0).any():
            raise ValueError("times must be strictly increasing")
    return arr, scalar


def _eigh_psd(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition with eigenvalues clipped at 0 (warning if clearly negative)."""
    lam, v = eigh(k)
    scale = max(abs(lam).max(), np.finfo(float).tiny)
    if lam.min() < -EIG_TOL * scale:
        warnings.warn(
            f"the kernel is not positive semi-definite (smallest eigenvalue {lam.min():.3e}, "
            f"largest {lam.max():.3e}); negative eigenvalues are set to 0",
            RuntimeWarning,
            stacklevel=3,
        )
    return np.clip(lam, 0.0, None), v


class MSEFlow:
    """Closed-form gradient flow of ½‖f − y‖²_{p_in} under a fixed kernel.

    Built by :func:`mse_flow`; factorises K(X, X) = V Λ Vᵀ once (symmetric eigendecomposition,
    eigenvalues below 0 clipped), so each call costs two (N, N) × (N, k) products per time.
    """

    def __init__(
        self, k_train_train: ArrayLike, y_train: ArrayLike, k_test_train: ArrayLike | None = None
    ) -> None:
        self.k = _square_kernel(k_train_train, "k_train_train")
        self.n = self.k.shape[0]
        self.y = _targets(y_train, self.n, "y_train")
        self.k_test = None if k_test_train is None else _cross(k_test_train, self.n, "k_test_train")
        self.lam, self.v = _eigh_psd(self.k)

    def __call__(
        self, t: ArrayLike, f0_train: ArrayLike, f0_test: ArrayLike | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """f_t on the training inputs (and the test inputs given at construction).

        Parameters
        ----------
        t : float or 1-D array
            Times ≥ 0; ``np.inf`` gives the limit (the kernel interpolant).
        f0_train : array (N,) or (N, k)
            Outputs at t = 0 on the training inputs, shaped like ``y_train``.
        f0_test : array (M,) or (M, k), optional
            Outputs at t = 0 on the test inputs; needs ``k_test_train``.

        Returns
        -------
        (f_train_t, f_test_t): arrays with a leading time axis when t is an array; f_test_t is
        None without test inputs.
        """
        times, scalar = _times(t, increasing=False)
        f0 = _targets(f0_train, self.n, "f0_train")
        if f0.shape != self.y.shape:
            raise ValueError(
                f"f0_train must have the shape of y_train {self.y.shape}, got {f0.shape}"
            )
        if f0_test is not None:
            if self.k_test is None:
                raise ValueError("f0_test needs k_test_train when the flow is built")
            f0_test = as_finite_array(f0_test, "f0_test", (1, 2))
            if f0_test.shape != (self.k_test.shape[0], *self.y.shape[1:]):
                raise ValueError(
                    f"f0_test must have shape {(self.k_test.shape[0], *self.y.shape[1:])}, "
                    f"got {f0_test.shape}"
                )
        r = (f0 - self.y).reshape(self.n, -1)
        coeff = self.v.T @ r  # residual in the eigenbasis
        train, test = [], []
        for time in times:
            if time == 0:  # exactly the initial outputs, not y + V Vᵀ (f0 − y)
                train.append(f0.reshape(self.n, -1))
                if f0_test is not None:
                    test.append(f0_test.reshape(len(f0_test), -1))
                continue
            if np.isinf(time):
                # Components along zero eigenvalues do not move.
                keep = (self.lam <= EIG_TOL * max(self.lam.max(), np.finfo(float).tiny))[:, None]
                train.append(self.y.reshape(self.n, -1) + self.v @ (coeff * keep))
                if f0_test is not None:
                    test.append(f0_test.reshape(len(f0_test), -1) - self.k_test @ self._solve(r))
                continue
            decay = np.exp(-time * self.lam / self.n)[:, None]
            train.append(self.y.reshape(self.n, -1) + self.v @ (decay * coeff))
            if f0_test is not None:
                # (1 − e^{−tλ/N}) / λ, finite (→ t/N) as λ → 0.
                with np.errstate(divide="ignore", invalid="ignore"):
                    gain = -np.expm1(-time * self.lam / self.n) / self.lam
                gain = np.where(self.lam > 0, gain, time / self.n)[:, None]
                test.append(
                    f0_test.reshape(len(f0_test), -1) - self.k_test @ (self.v @ (gain * coeff))
                )
        shape = self.y.shape
        train_arr = np.stack([a.reshape(shape) for a in train])
        test_arr = None
        if f0_test is not None:
            test_arr = np.stack([a.reshape(f0_test.shape) for a in test])
        if scalar:
            return train_arr[0], None if test_arr is None else test_arr[0]
        return train_arr, test_arr

    def _solve(self, r: np.ndarray) -> np.ndarray:
        """Θ̃⁻¹ r by a Cholesky solve, or the least-squares (minimum-norm) solution from the
        eigendecomposition when Θ̃ is singular to rounding (λ_min ≤ N ε λ_max)."""
        cutoff = self.n * np.finfo(float).eps * max(float(self.lam[-1]), np.finfo(float).tiny)
        if self.lam[0] > cutoff:
            try:
                return solve_spd(self.k, r)
            except ValueError:
                pass
        warnings.warn(
            "the training kernel is singular: t = ∞ uses the least-squares solution",
            RuntimeWarning,
            stacklevel=4,
        )
        inverse = np.where(self.lam > cutoff, 1.0 / np.where(self.lam > cutoff, self.lam, 1.0), 0)
        least_squares: np.ndarray = self.v @ (inverse[:, None] * (self.v.T @ r))
        return least_squares


def mse_flow(
    k_train_train: ArrayLike, y_train: ArrayLike, k_test_train: ArrayLike | None = None
) -> MSEFlow:
    """The closed-form flow of ½‖f − y‖²_{p_in} under the kernel K (see the module docstring).

    Parameters
    ----------
    k_train_train : array (N, N)
        K(X, X), symmetric positive semi-definite (slightly negative eigenvalues from rounding
        are clipped; clearly negative ones are clipped with a RuntimeWarning).
    y_train : array (N,) or (N, k)
        Targets.
    k_test_train : array (M, N), optional
        K(x, X) for test inputs.

    Returns
    -------
    MSEFlow, called as ``flow(t, f0_train, f0_test=None) -> (f_train_t, f_test_t)``.
    """
    return MSEFlow(k_train_train, y_train, k_test_train)


class _Cost(Protocol):
    """What :func:`kernel_flow` and :func:`ntkfast.train` need of a cost."""

    def value(self, f: np.ndarray) -> float: ...

    def derivative(self, f: np.ndarray) -> ArrayLike: ...


@dataclass
class MSE:
    """C(f) = ½‖f − y‖²_{p_in} = (1/2N) Σ_i |f(x_i) − y_i|², d|_f(x_i) = f(x_i) − y_i."""

    y: NDArray[np.float64]

    def __post_init__(self) -> None:
        self.y = as_finite_array(self.y, "y", (1, 2))

    def value(self, f: NDArray[np.float64]) -> float:
        diff = (f - self.y).reshape(len(self.y), -1)
        return 0.5 * float(np.mean(np.sum(diff**2, axis=1)))

    def derivative(self, f: NDArray[np.float64]) -> NDArray[np.float64]:
        return f - self.y


@dataclass
class CrossEntropy:
    """Softmax cross-entropy: C(f) = −(1/N) Σ_i log softmax(f(x_i))[c_i], for logits f (N, k)
    and integer labels c_i in [0, k); d|_f(x_i) = softmax(f(x_i)) − onehot(c_i)."""

    labels: np.ndarray

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or labels.dtype.kind not in "iu":
            raise ValueError("labels must be a 1-D array of integers")
        if labels.size and labels.min() < 0:
            raise ValueError(f"labels must be ≥ 0, got {labels.min()}")
        self.labels = labels

    def _check(self, f: np.ndarray) -> None:
        if f.ndim != 2 or f.shape[0] != len(self.labels):
            raise ValueError(f"logits must have shape ({len(self.labels)}, k), got {f.shape}")
        if self.labels.max(initial=-1) >= f.shape[1]:
            raise ValueError(
                f"labels must be < the number of classes {f.shape[1]}, got {self.labels.max()}"
            )

    def value(self, f: np.ndarray) -> float:
        self._check(f)
        return -float(np.mean(log_softmax(f, axis=1)[np.arange(len(f)), self.labels]))

    def derivative(self, f: np.ndarray) -> np.ndarray:
        self._check(f)
        d: np.ndarray = softmax(f, axis=1)
        d[np.arange(len(f)), self.labels] -= 1.0
        return d


@dataclass
class KernelFlow:
    """Result of :func:`kernel_flow`: times (T,), f_train (T, N, …), f_test (T, M, …) or None,
    cost (T,), and the solver's report."""

    t: np.ndarray
    f_train: np.ndarray
    f_test: np.ndarray | None
    cost: np.ndarray
    nfev: int
    message: str


def kernel_flow(
    k_train_train: ArrayLike,
    cost: _Cost,
    f0_train: ArrayLike,
    t: ArrayLike,
    k_test_train: ArrayLike | None = None,
    f0_test: ArrayLike | None = None,
    *,
    method: str = "DOP853",
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> KernelFlow:
    """Kernel gradient descent ∂_t f = −(1/N) K d|_f for any cost, integrated by solve_ivp.

    Parameters
    ----------
    k_train_train : array (N, N)
    cost : object with ``value(f) -> float`` and ``derivative(f) -> array like f``
        e.g. :class:`MSE` or :class:`CrossEntropy`.
    f0_train : array (N,) or (N, k)
        Outputs at t = 0.
    t : 1-D array
        Strictly increasing times ≥ 0 at which to report (the integration starts at 0).
    k_test_train, f0_test : arrays (M, N) and (M,) / (M, k), optional
        Test outputs follow ∂_t f(x) = −(1/N) Σ_i K(x, x_i) d(x_i).
    method, rtol, atol
        Passed to ``scipy.integrate.solve_ivp`` (use "Radau" or "LSODA" when t·λ_max/N is large).

    Outputs or rates of change above :data:`FLOW_LIMIT` (1e100) at t = 0 are a ValueError (the
    solver's error norms would overflow); a solver that fails otherwise is a RuntimeError.
    """
    k = _square_kernel(k_train_train, "k_train_train")
    n = k.shape[0]
    f0 = _targets(f0_train, n, "f0_train")
    times, _ = _times(t, increasing=True)
    if not (callable(getattr(cost, "value", None)) and callable(getattr(cost, "derivative", None))):
        raise TypeError("cost must have value(f) and derivative(f) methods")
    k_test = None
    if f0_test is not None or k_test_train is not None:
        if f0_test is None or k_test_train is None:
            raise ValueError("test outputs need both k_test_train and f0_test")
        k_test = _cross(k_test_train, n, "k_test_train")
        f0_test = as_finite_array(f0_test, "f0_test", (1, 2))
        if f0_test.shape != (k_test.shape[0], *f0.shape[1:]):
            raise ValueError(f"f0_test must have shape {(k_test.shape[0], *f0.shape[1:])}")
    if isinstance(cost, MSE) and cost.y.shape != f0.shape:
        raise ValueError(
            f"the cost's targets have shape {cost.y.shape} but f0_train has shape {f0.shape}"
        )
    shape, size = f0.shape, f0.size

    def rhs(_: float, state: np.ndarray) -> np.ndarray:
        d = np.asarray(cost.derivative(state[:size].reshape(shape)), dtype=np.float64)
        if d.shape != shape:
            raise ValueError(f"cost.derivative returned shape {d.shape}, expected {shape}")
        d = d.reshape(n, -1)
        parts = [(-(k @ d) / n).ravel()]
        if k_test is not None:
            parts.append((-(k_test @ d) / n).ravel())
        return np.concatenate(parts)

    state0 = f0.ravel() if f0_test is None else np.concatenate([f0.ravel(), f0_test.ravel()])
    with np.errstate(over="ignore", invalid="ignore"):
        rate0 = rhs(0.0, state0)
    largest = max(np.abs(state0).max(), np.abs(rate0).max())
    if not largest <= FLOW_LIMIT:
        raise ValueError(
            f"the outputs or their rate of change at t = 0 reach {largest:.3g} (limit "
            f"{FLOW_LIMIT:g}): scale the kernel, the outputs or the targets down"
        )
    if times[-1] == 0:  # only t = 0: nothing to integrate
        states = state0[None, :]
        message = "t = 0 only"
        nfev = 1
    else:
        sol = solve_ivp(
            rhs, (0.0, float(times[-1])), state0, method=method, t_eval=times, rtol=rtol, atol=atol
        )
        if not sol.success:
            raise RuntimeError(f"the ODE solver failed: {sol.message}")
        states, message, nfev = sol.y.T, str(sol.message), int(sol.nfev)
    f_train = states[:, :size].reshape(len(times), *shape)
    f_test = None if f0_test is None else states[:, size:].reshape(len(times), *f0_test.shape)
    costs = np.array([cost.value(f) for f in f_train])
    return KernelFlow(times, f_train, f_test, costs, nfev, message)


def gaussian_limit(
    ntk_train_train: ArrayLike,
    nngp_train_train: ArrayLike,
    y_train: ArrayLike,
    ntk_test_train: ArrayLike,
    nngp_test_train: ArrayLike,
    nngp_test_test: ArrayLike,
    t: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """The infinite-width network trained for time t on MSE, from random initialisation.

    With f_0 ~ GP(0, Σ) (the NNGP kernel) and A = Θ(x, X) Θ̃⁻¹ (I − e^{−tΘ̃/N}), f_t(x) is
    Gaussian (Lee et al. 2019, "NTK-GP") with

        mean  A y,
        cov   Σ(x, x') − A Σ(X, x') − Σ(x, X) Aᵀ + A Σ(X, X) Aᵀ.

    Parameters
    ----------
    ntk_train_train, nngp_train_train : (N, N)
    y_train : (N,) or (N, k)
    ntk_test_train, nngp_test_train : (M, N)
    nngp_test_test : (M, M)
    t : float, ≥ 0 (∞ by default)

    Returns
    -------
    mean (M,) or (M, k), and the covariance (M, M) shared by every output.
    """
    theta = _square_kernel(ntk_train_train, "ntk_train_train")
    n = theta.shape[0]
    sigma = _square_kernel(nngp_train_train, "nngp_train_train")
    if sigma.shape != theta.shape:
        raise ValueError("nngp_train_train must have the shape of ntk_train_train")
    y = _targets(y_train, n, "y_train")
    theta_x = _cross(ntk_test_train, n, "ntk_test_train")
    sigma_x = _cross(nngp_test_train, n, "nngp_test_train")
    sigma_xx = _square_kernel(nngp_test_test, "nngp_test_test")
    m = theta_x.shape[0]
    if sigma_x.shape[0] != m or sigma_xx.shape[0] != m:
        raise ValueError("the test kernels must all have M rows")
    times, _ = _times(t, increasing=False)
    if times.size != 1:
        raise ValueError(f"t must be a single time, got {times.size} times")
    time = times[0]
    lam, v = _eigh_psd(theta)
    if np.isinf(time):
        # A = Θ(x, X) Θ̃⁻¹, by a solve: Aᵀ = Θ̃⁻¹ Θ(X, x).
        a = solve_spd(theta, theta_x.T).T
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = -np.expm1(-time * lam / n) / lam
        gain = np.where(lam > 0, gain, time / n)
        a = ((theta_x @ v) * gain) @ v.T
    mean = (a @ y.reshape(n, -1)).reshape(m, *y.shape[1:])
    cross = a @ sigma_x.T
    cov = sigma_xx - cross - cross.T + a @ sigma @ a.T
    return mean, 0.5 * (cov + cov.T)


def quantiles(mean: ArrayLike, cov: ArrayLike, q: Iterable[float] = (0.1, 0.5, 0.9)) -> np.ndarray:
    """Pointwise quantiles of a Gaussian process: mean + z_q √diag(cov).

    Returns an array of shape (len(q), *mean.shape); the paper's Figure 2 uses 10/50/90 %.
    mean (M,) or (M, k) and cov (M, M) must be finite real arrays, q a non-empty sequence of
    probabilities strictly between 0 and 1 (ValueError otherwise; TypeError for non-real
    input). Negative variances on the diagonal (rounding) count as 0.
    """
    from scipy.stats import norm

    mean = as_finite_array(mean, "mean", (1, 2))
    if mean.shape[0] == 0:
        raise ValueError("mean must be non-empty")
    cov = as_finite_array(cov, "cov", (2,))
    if cov.shape != (mean.shape[0], mean.shape[0]):
        raise ValueError(
            f"cov must have shape {(mean.shape[0], mean.shape[0])} to match mean, got {cov.shape}"
        )
    try:
        probs = np.asarray(q if isinstance(q, np.ndarray) else list(q))
    except TypeError:
        raise TypeError(f"q must be a sequence of probabilities, got {type(q).__name__}") from None
    if probs.dtype.kind not in "biuf":
        raise TypeError(f"q must be real probabilities, got dtype {probs.dtype}")
    if probs.ndim != 1 or probs.size == 0:
        raise ValueError(f"q must be a non-empty 1-D sequence, got shape {probs.shape}")
    if not ((probs > 0) & (probs < 1)).all():
        raise ValueError(f"q must lie strictly between 0 and 1, got {probs.tolist()}")
    std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    std = std.reshape(len(std), *([1] * (mean.ndim - 1)))
    return np.stack([mean + norm.ppf(p) * std for p in probs.astype(np.float64)])
