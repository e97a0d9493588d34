//! The layers of a float32 tile in single precision, for the piecewise-linear
//! activations (ReLU, leaky ReLU, |x|).
//!
//! A float32 kernel is stored to 6e-8 and asked for 1e-4, yet its recursion in
//! f64 costs as much as the float32 GEMM before it. In f32 the same formulas
//! run twice as many pairs per instruction ([`crate::duals_f32`]). They are
//! accurate except next to ρ = ±1, so a row is handed back to the f64 path of
//! the f64 layers when any of its pairs has |ρ⁽¹⁾| > 0.99 (where a float32
//! Gram entry is recomputed in f64), |ρ| > [`RHO_MAX`] at a later layer, or
//! when the sensitivity of its largest |ρ| summed over the layers exceeds
//! [`SENSITIVITY_MAX`]. Typical data at moderate depth has few such rows; deep
//! networks, whose correlations all climb towards 1, run mostly in f64.

use super::diagonal::LayerVars;

use crate::duals_f32::{Dual32, Single, Var32, REFINE_RHO, RHO_MAX, SENSITIVITY_MAX};
use crate::simd::Simd;
use crate::tiles::Tile;
use std::sync::atomic::{AtomicBool, Ordering};

/// √q and 1/√q of one layer for a set of samples, in f32.
#[derive(Debug, Clone, Default)]
pub struct LayerVars32 {
    sqrt_q: Vec<f32>,
    inv_sqrt_q: Vec<f32>,
}

impl LayerVars32 {
    /// The f32 copy of `vars`, or None when a variance is outside
    /// [1e-30, 1e30] (0 excepted): there products of two f32 variances or
    /// their inverse square roots would overflow or lose precision to subnormals.
    pub fn of(vars: &LayerVars) -> Option<Self> {
        if !vars
            .q
            .iter()
            .all(|&q| q == 0.0 || (1e-30..=1e30).contains(&q))
        {
            return None;
        }
        let single = |v: &[f64]| v.iter().map(|&x| x as f32).collect();
        Some(LayerVars32 {
            sqrt_q: single(&vars.sqrt_q),
            inv_sqrt_q: single(&vars.inv_sqrt_q),
        })
    }

    #[inline(always)]
    fn get(&self, i: usize) -> Var32 {
        Var32 {
            sqrt_q: self.sqrt_q[i],
            inv_sqrt_q: self.inv_sqrt_q[i],
        }
    }
}

/// Per-thread f32 tiles: Σ, Θ, the mirror image of symmetric outputs; and per
/// row which are left to the f64 path and their accumulated sensitivity.
pub struct Scratch32 {
    pub sigma: Vec<f32>,
    pub theta: Vec<f32>,
    pub transposed: Vec<f32>,
    pub double: Vec<bool>,
    pub sensitivity: Vec<f32>,
}

impl Scratch32 {
    /// Buffers for tiles of up to `edge` × `edge`.
    pub fn new(edge: usize) -> Self {
        Scratch32 {
            sigma: vec![0.0; edge * edge],
            theta: vec![0.0; edge * edge],
            transposed: vec![0.0; edge * edge],
            double: vec![false; edge],
            sensitivity: vec![0.0; edge],
        }
    }
}

/// The layers 1 → L of one tile in f32 (`rows[l]`, `cols[l]`: variances of
/// layer l + 1 for the tile's row and column samples).
pub struct Layers32<'a> {
    pub rows: &'a [LayerVars32],
    pub cols: &'a [LayerVars32],
    pub tile: Tile,
    /// The tile is on the diagonal of a symmetric output: its diagonal is
    /// overwritten with the exact per-sample values, so its ρ = 1 is ignored.
    pub diagonal: bool,
    pub want_ntk: bool,
    pub inv_n0: f32,
    pub b2: f32,
    pub cancel: &'a AtomicBool,
}

/// One tile's f32 buffers for [`Layers32::run`]: the Gram block in, Σ and Θ
/// out, and per row whether it is handed to f64 and the sum of 1/sin θ so far.
pub struct Tiles32<'t> {
    pub gram: &'t [f32],
    pub sigma: &'t mut [f32],
    pub theta: &'t mut [f32],
    pub double: &'t mut [bool],
    pub sensitivity: &'t mut [f32],
}

