//! Piecewise-linear activations with jumps, and their exact duals.
//!
//! With breaks t₁ < … < t_K, σ is cₖ + mₖu on the piece tₖ < u < tₖ₊₁
//! (t₀ = −∞, t_{K+1} = +∞), so that
//!
//! ```text
//! σ(u) = c₀ + m₀u + Σₖ [Jₖ H(u − tₖ) + Δmₖ (u − tₖ)₊],   σ'(u) = m₀ + Σₖ Δmₖ H(u − tₖ)
//! ```
//!
//! with the kink Δmₖ = mₖ − mₖ₋₁ and the jump Jₖ = σ(tₖ⁺) − σ(tₖ⁻) at each
//! break (H the unit step; σ' is the derivative almost everywhere, what a
//! finite network's gradient sees). Hard tanh, ReLU6, sign and clipped or
//! fitted piecewise-linear σ are of this form.
//!
//! The duals expand σ around the piece p that holds u = 0 rather than the
//! leftmost one, with the breaks left of 0 turned round (εₖ = −1):
//! σ(u) = c_p + m_p u + Σₖ [εₖJₖ H(εₖ(u − tₖ)) + Δmₖ (εₖ(u − tₖ))₊]. Every
//! term then vanishes where u has its mass unless a break is near it, so no
//! large terms cancel (expanded around the leftmost piece, a σ with a steep
//! far-left tail lost 3e-4 of Σ at small variances), and the standardised
//! thresholds εₖtₖ/s are ≥ 0: a break beyond 38 standard deviations adds
//! nothing and is skipped.
//!
//! For (u, v) ~ N(0, [[q₁₁, q₁₂], [q₁₂, q₂₂]]) write u = s₁x, v = s₂y with
//! (x, y) standard of correlation ρ, r = √(1 − ρ²), aₖ = εₖtₖ/s₁, b_l = ε_l t_l/s₂
//! (and x, y, ρ turned round with the breaks: εₖx, ε_l y, εₖε_l ρ).
//! Σ = E[σ(u)σ(v)] and Σ̇ = E[σ'(u)σ'(v)] are bilinear in the terms above;
//! each pair of breaks needs L = P(x > a, y > b) (`bivariate.rs`) and
//!
//! ```text
//! A = φ(a) Φ((ρa − b)/r),  B = φ(b) Φ((ρb − a)/r),  G = φ(a) φ((b − ρa)/r)
//! E[x 1{x>a, y>b}] = A + ρB,   E[y 1{…}] = B + ρA,   E[xy 1{…}] = ρL + ρ(aA + bB) + rG
//! ```
//!
//! (Stein's lemma), from which the (x − a)₊ terms follow; the single-break
//! terms are one-dimensional. That is K² orthant probabilities per pair of
//! samples and layer, exact to rounding at every ρ, ±1 included.

use crate::bivariate::{density, upper_tail, Orthants};
use crate::duals::{correlation, Dual, Var};
use crate::error::{invalid, Result};
use crate::hermite::Pointwise;
use crate::trig::Arcsine;
use std::f64::consts::PI;

const INV_2PI: f64 = 0.5 / PI;

/// The most breaks a piecewise-linear σ may have (the per-pair work grows as
/// the square of their number).
pub const MAX_BREAKS: usize = 32;

/// Correlations within this of ±1 are taken as ±1 (see `pair`).
const PARALLEL: f64 = 1e-13;

/// A standard deviation below which a pre-activation is taken as exactly 0.
const TINY: f64 = 1e-150;

/// Standardised thresholds beyond which a break adds nothing (Φ̄(38) < 1e-315).
const FAR: f64 = 38.0;

/// A piecewise-linear σ with jumps (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Pieces {
    breaks: Vec<f64>,
    slopes: Vec<f64>,
    intercepts: Vec<f64>,
    /// Δmₖ, εₖJₖ (the turned jump) and εₖ (−1 left of 0, else 1) of each break.
    kinks: Vec<f64>,
    steps: Vec<f64>,
    sides: Vec<f64>,
    /// The piece that holds u = 0.
    base: usize,
}

