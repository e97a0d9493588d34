"""Kernel regression with Θ∞ or Σ at large N: the t = ∞ predictor and the MSE flow.

:class:`KernelRegressor` solves (K + ridge·I) α = y and predicts K(x, X) α, the mean of the
infinitely wide network trained to t = ∞ on the MSE cost; ``predict(x, t=times)`` gives the
mean at finite times, in the conventions of :func:`ntkfast.dynamics.mse_flow` (SPEC §1):

    f_t(x) = K(x, X) Θ̃⁻¹ (I − exp(−t Θ̃ / N)) y,    Θ̃ = K(X, X) + ridge·I

(f_0 = 0 on average over initialisations; the ridge is added to the training block as
neural-tangents' ``diag_reg`` does, so t → ∞ gives ``predict(x)``).

Solvers (``solver=``):

- ``"direct"``: the kernel in memory (float64) and a Cholesky factorisation in the Rust core
  (faer), O(N³) time and N² memory. Exact to rounding.
- ``"cg"``: conjugate gradients on the exact system with matrix-free products
  (:class:`ntkfast.KernelOperator`, the kernel never stored), preconditioned by a Nyström
  approximation on a uniform sample of M centres (Falkon's construction): O(N² (n0 + L)) per
  iteration, O(N·M) memory, tens of iterations on typical data.
- ``"auto"`` (default): ``"direct"`` while the N × N kernel takes at most a quarter of the
  available memory and N ≤ 20,000, else ``"cg"``.

``predict(x, t=times)`` uses the Lanczos process on Θ̃ (one product with the kernel per step,
the steps shared by all times) and stops when the approximation of every time has settled to
``tol``.
"""

from __future__ import annotations

import inspect
import math
import sys
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import activations as _activations
from ._linalg import solve_spd
from ._validation import (
    as_finite_array,
    as_finite_float,
    as_positive_int,
    as_samples,
    available_memory,
    check_memory,
)
from .kernel_operator import KernelOperator
from .kernels import limit_kernel

__all__ = ["ConvergenceWarning", "KernelRegressor", "NotFittedError"]

try:  # scikit-learn is optional: its base classes when present, the same protocol otherwise.
    from sklearn.base import BaseEstimator as _Base
    from sklearn.base import RegressorMixin as _Mixin
    from sklearn.exceptions import ConvergenceWarning as _SkConvergenceWarning
    from sklearn.exceptions import NotFittedError as _SkNotFittedError
except ImportError:  # pragma: no cover - exercised without the sklearn extra

    class _SkConvergenceWarning(UserWarning):  # type: ignore[no-redef]
        pass

    class _SkNotFittedError(ValueError, AttributeError):  # type: ignore[no-redef]
        pass

    class _Base:  # type: ignore[no-redef]
        """get_params/set_params as scikit-learn's BaseEstimator provides them."""

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            return {name: getattr(self, name) for name in self._param_names()}

        def set_params(self, **params: Any) -> _Base:
            for name, value in params.items():
                if name not in self._param_names():
                    raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}")
                setattr(self, name, value)
            return self

        @classmethod
        def _param_names(cls) -> list[str]:
            """The constructor's parameters, as scikit-learn reads them."""
            names = inspect.signature(cls.__init__).parameters
            return [name for name in names if name != "self"]

    class _Mixin:  # type: ignore[no-redef]
        """score as scikit-learn's RegressorMixin gives it: R² of the t = ∞ predictions."""

        def score(self, X: ArrayLike, y: ArrayLike) -> float:
            truth = np.asarray(y, dtype=np.float64)
            residual = ((truth - self.predict(X)) ** 2).sum()  # type: ignore[attr-defined]
            total = ((truth - truth.mean(axis=0)) ** 2).sum()
            return float(1.0 - residual / total)


class ConvergenceWarning(_SkConvergenceWarning):  # type: ignore[misc]
    """An iterative solve stopped at ``max_iter`` above its tolerance (scikit-learn's
    ConvergenceWarning when scikit-learn is installed)."""


