"""Time neural-tangents 0.6.5 limit kernels (Sigma and Theta) for side-by-side comparisons.

Run with the neural-tangents virtualenv (``scripts/nt_env.sh``), e.g.::

    .venv-nt/bin/python benchmarks/nt_timing.py --workload relu --n 4096 --n0 784 \\
        --depth 4 --dtype float32 --repeat 3

Network: ``stax.serial(*[Dense(512, 1., beta, "ntk"), Act()] * (depth - 1),
Dense(1, 1., beta, "ntk"))`` with Act = ``Relu()`` (closed form) or
``ElementwiseNumerical(jnp.tanh, deg=25)`` (NT's Gauss-Hermite default), or, for
``--workload kinked``, ``ElementwiseNumerical(fn, deg=25)`` with the piecewise-linear ``fn``
named by ``--activation`` (sign, hard_tanh, relu6, five: the same pieces as
``benchmarks/compare.py``'s kinked workload; NT differentiates ``fn`` by autodiff, which gives
each piece's slope, the same σ' as ntkfast's).
Data: ``numpy.random.default_rng(0).standard_normal((n, n0))`` cast to ``--dtype``;
the kernel is K(x, x) (``x2=None``).  ``--workload regression`` times neural-tangents'
route to kernel regression at large N instead: ``nt.batch``-ed kernels K(X, X) and K(X*, X)
(``--n-test`` rows of ``default_rng(1)``), ridge ``--ridge-scale`` × the mean diagonal, then
SciPy's ``cho_factor``/``cho_solve`` (NT's own ``predict.gradient_descent_mse`` dies at this
size); ``--save`` then writes the predictions.  The jitted ``kernel_fn`` is run once to compile
and warm up, then timed ``--repeat`` times (``block_until_ready``).  Prints one JSON
line; ``--save PATH`` writes ``np.stack([nngp, ntk])`` of shape (2, n, n) to PATH.npy.
"""

import argparse
import json
import os
import statistics
import sys
import time

#: (breaks, slopes, intercepts) of the kinked activations; piece k is intercepts[k] +
#: slopes[k] * x between breaks k - 1 and k.
PIECES = {
    "sign": ([0.0], [0.0, 0.0], [-1.0, 1.0]),
    "hard_tanh": ([-1.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 1.0]),
    "relu6": ([0.0, 6.0], [0.0, 1.0, 0.0], [0.0, 0.0, 6.0]),
    "five": ([-2.0, -0.5, 0.5, 2.0], [0.1, -0.7, 1.3, 2.0, 0.2], [0.3, -1.3, -0.1, 0.4, 4.0]),
}


def main():
    """Parse arguments, build and time the kernel function."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", choices=("relu", "tanh", "kinked", "regression"), default="relu")
    ap.add_argument("--activation", choices=tuple(PIECES), default="hard_tanh")
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--ridge-scale", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--n0", type=int, default=784)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--save", default=None, help="write the (2, n, n) kernels to this .npy")
    args = ap.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # silence TensorFlow
    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np
    from neural_tangents import stax

    if args.workload in ("relu", "regression"):
        act = stax.Relu()
    elif args.workload == "kinked":
        breaks, slopes, intercepts = (jnp.asarray(v) for v in PIECES[args.activation])

        def fn(u):
            k = jnp.searchsorted(breaks, u, side="right")
            return intercepts[k] + slopes[k] * u

        act = stax.ElementwiseNumerical(fn, deg=25)
    else:
        act = stax.ElementwiseNumerical(jnp.tanh, deg=25)
    dense = dict(W_std=1.0, b_std=args.beta, parameterization="ntk")
    _, _, kernel_fn = stax.serial(
        *[stax.Dense(512, **dense), act] * (args.depth - 1), stax.Dense(1, **dense)
    )
    if args.workload == "regression":
        return regression(args, kernel_fn, nt, np, jax)
    kernel_fn = jax.jit(kernel_fn, static_argnames="get")
    x = np.random.default_rng(0).standard_normal((args.n, args.n0)).astype(args.dtype)
    x = jax.device_put(x)

    def run():
        k = kernel_fn(x, None, get=("nngp", "ntk"))
        return jax.block_until_ready(k)

    k = run()  # compile + warm-up
    assert k.ntk.dtype == np.dtype(args.dtype), k.ntk.dtype
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        k = run()
        times.append(time.perf_counter() - t0)
    if args.save:
        np.save(args.save, np.stack([np.asarray(k.nngp), np.asarray(k.ntk)]))
    result = {
        "workload": args.workload,
        "activation": args.activation if args.workload == "kinked" else None,
        "seconds_min": min(times),
        "seconds_median": statistics.median(times),
        "n": args.n,
        "n0": args.n0,
        "depth": args.depth,
        "beta": args.beta,
        "dtype": args.dtype,
        "repeat": args.repeat,
        "neural_tangents": nt.__version__,
        "jax": jax.__version__,
    }
    print(json.dumps(result))
    sys.stdout.flush()


def regression(args, kernel_fn, nt, np, jax):
    """Batched NTKs, then a dense Cholesky solve and the test predictions (one run)."""
    import scipy.linalg

    x = np.random.default_rng(0).standard_normal((args.n, args.n0)).astype(args.dtype)
    xt = np.random.default_rng(1).standard_normal((args.n_test, args.n0)).astype(args.dtype)
    y = np.sin(x[:, 0]).astype(np.float64)
    # Jitted before batching (get static), with device_count=0: jit over the one CPU device.
    jitted = jax.jit(kernel_fn, static_argnames="get")
    batched = nt.batch(jitted, batch_size=args.batch, store_on_device=False, device_count=0)
    batched(x[: 2 * args.batch], None, get="ntk")  # compile both block shapes once, untimed
    t0 = time.perf_counter()
    k = np.array(batched(x, None, get="ntk"), dtype=np.float64)
    kt = np.asarray(batched(xt, x, get="ntk"), dtype=np.float64)
    t_kernels = time.perf_counter() - t0
    k[np.diag_indices(args.n)] += args.ridge_scale * float(np.mean(np.diag(k)))
    factor = scipy.linalg.cho_factor(k, lower=True, overwrite_a=True, check_finite=False)
    prediction = kt @ scipy.linalg.cho_solve(factor, y, check_finite=False)
    seconds = time.perf_counter() - t0
    if args.save:
        np.save(args.save, prediction)
    print(
        json.dumps(
            {
                "workload": "regression",
                "seconds_min": seconds,
                "seconds_kernels": t_kernels,
                "n": args.n,
                "n_test": args.n_test,
                "dtype": args.dtype,
                "neural_tangents": nt.__version__,
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
