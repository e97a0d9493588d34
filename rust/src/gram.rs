//! Matrix products through faer's GEMM, in f32 or f64: blocks of the Gram
//! matrix X₁X₂ᵀ, and whole products cut into blocks that run on the pool.

use crate::error::Result;
use crate::tiles::{self, Tile};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use std::sync::atomic::AtomicBool;

/// The floating-point types of inputs and outputs. The recursion runs in f64,
/// except for float32 kernels of the piecewise-linear activations, which run it
/// in f32 where that is accurate (see `limit`).
pub trait Real:
    crate::tiles::Store
    + crate::tiles::Store<f32>
    + crate::tiles::Store<Self>
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::AddAssign
    + PartialOrd
    + Send
    + Sync
    + Default
    + 'static
{
    /// Whether the GEMM accumulates in f64 (no refinement of nearly parallel pairs needed).
    const EXACT_GRAM: bool;
    /// Largest variance (diagonal of any layer's kernel) the type can carry: f64
    /// keeps products of two variances finite in every dual formula (1e150);
    /// f32 keeps the Gram sums |x·x'| ≤ n₀·√(q q') and the stored kernels below
    /// its maximum of 3.4e38 for up to 1e8 features (1e30).
    const MAX_VARIANCE: f64;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    /// The values as f32, when `Self` is f32.
    fn as_f32(values: &[Self]) -> Option<&[f32]>;
    /// dst (m × n, row-major) = a (m × k, row-major) · b (n × k, row-major)ᵀ,
    /// computed on the calling thread.
    fn gram_block(dst: &mut [Self], a: &[Self], b: &[Self], m: usize, n: usize, k: usize);
    /// dst = alpha · lhs · rhs, on the calling thread (any strides).
    fn product(dst: MatMut<'_, Self>, lhs: MatRef<'_, Self>, rhs: MatRef<'_, Self>, alpha: f64) {
        Self::product_into(dst, Accum::Replace, lhs, rhs, alpha)
    }
    /// dst = alpha · lhs · rhs (Accum::Replace) or dst += alpha · lhs · rhs (Accum::Add).
    fn product_into(
        dst: MatMut<'_, Self>,
        accum: Accum,
        lhs: MatRef<'_, Self>,
        rhs: MatRef<'_, Self>,
        alpha: f64,
    );
    /// As [`Real::product`] for a square dst of which only the lower triangle
    /// (diagonal included) is computed; the strict upper triangle is left as it was.
    fn product_lower(
        dst: MatMut<'_, Self>,
        lhs: MatRef<'_, Self>,
        rhs: MatRef<'_, Self>,
        alpha: f64,
    );
}

macro_rules! impl_real {
    ($t:ty, $exact:expr, $max_variance:expr, $as_f32:expr) => {
        impl Real for $t {
            const EXACT_GRAM: bool = $exact;
            const MAX_VARIANCE: f64 = $max_variance;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn as_f32(values: &[Self]) -> Option<&[f32]> {
                $as_f32(values)
            }
            fn gram_block(dst: &mut [Self], a: &[Self], b: &[Self], m: usize, n: usize, k: usize) {
                let lhs = MatRef::from_row_major_slice(&a[..m * k], m, k);
                let rhs = MatRef::from_row_major_slice(&b[..n * k], n, k).transpose();
                let out = MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n);
                // Sequential on purpose: parallelism is over tiles, which keeps
                // every entry's summation order independent of the thread count.
                matmul(out, Accum::Replace, lhs, rhs, 1.0, Par::Seq);
            }
            fn product_into(
                dst: MatMut<'_, Self>,
                accum: Accum,
                lhs: MatRef<'_, Self>,
                rhs: MatRef<'_, Self>,
                alpha: f64,
            ) {
                matmul(dst, accum, lhs, rhs, alpha as $t, Par::Seq);
            }
            fn product_lower(
                dst: MatMut<'_, Self>,
                lhs: MatRef<'_, Self>,
                rhs: MatRef<'_, Self>,
                alpha: f64,
            ) {
                triangular::matmul(
                    dst,
                    BlockStructure::TriangularLower,
                    Accum::Replace,
                    lhs,
                    BlockStructure::Rectangular,
                    rhs,
                    BlockStructure::Rectangular,
                    alpha as $t,
                    Par::Seq,
                );
            }
        }
    };
}

