//! The sequential-limit recursion for the NNGP kernel Σ⁽ᴸ⁾ and the NTK Θ∞⁽ᴸ⁾.
//!
//! ```text
//! Σ⁽¹⁾(x, x') = xᵀx'/n₀ + β²
//! Σ⁽ˡ⁺¹⁾      = E[σ(u)σ(v)] + β²,   Σ̇⁽ˡ⁺¹⁾ = E[σ'(u)σ'(v)],   (u, v) ~ N(0, Σ⁽ˡ⁾ on {x, x'})
//! Θ⁽¹⁾ = Σ⁽¹⁾,  Θ⁽ˡ⁺¹⁾ = Θ⁽ˡ⁾ Σ̇⁽ˡ⁺¹⁾ + Σ⁽ˡ⁺¹⁾
//! ```
//!
//! The diagonal Σ⁽ˡ⁾(x, x) is computed once per sample for every layer
//! (O(N·L)), together with each sample's Hermite coefficients when σ has no
//! closed-form dual; then each output tile runs Σ⁽¹⁾ through one GEMM and all
//! L − 1 layers while it is in cache (in f32 for float32 kernels of the
//! piecewise-linear activations, see `limit_f32`).

use crate::activation::Activation;
use crate::duals::{Dual, Var};
use crate::duals_f32::Single;
use crate::error::{invalid, Error, Result};
use crate::gram::Real;
use crate::hermite::{series_row, Pointwise, Row, Series};
use crate::limit_f32::{LayerVars32, Layers32, Scratch32, Tiles32};
use crate::simd::Simd;
use crate::tiles::{
    alignable, aligned, for_each_tile, panels, Placement, SharedOutput, Tile, PANEL_TILES, TILE,
    TILE_F32,
};
use crate::trig::{Arcsine, Polynomial, Rational};
use crate::with_dual;
use std::sync::atomic::{AtomicBool, Ordering};

/// A row-major matrix of samples: `rows` inputs of dimension `cols` (n₀).
#[derive(Debug, Clone, Copy)]
pub struct Samples<'a, T> {
    pub data: &'a [T],
    pub rows: usize,
    pub cols: usize,
}

impl<'a, T> Samples<'a, T> {
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        let samples = Samples { data, rows, cols };
        samples.check()?;
        Ok(samples)
    }

    /// The checks of [`Samples::new`], repeated by the computations (the
    /// fields are public, so a literal may bypass `new`).
    pub fn check(&self) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        if rows == 0 || cols == 0 {
            return invalid(format!(
                "inputs must be non-empty, got shape ({rows}, {cols})"
            ));
        }
        if rows.checked_mul(cols) != Some(self.data.len()) {
            return invalid(format!(
                "{} values cannot form a ({rows}, {cols}) array",
                self.data.len()
            ));
        }
        Ok(())
    }

    fn block(&self, r0: usize, r1: usize) -> &'a [T] {
        &self.data[r0 * self.cols..r1 * self.cols]
    }
}

/// Where the results go: row-major N₁ × N₂ arrays; `None` skips that kernel.
pub struct Outputs<'a, T> {
    pub nngp: Option<&'a mut [T]>,
    pub ntk: Option<&'a mut [T]>,
}

/// Variances of one layer for a set of samples, stored column-wise so that the
/// inner loops read them contiguously.
#[derive(Debug, Clone, Default)]
pub struct LayerVars {
    pub q: Vec<f64>,
    pub sqrt_q: Vec<f64>,
    pub inv_sqrt_q: Vec<f64>,
}

impl LayerVars {
    fn from_q(q: Vec<f64>) -> Self {
        let (sqrt_q, inv_sqrt_q) = q
            .iter()
            .map(|&q| {
                let v = Var::new(q);
                (v.sqrt_q, v.inv_sqrt_q)
            })
            .unzip();
        LayerVars {
            q,
            sqrt_q,
            inv_sqrt_q,
        }
    }

    #[inline(always)]
    fn get(&self, i: usize) -> Var {
        Var {
            q: self.q[i],
            sqrt_q: self.sqrt_q[i],
            inv_sqrt_q: self.inv_sqrt_q[i],
        }
    }
}

