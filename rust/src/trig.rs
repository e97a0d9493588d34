//! Branch-free arcsine and arccosine for the inner loops of the dual activations.
//!
//! `f64::acos` calls into libm and blocks vectorisation of the per-pair loops;
//! these versions compute every branch and select, so the compiler turns a loop
//! over a tile row into SIMD code. Both reduce to asin on [0, 1/2] (the
//! half-angle identity beyond) and agree with libm to a few units in the last
//! place. They differ in how they share out the work between the CPU's
//! multiply-add units and its one divide/square-root unit, so the faster one
//! depends on the instruction set (see [`Arcsine`]).

use std::f64::consts::{FRAC_PI_2, PI};

/// Horner's rule with fused multiply-adds in z's precision, coefficients
/// lowest degree first.
macro_rules! horner {
    ($z:expr, $c:expr) => {{
        let (z, c) = ($z, &$c);
        c[..c.len() - 1]
            .iter()
            .rev()
            .fold(c[c.len() - 1], |p, &k| z.mul_add(p, k))
    }};
}

/// The reduction of [`reduce`] for any float type.
macro_rules! reduced {
    ($x:expr) => {{
        let a = $x.abs();
        let large = a > 0.5;
        let z = if large { 0.5 * (1.0 - a) } else { a * a };
        let t = if large { z.sqrt() } else { a };
        (t, z, large)
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

/// An evaluation of the arcsine family in the per-pair loops.
///
/// [`Rational`] takes one division and two square roots per correlation,
/// [`Polynomial`] one square root and 25 more multiply-adds. With AVX-512 the
/// divide/square-root unit handles 8 doubles at the rate AVX2 handles 4, and
/// bounds the loops: there [`Polynomial`] is faster, with AVX2 it is slower
/// (measurements in docs/performance.md). Each gives the same bits on every
/// instruction set; the two differ by a few ulps.
pub trait Arcsine: Copy {
    /// asin(t) for 0 ≤ t ≤ 1/2, given z = t².
    fn core(t: f64, z: f64) -> f64;
    /// sin(acos ρ) = √(1 − ρ²) for the reduction (t, z, large) of ρ (see [`reduce`]).
    fn sine(rho: f64, t: f64, z: f64, large: bool) -> f64;
}

/// The classic rational minimax approximation of asin on [0, 1/2] (the
/// coefficients of Sun's fdlibm) and √((1 − ρ)(1 + ρ)).
#[derive(Debug, Clone, Copy)]
pub struct Rational;

impl Arcsine for Rational {
    #[inline(always)]
    fn core(t: f64, z: f64) -> f64 {
        // Horner with fused multiply-adds: one rounding per step, and the same
        // bits on every machine (mul_add is correctly rounded in hardware or in software).
        let p = z * z.mul_add(
            z.mul_add(z.mul_add(z.mul_add(z.mul_add(P5, P4), P3), P2), P1),
            P0,
        );
        let q = z.mul_add(z.mul_add(z.mul_add(z.mul_add(Q4, Q3), Q2), Q1), 1.0);
        t.mul_add(p / q, t)
    }

    #[inline(always)]
    fn sine(rho: f64, _t: f64, _z: f64, _large: bool) -> f64 {
        ((1.0 - rho) * (1.0 + rho)).sqrt()
    }
}

/// Division-free: minimax polynomials for asin on [0, 1/2] and for √(1 − ρ²).
/// Both branches of the reduction share z ∈ [0, 1/4]: √(1 − ρ²) is √(1 − z)
/// when |ρ| ≤ 1/2 (z = ρ²) and sin 2s = 2t√(1 − t²) = 2t√(1 − z) beyond
/// (t = √z = sin s, acos|ρ| = 2s), so one polynomial in z replaces the
/// second square root.
#[derive(Debug, Clone, Copy)]
pub struct Polynomial;

impl Arcsine for Polynomial {
    #[inline(always)]
    fn core(t: f64, z: f64) -> f64 {
        (t * z).mul_add(horner!(z, ASIN_POLY), t)
    }

    #[inline(always)]
    fn sine(_rho: f64, t: f64, z: f64, large: bool) -> f64 {
        let root = horner!(z, SQRT_1M_POLY);
        if large {
            2.0 * t * root
        } else {
            root
        }
    }
}

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

/// Minimax coefficients (relative error 1.2e-15 on [0, 1/4]) of
/// (asin(t) − t)/t³ as a polynomial in z = t², lowest degree first.
const ASIN_POLY: [f64; 12] = [
    0.16666666666666646,
    0.07500000000022013,
    0.04464285710140686,
    0.030381947493985678,
    0.02237204354240184,
    0.017355336764661045,
    0.01392875424071592,
    0.01188224218663178,
    0.007770420018850567,
    0.016132841087646524,
    -0.010913543187827727,
    0.028289229320416054,
];

/// Minimax coefficients (relative error about 4e-17 on [0, 1/4]) of √(1 − z),
/// lowest degree first.
const SQRT_1M_POLY: [f64; 13] = [
    1.0,
    -0.4999999999999779,
    -0.12500000000481196,
    -0.062499999587998206,
    -0.03906251831146471,
    -0.02734326663134357,
    -0.020515974390020682,
    -0.01602143506067385,
    -0.013793424322969556,
    -0.007283656925265198,
    -0.021627742022292094,
    0.017849945540900497,
    -0.0347483937479511,
];

/// Reduces |x| ≤ 1 to the core interval: (t, z = t², large) with t = |x|
/// when |x| ≤ 1/2 and t = √((1 − |x|)/2) otherwise (`large`), in which case
/// asin(|x|) = π/2 − 2 asin(t) and acos(|x|) = 2 asin(t).
#[inline(always)]
fn reduce(x: f64) -> (f64, f64, bool) {
    reduced!(x)
}

/// asin(x) for x ∈ [−1, 1].
#[inline(always)]
pub fn asin<A: Arcsine>(x: f64) -> f64 {
    let (t, z, large) = reduce(x);
    let s = A::core(t, z);
    let magnitude = if large { FRAC_PI_2 - 2.0 * s } else { s };
    magnitude.copysign(x)
}

/// (acos ρ, π − acos ρ, √(1 − ρ²)) for ρ ∈ [−1, 1], each to a few ulps (π − acos ρ
/// is computed as acos(−ρ), not by subtraction, so it keeps its relative
/// accuracy as ρ → −1).
#[inline(always)]
pub fn acos_sin_pair<A: Arcsine>(rho: f64) -> (f64, f64, f64) {
    let (t, z, large) = reduce(rho);
    let (theta, theta_c) = angles!((A::core(t, z), large), rho, PI, FRAC_PI_2);
    (theta, theta_c, A::sine(rho, t, z, large))
}

/// Single-precision minimax coefficients of (asin(t) − t)/t³ as a polynomial
/// in t² on [0, 1/2] (those of Moshier's Cephes `asinf`), lowest degree first.
#[allow(clippy::excessive_precision)]
const ASIN_F32: [f32; 5] = [
    1.666_675_242_2e-1,
    7.495_300_268_6e-2,
    4.547_002_599_8e-2,
    2.418_131_104_9e-2,
    4.216_319_904_8e-2,
];

/// (acos(ρ), π − acos(ρ)) in single precision for ρ ∈ [−1, 1], to a few ulps
/// of f32: the same reduction as [`acos_sin_pair`] with a polynomial and no
/// division, for the float32 kernels (8 lanes per AVX2 register).
#[inline(always)]
pub fn acos_pair_f32(rho: f32) -> (f32, f32) {
    use std::f32::consts::{FRAC_PI_2, PI};
    let (t, z, large) = reduced!(rho);
    angles!(
        ((t * z).mul_add(horner!(z, ASIN_F32), t), large),
        rho,
        PI,
        FRAC_PI_2
    )
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

    /// asin, acos ρ, acos(−ρ) and √(1 − ρ²) against libm (the last as
    /// √((1 − ρ)(1 + ρ)), itself within an ulp or two), for one evaluation.
    fn worst_against_libm<A: Arcsine>() -> [f64; 4] {
        let n = 200_001;
        let mut worst = [0.0f64; 4];
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
                let (t, tc, sin) = acos_sin_pair::<A>(y);
                let errors = [
                    rel(asin::<A>(y), y.asin()),
                    rel(t, y.acos()),
                    rel(tc, (-y).acos()),
                    rel(sin, ((1.0 - y) * (1.0 + y)).sqrt()),
                ];
                for (w, e) in worst.iter_mut().zip(errors) {
                    *w = w.max(e);
                }
            }
        }
        worst
    }

    #[test]
    fn agrees_with_libm_on_a_dense_grid() {
        // Worst seen: rational 2.2e-16 (sin: 0, the same formula), polynomial
        // 4.2e-16, 2.2e-16, 2.2e-16 and 4.4e-16.
        for worst in [
            worst_against_libm::<Rational>(),
            worst_against_libm::<Polynomial>(),
        ] {
            assert!(worst.iter().all(|&w| w < 1e-15), "{worst:?}");
        }
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
        fn check<A: Arcsine>() {
            assert_eq!(asin::<A>(0.0), 0.0);
            assert_eq!(asin::<A>(1.0), FRAC_PI_2);
            assert_eq!(acos_sin_pair::<A>(1.0), (0.0, PI, 0.0));
            assert_eq!(acos_sin_pair::<A>(-1.0), (PI, 0.0, 0.0));
            assert_eq!(acos_sin_pair::<A>(0.0), (FRAC_PI_2, FRAC_PI_2, 1.0));
        }
        check::<Rational>();
        check::<Polynomial>();
    }
}
