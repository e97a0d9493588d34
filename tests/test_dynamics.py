"""Training dynamics: closed-form MSE flow, kernel gradient descent, the Gaussian limit, and
gradient descent on network parameters.

References: scipy.linalg.expm of the kernel, an ODE solved independently, a direct NumPy
implementation of gradient descent, and the paper's Theorem 2 (the NTK stays constant during
training as the width grows).
"""

import warnings

import numpy as np
import pytest
import scipy.linalg

import ntkfast as nk
from ntkfast import dynamics


def _problem(n=12, m=4, k=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + m, 5))
    kern = nk.limit_kernel(x, depth=3, activation="relu", beta=0.1)
    y = rng.standard_normal((n, k))
    f0 = rng.standard_normal((n + m, k)) * 0.3
    return kern, y, f0[:n], f0[n:], n


def test_mse_flow_matches_the_matrix_exponential():
    kern, y, f0, f0t, n = _problem()
    ktt, kxt = kern.ntk[:n, :n], kern.ntk[n:, :n]
    flow = dynamics.mse_flow(ktt, y, kxt)
    times = np.array([0.0, 0.3, 2.0, 17.0])
    f_train, f_test = flow(times, f0, f0t)
    assert f_train.shape == (4, n, 2) and f_test.shape == (4, 4, 2)
    for i, t in enumerate(times):
        e = scipy.linalg.expm(-t * ktt / n)
        want = y + e @ (f0 - y)
        want_test = f0t - kxt @ np.linalg.solve(ktt, (np.eye(n) - e) @ (f0 - y))
        assert np.abs(f_train[i] - want).max() < 1e-10 * np.abs(want).max()
        assert np.abs(f_test[i] - want_test).max() < 1e-10 * np.abs(want_test).max()
    np.testing.assert_array_equal(f_train[0], f0)
    np.testing.assert_array_equal(f_test[0], f0t)
    # t = ∞ interpolates the targets; scalar t gives arrays without the time axis.
    f_inf, f_inf_test = flow(np.inf, f0, f0t)
    np.testing.assert_allclose(f_inf, y, atol=1e-9)
    want = f0t - kxt @ np.linalg.solve(ktt, f0 - y)
    np.testing.assert_allclose(f_inf_test, want, atol=1e-9)
    # One output as a 1-D array.
    one, _ = dynamics.mse_flow(ktt, y[:, 0])(1.5, f0[:, 0])
    np.testing.assert_allclose(one, flow(1.5, f0)[0][:, 0], atol=1e-14)


