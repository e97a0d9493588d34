"""Command line: ``ntkfast kernel`` and ``ntkfast regress`` for data kept in .npy files.

ntkfast kernel X.npy [Y.npy] --depth 4 --activation relu --beta 0.1 -o K.npz
ntkfast kernel X.npy --get ntk -o K.npy        # one kernel, streamed to a .npy file
ntkfast regress X.npy y.npy --test Xt.npy -o pred.npy --depth 4 --ridge 1e-3 [--times 1,10,inf]
ntkfast demo
ntkfast reproduce [--figure 1|2|3|all] [--out DIR] [--quick | --paper] [--mnist PATH] [--seed S]

``kernel``, ``regress`` and ``demo`` need only the core install (NumPy, SciPy);
``reproduce`` needs the ``paper`` extra (matplotlib, scikit-learn, tqdm) and says so when it
is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import activations, get_num_threads, limit_kernel, set_num_threads
from ._optional import MissingExtraError
from ._validation import as_samples


def _activation(name: str, slope: float | None) -> activations.Activation:
    if slope is not None:
        if name != "leaky_relu":
            raise ValueError("--slope only applies to --activation leaky_relu")
        return activations.LeakyReLU(slope)
    return activations.get(name)


def _load(path: str) -> np.ndarray:
    if not path.endswith(".npy"):
        raise ValueError(f"{path}: expected a .npy file (np.save)")
    try:
        array: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except (EOFError, ValueError) as err:  # empty, truncated or not a .npy file at all
        raise ValueError(f"{path}: not a readable .npy array ({err})") from None
    return array


def _refuse_overwriting_inputs(output: Path, inputs: list[str]) -> None:
    for path in inputs:
        if output.exists() and os.path.samefile(output, path):
            raise ValueError(f"the output {output} is also an input; choose another file")


def run_kernel(args: argparse.Namespace) -> dict[str, Any]:
    """Computes the kernels asked for by ``args`` and writes them; returns a summary.

    Inputs are validated before anything is written; the result goes to a temporary file in
    the output's folder that replaces the output only once it is complete.
    """
    kinds = tuple(k.strip() for k in args.get.split(",") if k.strip())
    output = Path(args.output)
    if output.suffix not in (".npy", ".npz"):
        raise ValueError(f"{output}: the output must end in .npz or .npy")
    if output.suffix == ".npy" and len(kinds) != 1:
        raise ValueError("a .npy output holds one kernel: pass --get nngp or --get ntk")
    _refuse_overwriting_inputs(output, [p for p in (args.x, args.y) if p])
    x1 = as_samples(_load(args.x), "X")
    x2 = as_samples(_load(args.y), "Y") if args.y else None
    if args.float32:
        x1 = x1.astype(np.float32)
        x2 = None if x2 is None else x2.astype(np.float32)
    elif x2 is not None and x2.dtype != x1.dtype:
        x1, x2 = x1.astype(np.float64), x2.astype(np.float64)
    act = _activation(args.activation, args.slope)
    common = dict(depth=args.depth, activation=act, beta=args.beta)
    shape = (x1.shape[0], x1.shape[0] if x2 is None else x2.shape[0])
    fd, tmp = tempfile.mkstemp(prefix=".ntkfast-", suffix=output.suffix, dir=output.parent)
    os.close(fd)
    t0 = time.perf_counter()
    try:
        if output.suffix == ".npy":
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=x1.dtype, shape=shape)
            limit_kernel(x1, x2, get=kinds[0], out=out, **common)
            out.flush()
            del out
        else:
            k = limit_kernel(x1, x2, get=kinds, **common)
            with open(tmp, "wb") as f:
                np.savez(f, **{kind: getattr(k, kind) for kind in kinds})
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
    return {"kinds": kinds, "shape": shape, "seconds": time.perf_counter() - t0}


def run_regress(args: argparse.Namespace) -> dict[str, Any]:
    """Fits a KernelRegressor on X, y and writes its predictions at the test inputs (t = ∞,
    or the MSE flow's mean at ``--times``) to a .npy file, replaced only once complete."""
    from .regression import KernelRegressor

    output = Path(args.output)
    if output.suffix != ".npy":
        raise ValueError(f"{output}: the output must end in .npy")
    _refuse_overwriting_inputs(output, [args.x, args.y, args.test])
    # The Nyström solver streams X from the memmap; the others need it in memory.
    nystrom = args.solver == "nystrom" or (args.solver == "auto" and args.centers is not None)
    x = _load(args.x) if nystrom else as_samples(_load(args.x), "X")
    y = np.asarray(_load(args.y))
    x_test = as_samples(_load(args.test), "the test inputs")
    times = None
    if args.times is not None:
        try:
            times = np.array([float(t) for t in args.times.split(",")])
        except ValueError:
            raise ValueError(
                f"--times must be numbers separated by commas, got {args.times!r}"
            ) from None
    reg = KernelRegressor(
        depth=args.depth,
        activation=_activation(args.activation, args.slope),
        beta=args.beta,
        kernel=args.kernel,
        ridge=args.ridge,
        dtype="float32" if args.float32 else "float64",
        solver=args.solver,
        tol=args.tol,
        max_iter=args.max_iter,
        preconditioner_size=args.preconditioner_size,
        kernel_storage=args.kernel_storage,
        centers=args.centers,
        progress=None if not args.quiet else False,
    )
    t0 = time.perf_counter()
    reg.fit(x, y)
    prediction = reg.predict(x_test, t=times)
    fd, tmp = tempfile.mkstemp(prefix=".ntkfast-", suffix=".npy", dir=output.parent)
    os.close(fd)
    try:
        np.save(tmp, prediction)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
    return {
        "shape": prediction.shape,
        "solver": reg.solver_,
        "iterations": reg.n_iter_,
        "residual": reg.residual_,
        "seconds": time.perf_counter() - t0,
    }


def _demo(args: argparse.Namespace) -> None:
    """A small end-to-end run through the `kernel` command on built-in data."""
    rng = np.random.default_rng(0)
    gammas = np.linspace(-3, 3, 13)
    circle = np.stack([np.cos(gammas), np.sin(gammas)], axis=1)
    cloud = rng.standard_normal((args.n, 2))
    with tempfile.TemporaryDirectory() as tmp:
        xpath, ypath, kpath = (str(Path(tmp) / name) for name in ("x.npy", "y.npy", "k.npz"))
        np.save(xpath, np.vstack([[1.0, 0.0], cloud]))
        np.save(ypath, circle)
        common = ["--depth", "4", "--activation", "relu", "--beta", "0.1"]
        cross = run_kernel(_parser().parse_args(["kernel", xpath, ypath, *common, "-o", kpath]))
        theta = np.load(kpath)["ntk"][0]
        gram = run_kernel(_parser().parse_args(["kernel", xpath, *common, "-o", kpath]))
        k = np.load(kpath)
    print(f"ntkfast demo: ReLU network, depth L = 4, beta = 0.1, {get_num_threads()} threads")
    print("Limiting NTK Θ∞(x0, x) for x0 = (1, 0), x = (cos γ, sin γ):")
    for g, t in zip(gammas, theta):
        print(f"  γ = {g:+.2f}   Θ∞ = {t:.6f}")
    n = gram["shape"][0]
    eig = np.linalg.eigvalsh(k["ntk"])
    print(
        f"Gram matrices of {n} Gaussian inputs: {gram['seconds'] * 1e3:.1f} ms "
        f"(cross kernel: {cross['seconds'] * 1e3:.1f} ms); symmetric: "
        f"{bool(np.array_equal(k['ntk'], k['ntk'].T))}, smallest NTK eigenvalue / largest: "
        f"{eig[0] / eig[-1]:.2e}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ntkfast", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="number of threads")
    sub = parser.add_subparsers(dest="command", required=True)

    kernel = sub.add_parser("kernel", help="infinite-width NNGP kernel and NTK of .npy inputs")
    kernel.add_argument("x", help="inputs X (N1, n0) as .npy")
    kernel.add_argument("y", nargs="?", default=None, help="optional second inputs (N2, n0)")
    kernel.add_argument("--depth", type=int, required=True, help="number of dense layers L")
    kernel.add_argument("--activation", default="relu", help=", ".join(activations.NAMES))
    kernel.add_argument("--slope", type=float, default=None, help="negative slope of leaky_relu")
    kernel.add_argument("--beta", type=float, default=0.1, help="bias scale β (default 0.1)")
    kernel.add_argument("--get", default="nngp,ntk", help="nngp, ntk or nngp,ntk")
    kernel.add_argument("--float32", action="store_true", help="compute and store in float32")
    kernel.add_argument(
        "-o", "--output", required=True, help=".npz (named arrays) or .npy (one kernel, streamed)"
    )

    reg = sub.add_parser(
        "regress", help="kernel regression with Θ∞ or Σ: predictions at t = ∞ or along the flow"
    )
    reg.add_argument("x", help="training inputs X (N, n0) as .npy")
    reg.add_argument("y", help="training targets y (N,) or (N, k) as .npy")
    reg.add_argument("--test", required=True, help="test inputs (M, n0) as .npy")
    reg.add_argument("--depth", type=int, required=True, help="number of dense layers L")
    reg.add_argument("--activation", default="relu", help=", ".join(activations.NAMES))
    reg.add_argument("--slope", type=float, default=None, help="negative slope of leaky_relu")
    reg.add_argument("--beta", type=float, default=0.1, help="bias scale β (default 0.1)")
    reg.add_argument("--kernel", default="ntk", help="ntk (default) or nngp")
    reg.add_argument("--ridge", type=float, default=0.0, help="added to the kernel's diagonal")
    reg.add_argument("--solver", default="auto", help="auto, direct, cg or nystrom")
    reg.add_argument("--tol", type=float, default=1e-8, help="relative residual of CG")
    reg.add_argument("--max-iter", type=int, default=None, help="most CG iterations")
    reg.add_argument(
        "--preconditioner-size", type=int, default=None, help="rank of CG's preconditioner"
    )
    reg.add_argument(
        "--centers",
        type=int,
        default=None,
        help="Nyström solver: number of centres M (default 10 √N; implies --solver nystrom)",
    )
    reg.add_argument(
        "--kernel-storage",
        default="auto",
        help="CG's products: auto, float64, float32 (refined in float64) or none (matrix-free); "
        "Nyström's K(X, C): auto, float64 or none",
    )
    reg.add_argument("--times", default=None, help="times of the MSE flow, e.g. 1,10,inf")
    reg.add_argument("--float32", action="store_true", help="float32 kernel products")
    reg.add_argument("--quiet", action="store_true", help="no progress bar")
    reg.add_argument("-o", "--output", required=True, help="predictions as .npy")

    demo = sub.add_parser("demo", help="a quick run on built-in data")
    demo.add_argument("--n", type=int, default=2000, help="number of random inputs")

    rep = sub.add_parser(
        "reproduce",
        help="the experiments of Jacot et al. (2018): figures, summary and report "
        '(needs pip install "ntkfast[paper]")',
    )
    rep.add_argument("--figure", default="all", help="1, 2, 3 or all")
    rep.add_argument(
        "--mnist", default=None, help="MNIST IDX folder/file or .npz for figure 3 (else digits)"
    )
    rep.add_argument("--out", default="ntkfast-reproduce", help="output folder")
    group = rep.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="small widths, few seeds (< 1 min)")
    group.add_argument("--paper", action="store_true", help="the paper's exact settings (slow)")
    rep.add_argument("--seed", type=int, default=0, help="seed of data and initialisations")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _reproduce(args: argparse.Namespace) -> None:
    from .reproduce import FIGURES, check_dependencies, run

    wanted: tuple[int, ...]
    if args.figure == "all":
        wanted = FIGURES
    elif args.figure in {str(f) for f in FIGURES}:
        wanted = (int(args.figure),)
    else:
        raise ValueError(f"unknown figure {args.figure!r}; choose 1, 2, 3 or all")
    if args.seed < 0:
        raise ValueError(f"--seed must be ≥ 0, got {args.seed}")
    check_dependencies(wanted, args.mnist)  # before the output folder is made
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".ntkfast-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to the output folder {out}: {err.strerror}") from None
    if args.mnist is not None and 3 in wanted:
        from .data import load_mnist

        load_mnist(args.mnist, n=None)  # a bad file fails here, before any training
    summary = run(
        wanted,
        out,
        quick=args.quick,
        paper=args.paper,
        seed=args.seed,
        quiet=args.quiet,
        mnist=args.mnist,
    )
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    print(f"ntkfast reproduce ({summary['settings_name']} settings): {summary['seconds']:.0f} s")
    print(f"wrote {', '.join(written)} to {out.resolve()}")
    print((out / "report.md").read_text())


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.threads is not None:
            set_num_threads(args.threads)
        if args.command == "kernel":
            summary = run_kernel(args)
            rows, cols = summary["shape"]
            print(
                f"wrote {', '.join(summary['kinds'])} ({rows} x {cols}) to {args.output} "
                f"in {summary['seconds']:.3f} s"
            )
        elif args.command == "regress":
            summary = run_regress(args)
            print(
                f"wrote predictions {summary['shape']} to {args.output} in "
                f"{summary['seconds']:.3f} s ({summary['solver']}, {summary['iterations']} "
                f"iterations, relative residual {summary['residual']:.1e})"
            )
        elif args.command == "reproduce":
            _reproduce(args)
        else:
            _demo(args)
    except (ValueError, TypeError, MemoryError, OSError, MissingExtraError) as err:
        # MissingExtraError: an optional dependency is missing; its message names the extra.
        print(f"ntkfast: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: a one-line message and the shell's conventional status, no traceback.
        print("ntkfast: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
