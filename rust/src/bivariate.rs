//! The standard bivariate normal distribution: the upper orthant probability
//!
//! ```text
//! L(h, k; ρ) = P(X > h, Y > k),   (X, Y) standard normal with correlation ρ,
//! ```
//!
//! the building block of the piecewise-linear duals (`pieces.rs`), to about
//! 1e-15 absolute for every h, k and ρ ∈ [−1, 1].
//!
//! Both branches integrate ∂L/∂ρ = φ₂(h, k; ρ), the bivariate density at
//! (h, k), along ρ:
//! - |ρ| < 0.925, from ρ = 0 (L = Φ̄(h)Φ̄(k)) with t = sin θ:
//!   L = Φ̄(h)Φ̄(k) + (1/2π) ∫₀^{asin ρ} exp(−((h − k sin θ)² + k² cos²θ) / (2 cos²θ)) dθ,
//!   a smooth integrand, by Gauss–Legendre with 6, 12 or 20 nodes.
//! - ρ ≥ 0.925, from ρ = 1 (L = Φ̄(max(h, k))) with s = √(1 − t²), r = √(1 − ρ²):
//!   L = Φ̄(max(h, k)) − (1/2π) ∫₀^r exp(−(h − k)²/(2s²)) g(s) ds,
//!   g(s) = exp(−hk/(1 + t))/t.  The first factor is flat to all orders at
//!   s = 0 and steep where (h − k)/s is of order one, which no fixed rule
//!   resolves; g's Taylor polynomial e^{−hk/2}(1 + c s² + c d s⁴),
//!   c = (4 − hk)/8, d = (12 − hk)/16, is integrated against it in closed form
//!   (`moments`) and only the remainder, O(s⁶), by Gauss–Legendre.
//! - ρ ≤ −0.925 by the reflection L(h, k; ρ) = Φ̄(h) − L(h, −k; −ρ).
//!
//! This is the scheme of Drezner & Wesolowsky (1990) as refined by Genz
//! (2004, "Numerical computation of rectangular bivariate and trivariate
//! normal and t probabilities").

use std::f64::consts::{FRAC_1_SQRT_2, PI};
use std::sync::OnceLock;

const INV_2PI: f64 = 0.5 / PI;
const SQRT_2PI: f64 = 2.506_628_274_631_000_7;
/// Thresholds beyond which the orthant is its limit (φ(38) < 1e-313).
const FAR: f64 = 38.0;
/// Below this |ρ| the integral from ρ = 0 converges with 20 nodes.
const NEAR_ONE: f64 = 0.925;

/// Φ̄(x) = P(X > x), accurate in relative terms far into both tails.
#[inline]
pub fn upper_tail(x: f64) -> f64 {
    0.5 * libm::erfc(x * FRAC_1_SQRT_2)
}

/// φ(x), the standard normal density.
#[inline(always)]
pub fn density(x: f64) -> f64 {
    (-0.5 * x * x).exp() / SQRT_2PI
}

/// L(h, k; ρ) = P(X > h, Y > k) for ρ in [−1, 1] (clamped); ±∞ limits are
/// allowed, NaN is not.
#[cfg(test)]
pub fn upper_orthant(h: f64, k: f64, rho: f64) -> f64 {
    Orthants::new(rho).upper(h, k, upper_tail(h), upper_tail(k))
}

/// The most nodes of a rule (20, padded to a multiple of 8 lanes); the
/// remainder near ρ = ±1 always takes them (12 reach 4e-14 but were no faster).
const NODES: usize = 24;

/// L(·, ·; ρ) for one ρ and many (h, k): the quadrature nodes depend on ρ
/// alone, so a pair of samples, whose breaks give K² orthants at one
/// correlation, places them once. The rules of 6, 12 and 20 nodes are
/// padded with nodes of weight 0 to 8, 16 and 24, and each node's terms are
/// written to an array before they are summed, so that the loops over the
/// nodes (one or two branch-free [`exp`] each) vectorise.
pub struct Orthants {
    rho: f64,
    /// Nodes, padded (0 when ρ = ±1), the half-width of the interval and the
    /// Gauss–Legendre weights.
    n: usize,
    half: f64,
    weight: [f64; NODES],
    /// From ρ = 0: sin θ and 1/(2cos²θ) at the nodes. Near ±1: s²,
    /// 1/(2s²), 1/(1 + t) and 1/t with t = √(1 − s²).
    a: [f64; NODES],
    b: [f64; NODES],
    c: [f64; NODES],
    d: [f64; NODES],
}

