"""Nyström kernel regression on M centres C, preconditioned as in Falkon.

The Nyström approximation of the kernel on the centres, K̃ = K_nm K_mm⁻¹ K_mn (K_nm = K(X, C),
N × M; K_mm = K(C, C)), turns kernel ridge regression with ridge λ into the M × M system

    H α = K_nmᵀ y,    H = K_nmᵀ K_nm + λ K_mm,    f(x) = K(x, C) α,

which is ridge regression with K̃ exactly (Williams & Seeger 2001; the "subset of
regressors"). Each product with H costs one pass over K(X, C), O(N M (n0 + L)) time.

The preconditioner is Falkon's (Rudi, Carratino & Rosasco, NeurIPS 2017): for centres drawn
uniformly from the data K_nmᵀ K_nm ≈ (N/M) K_mm², so with K_mm + δI = Tᵀ T and
(N/M) T Tᵀ + λ I = Aᵀ A (Cholesky factors, upper triangular), B = T⁻¹ A⁻¹ makes

    W = Bᵀ H B  (H with K_mm + δI in its ridge term)

close to the identity, and conjugate gradients on W β = Bᵀ K_nmᵀ y, α = B β, converge in tens
of iterations. δ (the jitter) is M·ε·mean diag K_mm, raised until the factorisation succeeds.

(N/M) K_mm² is a poor estimate where the centres are not typical rows: every centre is its
own nearest row, so K_mm carries the large diagonal K(c, c) that K(x, c) for the other rows
lacks, and (N/M) K_mm² counts it N/M times. When passes over K(X, C) are dear (it is
streamed), the estimate is made instead from a ``Sample`` of s further rows S of X: the
centres count once, exactly, and the sample for the N − M rows it was drawn from,

    K_nmᵀ K_nm ≈ K_mm² + ((N − M)/s) K_smᵀ K_sm,
    Aᵀ A = T Tᵀ + ((N − M)/s) Zᵀ Z + λ I,   Z = K_sm T⁻¹,

(K_mm T⁻¹ = Tᵀ up to the jitter; for centres not drawn from X the first term is dropped and
the sample stands for all N rows; should that estimate be singular, without a ridge, Falkon's
is used). It costs s·M² multiply-adds (the triangular solve and
ZᵀZ) against N·M kernel entries per pass; on image-like inputs with s = 4M it takes a half
to a third of Falkon's iterations (docs/scale.md). With s = N − M it is exact: CG then stops
after an iteration or two.

The MSE flow in the Nyström subspace is that of K̃ (SPEC §1's flow with K̃ for the kernel):

    f_t(x) = K(x, C) T⁻¹ g_t(G + λI) T⁻ᵀ K_nmᵀ y,    G = T⁻ᵀ K_nmᵀ K_nm T⁻¹ (M × M),
    g_t(θ) = (1 − e^{−tθ/N}) / θ,

computed by the Lanczos process on G + λI (one pass over K(X, C) per step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from scipy.linalg import blas, lapack, solve_triangular

from . import _ntkfast
from ._krylov import Progress, lanczos_flow, pcg, relative_residual

__all__ = ["Falkon", "Sample", "sample_size"]

Product = Callable[[np.ndarray], np.ndarray]


def _solve(u: np.ndarray, v: np.ndarray, transposed: bool = False) -> np.ndarray:
    """U⁻¹ v, or U⁻ᵀ v, for an upper-triangular factor U (M, M). U is finite by construction,
    so SciPy's finiteness scan of all M² entries is skipped: at M = 10,000 it cost more than
    the solve itself, six times per iteration."""
    trans = "T" if transposed else "N"
    return np.asarray(solve_triangular(u, v, trans=trans, check_finite=False))


def _mirror_lower(a: np.ndarray, block: int = 512) -> None:
    """Copy the lower triangle of the square ``a`` onto its upper one, in blocks (no M × M
    temporary)."""
    m = len(a)
    for i in range(0, m, block):
        rows = slice(i, i + block)
        a[:i, rows] = a[rows, :i].T
        square = a[rows, rows]
        a[rows, rows] = np.tril(square) + np.tril(square, -1).T


def _triangular_gram(t: np.ndarray) -> np.ndarray:
    """T Tᵀ (M, M), C-contiguous, for T upper triangular: LAPACK's ``lauum`` on a copy of T
    (M³/3 multiply-adds, a third of ``t @ t.T``'s), then the lower triangle mirrored."""
    out = np.array(t, dtype=np.float64, order="C")
    # T in C order is Tᵀ (lower triangular) in Fortran order, and lauum makes Lᵀ L = T Tᵀ in
    # the lower triangle of that, the upper triangle of ``out`` (its lower one in C order
    # is that of the transpose: mirror from the upper).
    _, info = lapack.dlauum(out.T, lower=1, overwrite_c=1)
    if info != 0:
        raise ValueError(f"LAPACK dlauum failed (info = {info})")
    _mirror_lower(out.T)
    return out


@dataclass
class Sample:
    """Rows S of X beside the centres, for the preconditioner's estimate of K_nmᵀ K_nm
    (module docstring): ``blocks`` yields K(X_S, C) in row blocks (b, M), float64, ``size``
    rows in all, standing for ``represents`` rows of X; ``centres_in_data`` says the centres
    are rows of X too (and so are counted once, exactly)."""

    blocks: Iterable[np.ndarray]
    size: int
    represents: int
    centres_in_data: bool


def sample_size(n: int, rest: int, m: int, entry_cost: float) -> int:
    """How many of the ``rest`` rows of X (N = ``n`` rows, M centres) to sample for the
    preconditioner: s·M² multiply-adds of set-up at most what 4 passes over K(X, C) cost (N·M
    entries of ``entry_cost`` multiply-adds each), and at most 4M; 0 (Falkon's estimate) when
    that leaves fewer than M, where a sample helps little."""
    s = min(rest, 4 * m, int(4 * n * entry_cost / m))
    return s if s >= min(m, rest) else 0


def _upper_cholesky(a: np.ndarray) -> np.ndarray:
    """U upper triangular with Uᵀ U = a, in the core (faer), in place of the C-contiguous
    float64 ``a`` (no M × M copy); ValueError if a is not positive definite."""
    _ntkfast.solve_spd(a, np.zeros((len(a), 0)))
    for i in range(1, len(a)):  # the strict lower triangle holds a's entries and workspace
        a[i, :i] = 0.0
    return a


class Falkon:
    """The factors T, A of the preconditioner for centres with kernel ``kmm`` (M, M), N
    training points and ridge λ ≥ 0 (module docstring), and the solves that use them.
    With a ``sample`` A is made from it; ``sampled`` is its size, 0 for Falkon's estimate
    (no sample, or one whose estimate was singular).

    ``normal(V)`` gives K_nmᵀ K_nm V for V (M, k), float64.
    """

    def __init__(self, kmm: np.ndarray, n: int, ridge: float, sample: Sample | None = None) -> None:
        m = len(kmm)
        self.n, self.ridge = n, ridge
        scale = max(float(np.mean(np.diag(kmm))), np.finfo(np.float64).tiny)
        jitter = m * np.finfo(np.float64).eps * scale
        diagonal = np.diag(kmm).copy()
        while True:
            shifted = np.array(kmm, dtype=np.float64, order="C")
            shifted[np.diag_indices(m)] = diagonal + jitter
            try:
                self.t = _upper_cholesky(shifted)
                break
            except ValueError:
                if jitter > 1e-4 * scale:
                    raise ValueError(
                        "K(C, C) is singular to working precision: the centres hold nearly "
                        "repeated points (choose fewer or more distinct centres)"
                    ) from None
                jitter *= 100.0
        self.jitter = jitter
        # The estimate of T⁻ᵀ K_nmᵀ K_nm T⁻¹, plus λ I, then factorised in place: memory peaks
        # at three M × M arrays (K(C, C), T and this one) and keeps two.
        self.sampled = 0
        if sample is not None:
            try:
                self.a = _upper_cholesky(self._inner(sample))
                self.sampled = sample.size
            except ValueError:
                pass  # the sample's estimate is singular to working precision
        if not self.sampled:
            # Falkon's estimate, as well conditioned as T (made outside the handler, whose
            # traceback would keep the failed M × M array alive).
            self.a = _upper_cholesky(self._inner(None))

    def _inner(self, sample: Sample | None) -> np.ndarray:
        """The estimate of T⁻ᵀ K_nmᵀ K_nm T⁻¹ plus λ I (M, M): (N/M) T Tᵀ + λ I, or with a
        sample [T Tᵀ] + (represents / size) Zᵀ Z + λ I."""
        centres = sample is None or sample.centres_in_data
        inner = _triangular_gram(self.t) if centres else np.zeros_like(self.t)
        if sample is None:
            inner *= self.n / len(inner)
        else:
            self._add_sample(inner, sample)
        inner[np.diag_indices(len(inner))] += self.ridge
        return inner

    def _add_sample(self, inner: np.ndarray, sample: Sample) -> None:
        """inner += (represents / size) Zᵀ Z, Z = K_sm T⁻¹, one block of rows at a time
        (``syrk`` into the lower triangle of the symmetric ``inner``, then mirrored)."""
        weight = sample.represents / sample.size
        # inner is symmetric: its C-order lower triangle is the Fortran-order upper one.
        target = inner.T
        for block in sample.blocks:
            zt = _solve(self.t, np.asarray(block, dtype=np.float64).T, transposed=True)
            target = blas.dsyrk(weight, zt, beta=1.0, c=target, lower=0, overwrite_c=1)
        if not np.shares_memory(target, inner):  # BLAS worked on a copy
            inner[...] = target.T
        _mirror_lower(inner)

    def _b(self, v: np.ndarray) -> np.ndarray:
        """B v = T⁻¹ A⁻¹ v."""
        return _solve(self.t, _solve(self.a, v))

    def _bt(self, v: np.ndarray) -> np.ndarray:
        """Bᵀ v = A⁻ᵀ T⁻ᵀ v."""
        return _solve(self.a, _solve(self.t, v, transposed=True), transposed=True)

    def _w(self, normal: Product) -> Product:
        """β ↦ W β = Bᵀ K_nmᵀ K_nm B β + λ A⁻ᵀ A⁻¹ β."""

        def product(beta: np.ndarray) -> np.ndarray:
            out = self._bt(normal(self._b(beta)))
            if self.ridge:
                out += self.ridge * _solve(self.a, _solve(self.a, beta), transposed=True)
            return np.asarray(out)

        return product

    def solve(
        self, normal: Product, rhs: np.ndarray, tol: float, max_iter: int, progress: Progress
    ) -> tuple[np.ndarray, int, float]:
        """α (M, k) from K_nmᵀ y = ``rhs`` (M, k): CG on W β = Bᵀ rhs to relative residual
        ``tol``. Returns (α, iterations, the relative residual ‖Bᵀ rhs − W β‖ / ‖Bᵀ rhs‖
        recomputed with one more product)."""
        w = self._w(normal)
        b = self._bt(rhs)
        beta, iterations, _ = pcg(w, lambda r: r, b, tol, max_iter, progress)
        return self._b(beta), iterations, relative_residual(b - w(beta), b)

    def flow(
        self,
        normal: Product,
        rhs: np.ndarray,
        times: np.ndarray,
        tol: float,
        max_steps: int,
    ) -> np.ndarray:
        """a_t = T⁻¹ g_t(G + λI) T⁻ᵀ ``rhs`` for each time, (T, M, k): the coefficients on
        K(x, C) of the flow in the Nyström subspace (module docstring)."""

        def shifted(u: np.ndarray) -> np.ndarray:
            return _solve(self.t, normal(_solve(self.t, u)), transposed=True) + self.ridge * u

        start = _solve(self.t, rhs, transposed=True)
        coef = lanczos_flow(shifted, start, times, self.n, tol, max_steps)
        m, k = rhs.shape
        flat = coef.transpose(1, 0, 2).reshape(m, -1)
        out = _solve(self.t, flat).reshape(m, len(times), k)
        return np.asarray(out.transpose(1, 0, 2))
