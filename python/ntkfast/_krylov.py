"""Krylov methods on a symmetric positive-definite system A, given only as products:
preconditioned conjugate gradients (several right-hand sides in lockstep), iterative
refinement of a cheaper inner solve against exact products, and the Lanczos approximation of
the MSE flow's matrix function."""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Progress", "lanczos_flow", "pcg", "refine", "relative_residual"]

Product = Callable[[np.ndarray], np.ndarray]


class Progress:
    """Iterations and residual: a tqdm bar when installed, else a line on stderr."""

    def __init__(self, show: bool, total: int) -> None:
        self.show, self.total = show, total
        self.bar: Any = None

    def __enter__(self) -> Progress:
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


def pcg(
    matmat: Callable[[np.ndarray], np.ndarray],
    precondition: Callable[[np.ndarray], np.ndarray],
    b: np.ndarray,
    tol: float,
    max_iter: int,
    progress: Progress,
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


def relative_residual(r: np.ndarray, b: np.ndarray) -> float:
    """max over columns of ‖r‖ / ‖b‖ for a residual r = b − A x (columns of b = 0 count the
    absolute norm)."""
    norms = np.linalg.norm(b, axis=0)
    return float(np.max(np.linalg.norm(r, axis=0) / np.where(norms > 0, norms, 1.0)))


def refine(
    exact: Product,
    inner: Product,
    precondition: Product,
    b: np.ndarray,
    tol: float,
    max_iter: int,
    progress: Progress,
    inner_tol: float = 1e-3,
) -> tuple[np.ndarray, int, float]:
    """Iterative refinement of A X = B with a cheaper approximation Ã of A: each round
    solves Ã D = R by preconditioned CG to relative ``inner_tol`` (or less, once that is all
    ``tol`` needs), adds D to X and recomputes R = B − A X with one ``exact`` product. It
    converges like ‖(A − Ã) Ã⁻¹‖ per round, so an Ã stored in float32 gives the float64
    solution in a few rounds, each a single exact product.

    If a round fails to halve the residual (Ã too far from A), the rest is solved by CG on
    the exact products from where refinement stopped. Returns (X, CG iterations over all
    rounds, the exact largest relative residual).
    """
    x = np.zeros_like(b)
    r = b.copy()
    residual = relative_residual(r, b)
    iterations = 0
    while residual > tol and iterations < max_iter:
        goal = min(max(inner_tol, 0.5 * tol / residual), 0.5)
        d, used, _ = pcg(inner, precondition, r, goal, max_iter - iterations, progress)
        iterations += used
        x += d
        r = b - exact(x)
        previous, residual = residual, relative_residual(r, b)
        if residual > 0.5 * previous:
            break
    if residual > tol and iterations < max_iter:
        d, used, _ = pcg(exact, precondition, r, tol / residual, max_iter - iterations, progress)
        iterations += used
        x += d
        residual = relative_residual(b - exact(x), b)
    return x, iterations, residual


def _flow_weights(theta: np.ndarray, t: float, n: int) -> np.ndarray:
    """g_t(θ) = (1 − e^{−tθ/N}) / θ, with its limit t/N at θ = 0; 1/θ at t = ∞."""
    if math.isinf(t):
        return np.asarray(1.0 / theta)
    a = t * theta / n
    return np.where(np.abs(a) > 1e-8, -np.expm1(-a) / np.where(theta != 0, theta, 1.0), t / n)


def lanczos_flow(
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
