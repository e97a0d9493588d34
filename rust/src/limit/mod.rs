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
//! piecewise-linear activations, see `layers_f32`).

//!
//! The steps, one file each: `diagonal` (the per-sample recursion), `tile`
//! (one panel: Gram block, first layer, layers, write), `layers` (layers 2 … L
//! in f64, closed form or series) and `layers_f32` (the same in f32); the
//! products with a vector without storing the kernel are `product` (K·V) and
//! `normal` (K(X, C)ᵀ K(X, C)·V).
mod diagonal;
mod layers;
mod layers_f32;
mod normal;
mod product;
#[cfg(test)]
mod tests;
mod tile;

use crate::activation::Activation;
use crate::correlation_table::{self, CorrelationTable, Tabled};
use crate::duals_f32::Single;
use crate::error::{invalid, Error, Result};
use crate::hermite::Pointwise;
use crate::kinked::Kinked;
use crate::pieces::Pieces;
use crate::pool::for_each_tile;
use crate::real::Real;
use crate::samples::Samples;
use crate::simd::Simd;
use crate::tiles::Tile;
use crate::tiles::{panels, SharedOutput, PANEL_TILES, TILE, TILE_F32};
pub use diagonal::Diagonal;
use layers_f32::LayerVars32;
pub use product::Which;
use std::sync::atomic::AtomicBool;
use tile::{Scratch, TileRun, TileWriter, Values};

/// Where the results go: row-major N₁ × N₂ arrays; `None` skips that kernel.
pub struct Outputs<'a, T> {
    pub nngp: Option<&'a mut [T]>,
    pub ntk: Option<&'a mut [T]>,
}

/// The nonlinearity of a limit kernel: a built-in activation, σ and σ'
/// supplied by the caller (through the Hermite series), a piecewise-linear σ
/// (through its exact dual), or a σ with kinks supplied by the caller
/// (tabulated, through quadrature: see `kinked.rs`).
#[derive(Clone, Copy)]
pub enum Sigma<'a> {
    Builtin(Activation),
    Custom(&'a dyn Pointwise),
    Pieces(&'a Pieces),
    Kinked(&'a dyn Pointwise),
}

/// A dual the layers evaluate pair by pair: a built-in closed form, a
/// piecewise-linear σ's, or the quadrature over a kinked σ's tables.
#[derive(Debug, Clone, Copy)]
pub(super) enum Closed<'a> {
    Builtin(Activation),
    Pieces(&'a Pieces),
    Kinked(Tabled<'a>),
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
            Sigma::Pieces(p) => write!(f, "{p:?}"),
            Sigma::Kinked(_) => write!(f, "Kinked"),
        }
    }
}

/// The limiting kernels of a depth-L fully-connected network.
#[derive(Debug, Clone, Copy)]
pub struct LimitKernel<'a> {
    depth: usize,
    activation: Sigma<'a>,
    beta: f64,
    /// For `Sigma::Custom`: the series error beyond which σ is tabulated
    /// and its duals integrated instead (infinite: never).
    fallback: f64,
    /// Made by an earlier [`LimitKernel::prepare`] for the samples of the
    /// computations to come.
    prepared: Option<&'a Prepared>,
}

/// What every computation starts from ([`LimitKernel::prepare`]): the
/// diagonal recursions, a kinked σ's correlation tables and the report. Made
/// once, it serves any number of computations over the same samples
/// ([`LimitKernel::with_prepared`]): for a σ supplied by the caller it is most
/// of a product's cost at moderate N.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The diagonal recursions of the rows and (None: the same samples) the columns.
    rows: Diagonal,
    cols: Option<Diagonal>,
    tables: Vec<CorrelationTable>,
    report: Report,
    /// What it was made for: the kernel's depth and β, the samples' count of
    /// rows, of columns (None: the rows), of features, and their value size.
    made_for: MadeFor,
}

/// The settings and sample shapes a [`Prepared`] serves.
#[derive(Debug, Clone, Copy, PartialEq)]
struct MadeFor {
    depth: usize,
    beta: u64,
    rows: usize,
    cols: Option<usize>,
    features: usize,
    value_size: usize,
}