def test_mse_flow_clips_an_indefinite_kernel_with_a_warning():
    kern, y, f0, _, n = _problem()
    bad = kern.ntk[:n, :n] - 1.5 * np.linalg.eigvalsh(kern.ntk[:n, :n])[0] * np.eye(n) * 0
    bad = bad - (np.linalg.eigvalsh(bad)[0] + 0.01 * np.abs(bad).max()) * np.eye(n)
    with pytest.warns(RuntimeWarning, match="not positive semi-definite"):
        flow = dynamics.mse_flow(bad, y)
    assert np.isfinite(flow(5.0, f0)[0]).all()
    # A singular kernel (duplicate inputs): finite-time flow is fine, no warning.
    x = np.random.default_rng(1).standard_normal((6, 3))
    x[3] = x[2]
    k = nk.limit_kernel(x, depth=2, get="ntk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = dynamics.mse_flow(k, np.ones(6))(3.0, np.zeros(6))[0]
    assert np.isfinite(out).all()


def test_kernel_flow_mse_agrees_with_the_closed_form_and_decreases_the_cost():
    kern, y, f0, f0t, n = _problem()
    ktt, kxt = kern.ntk[:n, :n], kern.ntk[n:, :n]
    times = np.linspace(0.0, 30.0, 7)
    sol = dynamics.kernel_flow(ktt, dynamics.MSE(y), f0, times, kxt, f0t)
    f_train, f_test = dynamics.mse_flow(ktt, y, kxt)(times, f0, f0t)
    assert np.abs(sol.f_train - f_train).max() < 1e-7
    assert np.abs(sol.f_test - f_test).max() < 1e-7
    assert (np.diff(sol.cost) < 0).all()


def test_kernel_flow_cross_entropy_and_custom_costs():
    kern, _, f0, _, n = _problem(k=3)
    ktt = kern.ntk[:n, :n]
    labels = np.arange(n) % 3
    ce = dynamics.CrossEntropy(labels)
    sol = dynamics.kernel_flow(ktt, ce, f0, np.linspace(0, 50, 6))
    assert (np.diff(sol.cost) < 0).all()
    assert (sol.f_train[-1].argmax(axis=1) == labels).mean() > (f0.argmax(axis=1) == labels).mean()
    # The derivative is the gradient of N·value (finite differences).
    f = f0.copy()
    h = 1e-6
    f[2, 1] += h
    up = ce.value(f)
    f[2, 1] -= 2 * h
    fd = (up - ce.value(f)) / (2 * h) * n
    assert abs(fd - ce.derivative(f0)[2, 1]) < 1e-6

    class Quartic:
        def value(self, f):
            return float(np.mean(np.sum(f**4, axis=1))) / 4

        def derivative(self, f):
            return f**3

    sol = dynamics.kernel_flow(ktt, Quartic(), f0, [1.0, 2.0])
    assert sol.cost[1] < sol.cost[0] < Quartic().value(f0)


def test_gaussian_limit_matches_its_definition_and_samples():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 4))
    k = nk.limit_kernel(x, depth=3, activation="erf", beta=0.2)
    n = 7
    y = np.sin(x[:n, 0])
    args = (k.ntk[:n, :n], k.nngp[:n, :n], y, k.ntk[n:, :n], k.nngp[n:, :n], k.nngp[n:, n:])
    mean, cov = dynamics.gaussian_limit(*args, t=np.inf)
    a = k.ntk[n:, :n] @ np.linalg.inv(k.ntk[:n, :n])
    np.testing.assert_allclose(mean, a @ y, atol=1e-9)
    want = k.nngp[n:, n:] - a @ k.nngp[:n, n:] - k.nngp[n:, :n] @ a.T + a @ k.nngp[:n, :n] @ a.T
    np.testing.assert_allclose(cov, want, atol=1e-9)
    # Monte Carlo: f_0 ~ N(0, Σ) pushed through the flow has that mean and covariance.
    chol = np.linalg.cholesky(k.nngp + 1e-12 * np.eye(10))
    f0 = chol @ rng.standard_normal((10, 20000))
    flow = dynamics.mse_flow(k.ntk[:n, :n], np.repeat(y[:, None], 20000, 1), k.ntk[n:, :n])
    _, samples = flow(np.inf, f0[:n], f0[n:])
    assert np.abs(samples.mean(axis=1) - mean).max() < 0.05
    assert np.abs(np.cov(samples) - cov).max() < 0.05
    mean_t, _ = dynamics.gaussian_limit(*args, t=0.0)
    np.testing.assert_allclose(mean_t, 0.0, atol=1e-15)
    bands = dynamics.quantiles(mean, cov)
    assert bands.shape == (3, 3) and (bands[0] <= bands[1]).all() and (bands[1] <= bands[2]).all()


def _numpy_gd(net, params, x, y, steps, lr):
    """Gradient descent written out in NumPy (forward and backward by hand), ReLU."""
    params = [(w.copy(), b.copy()) for w, b in params]
    n = len(x)
    for _ in range(steps):
        acts, pres = [x], []
        for layer, (w, b) in enumerate(params):
            z = acts[-1] @ w.T / np.sqrt(w.shape[1]) + net.beta * b
            pres.append(z)
            acts.append(np.maximum(z, 0) if layer + 1 < len(params) else z)
        delta = (acts[-1] - y) / n
        grads = []
        for layer in reversed(range(len(params))):
            w, _ = params[layer]
            grads.append((delta.T @ acts[layer] / np.sqrt(w.shape[1]), net.beta * delta.sum(0)))
            if layer:
                delta = (delta @ w / np.sqrt(w.shape[1])) * (pres[layer - 1] > 0)
        grads.reverse()
        params = [(w - lr * gw, b - lr * gb) for (w, b), (gw, gb) in zip(params, grads)]
    return params


