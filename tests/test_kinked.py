"""User activations with kinks that are not piecewise linear (ELU, ReLU², hard-swish, a
clipped tanh, |x|^1.5): their Hermite series cannot reach the tolerance, so the core
tabulates σ in Chebyshev pieces, finds the kinks and integrates the duals by quadrature split
along them (``rust/src/tabulated.rs``, ``rust/src/kinked.rs``).

The reference is independent of the core: nested SciPy ``quad`` at 1e-13 split at the kinks
(``reference.kinked_kernels``), with σ and σ' written as scalar functions here, and the
closed form of |x| + ¼ sin x in ``test_series.py``.
"""

import math

import numpy as np
import pytest

import ntkfast as nk
from ntkfast.activations import Custom

from conftest import assert_same_bits_on_1_and_2_threads, ntk_distances
from reference import kinked_kernels

CLIP = math.atanh(0.5)  # where 2 tanh x reaches ±1

#: name: (σ and σ' vectorised for Custom, σ and σ' as scalars for the reference, kinks).
ACTIVATIONS = {
    "elu": (
        lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))),
        lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0))),
        lambda u: u if u > 0 else math.expm1(u),
        lambda u: 1.0 if u > 0 else math.exp(u),
        [0.0],
    ),
    "relu_squared": (
        lambda z: np.maximum(z, 0.0) ** 2,
        lambda z: 2.0 * np.maximum(z, 0.0),
        lambda u: max(u, 0.0) ** 2,
        lambda u: 2.0 * max(u, 0.0),
        [0.0],
    ),
    "hard_swish": (
        lambda z: z * np.clip(z + 3.0, 0.0, 6.0) / 6.0,
        lambda z: np.where(z < -3, 0.0, np.where(z > 3, 1.0, (2.0 * z + 3.0) / 6.0)),
        lambda u: u * min(max(u + 3.0, 0.0), 6.0) / 6.0,
        lambda u: 0.0 if u < -3 else (1.0 if u > 3 else (2.0 * u + 3.0) / 6.0),
        [-3.0, 3.0],
    ),
    "clipped_tanh": (
        lambda z: np.clip(2.0 * np.tanh(z), -1.0, 1.0),
        lambda z: np.where(np.abs(z) < CLIP, 2.0 / np.cosh(z) ** 2, 0.0),
        lambda u: max(-1.0, min(1.0, 2.0 * math.tanh(u))),
        lambda u: 2.0 / math.cosh(u) ** 2 if abs(u) < CLIP else 0.0,
        [-CLIP, CLIP],
    ),
    "abs_1.5": (
        lambda z: np.abs(z) ** 1.5,
        lambda z: 1.5 * np.sign(z) * np.sqrt(np.abs(z)),
        lambda u: abs(u) ** 1.5,
        lambda u: math.copysign(1.5 * math.sqrt(abs(u)), u),
        [0.0],
    ),
}


def custom(name, with_derivative=True):
    fn, dfn, *_ = ACTIVATIONS[name]
    return Custom(fn, dfn if with_derivative else None, name=name)


def spread_inputs():
    """Rows whose first-layer variances are 1e-2, 2 and 25 (β = 0), with a copy (ρ = 1) and
    a negated copy (ρ = −1) of the second."""
    base = np.array([[0.1, 0.1, 0.1], [2.0, -1.0, 1.0], [5.0, 5.0, 5.0]])
    return np.vstack([base, base[1], -base[1]])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_depth_4_kernels_match_adaptive_quadrature(name):
    """Σ and Θ∞ at depth 4 within 1e-9 of the kernel's scale √(K_ii K_jj) of the reference,
    over first-layer variances 1e-2 … 25 with ρ = ±1 (the issue's bar is 1e-6), where the
    series alone miss the default tolerance (a ValueError before)."""
    _, _, sigma, dsigma, kinks = ACTIVATIONS[name]
    x = spread_inputs()
    # ReLU² squares the variances each layer: at depth 4 they would span 3e-8 … 1e6. The
    # reference for |x|^1.5 (a singular σ'') is slow: one layer of it.
    depth = {"relu_squared": 3, "abs_1.5": 2}.get(name, 4)
    got = nk.limit_kernel(x, depth=depth, activation=custom(name), beta=0.0)
    want = kinked_kernels(sigma, dsigma, kinks, x, depth=depth, beta=0.0)
    for g, w in zip(got, want):
        scale = np.sqrt(np.outer(np.diag(w), np.diag(w)))
        assert (np.abs(g - w) / scale).max() <= 1e-9