impl Prepared {
    /// The rows' and the columns' diagonal recursions.
    fn sides(&self) -> (&Diagonal, &Diagonal) {
        (&self.rows, self.cols.as_ref().unwrap_or(&self.rows))
    }

    /// Whether σ is integrated by quadrature (a kinked σ): then the
    /// per-sample tables and the correlation tables are most of a product's
    /// cost at moderate N, and worth keeping.
    pub fn integrates(&self) -> bool {
        self.rows.table.is_some()
    }
}

/// The [`Prepared`] data of one computation: handed in, or made for it.
enum Held<'p> {
    Given(&'p Prepared),
    Made(Box<Prepared>),
}

impl std::ops::Deref for Held<'_> {
    type Target = Prepared;

    fn deref(&self) -> &Prepared {
        match self {
            Held::Given(p) => p,
            Held::Made(p) => p,
        }
    }
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
            fallback: f64::INFINITY,
            prepared: None,
        })
    }

    /// For a σ supplied by the caller (`Sigma::Custom`): when its Hermite
    /// series cannot reach the relative error `tol` on the samples of a
    /// computation (σ has kinks, or varies on scales far below the
    /// variances), the computation tabulates σ and integrates its duals
    /// instead (`Sigma::Kinked`). Without this the series' error is reported
    /// whatever it is.
    pub fn with_fallback(mut self, tol: f64) -> Self {
        self.fallback = tol;
        self
    }

    /// Computations with this kernel take their diagonals, tables and report
    /// from `prepared` (made by [`LimitKernel::prepare`] with the same σ, on
    /// the same samples; a computation with another depth or β, or on samples
    /// of another shape or value type, is an error) instead of making them.
    pub fn with_prepared(mut self, prepared: &'a Prepared) -> Self {
        self.prepared = Some(prepared);
        self
    }

    /// The activation's closed-form dual, or None for the series and for
    /// kinked σ (whose dual needs the tables of the diagonal recursion, see
    /// [`LimitKernel::pairwise`]).
    fn closed_form(&self) -> Option<Closed<'a>> {
        match self.activation {
            Sigma::Builtin(a) if a.has_closed_form() => Some(Closed::Builtin(a)),
            Sigma::Pieces(p) => Some(Closed::Pieces(p)),
            _ => None,
        }
    }

    /// Bytes the computation allocates besides the outputs, for `rows`
    /// samples (x1 and x2 together) on `threads` threads: per sample and
    /// layer three f64 (variance, its root and inverse root) and two f32 (the
    /// roots again, for the f32 layers), two f64 per sample, per thread the
    /// Gram block of a panel (counted in f64) and three f64 and three f32
    /// tiles of the larger edge, and a margin for the GEMM's workspace and
    /// small buffers. Callers check it before any work, so that a request
    /// that cannot fit is a MemoryError instead of an abort.
    pub fn working_memory(depth: usize, rows: usize, threads: usize) -> usize {
        const MARGIN: usize = 8 << 20;
        let tile = TILE.max(TILE_F32).pow(2);
        let per_thread = (PANEL_TILES * 8 + 3 * 8 + 3 * 4) * tile;
        let per_sample = 32usize.saturating_mul(depth).saturating_add(16);
        per_sample
            .saturating_mul(rows)
            .saturating_add(per_thread.saturating_mul(threads))
            .saturating_add(MARGIN)
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
        check_shapes(x1, x2s, &out)?;
        let p = self.prepared(x1, x2, cancel)?;
        let (n1, n2) = (x1.rows, x2s.rows);
        let nngp = out.nngp.map(|o| SharedOutput::new(o, n1, n2));
        let ntk = out.ntk.map(|o| SharedOutput::new(o, n1, n2));
        let run = self.tile_run(
            x1,
            x2s,
            p.sides(),
            &p.tables,
            symmetric,
            ntk.is_some(),
            cancel,
        );
        let edge = run.edge;
        let writer = TileWriter {
            nngp: nngp.as_ref(),
            ntk: ntk.as_ref(),
            symmetric,
            diagonal: &p.rows,
        };
        let emit = |tile: Tile, values: Values<'_>| writer.emit(tile, values);
        for_each_tile(
            &panels(n1, n2, symmetric, edge, PANEL_TILES),
            cancel,
            || Scratch::<T>::new(edge),
            |scratch, panel| run.panel(scratch, panel, &emit),
        )?;
        Ok(p.report)
    }

    /// The prepared data handed in (checked against the samples), or made.
    fn prepared<T: Real>(
        &self,
        x1: Samples<'_, T>,
        x2: Option<Samples<'_, T>>,
        cancel: &AtomicBool,
    ) -> Result<Held<'a>> {
        match self.prepared {
            Some(p) if p.made_for == self.made_for(x1, x2) => Ok(Held::Given(p)),
            Some(_) => invalid("the prepared kernel was made for other samples or settings"),
            None => Ok(Held::Made(Box::new(self.prepare(x1, x2, cancel)?))),
        }
    }

    /// The settings and sample shapes of a computation on x1 and x2.
    fn made_for<T: Real>(&self, x1: Samples<'_, T>, x2: Option<Samples<'_, T>>) -> MadeFor {
        MadeFor {
            depth: self.depth,
            beta: self.beta.to_bits(),
            rows: x1.rows,
            cols: x2.map(|x| x.rows),
            features: x1.cols,
            value_size: std::mem::size_of::<T>(),
        }
    }

    /// The diagonal recursions of x1 and (unless None) x2, a kinked σ's
    /// correlation tables and the report: what every computation starts from.
    pub fn prepare<T: Real>(
        &self,
        x1: Samples<'_, T>,
        x2: Option<Samples<'_, T>>,
        cancel: &AtomicBool,
    ) -> Result<Prepared> {
        let (rows, cols) = self.diagonals(x1, x2, cancel)?;
        let d2 = cols.as_ref().unwrap_or(&rows);
        let tables = self.correlation_tables(&rows, d2, x2.is_none(), cancel)?;
        let report = Report::of_series(&rows, d2).with_tables(&tables);
        Ok(Prepared {
            rows,
            cols,
            tables,
            report,
            made_for: self.made_for(x1, x2),
        })
    }

    /// What the tiles of one computation share, for rows x1 and columns x2
    /// (x2 = x1 when `symmetric`) with diagonal recursions `(d1, d2)` and a
    /// kinked σ's correlation tables.
    #[allow(clippy::too_many_arguments)]
    fn tile_run<'t, T: Real>(
        &self,
        x1: Samples<'t, T>,
        x2: Samples<'t, T>,
        (d1, d2): (&'t Diagonal, &'t Diagonal),
        tables: &'t [CorrelationTable],
        symmetric: bool,
        want_ntk: bool,
        cancel: &'t AtomicBool,
    ) -> TileRun<'t, T>
    where
        'a: 't,
    {
        let single = self.single_precision::<T>(d1, d2);
        TileRun {
            x1,
            x2,
            rows: d1,
            cols: d2,
            depth: self.depth,
            closed_form: self.pairwise(d1, d2, tables),
            symmetric,
            want_ntk,
            b2: self.beta * self.beta,
            inv_n0: 1.0 / x1.cols as f64,
            simd: Simd::detect(),
            // The series layers bound their terms per block of TILE samples,
            // so only the single-precision layers take another edge.
            edge: if single.is_some() { TILE_F32 } else { TILE },
            single,
            cancel,
        }
    }

    /// The diagonal recursions of x1 and (unless symmetric) x2, each checked
    /// against the dtype's range. A pair sums the terms both of its samples'
    /// series hold: x2 keeps at least x1's number per layer, and x1 is redone
    /// only where x2 needed more.
    ///
    /// A `Sigma::Custom` whose series miss the fallback tolerance is redone
    /// as `Sigma::Kinked`: the diagonals then hold its tables.
    pub(crate) fn diagonals<T: Real>(
        &self,
        x1: Samples<'_, T>,
        x2: Option<Samples<'_, T>>,
        cancel: &AtomicBool,
    ) -> Result<(Diagonal, Option<Diagonal>)> {
        let Sigma::Custom(pointwise) = self.activation else {
            return self.diagonals_without_fallback(x1, x2, cancel);
        };
        let kinked = LimitKernel {
            activation: Sigma::Kinked(pointwise),
            ..*self
        };
        if self.fallback.is_finite() && self.series_miss_on_extremes(x1, x2, cancel)? {
            return kinked.diagonals_without_fallback(x1, x2, cancel);
        }
        let series = self.diagonals_without_fallback(x1, x2, cancel);
        if self.series_missed(&series) {
            kinked.diagonals_without_fallback(x1, x2, cancel)
        } else {
            series
        }
    }

    /// Whether diagonals through the series miss the fallback tolerance;
    /// variances beyond the series' range (an invalid-input error) count as
    /// a miss when there is a fallback.
    fn series_missed(&self, series: &Result<(Diagonal, Option<Diagonal>)>) -> bool {
        match series {
            Err(Error::Invalid(_)) => self.fallback.is_finite(),
            Err(_) => false,
            Ok((d1, d2)) => {
                Report::of_series(d1, d2.as_ref().unwrap_or(d1)).series_error > self.fallback
            }
        }
    }

    /// Whether the series miss the fallback tolerance on the samples of
    /// smallest and largest norm of x1 and x2 alone, where they need the
    /// most terms: if so they miss it on all of them, and the expansion of
    /// every sample (most of the work for a kinked σ at large N) is spared.
    fn series_miss_on_extremes<T: Real>(
        &self,
        x1: Samples<'_, T>,
        x2: Option<Samples<'_, T>>,
        cancel: &AtomicBool,
    ) -> Result<bool> {
        let mut rows: Vec<&[T]> = Vec::new();
        for x in std::iter::once(x1).chain(x2.filter(|x2| x2.cols == x1.cols)) {
            let norms: Vec<f64> = x.squared_norms().collect();
            let by_norm = |a: &usize, b: &usize| norms[*a].total_cmp(&norms[*b]);
            for r in [(0..x.rows).min_by(by_norm), (0..x.rows).max_by(by_norm)] {
                rows.extend(r.map(|r| x.block(r, r + 1)));
            }
        }
        let data: Vec<T> = rows.concat();
        let extremes = Samples::new(&data, rows.len(), x1.cols)?;
        match self.diagonals_without_fallback(extremes, None, cancel) {
            Err(e) if !matches!(e, Error::Invalid(_)) => Err(e),
            series => Ok(self.series_missed(&series)),
        }
    }

    /// [`LimitKernel::diagonals`] without the fallback.
    fn diagonals_without_fallback<T: Real>(
        &self,
        x1: Samples<'_, T>,
        x2: Option<Samples<'_, T>>,
        cancel: &AtomicBool,
    ) -> Result<(Diagonal, Option<Diagonal>)> {
        let mut d1 = self.diagonal_until(x1, &[], cancel)?;
        d1.check_range("x1", T::MAX_VARIANCE)?;
        let Some(x2) = x2 else {
            return Ok((d1, None));
        };
        let terms = |d: &Diagonal| d.series.iter().map(|s| s.terms).collect::<Vec<_>>();
        let d2 = self.diagonal_until(x2, &terms(&d1), cancel)?;
        d2.check_range("x2", T::MAX_VARIANCE)?;
        if terms(&d2).iter().zip(&terms(&d1)).any(|(t2, t1)| t2 > t1) {
            d1 = self.diagonal_until(x1, &terms(&d2), cancel)?;
        }
        Ok((d1, Some(d2)))
    }

    /// The f32 layers and the f32 variances of the rows and columns, for
    /// float32 kernels of the piecewise-linear activations when every
    /// variance fits (see `layers_f32`); None otherwise.
    fn single_precision<T: Real>(
        &self,
        d1: &Diagonal,
        d2: &Diagonal,
    ) -> Option<(Single, Vec<LayerVars32>, Vec<LayerVars32>)> {
        T::as_f32(&[])?;
        let single = match self.closed_form()? {
            Closed::Builtin(a) => Single::of(a)?,
            Closed::Pieces(_) | Closed::Kinked(_) => return None,
        };
        if self.depth < 2 {
            return None;
        }
        let vars = |d: &Diagonal| {
            d.layers[..self.depth - 1]
                .iter()
                .map(LayerVars32::of)
                .collect::<Option<Vec<_>>>()
        };
        Some((single, vars(d1)?, vars(d2)?))
    }
}