impl Pieces {
    /// σ with K breaks (strictly increasing) and K + 1 slopes and intercepts,
    /// piece k being `intercepts[k] + slopes[k] · u`. Breaks where neither the
    /// value nor the slope changes are dropped.
    pub fn new(breaks: &[f64], slopes: &[f64], intercepts: &[f64]) -> Result<Pieces> {
        if slopes.len() != breaks.len() + 1 || intercepts.len() != slopes.len() {
            return invalid(format!(
                "a piecewise-linear activation with {} breaks needs {} slopes and intercepts, \
                 got {} and {}",
                breaks.len(),
                breaks.len() + 1,
                slopes.len(),
                intercepts.len()
            ));
        }
        if let Some(v) = breaks
            .iter()
            .chain(slopes)
            .chain(intercepts)
            .find(|v| !v.is_finite())
        {
            return invalid(format!(
                "a piecewise-linear activation needs finite breaks, slopes and intercepts, got {v}"
            ));
        }
        if breaks.windows(2).any(|w| w[0] >= w[1]) {
            return invalid("the breaks of a piecewise-linear activation must increase strictly");
        }
        let mut pieces = Pieces {
            breaks: Vec::new(),
            slopes: vec![slopes[0]],
            intercepts: vec![intercepts[0]],
            kinks: Vec::new(),
            steps: Vec::new(),
            sides: Vec::new(),
            base: 0,
        };
        for (k, &t) in breaks.iter().enumerate() {
            let (m0, c0) = (slopes[k], intercepts[k]);
            let (m1, c1) = (slopes[k + 1], intercepts[k + 1]);
            if m0 == m1 && c0 == c1 {
                continue;
            }
            pieces.breaks.push(t);
            pieces.slopes.push(m1);
            pieces.intercepts.push(c1);
            let side = if t < 0.0 { -1.0 } else { 1.0 };
            pieces.kinks.push(m1 - m0);
            pieces.steps.push(side * ((c1 + m1 * t) - (c0 + m0 * t)));
            pieces.sides.push(side);
        }
        pieces.base = pieces.breaks.partition_point(|&t| t < 0.0);
        if let Some(v) = pieces
            .kinks
            .iter()
            .chain(&pieces.steps)
            .find(|v| !v.is_finite())
        {
            return invalid(format!(
                "a piecewise-linear activation's jumps and changes of slope must be finite, \
                 got {v}"
            ));
        }
        if pieces.breaks.len() > MAX_BREAKS {
            return invalid(format!(
                "a piecewise-linear activation may have at most {MAX_BREAKS} breaks, got {}",
                pieces.breaks.len()
            ));
        }
        Ok(pieces)
    }

    /// The breaks that remain (those where σ or σ' changes).
    pub fn breaks(&self) -> &[f64] {
        &self.breaks
    }

    /// The piece of u: the number of breaks below it (a break itself counts
    /// as the piece to its right).
    fn piece(&self, u: f64) -> usize {
        self.breaks.partition_point(|&t| t <= u)
    }

    /// σ(u).
    pub fn sigma(&self, u: f64) -> f64 {
        let k = self.piece(u);
        self.intercepts[k] + self.slopes[k] * u
    }

    /// σ'(u), the slope of u's piece.
    pub fn dsigma(&self, u: f64) -> f64 {
        self.slopes[self.piece(u)]
    }

    /// (σ, σ') on either side of u = 0: the limits of a pre-activation whose
    /// variance vanishes are each with probability ½ (the same piece twice
    /// unless 0 is a break).
    fn at_zero(&self) -> [(f64, f64); 2] {
        let (left, right) = (self.base, self.piece(0.0));
        [left, right].map(|k| (self.intercepts[k], self.slopes[k]))
    }

    /// (E[σ(v)], E[σ'(v)]) for v ~ N(0, s²).
    fn means(&self, s: f64) -> (f64, f64) {
        if s < TINY {
            let [(c0, m0), (c1, m1)] = self.at_zero();
            return (0.5 * (c0 + c1), 0.5 * (m0 + m1));
        }
        let side = Side::new(self, s);
        let (mut mean, mut mean_dot) = (self.intercepts[self.base], self.slopes[self.base]);
        for l in 0..self.breaks.len() {
            let (f, _, f_dot) = self.single(&side, l, s);
            mean += f;
            mean_dot += f_dot;
        }
        (mean, mean_dot)
    }

