"""Property-based tests (hypothesis) of ntkfast.dynamics: mse_flow, kernel_flow,
gaussian_limit and quantiles, for kernels, outputs, costs, times and test sets of any kind
(one faulty argument at a time).

References: the MSE flow from matrix exponentials, other costs from an LSODA solve, the
Gaussian limit from its formula with a matrix exponential, quantiles from
statistics.NormalDist; the contract is that of tests/properties.py. The @example cases are
regressions of bugs these tests found.
"""

import statistics

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property-based tests need hypothesis (test extra)")
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from properties import SETTINGS, assert_close, check, examples, one_fault  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from scipy.linalg import expm  # noqa: E402
from scipy.special import softmax  # noqa: E402

import ntkfast as nk  # noqa: E402
from ntkfast import dynamics  # noqa: E402


def flow_reference(k, f0, y, times, k_test=None, f0_test=None):
    """MSE flow: f_t = y + e^{−tK/N}(f0 − y), test outputs f0 − (1/N) K_x ∫₀ᵗ e^{−sK/N} ds (f0 − y),
    the integral from the exponential of the augmented matrix [[−K/N, I], [0, 0]]."""
    n = k.shape[0]
    r = (f0 - y).reshape(n, -1)
    train, test = [], []
    for t in times:
        block = np.zeros((2 * n, 2 * n))
        block[:n, :n] = -k / n
        block[:n, n:] = np.eye(n)
        e = expm(t * block)
        train.append((y.reshape(n, -1) + e[:n, :n] @ r).reshape(f0.shape))
        if k_test is not None:
            test.append(
                (f0_test.reshape(len(f0_test), -1) - k_test @ e[:n, n:] @ r / n).reshape(
                    f0_test.shape
                )
            )
    return np.array(train), (np.array(test) if k_test is not None else None)  # fmt: skip


def mutate(arr, kind):
    """(argument, exception) for a kernel-like array with one fault (or none)."""
    if kind == "list":
        return arr.tolist(), None
    if kind == "int":
        return np.round(3 * arr).astype(np.int64), None
    if kind == "nan":
        bad = arr.astype(np.float64).copy()
        bad.flat[0] = np.nan
        return bad, ValueError
    if kind == "inf":
        bad = arr.astype(np.float64).copy()
        bad.flat[-1] = -np.inf
        return bad, ValueError
    if kind == "3d":
        return arr[None], ValueError
    if kind == "complex":
        return arr + 0j, TypeError
    if kind == "strings":
        return arr.astype(str), TypeError
    return arr, None


TIMES = {
    "one": ([1.0], None),
    "three": ([0.25, 1.0, 2.0], None),
    "zero": ([0.0], None),
    "from zero": ([0.0, 0.5], None),
    "scalar": (1.5, None),
    "array": (np.array([0.5, 1]), None),
    "decreasing": ([1.0, 0.5], ValueError),
    "repeated": ([1.0, 1.0], ValueError),
    "negative": ([-1.0, 1.0], ValueError),
    "nan": ([np.nan], ValueError),
    "inf": ([1.0, np.inf], ValueError),
    "empty": ([], ValueError),
    "2d": ([[0.5, 1.0]], ValueError),
    "strings": (["1"], TypeError),
    "none": (None, TypeError),
    "complex": ([1j], TypeError),
}


GOOD_TIMES = ["one", "three", "zero", "from zero", "scalar", "array"]


def _flow_case(**changes):
    case = dict(fault=None, k_kind="ok", cost_kind="mse", f0_kind="normal", t_kind="three")
    case.update(test_kind="ok")
    case.update(changes)
    return dict(n=3, outputs=2, seed=0, scale=1.0, case=case)


