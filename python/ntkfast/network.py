"""Fully-connected networks in NTK parametrisation.

    α⁽⁰⁾(x) = x,   α̃⁽ˡ⁺¹⁾(x) = W⁽ˡ⁾ α⁽ˡ⁾(x) / √n_l + β b⁽ˡ⁾,   α⁽ˡ⁾(x) = σ(α̃⁽ˡ⁾(x)),
    f_θ(x) = α̃⁽ᴸ⁾(x),

with W⁽ˡ⁾ of shape (n_{l+1}, n_l), b⁽ˡ⁾ of shape (n_{l+1},), all parameters iid N(0, 1).

Parameters are a list of L pairs ``(W, b)``. Their flat order (Jacobian columns) is
W⁽⁰⁾.ravel(), b⁽⁰⁾, W⁽¹⁾.ravel(), b⁽¹⁾, …. Computations run in the dtype of the parameters
(float64 or float32); inputs are converted to it.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from . import _ntkfast
from . import activations as _activations
from ._numpy_network import NumpyNetwork
from ._validation import (
    allocate,
    as_finite_float,
    as_positive_int,
    as_samples,
    check_finite,
    check_memory,
)
from .kernels import Kernel
from .kernels import limit_kernel as _limit_kernel

__all__ = ["MLP"]

_OUTPUTS = ("trace", "diagonal", "full")

#: Largest mean square x·x/n0 of an input row, per dtype: beyond it the Gram matrices of the
#: empirical NTK overflow (inf · 0 = NaN where a unit is saturated), as for limit_kernel.
_INPUT_LIMIT = {np.dtype(np.float64): 1e300, np.dtype(np.float32): 1e30}


@functools.lru_cache(maxsize=32)
def _network(widths: tuple[int, ...], name: str, param: float, beta: float) -> _ntkfast.Network:
    """The core's network for these settings, parsed once and kept for later calls."""
    return _ntkfast.Network(list(widths), name, param, beta)


