"""Activations without a closed-form dual (tanh, sigmoid, softplus, silu, Custom).

The core expands σ and σ' in Hermite series (``rust/src/hermite.rs``). The reference here is
independent: a nested tensor-product Gauss–Hermite rule with up to 3000 nodes per dimension
(``reference.quadrature_dual``, within about 1e-13 of the scale of a 5000-node rule), run
through a NumPy version of the recursion.

The series are summed to about 1e-12 of the kernel's scale (the README's "~1e-12"; measured
≤ 2.3e-12): the tests hold them to 1e-11 of the scale.
"""

import warnings

import numpy as np
import pytest

import ntkfast as nk

import reference
from conftest import SERIES, assert_same_bits_on_1_and_2_threads, make_inputs


def on_circle(q, angles):
    """Rows √(2q)(cos γ, sin γ): with n0 = 2 and β = 0, Σ⁽¹⁾ = √(q q') cos(γ − γ')."""
    angles = np.asarray(angles, dtype=float)
    return np.sqrt(2 * q) * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def scaled_error(got, want, scale):
    return np.abs(got - want) / scale


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("q", [0.01, 0.3, 1.0, 4.0, 25.0])
def test_one_layer_matches_quadrature(name, q):
    """Σ and Σ̇ for variances q and 0.6 q, ρ from −1 to 1: ≤ 1e-11 of the kernel's scale and
    ≤ 1e-9 of the value (measured 2.3e-12 and 4.3e-11)."""
    rhos = np.array([-1.0, -0.9, 0.0, 0.5, 0.99, 0.999999, 1.0])
    x1 = on_circle(q, [0.0])
    x2 = on_circle(0.6 * q, np.arccos(rhos))
    k = nk.limit_kernel(x1, x2, depth=2, activation=name, beta=0.0)
    q12 = (x1 @ x2.T / 2)[0]
    s, sdot = reference.quadrature_dual(name, q, 0.6 * q, q12)
    s_diag, sdot_diag = reference.quadrature_dual(name, [q, 0.6 * q], [q, 0.6 * q], [q, 0.6 * q])
    scale, scale_dot = np.sqrt(np.prod(s_diag)), np.sqrt(np.prod(sdot_diag))
    sdot_got = (k.ntk[0] - k.nngp[0]) / np.where(q12 == 0, 1.0, q12)
    assert scaled_error(k.nngp[0], s, scale).max() <= 1e-11
    assert scaled_error(k.ntk[0], q12 * sdot + s, scale).max() <= 1e-11
    fine = np.abs(q12) > 1e-3 * q
    assert scaled_error(sdot_got, sdot, scale_dot)[fine].max() <= 1e-8
    big = np.abs(s) > 1e-3 * scale
    assert (np.abs(k.nngp[0] - s) / np.abs(s))[big].max() <= 1e-9


@pytest.mark.parametrize("name", SERIES)
def test_cross_kernel_of_very_different_variances(name):
    """x1 at q = 25 against x2 at q = 0.25: the two sets' series need very different numbers
    of terms, and every pair must still get the accuracy of the longer one."""
    rhos = np.array([-1.0, -0.3, 0.4, 0.999, 1.0])
    x1 = on_circle(25.0, [0.0])
    x2 = on_circle(0.25, np.arccos(rhos))
    k = nk.limit_kernel(x1, x2, depth=2, activation=name, beta=0.0)
    q12 = (x1 @ x2.T / 2)[0]
    s, sdot = reference.quadrature_dual(name, 25.0, 0.25, q12)
    s_diag, _ = reference.quadrature_dual(name, [25.0, 0.25], [25.0, 0.25], [25.0, 0.25])
    scale = np.sqrt(np.prod(s_diag))
    assert scaled_error(k.nngp[0], s, scale).max() <= 1e-11
    assert scaled_error(k.ntk[0], q12 * sdot + s, scale).max() <= 1e-11


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize("depth", [2, 4, 6])
@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0])
def test_deep_kernels_match_the_quadrature_recursion(name, depth, beta):
    """Depths 2–6: ≤ 1e-11 of the scale and 1e-9 of the value (measured 1.2e-12 for both)."""
    x = make_inputs(4, 5, seed=depth, spread=(0.3, 2.0))
    k = nk.limit_kernel(x, depth=depth, activation=name, beta=beta)
    s, t, _ = reference.limit_kernel(x, depth=depth, activation=name, beta=beta)
    for got, want in ((k.nngp, s), (k.ntk, t)):
        d = np.sqrt(np.outer(np.diag(want), np.diag(want)))
        assert scaled_error(got, want, d).max() <= 1e-11
        assert (np.abs(got - want) / np.abs(want)).max() <= 1e-9


