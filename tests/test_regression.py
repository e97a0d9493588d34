"""KernelRegressor: the solvers against dense solves, the flow against dynamics.mse_flow,
scikit-learn's estimator checks, and bad input."""

import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import ntkfast as nk
from ntkfast import dynamics
from ntkfast.regression import ConvergenceWarning, NotFittedError

from conftest import correlated_inputs


@pytest.fixture(scope="module")
def problem():
    x, xt = correlated_inputs(900, 30, seed=1), correlated_inputs(120, 30, seed=2)
    rng = np.random.default_rng(3)
    y = np.stack([np.sin(4 * x[:, 5]), np.cos(3 * x[:, 9])], axis=1)
    y += 0.05 * rng.standard_normal(y.shape)
    k = nk.limit_kernel(x, depth=4, get="ntk")
    kt = nk.limit_kernel(xt, x, depth=4, get="ntk")
    ridge = 1e-3 * float(np.mean(np.diag(k)))
    return x, xt, y, k, kt, ridge


#: A preconditioner far smaller than N = 900, so CG has work to do (M = N is exact).
SMALL = dict(preconditioner_size=60)


def dense_prediction(k, kt, y, ridge):
    return kt @ np.linalg.solve(k + ridge * np.eye(len(k)), y)


@pytest.mark.parametrize("solver", ["direct", "cg", "auto"])
def test_predictions_match_a_dense_solve(problem, solver):
    x, xt, y, k, kt, ridge = problem
    reg = nk.KernelRegressor(depth=4, ridge=ridge, solver=solver, tol=1e-10, **SMALL).fit(x, y)
    want = dense_prediction(k, kt, y, ridge)
    got = reg.predict(xt)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-7 * np.abs(want).max()
    assert reg.residual_ <= (1e-10 if solver == "cg" else 1e-12)
    assert reg.solver_ == ("cg" if solver == "cg" else "direct")
    if solver == "cg":
        assert 1 <= reg.n_iter_ <= 200  # preconditioned: tens of iterations
    # One output column: the shape of y.
    one = nk.KernelRegressor(depth=4, ridge=ridge, solver=solver, tol=1e-10, **SMALL)
    one.fit(x, y[:, 0])
    assert one.predict(xt).shape == (120,)
    np.testing.assert_allclose(one.predict(xt), got[:, 0], rtol=0, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("storage", ["none", "float64", "float32"])
def test_every_kernel_storage_meets_the_tolerance(problem, storage, dtype):
    """The kernel kept in float64 (plain CG), in float32 (refined by matrix-free products in
    the requested precision) or not at all (matrix-free CG) give the same fit."""
    if storage == "float64" and dtype == "float32":
        pytest.skip("refused: tested in test_bad_parameters")
    x, xt, y, k, kt, ridge = problem
    tol = 1e-10 if dtype == "float64" else 1e-5
    reg = nk.KernelRegressor(
        depth=4, ridge=ridge, solver="cg", tol=tol, dtype=dtype, kernel_storage=storage, **SMALL
    ).fit(x, y)
    assert reg.storage_ == storage
    assert reg.residual_ <= tol
    # The residual is the exact one: recomputed here with the dense float64 kernel.
    a = k.astype(dtype).astype(np.float64) + ridge * np.eye(len(k))
    r = y - a @ reg.dual_coef_
    assert np.linalg.norm(r, axis=0).max() / np.linalg.norm(y, axis=0).min() <= 3 * tol
    want = dense_prediction(k, kt, y, ridge)
    bound = 1e-7 if dtype == "float64" else 1e-3
    assert np.abs(reg.predict(xt) - want).max() <= bound * np.abs(want).max()


def test_float32_refinement_of_a_float64_fit_takes_few_exact_products(problem, monkeypatch):
    """Mixed precision: the float32 copy drives the iterations; only a few rounds (one
    matrix-free float64 product each) reach 1e-10."""
    x, _, y, _, _, ridge = problem
    calls = []
    original = nk.KernelOperator.matmat

    def counting(self, v):
        calls.append(v.shape)
        return original(self, v)

    monkeypatch.setattr(nk.KernelOperator, "matmat", counting)
    reg = nk.KernelRegressor(
        depth=4, ridge=ridge, solver="cg", tol=1e-10, kernel_storage="float32", **SMALL
    ).fit(x, y)
    assert reg.residual_ <= 1e-10
    assert 1 <= len(calls) <= 6, len(calls)


def test_cg_matches_scipys_cg_on_the_dense_matrix(problem):
    from scipy.sparse.linalg import cg

    x, _, y, k, _, ridge = problem
    reg = nk.KernelRegressor(depth=4, ridge=ridge, solver="cg", tol=1e-10, **SMALL)
    reg.fit(x, y[:, 0])
    alpha, info = cg(k + ridge * np.eye(len(k)), y[:, 0], rtol=1e-12, maxiter=20000)
    assert info == 0
    assert np.abs(reg.dual_coef_ - alpha).max() <= 1e-6 * np.abs(alpha).max()


def test_float32_products_meet_the_tolerance_they_can(problem):
    x, xt, y, k, kt, ridge = problem
    reg = nk.KernelRegressor(depth=4, ridge=ridge, solver="cg", dtype="float32", tol=1e-5, **SMALL)
    reg.fit(x, y)
    assert reg.residual_ <= 1e-5
    want = dense_prediction(k, kt, y, ridge)
    assert np.abs(reg.predict(xt) - want).max() <= 1e-3 * np.abs(want).max()


@pytest.mark.parametrize("storage", ["float64", "none"])
def test_the_flow_matches_mse_flow_and_ends_at_predict(problem, storage):
    x, xt, y, k, kt, ridge = problem
    reg = nk.KernelRegressor(
        depth=4, ridge=ridge, solver="direct", tol=1e-10, kernel_storage=storage
    ).fit(x, y)
    n = len(x)
    eig = np.linalg.eigvalsh(k + ridge * np.eye(n))
    # From f_t still near f_0 (t λ_max / N small) to near the t = ∞ limit.
    times = np.array([0.01 * n / eig[-1], n / eig[-1], 100 * n / eig[-1], 1e6 * n / eig[-1]])
    got = reg.predict(xt, t=times)
    flow = dynamics.mse_flow(k + ridge * np.eye(n), y, kt)
    _, want = flow(times, np.zeros_like(y), np.zeros((len(xt), 2)))
    assert got.shape == want.shape == (4, 120, 2)
    for i in range(4):
        assert np.abs(got[i] - want[i]).max() <= 1e-6 * np.abs(want[i]).max(), i
    np.testing.assert_array_equal(reg.predict(xt, t=np.inf), reg.predict(xt))
    assert reg.predict(xt, t=times[1]).shape == (120, 2)
    np.testing.assert_allclose(reg.predict(xt, t=0.0), 0.0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Skipping check")
def test_scikit_learn_estimator_checks():
    """scikit-learn's checks pass but the two that ask for complex or object inputs to be a
    ValueError or converted: ntkfast refuses non-real dtypes with a TypeError everywhere."""
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(nk.KernelRegressor(depth=2, ridge=1e-3), on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed <= {"check_complex_data", "check_dtype_object"}, failed
    assert sum(r["status"] == "passed" for r in results) >= 40


def test_clone_and_params():
    sklearn_base = pytest.importorskip("sklearn.base")
    reg = nk.KernelRegressor(depth=3, ridge=0.5, solver="cg")
    assert reg.get_params()["ridge"] == 0.5
    copy = sklearn_base.clone(reg.set_params(tol=1e-6))
    assert copy.get_params() == reg.get_params()


def test_convergence_warning_names_the_residual(problem):
    x, _, y, _, _, ridge = problem
    with pytest.warns(ConvergenceWarning, match="relative residual"):
        reg = nk.KernelRegressor(depth=4, ridge=ridge, solver="cg", max_iter=1, **SMALL)
        reg.fit(x, y)
    assert reg.n_iter_ == 1 and reg.residual_ > 1e-8


@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(ridge=-1.0), ValueError, "ridge"),
        (dict(solver="lu"), ValueError, "solver"),
        (dict(kernel="theta"), ValueError, "kernel"),
        (dict(tol=0.0), ValueError, "tol"),
        (dict(dtype="int32"), TypeError, "float32 or float64"),
        (dict(depth=0), ValueError, "depth"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(kernel_storage="float16"), ValueError, "kernel_storage"),
        (dict(kernel_storage="float64", dtype="float32"), ValueError, "float64"),
        (dict(preconditioner_size=0), ValueError, "preconditioner_size"),
    ],
)
def test_bad_parameters(params, error, match):
    with pytest.raises(error, match=match):
        nk.KernelRegressor(**params).fit(np.eye(3), np.ones(3))


