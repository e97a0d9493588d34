"""Fully-connected networks in NTK parametrisation.

    α⁽⁰⁾(x) = x,   α̃⁽ˡ⁺¹⁾(x) = W⁽ˡ⁾ α⁽ˡ⁾(x) / √n_l + β b⁽ˡ⁾,   α⁽ˡ⁾(x) = σ(α̃⁽ˡ⁾(x)),
    f_θ(x) = α̃⁽ᴸ⁾(x),

with W⁽ˡ⁾ of shape (n_{l+1}, n_l), b⁽ˡ⁾ of shape (n_{l+1},), all parameters iid N(0, 1).
"""

from __future__ import annotations

from . import activations as _activations
from ._validation import as_finite_float, as_positive_int, as_samples
from .kernels import limit_kernel as _limit_kernel

__all__ = ["MLP"]


class MLP:
    """A fully-connected network with widths [n0, n1, …, nL].

    Parameters
    ----------
    widths : sequence of int
        Layer widths n_0 (input dimension) … n_L (number of outputs); at least two entries.
    activation : str or ntkfast.activations.Activation
        The nonlinearity σ applied after every hidden layer.
    beta : float
        Bias scale β.

    Attributes
    ----------
    depth : int
        L = len(widths) − 1, the number of dense layers.
    num_params : int
        P = Σ_l (n_l + 1) n_{l+1}.
    """

    def __init__(self, widths, activation="relu", beta: float = 0.1):
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

    def limit_kernel(self, x1, x2=None, *, get=("nngp", "ntk"), out=None):
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