class MLP:
    """A fully-connected network with widths [n0, n1, …, nL].

    Parameters
    ----------
    widths : sequence of int
        Layer widths n_0 (input dimension) … n_L (number of outputs); at least two entries.
    activation : str or ntkfast.activations.Activation
        The nonlinearity σ applied after every hidden layer. Built-in activations run in the
        Rust core; a :class:`~ntkfast.activations.Custom` one runs in NumPy, its ``fn`` and
        ``dfn`` called once per layer and pass on the whole layer (σ' by finite differences
        when ``dfn`` is not given: pass ``dfn`` for a σ with kinks).
    beta : float
        Bias scale β.

    Attributes
    ----------
    depth : int
        L = len(widths) − 1, the number of dense layers.
    num_params : int
        P = Σ_l (n_l + 1) n_{l+1}.

    Inputs are checked like those of :func:`ntkfast.limit_kernel` (real, 2-D, non-empty,
    finite) and, in the parameters' dtype, must have rows of mean square x·x/n0 at most 1e300
    (float64) or 1e30 (float32); beyond that the empirical NTK would overflow, and a
    ValueError names the row.
    """

    def __init__(
        self,
        widths: Iterable[int],
        activation: str | _activations.Activation = "relu",
        beta: float = 0.1,
    ) -> None:
        widths = list(widths)
        if len(widths) < 2:
            raise ValueError(f"widths needs at least [n0, nL], got {widths}")
        self.widths = [as_positive_int(w, f"widths[{i}]") for i, w in enumerate(widths)]
        self.activation = _activations.get(activation)
        self.beta = as_finite_float(beta, "beta")

    @property
    def depth(self) -> int:
        return len(self.widths) - 1

    @property
    def num_params(self) -> int:
        return sum((a + 1) * b for a, b in zip(self.widths[:-1], self.widths[1:]))

    def __repr__(self) -> str:
        return f"MLP(widths={self.widths}, activation={self.activation!r}, beta={self.beta!r})"

    # ----------------------------------------------------------------- parameters

    def init(
        self, seed: int = 0, dtype: DTypeLike = np.float64
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Random parameters θ ~ N(0, I) of the NTK parametrisation.

        Parameters
        ----------
        seed : int
            0 ≤ seed < 2⁶⁴. The same seed gives the same parameters on every machine and for
            every thread count: the generator is counter-based (a SplitMix64 stream per tensor,
            W⁽ˡ⁾ stream 2l and b⁽ˡ⁾ stream 2l + 1, Box–Muller with a portable libm; see
            docs/networks.md), not NumPy's global state.
        dtype : float64 or float32
            float32 parameters are the float64 draws rounded.

        Returns
        -------
        list of L pairs (W, b), W of shape (n_{l+1}, n_l) and b of shape (n_{l+1},).
        """
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise TypeError(f"seed must be an integer, got {type(seed).__name__}")
        if not 0 <= int(seed) < 2**64:
            raise ValueError(f"seed must be in [0, 2**64), got {seed}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        check_memory(
            8 * self.num_params * (1.5 if dtype == np.float32 else 1.0),
            f"the {self.num_params} parameters",
        )
        params: list[tuple[np.ndarray, np.ndarray]] = []
        for layer, (n_in, n_out) in enumerate(zip(self.widths[:-1], self.widths[1:])):
            w = np.empty((n_out, n_in))
            b = np.empty(n_out)
            _ntkfast.init_normal(int(seed), 2 * layer, w)
            _ntkfast.init_normal(int(seed), 2 * layer + 1, b)
            params.append((w.astype(dtype, copy=False), b.astype(dtype, copy=False)))
        return params

    def check_params(
        self, params: Sequence[tuple[ArrayLike, ArrayLike]]
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.dtype]:
        """Checks ``params`` against the widths, as every method taking them does.

        Returns the C-contiguous weights (n_{l+1}, n_l) and biases (n_{l+1},) of every layer
        and their common dtype (float32 or float64); raises TypeError or ValueError naming
        the offending layer otherwise.
        """
        if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)):
            raise TypeError(
                f"params must be a list of {self.depth} (W, b) pairs, got {type(params).__name__}"
            )
        if len(params) != self.depth:
            raise ValueError(
                f"params must have {self.depth} (W, b) pairs for widths {self.widths}, "
                f"got {len(params)}"
            )
        weights: list[np.ndarray] = []
        biases: list[np.ndarray] = []
        dtypes: list[np.dtype] = []
        for layer, pair in enumerate(params):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise TypeError(f"params[{layer}] must be a (W, b) pair")
            expected = {
                "W": (self.widths[layer + 1], self.widths[layer]),
                "b": (self.widths[layer + 1],),
            }
            for name, value in zip("Wb", pair):
                arr = np.asarray(value)
                if arr.dtype.kind not in "biuf":
                    raise TypeError(f"{name}[{layer}] must be a real array, got dtype {arr.dtype}")
                if arr.dtype not in (np.float32, np.float64):
                    arr = arr.astype(np.float64)
                if arr.shape != expected[name]:
                    raise ValueError(
                        f"{name}[{layer}] must have shape {expected[name]}, got {arr.shape}"
                    )
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name}[{layer}] has non-finite values (NaN or inf)")
                dtypes.append(arr.dtype)
                (weights if name == "W" else biases).append(np.ascontiguousarray(arr))
        if len(set(dtypes)) > 1:
            raise TypeError(
                "params must be all float32 or all float64, got "
                + ", ".join(sorted({d.name for d in dtypes}))
            )
        return weights, biases, dtypes[0]

    def check_inputs(self, x: object, name: str, dtype: DTypeLike) -> np.ndarray:
        """``x`` as a C-contiguous (N, n0) array of ``dtype``, checked as every method taking
        inputs does (real, 2-D, finite, n0 features, rows within the dtype's scale limit);
        ``name`` is used in the messages."""
        # The finiteness check rides on the mean squares below: a NaN or an infinity makes
        # its row's mean square fail the limit, and only then are the rows looked at again.
        x = as_samples(x, name, finite=False)
        if x.shape[1] != self.widths[0]:
            raise ValueError(
                f"{name} has {x.shape[1]} features but the network's input width is "
                f"{self.widths[0]}"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            # float64 beyond float32's range: inf, caught below.
            converted = x.astype(dtype, copy=False)
            # In the network's dtype (no float64 copy of float32 inputs): a sum that overflows
            # is far above the limit anyway, and a threshold needs no more precision.
            mean_square = np.einsum("ij,ij->i", converted, converted) / x.shape[1]
        limit = _INPUT_LIMIT[np.dtype(dtype)]
        too_large = ~(mean_square <= limit)
        if too_large.any():
            check_finite(x, name)
            row = int(np.flatnonzero(too_large)[0])
            raise ValueError(
                f"{name} row {row} is too large for a network in {np.dtype(dtype).name}: "
                f"mean square {mean_square[row]:.3g} (limit {limit:g}); scale the inputs down"
            )
        return converted

    @property
    def core(self) -> _ntkfast.Network | NumpyNetwork:
        """The network that runs the computations, for the current widths, activation and
        beta: the Rust core's (``ntkfast._ntkfast.Network``, parsed once and kept) for a
        built-in activation, a NumPy one for a :class:`~ntkfast.activations.Custom`
        activation (σ and σ' called on whole layers; see docs/networks.md). Low-level: its
        methods take checked, C-contiguous arrays (see :meth:`check_params`,
        :meth:`check_inputs`) and write into caller-allocated outputs; ``core.step`` updates
        parameters in place."""
        act = self.activation
        if isinstance(act, _activations.Custom):
            return NumpyNetwork(self.widths, act, self.beta)
        return _network(tuple(self.widths), act.name, act.param, self.beta)

    def _check_work_memory(self, rows: int, dtype: DTypeLike, cotangents: bool, what: str) -> None:
        """MemoryError before any work if the per-input intermediates cannot fit (the
        core's estimate: activations, σ' and outputs, and cotangents for kernels and
        Jacobians)."""
        core = self.core
        check_memory(core.working_memory(rows, np.dtype(dtype).itemsize, cotangents), what)

    # ----------------------------------------------------------------- the network

    def apply(self, params: Sequence[tuple[ArrayLike, ArrayLike]], x: ArrayLike) -> np.ndarray:
        """The network function f_θ(x), shape (N, n_L), in the parameters' dtype."""
        weights, biases, dtype = self.check_params(params)
        x = self.check_inputs(x, "x", dtype)
        self._check_work_memory(x.shape[0], dtype, False, "the forward pass")
        (out,) = allocate((x.shape[0], self.widths[-1]), dtype, 1)
        self.core.apply(weights, biases, x, out)
        return out

    def ntk(
        self,
        params: Sequence[tuple[ArrayLike, ArrayLike]],
        x1: ArrayLike,
        x2: ArrayLike | None = None,
        output: str = "trace",
    ) -> np.ndarray:
        """The empirical neural tangent kernel Θ̂_kk'(x, x') = Σ_p ∂_p f_k(x) ∂_p f_k'(x').

        Computed layer by layer as
        Θ̂ = Σ_l (A_l / n_l + β²) ⊙ (G_{l+1} G_{l+1}ᵀ), with A_l the Gram matrix of α⁽ˡ⁾ and
        G_{l+1} the back-propagated cotangents ∂f_k/∂α̃⁽ˡ⁺¹⁾, so the (N, P) Jacobian is never
        formed; cost O(N1 N2 Σ_l n_l · n_L²).

        Parameters
        ----------
        params : list of (W, b)
        x1 : array (N1, n0)
        x2 : array (N2, n0) or None
            None (or x1 itself) computes one triangle and mirrors it (exactly symmetric).
        output : "trace", "diagonal" or "full"
            "trace": (N1, N2), the mean over k of Θ̂_kk; "diagonal": (N1, N2, n_L), Θ̂_kk;
            "full": (N1, N2, n_L, n_L).
        """
        if not isinstance(output, str) or output not in _OUTPUTS:
            raise ValueError(f"output must be one of {_OUTPUTS}, got {output!r}")
        weights, biases, dtype = self.check_params(params)
        symmetric = x2 is None or x2 is x1
        x1 = self.check_inputs(x1, "x1", dtype)
        x2 = None if symmetric else self.check_inputs(x2, "x2", dtype)
        n1 = x1.shape[0]
        n2 = n1 if x2 is None else x2.shape[0]
        self._check_work_memory(n1 + (0 if symmetric else n2), dtype, True, "the NTK features")
        m = self.widths[-1]
        shape = {"trace": (n1, n2), "diagonal": (n1, n2, m), "full": (n1, n2, m, m)}[output]
        (out,) = allocate(shape, dtype, 1)
        self.core.ntk(weights, biases, x1, x2, output, out)
        return out

    def jacobian(self, params: Sequence[tuple[ArrayLike, ArrayLike]], x: ArrayLike) -> np.ndarray:
        """∂f_k(x_i)/∂θ_p, shape (N, n_L, P), columns W⁽⁰⁾.ravel(), b⁽⁰⁾, W⁽¹⁾.ravel(), ….

        Needs N · n_L · P numbers; a MemoryError says so before any work when they cannot fit.
        Use :meth:`ntk` for kernels and :meth:`vjp` for gradients, which never form it.
        """
        weights, biases, dtype = self.check_params(params)
        x = self.check_inputs(x, "x", dtype)
        self._check_work_memory(x.shape[0], dtype, True, "the Jacobian's cotangents")
        (out,) = allocate((x.shape[0], self.widths[-1], self.num_params), dtype, 1)
        self.core.jacobian(weights, biases, x, out)
        return out

    def vjp(
        self, params: Sequence[tuple[ArrayLike, ArrayLike]], x: ArrayLike, d: ArrayLike
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """(1/N) Σ_i J(x_i)ᵀ d_i in the shape of ``params``: the parameter direction
        ⟨∂_θ F, d⟩_{p_in} of the paper (for d = f − y, the gradient of ½‖f − y‖²_{p_in}).

        Parameters
        ----------
        params : list of (W, b)
        x : array (N, n0)
        d : array (N, n_L)
        """
        weights, biases, dtype = self.check_params(params)
        x = self.check_inputs(x, "x", dtype)
        d = as_samples(d, "d")
        if d.shape != (x.shape[0], self.widths[-1]):
            raise ValueError(
                f"d must have shape {(x.shape[0], self.widths[-1])} (N, n_L), got {d.shape}"
            )
        with np.errstate(over="ignore"):
            d = d.astype(dtype, copy=False)
        if not np.isfinite(d).all():
            raise ValueError(f"d has values too large for the parameters' dtype {dtype.name}")
        self._check_work_memory(x.shape[0], dtype, False, "the backward pass")
        gw = [np.empty_like(w) for w in weights]
        gb = [np.empty_like(b) for b in biases]
        self.core.vjp(weights, biases, x, d, gw, gb)
        if not all(np.isfinite(g).all() for g in (*gw, *gb)):
            raise ValueError(
                f"the vjp overflows {dtype.name} (its entries exceed the largest number); "
                "scale d down"
            )
        return list(zip(gw, gb))

    # ----------------------------------------------------------------- infinite width

    def limit_kernel(
        self,
        x1: ArrayLike,
        x2: ArrayLike | None = None,
        *,
        get: str | tuple[str, ...] | list[str] = ("nngp", "ntk"),
        out: np.ndarray | Sequence[np.ndarray | None] | None = None,
    ) -> np.ndarray | Kernel:
        """The infinite-width kernels of this architecture (hidden widths → ∞).

        Same as :func:`ntkfast.limit_kernel` with this network's depth, activation and beta;
        x1 (N1, n0) and x2 (N2, n0) must have n0 = widths[0] features. The NTK of the
        n_L-output network is the returned Θ∞ times the n_L × n_L identity.
        """
        same = x2 is x1
        x1 = as_samples(x1, "x1")
        x2 = x1 if same else (None if x2 is None else as_samples(x2, "x2"))
        for name, x in (("x1", x1), ("x2", x2)):
            if x is not None and x.shape[1] != self.widths[0]:
                raise ValueError(
                    f"{name} has {x.shape[1]} features but the network's input width is "
                    f"{self.widths[0]}"
                )
        return _limit_kernel(
            x1,
            x2,
            depth=self.depth,
            activation=self.activation,
            beta=self.beta,
            get=get,
            out=out,
        )
