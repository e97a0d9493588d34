//! Duals of activations with kinks that are not piecewise linear, by
//! quadrature over their tables ([`Tabulated`]).
//!
//! Whitening (u, v) ~ N(0, [[q₁, ρ√(q₁q₂)], [ρ√(q₁q₂), q₂]]) as u = √q₁ x,
//! v = √q₂ (ρx + s w), s = √(1 − ρ²), with x, w independent standard normals:
//!
//! ```text
//! Σ = ∫ φ(x) σ(√q₁ x) G(x) dx,    G(x) = ∫ φ(w) σ(√q₂ (ρx + s w)) dw
//! ```
//!
//! and Σ̇ likewise with σ'. Both integrals are composite Gauss–Legendre rules
//! of 16 nodes on |x|, |w| ≤ 8.5 (the mass beyond is 2e-17), on subintervals
//! no longer than 2 and cut wherever the integrand is not smooth:
//!
//! - inner, at the w where v crosses a boundary of σ's table (every kink is
//!   one): between two cuts the integrand is one Chebyshev piece times φ;
//! - outer, at the x where u crosses a boundary, and at the x = t/(√q₂ρ)
//!   where G carries the image of a boundary t, smoothed over a width s/|ρ|.
//!   Around the images of kinks the cuts are graded geometrically from s/|ρ|
//!   up (ratio 2), so the rule resolves the smoothed kink whatever s is.
//!
//! Correlations within 1e-13 of ±1 are taken as ±1, as for piecewise-linear σ
//! (see `pieces.rs`): v = ±√(q₂/q₁) u and the pair is a one-dimensional
//! integral cut at both sets of boundaries, which is also the diagonal.
//! The rows of a tile read σ from their own table and the columns from
//! theirs: each set of samples is tabulated over its own variances.

use crate::bivariate::legendre_rule;
use crate::duals::{correlation, Dual, Var};
use crate::tabulated::Tabulated;
use crate::trig::Arcsine;
use std::sync::OnceLock;

/// Standardised half-width of the integrals.
pub const Z: f64 = 8.5;
/// The longest subinterval of a rule, in standard deviations.
const STEP: f64 = 2.0;
/// Gauss–Legendre nodes per subinterval.
const NODES: usize = 16;
/// Subintervals narrower than this (the slivers between a kink piece and its
/// neighbours' boundaries) take the two-point Gauss rule: its error is
/// O(width²) of a kink inside and O(width⁵) elsewhere, far below 1e-13,
/// where the 16-point rule would cost eight times as much for nothing.
const SLIVER: f64 = 1e-7;
/// 1/√3, the nodes of the two-point Gauss rule on [−1, 1].
const FRAC_1_SQRT_3: f64 = 0.577_350_269_189_625_8;
/// Correlations within this of ±1 are taken as ±1.
pub const PARALLEL: f64 = 1e-13;

/// The Gauss–Legendre rule on [−1, 1].
fn rule() -> &'static [(f64, f64)] {
    static RULE: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    RULE.get_or_init(|| legendre_rule(NODES))
}

#[inline(always)]
fn phi(x: f64) -> f64 {
    const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    INV_SQRT_2PI * (-0.5 * x * x).exp()
}

/// Calls `node(x, weight)` for the composite rule on [lo, hi]: cut at every
/// point of `cuts` inside, each gap split into equal parts no longer than
/// `step`. `cuts` is sorted in place.
fn composite(lo: f64, hi: f64, cuts: &mut [f64], step: f64, mut node: impl FnMut(f64, f64)) {
    if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
        return;
    }
    cuts.sort_unstable_by(f64::total_cmp);
    let inner = cuts.iter().copied().filter(|&c| lo < c && c < hi);
    let mut left = lo;
    for right in inner.chain(std::iter::once(hi)) {
        if right <= left {
            continue;
        }
        let parts = ((right - left) / step).ceil().max(1.0);
        let width = (right - left) / parts;
        for i in 0..parts as usize {
            let a = left + i as f64 * width;
            let half = 0.5 * width;
            let mid = a + half;
            if width < SLIVER {
                for t in [-FRAC_1_SQRT_3, FRAC_1_SQRT_3] {
                    node(mid + half * t, half);
                }
                continue;
            }
            for &(t, w) in rule() {
                node(mid + half * t, half * w);
            }
        }
        left = right;
    }
}

