"""Property-based tests (hypothesis) of the limit kernels: any input either gives the right
answer or a clear ValueError / TypeError / MemoryError; never a panic, a crash, a hang or a
silent error.

Inputs vary in shape (0 and 1 rows included, wrong numbers of dimensions), dtype (float16/32/64,
integers, bools, complex, object, strings), values (NaN, ±inf, huge, tiny, zero), and layout
(Fortran order, negative and non-unit strides, read-only arrays, memory maps, lists). Results
are checked against the NumPy reference; the contract is that of tests/properties.py.
"""

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property-based tests need hypothesis (test extra)")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from properties import (  # noqa: E402
    F32,
    F64,
    SETTINGS,
    arrays,
    as_dtype,
    check,
    input_dtype,
    kernel_failure,
    sample_failure,
    tolerance,
)

import ntkfast as nk  # noqa: E402

import reference  # noqa: E402


def assert_matches_reference(k, values, depth, dtype, other=None):
    """Both kernels within tolerance(dtype) of the reference on the inputs rounded to dtype,
    relative to the kernel's scale √(K(x,x) K(x',x'))."""
    x1 = as_dtype(values, dtype)
    x2 = None if other is None else as_dtype(other, dtype)
    want = reference.limit_kernel(x1, x2, depth=depth)
    d1 = want if x2 is None else reference.limit_kernel(x1, depth=depth)
    d2 = d1 if x2 is None else reference.limit_kernel(x2, depth=depth)
    for got, ref, a, b in zip((k.nngp, k.ntk), want, d1, d2):
        assert got.dtype == dtype and got.shape == ref.shape
        scale = np.sqrt(np.outer(np.diag(a), np.diag(b)))
        assert (np.abs(got - ref) <= tolerance(dtype) * scale + 1e-300).all()


@SETTINGS
@given(data=arrays(), depth=st.integers(1, 4))
def test_limit_kernel_any_input(data, depth, outcomes):
    """K(X) for any X: the reference's kernels, or the error of as_samples or of a row whose
    variance exceeds the dtype's limit (1e150 in float64, 1e30 in float32)."""
    x, values = data
    dtype = input_dtype(x)
    failure = kernel_failure(values, dtype)
    k = check(outcomes, "limit_kernel", lambda: nk.limit_kernel(x, depth=depth), failure)
    if k is not None:
        assert_matches_reference(k, values, depth, dtype)


@SETTINGS
@given(a=arrays(cols=3), b=arrays(cols=3))
def test_cross_kernel_and_diagonal_any_input(a, b, outcomes):
    """K(X1, X2), computed in float32 only when both are float32, and the diagonal of K(X1)
    in X1's dtype: the reference's values, or the errors of the inputs (the overflow limit
    being that of the dtype computed in)."""
    (x1, v1), (x2, v2) = a, b
    dtype = F32 if input_dtype(x1) == input_dtype(x2) == F32 else F64
    # as_samples checks x1 and x2 before the core checks the variances of x1, then of x2.
    failure = sample_failure(v1) or sample_failure(v2)
    failure = failure or kernel_failure(v1, dtype) or kernel_failure(v2, dtype)
    k = check(outcomes, "cross limit_kernel", lambda: nk.limit_kernel(x1, x2, depth=3), failure)
    if k is not None:
        assert_matches_reference(k, v1, 3, dtype, other=v2)
    own = input_dtype(x1)
    diagonal = lambda: nk.limit_kernel_diagonal(x1, depth=3)  # noqa: E731
    d = check(outcomes, "limit_kernel_diagonal", diagonal, kernel_failure(v1, own))
    if d is not None:
        assert np.isfinite(d.ntk).all() and d.ntk.shape == (v1.shape[0],)
        for got, ref in zip(d, reference.limit_kernel(as_dtype(v1, own), depth=3)):
            assert got.dtype == own
            assert (np.abs(got - np.diag(ref)) <= tolerance(own) * np.diag(ref) + 1e-300).all()
