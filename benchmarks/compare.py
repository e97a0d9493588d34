"""Side-by-side timings of ntkfast, NumPy's X @ X.T and neural-tangents, in one run.

    python benchmarks/compare.py [--nt-python .venv-nt/bin/python] [--repeat 5] [--quick]
        [--workload all|limit|floor|tanh|kinked|empirical|training|regression|nystrom]

neural-tangents runs in its own pinned virtualenv (``scripts/nt_env.sh``) through
``benchmarks/nt_timing.py`` (limit kernels) and ``benchmarks/nt_empirical_timing.py``
(empirical NTKs); without it those columns are reported as unavailable. Prints Markdown
tables of best-of-``repeat`` wall-clock times and the ratios the targets are stated in.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

import ntkfast as nk

HERE = Path(__file__).resolve().parent


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up: thread pool start, page faults of first allocations
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def inputs(n: int, n0: int, dtype) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, n0)).astype(dtype)


def neural_tangents(
    python: str | None, args: list[str], save: str | None = None, script: str = "nt_timing.py"
):
    """Seconds (best) of the neural-tangents function, or None if its environment is missing."""
    if not python or not Path(python).exists():
        return None
    cmd = [python, str(HERE / script), *args] + (["--save", save] if save else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        print(f"neural-tangents failed: {out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds_min"]


def extra_peak_memory(n: int, n0: int, depth: int, dtype: str) -> tuple[float, float]:
    """(peak RSS growth during limit_kernel, size of the outputs) in MiB, in a fresh process."""
    script = textwrap.dedent(
        f"""
        import numpy as np, ntkfast as nk
        x = np.random.default_rng(0).standard_normal(({n}, {n0})).astype("{dtype}")
        nk.limit_kernel(x[:300], depth=2)  # start the pool
        def status_mib(key):  # VmHWM, unlike ru_maxrss, is not inherited from the parent
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith(key)) / 1024
        before = status_mib("VmRSS")
        k = nk.limit_kernel(x, depth={depth})
        print(status_mib("VmHWM") - before, (k.nngp.nbytes + k.ntk.nbytes) / 2**20)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    grow, outputs = map(float, out.stdout.split())
    return grow, outputs