class NotFittedError(_SkNotFittedError):  # type: ignore[misc]
    """predict before fit (scikit-learn's NotFittedError when scikit-learn is installed; a
    ValueError and an AttributeError either way)."""


def _inputs(x: ArrayLike, dtype: np.dtype) -> np.ndarray:
    """X as a C-contiguous (N, n0) array of ``dtype``, with scikit-learn's wording for the
    shapes its estimators refuse."""
    arr = np.asarray(x) if not hasattr(x, "toarray") else x
    shape: tuple[int, ...] = tuple(getattr(arr, "shape", ()))
    if len(shape) == 1:
        raise ValueError(
            f"X must be 2-D (samples, features), got shape {shape}: Reshape your data either "
            "using array.reshape(-1, 1) if it has a single feature or array.reshape(1, -1) if "
            "it contains a single sample"
        )
    if len(shape) == 2 and shape[1] == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is required."
        )
    return np.ascontiguousarray(as_samples(arr, "X"), dtype=dtype)


#: Largest N that "auto" solves directly (beyond, O(N³) takes minutes even when N² fits).
DIRECT_MAX = 20_000


class KernelRegressor(_Mixin, _Base):  # type: ignore[misc]
    """Kernel ridge regression with the infinite-width NTK (or NNGP) kernel, for large N.

    Parameters
    ----------
    depth : int
        L, as for :func:`ntkfast.limit_kernel`.
    activation, beta
        As for :func:`ntkfast.limit_kernel`.
    kernel : "ntk" or "nngp"
        Θ∞⁽ᴸ⁾ (the NTK: the trained network's mean) or Σ⁽ᴸ⁾ (the NNGP posterior mean).
    ridge : float ≥ 0
        Added to the kernel's diagonal: (K + ridge·I) α = y.
    dtype : "float64" or "float32"
        Precision of the kernel's tiles. float32 products take about half the time; the
        solve itself (CG recurrences, the Cholesky factor) runs in float64, and ``residual_``
        is measured with the float32 operator.
    solver : "auto", "direct" or "cg"
    tol : float
        Relative residual ‖y − (K + ridge·I) α‖ / ‖y‖ at which CG stops (per output column),
        and the relative change at which the Lanczos flow stops.
    max_iter : int or None
        Most CG iterations (default 10 N^{1/2} + 100) and Lanczos steps (default 500).
    preconditioner_size : int or None
        Nyström centres M of the CG preconditioner (default min(N, 1000)).
    random_state : int
        Seed of the centres' uniform sample.
    progress : bool or None
        Show iterations and residual while solving (tqdm when installed, else a line on
        stderr); None shows it for N ≥ 20,000 when stderr is a terminal.

    Attributes
    ----------
    dual_coef_ : array (N,) or (N, k)
        α, float64.
    n_iter_ : int
        CG iterations (1 for the direct solver: one factorisation).
    residual_ : float
        Final relative residual, the largest over output columns, recomputed with one more
        product at the end (not the recurrence's estimate).
    solver_ : str
        The solver used.
    X_fit_ : array (N, n0)
        The training inputs (in ``dtype``).

    >>> import numpy as np, ntkfast as nk
    >>> x = np.random.default_rng(0).standard_normal((300, 5))
    >>> y = np.sin(x[:, 0])
    >>> reg = nk.KernelRegressor(depth=3, ridge=1e-3, solver="cg", tol=1e-10).fit(x, y)
    >>> exact = nk.KernelRegressor(depth=3, ridge=1e-3, solver="direct").fit(x, y)
    >>> bool(np.allclose(reg.predict(x[:5]), exact.predict(x[:5]), rtol=1e-6, atol=1e-8))
    True
    """

    def __init__(
        self,
        depth: int = 4,
        activation: str | _activations.Activation = "relu",
        beta: float = 0.1,
        kernel: str = "ntk",
        ridge: float = 0.0,
        dtype: str = "float64",
        solver: str = "auto",
        tol: float = 1e-8,
        max_iter: int | None = None,
        preconditioner_size: int | None = None,
        random_state: int = 0,
        progress: bool | None = None,
    ) -> None:
        self.depth = depth
        self.activation = activation
        self.beta = beta
        self.kernel = kernel
        self.ridge = ridge
        self.dtype = dtype
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.preconditioner_size = preconditioner_size
        self.random_state = random_state
        self.progress = progress

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    # ----------------------------------------------------------------- settings

    def _settings(self) -> dict[str, Any]:
        """The validated parameters (checked at fit, as scikit-learn estimators do)."""
        depth = as_positive_int(self.depth, "depth")
        beta = as_finite_float(self.beta, "beta")
        act = _activations.get(self.activation)
        if self.kernel not in ("ntk", "nngp"):
            raise ValueError(f'kernel must be "ntk" or "nngp", got {self.kernel!r}')
        ridge = as_finite_float(self.ridge, "ridge")
        if ridge < 0:
            raise ValueError(f"ridge must be ≥ 0, got {ridge}")
        dtype = np.dtype(self.dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if self.solver not in ("auto", "direct", "cg"):
            raise ValueError(f'solver must be "auto", "direct" or "cg", got {self.solver!r}')
        tol = as_finite_float(self.tol, "tol")
        if not 0 < tol < 1:
            raise ValueError(f"tol must be in (0, 1), got {tol}")
        max_iter = None if self.max_iter is None else as_positive_int(self.max_iter, "max_iter")
        size = self.preconditioner_size
        size = None if size is None else as_positive_int(size, "preconditioner_size")
        seed = as_positive_int(self.random_state, "random_state", minimum=0)
        return dict(
            depth=depth,
            activation=act,
            beta=beta,
            ridge=ridge,
            dtype=dtype,
            tol=tol,
            max_iter=max_iter,
            size=size,
            seed=seed,
        )

    def _operator(self, x: np.ndarray, x2: np.ndarray | None, s: dict[str, Any]) -> KernelOperator:
        return KernelOperator(
            x,
            x2,
            depth=s["depth"],
            activation=s["activation"],
            beta=s["beta"],
            kernel=self.kernel,
            dtype=s["dtype"],
        )

    # ----------------------------------------------------------------- fit

    def fit(self, X: ArrayLike, y: ArrayLike) -> KernelRegressor:
        """Solves (K(X, X) + ridge·I) α = y. X (N, n0); y (N,) or (N, k). Returns self."""
        s = self._settings()
        if y is None:
            raise ValueError("KernelRegressor requires y to be passed, but the target y is None")
        x = _inputs(X, s["dtype"])
        n = x.shape[0]
        targets = as_finite_array(y, "y", (1, 2))
        if targets.shape[0] != n:
            raise ValueError(f"y must have {n} rows (one per sample of X), got {targets.shape}")
        y2 = np.ascontiguousarray(targets.reshape(n, -1))
        if y2.shape[1] == 0:
            raise ValueError("y must have at least one column")
        solver = self._choose_solver(n)
        if solver == "direct":
            alpha, iterations = self._fit_direct(x, y2, s), 1
        else:
            alpha, iterations = self._fit_cg(x, y2, s)
        op = self._operator(x, None, s)
        residual = _relative_residual(op.matmat(alpha) + s["ridge"] * alpha, y2)
        # Attributes only once everything succeeded: an interrupted fit leaves none.
        self.X_fit_ = x
        self._y_fit = y2
        self.dual_coef_ = alpha.reshape(targets.shape)
        self.n_iter_ = iterations
        self.residual_ = residual
        self.solver_ = solver
        self._y_shape = targets.shape[1:]
        self.n_features_in_ = x.shape[1]
        return self

    def _choose_solver(self, n: int) -> str:
        if self.solver != "auto":
            return str(self.solver)
        available = available_memory()
        fits = available is None or 8.0 * n * n <= available / 4
        return "direct" if n <= DIRECT_MAX and fits else "cg"

    def _fit_direct(self, x: np.ndarray, y: np.ndarray, s: dict[str, Any]) -> np.ndarray:
        """Dense kernel in float64 plus ridge, Cholesky solve in the core (faer)."""
        n = x.shape[0]
        check_memory(8.0 * n * n, f"the {n} x {n} float64 kernel of the direct solver")
        k = limit_kernel(
            x, depth=s["depth"], activation=s["activation"], beta=s["beta"], get=self.kernel
        )
        k = np.ascontiguousarray(k, dtype=np.float64)
        k[np.diag_indices(n)] += s["ridge"]
        return solve_spd(k, y, overwrite_k=True)

    def _fit_cg(self, x: np.ndarray, y: np.ndarray, s: dict[str, Any]) -> tuple[np.ndarray, int]:
        n = x.shape[0]
        op = self._operator(x, None, s)
        ridge = s["ridge"]
        size = min(n, s["size"] or 1000)
        precondition = _nystrom_preconditioner(self, x, s, size, op.diagonal())
        max_iter = s["max_iter"] or int(10 * math.sqrt(n)) + 100
        show = self.progress if self.progress is not None else n >= 20_000 and sys.stderr.isatty()
        with _Progress(show, max_iter) as progress:
            alpha, iterations, estimate = _pcg(
                lambda v: op.matmat(v) + ridge * v, precondition, y, s["tol"], max_iter, progress
            )
        if estimate > s["tol"]:
            warnings.warn(
                f"conjugate gradients stopped after {iterations} iterations at relative "
                f"residual {estimate:.2e} > tol = {s['tol']:.1e}; raise max_iter or the ridge",
                ConvergenceWarning,
                stacklevel=3,
            )
        return alpha, iterations

    # ----------------------------------------------------------------- predict

    def predict(self, X: ArrayLike, t: ArrayLike | None = None) -> NDArray[np.float64]:
        """The mean prediction at inputs X (M, n0).

        Without ``t``: K(X, X_fit) α, the t = ∞ predictor, shaped like y (M,) or (M, k).
        With ``t`` (times ≥ 0, ``np.inf`` allowed, scalar or 1-D): the MSE flow's mean at
        those times, shape (len(t), M) or (len(t), M, k) as y is 1-D or 2-D (``t`` scalar:
        without the leading axis), computed by the Lanczos process on Θ̃.
        """
        if not hasattr(self, "dual_coef_"):
            raise NotFittedError(
                "this KernelRegressor instance is not fitted yet: call fit(X, y) first"
            )
        s = self._settings()
        x = _inputs(X, s["dtype"])
        if x.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {x.shape[1]} features, but KernelRegressor is expecting "
                f"{self.n_features_in_} features as input"
            )
        cross = self._operator(x, self.X_fit_, s)
        alpha = self.dual_coef_.reshape(self.X_fit_.shape[0], -1)
        if t is None:
            return np.asarray(cross.matmat(alpha).reshape((x.shape[0], *self._y_shape)))
        times = np.asarray(t)
        if times.dtype.kind not in "biuf":
            raise TypeError(f"t must be real, got dtype {times.dtype}")
        times = times.astype(np.float64)
        if times.ndim > 1:
            raise ValueError(f"t must be a scalar or 1-D, got shape {times.shape}")
        if np.isnan(times).any() or (times < 0).any():
            raise ValueError("times t must be ≥ 0 (np.inf allowed), without NaN")
        coef = self._flow_coefficients(times.reshape(-1), s)  # (T, N, k)
        n_t, n, k = coef.shape
        stacked = np.ascontiguousarray(coef.transpose(1, 0, 2).reshape(n, n_t * k))
        out = cross.matmat(stacked).reshape(x.shape[0], n_t, k).transpose(1, 0, 2)
        out = out.reshape((n_t, x.shape[0], *self._y_shape))
        return np.asarray(out[0] if times.ndim == 0 else out)

    def _flow_coefficients(self, times: np.ndarray, s: dict[str, Any]) -> np.ndarray:
        """Θ̃⁻¹ (I − exp(−t Θ̃ / N)) y for each time, (T, N, k), by Lanczos on Θ̃."""
        x = self.X_fit_
        n = x.shape[0]
        op = self._operator(x, None, s)
        ridge = s["ridge"]
        alpha = self.dual_coef_.reshape(n, -1)
        out = np.empty((len(times), n, alpha.shape[1]))
        finite = np.isfinite(times)
        out[~finite] = alpha  # t = ∞: Θ̃⁻¹ y, which the fit solved already
        if finite.any():
            max_steps = min(n, s["max_iter"] or 500)
            out[finite] = _lanczos_flow(
                lambda v: op.matmat(v) + ridge * v,
                self._y_fit,
                times[finite],
                n,
                s["tol"],
                max_steps,
            )
        return out


