"""Property-based tests (hypothesis) of the public entry points that tests/test_properties.py
does not cover: MLP.jacobian and MLP.vjp, MLP.init and the MLP constructor, ntkfast.train,
dynamics.kernel_flow / gaussian_limit / quantiles, the ``ntkfast kernel`` command line,
the scikit-learn kernels and the Dask functions.

Same contract as test_properties.py: every case either returns the right answer (checked
against an independent reference: the forward-mode NumPy Jacobian of test_network.py, gradient
descent written out in NumPy, matrix exponentials, tests/reference.py, the documented
SplitMix64 generator) or raises the expected ValueError / TypeError / MemoryError with a
message. Two documented exceptions are expected where they belong: train's DivergenceError
when the NumPy run diverges too, and a user callback's own exception, which must come out
unchanged. Anything else (a PanicException included) fails. The outcomes go into the shared
``COUNTS`` table; ``test_report_api_counts`` prints the table of these properties.

Each property draws at most one faulty argument at a time (``one_fault``), so that both the
results and every error path are reached; the @example cases are regressions of bugs this file
found.
"""

import collections
import contextlib
import decimal
import fractions
import io
import math
import numbers
import os
import statistics
import tempfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402
from scipy.linalg import expm  # noqa: E402
from scipy.special import softmax  # noqa: E402
from test_network import _flat as flat  # noqa: E402
from test_network import _sigma, explicit_jacobian  # noqa: E402
from test_network import _unflat as unflat  # noqa: E402
from test_properties import (  # noqa: E402
    CLEAR,
    COUNTS,
    EXAMPLES,
    OTHER,
    REAL,
    SETTINGS,
    VALUES,
    arrays,
)

import ntkfast as nk  # noqa: E402
from ntkfast import dynamics  # noqa: E402
from ntkfast.activations import Custom, LeakyReLU  # noqa: E402
from ntkfast.cli import main as cli_main  # noqa: E402

import reference  # noqa: E402

F64, F32 = np.dtype(np.float64), np.dtype(np.float32)
#: Largest mean square of an input row of a network (MLP._inputs) and of a limit kernel.
NET_LIMIT = {F64: 1e300, F32: 1e30}
KERNEL_LIMIT = {F64: 1e150, F32: 1e30}
#: Above these magnitudes a result may overflow inside the core: either outcome is right.
OVERFLOW_ZONE = {F64: 1e300, F32: 1e36}
PROPERTIES = []  # the names counted here, for the report
ALL_PROPERTIES = [
    "MLP.jacobian",
    "MLP.vjp",
    "MLP()",
    "MLP.init",
    "MLP.apply (new network)",
    "ntkfast.train",
    "dynamics.kernel_flow",
    "dynamics.gaussian_limit",
    "dynamics.quantiles",
    "ntkfast kernel (CLI)",
    "sklearn.NTK.__call__",
    "sklearn.NNGP.__call__",
    "sklearn.NTK.diag",
    "sklearn.NNGP.diag",
    "sklearn.NTK()",
    "sklearn.NNGP()",
    "dask.limit_kernel",
    "dask.ntk",
]


def examples(fraction, cap=None):
    """SETTINGS with a share of NTKFAST_PROPERTY_EXAMPLES (slow properties get fewer)."""
    count = max(1, int(EXAMPLES * fraction))
    return settings(SETTINGS, max_examples=count if cap is None else min(count, cap))


def tolerance(dtype):
    return 1e-4 if dtype == F32 else 1e-7


class Boom(Exception):
    """A user callback's own exception: it must come out of the library unchanged."""


ACCEPTED = (*CLEAR, nk.DivergenceError, Boom)


def category(exc):
    for cls in (MemoryError, TypeError, ValueError):
        if isinstance(exc, cls):
            return cls.__name__
    return type(exc).__name__