def limit_section(args) -> None:
    """SPEC row 1: Θ∞ + Σ, ReLU, L = 4, N = 4096, n0 = 784."""
    n, n0, depth = (1024, 784, 4) if args.quick else (4096, 784, 4)
    threads = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float64"):
            x = inputs(n, n0, dtype)
            nk.set_num_threads(threads)
            ours = best_of(
                lambda x=x: nk.limit_kernel(x, depth=depth, activation="relu"), args.repeat
            )
            nk.set_num_threads(1)
            ours_1 = best_of(
                lambda x=x: nk.limit_kernel(x, depth=depth, activation="relu"), args.repeat
            )
            nk.set_num_threads(threads)
            gram = best_of(lambda x=x: x @ x.T, args.repeat)
            save = str(Path(tmp) / f"nt_{dtype}.npy")
            nt = neural_tangents(
                args.nt_python,
                [
                    "--workload",
                    "relu",
                    "--n",
                    str(n),
                    "--n0",
                    str(n0),
                    "--depth",
                    str(depth),
                    "--dtype",
                    dtype,
                    "--repeat",
                    str(args.repeat),
                ],
                save=save,
            )
            agreement = None
            if nt is not None and Path(save).exists():
                nt_ntk = np.load(save)[1]  # nt_timing.py saves stack([nngp, ntk])
                k = nk.limit_kernel(x, depth=depth, activation="relu")
                d = np.sqrt(np.outer(np.diag(k.ntk), np.diag(k.ntk)))
                agreement = float(np.max(np.abs(k.ntk - nt_ntk) / d))
            rows.append((dtype, ours, ours_1, gram, nt, agreement))

    grow, outputs = extra_peak_memory(n, n0, depth, "float64")
    print(
        f"Θ∞ + Σ, ReLU, L = {depth}, N = {n}, n0 = {n0}; {threads} threads; best of {args.repeat}\n"
    )
    print(
        "| dtype | ntkfast | ntkfast 1 thread | NumPy X@X.T | neural-tangents | NT / ntkfast "
        "| ntkfast / X@X.T | 1 thread / 2 threads | max |Θ − Θ_NT| / scale |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype, ours, ours_1, gram, nt, agreement in rows:
        nt_s = f"{nt:.3f} s" if nt is not None else "n/a"
        nt_ratio = f"{nt / ours:.1f}×" if nt is not None else "n/a"
        agree = f"{agreement:.1e}" if agreement is not None else "n/a"
        print(
            f"| {dtype} | {ours:.3f} s | {ours_1:.3f} s | {gram:.3f} s | {nt_s} | {nt_ratio} "
            f"| {ours / gram:.2f} | {ours_1 / ours:.2f}× | {agree} |"
        )
    print(
        f"\nPeak memory growth during the float64 call: {grow:.0f} MiB, of which outputs "
        f"{outputs:.0f} MiB (extra {grow - outputs:.0f} MiB; inputs {n * n0 * 8 / 2**20:.0f} MiB)."
    )


def tanh_section(args) -> None:
    """SPEC row 2: Θ∞ + Σ, tanh, L = 4, N = 1024, n0 = 784 (Hermite series against
    neural-tangents' ElementwiseNumerical(deg=25)); accuracy against the independent
    Gauss–Hermite recursion of ``tests/reference.py`` on a subset of rows."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    import reference

    n, n0, depth, beta = (256 if args.quick else 1024), 784, 4, 0.1
    threads = os.cpu_count() or 1
    nk.set_num_threads(threads)
    x = inputs(n, n0, "float32")
    x64 = x.astype(np.float64)
    ours = best_of(
        lambda: nk.limit_kernel(x, depth=depth, activation="tanh", beta=beta), args.repeat
    )
    ours64 = best_of(
        lambda: nk.limit_kernel(x64, depth=depth, activation="tanh", beta=beta), args.repeat
    )
    relu = best_of(
        lambda: nk.limit_kernel(x, depth=depth, activation="relu", beta=beta), args.repeat
    )
    # Reference on rows 0..7 against all of them (an 8 × 8 block through the quadrature).
    rows = 8
    _, want, _ = reference.limit_kernel(x64[:rows], depth=depth, activation="tanh", beta=beta)
    scale = np.sqrt(np.outer(np.diag(want), np.diag(want)))

    def error(ntk):
        return float(np.max(np.abs(np.asarray(ntk, np.float64)[:rows, :rows] - want) / scale))

    err = {
        "float32": error(nk.limit_kernel(x, depth=depth, activation="tanh", beta=beta).ntk),
        "float64": error(nk.limit_kernel(x64, depth=depth, activation="tanh", beta=beta).ntk),
    }
    nt, nt_err = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in ("float32", "float64"):
            save = str(Path(tmp) / f"nt_{dtype}.npy")
            common = ["--workload", "tanh", "--n", str(n), "--n0", str(n0)]
            common += ["--depth", str(depth), "--dtype", dtype, "--repeat", "1"]
            nt[dtype] = neural_tangents(args.nt_python, common, save=save)
            if nt[dtype] is not None and Path(save).exists():
                nt_err[dtype] = error(np.load(save)[1])
    print(
        f"\nΘ∞ + Σ, tanh, L = {depth}, N = {n}, n0 = {n0}, β = {beta}; {threads} threads; "
        f"ntkfast best of {args.repeat}, neural-tangents (deg = 25) one run after warm-up\n"
    )
    print(
        "| dtype | ntkfast | neural-tangents | NT / ntkfast | error ntkfast | error NT "
        "| NT error / ntkfast error |"
    )
    print("|---|---|---|---|---|---|---|")
    for dtype, t in (("float32", ours), ("float64", ours64)):
        nt_t = nt.get(dtype)
        nt_s = f"{nt_t:.2f} s" if nt_t is not None else "n/a"
        ratio = f"{nt_t / t:.0f}×" if nt_t is not None else "n/a"
        e_nt = nt_err.get(dtype)
        e_nt_s = f"{e_nt:.1e}" if e_nt is not None else "n/a"
        acc = f"{e_nt / max(err[dtype], 1e-16):.0e}" if e_nt is not None else "n/a"
        print(f"| {dtype} | {t:.3f} s | {nt_s} | {ratio} | {err[dtype]:.1e} | {e_nt_s} | {acc} |")
    print(
        f"\ntanh / ReLU at the same size (float32): {ours / relu:.2f} "
        f"(ReLU {relu:.3f} s). Errors: max |Θ − Θ_ref| / √(Θ_ref(x,x) Θ_ref(x',x')) over the "
        f"first {rows} rows."
    )


def empirical_peak_memory(n: int, outputs: int, output: str, dtype: str) -> tuple[float, float]:
    """(peak RSS growth during MLP.ntk, size of the result) in MiB, in a fresh process."""
    script = textwrap.dedent(
        f"""
        import numpy as np, ntkfast as nk
        net = nk.MLP([784, 512, 512, 512, {outputs}], "relu", beta=0.1)
        p = net.init(seed=0, dtype="{dtype}")
        x = np.random.default_rng(0).standard_normal(({n}, 784)).astype("{dtype}")
        net.ntk(p, x[:300], output="{output}")  # start the pool
        def status_mib(key):
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith(key)) / 1024
        before = status_mib("VmRSS")
        k = net.ntk(p, x, output="{output}")
        print(status_mib("VmHWM") - before, k.nbytes / 2**20)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    grow, result = map(float, out.stdout.split())
    return grow, result