/// Σ⁽ˡ⁾(x, x) for l = 1 … L (`layers[l − 1]`) and Θ⁽ᴸ⁾(x, x) for each sample;
/// for σ without a closed-form dual also the Hermite series that map layer l
/// to layer l + 1 (`series[l − 1]`, l = 1 … L − 1).
#[derive(Debug, Clone)]
pub struct Diagonal {
    pub layers: Vec<LayerVars>,
    pub ntk: Vec<f64>,
    pub series: Vec<Series>,
}

impl Diagonal {
    pub fn nngp(&self) -> &[f64] {
        &self.layers.last().expect("depth ≥ 1").q
    }

    /// An error naming the first sample and layer whose variance (or NTK
    /// diagonal) leaves [0, limit] (the input type's [`Real::MAX_VARIANCE`]).
    /// Off-diagonal entries are bounded by the diagonal (Cauchy–Schwarz), so a
    /// diagonal within the limit means a finite kernel.
    pub fn check_range(&self, name: &str, limit: f64) -> Result<()> {
        let out_of_range = |v: &f64| !(0.0..=limit).contains(v);
        let per_layer = self
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| (format!("Σ⁽{}⁾", superscript(l + 1)), &layer.q));
        for (what, values) in per_layer.chain(std::iter::once(("Θ".to_string(), &self.ntk))) {
            if let Some(i) = values.iter().position(out_of_range) {
                return invalid(format!(
                    "the kernel overflows: {what} of {name} row {i} is {:e} (limit \
                     {limit:e} for this dtype); scale the inputs, beta or the activation down",
                    values[i]
                ));
            }
        }
        Ok(())
    }
}

/// The nonlinearity of a limit kernel: a built-in activation, or σ and σ'
/// supplied by the caller (always through the Hermite series).
#[derive(Clone, Copy)]
pub enum Sigma<'a> {
    Builtin(Activation),
    Custom(&'a dyn Pointwise),
}

impl From<Activation> for Sigma<'_> {
    fn from(a: Activation) -> Self {
        Sigma::Builtin(a)
    }
}

impl std::fmt::Debug for Sigma<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sigma::Builtin(a) => write!(f, "{a:?}"),
            Sigma::Custom(_) => write!(f, "Custom"),
        }
    }
}

/// The limiting kernels of a depth-L fully-connected network.
#[derive(Debug, Clone, Copy)]
pub struct LimitKernel<'a> {
    pub depth: usize,
    pub activation: Sigma<'a>,
    pub beta: f64,
}

/// What a computation reports besides the kernels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Report {
    /// Estimated relative error of the Hermite series (0 for closed forms).
    pub series_error: f64,
    /// The most series terms any layer kept.
    pub series_terms: usize,
}

impl<'a> LimitKernel<'a> {
    pub fn new(depth: usize, activation: impl Into<Sigma<'a>>, beta: f64) -> Result<Self> {
        let activation = activation.into();
        if depth < 1 {
            return invalid(format!("depth must be at least 1, got {depth}"));
        }
        if !beta.is_finite() {
            return invalid(format!("beta must be finite, got {beta}"));
        }
        Ok(LimitKernel {
            depth,
            activation,
            beta,
        })
    }

    /// The activation's closed-form dual, or None for the series.
    fn closed_form(&self) -> Option<Activation> {
        match self.activation {
            Sigma::Builtin(a) if a.has_closed_form() => Some(a),
            _ => None,
        }
    }

    /// The per-sample recursion on the diagonal, O(N·(n₀ + L)) (times the
    /// quadrature nodes for the series).
    pub fn diagonal<T: Real>(&self, x: Samples<'_, T>) -> Result<Diagonal> {
        self.diagonal_until(x, &[], &AtomicBool::new(false))
    }

