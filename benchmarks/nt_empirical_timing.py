"""Time neural-tangents 0.6.5 empirical NTKs of an MLP for side-by-side comparisons.

Run with the neural-tangents virtualenv (``scripts/nt_env.sh``), e.g.::

    .venv-nt/bin/python benchmarks/nt_empirical_timing.py --params P.npz --n 1024 \\
        --implementation structured --repeat 3

Network: ``stax.serial(Dense(n_1, 1., beta, "ntk"), Relu(), …, Dense(n_L, 1., beta, "ntk"))``
with the widths and parameters stored in ``--params`` (an .npz with ``widths`` and ntkfast's
``W{l}`` (n_out, n_in) and ``b{l}``; W is transposed to neural-tangents' layout).
Data: ``numpy.random.default_rng(0).standard_normal((n, widths[0]))`` cast to ``--dtype``.
``nt.empirical_ntk_fn(apply_fn, trace_axes=..., vmap_axes=0, implementation=...)`` with
``trace_axes=(-1,)`` for ``--output trace`` and ``()`` for ``full``, jitted, run once to
compile, then timed ``--repeat`` times.  Prints one JSON line; ``--save PATH`` writes the
kernel to PATH (.npy).
"""

import argparse
import json
import os
import statistics
import sys
import time


def main():
    """Parse arguments, build and time the empirical kernel function."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", required=True)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--output", choices=("trace", "full"), default="trace")
    ap.add_argument("--implementation", choices=("structured", "contraction"), default="structured")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--save", default=None)
    args = ap.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # silence TensorFlow
    import jax

    jax.config.update("jax_enable_x64", args.dtype == "float64")
    import jax.numpy as jnp
    import neural_tangents as nt
    import numpy as np
    from neural_tangents import stax

    stored = np.load(args.params)
    widths = [int(w) for w in stored["widths"]]
    dense = dict(W_std=1.0, b_std=args.beta, parameterization="ntk")
    layers, params = [], []
    for i, n_out in enumerate(widths[1:]):
        layers.append(stax.Dense(n_out, **dense))
        params.append(
            (
                jnp.asarray(stored[f"W{i}"].T.astype(args.dtype)),
                jnp.asarray(stored[f"b{i}"].astype(args.dtype)),
            )
        )
        if i + 2 < len(widths):
            layers.append(stax.Relu())
            params.append(())
    _, apply_fn, _ = stax.serial(*layers)
    implementation = {
        "structured": nt.NtkImplementation.STRUCTURED_DERIVATIVES,
        "contraction": nt.NtkImplementation.JACOBIAN_CONTRACTION,
    }[args.implementation]
    ntk_fn = jax.jit(
        nt.empirical_ntk_fn(
            apply_fn,
            trace_axes=(-1,) if args.output == "trace" else (),
            vmap_axes=0,
            implementation=implementation,
        )
    )
    x = np.random.default_rng(0).standard_normal((args.n, widths[0])).astype(args.dtype)
    x = jax.device_put(x)
    params = tuple(params)

    def run():
        return jax.block_until_ready(ntk_fn(x, None, params))

    k = run()  # compile + warm-up
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        k = run()
        times.append(time.perf_counter() - t0)
    if args.save:
        np.save(args.save, np.asarray(k))
    print(
        json.dumps(
            {
                "seconds_min": min(times),
                "seconds_median": statistics.median(times),
                "n": args.n,
                "widths": widths,
                "output": args.output,
                "implementation": args.implementation,
                "dtype": args.dtype,
                "neural_tangents": nt.__version__,
                "jax": jax.__version__,
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
