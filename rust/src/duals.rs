//! Closed-form dual activations.
//!
//! For (u, v) ~ N(0, [[q₁₁, q₁₂], [q₁₂, q₂₂]]) each dual gives
//! Σ = E[σ(u)σ(v)] and Σ̇ = E[σ'(u)σ'(v)]. Notation as in the paper's appendix:
//! ρ = q₁₂/√(q₁₁q₂₂), θ = acos ρ, √D = √(q₁₁q₂₂ − q₁₂²) = √(q₁₁q₂₂) sin θ.
//!
//! `pair` is the off-diagonal formula, written branch-free so that a loop over
//! a tile row vectorises; `diag` is the x = x' case from its own exact formula
//! (evaluating the pair formula at ρ = 1 would turn a rounding error of 1e-16 in
//! ρ into 1e-8 in the kernel through √(1 − ρ²)).

use crate::activation::with_dual;
use crate::activation::Activation;
use crate::trig::{self, Arcsine, Rational};
use std::f64::consts::FRAC_1_PI;

const INV_2PI: f64 = 0.5 * FRAC_1_PI;

/// One sample's pre-activation variance q = Σ⁽ˡ⁾(x, x) at some layer, with
/// √q and 1/√q precomputed once per sample (1/√q is set to 0 when q = 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Var {
    pub q: f64,
    pub sqrt_q: f64,
    pub inv_sqrt_q: f64,
}

impl Var {
    pub fn new(q: f64) -> Self {
        let sqrt_q = q.sqrt();
        let inv_sqrt_q = if q > 0.0 { 1.0 / sqrt_q } else { 0.0 };
        Var {
            q,
            sqrt_q,
            inv_sqrt_q,
        }
    }
}

/// ρ = q₁₂/√(q₁₁q₂₂) in [−1, 1], snapped to ±1 within 8 ulps of it. The three
/// roundings of the product leave a few ulps of error, and acos has infinite
/// slope at ±1: unsnapped, parallel inputs would get θ ≈ 1.5e-8 instead of 0
/// (an error of 1e-8 in Σ̇ that also flips with the rounding).
#[inline(always)]
pub(crate) fn correlation(a: &Var, b: &Var, q12: f64) -> f64 {
    let rho = (q12 * a.inv_sqrt_q * b.inv_sqrt_q).clamp(-1.0, 1.0);
    if rho.abs() >= 1.0 - 8.0 * f64::EPSILON {
        1.0f64.copysign(rho)
    } else {
        rho
    }
}

/// A dual activation: Σ and Σ̇ as functions of the 2×2 covariance.
pub trait Dual: Copy + Send + Sync {
    /// (Σ, Σ̇) for variances `a.q`, `b.q` and covariance `q12`, with the
    /// arcsine family evaluated by `A`.
    fn pair<A: Arcsine>(&self, a: &Var, b: &Var, q12: f64) -> (f64, f64);
    /// (Σ, Σ̇) for x = x' with variance q.
    fn diag(&self, q: f64) -> (f64, f64);
}

/// σ(x) = neg·min(x, 0) + pos·max(x, 0): ReLU (0, 1), leaky ReLU (α, 1), |x| (−1, 1).
///
/// ```text
/// Σ  = (neg² + pos²) k₊ − 2·neg·pos·k₋,   k₊ = (√D + (π − θ) q₁₂)/(2π),  k₋ = (√D − θ q₁₂)/(2π)
/// Σ̇ = ((neg² + pos²)(π − θ) + 2·neg·pos·θ) / (2π)
/// ```
///
/// A zero-variance input (q = 0, only possible for x = 0 and β = 0) is given
/// ρ = 0, the value that keeps Σ̇ bounded and symmetric in the two arguments.
#[derive(Debug, Clone, Copy)]
pub struct PiecewiseLinear {
    pub neg: f64,
    pub pos: f64,
}

