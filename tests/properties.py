"""Shared pieces of the property-based tests (tests/test_*_properties.py).

The contract of those tests: every case either returns the right answer (checked against an
independent reference) or raises the expected ValueError / TypeError / MemoryError with a
message; two documented exceptions are expected where they belong (train's DivergenceError,
and a user callback's own exception, which must come out unchanged). Anything else, a
PanicException included, fails. Each test counts how its cases ended in the ``outcomes``
fixture (tests/conftest.py).

Here: the hypothesis settings, strategies for inputs of any dtype, shape, values and layout,
the rules by which input validation must fail, and ``check``, which every case goes through.
Import it only after ``pytest.importorskip("hypothesis")``: hypothesis is a test extra.
"""

import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

import ntkfast as nk

from conftest import PROPERTY_EXAMPLES

SETTINGS = settings(
    max_examples=PROPERTY_EXAMPLES,
    deadline=None,
    # The ``outcomes`` fixture is function-scoped on purpose: it tallies all examples.
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    derandomize=True,
)


def examples(fraction, cap=None):
    """SETTINGS with a share of NTKFAST_PROPERTY_EXAMPLES (slow properties get fewer)."""
    count = max(1, int(PROPERTY_EXAMPLES * fraction))
    return settings(SETTINGS, max_examples=count if cap is None else min(count, cap))


F64, F32 = np.dtype(np.float64), np.dtype(np.float32)
#: Largest mean square of an input row of a network (MLP._inputs) and of a limit kernel
#: (the largest variance of any layer: rust/src/gram.rs, Real::MAX_VARIANCE).
NET_LIMIT = {F64: 1e300, F32: 1e30}
KERNEL_LIMIT = {F64: 1e150, F32: 1e30}
#: Above these magnitudes a result may overflow inside the core: either outcome is right.
OVERFLOW_ZONE = {F64: 1e300, F32: 1e36}


def tolerance(dtype):
    """Accuracy of results relative to their scale: 1e-7 in float64, 1e-4 in float32."""
    return 1e-4 if dtype == F32 else 1e-7


# ----------------------------------------------------------------- outcomes


class Boom(Exception):
    """A user callback's own exception: it must come out of the library unchanged."""


CLEAR = (ValueError, TypeError, MemoryError)
ACCEPTED = (*CLEAR, nk.DivergenceError, Boom)


def category(exc):
    for cls in (MemoryError, TypeError, ValueError):
        if isinstance(exc, cls):
            return cls.__name__
    return type(exc).__name__


def check(outcomes, name, fn, failure, may_return=False, errors=True):
    """Runs fn: it must raise ``failure`` (an exception class or tuple) with a message, or
    return when ``failure`` is None (or ``may_return``); counts the case in ``outcomes``
    (``errors=False``: this entry point is never expected to fail in this test)."""
    try:
        result = fn()
    except ACCEPTED as exc:
        outcomes.add(name, category(exc), errors)
        assert failure is not None and isinstance(exc, failure), (
            f"{name} raised {exc!r}; expected {failure or 'a result'}"
        )
        assert str(exc), f"{name}: {type(exc).__name__} without a message"
        return None
    except BaseException as exc:  # a PanicException or anything else is a bug
        pytest.fail(f"{name} raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
    outcomes.add(name, "result", errors)
    assert failure is None or may_return, f"{name} returned instead of raising {failure}"
    return result


def assert_close(got, want, scale, tol, what):
    """|got − want| ≤ tol · scale (+ a floor below the dtype's smallest normal number)."""
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert np.isfinite(want).all() and np.isfinite(scale).all(), f"{what}: reference not finite"
    assert np.isfinite(got).all(), f"{what}: a result that is not finite"
    err = np.abs(got.astype(np.float64) - want)
    floor = 1e-300 if tol <= 1e-7 else 1e-37  # float32's smallest normal number is 1.2e-38
    bad = ~(err <= tol * scale + floor)
    assert not bad.any(), f"{what}: error {err[bad].max():.3g} above {tol:g} of the scale"


# ----------------------------------------------------------------- expected failures


def as_dtype(values, dtype):
    """float64 values rounded to ``dtype`` (inf where they overflow it)."""
    with np.errstate(all="ignore"):
        return values.astype(dtype).astype(np.float64)


def input_dtype(x):
    """The dtype ntkfast computes a kernel of x in: float32 stays, other reals are float64."""
    return F32 if np.asarray(x).dtype == F32 else F64


def mean_square(values):
    with np.errstate(over="ignore", invalid="ignore"):
        return np.einsum("ij,ij->i", values, values) / values.shape[1]


def overflows(values, limit):
    return not (mean_square(values) <= limit).all()


def sample_failure(values):
    """as_samples: TypeError for non-real input, ValueError for shape, emptiness, NaN/inf."""
    if values is None:
        return TypeError
    if values.ndim != 2 or 0 in values.shape or not np.isfinite(values).all():
        return ValueError
    return None


def kernel_failure(values, dtype):
    """What a limit kernel of these values, computed in ``dtype``, must raise: the checks
    of as_samples, then ValueError for a row whose mean square exceeds KERNEL_LIMIT (the
    ReLU kernels' largest variance, β² aside)."""
    failure = sample_failure(values)
    if failure is None and overflows(as_dtype(values, dtype), KERNEL_LIMIT[dtype]):
        return ValueError
    return failure


def network_input_failure(values, dtype, n0):
    """What MLP._inputs raises for these values and parameters of this dtype."""
    failure = sample_failure(values)
    if failure is not None:
        return failure
    if values.shape[1] != n0 or overflows(as_dtype(values, dtype), NET_LIMIT[dtype]):
        return ValueError
    return None


# ----------------------------------------------------------------- strategies

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


def inputs(cols):
    """Anything (``arrays``) half of the time, finite real arrays the other half."""
    return st.one_of(arrays(cols=cols), finite_arrays(cols))


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


# ----------------------------------------------------------------- networks shared by tests

X32 = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
X_NET = np.random.default_rng(1).standard_normal((4, 3))
NET_ACTIVATIONS = ["erf", "relu", "tanh", "gelu"]
NETS = {a: nk.MLP([3, 4, 2], a, beta=0.3) for a in NET_ACTIVATIONS}
P64 = NETS["erf"].init(seed=7)
P32 = NETS["erf"].init(seed=7, dtype=np.float32)


def to64(params):
    return [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in params]