@examples(0.4)
@given(
    n=st.integers(1, 4),
    outputs=st.sampled_from([None, 2]),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-3, 1.0, 5.0]),
    case=one_fault(
        k_kind=(["ok", "ok", "ok", "list", "int", "nonsym"],
                ["nonsquare", "nan", "inf", "flat", "3d", "empty", "complex", "strings", "huge"]),
        cost_kind=(["mse", "mse", "ce"], ["mse wrong", "mse nan", "object"]),
        f0_kind=(["zeros", "normal", "normal", "list"], ["rows", "nan", "complex", "3d", "huge"]),
        t_kind=(GOOD_TIMES + ["one", "three"], [t for t in TIMES if t not in GOOD_TIMES]),
        test_kind=([None, "ok"], ["only k", "only f0", "cols", "f0 shape", "nan"]),
    ),
)  # fmt: skip
@example(**_flow_case(t_kind="zero"))  # was AttributeError
@example(**_flow_case(fault="k_kind", k_kind="huge"))  # was RuntimeError (solver failed)
@example(**_flow_case(fault="cost_kind", cost_kind="mse wrong"))  # was a broadcasting error
@example(**_flow_case(fault="t_kind", t_kind="strings"))  # was parsed as numbers
def test_kernel_flow_any_input(n, outputs, seed, scale, case, outcomes):
    """kernel_flow with MSE or cross-entropy costs, kernels, outputs, times and test sets of
    any kind (one fault at a time): the matrix-exponential MSE flow or an LSODA solve of the
    ODE (1e-7 of the scale), or the error of the first faulty argument in kernel_flow's
    order (rates beyond FLOW_LIMIT included)."""
    k_kind, cost_kind, f0_kind = case["k_kind"], case["cost_kind"], case["f0_kind"]
    t_kind, test_kind = case["t_kind"], case["test_kind"]
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1, 1, (n, n + 1))
    base = scale * (a @ a.T)
    tail = () if outputs is None else (outputs,)
    kernel, k_fail = {
        "nonsym": (base + np.triu(rng.uniform(0, 0.1, (n, n)), 1), None),
        "nonsquare": (base[:, :-1], ValueError),
        "flat": (base.ravel(), ValueError),
        "empty": (np.zeros((0, 0)), ValueError),
        "huge": (base * 1e150, None),  # rates beyond FLOW_LIMIT: checked below
    }.get(k_kind) or mutate(base, k_kind)
    k_values = None if k_fail else np.asarray(kernel, dtype=np.float64)

    f0_values = rng.standard_normal((n, *tail)) if f0_kind != "zeros" else np.zeros((n, *tail))
    f0, f0_fail = {
        "rows": (np.zeros((n + 1, *tail)), ValueError),
        "3d": (np.zeros((n, 2, 2)), ValueError),
        "huge": (f0_values * 1e150 + 1e150, None),
    }.get(f0_kind) or mutate(f0_values, f0_kind if f0_kind in ("list", "nan", "complex") else "")
    if f0_fail is None:
        f0_values = np.asarray(f0, dtype=np.float64)
    t, t_fail = TIMES[t_kind]

    y = rng.standard_normal((n, *tail))
    labels = rng.integers(0, 2, n)
    cost = {
        "mse": dynamics.MSE(y),
        "mse wrong": dynamics.MSE(rng.standard_normal((n, 3))),
        "ce": dynamics.CrossEntropy(labels),
        "object": object(),
    }.get(cost_kind)
    cost_fail = TypeError if cost_kind == "object" else None
    # The cost's targets must have f0's shape, and logits are (N, k).
    late_fail = ValueError if cost_kind == "mse wrong" or (cost_kind == "ce" and not tail) else None

    m = 2
    b = rng.uniform(-1, 1, (m, n + 1))
    k_test = scale * (b @ a.T)
    f0_test = rng.standard_normal((m, *tail))
    test_args, test_fail = {
        None: ((None, None), None),
        "ok": ((k_test, f0_test), None),
        "only k": ((k_test, None), ValueError),
        "only f0": ((None, f0_test), ValueError),
        "cols": ((np.hstack([k_test, k_test[:, :1]]), f0_test), ValueError),
        "f0 shape": ((k_test, np.zeros((m + 1, *tail))), ValueError),
        "nan": ((k_test * np.nan, f0_test), ValueError),
    }[test_kind]
    # kernel_flow's order of checks; MSE(y) with NaN targets fails before the call.
    failures = [k_fail, f0_fail, t_fail, cost_fail, test_fail, late_fail]
    failure = next((f for f in failures if f is not None), None)
    if cost_kind == "mse nan":
        failure = ValueError

    times = None
    if failure is None:
        times = np.atleast_1d(np.asarray(t, dtype=np.float64))
        k_sym = 0.5 * (k_values + k_values.T)
        if cost_kind == "ce":
            d = softmax(f0_values, axis=1)
            d[np.arange(n), labels] -= 1
        else:
            d = f0_values - y
        rate = k_sym @ d.reshape(n, -1) / n
        states = [np.abs(f0_values).max(), np.abs(rate).max()]
        if test_kind == "ok":
            states += [np.abs(f0_test).max(), np.abs(k_test @ d.reshape(n, -1) / n).max()]
        if max(states) > dynamics.FLOW_LIMIT:
            failure = ValueError

    def run():
        c = cost
        if cost_kind == "mse nan":
            c = dynamics.MSE(np.full(y.shape, np.nan))
        return dynamics.kernel_flow(kernel, c, f0, t, *test_args)

    sol = check(outcomes, "dynamics.kernel_flow", run, failure)
    if sol is None:
        return
    np.testing.assert_array_equal(sol.t, times)
    k_test_arg, f0_test_arg = test_args
    if cost_kind == "mse":
        want, want_test = flow_reference(k_sym, f0_values, y, times, k_test_arg, f0_test_arg)
    else:
        state0 = f0_values.ravel()
        if test_kind == "ok":
            state0 = np.concatenate([state0, f0_test.ravel()])

        def rhs(_, s):
            f = s[: f0_values.size].reshape(f0_values.shape)
            g = softmax(f, axis=1)
            g[np.arange(n), labels] -= 1
            parts = [-(k_sym @ g) / n] + ([-(k_test @ g) / n] if test_kind == "ok" else [])
            return np.concatenate([p.ravel() for p in parts])

        if times[-1] == 0:
            states = state0[None]
        else:
            ivp = solve_ivp(rhs, (0, times[-1]), state0, "LSODA", times, rtol=1e-12, atol=1e-14)
            states = ivp.y.T
        want = states[:, : f0_values.size].reshape(len(times), *f0_values.shape)
        want_test = None
        if test_kind == "ok":
            want_test = states[:, f0_values.size :].reshape(len(times), *f0_test.shape)
    size = max(np.abs(want).max(), np.abs(f0_values).max(), 1e-300)
    assert_close(sol.f_train, want, size, 1e-7, "kernel_flow f_train")
    if want_test is None:
        assert sol.f_test is None
    else:
        size = max(np.abs(want_test).max(), 1e-300)
        assert_close(sol.f_test, want_test, size, 1e-7, "kernel_flow f_test")
    assert sol.cost.shape == times.shape and np.isfinite(sol.cost).all()


