"""Write ``tests/data/nt_empirical.npz``: finite-width values from neural-tangents 0.6.5.

Run with the neural-tangents virtualenv (``scripts/nt_env.sh``)::

    .venv-nt/bin/python scripts/make_nt_empirical.py [--out tests/data/nt_empirical.npz]

For every case the network is ``stax.serial(Dense(n_1, 1., beta, "ntk"), Act(), …,
Dense(n_L, 1., beta, "ntk"))`` evaluated in float64 with parameters drawn here and stored, so
that the tests can hand the same parameters to ntkfast.  neural-tangents keeps W as
(n_in, n_out); the stored ``W`` use ntkfast's (n_out, n_in) layout and are transposed for
neural-tangents.  The empirical NTK uses ``implementation=STRUCTURED_DERIVATIVES`` and is
checked against ``JACOBIAN_CONTRACTION`` before saving: the script stops without writing the
file if they differ by more than ``TOLERANCE`` (1e-12 of the largest entry, the accuracy the
tests hold ntkfast to).

File contents (float64 unless said):

- ``x1`` (6, 4), ``x2`` (3, 4): inputs;
- ``cases``: 0-d str, a JSON list of dicts ``{"activation", "widths", "beta"}`` (plus
  ``"slope"`` for leaky_relu);
- ``case{i}_W{layer}``, ``case{i}_b{layer}``: the parameters;
- ``case{i}_f``: f(x1), (6, n_L);
- ``case{i}_full11`` (6, 6, n_L, n_L) and ``case{i}_full12`` (6, 3, n_L, n_L): NTK with
  ``trace_axes=()``;
- ``case{i}_trace11`` (6, 6): NTK with ``trace_axes=(-1,)``;
- ``versions``: 0-d str, JSON of the package versions used.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # silence TensorFlow
import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import jaxlib  # noqa: E402
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from make_nt_reference import NT_LAYERS  # noqa: E402  (run from scripts/ or the root)
from neural_tangents import stax  # noqa: E402

#: Largest accepted relative difference of the two neural-tangents implementations.
TOLERANCE = 1e-12


def make_cases():
    cases = []
    widths = {0: [4, 3], 1: [4, 9, 3], 2: [4, 8, 7, 2], 3: [4, 6, 6, 5, 1]}
    for i, name in enumerate(NT_LAYERS):
        for j, beta in enumerate((0.0, 0.1, 1.0)):
            case = {"activation": name, "widths": widths[(i + j) % 4 if i else 2], "beta": beta}
            if name == "leaky_relu":
                case["slope"] = 0.2
            cases.append(case)
    return cases


def build(case):
    dense = dict(W_std=1.0, parameterization="ntk", b_std=case["beta"])
    layers = []
    for n in case["widths"][1:-1]:
        layers += [stax.Dense(n, **dense), NT_LAYERS[case["activation"]](case)]
    layers.append(stax.Dense(case["widths"][-1], **dense))
    _, apply_fn, _ = stax.serial(*layers)
    return apply_fn


def nt_params(case, ours):
    """ntkfast's [(W, b)] as neural-tangents' serial parameters (W transposed, () per σ)."""
    out = []
    for layer, (w, b) in enumerate(ours):
        out.append((jnp.asarray(w.T), jnp.asarray(b)))
        if layer + 1 < len(ours):
            out.append(())
    return tuple(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="tests/data/nt_empirical.npz")
    args = ap.parse_args()
    rng = np.random.default_rng(2024)
    x1 = rng.standard_normal((6, 4)) * rng.uniform(0.5, 2.0, size=(6, 1))
    x2 = rng.standard_normal((3, 4))
    cases = make_cases()
    data = {"x1": x1, "x2": x2}
    kw = dict(vmap_axes=0)
    structured = nt.NtkImplementation.STRUCTURED_DERIVATIVES
    contraction = nt.NtkImplementation.JACOBIAN_CONTRACTION
    worst = 0.0
    for i, case in enumerate(cases):
        widths = case["widths"]
        ours = [
            (rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out))
            for n_in, n_out in zip(widths[:-1], widths[1:])
        ]
        apply_fn = build(case)
        params = nt_params(case, ours)
        full = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=structured, **kw)
        check = nt.empirical_ntk_fn(apply_fn, trace_axes=(), implementation=contraction, **kw)
        trace = nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), implementation=structured, **kw)
        for layer, (w, b) in enumerate(ours):
            data[f"case{i}_W{layer}"] = w
            data[f"case{i}_b{layer}"] = b
        data[f"case{i}_f"] = np.asarray(apply_fn(params, x1))
        data[f"case{i}_full11"] = np.asarray(full(x1, None, params))
        data[f"case{i}_full12"] = np.asarray(full(x1, x2, params))
        data[f"case{i}_trace11"] = np.asarray(trace(x1, None, params))
        other = np.asarray(check(x1, x2, params))
        scale = np.abs(other).max()
        worst = max(worst, np.abs(other - data[f"case{i}_full12"]).max() / scale)
    print(f"structured vs Jacobian contraction: max relative difference {worst:.2e}")
    if not worst <= TOLERANCE:
        raise SystemExit(
            f"structured derivatives and Jacobian contraction differ by {worst:.2e} (more "
            f"than {TOLERANCE:g}); nothing written"
        )
    data["cases"] = np.array(json.dumps(cases))
    versions = {
        "neural_tangents": nt.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
    }
    data["versions"] = np.array(json.dumps(versions))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **data)
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