impl Orthants {
    #[inline(always)]
    pub fn new(rho: f64) -> Self {
        let rho = rho.clamp(-1.0, 1.0);
        // Padding nodes (weight 0) sit at s² = ½, where every term is finite.
        let mut o = Orthants {
            rho,
            n: 0,
            half: 0.0,
            weight: [0.0; NODES],
            a: [0.5; NODES],
            b: [1.0; NODES],
            c: [1.0; NODES],
            d: [1.0; NODES],
        };
        if rho.abs() < NEAR_ONE {
            o.half = 0.5 * rho.asin();
            match rho.abs() {
                a if a < 0.3 => o.place_from_zero(&rules()[0], 8),
                a if a < 0.75 => o.place_from_zero(&rules()[1], 16),
                _ => o.place_from_zero(&rules()[2], NODES),
            }
            return o;
        }
        let r2 = (1.0 - rho.abs()) * (1.0 + rho.abs());
        if r2 <= 0.0 {
            return o;
        }
        let rule = &rules()[2];
        o.n = NODES;
        o.half = 0.5 * r2.sqrt();
        o.weight = rule.weight;
        for i in 0..o.n.min(NODES) {
            let s = o.half * (1.0 + rule.node[i]);
            let xs = s * s;
            let t = (1.0 - xs).sqrt();
            o.a[i] = xs;
            o.b[i] = 0.5 / xs;
            o.c[i] = 1.0 / (1.0 + t);
            o.d[i] = 1.0 / t;
        }
        o
    }

    /// The nodes from ρ = 0 of a rule of n nodes (padded).
    #[inline(always)]
    fn place_from_zero(&mut self, rule: &Rule, n: usize) {
        self.n = n;
        self.weight = rule.weight;
        for i in 0..n.min(NODES) {
            let (sin, cos) = sin_cos(self.half * (1.0 + rule.node[i]));
            self.a[i] = sin;
            self.b[i] = 0.5 / (cos * cos);
        }
    }

    /// L(h, k; ρ), given Φ̄(h) and Φ̄(k).
    #[inline(always)]
    pub fn upper(&self, h: f64, k: f64, tail_h: f64, tail_k: f64) -> f64 {
        if self.rho.abs() < NEAR_ONE {
            return tail_h * tail_k + self.integral_from_zero(h, k);
        }
        if self.rho > 0.0 {
            self.near_one(h, k, tail_h.min(tail_k))
        } else {
            // L(h, k; ρ) = Φ̄(h) − L(h, −k; −ρ), with Φ̄(−k) = 1 − Φ̄(k).
            let reflected = self.near_one(h, -k, tail_h.min(1.0 - tail_k));
            (tail_h - reflected).max(0.0)
        }
    }

    /// (1/2π) ∫₀^{asin ρ} exp(−(h − k sin θ)²/(2cos²θ) − k²/2) dθ.
    #[inline(always)]
    fn integral_from_zero(&self, h: f64, k: f64) -> f64 {
        // Beyond 38 the integrand is below e^{−722}, and |h|, |k| large enough
        // to overflow their squares must not reach the arithmetic.
        if !(h.abs() <= FAR && k.abs() <= FAR) {
            return 0.0;
        }
        let k2 = 0.5 * k * k;
        // The node count is read at run time on purpose: a constant one let
        // the compiler unroll this loop into scalar code instead of
        // vectorising it (1.3–1.5× the time of a whole kernel).
        let n = self.n.min(NODES);
        let mut terms = [0.0; NODES];
        for (i, term) in terms[..n].iter_mut().enumerate() {
            let e = h - k * self.a[i];
            *term = self.weight[i] * exp(-(e * e) * self.b[i] - k2);
        }
        terms[..n].iter().sum::<f64>() * self.half * INV_2PI
    }

