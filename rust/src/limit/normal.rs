//! The normal-equations product of a rectangular kernel without storing it:
//!
//! ```text
//! out = K(X, C)ᵀ K(X, C) · V,   K = Σ⁽ᴸ⁾ or Θ∞⁽ᴸ⁾,   X (N × n₀),   C (M × n₀),   V, out (M × k)
//! ```
//!
//! the product a Nyström (Falkon) solver makes once per iteration with X the
//! training inputs and C its centres. It is made as K(C, X), one block of X
//! (one tile edge of samples, all M centres) at a time: each tile adds its
//! part of W = K(C, X_b)ᵀ V while it is in cache and is kept in a panel in the
//! precision it was made in (f32 for float32 kernels: half the memory
//! traffic), by swapping buffers rather than copying; once the block's W is
//! complete, the panel's rows multiply it. Both products read the kept f32 or
//! f64 values as they are and sum in f64. Memory is one panel per thread
//! (M × tile edge) and one M × k sum per stripe, never N × M.
//!
//! As in [`LimitKernel::product`], blocks of X go to a fixed number of stripes
//! whatever the number of threads, each stripe sums its blocks in order, and
//! the stripes' sums are added in stripe order: the same bits for any thread
//! count. Sums run in f64 for either input dtype.

use super::product::{KernelBuffer, Which, STRIPES};
use super::tile::{Scratch, Values};
use super::{check_features, LimitKernel, Report};
use crate::error::{invalid, Error, Result};
use crate::pool;
use crate::real::Real;
use crate::samples::Samples;
use crate::simd::Simd;
use crate::tiles::{Tile, PANEL_TILES, TILE, TILE_F32};

/// A thread's tile buffers, panel and W.
type Buffers<T> = (Scratch<T>, RefCell<Panel>, RefCell<Vec<f64>>);

/// One block of K(C, X): for each tile of centres (`edge` rows; the last may
/// have fewer) its values against the block's h samples, row-major. Each is a
/// tile buffer swapped with the thread's scratch, so no values are copied. A
/// computation makes all its tiles in one precision, so one of the lists
/// stays empty.
#[derive(Default)]
struct Panel {
    f64: Vec<Vec<f64>>,
    f32: Vec<Vec<f32>>,
}

impl Panel {
    /// Keeps a finished tile (centres r0 … r1 by the block's h samples) by
    /// swapping its buffer with the panel's, and adds W += K(C_t, X_b)ᵀ V_t
    /// with V_t V's rows r0 … r1 (k columns) and W (h × k) while the tile is
    /// in cache.
    fn take(
        &mut self,
        tile: Tile,
        values: Values<'_>,
        which: Which,
        edge: usize,
        (v, w): (&[f64], &mut [f64]),
        simd: Simd,
    ) {
        let k = w.len() / tile.cols();
        let v = &v[tile.r0 * k..tile.r1 * k];
        let (t, n) = (tile.r0 / edge, tile.rows() * tile.cols());
        match values.kernel(which) {
            KernelBuffer::F64(buffer) => keep(&mut self.f64, t, buffer, n, (v, w, k), simd),
            KernelBuffer::F32(buffer) => keep(&mut self.f32, t, buffer, n, (v, w, k), simd),
        }
    }

    /// sum (M × k) += K(C, X_b) W for W (h × k), a tile of centres at a time.
    fn add_product(&self, w: &[f64], k: usize, edge: usize, sum: &mut [f64], simd: Simd) {
        debug_assert!(self.f64.is_empty() || self.f32.is_empty());
        simd.run(
            #[inline(always)]
            || {
                add_tiles(&self.f64, w, k, edge, sum);
                add_tiles(&self.f32, w, k, edge, sum);
            },
        );
    }
}

/// Puts `buffer` (its first n values: a tile) at index t of `tiles`, growing
/// it with buffers of the same length, leaves the one it replaces in
/// `buffer`, and adds the tile's W += Aᵀ V (see [`add_transposed`]; V and W
/// have k columns).
fn keep<V: Copy + Default + Into<f64>>(
    tiles: &mut Vec<Vec<V>>,
    t: usize,
    buffer: &mut Vec<V>,
    n: usize,
    (v, w, k): (&[f64], &mut [f64], usize),
    simd: Simd,
) {
    while tiles.len() <= t {
        tiles.push(vec![V::default(); buffer.len()]);
    }
    std::mem::swap(&mut tiles[t], buffer);
    let kept = &tiles[t][..n];
    simd.run(
        #[inline(always)]
        || add_transposed(kept, v, w, k),
    );
}

/// sum (M × k) += K(C, X_b) W over the kept tiles of centres (`edge` rows
/// each, the last one shorter), W (h × k).
#[inline(always)]
fn add_tiles<V: Copy + Into<f64>>(
    tiles: &[Vec<V>],
    w: &[f64],
    k: usize,
    edge: usize,
    sum: &mut [f64],
) {
    let h = w.len() / k;
    for (tile, sum) in tiles.iter().zip(sum.chunks_mut(edge * k)) {
        add_product(&tile[..sum.len() / k * h], w, sum, k);
    }
}

