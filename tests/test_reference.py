"""The test reference itself against numerical integration (independent of any closed form).

E[f(u) g(v)] is reduced to one angle: with (u, v) = r (l₁(φ), l₂(φ)) in polar coordinates of
the whitened Gaussian, positively homogeneous σ (ReLU family) integrate r exactly, leaving
∫₀^{2π} dφ of a piecewise-smooth function integrated by adaptive quadrature split at its kinks.
Smooth σ use a 2-D Gauss–Hermite rule with many nodes.
"""

import numpy as np
import pytest
from scipy import integrate, special

from reference import dual

PAIRS = [
    (0.7, 1.3, 0.4),
    (2.0, 0.5, -0.9),
    (1.0, 1.0, 0.0),
    (0.3, 0.3, 0.2999),
    (1.5, 0.8, -1.0954),
    (4.0, 0.25, 0.7),
]

PIECEWISE = {"relu": (0.0, 1.0), "leaky_relu": (0.2, 1.0), "abs": (-1.0, 1.0)}
SMOOTH = {
    "erf": (special.erf, lambda x: 2 / np.sqrt(np.pi) * np.exp(-(x**2))),
    "gelu": (
        lambda x: x * special.ndtr(x),
        lambda x: special.ndtr(x) + x * np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi),
    ),
    "sin": (np.sin, np.cos),
    "cos": (np.cos, lambda x: -np.sin(x)),
    "identity": (lambda x: x, np.ones_like),
}


def _cholesky(q11, q22, q12):
    l11 = np.sqrt(q11)
    l21 = q12 / l11
    l22 = np.sqrt(max(q22 - l21**2, 0.0))
    return l11, l21, l22


def piecewise_expectation(neg, pos, q11, q22, q12, derivative):
    """E[σ(u)σ(v)] (or E[σ'(u)σ'(v)]) for σ = neg·min(x,0) + pos·max(x,0)."""
    l11, l21, l22 = _cholesky(q11, q22, q12)

    def lin(t):  # σ(t) or σ'(t) for one sign of t
        return (pos if t > 0 else neg) * (1.0 if derivative else t)

    def f(phi):
        c, s = np.cos(phi), np.sin(phi)
        u, v = l11 * c, l21 * c + l22 * s
        return lin(u) * lin(v)

    # E[r²] = 2 for the 2-D standard Gaussian (σ homogeneous of degree 1), E[r⁰] = 1 (σ').
    radial = 1.0 if derivative else 2.0
    kinks = sorted(
        {
            np.pi / 2,
            3 * np.pi / 2,
            np.arctan2(-l21, l22) % (2 * np.pi),
            (np.arctan2(-l21, l22) + np.pi) % (2 * np.pi),
        }
    )
    edges = [0.0, *kinks, 2 * np.pi]
    total = sum(
        integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
        for a, b in zip(edges[:-1], edges[1:])
        if b > a
    )
    return radial * total / (2 * np.pi)


def smooth_expectation(f, g, q11, q22, q12, nodes=200):
    z, w = special.roots_hermitenorm(nodes)
    w = w / w.sum()
    l11, l21, l22 = _cholesky(q11, q22, q12)
    zu, zv = np.meshgrid(z, z, indexing="ij")
    return float(np.einsum("i,j,ij->", w, w, f(l11 * zu) * g(l21 * zu + l22 * zv)))


@pytest.mark.parametrize("name", sorted(PIECEWISE))
@pytest.mark.parametrize("q", PAIRS)
def test_piecewise_linear_duals(name, q):
    neg, pos = PIECEWISE[name]
    s, sdot = dual(name, *q, param=neg)
    assert s == pytest.approx(
        piecewise_expectation(neg, pos, *q, derivative=False), rel=1e-12, abs=1e-14
    )
    assert sdot == pytest.approx(
        piecewise_expectation(neg, pos, *q, derivative=True), rel=1e-12, abs=1e-14
    )


@pytest.mark.parametrize("name", sorted(SMOOTH))
@pytest.mark.parametrize("q", PAIRS)
def test_smooth_duals(name, q):
    f, df = SMOOTH[name]
    s, sdot = dual(name, *q)
    assert s == pytest.approx(smooth_expectation(f, f, *q), rel=1e-11, abs=1e-13)
    assert sdot == pytest.approx(smooth_expectation(df, df, *q), rel=1e-11, abs=1e-13)