    /// L(h, k; |ρ|) for |ρ| ≥ 0.925, given Φ̄(max(h, k)).
    #[inline(always)]
    fn near_one(&self, h: f64, k: f64, at_one: f64) -> f64 {
        // With |h| or |k| beyond 38, L equals its value at ρ = 1 to 1e-300 (and
        // hk, c, d could overflow into a NaN).
        if self.n == 0 || !(h.abs() <= FAR && k.abs() <= FAR) {
            return at_one;
        }
        let r = 2.0 * self.half;
        let hk = h * k;
        let bs = (h - k) * (h - k);
        let c = (4.0 - hk) / 8.0;
        let d = (12.0 - hk) / 16.0;
        let (j0, j1, j2) = moments(h, k, r);
        let mut terms = [0.0; NODES];
        for (i, term) in terms.iter_mut().enumerate() {
            let xs = self.a[i];
            let flat = -bs * self.b[i];
            let g = exp(flat - hk * self.c[i]) * self.d[i];
            let taylor = exp(flat - 0.5 * hk) * (1.0 + c * xs * (1.0 + d * xs));
            *term = self.weight[i] * (g - taylor);
        }
        let rest = terms.iter().sum::<f64>();
        let integral = j0 + c * j1 + c * d * j2 + self.half * rest;
        (at_one - integral * INV_2PI).max(0.0)
    }
}

/// (sin θ, cos θ) for |θ| ≤ π/2 by their Taylor series in nested form,
/// sin θ = θ(1 − θ²/(2·3)(1 − θ²/(4·5)(…))), to θ²³/23! (below 1e-18 there),
/// without library calls so that the nodes' loop vectorises.
#[inline(always)]
fn sin_cos(theta: f64) -> (f64, f64) {
    /// 1/((2j)(2j + 1)) and 1/((2j − 1)(2j)) for j = 11 … 1.
    const RATIOS: [(f64, f64); 11] = {
        let mut r = [(0.0, 0.0); 11];
        let mut i = 0;
        while i < 11 {
            let j = (11 - i) as f64;
            r[i] = (
                1.0 / ((2.0 * j) * (2.0 * j + 1.0)),
                1.0 / ((2.0 * j - 1.0) * (2.0 * j)),
            );
            i += 1;
        }
        r
    };
    let t2 = theta * theta;
    let (mut s, mut c) = (1.0, 1.0);
    for (odd, even) in RATIOS {
        s = 1.0 - t2 * s * odd;
        c = 1.0 - t2 * c * even;
    }
    (theta * s, c)
}

/// eˣ without branches or library calls, so that loops over it vectorise:
/// x = k ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor polynomial of degree
/// 13 (truncation 4e-18), 2ᵏ assembled in the exponent bits. Within 2 ulps of
/// the exact value; 0 below x = −708 (where eˣ < 3.4e-308).
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    const SHIFTER: f64 = 6_755_399_441_055_744.0; // 1.5 · 2⁵²: adding it rounds to an integer
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let xc = x.clamp(-708.0, 709.0);
    let t = xc * std::f64::consts::LOG2_E + SHIFTER;
    let kf = t - SHIFTER;
    let r = (xc - kf * LN2_HI) - kf * LN2_LO;
    let mut p = 1.0 / 6_227_020_800.0;
    for inv in [
        1.0 / 479_001_600.0,
        1.0 / 39_916_800.0,
        1.0 / 3_628_800.0,
        1.0 / 362_880.0,
        1.0 / 40_320.0,
        1.0 / 5_040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * r + inv;
    }
    let k = t.to_bits().wrapping_sub(SHIFTER.to_bits());
    let scale = f64::from_bits(k.wrapping_add(1023) << 52);
    if x < -708.0 {
        0.0
    } else {
        p * scale
    }
}

/// e^{−hk/2} Jₙ, Jₙ = ∫₀^r s²ⁿ exp(−β²/(2s²)) ds with β = |h − k|, n = 0, 1, 2:
///
/// ```text
/// J₀ = r E − β √(2π) Φ̄(β/r),   Jₙ = (r²ⁿ⁺¹ E − β² Jₙ₋₁) / (2n + 1),   E = exp(−β²/(2r²))
/// ```
///
/// (by parts in u = β/s). The factor e^{−hk/2} goes inside each exponential,
/// where the exponent −hk/2 − β²/(2r²) ≤ −(h² + k²)/4 cannot overflow.
#[inline(always)]
fn moments(h: f64, k: f64, r: f64) -> (f64, f64, f64) {
    let hk = h * k;
    let beta = (h - k).abs();
    let bs = beta * beta;
    let a = beta / r;
    let e = (-0.5 * hk - 0.5 * a * a).exp();
    // e^{−hk/2} Φ̄(a) < e^{−hk/2 − a²/2}: nothing to add below e^{−745}, and
    // above it hk > −500, so e^{−hk/2} is finite.
    let tail = if -0.5 * hk - 0.5 * a * a < -745.0 {
        0.0
    } else {
        (-0.5 * hk).exp() * upper_tail(a) * beta * SQRT_2PI
    };
    let j0 = r * e - tail;
    let r2 = r * r;
    let j1 = (r * r2 * e - bs * j0) / 3.0;
    let j2 = (r * r2 * r2 * e - bs * j1) / 5.0;
    (j0, j1, j2)
}

