//! Single-precision duals of the piecewise-linear activations (ReLU, leaky
//! ReLU, |x|), for float32 kernels.
//!
//! The formulas of [`crate::duals::PiecewiseLinear`] and [`crate::duals::Relu`]
//! evaluated in f32: a tile row then runs 8 pairs per AVX2 register instead of
//! 4, with single-precision square roots and a division-free arccosine. The
//! result is good to a few f32 ulps wherever ρ = q₁₂/√(q₁₁q₂₂) is not close to
//! ±1. Next to ±1 it is not: θ = acos ρ has infinite slope there, and a
//! relative error of 1e-7 in a stored f32 variance becomes about 5e-4 in θ. So
//! each pair also returns |ρ|, and the caller recomputes in f64 the rows that
//! reach [`RHO_MAX`] at any layer, or [`SENSITIVITY_MAX`] over the layers.

use crate::activation::Activation;
use crate::duals::{PiecewiseLinear, Relu};
use crate::trig::acos_pair_f32;

const INV_2PI: f32 = 0.5 * std::f32::consts::FRAC_1_PI;

/// |ρ⁽¹⁾| above which a float32 Gram entry is recomputed in f64.
pub const REFINE_RHO: f64 = 0.99;

/// Largest |ρ| the f32 recursion is trusted with: there √(1 − ρ²) ≥ 0.045, so
/// an error of 3e-7 in ρ moves θ by at most 7e-6 (Σ̇ by 1e-6).
pub const RHO_MAX: f32 = 0.999;

/// Largest sum over the layers of 1/sin θ (θ = acos ρ, for the largest |ρ| of a
/// row) before the row is handed to f64. A layer's rounding, about 3e-7 in ρ,
/// changes Σ̇ by at most (2/π)·3e-7/sin θ relative to it (|x|, the most
/// sensitive case), and in Θ = Σ⁽ᴸ⁾ + Σ̇⁽ᴸ⁾Θ⁽ᴸ⁻¹⁾ these changes add up over the
/// layers: 50 keeps their sum near 1e-5. Deep networks reach it (ρ climbs
/// towards 1 with depth) and then run in f64.
pub const SENSITIVITY_MAX: f32 = 50.0;

/// √q and 1/√q (0 when q = 0) of a sample's variance q in f32, as in
/// [`crate::duals::Var`] (the piecewise-linear duals need no more).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Var32 {
    pub sqrt_q: f32,
    pub inv_sqrt_q: f32,
}

/// A dual activation in f32.
pub trait Dual32: Copy + Send + Sync {
    /// (Σ, Σ̇, |ρ|) for variances `a.q`, `b.q` and covariance `q12`.
    fn pair(&self, a: &Var32, b: &Var32, q12: f32) -> (f32, f32, f32);
}

/// ρ clamped to [−1, 1]; q₁₂/√q₁ first, which is at most √q₂ in size.
#[inline(always)]
fn correlation(a: &Var32, b: &Var32, q12: f32) -> f32 {
    (q12 * a.inv_sqrt_q * b.inv_sqrt_q).clamp(-1.0, 1.0)
}

impl Dual32 for Relu {
    /// Σ = √(q₁₁q₂₂) (sin θ + (π − θ) ρ) / (2π),   Σ̇ = (π − θ) / (2π).
    #[inline(always)]
    fn pair(&self, a: &Var32, b: &Var32, q12: f32) -> (f32, f32, f32) {
        let rho = correlation(a, b, q12);
        let (_, theta_c) = acos_pair_f32(rho);
        let sin_theta = ((1.0 - rho) * (1.0 + rho)).sqrt();
        let scale = a.sqrt_q * b.sqrt_q;
        (
            scale * (sin_theta + theta_c * rho) * INV_2PI,
            theta_c * INV_2PI,
            rho.abs(),
        )
    }
}

