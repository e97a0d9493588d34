"""asv benchmarks of the large-N tools: matrix-free kernel products and kernel regression."""

import numpy as np

import ntkfast as nk


def correlated_inputs(n, n0, seed):
    """Image-like inputs (smooth bumps plus noise): ill-conditioned kernels, as users' data."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n0)
    centres, widths = rng.uniform(0.2, 0.8, (n, 1)), rng.uniform(0.05, 0.3, (n, 1))
    return np.exp(-((t - centres) ** 2) / (2 * widths**2)) + 0.05 * rng.standard_normal((n, n0))


class KernelProduct:
    """One product K(X, X) v at N = 4096, n0 = 784, depth 4 (one triangle of tiles)."""

    params = (["float64", "float32"], [1, 16])
    param_names = ["dtype", "columns"]
    timeout = 300

    def setup(self, dtype, columns):
        x = correlated_inputs(4096, 784, 0)
        self.op = nk.KernelOperator(x, depth=4, dtype=dtype)
        self.v = np.random.default_rng(1).standard_normal((4096, columns))

    def time_product(self, dtype, columns):
        self.op @ self.v

    def peakmem_product(self, dtype, columns):
        self.op @ self.v


class Regression:
    """KernelRegressor fit at N = 4096 (n0 = 784, depth 4, ridge 1e-3 × mean diagonal, 500
    Nyström centres so that CG has work to do): the direct solve, and CG with the kernel kept
    in float64, kept in float32 (refined in float64), or not kept (matrix-free); and the
    (approximate) Nyström solver on 500 centres with K(X, C) kept or streamed."""

    params = ["direct", "cg-float64", "cg-float32", "cg-none", "nystrom-float64", "nystrom-none"]
    param_names = ["solver"]
    timeout = 900

    def setup(self, solver):
        self.x = correlated_inputs(4096, 784, 2)
        self.y = np.sin(4 * self.x[:, 100])
        diagonal = nk.limit_kernel_diagonal(self.x, depth=4, get="ntk")
        self.ridge = 1e-3 * float(np.mean(diagonal))

    def _regressor(self, solver):
        name, _, storage = solver.partition("-")
        return nk.KernelRegressor(
            depth=4,
            ridge=self.ridge,
            solver=name,
            kernel_storage=storage or "auto",
            preconditioner_size=500,
            centers=500 if name == "nystrom" else None,
            progress=False,
        )

    def time_fit(self, solver):
        self._regressor(solver).fit(self.x, self.y)

    def peakmem_fit(self, solver):
        self._regressor(solver).fit(self.x, self.y)

    def track_iterations(self, solver):
        return self._regressor(solver).fit(self.x, self.y).n_iter_


class NormalProduct:
    """One streamed product K(X, C)ᵀ K(X, C) v of the Nyström solver, N = 20,000, M = 2,000,
    n0 = 100, depth 4 (K(X, C) never stored)."""

    params = ["float64", "float32"]
    param_names = ["dtype"]
    timeout = 300

    def setup(self, dtype):
        from ntkfast import _ntkfast

        self.core = _ntkfast.LimitKernel(4, "relu", 0.0, 0.1)
        self.x = correlated_inputs(20_000, 100, 3).astype(dtype)
        self.c = np.ascontiguousarray(self.x[::10])
        self.v = np.random.default_rng(4).standard_normal((len(self.c), 1))
        self.out = np.empty_like(self.v)

    def time_normal_product(self, dtype):
        self.core.normal_product(self.x, self.c, "ntk", self.v, self.out)

    def peakmem_normal_product(self, dtype):
        self.core.normal_product(self.x, self.c, "ntk", self.v, self.out)
