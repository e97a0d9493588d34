"""Size of the thread pool used by all computations."""

from __future__ import annotations

import os
import warnings

from . import _ntkfast
from ._validation import as_positive_int

ENV_VAR = "NTKFAST_NUM_THREADS"
MAX_THREADS = 1024


def set_num_threads(n: int) -> None:
    """Use ``n`` ≥ 1 threads for subsequent computations (default: one per core, or
    the NTKFAST_NUM_THREADS environment variable). Results do not depend on ``n``."""
    n = as_positive_int(n, "n")
    if n > MAX_THREADS:
        raise ValueError(f"n must be at most {MAX_THREADS}, got {n}")
    _ntkfast.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads computations run on."""
    return _ntkfast.get_num_threads()


def _init_from_env() -> None:
    value = os.environ.get(ENV_VAR)
    if value is None or value.strip() == "":
        return
    try:
        set_num_threads(int(value))
    except (ValueError, TypeError):
        warnings.warn(
            f"ignoring {ENV_VAR}={value!r}: expected an integer from 1 to {MAX_THREADS}",
            RuntimeWarning,
            stacklevel=3,
        )
