"""Finite-width networks: forward pass, Jacobian, vjp and the empirical NTK.

References: an explicit Jacobian built in NumPy by forward-mode differentiation
(``reference.explicit_jacobian``, a different algorithm from the core's back propagation),
central finite differences, and stored neural-tangents 0.6.5 values
(``tests/data/nt_empirical.npz``, written by ``scripts/make_nt_empirical.py``).
"""

import json
from pathlib import Path

import numpy as np
import pytest

import ntkfast as nk

import reference
from conftest import ACTIVATIONS, SERIES
from reference import explicit_jacobian, flat, unflat

NT = np.load(Path(__file__).parent / "data" / "nt_empirical.npz")
NT_CASES = json.loads(str(NT["cases"]))


def _activation(name, slope=0.2):
    return nk.activations.LeakyReLU(slope) if name == "leaky_relu" else name


def _data(widths, rows, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, widths[0])) * rng.uniform(0.5, 2, (rows, 1))


@pytest.mark.parametrize("activation", [name for name, _ in ACTIVATIONS] + SERIES)
@pytest.mark.parametrize("widths", [[3, 4], [4, 7, 3], [5, 6, 8, 2], [3, 5, 5, 5, 4, 1]])
def test_ntk_equals_explicit_jacobian_product(activation, widths):
    net = nk.MLP(widths, _activation(activation), beta=0.3)
    params = net.init(seed=1)
    x1, x2 = _data(widths, 9), _data(widths, 5, seed=1)
    j1, j2 = explicit_jacobian(net, params, x1), explicit_jacobian(net, params, x2)
    np.testing.assert_allclose(net.jacobian(params, x1), j1, rtol=0, atol=1e-13 * abs(j1).max())
    full = np.einsum("ikp,jlp->ijkl", j1, j2)
    scale = abs(full).max()
    got = net.ntk(params, x1, x2, output="full")
    assert np.abs(got - full).max() <= 1e-12 * scale
    diag = np.einsum("ijkk->ijk", full)
    assert np.abs(net.ntk(params, x1, x2, output="diagonal") - diag).max() <= 1e-12 * scale
    trace = diag.mean(axis=2)
    assert np.abs(net.ntk(params, x1, x2) - trace).max() <= 1e-12 * scale
    same = np.einsum("ikp,jlp->ijkl", j1, j1)
    assert np.abs(net.ntk(params, x1, output="full") - same).max() <= 1e-12 * abs(same).max()


def test_apply_matches_numpy_forward_pass():
    net = nk.MLP([6, 10, 9, 4], "gelu", beta=0.5)
    params = net.init(seed=3)
    x = _data(net.widths, 20)
    want = reference.forward(net, params, x)
    np.testing.assert_allclose(net.apply(params, x), want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "erf", "sin"])
def test_jacobian_and_vjp_match_finite_differences(activation):
    net = nk.MLP([3, 5, 4, 2], activation, beta=0.7)
    params = net.init(seed=2)
    x = _data(net.widths, 4)
    d = np.random.default_rng(5).standard_normal((4, 2))
    theta, h = flat(params), 1e-6
    fd = np.empty((4, 2, theta.size))
    for q in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[q] += h
        down[q] -= h
        fd[:, :, q] = (net.apply(unflat(net, up), x) - net.apply(unflat(net, down), x)) / (2 * h)
    np.testing.assert_allclose(net.jacobian(params, x), fd, atol=1e-7)
    vjp = flat(net.vjp(params, x, d))
    np.testing.assert_allclose(vjp, np.einsum("nkp,nk->p", fd, d) / 4, atol=1e-7)
    # The vjp with d = f − y is the gradient of the cost ½‖f − y‖²_{p_in}.
    y = np.zeros((4, 2))
    cost = lambda p: 0.5 * np.mean(np.sum((net.apply(p, x) - y) ** 2, axis=1))  # noqa: E731
    grad = flat(net.vjp(params, x, net.apply(params, x) - y))
    q = 7
    up, down = theta.copy(), theta.copy()
    up[q] += h
    down[q] -= h
    assert abs(grad[q] - (cost(unflat(net, up)) - cost(unflat(net, down))) / (2 * h)) < 1e-7


@pytest.mark.parametrize("i", range(len(NT_CASES)), ids=lambda i: json.dumps(NT_CASES[i]))
def test_matches_stored_neural_tangents(i):
    case = NT_CASES[i]
    net = nk.MLP(case["widths"], _activation(case["activation"]), beta=case["beta"])
    params = [(NT[f"case{i}_W{layer}"], NT[f"case{i}_b{layer}"]) for layer in range(net.depth)]
    x1, x2 = NT["x1"], NT["x2"]
    np.testing.assert_allclose(net.apply(params, x1), NT[f"case{i}_f"], rtol=1e-12, atol=1e-12)
    for got, want in [
        (net.ntk(params, x1, output="full"), NT[f"case{i}_full11"]),
        (net.ntk(params, x1, x2, output="full"), NT[f"case{i}_full12"]),
        # neural-tangents' trace_axes also averages over the output axis.
        (net.ntk(params, x1), NT[f"case{i}_trace11"]),
    ]:
        assert np.abs(got - want).max() <= 1e-12 * np.abs(want).max()


