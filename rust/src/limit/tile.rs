//! The work of one panel of the output: its Gram block in one GEMM call, then
//! for each of its tiles Σ⁽¹⁾, layers 2 … L while the tile sits in cache, and
//! the write into the caller's arrays.

use super::diagonal::{Diagonal, LayerVars};
use super::layers::{Layers, SeriesScratch};
use super::layers_f32::{LayerVars32, Layers32, Scratch32, Tiles32};
use super::Closed;
use crate::activation::with_dual;
use crate::duals_f32::{Single, REFINE_RHO};
use crate::real::Real;
use crate::samples::Samples;
use crate::simd::Simd;
use crate::tiles::{alignable, aligned, Placement, SharedOutput, Store, Tile, PANEL_TILES};
use std::sync::atomic::AtomicBool;

/// A finished tile's Σ and Θ values (row-major, the tile's shape, at the
/// start of the buffers) and a scratch tile for a transposed copy, in the
/// precision its layers ran in. The buffers are the thread's own tile-sized
/// ones: a consumer may swap in another of the same length instead of
/// copying the values out.
pub(super) enum Values<'s> {
    F64 {
        sigma: &'s mut Vec<f64>,
        theta: &'s mut Vec<f64>,
        transposed: &'s mut [f64],
    },
    F32 {
        sigma: &'s mut Vec<f32>,
        theta: &'s mut Vec<f32>,
        transposed: &'s mut [f32],
    },
}

/// Everything the tiles of one computation share.
pub(super) struct TileRun<'a, T> {
    pub x1: Samples<'a, T>,
    pub x2: Samples<'a, T>,
    /// The diagonal recursion of the rows' and the columns' samples.
    pub rows: &'a Diagonal,
    pub cols: &'a Diagonal,
    pub depth: usize,
    /// σ's closed-form dual, or None for the Hermite series.
    pub closed_form: Option<Closed<'a>>,
    pub symmetric: bool,
    pub want_ntk: bool,
    pub b2: f64,
    pub inv_n0: f64,
    pub simd: Simd,
    /// The f32 layers and the rows' and columns' f32 variances, when they run.
    pub single: Option<(Single, Vec<LayerVars32>, Vec<LayerVars32>)>,
    /// Tile edge.
    pub edge: usize,
    pub cancel: &'a AtomicBool,
}