    /// The terms of break l alone, f = εJ H(ε(u − t)) + Δm (ε(u − t))₊ with
    /// u = s·x: (E[f], E[x f], E[f']), 0 for a break beyond `FAR`.
    #[inline(always)]
    fn single(&self, side: &Side, l: usize, s: f64) -> (f64, f64, f64) {
        let (a, tail, dens) = (side.a[l], side.tail[l], side.density[l]);
        if a > FAR {
            return (0.0, 0.0, 0.0);
        }
        let (e, dm, step) = (self.sides[l], self.kinks[l], self.steps[l]);
        (
            step * tail + dm * s * (dens - a * tail),
            e * (step * dens + dm * s * tail),
            e * dm * tail,
        )
    }
}

impl Pointwise for Pieces {
    fn eval(&self, x: &[f64], sigma: &mut [f64], dsigma: &mut [f64]) -> Result<()> {
        for ((&u, s), d) in x.iter().zip(sigma).zip(dsigma) {
            (*s, *d) = (self.sigma(u), self.dsigma(u));
        }
        Ok(())
    }

    fn concurrent(&self) -> bool {
        true
    }
}

/// One side of a pair: the standardised, turned breaks aₖ = εₖtₖ/s ≥ 0 with
/// Φ̄(aₖ), φ(aₖ).
struct Side {
    a: [f64; MAX_BREAKS],
    tail: [f64; MAX_BREAKS],
    density: [f64; MAX_BREAKS],
}

impl Side {
    #[inline(always)]
    fn new(pieces: &Pieces, s: f64) -> Side {
        let mut side = Side {
            a: [0.0; MAX_BREAKS],
            tail: [0.0; MAX_BREAKS],
            density: [0.0; MAX_BREAKS],
        };
        for (k, (&t, &e)) in pieces.breaks.iter().zip(&pieces.sides).enumerate() {
            let a = e * t / s;
            side.a[k] = a;
            side.tail[k] = upper_tail(a);
            side.density[k] = density(a);
        }
        side
    }
}

/// Φ(num / r), with its limits at r = 0 (ρ = ±1): a step, ½ at num = 0.
#[inline(always)]
fn conditional(num: f64, r: f64) -> f64 {
    if r > 0.0 {
        upper_tail(-num / r)
    } else if num > 0.0 {
        1.0
    } else if num < 0.0 {
        0.0
    } else {
        0.5
    }
}

impl Dual for &Pieces {
    #[inline(always)]
    fn pair<A: Arcsine>(&self, a: &Var, b: &Var, q12: f64) -> (f64, f64) {
        let (s1, s2) = (a.sqrt_q, b.sqrt_q);
        if s1 < TINY || s2 < TINY {
            // A side of variance 0 is the constant σ(0), independent of the other.
            let (m1, d1) = self.means(s1);
            let (m2, d2) = self.means(s2);
            return (m1 * m2, d1 * d2);
        }
        let rho = correlation(a, b, q12);
        // Σ of a σ with a jump (and Σ̇ of every kinked σ) varies like √(1 − |ρ|)
        // at ±1, so the rounding of ρ (about 1e-15, from the Gram block and the
        // layers) would grow to ~1e-8 in Σ, and to 5e-6 after three layers that
        // each take its square root again: correlations that close to ±1 are
        // ±1 (for two different inputs that close this changes the kernel by at
        // most √(1e-13), 3e-7 of its scale).
        let rho = if 1.0 - rho.abs() <= PARALLEL {
            1.0f64.copysign(rho)
        } else {
            rho
        };
        let r = ((1.0 - rho) * (1.0 + rho)).max(0.0).sqrt();
        let (c0, m0) = (self.intercepts[self.base], self.slopes[self.base]);
        let k = self.breaks.len();
        let (x, y) = (Side::new(self, s1), Side::new(self, s2));
        // The base piece's line against itself and against each single break.
        let mut sigma = c0 * c0 + m0 * m0 * s1 * s2 * rho;
        let mut sigma_dot = m0 * m0;
        for l in 0..k {
            for (side, s, s_other) in [(&x, s1, s2), (&y, s2, s1)] {
                // c₀ E[f(u)] + m₀ E[v f(u)], E[v f(u)] = s_other ρ E[x f].
                let (f, xf, f_dot) = self.single(side, l, s);
                sigma += c0 * f + m0 * s_other * rho * xf;
                sigma_dot += m0 * f_dot;
            }
        }
        // Each pair of breaks, in the turned variables (correlation εᵢεⱼρ). A
        // break at 0 against a break at 0 (sign, |x|, steps) needs only
        // Sheppard's P(x > 0, y > 0) = ¼ + asin(ρ)/2π; the quadrature nodes
        // are placed only when another pair needs them, for ρ alone: a pair
        // turned against each other takes L(a, b; −ρ) = Φ̄(a) − L(a, −b; ρ).
        let mut orthants = None;
        for i in 0..k {
            let (ai, phi_a) = (x.a[i], x.density[i]);
            if ai > FAR {
                continue;
            }
            for j in 0..k {
                let (bj, phi_b) = (y.a[j], y.density[j]);
                if bj > FAR {
                    continue;
                }
                let turn = self.sides[i] * self.sides[j];
                let rho_ij = turn * rho;
                let l = if ai == 0.0 && bj == 0.0 {
                    0.25 + rho_ij.asin() * INV_2PI
                } else {
                    let o = orthants.get_or_insert_with(
                        #[inline(always)]
                        || Orthants::new(rho),
                    );
                    let (ta, tb) = (x.tail[i], y.tail[j]);
                    if turn > 0.0 {
                        o.upper(ai, bj, ta, tb)
                    } else {
                        (ta - o.upper(ai, -bj, ta, 1.0 - tb)).max(0.0)
                    }
                };
                let cap_a = phi_a * conditional(rho_ij * ai - bj, r);
                let cap_b = phi_b * conditional(rho_ij * bj - ai, r);
                let rg = if r > 0.0 {
                    let z = (bj - rho_ij * ai) / r;
                    r * phi_a * density(z)
                } else {
                    0.0
                };
                let ex = cap_a + rho_ij * cap_b;
                let ey = cap_b + rho_ij * cap_a;
                let exy = rho_ij * l + rho_ij * (ai * cap_a + bj * cap_b) + rg;
                let hr = ey - bj * l;
                let rh = ex - ai * l;
                let rr = exy - bj * ex - ai * ey + ai * bj * l;
                let (ji, jj) = (self.steps[i], self.steps[j]);
                let (di, dj) = (self.kinks[i], self.kinks[j]);
                sigma +=
                    ji * jj * l + ji * dj * s2 * hr + di * jj * s1 * rh + di * dj * s1 * s2 * rr;
                sigma_dot += turn * di * dj * l;
            }
        }
        (sigma, sigma_dot)
    }

