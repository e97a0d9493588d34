"""KernelOperator: matrix-free products K V against the stored kernel, in SciPy's solvers,
for any thread count, and on bad input (Ctrl-C: tests/test_runtime.py)."""

import numpy as np
import pytest
from scipy.sparse.linalg import LinearOperator, aslinearoperator, cg, eigsh

import ntkfast as nk
from ntkfast.activations import Custom, LeakyReLU

from conftest import correlated_inputs

ACTIVATIONS = ["relu", LeakyReLU(0.2), "abs", "erf", "gelu", "sin", "tanh", Custom(np.arctan)]


@pytest.mark.parametrize("activation", ACTIVATIONS, ids=repr)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cross", [False, True])
def test_products_equal_the_stored_kernel(activation, dtype, cross):
    x = correlated_inputs(260, 12, seed=1).astype(dtype)
    x2 = correlated_inputs(170, 12, seed=2).astype(dtype) if cross else None
    rng = np.random.default_rng(3)
    for kernel in ("ntk", "nngp"):
        op = nk.KernelOperator(
            x, x2, depth=3, activation=activation, beta=0.1, kernel=kernel, dtype=dtype
        )
        k = nk.limit_kernel(x, x2, depth=3, activation=activation, beta=0.1, get=kernel)
        k = k.astype(np.float64)
        assert op.shape == k.shape and op.dtype == np.float64
        tol = 1e-12 if dtype == np.float64 else 1e-6
        for v in (rng.standard_normal(k.shape[1]), rng.standard_normal((k.shape[1], 7))):
            got, want = op @ v, k @ v
            assert got.shape == want.shape
            scale = np.abs(k).max() * np.abs(v).sum(axis=0).max()
            assert np.abs(got - want).max() <= tol * scale
        # The adjoint is K(x2, x).
        u = rng.standard_normal(k.shape[0])
        np.testing.assert_allclose(op.T @ u, k.T @ u, rtol=0, atol=tol * np.abs(k).max() * 50)


def test_products_with_the_identity_are_the_kernel_exactly():
    x = correlated_inputs(300, 20, seed=4)
    op = nk.KernelOperator(x, depth=4)
    np.testing.assert_array_equal(op @ np.eye(300), nk.limit_kernel(x, depth=4, get="ntk"))


def test_products_have_the_same_bits_for_any_thread_count():
    x = correlated_inputs(500, 30, seed=5)
    v = np.random.default_rng(6).standard_normal((500, 3))
    before = nk.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            nk.set_num_threads(threads)
            results.append(nk.KernelOperator(x, depth=3, activation="erf") @ v)
    finally:
        nk.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def test_conjugate_gradients_solve_the_ridge_system():
    """SciPy's cg on the operator (plus ridge) against a dense solve, on correlated inputs."""
    x = correlated_inputs(400, 16, seed=7)
    y = np.sin(3 * x[:, :1]).ravel()
    k = nk.limit_kernel(x, depth=4, get="ntk")
    ridge = 1e-3 * np.mean(np.diag(k))
    op = nk.KernelOperator(x, depth=4)
    system = op + aslinearoperator(ridge * np.eye(400))
    alpha, info = cg(system, y, rtol=1e-10, maxiter=2000)
    assert info == 0
    want = np.linalg.solve(k + ridge * np.eye(400), y)
    assert np.abs(alpha - want).max() <= 1e-6 * np.abs(want).max()


def test_eigsh_finds_the_top_eigenvalues():
    x = correlated_inputs(300, 10, seed=8)
    op = nk.KernelOperator(x, depth=3, kernel="nngp")
    top = np.sort(eigsh(op, k=4, which="LA", return_eigenvectors=False))
    want = np.linalg.eigvalsh(nk.limit_kernel(x, depth=3, get="nngp"))[-4:]
    np.testing.assert_allclose(top, want, rtol=1e-9)


def test_diagonal_is_the_kernels_diagonal():
    x = correlated_inputs(50, 6, seed=9)
    op = nk.KernelOperator(x, depth=3)
    np.testing.assert_array_equal(op.diagonal(), np.diag(nk.limit_kernel(x, depth=3, get="ntk")))
    with pytest.raises(ValueError, match="symmetric"):
        nk.KernelOperator(x, x[:10], depth=3).diagonal()


def test_it_is_a_linear_operator():
    op = nk.KernelOperator(np.eye(4), depth=2)
    assert isinstance(op, LinearOperator)
    assert op.symmetric and op.T is op
    assert "KernelOperator(shape=(4, 4)" in repr(op)
    assert (op @ np.zeros((4, 0))).shape == (4, 0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(depth=0), ValueError, "depth"),
        (dict(depth=2, kernel="theta"), ValueError, "kernel"),
        (dict(depth=2, dtype=np.int32), TypeError, "float32 or float64"),
        (dict(depth=2, activation="nope"), ValueError, "unknown activation"),
        (dict(depth=2, beta=np.nan), ValueError, "beta"),
    ],
)
def test_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        nk.KernelOperator(np.eye(3), **kwargs)


def test_bad_inputs_and_vectors():
    with pytest.raises(ValueError, match="non-finite"):
        nk.KernelOperator(np.full((3, 2), np.nan), depth=2)
    with pytest.raises(ValueError, match="same number of features"):
        nk.KernelOperator(np.eye(3), np.eye(4), depth=2)
    op = nk.KernelOperator(np.eye(3), depth=2)
    with pytest.raises(ValueError):
        op @ np.ones(4)
    with pytest.raises(ValueError, match="non-finite"):
        op @ np.array([1.0, np.inf, 0.0])
    with pytest.raises(TypeError, match="real"):
        op.matmat(np.array([["a"], ["b"], ["c"]]))
