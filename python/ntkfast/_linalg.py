"""Dense symmetric linear algebra through the Rust core (faer), for the dynamics and the
regression solvers: the OpenBLAS in NumPy's and SciPy's wheels has crashed in dense
factorisations on some CPUs at the sizes kernels have, and a crash would take the user's
process with it."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _ntkfast
from ._validation import check_memory

__all__ = ["eigh", "solve_spd"]


def eigh(k: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Eigenvalues (ascending, (n,)) and orthonormal eigenvectors (columns, (n, n)) of the
    symmetric ``k``; the same bits for any thread count."""
    a = np.ascontiguousarray(k, dtype=np.float64)
    n = a.shape[0]
    check_memory(16.0 * n * n, f"the eigendecomposition of a {n} x {n} kernel")
    lam, v = np.empty(n), np.empty((n, n))
    _ntkfast.eigh(a, lam, v)
    return lam, v


def solve_spd(k: ArrayLike, r: ArrayLike, overwrite_k: bool = False) -> NDArray[np.float64]:
    """k⁻¹ r for a symmetric positive-definite ``k`` (n, n) by a Cholesky factorisation, r of
    shape (n,) or (n, m); a ValueError if ``k`` is not positive definite. With
    ``overwrite_k`` a C-contiguous float64 ``k`` is factorised in place (no n × n copy)."""
    if overwrite_k and isinstance(k, np.ndarray) and k.dtype == np.float64 and k.flags.c_contiguous:
        factor = k
    else:
        factor = np.array(k, dtype=np.float64, order="C")
    solution = np.array(r, dtype=np.float64, order="C")
    _ntkfast.solve_spd(factor, solution.reshape(len(factor), -1))
    return solution