impl<'a> LimitKernel<'a> {
    /// The dual the layers of a computation use: the closed form, or for a
    /// kinked σ the quadrature over the rows' and columns' tables; None for
    /// the series.
    fn pairwise<'t>(
        &self,
        d1: &'t Diagonal,
        d2: &'t Diagonal,
        tables: &'t [CorrelationTable],
    ) -> Option<Closed<'t>>
    where
        'a: 't,
    {
        match (&d1.table, &d2.table) {
            (Some(rows), Some(cols)) => Some(Closed::Kinked(Tabled {
                kinked: Kinked { rows, cols },
                tables,
            })),
            _ => self.closed_form(),
        }
    }

    /// For a kinked σ, the correlation tables of a computation with rows' and
    /// columns' diagonals `d1`, `d2` (the same when `symmetric`): in each
    /// layer whose variances fall into a few groups on both sides, one table
    /// per pair of groups that at least [`PAIRS_PER_TABLE`] pairs of samples
    /// share (see `correlation_table.rs`). Empty for other activations.
    fn correlation_tables(
        &self,
        d1: &Diagonal,
        d2: &Diagonal,
        symmetric: bool,
        cancel: &AtomicBool,
    ) -> Result<Vec<CorrelationTable>> {
        let (Some(rows), Some(cols)) = (&d1.table, &d2.table) else {
            return Ok(Vec::new());
        };
        let dual = Kinked { rows, cols };
        let mut tables: Vec<CorrelationTable> = Vec::new();
        for layer in 0..self.depth - 1 {
            let rows = correlation_table::groups(&d1.layers[layer].q);
            let cols = correlation_table::groups(&d2.layers[layer].q);
            let (Some(rows), Some(cols)) = (rows, cols) else {
                continue;
            };
            for (i, &(r, nr)) in rows.iter().enumerate() {
                for (j, &(c, nc)) in cols.iter().enumerate() {
                    let pairs = match (symmetric, i.cmp(&j)) {
                        (true, std::cmp::Ordering::Greater) => continue,
                        (true, std::cmp::Ordering::Equal) => nr * (nr + 1) / 2,
                        _ => nr * nc,
                    };
                    let known = tables
                        .iter()
                        .any(|t| t.serves(r.lo, c.lo) && t.serves(r.hi, c.hi));
                    if pairs < PAIRS_PER_TABLE || known {
                        continue;
                    }
                    if let Some(t) = CorrelationTable::new(&dual, r, c, cancel)? {
                        tables.push(t);
                    }
                }
            }
        }
        Ok(tables)
    }
}

