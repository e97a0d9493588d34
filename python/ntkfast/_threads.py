"""Size of the thread pool used by all computations."""

from __future__ import annotations

import os
import warnings

from . import _ntkfast
from ._validation import as_positive_int

ENV_VAR = "NTKFAST_NUM_THREADS"


def set_num_threads(n: int) -> None:
    """Use ``n`` ≥ 1 threads for subsequent computations (default: one per core, or
    the NTKFAST_NUM_THREADS environment variable). Results do not depend on ``n``."""
    _ntkfast.set_num_threads(as_positive_int(n, "n"))


def get_num_threads() -> int:
    """The number of threads computations run on."""
    return _ntkfast.get_num_threads()


def _init_from_env() -> None:
    value = os.environ.get(ENV_VAR)
    if value is None or value.strip() == "":
        return
    try:
        threads = int(value)
        if threads < 1:
            raise ValueError
    except ValueError:
        warnings.warn(
            f"ignoring {ENV_VAR}={value!r}: expected a positive integer",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    _ntkfast.set_num_threads(threads)
