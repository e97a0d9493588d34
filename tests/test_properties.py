"""Property-based tests (hypothesis): any input either gives the right answer or a clear
ValueError / TypeError / MemoryError; never a panic, a crash, a hang or a silent error.

Inputs vary in shape (0 and 1 rows included, wrong numbers of dimensions), dtype (float16/32/64,
integers, bools, complex, object, strings), values (NaN, ±inf, huge, tiny, zero), and layout
(Fortran order, negative and non-unit strides, read-only arrays, memory maps, lists). Results
are checked against the NumPy reference. ``COUNTS`` records how many cases each property tried
and how they ended (printed at the end of the session, quoted in docs/reliability.md).
"""

import collections
import os
import tempfile

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import ntkfast as nk  # noqa: E402

import reference  # noqa: E402

COUNTS: collections.Counter = collections.Counter()
EXAMPLES = int(os.environ.get("NTKFAST_PROPERTY_EXAMPLES", "300"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
CLEAR = (ValueError, TypeError, MemoryError)

REAL = [np.float16, np.float32, np.float64, np.int8, np.int32, np.int64, np.uint8, np.bool_]
OTHER = [np.complex128, np.object_, np.str_]
FINITE = st.floats(-10, 10, allow_nan=False)
VALUES = st.one_of(
    FINITE,
    FINITE,
    FINITE,
    FINITE,
    st.sampled_from([0.0, 1e-300, -1e-300, 1e-30, 1e30, 1e100, -1e100, 1e200]),
    st.sampled_from([np.nan, np.inf, -np.inf]),
)


@st.composite
def arrays(draw, cols=None):
    """An array-like of any dtype, shape and layout, and the float64 values it stands for
    (None when the input is not real)."""
    dtype = draw(st.sampled_from(REAL + OTHER))
    ndim = draw(st.sampled_from([2, 2, 2, 2, 1, 3]))
    if ndim == 2:
        shape = (draw(st.integers(0, 6)), cols if cols is not None else draw(st.integers(0, 4)))
    else:
        shape = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
    values = np.array(
        draw(st.lists(VALUES, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))),
        dtype=np.float64,
    ).reshape(shape)
    if dtype in (np.str_, np.object_, np.complex128):
        x = values.astype(dtype)
        return x, None
    with np.errstate(all="ignore"):
        if np.issubdtype(dtype, np.integer):
            values = np.nan_to_num(values, nan=0, posinf=100, neginf=-100).clip(-100, 100)
        x = values.astype(dtype)
    layout = draw(st.sampled_from(["c", "f", "reversed", "strided", "readonly", "memmap", "list"]))
    if layout == "f":
        x = np.asfortranarray(x)
    elif layout == "reversed" and x.ndim >= 1:
        x = np.ascontiguousarray(x[::-1])[::-1]
    elif layout == "strided":
        wide = np.repeat(x, 2, axis=-1) if x.ndim else x
        x = wide[..., ::2]
    elif layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    elif layout == "memmap" and x.size:
        fd, path = tempfile.mkstemp(suffix=".npy")
        os.close(fd)
        m = np.lib.format.open_memmap(path, mode="w+", dtype=x.dtype, shape=x.shape)
        m[...] = x
        m.flush()
        x = np.load(path, mmap_mode="r")
        os.unlink(path)
    elif layout == "list":
        x = x.tolist()
    with np.errstate(all="ignore"):
        return x, np.asarray(x).astype(np.float64)


def expected_failure(values, limit):
    """The exception class a valid implementation must raise for these float64 values, or
    None when it must return a result."""
    if values is None:
        return TypeError
    if values.ndim != 2 or 0 in values.shape or not np.isfinite(values).all():
        return ValueError
    if (np.einsum("ij,ij->i", values, values) / values.shape[1] > limit).any():
        return ValueError  # the kernel overflows the dtype
    return None


def outcome(name, fn, failure):
    """Runs fn, checks that it fails exactly when `failure` says, and counts the case."""
    try:
        result = fn()
    except CLEAR as exc:
        COUNTS[f"{name}: {type(exc).__name__}"] += 1
        assert failure is not None and isinstance(exc, failure), repr(exc)
        assert str(exc), "an exception without a message"
        return None
    except BaseException as exc:  # a PanicException or anything else is a bug
        pytest.fail(f"{name} raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
    COUNTS[f"{name}: result"] += 1
    assert failure is None, f"{name} accepted an input that should fail with {failure}"
    return result


@SETTINGS
@given(data=arrays(), depth=st.integers(1, 4))
def test_limit_kernel_any_input(data, depth):
    x, values = data
    dtype = np.asarray(x).dtype if values is not None else None
    limit = 1e30 if dtype == np.float32 else 1e150
    failure = expected_failure(values, limit)
    k = outcome("limit_kernel", lambda: nk.limit_kernel(x, depth=depth, beta=0.1), failure)
    if k is None:
        return
    want_dtype = np.float32 if dtype == np.float32 else np.float64
    s, t, _ = reference.limit_kernel(values.astype(want_dtype).astype(np.float64), depth=depth)
    tol = 1e-4 if want_dtype == np.float32 else 1e-7
    for got, ref in ((k.nngp, s), (k.ntk, t)):
        assert got.dtype == want_dtype and got.shape == ref.shape
        scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
        assert (np.abs(got - ref) <= tol * scale + 1e-300).all()


@SETTINGS
@given(a=arrays(cols=3), b=arrays(cols=3))
def test_cross_kernel_and_diagonal_any_input(a, b):
    (x1, v1), (x2, v2) = a, b
    fail1, fail2 = expected_failure(v1, 1e30), expected_failure(v2, 1e30)
    failure = fail1 or fail2
    k = outcome("cross limit_kernel", lambda: nk.limit_kernel(x1, x2, depth=3, get="ntk"), failure)
    if k is not None:
        assert np.isfinite(k).all() and k.shape == (v1.shape[0], v2.shape[0])
    d = outcome("limit_kernel_diagonal", lambda: nk.limit_kernel_diagonal(x1, depth=3), fail1)
    if d is not None:
        assert np.isfinite(d.ntk).all() and d.ntk.shape == (v1.shape[0],)


NET = nk.MLP([3, 5, 4, 2], "erf", beta=0.3)
PARAMS = NET.init(seed=0)


def forward(values):
    h = values
    for i, (w, b) in enumerate(PARAMS):
        h = h @ w.T / np.sqrt(w.shape[1]) + 0.3 * b
        if i < len(PARAMS) - 1:
            from scipy.special import erf

            h = erf(h)
    return h


@SETTINGS
@given(data=arrays(cols=3))
def test_network_any_input(data):
    x, values = data
    failure = expected_failure(values, 1e300)
    f = outcome("MLP.apply", lambda: NET.apply(PARAMS, x), failure)
    if f is None:
        return
    np.testing.assert_allclose(f, forward(values), rtol=1e-10, atol=1e-12)
    k = outcome("MLP.ntk", lambda: NET.ntk(PARAMS, x), None)
    assert np.isfinite(k).all()
    np.testing.assert_array_equal(k, k.T)


@SETTINGS
@given(
    n=st.integers(0, 5),
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.complex128, np.object_]),
    y_shape=st.sampled_from(["vector", "matrix", "wrong"]),
    bad=st.sampled_from([None, np.nan, np.inf]),
)
def test_mse_flow_any_input(n, dtype, y_shape, bad):
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
    flow = outcome("dynamics.mse_flow", lambda: nk.dynamics.mse_flow(k, y), failure)
    if flow is None:
        return
    f0 = np.zeros_like(y)
    f_train, _ = flow(np.inf, f0)
    np.testing.assert_allclose(f_train, y, atol=1e-8)
    np.testing.assert_array_equal(flow(0.0, f0)[0], f0)


def test_report_counts():
    """Prints how many cases each property tried (for docs/reliability.md)."""
    total = sum(COUNTS.values())
    print(f"\nproperty cases: {total}")
    for key, count in sorted(COUNTS.items()):
        print(f"  {key}: {count}")
    if EXAMPLES >= 100:
        assert total >= 4 * EXAMPLES
