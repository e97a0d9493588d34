"""KernelRegressor(solver="nystrom"): against a dense NumPy Nyström solution, the streamed
products against explicit K(X, C) products, the flow against a dense flow of the Nyström
kernel, memmap and Dask inputs, thread-count invariance, and bad input."""

import tracemalloc

import numpy as np
import pytest

import ntkfast as nk
import ntkfast.regression
from ntkfast import _ntkfast, _rows
from ntkfast._falkon import Falkon, Sample, _triangular_gram, sample_size
from ntkfast._krylov import Progress
from ntkfast.regression import ConvergenceWarning

from conftest import correlated_inputs

DEPTH = 3


@pytest.fixture(scope="module")
def problem():
    """Image-like inputs (an ill-conditioned kernel), two noisy outputs, M = 60 centres."""
    x, xt = correlated_inputs(700, 20, seed=11), correlated_inputs(90, 20, seed=12)
    rng = np.random.default_rng(13)
    y = np.stack([np.sin(4 * x[:, 3]), np.cos(3 * x[:, 8])], axis=1)
    y += 0.05 * rng.standard_normal(y.shape)
    centres = x[np.sort(rng.choice(len(x), 60, replace=False))]
    ridge = 1e-2
    return x, xt, y, centres, ridge


def kernel(a, b):
    return nk.limit_kernel(a, b, depth=DEPTH, get="ntk")


def dense_nystrom(x, y, centres, ridge):
    """α of (K_nmᵀ K_nm + λ K_mm) α = K_nmᵀ y, by a dense NumPy solve."""
    knm, kmm = kernel(x, centres), kernel(centres, centres)
    return np.linalg.solve(knm.T @ knm + ridge * kmm, knm.T @ y)


def fit(x, y, **kw):
    settings = dict(depth=DEPTH, solver="nystrom", tol=1e-11, max_iter=500)
    return nk.KernelRegressor(**{**settings, **kw}).fit(x, y)


@pytest.mark.parametrize("storage", ["float64", "none"])
def test_nystrom_matches_a_dense_nystrom_solution(problem, storage):
    x, xt, y, centres, ridge = problem
    reg = fit(x, y, ridge=ridge, center_selection=centres, kernel_storage=storage)
    want = kernel(xt, centres) @ dense_nystrom(x, y, centres, ridge)
    got = reg.predict(xt)
    assert got.shape == want.shape == (len(xt), 2)
    assert np.max(np.abs(got - want)) <= 1e-7 * np.max(np.abs(want))
    assert reg.solver_ == "nystrom" and reg.storage_ == storage
    assert reg.dual_coef_.shape == (len(centres), 2)
    assert np.array_equal(reg.centers_, centres)
    assert reg.residual_ <= 1e-11 and 1 <= reg.n_iter_ <= 500
    # A 1-D target gives 1-D results, equal to the first column's.
    single = fit(x, y[:, 0], ridge=ridge, center_selection=centres, kernel_storage=storage)
    assert single.predict(xt).shape == (len(xt),)
    assert np.allclose(single.predict(xt), got[:, 0], rtol=0, atol=1e-8 * np.abs(want).max())


def test_ridgeless_nystrom_interpolates_the_nystrom_kernel(problem):
    x, xt, y, centres, _ = problem
    reg = fit(x, y[:, 0], ridge=0.0, center_selection=centres, tol=1e-10)
    want = kernel(xt, centres) @ dense_nystrom(x, y[:, 0], centres, 0.0)
    assert np.max(np.abs(reg.predict(xt) - want)) <= 1e-5 * np.max(np.abs(want))


def test_streamed_normal_products_match_explicit_ones(problem):
    x, _, _, centres, _ = problem
    v = np.random.default_rng(0).standard_normal((len(centres), 3))
    core = _ntkfast.LimitKernel(DEPTH, "relu", 0.0, 0.1)
    out = np.empty_like(v)
    for dtype, rtol in [(np.float64, 1e-12), (np.float32, 1e-5)]:
        xs, cs = x.astype(dtype), centres.astype(dtype)
        core.normal_product(xs, cs, "ntk", v, out)
        knm = kernel(x, centres)
        want = knm.T @ (knm @ v)
        assert np.max(np.abs(out - want)) <= rtol * np.max(np.abs(want)), dtype