impl Dual for PiecewiseLinear {
    #[inline(always)]
    fn pair<A: Arcsine>(&self, a: &Var, b: &Var, q12: f64) -> (f64, f64) {
        let c_same = self.neg * self.neg + self.pos * self.pos;
        let c_cross = 2.0 * self.neg * self.pos;
        let scale = a.sqrt_q * b.sqrt_q;
        let rho = correlation(a, b, q12);
        let (theta, theta_c, sin_theta) = trig::acos_sin_pair::<A>(rho);
        let k_plus = scale * (sin_theta + theta_c * rho) * INV_2PI;
        let k_minus = scale * (sin_theta - theta * rho) * INV_2PI;
        let sigma = c_same * k_plus - c_cross * k_minus;
        let sigma_dot = (c_same * theta_c + c_cross * theta) * INV_2PI;
        (sigma, sigma_dot)
    }

    fn diag(&self, q: f64) -> (f64, f64) {
        let c_same = self.neg * self.neg + self.pos * self.pos;
        (0.5 * c_same * q, 0.5 * c_same)
    }
}

/// σ(x) = max(0, x): [`PiecewiseLinear`] with (neg, pos) = (0, 1) and the
/// vanishing terms left out (bit-for-bit the same values, fewer operations in
/// the most common case).
///
/// ```text
/// Σ = √(q₁₁q₂₂) (sin θ + (π − θ) ρ) / (2π),   Σ̇ = (π − θ) / (2π)
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Relu;

impl Dual for Relu {
    #[inline(always)]
    fn pair<A: Arcsine>(&self, a: &Var, b: &Var, q12: f64) -> (f64, f64) {
        let scale = a.sqrt_q * b.sqrt_q;
        let rho = correlation(a, b, q12);
        let (_, theta_c, sin_theta) = trig::acos_sin_pair::<A>(rho);
        (
            scale * (sin_theta + theta_c * rho) * INV_2PI,
            theta_c * INV_2PI,
        )
    }

    fn diag(&self, q: f64) -> (f64, f64) {
        (0.5 * q, 0.5)
    }
}

/// σ(x) = erf(x):
///
/// ```text
/// Σ  = (2/π) asin(2q₁₂ / √((1 + 2q₁₁)(1 + 2q₂₂)))
/// Σ̇ = (4/π) / √((1 + 2q₁₁)(1 + 2q₂₂) − 4q₁₂²)
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Erf;

impl Dual for Erf {
    #[inline(always)]
    fn pair<A: Arcsine>(&self, a: &Var, b: &Var, q12: f64) -> (f64, f64) {
        let p = (1.0 + 2.0 * a.q) * (1.0 + 2.0 * b.q);
        let arg = (2.0 * q12 / p.sqrt()).clamp(-1.0, 1.0);
        // (1 + 2q₁₁)(1 + 2q₂₂) − 4q₁₂² expanded so that the cancellation stays in
        // the last, smallest term.
        let det = 1.0 + 2.0 * (a.q + b.q) + 4.0 * (a.q * b.q - q12 * q12);
        (
            2.0 * FRAC_1_PI * trig::asin::<A>(arg),
            4.0 * FRAC_1_PI / det.sqrt(),
        )
    }

    fn diag(&self, q: f64) -> (f64, f64) {
        (
            2.0 * FRAC_1_PI * (2.0 * q / (1.0 + 2.0 * q)).asin(),
            4.0 * FRAC_1_PI / (1.0 + 4.0 * q).sqrt(),
        )
    }
}

/// σ(x) = x Φ(x) (exact GELU). With P = (1 + q₁₁)(1 + q₂₂), δ = √(P − q₁₂²):
///
/// ```text
/// Σ  = q₁₂/4 + (q₁₂ atan(q₁₂/δ) + (q₁₂² + q₁₁q₂₂δ²)/(Pδ)) / (2π)
/// Σ̇ = 1/4 + atan(q₁₂/δ)/(2π) + q₁₂/(2πδ) · (1/δ² + (1 − q₁₁q₂₂)/P + 1)
/// ```
///
/// with atan(q₁₂/δ) = asin(q₁₂/√P). These are smooth up to ρ = ±1, so the
/// diagonal uses the same expressions.
#[derive(Debug, Clone, Copy)]
pub struct Gelu;

