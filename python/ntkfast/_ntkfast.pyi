"""Native core of ntkfast (Rust). Call through the Python API, which validates arguments."""

import numpy as np

TILE: int
ACTIVATIONS: list[str]

def limit_kernel(
    x1: np.ndarray,
    x2: np.ndarray | None,
    depth: int,
    activation: str,
    param: float,
    beta: float,
    out_nngp: np.ndarray | None,
    out_ntk: np.ndarray | None,
) -> None:
    """Writes Σ⁽ᴸ⁾ and Θ∞⁽ᴸ⁾ between the rows of x1 and x2 (None: x1) into the outputs.

    x1 (N1, n0), x2 (N2, n0) C-contiguous of one dtype (float32 or float64); outputs
    (N1, N2) C-contiguous, writable, of that dtype, or None to skip. Releases the GIL;
    Ctrl-C raises KeyboardInterrupt.
    """

def set_num_threads(threads: int) -> None: ...
def get_num_threads() -> int: ...
