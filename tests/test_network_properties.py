"""Property-based tests (hypothesis) of the finite-width networks: the MLP constructor,
MLP.init, MLP.apply and MLP.ntk, MLP.jacobian and MLP.vjp.

References: the forward-mode NumPy Jacobian and forward pass of tests/reference.py and the
documented SplitMix64 generator; the contract is that of tests/properties.py. Each property
draws at most one faulty argument at a time (``one_fault``), so that both the results and
every error path are reached; the @example cases are regressions of bugs these tests found.
"""

import decimal
import fractions
import math
import numbers

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property-based tests need hypothesis (test extra)")
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from properties import (  # noqa: E402
    F32,
    F64,
    NET_ACTIVATIONS,
    NETS,
    OVERFLOW_ZONE,
    P32,
    P64,
    SETTINGS,
    arrays,
    as_dtype,
    assert_close,
    check,
    examples,
    inputs,
    network_input_failure,
    one_fault,
    sample_failure,
    shaped,
    to64,
    tolerance,
)

import ntkfast as nk  # noqa: E402
from ntkfast.activations import Custom, LeakyReLU  # noqa: E402

import reference  # noqa: E402
from reference import explicit_jacobian, flat  # noqa: E402


def param_variant(kind):
    """(params argument, the exception it must raise or None, its float64 values, dtype)."""
    (w0, b0), (w1, b1) = P64
    nan_w = w0.copy()
    nan_w[1, 2] = np.nan
    inf_b = b1.copy()
    inf_b[0] = -np.inf
    ints = [(np.round(2 * w).astype(np.int64), np.round(2 * b).astype(np.int8)) for w, b in P64]
    half = [(w.astype(np.float16), b.astype(np.float16)) for w, b in P64]
    tiny = [(w * 1e-200, b * 1e-200) for w, b in P64]
    good = {
        "float64": (P64, P64, F64),
        "float32": (P32, to64(P32), F32),
        "lists": (tuple([w.tolist(), b.tolist()] for w, b in P64), P64, F64),
        "ints": (ints, to64(ints), F64),
        "float16": (half, to64(half), F64),
        "strided": ([(np.asfortranarray(w), np.repeat(b, 2)[::2]) for w, b in P64], P64, F64),
        "tiny": (tiny, tiny, F64),
    }
    if kind in good:
        params, values, dtype = good[kind]
        return params, None, values, dtype
    bad = {
        "short": (P64[:1], ValueError),
        "long": (P64 + [P64[-1]], ValueError),
        "transposed": ([(w0.T, b0), (w1, b1)], ValueError),
        "bias2d": ([(w0, b0[None]), (w1, b1)], ValueError),
        "nan": ([(nan_w, b0), (w1, b1)], ValueError),
        "inf": ([(w0, b0), (w1, inf_b)], ValueError),
        "complex": ([(w0.astype(complex), b0), (w1, b1)], TypeError),
        "strings": ([(w0, b0), (w1.astype(str), b1)], TypeError),
        "mixed": ([(w0.astype(np.float32), b0.astype(np.float32)), (w1, b1)], TypeError),
        "ndarray": (np.zeros(3), TypeError),
        "dict": ({0: P64[0], 1: P64[1]}, TypeError),
        "triple": ([(w0, b0, b0), (w1, b1)], TypeError),
        "none": (None, TypeError),
    }
    params, failure = bad[kind]
    return params, failure, None, F64


PARAM_KINDS = ["float64"] * 12 + ["float32"] * 6 + ["lists", "ints", "float16", "strided", "tiny"]
PARAM_KINDS += ["short", "long", "transposed", "bias2d", "nan", "inf", "complex", "strings"]
PARAM_KINDS += ["mixed", "ndarray", "dict", "triple", "none"]


# ----------------------------------------------------------------- MLP.jacobian and MLP.vjp


