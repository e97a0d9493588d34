"""Native core of ntkfast (Rust). Call through the Python API, which validates arguments.

Every computation borrows C-contiguous arrays of one dtype (float32 or float64), releases the
GIL while it runs and turns Ctrl-C into KeyboardInterrupt; outputs are C-contiguous, writable
arrays of the inputs' dtype, allocated by the caller.
"""

from collections.abc import Callable, Sequence
from typing import final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "LimitKernel",
    "PreparedKernel",
    "Network",
    "init_normal",
    "solve_spd",
    "eigh",
    "set_num_threads",
    "get_num_threads",
    "TILE",
    "TILE_F32",
    "ACTIVATIONS",
]

TILE: int
TILE_F32: int
#: The activation registry: (name, σ as text, has a closed-form dual, parameter name or None,
#: default parameter) for every built-in activation, in the core's order.
ACTIVATIONS: list[tuple[str, str, bool, str | None, float]]

@final
class PreparedKernel:
    """What :meth:`LimitKernel.prepare` made, for :meth:`LimitKernel.product`."""

    @property
    def integrates(self) -> bool:
        """Whether σ is integrated by quadrature (a kinked σ): preparing is then most of a
        product's cost at moderate N."""

@final
class LimitKernel:
    """Σ⁽ᴸ⁾ and Θ∞⁽ᴸ⁾ of a depth-L network: the parsed settings, made once per call.

    ``activation`` is a registry name and ``param`` its parameter (ignored by those without);
    ``custom``, when given, maps a 1-D float64 array x to (σ(x), σ'(x)) and replaces the
    named activation (called with the GIL taken back, a few times per layer); ``pieces``,
    when given, is a piecewise-linear σ as (breaks (K,), slopes (K + 1,), intercepts
    (K + 1,)), piece k being ``intercepts[k] + slopes[k] * x``, and replaces both (exact
    duals, ``rust/src/pieces.rs``). A ``custom`` σ whose Hermite series miss ``tol`` on the
    samples of a call is tabulated and its duals integrated instead
    (``rust/src/kinked.rs``); the default, infinity, never does.
    """

    def __new__(
        cls,
        depth: int,
        activation: str,
        param: float,
        beta: float,
        custom: Callable[[NDArray[np.float64]], tuple[np.ndarray, np.ndarray]] | None = None,
        pieces: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None,
        tol: float = ...,
    ) -> LimitKernel: ...
    def compute(
        self,
        x1: np.ndarray,
        x2: np.ndarray | None,
        out_nngp: np.ndarray | None,
        out_ntk: np.ndarray | None,
    ) -> tuple[float, int]:
        """Writes Σ⁽ᴸ⁾ and Θ∞⁽ᴸ⁾ between the rows of x1 (N1, n0) and x2 (N2, n0; None: x1)
        into the (N1, N2) outputs (None skips one). Returns (estimated relative error of the
        Hermite series, the most terms a layer kept), (0.0, 0) for closed forms."""
    def diagonal(self, x: np.ndarray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(Σ⁽ᴸ⁾(x, x), Θ∞⁽ᴸ⁾(x, x)) for every row of x as float64 arrays (N,); O(N·(n0 + L))."""
    def product(
        self,
        x1: np.ndarray,
        x2: np.ndarray | None,
        kernel: str,
        v: NDArray[np.float64],
        out: NDArray[np.float64],
        prepared: PreparedKernel | None = None,
    ) -> tuple[float, int]:
        """out (N1, k) = K(x1, x2) v (N2, k), float64, K ("nngp" or "ntk") made tile by tile and
        never stored; x2 None: x1, one triangle of tiles. With ``prepared`` (made by
        :meth:`prepare` for the same x1, x2) the diagonals and tables are not made again.
        Returns as :meth:`compute`."""
    def prepare(self, x1: np.ndarray, x2: np.ndarray | None) -> PreparedKernel:
        """The diagonal recursions of x1 and x2 (None: x1) and a kinked σ's correlation
        tables, for products over the same samples; ValueError when later used with another
        number of samples."""
    def normal_product(
        self,
        x: np.ndarray,
        c: np.ndarray,
        kernel: str,
        v: NDArray[np.float64],
        out: NDArray[np.float64],
    ) -> tuple[float, int]:
        """out (M, k) = K(x, c)ᵀ K(x, c) v (M, k), float64, K(x, c) (N, M) made one row block at
        a time and never stored. Returns as :meth:`compute`."""
    def product_pair(
        self,
        x1: np.ndarray,
        x2: np.ndarray,
        kernel: str,
        v: NDArray[np.float64],
        v_t: NDArray[np.float64],
        out: NDArray[np.float64],
        out_t: NDArray[np.float64],
    ) -> tuple[float, int]:
        """out (N1, k) = K(x1, x2) v (N2, k) and out_t (N2, k) = K(x1, x2)ᵀ v_t (N1, k), each
        tile made once. Returns as :meth:`compute`."""
    def normal_product_memory(self, rows: int, centres: int, k: int) -> int:
        """Bytes :meth:`normal_product` allocates besides v and out for N + M = ``rows``,
        M = ``centres``, k columns."""
    def product_memory(self, rows: int, k: int, symmetric: bool) -> int:
        """Bytes :meth:`product` allocates besides v and out for N1 = ``rows``, k columns."""
    def working_memory(self, rows: int) -> int:
        """Bytes allocated besides the outputs for a kernel of ``rows`` samples in all."""

@final
class Network:
    """A fully-connected network (widths n_0 … n_L, a registry activation, β), parsed once.

    ``weights``/``biases`` are the C-contiguous W (n_{l+1}, n_l) and b (n_{l+1},) of every
    layer, all of x's dtype.
    """

    def __new__(cls, widths: list[int], activation: str, param: float, beta: float) -> Network: ...
    def apply(
        self, weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray, out: np.ndarray
    ) -> None:
        """f_θ(x) into out (N, n_L)."""
    def ntk(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        x1: np.ndarray,
        x2: np.ndarray | None,
        output: str,
        out: np.ndarray,
    ) -> None:
        """The empirical NTK ("trace" (N1, N2), "diagonal" (N1, N2, n_L), "full" (N1, N2,
        n_L, n_L))."""
    def jacobian(
        self, weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray, out: np.ndarray
    ) -> None:
        """∂f/∂θ into out (N, n_L, P), columns W0.ravel(), b0, W1.ravel(), b1, …."""
    def vjp(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        x: np.ndarray,
        d: np.ndarray,
        out_weights: list[np.ndarray],
        out_biases: list[np.ndarray],
    ) -> None:
        """(1/N) Σ_i J(x_i)ᵀ d_i into the parameter-shaped outputs."""
    def step(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        x: np.ndarray,
        y: NDArray[np.float64] | None,
        out_f: np.ndarray,
        lr: float,
        direction: Callable[[], np.ndarray] | None = None,
    ) -> None:
        """One step of gradient descent in place: f_θ(x) (before the update) into out_f, then
        d = y − f (MSE, y float64 (N, n_L)) or ``direction()`` (called with the GIL after
        out_f is written; it must not read W or b), and θ ← θ + lr (1/N) Σ_i J(x_i)ᵀ d_i."""
    def working_memory(self, rows: int, itemsize: int, cotangents: bool) -> int:
        """Bytes of the per-input intermediates of a pass over ``rows`` inputs."""

def init_normal(seed: int, stream: int, out: NDArray[np.float64]) -> None:
    """Entries 0 … out.size − 1 of standard normal stream ``stream`` of ``seed`` (float64)."""

def solve_spd(a: NDArray[np.float64], b: NDArray[np.float64]) -> None:
    """Solves a x = b in place for symmetric positive-definite a (n, n; its upper triangle is
    overwritten by the Cholesky factor U, a = Uᵀ U, its strict lower triangle partly by
    workspace values) and b (n, k; overwritten by x), float64 C-contiguous; ValueError when a
    is not positive definite. Releases the GIL; Ctrl-C takes effect between column blocks of
    the factorisation."""

def eigh(a: NDArray[np.float64], values: NDArray[np.float64], vectors: NDArray[np.float64]) -> None:
    """Eigendecomposition of the symmetric float64 a (n, n): ascending eigenvalues into
    ``values`` (n,), orthonormal eigenvectors as columns into ``vectors`` (n, n)."""

def set_num_threads(threads: int) -> None: ...
def get_num_threads() -> int: ...
