"""ntkfast.dask on a real dask.distributed LocalCluster with two worker processes."""

import numpy as np
import pytest

import ntkfast as nk

da = pytest.importorskip("dask.array", reason="needs dask (the dask extra)")
distributed = pytest.importorskip("dask.distributed", reason="needs distributed (the dask extra)")
nkd = pytest.importorskip("ntkfast.dask", reason="needs dask (the dask extra)")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def inputs(n, n0=12, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((n, n0)).astype(dtype)


def test_symmetric_kernel_equals_the_in_memory_one(client):
    x = inputs(600)
    # Row chunks that are multiples of 120 (the core's tile): the same bits.
    k = nkd.limit_kernel(da.from_array(x, chunks=(240, 5)), depth=4, activation="erf")
    assert k.ntk.chunks[0] == (240, 240, 120) and k.ntk.chunks == k.nngp.chunks
    want = nk.limit_kernel(x, depth=4, activation="erf")
    for got, ref in zip(client.compute(list(k), sync=True), want):
        np.testing.assert_array_equal(got, ref)
    # float32 ReLU runs its layers on tiles of TILE_F32: chunks of twice that, the same bits.
    x32 = x.astype(np.float32)
    edge = 2 * nk._ntkfast.TILE_F32
    k = nkd.limit_kernel(da.from_array(x32, chunks=(edge, 12)), depth=4, activation="relu")
    assert k.ntk.chunks[0] == (edge, edge, 600 - 2 * edge)
    want = nk.limit_kernel(x32, depth=4, activation="relu")
    for got, ref in zip(client.compute(list(k), sync=True), want):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, ref)
    # Other chunks: the same up to rounding.
    k = nkd.limit_kernel(da.from_array(x, chunks=(100, 12)), depth=4, activation="gelu")
    want = nk.limit_kernel(x, depth=4, activation="gelu")
    for got, ref in zip(client.compute(list(k), sync=True), want):
        assert np.abs(got - ref).max() <= 1e-14 * np.abs(ref).max()
        np.testing.assert_array_equal(got, got.T)


def test_series_activation_within_its_tolerance(client):
    """Each chunk expands the Hermite series of its own samples, so the blocks agree with
    the in-memory kernel to the series' tolerance (1e-12 of the scale), not bit for bit."""
    x = inputs(600)
    k = nkd.limit_kernel(da.from_array(x, chunks=(100, 12)), depth=4, activation="tanh")
    want = nk.limit_kernel(x, depth=4, activation="tanh")
    for got, ref in zip(client.compute(list(k), sync=True), want):
        assert np.abs(got - ref).max() <= 1e-11 * np.abs(ref).max()
        np.testing.assert_array_equal(got, got.T)


def test_cross_kernel_float32_and_numpy_inputs(client):
    x1, x2 = inputs(300, dtype=np.float32), inputs(200, seed=1, dtype=np.float32)
    got = nkd.limit_kernel(da.from_array(x1, chunks=(128, 12)), x2, depth=3, get="ntk")
    assert got.dtype == np.float32 and got.shape == (300, 200)
    got = client.compute(got, sync=True)
    want = nk.limit_kernel(x1, x2, depth=3, get="ntk")
    assert got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()


@pytest.mark.parametrize("output", ["trace", "diagonal", "full"])
def test_empirical_ntk(client, output):
    net = nk.MLP([12, 40, 30, 3], "gelu", beta=0.2)
    params = net.init(seed=3)
    x = inputs(300)
    got = nkd.ntk(net, params, da.from_array(x, chunks=(128, 12)), output=output)
    want = net.ntk(params, x, output=output)
    assert got.shape == want.shape
    got = client.compute(got, sync=True)
    assert np.abs(got - want).max() <= 1e-14 * np.abs(want).max()
    cross = nkd.ntk(net, params, da.from_array(x, chunks=(100, 12)), x[:50], output=output)
    want = net.ntk(params, x, x[:50], output=output)
    assert np.abs(client.compute(cross, sync=True) - want).max() <= 1e-14 * np.abs(want).max()


def test_bad_inputs(client):
    x = da.from_array(inputs(50), chunks=(20, 12))
    with pytest.raises(ValueError, match="same number of features"):
        nkd.limit_kernel(x, inputs(5, n0=3), depth=2)
    with pytest.raises(TypeError, match="real numeric"):
        nkd.limit_kernel(x.astype(complex), depth=2)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        nkd.limit_kernel(x[x[:, 0] > 0], depth=2)
    with pytest.raises(ValueError, match="depth"):
        nkd.limit_kernel(x, depth=0)
    with pytest.raises(ValueError, match="2-D"):
        nkd.limit_kernel(da.ones(5), depth=2)
    net = nk.MLP([3, 4, 1])
    with pytest.raises(ValueError, match="3 features"):
        nkd.ntk(net, net.init(seed=0), x)


# ----------------------------------------------------------------- KernelRegressor


@pytest.fixture(scope="module")
def regression():
    from conftest import correlated_inputs

    x, xt = correlated_inputs(1300, 16, seed=31), correlated_inputs(70, 16, seed=32)
    rng = np.random.default_rng(33)
    y = np.stack([np.sin(4 * x[:, 2]), np.cos(3 * x[:, 7])], axis=1)
    return x, xt, y + 0.05 * rng.standard_normal(y.shape)