    /// [`LimitKernel::diagonal`], stopping between layers once `cancel` is set
    /// (Error::Cancelled then): deep networks make this O(N·L) phase long too.
    /// `min_terms[l]`, where given, is the fewest terms the series of layer
    /// l + 1 may keep.
    pub(crate) fn diagonal_until<T: Real>(
        &self,
        x: Samples<'_, T>,
        min_terms: &[usize],
        cancel: &AtomicBool,
    ) -> Result<Diagonal> {
        // Again here: the fields are public, so a literal may bypass `new`.
        Self::new(self.depth, self.activation, self.beta)?;
        x.check()?;
        let b2 = self.beta * self.beta;
        let inv_n0 = 1.0 / x.cols as f64;
        let mut q: Vec<f64> = x
            .data
            .chunks_exact(x.cols)
            .map(|row| row.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>() * inv_n0 + b2)
            .collect();
        let mut theta = q.clone();
        let mut layers = Vec::new();
        layers.try_reserve_exact(self.depth).map_err(|_| {
            Error::Memory(format!(
                "depth {} needs more memory than can be allocated",
                self.depth
            ))
        })?;
        let mut series = Vec::new();
        let builtin;
        let pointwise: &dyn Pointwise = match self.activation {
            Sigma::Builtin(a) => {
                builtin = a;
                &builtin
            }
            Sigma::Custom(p) => p,
        };
        for _ in 1..self.depth {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let duals: Vec<(f64, f64)> = match self.closed_form() {
                Some(a) => q
                    .iter()
                    .map(|&qi| crate::duals::dual_diag(a, qi).unwrap_or_default())
                    .collect(),
                None => {
                    let least = min_terms.get(series.len()).copied().unwrap_or(1);
                    let s = Series::expand_at_least(pointwise, &q, least, cancel)?;
                    let duals = s.sigma.iter().copied().zip(s.sigma_dot.iter().copied());
                    let duals = duals.collect();
                    series.push(s);
                    duals
                }
            };
            let next: Vec<f64> = duals
                .iter()
                .zip(theta.iter_mut())
                .map(|(&(sigma, sigma_dot), ti)| {
                    let next = sigma + b2;
                    *ti = *ti * sigma_dot + next;
                    next
                })
                .collect();
            layers.push(LayerVars::from_q(std::mem::replace(&mut q, next)));
        }
        layers.push(LayerVars::from_q(q));
        Ok(Diagonal {
            layers,
            ntk: theta,
            series,
        })
    }

