"""Bad input raises a clear exception before any work, never a crash or a wrong answer."""

import numpy as np
import pytest

import ntkfast as nk

from conftest import make_inputs

X = make_inputs(6, 3, seed=0)


@pytest.mark.parametrize(
    "x,match",
    [
        (np.ones(5), "2-D"),
        (np.ones((2, 3, 4)), "2-D"),
        (np.ones((0, 3)), "non-empty"),
        (np.ones((3, 0)), "non-empty"),
    ],
)
def test_shapes(x, match):
    with pytest.raises(ValueError, match=match):
        nk.limit_kernel(x, depth=2)


def test_feature_mismatch():
    with pytest.raises(ValueError, match="same number of features"):
        nk.limit_kernel(X, np.ones((4, 5)), depth=2)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_names_the_row(bad):
    x = X.copy()
    x[4, 1] = bad
    with pytest.raises(ValueError, match="row 4"):
        nk.limit_kernel(x, depth=2)
    with pytest.raises(ValueError, match="x2 has non-finite values.*row 4"):
        nk.limit_kernel(X, x, depth=2)


@pytest.mark.parametrize("depth", [0, -1])
def test_depth_too_small(depth):
    with pytest.raises(ValueError, match="depth must be at least 1"):
        nk.limit_kernel(X, depth=depth)


@pytest.mark.parametrize("depth", [2.5, "3", True, None])
def test_depth_type(depth):
    with pytest.raises(TypeError, match="depth"):
        nk.limit_kernel(X, depth=depth)


def test_unknown_activation_lists_names():
    with pytest.raises(ValueError, match="relu, leaky_relu, abs, erf, gelu, sin, cos, identity"):
        nk.limit_kernel(X, depth=2, activation="tanhh")
    with pytest.raises(TypeError):
        nk.limit_kernel(X, depth=2, activation=3)


@pytest.mark.parametrize("beta", [np.nan, np.inf])
def test_non_finite_beta(beta):
    with pytest.raises(ValueError, match="beta must be finite"):
        nk.limit_kernel(X, depth=2, beta=beta)


def test_non_finite_slope():
    with pytest.raises(ValueError, match="slope"):
        nk.activations.LeakyReLU(np.nan)


@pytest.mark.parametrize(
    "x",
    [
        X.astype(np.complex128),
        X.astype(object),
        np.array([["a", "b"], ["c", "d"]]),
        np.array([[b"a"]]),
    ],
)
def test_non_real_dtypes(x):
    with pytest.raises(TypeError, match="real numeric"):
        nk.limit_kernel(x, depth=2)


def test_get_names():
    with pytest.raises(ValueError, match="get"):
        nk.limit_kernel(X, depth=2, get="theta")
    with pytest.raises(ValueError, match="get"):
        nk.limit_kernel(X, depth=2, get=())


@pytest.mark.parametrize(
    "out,match",
    [
        (np.empty((6, 5)), "shape"),
        (np.empty((6, 6), dtype=np.float32), "dtype"),
        (np.empty((6, 12))[:, ::2], "C-contiguous"),
    ],
)
def test_out_rejected(out, match):
    with pytest.raises(ValueError, match=match):
        nk.limit_kernel(X, depth=2, get="ntk", out=out)


def test_out_read_only_and_overlapping():
    ro = np.empty((6, 6))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        nk.limit_kernel(X, depth=2, get="ntk", out=ro)
    same = np.empty((6, 6))
    with pytest.raises(ValueError, match="overlap"):
        nk.limit_kernel(X, depth=2, out=(same, same))
    buf = np.zeros(36)
    x = buf[:18].reshape(6, 3)
    x[:] = X
    with pytest.raises(ValueError, match="overlaps an input"):
        nk.limit_kernel(x, depth=2, get="ntk", out=buf.reshape(6, 6))
    with pytest.raises(TypeError):
        nk.limit_kernel(X, depth=2, get="ntk", out=[[0.0] * 6] * 6)


def test_out_must_match_get():
    with pytest.raises(ValueError, match="exactly"):
        nk.limit_kernel(X, depth=2, get=("ntk",), out=(np.empty((6, 6)), np.empty((6, 6))))
    with pytest.raises(TypeError):
        nk.limit_kernel(X, depth=2, out=np.empty((6, 6)))


def test_output_too_large_is_memory_error_before_work():
    x = np.zeros((1, 2))
    big = np.broadcast_to(x, (3_000_000, 2))  # 3e6² float64 outputs: 72 TB each
    with pytest.raises(MemoryError, match="out="):
        nk.limit_kernel(big, depth=2)


def test_threads_argument():
    with pytest.raises(ValueError):
        nk.set_num_threads(0)
    with pytest.raises(TypeError):
        nk.set_num_threads(1.5)


def test_overflowing_kernel_is_an_error():
    with pytest.raises(ValueError, match="overflows.*row 0"):
        nk.limit_kernel(np.array([[1e160], [1.0]]), depth=3)
    with pytest.raises(ValueError, match="overflows"):
        nk.limit_kernel(X, depth=600, activation=nk.activations.LeakyReLU(3.0))
    with pytest.raises(ValueError, match="overflows"):
        nk.limit_kernel(X, depth=3, beta=1e200)


@pytest.mark.parametrize("depth", [2**40, 2**64])
def test_impossible_depth_is_memory_error(depth):
    with pytest.raises(MemoryError, match="depth"):
        nk.limit_kernel(X, depth=depth)


def test_get_twice():
    with pytest.raises(ValueError, match="twice"):
        nk.limit_kernel(X, depth=2, get=("ntk", "ntk"))


def test_mlp_checks_width_of_any_input():
    with pytest.raises(ValueError, match="input width"):
        nk.MLP([4, 10, 1]).limit_kernel(make_inputs(3, 5, seed=0).tolist())


def test_too_many_threads():
    with pytest.raises(ValueError, match="at most"):
        nk.set_num_threads(10**6)
    with pytest.raises(ValueError, match="at most"):
        nk.set_num_threads(2**64)


def test_input_being_written_by_another_call():
    """Reading an array that a running call writes is a ValueError, not a panic."""
    import threading

    x = make_inputs(1500, 20, seed=0)
    buf = np.empty((1500, 1500))
    worker = threading.Thread(target=lambda: nk.limit_kernel(x, depth=800, get="ntk", out=buf))
    worker.start()
    try:
        threading.Event().wait(0.3)
        with pytest.raises(ValueError, match="cannot be read"):
            nk.limit_kernel(buf.reshape(-1)[:60].reshape(3, 20), depth=2)
    finally:
        worker.join()


def test_masked_and_byte_order():
    masked = np.ma.masked_array(X, mask=np.zeros_like(X, dtype=bool))
    assert np.array_equal(
        nk.limit_kernel(masked, depth=2, get="ntk"), nk.limit_kernel(X, depth=2, get="ntk")
    )
    masked.mask[2, 1] = True
    with pytest.raises(ValueError, match="masked"):
        nk.limit_kernel(masked, depth=2)
    big_endian = X.astype(">f8")
    assert np.array_equal(
        nk.limit_kernel(big_endian, depth=2, get="ntk"), nk.limit_kernel(X, depth=2, get="ntk")
    )
    with pytest.raises(ValueError, match="native-endian"):
        nk.limit_kernel(X, depth=2, get="ntk", out=np.empty((6, 6), dtype=">f8"))