impl<T: Real> TileRun<'_, T> {
    /// One panel: the Gram block of all its tiles in one GEMM call, then each
    /// tile's layers, and `emit` of each finished tile while it sits in cache.
    pub fn panel(&self, scratch: &mut Scratch<T>, panel: Tile, emit: &impl Fn(Tile, Values<'_>)) {
        let w = panel.cols();
        let Scratch {
            gram,
            tile: buffers,
        } = scratch;
        let gram = aligned(gram);
        T::gram_block(
            gram,
            self.x1.block(panel.r0, panel.r1),
            self.x2.block(panel.c0, panel.c1),
            panel.rows(),
            w,
            self.x1.cols,
        );
        for tile in panel.row_tiles(self.edge) {
            let offset = (tile.r0 - panel.r0) * w;
            self.tile(buffers, tile, &gram[offset..offset + tile.rows() * w], emit);
        }
    }

    /// One tile from its Gram block: in f32 layers when they run, else in f64.
    fn tile(
        &self,
        scratch: &mut TileScratch,
        tile: Tile,
        gram: &[T],
        emit: &impl Fn(Tile, Values<'_>),
    ) {
        if let (Some(single), Some(gram32)) = (&self.single, T::as_f32(gram)) {
            return self.tile_f32(scratch, tile, gram, gram32, single, emit);
        }
        let (h, w) = (tile.rows(), tile.cols());
        let TileScratch {
            sigma,
            theta,
            transposed,
            series,
            ..
        } = scratch;
        self.first_layer(tile, &gram[..h * w], &mut sigma[..h * w]);
        self.layers(tile, series, &mut sigma[..h * w], &mut theta[..h * w]);
        emit(
            tile,
            Values::F64 {
                sigma,
                theta,
                transposed,
            },
        );
    }

    /// One tile through the f32 layers; the rows they leave to f64 (pairs
    /// near ρ = ±1) are redone in f64 before the tile is written.
    fn tile_f32(
        &self,
        scratch: &mut TileScratch,
        tile: Tile,
        gram: &[T],
        gram32: &[f32],
        (dual, rows, cols): &(Single, Vec<LayerVars32>, Vec<LayerVars32>),
        emit: &impl Fn(Tile, Values<'_>),
    ) {
        let (h, w) = (tile.rows(), tile.cols());
        let TileScratch {
            sigma,
            theta,
            series,
            single,
            ..
        } = scratch;
        let s32 = single.get_or_insert_with(|| Scratch32::new(self.edge));
        let (sigma32, theta32) = (&mut s32.sigma[..h * w], &mut s32.theta[..h * w]);
        let layers = Layers32 {
            rows,
            cols,
            tile,
            diagonal: self.symmetric && tile.is_diagonal(),
            want_ntk: self.want_ntk,
            inv_n0: self.inv_n0 as f32,
            b2: self.b2 as f32,
            cancel: self.cancel,
        };
        let tiles = Tiles32 {
            gram: &gram32[..h * w],
            sigma: &mut *sigma32,
            theta: &mut *theta32,
            double: &mut s32.double[..h],
            sensitivity: &mut s32.sensitivity[..h],
        };
        layers.run(*dual, self.simd, tiles);
        for r in (0..h).filter(|&r| s32.double[r]) {
            let row = Tile {
                r0: tile.r0 + r,
                r1: tile.r0 + r + 1,
                ..tile
            };
            let (sigma, theta) = (&mut sigma[..w], &mut theta[..w]);
            self.first_layer(row, &gram[r * w..(r + 1) * w], sigma);
            self.layers(row, series, sigma, theta);
            for (d, s) in sigma32[r * w..(r + 1) * w].iter_mut().zip(&*sigma) {
                *d = *s as f32;
            }
            for (d, t) in theta32[r * w..(r + 1) * w].iter_mut().zip(&*theta) {
                *d = *t as f32;
            }
        }
        emit(
            tile,
            Values::F32 {
                sigma: &mut s32.sigma,
                theta: &mut s32.theta,
                transposed: &mut s32.transposed,
            },
        );
    }

    /// Σ⁽¹⁾ = x·x'/n₀ + β² of `tile` in f64 from its Gram block.
    fn first_layer(&self, tile: Tile, gram: &[T], sigma: &mut [f64]) {
        for (s, g) in sigma.iter_mut().zip(gram) {
            *s = g.to_f64() * self.inv_n0 + self.b2;
        }
        if !T::EXACT_GRAM {
            refine_parallel_pairs(
                sigma,
                self.x1,
                self.x2,
                &self.rows.layers[0],
                &self.cols.layers[0],
                tile,
                self.inv_n0,
                self.b2,
            );
        }
    }

    /// Layers 2 … L in f64 on `tile`, from Σ⁽¹⁾ in `sigma` (also Θ⁽¹⁾).
    fn layers(&self, tile: Tile, series: &mut SeriesScratch, sigma: &mut [f64], theta: &mut [f64]) {
        let layers = Layers {
            rows: &self.rows.layers[..self.depth - 1],
            cols: &self.cols.layers[..self.depth - 1],
            tile,
            want_ntk: self.want_ntk,
            b2: self.b2,
            cancel: self.cancel,
        };
        match self.closed_form {
            Some(Closed::Builtin(a)) => {
                with_dual!(a, |dual| layers.run(dual, self.simd, sigma, theta), else ())
            }
            Some(Closed::Pieces(p)) => layers.run(p, self.simd, sigma, theta),
            Some(Closed::Kinked(k)) => layers.run(k, self.simd, sigma, theta),
            None => {
                if self.want_ntk {
                    theta.copy_from_slice(sigma);
                }
                layers.run_series(
                    &self.rows.series,
                    &self.cols.series,
                    self.symmetric,
                    self.simd,
                    series,
                    sigma,
                    theta,
                )
            }
        }
    }
}

/// Where finished tiles go.
pub(super) struct TileWriter<'a, 'o, T> {
    pub nngp: Option<&'a SharedOutput<'o, T>>,
    pub ntk: Option<&'a SharedOutput<'o, T>>,
    pub symmetric: bool,
    /// The exact per-sample values that replace a symmetric output's diagonal.
    pub diagonal: &'a Diagonal,
}

impl<T: Store + Store<f32>> TileWriter<'_, '_, T> {
    /// Writes a finished tile in the precision its layers ran in.
    pub fn emit(&self, tile: Tile, values: Values<'_>) {
        let n = tile.rows() * tile.cols();
        match values {
            Values::F64 {
                sigma,
                theta,
                transposed,
            } => self.tile(tile, &mut sigma[..n], &mut theta[..n], transposed, |v| v),
            Values::F32 {
                sigma,
                theta,
                transposed,
            } => self.tile(tile, &mut sigma[..n], &mut theta[..n], transposed, |v| {
                v as f32
            }),
        }
    }
}

impl<T: Copy> TileWriter<'_, '_, T> {
    /// Writes the Σ and Θ tiles of `tile` (values of type V, `convert` from
    /// f64), mirrored for symmetric outputs.
    fn tile<V: Copy>(
        &self,
        tile: Tile,
        sigma: &mut [V],
        theta: &mut [V],
        transposed: &mut [V],
        convert: impl Fn(f64) -> V,
    ) where
        T: Store<V>,
    {
        let placement = if !self.symmetric {
            Placement::Plain
        } else if tile.is_diagonal() {
            let w = tile.cols();
            for i in 0..tile.rows() {
                sigma[i * w + i] = convert(self.diagonal.nngp()[tile.r0 + i]);
                theta[i * w + i] = convert(self.diagonal.ntk[tile.r0 + i]);
            }
            Placement::Symmetrised
        } else {
            Placement::Mirrored
        };
        // SAFETY: the tiles of `tiles()` are disjoint, mirrors included.
        unsafe {
            if let Some(o) = self.nngp {
                o.write(tile, sigma, placement, transposed);
            }
            if let Some(o) = self.ntk {
                o.write(tile, theta, placement, transposed);
            }
        }
    }
}

/// Recomputes in f64 the Σ⁽¹⁾ entries of pairs with |ρ| > [`REFINE_RHO`] whose
/// Gram entry came from a float32 GEMM: near ρ = ±1 the recursion amplifies
/// the GEMM's rounding (√(1 − ρ²) has infinite slope there), while the
/// diagonal is always exact. Typical data has few such pairs.
#[allow(clippy::too_many_arguments)]
fn refine_parallel_pairs<T: Real>(
    sigma: &mut [f64],
    x1: Samples<'_, T>,
    x2: Samples<'_, T>,
    rows: &LayerVars,
    cols: &LayerVars,
    tile: Tile,
    inv_n0: f64,
    b2: f64,
) {
    const THRESHOLD: f64 = REFINE_RHO;
    let w = tile.cols();
    let ci = &cols.inv_sqrt_q[tile.c0..tile.c1];
    for (r, srow) in sigma.chunks_exact_mut(w).enumerate() {
        let i = tile.r0 + r;
        // Most rows have no such pair: a vectorised scan finds out.
        let ri = rows.inv_sqrt_q[i];
        let mut lanes = [0.0f64; 8];
        for (s8, c8) in srow.chunks_exact(8).zip(ci.chunks_exact(8)) {
            for l in 0..8 {
                let a = (s8[l] * ri * c8[l]).abs();
                lanes[l] = if a > lanes[l] { a } else { lanes[l] };
            }
        }
        let tail = w - w % 8;
        let largest = srow[tail..]
            .iter()
            .zip(&ci[tail..])
            .fold(lanes.iter().fold(0.0f64, |m, &v| m.max(v)), |m, (s, c)| {
                m.max((s * ri * c).abs())
            });
        if largest <= THRESHOLD {
            continue;
        }
        let xi = &x1.data[i * x1.cols..(i + 1) * x1.cols];
        for (c, s) in srow.iter_mut().enumerate() {
            let j = tile.c0 + c;
            if (*s * rows.inv_sqrt_q[i] * cols.inv_sqrt_q[j]).abs() > THRESHOLD {
                let xj = &x2.data[j * x2.cols..(j + 1) * x2.cols];
                let dot: f64 = xi
                    .iter()
                    .zip(xj)
                    .map(|(a, b)| a.to_f64() * b.to_f64())
                    .sum();
                *s = dot * inv_n0 + b2;
            }
        }
    }
}

/// Per-thread buffers: the Gram block of a panel in the input type (see
/// [`aligned`]), and those of one tile.
pub(super) struct Scratch<T> {
    gram: Vec<T>,
    tile: TileScratch,
}

/// Σ and Θ tiles in f64, one more f64 tile for the mirror image of symmetric
/// outputs, and the f32 tiles of the single-precision layers when they run.
pub(super) struct TileScratch {
    sigma: Vec<f64>,
    theta: Vec<f64>,
    transposed: Vec<f64>,
    series: SeriesScratch,
    single: Option<Scratch32>,
}

impl<T: Real> Scratch<T> {
    /// Buffers for panels of up to [`PANEL_TILES`] tiles of `edge` × `edge`.
    pub fn new(edge: usize) -> Self {
        Scratch {
            gram: alignable(PANEL_TILES * edge * edge),
            tile: TileScratch {
                sigma: vec![0.0; edge * edge],
                theta: vec![0.0; edge * edge],
                transposed: vec![0.0; edge * edge],
                series: SeriesScratch::default(),
                single: None,
            },
        }
    }
}