@pytest.mark.parametrize("name", SERIES)
def test_identities_threads_and_float32(name, restore_threads):
    """Symmetric, PSD, K(X) == K(X, X), the same bits for 1 and 2 threads, float32 ≤ 1e-4.

    K(X, X) sums the series up to ρ = 1 on its diagonal where K(X) takes the exact per-sample
    integrals: they agree to the series' tolerance (1e-12 of the scale per layer)."""
    x = make_inputs(300, 12, seed=3)
    nk.set_num_threads(1)
    one = nk.limit_kernel(x, depth=4, activation=name, beta=0.2)
    nk.set_num_threads(2)
    two = nk.limit_kernel(x, depth=4, activation=name, beta=0.2)
    cross = nk.limit_kernel(x, x.copy(), depth=4, activation=name, beta=0.2)
    for a, b, c in zip(one, two, cross):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, a.T)
        assert np.abs(c - a).max() <= 1e-10 * np.abs(a).max()
        assert np.linalg.eigvalsh(a).min() >= -1e-10 * np.abs(a).max()
    single = nk.limit_kernel(x.astype(np.float32), depth=4, activation=name, beta=0.2)
    for a, b in zip(single, one):
        assert a.dtype == np.float32
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()


def test_price_identity_through_the_api():
    """Σ̇ = ∂Σ/∂q12: a central difference of Σ along a rotation of x' against Σ̇."""
    q1, q2, gamma, h = 1.3, 0.7, 0.9, 1e-4
    x1 = on_circle(q1, [0.0])
    x2 = on_circle(q2, [gamma - h, gamma, gamma + h])
    scale = np.sqrt(q1 * q2)
    for name in SERIES:
        k = nk.limit_kernel(x1, x2, depth=2, activation=name, beta=0.0)
        q12 = scale * np.cos(gamma)
        sdot = (k.ntk[0, 1] - k.nngp[0, 1]) / q12
        dsigma_dgamma = (k.nngp[0, 2] - k.nngp[0, 0]) / (2 * h)
        fd = dsigma_dgamma / (-scale * np.sin(gamma))
        assert abs(fd - sdot) <= 1e-7 * abs(sdot), name


