//! Python bindings: typed objects holding a parsed configuration, array
//! borrowing, GIL release, Ctrl-C and errors. PyO3 lives only here.
//!
//! Inputs arrive validated and C-contiguous from the Python layer, which also
//! allocates the outputs (so an impossible allocation is a MemoryError before
//! any work). Here the arrays are borrowed without copies, the GIL is released
//! for the computation, and the calling thread polls for signals while the
//! pool works (`runtime`). One file per subject: `limit` (the infinite-width
//! kernels), `network` (finite-width networks), `solve` (dense solves),
//! `arrays` (borrowing and the one dtype dispatch).

mod arrays;
mod limit;
mod network;
mod runtime;
mod solve;

use crate::error::Error;
use crate::{init, pool, Activation, TILE, TILE_F32};
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

fn to_py(err: Error) -> PyErr {
    match err {
        Error::Invalid(msg) => PyValueError::new_err(msg),
        Error::Memory(msg) => PyMemoryError::new_err(msg),
        // Only raised after a signal handler already set the Python error.
        Error::Cancelled => PyRuntimeError::new_err("computation cancelled"),
    }
}

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        to_py(err)
    }
}

/// init_normal(seed, stream, out): standard normal stream `stream` of `seed` into the
/// float64 array out (see rust/src/init.rs for the generator).
#[pyfunction]
fn init_normal(py: Python<'_>, seed: u64, stream: u64, out: &Bound<'_, PyAny>) -> PyResult<()> {
    let mut out = arrays::readwrite::<f64>(out, "out")?;
    let out = arrays::slice_mut(&mut out, "out")?;
    py.allow_threads(|| init::standard_normal(seed, stream, out))
        .map_err(to_py)
}

/// Sets the number of threads of the computation pool (≥ 1).
#[pyfunction]
fn set_num_threads(threads: usize) -> PyResult<()> {
    pool::set_num_threads(threads).map_err(to_py)
}

/// The number of threads of the computation pool.
#[pyfunction]
fn get_num_threads() -> PyResult<usize> {
    pool::num_threads().map_err(to_py)
}

/// The activation registry: (name, σ as text, has a closed-form dual,
/// parameter name or None, default parameter) for every built-in activation.
type RegistryEntry = (&'static str, &'static str, bool, Option<&'static str>, f64);

fn registry() -> Vec<RegistryEntry> {
    Activation::ALL
        .iter()
        .map(|a| {
            let (param, default) = a.param().map_or((None, 0.0), |(n, v)| (Some(n), v));
            (a.name(), a.formula(), a.has_closed_form(), param, default)
        })
        .collect()
}

#[pymodule]
fn _ntkfast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<limit::PyLimitKernel>()?;
    m.add_class::<limit::PyPrepared>()?;
    m.add_class::<network::PyNetwork>()?;
    m.add_function(wrap_pyfunction!(init_normal, m)?)?;
    m.add_function(wrap_pyfunction!(solve::solve_spd, m)?)?;
    m.add_function(wrap_pyfunction!(solve::eigh, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add("TILE", TILE)?;
    m.add("TILE_F32", TILE_F32)?;
    m.add("ACTIVATIONS", registry())?;
    Ok(())
}
