//! Initial parameters: iid standard normal numbers that depend only on a seed.
//!
//! The generator is counter-based, so any entry can be computed on its own
//! and the result is the same for every thread count and every machine:
//!
//! * every tensor has a stream number (W⁽ˡ⁾ is stream 2l, b⁽ˡ⁾ is 2l + 1);
//! * the key of a stream is `mix(mix(seed) ^ mix(stream + γ))`, and its i-th
//!   64-bit word is `mix(key + (i + 1) · γ)`, with γ = 0x9E3779B97F4A7C15 and
//!   `mix` the SplitMix64 finaliser (Steele, Lea & Flood 2014);
//! * words 2j and 2j + 1 give u₁ = (1 + (w₂ⱼ >> 11)) 2⁻⁵³ ∈ (0, 1] and
//!   u₂ = (w₂ⱼ₊₁ >> 11) 2⁻⁵³ ∈ [0, 1), and Box–Muller gives entries 2j and 2j + 1:
//!   r cos(2πu₂) and r sin(2πu₂) with r = √(−2 ln u₁).
//!
//! `ln`, `cos` and `sin` come from the pure-Rust `libm` crate, so the bits do
//! not depend on the platform's math library.

use crate::error::Result;
use crate::pool;
use rayon::prelude::*;
use std::f64::consts::TAU;

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective mixer of 64-bit words.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn stream_key(seed: u64, stream: u64) -> u64 {
    mix(mix(seed) ^ mix(stream.wrapping_add(GAMMA)))
}

fn word(key: u64, i: u64) -> u64 {
    mix(key.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)))
}

/// The Box–Muller pair j of a stream.
fn normal_pair(key: u64, j: u64) -> (f64, f64) {
    const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
    let u1 = (1 + (word(key, 2 * j) >> 11)) as f64 * SCALE;
    let u2 = (word(key, 2 * j + 1) >> 11) as f64 * SCALE;
    let r = (-2.0 * libm::log(u1)).sqrt();
    let angle = TAU * u2;
    (r * libm::cos(angle), r * libm::sin(angle))
}

/// Fills `out` with entries 0 … len − 1 of the standard normal stream `stream` of `seed`.
pub fn standard_normal(seed: u64, stream: u64, out: &mut [f64]) -> Result<()> {
    const CHUNK: usize = 1 << 14; // even, so chunks start on a Box–Muller pair
    let key = stream_key(seed, stream);
    pool::pool()?.install(|| {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                let first_pair = (c * CHUNK / 2) as u64;
                for (p, values) in chunk.chunks_mut(2).enumerate() {
                    let (z0, z1) = normal_pair(key, first_pair + p as u64);
                    values[0] = z0;
                    if let Some(v) = values.get_mut(1) {
                        *v = z1;
                    }
                }
            })
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_agree_and_streams_differ() {
        let mut long = vec![0.0; 40_001];
        let mut short = vec![0.0; 17];
        standard_normal(7, 3, &mut long).unwrap();
        standard_normal(7, 3, &mut short).unwrap();
        assert_eq!(&long[..17], &short[..]);
        let mut other = vec![0.0; 17];
        standard_normal(7, 4, &mut other).unwrap();
        assert!(other.iter().zip(&short).all(|(a, b)| a != b));
        standard_normal(8, 3, &mut other).unwrap();
        assert!(other.iter().zip(&short).all(|(a, b)| a != b));
    }

    #[test]
    fn moments_are_those_of_a_standard_normal() {
        let n = 200_000;
        let mut z = vec![0.0; n];
        standard_normal(0, 0, &mut z).unwrap();
        let moment = |p: i32| z.iter().map(|v| v.powi(p)).sum::<f64>() / n as f64;
        // Standard errors: √(1/n), √(2/n), √(15/n), √(96/n) ≈ 0.002, 0.003, 0.009, 0.02.
        assert!(moment(1).abs() < 0.01);
        assert!((moment(2) - 1.0).abs() < 0.015);
        assert!(moment(3).abs() < 0.045);
        assert!((moment(4) - 3.0).abs() < 0.1);
        // Neighbouring entries (the two halves of a Box–Muller pair) are uncorrelated.
        let lag1 = z.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / n as f64;
        assert!(lag1.abs() < 0.01);
    }
}
