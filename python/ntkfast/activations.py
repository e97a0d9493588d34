"""Activation functions σ of the network, by name or as parametrised objects.

For (u, v) ~ N(0, [[q11, q12], [q12, q22]]) the infinite-width recursion needs
Σ = E[σ(u)σ(v)] and Σ̇ = E[σ'(u)σ'(v)]. relu, leaky_relu, abs, erf, gelu, sin, cos and
identity have closed forms (``rust/src/duals.rs``), and so has every
:class:`PiecewiseLinear` σ (hard tanh, ReLU6, sign, clipped or fitted functions;
``rust/src/pieces.rs``); tanh, sigmoid, softplus, silu and :class:`Custom` activations go
through Hermite series with per-sample coefficients (``rust/src/hermite.rs``), accurate to
about 1e-12 (see ``docs/kernels.md``), except a Custom σ that is piecewise linear, which is
recognised and takes the exact duals.

>>> import ntkfast as nk
>>> nk.activations.get("relu")
ReLU()
>>> nk.activations.LeakyReLU(0.2)
LeakyReLU(slope=0.2)
>>> import numpy as np
>>> nk.activations.Custom(np.tanh, name="my_tanh")
Custom(name='my_tanh')
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _ntkfast
from ._piecewise import MAX_BREAKS, Pieces, as_lists, evaluate, recognise, slope
from ._validation import as_finite_array, as_finite_float

__all__ = [
    "Activation",
    "ReLU",
    "LeakyReLU",
    "Abs",
    "Erf",
    "Gelu",
    "Sin",
    "Cos",
    "Identity",
    "Tanh",
    "Sigmoid",
    "Softplus",
    "Silu",
    "Custom",
    "PiecewiseLinear",
    "get",
    "NAMES",
    "SERIES_TOL",
]


#: The default tolerance of the Hermite-series kernels: the largest estimated relative error
#: of a kernel returned without ``tol=``. A series that cannot reach it is a ValueError.
SERIES_TOL = 1e-9


class Activation:
    """Base class: an activation known to the Rust core by ``name`` and one parameter.

    ``tol`` is the estimated relative error a Hermite-series kernel of this activation may
    have (:data:`SERIES_TOL` unless the activation was made with a looser or tighter
    ``tol=``); closed-form duals are exact and ignore it."""

    name: str = ""
    tol: float = SERIES_TOL

    @property
    def param(self) -> float:
        """The scalar parameter passed to the core (0 for parameter-free activations)."""
        return 0.0

    @property
    def core_callback(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        """What the core calls back for (σ(x), σ'(x)); None for built-ins, which it knows."""
        return None

    @property
    def core_pieces(self) -> tuple[list[float], list[float], list[float]] | None:
        """(breaks, slopes, intercepts) of a piecewise-linear σ, whose exact duals the core
        uses; None otherwise."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and (self.param, self.tol) == (other.param, other.tol)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.param, self.tol))


def _series_tol(tol: float | None) -> float:
    """A validated ``tol=`` of a series activation (None: :data:`SERIES_TOL`)."""
    if tol is None:
        return SERIES_TOL
    tol = as_finite_float(tol, "tol")
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}")
    return tol


class _Series(Activation):
    """A built-in activation whose kernels are Hermite series, to an estimated relative error
    of ``tol`` (default :data:`SERIES_TOL`); beyond it the kernel is a ValueError."""

    def __init__(self, tol: float | None = None) -> None:
        self.tol = _series_tol(tol)

    def __repr__(self) -> str:
        extra = "" if self.tol == SERIES_TOL else f"tol={self.tol:g}"
        return f"{type(self).__name__}({extra})"


class ReLU(Activation):
    """σ(x) = max(0, x)."""

    name = "relu"


class LeakyReLU(Activation):
    """σ(x) = max(0, x) + slope · min(0, x). ``slope`` defaults to 0.01."""

    name = "leaky_relu"

    def __init__(self, slope: float = 0.01) -> None:
        slope = float(slope)
        if not math.isfinite(slope):
            raise ValueError(f"LeakyReLU slope must be finite, got {slope}")
        self.slope = slope

    @property
    def param(self) -> float:
        return self.slope

    def __repr__(self) -> str:
        return f"LeakyReLU(slope={self.slope!r})"


class Abs(Activation):
    """σ(x) = |x|."""

    name = "abs"


class Erf(Activation):
    """σ(x) = erf(x)."""

    name = "erf"


class Gelu(Activation):
    """σ(x) = x Φ(x) with Φ the standard normal CDF (exact GELU, not the tanh approximation)."""

    name = "gelu"


class Sin(Activation):
    """σ(x) = sin(x)."""

    name = "sin"


class Cos(Activation):
    """σ(x) = cos(x)."""

    name = "cos"


class Identity(Activation):
    """σ(x) = x (a deep linear network)."""

    name = "identity"


class Tanh(_Series):
    """σ(x) = tanh(x) (Hermite series; no closed-form dual)."""

    name = "tanh"


class Sigmoid(_Series):
    """σ(x) = 1 / (1 + e^{−x}), the logistic function (Hermite series)."""

    name = "sigmoid"


class Softplus(_Series):
    """σ(x) = log(1 + eˣ) (Hermite series)."""

    name = "softplus"


class Silu(_Series):
    """σ(x) = x / (1 + e^{−x}), also called swish (Hermite series)."""

    name = "silu"


class Custom(Activation):
    """A user activation σ from vectorised NumPy callables, for kernels and networks.

    Parameters
    ----------
    fn : callable
        σ, applied to 1-D float64 arrays: ``fn(x)`` returns an array of the same shape.
        It should be smooth (twice differentiable) and grow at most polynomially.
    dfn : callable or None
        σ', same contract. Without it σ' is a fourth-order central difference
        [8(σ(x+h) − σ(x−h)) − (σ(x+2h) − σ(x−2h))] / 12h with h = 1e-3 · max(1, |x|),
        accurate to about 1e-12 for smooth σ (four more calls of ``fn`` per evaluation).
    name : str or None
        Shown in messages; defaults to ``fn.__name__``.

    A σ that is piecewise linear (``np.abs``, ``np.sign``, ``lambda x: np.clip(x, -1, 1)``,
    ReLU6, a fitted polyline, jumps allowed) is recognised on first use and its kernels
    take the exact duals of :class:`PiecewiseLinear` (see :meth:`pieces`). Any other σ:
    the kernels expand σ and σ' in Hermite series whose coefficients need σ at a few hundred
    quadrature nodes per sample and layer: ``fn`` is called O(layers) times with arrays of
    up to about a million points, never once per pair of samples. A σ with kinks that is not
    piecewise linear (ELU, ReLU², hard-swish, ``np.clip(2 * np.tanh(x), -1, 1)``,
    ``np.abs(x) ** 1.5``) makes the series converge only algebraically; when they miss
    ``tol``, the kernels tabulate σ in Chebyshev pieces (locating the kinks) and integrate
    the duals by quadrature split along the kinks, accurate to about 1e-10. Inputs whose rows
    share a norm (or a few norms) read the duals from tables in the angle between samples,
    made once per layer: about a second of tables, then fractions of a microsecond per pair;
    rows of many norms cost some milliseconds per pair of samples and layer, so normalise
    them for large N (docs/kernels.md). σ' is then the derivative
    of the table, so ``dfn`` is not needed. The calls come from the computation's helper
    thread (holding the GIL), so NumPy settings such as ``np.errstate`` must be made inside
    ``fn``.
    tol : float or None
        The estimated relative error the kernels may have (default :data:`SERIES_TOL`,
        1e-9). Series that miss it give way to the quadrature; a looser ``tol`` keeps the
        series when they reach it (faster, less accurate); a kernel whose estimate still
        exceeds it is a ValueError that gives the estimated error.

    Finite-width networks (:class:`ntkfast.MLP`) with a Custom activation run in NumPy,
    ``fn`` and ``dfn`` called on whole layers (flattened to 1-D). Without ``dfn``, a
    recognised piecewise-linear σ takes its pieces' slopes as σ' (the derivative almost
    everywhere, as in the kernels); pass ``dfn`` for other σ with kinks, which the finite
    difference would smear.

    Errors: a non-callable argument is a TypeError; a callable that raises, returns the wrong
    shape or non-finite values is a ValueError naming the activation.

    >>> import numpy as np, ntkfast as nk
    >>> act = nk.activations.Custom(np.tanh, lambda x: 1 - np.tanh(x) ** 2, name="tanh")
    >>> x = np.eye(3)
    >>> k = nk.limit_kernel(x, depth=3, activation=act, beta=0.1, get="ntk")
    >>> bool(np.allclose(k, nk.limit_kernel(x, depth=3, activation="tanh", get="ntk")))
    True
    """

    name = "custom"

    def __init__(
        self,
        fn: Callable[[NDArray[np.float64]], ArrayLike],
        dfn: Callable[[NDArray[np.float64]], ArrayLike] | None = None,
        name: str | None = None,
        tol: float | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"Custom activation fn must be callable, got {type(fn).__name__}")
        if dfn is not None and not callable(dfn):
            raise TypeError(f"Custom activation dfn must be callable, got {type(dfn).__name__}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Custom activation name must be a string, got {type(name).__name__}")
        self.fn = fn
        self.dfn = dfn
        self.label = name if name is not None else getattr(fn, "__name__", "custom")
        self.tol = _series_tol(tol)
        self._pieces: Pieces | None = None
        self._recognised = False

    @property
    def core_callback(self) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
        return self.evaluate

    @property
    def core_pieces(self) -> tuple[list[float], list[float], list[float]] | None:
        pieces = self.pieces()
        return None if pieces is None else as_lists(pieces)

    def pieces(self) -> Pieces | None:
        """(breaks (K,), slopes (K + 1,), intercepts (K + 1,)) when σ is piecewise linear
        (piece k is ``intercepts[k] + slopes[k] * x``), else None; found once and kept.

        σ is read on |x| ≤ 10⁶ at 2¹⁷ + 1 points spaced like asinh (2.2e-4 apart near 0,
        0.2 at 10³); runs of cells of equal slope are the pieces, each break between two
        is placed by intersecting their lines (a kink) or by bisection to the last bit (a
        jump), and the fit is accepted only if it matches ``fn`` (and ``dfn``, when given)
        to 1e-10 of σ's size on |x| ≤ 10 at about 3·10⁵ points: the grid, the cell
        midpoints, random points and points beside each break. A feature of σ narrower than
        the grid's spacing (a spike 1e-6 wide) can go unseen, and beyond |x| = 10⁶ σ is taken
        to continue linearly: make such a σ a :class:`PiecewiseLinear` explicitly. At most
        32 breaks. The result is kept for this object: a callable whose behaviour changes
        later (a closure over a variable that changes) needs a new Custom."""
        if not self._recognised:
            with np.errstate(all="ignore"):
                try:
                    self._pieces = recognise(self.sigma, self._checked_dfn())
                except ValueError:
                    self._pieces = None
            self._recognised = True
        return self._pieces

    def __repr__(self) -> str:
        extra = "" if self.tol == SERIES_TOL else f", tol={self.tol:g}"
        return f"Custom(name={self.label!r}{extra})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Custom) and (self.fn, self.dfn, self.tol) == (
            other.fn,
            other.dfn,
            other.tol,
        )

    def __hash__(self) -> int:
        return hash((Custom, self.fn, self.dfn, self.tol))

    def _call(
        self, f: Callable[[NDArray[np.float64]], ArrayLike], x: NDArray[np.float64], what: str
    ) -> NDArray[np.float64]:
        try:
            y = f(x)
        except Exception as exc:
            raise ValueError(f"activation {self.label!r}: {what} raised {exc!r}") from exc
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"activation {self.label!r}: {what} must return real numbers, got {exc}"
            ) from exc
        if y.shape != x.shape:
            raise ValueError(
                f"activation {self.label!r}: {what} returned shape {y.shape} for input shape "
                f"{x.shape}; it must act elementwise on NumPy arrays"
            )
        if not np.all(np.isfinite(y)):
            bad = x[~np.isfinite(y)][0]
            raise ValueError(f"activation {self.label!r}: {what} is not finite at x = {bad!r}")
        return y

    def _checked_dfn(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """σ' of the user, validated as by :meth:`evaluate`; None without dfn."""
        dfn = self.dfn
        if dfn is None:
            return None
        return lambda x: self._call(dfn, _read_only(x), "dfn")

    def sigma(self, x: np.ndarray) -> np.ndarray:
        """σ(x) alone for a 1-D float64 array x, validated as by :meth:`evaluate`."""
        return self._call(self.fn, _read_only(x), "fn")

    def evaluate(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(σ(x), σ'(x)) for a 1-D float64 array x, validated (see the class docstring).

        x is passed read-only, so a function that writes into its argument fails loudly
        instead of changing the points of the next call."""
        x = _read_only(x)
        sigma = self._call(self.fn, x, "fn")
        if self.dfn is not None:
            return sigma, self._call(self.dfn, x, "dfn")
        pieces = self.pieces()
        if pieces is not None:
            return sigma, slope(pieces, x)
        h = 1e-3 * np.maximum(1.0, np.abs(x))
        near = self._call(self.fn, x + h, "fn") - self._call(self.fn, x - h, "fn")
        far = self._call(self.fn, x + 2 * h, "fn") - self._call(self.fn, x - 2 * h, "fn")
        with np.errstate(over="ignore", invalid="ignore"):
            dsigma = (8.0 * near - far) / (12.0 * h)
        if not np.all(np.isfinite(dsigma)):
            bad = x[~np.isfinite(dsigma)][0]
            raise ValueError(
                f"activation {self.label!r}: the finite-difference σ' is not finite at "
                f"x = {bad!r}; pass dfn"
            )
        return sigma, dsigma


class PiecewiseLinear(Custom):
    """A piecewise-linear σ with jumps, whose kernels are exact (closed form).

    Parameters
    ----------
    breaks : array_like, shape (K,)
        The break points t₁ < … < t_K (K ≤ 32), finite.
    slopes, intercepts : array_like, shape (K + 1,)
        Piece k (t_k < x < t_{k+1}, with t₀ = −∞ and t_{K+1} = +∞) is
        ``intercepts[k] + slopes[k] * x``; a break belongs to the piece on its right.
        Unequal values at a break make a jump.
    name : str or None
        Shown in messages (default ``"piecewise_linear"``).

    σ' is the slope of each piece, the derivative almost everywhere (what a network's
    gradient sees; a jump adds nothing to it). With (u, v) ~ N(0, [[q₁₁, q₁₂], [q₁₂, q₂₂]])
    and σ(u) = c₀ + m₀u + Σₖ [Jₖ H(u − tₖ) + Δmₖ (u − tₖ)₊], Σ = E[σ(u)σ(v)] and
    Σ̇ = E[σ'(u)σ'(v)] are sums over pairs of breaks of bivariate normal orthant
    probabilities and normal densities (``rust/src/pieces.rs``): exact to rounding for
    every variance and correlation, ρ = ±1 included, at a cost of K² orthant probabilities
    per pair of samples and layer. Finite networks run it as a :class:`Custom` activation.

    >>> import numpy as np, ntkfast as nk
    >>> hard_tanh = nk.activations.PiecewiseLinear([-1, 1], [0, 1, 0], [-1, 0, 1])
    >>> relu6 = nk.activations.PiecewiseLinear([0, 6], [0, 1, 0], [0, 0, 6])
    >>> sign = nk.activations.PiecewiseLinear([0], [0, 0], [-1, 1])
    >>> x = np.array([[1.0, 0.0], [0.6, 0.8]])
    >>> k = nk.limit_kernel(x, depth=2, activation=sign, beta=0.0, get="nngp")
    >>> bool(np.isclose(k[0, 1], 2 / np.pi * np.arcsin(0.6)))
    True
    """

    name = "piecewise_linear"

    def __init__(
        self,
        breaks: ArrayLike,
        slopes: ArrayLike,
        intercepts: ArrayLike,
        name: str | None = None,
    ) -> None:
        # Copies, so that the read-only flags below never reach the caller's arrays.
        t, m, c = (
            as_finite_array(v, name, (1,)).copy()
            for v, name in ((breaks, "breaks"), (slopes, "slopes"), (intercepts, "intercepts"))
        )
        if m.shape != (t.size + 1,) or c.shape != m.shape:
            raise ValueError(
                f"a piecewise-linear activation with {t.size} breaks needs {t.size + 1} slopes "
                f"and intercepts, got {m.size} and {c.size}"
            )
        if np.any(np.diff(t) <= 0):
            raise ValueError(f"breaks must increase strictly, got {t.tolist()}")
        if t.size > MAX_BREAKS:
            raise ValueError(f"at most {MAX_BREAKS} breaks are supported, got {t.size}")
        for v in (t, m, c):
            v.flags.writeable = False
        self.breaks, self.slopes, self.intercepts = t, m, c
        pieces = (t, m, c)
        super().__init__(
            lambda x: evaluate(pieces, x),
            lambda x: slope(pieces, x),
            name=name if name is not None else "piecewise_linear",
        )
        self._pieces, self._recognised = pieces, True

    def __repr__(self) -> str:
        return (
            f"PiecewiseLinear(breaks={self.breaks.tolist()}, slopes={self.slopes.tolist()}, "
            f"intercepts={self.intercepts.tolist()})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PiecewiseLinear) and as_lists(
            (self.breaks, self.slopes, self.intercepts)
        ) == as_lists((other.breaks, other.slopes, other.intercepts))

    def __hash__(self) -> int:
        pieces = as_lists((self.breaks, self.slopes, self.intercepts))
        return hash((PiecewiseLinear, *map(tuple, pieces)))


def _read_only(x: ArrayLike) -> NDArray[np.float64]:
    """A read-only float64 copy of x (the points handed to a user's callables)."""
    points = np.array(x, dtype=np.float64)
    points.flags.writeable = False
    return points


def _classes() -> dict[str, type[Activation]]:
    """The class of every activation of the core's registry, by name: the classes above
    where written, else one made from the registry's formula (so that an activation added
    to the core is usable from Python at once)."""
    written = {
        cls.name: cls
        for cls in (ReLU, LeakyReLU, Abs, Erf, Gelu, Sin, Cos, Identity)
        + (Tanh, Sigmoid, Softplus, Silu)
    }
    classes: dict[str, type[Activation]] = {}
    for name, formula, closed, _param, _default in _ntkfast.ACTIVATIONS:
        if name in written:
            classes[name] = written[name]
            continue
        method = "closed-form dual" if closed else "Hermite series"
        doc = f"σ(x) = {formula} ({method})."
        title = "".join(part.capitalize() for part in name.split("_"))
        classes[name] = type(title, (Activation,), {"name": name, "__doc__": doc})
    return classes


_BY_NAME = _classes()
NAMES = tuple(_BY_NAME)


def get(activation: str | Activation) -> Activation:
    """Returns the :class:`Activation` for a name (e.g. ``"relu"``) or passes an object through.

    Raises ValueError for an unknown name (the message lists the valid ones) and TypeError
    for anything that is neither a string nor an :class:`Activation`.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return _BY_NAME[activation]()
        except KeyError:
            raise ValueError(
                f"unknown activation {activation!r}; valid names: {', '.join(NAMES)}"
            ) from None
    if callable(activation):
        raise TypeError(
            "a function is not an activation by itself: wrap it as "
            "ntkfast.activations.Custom(fn, dfn=None, name=...)"
        )
    raise TypeError(
        f"activation must be a name ({', '.join(NAMES)}) or an ntkfast.activations.Activation, "
        f"got {type(activation).__name__}"
    )