impl Gelu {
    #[inline(always)]
    fn eval<A: Arcsine>(q1: f64, q2: f64, q12: f64) -> (f64, f64) {
        let p = (1.0 + q1) * (1.0 + q2);
        let delta2 = 1.0 + q1 + q2 + (q1 * q2 - q12 * q12);
        let delta = delta2.sqrt();
        let angle = trig::asin::<A>((q12 / p.sqrt()).clamp(-1.0, 1.0));
        // (q₁₂² + q₁₁q₂₂δ²)/(Pδ), written so that no product of three variances
        // is formed (those overflow from q ≈ 1e100 on, long before the kernel).
        let r = q12 / p.sqrt();
        let shrink = (q1 / (1.0 + q1)) * (q2 / (1.0 + q2));
        let sigma = 0.25 * q12 + (q12 * angle + r * r / delta + shrink * delta) * INV_2PI;
        let sigma_dot = 0.25
            + angle * INV_2PI
            + q12 * INV_2PI / delta * (1.0 / delta2 + (1.0 - q1 * q2) / p + 1.0);
        (sigma, sigma_dot)
    }
}

impl Dual for Gelu {
    #[inline(always)]
    fn pair<A: Arcsine>(&self, a: &Var, b: &Var, q12: f64) -> (f64, f64) {
        Gelu::eval::<A>(a.q, b.q, q12)
    }

    fn diag(&self, q: f64) -> (f64, f64) {
        Gelu::eval::<Rational>(q, q, q)
    }
}

/// σ(x) = sin(x) (`cosine = false`) or cos(x) (`cosine = true`). With m = (q₁₁ + q₂₂)/2:
///
/// ```text
/// sin:  Σ = e^{−m} sinh q₁₂,  Σ̇ = e^{−m} cosh q₁₂
/// cos:  Σ = e^{−m} cosh q₁₂,  Σ̇ = e^{−m} sinh q₁₂
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Trigonometric {
    pub cosine: bool,
}

impl Trigonometric {
    /// (e^{−m} sinh x, e^{−m} cosh x) without overflow (|x| ≤ m) and with full
    /// relative accuracy for small |x|.
    #[inline(always)]
    fn damped_sinh_cosh(m: f64, x: f64) -> (f64, f64) {
        let up = (x - m).exp();
        let down = (-x - m).exp();
        let sinh = if x.abs() < 1.0 {
            (-m).exp() * x.sinh()
        } else {
            0.5 * (up - down)
        };
        (sinh, 0.5 * (up + down))
    }

    #[inline(always)]
    fn order(&self, (sinh, cosh): (f64, f64)) -> (f64, f64) {
        if self.cosine {
            (cosh, sinh)
        } else {
            (sinh, cosh)
        }
    }
}

impl Dual for Trigonometric {
    #[inline(always)]
    fn pair<A: Arcsine>(&self, a: &Var, b: &Var, q12: f64) -> (f64, f64) {
        self.order(Self::damped_sinh_cosh(0.5 * (a.q + b.q), q12))
    }

    fn diag(&self, q: f64) -> (f64, f64) {
        // e^{−q} sinh q = (1 − e^{−2q})/2, e^{−q} cosh q = (1 + e^{−2q})/2.
        let e = (-2.0 * q).exp_m1();
        self.order((-0.5 * e, 1.0 + 0.5 * e))
    }
}

/// σ(x) = x: Σ = q₁₂, Σ̇ = 1.
#[derive(Debug, Clone, Copy)]
pub struct Identity;

impl Dual for Identity {
    #[inline(always)]
    fn pair<A: Arcsine>(&self, _a: &Var, _b: &Var, q12: f64) -> (f64, f64) {
        (q12, 1.0)
    }

    fn diag(&self, q: f64) -> (f64, f64) {
        (q, 1.0)
    }
}

/// (Σ, Σ̇) of `activation` for one pair (the rational arcsine), None without a
/// closed form; a convenience for tests.
#[cfg(test)]
pub fn dual_pair(activation: Activation, q11: f64, q22: f64, q12: f64) -> Option<(f64, f64)> {
    with_dual!(
        activation,
        |d| Some(d.pair::<Rational>(&Var::new(q11), &Var::new(q22), q12)),
        else None
    )
}