def test_identities_symmetry_psd_and_threads():
    net = nk.MLP([8, 30, 20, 3], "erf", beta=0.2)
    params = net.init(seed=4)
    x = _data(net.widths, 300)  # several tiles
    full = net.ntk(params, x, output="full")
    assert np.array_equal(full, full.transpose(1, 0, 3, 2))
    assert np.allclose(full, net.ntk(params, x, x.copy(), output="full"), rtol=1e-12, atol=1e-12)
    gram = full.transpose(0, 2, 1, 3).reshape(900, 900)
    assert np.linalg.eigvalsh(gram).min() > -1e-10 * np.abs(gram).max()
    trace = net.ntk(params, x)
    assert np.allclose(trace, np.einsum("ijkk->ij", full) / 3, rtol=1e-12, atol=1e-12)
    before = nk.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            nk.set_num_threads(threads)
            results.append(
                (
                    net.ntk(params, x, output="full"),
                    net.apply(params, x),
                    flat(net.vjp(params, x, np.ones((300, 3)))),
                    flat(net.init(seed=9)),
                )
            )
        for other in results[1:]:
            for a, b in zip(results[0], other):
                assert np.array_equal(a, b)
    finally:
        nk.set_num_threads(before)


def test_float32_agrees_with_float64():
    net = nk.MLP([10, 64, 64, 2], "relu", beta=0.1)
    p64 = net.init(seed=0)
    p32 = net.init(seed=0, dtype=np.float32)
    assert all(w.dtype == np.float32 and b.dtype == np.float32 for w, b in p32)
    x = _data(net.widths, 50)
    for name, args in [("apply", ()), ("ntk", ()), ("jacobian", ())]:
        a = getattr(net, name)(p64, x, *args)
        b = getattr(net, name)(p32, x.astype(np.float32), *args)
        assert b.dtype == np.float32
        assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()


def test_init_is_the_documented_generator():
    """Parameters equal the generator of docs/networks.md written out in NumPy (reference.py)."""
    net = nk.MLP([3, 5, 2], "relu")
    seed = 2**63 + 12345
    params = net.init(seed=seed)
    for layer, (w, b) in enumerate(params):
        np.testing.assert_allclose(
            w.ravel(), reference.normal_stream(seed, 2 * layer, w.size), rtol=1e-14, atol=1e-15
        )
        np.testing.assert_allclose(
            b, reference.normal_stream(seed, 2 * layer + 1, b.size), rtol=1e-14, atol=1e-15
        )
    assert not np.array_equal(params[0][0], net.init(seed=seed + 1)[0][0])


def test_init_statistics():
    from scipy import stats

    net = nk.MLP([300, 400, 1], "relu")
    w = net.init(seed=0)[0][0].ravel()
    assert stats.kstest(w, "norm").pvalue > 1e-3
    assert abs(w.mean()) < 5 / np.sqrt(w.size)


def test_theorem_1_empirical_ntk_converges_to_the_limit():
    """At initialisation Θ̂ → Θ∞ ⊗ Id as the widths grow: the mean relative error over seeds
    falls roughly like 1/√width and the off-diagonal output blocks go to 0."""
    x = _data([4], 6, seed=3)
    limit = nk.limit_kernel(x, depth=3, activation="relu", beta=0.1, get="ntk")
    errors, off = [], []
    for width in (64, 256, 1024, 4096):
        net = nk.MLP([4, width, width, 2], "relu", beta=0.1)
        e, o = [], []
        for seed in range(4):
            full = net.ntk(net.init(seed=seed), x, output="full")
            for k in range(2):
                e.append(np.linalg.norm(full[:, :, k, k] - limit) / np.linalg.norm(limit))
            o.append(np.linalg.norm(full[:, :, 0, 1]) / np.linalg.norm(limit))
        errors.append(np.mean(e))
        off.append(np.mean(o))
    slope = np.polyfit(np.log([64, 256, 1024, 4096]), np.log(errors), 1)[0]
    assert -0.75 < slope < -0.3, (errors, slope)
    # Measured: errors 0.32, 0.17, 0.089, 0.059 (slope −0.41); off-diagonal 0.085 … 0.008.
    assert errors[-1] < errors[0] / 4 and off[-1] < off[0] / 4


