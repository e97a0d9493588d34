//! Python bindings: argument conversion, GIL release, Ctrl-C, and errors.
//!
//! Inputs arrive validated and C-contiguous from the Python layer, which also
//! allocates the outputs (so an impossible allocation is a MemoryError before
//! any work). Here the arrays are borrowed without copies, the GIL is released
//! for the computation, and the calling thread polls for signals while the
//! pool works.

use crate::error::Error;
use crate::gram::Real;
use crate::limit::{LimitKernel, Outputs, Samples};
use crate::tiles;
use crate::Activation;
use numpy::{
    Element, PyArray2, PyArrayMethods, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

fn to_py(err: Error) -> PyErr {
    match err {
        Error::Invalid(msg) => PyValueError::new_err(msg),
        // Only raised after a signal handler already set the Python error.
        Error::Cancelled => PyRuntimeError::new_err("computation cancelled"),
    }
}

/// Runs `job` on a helper thread with the GIL released; every 50 ms the
/// calling thread takes the GIL back to run Python's signal handlers, and a
/// KeyboardInterrupt (or any exception they raise) cancels the job, which
/// stops at its next tile.
fn run_interruptible<R: Send>(
    py: Python<'_>,
    job: impl FnOnce(&AtomicBool) -> R + Send,
) -> PyResult<R> {
    let cancel = AtomicBool::new(false);
    let done = (Mutex::new(false), Condvar::new());
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("ntkfast-driver".into())
            .spawn_scoped(scope, || {
                let result = catch_unwind(AssertUnwindSafe(|| job(&cancel)));
                *done.0.lock().unwrap_or_else(|e| e.into_inner()) = true;
                done.1.notify_all();
                result
            });
        let handle = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                return Err(PyRuntimeError::new_err(format!(
                    "cannot start a thread: {e}"
                )))
            }
        };
        loop {
            let finished = py.allow_threads(|| {
                let guard = done.0.lock().unwrap_or_else(|e| e.into_inner());
                let (guard, _) = done
                    .1
                    .wait_timeout_while(guard, Duration::from_millis(50), |d| !*d)
                    .unwrap_or_else(|e| e.into_inner());
                *guard
            });
            if finished {
                break;
            }
            if let Err(err) = py.check_signals() {
                cancel.store(true, Ordering::Relaxed);
                let _ = py.allow_threads(|| handle.join());
                return Err(err);
            }
        }
        handle
            .join()
            .ok()
            .and_then(|r| r.ok())
            .ok_or_else(|| PyRuntimeError::new_err("internal error: the computation panicked"))
    })
}

fn samples<'a, T: Element>(x: &'a PyReadonlyArray2<'_, T>, name: &str) -> PyResult<Samples<'a, T>> {
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    let data = x
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))?;
    Samples::new(data, rows, cols).map_err(to_py)
}

fn writable<'py, T: Element>(
    out: Option<&Bound<'py, PyAny>>,
    name: &str,
) -> PyResult<Option<PyReadwriteArray2<'py, T>>> {
    out.map(|o| {
        let array = o.downcast::<PyArray2<T>>().map_err(|_| {
            PyTypeError::new_err(format!(
                "{name} has the wrong dtype or number of dimensions"
            ))
        })?;
        array
            .try_readwrite()
            .map_err(|e| PyValueError::new_err(format!("{name} cannot be written: {e}")))
    })
    .transpose()
}

fn contiguous_mut<'a, T: Element>(
    out: &'a mut Option<PyReadwriteArray2<'_, T>>,
    name: &str,
) -> PyResult<Option<&'a mut [T]>> {
    out.as_mut()
        .map(|a| {
            a.as_slice_mut()
                .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
        })
        .transpose()
}

#[allow(clippy::too_many_arguments)]
fn limit_kernel_typed<T: Real + Element>(
    py: Python<'_>,
    kernel: LimitKernel,
    x1: &Bound<'_, PyArray2<T>>,
    x2: Option<&Bound<'_, PyAny>>,
    out_nngp: Option<&Bound<'_, PyAny>>,
    out_ntk: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let x1 = x1.try_readonly().map_err(|e| {
        PyValueError::new_err(format!("x1 cannot be read (written by another call?): {e}"))
    })?;
    let x2 = x2
        .map(|x| {
            x.downcast::<PyArray2<T>>()
                .map_err(|_| PyTypeError::new_err("x2 must have the dtype of x1"))?
                .try_readonly()
                .map_err(|e| {
                    PyValueError::new_err(format!(
                        "x2 cannot be read (written by another call?): {e}"
                    ))
                })
        })
        .transpose()?;
    let mut nngp = writable::<T>(out_nngp, "out nngp")?;
    let mut ntk = writable::<T>(out_ntk, "out ntk")?;
    let s1 = samples(&x1, "x1")?;
    let s2 = x2.as_ref().map(|x| samples(x, "x2")).transpose()?;
    let out = Outputs {
        nngp: contiguous_mut(&mut nngp, "out nngp")?,
        ntk: contiguous_mut(&mut ntk, "out ntk")?,
    };
    run_interruptible(py, |cancel| kernel.compute(s1, s2, out, cancel))?.map_err(to_py)
}

/// limit_kernel(x1, x2, depth, activation, param, beta, out_nngp, out_ntk)
///
/// Writes Σ⁽ᴸ⁾ and Θ∞⁽ᴸ⁾ into the given C-contiguous arrays (either may be None).
#[pyfunction]
#[pyo3(signature = (x1, x2, depth, activation, param, beta, out_nngp, out_ntk))]
#[allow(clippy::too_many_arguments)]
fn limit_kernel(
    py: Python<'_>,
    x1: &Bound<'_, PyAny>,
    x2: Option<&Bound<'_, PyAny>>,
    depth: usize,
    activation: &str,
    param: f64,
    beta: f64,
    out_nngp: Option<&Bound<'_, PyAny>>,
    out_ntk: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let activation = Activation::from_name(activation, param).map_err(to_py)?;
    let kernel = LimitKernel::new(depth, activation, beta).map_err(to_py)?;
    if let Ok(x) = x1.downcast::<PyArray2<f64>>() {
        limit_kernel_typed(py, kernel, x, x2, out_nngp, out_ntk)
    } else if let Ok(x) = x1.downcast::<PyArray2<f32>>() {
        limit_kernel_typed(py, kernel, x, x2, out_nngp, out_ntk)
    } else {
        Err(PyTypeError::new_err(
            "x1 must be a 2-D float32 or float64 array",
        ))
    }
}

/// Sets the number of threads of the computation pool (≥ 1).
#[pyfunction]
fn set_num_threads(threads: usize) -> PyResult<()> {
    tiles::set_num_threads(threads).map_err(to_py)
}

/// The number of threads of the computation pool.
#[pyfunction]
fn get_num_threads() -> PyResult<usize> {
    tiles::num_threads().map_err(to_py)
}

#[pymodule]
fn _ntkfast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(limit_kernel, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add("TILE", tiles::TILE)?;
    m.add("ACTIVATIONS", Activation::NAMES.to_vec())?;
    Ok(())
}
