//! Dense solves A X = B for a symmetric positive-definite A (a kernel plus a
//! ridge), by the Cholesky factorisation A = L Lᵀ in faer, in place.
//!
//! ntkfast factorises here rather than through SciPy because the OpenBLAS in
//! NumPy's and SciPy's wheels has crashed inside its Cholesky on some CPUs
//! (AMD Zen 4, from n = 16,000 on): a crash would take the user's process.
//! faer's blocked left-looking factorisation runs on the pool's threads.

use crate::error::{invalid, Error, Result};
use crate::pool;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::{factor, solve};
use faer::{Conj, MatMut, Par};

/// Solves A X = B in place: `a` (n × n, row-major, symmetric) has its upper
/// triangle overwritten by U = Lᵀ (A = Uᵀ U), `b` (n × k, row-major) by X. An error when A is
/// not positive definite (naming the pivot; a larger ridge helps).
pub fn solve_spd(a: &mut [f64], n: usize, b: &mut [f64], k: usize) -> Result<()> {
    if n.checked_mul(n) != Some(a.len()) {
        return invalid(format!("A must hold {n} x {n} values, has {}", a.len()));
    }
    if n.checked_mul(k) != Some(b.len()) {
        return invalid(format!("B must hold {n} x {k} values, has {}", b.len()));
    }
    let pool = pool::pool()?;
    let par = Par::rayon(pool.current_num_threads());
    pool.install(|| {
        // Row-major A is its own transpose in column-major: the lower
        // triangle of the column-major view is A's upper triangle, which
        // equals the lower one for a symmetric A.
        let a = MatMut::from_column_major_slice_mut(a, n, n);
        let scratch = factor::cholesky_in_place_scratch::<f64>(n, par, Default::default());
        let mut memory = MemBuffer::try_new(scratch)
            .map_err(|_| Error::Memory("the Cholesky factorisation's workspace".into()))?;
        let stack = MemStack::new(&mut memory);
        let mut a = a;
        factor::cholesky_in_place(
            a.as_mut(),
            Default::default(),
            par,
            stack,
            Default::default(),
        )
        .map_err(|err| match err {
            factor::LltError::NonPositivePivot { index } => Error::Invalid(format!(
                "the matrix is not positive definite (pivot {index} of {n}); increase the ridge"
            )),
        })?;
        // B row-major (n × k) is Bᵀ column-major (k × n): solve on its transpose.
        let rhs = MatMut::from_row_major_slice_mut(b, n, k);
        let scratch = solve::solve_in_place_scratch::<f64>(n, k, par);
        let mut memory = MemBuffer::try_new(scratch)
            .map_err(|_| Error::Memory("the triangular solves' workspace".into()))?;
        solve::solve_in_place_with_conj(a.as_ref(), Conj::No, rhs, par, MemStack::new(&mut memory));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solves_a_small_system() {
        // A = M Mᵀ + I for a fixed M; X = A⁻¹ B checked by multiplying back.
        let n = 40;
        let m: Vec<f64> = (0..n * n)
            .map(|i| ((i * 31 % 17) as f64) / 17.0 - 0.5)
            .collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|p| m[i * n + p] * m[j * n + p]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        let b: Vec<f64> = (0..n * 2).map(|i| (i as f64).sin()).collect();
        let (mut l, mut x) = (a.clone(), b.clone());
        solve_spd(&mut l, n, &mut x, 2).unwrap();
        for i in 0..n {
            for c in 0..2 {
                let ax: f64 = (0..n).map(|j| a[i * n + j] * x[j * 2 + c]).sum();
                assert!(
                    (ax - b[i * 2 + c]).abs() < 1e-10,
                    "{ax} vs {}",
                    b[i * 2 + c]
                );
            }
        }
    }

    #[test]
    fn indefinite_matrices_and_bad_shapes_are_errors() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        let mut b = vec![1.0, 1.0];
        let err = solve_spd(&mut a, 2, &mut b, 1).unwrap_err();
        assert!(err.to_string().contains("not positive definite"), "{err}");
        assert!(solve_spd(&mut [1.0; 3], 2, &mut [1.0; 2], 1).is_err());
        assert!(solve_spd(&mut [1.0; 4], 2, &mut [1.0; 3], 1).is_err());
    }
}