def test_bad_input_raises_clear_errors():
    net = nk.MLP([3, 4, 2], "relu", beta=0.1)
    params = net.init(seed=0)
    x = _data(net.widths, 5)
    with pytest.raises(ValueError, match="at least"):
        nk.MLP([3])
    with pytest.raises(ValueError, match=r"widths\[1\] must be at least 1"):
        nk.MLP([3, 0, 1])
    with pytest.raises(TypeError, match="integer"):
        nk.MLP([3, 2.5, 1])
    with pytest.raises(ValueError, match="2 \\(W, b\\) pairs"):
        net.apply(params[:1], x)
    with pytest.raises(TypeError, match="list of 2"):
        net.apply(np.zeros(3), x)
    with pytest.raises(ValueError, match=r"W\[1\] must have shape \(2, 4\)"):
        net.apply([params[0], (params[1][0].T, params[1][1])], x)
    with pytest.raises(ValueError, match=r"b\[0\] must have shape \(4,\)"):
        net.apply([(params[0][0], params[0][1][:3]), params[1]], x)
    with pytest.raises(TypeError, match=r"W\[0\] must be a real array"):
        net.apply([(params[0][0].astype(complex), params[0][1]), params[1]], x)
    with pytest.raises(TypeError, match="all float32 or all float64"):
        net.apply([(params[0][0].astype(np.float32), params[0][1]), params[1]], x)
    bad = params[0][0].copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"W\[0\] has non-finite"):
        net.apply([(bad, params[0][1]), params[1]], x)
    with pytest.raises(ValueError, match="input width is 3"):
        net.ntk(params, np.ones((5, 4)))
    with pytest.raises(ValueError, match="x2 has 2 features"):
        net.ntk(params, x, np.ones((5, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        net.apply(params, np.full((2, 3), np.inf))
    with pytest.raises(ValueError, match="output must be one of"):
        net.ntk(params, x, output="everything")
    with pytest.raises(ValueError, match=r"d must have shape \(5, 2\)"):
        net.vjp(params, x, np.ones((5, 3)))
    with pytest.raises(ValueError, match="seed must be in"):
        net.init(seed=-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        net.init(seed=1.5)
    with pytest.raises(TypeError, match="float32 or float64"):
        net.init(seed=0, dtype=np.int32)
    # Integer parameters are real numbers: converted to float64.
    ints = [(np.ones((4, 3), dtype=int), np.zeros(4, dtype=int)), params[1]]
    assert net.apply(ints, x).dtype == np.float64


def test_inputs_beyond_the_dtype_scale_limit_name_the_row():
    """Mean squares above 1e30 (float32) or 1e300 (float64) are refused, naming the first row,
    including float32 rows whose squares overflow and float64 inputs that overflow float32."""
    net = nk.MLP([3, 4, 2], "relu", beta=0.1)
    p32, p64 = net.init(seed=0, dtype=np.float32), net.init(seed=0)
    x = _data(net.widths, 5)
    cases = [
        (p32, np.float32, 3e15),  # mean square 9e30, finite in float32
        (p32, np.float32, 1e20),  # squares overflow float32
        (p32, np.float64, 1e200),  # float64 input beyond float32's range
        (p64, np.float64, 1e151),  # mean square 1e302
    ]
    for params, dtype, scale in cases:
        big = x.astype(dtype)
        big[3] = (x[3] * scale).astype(dtype)
        with pytest.raises(ValueError, match="row 3 is too large"):
            net.apply(params, big)
        with pytest.raises(ValueError, match="row 3 is too large"):
            net.ntk(params, x, big)
    # Just below the limit is accepted and gives finite kernels.
    ok = x.astype(np.float32)
    ok[3] = (x[3] / np.sqrt(np.mean(x[3] ** 2)) * 3e14).astype(np.float32)  # mean square 9e28
    assert np.isfinite(net.ntk(p32, ok)).all()


def test_non_finite_inputs_name_their_row_before_the_scale_check():
    """The finiteness check rides on the scale check's mean squares: a NaN or an infinity is
    still reported as such, at its own row, even after a row that is only too large."""
    net = nk.MLP([3, 4, 2], "relu", beta=0.1)
    for dtype in (np.float32, np.float64):
        params = net.init(seed=0, dtype=dtype)
        for bad in (np.nan, np.inf, -np.inf):
            x = _data(net.widths, 6).astype(dtype)
            x[1] *= 1e200 if dtype == np.float64 else 1e20  # too large, but finite
            x[4, 2] = bad
            for method, args in [
                (net.apply, (x,)),
                (net.ntk, (x,)),
                (net.ntk, (x[[0, 2]], x)),
                (net.vjp, (x, np.ones((6, 2)))),
            ]:
                with pytest.raises(ValueError, match=r"has non-finite values.*in row 4"):
                    method(params, *args)


def test_jacobian_too_large_is_a_memory_error_before_any_work():
    net = nk.MLP([10, 2000, 2000], "relu")
    params = net.init(seed=0, dtype=np.float32)
    with pytest.raises(MemoryError, match="GiB"):
        net.jacobian(params, np.ones((20, 10), dtype=np.float32))