def check(name, fn, failure, may_return=False):
    """Runs fn: it must raise ``failure`` (an exception class or tuple) with a message, or
    return when ``failure`` is None (or ``may_return``); counts the case in COUNTS."""
    if name not in PROPERTIES:
        PROPERTIES.append(name)
    try:
        result = fn()
    except ACCEPTED as exc:
        COUNTS[f"{name}: {category(exc)}"] += 1
        assert failure is not None and isinstance(exc, failure), (
            f"{name} raised {exc!r}; expected {failure or 'a result'}"
        )
        assert str(exc), f"{name}: {type(exc).__name__} without a message"
        return None
    except BaseException as exc:  # a PanicException or anything else is a bug
        pytest.fail(f"{name} raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
    COUNTS[f"{name}: result"] += 1
    assert failure is None or may_return, f"{name} returned instead of raising {failure}"
    return result


def assert_close(got, want, scale, tol, what):
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert np.isfinite(want).all() and np.isfinite(scale).all(), f"{what}: reference not finite"
    assert np.isfinite(got).all(), f"{what}: a result that is not finite"
    err = np.abs(got.astype(np.float64) - want)
    floor = 1e-300 if tol <= 1e-7 else 1e-37  # float32's smallest normal number is 1.2e-38
    bad = ~(err <= tol * scale + floor)
    assert not bad.any(), f"{what}: error {err[bad].max():.3g} above {tol:g} of the scale"


def as_dtype(values, dtype):
    with np.errstate(all="ignore"):
        return values.astype(dtype).astype(np.float64)


def sample_failure(values):
    """as_samples: TypeError for non-real input, ValueError for shape, emptiness, NaN/inf."""
    if values is None:
        return TypeError
    if values.ndim != 2 or 0 in values.shape or not np.isfinite(values).all():
        return ValueError
    return None


def mean_square(values):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.einsum("ij,ij->i", values, values) / values.shape[1]


def overflows(values, limit):
    return not (mean_square(values) <= limit).all()


def input_dtype(x):
    """The dtype ntkfast computes a kernel of x in: float32 stays, other reals are float64."""
    return F32 if np.asarray(x).dtype == F32 else F64


@st.composite
def shaped(draw, shape, finite=False):
    """An array-like of the given shape, of any dtype and layout (as ``arrays``), and its
    float64 values (None when not real); ``finite``: float values in [-10, 10]."""
    kinds = [np.float64, np.float32] if finite else [np.float64] * 4 + REAL + OTHER
    dtype = draw(st.sampled_from(kinds))
    size = int(np.prod(shape))
    value = st.floats(-10, 10, allow_nan=False) if finite else VALUES
    values = np.array(
        draw(st.lists(value, min_size=size, max_size=size)), dtype=np.float64
    ).reshape(shape)
    if dtype in OTHER:
        return values.astype(dtype), None
    with np.errstate(all="ignore"):
        if np.issubdtype(dtype, np.integer):
            values = np.nan_to_num(values, nan=0, posinf=100, neginf=-100).clip(-100, 100)
        x = values.astype(dtype)
    layout = draw(st.sampled_from(["c", "f", "reversed", "readonly", "list"]))
    if layout == "f":
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = np.ascontiguousarray(x[::-1])[::-1]
    elif layout == "readonly":
        x.flags.writeable = False
    elif layout == "list":
        x = x.tolist()
    with np.errstate(all="ignore"):
        return x, np.asarray(x).astype(np.float64)


@st.composite
def finite_arrays(draw, cols):
    """A real 2-D array with `cols` columns and finite values (most give results)."""
    rows = draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float64, np.float64, np.float32, np.int32]))
    value = st.one_of(
        st.floats(-10, 10, allow_nan=False), st.sampled_from([0.0, 1e-300, 1e-30, 1e4, 1e30])
    )
    values = np.array(draw(st.lists(value, min_size=rows * cols, max_size=rows * cols)))
    with np.errstate(all="ignore"):
        if dtype == np.int32:
            values = values.clip(-100, 100)
        x = values.reshape(rows, cols).astype(dtype)
    layout = draw(st.sampled_from(["c", "f", "list"]))
    if layout == "f":
        x = np.asfortranarray(x)
    elif layout == "list":
        x = x.tolist()
    with np.errstate(all="ignore"):
        return x, np.asarray(x).astype(np.float64)


