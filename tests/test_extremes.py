"""Numerical extremes: huge and tiny inputs, deep networks, nearly (anti)parallel rows.

Where the exact kernel is finite in the output dtype the result is finite and matches the
reference (tests/reference.py, whose dual formulas avoid products of three variances and
overflowing exponentials); where it is not, a ValueError says so. Never NaN or inf.
"""

import numpy as np
import pytest

import ntkfast as nk

import reference
from conftest import ACTIVATIONS, SERIES

CLOSED = [name for name, _ in ACTIVATIONS]
#: σ(cx) = c σ(x): with β = 0 the kernels of cx are c² times those of x.
HOMOGENEOUS = {"relu", "leaky_relu", "abs", "identity"}
#: float32's smallest subnormal number: the spacing of results below 1.2e-38.
TINY32 = 2.0**-149


def base(n=6, n0=5):
    return np.random.default_rng(0).standard_normal((n, n0))


def want(x, name, depth, beta=0.1):
    """(nngp, ntk) of the reference for the named activation with its default parameter."""
    param = nk.activations.get(name).param
    return reference.limit_kernel(x, depth=depth, activation=name, beta=beta, param=param)[:2]


def scaled_error(got, ref):
    """|got − ref| / √(K(x,x) K(x',x')), without forming products that underflow."""
    root = np.sqrt(np.diag(ref))
    return np.abs(got - ref) / np.outer(root, root)


@pytest.mark.parametrize("name", CLOSED)
@pytest.mark.parametrize("scale", [1e-100, 1e-20, 1e20, 1e70])
def test_float64_norms_from_1e_minus_100_to_1e70(name, scale):
    """Finite, symmetric and within 1e-12 of the scale of the reference (measured ≤ 7e-16):
    for homogeneous σ, c² times the reference at scale 1 (its products of variances would
    underflow at 1e-100); for the others the reference at the same scale."""
    k = nk.limit_kernel(base() * scale, depth=4, activation=name, beta=0.0)
    if name in HOMOGENEOUS:
        refs = [r * scale**2 for r in want(base(), name, depth=4, beta=0.0)]
    else:
        refs = want(base() * scale, name, depth=4, beta=0.0)
    for a, ref in zip(k, refs):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, a.T)
        assert scaled_error(a, ref).max() <= 1e-12


@pytest.mark.parametrize("scale", [1e-100, 1e-20, 1e20, 1e70])
def test_relu_is_positively_homogeneous_at_any_scale(scale):
    """With β = 0, K(cx, cx') = c² K(x, x') for ReLU: checks accuracy, not only finiteness."""
    x = base()
    want = nk.limit_kernel(x, depth=4, activation="relu", beta=0.0)
    got = nk.limit_kernel(x * scale, depth=4, activation="relu", beta=0.0)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g / scale**2, w, rtol=1e-12)


def test_gelu_tends_to_relu_for_huge_inputs():
    """x Φ(x) ≈ max(0, x) for |x| ≫ 1: the GELU dual must not overflow on the way."""
    x = base()
    relu = nk.limit_kernel(x, depth=3, activation="relu", beta=0.0)
    gelu = nk.limit_kernel(x * 1e70, depth=3, activation="gelu", beta=0.0)
    for g, r in zip(gelu, relu):
        np.testing.assert_allclose(g / 1e140, r, rtol=1e-9)


@pytest.mark.parametrize("name", CLOSED)
@pytest.mark.parametrize("scale", [1e-20, 1e-5, 1e12])
def test_float32_norms(name, scale):
    """float32 kernels, finite and within 1e-4 of the scale of the float64 reference on the
    same rounded inputs (measured ≤ 2e-6). At 1e-20 the kernels are subnormal floats (below
    1.2e-38), whose spacing is 2⁻¹⁴⁹ ≈ 1.4e-45: there they are held to 8 of those spacings
    (measured 2.3)."""
    x = (base() * scale).astype(np.float32)
    k = nk.limit_kernel(x, depth=4, activation=name, beta=0.0)
    refs = want(x.astype(np.float64), name, depth=4, beta=0.0)
    for a, ref in zip(k, refs):
        assert a.dtype == np.float32 and np.isfinite(a).all()
        root = np.sqrt(np.diag(ref))
        err = np.abs(a.astype(np.float64) - ref)
        assert (err <= 1e-4 * np.outer(root, root) + 8 * TINY32).all()


