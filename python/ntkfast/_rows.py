"""Training inputs read in row chunks: a NumPy array, a ``.npy`` memmap or a Dask array,
never more than one chunk of it converted in memory at once.

The Nyström solver streams the rows of X through the core once per iteration; for X larger
than the memory (a memmap of a file, a Dask array) only one chunk is resident at a time, and
for an in-memory C-contiguous array of the kernel's dtype the chunks are views (no copy).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["Rows"]

#: Bytes of inputs per chunk handed to the core: large enough for every thread to get many
#: row blocks, small enough that a converted copy is cheap next to X.
CHUNK_BYTES = 64 << 20


def _is_dask(x: object) -> bool:
    return type(x).__module__.startswith("dask.")


class Rows:
    """X (N, n0) as row chunks of ``dtype``, checked once (real dtype, 2-D, non-empty, finite).

    ``chunks()`` yields (start, stop, block) with ``block`` a C-contiguous (stop − start, n0)
    array; ``take(indices)`` gathers rows. ``source`` is the array as given (kept, not
    copied).
    """

    def __init__(self, x: Any, dtype: np.dtype, name: str = "X") -> None:
        if not (_is_dask(x) or isinstance(x, np.ndarray)):
            x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}")
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-D (samples, features), got shape {x.shape}")
        if _is_dask(x) and any(np.isnan(s) for s in x.shape):
            raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes()")
        n, n0 = (int(s) for s in x.shape)
        if n == 0 or n0 == 0:
            raise ValueError(f"{name} must be non-empty, got shape {x.shape}")
        self.source, self.dtype, self.name = x, np.dtype(dtype), name
        self.shape = (n, n0)
        self.step = max(1, CHUNK_BYTES // (n0 * 8))
        for start, _, block in self.chunks():
            finite = np.isfinite(block).all(axis=1)
            if not finite.all():
                row = start + int(np.flatnonzero(~finite)[0])
                raise ValueError(f"{name} has non-finite values (NaN or inf) in row {row}")

    def __len__(self) -> int:
        return self.shape[0]

    def _block(self, start: int, stop: int) -> np.ndarray:
        block = self.source[start:stop]
        if _is_dask(block):
            block = block.compute()
        return np.ascontiguousarray(block, dtype=self.dtype)

    def chunks(self) -> Iterator[tuple[int, int, np.ndarray]]:
        for start in range(0, self.shape[0], self.step):
            stop = min(start + self.step, self.shape[0])
            yield start, stop, self._block(start, stop)

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows ``indices`` (sorted or not) as a C-contiguous (len, n0) array of ``dtype``."""
        rows = self.source[np.asarray(indices)]
        if _is_dask(rows):
            rows = rows.compute()
        return np.ascontiguousarray(rows, dtype=self.dtype)

    def in_memory(self) -> np.ndarray:
        """All of X as one C-contiguous array of ``dtype`` (a view when X already is one)."""
        return self._block(0, self.shape[0])