def test_bad_data():
    reg = nk.KernelRegressor(depth=2)
    with pytest.raises(ValueError, match="non-finite"):
        reg.fit(np.full((3, 2), np.nan), np.ones(3))
    with pytest.raises(ValueError, match="non-finite"):
        reg.fit(np.eye(3), np.array([1.0, np.inf, 0.0]))
    with pytest.raises(ValueError, match="rows"):
        reg.fit(np.eye(3), np.ones(4))
    with pytest.raises(NotFittedError):
        reg.predict(np.eye(3))
    reg.fit(np.eye(3), np.ones(3))
    with pytest.raises(ValueError, match="features"):
        reg.predict(np.eye(4))
    with pytest.raises(ValueError, match="t"):
        reg.predict(np.eye(3), t=[-1.0])
    with pytest.raises(ValueError, match="not positive definite"):
        # Two identical rows and no ridge: a singular system for the direct solver.
        nk.KernelRegressor(depth=2, solver="direct").fit(np.ones((2, 3)), np.ones(2))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_leaves_the_estimator_unfitted():
    script = textwrap.dedent(
        """
        import numpy as np, ntkfast as nk
        x = np.random.default_rng(0).standard_normal((30000, 300))
        reg = nk.KernelRegressor(depth=20, ridge=1.0, solver="cg", progress=False)
        print("ready", flush=True)
        try:
            reg.fit(x, np.ones(30000))
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", hasattr(reg, "dual_coef_"), flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert out.strip() == "interrupted False", (out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_score_is_r_squared(problem):
    x, xt, y, k, kt, ridge = problem
    reg = nk.KernelRegressor(depth=4, ridge=ridge, solver="direct").fit(x, y[:, 0])
    truth = dense_prediction(k, kt, y[:, 0], ridge) + 0.01
    r2 = 1 - ((truth - reg.predict(xt)) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert reg.score(xt, truth) == pytest.approx(r2, rel=1e-12)