REGRESSION = dict(depth=3, ridge=1e-2, tol=1e-10, preconditioner_size=80, max_iter=400)


@pytest.mark.parametrize("solver", ["cg", "nystrom"])
def test_regression_on_the_cluster_equals_the_local_one(client, regression, solver):
    x, xt, y = regression
    extra = dict(centers=90) if solver == "nystrom" else {}
    settings = dict(REGRESSION, solver=solver, **extra)
    local = nk.KernelRegressor(kernel_storage="none", **settings).fit(x, y)
    lazy = da.from_array(x, chunks=(300, -1))
    remote = nkd.KernelRegressor(**settings).fit(lazy, y)
    assert remote.solver_ == solver and remote.storage_ == "none"
    want = local.predict(xt)
    scale = np.abs(want).max()
    assert np.abs(remote.predict(xt) - want).max() <= 1e-8 * scale
    assert remote.residual_ <= 1e-10 and abs(remote.n_iter_ - local.n_iter_) <= 2
    times = [1.0, 100.0, np.inf]
    flow, local_flow = remote.predict(xt, t=times), local.predict(xt, t=times)
    assert np.abs(flow - local_flow).max() <= 1e-7 * scale
    # The same fit again: the same bits, wherever the tasks ran.
    again = nkd.KernelRegressor(**settings).fit(lazy, y)
    np.testing.assert_array_equal(again.dual_coef_, remote.dual_coef_)
    if solver == "nystrom":
        np.testing.assert_array_equal(remote.centers_, local.centers_)
        # The same rows sampled for the preconditioner (the cluster has as many cores as the
        # client), made into the same factors.
        cores = sum(client.nthreads().values()) / nk.get_num_threads()
        assert remote._pass_cores_per_client_core() == max(1.0, cores)
        assert remote._falkon.sampled == local._falkon.sampled > 0
        np.testing.assert_array_equal(remote._falkon.a, local._falkon.a)


def test_cluster_products_match_the_local_operator(client, regression):
    x = regression[0][:500]
    rows = nkd._ClusterRows(
        da.from_array(x, chunks=(130, -1)),
        np.dtype(np.float64),
        nkd._Spec(3, nk.activations.get("erf"), 0.2, "ntk"),
        client,
    )
    v = np.random.default_rng(1).standard_normal((500, 2))
    op = nk.KernelOperator(x, depth=3, activation="erf", beta=0.2)
    want = op @ v
    assert np.abs(rows.matmat(v) - want).max() <= 1e-12 * np.abs(want).max()
    np.testing.assert_allclose(rows.diagonal(), op.diagonal(), rtol=1e-14)


def test_regression_on_the_cluster_rejects_bad_input(client, regression):
    x, _, y = regression
    bad = x.copy()
    bad[777, 3] = np.nan
    with pytest.raises(ValueError, match="row 777"):
        nkd.KernelRegressor(depth=3).fit(da.from_array(bad, chunks=(300, -1)), y)
    with pytest.raises(ValueError, match="direct"):
        nkd.KernelRegressor(depth=3, solver="direct").fit(x, y)
    with pytest.raises(ValueError, match="kernel_storage"):
        nkd.KernelRegressor(depth=3, kernel_storage="float64").fit(x, y)
    with pytest.raises(ValueError, match="rows"):
        nkd.KernelRegressor(depth=3).fit(x, y[:-1])


def test_a_worker_lost_mid_fit_never_gives_a_wrong_fit(regression):
    """One of two worker processes dies during the fit: Dask recomputes its chunks and
    reruns its tasks (the fit equals an undisturbed one, bit for bit), or the fit raises."""
    import os
    import signal
    import threading

    x, xt, y = regression
    settings = dict(REGRESSION, solver="cg", tol=1e-12, max_iter=2000)
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with cluster, distributed.Client(cluster) as c:
        lazy = da.from_array(x, chunks=(300, -1))
        calm = nkd.KernelRegressor(**settings).fit(lazy, y)  # about 3 s on 2 cores
        outcome = {}

        def fit():
            try:
                outcome["fit"] = nkd.KernelRegressor(**settings).fit(lazy, y)
            except RuntimeError as err:
                outcome["error"] = err

        worker = threading.Thread(target=fit)
        worker.start()
        victim = min(c.run(os.getpid).values())
        threading.Event().wait(0.5)
        os.kill(victim, signal.SIGKILL)
        worker.join(timeout=600)
        assert not worker.is_alive()
    if "fit" in outcome:
        np.testing.assert_array_equal(outcome["fit"].dual_coef_, calm.dual_coef_)
    else:
        assert "lost" in str(outcome["error"])


def test_data_dask_cannot_recover_is_a_clear_error():
    from distributed.scheduler import KilledWorker

    with pytest.raises(RuntimeError, match="lost data or workers"):
        with nkd._lost_data():
            raise KilledWorker("ntkfast-task", None, 3)
    with pytest.raises(ZeroDivisionError):  # other errors pass through unchanged
        with nkd._lost_data():
            raise ZeroDivisionError