def sphere_inputs(n=72, n0=6, radius=3.0):
    """n rows of norm ``radius`` (one variance per layer: the kernel reads correlation tables),
    rows 1 and 2 a copy and a negated copy of row 0 (ρ = ±1)."""
    x = np.random.default_rng(11).standard_normal((n, n0))
    x[:, :2] += 2.0  # correlated rows, as in image data
    x *= radius / np.linalg.norm(x, axis=1, keepdims=True)
    x[1], x[2] = x[0], -x[0]
    return x


@pytest.mark.parametrize("name", ["elu", "clipped_tanh"])
def test_correlation_tables_match_the_reference_and_the_pairwise_quadrature(name, restore_threads):
    """Inputs of equal norms have one variance per layer, and ≥ 2048 pairs read Σ(θ) and
    Σ̇(θ) from tables (``rust/src/correlation_table.rs``): the kernel's first rows within 1e-9
    of the adaptive-quadrature reference, all of them within 1e-10 of the pairwise quadrature
    (K(X[:4], X) has too few pairs for tables), and the same bits on 1 and 2 threads."""
    _, _, sigma, dsigma, kinks = ACTIVATIONS[name]
    x, act = sphere_inputs(), custom(name)
    got = nk.limit_kernel(x, depth=4, activation=act, beta=0.1)
    pairwise = nk.limit_kernel(x[:4], x, depth=4, activation=act, beta=0.1)
    want = kinked_kernels(sigma, dsigma, kinks, x[:4], depth=4, beta=0.1)
    for g, p, w in zip(got, pairwise, want):
        diag = np.diag(g)
        scale = np.sqrt(np.outer(diag, diag))
        assert (np.abs(g[:4, :4] - w) / scale[:4, :4]).max() <= 1e-9
        assert (np.abs(g[:4] - p) / scale[:4]).max() <= 1e-10
    assert_same_bits_on_1_and_2_threads(x, act, depth=4)


def test_without_dfn_the_kernel_takes_the_tables_derivative():
    """σ' comes from the table of σ (its derivative almost everywhere), so a kinked σ given
    without dfn has the same kernel, not one smeared by finite differences at the kinks."""
    x = np.random.default_rng(1).standard_normal((8, 4))
    for name in ("elu", "hard_swish"):
        with_dfn = nk.limit_kernel(x, depth=3, activation=custom(name), beta=0.1, get="ntk")
        without = nk.limit_kernel(
            x, depth=3, activation=custom(name, with_derivative=False), beta=0.1, get="ntk"
        )
        np.testing.assert_allclose(without, with_dfn, rtol=1e-10)


def test_identities(restore_threads):
    """K(X) = K(X, X) off the diagonal, symmetry, positive semi-definiteness, the diagonal
    function, and the same bits on 1 and 2 threads."""
    x = np.random.default_rng(2).standard_normal((8, 5))
    act = custom("hard_swish")
    k = nk.limit_kernel(x, depth=3, activation=act, beta=0.1)
    cross = nk.limit_kernel(x, x.copy(), depth=3, activation=act, beta=0.1)
    for a, b in zip(k, cross):
        np.testing.assert_array_equal(a, a.T)
        scale = np.sqrt(np.outer(np.diag(a), np.diag(a)))
        assert (np.abs(a - b) / scale).max() <= 1e-10
        assert np.linalg.eigvalsh(a).min() >= -1e-10 * np.abs(a).max()
    diag = nk.limit_kernel_diagonal(x, depth=3, activation=act, beta=0.1)
    np.testing.assert_array_equal(diag.ntk, np.diag(k.ntk))
    assert_same_bits_on_1_and_2_threads(x, act)