    /// Computes the kernels between the rows of `x1` and those of `x2`
    /// (`None`: x2 = x1, only the lower triangle of tiles is computed and the
    /// diagonal comes from the exact per-sample recursion) into `out`.
    pub fn compute<T: Real>(
        &self,
        x1: Samples<'_, T>,
        x2: Option<Samples<'_, T>>,
        out: Outputs<'_, T>,
        cancel: &AtomicBool,
    ) -> Result<Report> {
        let symmetric = x2.is_none();
        let x2s = x2.unwrap_or(x1);
        if x1.cols != x2s.cols {
            return invalid(format!(
                "x1 has {} features but x2 has {}",
                x1.cols, x2s.cols
            ));
        }
        let (n1, n2) = (x1.rows, x2s.rows);
        for (name, o) in [("nngp", &out.nngp), ("ntk", &out.ntk)] {
            if let Some(o) = o {
                if n1.checked_mul(n2) != Some(o.len()) {
                    return invalid(format!(
                        "output {name} must hold {n1} x {n2} values, has {}",
                        o.len()
                    ));
                }
            }
        }
        let mut d1 = self.diagonal_until(x1, &[], cancel)?;
        d1.check_range("x1", T::MAX_VARIANCE)?;
        let d2 = if symmetric {
            None
        } else {
            // A pair sums the terms both of its samples' series hold: x2 keeps
            // at least x1's number per layer, and x1 is redone only where x2
            // needed more.
            let terms = |d: &Diagonal| d.series.iter().map(|s| s.terms).collect::<Vec<_>>();
            let d2 = self.diagonal_until(x2s, &terms(&d1), cancel)?;
            d2.check_range("x2", T::MAX_VARIANCE)?;
            if terms(&d2).iter().zip(&terms(&d1)).any(|(t2, t1)| t2 > t1) {
                d1 = self.diagonal_until(x1, &terms(&d2), cancel)?;
            }
            Some(d2)
        };
        let d2 = d2.as_ref().unwrap_or(&d1);
        let mut report = d1
            .series
            .iter()
            .chain(&d2.series)
            .fold(Report::default(), |r, s| Report {
                series_error: r.series_error.max(s.error),
                series_terms: r.series_terms.max(s.terms),
            });
        // Pairs can sum only the terms both series hold (equal unless one set
        // of samples hit a smaller cap): what is left is bounded by δ₁δ₂.
        for (a, b) in d1.series.iter().zip(&d2.series) {
            let t = a.terms.min(b.terms);
            let left = a.worst_tail(t) * b.worst_tail(t);
            report.series_error = report.series_error.max(left);
        }

        let want_ntk = out.ntk.is_some();
        let nngp_out = out.nngp.map(|o| SharedOutput::new(o, n1, n2));
        let ntk_out = out.ntk.map(|o| SharedOutput::new(o, n1, n2));
        let b2 = self.beta * self.beta;
        let inv_n0 = 1.0 / x1.cols as f64;
        let this = *self;
        let simd = Simd::detect();
        // float32 kernels of the piecewise-linear activations run their layers
        // in f32 when all variances fit (see `limit_f32`).
        let single = match (T::as_f32(&[]), self.closed_form().and_then(Single::of)) {
            (Some(_), Some(single)) if self.depth >= 2 => {
                let vars = |d: &Diagonal| {
                    d.layers[..self.depth - 1]
                        .iter()
                        .map(LayerVars32::of)
                        .collect::<Option<Vec<_>>>()
                };
                vars(&d1)
                    .zip(vars(d2))
                    .map(|(rows, cols)| (single, rows, cols))
            }
            _ => None,
        };
        // The series layers bound their terms per block of TILE samples, so
        // only the single-precision layers take another edge.
        let edge = if single.is_some() { TILE_F32 } else { TILE };
        // Layers 2 … L in f64 on `tile`, from Σ⁽¹⁾ in `sigma` (also Θ⁽¹⁾).
        let run_layers = |tile: Tile,
                          scratch_series: &mut SeriesScratch,
                          sigma: &mut [f64],
                          theta: &mut [f64]| {
            let layers = Layers {
                rows: &d1.layers[..this.depth - 1],
                cols: &d2.layers[..this.depth - 1],
                tile,
                want_ntk,
                b2,
                cancel,
            };
            match this.closed_form() {
                Some(a) => with_dual!(a, |dual| layers.run(dual, simd, sigma, theta), else ()),
                None => {
                    if want_ntk {
                        theta.copy_from_slice(sigma);
                    }
                    layers.run_series(
                        &d1.series,
                        &d2.series,
                        symmetric,
                        simd,
                        scratch_series,
                        sigma,
                        theta,
                    )
                }
            }
        };
        // Σ⁽¹⁾ of `tile` in f64 from its Gram block.
        let first_layer = |tile: Tile, gram: &[T], sigma: &mut [f64]| {
            for (s, g) in sigma.iter_mut().zip(gram) {
                *s = g.to_f64() * inv_n0 + b2;
            }
            if !T::EXACT_GRAM {
                refine_parallel_pairs(
                    sigma,
                    x1,
                    x2s,
                    &d1.layers[0],
                    &d2.layers[0],
                    tile,
                    inv_n0,
                    b2,
                );
            }
        };
        let writer = TileWriter {
            nngp: nngp_out.as_ref(),
            ntk: ntk_out.as_ref(),
            symmetric,
            diagonal: &d1,
        };

        let one_tile = |scratch: &mut TileScratch, tile: Tile, gram: &[T]| {
            let TileScratch {
                sigma,
                theta,
                transposed,
                series: scratch_series,
                single: scratch_single,
            } = scratch;
            let (h, w) = (tile.rows(), tile.cols());
            if let (Some((dual, rows, cols)), Some(gram32)) = (&single, T::as_f32(gram)) {
                let s32 = scratch_single.get_or_insert_with(|| Scratch32::new(edge));
                let (sigma32, theta32) = (&mut s32.sigma[..h * w], &mut s32.theta[..h * w]);
                let layers = Layers32 {
                    rows,
                    cols,
                    tile,
                    diagonal: symmetric && tile.is_diagonal(),
                    want_ntk,
                    inv_n0: inv_n0 as f32,
                    b2: b2 as f32,
                    cancel,
                };
                let tiles = Tiles32 {
                    gram: &gram32[..h * w],
                    sigma: &mut *sigma32,
                    theta: &mut *theta32,
                    double: &mut s32.double[..h],
                    sensitivity: &mut s32.sensitivity[..h],
                };
                layers.run(*dual, simd, tiles);
                // Rows with pairs near ρ = ±1 again, in f64.
                for r in (0..h).filter(|&r| s32.double[r]) {
                    let row = Tile {
                        r0: tile.r0 + r,
                        r1: tile.r0 + r + 1,
                        ..tile
                    };
                    let (sigma, theta) = (&mut sigma[..w], &mut theta[..w]);
                    first_layer(row, &gram[r * w..(r + 1) * w], sigma);
                    run_layers(row, scratch_series, sigma, theta);
                    for (d, s) in sigma32[r * w..(r + 1) * w].iter_mut().zip(&*sigma) {
                        *d = *s as f32;
                    }
                    for (d, t) in theta32[r * w..(r + 1) * w].iter_mut().zip(&*theta) {
                        *d = *t as f32;
                    }
                }
                writer.tile(tile, sigma32, theta32, &mut s32.transposed, |v| v as f32);
                return;
            }
            let (sigma, theta) = (&mut sigma[..h * w], &mut theta[..h * w]);
            first_layer(tile, &gram[..h * w], sigma);
            run_layers(tile, scratch_series, sigma, theta);
            writer.tile(tile, sigma, theta, transposed, |v| v);
        };
        // One panel: the Gram block of all its tiles in one GEMM call, then
        // each tile's layers and writes while the tile sits in cache.
        let work = |scratch: &mut Scratch<T>, panel: Tile| {
            let w = panel.cols();
            let Scratch {
                gram,
                tile: buffers,
            } = scratch;
            let gram = aligned(gram);
            T::gram_block(
                gram,
                x1.block(panel.r0, panel.r1),
                x2s.block(panel.c0, panel.c1),
                panel.rows(),
                w,
                x1.cols,
            );
            for tile in panel.row_tiles(edge) {
                let offset = (tile.r0 - panel.r0) * w;
                one_tile(buffers, tile, &gram[offset..offset + tile.rows() * w]);
            }
        };
        for_each_tile(
            &panels(n1, n2, symmetric, edge, PANEL_TILES),
            cancel,
            || Scratch::<T>::new(edge),
            work,
        )?;
        Ok(report)
    }
}

