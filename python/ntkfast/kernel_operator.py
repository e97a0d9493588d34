"""Matrix-free kernel products: K(X, X) @ V without the N × N kernel in memory.

:class:`KernelOperator` is a :class:`scipy.sparse.linalg.LinearOperator` whose products the
Rust core computes tile by tile: each tile of Σ⁽ᴸ⁾ or Θ∞⁽ᴸ⁾ is made by the same fused
recursion as :func:`ntkfast.limit_kernel` and multiplied into V at once, so memory is a few
tiles per thread plus the result, and K(X, X) makes only one triangle of tiles (each used
twice). Hand it to SciPy's ``cg``, ``minres``, ``eigsh`` or ``expm_multiply``.

>>> import numpy as np, ntkfast as nk
>>> x = np.random.default_rng(0).standard_normal((200, 5))
>>> op = nk.KernelOperator(x, depth=3)
>>> v = np.ones(200)
>>> bool(np.allclose(op @ v, nk.limit_kernel(x, depth=3, get="ntk") @ v))
True
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray
from scipy.sparse.linalg import LinearOperator

from . import _ntkfast
from . import activations as _activations
from ._validation import as_finite_float, as_positive_int, as_samples, check_memory
from .kernels import check_series, core_kernel, limit_kernel_diagonal

__all__ = ["KernelOperator"]


def _private(x: np.ndarray) -> np.ndarray:
    """A read-only copy of ``x``."""
    x = x.copy()
    x.setflags(write=False)
    return x


class KernelOperator(LinearOperator):  # type: ignore[misc]
    """K(x, x2) as a SciPy LinearOperator: ``op @ V`` = K V, K never stored.

    Parameters
    ----------
    x : array (N1, n0)
        Rows of the kernel.
    x2 : array (N2, n0) or None
        Columns; None (or x itself) means x2 = x, a symmetric operator of which only one
        triangle of tiles is computed per product.
    depth, activation, beta
        As for :func:`ntkfast.limit_kernel`.
    kernel : "ntk" or "nngp"
        Θ∞⁽ᴸ⁾ (default) or Σ⁽ᴸ⁾.
    dtype : "float64" or "float32"
        Precision of the kernel's tiles (the inputs are converted). Products always sum in
        float64 and return float64 (the operator's ``dtype``): a float32 kernel is accurate to
        about 1e-6 of its scale, its products to the same relative error.

    Shape (N1, N2). ``op @ V`` accepts V of shape (N2,) or (N2, k); each product costs one
    pass over the kernel's tiles, O(N1 N2 (n0 + L)) time for any k, so pass many columns
    at once where you can. For a user's σ integrated by quadrature (a
    :class:`ntkfast.activations.Custom` with kinks) the per-sample tables and correlation
    tables are made at the first product and kept, with read-only copies of x and x2 (O(N n0)
    memory) so that they stay valid. Products
    release the GIL, stop on Ctrl-C and give the same bits for any thread count. ``op.T`` is
    K(x2, x) (``op`` itself when symmetric).
    """

    def __init__(
        self,
        x: ArrayLike,
        x2: ArrayLike | None = None,
        *,
        depth: int,
        activation: str | _activations.Activation = "relu",
        beta: float = 0.1,
        kernel: str = "ntk",
        dtype: DTypeLike = "float64",
    ) -> None:
        depth = as_positive_int(depth, "depth")
        beta = as_finite_float(beta, "beta")
        act = _activations.get(activation)
        if kernel not in ("ntk", "nngp"):
            raise ValueError(f'kernel must be "ntk" or "nngp", got {kernel!r}')
        precision = np.dtype(dtype)
        if precision not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {precision}")
        symmetric = x2 is None or x2 is x
        self.x = np.ascontiguousarray(as_samples(x, "x"), dtype=precision)
        self.x2 = None if symmetric else np.ascontiguousarray(as_samples(x2, "x2"), precision)
        if self.x2 is not None and self.x2.shape[1] != self.x.shape[1]:
            raise ValueError(
                f"x and x2 must have the same number of features, got {self.x.shape[1]} and "
                f"{self.x2.shape[1]}"
            )
        self.depth, self.activation, self.beta, self.kernel = depth, act, beta, kernel
        self._core = core_kernel(depth, act, beta)
        # A user's σ integrated by quadrature (a kinked σ): what every product starts from
        # (the per-sample tables and the correlation tables, most of a product's cost at
        # moderate N) is made at the first product and kept (see _prepare_kernel).
        self._prepared: _ntkfast.PreparedKernel | None = None
        self._prepare = act.core_callback is not None and act.core_pieces is None
        self._adjoint_operator: KernelOperator | None = None
        n2 = self.x.shape[0] if self.x2 is None else self.x2.shape[0]
        super().__init__(dtype=np.dtype(np.float64), shape=(self.x.shape[0], n2))

    @property
    def symmetric(self) -> bool:
        """Whether the operator is K(x, x)."""
        return self.x2 is None

    def __repr__(self) -> str:
        return (
            f"KernelOperator(shape={self.shape}, depth={self.depth}, "
            f"activation={self.activation!r}, beta={self.beta!r}, kernel={self.kernel!r}, "
            f"dtype={self.x.dtype.name})"
        )

    def _matmat(self, v: ArrayLike) -> NDArray[np.float64]:
        v = np.asarray(v)
        if v.dtype.kind not in "biuf":
            raise TypeError(f"V must be a real array, got dtype {v.dtype}")
        v = np.ascontiguousarray(v, dtype=np.float64)
        if v.ndim != 2 or v.shape[0] != self.shape[1]:
            raise ValueError(f"V must have shape ({self.shape[1]}, k), got {v.shape}")
        if v.shape[1] == 0:
            return np.empty((self.shape[0], 0))
        if not np.isfinite(v).all():
            raise ValueError("V has non-finite values (NaN or inf)")
        n1, k = self.shape[0], v.shape[1]
        rows = n1 + (0 if self.x2 is None else self.shape[1])
        needed = self._core.product_memory(rows, k, self.symmetric) + 8 * n1 * k
        check_memory(needed, f"a product with {k} columns (tiles, stripes and the result)")
        out = np.empty((n1, k))
        if self._prepare and self._prepared is None:
            self._prepare_kernel()
        error, terms = self._core.product(self.x, self.x2, self.kernel, v, out, self._prepared)
        check_series(self.activation, error, terms)
        return out

    def _prepare_kernel(self) -> None:
        """At the first product with a user's σ: when σ turns out to be integrated by
        quadrature, keep what every product starts from, with read-only copies of the inputs
        it was made for (so that nothing can change them in between); else never again."""
        prepared = self._core.prepare(self.x, self.x2)
        if not prepared.integrates:
            self._prepare = False
            return
        copies = self.x.nbytes + (0 if self.x2 is None else self.x2.nbytes)
        check_memory(copies, "copies of the inputs, kept with the prepared kernel")
        self.x = _private(self.x)
        self.x2 = None if self.x2 is None else _private(self.x2)
        self._prepared = prepared

    def _matvec(self, v: ArrayLike) -> NDArray[np.float64]:
        return self._matmat(np.asarray(v).reshape(-1, 1)).reshape(-1)

    def _adjoint(self) -> KernelOperator:
        if self.x2 is None:
            return self
        if self._adjoint_operator is None:  # kept: SciPy's rmatvec asks for it every time
            self._adjoint_operator = KernelOperator(
                self.x2,
                self.x,
                depth=self.depth,
                activation=self.activation,
                beta=self.beta,
                kernel=self.kernel,
                dtype=self.x.dtype,
            )
        return self._adjoint_operator

    def _transpose(self) -> KernelOperator:
        return self._adjoint()

    def diagonal(self) -> NDArray[np.float64]:
        """K(x_i, x_i) for a symmetric operator (float64, shape (N,)), in O(N (n0 + L))."""
        if self.x2 is not None:
            raise ValueError("diagonal() needs a symmetric operator (x2=None)")
        d = limit_kernel_diagonal(
            self.x, depth=self.depth, activation=self.activation, beta=self.beta, get=self.kernel
        )
        return np.asarray(d, dtype=np.float64)