def test_nystrom_fits_are_the_same_bits_for_any_thread_count(problem, restore_threads):
    x, xt, y, _, ridge = problem
    fits = []
    for threads in (1, 2, 3):
        nk.set_num_threads(threads)
        reg = fit(x, y, ridge=ridge, centers=50, kernel_storage="none", tol=1e-8)
        fits.append((reg.dual_coef_, reg.predict(xt)))
    for coef, pred in fits[1:]:
        assert np.array_equal(coef, fits[0][0]) and np.array_equal(pred, fits[0][1])


def test_uniform_centres_are_distinct_rows_of_x_and_follow_the_seed(problem):
    x, _, y, _, ridge = problem
    repeated = np.concatenate([x[:100]] * 3)  # every row three times
    reg = fit(repeated, y[:300], ridge=ridge, centers=80, random_state=4)
    c = reg.centers_
    assert c.shape == (80, x.shape[1]) and len(np.unique(c, axis=0)) == 80
    assert all((np.abs(x[:100] - row).sum(axis=1) == 0).any() for row in c)
    again = fit(repeated, y[:300], ridge=ridge, centers=80, random_state=4)
    other = fit(repeated, y[:300], ridge=ridge, centers=80, random_state=5)
    assert np.array_equal(again.centers_, c) and not np.array_equal(other.centers_, c)
    default = nk.KernelRegressor(depth=DEPTH, solver="nystrom").fit(x, y)
    assert len(default.centers_) == min(len(x), 10 * int(np.ceil(np.sqrt(len(x)))))


def test_auto_picks_nystrom_when_centres_are_asked_for(problem):
    x, xt, y, centres, ridge = problem
    assert nk.KernelRegressor(depth=DEPTH, centers=40).fit(x, y).solver_ == "nystrom"
    given = nk.KernelRegressor(depth=DEPTH, center_selection=centres, ridge=ridge).fit(x, y)
    assert given.solver_ == "nystrom"
    assert nk.KernelRegressor(depth=DEPTH).fit(x[:200], y[:200]).solver_ == "direct"


def test_the_flow_is_that_of_the_nystrom_kernel(problem):
    x, xt, y, centres, ridge = problem
    x, y = x[:300], y[:300]
    reg = fit(x, y, ridge=ridge, center_selection=centres, tol=1e-11)
    times = np.array([0.0, 3.0, 300.0, 3e4, np.inf])
    got = reg.predict(xt, t=times)
    # Dense reference: Θ̃ = K̃ + λI with K̃ = K_nm K_mm⁻¹ K_mn, by eigh.
    knm, kmm, ktm = kernel(x, centres), kernel(centres, centres), kernel(xt, centres)
    solve = np.linalg.solve(kmm, knm.T)
    k_tilde, kt_tilde = knm @ solve, ktm @ solve
    lam, u = np.linalg.eigh(k_tilde + ridge * np.eye(len(x)))
    n = len(x)
    want = []
    for t in times:
        g = 1 / lam if np.isinf(t) else -np.expm1(-t * lam / n) / lam
        want.append(kt_tilde @ (u @ (g[:, None] * (u.T @ y))))
    want = np.array(want)
    assert got.shape == (len(times), len(xt), 2)
    assert np.max(np.abs(got - want)) <= 1e-6 * np.max(np.abs(want))
    assert np.array_equal(got[-1], reg.predict(xt))
    assert np.all(got[0] == 0)


