//! Branch-free arcsine and arccosine for the inner loops of the dual activations.
//!
//! `f64::acos` calls into libm and blocks vectorisation of the per-pair loops;
//! these versions compute every branch and select, so the compiler turns a loop
//! over a tile row into SIMD code. They use the classic rational minimax
//! approximation of asin on [0, 1/2] (the coefficients are those of Sun's
//! fdlibm) and the half-angle identity beyond, and agree with libm to a few
//! units in the last place.

use std::f64::consts::{FRAC_PI_2, PI};

// The decimal expansions are kept as published; they round to the intended doubles.
#[allow(clippy::excessive_precision)]
mod coefficients {
    pub const P0: f64 = 1.666_666_666_666_666_574_15e-01;
    pub const P1: f64 = -3.255_658_186_224_009_154_05e-01;
    pub const P2: f64 = 2.012_125_321_348_629_258_81e-01;
    pub const P3: f64 = -4.005_553_450_067_941_140_27e-02;
    pub const P4: f64 = 7.915_349_942_898_145_321_76e-04;
    pub const P5: f64 = 3.479_331_075_960_211_675_70e-05;
    pub const Q1: f64 = -2.403_394_911_734_414_218_78e+00;
    pub const Q2: f64 = 2.020_945_760_233_505_694_71e+00;
    pub const Q3: f64 = -6.882_839_716_054_532_930_30e-01;
    pub const Q4: f64 = 7.703_815_055_590_193_527_91e-02;
}
use coefficients::*;

/// The reduction of [`reduce`] for any float type, with `$core(t, z)` the
/// arcsine on [0, 1/2] of t, given z = t².
macro_rules! reduced {
    ($x:expr, $core:expr) => {{
        let a = $x.abs();
        let large = a > 0.5;
        let z = if large { 0.5 * (1.0 - a) } else { a * a };
        let t = if large { z.sqrt() } else { a };
        ($core(t, z), large)
    }};
}

/// (acos ρ, π − acos ρ) from the reduction (s, large) of ρ, for any float type
/// (`$pi`, `$half_pi`: π and π/2 in that type).
macro_rules! angles {
    ($reduced:expr, $rho:expr, $pi:expr, $half_pi:expr) => {{
        let ((s, large), rho) = ($reduced, $rho);
        let near = 2.0 * s; // acos(|ρ|) when |ρ| > 1/2
        let far = $pi - near;
        let signed = s.copysign(rho); // asin(ρ) when |ρ| ≤ 1/2
        let positive = rho > 0.0;
        let theta = if large {
            if positive {
                near
            } else {
                far
            }
        } else {
            $half_pi - signed
        };
        let theta_c = if large {
            if positive {
                far
            } else {
                near
            }
        } else {
            $half_pi + signed
        };
        (theta, theta_c)
    }};
}

/// asin(t) for 0 ≤ t ≤ 1/2, given z = t².
#[inline(always)]
fn asin_core(t: f64, z: f64) -> f64 {
    // Horner with fused multiply-adds: one rounding per step, and the same
    // bits on every machine (mul_add is correctly rounded in hardware or in software).
    let p = z * z.mul_add(
        z.mul_add(z.mul_add(z.mul_add(z.mul_add(P5, P4), P3), P2), P1),
        P0,
    );
    let q = z.mul_add(z.mul_add(z.mul_add(z.mul_add(Q4, Q3), Q2), Q1), 1.0);
    t.mul_add(p / q, t)
}

/// Reduces |x| ≤ 1 to the core interval. Returns (s, large) with
/// s = asin(|x|) when |x| ≤ 1/2 and s = asin(√((1 − |x|)/2)) otherwise,
/// in which case asin(|x|) = π/2 − 2s and acos(|x|) = 2s.
#[inline(always)]
fn reduce(x: f64) -> (f64, bool) {
    reduced!(x, asin_core)
}

/// asin(x) for x ∈ [−1, 1].
#[inline(always)]
pub fn asin(x: f64) -> f64 {
    let (s, large) = reduce(x);
    let magnitude = if large { FRAC_PI_2 - 2.0 * s } else { s };
    magnitude.copysign(x)
}

