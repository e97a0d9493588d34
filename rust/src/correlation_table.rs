//! The duals of a kinked σ for one pair of variances, tabulated in the angle
//! θ = arccos ρ between the two pre-activations.
//!
//! For fixed variances q₁, q₂ the duals Σ and Σ̇ depend on the correlation
//! alone. As functions of θ they are smooth on [0, π] even where σ has kinks:
//! what a kink adds near ρ = ±1 is a series in powers of √(1 − ρ²) = sin θ (a
//! piecewise-linear σ's duals are sums of θ, sin θ, cos θ and normal
//! probabilities), so piecewise Chebyshev interpolants in θ,
//!
//! ```text
//! Σ(θ) ≈ Σ_k c_k T_k(ξ),   ξ = (2θ − θ_p − θ_{p+1}) / (θ_{p+1} − θ_p)   on [θ_p, θ_{p+1}],
//! ```
//!
//! converge geometrically where interpolants in ρ would need pieces graded
//! towards ±1. The pieces start as four quarters of [0, π] and are halved
//! until the last three coefficients of both Σ and Σ̇ are below [`TAIL`] of
//! the kernels' scale √(Σ(x,x)Σ(x',x')) (and the same for Σ̇). Each value is
//! the two-dimensional rule of `kinked.rs` at ρ = cos θ, s = sin θ, so a
//! table costs a few hundred pairs' integrals: it is made where many pairs of
//! samples share their variances (inputs of equal norms have one variance per
//! layer), and a table that does not converge within [`MAX_PIECES`] is not
//! made (its pairs are integrated one by one, as without tables).

use crate::chebyshev::{clenshaw_pair, Basis, N};
use crate::duals::{correlation, Dual, Var};
use crate::error::Result;
use crate::kinked::{self, Kinked};
use crate::pool;
use crate::trig::Arcsine;
use std::f64::consts::PI;
use std::sync::atomic::AtomicBool;

/// Coefficients left over, relative to the kernels' scale, that make a piece
/// converged: the interpolant is then within about this of the integrals.
pub const TAIL: f64 = 1e-12;
/// The most pieces a table may take (a dual that is not smooth in θ).
const MAX_PIECES: usize = 256;
/// Pieces are not halved below this width.
const MIN_WIDTH: f64 = 1e-10;
/// Variances within this relative distance of a group's smallest are one
/// group: they share a table, computed at the group's middle (Σ moves by
/// about as much, relative, as the variance).
const SAME_VARIANCE: f64 = 1e-12;
/// Sets of samples whose variances fall into more groups than this get no
/// tables.
const MAX_GROUPS: usize = 8;

/// A closed interval of variances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub lo: f64,
    pub hi: f64,
}

impl Span {
    fn holds(&self, q: f64) -> bool {
        self.lo <= q && q <= self.hi
    }

    fn mid(&self) -> f64 {
        0.5 * (self.lo + self.hi)
    }
}

/// The variances `q` as groups of values within [`SAME_VARIANCE`] of each
/// other, each with its number of samples; None for more than
/// [`MAX_GROUPS`] groups, or a variance that is not positive and finite.
pub fn groups(q: &[f64]) -> Option<Vec<(Span, usize)>> {
    if q.iter().any(|&v| !(v.is_finite() && v > 0.0)) {
        return None;
    }
    let mut sorted = q.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    let mut out: Vec<(Span, usize)> = Vec::new();
    for v in sorted {
        match out.last_mut() {
            Some((span, count)) if v <= span.lo * (1.0 + SAME_VARIANCE) => {
                span.hi = v;
                *count += 1;
            }
            _ => {
                if out.len() == MAX_GROUPS {
                    return None;
                }
                out.push((Span { lo: v, hi: v }, 1));
            }
        }
    }
    Some(out)
}

/// Σ(θ) and Σ̇(θ) for one pair of variance groups.
#[derive(Debug, Clone)]
pub struct CorrelationTable {
    /// The groups served, either way round (the duals are symmetric in them).
    q1: Span,
    q2: Span,
    /// Piece boundaries 0 = θ₀ < θ₁ < … < θ_P = π.
    bounds: Vec<f64>,
    sigma: Vec<[f64; N]>,
    sigma_dot: Vec<[f64; N]>,
    /// The largest coefficient left over, relative to the scale.
    error: f64,
}

