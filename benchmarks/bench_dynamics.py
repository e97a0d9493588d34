"""asv benchmarks of the training dynamics: the closed-form MSE flow and gradient descent."""

import numpy as np

import ntkfast as nk
from ntkfast import dynamics


class MSEFlow:
    """Factorise a 4096 × 4096 NTK once, then evaluate f_t at 100 times."""

    timeout = 300

    def setup(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((4096, 784)).astype(np.float32)
        self.k = nk.limit_kernel(x, depth=4, get="ntk").astype(np.float64)
        self.y = rng.standard_normal((4096, 10))
        self.f0 = np.zeros((4096, 10))
        self.flow = dynamics.mse_flow(self.k, self.y)
        self.times = np.logspace(-2, 4, 100)

    def time_factorise(self):
        dynamics.mse_flow(self.k, self.y)

    def time_flow_100_times(self):
        self.flow(self.times, self.f0)


class KernelFlow:
    def setup(self):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((512, 20))
        self.k = nk.limit_kernel(x, depth=3, get="ntk")
        self.cost = dynamics.CrossEntropy(np.arange(512) % 10)
        self.f0 = np.zeros((512, 10))

    def time_cross_entropy_flow(self):
        dynamics.kernel_flow(self.k, self.cost, self.f0, np.linspace(0, 100, 11))


class Train:
    """20 gradient-descent steps of a 2-2000-2000-2000-1 ReLU network on 64 inputs."""

    timeout = 300

    def setup(self):
        self.net = nk.MLP([2, 2000, 2000, 2000, 1], "relu", beta=0.1)
        self.params = self.net.init(seed=0)
        rng = np.random.default_rng(0)
        self.x, self.y = rng.standard_normal((64, 2)), rng.standard_normal((64, 1))

    def time_train_20_steps(self):
        nk.train(self.net, self.params, self.x, self.y, steps=20, lr=1.0, record_every=20)

    def peakmem_train_20_steps(self):
        nk.train(self.net, self.params, self.x, self.y, steps=20, lr=1.0, record_every=20)