/// Pairs of samples that share their variances and justify a correlation
/// table: a table costs a few hundred pairs' integrals.
const PAIRS_PER_TABLE: usize = 2048;

impl Report {
    /// The report, with the correlation tables' error estimates.
    fn with_tables(mut self, tables: &[CorrelationTable]) -> Self {
        for t in tables {
            self.series_error = self.series_error.max(t.error());
        }
        self
    }

    /// The series' error estimate and terms over both sets of samples.
    fn of_series(d1: &Diagonal, d2: &Diagonal) -> Self {
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
        report.series_error = report
            .series_error
            .max(d1.quadrature_error)
            .max(d2.quadrature_error);
        report
    }
}

/// x1 and x2 have the same number of features.
fn check_features<T>(x1: &Samples<'_, T>, x2: &Samples<'_, T>) -> Result<()> {
    if x1.cols != x2.cols {
        return invalid(format!(
            "x1 has {} features but x2 has {}",
            x1.cols, x2.cols
        ));
    }
    Ok(())
}

/// x1 and x2 have the same number of features, and each requested output
/// holds N₁ × N₂ values.
fn check_shapes<T>(x1: Samples<'_, T>, x2: Samples<'_, T>, out: &Outputs<'_, T>) -> Result<()> {
    check_features(&x1, &x2)?;
    let (n1, n2) = (x1.rows, x2.rows);
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
    Ok(())
}
