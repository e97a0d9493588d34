"""Data for the paper's experiments: points on the unit circle, the Figure 1 training set,
scikit-learn's bundled digits, and MNIST from local files.

MNIST cannot be downloaded by this package; :func:`load_mnist` reads the IDX files of the
original distribution (optionally gzipped) or an .npz with ``x`` and ``y`` arrays.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from ._optional import missing_extra

__all__ = [
    "DataError",
    "circle",
    "digits",
    "figure1_training_set",
    "load_idx",
    "load_mnist",
]


class DataError(ValueError):
    """A data file is missing, truncated or not in the expected format."""


def circle(gamma: ArrayLike) -> np.ndarray:
    """Points (cos γ, sin γ) on the unit circle, shape (len(γ), 2)."""
    gamma = np.asarray(gamma, dtype=np.float64).ravel()
    return np.stack([np.cos(gamma), np.sin(gamma)], axis=1)


def figure1_training_set(n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The Figure 1 task: inputs x ~ N(0, I₂) and targets f*(x) = x₁ x₂, shapes (n, 2), (n, 1)."""
    x = np.random.default_rng(seed).standard_normal((n, 2))
    return x, (x[:, 0] * x[:, 1])[:, None]


def digits(n: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8 × 8 digits (1797 images, n₀ = 64), scaled to [0, 1].

    Returns (x (n, 64), labels (n,)); with ``n`` a random subset of that size.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise missing_extra("ntkfast.data.digits", "paper", {"sklearn": err}) from err
    bunch = load_digits()
    return _subset(bunch.data / 16.0, bunch.target.astype(np.int64), n, seed)


def _subset(
    x: np.ndarray, y: np.ndarray, n: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """All of (x, y), or a random subset of n rows."""
    if n is None:
        return x, y
    if not 1 <= n <= len(x):
        raise ValueError(f"n must be between 1 and {len(x)}, got {n}")
    idx = np.random.default_rng(seed).choice(len(x), size=n, replace=False)
    return x[idx], y[idx]


_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataError(f"{path}: cannot be read ({err})") from None


def load_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """An IDX array (the MNIST format: magic 0 0 type ndim, big-endian sizes, then data).

    ``.gz`` files are decompressed. Raises :class:`DataError` for a missing, truncated or
    malformed file.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype = _IDX_TYPES.get(raw[2])
    if dtype is None:
        raise DataError(f"{path}: unknown IDX data type 0x{raw[2]:02x}")
    ndim = raw[3]
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    count = int(np.prod(shape, dtype=np.int64))
    body = raw[4 + 4 * ndim :]
    if len(body) != count * dtype.itemsize:
        raise DataError(
            f"{path}: expected {count * dtype.itemsize} data bytes for shape {shape}, "
            f"found {len(body)} (truncated or corrupt file)"
        )
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def load_mnist(
    path: str | os.PathLike[str], n: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST from local files: images (n, 784) scaled to [0, 1] and labels (n,).

    ``path`` is either an .npz with arrays ``x`` (images, (N, 28, 28) or (N, 784)) and ``y``
    (labels), or a folder (or the images file) of the IDX distribution:
    ``train-images-idx3-ubyte[.gz]`` with ``train-labels-idx1-ubyte[.gz]`` beside it.
    With ``n``, a random subset of that size.
    """
    path = Path(path)
    if path.suffix == ".npz":
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        try:
            with np.load(path, allow_pickle=False) as f:
                if "x" not in f or "y" not in f:
                    raise DataError(f"{path}: expected arrays 'x' and 'y', found {list(f.keys())}")
                images, labels = f["x"], f["y"]
        except (OSError, ValueError) as err:
            if isinstance(err, DataError):
                raise
            raise DataError(f"{path}: not a readable .npz file ({err})") from None
    else:
        images_path = path
        if path.is_dir():
            candidates = sorted(path.glob("train-images-idx3-ubyte*"))
            if not candidates:
                raise DataError(f"{path}: no train-images-idx3-ubyte[.gz] file in this folder")
            images_path = candidates[0]
        labels_path = images_path.with_name(images_path.name.replace("images-idx3", "labels-idx1"))
        images, labels = load_idx(images_path), load_idx(labels_path)
    images = np.asarray(images)
    labels = np.asarray(labels).ravel()
    if images.ndim not in (2, 3) or len(images) != len(labels):
        raise DataError(f"{path}: images of shape {images.shape} do not match {len(labels)} labels")
    x = images.reshape(len(images), -1).astype(np.float64)
    if x.size and x.max() > 1.0:
        x /= 255.0
    return _subset(x, labels.astype(np.int64), n, seed)
