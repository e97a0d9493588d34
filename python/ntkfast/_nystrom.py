"""A low-rank Nyström factor of a kernel by randomly pivoted Cholesky, and the Nyström
preconditioner of (K + μI) made from it.

Block randomly pivoted Cholesky (Chen, Epperly, Tropp & Webber, "Randomly pivoted Cholesky",
2023) draws each block of pivots with probability proportional to the diagonal of the
residual K − F Fᵀ, so clusters of nearly equal inputs (image-like data) give one centre, not
many, and the approximation is near the best rank-M one where uniform sampling is not. The
factor F comes from kernel columns K(X, X_S) alone, never from an inverse of K(C, C), so it
stays accurate however ill-conditioned that block is.

The preconditioner is the Nyström PCG one (Frangella, Tropp & Udell, "Randomized Nyström
preconditioning", 2023): with F Fᵀ = U diag(s) Uᵀ (U orthonormal, N × r),

    P⁻¹ = U diag((s_min + μ) / (s + μ)) Uᵀ + (I − U Uᵀ),

symmetric positive definite with eigenvalues in (0, 1]; (K + μI) P⁻¹ has condition number at
most (s_min + μ + ‖K − F Fᵀ‖) / μ.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._linalg import eigh

__all__ = ["NystromPreconditioner", "pivoted_cholesky"]

#: Pivots drawn per kernel call, at most: large enough for a GEMM-shaped K(X, X_S). Blocks are
#: also at most 1/20 of the rank, so that the residual diagonal steers the draws.
BLOCK = 100


def pivoted_cholesky(
    columns: Callable[[np.ndarray], np.ndarray],
    diagonal: np.ndarray,
    rank: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """F (N, r) with K ≈ F Fᵀ, r ≤ ``rank``.

    ``columns(S)`` gives K(X, X_S) of shape (N, len(S)) in float64 for sorted indices S;
    ``diagonal`` is diag K (N,). Each block of pivots (``rank`` / 20, at most ``BLOCK``) is
    drawn (with replacement, then deduplicated) from the residual diagonal
    d = diag(K − F Fᵀ); its residual columns G = K(X, X_S) − F F_Sᵀ enter F as G H^{-1/2},
    H = G_S, keeping only the directions of H above rounding (so nearly repeated pivots add
    nothing). Stops early once the residual trace is below 1e-14 of the kernel's.
    """
    n = len(diagonal)
    block = max(1, min(BLOCK, -(-rank // 20)))
    factor = np.empty((n, rank))
    residual = np.array(diagonal, dtype=np.float64)
    trace = float(residual.sum())
    filled = 0
    # A block can add fewer columns than pivots; the round cap keeps a degenerate kernel
    # (rank far below ``rank``) from looping.
    for _ in range(4 * (rank // block + 1)):
        left = float(residual.sum())
        if filled >= rank or left <= 1e-14 * trace:
            break
        draws = rng.choice(n, size=min(block, rank - filled), p=residual / left)
        chosen = np.unique(draws)
        g = columns(chosen)
        g -= factor[:, :filled] @ factor[chosen, :filled].T
        h = (g[chosen] + g[chosen].T) / 2
        w, v = np.linalg.eigh(h)  # at most BLOCK × BLOCK
        keep = w > 1e-12 * max(float(w.max()), trace / n)  # above rounding of K's entries
        new = g @ (v[:, keep] / np.sqrt(w[keep]))
        width = min(new.shape[1], rank - filled)
        factor[:, filled : filled + width] = new[:, :width]
        filled += width
        residual -= np.einsum("ij,ij->i", new[:, :width], new[:, :width])
        residual[chosen] = 0.0
        np.maximum(residual, 0.0, out=residual)
    return factor[:, :filled]


class NystromPreconditioner:
    """r ↦ P⁻¹ r for K + μI from a Nyström factor F (N, r) with K ≈ F Fᵀ (module docstring).

    ``basis`` U (N, r') is orthonormal to rounding and ``eigenvalues`` s (r',) are those of
    F Fᵀ on it, ascending; directions of F below 1e-13 of its largest are dropped.
    """

    def __init__(self, factor: np.ndarray, mu: float) -> None:
        if mu <= 0:
            raise ValueError(f"the preconditioner needs a positive shift, got {mu}")
        # U = F T for an r × r matrix T found from G = Fᵀ F alone (two N × r products in
        # all): T₁ = V S⁻¹ from G = V S² Vᵀ, dropping directions below 1e-13 of the largest;
        # then T₁'s columns made G-orthonormal (U's, to rounding, however small S is);
        # then rotated so that F Fᵀ is diagonal on the span.
        gram = factor.T @ factor
        s2, v = eigh(gram)
        keep = s2 > 1e-13 * max(float(s2[-1]), 0.0)
        t = v[:, keep] / np.sqrt(s2[keep])
        h, q = eigh(t.T @ gram @ t)
        t = t @ (q / np.sqrt(h))
        c = t.T @ gram
        s, q = eigh(c @ c.T)
        self.basis = np.ascontiguousarray(factor @ (t @ q))
        self.eigenvalues = np.maximum(s, 0.0)
        floor = float(self.eigenvalues[0]) if len(s) else 0.0
        self._scale = (floor + mu) / (self.eigenvalues + mu) - 1.0

    def __call__(self, r: np.ndarray) -> np.ndarray:
        """P⁻¹ r for r (N, k)."""
        return np.asarray(r + self.basis @ (self._scale[:, None] * (self.basis.T @ r)))
