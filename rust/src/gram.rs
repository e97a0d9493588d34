//! Blocks of the Gram matrix X₁X₂ᵀ through faer's GEMM, in f32 or f64.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// The floating-point types of inputs and outputs. The recursion itself
/// always runs in f64; only the Gram matrix and the stored kernels use `Self`.
pub trait Real: Copy + Send + Sync + Default + 'static {
    /// Whether the GEMM accumulates in f64 (no refinement of nearly parallel pairs needed).
    const EXACT_GRAM: bool;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    /// dst (m × n, row-major) = a (m × k, row-major) · b (n × k, row-major)ᵀ,
    /// computed on the calling thread.
    fn gram_block(dst: &mut [Self], a: &[Self], b: &[Self], m: usize, n: usize, k: usize);
}

macro_rules! impl_real {
    ($t:ty, $exact:expr) => {
        impl Real for $t {
            const EXACT_GRAM: bool = $exact;
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn gram_block(dst: &mut [Self], a: &[Self], b: &[Self], m: usize, n: usize, k: usize) {
                let lhs = MatRef::from_row_major_slice(&a[..m * k], m, k);
                let rhs = MatRef::from_row_major_slice(&b[..n * k], n, k).transpose();
                let out = MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n);
                // Sequential on purpose: parallelism is over tiles, which keeps
                // every entry's summation order independent of the thread count.
                matmul(out, Accum::Replace, lhs, rhs, 1.0, Par::Seq);
            }
        }
    };
}

impl_real!(f32, false);
impl_real!(f64, true);

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
}
