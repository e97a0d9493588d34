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
- ``"cg"``: conjugate gradients on the exact system, preconditioned by a
  Nyström approximation of rank M (centres by randomly pivoted Cholesky): tens of
  iterations on typical data. Its products (``kernel_storage=``) use the kernel kept in
  memory in float64 when it fits, else a float32 copy whose solution is refined to float64
  accuracy by a few matrix-free float64 products (:class:`ntkfast.KernelOperator`), else
  matrix-free products alone (the kernel never stored, one kernel pass per iteration).
- ``"nystrom"``: the Nyström approximation on M centres (``centers=``), an approximate
  solution at O(N M (n0 + L)) cost per iteration (Falkon's preconditioner, its estimate made
  from a sample of X when K(X, C) is streamed; tens of iterations): K(X, C) is kept in
  memory when it fits, else streamed through the core, one row block at a time, and X may
  be a ``.npy`` memmap or a Dask array larger than memory.
- ``"auto"`` (default): ``"nystrom"`` when ``centers`` or an array of centres is given; else
  ``"direct"`` while the N × N kernel takes at most a quarter of the available memory and
  N ≤ 8,000 (``DIRECT_MAX``), else ``"cg"``.

``predict(x, t=times)`` uses the Lanczos process on Θ̃ (one product with the kernel per step,
the steps shared by all times) and stops when the approximation of every time has settled to
``tol``; for ``"nystrom"`` it is the flow of the Nyström kernel K(X, C) K(C, C)⁻¹ K(C, X),
which stays in the span of the centres' kernel functions.
"""

from __future__ import annotations

import inspect
import math
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import activations as _activations
from ._falkon import Falkon, Sample, sample_size
from ._krylov import Progress, lanczos_flow, pcg, refine, relative_residual
from ._linalg import solve_spd
from ._nystrom import NystromPreconditioner, pivoted_cholesky
from ._rows import Rows
from ._validation import (
    as_finite_array,
    as_finite_float,
    as_positive_int,
    as_samples,
    available_memory,
    check_memory,
)
from .kernel_operator import KernelOperator
from .kernels import check_series, core_kernel, limit_kernel

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


def _check_shape(arr: Any) -> None:
    """scikit-learn's wording for the shapes of X its estimators refuse."""
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


def _inputs(x: ArrayLike, dtype: np.dtype) -> np.ndarray:
    """X as a C-contiguous (N, n0) array of ``dtype``, with scikit-learn's wording for the
    shapes its estimators refuse."""
    arr = np.asarray(x) if not hasattr(x, "toarray") else x
    _check_shape(arr)
    return np.ascontiguousarray(as_samples(arr, "X"), dtype=dtype)


#: Largest N that "auto" solves directly: beyond, CG on the kept kernel is faster than the
#: O(N³) factorisation (docs/regression.md has the measurements).
DIRECT_MAX = 8_000