/// (acos(ρ), π − acos(ρ)) for ρ ∈ [−1, 1], both accurate to a few ulps
/// (the second is computed as acos(−ρ), not by subtraction, so it keeps its
/// relative accuracy as ρ → −1).
#[inline(always)]
pub fn acos_pair(rho: f64) -> (f64, f64) {
    angles!(reduce(rho), rho, PI, FRAC_PI_2)
}

/// Single-precision minimax coefficients of (asin(t) − t)/t³ as a polynomial
/// in t² on [0, 1/2] (those of Moshier's Cephes `asinf`), highest degree first.
#[allow(clippy::excessive_precision)]
const ASIN_F32: [f32; 5] = [
    4.216_319_904_8e-2,
    2.418_131_104_9e-2,
    4.547_002_599_8e-2,
    7.495_300_268_6e-2,
    1.666_675_242_2e-1,
];

/// (acos(ρ), π − acos(ρ)) in single precision for ρ ∈ [−1, 1], to a few ulps
/// of f32: the same reduction as [`acos_pair`] with a polynomial and no
/// division, for the float32 kernels (8 lanes per AVX2 register).
#[inline(always)]
pub fn acos_pair_f32(rho: f32) -> (f32, f32) {
    use std::f32::consts::{FRAC_PI_2, PI};
    let core = |t: f32, z: f32| {
        let p = ASIN_F32[1..]
            .iter()
            .fold(ASIN_F32[0], |p, &c| z.mul_add(p, c));
        (t * z).mul_add(p, t)
    };
    angles!(reduced!(rho, core), rho, PI, FRAC_PI_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        if b == 0.0 {
            a.abs()
        } else {
            ((a - b) / b).abs()
        }
    }

    #[test]
    fn agrees_with_libm_on_a_dense_grid() {
        let n = 200_001;
        let mut worst = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            let x = -1.0 + 2.0 * i as f64 / (n - 1) as f64;
            // Also probe points next to ±1, ±1/2 and 0.
            for y in [
                x,
                1.0 - 1e-12 * i as f64,
                0.5 + 1e-13 * (i as f64 - 1e5),
                1e-300 * x,
            ] {
                let y = y.clamp(-1.0, 1.0);
                let (t, tc) = acos_pair(y);
                worst.0 = worst.0.max(rel(asin(y), y.asin()));
                worst.1 = worst.1.max(rel(t, y.acos()));
                worst.2 = worst.2.max(rel(tc, (-y).acos()));
            }
        }
        assert!(
            worst.0 < 1e-15 && worst.1 < 1e-15 && worst.2 < 1e-15,
            "{worst:?}"
        );
    }

    /// Against f64 acos, in absolute error: within two ulps of π in f32.
    #[test]
    fn single_precision_agrees_with_libm() {
        let n = 2_000_001;
        let mut worst = 0.0f64;
        for i in 0..n {
            let x = (-1.0 + 2.0 * i as f64 / (n - 1) as f64) as f32;
            let (t, tc) = acos_pair_f32(x);
            let (et, etc) = ((x as f64).acos(), (-(x as f64)).acos());
            worst = worst.max((t as f64 - et).abs().max((tc as f64 - etc).abs()));
        }
        // π's ulp in f32 is 2.4e-7; the worst seen is 3.0e-7.
        assert!(worst < 4e-7, "{worst:e}");
        assert_eq!(acos_pair_f32(1.0), (0.0, std::f32::consts::PI));
        assert_eq!(acos_pair_f32(-1.0), (std::f32::consts::PI, 0.0));
    }

    #[test]
    fn exact_at_the_ends() {
        assert_eq!(acos_pair(1.0), (0.0, PI));
        assert_eq!(acos_pair(-1.0), (PI, 0.0));
        assert_eq!(asin(0.0), 0.0);
        assert_eq!(asin(1.0), FRAC_PI_2);
    }
}