/// E[f(u) g(v)] for (f, g) = (σ, σ) and (σ', σ'), v = ±√(q₂/q₁)·u (ρ = ±1),
/// or u = v when `sd2` is `sd1`: a one-dimensional integral in x = u/√q₁.
fn parallel(
    rows: &Tabulated,
    cols: &Tabulated,
    sd1: f64,
    sd2: f64,
    sign: f64,
    step: f64,
) -> (f64, f64) {
    let mut cuts: Vec<f64> = Vec::new();
    if sd1 > 0.0 {
        cuts.extend(rows.cuts().iter().map(|t| t / sd1));
    }
    if sd2 > 0.0 {
        cuts.extend(cols.cuts().iter().map(|t| sign * t / sd2));
    }
    let (mut sigma, mut sigma_dot) = (0.0, 0.0);
    composite(-Z, Z, &mut cuts, step, |x, w| {
        let (f, df) = rows.eval(sd1 * x);
        let (g, dg) = cols.eval(sign * sd2 * x);
        let weight = w * phi(x);
        sigma += weight * f * g;
        sigma_dot += weight * df * dg;
    });
    (sigma, sigma_dot)
}

/// (E[σ(u)²], E[σ'(u)²]) for u ~ N(0, q), with the table of its samples.
pub fn diag(table: &Tabulated, q: f64) -> (f64, f64) {
    let sd = q.max(0.0).sqrt();
    parallel(table, table, sd, sd, 1.0, STEP)
}

/// [`diag`] and the change when the subintervals are halved, relative to the
/// values: the quadrature's error estimate at this variance.
pub fn diag_error(table: &Tabulated, q: f64) -> f64 {
    let sd = q.max(0.0).sqrt();
    let (s, d) = parallel(table, table, sd, sd, 1.0, STEP);
    let (s2, d2) = parallel(table, table, sd, sd, 1.0, 0.5 * STEP);
    let rel = |a: f64, b: f64| {
        if b == 0.0 {
            a.abs()
        } else {
            ((a - b) / b).abs()
        }
    };
    rel(s, s2).max(rel(d, d2))
}

/// The dual of a tabulated σ: rows of a tile read `rows`, columns `cols`.
#[derive(Debug, Clone, Copy)]
pub struct Kinked<'a> {
    pub rows: &'a Tabulated,
    pub cols: &'a Tabulated,
}

impl Kinked<'_> {
    /// (G, G') at x: the inner integral over w for v/√q₂ = c + s w, c = ρx.
    #[inline]
    fn inner(&self, sd2: f64, c: f64, s: f64, cuts: &mut Vec<f64>) -> (f64, f64) {
        let cols = self.cols;
        if sd2 == 0.0 {
            return cols.eval(0.0);
        }
        // |w| ≤ Z and |v/√q₂| ≤ Z: the table covers the second.
        let lo = (-Z).max((-Z - c) / s);
        let hi = Z.min((Z - c) / s);
        if lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
            return (0.0, 0.0);
        }
        let bounds = cols.cuts();
        let (v_lo, v_hi) = (sd2 * (c + s * lo), sd2 * (c + s * hi));
        let first = bounds.partition_point(|&t| t <= v_lo);
        let last = bounds.partition_point(|&t| t < v_hi);
        cuts.clear();
        cuts.extend(bounds[first..last].iter().map(|t| (t / sd2 - c) / s));
        let (mut g, mut dg) = (0.0, 0.0);
        composite(lo, hi, cuts, STEP, |w, weight| {
            let (v, dv) = cols.eval(sd2 * (c + s * w));
            let weight = weight * phi(w);
            g += weight * v;
            dg += weight * dv;
        });
        (g, dg)
    }

    /// (Σ, Σ̇) for standard deviations `sd1`, `sd2` and correlation ρ with
    /// s = √(1 − ρ²) (|ρ| < 1, both given so that a caller with the angle
    /// passes them exactly): the two-dimensional rule.
    pub fn integrate(&self, sd1: f64, sd2: f64, rho: f64, s: f64) -> (f64, f64) {
        let mut cuts: Vec<f64> = Vec::new();
        if sd1 > 0.0 {
            cuts.extend(self.rows.cuts().iter().map(|t| t / sd1));
        }
        if rho != 0.0 && sd2 > 0.0 {
            let to_x = 1.0 / (sd2 * rho);
            let width = s / rho.abs();
            let images = self
                .cols
                .cuts_and_kinks()
                .filter(|c| !c.1)
                .map(|c| c.0 * to_x);
            cuts.extend(images.filter(|x| x.abs() < Z));
            for &t in self.cols.kinks() {
                let x = t * to_x;
                if x.abs() > Z + STEP {
                    continue;
                }
                cuts.push(x);
                let mut d = width;
                while d < STEP {
                    cuts.push(x - d);
                    cuts.push(x + d);
                    d *= 2.0;
                }
            }
        }
        let mut inner_cuts = Vec::new();
        let (mut sigma, mut sigma_dot) = (0.0, 0.0);
        let rows = self.rows;
        composite(-Z, Z, &mut cuts, STEP, |x, w| {
            let (f, df) = rows.eval(sd1 * x);
            let (g, dg) = self.inner(sd2, rho * x, s, &mut inner_cuts);
            let weight = w * phi(x);
            sigma += weight * f * g;
            sigma_dot += weight * df * dg;
        });
        (sigma, sigma_dot)
    }
}

