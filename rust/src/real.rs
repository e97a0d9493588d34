//! The floating-point types of inputs and outputs (f32, f64) and their GEMM.
//!
//! Every product of the crate goes through [`Real::gemm`]: faer's sequential
//! GEMM, summed over the inner dimension in chunks of [`DEPTH_CHUNK`] so that
//! an entry's bits do not depend on the block of the output that holds it.

use crate::tiles::Store;
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::reborrow::ReborrowMut;
use faer::{Accum, MatMut, MatRef, Par};

/// The floating-point types of inputs and outputs. The recursion runs in f64,
/// except for float32 kernels of the piecewise-linear activations, which run it
/// in f32 where that is accurate (see `limit`).
pub trait Real:
    Store
    + Store<f32>
    + Store<Self>
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
    /// dst = alpha · lhs · rhs (`Accum::Replace`) or dst += alpha · lhs · rhs
    /// (`Accum::Add`) on the calling thread, any strides, in depth chunks (see
    /// [`DEPTH_CHUNK`]); with `TriangularLower` only dst's lower triangle
    /// (diagonal included) is computed, the strict upper triangle left as it was.
    fn gemm(
        dst: MatMut<'_, Self>,
        structure: BlockStructure,
        accum: Accum,
        lhs: MatRef<'_, Self>,
        rhs: MatRef<'_, Self>,
        alpha: f64,
    );
    /// dst (m × n, row-major) = a (m × k, row-major) · b (n × k, row-major)ᵀ,
    /// computed on the calling thread.
    fn gram_block(dst: &mut [Self], a: &[Self], b: &[Self], m: usize, n: usize, k: usize) {
        let lhs = MatRef::from_row_major_slice(&a[..m * k], m, k);
        let rhs = MatRef::from_row_major_slice(&b[..n * k], n, k).transpose();
        let out = MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n);
        // Sequential on purpose: parallelism is over tiles, which keeps
        // every entry's summation order independent of the thread count.
        Self::product(out, lhs, rhs, 1.0)
    }
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
    ) {
        Self::gemm(dst, BlockStructure::Rectangular, accum, lhs, rhs, alpha)
    }
    /// As [`Real::product`] for a square dst of which only the lower triangle
    /// (diagonal included) is computed; the strict upper triangle is left as it was.
    fn product_lower(
        dst: MatMut<'_, Self>,
        lhs: MatRef<'_, Self>,
        rhs: MatRef<'_, Self>,
        alpha: f64,
    ) {
        let lower = BlockStructure::TriangularLower;
        Self::gemm(dst, lower, Accum::Replace, lhs, rhs, alpha)
    }
}

/// Depth (inner dimension) of one GEMM call. faer's x86 GEMM, as faer builds
/// it (without its cache-size detection, so assuming a 256 KiB L2 on every
/// CPU), cuts its output into blocks of 256 KiB / (2 · 64⌈depth/64⌉ · value
/// size) rows, rounded up to a multiple of 16, from the depth of each call: at
/// depths 321–384 that is 96 rows in f32 and 48 in f64, whole multiples of its
/// register kernels on AVX-512 (96, 48 rows) and AVX2 (24, 12); at 512, the
/// most it takes at once, 64 and 32 rows, which leave the 96-row kernel unused
/// and run the rest in narrower ones. Deeper products are therefore summed in
/// chunks of this depth, from the first, the same chunks for every block: an
/// entry's sum does not depend on the block that holds it, with the GEMM's
/// exceptions (one-row and one-column products, and products of at most 4096
/// multiply-adds per chunk, which take other paths). Measured gains are in
/// docs/performance.md.
pub const DEPTH_CHUNK: usize = 384;

/// Runs one small GEMM on the calling thread, large enough to take faer's x86
/// GEMM rather than its tiny-product path: that GEMM reserves a packing buffer
/// per thread on its first call (twice the L3 size it assumes, 4 MiB on
/// x86-64, without its cache-size detection; docs/performance.md). The pool
/// calls this in each new thread, so that the buffer is reserved when the pool
/// starts rather than in the middle of a computation, under whatever memory
/// the computation has left.
pub fn reserve_gemm_buffer() {
    const EDGE: usize = 32;
    let a = [0.0f64; EDGE * EDGE];
    let mut c = [0.0f64; EDGE * EDGE];
    f64::gram_block(&mut c, &a, &a, EDGE, EDGE, EDGE);
}

/// [`Real::gemm`] for faer's float types.
fn in_depth_chunks<T: faer::traits::ComplexField>(
    mut dst: MatMut<'_, T>,
    structure: BlockStructure,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: T,
) {
    let depth = lhs.ncols();
    let mut accum = accum;
    // At depth 0 one empty product still runs: it zeroes dst for `Replace`.
    for k0 in (0..depth.max(1)).step_by(DEPTH_CHUNK) {
        let k = DEPTH_CHUNK.min(depth - k0);
        let (lhs, rhs) = (lhs.subcols(k0, k), rhs.subrows(k0, k));
        let dst = dst.rb_mut();
        match structure {
            BlockStructure::Rectangular => matmul(dst, accum, lhs, rhs, alpha.clone(), Par::Seq),
            _ => triangular::matmul(
                dst,
                structure,
                accum,
                lhs,
                BlockStructure::Rectangular,
                rhs,
                BlockStructure::Rectangular,
                alpha.clone(),
                Par::Seq,
            ),
        }
        accum = Accum::Add;
    }
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
            fn gemm(
                dst: MatMut<'_, Self>,
                structure: BlockStructure,
                accum: Accum,
                lhs: MatRef<'_, Self>,
                rhs: MatRef<'_, Self>,
                alpha: f64,
            ) {
                in_depth_chunks(dst, structure, accum, lhs, rhs, alpha as $t);
            }
        }
    };
}

fn f32_itself(values: &[f32]) -> Option<&[f32]> {
    Some(values)
}
fn f64_is_not_f32(_: &[f64]) -> Option<&[f32]> {
    None
}

impl_real!(f32, false, 1e30, f32_itself);
impl_real!(f64, true, 1e150, f64_is_not_f32);
