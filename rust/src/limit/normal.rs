//! The normal-equations product of a rectangular kernel without storing it:
//!
//! ```text
//! out = K(X, C)ᵀ K(X, C) · V,   K = Σ⁽ᴸ⁾ or Θ∞⁽ᴸ⁾,   X (N × n₀),   C (M × n₀),   V, out (M × k)
//! ```
//!
//! the product a Nyström (Falkon) solver makes once per iteration with X the
//! training inputs and C its centres. Each row block of K(X, C) (one tile high,
//! all M columns) is made tile by tile: each tile multiplies its part of V
//! while it is in cache and is kept in a panel in the precision it was made in
//! (f32 for float32 kernels: half the memory traffic); once the row block's
//! W = K_b V is complete, the panel's tiles multiply W transposed. Memory is
//! one panel per thread (tile edge × M) and one M × k sum per stripe, never
//! N × M.
//!
//! As in [`LimitKernel::product`], row blocks go to a fixed number of stripes
//! whatever the number of threads, each stripe sums its blocks in order, and
//! the stripes' sums are added in stripe order: the same bits for any thread
//! count. Sums run in f64 for either input dtype.

use super::product::{kernel_values, Which, STRIPES};
use super::tile::{Scratch, Values};
use super::{check_features, LimitKernel, Report};
use crate::error::{invalid, Error, Result};
use crate::pool;
use crate::real::Real;
use crate::samples::Samples;
use crate::tiles::{Tile, TILE, TILE_F32};
use faer::{Accum, MatMut, MatRef};

/// One row block of K(X, C), in the precision its tiles were made in.
enum Panel {
    F64(Vec<f64>),
    F32(Vec<f32>),
}

impl Panel {
    /// Keeps a finished tile (h × w, row-major) at its columns of the panel
    /// (rows of `m` entries, `size` entries in all), which is allocated in the
    /// tile's precision on first use.
    fn store(&mut self, tile: Tile, values: &Values<'_>, which: Which, m: usize, size: usize) {
        let (h, w) = (tile.rows(), tile.cols());
        let fits = matches!(
            (&*self, values),
            (Panel::F64(_), Values::F64 { .. }) | (Panel::F32(_), Values::F32 { .. })
        );
        if !fits || self.len() < size {
            *self = match values {
                Values::F64 { .. } => Panel::F64(vec![0.0; size]),
                Values::F32 { .. } => Panel::F32(vec![0.0; size]),
            };
        }
        match (self, values) {
            (Panel::F64(panel), Values::F64 { sigma, theta, .. }) => {
                let src = if which == Which::Nngp {
                    &**sigma
                } else {
                    &**theta
                };
                copy_rows(panel, &src[..h * w], tile, m);
            }
            (Panel::F32(panel), Values::F32 { sigma, theta, .. }) => {
                let src = if which == Which::Nngp {
                    &**sigma
                } else {
                    &**theta
                };
                copy_rows(panel, &src[..h * w], tile, m);
            }
            _ => unreachable!("allocated for the values' precision above"),
        }
    }

    /// The tile's values back as f64, into `dense` (h × w, row-major).
    fn load(&self, tile: Tile, m: usize, dense: &mut [f64]) {
        let w = tile.cols();
        for (i, row) in dense.chunks_exact_mut(w).take(tile.rows()).enumerate() {
            let cols = i * m + tile.c0..i * m + tile.c1;
            match self {
                Panel::F64(panel) => row.copy_from_slice(&panel[cols]),
                Panel::F32(panel) => {
                    for (d, s) in row.iter_mut().zip(&panel[cols]) {
                        *d = *s as f64;
                    }
                }
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Panel::F64(p) => p.len(),
            Panel::F32(p) => p.len(),
        }
    }
}

/// Rows of a tile (h × w) into their columns of a panel with rows of `m`.
fn copy_rows<V: Copy>(panel: &mut [V], src: &[V], tile: Tile, m: usize) {
    for (i, row) in src.chunks_exact(tile.cols()).enumerate() {
        panel[i * m + tile.c0..i * m + tile.c1].copy_from_slice(row);
    }
}
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

impl LimitKernel<'_> {
    /// Bytes [`LimitKernel::normal_product`] allocates besides V and the
    /// result, for `rows` samples in all (N + M), M = `centres` and k columns
    /// on `threads` threads: the diagonal recursion and per-thread tiles (as
    /// [`LimitKernel::working_memory`]), per thread a panel of all M columns,
    /// an f64 tile and the panel's product, and one M × k sum per stripe.
    pub fn normal_product_memory(
        depth: usize,
        rows: usize,
        centres: usize,
        k: usize,
        threads: usize,
    ) -> usize {
        let edge = TILE.max(TILE_F32);
        let per_thread = edge
            .saturating_mul(centres.saturating_add(edge).saturating_add(k))
            .saturating_mul(8);
        let sums = STRIPES
            .saturating_mul(centres)
            .saturating_mul(k)
            .saturating_mul(8);
        Self::working_memory(depth, rows, threads)
            .saturating_add(per_thread.saturating_mul(threads))
            .saturating_add(sums)
    }

