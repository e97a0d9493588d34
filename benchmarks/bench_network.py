"""asv benchmarks of finite-width networks: empirical NTK, forward pass, vjp, Jacobian.

The headline workloads are the ReLU MLP 784-512-512-512-n_L at N = 1024 with n_L = 1
("trace") and n_L = 10 ("full"); ``benchmarks/compare.py`` puts them beside neural-tangents.
"""

import numpy as np

import ntkfast as nk


def _setup(n, outputs, dtype, hidden=(512, 512, 512)):
    net = nk.MLP([784, *hidden, outputs], "relu", beta=0.1)
    params = net.init(seed=0, dtype=dtype)
    x = np.random.default_rng(0).standard_normal((n, 784)).astype(dtype)
    return net, params, x


class EmpiricalNTK:
    params = ([256, 1024], ["trace", "full"], ["float32", "float64"])
    param_names = ["N", "output", "dtype"]
    timeout = 120

    def setup(self, n, output, dtype):
        self.net, self.params, self.x = _setup(n, 1 if output == "trace" else 10, dtype)

    def time_ntk(self, n, output, dtype):
        self.net.ntk(self.params, self.x, output=output)

    def peakmem_ntk(self, n, output, dtype):
        self.net.ntk(self.params, self.x, output=output)


class CrossNTK:
    params = (["trace", "diagonal"],)
    param_names = ["output"]

    def setup(self, output):
        self.net, self.params, self.x = _setup(1024, 10, "float32")

    def time_cross_ntk(self, output):
        self.net.ntk(self.params, self.x, self.x[:256], output=output)


class Network:
    params = (["float32", "float64"],)
    param_names = ["dtype"]

    def setup(self, dtype):
        self.net, self.params, self.x = _setup(1024, 10, dtype)
        self.d = np.ones((1024, 10), dtype)

    def time_apply(self, dtype):
        self.net.apply(self.params, self.x)

    def time_vjp(self, dtype):
        self.net.vjp(self.params, self.x, self.d)

    def time_jacobian_n64(self, dtype):
        self.net.jacobian(self.params, self.x[:64])

    def time_init(self, dtype):
        self.net.init(seed=1, dtype=dtype)


class WideNetwork:
    """Width 4000 at depth 4 (about 3.5·10⁷ parameters), N = 300."""

    timeout = 300

    def setup(self):
        self.net, self.params, self.x = _setup(300, 1, "float64", hidden=(4000, 4000, 4000))

    def time_wide_ntk(self):
        self.net.ntk(self.params, self.x)

    def peakmem_wide_ntk(self):
        self.net.ntk(self.params, self.x)


class UserActivation:
    """tanh as the core's built-in and as a Custom activation (run in NumPy; σ' given or by
    finite differences), 784-1024-1024-10 at N = 1024: the figures of docs/networks.md."""

    params = (["built-in", "Custom", "Custom without dfn"],)
    param_names = ["activation"]
    timeout = 120

    def setup(self, activation):
        act = {
            "built-in": "tanh",
            "Custom": nk.activations.Custom(np.tanh, lambda z: 1 - np.tanh(z) ** 2),
            "Custom without dfn": nk.activations.Custom(np.tanh),
        }[activation]
        self.net = nk.MLP([784, 1024, 1024, 10], act, beta=0.1)
        self.params = self.net.init(seed=0)
        self.x = np.random.default_rng(0).standard_normal((1024, 784))
        self.d = np.ones((1024, 10))

    def time_apply(self, activation):
        self.net.apply(self.params, self.x)

    def time_vjp(self, activation):
        self.net.vjp(self.params, self.x, self.d)

    def time_ntk(self, activation):
        self.net.ntk(self.params, self.x)