def test_memmap_inputs_are_streamed_not_loaded(problem, tmp_path, monkeypatch):
    x, xt, y, centres, ridge = problem
    big = np.concatenate([x + 0.01 * i for i in range(30)])  # 21,000 x 20, 3.4 MB
    targets = np.concatenate([y] * 30)
    path = tmp_path / "x.npy"
    np.save(path, big)
    mapped = np.load(path, mmap_mode="r")
    monkeypatch.setattr(_rows, "CHUNK_BYTES", 1 << 18)
    settings = dict(ridge=ridge, center_selection=centres, kernel_storage="none", tol=1e-8)
    tracemalloc.start()
    try:
        reg = fit(mapped, targets, **settings)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < big.nbytes / 4, peak  # chunks of 256 KiB, never all of X
    assert isinstance(reg.X_fit_, np.memmap)
    in_memory = fit(big, targets, **settings)
    assert np.array_equal(reg.dual_coef_, in_memory.dual_coef_)
    assert np.array_equal(reg.predict(xt, t=[5.0]), in_memory.predict(xt, t=[5.0]))


def test_dask_array_inputs_give_the_in_memory_fit(problem):
    da = pytest.importorskip("dask.array")
    x, xt, y, centres, ridge = problem
    lazy = da.from_array(x, chunks=(128, -1))
    settings = dict(ridge=ridge, center_selection=centres, kernel_storage="none", tol=1e-9)
    a, b = fit(lazy, y, **settings), fit(x, y, **settings)
    assert np.array_equal(a.predict(xt), b.predict(xt))


def test_float32_nystrom_is_accurate_to_float32(problem):
    x, xt, y, centres, ridge = problem
    reg = fit(x, y, ridge=ridge, center_selection=centres, dtype="float32", tol=1e-8)
    want = kernel(xt, centres) @ dense_nystrom(x, y, centres, ridge)
    assert np.max(np.abs(reg.predict(xt) - want)) <= 1e-4 * np.max(np.abs(want))


@pytest.mark.parametrize("m", [1, 2, 511, 512, 513, 1300])
def test_the_triangular_gram_is_t_times_t_transposed(m):
    t = np.triu(np.random.default_rng(m).standard_normal((m, m)))
    got = _triangular_gram(t)
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, t @ t.T, rtol=0, atol=1e-12 * m)


def test_falkon_factors_satisfy_their_definitions(problem):
    """Tᵀ T = K_mm + δI and Aᵀ A = (N/M) T Tᵀ + λ I, with T and A upper triangular."""
    x, _, _, centres, ridge = problem
    kmm = kernel(centres, centres)
    f = Falkon(kmm, len(x), ridge)
    m = len(centres)
    assert np.array_equal(f.t, np.triu(f.t)) and np.array_equal(f.a, np.triu(f.a))
    scale = np.max(np.abs(kmm))
    np.testing.assert_allclose(f.t.T @ f.t, kmm + f.jitter * np.eye(m), atol=1e-12 * scale)
    inner = len(x) / m * f.t @ f.t.T + ridge * np.eye(m)
    np.testing.assert_allclose(f.a.T @ f.a, inner, atol=1e-12 * np.max(np.abs(inner)))


def sampled_falkon(x, centres, rows, ridge, drawn, block=97):
    """Falkon with a sample of ``rows`` of x (in blocks), standing for the rest of X."""
    k = kernel(x[rows], centres)
    blocks = (k[i : i + block] for i in range(0, len(rows), block))
    represents = len(x) - len(centres) if drawn else len(x)
    sample = Sample(blocks, len(rows), represents, drawn)
    return Falkon(kernel(centres, centres), len(x), ridge, sample), k, represents


@pytest.mark.parametrize("drawn", [True, False])
def test_sampled_preconditioner_factors_satisfy_their_definition(problem, drawn):
    """Aᵀ A = [T Tᵀ] + (N_S / s) Zᵀ Z + λ I, Z = K_sm T⁻¹ (the centres' term when drawn)."""
    x, _, _, centres, ridge = problem
    rows = np.arange(0, len(x), 3)
    f, ksm, represents = sampled_falkon(x, centres, rows, ridge, drawn)
    assert f.sampled == len(rows) and np.array_equal(f.a, np.triu(f.a))
    z = np.linalg.solve(f.t.T, ksm.T).T
    inner = represents / len(rows) * z.T @ z + ridge * np.eye(len(centres))
    if drawn:
        inner += f.t @ f.t.T
    np.testing.assert_allclose(f.a.T @ f.a, inner, atol=1e-11 * np.max(np.abs(inner)))