    /// out (M × k, row-major) = K(x, c)ᵀ K(x, c) · v (M × k, row-major), K(x, c)
    /// made one row block at a time and never stored. Stops between tiles once
    /// `cancel` is set (Error::Cancelled). Same bits for any thread count.
    #[allow(clippy::too_many_arguments)]
    pub fn normal_product<T: Real>(
        &self,
        x: Samples<'_, T>,
        c: Samples<'_, T>,
        which: Which,
        v: &[f64],
        k: usize,
        out: &mut [f64],
        cancel: &AtomicBool,
    ) -> Result<Report> {
        check_features(&x, &c)?;
        let (n, m) = (x.rows, c.rows);
        if k == 0 || m.checked_mul(k) != Some(v.len()) {
            return invalid(format!(
                "V must hold {m} x k values with k ≥ 1, has {} for k = {k}",
                v.len()
            ));
        }
        if out.len() != v.len() {
            return invalid(format!(
                "the result must hold {m} x {k} values, has {}",
                out.len()
            ));
        }
        let (dx, dc) = self.diagonals(x, Some(c), cancel)?;
        let dc = dc.expect("two sets of samples");
        let report = Report::of_series(&dx, &dc);
        let run = self.tile_run(x, c, (&dx, &dc), false, which == Which::Ntk, cancel);
        let edge = run.edge;
        let blocks = n.div_ceil(edge);
        let stripes = STRIPES.min(blocks);
        let tiles = |r0: usize, r1: usize| {
            (0..m).step_by(edge).map(move |c0| Tile {
                r0,
                r1,
                c0,
                c1: (c0 + edge).min(m),
            })
        };
        let one_stripe = |(s, sum): (usize, &mut Vec<f64>)| {
            *sum = vec![0.0; m * k];
            let mut scratch = Scratch::<T>::new(edge);
            let dense = RefCell::new(vec![0.0f64; edge * edge]);
            let panel = RefCell::new(Panel::F64(Vec::new()));
            let w = RefCell::new(vec![0.0f64; edge * k]);
            for b in (s..blocks).step_by(stripes) {
                let (r0, r1) = (b * edge, ((b + 1) * edge).min(n));
                let h = r1 - r0;
                w.borrow_mut().fill(0.0);
                // W = K_b V, a tile at a time while it is in cache; the tile is kept.
                let emit = |tile: Tile, values: Values<'_>| {
                    panel.borrow_mut().store(tile, &values, which, m, edge * m);
                    let mut dense = dense.borrow_mut();
                    let kernel = kernel_values(tile, values, which, &mut dense);
                    let kernel = MatRef::from_row_major_slice(kernel, h, tile.cols());
                    let vc =
                        MatRef::from_row_major_slice(&v[tile.c0 * k..tile.c1 * k], tile.cols(), k);
                    let mut w = w.borrow_mut();
                    let dst = MatMut::from_row_major_slice_mut(&mut w[..h * k], h, k);
                    f64::product_into(dst, Accum::Add, kernel, vc, 1.0);
                };
                for tile in tiles(r0, r1) {
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    run.panel(&mut scratch, tile, &emit);
                }
                // Then K_bᵀ W, the kept tiles in the same order.
                let (w, panel, mut dense) = (w.borrow(), panel.borrow(), dense.borrow_mut());
                let wm = MatRef::from_row_major_slice(&w[..h * k], h, k);
                for tile in tiles(r0, r1) {
                    let dense = &mut dense[..h * tile.cols()];
                    panel.load(tile, m, dense);
                    let kernel = MatRef::from_row_major_slice(dense, h, tile.cols());
                    let dst = &mut sum[tile.c0 * k..tile.c1 * k];
                    let dst = MatMut::from_row_major_slice_mut(dst, tile.cols(), k);
                    f64::product_into(dst, Accum::Add, kernel.transpose(), wm, 1.0);
                }
            }
        };
        let mut sums: Vec<Vec<f64>> = vec![Vec::new(); stripes];
        let pool = pool::pool()?;
        pool.install(|| sums.par_iter_mut().enumerate().for_each(one_stripe));
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        out.fill(0.0);
        for sum in &sums {
            for (o, s) in out.iter_mut().zip(sum) {
                *o += s;
            }
        }
        Ok(report)
    }
}