#: Bytes of kernel per block of the preconditioner's sample (its triangular solve takes as
#: much again, beside the block's rows).
SAMPLE_BLOCK_BYTES = 32 << 20


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
    solver : "auto", "direct", "cg" or "nystrom"
        See the module docstring.
    tol : float
        Relative residual ‖y − (K + ridge·I) α‖ / ‖y‖ at which CG stops (per output column;
        for "nystrom" that of Falkon's preconditioned system), and the relative change at
        which the Lanczos flow stops.
    max_iter : int or None
        Most CG iterations (default 10 N^{1/2} + 100; 10 M^{1/2} + 100 for "nystrom") and
        Lanczos steps (default 500).
    preconditioner_size : int or None
        Rank M of the CG preconditioner's Nyström approximation (default min(N, 1000)).
    kernel_storage : "auto", "float64", "float32" or "none"
        CG's products: the kernel kept in memory in float64 (N² × 8 bytes); in float32
        (N² × 4 bytes) driving the iterations, with the float64 residual recomputed and the
        solution refined by one matrix-free product per round (a few rounds); or "none",
        matrix-free products only (one kernel pass per iteration, O(N (n0 + M)) memory).
        "auto" takes float64 if it fits in half the available memory, else float32 (float64
        requested) if it fits in three quarters, else "none". For "nystrom" it is about
        K(X, C): "float64" keeps it (N M × 8 bytes), "none" streams it; "auto" keeps it if it
        fits in half the available memory.
    centers : int or None
        M, the number of Nyström centres ("nystrom"; default min(N, 10 ⌈N^{1/2}⌉)).
    center_selection : "uniform" or array (M, n0)
        How the centres are chosen: M distinct rows of X drawn uniformly without replacement,
        or the given points (distinct rows, finite, n0 features).
    random_state : int
        Seed of the random draws: the CG preconditioner's, Nyström's centres and the rows
        its preconditioner samples.
    progress : bool or None
        Show iterations and residual while solving (tqdm when installed, else a line on
        stderr); None shows it for N ≥ 20,000 when stderr is a terminal.

    Attributes
    ----------
    dual_coef_ : array (N,) or (N, k); (M,) or (M, k) for "nystrom"
        α, float64: predictions are K(x, X) α (K(x, C) α for "nystrom").
    centers_ : array (M, n0)
        The Nyström centres C ("nystrom" only).
    n_iter_ : int
        CG iterations (1 for the direct solver: one factorisation).
    residual_ : float
        Final relative residual, the largest over output columns, recomputed with one more
        product at the end (not the recurrence's estimate).
    solver_ : str
        The solver used.
    storage_ : str
        Where the products came from ("float64", "float32" or "none"; "float64" for the
        direct solver).
    X_fit_ : array (N, n0)
        The training inputs (in ``dtype``; for "nystrom" the array as given, not copied:
        a memmap stays a memmap).

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
        kernel_storage: str = "auto",
        centers: int | None = None,
        center_selection: str | ArrayLike = "uniform",
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
        self.kernel_storage = kernel_storage
        self.centers = centers
        self.center_selection = center_selection
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
        if self.solver not in ("auto", "direct", "cg", "nystrom"):
            raise ValueError(
                f'solver must be "auto", "direct", "cg" or "nystrom", got {self.solver!r}'
            )
        tol = as_finite_float(self.tol, "tol")
        if not 0 < tol < 1:
            raise ValueError(f"tol must be in (0, 1), got {tol}")
        max_iter = None if self.max_iter is None else as_positive_int(self.max_iter, "max_iter")
        size = self.preconditioner_size
        size = None if size is None else as_positive_int(size, "preconditioner_size")
        seed = as_positive_int(self.random_state, "random_state", minimum=0)
        if self.kernel_storage not in ("auto", "float64", "float32", "none"):
            raise ValueError(
                'kernel_storage must be "auto", "float64", "float32" or "none", '
                f"got {self.kernel_storage!r}"
            )
        if self.kernel_storage == "float64" and dtype == np.float32 and self.solver != "nystrom":
            raise ValueError('kernel_storage="float64" needs dtype="float64"')
        centers = None if self.centers is None else as_positive_int(self.centers, "centers")
        selection = self.center_selection
        given = not isinstance(selection, str)
        if not given and selection != "uniform":
            raise ValueError(
                f'center_selection must be "uniform" or an array of centres, got {selection!r}'
            )
        nystrom = self.solver == "nystrom" or (
            self.solver == "auto" and (centers is not None or given)
        )
        if nystrom and self.kernel_storage == "float32":
            raise ValueError(
                "the Nyström solver keeps K(X, C) in float64 or streams it: kernel_storage must "
                'be "auto", "float64" or "none"'
            )
        return dict(
            depth=depth,
            activation=act,
            beta=beta,
            ridge=ridge,
            dtype=dtype,
            tol=tol,
            max_iter=max_iter,
            size=size,
            storage=self.kernel_storage,
            seed=seed,
            centers=centers,
            nystrom=nystrom,
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
        _check_shape(X)
        x = self._training_inputs(X, s)
        n = x.shape[0]
        targets = as_finite_array(y, "y", (1, 2))
        if targets.shape[0] != n:
            raise ValueError(f"y must have {n} rows (one per sample of X), got {targets.shape}")
        y2 = np.ascontiguousarray(targets.reshape(n, -1))
        if y2.shape[1] == 0:
            raise ValueError("y must have at least one column")
        solver = "nystrom" if s["nystrom"] else self._choose_solver(n)
        if solver == "nystrom":
            alpha, iterations, residual, centres, storage = self._fit_nystrom(x, y2, s)
        elif solver == "direct":
            alpha, iterations, residual = self._fit_direct(x, y2, s)
            storage = "float64"
        else:
            storage = self._storage(n, s)
            alpha, iterations, residual = self._fit_cg(x, y2, s, storage)
        if residual > s["tol"] and solver != "direct":
            more = "centers" if solver == "nystrom" else "preconditioner_size"
            warnings.warn(
                f"conjugate gradients stopped after {iterations} iterations at relative "
                f"residual {residual:.2e} > tol = {s['tol']:.1e}; raise max_iter, "
                f"{more} or the ridge",
                ConvergenceWarning,
                stacklevel=2,
            )
        # Attributes only once everything succeeded: an interrupted fit leaves none.
        self.X_fit_ = getattr(x, "source", x)
        self._train = x
        self._y_fit = y2
        if solver == "nystrom":
            self.centers_ = centres
            self.dual_coef_ = alpha.reshape((len(centres), *targets.shape[1:]))
        else:
            self.__dict__.pop("centers_", None)
            self.dual_coef_ = alpha.reshape(targets.shape)
        self.n_iter_ = iterations
        self.residual_ = residual
        self.solver_ = solver
        self.storage_ = storage
        self._y_shape = targets.shape[1:]
        self.n_features_in_ = int(x.shape[1])
        return self

    def _training_inputs(self, X: Any, s: dict[str, Any]) -> Any:
        """X for the solver: row chunks (:class:`ntkfast._rows.Rows`, never all converted at
        once) for "nystrom", else one C-contiguous array of ``dtype``."""
        return Rows(X, s["dtype"]) if s["nystrom"] else _inputs(X, s["dtype"])

    def _choose_solver(self, n: int) -> str:
        if self.solver != "auto":
            return str(self.solver)
        available = available_memory()
        fits = available is None or 8.0 * n * n <= available / 4
        return "direct" if n <= DIRECT_MAX and fits else "cg"

    def _storage(self, n: int, s: dict[str, Any]) -> str:
        """Where CG's products come from: "float64"/"float32" (the kernel kept in memory in
        that precision) or "none" (matrix-free). "auto" keeps it in the requested precision
        when that takes at most half the available memory, else (float64 requested) in
        float32 when that takes at most three quarters, else matrix-free."""
        storage = s["storage"]
        if storage != "auto":
            return str(storage)
        available = available_memory()
        if available is None or s["dtype"].itemsize * float(n) ** 2 <= available / 2:
            return str(s["dtype"])
        if s["dtype"] == np.float64 and 4.0 * n * n <= 0.75 * available:
            return "float32"
        return "none"

    def _stored_kernel(self, x: np.ndarray, s: dict[str, Any], storage: str) -> np.ndarray:
        """The (N, N) kernel in ``storage`` precision (MemoryError before work if it cannot
        fit)."""
        xs = x.astype(storage, copy=False)
        return np.asarray(
            limit_kernel(
                xs, depth=s["depth"], activation=s["activation"], beta=s["beta"], get=self.kernel
            )
        )

    def _fit_direct(
        self, x: np.ndarray, y: np.ndarray, s: dict[str, Any]
    ) -> tuple[np.ndarray, int, float]:
        """Dense kernel in float64 plus ridge, Cholesky solve in the core (faer). The residual
        comes from a kept copy of the kernel when two fit in memory, else from one
        matrix-free product."""
        n = x.shape[0]
        check_memory(8.0 * n * n, f"the {n} x {n} float64 kernel of the direct solver")
        k = self._stored_kernel(x, s, "float64")
        available = available_memory()
        keep = available is None or 8.0 * n * n <= available / 2
        factor = k.copy() if keep else k
        factor[np.diag_indices(n)] += s["ridge"]
        alpha = solve_spd(factor, y, overwrite_k=True)
        del factor
        if keep:
            system = _shifted(k, s["ridge"])
        else:
            del k  # factorised in place: the residual takes a matrix-free product
            system = _shifted(self._operator(x, None, s), s["ridge"])
        return alpha, 1, relative_residual(y - system(alpha), y)

    def _preconditioner(
        self, x: np.ndarray, s: dict[str, Any], diagonal: np.ndarray
    ) -> NystromPreconditioner:
        """The Nyström preconditioner of K + ridge·I on M centres drawn by randomly pivoted
        Cholesky, its kernel columns computed in float64 (the shift is the ridge, at least
        1e-10 of the mean diagonal)."""
        n = x.shape[0]
        size = min(n, s["size"] or 1000)
        check_memory(3 * 8.0 * n * size, f"the preconditioner's {size} centres")
        rng = np.random.default_rng(s["seed"])
        factor = pivoted_cholesky(self._columns(x, s), diagonal.astype(np.float64), size, rng)
        mu = max(s["ridge"], 1e-10 * float(np.mean(diagonal)))
        return NystromPreconditioner(factor, mu)

    def _columns(self, x: np.ndarray, s: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        """S ↦ K(X, X_S) in float64 (the preconditioner's kernel columns)."""
        x64 = x.astype(np.float64, copy=False)
        return lambda chosen: self._kernel_block(x64, x64[chosen], s)

    def _fit_cg(
        self, x: np.ndarray, y: np.ndarray, s: dict[str, Any], storage: str
    ) -> tuple[np.ndarray, int, float]:
        """Preconditioned CG with the products ``storage`` names (see ``_storage``)."""
        n = x.shape[0]
        ridge = s["ridge"]
        op = self._operator(x, None, s)
        precondition = self._preconditioner(x, s, op.diagonal())
        exact = _shifted(op, ridge)
        max_iter = s["max_iter"] or int(10 * math.sqrt(n)) + 100
        show = self.progress if self.progress is not None else n >= 20_000 and sys.stderr.isatty()

        with Progress(show, max_iter) as progress:
            if storage == "none":
                alpha, iterations, _ = pcg(exact, precondition, y, s["tol"], max_iter, progress)
                return alpha, iterations, relative_residual(y - exact(alpha), y)
            stored = _shifted(self._stored_kernel(x, s, storage), ridge)
            if storage == "float64":
                alpha, iterations, _ = pcg(stored, precondition, y, s["tol"], max_iter, progress)
                return alpha, iterations, relative_residual(y - stored(alpha), y)
            # float32 products sum in float32 (a relative error of about 1e-7 √N): they drive
            # the iterations, and matrix-free products (float64 sums) measure and correct.
            return refine(exact, stored, precondition, y, s["tol"], max_iter, progress)

    # ----------------------------------------------------------------- Nyström

    def _centres(self, rows: Rows, s: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, bool]:
        """(C, rest, drawn): C (M, n0) in ``dtype``, the given centres (checked) or M distinct
        rows of X drawn uniformly without replacement (repeated rows of X are drawn again);
        ``rest`` the indices of the rows of X not drawn, in random order (the seed's), from
        which the preconditioner samples; ``drawn`` whether C are rows of X."""
        n, n0 = rows.shape
        selection = self.center_selection
        order = np.random.default_rng(s["seed"]).permutation(n)
        if not isinstance(selection, str):
            centres = as_samples(selection, "center_selection")
            if centres.shape[1] != n0:
                raise ValueError(f"the centres have {centres.shape[1]} features but X has {n0}")
            if s["centers"] is not None and s["centers"] != len(centres):
                raise ValueError(f"centers={s['centers']} but {len(centres)} centres were given")
            if len(np.unique(centres, axis=0)) < len(centres):
                raise ValueError("the centres have repeated rows: K(C, C) would be singular")
            return np.ascontiguousarray(centres, dtype=s["dtype"]), order, False
        m = s["centers"] if s["centers"] is not None else min(n, 10 * math.isqrt(n - 1) + 10)
        if m > n:
            raise ValueError(f"centers must be at most N = {n}, got {m}")
        chosen = np.sort(order[:m])
        centres = rows.take(chosen)
        distinct = np.unique(centres, axis=0, return_index=True)[1]
        taken = m
        while len(distinct) < m and taken < n:  # repeated rows: draw replacements
            extra = np.sort(order[taken : taken + m - len(distinct)])
            taken += len(extra)
            centres = np.concatenate([centres[np.sort(distinct)], rows.take(extra)])
            distinct = np.unique(centres, axis=0, return_index=True)[1]
        if len(distinct) < m:
            raise ValueError(
                f"X has only {len(distinct)} distinct rows: centers must be at most that"
            )
        return np.ascontiguousarray(centres[np.sort(distinct)]), order[taken:], True

    def _sample(
        self,
        rows: Rows,
        c64: np.ndarray,
        rest: np.ndarray,
        drawn: bool,
        storage: str,
        s: dict[str, Any],
    ) -> Sample | None:
        """The rows of X the preconditioner estimates K_nmᵀ K_nm from (``ntkfast._falkon``)
        when K(X, C) is streamed: the first s of ``rest``, s from
        :func:`ntkfast._falkon.sample_size` with the cost of a kernel entry in float64
        multiply-adds, as measured for the streamed product (float32: n0/2 + 8 L, float64:
        n0 + 24 L), divided by how many more cores make a pass than the client has (the
        sample's set-up runs on the client). None (Falkon's estimate) when K(X, C) is kept,
        where a pass is a GEMV pair, and for centres not drawn from X without a ridge, where
        nothing bounds the estimate's conditioning."""
        if storage != "none" or (not drawn and s["ridge"] == 0):
            return None
        n0, m, depth = rows.shape[1], len(c64), s["depth"]
        cost = n0 / 2 + 8 * depth if s["dtype"] == np.float32 else n0 + 24 * depth
        size = sample_size(len(rows), len(rest), m, cost / self._pass_cores_per_client_core())
        if size == 0:
            return None
        chosen = np.sort(rest[:size])
        step = max(1, min(size, SAMPLE_BLOCK_BYTES // (8 * (m + n0))))

        def blocks() -> Iterator[np.ndarray]:
            for start in range(0, size, step):
                sampled = rows.take(chosen[start : start + step]).astype(np.float64)
                yield self._kernel_block(sampled, c64, s)

        represents = len(rows) - m if drawn else len(rows)
        return Sample(blocks(), size, represents, drawn)

    def _pass_cores_per_client_core(self) -> float:
        """Cores a pass over K(X, C) runs on, per core of the client (1: the same ones)."""
        return 1.0

    def _nystrom_products(
        self, rows: Rows, centres: np.ndarray, s: dict[str, Any], storage: str
    ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
        """(V ↦ K_nmᵀ K_nm V, Y ↦ K_nmᵀ Y) for K_nm = K(X, C): on K_nm kept in memory
        (float64), or streamed through the core one chunk of X at a time."""
        n, m = len(rows), len(centres)
        if storage == "float64":
            check_memory(8.0 * n * m, f"K(X, C) of {n} x {m} kept in float64")
            knm = np.empty((n, m))
            for start, stop, block in rows.chunks():
                knm[start:stop] = self._kernel_block(block, centres, s)
            return (lambda v: knm.T @ (knm @ v)), (lambda y: knm.T @ y)

        core = core_kernel(s["depth"], s["activation"], s["beta"])
        act = s["activation"]

        def normal(v: np.ndarray) -> np.ndarray:
            v = np.ascontiguousarray(v, dtype=np.float64)
            needed = core.normal_product_memory(rows.step + m, m, v.shape[1])
            check_memory(needed, "a streamed product with K(X, C)")
            out, part = np.zeros_like(v), np.empty_like(v)
            for _, _, block in rows.chunks():
                check_series(act, *core.normal_product(block, centres, self.kernel, v, part))
                out += part
            return out

        def transposed(y: np.ndarray) -> np.ndarray:
            out, part = np.zeros((m, y.shape[1])), np.empty((m, y.shape[1]))
            for start, stop, block in rows.chunks():
                chunk = np.ascontiguousarray(y[start:stop])
                check_series(act, *core.product(centres, block, self.kernel, chunk, part))
                out += part
            return out

        return normal, transposed

    def _kernel_block(self, a: np.ndarray, b: np.ndarray, s: dict[str, Any]) -> np.ndarray:
        """K(a, b) in float64."""
        k = limit_kernel(
            a, b, depth=s["depth"], activation=s["activation"], beta=s["beta"], get=self.kernel
        )
        return np.asarray(k, dtype=np.float64)

    def _nystrom_storage(self, n: int, m: int, s: dict[str, Any]) -> str:
        """Where K(X, C) lives: "float64" (kept) or "none" (streamed); "auto" keeps it
        within half the available memory."""
        if s["storage"] != "auto":
            return str(s["storage"])
        available = available_memory()
        return "float64" if available is None or 8.0 * n * m <= available / 2 else "none"

    def _fit_nystrom(
        self, rows: Rows, y: np.ndarray, s: dict[str, Any]
    ) -> tuple[np.ndarray, int, float, np.ndarray, str]:
        """Falkon-preconditioned CG on the Nyström system (see ``ntkfast._falkon``)."""
        centres, rest, drawn = self._centres(rows, s)
        n, m = len(rows), len(centres)
        storage = self._nystrom_storage(n, m, s)
        c64 = centres.astype(np.float64)
        sample = self._sample(rows, c64, rest, drawn, storage, s)
        del rest  # N indices
        falkon = Falkon(self._kernel_block(c64, c64, s), n, s["ridge"], sample)
        del sample
        normal, transposed = self._nystrom_products(rows, centres, s, storage)
        max_iter = s["max_iter"] or int(10 * math.sqrt(m)) + 100
        show = self.progress if self.progress is not None else n >= 20_000 and sys.stderr.isatty()
        with Progress(show, max_iter) as progress:
            alpha, iterations, residual = falkon.solve(
                normal, transposed(y), s["tol"], max_iter, progress
            )
        self._falkon = falkon
        return alpha, iterations, residual, centres, storage

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
        basis = self.centers_ if self.solver_ == "nystrom" else self._train
        cross = self._operator(x, basis, s)
        alpha = self.dual_coef_.reshape(basis.shape[0], -1)
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
        """Θ̃⁻¹ (I − exp(−t Θ̃ / N)) y for each time, (T, N, k), by Lanczos on Θ̃: on the
        float64 kernel kept in memory when it fits (as for the fit), else with matrix-free
        products (a float32 copy would cost the flow its accuracy: it has no refinement)."""
        if self.solver_ == "nystrom":
            return self._nystrom_flow(times, s)
        x = self._train
        n = x.shape[0]
        ridge = s["ridge"]
        storage = self._storage(n, s)
        kept = storage == "float64"
        k = self._stored_kernel(x, s, storage) if kept else self._operator(x, None, s)
        product = _shifted(k, ridge)

        alpha = self.dual_coef_.reshape(n, -1)
        out = np.empty((len(times), n, alpha.shape[1]))
        finite = np.isfinite(times)
        out[~finite] = alpha  # t = ∞: Θ̃⁻¹ y, which the fit solved already
        if finite.any():
            max_steps = min(n, s["max_iter"] or 500)
            out[finite] = lanczos_flow(
                product,
                self._y_fit,
                times[finite],
                n,
                s["tol"],
                max_steps,
            )
        return out

    def _nystrom_flow(self, times: np.ndarray, s: dict[str, Any]) -> np.ndarray:
        """The coefficients on K(x, C) of the flow of the Nyström kernel, (T, M, k)."""
        alpha = self.dual_coef_.reshape(len(self.centers_), -1)
        out = np.empty((len(times), *alpha.shape))
        finite = np.isfinite(times)
        out[~finite] = alpha
        if finite.any():
            rows, centres = self._train, self.centers_
            storage = self._nystrom_storage(len(rows), len(centres), s)
            normal, transposed = self._nystrom_products(rows, centres, s, storage)
            max_steps = min(len(centres), s["max_iter"] or 500)
            out[finite] = self._falkon.flow(
                normal, transposed(self._y_fit), times[finite], s["tol"], max_steps
            )
        return out


def _shifted(k: Any, ridge: float) -> Callable[[np.ndarray], np.ndarray]:
    """V ↦ (K + ridge·I) V in float64, for a kernel kept in memory or a matrix-free operator
    (anything with ``matmat``: :class:`KernelOperator`, or products on a cluster). A kept
    float32 K multiplies a float32 copy of V (its sums run in float32: the product of the inner
    solve of mixed-precision refinement)."""

    def product(v: np.ndarray) -> np.ndarray:
        if isinstance(k, np.ndarray):
            kv = k @ v.astype(k.dtype, copy=False)
        else:
            kv = k.matmat(v)
        return np.asarray(kv, dtype=np.float64) + ridge * v

    return product
