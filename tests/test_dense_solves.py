"""The dense factorisations ntkfast runs itself (Cholesky, symmetric eigendecomposition) go
through faer in the Rust core: against NumPy, and at a size where the OpenBLAS of NumPy's
and SciPy's wheels has crashed on some CPUs (N = 20,000), in a child process so that a
crash would show as a failed test rather than a dead test run."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ntkfast as nk
from ntkfast import _ntkfast


def spd(n, seed):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, n))
    return m @ m.T + n * np.eye(n)


def test_solve_spd_matches_numpy():
    a, b = spd(300, 0), np.random.default_rng(1).standard_normal((300, 3))
    factor, x = a.copy(), b.copy()
    _ntkfast.solve_spd(factor, x)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-10, atol=1e-12)
    upper = np.triu(factor)  # the Cholesky factor: a = Uᵀ U
    np.testing.assert_allclose(upper.T @ upper, a, rtol=1e-10)


def test_solve_spd_refuses_indefinite_and_misshapen_input():
    with pytest.raises(ValueError, match="not positive definite"):
        _ntkfast.solve_spd(np.array([[1.0, 2.0], [2.0, 1.0]]), np.ones((2, 1)))
    with pytest.raises(ValueError):
        _ntkfast.solve_spd(np.eye(3), np.ones((2, 1)))
    with pytest.raises(TypeError):
        _ntkfast.solve_spd(np.eye(3, dtype=np.float32), np.ones((3, 1)))


def test_eigh_matches_numpy():
    a = spd(200, 2)
    values, vectors = np.empty(200), np.empty((200, 200))
    _ntkfast.eigh(a, values, vectors)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(a), rtol=1e-12)
    np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T, a, rtol=0, atol=1e-9)
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(200), atol=1e-12)


def test_dense_solves_have_the_same_bits_on_one_and_two_threads():
    a, b = spd(600, 3), np.ones((600, 2))
    before = nk.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            nk.set_num_threads(threads)
            factor, x = a.copy(), b.copy()
            _ntkfast.solve_spd(factor, x)
            values, vectors = np.empty(600), np.empty((600, 600))
            _ntkfast.eigh(a, values, vectors)
            results.append((x, values, vectors))
    finally:
        nk.set_num_threads(before)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_no_dense_path_crashes_the_interpreter_at_n_20000():
    script = textwrap.dedent(
        """
        import numpy as np, ntkfast as nk
        from ntkfast import dynamics
        rng = np.random.default_rng(0)
        x = rng.standard_normal((20000, 8))
        y = np.sin(x[:, 0])
        reg = nk.KernelRegressor(depth=3, ridge=1e-2, solver="direct", progress=False)
        reg.fit(x, y)
        k = nk.limit_kernel(x[:3000], depth=3, get="ntk")
        f, _ = dynamics.mse_flow(k + 1e-2 * np.eye(3000), y[:3000])(np.inf, np.zeros(3000))
        print("ok", reg.residual_ < 1e-10, bool(np.isfinite(f).all()))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.split() == ["ok", "True", "True"]