@st.composite
def one_fault(draw, **dimensions):
    """Arguments that are all valid but at most one (named by "fault", None in about a
    third of the cases): ``dimensions`` maps each name to (valid choices, invalid choices),
    each a list or a strategy."""
    names = list(dimensions)
    fault = draw(st.sampled_from([None] * (len(names) // 2 + 1) + names), label="fault")
    case = {"fault": fault}
    for name, (good, bad) in dimensions.items():
        pool = bad if name == fault else good
        case[name] = draw(pool if isinstance(pool, st.SearchStrategy) else st.sampled_from(pool))
    return case


def inputs(cols):
    """Anything (``arrays``) half of the time, finite real arrays the other half."""
    return st.one_of(arrays(cols=cols), finite_arrays(cols))


# ----------------------------------------------------------------- networks: references


def forward(net, params, x):
    """f_θ(x) in NumPy, from the definition (σ from test_network._sigma)."""
    a = x
    for layer, (w, b) in enumerate(params):
        z = a @ w.T / np.sqrt(w.shape[1]) + net.beta * b
        a = _sigma(net, z)[0] if layer + 1 < net.depth else z
    return a


def network_input_failure(values, dtype, n0):
    """What MLP._inputs raises for these values and parameters of this dtype."""
    failure = sample_failure(values)
    if failure is not None:
        return failure
    if values.shape[1] != n0 or overflows(as_dtype(values, dtype), NET_LIMIT[dtype]):
        return ValueError
    return None


X32 = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
X_NET = np.random.default_rng(1).standard_normal((4, 3))
NET_ACTIVATIONS = ["erf", "relu", "tanh", "gelu"]
NETS = {a: nk.MLP([3, 4, 2], a, beta=0.3) for a in NET_ACTIVATIONS}
P64 = NETS["erf"].init(seed=7)
P32 = NETS["erf"].init(seed=7, dtype=np.float32)


def _to64(params):
    return [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in params]


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
        "float32": (P32, _to64(P32), F32),
        "lists": (tuple([w.tolist(), b.tolist()] for w, b in P64), P64, F64),
        "ints": (ints, _to64(ints), F64),
        "float16": (half, _to64(half), F64),
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
def test_jacobian_and_vjp_any_input(data, activation, kind, d_shape, draw):
    x, values = data
    net = NETS[activation]
    params, param_failure, param_values, dtype = param_variant(kind)
    tol = tolerance(dtype)
    failure = param_failure or network_input_failure(values, dtype, 3)
    jac = check("MLP.jacobian", lambda: net.jacobian(params, x), failure)
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
    grad = check("MLP.vjp", lambda: net.vjp(params, x, d), failure, may_return)
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
GOOD_ACTIVATIONS += [Custom(np.tanh, name="custom_tanh")]  # apply: ValueError
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
def test_mlp_constructor_any_arguments(case, seed):
    widths, activation, beta = case["widths"], case["activation"], case["beta"]
    failure = constructor_failure(widths, activation, beta)
    net = check("MLP()", lambda: nk.MLP(widths, activation, beta=beta), failure)
    if net is None:
        return
    entries = [int(w) for w in widths]
    assert net.widths == entries and net.depth == len(entries) - 1
    assert net.num_params == sum((a + 1) * b for a, b in zip(entries[:-1], entries[1:]))
    assert net.beta == float(beta)
    if net.num_params > 10**15:
        check("MLP.init", lambda: net.init(seed), MemoryError)
        return
    params = check("MLP.init", lambda: net.init(seed), None)
    x = np.random.default_rng(seed).standard_normal((3, entries[0]))
    custom = isinstance(net.activation, Custom)
    f = check(
        "MLP.apply (new network)", lambda: net.apply(params, x), ValueError if custom else None
    )
    if f is not None:
        want = forward(net, params, x)
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
def test_init_any_seed_and_dtype(widths, seed, dtype):
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
    params = check("MLP.init", lambda: net.init(seed=seed, dtype=dtype), failure)
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


# ----------------------------------------------------------------- ntkfast.train

TRAIN_NET = nk.MLP([2, 3, 2], "erf", beta=0.5)
TRAIN_PARAMS = {F64: TRAIN_NET.init(seed=5), F32: TRAIN_NET.init(seed=5, dtype=np.float32)}


def reference_train(net, params, x, y, steps, lr, record_every, x_test, track):
    """Gradient descent θ ← θ + η (1/N) Jᵀ (y − f) in NumPy with the forward-mode Jacobian,
    and train's divergence rule; returns the records, ValueError or "diverged"."""
    theta = flat(_to64(params))
    n, m = x.shape[0], net.widths[-1]

    def ntk(vector):
        jac = explicit_jacobian(net, unflat(net, vector), x)
        return np.einsum("ikp,jkp->ij", jac, jac) / m

    theta0 = ntk(theta) if track else None
    out = {"times": [], "f_train": [], "f_test": [], "cost": [], "drift": []}
    cost0 = None
    for step in range(steps + 1):
        record = step % record_every == 0 or step == steps
        if record:
            out["times"].append(lr * step)
            if x_test is not None:
                out["f_test"].append(forward(net, unflat(net, theta), x_test))
            if track:
                out["drift"].append(np.linalg.norm(ntk(theta) - theta0) / np.linalg.norm(theta0))
        with np.errstate(all="ignore"):
            f = forward(net, unflat(net, theta), x)
            if not np.isfinite(f).all():
                return "diverged"
            value = 0.5 * float(np.mean(np.sum((f - y) ** 2, axis=1)))
        if cost0 is None:
            if not np.isfinite(value):
                return ValueError
            cost0 = value
        if cost0 * 1e12 + 1e12 < value or not np.isfinite(value):
            return "diverged"
        if record:
            out["f_train"].append(f)
            out["cost"].append(value)
        if step == steps:
            break
        jac = explicit_jacobian(net, unflat(net, theta), x)
        with np.errstate(all="ignore"):
            theta = theta + lr * np.einsum("nkp,nk->p", jac, y - f) / n
    out["params"] = theta
    return out


def train_targets(kind, n, dtype, rng):
    """(y_train argument, float64 values or None, the exception its checks raise)."""
    y = rng.standard_normal((n, 2))
    large = 1e100 if dtype == F64 else 1e6
    table = {
        "ok": (y, None),
        "list": (y.tolist(), None),
        "int": (np.round(3 * y).astype(np.int32), None),
        "large": (y * large, None),
        "huge": (y * 1e200, None),  # the initial cost overflows: ValueError when training
        "flat": (y[:, 0], ValueError),
        "rows": (np.vstack([y, y[:1]]), ValueError),
        "nan": (np.where(np.arange(2) == 1, np.nan, y), ValueError),
        "inf": (np.where(np.arange(2) == 0, np.inf, y), ValueError),
        "complex": (y + 1j, TypeError),
        "strings": (y.astype(str), TypeError),
    }
    arg, failure = table[kind]
    values = None if failure else np.asarray(arg, dtype=np.float64)
    return arg, values, failure


def _direction(kind, n, y):
    """A training direction (f, t) -> d: y − f (the default's), or one that is wrong."""

    def boom(f, t):
        raise Boom("the direction callback failed")

    return {
        None: None,
        "same": lambda f, t: y - f,
        "wrong": lambda f, t: np.zeros((n + 1, 2)),
        "complex": lambda f, t: f + 1j,
        "nan": lambda f, t: f * np.nan,
        "boom": boom,
    }[kind]


def _train_case(fault, **changes):
    case = dict(fault=fault, y_kind="ok", steps=2, lr=0.5, record_every=1, test_kind="ok")
    case.update(cost_kind=None, direction=None)
    case.update(changes)
    return dict(data=(X_TRAIN, X_TRAIN), dtype=F64, case=case, track=True, seed=0)


X_TRAIN = np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]])
X_HUGE = np.array([[1e200, 1.0], [1.0, 2.0]])  # finite in float64, inf in float32


