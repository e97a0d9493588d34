"""Numerical extremes: huge and tiny inputs, deep networks, nearly (anti)parallel rows.

Where the exact kernel is finite in the output dtype the result is finite and accurate;
where it is not, a ValueError says so. Never NaN or inf.
"""

import numpy as np
import pytest

import ntkfast as nk

from conftest import ACTIVATIONS, SERIES

CLOSED = [name for name, _ in ACTIVATIONS]


def base(n=6, n0=5):
    return np.random.default_rng(0).standard_normal((n, n0))


@pytest.mark.parametrize("name", CLOSED)
@pytest.mark.parametrize("scale", [1e-100, 1e-20, 1e20, 1e70])
def test_float64_norms_from_1e_minus_100_to_1e70_stay_finite(name, scale):
    k = nk.limit_kernel(base() * scale, depth=4, activation=name, beta=0.0)
    for a in k:
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, a.T)


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
def test_float32_norms_stay_finite(name, scale):
    x = (base() * scale).astype(np.float32)
    k = nk.limit_kernel(x, depth=4, activation=name, beta=0.0)
    for a in k:
        assert a.dtype == np.float32 and np.isfinite(a).all()


def test_overflow_is_an_error_naming_the_limit():
    with pytest.raises(ValueError, match="limit 1e30 for this dtype"):
        nk.limit_kernel((base() * 1e20).astype(np.float32), depth=2)
    with pytest.raises(ValueError, match="limit 1e150 for this dtype"):
        nk.limit_kernel(base() * 1e100, depth=2)
    with pytest.raises(ValueError, match="beyond the 1e4"):
        nk.limit_kernel(base() * 1e3, depth=2, activation="tanh")


@pytest.mark.parametrize("name", CLOSED + SERIES)
def test_depth_200(name):
    k = nk.limit_kernel(base(), depth=200, activation=name, beta=0.1)
    for a in k:
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, a.T)
        assert np.linalg.eigvalsh(a).min() >= -1e-9 * np.abs(a).max()


@pytest.mark.parametrize("name", CLOSED + SERIES)
def test_nearly_parallel_and_antiparallel_rows(name):
    """Correlations within 1e-15 of ±1 stay in [−1, 1]: no NaN from √(1 − ρ²) or the series."""
    x = base(2)
    rows = [x[0], x[0] * (1 + 1e-15), x[0] + 1e-13 * x[1], -x[0], -x[0] * (1 - 1e-15)]
    k = nk.limit_kernel(np.array(rows), np.array(rows[::-1]), depth=4, activation=name)
    for a in k:
        assert np.isfinite(a).all()
    diag = nk.limit_kernel_diagonal(np.array(rows), depth=4, activation=name)
    for a, d in zip(k, diag):
        bound = np.sqrt(np.outer(d, d[::-1]))
        assert (np.abs(a) <= bound * (1 + 1e-9)).all()