impl Dual for Kinked<'_> {
    fn pair<A: Arcsine>(&self, a: &Var, b: &Var, q12: f64) -> (f64, f64) {
        let (sd1, sd2) = (a.sqrt_q, b.sqrt_q);
        let rho = correlation(a, b, q12);
        if rho.abs() >= 1.0 - PARALLEL {
            return parallel(self.rows, self.cols, sd1, sd2, rho.signum(), STEP);
        }
        let s = ((1.0 - rho) * (1.0 + rho)).sqrt();
        self.integrate(sd1, sd2, rho, s)
    }

    fn diag(&self, q: f64) -> (f64, f64) {
        diag(self.rows, q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duals::{Erf, Relu};
    use crate::pieces::Pieces;
    use crate::trig::Rational;
    use crate::Activation;

    /// (q₁, q₂, ρ) over variances 1e-2 … 25, correlations near and at ±1.
    fn cases() -> Vec<(f64, f64, f64)> {
        let mut out = Vec::new();
        for &q1 in &[1e-2, 0.3, 1.0, 4.0, 25.0] {
            for &q2 in &[1e-2, 1.0, 25.0] {
                for &rho in &[
                    -1.0,
                    -0.999,
                    -0.7,
                    -0.1,
                    0.0,
                    0.4,
                    0.93,
                    0.9999,
                    1.0 - 1e-9,
                    1.0,
                ] {
                    out.push((q1, q2, rho));
                }
            }
        }
        out
    }

    fn pair<D: Dual>(d: D, q1: f64, q2: f64, rho: f64) -> (f64, f64) {
        d.pair::<Rational>(&Var::new(q1), &Var::new(q2), rho * (q1 * q2).sqrt())
    }

    /// The quadrature over σ's table against an exact dual, relative to
    /// √(E[σ(u)²]E[σ(v)²]) (and the same for σ').
    fn matches<D: Dual>(sigma: &dyn crate::hermite::Pointwise, exact: D, tol: f64) {
        let table = Tabulated::new(sigma, Z * 5.0, &[]).unwrap();
        let kinked = Kinked {
            rows: &table,
            cols: &table,
        };
        for (q1, q2, rho) in cases() {
            let (d1, d2) = (exact.diag(q1), exact.diag(q2));
            let got = pair(kinked, q1, q2, rho);
            let want = pair(exact, q1, q2, rho);
            let what = format!("q {q1} {q2} ρ {rho}: {got:?} vs {want:?}");
            assert!(
                (got.0 - want.0).abs() <= tol * (d1.0 * d2.0).sqrt(),
                "{what}"
            );
            assert!(
                (got.1 - want.1).abs() <= tol * (d1.1 * d2.1).sqrt().max(1e-300),
                "{what}"
            );
            let (g, w) = (diag(&table, q1), exact.diag(q1));
            assert!((g.0 - w.0).abs() <= tol * w.0 && (g.1 - w.1).abs() <= tol * w.1.max(1e-300));
        }
    }

    #[test]
    fn piecewise_linear_activations_match_their_exact_duals() {
        let hard_tanh = Pieces::new(&[-1.0, 1.0], &[0.0, 1.0, 0.0], &[-1.0, 0.0, 1.0]).unwrap();
        // Five pieces with a jump at 0.5 and a kink at 2.
        let five = Pieces::new(
            &[-2.0, -0.5, 0.5, 2.0],
            &[0.1, -0.7, 1.3, 2.0, 0.2],
            &[0.3, -1.3, -0.1, 0.4, 4.0],
        )
        .unwrap();
        let relu = Pieces::new(&[0.0], &[0.0, 1.0], &[0.0, 0.0]).unwrap();
        matches(&hard_tanh, &hard_tanh, 1e-10);
        matches(&five, &five, 1e-10);
        matches(&relu, Relu, 1e-10);
    }

    #[test]
    fn a_smooth_activation_matches_its_closed_form() {
        matches(&Activation::Erf, Erf, 1e-12);
    }

    #[test]
    fn the_error_estimate_is_small_for_resolved_rules() {
        let five = Pieces::new(&[-0.5, 0.5], &[0.1, 1.3, 0.2], &[0.3, -0.1, 4.0]).unwrap();
        let table = Tabulated::new(&five, 50.0, &[]).unwrap();
        for q in [1e-2, 1.0, 25.0] {
            assert!(
                diag_error(&table, q) < 1e-11,
                "{q}: {}",
                diag_error(&table, q)
            );
        }
    }
}