@examples(0.4)
@given(
    data=st.one_of(inputs(2), finite_arrays(2)),
    dtype=st.sampled_from([F64, F64, F32]),
    case=one_fault(
        y_kind=(["ok", "ok", "ok", "list", "int", "large"],
                ["huge", "flat", "rows", "nan", "inf", "complex", "strings"]),
        steps=([2, 1, 3, 0, np.int64(2)], [-1, 2.0, None, True]),
        lr=([0.5, 1.0, 1e8, 0.05, np.float32(0.5)],
            [0.0, -1.0, np.nan, np.inf, "0.5", None, True]),
        record_every=([1, 2, 1, 3], [0, 1.5]),
        test_kind=(["ok", None, None], ["cols", "nan", "complex", "huge"]),
        cost_kind=([None, "mse", None], ["object"]),
        direction=([None, "same", None], ["boom", "nan", "wrong", "complex"]),
    ),
    track=st.booleans(),
    seed=st.integers(0, 2**16),
)  # fmt: skip
# Regressions: each of these was accepted silently or raised an unexpected exception.
@example(**_train_case("direction", direction="boom"))  # a callback's exception
@example(**_train_case("direction", direction="complex"))  # was silently made real
@example(**_train_case("cost_kind", cost_kind="object"))  # was AttributeError
@example(**_train_case("y_kind", y_kind="complex"))  # was silently made real
@example(**_train_case("y_kind", y_kind="strings"))  # was parsed as numbers
@example(**_train_case("lr", lr="0.5"))  # was parsed as a number
@example(**_train_case("steps", steps=2.0))  # TypeError like the other integer arguments
@example(**_train_case("y_kind", y_kind="huge"))  # was DivergenceError at step 0
@example(**{**_train_case(None), "data": (X_HUGE, X_HUGE), "dtype": F32})  # was NaN params
def test_train_any_arguments(data, dtype, case, track, seed):
    y_kind, steps, lr = case["y_kind"], case["steps"], case["lr"]
    record_every, test_kind = case["record_every"], case["test_kind"]
    cost_kind, direction = case["cost_kind"], case["direction"]
    x, values = data
    rng = np.random.default_rng(seed)
    params = TRAIN_PARAMS[dtype]
    n = values.shape[0] if values is not None and values.ndim == 2 and values.shape[0] else 3
    y, y_values, y_failure = train_targets(y_kind, n, dtype, rng)
    x_test = {
        None: None,
        "ok": rng.standard_normal((3, 2)),
        "cols": rng.standard_normal((3, 3)),
        "nan": np.full((2, 2), np.nan),
        "complex": np.ones((2, 2), complex),
        "huge": np.full((2, 2), 1e200),
    }[test_kind]
    cost = {None: None, "mse": "mse", "object": object()}[cost_kind]
    if cost == "mse":
        cost = dynamics.MSE(y_values) if y_failure is None else None

    # The checks, in train's order.
    failure = network_input_failure(values, dtype, 2) or y_failure
    if failure is None:
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
            failure = TypeError
        elif steps < 0:
            failure = ValueError
        elif isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            failure = TypeError
        elif not (np.isfinite(lr) and lr > 0):
            failure = ValueError
        elif not isinstance(record_every, numbers.Integral):
            failure = TypeError
        elif record_every < 1:
            failure = ValueError
        elif test_kind not in (None, "ok"):
            failure = TypeError if test_kind == "complex" else ValueError
        elif cost_kind == "object":
            failure = TypeError
    want = None
    if failure is None:
        xv = as_dtype(values, dtype)
        xt = None if x_test is None else as_dtype(x_test, dtype)
        want = reference_train(
            TRAIN_NET, params, xv, y_values, int(steps), float(lr), record_every, xt, track
        )
        if want is ValueError:  # the cost of the initial outputs overflows
            failure = ValueError
        elif steps >= 1 and direction in ("wrong", "complex", "nan", "boom"):
            failure = {
                "wrong": ValueError,
                "complex": TypeError,
                "nan": nk.DivergenceError,
                "boom": Boom,
            }[direction]
        elif want == "diverged":
            failure = nk.DivergenceError
    fn = _direction(direction, n, y_values)
    result = check(
        "ntkfast.train",
        lambda: nk.train(
            TRAIN_NET,
            params,
            x,
            y,
            steps=steps,
            lr=lr,
            x_test=x_test,
            track_ntk=track,
            direction=fn,
            record_every=record_every,
            cost=cost,
        ),
        failure,
    )
    if result is None:
        return
    tol = tolerance(dtype)
    np.testing.assert_array_equal(result.times, want["times"])
    f_ref = np.array(want["f_train"])
    scale = max(np.abs(f_ref).max(), np.abs(y_values).max(), 1e-300)
    assert_close(result.f_train, f_ref, scale, tol, "train f_train")
    assert_close(result.cost, np.array(want["cost"]), 4 * scale**2, tol, "train cost")
    assert_close(flat(result.params), want["params"], np.abs(want["params"]).max(), tol, "params")
    assert all(w.dtype == dtype and b.dtype == dtype for w, b in result.params)
    if x_test is None:
        assert result.f_test is None
    else:
        ref = np.array(want["f_test"])
        assert_close(result.f_test, ref, np.abs(ref).max() + 1e-300, tol, "train f_test")
    if track:
        assert_close(result.ntk_drift, np.array(want["drift"]), 1.0, 10 * tol, "ntk drift")
    else:
        assert result.ntk_drift is None


# ----------------------------------------------------------------- dynamics


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
def test_kernel_flow_any_input(n, outputs, seed, scale, case):
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

    sol = check("dynamics.kernel_flow", run, failure)
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
def test_gaussian_limit_any_input(n, m, outputs, seed, case):
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
    result = check("dynamics.gaussian_limit", lambda: dynamics.gaussian_limit(*args, t=t), failure)
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
def test_quantiles_any_input(m, outputs, seed, case):
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
    bands = check("dynamics.quantiles", lambda: dynamics.quantiles(mean, cov, q), failure)
    if bands is None:
        return
    probs = {"default": (0.1, 0.5, 0.9), "one": [0.5], "generator": (0.25, 0.75)}.get(q_kind, q)
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    std = np.sqrt(np.maximum(np.diag(cov), 0)).reshape(m, *([1] * (mean.ndim - 1)))
    want = np.stack([mean + statistics.NormalDist().inv_cdf(float(p)) * std for p in probs])
    assert_close(bands, want, np.abs(mean).max() + 3 * std.max() + 1e-300, 1e-7, "quantiles")


# ----------------------------------------------------------------- the command line


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _kernel_failure(values, y_values, has_y, use_float32, x_dtype, y_dtype):
    """What the CLI's inputs must give: (exception class or None, dtype of the result)."""
    failure = sample_failure(values) or (has_y and sample_failure(y_values))
    if failure:
        return failure, None
    if use_float32:
        dtype = F32
    elif y_values is not None and x_dtype != y_dtype:
        dtype = F64
    else:
        dtype = x_dtype
    for v in (values, y_values):
        if v is not None:
            v32 = as_dtype(v, dtype)
            if not np.isfinite(v32).all() or overflows(v32, KERNEL_LIMIT[dtype]):
                return ValueError, dtype
    if y_values is not None and y_values.shape[1] != values.shape[1]:
        return ValueError, dtype
    return None, dtype


