"""Slow, independent NumPy reference for the infinite-width recursion.

Written directly from the formulas of the paper's sequential limit and the dual-activation
table, in the D / θ = atan2(√D, q12) notation (the Rust core works with ρ and its own arcsine),
over whole matrices with NumPy's own transcendental functions.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import expit, roots_hermitenorm

PI = np.pi

#: σ and σ' in NumPy for the activations without a closed-form dual.
SMOOTH = {
    "tanh": (np.tanh, lambda x: 4.0 * np.exp(-2 * np.abs(x)) / (1.0 + np.exp(-2 * np.abs(x))) ** 2),
    "sigmoid": (expit, lambda x: expit(x) * expit(-x)),
    "softplus": (lambda x: np.logaddexp(0.0, x), expit),
    "silu": (lambda x: x * expit(x), lambda x: expit(x) * (1.0 + x * expit(-x))),
}


def _nodes(q_max):
    """Gauss–Hermite nodes for the weight φ, more for steeper σ(√q z): 3000 nodes reach
    about 1e-13 for tanh at q = 25 (checked against 4000 and 6000)."""
    return _normalised(int(np.clip(400 + 110 * q_max, 400, 3000)))


def quadrature_dual(name, q11, q22, q12, nodes=None):
    """(Σ, Σ̇) by a nested Gauss–Hermite rule, one pair at a time.

    u = √q11 z1 and v = √q22 (ρ z1 + √(1 − ρ²) z2) with z1, z2 independent standard
    normals: a tensor-product rule over (z1, z2), independent of the Hermite series in the
    Rust core. ``nodes`` (default: growing with the variances) sets the rule's size.
    """
    f, df = SMOOTH[name]
    q11, q22, q12 = np.broadcast_arrays(*map(np.asarray, (q11, q22, q12)))
    out_s, out_d = np.empty(q11.shape), np.empty(q11.shape)
    for idx in np.ndindex(q11.shape):
        a, b, c = float(q11[idx]), float(q22[idx]), float(q12[idx])
        z, w = _nodes(max(a, b)) if nodes is None else _normalised(nodes)
        rho = np.clip(c / np.sqrt(a * b), -1.0, 1.0) if a > 0 and b > 0 else 0.0
        u = np.sqrt(a) * z
        v = np.sqrt(b) * (rho * z[:, None] + np.sqrt(1.0 - rho * rho) * z[None, :])
        out_s[idx] = w @ (f(u) * (f(v) @ w))
        out_d[idx] = w @ (df(u) * (df(v) @ w))
    return out_s, out_d


@functools.cache
def _normalised(n):
    z, w = roots_hermitenorm(n)
    return z, w / w.sum()


def _relu_like(neg, pos, q11, q22, q12, d):
    sd = np.sqrt(d)
    th = np.arctan2(sd, q12)
    kp = (sd + (PI - th) * q12) / (2 * PI)
    km = (sd - th * q12) / (2 * PI)
    s = (neg**2 + pos**2) * kp - 2 * neg * pos * km
    sdot = ((neg**2 + pos**2) * (PI - th) + 2 * neg * pos * th) / (2 * PI)
    return s, sdot


def dual(name, q11, q22, q12, param=0.0):
    """(Σ, Σ̇) = (E[σ(u)σ(v)], E[σ'(u)σ'(v)]) for (u, v) ~ N(0, [[q11, q12], [q12, q22]])."""
    q11, q22, q12 = np.broadcast_arrays(*map(np.asarray, (q11, q22, q12)))
    d = np.maximum(q11 * q22 - q12 * q12, 0.0)
    if name == "relu":
        return _relu_like(0.0, 1.0, q11, q22, q12, d)
    if name == "leaky_relu":
        return _relu_like(param, 1.0, q11, q22, q12, d)
    if name == "abs":
        return _relu_like(-1.0, 1.0, q11, q22, q12, d)
    if name == "erf":
        a, b = 1 + 2 * q11, 1 + 2 * q22
        return (
            2 / PI * np.arcsin(np.clip(2 * q12 / np.sqrt(a * b), -1, 1)),
            4 / PI / np.sqrt(a * b - 4 * q12**2),
        )
    if name == "gelu":
        p = (1 + q11) * (1 + q22)
        delta = np.sqrt(p - q12**2)
        at = np.arctan(q12 / delta)
        s = q12 / 4 + (q12 * at + (q12**2 + q11 * q22 * delta**2) / (p * delta)) / (2 * PI)
        sdot = (
            0.25 + at / (2 * PI) + q12 / (2 * PI * delta) * (1 / delta**2 + (1 - q11 * q22) / p + 1)
        )
        return s, sdot
    if name in ("sin", "cos"):
        damp = np.exp(-(q11 + q22) / 2)
        sh, ch = damp * np.sinh(q12), damp * np.cosh(q12)
        return (sh, ch) if name == "sin" else (ch, sh)
    if name == "identity":
        return q12.copy(), np.ones_like(q12)
    if name in SMOOTH:
        return quadrature_dual(name, q11, q22, q12)
    raise ValueError(name)


def limit_kernel(x1, x2=None, *, depth, activation="relu", beta=0.1, param=0.0):
    """Returns (nngp, ntk, closeness) with closeness = min over layers of 1 − |ρ| per entry.

    For x2=None the diagonal starts from q11 = q22 = q12 exactly, so D = 0 there at every
    layer and the diagonal is exact.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    symmetric = x2 is None
    x2 = x1 if symmetric else np.asarray(x2, dtype=np.float64)
    n0 = x1.shape[1]
    b2 = beta * beta
    q = x1 @ x2.T / n0 + b2
    q1 = np.einsum("ij,ij->i", x1, x1) / n0 + b2
    q2 = np.einsum("ij,ij->i", x2, x2) / n0 + b2
    if symmetric:
        np.fill_diagonal(q, q1)
    theta = q.copy()
    closeness = np.ones_like(q)
    for _ in range(depth - 1):
        qa, qb = np.meshgrid(q1, q2, indexing="ij")
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = q / np.sqrt(qa * qb)
        closeness = np.minimum(closeness, 1 - np.abs(np.nan_to_num(rho)))
        s, sdot = dual(activation, qa, qb, q, param)
        d1, _ = dual(activation, q1, q1, q1, param)
        d2, _ = dual(activation, q2, q2, q2, param)
        q, q1, q2 = s + b2, d1 + b2, d2 + b2
        theta = theta * sdot + q
    return q, theta, closeness


# The parameter generator of docs/networks.md, written out in NumPy.
MASK = 2**64 - 1
GAMMA = 0x9E3779B97F4A7C15


def _mix(z):
    z &= MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def normal_stream(seed, stream, count):
    """The documented generator (docs/networks.md): SplitMix64 words, Box–Muller pairs."""
    key = _mix(_mix(seed) ^ _mix((stream + GAMMA) & MASK))
    words = [_mix((key + (i + 1) * GAMMA) & MASK) for i in range(count + count % 2)]
    u1 = (1 + (np.array(words[0::2], dtype=np.uint64) >> np.uint64(11))) * 2.0**-53
    u2 = (np.array(words[1::2], dtype=np.uint64) >> np.uint64(11)) * 2.0**-53
    r = np.sqrt(-2 * np.log(u1))
    z = np.empty(2 * len(u1))
    z[0::2], z[1::2] = r * np.cos(2 * np.pi * u2), r * np.sin(2 * np.pi * u2)
    return z[:count]
