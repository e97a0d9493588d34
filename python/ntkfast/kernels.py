"""Infinite-width kernels: the NNGP kernel Σ⁽ᴸ⁾ and the limiting NTK Θ∞⁽ᴸ⁾.

For a depth-L network in NTK parametrisation with bias scale β and nonlinearity σ
(Jacot, Gabriel & Hongler 2018), in the sequential limit n_1, …, n_{L−1} → ∞::

    Σ⁽¹⁾(x, x') = xᵀx'/n₀ + β²
    Σ⁽ˡ⁺¹⁾(x, x') = E[σ(u)σ(v)] + β²,    Σ̇⁽ˡ⁺¹⁾(x, x') = E[σ'(u)σ'(v)],
                    (u, v) ~ N(0, Σ⁽ˡ⁾ restricted to {x, x'})
    Θ⁽¹⁾ = Σ⁽¹⁾,   Θ⁽ˡ⁺¹⁾ = Θ⁽ˡ⁾ Σ̇⁽ˡ⁺¹⁾ + Σ⁽ˡ⁺¹⁾

The NTK of the n_L-output network is Θ∞⁽ᴸ⁾ ⊗ Id_{n_L}; these functions return the scalar
factor. "nngp" is Σ⁽ᴸ⁾ and "ntk" is Θ∞⁽ᴸ⁾.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike

from . import _ntkfast
from . import activations as _activations
from ._validation import (
    allocate,
    as_finite_float,
    as_positive_int,
    as_samples,
    check_memory,
    check_out,
)

__all__ = ["Kernel", "limit_kernel", "limit_kernel_diagonal", "SERIES_WARNING"]

#: The former name of ``ntkfast.activations.SERIES_TOL``, from when a series kernel that
#: missed it came with a warning only.
SERIES_WARNING = _activations.SERIES_TOL

_KINDS = ("nngp", "ntk")


class Kernel(NamedTuple):
    """A pair of kernel matrices, each (N1, N2); a kernel not asked for is None."""

    nngp: np.ndarray | None
    ntk: np.ndarray | None


def _parse_get(get: str | Sequence[str]) -> tuple[tuple[str, ...], bool]:
    """Returns (requested kinds, whether a single array is returned)."""
    single = isinstance(get, str)
    kinds = (get,) if isinstance(get, str) else tuple(get)
    for kind in kinds:
        if kind not in _KINDS:
            raise ValueError(f"get must name 'nngp' and/or 'ntk', got {kind!r}")
    if not kinds:
        raise ValueError("get must name at least one of 'nngp', 'ntk'")
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"get names a kernel twice: {kinds}")
    return kinds, single


def check_series(act: _activations.Activation, error: float, terms: int) -> None:
    """ValueError when a Hermite-series kernel's estimated relative error exceeds the
    activation's tolerance (``act.tol``, by default ``activations.SERIES_TOL``): a kernel
    that misses it is never returned silently."""
    if error > act.tol:
        raise ValueError(
            f"the Hermite series (or, for a Custom σ, the quadrature) of activation {act!r} "
            f"reach an estimated relative error of "
            f"{error:.1e} within {terms} terms, above the tolerance {act.tol:.0e}: σ has "
            f"kinks, or the pre-activation variances are very large. Use a smooth σ or "
            f"smaller inputs (a piecewise-linear σ is exact as "
            f"nk.activations.PiecewiseLinear(breaks, slopes, intercepts)), or accept the "
            f"error by making the activation with a looser tol (e.g. Custom(fn, tol=1e-2), "
            f"Tanh(tol=1e-6))"
        )


def core_kernel(depth: int, act: _activations.Activation, beta: float) -> _ntkfast.LimitKernel:
    """The core's kernel object for the validated settings (a MemoryError for a depth whose
    per-layer variances alone, 32 bytes a layer, could never be addressed)."""
    if depth >= 2**58:
        check_memory(32.0 * depth, f"depth {depth} (per-layer variances)")
    pieces = act.core_pieces
    callback = act.core_callback if pieces is None else None
    # A user's σ whose series miss its tolerance is tabulated and integrated instead.
    tol = act.tol if callback is not None else float("inf")
    return _ntkfast.LimitKernel(depth, act.name, act.param, beta, callback, pieces, tol)


@overload
def limit_kernel(
    x1: ArrayLike,
    x2: ArrayLike | None = None,
    *,
    depth: int,
    activation: str | _activations.Activation = "relu",
    beta: float = 0.1,
    get: str,
    out: np.ndarray | Sequence[np.ndarray | None] | None = None,
) -> np.ndarray: ...


@overload
def limit_kernel(
    x1: ArrayLike,
    x2: ArrayLike | None = None,
    *,
    depth: int,
    activation: str | _activations.Activation = "relu",
    beta: float = 0.1,
    get: tuple[str, ...] | list[str] = ("nngp", "ntk"),
    out: np.ndarray | Sequence[np.ndarray | None] | None = None,
) -> Kernel: ...


def limit_kernel(
    x1: ArrayLike,
    x2: ArrayLike | None = None,
    *,
    depth: int,
    activation: str | _activations.Activation = "relu",
    beta: float = 0.1,
    get: str | Sequence[str] = ("nngp", "ntk"),
    out: np.ndarray | Sequence[np.ndarray | None] | None = None,
) -> np.ndarray | Kernel:
    """Infinite-width NNGP kernel Σ⁽ᴸ⁾ and NTK Θ∞⁽ᴸ⁾ between the rows of x1 and x2.

    Parameters
    ----------
    x1 : array (N1, n0)
        Inputs, one per row. float32 and float64 keep their dtype (the result has the same
        dtype); other real dtypes are converted to float64.
    x2 : array (N2, n0) or None
        Second set of inputs; None means x1, in which case only one triangle is computed and
        the diagonal comes from the exact per-sample recursion (bit-for-bit symmetric output).
    depth : int
        L ≥ 1, the number of dense layers (L − 1 nonlinearities).
    activation : str or ntkfast.activations.Activation
        "relu", "leaky_relu", "abs", "erf", "gelu", "sin", "cos", "identity" (closed-form
        duals), "tanh", "sigmoid", "softplus", "silu" (Hermite series, about 1e-12 relative),
        or an object such as ``nk.activations.LeakyReLU(0.2)`` or
        ``nk.activations.Custom(fn, dfn)``. A series that cannot reach the activation's
        tolerance (its ``tol``, by default ``activations.SERIES_TOL`` = 1e-9; a σ with
        kinks, or variances far beyond 25 for tanh) is a ValueError with the estimated error,
        except for a ``Custom`` σ, whose kernel is then computed by quadrature over a table
        of σ (accurate to about 1e-10; fast for rows of equal norms, which share tables in
        the angle between samples, milliseconds per pair otherwise; docs/kernels.md).
    beta : float
        Bias scale β (enters as β²).
    get : "nngp", "ntk" or a tuple of them
        A single name returns that array alone; a tuple returns a :class:`Kernel`.
    out : array, Kernel, tuple or None
        Preallocated C-contiguous writable outputs of shape (N1, N2) and the result dtype
        (for instance ``np.lib.format.open_memmap`` files, for kernels larger than memory).
        An array when ``get`` is a name; otherwise a Kernel or (nngp, ntk) pair with None for
        the kernels not requested. The kernel is written tile by tile; extra memory is
        O(N·(n0 + L)) plus a few 120 × 120 tiles (144 × 144 for float32 kernels of the ReLU
        family) per thread.

    Returns
    -------
    numpy.ndarray (N1, N2) or Kernel

    Examples
    --------
    >>> import numpy as np, ntkfast as nk
    >>> x = np.random.default_rng(0).standard_normal((5, 3))
    >>> k = nk.limit_kernel(x, depth=4, activation="relu", beta=0.1)
    >>> k.ntk.shape, bool(np.allclose(k.ntk, k.ntk.T))
    ((5, 5), True)
    """
    kinds, single = _parse_get(get)
    depth = as_positive_int(depth, "depth")
    beta = as_finite_float(beta, "beta")
    act = _activations.get(activation)
    core = core_kernel(depth, act, beta)
    symmetric = x2 is None or x2 is x1  # before conversion, which makes new objects
    x1 = as_samples(x1, "x1")
    x2 = None if symmetric else as_samples(x2, "x2")
    if x2 is not None:
        if x2.shape[1] != x1.shape[1]:
            raise ValueError(
                f"x1 and x2 must have the same number of features, got {x1.shape[1]} and "
                f"{x2.shape[1]}"
            )
        dtype = np.result_type(x1, x2)
        x1, x2 = x1.astype(dtype, copy=False), x2.astype(dtype, copy=False)
    dtype = x1.dtype
    shape = (x1.shape[0], x1.shape[0] if x2 is None else x2.shape[0])
    inputs = (x1,) if x2 is None else (x1, x2)

    rows = shape[0] + (0 if symmetric else shape[1])
    check_memory(core.working_memory(rows), f"depth {depth} (per-layer variances and tiles)")
    given: dict[str, object]
    if out is None:
        arrays = dict(zip(kinds, allocate(shape, dtype, len(kinds))))
    else:
        if single:
            given = {kinds[0]: out}
        else:
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise TypeError("out must be a Kernel or an (nngp, ntk) pair when get is a tuple")
            given = dict(zip(_KINDS, out))
            extra = [k for k, v in given.items() if v is not None and k not in kinds]
            missing = [k for k in kinds if given[k] is None]
            if extra or missing:
                raise ValueError(
                    f"out must hold arrays for exactly {kinds}; missing {missing}, extra {extra}"
                )
        arrays = {k: check_out(given[k], f"out {k}", shape, dtype, inputs) for k in kinds}
        if len(arrays) == 2 and np.may_share_memory(arrays["nngp"], arrays["ntk"]):
            raise ValueError("out nngp and out ntk must not overlap")

    error, terms = core.compute(
        x1, None if symmetric else x2, arrays.get("nngp"), arrays.get("ntk")
    )
    check_series(act, error, terms)
    if single:
        return arrays[kinds[0]]
    return Kernel(arrays.get("nngp"), arrays.get("ntk"))


@overload
def limit_kernel_diagonal(
    x: ArrayLike,
    *,
    depth: int,
    activation: str | _activations.Activation = "relu",
    beta: float = 0.1,
    get: str,
) -> np.ndarray: ...


@overload
def limit_kernel_diagonal(
    x: ArrayLike,
    *,
    depth: int,
    activation: str | _activations.Activation = "relu",
    beta: float = 0.1,
    get: tuple[str, ...] | list[str] = ("nngp", "ntk"),
) -> Kernel: ...


def limit_kernel_diagonal(
    x: ArrayLike,
    *,
    depth: int,
    activation: str | _activations.Activation = "relu",
    beta: float = 0.1,
    get: str | Sequence[str] = ("nngp", "ntk"),
) -> np.ndarray | Kernel:
    """The diagonals Σ⁽ᴸ⁾(x, x) and Θ∞⁽ᴸ⁾(x, x) of :func:`limit_kernel` for every row of x.

    O(N·(n0 + L)): the per-sample recursion alone, no N × N work. Arguments as for
    :func:`limit_kernel`; returns arrays of shape (N,) in x's dtype (a :class:`Kernel` of
    them, or one array when ``get`` is a name). Equal bit for bit to the diagonal of
    ``limit_kernel(x)``.

    >>> import numpy as np, ntkfast as nk
    >>> x = np.random.default_rng(0).standard_normal((5, 3))
    >>> d = nk.limit_kernel_diagonal(x, depth=3, get="ntk")
    >>> bool(np.array_equal(d, np.diag(nk.limit_kernel(x, depth=3, get="ntk"))))
    True
    """
    kinds, single = _parse_get(get)
    depth = as_positive_int(depth, "depth")
    beta = as_finite_float(beta, "beta")
    core = core_kernel(depth, _activations.get(activation), beta)
    x = as_samples(x, "x")
    check_memory(core.working_memory(x.shape[0]), f"depth {depth} (per-layer variances)")
    nngp, ntk = core.diagonal(x)
    arrays = {"nngp": nngp.astype(x.dtype, copy=False), "ntk": ntk.astype(x.dtype, copy=False)}
    if single:
        return arrays[kinds[0]]
    return Kernel(*(arrays[k] if k in kinds else None for k in _KINDS))
