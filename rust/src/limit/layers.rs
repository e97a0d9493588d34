//! Layers 2 … L of the recursion on one tile in f64: through a closed-form
//! dual ([`Layers::run`]) or the Hermite series ([`Layers::run_series`]).

use super::diagonal::LayerVars;
use crate::duals::{Dual, Var};
use crate::hermite::{series_row, Columns, Row, Series};
use crate::simd::Simd;
use crate::tiles::Tile;
use crate::trig::{Arcsine, Polynomial, Rational};
use std::sync::atomic::{AtomicBool, Ordering};

/// max |v| (0 for an empty slice), with independent lanes so that it vectorises.
#[inline(always)]
fn max_abs(values: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let mut chunks = values.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            let a = c[l].abs();
            lanes[l] = if a > lanes[l] { a } else { lanes[l] };
        }
    }
    let rest = chunks
        .remainder()
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs()));
    lanes.iter().fold(rest, |m, &v| m.max(v))
}

/// Per-thread buffers of the series layers: one tile row's correlations and
/// values, the row sample's coefficients and a copy of the tile columns' ones.
#[derive(Default)]
pub(super) struct SeriesScratch {
    rho: Vec<f64>,
    value: Vec<f64>,
    value_dot: Vec<f64>,
    row_a: Row,
    row_b: Row,
    cols_a: Columns,
    cols_b: Columns,
}

/// The layers 2 … L of the recursion on one tile: the per-sample variances of
/// the tile's rows and columns for layers 1 … L − 1.
pub(super) struct Layers<'a> {
    pub rows: &'a [LayerVars],
    pub cols: &'a [LayerVars],
    pub tile: Tile,
    pub want_ntk: bool,
    pub b2: f64,
    /// Checked between layers, so that very deep networks stop promptly too.
    pub cancel: &'a AtomicBool,
}