/// A Gauss–Legendre rule on [−1, 1], padded with nodes at 0 of weight 0.
struct Rule {
    node: [f64; NODES],
    weight: [f64; NODES],
}

/// The rules of 6, 12 and 20 nodes, computed once by Newton's method on Pₙ.
fn rules() -> &'static [Rule; 3] {
    static RULES: OnceLock<[Rule; 3]> = OnceLock::new();
    RULES.get_or_init(|| {
        [6, 12, 20].map(|n| {
            let mut rule = Rule {
                node: [0.0; NODES],
                weight: [0.0; NODES],
            };
            for (i, (x, w)) in legendre_rule(n).into_iter().enumerate() {
                rule.node[i] = x;
                rule.weight[i] = w;
            }
            rule
        })
    })
}

pub(crate) fn legendre_rule(n: usize) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| {
            // Tricomi's estimate of the i-th root, then Newton on Pₙ.
            let mut x = (PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
            let mut dp = 0.0;
            for _ in 0..100 {
                let (p, d) = legendre(n, x);
                dp = d;
                let step = p / d;
                x -= step;
                if step.abs() < 1e-17 {
                    break;
                }
            }
            let (_, d) = legendre(n, x);
            if d != 0.0 {
                dp = d;
            }
            (x, 2.0 / ((1.0 - x * x) * dp * dp))
        })
        .collect()
}