/// Rows and columns of the blocks of [`par_product`]: large enough for the GEMM
/// to run near peak, small enough to spread a few hundred rows over the cores.
/// The columns are a multiple of the GEMM's register blocks on AVX2 (24 and 12
/// rows of the transposed product) and AVX-512 (96 and 48): on an AVX-512
/// machine 128 × 192 took 8 % less time than 64 × 256 for the forward pass of
/// a 784-512-512-512 network on 1024 inputs (on an AVX2 machine, shapes from
/// 48 × 48 to 1024 × 512 made no difference).
const BLOCK_ROWS: usize = 128;
const BLOCK_COLS: usize = 192;

/// Rows per block of a product with m rows: twice [`BLOCK_ROWS`] from 512
/// rows on. The GEMM packs a block's columns of the right-hand side (the
/// weights, in a forward pass) once per call, so taller blocks pack them less
/// often: the forward pass above took 4 % less time, while at 200 rows,
/// where it would leave fewer blocks than the cores can share evenly, 4 %
/// more. Blocks depend on m only, never on the thread count.
fn block_rows(m: usize) -> usize {
    if m >= 4 * BLOCK_ROWS {
        2 * BLOCK_ROWS
    } else {
        BLOCK_ROWS
    }
}

/// dst (m × n, row-major) = alpha · lhs (m × k) · rhs (k × n), cut into fixed
/// blocks computed in parallel on the pool. Each block is one sequential GEMM
/// over the whole inner dimension, so the result has the same bits for any
/// number of threads. Stops between blocks once `cancel` is set.
pub fn par_product<T: Real>(
    dst: &mut [T],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: f64,
    cancel: &AtomicBool,
) -> Result<()> {
    par_product_then(dst, lhs, rhs, alpha, cancel, |_, _, _| {})
}

/// As [`par_product`] but dst += alpha · lhs · rhs.
pub fn par_product_add<T: Real>(
    dst: &mut [T],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: f64,
    cancel: &AtomicBool,
) -> Result<()> {
    blocked_product(dst, Accum::Add, lhs, rhs, alpha, cancel, |_, _, _| {})
}

/// As [`par_product`], then `epilogue(row, first_col, values)` on each row
/// segment of each block while it is still in cache (e.g. bias and σ).
pub fn par_product_then<T: Real>(
    dst: &mut [T],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: f64,
    cancel: &AtomicBool,
    epilogue: impl Fn(usize, usize, &mut [T]) + Sync + Send,
) -> Result<()> {
    blocked_product(dst, Accum::Replace, lhs, rhs, alpha, cancel, epilogue)
}

fn blocked_product<T: Real>(
    dst: &mut [T],
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: f64,
    cancel: &AtomicBool,
    epilogue: impl Fn(usize, usize, &mut [T]) + Sync + Send,
) -> Result<()> {
    let (m, n) = (lhs.nrows(), rhs.ncols());
    if lhs.ncols() != rhs.nrows() || m.checked_mul(n) != Some(dst.len()) {
        return crate::error::invalid(format!(
            "product of ({m}, {}) and ({}, {n}) into {} values",
            lhs.ncols(),
            rhs.nrows(),
            dst.len()
        ));
    }
    let mut blocks = Vec::new();
    let rows = block_rows(m);
    for r0 in (0..m).step_by(rows) {
        for c0 in (0..n).step_by(BLOCK_COLS) {
            blocks.push(Tile {
                r0,
                r1: (r0 + rows).min(m),
                c0,
                c1: (c0 + BLOCK_COLS).min(n),
            });
        }
    }
    let out = tiles::SharedOutput::new(dst, m, n);
    tiles::for_each_tile(
        &blocks,
        cancel,
        || (),
        |_, b| {
            // SAFETY: the blocks are disjoint and inside dst.
            let block = unsafe { out.block_mut(b) };
            T::product_into(
                block,
                accum,
                lhs.subrows(b.r0, b.rows()),
                rhs.subcols(b.c0, b.cols()),
                alpha,
            );
            for r in b.r0..b.r1 {
                // SAFETY: as above; the view of the block is no longer used.
                epilogue(r, b.c0, unsafe { out.row_mut(r, b.c0, b.c1) });
            }
        },
    )
}

fn f32_itself(values: &[f32]) -> Option<&[f32]> {
    Some(values)
}
fn f64_is_not_f32(_: &[f64]) -> Option<&[f32]> {
    None
}

impl_real!(f32, false, 1e30, f32_itself);
impl_real!(f64, true, 1e150, f64_is_not_f32);