/// Where finished tiles go.
struct TileWriter<'a, 'o, T> {
    nngp: Option<&'a SharedOutput<'o, T>>,
    ntk: Option<&'a SharedOutput<'o, T>>,
    symmetric: bool,
    /// The exact per-sample values that replace a symmetric output's diagonal.
    diagonal: &'a Diagonal,
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
        T: crate::tiles::Store<V>,
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

/// |ρ⁽¹⁾| above which a float32 Gram entry is recomputed in f64.
pub(crate) const REFINE_RHO: f64 = 0.99;

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

/// `n` in superscript digits (layer numbers in messages: Σ⁽¹²⁾).
fn superscript(n: usize) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    n.to_string()
        .chars()
        .map(|c| c.to_digit(10).map_or(c, |d| DIGITS[d as usize]))
        .collect()
}

/// Per-thread buffers: the Gram block of a panel in the input type (see
/// [`aligned`]), and those of one tile.
struct Scratch<T> {
    gram: Vec<T>,
    tile: TileScratch,
}

/// Σ and Θ tiles in f64, one more f64 tile for the mirror image of symmetric
/// outputs, and the f32 tiles of the single-precision layers when they run.
struct TileScratch {
    sigma: Vec<f64>,
    theta: Vec<f64>,
    transposed: Vec<f64>,
    series: SeriesScratch,
    single: Option<Scratch32>,
}