def test_a_singular_sampled_estimate_falls_back_to_falkons(problem):
    """Ten sampled rows for 60 centres taken as not drawn from X (no T Tᵀ term) and no
    ridge: Zᵀ Z has rank 10."""
    x, _, _, centres, _ = problem
    f, _, _ = sampled_falkon(x, centres, np.arange(10), 0.0, drawn=False)
    assert f.sampled == 0
    inner = len(x) / len(centres) * f.t @ f.t.T
    np.testing.assert_allclose(f.a.T @ f.a, inner, atol=1e-12 * np.max(np.abs(inner)))


@pytest.mark.parametrize("drawn", [True, False])
def test_a_sample_of_all_the_other_rows_makes_the_preconditioner_exact(drawn):
    """With the sample all of X beside the centres (or all of X, for centres not in it), the
    estimate is K_nmᵀ K_nm itself: W = I up to the jitter, and CG stops at once."""
    x = correlated_inputs(500, 20, seed=31)
    y = np.sin(4 * x[:, [3]])
    picked = np.zeros(len(x), dtype=bool)
    picked[np.random.default_rng(32).choice(len(x), 50, replace=False)] = True
    centres = x[picked] if drawn else correlated_inputs(50, 20, seed=33)
    rows = np.flatnonzero(~picked) if drawn else np.arange(len(x))
    ridge = 1e-3
    f, _, _ = sampled_falkon(x, centres, rows, ridge, drawn)
    knm = kernel(x, centres)
    alpha, iterations, residual = f.solve(
        lambda v: knm.T @ (knm @ v), knm.T @ y, 1e-10, 50, Progress(False, 50)
    )
    assert iterations <= 3 and residual <= 1e-10, (iterations, residual)
    want = np.linalg.solve(knm.T @ knm + ridge * kernel(centres, centres), knm.T @ y)
    assert np.max(np.abs(knm @ (alpha - want))) <= 1e-8 * np.max(np.abs(knm @ want))


def test_the_sample_size_follows_the_cost_of_a_pass():
    # N = 10⁶, M = 10⁴, float32 n0 = 100, depth 4: 4 passes buy 32,800 rows (< 4M).
    assert sample_size(10**6, 10**6 - 10**4, 10**4, 100 / 2 + 8 * 4) == 32_800
    assert sample_size(100_000, 99_000, 1_000, 100 + 24 * 4) == 4_000  # at most 4M
    assert sample_size(20_000, 18_000, 2_000, 2.0) == 0  # cheap passes: fewer than M rows
    assert sample_size(700, 640, 60, 2.0) == 93  # 4 · 700 · 2 / 60 ≥ M
    assert sample_size(150, 100, 50, 200.0) == 100  # all the other rows


def test_the_sample_is_other_rows_and_its_blocks_are_their_kernel(monkeypatch):
    """The regressor's sample: rows of X that are not centres, standing for N − M rows, its
    kernel blocks (made small here) those of K(X_S, C)."""
    x = correlated_inputs(400, 12, seed=41)
    reg = nk.KernelRegressor(
        depth=DEPTH, solver="nystrom", centers=30, ridge=1e-2, kernel_storage="none"
    )
    s = reg._settings()
    rows = _rows.Rows(x, np.float64)
    centres, rest, drawn = reg._centres(rows, s)
    assert drawn and len(rest) == len(x) - len(centres)
    chosen = np.sort(rest[:120])
    monkeypatch.setattr(ntkfast.regression, "SAMPLE_BLOCK_BYTES", 8 * (30 + 12) * 7)
    sample = reg._sample(rows, centres, rest, drawn, "none", s)
    assert sample.size == 120 and sample.represents == len(x) - 30 and sample.centres_in_data
    blocks = list(sample.blocks)
    assert [len(b) for b in blocks] == [7] * 17 + [1]
    np.testing.assert_allclose(np.concatenate(blocks), kernel(x[chosen], centres), rtol=1e-14)
    assert not (set(map(tuple, x[chosen])) & set(map(tuple, centres)))
    # Passes on 1000 times the client's cores (a cluster): a sample of 4 rows, too few.
    monkeypatch.setattr(reg, "_pass_cores_per_client_core", lambda: 1000.0)
    assert reg._sample(rows, centres, rest, drawn, "none", s) is None
    # K(X, C) kept: Falkon's estimate; given centres without a ridge: Falkon's estimate.
    assert reg._sample(rows, centres, rest, drawn, "float64", s) is None
    assert reg._sample(rows, centres, rest, False, "none", {**s, "ridge": 0.0}) is None


