"""Finite-width networks with a user activation (ntkfast.activations.Custom), which run in
NumPy: against the Rust core's networks of the same built-in σ, explicit Jacobians, finite
differences and the infinite-width limit (Theorem 1)."""

import numpy as np
import pytest

import ntkfast as nk
from ntkfast.activations import Custom

import reference
from conftest import ntk_distances

WIDTHS = [5, 16, 9, 3]


def relu(z):
    return np.maximum(z, 0.0)


def relu_slope(z):
    return (z > 0).astype(float)


def hard_tanh(z):
    return np.clip(z, -1.0, 1.0)


def hard_tanh_slope(z):
    return (np.abs(z) < 1).astype(float)


# Five linear pieces, kinks at −1.5, −0.5, 0.5, 1.5.
KINKS = np.array([-1.5, -0.5, 0.5, 1.5])
SLOPES = np.array([0.1, 1.0, -0.5, 2.0, 0.3])


def piecewise(z):
    pieces = [np.minimum(z, KINKS[0]) * SLOPES[0]]
    for left, right, slope in zip(KINKS[:-1], KINKS[1:], SLOPES[1:-1]):
        pieces.append(np.clip(z, left, right) * slope - left * slope)
    pieces.append((np.maximum(z, KINKS[-1]) - KINKS[-1]) * SLOPES[-1])
    return sum(pieces)


def piecewise_slope(z):
    return SLOPES[np.searchsorted(KINKS, z)]


# (built-in name, the same σ as a user activation, tolerance in float64): tanh's σ' by the
# documented finite difference (about 1e-12), the others exact.
MIRRORS = [
    ("relu", Custom(relu, relu_slope, name="relu"), 1e-13),
    ("abs", Custom(np.abs, np.sign, name="abs"), 1e-13),
    ("tanh", Custom(np.tanh), 1e-10),
    ("sin", Custom(np.sin, np.cos), 1e-13),
]


def _relative(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, custom, tol", MIRRORS, ids=[m[0] for m in MIRRORS])
def test_every_method_equals_the_cores_network_of_the_same_activation(name, custom, tol, dtype):
    """A Custom σ equal to a built-in one gives the core's results: apply, the three NTK
    outputs (x2 given and not), the Jacobian, the vjp and training, both step kinds."""
    tol = tol if dtype == np.float64 else 2e-5
    rng = np.random.default_rng(4)
    x, x2 = rng.standard_normal((7, 5)), rng.standard_normal((4, 5))
    core, user = nk.MLP(WIDTHS, name, beta=0.3), nk.MLP(WIDTHS, custom, beta=0.3)
    params = [(w.astype(dtype), b.astype(dtype)) for w, b in core.init(seed=1)]
    got = {"apply": (core.apply(params, x), user.apply(params, x))}
    for output in ("trace", "diagonal", "full"):
        got[output] = (core.ntk(params, x, output=output), user.ntk(params, x, output=output))
        got[output + " x2"] = (
            core.ntk(params, x, x2, output=output),
            user.ntk(params, x, x2, output=output),
        )
    got["jacobian"] = (core.jacobian(params, x), user.jacobian(params, x))
    d = rng.standard_normal((7, 3))
    for layer, (a, b) in enumerate(zip(core.vjp(params, x, d), user.vjp(params, x, d))):
        got[f"vjp W{layer}"], got[f"vjp b{layer}"] = (a[0], b[0]), (a[1], b[1])
    y = rng.standard_normal((7, 3))
    want = nk.train(core, params, x, y, steps=15, lr=0.5, x_test=x2)
    mse = nk.train(user, params, x, y, steps=15, lr=0.5, x_test=x2)
    steered = nk.train(
        user, params, x, y, steps=15, lr=0.5, x_test=x2, direction=lambda f, t: y - f
    )
    for run in (mse, steered):
        got["train f"] = (want.f_train, run.f_train)
        got["train test"] = (want.f_test, run.f_test)
        got["train W0"] = (want.params[0][0], run.params[0][0])
    for what, (a, b) in got.items():
        assert a.dtype == b.dtype == dtype or what.startswith("train")
        assert a.shape == b.shape, what
        assert _relative(b, a) <= tol, (what, _relative(b, a))


@pytest.mark.parametrize(
    "custom",
    [
        Custom(hard_tanh, hard_tanh_slope, name="hard_tanh"),
        Custom(piecewise, piecewise_slope, name="piecewise"),
        Custom(lambda z: np.sin(z) + 0.5 * z, lambda z: np.cos(z) + 0.5, name="sin_plus"),
    ],
    ids=lambda c: c.label,
)
def test_jacobian_and_vjp_of_user_activations_are_exact(custom):
    """Against the forward-mode Jacobian of reference.py (the user's own σ and σ') and
    central differences of apply; the vjp is the Jacobian's transpose applied to d / N."""
    net = nk.MLP([3, 6, 5, 2], custom, beta=0.4)
    params = net.init(seed=3)
    x = 1.5 * np.random.default_rng(5).standard_normal((4, 3))
    jac = net.jacobian(params, x)
    np.testing.assert_allclose(jac, reference.explicit_jacobian(net, params, x), atol=1e-13)
    flat = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in params])

    def outputs(theta):
        layers, start = [], 0
        for w, b in params:
            size = w.size
            layers.append(
                (theta[start : start + size].reshape(w.shape), theta[start + size :][: b.size])
            )
            start += size + b.size
        return net.apply(layers, x)

    h = 1e-6
    for p in range(flat.size):
        step = np.zeros_like(flat)
        step[p] = h
        numeric = (outputs(flat + step) - outputs(flat - step)) / (2 * h)
        np.testing.assert_allclose(jac[:, :, p], numeric, atol=1e-8)
    d = np.random.default_rng(6).standard_normal((4, 2))
    grads = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in net.vjp(params, x, d)])
    np.testing.assert_allclose(grads, np.einsum("nkp,nk->p", jac, d) / 4, atol=1e-13)


