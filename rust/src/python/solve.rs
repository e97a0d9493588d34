//! Dense linear algebra the solvers need from the core: `solve_spd`, `eigh`.

use super::arrays::{contiguous_mut, writable};
use super::runtime::run_interruptible;
use super::to_py;
use numpy::PyUntypedArrayMethods;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// solve_spd(a, b): solves a x = b in place for a symmetric positive-definite
/// float64 a (n, n; its upper triangle overwritten by the Cholesky factor U,
/// a = Uᵀ U, its strict lower triangle partly by workspace values) and b (n, k;
/// overwritten by x), both C-contiguous. Releases the GIL; Ctrl-C is honoured
/// between column blocks of the factorisation.
#[pyfunction]
pub(super) fn solve_spd(
    py: Python<'_>,
    a: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let mut a = writable::<f64>(Some(a), "a")?;
    let mut b = writable::<f64>(Some(b), "b")?;
    let (n, k) = match (&a, &b) {
        (Some(a), Some(b)) if a.shape()[0] == a.shape()[1] && b.shape()[0] == a.shape()[0] => {
            (a.shape()[0], b.shape()[1])
        }
        _ => return Err(PyValueError::new_err("a must be (n, n) and b (n, k)")),
    };
    let a = contiguous_mut(&mut a, "a")?.expect("given");
    let b = contiguous_mut(&mut b, "b")?.expect("given");
    run_interruptible(py, |cancel| crate::solve_spd(a, n, b, k, cancel))?.map_err(to_py)
}

/// eigh(a, values, vectors): the eigendecomposition of the symmetric float64 a
/// (n, n): ascending eigenvalues into `values` (n,) and orthonormal
/// eigenvectors, as columns, into `vectors` (n, n), all C-contiguous.
#[pyfunction]
pub(super) fn eigh(
    py: Python<'_>,
    a: &Bound<'_, PyAny>,
    values: &Bound<'_, PyAny>,
    vectors: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let a = super::arrays::readonly_as::<f64>(a, "a", "float64")?;
    let n = a.shape()[0];
    if a.shape()[1] != n {
        return Err(PyValueError::new_err("a must be square"));
    }
    let a = super::arrays::slice(&a, "a")?;
    let mut values = super::arrays::readwrite::<f64>(values, "values")?;
    let values = super::arrays::slice_mut(&mut values, "values")?;
    let mut vectors = writable::<f64>(Some(vectors), "vectors")?;
    let vectors = contiguous_mut(&mut vectors, "vectors")?.expect("given");
    run_interruptible(py, |_| crate::symmetric_eigen(a, n, values, vectors))?.map_err(to_py)
}