impl Layers32<'_> {
    /// Σ⁽ᴸ⁾ and Θ⁽ᴸ⁾ of the tile from its Gram block (Σ⁽¹⁾ = gram/n₀ + β²);
    /// sets `double[r]` for the rows left to the f64 path (their values here
    /// are not to be used). Requires depth ≥ 2.
    pub fn run(&self, single: Single, simd: Simd, tiles: Tiles32<'_>) {
        match single {
            Single::Relu => self.run_with(crate::duals::Relu, simd, tiles),
            Single::PiecewiseLinear(d) => self.run_with(d, simd, tiles),
        }
    }

    fn run_with<D: Dual32>(&self, dual: D, simd: Simd, tiles: Tiles32<'_>) {
        simd.run(
            #[inline(always)]
            || self.run_generic(dual, tiles),
        )
    }

    #[inline(always)]
    fn run_generic<D: Dual32>(&self, dual: D, mut tiles: Tiles32<'_>) {
        tiles.double.fill(false);
        tiles.sensitivity.fill(0.0);
        let mut layers = self.rows.iter().zip(self.cols);
        let Some((rows, cols)) = layers.next() else {
            return;
        };
        self.layer::<D, true>(dual, rows, cols, &mut tiles);
        for (rows, cols) in layers {
            if self.cancel.load(Ordering::Relaxed) {
                return;
            }
            self.layer::<D, false>(dual, rows, cols, &mut tiles);
        }
    }

    /// One layer in place: Σ ← dual(Σ) + β², Θ ← Θ Σ̇ + Σ, where the first
    /// reads Σ⁽¹⁾ = Θ⁽¹⁾ from the Gram block. Rows already handed to f64 are
    /// skipped.
    #[inline(always)]
    fn layer<D: Dual32, const FIRST: bool>(
        &self,
        dual: D,
        rows: &LayerVars32,
        cols: &LayerVars32,
        tiles: &mut Tiles32<'_>,
    ) {
        let (tile, b2, inv_n0) = (self.tile, self.b2, self.inv_n0);
        let w = tile.cols();
        let limit = if FIRST { REFINE_RHO as f32 } else { RHO_MAX };
        let (cs, ci) = (
            &cols.sqrt_q[tile.c0..tile.c1],
            &cols.inv_sqrt_q[tile.c0..tile.c1],
        );
        let Tiles32 {
            gram,
            sigma,
            theta,
            double,
            sensitivity,
        } = tiles;
        for (r, ((srow, trow), grow)) in sigma
            .chunks_exact_mut(w)
            .zip(theta.chunks_exact_mut(w))
            .zip(gram.chunks_exact(w))
            .enumerate()
        {
            if double[r] {
                continue;
            }
            let a = rows.get(tile.r0 + r);
            // A diagonal tile's own pair (ρ = 1) is left out of the largest |ρ|.
            let own = if self.diagonal { r as u32 } else { u32::MAX };
            let pairs = srow
                .iter_mut()
                .zip(trow.iter_mut())
                .zip(grow)
                .zip(cs)
                .zip(ci)
                .zip(0u32..);
            // The largest |ρ| of the row as bits: for floats ≥ 0 their order is
            // that of the values, and an integer maximum vectorises.
            let mut largest = 0u32;
            if self.want_ntk {
                for (((((s, t), &g), &sqrt_q), &inv_sqrt_q), j) in pairs {
                    let q12 = if FIRST { g * inv_n0 + b2 } else { *s };
                    let b = Var32 { sqrt_q, inv_sqrt_q };
                    let (value, value_dot, rho) = dual.pair(&a, &b, q12);
                    largest = largest.max(if j == own { 0 } else { rho.to_bits() });
                    let next = value + b2;
                    let previous = if FIRST { q12 } else { *t };
                    *t = previous * value_dot + next;
                    *s = next;
                }
            } else {
                for (((((s, _), &g), &sqrt_q), &inv_sqrt_q), j) in pairs {
                    let q12 = if FIRST { g * inv_n0 + b2 } else { *s };
                    let b = Var32 { sqrt_q, inv_sqrt_q };
                    let (value, _, rho) = dual.pair(&a, &b, q12);
                    largest = largest.max(if j == own { 0 } else { rho.to_bits() });
                    *s = value + b2;
                }
            }
            let rho = f32::from_bits(largest);
            sensitivity[r] += 1.0 / ((1.0 - rho) * (1.0 + rho)).sqrt();
            double[r] = rho > limit || sensitivity[r] > SENSITIVITY_MAX;
        }
    }
}