GL_TIMES = {
    "inf": (np.inf, None),
    "zero": (0.0, None),
    "half": (0.5, None),
    "long": (50.0, None),
    "list": ([2.0], None),
    "int": (3, None),
    "two": ([1.0, 2.0], ValueError),
    "negative": (-1.0, ValueError),
    "nan": (np.nan, ValueError),
    "empty": ([], ValueError),
    "string": ("1", TypeError),
    "none": (None, TypeError),
}


GL_GOOD = ["inf", "zero", "half", "long", "list", "int"]


@examples(0.4)
@given(
    n=st.integers(1, 4),
    m=st.integers(1, 3),
    outputs=st.sampled_from([None, 2]),
    seed=st.integers(0, 2**16),
    case=one_fault(
        kind=(["ok", "ok", "ok", "singular"],
              ["theta nonsquare", "theta nan", "sigma shape", "y rows", "y nan", "test rows",
               "test cols", "sxx nonsquare", "complex", "strings"]),
        t_kind=(GL_GOOD, [t for t in GL_TIMES if t not in GL_GOOD]),
    ),
)  # fmt: skip
@example(n=3, m=2, outputs=None, seed=0, case=dict(fault="t_kind", kind="ok", t_kind="two"))
@example(n=3, m=2, outputs=None, seed=0, case=dict(fault="t_kind", kind="ok", t_kind="string"))
def test_gaussian_limit_any_input(n, m, outputs, seed, case, outcomes):
    """gaussian_limit at t = ∞ or finite t: mean Θ(x,X)Θ̃⁻¹(I − e^{−tΘ̃/N})y and the
    NTK-GP covariance from their formulas (1e-7 of the scale, the covariance exactly
    symmetric), or ValueError / TypeError for bad shapes, values, times or a singular Θ̃."""
    kind, t_kind = case["kind"], case["t_kind"]
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n + m, 3))
    theta_all = z @ z.T + 0.5 * np.eye(n + m)
    sigma_all = 0.3 * z @ z.T + 0.2 * np.eye(n + m)
    y = rng.standard_normal((n, 2) if outputs else n)
    args = [
        theta_all[:n, :n],
        sigma_all[:n, :n],
        y,
        theta_all[n:, :n],
        sigma_all[n:, :n],
        sigma_all[n:, n:],
    ]
    failure = None
    if kind == "theta nonsquare":
        args[0], failure = theta_all[: n + 1, :n], ValueError
    elif kind == "theta nan":
        args[0], failure = np.where(np.eye(n) > 0, np.nan, args[0]), ValueError
    elif kind == "sigma shape":
        args[1], failure = sigma_all[: n + 1, : n + 1], ValueError
    elif kind == "y rows":
        args[2], failure = rng.standard_normal(n + 1), ValueError
    elif kind == "y nan":
        args[2], failure = y * np.nan, ValueError
    elif kind == "test rows":
        args[3], failure = theta_all[:, :n], ValueError  # N + M rows, the others M
    elif kind == "test cols":
        args[4], failure = sigma_all[n:, :], ValueError
    elif kind == "sxx nonsquare":
        args[5], failure = sigma_all[n:, :n], ValueError if m != n else None
    elif kind == "complex":
        args[3], failure = args[3] + 0j, TypeError
    elif kind == "strings":
        args[1], failure = args[1].astype(str), TypeError
    elif kind == "singular":
        args[0] = np.zeros((n, n))
    t, t_fail = GL_TIMES[t_kind]
    failure = failure or t_fail
    time = None if failure else float(np.asarray(t, dtype=np.float64).ravel()[0])
    if failure is None and kind == "singular" and time == np.inf:
        failure = ValueError  # numpy.linalg.LinAlgError: Θ̃ has no inverse
    result = check(
        outcomes, "dynamics.gaussian_limit", lambda: dynamics.gaussian_limit(*args, t=t), failure
    )
    if result is None:
        return
    mean, cov = result
    theta, sigma, _, theta_x, sigma_x, sigma_xx = (np.asarray(a, np.float64) for a in args)
    sigma, sigma_xx = 0.5 * (sigma + sigma.T), 0.5 * (sigma_xx + sigma_xx.T)
    if time == np.inf:
        a = np.linalg.solve(theta, theta_x.T).T
    else:
        block = np.zeros((2 * n, 2 * n))
        block[:n, :n] = -theta / n
        block[:n, n:] = np.eye(n)
        a = theta_x @ expm(time * block)[:n, n:] / n  # Θ(x, X) Θ̃⁻¹ (I − e^{−tΘ̃/N})
    want_mean = (a @ y.reshape(n, -1)).reshape(m, *y.shape[1:])
    want_cov = sigma_xx - a @ sigma_x.T - sigma_x @ a.T + a @ sigma @ a.T
    size = np.abs(y).max() * max(1.0, np.abs(a).sum(axis=1).max())
    assert_close(mean, want_mean, size, 1e-7, "gaussian_limit mean")
    size = np.abs(sigma_all).max() * max(1.0, np.abs(a).sum(axis=1).max()) ** 2
    assert_close(cov, want_cov, size, 1e-7, "gaussian_limit cov")
    np.testing.assert_array_equal(cov, cov.T)


