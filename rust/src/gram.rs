//! Matrix products through faer's GEMM, in f32 or f64: blocks of the Gram
//! matrix X₁X₂ᵀ, and whole products cut into blocks that run on the pool.

use crate::error::Result;
use crate::pool;
use crate::real::Real;
use crate::tiles::{self, Tile};
use faer::{Accum, MatRef};
use std::mem::MaybeUninit;
use std::sync::atomic::AtomicBool;

/// Rows and columns of the blocks of [`par_product`]: large enough for the GEMM
/// to run near peak, small enough to spread a few hundred rows over the cores.
/// The columns are a multiple of the GEMM's register blocks on AVX2 (24 and 12
/// rows of the transposed product) and AVX-512 (96 and 48); the shapes
/// measured are in docs/performance.md.
const BLOCK_ROWS: usize = 128;
const BLOCK_COLS: usize = 192;

/// Rows per block of a product with m rows: twice [`BLOCK_ROWS`] from 512
/// rows on. The GEMM packs a block's columns of the right-hand side (the
/// weights, in a forward pass) once per call, so taller blocks pack them less
/// often; below 512 rows taller blocks would leave fewer blocks than the
/// cores can share evenly. Blocks depend on m only, never on the thread count.
fn block_rows(m: usize) -> usize {
    if m >= 4 * BLOCK_ROWS {
        2 * BLOCK_ROWS
    } else {
        BLOCK_ROWS
    }
}

/// A vector of `len` values that `fill` writes, without zeroing them first
/// (fresh pages are zeroed by the kernel anyway, and reused ones would be
/// written twice). In debug builds they start as NaN, so that a value left
/// unwritten shows in the tests' results.
///
/// # Safety
/// When `fill` returns `Ok`, it must have written every one of the `len` values.
pub(crate) unsafe fn filled<T: Real>(
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<T>]) -> Result<()>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(len);
    let values = &mut out.spare_capacity_mut()[..len];
    if cfg!(debug_assertions) {
        values.fill(MaybeUninit::new(T::from_f64(f64::NAN)));
    }
    fill(values)?;
    // SAFETY: `fill` wrote all `len` values (the caller's promise).
    unsafe { out.set_len(len) };
    Ok(out)
}

/// As [`par_product_then`] into a new m × n vector, which is not zeroed first:
/// the first depth chunk of each block's product replaces its entries (faer's
/// GEMM does not read an output it replaces) before later chunks add to them.
pub fn par_product_new<T: Real>(
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: f64,
    cancel: &AtomicBool,
    epilogue: impl Fn(usize, usize, &mut [T]) + Sync + Send,
) -> Result<Vec<T>> {
    let (m, n) = (lhs.nrows(), rhs.ncols());
    let Some(len) = m.checked_mul(n) else {
        return crate::error::invalid(format!("a product of {m} x {n} values does not fit"));
    };
    // SAFETY: on success every block of the output has been replaced by its
    // product; the blocks cover it.
    unsafe {
        filled(len, |values| {
            let out = tiles::SharedOutput::uninit(values, m, n);
            blocked_product(&out, Accum::Replace, lhs, rhs, alpha, cancel, epilogue)
        })
    }
}

/// dst (m × n, row-major) = alpha · lhs (m × k) · rhs (k × n), cut into fixed
/// blocks computed in parallel on the pool. Each block is one sequential GEMM
/// over the whole inner dimension (in depth chunks), so the result has the
/// same bits for any number of threads. Stops between blocks once `cancel` is set.
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
    let out = output_of(dst, lhs, rhs)?;
    blocked_product(&out, Accum::Add, lhs, rhs, alpha, cancel, |_, _, _| {})
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
    let out = output_of(dst, lhs, rhs)?;
    blocked_product(&out, Accum::Replace, lhs, rhs, alpha, cancel, epilogue)
}

/// `dst` as the m × n output of lhs · rhs, or an error if its length differs.
fn output_of<'a, T: Real>(
    dst: &'a mut [T],
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
) -> Result<tiles::SharedOutput<'a, T>> {
    let (m, n) = (lhs.nrows(), rhs.ncols());
    if m.checked_mul(n) != Some(dst.len()) {
        return crate::error::invalid(format!(
            "product of ({m}, {}) and ({}, {n}) into {} values",
            lhs.ncols(),
            rhs.nrows(),
            dst.len()
        ));
    }
    Ok(tiles::SharedOutput::new(dst, m, n))
}