impl CorrelationTable {
    /// The table of `dual` for variances `q1` (rows) and `q2` (columns), or
    /// None if it does not converge. The integrals run on the pool; an error
    /// only if `cancel` is set.
    pub fn new(dual: &Kinked, q1: Span, q2: Span, cancel: &AtomicBool) -> Result<Option<Self>> {
        let (v1, v2) = (q1.mid(), q2.mid());
        let (sd1, sd2) = (v1.sqrt(), v2.sqrt());
        let (d1, d2) = (kinked::diag(dual.rows, v1), kinked::diag(dual.cols, v2));
        let scale = [(d1.0 * d2.0).sqrt(), (d1.1 * d2.1).sqrt()].map(|s| s.max(f64::MIN_POSITIVE));
        let basis = Basis::new();
        let mut pending: Vec<(f64, f64)> = (0..4)
            .map(|i| (0.25 * PI * i as f64, 0.25 * PI * (i + 1) as f64))
            .collect();
        pending[3].1 = PI;
        let mut done: Vec<(f64, f64, [f64; N], [f64; N])> = Vec::new();
        let mut error = 0.0f64;
        while !pending.is_empty() {
            if done.len() + pending.len() > MAX_PIECES {
                return Ok(None);
            }
            let angles: Vec<f64> = pending
                .iter()
                .flat_map(|&(a, b)| basis.xi.map(|xi| 0.5 * (a + b) + 0.5 * (b - a) * xi))
                .collect();
            let values = pool::map(&angles, cancel, |&theta| {
                dual.integrate(sd1, sd2, theta.cos(), theta.sin())
            })?;
            let mut next = Vec::new();
            for (&(a, b), v) in pending.iter().zip(values.chunks_exact(N)) {
                let sigma = basis.coefficients(&v.iter().map(|p| p.0).collect::<Vec<_>>());
                let sigma_dot = basis.coefficients(&v.iter().map(|p| p.1).collect::<Vec<_>>());
                let tail = |c: &[f64; N], scale: f64| {
                    c[N - 3..].iter().fold(0.0f64, |m, c| m.max(c.abs())) / scale
                };
                let left = tail(&sigma, scale[0]).max(tail(&sigma_dot, scale[1]));
                if left <= TAIL {
                    error = error.max(left);
                    done.push((a, b, sigma, sigma_dot));
                } else if b - a < 2.0 * MIN_WIDTH {
                    return Ok(None);
                } else {
                    let mid = 0.5 * (a + b);
                    next.extend([(a, mid), (mid, b)]);
                }
            }
            pending = next;
        }
        done.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
        let mut bounds: Vec<f64> = done.iter().map(|p| p.0).collect();
        bounds.push(PI);
        Ok(Some(CorrelationTable {
            q1,
            q2,
            bounds,
            sigma: done.iter().map(|p| p.2).collect(),
            sigma_dot: done.iter().map(|p| p.3).collect(),
            error,
        }))
    }

    /// Whether the table holds the duals of variances `qa` and `qb`.
    #[inline]
    pub fn serves(&self, qa: f64, qb: f64) -> bool {
        (self.q1.holds(qa) && self.q2.holds(qb)) || (self.q1.holds(qb) && self.q2.holds(qa))
    }

    /// (Σ, Σ̇) at angle θ ∈ [0, π].
    #[inline]
    pub fn eval(&self, theta: f64) -> (f64, f64) {
        let p = self.bounds.partition_point(|&b| b <= theta);
        let p = p.clamp(1, self.sigma.len()) - 1;
        let (a, b) = (self.bounds[p], self.bounds[p + 1]);
        let xi = (2.0 * theta - a - b) / (b - a);
        clenshaw_pair(&self.sigma[p], &self.sigma_dot[p], xi)
    }

    /// The largest coefficient left over, relative to the kernels' scale:
    /// the table's error estimate.
    pub fn error(&self) -> f64 {
        self.error
    }

    /// The number of pieces.
    #[cfg(test)]
    pub fn pieces(&self) -> usize {
        self.sigma.len()
    }
}