Q_ARGS = {
    "default": ((0.1, 0.5, 0.9), None),
    "one": ([0.5], None),
    "array": (np.array([0.01, 0.99]), None),
    "generator": ((p for p in (0.25, 0.75)), None),
    "zero": ([0.0, 0.5], ValueError),
    "one_": ([1.0], ValueError),
    "above": ([1.5], ValueError),
    "nan": ([np.nan], ValueError),
    "empty": ([], ValueError),
    "2d": ([[0.5]], ValueError),
    "scalar": (0.5, TypeError),
    "none": (None, TypeError),
    "strings": (["0.5"], TypeError),
}


Q_GOOD = ["default", "one", "array", "generator"]


@examples(0.4)
@given(
    m=st.integers(1, 4),
    outputs=st.sampled_from([None, 3]),
    seed=st.integers(0, 2**16),
    case=one_fault(
        kind=(["ok", "ok", "ok", "list", "negative variance"],
              ["empty", "mean nan", "mean 3d", "mean complex", "mean strings", "cov nonsquare",
               "cov rows", "cov inf", "cov 1d", "cov complex"]),
        q_kind=(Q_GOOD, [q for q in Q_ARGS if q not in Q_GOOD]),
    ),
)  # fmt: skip
@example(m=3, outputs=None, seed=0, case=dict(fault="kind", kind="cov nonsquare", q_kind="one"))
@example(m=3, outputs=None, seed=0, case=dict(fault="kind", kind="mean nan", q_kind="one"))
@example(m=3, outputs=None, seed=0, case=dict(fault="q_kind", kind="ok", q_kind="above"))
def test_quantiles_any_input(m, outputs, seed, case, outcomes):
    """quantiles of any means, covariances and probabilities: mean + Φ⁻¹(p)·std (negative
    variances counting as 0), or ValueError / TypeError."""
    kind, q_kind = case["kind"], case["q_kind"]
    m = 0 if kind == "empty" else m
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal((m, outputs) if outputs else m)
    a = rng.standard_normal((m, m))
    cov = a @ a.T
    failure = ValueError if m == 0 else None
    if kind == "mean nan" and m:
        mean, failure = mean * np.nan, ValueError
    elif kind == "mean 3d":
        mean, failure = mean[..., None, None], ValueError
    elif kind == "mean complex":
        mean, failure = mean + 0j, TypeError
    elif kind == "mean strings":
        mean, failure = mean.astype(str), TypeError
    elif kind == "cov nonsquare":
        cov, failure = np.hstack([cov, np.ones((m, 1))]), failure or ValueError
    elif kind == "cov rows":
        cov, failure = np.eye(m + 1), failure or ValueError
    elif kind == "cov inf" and m:
        cov, failure = cov + np.inf, failure or ValueError
    elif kind == "cov 1d":
        cov, failure = np.diag(cov), failure or ValueError
    elif kind == "cov complex":
        cov, failure = cov + 0j, failure or TypeError
    elif kind == "negative variance" and m:
        cov[0, 0] = -1.0  # counts as 0
    elif kind == "list":
        mean, cov = mean.tolist(), cov.tolist()
    q, q_fail = Q_ARGS[q_kind]
    if q_kind == "generator":
        q = (p for p in (0.25, 0.75))
    failure = failure or q_fail
    bands = check(outcomes, "dynamics.quantiles", lambda: dynamics.quantiles(mean, cov, q), failure)
    if bands is None:
        return
    probs = {"default": (0.1, 0.5, 0.9), "one": [0.5], "generator": (0.25, 0.75)}.get(q_kind, q)
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    std = np.sqrt(np.maximum(np.diag(cov), 0)).reshape(m, *([1] * (mean.ndim - 1)))
    want = np.stack([mean + statistics.NormalDist().inv_cdf(float(p)) * std for p in probs])
    assert_close(bands, want, np.abs(mean).max() + 3 * std.max() + 1e-300, 1e-7, "quantiles")