@examples(1.0)
@given(
    data=inputs(3),
    activation=st.sampled_from(NET_ACTIVATIONS),
    kind=st.sampled_from(PARAM_KINDS),
    d_shape=st.sampled_from(["match", "match", "match", "rows", "cols", "flat"]),
    draw=st.data(),
)
def test_jacobian_and_vjp_any_input(data, activation, kind, d_shape, draw, outcomes):
    """jacobian and vjp of small networks on any input, with parameters of any kind and
    cotangents d of any shape: the forward-mode NumPy Jacobian and (1/N) Σ J(x_i)ᵀ d_i in the
    parameters' dtype, or the errors of the parameters, the inputs or d (either outcome where
    the gradient is beyond what the dtype holds)."""
    x, values = data
    net = NETS[activation]
    params, param_failure, param_values, dtype = param_variant(kind)
    tol = tolerance(dtype)
    failure = param_failure or network_input_failure(values, dtype, 3)
    jac = check(outcomes, "MLP.jacobian", lambda: net.jacobian(params, x), failure)
    ref = None
    if failure is None:
        ref = explicit_jacobian(net, param_values, as_dtype(values, dtype))
    if jac is not None:
        assert jac.dtype == dtype
        assert_close(jac, ref, np.abs(ref).max(axis=(1, 2), keepdims=True), tol, "jacobian")

    n = values.shape[0] if values is not None and values.ndim == 2 else 2
    shape = {"match": (n, 2), "rows": (n + 1, 2), "cols": (n, 3), "flat": (2 * n,)}[d_shape]
    d, d_values = draw.draw(st.one_of(shaped(shape), shaped(shape, finite=True)), label="d")
    may_return = False
    if failure is None:
        failure = sample_failure(d_values)
    if failure is None and d_values.shape != (n, 2):
        failure = ValueError
    if failure is None and not np.isfinite(as_dtype(d_values, dtype)).all():
        failure = ValueError  # d beyond the parameters' dtype
    if failure is None:
        d64 = as_dtype(d_values, dtype)
        with np.errstate(all="ignore"):
            want = np.einsum("nkp,nk->p", ref, d64) / n
            # The Jacobian's scale (its largest entry per sample) times |d|, as for jacobian.
            scale = np.abs(ref).max(axis=(1, 2)) @ np.abs(d64).sum(axis=1) / n
        if not np.isfinite(want).all():
            failure = ValueError  # the gradient overflows float64
        elif np.abs(want).max() > OVERFLOW_ZONE[dtype]:
            failure, may_return = ValueError, True
    grad = check(outcomes, "MLP.vjp", lambda: net.vjp(params, x, d), failure, may_return)
    if grad is not None:
        assert all(w.dtype == dtype and b.dtype == dtype for w, b in grad)
        assert [(w.shape, b.shape) for w, b in grad] == [(w.shape, b.shape) for w, b in P64]
        assert_close(flat(grad), want, scale, tol, "vjp")


# ----------------------------------------------------------------- MLP constructor and init

WIDTH = st.sampled_from(
    [1, 2, 3, 3, 4, 0, -1, 2.5, 2.0, True, np.int64(2), np.uint8(3), np.float64(2), "3", None]
    + [10**30]
)
GOOD_WIDTHS = st.one_of(
    st.lists(st.integers(1, 4), min_size=2, max_size=4),
    st.sampled_from([(3, 2), range(2, 5), np.array([3, 2]), {3: 1, 2: 1}, [np.int64(2), 1]]),
)
BAD_WIDTHS = st.one_of(
    st.lists(WIDTH, max_size=4),  # mostly bad; a valid draw is expected to work
    st.sampled_from(
        [5, None, "34", "3", [], [3], np.array([[3, 2]]), np.array([[3, 2], [1, 1]])]
        + [[3, 10**30]]  # valid, but too large for init: MemoryError
    ),
)
GOOD_ACTIVATIONS = ["relu", "erf", "tanh", "sin", "leaky_relu", LeakyReLU(0.2)]
GOOD_ACTIVATIONS += [Custom(np.tanh, name="custom_tanh")]  # runs in NumPy
BAD_ACTIVATIONS = ["RELU", "", "foo", None, 3, np.tanh]
GOOD_BETAS = st.one_of(
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from([0.0, 1e-300, np.float32(0.5), 2, np.int64(1), fractions.Fraction(1, 3)]),
)
BAD_BETAS = [np.nan, np.inf, -np.inf, True, "0.1", 1j, None, decimal.Decimal("0.1")]


def constructor_failure(widths, activation, beta):
    try:
        entries = list(widths)
    except TypeError:
        return TypeError
    if len(entries) < 2:
        return ValueError
    for w in entries:
        if isinstance(w, bool) or not isinstance(w, numbers.Integral):
            return TypeError
        if int(w) < 1:
            return ValueError
    if isinstance(activation, str):
        if activation not in nk.activations.NAMES:
            return ValueError
    elif not isinstance(activation, nk.activations.Activation):
        return TypeError
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        return TypeError
    if not math.isfinite(float(beta)):
        return ValueError
    return None


