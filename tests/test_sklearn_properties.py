"""Property-based tests (hypothesis) of the scikit-learn kernels ntkfast.sklearn.NTK and
NNGP: construction with any arguments, ``__call__`` (with and without gradients in β) and
``diag`` on any input, against tests/reference.py and its difference quotient in log β.
The contract is that of tests/properties.py; the @example cases are regressions of bugs
these tests found.
"""

import math

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property-based tests need hypothesis (test extra)")
sk = pytest.importorskip("ntkfast.sklearn", reason="needs scikit-learn (the sklearn extra)")
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from properties import (  # noqa: E402
    F64,
    KERNEL_LIMIT,
    X32,
    as_dtype,
    assert_close,
    check,
    examples,
    input_dtype,
    inputs,
    one_fault,
    overflows,
    sample_failure,
    tolerance,
)

import ntkfast as nk  # noqa: E402
from ntkfast.activations import LeakyReLU  # noqa: E402

import reference  # noqa: E402


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
def test_sklearn_kernels_any_input(x, y, cls, depth, activation, beta, fixed, gradient, outcomes):
    """NTK / NNGP ``__call__`` (with and without the gradient in log β) and ``diag`` on any
    input: the reference's kernels and its central difference in log β, in the inputs'
    dtype, or the errors of ntkfast.limit_kernel (ValueError for a gradient with Y)."""
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
    result = check(
        outcomes, f"{name}.__call__", lambda: kernel(x, y, eval_gradient=gradient), call_failure
    )
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
    d = check(outcomes, f"{name}.diag", lambda: kernel.diag(x), diag_failure)
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
def test_sklearn_constructor_any_arguments(cls, case, outcomes):
    """NTK(depth, activation, beta, bounds) / NNGP(...) with one faulty argument at a time: a
    kernel whose values are the reference's and whose gradient has one column unless β is
    fixed, or ValueError / TypeError at construction."""
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
        outcomes, f"sklearn.{cls.__name__}()", lambda: cls(depth, activation, beta, bounds), failure
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