def test_every_route_takes_the_quadrature():
    """The matrix-free product and float32 outputs use the same duals, with and without
    correlation tables."""
    act = custom("elu")
    x = np.random.default_rng(3).standard_normal((10, 5))
    for inputs in (x, sphere_inputs()):
        full = nk.limit_kernel(inputs, depth=3, activation=act, beta=0.1, get="ntk")
        v = np.random.default_rng(4).standard_normal((len(inputs), 2))
        op = nk.KernelOperator(inputs, depth=3, activation=act, beta=0.1)
        np.testing.assert_allclose(op @ v, full @ v, rtol=1e-10, atol=1e-10)
    single = nk.limit_kernel(x.astype(np.float32), depth=3, activation=act, beta=0.1, get="ntk")
    full = nk.limit_kernel(x, depth=3, activation=act, beta=0.1, get="ntk")
    np.testing.assert_allclose(single, full, rtol=2e-5, atol=2e-5 * np.abs(full).max())


def test_the_operator_prepares_once_and_keeps_its_own_inputs():
    """KernelOperator with a kinked σ: the diagonals and tables made at the first product
    serve the later ones (σ is not called again, the same bits), and changing the caller's
    array afterwards does not change the operator."""
    fn, dfn, *_ = ACTIVATIONS["elu"]
    calls = []

    def counted(z):
        calls.append(len(z))
        return fn(z)

    act = Custom(counted, dfn, name="elu")
    x = sphere_inputs()
    full = nk.limit_kernel(x, depth=3, activation=act, beta=0.1, get="ntk")
    v = np.random.default_rng(4).standard_normal((len(x), 3))
    op = nk.KernelOperator(x, depth=3, activation=act, beta=0.1)
    calls.clear()
    first = op @ v
    assert calls
    np.testing.assert_allclose(first, full @ v, rtol=1e-10, atol=1e-10)
    calls.clear()
    x[:] = 0.0
    assert np.array_equal(op @ v, first) and not calls
    # Rectangular: the adjoint is kept too, and prepares once.
    x, z = sphere_inputs(), sphere_inputs()[::-1] * 1.0
    rect = nk.KernelOperator(x, z, depth=3, activation=act, beta=0.1)
    assert rect.T is rect.T and rect.H is rect.T
    want = nk.limit_kernel(z, x, depth=3, activation=act, beta=0.1, get="ntk") @ v
    np.testing.assert_allclose(rect.rmatmat(v), want, rtol=1e-10, atol=1e-10)
    calls.clear()
    assert np.array_equal(rect.rmatmat(v), rect.T @ v) and not calls
    # A smooth user σ (through its series) keeps nothing and copies nothing.
    smooth = nk.KernelOperator(x, depth=3, activation=Custom(np.arctan), beta=0.1)
    smooth @ v
    assert smooth._prepared is None and np.shares_memory(smooth.x, x)


def test_theorem_1_for_kinked_activations():
    """The empirical NTK of finite networks approaches the quadrature's Θ∞ as the width
    grows, for a σ with a kink in σ'' (ELU) and one with kinks in σ' (clipped tanh)."""
    x = np.random.default_rng(9).standard_normal((6, 4))
    for name in ("elu", "clipped_tanh"):
        act = custom(name)
        limit = nk.limit_kernel(x, depth=3, activation=act, beta=0.1, get="ntk")
        errors = ntk_distances(act, x, limit)
        assert errors[1] < 0.1 and errors[1] < errors[0] / 3, errors


def test_errors_of_the_callable_are_reported():
    """A σ that raises or turns non-finite where the table reads it is a ValueError naming
    the activation; the series' tolerance still applies to an explicit looser tol."""
    x = np.random.default_rng(5).standard_normal((8, 3))

    def fails_far_out(z):
        if np.abs(z).max() > 5:
            raise RuntimeError("out of range")
        return np.abs(z) ** 1.5

    with pytest.raises(ValueError, match="fails_far_out.*out of range"):
        nk.limit_kernel(x, depth=3, activation=Custom(fails_far_out), beta=0.1)
    nan_far_out = Custom(lambda z: np.where(np.abs(z) > 5, np.nan, np.abs(z) ** 1.5))
    with pytest.raises(ValueError, match="finite"):
        nk.limit_kernel(x, depth=3, activation=nan_far_out, beta=0.1)