def test_overflow_is_an_error_naming_the_limit():
    with pytest.raises(ValueError, match="limit 1e30 for this dtype"):
        nk.limit_kernel((base() * 1e20).astype(np.float32), depth=2)
    with pytest.raises(ValueError, match="limit 1e150 for this dtype"):
        nk.limit_kernel(base() * 1e100, depth=2)
    with pytest.raises(ValueError, match="beyond the 1e4"):
        nk.limit_kernel(base() * 1e3, depth=2, activation="tanh")


@pytest.mark.parametrize("dtype,limit", [(np.float64, 1e150), (np.float32, 1e30)])
def test_the_overflow_limit_is_the_documented_one(dtype, limit):
    """Rows of mean square 0.999 × the dtype's limit give finite, accurate kernels (ReLU,
    β = 0: the mean square is the largest variance of any layer); 1.001 × the limit is a
    ValueError naming it, for K(X), K(X, X') and the diagonal alike."""
    x0 = base(3, 4)
    unit = x0 / np.sqrt(np.mean(x0**2, axis=1, keepdims=True))  # rows of mean square 1
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for factor in (0.999, 1.001):
        x = (unit * np.sqrt(factor * limit)).astype(dtype)
        nngp, ntk = want(x.astype(np.float64), "relu", depth=3, beta=0.0)
        cases = [
            (nk.limit_kernel, (x,), (nngp, ntk)),
            (nk.limit_kernel, (x, x[:2].copy()), (nngp[:, :2], ntk[:, :2])),
            (nk.limit_kernel_diagonal, (x,), (np.diag(nngp), np.diag(ntk))),
        ]
        for fn, args, refs in cases:
            if factor > 1:
                with pytest.raises(ValueError, match=f"limit {limit:.0e}".replace("e+", "e")):
                    fn(*args, depth=3, beta=0.0)
                continue
            for a, ref in zip(fn(*args, depth=3, beta=0.0), refs):
                assert a.dtype == dtype and np.isfinite(a).all()
                assert (np.abs(a - ref) <= tol * np.abs(ref).max()).all()


@pytest.mark.parametrize("name", CLOSED + SERIES)
def test_depth_200(name):
    """Finite, symmetric, positive semi-definite; for the closed forms also the reference's
    values. After 200 layers every pair is within rounding of ρ = 1, so the bound is the one
    that holds near ±1, 1e-7 of the scale (measured ≤ 8e-13). The series reference would
    take minutes at this depth: depths up to 6 are compared in tests/test_series.py."""
    k = nk.limit_kernel(base(), depth=200, activation=name, beta=0.1)
    refs = want(base(), name, depth=200) if name in CLOSED else (None, None)
    for a, ref in zip(k, refs):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, a.T)
        assert np.linalg.eigvalsh(a).min() >= -1e-9 * np.abs(a).max()
        if ref is not None:
            assert scaled_error(a, ref).max() <= 1e-7


@pytest.mark.parametrize("name", CLOSED + SERIES)
def test_nearly_parallel_and_antiparallel_rows(name):
    """Correlations within 1e-15 of ±1 stay in [−1, 1]: no NaN from √(1 − ρ²) or the series,
    every entry within the Cauchy–Schwarz bound, and the reference's values (1e-12 of the
    scale for the closed forms, 1e-11 for the series; measured 9e-16 and 1.7e-12). The rows
    are parallel up to rounding (1 − |ρ| ≤ 1e-26), where taking ρ = ±1 is exact to 1e-13."""
    x = base(2)
    rows = [x[0], x[0] * (1 + 1e-15), x[0] + 1e-13 * x[1], -x[0], -x[0] * (1 - 1e-15)]
    k = nk.limit_kernel(np.array(rows), np.array(rows[::-1]), depth=4, activation=name)
    for a in k:
        assert np.isfinite(a).all()
    diag = nk.limit_kernel_diagonal(np.array(rows), depth=4, activation=name)
    param = nk.activations.get(name).param
    refs = reference.limit_kernel(
        np.array(rows), np.array(rows[::-1]), depth=4, activation=name, param=param
    )
    tol = 1e-11 if name in SERIES else 1e-12
    for a, d, ref in zip(k, diag, refs):
        bound = np.sqrt(np.outer(d, d[::-1]))
        assert (np.abs(a) <= bound * (1 + 1e-9)).all()
        assert (np.abs(a - ref) <= tol * bound).all()
