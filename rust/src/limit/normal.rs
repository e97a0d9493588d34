//! The normal-equations product of a rectangular kernel without storing it:
//!
//! ```text
//! out = K(X, C)ᵀ K(X, C) · V,   K = Σ⁽ᴸ⁾ or Θ∞⁽ᴸ⁾,   X (N × n₀),   C (M × n₀),   V, out (M × k)
//! ```
//!
//! the product a Nyström (Falkon) solver makes once per iteration with X the
//! training inputs and C its centres. Each row block of K(X, C) (one tile high,
//! all M columns) is made tile by tile into a panel, multiplied by V, and the
//! panel's transpose multiplies the result at once: memory is one panel per
//! thread (tile edge × M) and one M × k sum per stripe, never N × M.
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
        let vm = MatRef::from_row_major_slice(v, m, k);
        let one_stripe = |(s, sum): (usize, &mut Vec<f64>)| {
            *sum = vec![0.0; m * k];
            let mut scratch = Scratch::<T>::new(edge);
            let dense = RefCell::new(vec![0.0f64; edge * edge]);
            let panel = RefCell::new(vec![0.0f64; edge * m]);
            let mut w = vec![0.0f64; edge * k];
            for b in (s..blocks).step_by(stripes) {
                let (r0, r1) = (b * edge, ((b + 1) * edge).min(n));
                let h = r1 - r0;
                for c0 in (0..m).step_by(edge) {
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let tile = Tile {
                        r0,
                        r1,
                        c0,
                        c1: (c0 + edge).min(m),
                    };
                    // Each finished tile goes into its columns of the panel.
                    let emit = |tile: Tile, values: Values<'_>| {
                        let mut dense = dense.borrow_mut();
                        let kernel = kernel_values(tile, values, which, &mut dense);
                        let mut panel = panel.borrow_mut();
                        let width = tile.cols();
                        for (i, row) in kernel.chunks_exact(width).enumerate() {
                            panel[i * m + tile.c0..i * m + tile.c1].copy_from_slice(row);
                        }
                    };
                    run.panel(&mut scratch, tile, &emit);
                }
                let panel = panel.borrow();
                let p = MatRef::from_row_major_slice(&panel[..h * m], h, m);
                let pv = MatMut::from_row_major_slice_mut(&mut w[..h * k], h, k);
                f64::product_into(pv, Accum::Replace, p, vm, 1.0);
                let pv = MatRef::from_row_major_slice(&w[..h * k], h, k);
                let dst = MatMut::from_row_major_slice_mut(sum, m, k);
                f64::product_into(dst, Accum::Add, p.transpose(), pv, 1.0);
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