impl<T: Real> Scratch<T> {
    /// Buffers for panels of up to [`PANEL_TILES`] tiles of `edge` × `edge`.
    fn new(edge: usize) -> Self {
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
/// values, and the row sample's coefficients.
#[derive(Default)]
struct SeriesScratch {
    rho: Vec<f64>,
    value: Vec<f64>,
    value_dot: Vec<f64>,
    row_a: Row,
    row_b: Row,
}

/// The layers 2 … L of the recursion on one tile: the per-sample variances of
/// the tile's rows and columns for layers 1 … L − 1.
struct Layers<'a> {
    rows: &'a [LayerVars],
    cols: &'a [LayerVars],
    tile: Tile,
    want_ntk: bool,
    b2: f64,
    /// Checked between layers, so that very deep networks stop promptly too.
    cancel: &'a AtomicBool,
}

impl Layers<'_> {
    /// Runs all layers in place on the Σ and Θ tiles, in the widest SIMD the
    /// machine has, with the arcsine evaluation that is faster there
    /// ([`Polynomial`] with AVX-512, else [`Rational`]: see [`Arcsine`]).
    fn run<D: Dual>(&self, dual: D, simd: Simd, sigma: &mut [f64], theta: &mut [f64]) {
        if simd.divides_slowly() {
            self.run_with::<D, Polynomial>(dual, simd, sigma, theta)
        } else {
            self.run_with::<D, Rational>(dual, simd, sigma, theta)
        }
    }