/// The dual of a kinked σ with its correlation tables: pairs whose
/// variances a table serves (and whose correlation is not taken as ±1) are
/// read from it, the others integrated.
#[derive(Debug, Clone, Copy)]
pub struct Tabled<'a> {
    pub kinked: Kinked<'a>,
    pub tables: &'a [CorrelationTable],
}

impl Dual for Tabled<'_> {
    fn pair<A: Arcsine>(&self, a: &Var, b: &Var, q12: f64) -> (f64, f64) {
        let rho = correlation(a, b, q12);
        if rho.abs() < 1.0 - kinked::PARALLEL {
            if let Some(table) = self.tables.iter().find(|t| t.serves(a.q, b.q)) {
                return table.eval(rho.acos());
            }
        }
        self.kinked.pair::<A>(a, b, q12)
    }

    fn diag(&self, q: f64) -> (f64, f64) {
        self.kinked.diag(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pieces::Pieces;
    use crate::tabulated::Tabulated;
    use crate::trig::Rational;

    #[test]
    fn groups_join_variances_within_the_tolerance_only() {
        let g = groups(&[2.0, 1.0, 1.0 + 1e-13, 2.0 * (1.0 + 5e-12), 3.0]).unwrap();
        let counts: Vec<usize> = g.iter().map(|x| x.1).collect();
        assert_eq!(counts, [2, 1, 1, 1]);
        assert_eq!(
            g[0].0,
            Span {
                lo: 1.0,
                hi: 1.0 + 1e-13
            }
        );
        let many: Vec<f64> = (1..=MAX_GROUPS + 1).map(|i| i as f64).collect();
        assert!(groups(&many).is_none());
        assert!(groups(&many[..MAX_GROUPS]).is_some());
        assert!(groups(&[1.0, 0.0]).is_none());
        assert!(groups(&[1.0, f64::NAN]).is_none());
    }

    /// A table of hard tanh's quadrature against its exact dual over angles
    /// on and between the Chebyshev points, to 1e-10 of the scale.
    #[test]
    fn tables_match_exact_duals_at_every_angle() {
        let hard_tanh = Pieces::new(&[-1.0, 1.0], &[0.0, 1.0, 0.0], &[-1.0, 0.0, 1.0]).unwrap();
        let sigma = Tabulated::new(&hard_tanh, 60.0, &[]).unwrap();
        let dual = Kinked {
            rows: &sigma,
            cols: &sigma,
        };
        let cancel = AtomicBool::new(false);
        for (q1, q2) in [(1.0, 1.0), (0.05, 3.0), (25.0, 25.0)] {
            let span = |q: f64| Span { lo: q, hi: q };
            let table = CorrelationTable::new(&dual, span(q1), span(q2), &cancel)
                .unwrap()
                .expect("converges");
            assert!(
                table.error() <= TAIL && table.pieces() < 64,
                "{}",
                table.pieces()
            );
            assert!(table.serves(q2, q1) && !table.serves(q1 * 1.01, q2));
            let exact_dual = &hard_tanh;
            let (d1, d2) = (exact_dual.diag(q1), exact_dual.diag(q2));
            for k in 0..=997 {
                let theta = PI * k as f64 / 997.0;
                let (a, b) = (Var::new(q1), Var::new(q2));
                let exact = exact_dual.pair::<Rational>(&a, &b, theta.cos() * (q1 * q2).sqrt());
                let got = table.eval(theta);
                let what = format!("q {q1} {q2} θ {theta}: {got:?} {exact:?}");
                assert!(
                    (got.0 - exact.0).abs() <= 1e-10 * (d1.0 * d2.0).sqrt(),
                    "{what}"
                );
                assert!(
                    (got.1 - exact.1).abs() <= 1e-10 * (d1.1 * d2.1).sqrt(),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn cancelled_tables_stop() {
        let relu = Pieces::new(&[0.0], &[0.0, 1.0], &[0.0, 0.0]).unwrap();
        let sigma = Tabulated::new(&relu, 10.0, &[]).unwrap();
        let dual = Kinked {
            rows: &sigma,
            cols: &sigma,
        };
        let span = Span { lo: 1.0, hi: 1.0 };
        let cancel = AtomicBool::new(true);
        assert!(CorrelationTable::new(&dual, span, span, &cancel).is_err());
    }
}