def test_train_matches_numpy_gradient_descent():
    rng = np.random.default_rng(0)
    net = nk.MLP([3, 20, 16, 2], "relu", beta=0.1)
    params = net.init(seed=0)
    x, y = rng.standard_normal((15, 3)), rng.standard_normal((15, 2))
    res = nk.train(net, params, x, y, steps=30, lr=0.7, x_test=x[:4], record_every=7)
    want = _numpy_gd(net, params, x, y, 30, 0.7)
    for (w, b), (w2, b2) in zip(res.params, want):
        assert np.abs(w - w2).max() < 1e-10 and np.abs(b - b2).max() < 1e-10
    np.testing.assert_allclose(res.times, [0, 4.9, 9.8, 14.7, 19.6, 21.0])
    np.testing.assert_allclose(res.f_train[-1], net.apply(res.params, x), atol=1e-12)
    np.testing.assert_allclose(res.f_test[0], net.apply(params, x[:4]), atol=1e-12)
    assert res.cost[-1] < res.cost[0]
    assert np.array_equal(params[0][0], net.init(seed=0)[0][0])  # inputs untouched


def test_wide_network_follows_the_kernel_flow_and_theorem_2():
    """Training a wide network for a fixed time tracks the MSE flow of its initial empirical NTK
    better as the width grows, and the NTK drift shrinks roughly like 1/√width."""
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))
    widths = (64, 256, 1024, 4096)
    drift, gap = [], []
    for width in widths:
        d, g = [], []
        for seed in range(3):
            net = nk.MLP([3, width, width, 1], "relu", beta=0.1)
            p = net.init(seed=seed)
            res = nk.train(net, p, x, y, steps=20, lr=1.0, track_ntk=True, record_every=20)
            flow = dynamics.mse_flow(net.ntk(p, x), y)
            g.append(np.abs(res.f_train[-1] - flow(20.0, net.apply(p, x))[0]).max())
            d.append(res.ntk_drift[-1])
        drift.append(np.mean(d))
        gap.append(np.mean(g))
    slope = np.polyfit(np.log(widths), np.log(drift), 1)[0]
    # Measured: drift 0.27, 0.067, 0.017, 0.0095 (slope −0.83: faster than 1/√width between
    # the small widths, about 1/√width between the two largest).
    assert -1.1 < slope < -0.3, (drift, slope)
    assert drift[-1] < drift[0] / 10
    assert gap[-1] < gap[0] / 4, gap


def test_direction_and_divergence():
    rng = np.random.default_rng(2)
    net = nk.MLP([3, 32, 32, 1], "erf", beta=0.1)
    p = net.init(seed=1)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((10, 1))
    # A direction that is the default one gives the same run; another moves elsewhere.
    a = nk.train(net, p, x, y, steps=5, lr=0.5)
    b = nk.train(net, p, x, y, steps=5, lr=0.5, direction=lambda f, t: y - f)
    np.testing.assert_array_equal(a.f_train, b.f_train)
    c = nk.train(net, p, x, y, steps=5, lr=0.5, direction=lambda f, t: -2 * (f - y))
    assert c.cost[-1] < a.cost[-1]
    with pytest.raises(nk.DivergenceError, match=r"2N/λ_max = "):
        nk.train(net, p, x, y, steps=500, lr=100.0)


def test_bad_input():
    kern, y, f0, f0t, n = _problem()
    ktt = kern.ntk[:n, :n]
    with pytest.raises(ValueError, match="square"):
        dynamics.mse_flow(kern.ntk[:n, : n - 1], y)
    with pytest.raises(ValueError, match="rows but the kernel"):
        dynamics.mse_flow(ktt, y[:-1])
    with pytest.raises(ValueError, match="non-finite"):
        dynamics.mse_flow(np.full((2, 2), np.nan), np.ones(2))
    with pytest.raises(ValueError, match="≥ 0"):
        dynamics.mse_flow(ktt, y)(-1.0, f0)
    with pytest.raises(ValueError, match="strictly increasing"):
        dynamics.kernel_flow(ktt, dynamics.MSE(y), f0, [1.0, 0.5])
    with pytest.raises(TypeError, match="value"):
        dynamics.kernel_flow(ktt, object(), f0, [1.0])
    with pytest.raises(ValueError, match="labels must be <"):
        dynamics.CrossEntropy(np.array([0, 5])).value(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels must be ≥ 0"):
        dynamics.CrossEntropy(np.array([0, -1]))
    net = nk.MLP([5, 8, 2], "relu")
    p = net.init(seed=0)
    x = np.ones((n, 5))
    with pytest.raises(ValueError, match="lr must be"):
        nk.train(net, p, x, y, lr=0.0)
    with pytest.raises(ValueError, match="steps must be"):
        nk.train(net, p, x, y, steps=-1)
    with pytest.raises(ValueError, match="y_train must have shape"):
        nk.train(net, p, x, y[:, :1])
