//! Chebyshev interpolation on [−1, 1] at the N points of the first kind:
//!
//! ```text
//! f(ξ) ≈ Σ_k c_k T_k(ξ),   ξ_j = cos(π(j + ½)/N),   c_k = (2/N) Σ_j f(ξ_j) T_k(ξ_j)   (c₀ halved)
//! ```
//!
//! the form of the tables of kinked activations (`tabulated.rs`) and of their
//! duals in the correlation angle (`correlation_table.rs`).

use std::f64::consts::PI;

/// Points (and coefficients) per interpolant.
pub const N: usize = 24;

/// The Chebyshev points of the first kind and the matrix that turns values
/// at them into coefficients.
pub(crate) struct Basis {
    pub xi: [f64; N],
    /// cos(πk(j + ½)/N), row k.
    cos: [[f64; N]; N],
}

impl Basis {
    pub fn new() -> Self {
        let mut basis = Basis {
            xi: [0.0; N],
            cos: [[0.0; N]; N],
        };
        for j in 0..N {
            basis.xi[j] = (PI * (j as f64 + 0.5) / N as f64).cos();
            for k in 0..N {
                basis.cos[k][j] = (PI * (k * (2 * j + 1)) as f64 / (2 * N) as f64).cos();
            }
        }
        basis
    }

    pub fn coefficients(&self, values: &[f64]) -> [f64; N] {
        let mut c = [0.0; N];
        for (k, c) in c.iter_mut().enumerate() {
            let sum: f64 = self.cos[k].iter().zip(values).map(|(t, v)| t * v).sum();
            *c = sum * if k == 0 { 1.0 } else { 2.0 } / N as f64;
        }
        c
    }
}

/// The coefficients of d/dt Σ c_k T_k(ξ(t)), with dξ/dt = `scale`.
pub(crate) fn derivative(c: &[f64; N], scale: f64) -> [f64; N] {
    // d_{k−1} = d_{k+1} + 2k c_k, and d₀ halved.
    let mut d = [0.0; N + 1];
    for k in (1..N).rev() {
        d[k - 1] = d[k + 1] + 2.0 * k as f64 * c[k];
    }
    d[0] *= 0.5;
    let mut out = [0.0; N];
    for k in 0..N {
        out[k] = d[k] * scale;
    }
    out
}

/// Σ c_k T_k(ξ) at ξ = −1 and ξ = 1: the interpolant at the piece's ends.
pub(crate) fn ends(c: &[f64; N]) -> (f64, f64) {
    (c.iter().rev().fold(0.0, |acc, &c| c - acc), c.iter().sum())
}

/// Σ a_k T_k(ξ) and Σ b_k T_k(ξ) by Clenshaw's recurrence, in one loop so
/// that the two recurrences' multiply-adds overlap.
#[inline(always)]
pub(crate) fn clenshaw_pair(a: &[f64; N], b: &[f64; N], xi: f64) -> (f64, f64) {
    let two_xi = 2.0 * xi;
    let (mut a1, mut a2, mut b1, mut b2) = (0.0, 0.0, 0.0, 0.0);
    for (&ak, &bk) in a[1..].iter().zip(&b[1..]).rev() {
        let a0 = ak + two_xi * a1 - a2;
        let b0 = bk + two_xi * b1 - b2;
        (a2, a1, b2, b1) = (a1, a0, b1, b0);
    }
    (a[0] + xi * a1 - a2, b[0] + xi * b1 - b2)
}
