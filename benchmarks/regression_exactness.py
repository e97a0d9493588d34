"""Exactness of the large-N solvers against dense float64 references, at N = 12,000.

Image-like inputs (smooth bumps plus noise, n0 = 784), depth 4, ReLU NTK, ridge 1e-3 × the
mean diagonal, 1,000 test points. Prints the largest relative difference (max over test
points and outputs, relative to the largest reference value) of

- ``predict(X)`` with ``solver="cg"`` (each ``kernel_storage``) against a dense Cholesky
  solve (the core's, float64);
- ``predict(X, t)`` at four times from f_t near f_0 to f_t near the t = ∞ limit against
  ``dynamics.mse_flow`` (a dense eigendecomposition).

Run: ``python benchmarks/regression_exactness.py [--n 12000] [--tol 1e-10]``.
"""

import argparse
import time

import numpy as np

import ntkfast as nk
from ntkfast import dynamics


def relative(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=12000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--skip-flow", action="store_true", help="no dense eigendecomposition")
    args = ap.parse_args()
    # Imported here, run as a script from benchmarks/: asv imports every module of the
    # suite as part of the benchmarks package, where this absolute import would fail.
    from bench_regression import correlated_inputs

    n = args.n
    x, xt = correlated_inputs(n, 784, 0), correlated_inputs(args.n_test, 784, 1)
    y = np.sin(4 * x[:, 100]) + 0.1 * np.random.default_rng(2).standard_normal(n)
    k = nk.limit_kernel(x, depth=4, get="ntk")
    kt = nk.limit_kernel(xt, x, depth=4, get="ntk")
    ridge = 1e-3 * float(np.mean(np.diag(k)))
    a = k + ridge * np.eye(n)
    from ntkfast._linalg import solve_spd

    want = kt @ solve_spd(a, y)
    print(f"N = {n}, n0 = 784, depth 4, ReLU NTK, ridge {ridge:.3g}, tol {args.tol:g}\n")
    print("| solver | products | iterations | residual | fit | max rel. diff. of predict |")
    print("|---|---|---|---|---|---|")
    fits = {}
    for storage in ("float64", "float32", "none"):
        t0 = time.perf_counter()
        reg = nk.KernelRegressor(
            depth=4,
            ridge=ridge,
            solver="cg",
            tol=args.tol,
            kernel_storage=storage,
            progress=False,
        ).fit(x, y)
        seconds = time.perf_counter() - t0
        fits[storage] = reg
        print(
            f"| cg | {storage} | {reg.n_iter_} | {reg.residual_:.1e} | {seconds:.1f} s | "
            f"{relative(reg.predict(xt), want):.1e} |",
            flush=True,
        )
    if args.skip_flow:
        return
    lam = np.linalg.eigvalsh(a[:2000, :2000])[-1] * n / 2000  # λ_max, roughly
    times = np.array([0.01, 1.0, 100.0, 1e6]) * n / lam
    _, flow = dynamics.mse_flow(a, y, kt)(times, np.zeros(n), np.zeros(args.n_test))
    got = fits["float64"].predict(xt, t=times)
    print("\n| t λ_max / N | max rel. diff. of predict(X, t) vs mse_flow |")
    print("|---|---|")
    for i, t in enumerate(times):
        print(f"| {t * lam / n:g} | {relative(got[i], flow[i]):.1e} |")


if __name__ == "__main__":
    main()