def test_user_ntk_is_the_jacobian_product_symmetric_and_psd():
    net = nk.MLP([4, 12, 12, 2], Custom(piecewise, piecewise_slope), beta=0.2)
    params = net.init(seed=7)
    x = np.random.default_rng(8).standard_normal((9, 4))
    jac = net.jacobian(params, x)
    full = net.ntk(params, x, output="full")
    np.testing.assert_allclose(full, np.einsum("ikp,jlp->ijkl", jac, jac), rtol=1e-12, atol=1e-13)
    np.testing.assert_array_equal(full, full.transpose(1, 0, 3, 2))
    trace = net.ntk(params, x)
    np.testing.assert_array_equal(trace, trace.T)
    np.testing.assert_allclose(trace, net.ntk(params, x, x.copy()), rtol=1e-12, atol=1e-13)
    assert np.linalg.eigvalsh(trace).min() > -1e-12 * np.abs(trace).max()


@pytest.mark.parametrize(
    "custom, builtin",
    [(Custom(np.abs, np.sign, name="abs"), "abs"), (Custom(np.tanh, name="tanh"), "tanh")],
    ids=["kinked", "smooth"],
)
def test_theorem_1_for_user_activations(custom, builtin):
    """The empirical NTK of a user-activation network approaches Θ∞ (computed by the core
    for the same built-in σ, closed form for |x|, series for tanh) as the width grows."""
    x = np.random.default_rng(9).standard_normal((6, 4))
    limit = nk.limit_kernel(x, depth=3, activation=builtin, beta=0.1, get="ntk")
    errors = ntk_distances(custom, x, limit)
    # Measured: abs 0.24 → 0.027, tanh 0.15 → 0.032; 1/√width predicts a factor of 8.
    assert errors[1] < 0.1 and errors[1] < errors[0] / 3, errors


def test_errors_of_the_users_callables_are_clear():
    x = np.random.default_rng(0).standard_normal((3, 3))

    def boom(z):
        raise RuntimeError("no")

    params = nk.MLP([3, 4, 1]).init(seed=0)
    with pytest.raises(ValueError, match="'boom': fn raised RuntimeError"):
        nk.MLP([3, 4, 1], Custom(boom)).apply(params, x)
    short = Custom(np.tanh, lambda z: z[:-1], name="short")
    with pytest.raises(ValueError, match="'short': dfn returned shape"):
        nk.MLP([3, 4, 1], short).ntk(params, x)
    with pytest.raises(ValueError, match="'short': dfn returned shape"):
        nk.train(nk.MLP([3, 4, 1], short), params, x, np.zeros((3, 1)), steps=1)
    blowup = Custom(lambda z: np.where(z > 0, np.inf, z), name="blowup")
    with pytest.raises(ValueError, match="'blowup': fn is not finite"):
        nk.MLP([3, 4, 1], blowup).jacobian(params, 10 * np.abs(x))

    def interrupted(z):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C inside the callable is not swallowed
        nk.MLP([3, 4, 1], Custom(interrupted)).vjp(params, x, np.ones((3, 1)))
