"""Slow, independent NumPy references for the tests.

The infinite-width recursion, written directly from the formulas of the paper's sequential
limit and the dual-activation table, in the D / θ = atan2(√D, q12) notation (the Rust core
works with ρ and its own arcsine), over whole matrices with NumPy's own transcendental
functions. Finite-width networks (forward pass, forward-mode Jacobian) and the parameter
generator of docs/networks.md.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import erf, expit, roots_hermitenorm

PI = np.pi
#: |ρ| within this of 1 counts as ±1 (as in the core's ``correlation``, rust/src/duals.rs):
#: q₁₂ and the variances are rounded separately, so exactly (anti)parallel inputs get
#: |ρ| = 1 − a few ulps, and √D ∝ √(1 − ρ²) would turn that into an error of 1e-8.
SNAP = 8 * np.finfo(np.float64).eps

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
        rho = np.sign(rho) if abs(rho) >= 1 - SNAP else rho
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
    parallel = np.abs(q12) >= (1 - SNAP) * np.sqrt(q11 * q22)  # ρ = ±1 (see SNAP)
    d = np.where(parallel, 0.0, np.maximum(q11 * q22 - q12 * q12, 0.0))
    if name == "relu":
        return _relu_like(0.0, 1.0, q11, q22, q12, d)
    if name == "leaky_relu":
        return _relu_like(param, 1.0, q11, q22, q12, d)
    if name == "abs":
        return _relu_like(-1.0, 1.0, q11, q22, q12, d)
    # Below, (1 + a q11)(1 + a q22) − a² q12² is expanded as 1 + a (q11 + q22) + a² D, and
    # no product has three variances: exact on the diagonal and finite up to q = 1e150.
    if name == "erf":
        a, b = 1 + 2 * q11, 1 + 2 * q22
        return (
            2 / PI * np.arcsin(np.clip(2 * q12 / np.sqrt(a * b), -1, 1)),
            4 / PI / np.sqrt(1 + 2 * (q11 + q22) + 4 * d),
        )
    if name == "gelu":
        p = (1 + q11) * (1 + q22)
        delta = np.sqrt(1 + q11 + q22 + d)  # √(p − q12²)
        at = np.arctan(q12 / delta)
        r = (q11 / (1 + q11)) * (q22 / (1 + q22))  # q11 q22 / p
        s = q12 / 4 + (q12 * at + q12 * (q12 / p) / delta + r * delta) / (2 * PI)
        sdot = 0.25 + at / (2 * PI) + q12 / (2 * PI * delta) * (1 / delta**2 + 1 / p - r + 1)
        return s, sdot
    if name in ("sin", "cos"):
        # e^{−(q11 + q22)/2} (sinh, cosh) q12 = e^{|q12| − (q11 + q22)/2} (1 ∓ e^{−2|q12|})/2:
        # the exponent is ≤ 0 (no overflow) and expm1 keeps small q12 accurate.
        a = np.abs(q12)
        half = np.exp(a - (q11 + q22) / 2) / 2
        sh, ch = np.sign(q12) * half * -np.expm1(-2 * a), half * (1 + np.exp(-2 * a))
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


# Finite-width networks, from the definitions of docs/networks.md (a forward-mode Jacobian,
# a different algorithm from the core's back propagation). ``net`` is an ntkfast.MLP.


def sigma(net, z):
    """σ and σ' of net's activation in NumPy, from its definition."""
    name = net.activation.name
    if name == "relu":
        return np.maximum(z, 0), (z > 0).astype(float)
    if name == "leaky_relu":
        s = net.activation.param
        return np.where(z > 0, z, s * z), np.where(z > 0, 1.0, s)
    if name == "abs":
        return np.abs(z), np.where(z >= 0, 1.0, -1.0)
    if name == "erf":
        return erf(z), 2 / np.sqrt(np.pi) * np.exp(-(z**2))
    if name == "gelu":
        cdf = 0.5 * (1 + erf(z / np.sqrt(2)))
        return z * cdf, cdf + z * np.exp(-(z**2) / 2) / np.sqrt(2 * np.pi)
    if name == "sin":
        return np.sin(z), np.cos(z)
    if name == "cos":
        return np.cos(z), -np.sin(z)
    if name == "identity":
        return z, np.ones_like(z)
    if name in SMOOTH:
        f, df = SMOOTH[name]
        return f(z), df(z)
    if name == "custom":  # the user's callables themselves; σ' only where dfn is given
        act = net.activation
        return np.asarray(act.fn(z)), None if act.dfn is None else np.asarray(act.dfn(z))
    raise ValueError(name)


def forward(net, params, x):
    """f_θ(x): α̃⁽ˡ⁺¹⁾ = W⁽ˡ⁾ α⁽ˡ⁾ / √n_l + β b⁽ˡ⁾, α⁽ˡ⁾ = σ(α̃⁽ˡ⁾), no σ on the output."""
    a = x
    for layer, (w, b) in enumerate(params):
        z = a @ w.T / np.sqrt(w.shape[1]) + net.beta * b
        a = sigma(net, z)[0] if layer + 1 < net.depth else z
    return a


def explicit_jacobian(net, params, x):
    """(N, n_L, P) by forward-mode differentiation: the tangent of every layer's
    pre-activation with respect to every parameter, pushed through the network."""
    n, p = x.shape[0], net.num_params
    a = x
    da = np.zeros((n, x.shape[1], p))  # ∂α⁽ˡ⁾/∂θ
    offset = 0
    for layer, (w, b) in enumerate(params):
        n_in, n_out = w.shape[1], w.shape[0]
        z = a @ w.T / np.sqrt(n_in) + net.beta * b
        dz = np.einsum("oq,nqp->nop", w, da) / np.sqrt(n_in)
        for o in range(n_out):  # ∂z_o/∂W[o, q] = α_q / √n_in, ∂z_o/∂b[o] = β
            dz[:, o, offset + o * n_in : offset + (o + 1) * n_in] += a / np.sqrt(n_in)
            dz[:, o, offset + n_out * n_in + o] += net.beta
        offset += n_out * (n_in + 1)
        if layer + 1 < net.depth:
            s, ds = sigma(net, z)
            a, da = s, ds[:, :, None] * dz
        else:
            a, da = z, dz
    return da


def flat(params):
    """The parameters as one vector, in the Jacobian's order: W0.ravel(), b0, W1.ravel(), …"""
    return np.concatenate([np.concatenate([np.ravel(w), np.ravel(b)]) for w, b in params])


