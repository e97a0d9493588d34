"""Write ``tests/data/nt_reference.npz``: limit kernels from neural-tangents 0.6.5.

Run with the neural-tangents virtualenv (``scripts/nt_env.sh``)::

    .venv-nt/bin/python scripts/make_nt_reference.py [--out tests/data/nt_reference.npz]

For every case the network of depth L is
``stax.serial(*[Dense(512, 1., beta, "ntk"), Act()] * (L - 1), Dense(1, 1., beta, "ntk"))``,
which is the recursion of docs/kernels.md, evaluated in float64.  Before saving, the
neural-tangents numbers are checked against an independent NumPy transcription of
the closed forms of docs/kernels.md (rust/src/duals.rs): the largest differences are printed,
and the script stops without writing the file if one exceeds ``TOLERANCE`` (1e-12 of the
kernel's scale, exactly (anti)parallel pairs included; the stored file is within 2.3e-15).

File contents (all float64 unless said):

- ``x1`` (7, 5) and ``x2`` (4, 5): inputs with row norms scaled by 0.3 … 3;
  ``x1[1] = 2 x1[0]`` (parallel), ``x1[2] = -x1[3]`` (antiparallel),
  ``x2[0] = 0.5 x1[4]`` and ``x2[1] = -x1[5]`` (across the two sets).
  With beta = 0 these pairs sit exactly at rho = +1 / -1 in every layer.
- ``cases``: 0-d str, a JSON list of dicts ``{"activation", "depth", "beta", "x2"}``
  (plus ``"slope"`` for leaky_relu); ``"x2": false`` means ``kernel_fn(x1, None)``.
- ``case{i}_nngp``, ``case{i}_ntk``: (7, 7) or (7, 4), Sigma^(L) and Theta^(L).
- ``versions``: 0-d str, JSON of the package versions used.
"""

import argparse
import json
import math
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # silence TensorFlow
import jax

jax.config.update("jax_enable_x64", True)

import jaxlib  # noqa: E402
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

LEAKY_SLOPE = 0.2
#: Largest accepted difference between neural-tangents and the NumPy check, relative to the
#: kernel's scale (tests/test_neural_tangents.py holds ntkfast to the same).
TOLERANCE = 1e-12
NT_LAYERS = {
    "relu": lambda c: stax.Relu(),
    "leaky_relu": lambda c: stax.LeakyRelu(c["slope"]),
    "abs": lambda c: stax.Abs(),
    "erf": lambda c: stax.Erf(a=1.0, b=1.0, c=0.0),
    "gelu": lambda c: stax.Gelu(approximate=False),
    "sin": lambda c: stax.Sin(a=1.0, b=1.0, c=0.0),
    "cos": lambda c: stax.Sin(a=1.0, b=1.0, c=math.pi / 2),
    "identity": lambda c: stax.Identity(),
}