def test_custom_equals_builtin():
    x = make_inputs(40, 5, seed=7)
    exact = nk.activations.Custom(np.tanh, lambda z: 1 - np.tanh(z) ** 2, name="tanh")
    numeric = nk.activations.Custom(np.tanh)  # σ' by finite differences
    want = nk.limit_kernel(x, depth=4, activation="tanh", beta=0.1)
    for act, tol in ((exact, 1e-12), (numeric, 1e-9)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = nk.limit_kernel(x, depth=4, activation=act, beta=0.1)
        for a, b in zip(got, want):
            assert np.abs(a - b).max() <= tol * np.abs(b).max()
    net = nk.MLP([5, 1, 1, 1, 1], exact, beta=0.1)
    np.testing.assert_allclose(net.limit_kernel(x).ntk, want.ntk, rtol=1e-12)


def test_custom_does_not_depend_on_the_thread_count(restore_threads):
    x = make_inputs(200, 5, seed=4)
    act = nk.activations.Custom(np.tanh)
    assert_same_bits_on_1_and_2_threads(x, act)


def test_custom_is_called_per_layer_not_per_pair():
    calls = []

    def fn(z):
        calls.append(z.size)
        return np.sin(z) + 0.5 * z

    x = make_inputs(300, 4, seed=2)  # 45 150 pairs
    act = nk.activations.Custom(fn, lambda z: np.cos(z) + 0.5)
    k = nk.limit_kernel(x, depth=4, activation=act, beta=0.1)
    assert 0 < len(calls) <= 3 * 8  # a few quadrature rounds per layer
    closed = nk.limit_kernel(x, depth=2, activation=act, beta=0.1)
    assert np.isfinite(k.ntk).all() and np.isfinite(closed.ntk).all()


def abs_plus_sine(z):
    """|x| + ¼ sin x: kinked but not piecewise linear, so it goes through the series."""
    return np.abs(z) + 0.25 * np.sin(z)


def abs_plus_sine_kernels(x, depth, beta):
    """Σ and Θ∞ of σ = |x| + ¼ sin x in closed form: the cross terms E[|u| sin v] and
    E[sign(u) cos v] vanish by symmetry, so each layer's (Σ, Σ̇) is the |x| dual plus 1/16
    of the sin dual (E[sin u sin v], E[cos u cos v]), both from ``reference.dual``."""
    sigma = x @ x.T / x.shape[1] + beta**2
    theta = sigma.copy()
    for _ in range(depth - 1):
        q = np.diag(sigma)
        q1, q2 = np.meshgrid(q, q, indexing="ij")
        s_abs, dot_abs = reference.dual("abs", q1, q2, sigma)
        s_sin, dot_sin = reference.dual("sin", q1, q2, sigma)
        nngp, dot = s_abs + s_sin / 16, dot_abs + dot_sin / 16
        theta = theta * dot + nngp + beta**2
        sigma = nngp + beta**2
    return sigma, theta


def test_kinks_that_the_series_miss_go_through_quadrature():
    """A kinked σ that is not piecewise linear (|x| + ¼ sin x, whose kernel is known in
    closed form) converges only algebraically in the series: by default the core tabulates
    σ and integrates the duals instead, to 1e-10 of the closed form; an explicit looser tol
    keeps the series (within it, but far less accurate)."""
    x = make_inputs(12, 4, seed=5)
    _, want = abs_plus_sine_kernels(x, depth=3, beta=0.1)
    exact = nk.limit_kernel(x, depth=3, activation=nk.activations.Custom(abs_plus_sine), beta=0.1)
    assert np.abs(exact.ntk - want).max() / np.abs(want).max() <= 1e-10
    loose = nk.activations.Custom(abs_plus_sine, tol=0.1)
    got = nk.limit_kernel(x, depth=3, activation=loose, beta=0.1)
    err = np.abs(got.ntk - want).max() / np.abs(want).max()
    assert 1e-8 < err <= 0.1


def test_the_matrix_free_product_takes_the_same_route():
    x = make_inputs(10, 4, seed=6)
    v = np.ones((10, 1))
    act = nk.activations.Custom(abs_plus_sine)
    got = nk.KernelOperator(x, depth=3, activation=act) @ v
    _, want = abs_plus_sine_kernels(x, depth=3, beta=0.1)
    np.testing.assert_allclose(got, want @ v, rtol=1e-9)


def test_series_tolerances_are_validated_and_part_of_the_activation():
    assert nk.activations.Tanh().tol == nk.activations.SERIES_TOL == 1e-9
    assert nk.activations.Tanh(tol=1e-6) != nk.activations.Tanh()
    assert repr(nk.activations.Tanh(tol=1e-6)) == "Tanh(tol=1e-06)"
    assert nk.activations.get("tanh") == nk.activations.Tanh()
    for bad in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tol"):
            nk.activations.Custom(np.abs, tol=bad)
    with pytest.raises(TypeError, match="tol"):
        nk.activations.Sigmoid(tol="1e-3")


def test_builtin_series_do_not_warn():
    x = make_inputs(50, 5, seed=1, spread=(0.1, 5.0))  # q up to 25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in SERIES:
            nk.limit_kernel(x, depth=3, activation=name, beta=0.1)


def test_finite_width_converges_to_the_series_kernel():
    """Theorem 1 for tanh: the empirical NTK approaches Θ∞ as the width grows (the
    fluctuations fall as 1/√width: about 0.3 → 0.05 of the kernel's scale here)."""
    x = make_inputs(6, 4, seed=0)

    def error(width):
        net = nk.MLP([4, width, width, 1], "tanh", beta=0.1)
        limit = net.limit_kernel(x).ntk
        errs = [np.abs(net.ntk(net.init(seed=s), x) - limit).max() for s in range(6)]
        return np.mean(errs) / np.abs(limit).max()

    narrow, wide = error(100), error(3000)
    assert wide <= 0.1 and wide <= 0.4 * narrow


def test_bad_custom_activations():
    x = make_inputs(5, 3, seed=0)
    with pytest.raises(TypeError, match="callable"):
        nk.activations.Custom("tanh")
    with pytest.raises(TypeError, match="dfn must be callable"):
        nk.activations.Custom(np.tanh, dfn=3)
    with pytest.raises(TypeError, match="Custom"):
        nk.limit_kernel(x, depth=2, activation=np.tanh)

    def boom(z):
        raise RuntimeError("no")

    cases = [
        (boom, "'boom': fn raised RuntimeError"),
        (lambda z: z[:-1], "returned shape"),
        (lambda z: np.where(z > 0.5, np.inf, z), "not finite"),
        (lambda z: np.array(["a"] * z.size), "real numbers"),
    ]
    for fn, message in cases:
        act = nk.activations.Custom(fn, name=getattr(fn, "__name__", None))
        with pytest.raises(ValueError, match=message):
            nk.limit_kernel(x, depth=3, activation=act)

    def overflowing(z):
        with np.errstate(over="ignore"):
            return np.exp(z * z)

    grow = nk.activations.Custom(overflowing, name="grow")
    with pytest.raises(ValueError, match="'grow'.*not finite"):
        nk.limit_kernel(x, depth=2, activation=grow)

    def in_place(z):
        return np.tanh(z, out=z)

    with pytest.raises(ValueError, match="'in_place': fn raised.*read-only"):
        nk.limit_kernel(x, depth=2, activation=nk.activations.Custom(in_place))
    with pytest.raises(ValueError, match="variance of sample 1 is 1.0+1e6, beyond"):
        nk.limit_kernel(np.array([[1.0], [1e3]]), depth=2, activation="tanh")