def test_the_sample_takes_fewer_iterations_than_falkons_estimate(monkeypatch):
    """Image-like inputs, streamed K(X, C): the same solution in fewer iterations (9 against
    22 when written); kept in memory, Falkon's estimate."""
    x = correlated_inputs(3000, 40, seed=21)
    y = np.sin(5 * x[:, 10]) + 0.1 * np.random.default_rng(22).standard_normal(len(x))
    xt = correlated_inputs(200, 40, seed=23)
    settings = dict(depth=4, solver="nystrom", centers=300, ridge=1e-3, tol=1e-8)
    sampled = nk.KernelRegressor(**settings, kernel_storage="none").fit(x, y)
    assert sampled._falkon.sampled == 1200
    kept = nk.KernelRegressor(**settings, kernel_storage="float64").fit(x, y)
    assert kept._falkon.sampled == 0
    monkeypatch.setattr(ntkfast.regression, "sample_size", lambda *_: 0)
    falkon = nk.KernelRegressor(**settings, kernel_storage="none").fit(x, y)
    assert falkon._falkon.sampled == 0
    assert sampled.n_iter_ < 0.6 * falkon.n_iter_, (sampled.n_iter_, falkon.n_iter_)
    a, b = sampled.predict(xt), falkon.predict(xt)
    assert np.max(np.abs(a - b)) <= 1e-6 * np.max(np.abs(b))


def test_falkon_converges_in_tens_of_iterations_on_image_like_data():
    x = correlated_inputs(3000, 40, seed=21)
    y = np.sin(5 * x[:, 10]) + 0.1 * np.random.default_rng(22).standard_normal(len(x))
    reg = nk.KernelRegressor(
        depth=4, solver="nystrom", centers=300, ridge=1e-3, tol=1e-6, kernel_storage="none"
    ).fit(x, y)
    assert reg.residual_ <= 1e-6 and reg.n_iter_ <= 50, (reg.n_iter_, reg.residual_)


def test_too_few_iterations_warn(problem):
    x, _, y, centres, ridge = problem
    with pytest.warns(ConvergenceWarning, match="centers"):
        fit(x, y, ridge=ridge, center_selection=centres, max_iter=1, tol=1e-12)


def test_bad_nystrom_input_is_a_clear_error(problem):
    x, _, y, centres, ridge = problem
    with pytest.raises(ValueError, match="at most N"):
        fit(x[:30], y[:30], centers=31)
    with pytest.raises(ValueError, match="repeated rows"):
        fit(x, y, center_selection=np.concatenate([centres, centres[:1]]))
    with pytest.raises(ValueError, match="features"):
        fit(x, y, center_selection=centres[:, :5])
    with pytest.raises(ValueError, match="centres were given"):
        fit(x, y, centers=10, center_selection=centres)
    with pytest.raises(ValueError, match="non-finite"):
        fit(x, y, center_selection=np.where(centres == centres[0, 0], np.nan, centres))
    bad = x.copy()
    bad[123, 4] = np.inf
    with pytest.raises(ValueError, match="row 123"):
        fit(bad, y, centers=20)
    with pytest.raises(ValueError, match="distinct rows"):
        fit(np.concatenate([x[:5]] * 10), y[:50], centers=8)
    with pytest.raises(ValueError, match="center_selection"):
        fit(x, y, center_selection="kmeans")
    with pytest.raises(ValueError, match="kernel_storage"):
        fit(x, y, centers=20, kernel_storage="float32")
    with pytest.raises(ValueError, match="2-D"):
        fit(x[:, 0], y, centers=20)
    with pytest.raises(TypeError, match="integer"):
        fit(x, y, centers=2.5)