/// The blocks of `out` (m × n) = or += alpha · lhs · rhs on the pool, each followed
/// by `epilogue` on its row segments. With `Accum::Replace` every entry of `out`
/// is written before the epilogue sees it.
fn blocked_product<T: Real>(
    out: &tiles::SharedOutput<'_, T>,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: f64,
    cancel: &AtomicBool,
    epilogue: impl Fn(usize, usize, &mut [T]) + Sync + Send,
) -> Result<()> {
    let (m, n) = (lhs.nrows(), rhs.ncols());
    if lhs.ncols() != rhs.nrows() || (out.rows(), out.cols()) != (m, n) {
        return crate::error::invalid(format!(
            "product of ({m}, {}) and ({}, {n}) into ({}, {})",
            lhs.ncols(),
            rhs.nrows(),
            out.rows(),
            out.cols()
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
    pool::for_each_tile(
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
    use faer::MatMut;

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

    /// The lower triangle of x xᵀ (x: n × k) from `product_lower`, the rest `fill`.
    fn lower_gram<T: Real>(x: &[T], n: usize, k: usize, fill: T) -> Vec<T> {
        let mut lower = vec![fill; n * n];
        let lhs = MatRef::from_row_major_slice(x, n, k);
        T::product_lower(
            MatMut::from_row_major_slice_mut(&mut lower, n, n),
            lhs,
            lhs.transpose(),
            1.0,
        );
        lower
    }

    #[test]
    fn deep_products_keep_their_bits_in_any_block() {
        // Depth 1000: chunks of 384, 384 and 232. Every entry must have the same
        // sum whichever block of two or more rows and columns (or triangle)
        // computes it, and match the naive sum. (Single rows and columns go
        // through faer's matrix-vector path, which sums in another order.)
        fn check<T: Real + std::fmt::Debug>(tol: f64) {
            let (n, k) = (300, 1000);
            let x: Vec<T> = (0..n * k)
                .map(|i| T::from_f64(((i * 7919 % 1013) as f64) / 506.0 - 1.0))
                .collect();
            let mut whole = vec![T::default(); n * n];
            T::gram_block(&mut whole, &x, &x, n, n, k);
            for i in (0..n).step_by(37) {
                for j in (0..n).step_by(41) {
                    let naive: f64 = (0..k)
                        .map(|p| x[i * k + p].to_f64() * x[j * k + p].to_f64())
                        .sum();
                    assert!((whole[i * n + j].to_f64() - naive).abs() < tol * k as f64);
                }
            }
            for &(r0, r1, c0, c1) in &[(17, 150, 5, 99), (0, 2, 0, 300), (200, 300, 250, 252)] {
                let (m, w) = (r1 - r0, c1 - c0);
                let mut block = vec![T::default(); m * w];
                T::gram_block(&mut block, &x[r0 * k..r1 * k], &x[c0 * k..c1 * k], m, w, k);
                for a in 0..m {
                    for b in 0..w {
                        assert_eq!(block[a * w + b], whole[(r0 + a) * n + c0 + b], "{r0} {c0}");
                    }
                }
            }
            let lower = lower_gram(&x, n, k, T::default());
            for i in 0..n {
                for j in 0..=i {
                    assert_eq!(lower[i * n + j], whole[i * n + j]);
                }
            }
        }
        check::<f64>(1e-15);
        check::<f32>(1e-6);
    }

    #[test]
    fn lower_triangle_products_leave_the_upper_triangle() {
        let (m, k) = (37, 11);
        let a: Vec<f64> = (0..m * k)
            .map(|i| ((i * 31 % 23) as f64 - 11.0) / 7.0)
            .collect();
        let mut full = vec![0.0; m * m];
        f64::gram_block(&mut full, &a, &a, m, m, k);
        let lower = lower_gram(&a, m, k, f64::NAN);
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
        let default_threads = crate::pool::num_threads().unwrap();
        for threads in [1, 3] {
            crate::pool::set_num_threads(threads).unwrap();
            let mut again = vec![0.0; m * n];
            par_product(&mut again, lhs, rhs, 0.5, &cancel).unwrap();
            assert_eq!(again, dst, "{threads} threads");
        }
        crate::pool::set_num_threads(default_threads).unwrap();
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

    #[test]
    fn par_product_of_mismatched_shapes_is_an_error() {
        use faer::MatRef;
        let (a, b) = ([1.0; 6], [1.0; 6]);
        let mut dst = [0.0; 4];
        assert!(par_product(
            &mut dst,
            MatRef::from_row_major_slice(&a, 2, 3),
            MatRef::from_row_major_slice(&b, 2, 3),
            1.0,
            &AtomicBool::new(false),
        )
        .is_err());
    }
}