/// dst = alpha · lhs · rhs on the calling thread, for tests and small products.
#[cfg(test)]
pub(crate) fn naive_product(lhs: &[f64], rhs: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            for j in 0..n {
                out[i * n + j] += lhs[i * k + p] * rhs[p * n + j];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_products() {
        let (m, n, k) = (5, 7, 33);
        let a: Vec<f64> = (0..m * k)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) / 3.0)
            .collect();
        let b: Vec<f64> = (0..n * k)
            .map(|i| ((i * 17 % 13) as f64 - 6.0) / 7.0)
            .collect();
        let mut dst = vec![0.0; m * n];
        f64::gram_block(&mut dst, &a, &b, m, n, k);
        for i in 0..m {
            for j in 0..n {
                let naive: f64 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                assert!((dst[i * n + j] - naive).abs() < 1e-12 * naive.abs().max(1.0));
            }
        }
        let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        let mut dst32 = vec![0.0f32; m * n];
        f32::gram_block(&mut dst32, &a32, &b32, m, n, k);
        for (x, y) in dst32.iter().zip(&dst) {
            assert!((*x as f64 - y).abs() < 1e-4 * y.abs().max(1.0));
        }
    }

    #[test]
    fn lower_triangle_products_leave_the_upper_triangle() {
        let (m, k) = (37, 11);
        let a: Vec<f64> = (0..m * k)
            .map(|i| ((i * 31 % 23) as f64 - 11.0) / 7.0)
            .collect();
        let mut full = vec![0.0; m * m];
        f64::gram_block(&mut full, &a, &a, m, m, k);
        let mut lower = vec![f64::NAN; m * m];
        let lhs = MatRef::from_row_major_slice(&a, m, k);
        f64::product_lower(
            MatMut::from_row_major_slice_mut(&mut lower, m, m),
            lhs,
            lhs.transpose(),
            1.0,
        );
        for i in 0..m {
            for j in 0..m {
                if j <= i {
                    assert!((lower[i * m + j] - full[i * m + j]).abs() < 1e-12);
                } else {
                    assert!(lower[i * m + j].is_nan());
                }
            }
        }
    }

    #[test]
    fn blocked_product_matches_naive_product_for_any_threads() {
        // Sizes that leave partial blocks in both directions.
        let (m, k, n) = (150, 37, 300);
        let a: Vec<f64> = (0..m * k)
            .map(|i| ((i * 29 % 17) as f64 - 8.0) / 5.0)
            .collect();
        let b: Vec<f64> = (0..k * n)
            .map(|i| ((i * 13 % 19) as f64 - 9.0) / 4.0)
            .collect();
        let naive = naive_product(&a, &b, m, k, n);
        let cancel = AtomicBool::new(false);
        let lhs = MatRef::from_row_major_slice(&a, m, k);
        let rhs = MatRef::from_row_major_slice(&b, k, n);
        let mut dst = vec![0.0; m * n];
        par_product(&mut dst, lhs, rhs, 0.5, &cancel).unwrap();
        for (x, y) in dst.iter().zip(&naive) {
            assert!((x - 0.5 * y).abs() < 1e-12 * y.abs().max(1.0));
        }
        // The same bits with another number of threads.
        let default_threads = crate::tiles::num_threads().unwrap();
        for threads in [1, 3] {
            crate::tiles::set_num_threads(threads).unwrap();
            let mut again = vec![0.0; m * n];
            par_product(&mut again, lhs, rhs, 0.5, &cancel).unwrap();
            assert_eq!(again, dst, "{threads} threads");
        }
        crate::tiles::set_num_threads(default_threads).unwrap();
        // Accumulation: dst + 2 · a b.
        let mut sum = dst.clone();
        par_product_add(&mut sum, lhs, rhs, 2.0, &cancel).unwrap();
        for ((s, x), y) in sum.iter().zip(&dst).zip(&naive) {
            assert!((s - x - 2.0 * y).abs() < 1e-12 * y.abs().max(1.0));
        }
        // Transposed views work too: dst' = bᵀ aᵀ = (a b)ᵀ.
        let mut dst_t = vec![0.0; n * m];
        par_product(&mut dst_t, rhs.transpose(), lhs.transpose(), 1.0, &cancel).unwrap();
        for i in 0..m {
            for j in 0..n {
                assert!(
                    (dst_t[j * m + i] - naive[i * n + j]).abs()
                        < 1e-12 * naive[i * n + j].abs().max(1.0)
                );
            }
        }
    }
}
