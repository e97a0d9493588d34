"""The finite-width network of :mod:`ntkfast.network` in NumPy, for user activations.

The Rust core's networks apply σ inside its threads, so an activation given as Python
callables (:class:`ntkfast.activations.Custom`) runs here instead: the same methods as the
core's ``Network`` (``apply``, ``ntk``, ``jacobian``, ``vjp``, ``step``, ``working_memory``,
writing into caller-allocated outputs), the products by NumPy's BLAS (which releases the GIL),
σ and σ' by the user's callables on whole layers, one call per layer and pass. Ctrl-C stops a
call between two NumPy operations.

With α⁽⁰⁾ = x, α̃⁽ˡ⁺¹⁾ = α⁽ˡ⁾ W⁽ˡ⁾ᵀ / √n_l + β b⁽ˡ⁾, α⁽ˡ⁾ = σ(α̃⁽ˡ⁾) and f = α̃⁽ᴸ⁾, the
cotangents of every output k are G⁽ᴸ⁾ = I and G⁽ˡ⁾ = (G⁽ˡ⁺¹⁾ W⁽ˡ⁾ / √n_l) ⊙ σ'(α̃⁽ˡ⁾), shape
(N, n_L, n_l), and Θ̂_kk'(x, x') = Σ_l (α⁽ˡ⁾(x)·α⁽ˡ⁾(x') / n_l + β²) G⁽ˡ⁺¹⁾_k(x)·G⁽ˡ⁺¹⁾_k'(x').
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .activations import Custom


class NumpyNetwork:
    """A network [n0, …, nL] with activation ``activation`` and bias scale ``beta``.

    Methods take checked, C-contiguous weights (n_{l+1}, n_l), biases (n_{l+1},) and inputs
    (N, n0) of one dtype (see :meth:`ntkfast.MLP.check_params`) and write into ``out``.
    """

    def __init__(self, widths: Sequence[int], activation: Custom, beta: float) -> None:
        self.widths = list(widths)
        self.activation = activation
        self.beta = float(beta)

    # ----------------------------------------------------------------- passes

    def _layer(self, values: np.ndarray, z: np.ndarray) -> np.ndarray:
        return values.reshape(z.shape).astype(z.dtype, copy=False)

    def _sigma(self, z: np.ndarray) -> np.ndarray:
        """σ(z) in z's dtype, the user's callable applied to the whole layer at once."""
        return self._layer(self.activation.sigma(z.ravel()), z)

    def _sigma_and_slope(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """σ(z) and σ'(z) in z's dtype."""
        s, ds = self.activation.evaluate(z.ravel())
        return self._layer(s, z), self._layer(ds, z)

    def _forward(
        self, weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray, keep: bool
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """f (N, n_L); with ``keep``, the layers' α⁽ˡ⁾ (l = 0 … L−1) and σ'(α̃⁽ˡ⁾) (l ≥ 1)."""
        alphas: list[np.ndarray] = [x]
        slopes: list[np.ndarray] = []
        a = x
        for w, b in zip(weights[:-1], biases[:-1]):
            z = self._dense(a, w, b)
            if keep:
                a, ds = self._sigma_and_slope(z)
                alphas.append(a)
                slopes.append(ds)
            else:
                a = self._sigma(z)
        return self._dense(a, weights[-1], biases[-1]), alphas, slopes

    def _dense(self, a: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """α̃ = α Wᵀ / √n + β b for one layer, in the parameters' dtype."""
        z: np.ndarray = a @ w.T
        z *= z.dtype.type(1.0 / np.sqrt(w.shape[1]))
        z += z.dtype.type(self.beta) * b
        return z

    def _cotangents(
        self, weights: list[np.ndarray], alphas: list[np.ndarray], slopes: list[np.ndarray]
    ) -> list[np.ndarray]:
        """G⁽ˡ⁺¹⁾ (N, n_L, n_{l+1}) for l = 0 … L−1: the cotangents of every output."""
        n, m = alphas[0].shape[0], self.widths[-1]
        eye = np.broadcast_to(np.eye(m, dtype=alphas[0].dtype), (n, m, m))
        out = [eye]
        g = eye
        for layer in range(len(weights) - 1, 0, -1):
            w = weights[layer]
            g = (g @ w) * w.dtype.type(1.0 / np.sqrt(w.shape[1]))
            g *= slopes[layer - 1][:, None, :]
            out.append(g)
        return out[::-1]

    def _features(
        self, weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        _, alphas, slopes = self._forward(weights, biases, x, keep=True)
        return alphas, self._cotangents(weights, alphas, slopes)

    # ----------------------------------------------------------------- the core's methods

    def apply(
        self, weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray, out: np.ndarray
    ) -> None:
        """f_θ(x) into out (N, n_L)."""
        out[...] = self._forward(weights, biases, x, keep=False)[0]

    def ntk(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        x1: np.ndarray,
        x2: np.ndarray | None,
        output: str,
        out: np.ndarray,
    ) -> None:
        """The empirical NTK into out: "trace" (N1, N2), "diagonal" (N1, N2, n_L) or "full"
        (N1, N2, n_L, n_L); x2 None for x2 = x1 (then exactly symmetric)."""
        alphas1, g1 = self._features(weights, biases, x1)
        alphas2, g2 = (alphas1, g1) if x2 is None else self._features(weights, biases, x2)
        n1, n2, m = x1.shape[0], alphas2[0].shape[0], self.widths[-1]
        beta2 = out.dtype.type(self.beta**2)
        out[...] = 0
        for a1, a2, c1, c2 in zip(alphas1, alphas2, g1, g2):
            scale = a1 @ a2.T
            scale *= out.dtype.type(1.0 / a1.shape[1])
            scale += beta2
            if output == "trace":
                pairs = c1.reshape(n1, -1) @ c2.reshape(n2, -1).T
                out += scale * pairs * out.dtype.type(1.0 / m)
            elif output == "diagonal":
                for k in range(m):
                    out[:, :, k] += scale * (c1[:, k, :] @ c2[:, k, :].T)
            else:
                flat = c1.reshape(n1 * m, -1) @ c2.reshape(n2 * m, -1).T
                out += scale[:, :, None, None] * flat.reshape(n1, m, n2, m).transpose(0, 2, 1, 3)
        if x2 is None:  # the mirror of every entry, so that the result is exactly symmetric
            swapped = out.swapaxes(0, 1)
            if output == "full":
                swapped = swapped.swapaxes(2, 3)
            out[...] = (out + swapped) * out.dtype.type(0.5)

    def jacobian(
        self, weights: list[np.ndarray], biases: list[np.ndarray], x: np.ndarray, out: np.ndarray
    ) -> None:
        """∂f_k(x_i)/∂θ into out (N, n_L, P), columns W⁽⁰⁾.ravel(), b⁽⁰⁾, W⁽¹⁾.ravel(), …."""
        alphas, cotangents = self._features(weights, biases, x)
        n, m = x.shape[0], self.widths[-1]
        start = 0
        for a, g in zip(alphas, cotangents):
            n_in, n_out = a.shape[1], g.shape[2]
            block = out[:, :, start : start + n_in * n_out].reshape(n, m, n_out, n_in)
            np.multiply(g[:, :, :, None], a[:, None, None, :], out=block)
            block *= out.dtype.type(1.0 / np.sqrt(n_in))
            start += n_in * n_out
            out[:, :, start : start + n_out] = g * out.dtype.type(self.beta)
            start += n_out

    def _backward(
        self,
        weights: list[np.ndarray],
        alphas: list[np.ndarray],
        slopes: list[np.ndarray],
        d: np.ndarray,
        gradient: Callable[[int, np.ndarray, np.ndarray], None],
    ) -> None:
        """Back-propagates the cotangent d (N, n_L), calling gradient(l, ∂W⁽ˡ⁾, ∂b⁽ˡ⁾) with
        (1/N) Σ_i J(x_i)ᵀ d_i for every layer, the last layer first."""
        delta = d
        n = d.shape[0]
        for layer in range(len(weights) - 1, -1, -1):
            w, a = weights[layer], alphas[layer]
            grad_w = delta.T @ a
            grad_w *= w.dtype.type(1.0 / (np.sqrt(w.shape[1]) * n))
            grad_b = delta.sum(axis=0) * w.dtype.type(self.beta / n)
            if layer > 0:  # before W changes: the step updates it in place
                delta = (delta @ w) * w.dtype.type(1.0 / np.sqrt(w.shape[1]))
                delta *= slopes[layer - 1]
            gradient(layer, grad_w, grad_b)

    def vjp(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        x: np.ndarray,
        d: np.ndarray,
        out_weights: list[np.ndarray],
        out_biases: list[np.ndarray],
    ) -> None:
        """(1/N) Σ_i J(x_i)ᵀ d_i into out_weights and out_biases (d (N, n_L))."""
        _, alphas, slopes = self._forward(weights, biases, x, keep=True)

        def store(layer: int, grad_w: np.ndarray, grad_b: np.ndarray) -> None:
            out_weights[layer][...] = grad_w
            out_biases[layer][...] = grad_b

        self._backward(weights, alphas, slopes, d, store)

    def step(
        self,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        x: np.ndarray,
        y: np.ndarray | None,
        out_f: np.ndarray,
        lr: float,
        direction: Callable[[], np.ndarray] | None = None,
    ) -> None:
        """One step of gradient descent in place, as the core's ``Network.step``: f_θ(x) into
        out_f, d = y − f (y given) or ``direction()``, then θ ← θ + lr (1/N) Σ_i J(x_i)ᵀ d_i."""
        f, alphas, slopes = self._forward(weights, biases, x, keep=True)
        out_f[...] = f
        if y is not None:
            d = (y - out_f).astype(out_f.dtype)
        elif direction is not None:
            d = np.asarray(direction(), dtype=out_f.dtype)
        else:
            raise ValueError("step needs y or a direction")
        rate = out_f.dtype.type(lr)

        def update(layer: int, grad_w: np.ndarray, grad_b: np.ndarray) -> None:
            weights[layer] += rate * grad_w
            biases[layer] += rate * grad_b

        self._backward(weights, alphas, slopes, d, update)

    def working_memory(self, rows: int, itemsize: int, cotangents: bool) -> int:
        """Bytes of the per-input intermediates of a pass over ``rows`` inputs: the layers'
        activations and slopes, float64 copies of one layer for the callables, and with
        ``cotangents`` the cotangents of all n_L outputs at every layer."""
        widest = max(self.widths)
        total = rows * itemsize * 2 * sum(self.widths[1:-1]) + rows * 8 * 6 * widest
        if cotangents:
            total += rows * itemsize * self.widths[-1] * sum(self.widths[1:])
        return int(total)
