"""Activation functions σ of the network, by name or as parametrised objects.

Every activation here has a closed-form dual: for (u, v) ~ N(0, [[q11, q12], [q12, q22]])
the infinite-width recursion needs Σ = E[σ(u)σ(v)] and Σ̇ = E[σ'(u)σ'(v)], which the Rust core
evaluates exactly (formulas in ``rust/src/duals.rs``, summarised in ``docs/kernels.md``).

>>> import ntkfast as nk
>>> nk.activations.get("relu")
ReLU()
>>> nk.activations.LeakyReLU(0.2)
LeakyReLU(slope=0.2)
"""

from __future__ import annotations

import math

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
    "get",
    "NAMES",
]


class Activation:
    """Base class: an activation known to the Rust core by ``name`` and one parameter."""

    name: str = ""

    @property
    def param(self) -> float:
        """The scalar parameter passed to the core (0 for parameter-free activations)."""
        return 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.param == other.param

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.param))


class ReLU(Activation):
    """σ(x) = max(0, x)."""

    name = "relu"


class LeakyReLU(Activation):
    """σ(x) = max(0, x) + slope · min(0, x). ``slope`` defaults to 0.01."""

    name = "leaky_relu"

    def __init__(self, slope: float = 0.01):
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


_BY_NAME = {cls.name: cls for cls in (ReLU, LeakyReLU, Abs, Erf, Gelu, Sin, Cos, Identity)}
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
    raise TypeError(
        f"activation must be a name ({', '.join(NAMES)}) or an ntkfast.activations.Activation, "
        f"got {type(activation).__name__}"
    )