/// W (h × k) += Aᵀ B for A (r × h) and B (r × k), all row-major: a row of A
/// at a time, in f64.
#[inline(always)]
fn add_transposed<V: Copy + Into<f64>>(a: &[V], b: &[f64], w: &mut [f64], k: usize) {
    let h = w.len() / k;
    for (row, bj) in a.chunks_exact(h).zip(b.chunks_exact(k)) {
        if k == 1 {
            let bj = bj[0];
            for (o, x) in w.iter_mut().zip(row) {
                *o += (*x).into() * bj;
            }
        } else {
            for (wi, x) in w.chunks_exact_mut(k).zip(row) {
                let x: f64 = (*x).into();
                for (o, y) in wi.iter_mut().zip(bj) {
                    *o += x * y;
                }
            }
        }
    }
}

/// S (r × k) += A W for A (r × h) and W (h × k), all row-major: one dot
/// product per entry, in f64.
#[inline(always)]
fn add_product<V: Copy + Into<f64>>(a: &[V], w: &[f64], sum: &mut [f64], k: usize) {
    let h = w.len() / k;
    for (row, sj) in a.chunks_exact(h).zip(sum.chunks_exact_mut(k)) {
        if k == 1 {
            sj[0] += dot(row, w);
        } else {
            for (c, s) in sj.iter_mut().enumerate() {
                *s += row
                    .iter()
                    .zip(w.iter().skip(c).step_by(k))
                    .map(|(x, y)| (*x).into() * y)
                    .sum::<f64>();
            }
        }
    }
}

/// Σⱼ a[j] · b[j] in f64, in eight running sums (a fixed order: the same bits
/// on every instruction set) added in order at the end.
#[inline(always)]
fn dot<V: Copy + Into<f64>>(a: &[V], b: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| (*x).into() * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for l in 0..8 {
            lanes[l] += x[l].into() * y[l];
        }
    }
    lanes.iter().sum::<f64>() + tail
}

use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

impl LimitKernel<'_> {
    /// Bytes [`LimitKernel::normal_product`] allocates besides V and the
    /// result, for `rows` samples in all (N + M), M = `centres` and k columns
    /// on `threads` threads: the diagonal recursion and per-thread tiles (as
    /// [`LimitKernel::working_memory`]), per thread a panel of all M centres
    /// (in whole tiles) and the panel's product W, and one M × k sum per
    /// stripe.
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
        let p = self.prepared(x, Some(c), cancel)?;
        let (dx, dc) = p.sides();
        // K(C, X) is made, centres down the rows: a GEMM call covers
        // PANEL_TILES tiles of centres against one block of X, whose packed
        // copy they share, and each tile is a contiguous piece of the panel.
        let run = self.tile_run(
            c,
            x,
            (dc, dx),
            &p.tables,
            false,
            which == Which::Ntk,
            cancel,
        );
        let edge = run.edge;
        let blocks = n.div_ceil(edge);
        let stripes = STRIPES.min(blocks);
        // Per-thread buffers, reused by all the stripes a thread runs: every
        // block overwrites the panel rows and W entries it reads.
        let buffers = || {
            let panel = RefCell::new(Panel::default());
            let w = RefCell::new(vec![0.0f64; edge * k]);
            (Scratch::<T>::new(edge), panel, w)
        };
        let one_stripe = |(scratch, panel, w): &mut Buffers<T>,
                          (s, sum): (usize, &mut Vec<f64>)| {
            *sum = vec![0.0; m * k];
            for b in (s..blocks).step_by(stripes) {
                let (c0, c1) = (b * edge, ((b + 1) * edge).min(n));
                let h = c1 - c0;
                w.borrow_mut().fill(0.0);
                // W = K(C, X_b)ᵀ V, a tile at a time while it is in cache; the tile is kept.
                let emit = |tile: Tile, values: Values<'_>| {
                    let mut w = w.borrow_mut();
                    let mut panel = panel.borrow_mut();
                    panel.take(tile, values, which, edge, (v, &mut w[..h * k]), run.simd);
                };
                for r0 in (0..m).step_by(edge * PANEL_TILES) {
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let r1 = (r0 + edge * PANEL_TILES).min(m);
                    run.panel(scratch, Tile { r0, r1, c0, c1 }, &emit);
                }
                // Then sum += K(C, X_b) W, the kept rows in order.
                let w = w.borrow();
                panel
                    .borrow()
                    .add_product(&w[..h * k], k, edge, sum, run.simd);
            }
        };
        let mut sums: Vec<Vec<f64>> = vec![Vec::new(); stripes];
        let pool = pool::pool()?;
        let buffers = pool::PerThread::new(&pool, buffers);
        pool.install(|| {
            sums.par_iter_mut()
                .enumerate()
                .for_each(|stripe| buffers.with(|b| one_stripe(b, stripe)))
        });
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        out.fill(0.0);
        for sum in &sums {
            for (o, s) in out.iter_mut().zip(sum) {
                *o += s;
            }
        }
        Ok(p.report)
    }
}