    /// E[σ(u)²] and E[σ'(u)²] piece by piece: with P = Φ̄(aₖ) − Φ̄(aₖ₊₁),
    /// M₁ = φ(aₖ) − φ(aₖ₊₁), M₂ = P + aₖφ(aₖ) − aₖ₊₁φ(aₖ₊₁),
    /// Σ = Σₖ cₖ²P + 2cₖmₖsM₁ + mₖ²s²M₂ and Σ̇ = Σₖ mₖ²P.
    fn diag(&self, q: f64) -> (f64, f64) {
        let s = q.sqrt();
        if s < TINY {
            let [(c0, m0), (c1, m1)] = self.at_zero();
            return (0.5 * (c0 * c0 + c1 * c1), 0.5 * (m0 * m0 + m1 * m1));
        }
        // (Φ̄(a), φ(a), aφ(a)) at each end, (1, 0, 0) at −∞ and 0s at +∞.
        let ends = std::iter::once((1.0, 0.0, 0.0))
            .chain(self.breaks.iter().map(|&t| {
                let a = t / s;
                let d = density(a);
                (upper_tail(a), d, a * d)
            }))
            .chain(std::iter::once((0.0, 0.0, 0.0)))
            .collect::<Vec<_>>();
        let (mut sigma, mut sigma_dot) = (0.0, 0.0);
        for ((w, &c), &m) in ends.windows(2).zip(&self.intercepts).zip(&self.slopes) {
            let (lo, hi) = (w[0], w[1]);
            let p = lo.0 - hi.0;
            let m1 = lo.1 - hi.1;
            let m2 = p + lo.2 - hi.2;
            sigma += c * c * p + 2.0 * c * m * s * m1 + m * m * s * s * m2;
            sigma_dot += m * m * p;
        }
        (sigma, sigma_dot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duals::{Identity, PiecewiseLinear, Relu};
    use crate::trig::Rational;
    use std::f64::consts::FRAC_2_PI;

    fn pieces(breaks: &[f64], slopes: &[f64], intercepts: &[f64]) -> Pieces {
        Pieces::new(breaks, slopes, intercepts).unwrap()
    }

    fn hard_tanh() -> Pieces {
        pieces(&[-1.0, 1.0], &[0.0, 1.0, 0.0], &[-1.0, 0.0, 1.0])
    }

    /// Five pieces with a jump at 0.5 and a kink at 2.
    fn five() -> Pieces {
        pieces(
            &[-2.0, -0.5, 0.5, 2.0],
            &[0.1, -0.7, 1.3, 2.0, 0.2],
            &[0.3, -1.3, -0.1, 0.4, 4.0],
        )
    }

    /// (q₁, q₂, ρ) over variances 1e-2 … 25 and correlations ±1 included.
    fn cases() -> Vec<(f64, f64, f64)> {
        let mut out = Vec::new();
        for &q1 in &[1e-2, 0.3, 1.0, 4.0, 25.0] {
            for &q2 in &[1e-2, 1.0, 25.0] {
                for &rho in &[-1.0, -0.999, -0.7, -0.1, 0.0, 0.4, 0.93, 0.9999, 1.0] {
                    out.push((q1, q2, rho));
                }
            }
        }
        out
    }

    fn pair<D: Dual>(d: D, q1: f64, q2: f64, rho: f64) -> (f64, f64) {
        d.pair::<Rational>(&Var::new(q1), &Var::new(q2), rho * (q1 * q2).sqrt())
    }

    fn close(got: (f64, f64), want: (f64, f64), tol: f64, what: &str) {
        let scale = |a: f64, b: f64| 1.0f64.max(a.abs()).max(b.abs());
        assert!(
            (got.0 - want.0).abs() <= tol * scale(got.0, want.0)
                && (got.1 - want.1).abs() <= tol * scale(got.1, want.1),
            "{what}: {got:?} vs {want:?}"
        );
    }

    /// The pieces' pair and diagonal against another dual over `cases`.
    fn matches<D: Dual>(p: &Pieces, dual: D, tol: f64) {
        for (q1, q2, rho) in cases() {
            let what = format!("{:?} q {q1} {q2} ρ {rho}", p.breaks());
            close(pair(p, q1, q2, rho), pair(dual, q1, q2, rho), tol, &what);
            close(p.diag(q1), dual.diag(q1), tol, &what);
        }
    }

    #[test]
    fn relu_leaky_relu_abs_and_identity_match_their_own_duals() {
        let relu = pieces(&[0.0], &[0.0, 1.0], &[0.0, 0.0]);
        let leaky = pieces(&[0.0], &[0.2, 1.0], &[0.0, 0.0]);
        let abs = pieces(&[0.0], &[-1.0, 1.0], &[0.0, 0.0]);
        let identity = pieces(&[], &[1.0], &[0.0]);
        let leaky_dual = PiecewiseLinear { neg: 0.2, pos: 1.0 };
        let abs_dual = PiecewiseLinear {
            neg: -1.0,
            pos: 1.0,
        };
        matches(&relu, Relu, 1e-12);
        matches(&leaky, leaky_dual, 1e-12);
        matches(&abs, abs_dual, 1e-12);
        matches(&identity, Identity, 1e-15);
    }

    #[test]
    fn sign_has_the_arcsine_kernel_and_no_derivative() {
        let sign = pieces(&[0.0], &[0.0, 0.0], &[-1.0, 1.0]);
        for (q1, q2, rho) in cases() {
            let want = (FRAC_2_PI * rho.asin(), 0.0);
            close(
                pair(&sign, q1, q2, rho),
                want,
                1e-14,
                &format!("{q1} {q2} {rho}"),
            );
        }
        assert_eq!((&sign).diag(2.0), (1.0, 0.0));
    }

    #[test]
    fn pairs_are_symmetric_and_meet_the_diagonal_at_rho_one() {
        let relu6 = pieces(&[0.0, 6.0], &[0.0, 1.0, 0.0], &[0.0, 0.0, 6.0]);
        for p in [hard_tanh(), relu6, five()] {
            for (q1, q2, rho) in cases() {
                let what = format!("{:?} q {q1} {q2} ρ {rho}", p.breaks());
                close(pair(&p, q1, q2, rho), pair(&p, q2, q1, rho), 1e-13, &what);
            }
            for q in [1e-2, 0.5, 3.0, 25.0] {
                close(
                    pair(&p, q, q, 1.0),
                    (&p).diag(q),
                    1e-13,
                    &format!("diag {q}"),
                );
                // Continuous in ρ up to 1.
                let near = pair(&p, q, q, 1.0 - 1e-12);
                close(near, (&p).diag(q), 1e-5, &format!("near diag {q}"));
            }
        }
    }

    #[test]
    fn a_zero_variance_side_is_the_constant_sigma_of_zero() {
        let p = five();
        // σ is continuous at 0 here: Σ(0, v) = σ(0) E[σ(v)].
        let (mean, mean_dot) = p.means(2.0);
        let got = pair(&p, 0.0, 4.0, 0.0);
        close(
            got,
            (p.sigma(0.0) * mean, p.dsigma(0.0) * mean_dot),
            1e-15,
            "zero",
        );
        // A vanishing variance approaches it.
        close(pair(&p, 1e-24, 4.0, 0.3), got, 1e-10, "limit");
    }

    #[test]
    fn a_steep_far_tail_and_extreme_variances_stay_exact() {
        // Hard tanh with a steep tail left of −50: expanded around the leftmost
        // piece, terms of 2.5e7 cancelled to Σ ≈ 1e-4 at q = 1e-4.
        let steep = pieces(
            &[-50.0, -1.0, 1.0],
            &[100.0, 0.0, 1.0, 0.0],
            &[4999.0, -1.0, 0.0, 1.0],
        );
        let tanh = hard_tanh();
        for q in [1e-4, 1e-12, 1e-200, 1e-290] {
            let (d, dt) = ((&steep).diag(q), (&tanh).diag(q));
            close(d, dt, 1e-12, &format!("diag {q}"));
            close(pair(&steep, q, q, 1.0), d, 1e-12, &format!("ρ = 1 at {q}"));
            let (s, sd) = pair(&steep, q, 2.0 * q, 0.5);
            assert!(s.is_finite() && sd.is_finite(), "{q}");
            close(
                (s / q, sd),
                (pair(&tanh, q, 2.0 * q, 0.5).0 / q, sd),
                1e-10,
                "tiny",
            );
        }
        // Breaks of the five-piece σ hundreds of standard deviations away.
        let p = five();
        for (q1, q2, rho) in [
            (1e-250, 1e-240, 0.99),
            (1e-250, 4.0, -0.97),
            (1e-6, 1e-6, -1.0),
        ] {
            let (s, sd) = pair(&p, q1, q2, rho);
            assert!(s.is_finite() && sd.is_finite(), "{q1} {q2} {rho}");
        }
    }

    #[test]
    fn a_zero_variance_diagonal_is_the_mean_of_the_two_sides() {
        // sign at x = 0 with β = 0: u is 0⁻ or 0⁺ with probability ½ each.
        let sign = pieces(&[0.0], &[0.0, 0.0], &[-1.0, 1.0]);
        assert_eq!((&sign).diag(0.0), (1.0, 0.0));
        close((&sign).diag(0.0), (&sign).diag(1e-290), 1e-15, "limit");
        let relu = pieces(&[0.0], &[0.0, 1.0], &[0.0, 0.0]);
        assert_eq!((&relu).diag(0.0).1, Relu.diag(0.0).1);
    }

    #[test]
    fn bad_pieces_are_errors() {
        assert!(Pieces::new(&[0.0], &[1.0], &[0.0, 0.0]).is_err());
        assert!(Pieces::new(&[1.0, 0.0], &[0.0; 3], &[0.0; 3]).is_err());
        assert!(Pieces::new(&[f64::NAN], &[0.0; 2], &[0.0; 2]).is_err());
        assert!(Pieces::new(&[1e300], &[-1e300, 1e300], &[0.0, 0.0]).is_err());
        let many: Vec<f64> = (0..=MAX_BREAKS).map(|k| k as f64).collect();
        let slopes: Vec<f64> = (0..=MAX_BREAKS + 1).map(|k| (k % 2) as f64).collect();
        assert!(Pieces::new(&many, &slopes, &vec![0.0; MAX_BREAKS + 2]).is_err());
        // Breaks that change nothing are dropped.
        let p = pieces(&[-1.0, 0.0], &[1.0, 1.0, 2.0], &[0.0, 0.0, 0.0]);
        assert_eq!(p.breaks(), &[0.0]);
        assert_eq!(
            (p.sigma(-3.0), p.sigma(3.0), p.dsigma(3.0)),
            (-3.0, 6.0, 2.0)
        );
    }
}