    /// As [`Layers::run`] with the arcsine evaluation `A`. The arithmetic is
    /// the same on every SIMD path (no fused multiply-adds are introduced), so
    /// the result depends on `A` but not on `simd`.
    fn run_with<D: Dual, A: Arcsine>(
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
    fn run_series(
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
                let cols_a = (&sc.a.even[tile.c0..], &sc.a.odd[tile.c0..]);
                series_row(row_a, cols_a, nc, rho, value);
                if self.want_ntk {
                    sr.b.gather(i, na, kb, row_b);
                    let cols_b = (&sc.b.even[tile.c0..], &sc.b.odd[tile.c0..]);
                    series_row(row_b, cols_b, nc, rho, value_dot);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// ReLU on the diagonal: Σ⁽ˡ⁺¹⁾ = Σ⁽ˡ⁾/2 + β², Θ⁽ˡ⁺¹⁾ = Θ⁽ˡ⁾/2 + Σ⁽ˡ⁺¹⁾.
    #[test]
    fn diagonal_layers_follow_the_relu_recursion() {
        let x = [3.0, 4.0];
        let k = LimitKernel::new(3, Activation::Relu, 0.5).unwrap();
        let d = k.diagonal(Samples::new(&x, 1, 2).unwrap()).unwrap();
        let q1 = 12.5 + 0.25;
        let q2 = q1 / 2.0 + 0.25;
        let q3 = q2 / 2.0 + 0.25;
        assert_eq!(
            d.layers.iter().map(|l| l.q[0]).collect::<Vec<_>>(),
            vec![q1, q2, q3]
        );
        assert_eq!(d.ntk[0], (q1 / 2.0 + q2) / 2.0 + q3);
    }

    /// n samples of n0 deterministic values in [−1.6, 1.7), row-major.
    fn inputs(n: usize, n0: usize) -> Vec<f64> {
        (0..n * n0)
            .map(|i| ((i * 7919 % 997) as f64) / 300.0 - 1.6)
            .collect()
    }

    /// Off-diagonal entries against a scalar evaluation of the recursion, and
    /// the symmetric path against the general one.
    #[test]
    fn tiles_agree_with_the_scalar_recursion() {
        let (n, n0) = (150, 3);
        let x = inputs(n, n0);
        let k = LimitKernel::new(4, Activation::Gelu, 0.3).unwrap();
        let s = Samples::new(&x, n, n0).unwrap();
        let (mut sym, mut gen) = (vec![0.0; n * n], vec![0.0; n * n]);
        let cancel = AtomicBool::new(false);
        k.compute(
            s,
            None,
            Outputs {
                nngp: None,
                ntk: Some(&mut sym),
            },
            &cancel,
        )
        .unwrap();
        k.compute(
            s,
            Some(s),
            Outputs {
                nngp: None,
                ntk: Some(&mut gen),
            },
            &cancel,
        )
        .unwrap();
        let d = k.diagonal(s).unwrap();
        for (i, j) in [(0, 1), (5, 140), (149, 7), (77, 78)] {
            let (xi, xj) = (&x[i * n0..(i + 1) * n0], &x[j * n0..(j + 1) * n0]);
            let mut q12 = xi.iter().zip(xj).map(|(a, b)| a * b).sum::<f64>() / n0 as f64 + 0.09;
            let mut theta = q12;
            for l in 0..3 {
                let (sig, dot) = crate::duals::dual_pair(
                    Activation::Gelu,
                    d.layers[l].q[i],
                    d.layers[l].q[j],
                    q12,
                )
                .unwrap();
                q12 = sig + 0.09;
                theta = theta * dot + q12;
            }
            assert!((sym[i * n + j] - theta).abs() < 1e-13 * theta.abs());
            assert!((gen[i * n + j] - theta).abs() < 1e-13 * theta.abs());
            assert_eq!(sym[i * n + j], sym[j * n + i]);
        }
    }

    /// The layers give the same bits on every SIMD path for a given arcsine
    /// evaluation, and the two evaluations agree to a few ulps.
    #[test]
    fn layers_give_the_same_bits_on_every_simd_path() {
        let (n, n0) = (70, 5);
        let x = inputs(n, n0);
        let s = Samples::new(&x, n, n0).unwrap();
        let cancel = AtomicBool::new(false);
        let tile = Tile {
            r0: 3,
            r1: 61,
            c0: 10,
            c1: 70,
        };
        let (h, w) = (tile.rows(), tile.cols());
        for act in crate::activation::EVERY_KIND {
            let k = LimitKernel::new(4, act, 0.3).unwrap();
            let Some(closed) = k.closed_form() else {
                continue;
            };
            let d = k.diagonal(s).unwrap();
            let layers = Layers {
                rows: &d.layers[..3],
                cols: &d.layers[..3],
                tile,
                want_ntk: true,
                b2: 0.09,
                cancel: &cancel,
            };
            // Σ⁽¹⁾ of the tile, then the layers with one arcsine evaluation on
            // one instruction set.
            let first: Vec<f64> = (0..h * w)
                .map(|p| {
                    let (i, j) = (tile.r0 + p / w, tile.c0 + p % w);
                    let dot: f64 = (0..n0).map(|f| x[i * n0 + f] * x[j * n0 + f]).sum();
                    dot / n0 as f64 + 0.09
                })
                .collect();
            let run = |polynomial: bool, simd: Simd| {
                let (mut sigma, mut theta) = (first.clone(), vec![0.0; h * w]);
                with_dual!(
                    closed,
                    |dual| if polynomial {
                        layers.run_with::<_, Polynomial>(dual, simd, &mut sigma, &mut theta)
                    } else {
                        layers.run_with::<_, Rational>(dual, simd, &mut sigma, &mut theta)
                    },
                    else ()
                );
                (sigma, theta)
            };
            for polynomial in [false, true] {
                let base = run(polynomial, Simd::Baseline);
                for simd in Simd::available() {
                    assert_eq!(run(polynomial, simd), base, "{act:?} {simd:?}");
                }
            }
            let (rational, polynomial) = (run(false, Simd::Baseline), run(true, Simd::Baseline));
            for (a, b) in [(&rational.0, &polynomial.0), (&rational.1, &polynomial.1)] {
                let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let worst = a
                    .iter()
                    .zip(b)
                    .fold(0.0f64, |m, (u, v)| m.max((u - v).abs()));
                assert!(worst <= 4e-15 * scale, "{act:?}: {worst:e} of {scale:e}");
            }
        }
    }

    #[test]
    fn layer_numbers_are_superscripts() {
        assert_eq!(superscript(1), "¹");
        assert_eq!(superscript(120), "¹²⁰");
    }

    #[test]
    fn overflowing_variances_are_an_error() {
        let x = [1e160, 1.0];
        let k = LimitKernel::new(3, Activation::Relu, 0.1).unwrap();
        let mut out = vec![0.0; 4];
        let s = Samples::new(&x, 2, 1).unwrap();
        let r = k.compute(
            s,
            None,
            Outputs {
                nngp: Some(&mut out),
                ntk: None,
            },
            &AtomicBool::new(false),
        );
        assert!(
            matches!(r, Err(Error::Invalid(m)) if m.contains("overflows") && m.contains("row 0"))
        );
    }

    /// float32 Gram entries of (nearly) parallel rows are recomputed in f64, so
    /// duplicated rows see ρ = 1 exactly, as in float64.
    #[test]
    fn float32_parallel_rows_match_float64() {
        let base: Vec<f64> = (0..300)
            .map(|i| ((i * 7919 % 613) as f64) / 97.0 - 3.1)
            .collect();
        let mut x = base.clone();
        x.extend(base.iter().map(|v| 2.0 * v));
        x.extend(base.iter().rev());
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let k = LimitKernel::new(4, Activation::Relu, 0.0).unwrap();
        let cancel = AtomicBool::new(false);
        let (mut a, mut b) = (vec![0.0f32; 9], vec![0.0f64; 9]);
        let s32 = Samples::new(&x32, 3, 300).unwrap();
        let s64 = Samples::new(&x64, 3, 300).unwrap();
        k.compute(
            s32,
            Some(s32),
            Outputs {
                nngp: None,
                ntk: Some(&mut a),
            },
            &cancel,
        )
        .unwrap();
        k.compute(
            s64,
            None,
            Outputs {
                nngp: None,
                ntk: Some(&mut b),
            },
            &cancel,
        )
        .unwrap();
        for (p, q) in a.iter().zip(&b) {
            assert!((*p as f64 - q).abs() <= 1e-6 * q.abs(), "{p} vs {q}");
        }
    }

    /// Kernels of `x` (rows × cols) in f32 and f64 for the same f32 inputs,
    /// symmetric or against a copy of `x`.
    fn both_dtypes(
        kernel: &LimitKernel,
        x: &[f64],
        rows: usize,
        symmetric: bool,
    ) -> [(Vec<f32>, Vec<f64>); 2] {
        let cols = x.len() / rows;
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
        let cancel = AtomicBool::new(false);
        let n = rows * rows;
        let (mut s32, mut t32) = (vec![0.0f32; n], vec![0.0f32; n]);
        let (mut s64, mut t64) = (vec![0.0f64; n], vec![0.0f64; n]);
        let a = Samples::new(&x32, rows, cols).unwrap();
        let b = Samples::new(&x64, rows, cols).unwrap();
        let out32 = Outputs {
            nngp: Some(&mut s32[..]),
            ntk: Some(&mut t32[..]),
        };
        let other = (!symmetric).then_some(a);
        kernel.compute(a, other, out32, &cancel).unwrap();
        let out64 = Outputs {
            nngp: Some(&mut s64[..]),
            ntk: Some(&mut t64[..]),
        };
        kernel.compute(b, None, out64, &cancel).unwrap();
        [(s32, s64), (t32, t64)]
    }

    /// The single-precision layers of the piecewise-linear activations against
    /// f64, relative to √(K(x, x) K(x', x')): 1e-6 on random rows, and also on
    /// near-duplicates and deep networks whose ρ climbs past 0.999, which must be
    /// handed to f64 (with the f32 layers alone those pairs are off by 1e-4).
    #[test]
    fn float32_layers_match_float64() {
        let (rows, cols) = (300, 40);
        let mut state = 7u64;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut x: Vec<f64> = (0..rows * cols).map(|_| uniform()).collect();
        // Rows 200..260 repeat rows 0..60 up to 1e-4.
        for i in 200..260 {
            for j in 0..cols {
                x[i * cols + j] = x[(i - 200) * cols + j] + 1e-4 * uniform();
            }
        }
        let activations = [
            Activation::Relu,
            Activation::LeakyRelu { slope: 0.2 },
            Activation::Abs,
        ];
        for activation in activations {
            for (depth, beta) in [(2, 0.1), (5, 0.1), (12, 1.0), (40, 1.0)] {
                let kernel = LimitKernel::new(depth, activation, beta).unwrap();
                for symmetric in [true, false] {
                    for (single, double) in both_dtypes(&kernel, &x, rows, symmetric) {
                        let diag: Vec<f64> = (0..rows).map(|i| double[i * rows + i]).collect();
                        let mut worst = 0.0f64;
                        for (k, (a, b)) in single.iter().zip(&double).enumerate() {
                            let scale = (diag[k / rows] * diag[k % rows]).sqrt();
                            worst = worst.max((*a as f64 - b).abs() / scale);
                        }
                        assert!(
                            worst < 1e-6,
                            "{activation:?} depth {depth} symmetric {symmetric}: {worst:e}"
                        );
                    }
                }
            }
        }
    }
}
