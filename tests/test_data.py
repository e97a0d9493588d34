"""Data loading: circle points, the Figure 1 task, and MNIST files the tests write themselves."""

import gzip
import struct

import numpy as np
import pytest

from ntkfast import data


def _idx(array: np.ndarray, type_code: int = 0x08) -> bytes:
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=20, dtype=np.uint8)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images)))
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    return tmp_path, images, labels


def test_circle_and_figure1_task():
    gamma = np.linspace(-3, 3, 7)
    pts = data.circle(gamma)
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0)
    np.testing.assert_allclose(np.arctan2(pts[:, 1], pts[:, 0]), gamma)
    x, y = data.figure1_training_set(12, seed=3)
    assert x.shape == (12, 2) and y.shape == (12, 1)
    np.testing.assert_array_equal(y[:, 0], x[:, 0] * x[:, 1])


def test_mnist_from_gzipped_idx_files(mnist_dir):
    folder, images, labels = mnist_dir
    x, y = data.load_mnist(folder)
    assert x.shape == (20, 784) and x.max() <= 1.0
    np.testing.assert_allclose(x, images.reshape(20, -1) / 255.0)
    np.testing.assert_array_equal(y, labels)
    x5, y5 = data.load_mnist(folder / "train-images-idx3-ubyte.gz", n=5, seed=1)
    assert x5.shape == (5, 784) and set(y5) <= set(labels)


def test_mnist_from_npz_and_raw_idx(tmp_path):
    x = np.random.default_rng(1).random((6, 28, 28))
    np.savez(tmp_path / "m.npz", x=x, y=np.arange(6))
    got, labels = data.load_mnist(tmp_path / "m.npz")
    np.testing.assert_allclose(got, x.reshape(6, -1))
    np.testing.assert_array_equal(labels, np.arange(6))
    floats = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    (tmp_path / "f.idx").write_bytes(_idx(floats, 0x0D))
    np.testing.assert_array_equal(data.load_idx(tmp_path / "f.idx"), floats)


def test_malformed_files_raise_data_errors(mnist_dir, tmp_path):
    folder, images, _ = mnist_dir
    raw = _idx(images)
    cases = {
        "truncated.idx": raw[:-10],
        "header.idx": raw[:6],
        "magic.idx": b"\x01\x02" + raw[2:],
        "type.idx": raw[:2] + b"\x42" + raw[3:],
        "empty.idx": b"",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(data.DataError):
            data.load_idx(tmp_path / name)
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(data.DataError, match="cannot be read"):
        data.load_idx(tmp_path / "bad.gz")
    with pytest.raises(data.DataError, match="no such file"):
        data.load_mnist(tmp_path / "missing.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="no train-images"):
        data.load_mnist(tmp_path / "empty")
    np.savez(tmp_path / "wrong.npz", images=np.zeros((2, 4)))
    with pytest.raises(data.DataError, match="'x' and 'y'"):
        data.load_mnist(tmp_path / "wrong.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK junk")
    with pytest.raises(data.DataError, match="not a readable"):
        data.load_mnist(tmp_path / "junk.npz")
    np.savez(tmp_path / "mismatch.npz", x=np.zeros((3, 784)), y=np.zeros(2))
    with pytest.raises(data.DataError, match="do not match"):
        data.load_mnist(tmp_path / "mismatch.npz")
    # Labels file missing beside the images.
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataError, match="no such file"):
        data.load_mnist(folder)
