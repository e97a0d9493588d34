"""ntkfast.sklearn: the kernels inside scikit-learn estimators, and scikit-learn's own checks."""

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="needs scikit-learn (the sklearn extra)")
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.gaussian_process import GaussianProcessClassifier, GaussianProcessRegressor  # noqa: E402
from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel  # noqa: E402
from sklearn.kernel_ridge import KernelRidge  # noqa: E402
from sklearn.svm import SVC  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import ntkfast as nk  # noqa: E402
from ntkfast import dynamics  # noqa: E402
from ntkfast.sklearn import NNGP, NTK  # noqa: E402


def data(n=40, n_test=7, seed=0):
    rng = np.random.default_rng(seed)
    x, x_test = rng.standard_normal((n, 3)), rng.standard_normal((n_test, 3))
    return x, np.sin(2 * x[:, 0]) + x[:, 1] * x[:, 2], x_test


@parametrize_with_checks(
    [
        GaussianProcessRegressor(kernel=NTK(depth=3)),
        GaussianProcessClassifier(kernel=NNGP(depth=2)),
    ]
)
def test_scikit_learn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_gaussian_process_mean_is_the_trained_infinite_network(activation):
    """GPR with the NTK and vanishing noise predicts the t = ∞ limit of the MSE flow."""
    x, y, x_test = data()
    kernel = NTK(depth=4, activation=activation, beta=0.1, beta_bounds="fixed")
    gp = GaussianProcessRegressor(kernel=kernel, alpha=1e-13, optimizer=None).fit(x, y)
    k = nk.limit_kernel(x, depth=4, activation=activation, get="ntk")
    k_test = nk.limit_kernel(x_test, x, depth=4, activation=activation, get="ntk")
    _, f_test = dynamics.mse_flow(k, y, k_test)(np.inf, np.zeros(len(y)), np.zeros(len(x_test)))
    assert np.abs(gp.predict(x_test) - f_test).max() <= 1e-8 * np.abs(f_test).max()


def test_kernel_values_diag_and_contract():
    x, _, x_test = data()
    for cls, kind in ((NTK, "ntk"), (NNGP, "nngp")):
        kernel = cls(depth=3, activation=nk.activations.LeakyReLU(0.2), beta=0.3)
        want = nk.limit_kernel(x, x_test, depth=3, activation=kernel.activation, beta=0.3)
        np.testing.assert_array_equal(kernel(x, x_test), getattr(want, kind))
        np.testing.assert_array_equal(kernel.diag(x), np.diag(kernel(x)))
        assert not kernel.is_stationary()
        copy = clone(kernel)
        assert copy == kernel and copy is not kernel
        assert copy.get_params() == kernel.get_params()
        assert kernel.set_params(depth=5).depth == 5
        assert kernel.hyperparameters[0].name == "beta"
        assert np.isclose(np.exp(kernel.theta[0]), 0.3)
        assert repr(cls(depth=2)) == f"{cls.__name__}(depth=2, activation='relu', beta=0.1)"


def test_gradient_in_log_beta_matches_finite_differences():
    x, _, _ = data(n=12)
    kernel = NTK(depth=4, activation="gelu", beta=0.5)
    k, grad = kernel(x, eval_gradient=True)
    h = 1e-3
    up = kernel.clone_with_theta(kernel.theta + h)(x)
    down = kernel.clone_with_theta(kernel.theta - h)(x)
    np.testing.assert_allclose(grad[:, :, 0], (up - down) / (2 * h), rtol=1e-5, atol=1e-9)
    fixed = NTK(depth=4, beta=0.5, beta_bounds="fixed")
    assert fixed(x, eval_gradient=True)[1].shape == (12, 12, 0)
    with pytest.raises(ValueError, match="Y is None"):
        kernel(x, x, eval_gradient=True)


def test_optimising_beta_inside_kernel_algebra():
    x, y, _ = data(n=60, seed=2)
    y = y + 0.1 * np.random.default_rng(3).standard_normal(len(y))
    kernel = ConstantKernel() * NTK(depth=3, beta=0.05) + WhiteKernel(0.1)
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # noise level at its bound
        gp.fit(x, y)
    start = gp.log_marginal_likelihood(gp.kernel.theta)
    assert gp.log_marginal_likelihood_value_ > start
    beta = gp.kernel_.k1.k2.beta
    assert 1e-5 <= beta <= 1e5 and beta != 0.05


def test_precomputed_and_callable_kernels_in_kernel_ridge_and_svc():
    x, y, x_test = data(n=50)
    k = nk.limit_kernel(x, depth=3, get="ntk")
    k_test = nk.limit_kernel(x_test, x, depth=3, get="ntk")
    ridge = KernelRidge(kernel="precomputed", alpha=0.1).fit(k, y)
    want = k_test @ np.linalg.solve(k + 0.1 * np.eye(len(y)), y)
    np.testing.assert_allclose(ridge.predict(k_test), want, rtol=1e-10)
    np.testing.assert_allclose(
        KernelRidge(kernel=NTK(depth=3), alpha=0.1).fit(x, y).predict(x_test), want, rtol=1e-10
    )
    labels = (y > np.median(y)).astype(int)
    svc = SVC(kernel="precomputed").fit(k, labels)
    same = SVC(kernel=NTK(depth=3, beta_bounds="fixed")).fit(x, labels)
    np.testing.assert_array_equal(svc.predict(k_test), same.predict(x_test))
    assert svc.score(k, labels) > 0.8


def test_invalid_hyperparameters_raise_at_construction():
    for kwargs, message in [
        ({"depth": 0}, "depth"),
        ({"depth": 2.5}, "depth"),
        ({"beta": -1.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"beta": 0.0}, "fixed"),
        ({"beta_bounds": (1.0, 0.5)}, "beta_bounds"),
        ({"beta_bounds": "free"}, "beta_bounds"),
        ({"activation": "tanhh"}, "unknown activation"),
    ]:
        with pytest.raises(ValueError, match=message):
            NTK(**kwargs)
    with pytest.raises(TypeError):
        NNGP(activation=np.tanh)
    assert NTK(beta=0.0, beta_bounds="fixed")(np.eye(2)).shape == (2, 2)


def test_sparse_input_is_a_clear_error():
    from scipy import sparse

    with pytest.raises(TypeError, match="sparse input is not supported"):
        NTK(depth=2)(sparse.csr_matrix(np.eye(3)))
