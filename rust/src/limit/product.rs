//! Kernel–matrix products K(X₁, X₂) · V without storing K: each tile of the
//! kernel is made (as for [`LimitKernel::compute`]) and multiplied into V at
//! once, so memory stays a few tiles per thread plus the (N₁ × k) result.
//!
//! ```text
//! out = K V,   K = Σ⁽ᴸ⁾ or Θ∞⁽ᴸ⁾ (N₁ × N₂),   V (N₂ × k),   out (N₁ × k)
//! ```
//!
//! The work is cut into a fixed number of stripes of row blocks, whatever the
//! number of threads; a stripe runs its row blocks in order and each of them
//! its column tiles in order, so every sum has the same order for any thread
//! count. For K(X, X) only tiles on and below the diagonal are made, each used
//! twice: K_rc V_c goes to the stripe's own rows, K_rcᵀ V_r to a per-stripe
//! buffer of all rows, and the buffers are added in stripe order at the end.
//! [`LimitKernel::product_pair`] does the same for a rectangular K: both
//! K V₂ and Kᵀ V₁ from each tile made once (the blocks of a symmetric product
//! split among the tasks of a cluster). Sums run in f64 (V and the result are
//! f64) for either input dtype.

use super::tile::{Scratch, Values};
use super::{check_features, LimitKernel};
use crate::error::{invalid, Error, Result};
use crate::pool;
use crate::real::Real;
use crate::samples::Samples;
use crate::tiles::{Tile, TILE, TILE_F32};
use faer::{Accum, MatMut, MatRef};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Stripes of row blocks: enough to share among many cores, few enough that
/// their buffers (one N × k each, for K(X, X)) stay small.
pub(super) const STRIPES: usize = 32;

/// Which kernel multiplies V.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// The NNGP kernel Σ⁽ᴸ⁾.
    Nngp,
    /// The limiting NTK Θ∞⁽ᴸ⁾.
    Ntk,
}

impl Which {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "nngp" => Ok(Which::Nngp),
            "ntk" => Ok(Which::Ntk),
            _ => invalid(format!("kernel must be nngp or ntk, got {name:?}")),
        }
    }
}

/// What one stripe owns: its row blocks' rows of the result, and (for
/// K(X, X) or a pair of products) its buffer of the transposed tiles'
/// contributions to all columns.
struct Stripe<'o> {
    blocks: Vec<(usize, &'o mut [f64])>,
    mirror: Vec<f64>,
}

