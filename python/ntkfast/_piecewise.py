"""Piecewise-linear σ: their evaluation, and recognising one in a user's function.

A piecewise-linear σ is (breaks (K,), slopes (K + 1,), intercepts (K + 1,)): piece k,
between breaks k − 1 and k, is ``intercepts[k] + slopes[k] * x``, and a break belongs to the
piece on its right. Its kernels are exact in the core (``rust/src/pieces.rs``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: (breaks (K,), slopes (K + 1,), intercepts (K + 1,)) of a piecewise-linear σ.
Pieces = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]

#: The most breaks a piecewise-linear σ may have (the work per pair grows as their square).
MAX_BREAKS = 32
#: A Custom σ is read on |x| ≤ READ at GRID + 1 points to recognise it as piecewise linear.
READ = 1e6
GRID = 2**17


def as_lists(pieces: Pieces) -> tuple[list[float], list[float], list[float]]:
    """The pieces as lists of floats (what the core takes)."""
    t, m, c = (np.asarray(p, dtype=np.float64).tolist() for p in pieces)
    return t, m, c


def evaluate(pieces: Pieces, x: ArrayLike) -> NDArray[np.float64]:
    """σ(x) of (breaks, slopes, intercepts); a break belongs to the piece on its right."""
    t, m, c = pieces
    points = np.asarray(x, dtype=np.float64)
    k = np.searchsorted(t, points, side="right")
    return np.asarray(c[k] + m[k] * points, dtype=np.float64)


def slope(pieces: Pieces, x: ArrayLike) -> NDArray[np.float64]:
    """σ'(x), the slope of x's piece."""
    t, m, _ = pieces
    return np.asarray(m[np.searchsorted(t, np.asarray(x, dtype=np.float64), side="right")])


def recognise(
    sigma: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    dsigma: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None,
) -> Pieces | None:
    """(breaks, slopes, intercepts) of σ if it is piecewise linear, else None (see
    :meth:`ntkfast.activations.Custom.pieces` for the procedure and its limits). ``sigma``
    and ``dsigma`` (σ', or None) are the user's callables, validated: they raise
    ValueError for values that are not finite."""
    u = np.linspace(-np.arcsinh(READ), np.arcsinh(READ), GRID + 1)
    x = np.sinh(u)
    x[GRID // 2] = 0.0
    y = sigma(x)
    dx = np.diff(x)
    slope = np.diff(y) / dx
    # Tolerances are relative to σ's own size where pre-activations live (|x| ≤ 10), so
    # that 1e-11·tanh is not taken for a line nor 1e-10·ReLU refused.
    size = _size(x, y)
    # Two neighbouring cells have equal slopes up to the rounding of the values.
    noise = 8 * np.finfo(np.float64).eps * (np.abs(y[:-1]) + np.abs(y[1:])) / dx
    scale = size + np.maximum(np.abs(slope[:-1]), np.abs(slope[1:]))
    same = np.abs(np.diff(slope)) <= 1e-9 * scale + noise[:-1] + noise[1:]
    # Runs of cells joined by `same`; pieces are runs of at least three cells (the two
    # cells beside a jump at a grid point have equal slopes, too).
    starts = np.flatnonzero(np.concatenate(([True], ~same)))
    ends = np.concatenate((starts[1:], [slope.size]))  # exclusive, in cells
    long = (ends - starts) >= 3
    if not long.any() or long.sum() > MAX_BREAKS + 1:
        return None
    first, last = starts[long], ends[long]  # grid points first … last
    m = (y[last] - y[first]) / (x[last] - x[first])
    anchor = np.where(np.abs(x[first]) < np.abs(x[last]), first, last)
    inner = (first <= GRID // 2) & (GRID // 2 <= last)
    anchor = np.where(inner, GRID // 2, anchor)
    c = y[anchor] - m * x[anchor]
    breaks = _place_breaks(sigma, x[last[:-1]], x[first[1:]], (m[:-1], c[:-1]), (m[1:], c[1:]))
    if breaks.size and np.any(np.diff(breaks) <= 0):
        return None
    pieces = (breaks, m, c)
    return pieces if _matches(sigma, dsigma, pieces, size) else None


def _size(x: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    """max |σ| on |x| ≤ 10 (the smallest normal double for σ ≡ 0 there)."""
    core = np.abs(y[np.abs(x) <= 10.0])
    return max(float(core.max()) if core.size else 0.0, float(np.finfo(np.float64).tiny))


def _place_breaks(
    sigma: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    lo: NDArray[np.float64],
    hi: NDArray[np.float64],
    left: tuple[NDArray[np.float64], NDArray[np.float64]],
    right: tuple[NDArray[np.float64], NDArray[np.float64]],
) -> NDArray[np.float64]:
    """The break between each pair of neighbouring lines, known to lie in [lo, hi]: where
    the lines cross when that is inside (a kink), else by bisection on which line σ
    follows (a jump)."""
    (m0, c0), (m1, c1) = left, right
    with np.errstate(divide="ignore", invalid="ignore"):
        cross = (c1 - c0) / (m0 - m1)
    slack = 1e-12 * (1.0 + np.abs(lo) + np.abs(hi))
    kink = np.isfinite(cross) & (cross >= lo - slack) & (cross <= hi + slack)
    a, b = lo.copy(), hi.copy()
    for _ in range(80):
        if not np.any((b > a) & ~kink):
            break
        mid = 0.5 * (a + b)
        f = sigma(mid)
        on_left = np.abs(f - (c0 + m0 * mid)) <= np.abs(f - (c1 + m1 * mid))
        a = np.where(on_left, mid, a)
        b = np.where(on_left, b, mid)
    breaks = np.where(kink, cross, b)
    # A jump where σ takes a third value (np.sign(0) = 0) leaves the bisection at the
    # edge of its bracket, e.g. 1e-28 for 0; round to 12 digits what is that close to
    # a rounder number (the break moves by at most 1e-12 of its size).
    round_ = np.round(breaks, 12)
    near = np.abs(breaks - round_) <= 1e-12 * (1.0 + np.abs(round_))
    return np.where(near, round_, breaks)


def _matches(
    sigma: Callable[[NDArray[np.float64]], NDArray[np.float64]],
    dsigma: Callable[[NDArray[np.float64]], NDArray[np.float64]] | None,
    pieces: Pieces,
    size: float,
) -> bool:
    """Whether the fit equals fn (and dfn, when given) to 1e-10 relative away from the
    breaks, on the grid's midpoints, random points and points beside each break."""
    t = pieces[0]
    u = np.linspace(-np.arcsinh(READ), np.arcsinh(READ), GRID + 1)
    x = np.sinh(u)
    rng = np.random.default_rng(20181203)
    near = np.concatenate([t + d * (1.0 + np.abs(t)) for d in (-1e-3, -1e-7, 1e-7, 1e-3)])
    x = np.concatenate((x, 0.5 * (x[:-1] + x[1:]), rng.uniform(-30, 30, 2**14), near))
    if t.size:
        k = np.searchsorted(t, x)
        below, above = t[np.maximum(k - 1, 0)], t[np.minimum(k, t.size - 1)]
        gap = np.minimum(np.abs(x - below), np.abs(x - above))
        x = x[gap > 1e-9 * (1.0 + np.abs(x))]
    y = sigma(x)
    if not np.all(np.abs(y - evaluate(pieces, x)) <= 1e-10 * (size + np.abs(y))):
        return False
    if dsigma is None:
        return True
    dy = dsigma(x)
    slopes = slope(pieces, x)
    tol = 1e-8 * (np.abs(pieces[1]).max() + np.abs(slopes))
    return bool(np.all(np.abs(dy - slopes) <= tol))