def unflat(net, vector):
    """The inverse of ``flat`` for net's widths."""
    out, at = [], 0
    for n_in, n_out in zip(net.widths[:-1], net.widths[1:]):
        w = vector[at : at + n_in * n_out].reshape(n_out, n_in)
        at += n_in * n_out
        out.append((w, vector[at : at + n_out]))
        at += n_out
    return out


def _phi(z):
    return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def kinked_dual(sigma, dsigma, kinks, q1, q2, q12):
    """(E[σ(u)σ(v)], E[σ'(u)σ'(v)]) for scalar σ, σ' with kinks at ``kinks``, by nested
    adaptive quadrature (SciPy ``quad``, tolerances 1e-13): u = s₁x, v = s₂(ρx + rz) with x, z
    independent standard normals, both integrals cut at ±12 and split at the kinks (t/s₁ for
    x; (t/s₂ − ρx)/r for z, or t/(s₂ρ) for x when r = 0)."""
    from scipy import integrate

    s1, s2 = math.sqrt(q1), math.sqrt(q2)
    rho = max(-1.0, min(1.0, q12 / (s1 * s2)))
    if abs(rho) > 1 - 1e-14:  # a copy of a row: ρ = ±1 up to the rounding of s₁s₂
        rho = math.copysign(1.0, rho)
    r = math.sqrt(max(0.0, (1 - rho) * (1 + rho)))
    opts = dict(epsabs=1e-13, epsrel=1e-13, limit=400)

    def inside(points):
        return sorted({p for p in points if -12 < p < 12})

    def expectation(f):
        def inner(x):
            if r == 0:
                return f(s1 * x, s2 * rho * x)
            cuts = inside((t / s2 - rho * x) / r for t in kinks)
            return integrate.quad(
                lambda z: _phi(z) * f(s1 * x, s2 * (rho * x + r * z)), -12, 12, points=cuts, **opts
            )[0]

        cuts = [t / s1 for t in kinks]
        if rho != 0:
            cuts += [t / (s2 * rho) for t in kinks]
        return integrate.quad(lambda x: _phi(x) * inner(x), -12, 12, points=inside(cuts), **opts)[0]

    return (
        expectation(lambda u, v: sigma(u) * sigma(v)),
        expectation(lambda u, v: dsigma(u) * dsigma(v)),
    )


def kinked_kernels(sigma, dsigma, kinks, x, depth, beta):
    """Σ⁽ᴸ⁾ and Θ∞⁽ᴸ⁾ of the rows of x through the recursion with :func:`kinked_dual`."""
    n = len(x)
    nngp = x @ x.T / x.shape[1] + beta**2
    ntk = nngp.copy()
    for _ in range(depth - 1):
        new_nngp, nngp_dot = np.empty_like(nngp), np.empty_like(nngp)
        for i in range(n):
            for j in range(i + 1):
                s, d = kinked_dual(sigma, dsigma, kinks, nngp[i, i], nngp[j, j], nngp[i, j])
                new_nngp[i, j] = new_nngp[j, i] = s + beta**2
                nngp_dot[i, j] = nngp_dot[j, i] = d
        ntk = ntk * nngp_dot + new_nngp
        nngp = new_nngp
    return nngp, ntk