impl LimitKernel<'_> {
    /// Bytes [`LimitKernel::product`] allocates besides V and the result, for
    /// `rows` samples (N₁ + N₂) and k columns on `threads` threads: the
    /// diagonal recursion and per-thread tiles (as
    /// [`LimitKernel::working_memory`]), one f64 copy of a tile, and for K(X, X)
    /// (`symmetric`) or [`LimitKernel::product_pair`] one `rows` × k buffer per
    /// stripe.
    pub fn product_memory(
        depth: usize,
        rows: usize,
        k: usize,
        symmetric: bool,
        threads: usize,
    ) -> usize {
        let tile = TILE.max(TILE_F32).pow(2) * 8;
        let stripes = if symmetric {
            STRIPES
                .saturating_mul(rows)
                .saturating_mul(k)
                .saturating_mul(8)
        } else {
            0
        };
        Self::working_memory(depth, rows, threads)
            .saturating_add(tile.saturating_mul(threads))
            .saturating_add(stripes)
    }

    /// out (N₁ × k, row-major) = K(x1, x2) · v (N₂ × k, row-major), with x2 =
    /// x1 when `None` (only one triangle of tiles is made). Stops between tiles
    /// once `cancel` is set (Error::Cancelled). Same bits for any thread count.
    #[allow(clippy::too_many_arguments)]
    pub fn product<T: Real>(
        &self,
        x1: Samples<'_, T>,
        x2: Option<Samples<'_, T>>,
        which: Which,
        v: &[f64],
        k: usize,
        out: &mut [f64],
        cancel: &AtomicBool,
    ) -> Result<super::Report> {
        self.products(x1, x2, which, v, k, out, None, cancel)
    }

    /// Both products of the rectangular K = K(x1, x2) from each tile made once:
    /// out (N₁ × k) = K · v (N₂ × k) and out_t (N₂ × k) = Kᵀ · v_t (N₁ × k), all
    /// row-major. Same bits for any thread count.
    #[allow(clippy::too_many_arguments)]
    pub fn product_pair<T: Real>(
        &self,
        x1: Samples<'_, T>,
        x2: Samples<'_, T>,
        which: Which,
        (v, v_t): (&[f64], &[f64]),
        k: usize,
        (out, out_t): (&mut [f64], &mut [f64]),
        cancel: &AtomicBool,
    ) -> Result<super::Report> {
        if x1.rows.checked_mul(k) != Some(v_t.len()) || x2.rows.checked_mul(k) != Some(out_t.len())
        {
            return invalid(format!(
                "the transposed product takes {} x {k} values to {} x {k}, has {} and {}",
                x1.rows,
                x2.rows,
                v_t.len(),
                out_t.len()
            ));
        }
        self.products(x1, Some(x2), which, v, k, out, Some((v_t, out_t)), cancel)
    }

    /// K V into `out`, and with `transposed` = (V_t, out_t) also Kᵀ V_t.
    #[allow(clippy::too_many_arguments)]
    fn products<T: Real>(
        &self,
        x1: Samples<'_, T>,
        x2: Option<Samples<'_, T>>,
        which: Which,
        v: &[f64],
        k: usize,
        out: &mut [f64],
        transposed: Option<(&[f64], &mut [f64])>,
        cancel: &AtomicBool,
    ) -> Result<super::Report> {
        let symmetric = x2.is_none();
        let x2s = x2.unwrap_or(x1);
        check_features(&x1, &x2s)?;
        let (n1, n2) = (x1.rows, x2s.rows);
        if k == 0 || n2.checked_mul(k) != Some(v.len()) {
            return invalid(format!(
                "V must hold {n2} x k values with k ≥ 1, has {} for k = {k}",
                v.len()
            ));
        }
        if n1.checked_mul(k) != Some(out.len()) {
            return invalid(format!(
                "the result must hold {n1} x {k} values, has {}",
                out.len()
            ));
        }
        let p = self.prepared(x1, x2, cancel)?;
        let ntk = which == Which::Ntk;
        let run = self.tile_run(x1, x2s, p.sides(), &p.tables, symmetric, ntk, cancel);
        let edge = run.edge;
        out.fill(0.0);
        let blocks = n1.div_ceil(edge);
        let stripes = STRIPES.min(blocks);
        let mut work: Vec<Stripe<'_>> = (0..stripes)
            .map(|_| Stripe {
                blocks: Vec::new(),
                mirror: Vec::new(),
            })
            .collect();
        for (b, rows) in out.chunks_mut(edge * k).enumerate() {
            work[b % stripes].blocks.push((b, rows));
        }
        let diagonal = &p.rows;
        // The transposed tiles multiply V's own rows (K(X, X)) or V_t's.
        let (v_t, out_t) = match transposed {
            Some((v_t, out_t)) => (Some(v_t), Some(out_t)),
            None => (symmetric.then_some(v), None),
        };
        let one_stripe = |stripe: &mut Stripe<'_>| {
            if v_t.is_some() {
                stripe.mirror = vec![0.0; n2 * k];
            }
            let mut scratch = Scratch::<T>::new(edge);
            let dense = RefCell::new(vec![0.0f64; edge * edge]);
            let Stripe { blocks, mirror } = stripe;
            let mirror = RefCell::new(mirror);
            for (b, rows) in blocks.iter_mut() {
                let r0 = *b * edge;
                let r1 = (r0 + edge).min(n1);
                let rows = RefCell::new(&mut **rows);
                let last = if symmetric { *b + 1 } else { n2.div_ceil(edge) };
                for c in 0..last {
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let c0 = c * edge;
                    let tile = Tile {
                        r0,
                        r1,
                        c0,
                        c1: (c0 + edge).min(n2),
                    };
                    let emit = |tile: Tile, values: Values<'_>| {
                        let mut dense = dense.borrow_mut();
                        let kernel = kernel_values(tile, values, which, &mut dense);
                        if symmetric && tile.is_diagonal() {
                            symmetrise(tile, kernel, diagonal, which);
                        }
                        let (h, w) = (tile.rows(), tile.cols());
                        let kernel = MatRef::from_row_major_slice(&kernel[..h * w], h, w);
                        let mut rows = rows.borrow_mut();
                        let vc = MatRef::from_row_major_slice(&v[tile.c0 * k..tile.c1 * k], w, k);
                        let dst = MatMut::from_row_major_slice_mut(&mut rows[..h * k], h, k);
                        f64::product_into(dst, Accum::Add, kernel, vc, 1.0);
                        let skip = symmetric && tile.is_diagonal();
                        if let (Some(v_t), false) = (v_t, skip) {
                            let mut mirror = mirror.borrow_mut();
                            let vr =
                                MatRef::from_row_major_slice(&v_t[tile.r0 * k..tile.r1 * k], h, k);
                            let dst = MatMut::from_row_major_slice_mut(
                                &mut mirror[tile.c0 * k..tile.c1 * k],
                                w,
                                k,
                            );
                            f64::product_into(dst, Accum::Add, kernel.transpose(), vr, 1.0);
                        }
                    };
                    run.panel(&mut scratch, tile, &emit);
                }
            }
        };
        let pool = pool::pool()?;
        pool.install(|| work.par_iter_mut().for_each(one_stripe));
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        if v_t.is_some() {
            // The transposed tiles' contributions, in stripe order.
            let mirrors: Vec<Vec<f64>> = work.into_iter().map(|s| s.mirror).collect();
            let target = match out_t {
                Some(out_t) => {
                    out_t.fill(0.0);
                    out_t
                }
                None => out,
            };
            for m in &mirrors {
                for (o, a) in target.iter_mut().zip(m) {
                    *o += a;
                }
            }
        }
        Ok(p.report)
    }
}