@examples(0.5)
@given(
    case=one_fault(
        widths=(GOOD_WIDTHS, BAD_WIDTHS),
        activation=(GOOD_ACTIVATIONS, BAD_ACTIVATIONS),
        beta=(GOOD_BETAS, BAD_BETAS),
    ),
    seed=st.integers(0, 9),
)
# Valid, but init cannot fit 3·10³⁰ parameters: its MemoryError, reached whatever the draws.
@example(case=dict(fault=None, widths=[3, 10**30], activation="relu", beta=0.1), seed=0)
def test_mlp_constructor_any_arguments(case, seed, outcomes):
    """MLP(widths, activation, beta) with one faulty argument at a time: a network with the
    documented widths, depth, parameter count and β whose init and apply work (apply giving
    the NumPy forward pass, a Custom activation's too; MemoryError from init when the
    parameters cannot fit), or the constructor's TypeError / ValueError."""
    widths, activation, beta = case["widths"], case["activation"], case["beta"]
    failure = constructor_failure(widths, activation, beta)
    net = check(outcomes, "MLP()", lambda: nk.MLP(widths, activation, beta=beta), failure)
    if net is None:
        return
    entries = [int(w) for w in widths]
    assert net.widths == entries and net.depth == len(entries) - 1
    assert net.num_params == sum((a + 1) * b for a, b in zip(entries[:-1], entries[1:]))
    assert net.beta == float(beta)
    if net.num_params > 10**15:
        check(outcomes, "MLP.init", lambda: net.init(seed), MemoryError)
        return
    params = check(outcomes, "MLP.init", lambda: net.init(seed), None)
    x = np.random.default_rng(seed).standard_normal((3, entries[0]))
    f = check(outcomes, "MLP.apply (new network)", lambda: net.apply(params, x), None, errors=False)
    if f is not None:
        want = reference.forward(net, params, x)
        np.testing.assert_allclose(f, want, rtol=1e-10, atol=1e-12 * (1 + np.abs(want).max()))


MASK = reference.MASK
SEEDS = st.one_of(
    st.integers(0, MASK),
    st.integers(-(2**70), 2**70),
    st.sampled_from(
        [0, MASK, 2**64, -1, np.uint64(MASK), np.int64(-5), np.int32(7), 2.0, 1.5, True]
        + [False, None, "3", np.float64(3)]
    ),
)
INIT_DTYPES = st.sampled_from(
    [np.float64, np.float32, "float32", "f8", None, np.dtype(np.float32), np.float16, np.int32]
    + [object, complex, "foo", ">f8"]
)


@examples(0.5)
@given(widths=st.sampled_from([[3, 4, 2], [1, 1], [2, 5, 3, 1]]), seed=SEEDS, dtype=INIT_DTYPES)
def test_init_any_seed_and_dtype(widths, seed, dtype, outcomes):
    """init with any seed and dtype: the documented SplitMix64/Box–Muller streams
    (reference.normal_stream) in float64 or float32, the same on a second call, or
    TypeError / ValueError for seeds outside [0, 2⁶⁴) and dtypes other than float32/64."""
    net = nk.MLP(widths, "relu")
    failure = None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        failure = TypeError
    elif not 0 <= int(seed) <= MASK:
        failure = ValueError
    else:
        try:
            want_dtype = np.dtype(dtype)
        except TypeError:
            failure = TypeError
        else:
            if want_dtype not in (F32, F64):
                failure = TypeError
    params = check(outcomes, "MLP.init", lambda: net.init(seed=seed, dtype=dtype), failure)
    if params is None:
        return
    assert len(params) == net.depth
    for layer, ((w, b), n_in, n_out) in enumerate(zip(params, widths[:-1], widths[1:])):
        assert w.shape == (n_out, n_in) and b.shape == (n_out,)
        assert w.dtype == want_dtype and b.dtype == want_dtype
        for got, stream in ((w.ravel(), 2 * layer), (b, 2 * layer + 1)):
            want = reference.normal_stream(int(seed), stream, got.size)
            if want_dtype == F64:
                np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    again = net.init(seed=seed, dtype=dtype)
    assert all(np.array_equal(a, c) for p, q in zip(params, again) for a, c in zip(p, q))


# ----------------------------------------------------------------- MLP.apply and MLP.ntk

NET = nk.MLP([3, 5, 4, 2], "erf", beta=0.3)
PARAMS = NET.init(seed=0)


@SETTINGS
@given(data=arrays(cols=3))
def test_network_any_input(data, outcomes):
    """apply and ntk of a fixed erf network on any input: the NumPy forward pass (and a
    finite, exactly symmetric NTK), or the errors of the inputs (mean square limit 1e300)."""
    x, values = data
    failure = network_input_failure(values, F64, 3)
    f = check(outcomes, "MLP.apply", lambda: NET.apply(PARAMS, x), failure)
    if f is None:
        return
    np.testing.assert_allclose(f, reference.forward(NET, PARAMS, values), rtol=1e-10, atol=1e-12)
    k = check(outcomes, "MLP.ntk", lambda: NET.ntk(PARAMS, x), None, errors=False)
    assert np.isfinite(k).all()
    np.testing.assert_array_equal(k, k.T)
