"""The Nyström solver and the Dask regressor at scale: the figures of docs/scale.md.

Subcommands (each prints what docs/scale.md quotes):

- ``throughput``: kernel entries per second of the core's products (K(X, C)ᵀ K(X, C) v and
  the symmetric K(X, X) v), depth 4 ReLU NTK, for n0 = 100 and 784 and both dtypes.
- ``teacher``: a teacher–student task (targets from a random width-1024 network plus noise,
  image-like inputs) at N = 20,000: test MSE of the exact ridge solution (CG) and of Nyström
  with M = 2,000, and Falkon's iterations to 1e-6.
- ``million``: N = 1,000,000, n0 = 100, depth 4 ReLU NTK, M = 10,000, float32, inputs
  N(0, 1) (``--inputs image`` for image-like ones), ridge 0.1 × the mean diagonal (the best
  of ``teacher``'s three; ``--ridge``): fit time, iterations, the preconditioner's set-up,
  time per pass and peak resident memory beyond X.
- ``dask``: a fit (``--solver nystrom`` with M = 2,000, or ``cg``; float64, tol 1e-10 unless
  ``--tol``, ridge 0.01 × the mean diagonal unless ``--ridge``, image-like inputs,
  N = 100,000 unless ``--n``) locally with K never kept and on a 2-process
  LocalCluster (one thread each): agreement of the predictions and the time ratio.

Run: ``python benchmarks/nystrom_scale.py SUBCOMMAND [--n N] [--centers M]``.
"""

import argparse
import resource
import time

import numpy as np

import ntkfast as nk


def image_like(n, n0, seed, dtype=np.float32, chunk=100_000):
    """Smooth bumps plus noise (ill-conditioned kernels), made in chunks straight into
    ``dtype`` so that only X itself stays resident."""
    out = np.empty((n, n0), dtype=dtype)
    t = np.linspace(0, 1, n0)
    for start in range(0, n, chunk):
        rng = np.random.default_rng([seed, start])
        m = min(chunk, n - start)
        centres, widths = rng.uniform(0.2, 0.8, (m, 1)), rng.uniform(0.05, 0.3, (m, 1))
        bumps = np.exp(-((t - centres) ** 2) / (2 * widths**2))
        out[start : start + m] = bumps + 0.05 * rng.standard_normal((m, n0))
    return out


def teacher_targets(x, noise, seed=7, width=1024, chunk=50_000):
    """A random depth-4 ReLU network of the given width (NTK parametrisation) plus noise."""
    net = nk.MLP([x.shape[1], width, width, width, 1], "relu", beta=0.1)
    params = net.init(seed)
    y = np.concatenate([net.apply(params, x[s : s + chunk])[:, 0] for s in range(0, len(x), chunk)])
    return y + noise * np.random.default_rng(seed + 1).standard_normal(len(y))


def peak_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


DTYPES = (np.float32, np.float64)


def throughput(args):
    from ntkfast import _ntkfast

    core = _ntkfast.LimitKernel(4, "relu", 0.0, 0.1)
    rng = np.random.default_rng(0)
    print("inputs  n0   dtype    K(X,C)ᵀK(X,C)v [M entries/s]   K(X,X)v [M entries made/s]")
    cases = [(k, n0, d) for k in ("N(0,1)", "image") for n0 in (100, 784) for d in DTYPES]
    for kind, n0, dtype in cases:
        n, m = (40_000, 2_000) if n0 == 100 else (16_000, 2_000)
        if kind == "image":
            x = image_like(n, n0, 1, dtype)
        else:
            x = np.random.default_rng(1).standard_normal((n, n0)).astype(dtype)
        c = x[:m].copy()
        v = rng.standard_normal((m, 1))
        out = np.empty_like(v)
        core.normal_product(x[:m], c, "ntk", v, out)  # warm up the pool
        t = time.perf_counter()
        core.normal_product(x, c, "ntk", v, out)
        normal = n * m / (time.perf_counter() - t)
        xs = x[:16_000]
        w = rng.standard_normal((len(xs), 1))
        o = np.empty_like(w)
        t = time.perf_counter()
        core.product(xs, None, "ntk", w, o)
        sym = len(xs) ** 2 / 2 / (time.perf_counter() - t)
        name = np.dtype(dtype).name
        print(f"{kind:7} {n0:<4} {name:8} {normal / 1e6:12.0f} {sym / 1e6:28.0f}")


def teacher(args):
    n, n_test, n0 = args.n or 20_000, 5_000, 100
    x = image_like(n + n_test, n0, 2, np.float64)
    y = teacher_targets(x, noise=0.1)
    x, xt, y, yt = x[:n], x[n:], y[:n], y[n:]
    diag = nk.limit_kernel_diagonal(x[:1000], depth=4, get="ntk").mean()
    m = args.centers or 2_000
    print(f"N = {n}, test {n_test}, n0 = {n0}, depth 4 ReLU NTK, noise 0.1, M = {m}")
    print("ridge/diag   exact MSE   Nyström MSE   ratio   Falkon it (tol 1e-6)   times [s]")
    for rel in (1e-3, 1e-2, 1e-1):
        ridge = rel * diag
        t = time.perf_counter()
        exact = nk.KernelRegressor(depth=4, ridge=ridge, solver="cg", tol=1e-8).fit(x, y)
        t_exact = time.perf_counter() - t
        t = time.perf_counter()
        approx = nk.KernelRegressor(
            depth=4, ridge=ridge, solver="nystrom", centers=m, tol=1e-6
        ).fit(x, y)
        t_approx = time.perf_counter() - t
        mse_e = float(np.mean((exact.predict(xt) - yt) ** 2))
        mse_n = float(np.mean((approx.predict(xt) - yt) ** 2))
        print(
            f"{rel:<12g} {mse_e:9.5f} {mse_n:13.5f} {mse_n / mse_e:7.4f} "
            f"{approx.n_iter_:>10} (res {approx.residual_:.1e})   {t_exact:.1f} / {t_approx:.1f}"
        )