impl Dual32 for PiecewiseLinear {
    /// Σ = (neg² + pos²) k₊ − 2·neg·pos·k₋, Σ̇ = ((neg² + pos²)(π − θ) + 2·neg·pos·θ) / (2π),
    /// with k₊, k₋ as in [`crate::duals::PiecewiseLinear`].
    #[inline(always)]
    fn pair(&self, a: &Var32, b: &Var32, q12: f32) -> (f32, f32, f32) {
        let c_same = (self.neg * self.neg + self.pos * self.pos) as f32;
        let c_cross = (2.0 * self.neg * self.pos) as f32;
        let rho = correlation(a, b, q12);
        let (theta, theta_c) = acos_pair_f32(rho);
        let sin_theta = ((1.0 - rho) * (1.0 + rho)).sqrt();
        let scale = a.sqrt_q * b.sqrt_q;
        let k_plus = scale * (sin_theta + theta_c * rho) * INV_2PI;
        let k_minus = scale * (sin_theta - theta * rho) * INV_2PI;
        (
            c_same * k_plus - c_cross * k_minus,
            (c_same * theta_c + c_cross * theta) * INV_2PI,
            rho.abs(),
        )
    }
}

/// The activations with an f32 dual.
#[derive(Debug, Clone, Copy)]
pub enum Single {
    Relu,
    PiecewiseLinear(PiecewiseLinear),
}

impl Single {
    pub fn of(activation: Activation) -> Option<Self> {
        match activation {
            Activation::Relu => Some(Single::Relu),
            Activation::LeakyRelu { slope } => Some(Single::PiecewiseLinear(PiecewiseLinear {
                neg: slope,
                pos: 1.0,
            })),
            Activation::Abs => Some(Single::PiecewiseLinear(PiecewiseLinear {
                neg: -1.0,
                pos: 1.0,
            })),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duals::{Dual, Var};
    use crate::trig::Rational;

    fn var32(q: f64) -> Var32 {
        let v = Var::new(q);
        Var32 {
            sqrt_q: v.sqrt_q as f32,
            inv_sqrt_q: v.inv_sqrt_q as f32,
        }
    }

    /// f32 against the f64 duals on a grid of ρ up to RHO_MAX and unequal
    /// variances: Σ within 1e-6 of √(q₁₁q₂₂), Σ̇ within 1e-6.
    #[test]
    fn single_precision_matches_the_f64_duals() {
        let duals: [(&str, Single); 3] = [
            ("relu", Single::of(Activation::Relu).unwrap()),
            (
                "leaky",
                Single::of(Activation::LeakyRelu { slope: 0.2 }).unwrap(),
            ),
            ("abs", Single::of(Activation::Abs).unwrap()),
        ];
        for (name, single) in duals {
            let mut worst = (0.0f64, 0.0f64);
            for &(q1, q2) in &[(1.0, 1.0), (0.3, 7.0), (1e-6, 2e5), (25.0, 0.04)] {
                let (a, b) = (Var::new(q1), Var::new(q2));
                let n = 20001;
                for i in 0..n {
                    let rho = (-1.0 + 2.0 * i as f64 / (n - 1) as f64) * RHO_MAX as f64;
                    let q12 = rho * (q1 * q2).sqrt();
                    let (s64, d64) = match single {
                        Single::Relu => Dual::pair::<Rational>(&Relu, &a, &b, q12),
                        Single::PiecewiseLinear(p) => Dual::pair::<Rational>(&p, &a, &b, q12),
                    };
                    let (s32, d32, r32) = match single {
                        Single::Relu => Dual32::pair(&Relu, &var32(q1), &var32(q2), q12 as f32),
                        Single::PiecewiseLinear(p) => {
                            Dual32::pair(&p, &var32(q1), &var32(q2), q12 as f32)
                        }
                    };
                    assert!((r32 as f64 - rho.abs()).abs() < 1e-6);
                    let scale = (q1 * q2).sqrt();
                    worst.0 = worst.0.max((s32 as f64 - s64).abs() / scale);
                    worst.1 = worst.1.max((d32 as f64 - d64).abs());
                }
            }
            assert!(worst.0 < 1e-6 && worst.1 < 1e-6, "{name}: {worst:?}");
        }
    }
}