/// (Pₙ(x), Pₙ'(x)) by the three-term recurrence.
fn legendre(n: usize, x: f64) -> (f64, f64) {
    let (mut p0, mut p1) = (1.0, x);
    for j in 2..=n {
        let p2 = ((2 * j - 1) as f64 * x * p1 - (j - 1) as f64 * p0) / j as f64;
        p0 = p1;
        p1 = p2;
    }
    (p1, n as f64 * (x * p1 - p0) / (x * x - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::FRAC_PI_2;

    /// ∫ₐᵇ f by composite 40-node Gauss–Legendre on `pieces` equal panels.
    fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64, pieces: usize) -> f64 {
        let rule = legendre_rule(40);
        let width = (b - a) / pieces as f64;
        (0..pieces)
            .map(|p| {
                let lo = a + p as f64 * width;
                rule.iter()
                    .map(|&(x, w)| w * f(lo + 0.5 * width * (1.0 + x)))
                    .sum::<f64>()
                    * 0.5
                    * width
            })
            .sum()
    }

    /// L(h, k; ρ) = ∫_h^∞ φ(x) Φ̄((k − ρx)/r) dx, the conditional form, with the
    /// range cut at 12 standard deviations and split where the inner tail
    /// turns (x = k/ρ), so that a steep Φ̄ is resolved by many panels.
    fn reference(h: f64, k: f64, rho: f64) -> f64 {
        let r = ((1.0 - rho) * (1.0 + rho)).sqrt();
        let f = |x: f64| density(x) * upper_tail((k - rho * x) / r);
        let lo = h.max(-12.0);
        let hi = 12.0f64.max(lo);
        let mut cuts = vec![lo, hi];
        if rho != 0.0 {
            let turn = k / rho;
            for dx in [-10.0 * r, -r, 0.0, r, 10.0 * r] {
                let c = turn + dx;
                if c > lo && c < hi {
                    cuts.push(c);
                }
            }
        }
        cuts.sort_by(f64::total_cmp);
        cuts.windows(2).map(|w| integrate(f, w[0], w[1], 64)).sum()
    }

    #[test]
    fn the_exponential_is_within_two_ulps() {
        let mut x = -745.0;
        while x < 709.0 {
            let (got, want) = (exp(x), x.exp());
            if x < -708.0 {
                assert!(got == 0.0 && want < 3.4e-308, "{x}");
            } else {
                assert!(
                    (got - want).abs() <= 2.0 * f64::EPSILON * want,
                    "{x}: {got} {want}"
                );
            }
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn sine_and_cosine_are_within_two_ulps() {
        for i in 0..=2000 {
            let theta = FRAC_PI_2 * (i as f64 / 1000.0 - 1.0);
            let (s, c) = sin_cos(theta);
            assert!((s - theta.sin()).abs() <= 2.0 * f64::EPSILON * theta.sin().abs().max(1e-300));
            assert!(
                (c - theta.cos()).abs() <= 4e-16,
                "{theta}: {c} {}",
                theta.cos()
            );
        }
    }

    #[test]
    fn the_rules_integrate_polynomials_exactly() {
        for n in [6, 12, 20] {
            let rule = legendre_rule(n);
            for p in 0..2 * n {
                let got: f64 = rule.iter().map(|&(x, w)| w * x.powi(p as i32)).sum();
                let want = if p % 2 == 0 {
                    2.0 / (p + 1) as f64
                } else {
                    0.0
                };
                assert!((got - want).abs() < 1e-14, "n {n} p {p}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn the_orthant_agrees_with_the_conditional_integral() {
        let points = [-6.0, -2.5, -1.0, -0.3, 0.0, 0.2, 0.7, 1.5, 3.0, 5.0];
        let rhos = [
            -0.9999, -0.99, -0.95, -0.93, -0.9, -0.6, -0.2, 0.0, 0.1, 0.5, 0.8, 0.92, 0.926, 0.97,
            0.995, 0.99999,
        ];
        let mut worst: f64 = 0.0;
        for &h in &points {
            for &k in &points {
                for &rho in &rhos {
                    let got = upper_orthant(h, k, rho);
                    let want = reference(h, k, rho);
                    worst = worst.max((got - want).abs());
                    assert!(
                        (got - want).abs() < 1e-13,
                        "L({h}, {k}; {rho}) = {got:e}, reference {want:e}"
                    );
                }
            }
        }
        println!("worst {worst:e}");
        assert!(worst > 0.0);
    }

    #[test]
    fn the_orthant_has_its_limits_and_symmetries() {
        for &(h, k) in &[(0.3, -1.2), (1.0, 1.0), (-2.0, 0.5), (4.0, -4.0)] {
            // ρ = ±1 and the limits approached from inside.
            let one = upper_tail(f64::max(h, k));
            assert_eq!(upper_orthant(h, k, 1.0), one);
            assert!((upper_orthant(h, k, 1.0 - 1e-12) - one).abs() < 1e-6);
            let minus_one = (upper_tail(h) - upper_tail(-k)).max(0.0);
            assert!((upper_orthant(h, k, -1.0) - minus_one).abs() < 1e-16);
            // Independence, symmetry in (h, k), and P(X > h) split by Y.
            let zero = upper_orthant(h, k, 0.0);
            assert!((zero - upper_tail(h) * upper_tail(k)).abs() < 1e-16);
            for rho in [-0.97, -0.4, 0.3, 0.96] {
                let l = upper_orthant(h, k, rho);
                assert!((l - upper_orthant(k, h, rho)).abs() < 1e-15);
                let rest = upper_orthant(h, -k, -rho);
                assert!((l + rest - upper_tail(h)).abs() < 1e-15);
            }
        }
        // Infinite limits.
        assert_eq!(upper_orthant(f64::NEG_INFINITY, 0.5, 0.6), upper_tail(0.5));
        assert_eq!(upper_orthant(f64::INFINITY, 0.5, 0.99), 0.0);
        // Far tails underflow to zero instead of overflowing, also where hk
        // would overflow.
        assert_eq!(upper_orthant(60.0, -60.0, 0.999), 0.0);
        assert_eq!(upper_orthant(-1e100, -1e100, 0.99), 1.0);
        assert_eq!(upper_orthant(-1e200, 0.0, 0.5), 0.5);
        assert_eq!(upper_orthant(1e100, -1e100, -0.99), 0.0);
        assert_eq!(upper_orthant(-1e100, 1e100, -0.99), 0.0);
        assert!(upper_orthant(-60.0, 60.0, -0.999).is_finite());
    }
}