def empirical_section(args) -> None:
    """SPEC rows 3–4: empirical NTK of the ReLU MLP 784-512-512-512-n_L, N = 1024."""
    n = 256 if args.quick else 1024
    threads = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for outputs, output, dtype, contraction in [
            (1, "trace", "float32", True),
            (1, "trace", "float64", False),
            (10, "full", "float32", False),
        ]:
            net = nk.MLP([784, 512, 512, 512, outputs], "relu", beta=0.1)
            params = net.init(seed=0, dtype=dtype)
            stored = Path(tmp) / f"params{outputs}.npz"
            np.savez(
                stored,
                widths=np.array(net.widths),
                **{f"W{i}": w for i, (w, _) in enumerate(params)},
                **{f"b{i}": b for i, (_, b) in enumerate(params)},
            )
            x = inputs(n, 784, dtype)
            # Sub-second runs vary by ±30 % on a shared machine: take more of them.
            repeat = 4 * args.repeat if outputs == 1 else max(1, args.repeat // 2)
            run = functools.partial(net.ntk, params, x, output=output)
            nk.set_num_threads(threads)
            ours = best_of(run, repeat)
            nk.set_num_threads(1)
            ours_1 = best_of(run, repeat)
            nk.set_num_threads(threads)
            common = ["--params", str(stored), "--n", str(n), "--dtype", dtype, "--output", output]
            save = str(Path(tmp) / "nt.npy")
            nt = neural_tangents(
                args.nt_python,
                [*common, "--repeat", str(repeat if outputs == 1 else 1)],
                save=save,
                script="nt_empirical_timing.py",
            )
            nt_contraction = None
            if contraction:
                nt_contraction = neural_tangents(
                    args.nt_python,
                    [*common, "--implementation", "contraction", "--repeat", "1"],
                    script="nt_empirical_timing.py",
                )
            agreement = None
            if nt is not None and Path(save).exists():
                theirs = np.load(save)
                ours_k = net.ntk(params, x, output=output).astype(np.float64)
                agreement = float(np.abs(ours_k - theirs).max() / np.abs(ours_k).max())
            rows.append((outputs, output, dtype, ours, ours_1, nt, nt_contraction, agreement))
    print(
        f"\nEmpirical NTK, ReLU MLP 784-512-512-512-n_L, N = {n}, β = 0.1; {threads} threads; "
        f"best of {4 * args.repeat} (full: best of {max(1, args.repeat // 2)}, neural-tangents 1)\n"
    )
    print(
        "| n_L, output | dtype | ntkfast | ntkfast 1 thread | NT structured | NT / ntkfast "
        "| NT Jacobian contraction | 1 thread / 2 threads | max |Θ − Θ_NT| / max |Θ| |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for outputs, output, dtype, ours, ours_1, nt, nt_c, agreement in rows:
        nt_s = f"{nt:.3f} s" if nt is not None else "n/a"
        ratio = f"{nt / ours:.1f}×" if nt is not None else "n/a"
        nt_c_s = f"{nt_c:.1f} s" if nt_c is not None else "not run"
        agree = f"{agreement:.1e}" if agreement is not None else "n/a"
        print(
            f"| {outputs}, {output} | {dtype} | {ours:.3f} s | {ours_1:.3f} s | {nt_s} | {ratio} "
            f"| {nt_c_s} | {ours_1 / ours:.2f}× | {agree} |"
        )
    grow, result = empirical_peak_memory(n, 10, "full", "float32")
    features = n * 10 * 1536 * 4 / 2**20
    print(
        f"\nPeak memory growth during the float32 full call: {grow:.0f} MiB, of which the result "
        f"{result:.0f} MiB and cotangents N·n_L·Σ n_l = {features:.0f} MiB "
        f"(extra {grow - result - features:.0f} MiB)."
    )


def numpy_step(params, x, y, beta):
    """One gradient-descent step of a ReLU MLP written directly in NumPy (same products)."""
    acts, pres = [x], []
    for layer, (w, b) in enumerate(params):
        z = acts[-1] @ w.T / np.sqrt(w.shape[1]) + beta * b
        pres.append(z)
        acts.append(np.maximum(z, 0) if layer + 1 < len(params) else z)
    delta = (acts[-1] - y) / len(x)
    grads = []
    for layer in reversed(range(len(params))):
        w = params[layer][0]
        grads.append((delta.T @ acts[layer] / np.sqrt(w.shape[1]), beta * delta.sum(0)))
        if layer:
            delta = (delta @ w / np.sqrt(w.shape[1])) * (pres[layer - 1] > 0)
    return grads


def training_section(args) -> None:
    """Gradient-descent step time of a width-10000, depth-4 ReLU MLP (n0 = 2, N = 64)."""
    width = 2000 if args.quick else 10000
    net = nk.MLP([2, width, width, width, 1], "relu", beta=0.1)
    params = net.init(seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 2)), rng.standard_normal((64, 1))
    steps = 3
    ours = best_of(lambda: nk.train(net, params, x, y, steps=steps, lr=1e-3, record_every=steps), 2)
    apply = best_of(lambda: net.apply(params, x), 2)
    reference = best_of(lambda: numpy_step(params, x, y, 0.1), args.repeat)
    # nk.train also evaluates f once more at the end (one forward pass), and copies θ once.
    per_step = (ours - apply) / steps
    print(
        f"\nGradient descent, ReLU MLP 2-{width}-{width}-{width}-1 ({net.num_params:.3g} "
        f"parameters, float64), N = 64\n"
    )
    print("| ntkfast step (forward + backward + update) | NumPy products of one step | ratio |")
    print("|---|---|---|")
    print(f"| {per_step:.3f} s | {reference:.3f} s | {per_step / reference:.2f} |")


def regression_section(args) -> None:
    """Kernel regression at N = 20,000 (n0 = 784, float64, ReLU NTK, depth 4, ridge 1e-3 × the
    mean diagonal, 2,000 test points): ntkfast's kernel + fit + predict against
    neural-tangents' batched kernels plus SciPy's Cholesky, run with OPENBLAS_CORETYPE=Haswell
    (SciPy's OpenBLAS dies in cho_factor at this size on Zen 4 otherwise)."""
    n, n_test = (4000, 500) if args.quick else (20000, 2000)
    x = inputs(n, 784, "float64")
    xt = np.random.default_rng(1).standard_normal((n_test, 784))
    y = np.sin(x[:, 0])
    diagonal = nk.limit_kernel_diagonal(x, depth=4, get="ntk")
    ridge = 1e-3 * float(np.mean(diagonal))

    def ours():
        reg = nk.KernelRegressor(depth=4, ridge=ridge, progress=False).fit(x, y)
        return reg, reg.predict(xt)

    t0 = time.perf_counter()
    reg, prediction = ours()
    seconds = time.perf_counter() - t0
    nt = None
    agreement = None
    with tempfile.TemporaryDirectory() as tmp:
        save = str(Path(tmp) / "nt_prediction.npy")
        env = dict(os.environ, OPENBLAS_CORETYPE="Haswell")
        if args.nt_python and Path(args.nt_python).exists():
            cmd = [args.nt_python, str(HERE / "nt_timing.py"), "--workload", "regression"]
            cmd += ["--n", str(n), "--n-test", str(n_test), "--n0", "784", "--depth", "4"]
            cmd += ["--dtype", "float64", "--save", save]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if out.returncode == 0:
                nt = json.loads(out.stdout.strip().splitlines()[-1])["seconds_min"]
                theirs = np.load(save)
                agreement = float(np.max(np.abs(prediction - theirs)) / np.max(np.abs(theirs)))
            else:
                print(f"neural-tangents failed: {out.stderr[-2000:]}", file=sys.stderr)
    print(
        f"\nKernel regression, ReLU NTK, L = 4, N = {n}, n0 = 784, float64, ridge 1e-3 × mean "
        f"diagonal, {n_test} test points (one run each)\n"
    )
    print("| ntkfast (solver) | neural-tangents + SciPy Cholesky | ratio | max |Δ| / max |f| |")
    print("|---|---|---|---|")
    nt_s = f"{nt:.1f} s" if nt is not None else "n/a"
    ratio = f"{nt / seconds:.1f}×" if nt is not None else "n/a"
    agree = f"{agreement:.1e}" if agreement is not None else "n/a"
    how = f"{reg.solver_}, {reg.n_iter_} iterations, kernel kept in {reg.storage_}"
    print(f"| {seconds:.1f} s ({how}) | {nt_s} | {ratio} | {agree} |")


def nystrom_section(args) -> None:
    """Approximate and distributed kernel regression at N = 20,000 (image-like inputs,
    n0 = 100, ReLU NTK, depth 4, ridge 1e-2 × the mean diagonal, targets of a random
    width-256 network plus noise): the exact CG fit against Nyström with M = 2,000 centres,
    locally and through a 2-process Dask LocalCluster (fit times in one run, test MSE on
    2,000 points, and the Dask fit's agreement with the local one)."""
    from dask.distributed import Client, LocalCluster

    import ntkfast.dask as nkd

    sys.path.insert(0, str(HERE))
    from nystrom_scale import image_like, teacher_targets

    n, n_test, m = (4000, 500, 400) if args.quick else (20000, 2000, 2000)
    x = image_like(n + n_test, 100, 9, np.float64)
    y = teacher_targets(x, noise=0.1, width=256)
    x, xt, y, yt = x[:n], x[n:], y[:n], y[n:]
    ridge = 1e-2 * float(np.mean(nk.limit_kernel_diagonal(x, depth=4, get="ntk")))
    rows = []
    for label, settings in [
        ("exact CG", dict(solver="cg")),
        (f"Nyström, M = {m}", dict(solver="nystrom", centers=m)),
    ]:
        t0 = time.perf_counter()
        reg = nk.KernelRegressor(depth=4, ridge=ridge, tol=1e-8, progress=False, **settings)
        reg.fit(x, y)
        seconds = time.perf_counter() - t0
        mse = float(np.mean((reg.predict(xt) - yt) ** 2))
        rows.append((label, seconds, reg.n_iter_, mse, reg))
    local = rows[-1][4]
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            client.run(nk.set_num_threads, 1)
            t0 = time.perf_counter()
            remote = nkd.KernelRegressor(
                depth=4, ridge=ridge, tol=1e-8, solver="nystrom", centers=m
            ).fit(x, y)
            seconds = time.perf_counter() - t0
            want = local.predict(xt)
            diff = float(np.abs(remote.predict(xt) - want).max() / np.abs(want).max())
            mse = float(np.mean((remote.predict(xt) - yt) ** 2))
            rows.append((f"Nyström on Dask (Δ vs local {diff:.0e})", seconds, remote.n_iter_, mse))
    print(
        f"\nNyström and Dask kernel regression, ReLU NTK, L = 4, N = {n}, n0 = 100, float64, "
        f"ridge 1e-2 × mean diagonal, {n_test} test points (one run each)\n"
    )
    print("| solver | fit | iterations | test MSE | time / exact |")
    print("|---|---|---|---|---|")
    for label, seconds, iterations, mse, *_ in rows:
        print(
            f"| {label} | {seconds:.1f} s | {iterations} | {mse:.5f} | {seconds / rows[0][1]:.2f} |"
        )


def floor_section(args) -> None:
    """The limit kernel against its floor, ratios on the same arrays in one run: K(X, X)
    (Σ + Θ, depth 4) against half of NumPy's full ``X @ Y.T`` (Y a copy of X: one triangle
    of the Gram matrix at full GEMM speed), and K(X, Z) (Z with 2N rows) against
    ``X @ Z.T``."""
    sizes = (512, 1024) if args.quick else (512, 4096, 16384)
    print(f"\nThe limit kernel's floor, n0 = 784, depth 4, Σ + Θ; best of {args.repeat}\n")
    print("| N | activation | dtype | K(X, X) | X@Y.T / 2 | ratio | K(X, Z) | X@Z.T | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        repeat = args.repeat if n <= 4096 else max(1, args.repeat // 2)
        for activation in ("relu", "erf", "gelu"):
            for dtype in ("float32", "float64"):
                x = inputs(n, 784, dtype)
                y, z = x.copy(), inputs(2 * n, 784, dtype)[::-1].copy()
                half = best_of(lambda x=x, y=y: x @ y.T, repeat) / 2
                kxx = best_of(
                    lambda x=x, a=activation: nk.limit_kernel(x, depth=4, activation=a), repeat
                )
                del y
                cross = best_of(lambda x=x, z=z: x @ z.T, repeat)
                kxz = best_of(
                    lambda x=x, z=z, a=activation: nk.limit_kernel(x, z, depth=4, activation=a),
                    repeat,
                )
                print(
                    f"| {n} | {activation} | {dtype} | {kxx:.3f} s | {half:.3f} s "
                    f"| {kxx / half:.2f} | {kxz:.3f} s | {cross:.3f} s | {kxz / cross:.2f} |",
                    flush=True,
                )


def kinked_section(args) -> None:
    """Piecewise-linear activations (hard tanh, ReLU6, sign, a five-piece σ with a jump):
    Θ∞ + Σ at depth 4, n0 = 784, float64, exact duals against neural-tangents'
    ElementwiseNumerical(fn, deg=25) on the same σ, N = 256 and 512 (at 1024 it needs 29 GB).
    NT's error is against ntkfast's kernel, which the tests hold to 1e-9 of an adaptive
    quadrature reference."""
    sys.path.insert(0, str(HERE))
    from nt_timing import PIECES

    depth, n0, beta = 4, 784, 0.1
    sizes = (128,) if args.quick else (256, 512)
    threads = os.cpu_count() or 1
    nk.set_num_threads(threads)
    print(
        f"\nΘ∞ + Σ, piecewise-linear σ, L = {depth}, n0 = {n0}, β = {beta}, float64; "
        f"{threads} threads; ntkfast best of {args.repeat}, neural-tangents (deg = 25) one run "
        f"after warm-up\n"
    )
    print("| σ | N | ntkfast | / ReLU | neural-tangents | NT / ntkfast | NT error (Θ) |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        x = inputs(n, n0, "float64")
        relu = best_of(lambda x=x: nk.limit_kernel(x, depth=depth, beta=beta), args.repeat)
        for name, pieces in PIECES.items():
            act = nk.activations.PiecewiseLinear(*pieces)
            ours = best_of(
                lambda x=x, act=act: nk.limit_kernel(x, depth=depth, activation=act, beta=beta),
                args.repeat,
            )
            theta = nk.limit_kernel(x, depth=depth, activation=act, beta=beta, get="ntk")
            scale = np.sqrt(np.outer(np.diag(theta), np.diag(theta)))
            with tempfile.TemporaryDirectory() as tmp:
                save = str(Path(tmp) / "nt.npy")
                common = ["--workload", "kinked", "--activation", name, "--n", str(n)]
                common += ["--n0", str(n0), "--depth", str(depth), "--dtype", "float64"]
                nt = neural_tangents(args.nt_python, common + ["--repeat", "1"], save=save)
                err = None
                if nt is not None and Path(save).exists():
                    err = float(np.max(np.abs(np.load(save)[1] - theta) / scale))
            nt_s = f"{nt:.2f} s" if nt is not None else "n/a"
            ratio = f"{nt / ours:.0f}×" if nt is not None else "n/a"
            err_s = f"{err:.1e}" if err is not None else "n/a"
            print(
                f"| {name} | {n} | {ours:.3f} s | {ours / relu:.1f}× | {nt_s} | {ratio} | {err_s} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_nt = Path(__file__).resolve().parents[1] / ".venv-nt" / "bin" / "python"
    parser.add_argument("--nt-python", default=str(default_nt))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller N, for a smoke run")
    parser.add_argument(
        "--workload",
        choices=(
            "all",
            "limit",
            "floor",
            "tanh",
            "kinked",
            "empirical",
            "training",
            "regression",
            "nystrom",
        ),
        default="all",
    )
    args = parser.parse_args()
    if args.workload in ("all", "limit"):
        limit_section(args)
    if args.workload in ("all", "floor"):
        floor_section(args)
    if args.workload in ("all", "tanh"):
        tanh_section(args)
    if args.workload in ("all", "kinked"):
        kinked_section(args)
    if args.workload in ("all", "empirical"):
        empirical_section(args)
    if args.workload in ("all", "training"):
        training_section(args)
    if args.workload in ("all", "regression"):
        regression_section(args)
    if args.workload in ("all", "nystrom"):
        nystrom_section(args)


if __name__ == "__main__":
    main()