/// (Σ, Σ̇) of `activation` on the diagonal, None without a closed form.
pub fn dual_diag(activation: Activation, q: f64) -> Option<(f64, f64)> {
    with_dual!(activation, |d| Some(d.diag(q)), else None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trig::Polynomial;
    use std::f64::consts::PI;

    use crate::activation::EVERY_KIND;

    /// The activations with closed-form duals.
    fn closed() -> impl Iterator<Item = Activation> {
        EVERY_KIND.into_iter().filter(|a| a.has_closed_form())
    }

    /// Gauss–Hermite nodes and weights for ∫ f(z) φ(z) dz (probabilists'),
    /// by Newton iteration on the recurrence; the weights sum to 1.
    fn gauss_hermite(n: usize) -> (Vec<f64>, Vec<f64>) {
        // Physicists' rule for e^{-t²}, then z = √2 t, w /= √π.
        let mut nodes = vec![0.0; n];
        let mut weights = vec![0.0; n];
        let m = n.div_ceil(2);
        let mut z = 0.0;
        for i in 0..m {
            z = match i {
                0 => {
                    (2.0 * n as f64 + 1.0).sqrt()
                        - 1.85575 * (2.0 * n as f64 + 1.0).powf(-1.0 / 6.0)
                }
                1 => z - 1.14 * (n as f64).powf(0.426) / z,
                2 => 1.86 * z - 0.86 * nodes[0],
                3 => 1.91 * z - 0.91 * nodes[1],
                _ => 2.0 * z - nodes[i - 2],
            };
            let mut dp = 0.0;
            for _ in 0..100 {
                let (mut p1, mut p2) = (PI.powf(-0.25), 0.0);
                for j in 1..=n {
                    let p3 = p2;
                    p2 = p1;
                    p1 = z * (2.0 / j as f64).sqrt() * p2
                        - ((j as f64 - 1.0) / j as f64).sqrt() * p3;
                }
                dp = (2.0 * n as f64).sqrt() * p2;
                let dz = p1 / dp;
                z -= dz;
                if dz.abs() < 1e-15 {
                    break;
                }
            }
            nodes[i] = z;
            nodes[n - 1 - i] = -z;
            weights[i] = 2.0 / (dp * dp);
            weights[n - 1 - i] = weights[i];
        }
        let s2 = std::f64::consts::SQRT_2;
        let sqrt_pi = PI.sqrt();
        (
            nodes.iter().map(|t| s2 * t).collect(),
            weights.iter().map(|w| w / sqrt_pi).collect(),
        )
    }

    /// E[f(u) g(v)] by a tensor Gauss–Hermite rule on the Cholesky factor.
    fn expect2(
        n: usize,
        q11: f64,
        q22: f64,
        q12: f64,
        f: impl Fn(f64) -> f64,
        g: impl Fn(f64) -> f64,
    ) -> f64 {
        let (z, w) = gauss_hermite(n);
        let l11 = q11.sqrt();
        let l21 = q12 / l11;
        let l22 = (q22 - l21 * l21).max(0.0).sqrt();
        let mut acc = 0.0;
        for (z1, w1) in z.iter().zip(&w) {
            let u = l11 * z1;
            let fu = f(u);
            for (z2, w2) in z.iter().zip(&w) {
                acc += w1 * w2 * fu * g(l21 * z1 + l22 * z2);
            }
        }
        acc
    }

    #[test]
    fn smooth_duals_match_quadrature() {
        for act in [
            Activation::Erf,
            Activation::Gelu,
            Activation::Sin,
            Activation::Cos,
            Activation::Identity,
        ] {
            for &(q11, q22, q12) in &[
                (0.7, 1.3, 0.4),
                (2.0, 0.5, -0.9),
                (1.0, 1.0, 0.0),
                (0.3, 0.3, 0.299),
            ] {
                let (s, sd) = dual_pair(act, q11, q22, q12).unwrap();
                let s_ref = expect2(120, q11, q22, q12, |x| act.sigma(x), |x| act.sigma(x));
                let sd_ref = expect2(120, q11, q22, q12, |x| act.dsigma(x), |x| act.dsigma(x));
                assert!(
                    (s - s_ref).abs() <= 1e-12 * s_ref.abs().max(1e-3),
                    "{act:?} Σ {s} vs {s_ref}"
                );
                assert!(
                    (sd - sd_ref).abs() <= 1e-12 * sd_ref.abs().max(1e-3),
                    "{act:?} Σ̇ {sd} vs {sd_ref}"
                );
            }
        }
    }

    #[test]
    fn piecewise_duals_match_quadrature_loosely() {
        // Kinks make Gauss–Hermite converge slowly: a loose check of the
        // conventions here; the Python tests hold these to 1e-12.
        for act in [
            Activation::Relu,
            Activation::LeakyRelu { slope: 0.2 },
            Activation::Abs,
        ] {
            let (q11, q22, q12) = (0.7, 1.3, 0.4);
            let (s, sd) = dual_pair(act, q11, q22, q12).unwrap();
            let s_ref = expect2(150, q11, q22, q12, |x| act.sigma(x), |x| act.sigma(x));
            let sd_ref = expect2(150, q11, q22, q12, |x| act.dsigma(x), |x| act.dsigma(x));
            assert!(
                (s - s_ref).abs() < 5e-3 * s_ref.abs(),
                "{act:?} Σ {s} vs {s_ref}"
            );
            assert!(
                (sd - sd_ref).abs() < 5e-2 * sd_ref.abs(),
                "{act:?} Σ̇ {sd} vs {sd_ref}"
            );
        }
    }

    #[test]
    fn price_identity_sigma_dot_is_the_derivative_of_sigma() {
        for act in closed() {
            for &(q11, q22, q12) in &[(0.7, 1.3, 0.4), (2.0, 0.5, -0.6), (1.0, 1.0, 0.1)] {
                let h = 1e-5;
                let fd = (dual_pair(act, q11, q22, q12 + h).unwrap().0
                    - dual_pair(act, q11, q22, q12 - h).unwrap().0)
                    / (2.0 * h);
                let sd = dual_pair(act, q11, q22, q12).unwrap().1;
                assert!(
                    (fd - sd).abs() < 1e-7 * sd.abs().max(1.0),
                    "{act:?}: {fd} vs {sd}"
                );
            }
        }
    }

    #[test]
    fn diagonal_is_the_limit_of_the_pair_formula() {
        for act in closed() {
            for &q in &[0.01, 0.5, 1.0, 7.0] {
                let (s, sd) = dual_diag(act, q).unwrap();
                let (sp, sdp) = dual_pair(act, q, q, q * (1.0 - 1e-13)).unwrap();
                assert!(
                    (s - sp).abs() < 1e-9 * s.abs().max(1e-300),
                    "{act:?} Σ {s} vs {sp}"
                );
                assert!(
                    (sd - sdp).abs() < 1e-5 * sd.abs(),
                    "{act:?} Σ̇ {sd} vs {sdp}"
                );
            }
        }
        assert_eq!(dual_diag(Activation::Relu, 3.0), Some((1.5, 0.5)));
    }

    #[test]
    fn relu_is_the_piecewise_linear_case() {
        let general = PiecewiseLinear { neg: 0.0, pos: 1.0 };
        for &(q11, q22, q12) in &[
            (0.7, 1.3, 0.4),
            (2.0, 0.5, -0.99),
            (1.0, 1.0, 1.0),
            (3.0, 0.1, 0.0),
        ] {
            let (a, b) = (Var::new(q11), Var::new(q22));
            assert_eq!(
                Relu.pair::<Rational>(&a, &b, q12),
                general.pair::<Rational>(&a, &b, q12)
            );
            assert_eq!(
                Relu.pair::<Polynomial>(&a, &b, q12),
                general.pair::<Polynomial>(&a, &b, q12)
            );
        }
    }

    #[test]
    fn zero_variance_stays_finite() {
        for act in closed() {
            let (s, sd) = dual_pair(act, 0.0, 1.0, 0.0).unwrap();
            assert!(s.is_finite() && sd.is_finite(), "{act:?}");
        }
    }
}
