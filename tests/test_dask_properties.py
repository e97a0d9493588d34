"""Property-based tests (hypothesis) of ntkfast.dask: limit_kernel and ntk on NumPy and
Dask arrays of any kind, computed with the synchronous scheduler, against tests/reference.py
(declared dtypes must be the computed ones). The contract is that of tests/properties.py;
the @example cases are regressions of bugs these tests found.
"""

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property-based tests need hypothesis (test extra)")
da = pytest.importorskip("dask.array", reason="needs dask (the dask extra)")
dask = pytest.importorskip("dask", reason="needs dask (the dask extra)")
nkd = pytest.importorskip("ntkfast.dask", reason="needs dask (the dask extra)")
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from properties import (  # noqa: E402
    F32,
    F64,
    KERNEL_LIMIT,
    NETS,
    P32,
    P64,
    X32,
    X_NET,
    as_dtype,
    assert_close,
    check,
    examples,
    input_dtype,
    inputs,
    network_input_failure,
    overflows,
    sample_failure,
    to64,
    tolerance,
)

import reference  # noqa: E402
from reference import explicit_jacobian  # noqa: E402


def dask_failure(values, other, has_other, rest):
    """ntkfast.dask checks the dtype and dimensions of x1, then of x2, when it builds the
    graph; the rest (emptiness, NaN/inf, features, overflow) follows: ValueError."""
    for v in [values] + ([other] if has_other else []):
        if v is None:
            return TypeError
        if v.ndim != 2:
            return ValueError
    if sample_failure(values) or (has_other and sample_failure(other)):
        return ValueError
    return rest()


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
def test_dask_limit_kernel_any_input(x, y, as_dask, rows, get, depth, outcomes):
    """ntkfast.dask.limit_kernel of NumPy or Dask arrays of anything: the reference's kernels
    with the declared dtype equal to the computed one, or the errors of ntkfast.limit_kernel
    (the dtype and dimensions checked when the graph is built)."""
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

    result = check(outcomes, "dask.limit_kernel", run, failure)
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
def test_dask_ntk_any_input(x, y, dtype, as_dask, rows, output, outcomes):
    """ntkfast.dask.ntk of an erf network (float64 or float32 parameters) on anything: the
    explicit Jacobian products in every output form, declared and computed dtypes equal, or
    the errors of MLP.ntk."""
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

    result = check(outcomes, "dask.ntk", run, failure)
    if result is None:
        return
    j1 = explicit_jacobian(net, to64(params), as_dtype(xv, dtype))
    j2 = j1 if yv is None else explicit_jacobian(net, to64(params), as_dtype(yv, dtype))
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