@examples(0.4)
@given(
    x=st.one_of(inputs(3), finite_arrays(3)),
    y=st.one_of(st.none(), st.none(), inputs(3)),
    case=one_fault(
        x_file=(["npy"], ["missing", "empty", "junk", "truncated", "flipped", "txt", "directory"]),
        depth=(["1", "2", "3"], ["0", "-1", "x"]),
        activation=(["relu", "abs", "leaky_relu"], ["foo"]),
        slope=([None, None, "0.2"], ["inf"]),
        beta=(["0.1", "0.5"], ["nan", "-inf", "abc"]),
        get=(["nngp,ntk", "nngp,ntk", "ntk", "nngp"], ["", "foo", "ntk,ntk"]),
        output=([".npz", ".npz", ".npy"], [".txt", "no folder"]),
        threads=([None], ["0", "abc"]),
    ),
    float32=st.booleans(),
    cut=st.floats(0, 1),
    flip=st.integers(0, 10**6),
)  # fmt: skip
@example(  # an empty file was an EOFError traceback
    x=(np.ones((2, 3)), np.ones((2, 3))),
    y=None,
    case=dict(fault="x_file", x_file="empty", depth="2", activation="relu", slope=None,
              beta="0.1", get="nngp,ntk", output=".npz", threads=None),
    float32=False,
    cut=0.5,
    flip=0,
)  # fmt: skip
def test_cli_kernel_any_input(x, y, case, float32, cut, flip):
    x_file, depth, activation = case["x_file"], case["depth"], case["activation"]
    slope, beta, get = case["slope"], case["beta"], case["get"]
    output, threads = case["output"], case["threads"]
    if case["fault"] not in ("slope", "activation") and slope is not None:
        activation = "leaky_relu"  # a valid slope goes with leaky_relu
    if case["fault"] not in ("get", "output") and output == ".npy" and "," in get:
        get = "ntk"  # a .npy file holds one kernel
    (x, values), y_values = x, None
    with tempfile.TemporaryDirectory() as tmp:
        xpath = os.path.join(tmp, "x.txt" if x_file == "txt" else "x.npy")
        data = _npy_bytes(np.asarray(x))
        if x_file == "directory":
            os.mkdir(xpath)
        elif x_file != "missing":
            if x_file == "empty":
                data = b""
            elif x_file == "junk":
                data = b"not an array " * 3
            elif x_file == "truncated":
                data = data[: int(cut * len(data))]
            elif x_file == "flipped":
                at = flip % len(data)
                data = data[:at] + bytes([data[at] ^ 0xA5]) + data[at + 1 :]
            with open(xpath, "wb") as f:
                f.write(data)
        argv = [] if threads is None else [f"--threads={threads}"]
        argv += ["kernel", xpath]
        if y is not None:
            y, y_values = y
            ypath = os.path.join(tmp, "y.npy")
            np.save(ypath, np.asarray(y))
            argv.append(ypath)
        out = os.path.join(tmp, "no folder", "k.npz") if output == "no folder" else None
        out = out or os.path.join(tmp, "k" + output)
        argv += [f"--depth={depth}", f"--activation={activation}", f"--beta={beta}"]
        argv += [f"--get={get}", "-o", out]
        argv += [] if slope is None else [f"--slope={slope}"]
        argv += ["--float32"] if float32 else []

        # What must happen: a usage error, an error exit, a result, or (for damaged files
        # numpy may still read) either of the last two.
        usage = depth == "x" or beta == "abc" or threads == "abc"
        kinds = tuple(k.strip() for k in get.split(",") if k.strip())
        settings_ok = (
            threads is None
            and output in (".npz", ".npy")
            and (output == ".npz" or len(kinds) == 1)
            and kinds in (("nngp", "ntk"), ("ntk",), ("nngp",))
            and int(depth) >= 1
            and math.isfinite(float(beta))
            and activation != "foo"
            and (slope is None or (activation == "leaky_relu" and slope != "inf"))
        ) if not usage else False  # fmt: skip
        damaged = x_file in ("truncated", "flipped")
        readable = x_file == "npy"
        if damaged:
            try:
                loaded = np.load(xpath, allow_pickle=False)
            except Exception:
                loaded = None
            else:
                readable = True
                with np.errstate(all="ignore"):
                    values = loaded.astype(np.float64) if loaded.dtype.kind in "biuf" else None
                x = loaded
        dtype = None
        if readable:
            x_dtype = input_dtype(x) if values is not None else None
            y_dtype = input_dtype(y) if y_values is not None else None
            failure, dtype = _kernel_failure(
                values, y_values, y is not None, float32, x_dtype, y_dtype
            )
        succeed = settings_ok and readable and failure is None and not usage
        either = damaged and readable and settings_ok and failure is None

        before_files = set(os.listdir(tmp))
        threads_before = nk.get_num_threads()
        stdout, stderr = io.StringIO(), io.StringIO()
        name = "ntkfast kernel (CLI)"
        if name not in PROPERTIES:
            PROPERTIES.append(name)
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                rc = cli_main(argv)
        except SystemExit as exc:
            COUNTS[f"{name}: usage error"] += 1
            assert usage and exc.code == 2, f"SystemExit({exc.code}) for {argv}"
            assert "error:" in stderr.getvalue()
            return
        except BaseException as exc:
            pytest.fail(f"{argv} raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
        finally:
            if nk.get_num_threads() != threads_before:
                nk.set_num_threads(threads_before)
        assert not usage, f"{argv} ran instead of a usage error"
        if rc == 2:
            COUNTS[f"{name}: error exit"] += 1
            assert not succeed or either, f"{argv} failed: {stderr.getvalue()}"
            message = stderr.getvalue()
            assert message.startswith("ntkfast: error: ") and len(message.strip()) > 16, message
            assert set(os.listdir(tmp)) == before_files, "files left behind after an error"
            return
        COUNTS[f"{name}: result"] += 1
        assert rc == 0 and (succeed or either), f"{argv} returned {rc}"
        assert stdout.getvalue().startswith("wrote ")
        stored = np.load(out)
        got = {kinds[0]: stored} if output == ".npy" else {k: stored[k] for k in stored.files}
        assert sorted(got) == sorted(kinds)
        param = 0.0
        if activation == "leaky_relu":
            param = float(slope) if slope is not None else LeakyReLU().slope
        xv = as_dtype(values, dtype)
        yv = None if y_values is None else as_dtype(y_values, dtype)
        common = dict(depth=int(depth), activation=activation, beta=float(beta), param=param)
        want = reference.limit_kernel(xv, yv, **common)
        dx = np.diag(reference.limit_kernel(xv, **common)[1])
        dy = dx if yv is None else np.diag(reference.limit_kernel(yv, **common)[1])
        dx_s = np.diag(reference.limit_kernel(xv, **common)[0])
        dy_s = dx_s if yv is None else np.diag(reference.limit_kernel(yv, **common)[0])
        scales = {"nngp": np.sqrt(np.outer(dx_s, dy_s)), "ntk": np.sqrt(np.outer(dx, dy))}
        for kind in kinds:
            assert got[kind].dtype == dtype
            ref = want[0] if kind == "nngp" else want[1]
            assert_close(got[kind], ref, scales[kind], tolerance(dtype), f"CLI {kind}")


# ----------------------------------------------------------------- scikit-learn

sk = pytest.importorskip("ntkfast.sklearn")


def _ref_kernel(cls, xv, yv, depth, activation, beta):
    index = 1 if cls is sk.NTK else 0
    k = reference.limit_kernel(xv, yv, depth=depth, activation=activation, beta=beta)[index]
    dx = np.diag(reference.limit_kernel(xv, depth=depth, activation=activation, beta=beta)[index])
    if yv is None:
        return k, np.sqrt(np.outer(dx, dx)), dx
    dy = np.diag(reference.limit_kernel(yv, depth=depth, activation=activation, beta=beta)[index])
    return k, np.sqrt(np.outer(dx, dy)), dx


@examples(0.4)
@given(
    x=inputs(3),
    y=st.one_of(st.none(), st.none(), inputs(3)),
    cls=st.sampled_from(["NTK", "NNGP"]),
    depth=st.integers(1, 3),
    activation=st.sampled_from(["relu", "abs"]),
    beta=st.sampled_from([0.1, 0.5, 2.0]),
    fixed=st.booleans(),
    gradient=st.booleans(),
)
@example(  # the float32 gradient was a float32 difference quotient: 1.6e-4 of the scale off
    x=(X32, X32.astype(np.float64)),
    y=None,
    cls="NTK",
    depth=3,
    activation="relu",
    beta=0.3,
    fixed=False,
    gradient=True,
)
def test_sklearn_kernels_any_input(x, y, cls, depth, activation, beta, fixed, gradient):
    cls = getattr(sk, cls)
    kernel = cls(depth, activation, beta, "fixed" if fixed else (1e-5, 1e5))
    name = f"sklearn.{cls.__name__}"
    (x, xv), (y, yv) = x, (None, None) if y is None else y
    xv = None if xv is None else np.atleast_2d(xv)
    yv = None if yv is None else np.atleast_2d(yv)
    dtype = input_dtype(x) if xv is not None else None
    if y is not None and yv is not None and input_dtype(y) != dtype:
        dtype = F64
    failure = sample_failure(xv) or (y is not None and sample_failure(yv)) or None
    if failure is None and y is not None and yv.shape[1] != xv.shape[1]:
        failure = ValueError
    limit = KERNEL_LIMIT[dtype] if dtype is not None else None
    for v in (xv, yv):
        if failure is None and v is not None and overflows(as_dtype(v, dtype), limit):
            failure = ValueError
    call_failure = ValueError if gradient and y is not None else failure
    result = check(f"{name}.__call__", lambda: kernel(x, y, eval_gradient=gradient), call_failure)
    tol = tolerance(dtype)
    if result is not None:
        k, grad = result if gradient else (result, None)
        x64 = as_dtype(xv, dtype)
        y64 = None if yv is None else as_dtype(yv, dtype)
        want, scale, _ = _ref_kernel(cls, x64, y64, depth, activation, beta)
        assert k.dtype == dtype
        assert_close(k, want, scale, tol, f"{name} kernel")
        if gradient and fixed:
            assert grad.shape == (len(x64), len(x64), 0)
        elif gradient:
            h = sk.GRADIENT_STEP
            up = _ref_kernel(cls, x64, None, depth, activation, beta * math.exp(h))[0]
            down = _ref_kernel(cls, x64, None, depth, activation, beta * math.exp(-h))[0]
            assert grad.dtype == dtype
            # Rows within 1e-6 of (anti)parallel but not exactly so: a few ulps of rounding in
            # ρ move θ = arccos ρ by δρ/θ, which the difference quotient (step 1e-4) magnifies
            # in both the library and the reference; those entries get 1e-3.
            closeness = reference.limit_kernel(x64, depth=depth, activation=activation)[2]
            scale = scale * np.where(closeness < 1e-6, 1e-3 / tol, 1.0)
            assert_close(grad[:, :, 0], (up - down) / (2 * h), scale, tol, f"{name} gradient")
    # diag(X): the checks of X alone.
    diag_failure = sample_failure(xv)
    if diag_failure is None and overflows(
        as_dtype(xv, input_dtype(x)), KERNEL_LIMIT[input_dtype(x)]
    ):
        diag_failure = ValueError
    d = check(f"{name}.diag", lambda: kernel.diag(x), diag_failure)
    if d is not None:
        x_dtype = input_dtype(x)
        _, _, want = _ref_kernel(cls, as_dtype(xv, x_dtype), None, depth, activation, beta)
        assert d.dtype == x_dtype
        assert_close(d, want, np.abs(want), tolerance(x_dtype), f"{name}.diag")


def test_sklearn_gradient_of_parallel_rows():
    """Identical and antiparallel rows: ρ is snapped to ±1 within a few ulps in the core, so
    θ = arccos ρ is exactly 0 for identical rows whatever the rounding, and the difference
    quotient of eval_gradient does not magnify a 1e-8 jitter of the kernel into 1e-4."""
    x = np.array([[2.0, 3, 1], [2, 3, 1], [-2, -3, -1], [2, 3, 1], [0, 2, 2], [1, 2, -3]])
    kernel = sk.NTK(depth=3, activation="abs", beta=0.1)
    _, grad = kernel(x, eval_gradient=True)
    h = sk.GRADIENT_STEP
    up = _ref_kernel(sk.NTK, x, None, 3, "abs", 0.1 * math.exp(h))[0]
    down = _ref_kernel(sk.NTK, x, None, 3, "abs", 0.1 * math.exp(-h))[0]
    _, scale, _ = _ref_kernel(sk.NTK, x, None, 3, "abs", 0.1)
    assert_close(grad[:, :, 0], (up - down) / (2 * h), scale, 1e-7, "gradient")


@examples(0.25)
@given(
    cls=st.sampled_from(["NTK", "NNGP"]),
    case=one_fault(
        depth=([1, 2, 3, np.int64(2)], [0, -1, 1.5, True, "2", None]),
        activation=(["relu", "erf", LeakyReLU(0.3)], ["foo", None]),
        beta=([0.1, 1, 0.0, np.float32(0.3), np.int64(1)],
              [-0.1, np.nan, np.inf, True, np.bool_(True), "0.1", 1j, None]),
        bounds=([(1e-5, 1e5), "fixed", [1e-2, 10]],
                ["foo", (1,), (1, 2, 3), (np.nan, 1), (2, 1), (0, 1), (1e-3, np.inf), None,
                 object()]),
    ),
)  # fmt: skip
@example(  # bounds that are not numbers: was a TypeError from float()
    cls="NTK", case=dict(fault="bounds", depth=2, activation="relu", beta=0.1, bounds=object())
)
@example(  # a bool beta: was accepted, then a TypeError at the first call
    cls="NTK", case=dict(fault="beta", depth=2, activation="relu", beta=True, bounds="fixed")
)
def test_sklearn_constructor_any_arguments(cls, case):
    depth, activation, beta, bounds = (
        case["depth"],
        case["activation"],
        case["beta"],
        case["bounds"],
    )
    cls = getattr(sk, cls)
    failure = None
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        failure = ValueError
    elif isinstance(activation, str) and activation not in nk.activations.NAMES:
        failure = ValueError
    elif not isinstance(activation, (str, nk.activations.Activation)):
        failure = TypeError
    elif (
        isinstance(beta, (bool, np.bool_))
        or not isinstance(beta, (int, float, np.integer, np.floating))
        or not (math.isfinite(beta) and beta >= 0)
    ):
        failure = ValueError
    elif isinstance(bounds, str):
        failure = None if bounds == "fixed" else ValueError
    else:
        try:
            lo, hi = np.asarray(bounds, dtype=float).ravel()
        except (TypeError, ValueError):
            failure = ValueError
        else:
            if not (0 < lo < hi < np.inf) or beta == 0:
                failure = ValueError
    kernel = check(
        f"sklearn.{cls.__name__}()", lambda: cls(depth, activation, beta, bounds), failure
    )
    if kernel is None:
        return
    x = np.random.default_rng(0).standard_normal((4, 3))
    act = activation if isinstance(activation, str) else "leaky_relu"
    param = 0.3 if act == "leaky_relu" else 0.0
    index = 1 if cls is sk.NTK else 0
    want = reference.limit_kernel(
        x, depth=int(depth), activation=act, beta=float(beta), param=param
    )
    k, grad = kernel(x, eval_gradient=True)
    np.testing.assert_allclose(k, want[index], rtol=1e-7, atol=1e-12)
    assert grad.shape == (4, 4, 0 if bounds == "fixed" else 1)


# ----------------------------------------------------------------- Dask

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
nkd = pytest.importorskip("ntkfast.dask")


def dask_failure(values, other, has_other, check):
    """ntkfast.dask checks the dtype and dimensions of x1, then of x2, when it builds the
    graph; the rest (emptiness, NaN/inf, features, overflow) follows: ValueError."""
    for v in [values] + ([other] if has_other else []):
        if v is None:
            return TypeError
        if v.ndim != 2:
            return ValueError
    if sample_failure(values) or (has_other and sample_failure(other)):
        return ValueError
    return check()


def _dask(x, rows):
    """A Dask array of x in chunks of ``rows`` rows (the dtype checks run on it too)."""
    arr = np.asarray(x)
    if arr.ndim == 0 or arr.shape[0] == 0:
        return da.from_array(arr)
    return da.from_array(arr, chunks=(rows, *arr.shape[1:]))


@examples(0.2, cap=40)
@given(
    x=inputs(3),
    y=st.one_of(st.none(), inputs(3)),
    as_dask=st.booleans(),
    rows=st.integers(1, 3),
    get=st.sampled_from([("nngp", "ntk"), "ntk", "nngp"]),
    depth=st.integers(1, 3),
)
@example(  # float32 and float16 inputs: declared float32, computed float64
    x=(X32, X32.astype(np.float64)),
    y=(X32.astype(np.float16), X32.astype(np.float16).astype(np.float64)),
    as_dask=True,
    rows=2,
    get="ntk",
    depth=2,
)
@example(  # a complex 1-D input: TypeError as for ntkfast.limit_kernel (was ValueError)
    x=(np.ones(3, complex), None), y=None, as_dask=False, rows=1, get="ntk", depth=2
)
def test_dask_limit_kernel_any_input(x, y, as_dask, rows, get, depth):
    (x, xv), (y, yv) = x, (None, None) if y is None else y
    dtype = None

    def rest():
        nonlocal dtype
        dtype = input_dtype(x) if y is None else np.result_type(input_dtype(x), input_dtype(y))
        if y is not None and yv.shape[1] != xv.shape[1]:
            return ValueError
        for v in (xv, yv):
            if v is not None and overflows(as_dtype(v, dtype), KERNEL_LIMIT[dtype]):
                return ValueError
        return None

    failure = dask_failure(xv, yv, y is not None, rest)
    args = (_dask(x, rows), None if y is None else _dask(y, rows)) if as_dask else (x, y)

    def run():
        k = nkd.limit_kernel(*args, depth=depth, activation="relu", beta=0.2, get=get)
        lazy = [k] if isinstance(get, str) else [k.nngp, k.ntk]
        computed = dask.compute(*lazy, scheduler="synchronous")
        for a, c in zip(lazy, computed):
            assert a.dtype == c.dtype, f"declared {a.dtype}, computed {c.dtype}"
        return computed

    result = check("dask.limit_kernel", run, failure)
    if result is None:
        return
    x64 = as_dtype(xv, dtype)
    y64 = None if yv is None else as_dtype(yv, dtype)
    want = reference.limit_kernel(x64, y64, depth=depth, activation="relu", beta=0.2)
    kinds = [get] if isinstance(get, str) else list(get)
    for kind, got in zip(kinds, result):
        index = 0 if kind == "nngp" else 1
        dx = np.diag(reference.limit_kernel(x64, depth=depth, activation="relu", beta=0.2)[index])
        dy = (
            dx
            if y64 is None
            else np.diag(
                reference.limit_kernel(y64, depth=depth, activation="relu", beta=0.2)[index]
            )
        )
        assert got.dtype == dtype
        assert_close(got, want[index], np.sqrt(np.outer(dx, dy)), tolerance(dtype), f"dask {kind}")


@examples(0.2, cap=40)
@given(
    x=inputs(3),
    y=st.one_of(st.none(), inputs(3)),
    dtype=st.sampled_from([F64, F32]),
    as_dask=st.booleans(),
    rows=st.integers(1, 3),
    output=st.sampled_from(["trace", "diagonal", "full"]),
)
@example(  # float32 parameters: declared float64, computed float32
    x=(X_NET, X_NET), y=None, dtype=F32, as_dask=True, rows=2, output="full"
)
def test_dask_ntk_any_input(x, y, dtype, as_dask, rows, output):
    net = NETS["erf"]
    params = P64 if dtype == F64 else P32
    (x, xv), (y, yv) = x, (None, None) if y is None else y

    def rest():
        for v in (xv, yv):
            if v is not None and network_input_failure(v, dtype, 3):
                return ValueError
        return None

    failure = dask_failure(xv, yv, y is not None, rest)
    args = (_dask(x, rows), None if y is None else _dask(y, rows)) if as_dask else (x, y)

    def run():
        lazy = nkd.ntk(net, params, *args, output=output)
        computed = lazy.compute(scheduler="synchronous")
        assert lazy.dtype == computed.dtype, f"declared {lazy.dtype}, computed {computed.dtype}"
        return computed

    result = check("dask.ntk", run, failure)
    if result is None:
        return
    j1 = explicit_jacobian(net, _to64(params), as_dtype(xv, dtype))
    j2 = j1 if yv is None else explicit_jacobian(net, _to64(params), as_dtype(yv, dtype))
    full = np.einsum("ikp,jlp->ijkl", j1, j2)
    d1 = np.einsum("ikp,ikp->i", j1, j1) / 2
    d2 = np.einsum("ikp,ikp->i", j2, j2) / 2
    scale = np.sqrt(np.outer(d1, d2))
    want = {
        "trace": np.einsum("ijkk->ij", full) / 2,
        "diagonal": np.einsum("ijkk->ijk", full),
        "full": full,
    }[output]
    scale = scale.reshape(scale.shape + (1,) * (want.ndim - 2))
    assert result.dtype == dtype
    assert_close(result, want, scale, tolerance(dtype), f"dask ntk {output}")


# ----------------------------------------------------------------- the table


def test_report_api_counts():
    """Prints, per property of this file, how many cases it tried and how they ended."""
    columns = ["result", "ValueError", "TypeError", "MemoryError"]
    rows = {}
    for key, count in COUNTS.items():
        name, _, how = key.rpartition(": ")
        if name in PROPERTIES:
            rows.setdefault(name, collections.Counter())[how] += count
    extra = sorted({how for r in rows.values() for how in r} - set(columns))
    header = ["property", "cases", *columns, *extra]
    table = [header]
    totals = collections.Counter()
    for name in PROPERTIES:
        r = rows.get(name, collections.Counter())
        totals.update(r)
        table.append([name, sum(r.values()), *(r[c] for c in columns + extra)])
    table.append(["total", sum(totals.values()), *(totals[c] for c in columns + extra)])
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    print(f"\nproperty cases (this file): {sum(totals.values())}")
    for row in table:
        print(
            "  "
            + "  ".join(
                str(v).rjust(w) if i else str(v).ljust(w)
                for i, (v, w) in enumerate(zip(row, widths))
            )
        )
    if EXAMPLES >= 100 and set(ALL_PROPERTIES) <= set(PROPERTIES):
        for name in ALL_PROPERTIES:
            r = rows[name]
            # Each property must both compute results and reach its errors.
            assert r["result"] > 0, f"{name}: no case returned a result"
            assert sum(r.values()) > r["result"], f"{name}: no case raised"
