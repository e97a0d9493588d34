//! The eigendecomposition A = U diag(λ) Uᵀ of a symmetric matrix (a kernel),
//! in faer, for the closed-form MSE flow f_t = y + U e^{−tΛ/N} Uᵀ (f₀ − y).
//!
//! Here rather than through SciPy for the reason of `cholesky.rs`: the
//! OpenBLAS in NumPy's and SciPy's wheels has crashed inside its dense
//! factorisations on some CPUs at the sizes people use.

use crate::error::{invalid, Error, Result};
use crate::pool;
use faer::diag::DiagMut;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self, ComputeEigenvectors};
use faer::{MatMut, MatRef, Par};

/// λ (ascending) into `values` (n) and the orthonormal eigenvectors, as
/// columns, into `vectors` (n × n, row-major), of the symmetric `a` (n × n,
/// row-major; its lower triangle is read).
pub fn symmetric_eigen(a: &[f64], n: usize, values: &mut [f64], vectors: &mut [f64]) -> Result<()> {
    if n.checked_mul(n) != Some(a.len()) || vectors.len() != a.len() {
        return invalid(format!(
            "A and the eigenvectors must hold {n} x {n} values, have {} and {}",
            a.len(),
            vectors.len()
        ));
    }
    if values.len() != n {
        return invalid(format!(
            "the eigenvalues must hold {n} values, have {}",
            values.len()
        ));
    }
    // Sequential: faer's parallel tridiagonalisation sums in an order that depends
    // on the thread count, and results must not.
    let par = Par::Seq;
    pool::pool()?.install(|| {
        // Row-major A read as column-major is Aᵀ = A.
        let a = MatRef::from_column_major_slice(a, n, n);
        let u = MatMut::from_row_major_slice_mut(vectors, n, n);
        let scratch = evd::self_adjoint_evd_scratch::<f64>(
            n,
            ComputeEigenvectors::Yes,
            par,
            Default::default(),
        );
        let mut memory = MemBuffer::try_new(scratch)
            .map_err(|_| Error::Memory("the eigendecomposition's workspace".into()))?;
        evd::self_adjoint_evd(
            a,
            DiagMut::from_slice_mut(values),
            Some(u),
            par,
            MemStack::new(&mut memory),
            Default::default(),
        )
        .map_err(|_| Error::Invalid("the eigendecomposition did not converge".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconstructs_a_symmetric_matrix() {
        let n = 30;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = ((i * 7 + j * 13) % 11) as f64 / 11.0 - 0.4;
                a[i * n + j] = v;
                a[j * n + i] = v;
            }
        }
        let (mut values, mut vectors) = (vec![0.0; n], vec![0.0; n * n]);
        symmetric_eigen(&a, n, &mut values, &mut vectors).unwrap();
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
        for i in 0..n {
            for j in 0..n {
                let back: f64 = (0..n)
                    .map(|p| vectors[i * n + p] * values[p] * vectors[j * n + p])
                    .sum();
                assert!((back - a[i * n + j]).abs() < 1e-12, "({i}, {j})");
                let dot: f64 = (0..n)
                    .map(|p| vectors[p * n + i] * vectors[p * n + j])
                    .sum();
                assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
        assert!(symmetric_eigen(&a, n + 1, &mut values, &mut vectors).is_err());
    }
}
