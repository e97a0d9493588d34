"""Native core of ntkfast (Rust). Call through the Python API, which validates arguments."""

from collections.abc import Callable
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "limit_kernel",
    "limit_kernel_diagonal",
    "mlp_apply",
    "mlp_ntk",
    "mlp_jacobian",
    "mlp_vjp",
    "mlp_step",
    "init_normal",
    "set_num_threads",
    "get_num_threads",
    "TILE",
    "TILE_F32",
    "PANEL_TILES",
    "ACTIVATIONS",
]

TILE: int
TILE_F32: int
PANEL_TILES: int
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
    custom: Callable[[NDArray[np.float64]], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[float, int]:
    """Writes Σ⁽ᴸ⁾ and Θ∞⁽ᴸ⁾ between the rows of x1 and x2 (None: x1) into the outputs.

    x1 (N1, n0), x2 (N2, n0) C-contiguous of one dtype (float32 or float64); outputs
    (N1, N2) C-contiguous, writable, of that dtype, or None to skip. ``custom``, when given,
    maps a 1-D float64 array x to (σ(x), σ'(x)) and replaces the named activation; it is
    called with the GIL taken back, a few times per layer. Releases the GIL; Ctrl-C raises
    KeyboardInterrupt. Returns (estimated relative error of the Hermite series, the most
    terms a layer kept), (0.0, 0) for closed-form activations.
    """

def limit_kernel_diagonal(
    x: np.ndarray,
    depth: int,
    activation: str,
    param: float,
    beta: float,
    custom: Callable[[NDArray[np.float64]], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(Σ⁽ᴸ⁾(x, x), Θ∞⁽ᴸ⁾(x, x)) for every row of x (C-contiguous float32 or float64), as two
    float64 arrays of shape (N,); O(N·(n0 + L))."""

def set_num_threads(threads: int) -> None: ...
def get_num_threads() -> int: ...

# Finite-width networks. ``net`` is (widths, activation name, activation parameter, beta);
# ``weights``/``biases`` are the C-contiguous W (n_{l+1}, n_l) and b (n_{l+1},) of every layer,
# all of x's dtype. Outputs are C-contiguous, writable, of that dtype. All release the GIL;
# Ctrl-C raises KeyboardInterrupt. (_NetSpec is a typing-only alias, absent at runtime.)
_NetSpec: TypeAlias = tuple[list[int], str, float, float]

def mlp_apply(
    net: _NetSpec,
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    x: np.ndarray,
    out: np.ndarray,
) -> None:
    """f_θ(x) into out (N, n_L)."""

def mlp_ntk(
    net: _NetSpec,
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    x1: np.ndarray,
    x2: np.ndarray | None,
    output: str,
    out: np.ndarray,
) -> None:
    """The empirical NTK ("trace" (N1, N2), "diagonal" (N1, N2, n_L), "full" (N1, N2, n_L, n_L))."""

def mlp_jacobian(
    net: _NetSpec,
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    x: np.ndarray,
    out: np.ndarray,
) -> None:
    """∂f/∂θ into out (N, n_L, P), columns W0.ravel(), b0, W1.ravel(), b1, …."""

def mlp_vjp(
    net: _NetSpec,
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    x: np.ndarray,
    d: np.ndarray,
    out_weights: list[np.ndarray],
    out_biases: list[np.ndarray],
) -> None:
    """(1/N) Σ_i J(x_i)ᵀ d_i into the parameter-shaped outputs."""

def init_normal(seed: int, stream: int, out: NDArray[np.float64]) -> None:
    """Entries 0 … out.size − 1 of standard normal stream ``stream`` of ``seed`` (float64)."""

def mlp_step(
    net: _NetSpec,
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    x: np.ndarray,
    direction: Callable[[], np.ndarray],
    out_f: np.ndarray,
    lr: float,
) -> None:
    """One training step in place: a forward pass writes f into out_f, ``direction()`` (called
    with the GIL) returns d (N, n_L), and θ ← θ + lr (1/N) Σ_i J(x_i)ᵀ d_i updates the given
    W and b arrays (which must not be read by ``direction``)."""