def _time_preconditioner():
    """Time the preconditioner's set-up (its sample's kernel, factorisations) in later fits:
    returns the list the seconds are appended to."""
    seconds = []
    original = nk.regression.Falkon

    class Timed(original):
        def __init__(self, *args, **kwargs):
            t = time.perf_counter()
            super().__init__(*args, **kwargs)
            seconds.append(time.perf_counter() - t)

    nk.regression.Falkon = Timed
    return seconds


def million(args):
    n, m, n0 = args.n or 1_000_000, args.centers or 10_000, 100
    if args.inputs == "image":
        x = image_like(n, n0, 3, np.float32)
    else:
        x = np.random.default_rng(3).standard_normal((n, n0), dtype=np.float32)
    y = teacher_targets(x, noise=0.1, width=256)
    base = peak_rss()
    diag = float(nk.limit_kernel_diagonal(x[:1000], depth=4, get="ntk").mean())
    ridge = (args.ridge or 0.1) * diag
    reg = nk.KernelRegressor(
        depth=4,
        ridge=ridge,
        solver="nystrom",
        centers=m,
        dtype="float32",
        tol=1e-6,
        kernel_storage="none",
        progress=True,
    )
    setup = _time_preconditioner()
    t = time.perf_counter()
    reg.fit(x, y)
    seconds = time.perf_counter() - t
    passes = reg.n_iter_ + 2  # K(C, X) y once, one product per iteration, the final residual
    print(
        f"N = {n}, M = {m}, n0 = {n0}, {args.inputs} inputs, depth 4 ReLU NTK, float32, "
        f"ridge {ridge:.3g}, tol 1e-6"
    )
    print(f"fit {seconds:.1f} s, {reg.n_iter_} iterations, residual {reg.residual_:.1e}")
    print(
        f"preconditioner {setup[0]:.1f} s (sample of {reg._falkon.sampled} rows), "
        f"{(seconds - setup[0]) / passes:.1f} s per pass over K(X, C) ({passes} passes)"
    )
    print(f"peak resident memory beyond X and y: {(peak_rss() - base) / 2**30:.2f} GiB")


def dask_comparison(args):
    from dask.distributed import Client, LocalCluster

    import ntkfast.dask as nkd

    n = args.n or 100_000
    x = image_like(n, 100, 4, np.float64)
    y = teacher_targets(x, noise=0.1, width=256)
    xt = image_like(1000, 100, 5, np.float64)
    diag = float(nk.limit_kernel_diagonal(x[:1000], depth=4, get="ntk").mean())
    ridge = (args.ridge or 1e-2) * diag
    settings = dict(depth=4, ridge=ridge, tol=args.tol or 1e-10, solver=args.solver)
    if args.solver == "nystrom":
        settings["centers"] = args.centers or 2_000
    t = time.perf_counter()
    local = nk.KernelRegressor(kernel_storage="none", **settings).fit(x, y)
    t_local = time.perf_counter() - t
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.run(nk.set_num_threads, 1)
            import dask.array as da

            lazy = da.from_array(x, chunks=(n // 8, -1))
            t = time.perf_counter()
            remote = nkd.KernelRegressor(**settings).fit(lazy, y)
            t_dask = time.perf_counter() - t
            want = local.predict(xt)
            diff = np.abs(remote.predict(xt) - want).max() / np.abs(want).max()
    print(f"N = {n}, solver {args.solver}, ridge {ridge:.3g}, tol {settings['tol']:g}")
    print(f"local {t_local:.1f} s ({local.n_iter_} it), ")
    print(f"Dask 2 processes {t_dask:.1f} s ({remote.n_iter_} it): ratio {t_dask / t_local:.2f}")
    print(f"largest relative difference of the predictions: {diff:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["throughput", "teacher", "million", "dask"])
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--centers", type=int, default=None)
    ap.add_argument("--solver", default="nystrom", choices=["nystrom", "cg"])
    ap.add_argument("--inputs", default="gauss", choices=["gauss", "image"])
    ap.add_argument(
        "--ridge", type=float, default=None, help="× the mean diagonal (million 0.1, dask 0.01)"
    )
    ap.add_argument("--tol", type=float, default=None, help="dask: the fits' tol (1e-10)")
    args = ap.parse_args()
    {"throughput": throughput, "teacher": teacher, "million": million, "dask": dask_comparison}[
        args.what
    ](args)


if __name__ == "__main__":
    main()
