"""asv benchmarks of the infinite-width kernels (time and peak memory).

Run in the current environment with ``asv run --python=same``; ``benchmarks/compare.py``
puts ntkfast beside NumPy and neural-tangents in one run.
"""

import numpy as np

import ntkfast as nk

from .nt_timing import PIECES


def _inputs(n, n0, dtype):
    return np.random.default_rng(0).standard_normal((n, n0)).astype(dtype)


class LimitKernel:
    params = ([512, 2048], [2, 4, 8], ["relu", "erf", "gelu"], ["float32", "float64"])
    param_names = ["N", "depth", "activation", "dtype"]

    def setup(self, n, depth, activation, dtype):
        self.x = _inputs(n, 784, dtype)
        self.out = nk.Kernel(np.empty((n, n), dtype), np.empty((n, n), dtype))

    def time_limit_kernel(self, n, depth, activation, dtype):
        nk.limit_kernel(self.x, depth=depth, activation=activation, beta=0.1)

    def time_limit_kernel_into_out(self, n, depth, activation, dtype):
        nk.limit_kernel(self.x, depth=depth, activation=activation, beta=0.1, out=self.out)


class CrossKernel:
    params = ([512, 2048], ["float32", "float64"])
    param_names = ["N", "dtype"]

    def setup(self, n, dtype):
        self.x1 = _inputs(n, 784, dtype)
        self.x2 = _inputs(n // 2, 784, dtype)[::-1].copy()

    def time_cross_kernel(self, n, dtype):
        nk.limit_kernel(self.x1, self.x2, depth=4, activation="relu", beta=0.1)


class PaperWorkload:
    """The headline workload: ReLU, L = 4, N = 4096, n0 = 784."""

    params = (["float32", "float64"],)
    param_names = ["dtype"]
    timeout = 120

    def setup(self, dtype):
        self.x = _inputs(4096, 784, dtype)

    def time_relu_depth4_n4096(self, dtype):
        nk.limit_kernel(self.x, depth=4, activation="relu", beta=0.1)

    def peakmem_relu_depth4_n4096(self, dtype):
        nk.limit_kernel(self.x, depth=4, activation="relu", beta=0.1)


def _correlated(n, n0, dtype):
    """Image-like rows (smooth bumps plus a little noise): correlations near 1, where the
    series need the most terms."""
    rng = np.random.default_rng(1)
    t = np.linspace(0, 1, n0)
    centres, widths = rng.uniform(0.2, 0.8, (n, 1)), rng.uniform(0.05, 0.3, (n, 1))
    rows = np.exp(-((t - centres) ** 2) / (2 * widths**2)) + 0.05 * rng.standard_normal((n, n0))
    return rows.astype(dtype)


class SeriesKernel:
    """Activations without a closed form (Hermite series) against ReLU at the same size, the
    yardstick (target: each ≤ 3× ReLU at N = 4096, n0 = 784, depth 4, on random and on
    correlated inputs)."""

    params = (
        ["relu", "tanh", "sigmoid", "softplus", "silu"],
        ["float32", "float64"],
        ["random", "correlated"],
    )
    param_names = ["activation", "dtype", "inputs"]

    def setup(self, activation, dtype, inputs):
        make = _inputs if inputs == "random" else _correlated
        self.x = make(4096, 784, dtype)

    def time_depth4_n4096(self, activation, dtype, inputs):
        nk.limit_kernel(self.x, depth=4, activation=activation, beta=0.1)


class CustomActivation:
    """A user activation (NumPy callables, called back a few times per layer)."""

    def setup(self):
        self.x = _inputs(1024, 784, "float64")
        self.act = nk.activations.Custom(np.tanh, lambda z: 1 - np.tanh(z) ** 2, name="tanh")

    def time_custom_tanh_depth4_n1024(self):
        nk.limit_kernel(self.x, depth=4, activation=self.act, beta=0.1)


class PiecewiseLinearKernel:
    """Exact duals of piecewise-linear σ (K² orthant probabilities per pair and layer, K
    breaks): the kinked activations of docs/performance.md, N = 512, n0 = 784, depth 4."""

    params = (list(PIECES),)
    param_names = ["activation"]
    pieces = PIECES

    def setup(self, activation):
        self.x = _inputs(512, 784, "float64")
        self.act = nk.activations.PiecewiseLinear(*self.pieces[activation])

    def time_depth4_n512(self, activation):
        nk.limit_kernel(self.x, depth=4, activation=self.act, beta=0.1)

    def time_recognise_custom(self, activation):
        fn = nk.activations.PiecewiseLinear(*self.pieces[activation]).fn
        nk.activations.Custom(fn).pieces()


class KinkedCustom:
    """A kinked user σ that is not piecewise linear (ELU), depth 4, n0 = 100: on rows of equal
    norm the duals come from correlation tables (N = 1024), on rows of many norms from the
    pairwise quadrature (N = 16)."""

    timeout = 300

    def setup(self):
        self.act = nk.activations.Custom(
            lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0.0))), name="elu"
        )
        x = _inputs(1024, 100, "float64")
        self.sphere = x * (10.0 / np.linalg.norm(x, axis=1, keepdims=True))
        self.random = x[:16]

    def time_elu_equal_norms_depth4_n1024(self):
        nk.limit_kernel(self.sphere, depth=4, activation=self.act, beta=0.1)

    def time_elu_pairwise_depth4_n16(self):
        nk.limit_kernel(self.random, depth=4, activation=self.act, beta=0.1)