# --------------------------------------------------------------------- numerical pieces


def _relative_residual(product: np.ndarray, y: np.ndarray) -> float:
    """max over columns of ‖y − product‖ / ‖y‖ (columns of y = 0 count the absolute norm)."""
    norms = np.linalg.norm(y, axis=0)
    return float(np.max(np.linalg.norm(y - product, axis=0) / np.where(norms > 0, norms, 1.0)))


def _nystrom_preconditioner(
    reg: KernelRegressor, x: np.ndarray, s: dict[str, Any], size: int, diagonal: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
    """r ↦ (K_nys + λI)⁻¹ r for the Nyström approximation K_nys = K_NM K_MM⁻¹ K_MN on M
    uniformly sampled centres (Falkon's preconditioner), λ = the ridge (at least 1e-10 of the
    mean diagonal), applied by the Woodbury identity:

        (λI + K_NM K_MM⁻¹ K_MN)⁻¹ r = (r − K_NM (λ K_MM + K_MN K_NM)⁻¹ K_MN r) / λ.

    K_NM is kept in memory (N × M float64) and the M × M system factorised once in the core.
    """
    n = x.shape[0]
    rng = np.random.default_rng(s["seed"])
    centres = np.sort(rng.choice(n, size=size, replace=False))
    check_memory(8.0 * n * size + 24.0 * size * size, f"the preconditioner's {size} centres")
    kernel = limit_kernel(
        x,
        x[centres],
        depth=s["depth"],
        activation=s["activation"],
        beta=s["beta"],
        get=reg.kernel,
    )
    knm = np.asarray(kernel, dtype=np.float64)  # (N, M), K(x, centres)
    kmm = np.ascontiguousarray(knm[centres])
    lam = max(s["ridge"], 1e-10 * float(np.mean(diagonal)))
    system = lam * kmm + knm.T @ knm
    # A little jitter keeps the factorisation defined for nearly duplicate centres.
    system[np.diag_indices(size)] += 1e-12 * float(np.trace(system)) / size
    inverse = solve_spd(system, np.eye(size), overwrite_k=True)

    def apply(r: np.ndarray) -> np.ndarray:
        return np.asarray((r - knm @ (inverse @ (knm.T @ r))) / lam)

    return apply


class _Progress:
    """Iterations and residual: a tqdm bar when installed, else a line on stderr."""

    def __init__(self, show: bool, total: int) -> None:
        self.show, self.total = show, total
        self.bar: Any = None

    def __enter__(self) -> _Progress:
        if self.show:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=self.total, desc="cg", unit="it", leave=False)
            except ImportError:
                self.bar = None
        return self

    def update(self, iteration: int, residual: float) -> None:
        if not self.show:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(residual=f"{residual:.2e}")
        elif iteration % 10 == 0:
            print(f"cg: iteration {iteration}, residual {residual:.2e}", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def _pcg(
    matmat: Callable[[np.ndarray], np.ndarray],
    precondition: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    tol: float,
    max_iter: int,
    progress: _Progress,
) -> tuple[np.ndarray, int, float]:
    """Preconditioned conjugate gradients for A X = B, one independent recurrence per column
    of B sharing each product with A. Returns (X, iterations, the recurrence's largest
    relative residual)."""
    x = np.zeros_like(b)
    r = b.copy()
    norms = np.linalg.norm(b, axis=0)
    norms[norms == 0] = 1.0
    z = precondition(r)
    p = z.copy()
    rz = np.einsum("ij,ij->j", r, z)
    residual = float(np.max(np.linalg.norm(r, axis=0) / norms))
    iterations = 0
    while residual > tol and iterations < max_iter:
        ap = matmat(p)
        pap = np.einsum("ij,ij->j", p, ap)
        step = np.where(pap > 0, rz / np.where(pap > 0, pap, 1.0), 0.0)
        x += p * step
        r -= ap * step
        iterations += 1
        residual = float(np.max(np.linalg.norm(r, axis=0) / norms))
        progress.update(iterations, residual)
        if residual <= tol:
            break
        z = precondition(r)
        rz_next = np.einsum("ij,ij->j", r, z)
        p = z + p * np.where(rz > 0, rz_next / np.where(rz > 0, rz, 1.0), 0.0)
        rz = rz_next
    return x, iterations, residual


def _flow_weights(theta: np.ndarray, t: float, n: int) -> np.ndarray:
    """g_t(θ) = (1 − e^{−tθ/N}) / θ, with its limit t/N at θ = 0; 1/θ at t = ∞."""
    if math.isinf(t):
        return np.asarray(1.0 / theta)
    a = t * theta / n
    return np.where(np.abs(a) > 1e-8, -np.expm1(-a) / np.where(theta != 0, theta, 1.0), t / n)


def _lanczos_flow(
    matmat: Callable[[np.ndarray], np.ndarray],
    y: np.ndarray,
    times: np.ndarray,
    n: int,
    tol: float,
    max_steps: int,
) -> np.ndarray:
    """g_t(A) y for every time t and column of y, (T, N, k), by the Lanczos process on the
    symmetric positive-definite A (full reorthogonalisation; the k columns run in lockstep,
    sharing each product). Stops once every approximation changed by at most ``tol``
    (relative to its largest entry) over the last five steps, at an invariant subspace, or
    after ``max_steps``."""
    beta0 = np.linalg.norm(y, axis=0)
    basis = [y / np.where(beta0 > 0, beta0, 1.0)]
    alphas: list[np.ndarray] = []
    betas: list[np.ndarray] = []
    history: deque[np.ndarray] = deque(maxlen=5)  # the last five estimates, (T, N, k) each
    for j in range(max_steps):
        w = matmat(np.ascontiguousarray(basis[j]))
        alphas.append(np.einsum("ij,ij->j", basis[j], w))
        stacked = np.stack(basis)
        # Full reorthogonalisation against every earlier vector (twice, for safety).
        for _ in range(2):
            w -= np.einsum("sij,sj->ij", stacked, np.einsum("sij,ij->sj", stacked, w))
        betas.append(np.linalg.norm(w, axis=0))
        history.append(_lanczos_estimate(stacked, alphas, betas, beta0, times, n))
        if len(history) >= 5:
            current = history[-1]
            scale = np.maximum(np.abs(current).max(axis=1, keepdims=True), 1e-300)
            change = max(float(np.max(np.abs(current - h) / scale)) for h in list(history)[:-1])
            if change <= tol:
                break
        if np.all(betas[j] <= 1e-14 * np.maximum(np.abs(np.stack(alphas)).max(axis=0), 1e-300)):
            break  # an invariant subspace: the approximation is exact
        basis.append(w / np.where(betas[j] > 0, betas[j], 1.0))
    return history[-1]


def _lanczos_estimate(
    basis: np.ndarray,
    alphas: list[np.ndarray],
    betas: list[np.ndarray],
    beta0: np.ndarray,
    times: np.ndarray,
    n: int,
) -> np.ndarray:
    """‖y‖ V_m g_t(T_m) e₁ per column and time, (T, N, k), from the m Lanczos steps so far."""
    steps, n_rows, k = basis.shape
    a, b = np.stack(alphas), np.stack(betas)
    result = np.empty((len(times), n_rows, k))
    for c in range(k):
        tri = np.diag(a[:, c])
        if steps > 1:
            off = b[: steps - 1, c]
            tri += np.diag(off, 1) + np.diag(off, -1)
        theta, q = np.linalg.eigh(tri)
        theta = np.maximum(theta, 1e-300)
        for i, t in enumerate(times):
            g = _flow_weights(theta, float(t), n)
            result[i, :, c] = beta0[c] * (basis[:, :, c].T @ (q @ (g * q[0])))
    return result