/// One kernel's buffer of a finished tile, in the precision its layers ran in.
pub(super) enum KernelBuffer<'s> {
    F64(&'s mut Vec<f64>),
    F32(&'s mut Vec<f32>),
}

impl<'s> Values<'s> {
    /// The buffer of the requested kernel.
    pub(super) fn kernel(self, which: Which) -> KernelBuffer<'s> {
        let nngp = which == Which::Nngp;
        match self {
            Values::F64 { sigma, theta, .. } => KernelBuffer::F64(if nngp { sigma } else { theta }),
            Values::F32 { sigma, theta, .. } => KernelBuffer::F32(if nngp { sigma } else { theta }),
        }
    }
}

/// The tile of the requested kernel (h × w) as f64 values: the layers' own
/// buffer when they ran in f64, else converted into `dense`.
pub(super) fn kernel_values<'a>(
    tile: Tile,
    values: Values<'a>,
    which: Which,
    dense: &'a mut [f64],
) -> &'a mut [f64] {
    let n = tile.rows() * tile.cols();
    match values.kernel(which) {
        KernelBuffer::F64(src) => &mut src[..n],
        KernelBuffer::F32(src) => {
            let dense = &mut dense[..n];
            for (d, s) in dense.iter_mut().zip(&src[..n]) {
                *d = *s as f64;
            }
            dense
        }
    }
}

/// A diagonal tile of K(X, X) as the stored kernel has it: the exact
/// per-sample diagonal, and the lower triangle mirrored into the upper.
fn symmetrise(tile: Tile, kernel: &mut [f64], diagonal: &super::Diagonal, which: Which) {
    let w = tile.cols();
    let exact = if which == Which::Nngp {
        diagonal.nngp()
    } else {
        diagonal.ntk()
    };
    for i in 0..tile.rows() {
        kernel[i * w + i] = exact[tile.r0 + i];
        for j in 0..i {
            kernel[j * w + i] = kernel[i * w + j];
        }
    }
}
