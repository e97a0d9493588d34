"""ntkfast.limit_kernel against the independent reference, and its identities."""

import numpy as np
import pytest

import ntkfast as nk

import reference
from conftest import ACTIVATIONS, make_inputs


def _activation(name, param):
    return nk.activations.LeakyReLU(param) if name == "leaky_relu" else name


def normalised_error(got, want, diag1, diag2):
    """|got − want| / √(K(x,x) K(x',x')): the error relative to the kernel's scale."""
    return np.abs(got - want) / np.sqrt(np.outer(diag1, diag2))


@pytest.mark.parametrize("name,param", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("cross", [False, True])
def test_matches_reference(name, param, depth, beta, cross):
    x1 = make_inputs(150, 6, seed=depth)
    x2 = make_inputs(140, 6, seed=depth + 100) if cross else None
    k = nk.limit_kernel(x1, x2, depth=depth, activation=_activation(name, param), beta=beta)
    s, t, closeness = reference.limit_kernel(
        x1, x2, depth=depth, activation=name, beta=beta, param=param
    )
    ds1, dt1, _ = reference.limit_kernel(
        x1[:, None, :][:, 0], depth=depth, activation=name, beta=beta, param=param
    )
    if cross:
        ds2, dt2, _ = reference.limit_kernel(
            x2, depth=depth, activation=name, beta=beta, param=param
        )
    else:
        ds2, dt2 = ds1, dt1
    away = closeness > 1e-6  # ρ stays away from ±1 at every layer
    exact = np.eye(*away.shape, dtype=bool) if not cross else np.zeros_like(away)  # ρ = 1
    for got, want, d1, d2 in ((k.nngp, s, ds1, ds2), (k.ntk, t, dt1, dt2)):
        err = normalised_error(got, want, np.diag(d1), np.diag(d2))
        assert err[away | exact].max(initial=0) <= 1e-12
        assert err.max() <= 1e-7  # pairs near ρ = ±1, if any


@pytest.mark.parametrize("name,param", ACTIVATIONS)
def test_near_parallel_and_antiparallel_rows(name, param):
    """ρ = ±1 and its neighbourhood. Exactly (anti)parallel rows (ρ = ±1 at every layer when
    β = 0) and duplicates (the diagonal of K(X, X')): 1e-12 of the scale, as elsewhere (the
    core and the reference both take ρ within 8 ulps of ±1 as ±1; measured ≤ 2e-15). The row
    1e-9 off parallel: 1e-7, since there √(1 − ρ²) amplifies the rounding of ρ."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((3, 8))
    rows = [base[0], 2.5 * base[0], -base[0], -0.4 * base[0], base[0] + 1e-9 * base[1], base[2]]
    x = np.array(rows)
    near = np.zeros((6, 6), dtype=bool)
    near[4, :4] = near[:4, 4] = True
    for depth in (2, 4):
        for beta in (0.0, 0.1):
            act = _activation(name, param)
            k = nk.limit_kernel(x, x.copy(), depth=depth, activation=act, beta=beta)
            s, t, _ = reference.limit_kernel(
                x, depth=depth, activation=name, beta=beta, param=param
            )
            for got, want in ((k.nngp, s), (k.ntk, t)):
                err = normalised_error(got, want, np.diag(want), np.diag(want))
                assert err[~near].max() <= 1e-12
                assert err[near].max() <= 1e-7


def test_parallel_rows_with_many_features():
    """With thousands of features the Gram products' rounding can exceed the core's 8-ulp snap
    of ρ to ±1: exactly parallel rows and duplicates then fall back to the 1e-7 bound (measured
    1e-8 at n0 = 3000, where the reference, which snaps too, is within 1e-15 of the exact
    values). The diagonal of K(X), computed per sample, stays exact."""
    x = make_inputs(20, 3000, seed=5)
    y = np.vstack([x, 2.5 * x, -0.4 * x])
    for name in ("relu", "abs"):
        cross = nk.limit_kernel(y, y.copy(), depth=3, activation=name, beta=0.0)
        sym = nk.limit_kernel(y, depth=3, activation=name, beta=0.0)
        s, t, _ = reference.limit_kernel(y, depth=3, activation=name, beta=0.0)
        for a, b, want in ((cross.nngp, sym.nngp, s), (cross.ntk, sym.ntk, t)):
            d = np.diag(want)
            assert normalised_error(a, want, d, d).max() <= 1e-7
            assert normalised_error(b, want, d, d).max() <= 1e-7
            assert normalised_error(a, b, d, d).max() <= 1e-7  # K(X, X') against K(X)
            assert np.abs(np.diag(b) - d).max() <= 1e-12 * d.max()


def test_relu_diagonal_is_exact():
    """On the diagonal Σ̇ = 1/2 exactly: Σ⁽ˡ⁺¹⁾ = Σ⁽ˡ⁾/2 + β², Θ⁽ˡ⁺¹⁾ = Θ⁽ˡ⁾/2 + Σ⁽ˡ⁺¹⁾."""
    x = make_inputs(300, 20, seed=3)
    depth, beta = 5, 0.1
    k = nk.limit_kernel(x, depth=depth, beta=beta)
    for i in range(0, 300, 7):
        q = float(np.sum(x[i] * x[i])) / 20 + beta**2
        th = q
        for _ in range(depth - 1):
            q = q / 2 + beta**2
            th = th / 2 + q
        assert abs(k.nngp[i, i] - q) <= 1e-15 * q  # a few ulps (order of Σx²)
        assert abs(k.ntk[i, i] - th) <= 1e-15 * th


@pytest.mark.parametrize("name,param", ACTIVATIONS)
def test_symmetric_psd_and_consistent(name, param):
    x = make_inputs(300, 10, seed=5)
    act = _activation(name, param)
    k = nk.limit_kernel(x, depth=3, activation=act, beta=0.1)
    kxx = nk.limit_kernel(x, x.copy(), depth=3, activation=act, beta=0.1)
    for a, b in ((k.nngp, kxx.nngp), (k.ntk, kxx.ntk)):
        assert np.array_equal(a, a.T)
        scale = np.sqrt(np.outer(np.diag(a), np.diag(a)))
        # The diagonal of K(X, X') pairs duplicates, whose ρ is 1 up to rounding: snapped to 1
        # (few features here; see test_parallel_rows_with_many_features). Measured 3e-15.
        assert (np.abs(a - b) / scale).max() <= 1e-12
        eig = np.linalg.eigvalsh(a)
        assert eig.min() >= -1e-12 * eig.max()


def test_same_object_counts_as_symmetric():
    x = make_inputs(50, 4, seed=0)
    b = nk.limit_kernel(x, depth=3)
    assert np.array_equal(nk.limit_kernel(x, x, depth=3).ntk, b.ntk)
    # Also when the object needs converting (list, Fortran order): still one symmetric call.
    for same in (x.tolist(), np.asfortranarray(x)):
        assert np.array_equal(nk.limit_kernel(same, same, depth=3).ntk, b.ntk)


def test_tiles_and_edges():
    """Sizes that are not multiples of the tile, so partial tiles are exercised."""
    tile = nk._ntkfast.TILE
    for n1, n2 in ((1, 1), (tile + 1, 3), (2 * tile + 5, tile - 1)):
        x1, x2 = make_inputs(n1, 3, seed=n1), make_inputs(n2, 3, seed=n2 + 1)
        k = nk.limit_kernel(x1, x2, depth=3)
        s, t, _ = reference.limit_kernel(x1, x2, depth=3)
        np.testing.assert_allclose(k.ntk, t, rtol=1e-7, atol=1e-12)
        ks = nk.limit_kernel(x1, depth=3)
        s, t, _ = reference.limit_kernel(x1, depth=3)
        np.testing.assert_allclose(ks.nngp, s, rtol=1e-7, atol=1e-12)


def test_float32_tiles_and_edges():
    """float32 ReLU kernels run their layers in float32 on tiles of their own edge: sizes
    around it, symmetric and cross, against the float64 reference."""
    tile = nk._ntkfast.TILE_F32
    assert tile != nk._ntkfast.TILE
    for n1, n2 in ((tile - 1, tile + 1), (2 * tile + 5, tile)):
        x1, x2 = make_inputs(n1, 3, seed=n1), make_inputs(n2, 3, seed=n2 + 1)
        for a, b in ((x1, x2), (x1, None)):
            k = nk.limit_kernel(
                a.astype(np.float32), None if b is None else b.astype(np.float32), depth=3
            )
            s, t, _ = reference.limit_kernel(a, b, depth=3)
            assert k.ntk.dtype == np.float32
            for got, want in ((k.nngp, s), (k.ntk, t)):
                assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("name,param", ACTIVATIONS)
def test_float32_within_1e4_of_float64(name, param):
    x = make_inputs(200, 30, seed=9)
    act = _activation(name, param)
    k64 = nk.limit_kernel(x, depth=4, activation=act, beta=0.1)
    k32 = nk.limit_kernel(x.astype(np.float32), depth=4, activation=act, beta=0.1)
    assert k32.ntk.dtype == np.float32 and k32.nngp.dtype == np.float32
    for a, b in ((k32.nngp, k64.nngp), (k32.ntk, k64.ntk)):
        scale = np.sqrt(np.outer(np.diag(b), np.diag(b)))
        assert (np.abs(a - b) / scale).max() <= 1e-4


@pytest.mark.parametrize("symmetric", [True, False])
def test_float32_parallel_and_duplicated_rows(symmetric):
    """Nearly parallel float32 rows, where √(1 − ρ²) amplifies a float32 Gram's rounding."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((16, 784))
    x = np.vstack([base, base, 3 * base, -base, base + 1e-3 * rng.standard_normal(base.shape)])
    x32 = x.astype(np.float32)
    x64 = x32.astype(np.float64)
    for depth in (2, 5):
        k32 = nk.limit_kernel(x32, None if symmetric else x32.copy(), depth=depth)
        k64 = nk.limit_kernel(x64, None if symmetric else x64.copy(), depth=depth)
        for a, b in ((k32.nngp, k64.nngp), (k32.ntk, k64.ntk)):
            scale = np.sqrt(np.outer(np.diag(b), np.diag(b)))
            assert (np.abs(a - b) / scale).max() <= 1e-4


@pytest.mark.parametrize("activation", ["relu", nk.activations.LeakyReLU(0.2), "abs"])
@pytest.mark.parametrize("depth,beta", [(3, 0.1), (40, 1.0)])
def test_float32_piecewise_linear_layers(activation, depth, beta):
    """float32 kernels of the piecewise-linear activations run their layers in float32
    and hand rows with |ρ| near 1 to float64: about 1e-6 of the scale on rows that include
    near-duplicates, and in a deep network whose correlations climb towards 1 (rounding
    adds up over the layers)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((250, 30))
    x[200:] = x[:50] + 1e-4 * rng.standard_normal((50, 30))
    x32 = x.astype(np.float32)
    k64 = nk.limit_kernel(x32.astype(np.float64), depth=depth, activation=activation, beta=beta)
    for other in (None, x32.copy()):
        k32 = nk.limit_kernel(x32, other, depth=depth, activation=activation, beta=beta)
        for a, b in ((k32.nngp, k64.nngp), (k32.ntk, k64.ntk)):
            d = np.diag(b)
            assert normalised_error(a, b, d, d).max() < 1e-6 + 1e-7 * depth


def test_dtypes():
    x = make_inputs(20, 3, seed=2)
    assert nk.limit_kernel(x.astype(np.int64), depth=2, get="ntk").dtype == np.float64
    assert nk.limit_kernel(x.astype(np.float16), depth=2, get="ntk").dtype == np.float64
    x32 = x.astype(np.float32)
    mixed = nk.limit_kernel(x32, x, depth=2, get="ntk")
    assert mixed.dtype == np.float64
    assert np.array_equal(mixed, nk.limit_kernel(x32.astype(np.float64), x, depth=2, get="ntk"))
    assert nk.limit_kernel(x.tolist(), depth=2, get="ntk").shape == (20, 20)
    # Non-contiguous input is accepted and gives the same values.
    xf = np.asfortranarray(x)
    assert np.array_equal(
        nk.limit_kernel(xf, depth=2, get="ntk"), nk.limit_kernel(x, depth=2, get="ntk")
    )


def test_get_variants():
    x = make_inputs(30, 3, seed=4)
    both = nk.limit_kernel(x, depth=3)
    assert isinstance(both, nk.Kernel)
    assert np.array_equal(nk.limit_kernel(x, depth=3, get="ntk"), both.ntk)
    assert np.array_equal(nk.limit_kernel(x, depth=3, get="nngp"), both.nngp)
    only = nk.limit_kernel(x, depth=3, get=("ntk",))
    assert only.nngp is None and np.array_equal(only.ntk, both.ntk)


def test_depth_one_is_the_input_kernel():
    x1, x2 = make_inputs(10, 4, seed=1), make_inputs(7, 4, seed=2)
    k = nk.limit_kernel(x1, x2, depth=1, beta=0.3)
    np.testing.assert_allclose(k.nngp, x1 @ x2.T / 4 + 0.09, rtol=1e-14)
    assert np.array_equal(k.nngp, k.ntk)


def test_mlp_limit_kernel():
    net = nk.MLP([4, 50, 50, 2], activation="erf", beta=0.5)
    assert net.depth == 3
    assert net.num_params == 5 * 50 + 51 * 50 + 51 * 2
    x = make_inputs(12, 4, seed=6)
    k = net.limit_kernel(x)
    want = nk.limit_kernel(x, depth=3, activation="erf", beta=0.5)
    assert np.array_equal(k.ntk, want.ntk)
    with pytest.raises(ValueError, match="input width"):
        net.limit_kernel(make_inputs(3, 5, seed=0))


def test_activation_objects():
    assert nk.activations.get("relu") == nk.activations.ReLU()
    assert nk.activations.LeakyReLU(0.2) != nk.activations.LeakyReLU(0.3)
    x = make_inputs(20, 3, seed=8)
    a = nk.limit_kernel(x, depth=3, activation=nk.activations.LeakyReLU(0.0), get="ntk")
    b = nk.limit_kernel(x, depth=3, activation="relu", get="ntk")
    np.testing.assert_allclose(a, b, rtol=1e-15)
    c = nk.limit_kernel(x, depth=3, activation=nk.activations.LeakyReLU(-1.0), get="ntk")
    d = nk.limit_kernel(x, depth=3, activation="abs", get="ntk")
    np.testing.assert_allclose(c, d, rtol=1e-15)