impl Layers<'_> {
    /// Runs all layers in place on the Σ and Θ tiles, in the widest SIMD the
    /// machine has, with the arcsine evaluation that is faster there
    /// ([`Polynomial`] with AVX-512, else [`Rational`]: see [`Arcsine`]).
    pub fn run<D: Dual>(&self, dual: D, simd: Simd, sigma: &mut [f64], theta: &mut [f64]) {
        if simd.divides_slowly() {
            self.run_with::<D, Polynomial>(dual, simd, sigma, theta)
        } else {
            self.run_with::<D, Rational>(dual, simd, sigma, theta)
        }
    }

    /// As [`Layers::run`] with the arcsine evaluation `A`. The arithmetic is
    /// the same on every SIMD path (no fused multiply-adds are introduced), so
    /// the result depends on `A` but not on `simd`.
    pub(super) fn run_with<D: Dual, A: Arcsine>(
        &self,
        dual: D,
        simd: Simd,
        sigma: &mut [f64],
        theta: &mut [f64],
    ) {
        simd.run(
            #[inline(always)]
            || self.run_generic::<D, A>(dual, sigma, theta),
        )
    }

    /// Θ⁽¹⁾ = Σ⁽¹⁾ is not stored: the first layer reads it from the Σ tile
    /// (one pass over the tile less), so `theta` may hold anything on entry.
    #[inline(always)]
    fn run_generic<D: Dual, A: Arcsine>(&self, dual: D, sigma: &mut [f64], theta: &mut [f64]) {
        let mut layers = self.rows.iter().zip(self.cols);
        match layers.next() {
            Some((rows, cols)) => self.layer::<D, A, true>(dual, rows, cols, sigma, theta),
            None => {
                if self.want_ntk {
                    theta.copy_from_slice(sigma);
                }
                return;
            }
        }
        for (rows, cols) in layers {
            if self.cancel.load(Ordering::Relaxed) {
                return;
            }
            self.layer::<D, A, false>(dual, rows, cols, sigma, theta);
        }
    }

    /// All layers through the Hermite series (`rows[l]`, `cols[l]` map layer
    /// l + 1 to l + 2 for the tile's row and column samples).
    #[allow(clippy::too_many_arguments)]
    pub fn run_series(
        &self,
        rows: &[Series],
        cols: &[Series],
        symmetric: bool,
        simd: Simd,
        scratch: &mut SeriesScratch,
        sigma: &mut [f64],
        theta: &mut [f64],
    ) {
        simd.run(
            #[inline(always)]
            || self.run_series_generic(rows, cols, symmetric, scratch, sigma, theta),
        )
    }

    #[inline(always)]
    fn run_series_generic(
        &self,
        rows: &[Series],
        cols: &[Series],
        symmetric: bool,
        scratch: &mut SeriesScratch,
        sigma: &mut [f64],
        theta: &mut [f64],
    ) {
        let (tile, b2) = (self.tile, self.b2);
        let w = tile.cols();
        // The diagonal of a symmetric diagonal tile is overwritten with the
        // exact per-sample values: leave it out of the largest |ρ|.
        let skip_diagonal = symmetric && tile.is_diagonal();
        let SeriesScratch {
            rho,
            value,
            value_dot,
            row_a,
            row_b,
            cols_a,
            cols_b,
        } = scratch;
        rho.resize(w, 0.0);
        value.resize(w, 0.0);
        value_dot.resize(w, 0.0);
        for (((vr, vc), sr), sc) in self.rows.iter().zip(self.cols).zip(rows).zip(cols) {
            if self.cancel.load(Ordering::Relaxed) {
                return;
            }
            let ci = &vc.inv_sqrt_q[tile.c0..tile.c1];
            let (na, nc) = (sr.samples, sc.samples);
            cols_a.reset(w);
            cols_b.reset(w);
            for (r, (srow, trow)) in sigma
                .chunks_exact_mut(w)
                .zip(theta.chunks_exact_mut(w))
                .enumerate()
            {
                let i = tile.r0 + r;
                let ri = vr.inv_sqrt_q[i];
                for ((p, s), inv) in rho.iter_mut().zip(srow.iter()).zip(ci) {
                    *p = (s * ri * inv).clamp(-1.0, 1.0);
                }
                // The diagonal of a symmetric diagonal tile is overwritten
                // with the exact per-sample values: it needs no terms.
                let r_max = if skip_diagonal {
                    let own = std::mem::replace(&mut rho[r], 0.0);
                    let m = max_abs(rho);
                    rho[r] = own;
                    m
                } else {
                    max_abs(rho)
                };
                // Terms for the largest |ρ| of this row (bounds from the
                // tile's row and column blocks).
                let (ka, kb) = Series::terms_for((sr, i), (sc, tile.c0), r_max);
                sr.a.gather(i, na, ka, row_a);
                cols_a.extend(&sc.a, nc, tile.c0, ka);
                series_row(row_a, cols_a.tables(), w, rho, value);
                if self.want_ntk {
                    sr.b.gather(i, na, kb, row_b);
                    cols_b.extend(&sc.b, nc, tile.c0, kb);
                    series_row(row_b, cols_b.tables(), w, rho, value_dot);
                    for (((s, t), v), d) in srow
                        .iter_mut()
                        .zip(trow.iter_mut())
                        .zip(value.iter())
                        .zip(value_dot.iter())
                    {
                        let next = v + b2;
                        *t = *t * d + next;
                        *s = next;
                    }
                } else {
                    for (s, v) in srow.iter_mut().zip(value.iter()) {
                        *s = v + b2;
                    }
                }
            }
        }
    }

    /// One layer in place: Σ ← dual(Σ) + β², Θ ← Θ Σ̇ + Σ (with Θ read as
    /// the incoming Σ when `FIRST`).
    #[inline(always)]
    fn layer<D: Dual, A: Arcsine, const FIRST: bool>(
        &self,
        dual: D,
        rows: &LayerVars,
        cols: &LayerVars,
        sigma: &mut [f64],
        theta: &mut [f64],
    ) {
        let (tile, b2) = (self.tile, self.b2);
        let w = tile.cols();
        let (cq, cs, ci) = (
            &cols.q[tile.c0..tile.c1],
            &cols.sqrt_q[tile.c0..tile.c1],
            &cols.inv_sqrt_q[tile.c0..tile.c1],
        );
        for (r, (srow, trow)) in sigma
            .chunks_exact_mut(w)
            .zip(theta.chunks_exact_mut(w))
            .enumerate()
        {
            let a = rows.get(tile.r0 + r);
            let cols = cq
                .iter()
                .zip(cs)
                .zip(ci)
                .map(|((&q, &sqrt_q), &inv_sqrt_q)| Var {
                    q,
                    sqrt_q,
                    inv_sqrt_q,
                });
            if self.want_ntk {
                for ((s, t), b) in srow.iter_mut().zip(trow.iter_mut()).zip(cols) {
                    let (value, value_dot) = dual.pair::<A>(&a, &b, *s);
                    let next = value + b2;
                    let previous = if FIRST { *s } else { *t };
                    *t = previous * value_dot + next;
                    *s = next;
                }
            } else {
                for (s, b) in srow.iter_mut().zip(cols) {
                    *s = dual.pair::<A>(&a, &b, *s).0 + b2;
                }
            }
        }
    }
}
