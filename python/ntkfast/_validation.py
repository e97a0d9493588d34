"""Input coercion and checks shared by the public functions."""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray


def as_samples(x: object, name: str, finite: bool = True) -> np.ndarray:
    """Returns ``x`` as a C-contiguous 2-D float32/float64 array (of finite values, unless
    ``finite=False``).

    float32 and float64 keep their dtype; other real dtypes (bool, integers, float16) become
    float64. Complex, object, string and other non-real arrays raise TypeError; wrong shapes,
    empty arrays and non-finite values raise ValueError. ``finite=False`` leaves the check of
    the values to the caller (:func:`check_finite`), which may fold it into a pass of its own.
    """
    if isinstance(x, np.ma.MaskedArray) and np.ma.is_masked(x):
        raise ValueError(f"{name} has masked entries; fill or drop them first")
    if hasattr(x, "toarray") and hasattr(x, "nnz"):
        raise TypeError(
            f"{name}: sparse input is not supported (the kernels are dense in the features); "
            "pass x.toarray()"
        )
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {arr.shape}")
    if finite:
        check_finite(arr, name)
    return np.ascontiguousarray(arr)


def check_finite(arr: np.ndarray, name: str) -> None:
    """ValueError naming the first row of the 2-D ``arr`` with a NaN or an infinity."""
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{name} has non-finite values (NaN or inf) in row {row}")


def as_finite_array(a: ArrayLike, name: str, ndim: tuple[int, ...]) -> NDArray[np.float64]:
    """``a`` as a float64 array of one of the dimensions ``ndim``, all finite (TypeError for
    non-real dtypes, ValueError otherwise)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim not in ndim:
        raise ValueError(
            f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values (NaN or inf)")
    return arr


def as_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """An integer ≥ ``minimum`` (bools and non-integral numbers are TypeError)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def as_finite_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _cgroup_headroom() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, if it has one."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return max(int(limit) - int(f.read().strip()), 0)
    except (OSError, ValueError):
        return None


def _rlimit_headroom() -> int | None:
    """Bytes left under this process's address-space and data-segment limits (``ulimit -v``,
    ``ulimit -d``, ``resource.setrlimit``), if it has any."""
    try:
        import resource

        with open("/proc/self/status") as f:
            status = {
                line.split(":")[0]: int(line.split()[1]) * 1024
                for line in f
                if line.startswith(("VmSize:", "VmData:"))
            }
    except (ImportError, OSError, ValueError, IndexError):
        return None
    left = []
    for limit, used in ((resource.RLIMIT_AS, "VmSize"), (resource.RLIMIT_DATA, "VmData")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY and used in status:
            left.append(max(soft - status[used], 0))
    return min(left) if left else None


def format_bytes(n: float) -> str:
    """``n`` bytes in MiB below 1 GiB, else in GiB."""
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"


def available_memory() -> int | None:
    """Bytes the process can still use: the smallest of the system's MemAvailable + free
    swap, the headroom under a cgroup limit and the headroom under the process's own
    resource limits; None if none is known."""
    system = None
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        system = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        try:
            system = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    known = [m for m in (system, _cgroup_headroom(), _rlimit_headroom()) if m is not None]
    return min(known) if known else None


def check_memory(needed: float, what: str, hint: str = "") -> None:
    """MemoryError (naming ``what``, then ``hint``) if ``needed`` bytes cannot fit in memory."""
    available = available_memory()
    if available is not None and needed > available:
        raise MemoryError(
            f"{what} needs {format_bytes(needed)} but only {format_bytes(available)} "
            f"is available{hint}"
        )


def allocate(shape: tuple[int, ...], dtype: DTypeLike, count: int) -> list[np.ndarray]:
    """``count`` uninitialised arrays, or MemoryError if they cannot fit in memory.

    Linux overcommits, so an ``np.empty`` that is too large can succeed and the process be
    killed later while the kernel is written; the explicit check turns that into an exception
    before any work.
    """
    needed = count * np.dtype(dtype).itemsize * float(np.prod(shape, dtype=np.float64))
    check_memory(
        needed,
        "the output",
        "; pass preallocated arrays (e.g. np.lib.format.open_memmap) as out=",
    )
    return [aligned_empty(shape, dtype) for _ in range(count)]


#: Byte alignment of the arrays ``allocate`` returns: one cache line.
ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on a cache line (``ALIGNMENT``).

    The core writes large outputs with non-temporal stores of whole cache lines; ``np.empty``
    starts its data 16 bytes into a line, so every row of a tile would begin and end with a
    partial line written by ordinary stores (4-6 % of the limit kernel's time at N = 4096).
    The array is a view of a byte buffer one line longer (``.base`` is that buffer).
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start : start + nbytes].view(dtype).reshape(shape)


def check_out(
    arr: object,
    name: str,
    shape: tuple[int, int],
    dtype: DTypeLike,
    inputs: Iterable[np.ndarray],
) -> np.ndarray:
    """Checks a caller-provided output array (ValueError for shape, dtype, layout, writability)."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(arr).__name__}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype != dtype:
        raise ValueError(
            f"{name} must have the native-endian dtype {np.dtype(dtype).name}, got {arr.dtype.str}"
        )
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only")
    for x in inputs:
        if np.may_share_memory(arr, x):
            raise ValueError(f"{name} overlaps an input array")
    return arr