# ----------------------------------------------------------------- mse_flow


@SETTINGS
@given(
    n=st.integers(0, 5),
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.complex128, np.object_]),
    y_shape=st.sampled_from(["vector", "matrix", "wrong"]),
    bad=st.sampled_from([None, np.nan, np.inf]),
)
def test_mse_flow_any_input(n, dtype, y_shape, bad, outcomes):
    """mse_flow of a positive definite kernel: f_∞ = y and f_0 unchanged, or TypeError for a
    kernel that is not real, ValueError for empty, mismatched or non-finite targets."""
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n + 2))
    k = (a @ a.T + np.eye(n)).astype(dtype) if n else np.zeros((0, 0), dtype)
    y = {
        "vector": rng.standard_normal(n),
        "matrix": rng.standard_normal((n, 2)),
        "wrong": rng.standard_normal(n + 1),
    }[y_shape]
    if bad is not None and n:
        y[0] = bad
    failure = None
    if np.dtype(dtype).kind not in "biuf":
        failure = TypeError
    elif n == 0 or y_shape == "wrong" or bad is not None:
        failure = ValueError
    flow = check(outcomes, "dynamics.mse_flow", lambda: nk.dynamics.mse_flow(k, y), failure)
    if flow is None:
        return
    f0 = np.zeros_like(y)
    f_train, _ = flow(np.inf, f0)
    np.testing.assert_allclose(f_train, y, atol=1e-8)
    np.testing.assert_array_equal(flow(0.0, f0)[0], f0)