def make_inputs():
    """Fixed-seed inputs with differing row norms and exact (anti)parallel pairs."""
    rng = np.random.default_rng(1234)
    x = rng.standard_normal((11, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x *= rng.uniform(0.3, 3.0, size=(11, 1)) * math.sqrt(5)
    x1, x2 = x[:7].copy(), x[7:].copy()
    x1[1] = 2.0 * x1[0]
    x1[2] = -x1[3]
    x2[0] = 0.5 * x1[4]
    x2[1] = -x1[5]
    return x1, x2


def make_cases():
    """All (activation, depth, beta, x2-given) combinations stored in the file."""
    cases = []
    for act in NT_LAYERS:
        depths = [1, 2, 3, 4, 5] if act == "relu" else [2, 3]
        for depth in depths:
            for beta in (0.0, 0.1, 1.0):
                for has_x2 in (False, True):
                    c = {"activation": act, "depth": depth, "beta": beta, "x2": has_x2}
                    if act == "leaky_relu":
                        c["slope"] = LEAKY_SLOPE
                    cases.append(c)
    return cases


def nt_kernels(case, x1, x2):
    """(nngp, ntk) from neural-tangents for one case."""
    beta, act = case["beta"], NT_LAYERS[case["activation"]](case)
    hidden = [stax.Dense(512, W_std=1.0, b_std=beta, parameterization="ntk"), act]
    _, _, kernel_fn = stax.serial(
        *hidden * (case["depth"] - 1),
        stax.Dense(1, W_std=1.0, b_std=beta, parameterization="ntk"),
    )
    k = kernel_fn(x1, x2 if case["x2"] else None, ("nngp", "ntk"))
    return np.asarray(k.nngp), np.asarray(k.ntk)


def closed_form(case, q11, q22, q12, diag):
    """Closed-form (Sigma, Sigma_dot) for covariances q11 (N1,1), q22 (1,N2), q12."""
    act = case["activation"]
    if act in ("relu", "leaky_relu", "abs"):
        a, b = {"relu": (0.0, 1.0), "abs": (-1.0, 1.0)}.get(act, (case.get("slope"), 1.0))
        d = np.where(diag, 0.0, np.maximum(q11 * q22 - q12**2, 0.0))
        th = np.where(diag, 0.0, np.arctan2(np.sqrt(d), q12))
        kp = (np.sqrt(d) + (np.pi - th) * q12) / (2 * np.pi)
        km = (np.sqrt(d) - th * q12) / (2 * np.pi)
        s = (a * a + b * b) * kp - 2 * a * b * km
        sd = ((a * a + b * b) * (np.pi - th) + 2 * a * b * th) / (2 * np.pi)
        return s, sd
    if act == "erf":
        p = (1 + 2 * q11) * (1 + 2 * q22)
        return 2 / np.pi * np.arcsin(2 * q12 / np.sqrt(p)), 4 / np.pi / np.sqrt(p - 4 * q12**2)
    if act == "gelu":
        p = (1 + q11) * (1 + q22)
        dl = np.sqrt(p - q12**2)
        at = np.arctan(q12 / dl)
        s = q12 / 4 + (q12 * at + (q12**2 + q11 * q22 * dl**2) / (p * dl)) / (2 * np.pi)
        sd = (
            0.25 + at / (2 * np.pi) + q12 / (2 * np.pi * dl) * (1 / dl**2 + (1 - q11 * q22) / p + 1)
        )
        return s, sd
    e = np.exp(-(q11 + q22) / 2)
    if act == "sin":
        return e * np.sinh(q12), e * np.cosh(q12)
    if act == "cos":
        return e * np.cosh(q12), e * np.sinh(q12)
    return q12, np.ones_like(q12)  # identity


def numpy_kernels(case, x1, x2):
    """Independent NumPy recursion with the closed forms; also returns rho^(1)."""
    x2v = x2 if case["x2"] else x1
    n0, b2 = x1.shape[1], case["beta"] ** 2
    diag = np.zeros((len(x1), len(x2v)), bool) if case["x2"] else np.eye(len(x1), dtype=bool)
    # Norms and cross products through the same reduction, so that exactly parallel
    # inputs give D = 0 exactly (a BLAS x1 @ x2.T sums in another order: D ~ 1e-16
    # and sqrt(D) errors of 1e-8 in Sigma_dot).
    s = (x1[:, None, :] * x2v[None, :, :]).sum(-1) / n0 + b2
    q1 = ((x1 * x1).sum(-1) / n0 + b2)[:, None]
    q2 = ((x2v * x2v).sum(-1) / n0 + b2)[None, :]
    rho1 = s / np.sqrt(q1 * q2)
    ntk = s
    for _ in range(case["depth"] - 1):
        s, sd = closed_form(case, q1, q2, s, diag)
        s, ntk = s + b2, ntk * sd + s + b2
        q1 = closed_form(case, q1, q1, q1, True)[0] + b2
        q2 = closed_form(case, q2, q2, q2, True)[0] + b2
    return s, ntk, rho1


def self_diag(case, x):
    """Diagonals of (nngp, ntk) of K(x, x) from the NumPy recursion."""
    s, t, _ = numpy_kernels({**case, "x2": False}, x, None)
    return s.diagonal(), t.diagonal()


def check(cases, x1, x2, results):
    """Print NT-vs-NumPy differences, scaled by sqrt(K(x,x) K(x',x')) of the NumPy kernel.

    "gen" = entries with |rho^(1)| < 1 - 1e-12, "edge" = the others (diagonal and the
    exactly (anti)parallel pairs at beta = 0).  Returns the worst values per activation.
    """
    print("case activation  L beta  x2  | nngp gen  ntk gen  | nngp edge ntk edge")
    worst = {}
    for i, c in enumerate(cases):
        ref = numpy_kernels(c, x1, x2)
        edge = np.abs(ref[2]) > 1 - 1e-12
        d1, d2 = self_diag(c, x1), self_diag(c, x2 if c["x2"] else x1)
        errs = []
        for k in (0, 1):
            err = np.abs(results[i][k] - ref[k]) / np.sqrt(np.outer(d1[k], d2[k]))
            errs += [err[~edge].max(initial=0.0), err[edge].max(initial=0.0)]
        sg, se, tg, te = errs
        w = worst.setdefault(c["activation"], [0.0] * 4)
        worst[c["activation"]] = [max(u, v) for u, v in zip(w, (sg, tg, se, te))]
        print(
            f"{i:4d} {c['activation']:>10} {c['depth']} {c['beta']:4} {c['x2']!s:>5} |"
            f" {sg:8.1e} {tg:8.1e} | {se:8.1e} {te:8.1e}"
        )
    print("worst per activation:  nngp gen  ntk gen   nngp edge ntk edge")
    for act, w in worst.items():
        print(f"  {act:>10}:        " + " ".join(f"{v:8.1e}" for v in w))
    return worst


def main():
    """Compute, check and save the reference kernels."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    root = Path(__file__).resolve().parents[1]
    ap.add_argument("--out", type=Path, default=root / "tests" / "data" / "nt_reference.npz")
    args = ap.parse_args()

    x1, x2 = make_inputs()
    cases = make_cases()
    results = [nt_kernels(c, x1, x2) for c in cases]
    worst = check(cases, x1, x2, results)
    bad = {act: max(w) for act, w in worst.items() if not max(w) <= TOLERANCE}
    if bad:
        raise SystemExit(
            f"neural-tangents and the NumPy check differ by more than {TOLERANCE:g} of the "
            f"kernel's scale ({', '.join(f'{a}: {e:.1e}' for a, e in bad.items())}); "
            "nothing written"
        )

    versions = {
        "neural_tangents": nt.__version__,
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": np.__version__,
    }
    arrays = {"x1": x1, "x2": x2, "cases": np.array(json.dumps(cases))}
    arrays["versions"] = np.array(json.dumps(versions))
    for i, (s, t) in enumerate(results):
        assert s.dtype == t.dtype == np.float64
        arrays[f"case{i}_nngp"], arrays[f"case{i}_ntk"] = s, t
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(cases)} cases), {versions}")


if __name__ == "__main__":
    main()
