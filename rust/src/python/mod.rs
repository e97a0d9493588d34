//! Python bindings: argument conversion, GIL release, Ctrl-C, and errors.
//!
//! Inputs arrive validated and C-contiguous from the Python layer, which also
//! allocates the outputs (so an impossible allocation is a MemoryError before
//! any work). Here the arrays are borrowed without copies, the GIL is released
//! for the computation, and the calling thread polls for signals while the
//! pool works.

use crate::empirical::{empirical_ntk, Contraction, Features};
use crate::error::Error;
use crate::gram::Real;
use crate::hermite::Pointwise;
use crate::limit::{LimitKernel, Outputs, Report, Samples, Sigma};
use crate::network::{Layer, LayerMut, Network, Pass, Sink};
use crate::Activation;
use crate::{init, tiles};
use numpy::{
    Element, PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadwriteArray2, PyReadwriteArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

fn to_py(err: Error) -> PyErr {
    match err {
        Error::Invalid(msg) => PyValueError::new_err(msg),
        Error::Memory(msg) => PyMemoryError::new_err(msg),
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
    kernel: LimitKernel<'_>,
    x1: &Bound<'_, PyArray2<T>>,
    x2: Option<&Bound<'_, PyAny>>,
    out_nngp: Option<&Bound<'_, PyAny>>,
    out_ntk: Option<&Bound<'_, PyAny>>,
) -> PyResult<crate::Result<Report>> {
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
    run_interruptible(py, |cancel| kernel.compute(s1, s2, out, cancel))
}

/// A user activation: a Python callable x -> (σ(x), σ'(x)) on 1-D float64
/// arrays, called with the GIL taken back. The first Python error is kept so
/// that the caller sees it rather than a generic message.
struct PyActivation {
    evaluate: PyObject,
    error: Mutex<Option<PyErr>>,
}

impl PyActivation {
    fn new(evaluate: PyObject) -> Self {
        PyActivation {
            evaluate,
            error: Mutex::new(None),
        }
    }

    /// The first Python error a call raised, if any.
    fn into_error(self) -> Option<PyErr> {
        self.error.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    fn call(&self, x: &[f64], sigma: &mut [f64], dsigma: &mut [f64]) -> PyResult<()> {
        Python::with_gil(|py| {
            let result = self.evaluate.call1(py, (PyArray1::from_slice(py, x),))?;
            let (s, d): (PyReadonlyArray1<'_, f64>, PyReadonlyArray1<'_, f64>) =
                result.extract(py).map_err(|_| {
                    PyTypeError::new_err("the activation must return two float64 arrays")
                })?;
            for (name, values, dst) in [("σ", &s, sigma), ("σ'", &d, dsigma)] {
                let values = values.as_array();
                if values.len() != dst.len() {
                    return Err(PyValueError::new_err(format!(
                        "the activation returned {} values of {name} for {} points",
                        values.len(),
                        dst.len()
                    )));
                }
                for (o, v) in dst.iter_mut().zip(values.iter()) {
                    *o = *v;
                }
            }
            Ok(())
        })
    }
}

impl Pointwise for PyActivation {
    fn eval(&self, x: &[f64], sigma: &mut [f64], dsigma: &mut [f64]) -> crate::Result<()> {
        self.call(x, sigma, dsigma).map_err(|err| {
            let msg = err.to_string();
            *self.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
            Error::Invalid(msg)
        })
    }
}

/// The user's activation if given, else the named built-in one.
fn nonlinearity<'a>(
    user: &'a Option<PyActivation>,
    activation: &str,
    param: f64,
) -> PyResult<Sigma<'a>> {
    Ok(match user {
        Some(user) => Sigma::Custom(user),
        None => Sigma::Builtin(Activation::from_name(activation, param).map_err(to_py)?),
    })
}

/// limit_kernel(x1, x2, depth, activation, param, beta, out_nngp, out_ntk, custom=None)
///
/// Writes Σ⁽ᴸ⁾ and Θ∞⁽ᴸ⁾ into the given C-contiguous arrays (either may be None).
/// `custom`, when given, is a callable x -> (σ(x), σ'(x)) used instead of the
/// named activation. Returns (estimated relative error of the Hermite series,
/// most terms used); (0.0, 0) for closed forms.
#[pyfunction]
#[pyo3(signature = (x1, x2, depth, activation, param, beta, out_nngp, out_ntk, custom=None))]
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
    custom: Option<PyObject>,
) -> PyResult<(f64, usize)> {
    let user = custom.map(PyActivation::new);
    let sigma = nonlinearity(&user, activation, param)?;
    let kernel = LimitKernel::new(depth, sigma, beta).map_err(to_py)?;
    let result = if let Ok(x) = x1.downcast::<PyArray2<f64>>() {
        limit_kernel_typed(py, kernel, x, x2, out_nngp, out_ntk)?
    } else if let Ok(x) = x1.downcast::<PyArray2<f32>>() {
        limit_kernel_typed(py, kernel, x, x2, out_nngp, out_ntk)?
    } else {
        return Err(PyTypeError::new_err(
            "x1 must be a 2-D float32 or float64 array",
        ));
    };
    if let Some(err) = user.and_then(PyActivation::into_error) {
        return Err(err);
    }
    let report = result.map_err(to_py)?;
    Ok((report.series_error, report.series_terms))
}

type ArrayPair<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

/// limit_kernel_diagonal(x, depth, activation, param, beta, custom=None)
///
/// (Σ⁽ᴸ⁾(x, x), Θ∞⁽ᴸ⁾(x, x)) for every row of x, as two float64 arrays, in
/// O(N·(n₀ + L)): the per-sample recursion alone.
#[pyfunction]
#[pyo3(signature = (x, depth, activation, param, beta, custom=None))]
fn limit_kernel_diagonal<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    depth: usize,
    activation: &str,
    param: f64,
    beta: f64,
    custom: Option<PyObject>,
) -> PyResult<ArrayPair<'py>> {
    let user = custom.map(PyActivation::new);
    let sigma = nonlinearity(&user, activation, param)?;
    let kernel = LimitKernel::new(depth, sigma, beta).map_err(to_py)?;
    fn run<T: Real + Element>(
        py: Python<'_>,
        kernel: LimitKernel<'_>,
        x: &Bound<'_, PyArray2<T>>,
    ) -> PyResult<crate::Result<(Vec<f64>, Vec<f64>)>> {
        let x = x.try_readonly().map_err(|e| {
            PyValueError::new_err(format!("x cannot be read (written by another call?): {e}"))
        })?;
        let s = samples(&x, "x")?;
        run_interruptible(py, |cancel| {
            let d = kernel.diagonal_until(s, &[], cancel)?;
            d.check_range("x", T::MAX_VARIANCE)?;
            Ok((d.nngp().to_vec(), d.ntk))
        })
    }
    let result = if let Ok(x) = x.downcast::<PyArray2<f64>>() {
        run(py, kernel, x)?
    } else if let Ok(x) = x.downcast::<PyArray2<f32>>() {
        run(py, kernel, x)?
    } else {
        return Err(PyTypeError::new_err(
            "x must be a 2-D float32 or float64 array",
        ));
    };
    if let Some(err) = user.and_then(PyActivation::into_error) {
        return Err(err);
    }
    let (nngp, ntk) = result.map_err(to_py)?;
    Ok((PyArray1::from_vec(py, nngp), PyArray1::from_vec(py, ntk)))
}

/// The architecture as passed from Python: (widths, activation name, activation parameter, beta).
type NetSpec = (Vec<usize>, String, f64, f64);

fn network(spec: NetSpec) -> PyResult<Network> {
    let (widths, activation, param, beta) = spec;
    let activation = Activation::from_name(&activation, param).map_err(to_py)?;
    Network::new(widths, activation, beta).map_err(to_py)
}

fn readonly<'py, T: Element>(
    x: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    x.downcast::<PyArray2<T>>()
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "{name} must be a 2-D array of the parameters' dtype"
            ))
        })?
        .try_readonly()
        .map_err(|e| {
            PyValueError::new_err(format!(
                "{name} cannot be read (written by another call?): {e}"
            ))
        })
}

fn slice<'a, T: Element>(x: &'a PyReadonlyArray2<'_, T>, name: &str) -> PyResult<&'a [T]> {
    x.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// The parameters borrowed from Python lists of W (2-D) and b (1-D) arrays.
struct Params<'py, T: Element> {
    weights: Vec<PyReadonlyArray2<'py, T>>,
    biases: Vec<PyReadonlyArray1<'py, T>>,
}

impl<'py, T: Element> Params<'py, T> {
    fn borrow(weights: &[Bound<'py, PyAny>], biases: &[Bound<'py, PyAny>]) -> PyResult<Self> {
        let weights = weights
            .iter()
            .enumerate()
            .map(|(l, w)| readonly::<T>(w, &format!("W[{l}]")))
            .collect::<PyResult<Vec<_>>>()?;
        let biases = biases
            .iter()
            .enumerate()
            .map(|(l, b)| {
                b.downcast::<PyArray1<T>>()
                    .map_err(|_| {
                        PyTypeError::new_err(format!(
                            "b[{l}] must be a 1-D array of the parameters' dtype"
                        ))
                    })?
                    .try_readonly()
                    .map_err(|e| PyValueError::new_err(format!("b[{l}] cannot be read: {e}")))
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Params { weights, biases })
    }

    fn layers(&self) -> PyResult<Vec<Layer<'_, T>>> {
        self.weights
            .iter()
            .zip(&self.biases)
            .enumerate()
            .map(|(l, (w, b))| {
                Ok(Layer {
                    weight: slice(w, &format!("W[{l}]"))?,
                    bias: b.as_slice().map_err(|_| {
                        PyValueError::new_err(format!("b[{l}] must be C-contiguous"))
                    })?,
                })
            })
            .collect()
    }
}

fn readwrite<'py, T: Element>(
    out: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<PyReadwriteArrayDyn<'py, T>> {
    out.downcast::<PyArrayDyn<T>>()
        .map_err(|_| PyTypeError::new_err(format!("{name} has the wrong dtype")))?
        .try_readwrite()
        .map_err(|e| PyValueError::new_err(format!("{name} cannot be written: {e}")))
}

fn slice_mut<'a, T: Element>(
    out: &'a mut PyReadwriteArrayDyn<'_, T>,
    name: &str,
) -> PyResult<&'a mut [T]> {
    out.as_slice_mut()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// Which finite-width computation to run, with its extra arrays.
enum Task<'a, 'py> {
    Apply {
        out: &'a Bound<'py, PyAny>,
    },
    Ntk {
        x2: Option<&'a Bound<'py, PyAny>>,
        contraction: Contraction,
        out: &'a Bound<'py, PyAny>,
    },
    Jacobian {
        out: &'a Bound<'py, PyAny>,
    },
    Vjp {
        d: &'a Bound<'py, PyAny>,
        out_weights: &'a [Bound<'py, PyAny>],
        out_biases: &'a [Bound<'py, PyAny>],
    },
}

fn run_network<'py, T: Real + Element>(
    py: Python<'py>,
    net: &Network,
    weights: &[Bound<'py, PyAny>],
    biases: &[Bound<'py, PyAny>],
    x: &Bound<'py, PyAny>,
    task: Task<'_, 'py>,
) -> PyResult<()> {
    let params = Params::<T>::borrow(weights, biases)?;
    let layers = params.layers()?;
    let x = readonly::<T>(x, "x")?;
    let s1 = samples(&x, "x")?;
    match task {
        Task::Apply { out } => {
            let mut out = readwrite::<T>(out, "out")?;
            let out = slice_mut(&mut out, "out")?;
            run_interruptible(py, |cancel| {
                let fwd = net.forward(&layers, s1, Pass::Output, cancel)?;
                if out.len() != fwd.output.len() {
                    return Err(Error::Invalid("out has the wrong size".into()));
                }
                out.copy_from_slice(&fwd.output);
                Ok(())
            })?
            .map_err(to_py)
        }
        Task::Ntk {
            x2,
            contraction,
            out,
        } => {
            let x2 = x2.map(|x| readonly::<T>(x, "x2")).transpose()?;
            let samples2 = x2.as_ref().map(|x| samples(x, "x2")).transpose()?;
            let mut out = readwrite::<T>(out, "out")?;
            let out = slice_mut(&mut out, "out")?;
            run_interruptible(py, |cancel| {
                let fwd1 = net.forward(&layers, s1, Pass::Backprop, cancel)?;
                let cot1 = net.cotangents(&layers, &fwd1, cancel)?;
                let f1 = Features {
                    forward: &fwd1,
                    cotangents: &cot1,
                };
                match samples2 {
                    None => empirical_ntk(net, &f1, None, contraction, out, cancel),
                    Some(s2) => {
                        let fwd2 = net.forward(&layers, s2, Pass::Backprop, cancel)?;
                        let cot2 = net.cotangents(&layers, &fwd2, cancel)?;
                        let f2 = Features {
                            forward: &fwd2,
                            cotangents: &cot2,
                        };
                        empirical_ntk(net, &f1, Some(&f2), contraction, out, cancel)
                    }
                }
            })?
            .map_err(to_py)
        }
        Task::Jacobian { out } => {
            let mut out = readwrite::<T>(out, "out")?;
            let out = slice_mut(&mut out, "out")?;
            run_interruptible(py, |cancel| {
                let fwd = net.forward(&layers, s1, Pass::Backprop, cancel)?;
                let cot = net.cotangents(&layers, &fwd, cancel)?;
                net.jacobian(&fwd, &cot, out, cancel)
            })?
            .map_err(to_py)
        }
        Task::Vjp {
            d,
            out_weights,
            out_biases,
        } => {
            let d = readonly::<T>(d, "d")?;
            let d = slice(&d, "d")?;
            let mut gw = readwrite_all::<T>(out_weights, "gradient")?;
            let mut gb = readwrite_all::<T>(out_biases, "gradient")?;
            let mut grads = layers_mut(&mut gw, &mut gb)?;
            run_interruptible(py, |cancel| {
                let fwd = net.forward(&layers, s1, Pass::Backprop, cancel)?;
                let sink = Sink::Store {
                    params: &layers,
                    grads: &mut grads,
                };
                net.vjp(&fwd, d, sink, cancel)
            })?
            .map_err(to_py)
        }
    }
}

fn readwrite_all<'py, T: Element>(
    arrays: &[Bound<'py, PyAny>],
    name: &str,
) -> PyResult<Vec<PyReadwriteArrayDyn<'py, T>>> {
    arrays.iter().map(|o| readwrite::<T>(o, name)).collect()
}

fn layers_mut<'a, T: Element>(
    weights: &'a mut [PyReadwriteArrayDyn<'_, T>],
    biases: &'a mut [PyReadwriteArrayDyn<'_, T>],
) -> PyResult<Vec<LayerMut<'a, T>>> {
    weights
        .iter_mut()
        .zip(biases.iter_mut())
        .map(|(w, b)| {
            Ok(LayerMut {
                weight: slice_mut(w, "W")?,
                bias: slice_mut(b, "b")?,
            })
        })
        .collect()
}

/// One training step in place: forward pass (f into out_f), d = direction(),
/// θ ← θ + lr · (1/N) Σ_i J(x_i)ᵀ d_i.
#[allow(clippy::too_many_arguments)]
fn step_typed<'py, T: Real + Element>(
    py: Python<'py>,
    net: &Network,
    weights: &[Bound<'py, PyAny>],
    biases: &[Bound<'py, PyAny>],
    x: &Bound<'py, PyAny>,
    direction: &Bound<'py, PyAny>,
    out_f: &Bound<'py, PyAny>,
    lr: f64,
) -> PyResult<()> {
    let mut w = readwrite_all::<T>(weights, "W")?;
    let mut b = readwrite_all::<T>(biases, "b")?;
    let mut params = layers_mut(&mut w, &mut b)?;
    let x = readonly::<T>(x, "x")?;
    let s1 = samples(&x, "x")?;
    let mut out_f = readwrite::<T>(out_f, "out f")?;
    let out_f = slice_mut(&mut out_f, "out f")?;
    let callback = direction.clone().unbind();
    run_interruptible(py, |cancel| -> PyResult<()> {
        let fwd = {
            let layers: Vec<Layer<'_, T>> = params
                .iter()
                .map(|p| Layer {
                    weight: &*p.weight,
                    bias: &*p.bias,
                })
                .collect();
            net.forward(&layers, s1, Pass::Training, cancel)
                .map_err(to_py)?
        };
        if out_f.len() != fwd.output.len() {
            return Err(PyValueError::new_err("out f has the wrong size"));
        }
        out_f.copy_from_slice(&fwd.output);
        // Python computes the direction from f (out_f) with the GIL held.
        let d: Vec<T> = Python::with_gil(|py| -> PyResult<Vec<T>> {
            let d = callback.bind(py).call0()?;
            let d = d.downcast::<PyArray2<T>>().map_err(|_| {
                PyTypeError::new_err("the direction must be a 2-D array of the parameters' dtype")
            })?;
            let d = d
                .try_readonly()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            Ok(slice(&d, "the direction")?.to_vec())
        })?;
        let sink = Sink::Update {
            params: &mut params,
            lr,
        };
        net.vjp(&fwd, &d, sink, cancel).map_err(to_py)
    })?
}

fn dispatch<'py>(
    py: Python<'py>,
    spec: NetSpec,
    weights: Vec<Bound<'py, PyAny>>,
    biases: Vec<Bound<'py, PyAny>>,
    x: &Bound<'py, PyAny>,
    task: Task<'_, 'py>,
) -> PyResult<()> {
    let net = network(spec)?;
    if x.downcast::<PyArray2<f64>>().is_ok() {
        run_network::<f64>(py, &net, &weights, &biases, x, task)
    } else if x.downcast::<PyArray2<f32>>().is_ok() {
        run_network::<f32>(py, &net, &weights, &biases, x, task)
    } else {
        Err(PyTypeError::new_err(
            "x must be a 2-D float32 or float64 array",
        ))
    }
}

/// mlp_apply(net, weights, biases, x, out): f_θ(x) into out (N, n_L).
#[pyfunction]
fn mlp_apply<'py>(
    py: Python<'py>,
    net: NetSpec,
    weights: Vec<Bound<'py, PyAny>>,
    biases: Vec<Bound<'py, PyAny>>,
    x: &Bound<'py, PyAny>,
    out: &Bound<'py, PyAny>,
) -> PyResult<()> {
    dispatch(py, net, weights, biases, x, Task::Apply { out })
}

/// mlp_ntk(net, weights, biases, x1, x2, output, out): the empirical NTK into out.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn mlp_ntk<'py>(
    py: Python<'py>,
    net: NetSpec,
    weights: Vec<Bound<'py, PyAny>>,
    biases: Vec<Bound<'py, PyAny>>,
    x1: &Bound<'py, PyAny>,
    x2: Option<&Bound<'py, PyAny>>,
    output: &str,
    out: &Bound<'py, PyAny>,
) -> PyResult<()> {
    let contraction = Contraction::from_name(output).map_err(to_py)?;
    dispatch(
        py,
        net,
        weights,
        biases,
        x1,
        Task::Ntk {
            x2,
            contraction,
            out,
        },
    )
}

/// mlp_jacobian(net, weights, biases, x, out): ∂f/∂θ into out (N, n_L, P).
#[pyfunction]
fn mlp_jacobian<'py>(
    py: Python<'py>,
    net: NetSpec,
    weights: Vec<Bound<'py, PyAny>>,
    biases: Vec<Bound<'py, PyAny>>,
    x: &Bound<'py, PyAny>,
    out: &Bound<'py, PyAny>,
) -> PyResult<()> {
    dispatch(py, net, weights, biases, x, Task::Jacobian { out })
}

/// mlp_vjp(net, weights, biases, x, d, out_weights, out_biases): (1/N) Σ_i J(x_i)ᵀ d_i.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn mlp_vjp<'py>(
    py: Python<'py>,
    net: NetSpec,
    weights: Vec<Bound<'py, PyAny>>,
    biases: Vec<Bound<'py, PyAny>>,
    x: &Bound<'py, PyAny>,
    d: &Bound<'py, PyAny>,
    out_weights: Vec<Bound<'py, PyAny>>,
    out_biases: Vec<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let task = Task::Vjp {
        d,
        out_weights: &out_weights,
        out_biases: &out_biases,
    };
    dispatch(py, net, weights, biases, x, task)
}

/// mlp_step(net, weights, biases, x, direction, out_f, lr): one training step in place. A
/// forward pass writes f_θ(x) into out_f; then `direction()` (called with the GIL, after
/// out_f is written) returns d (N, n_L), and θ ← θ + lr · (1/N) Σ_i J(x_i)ᵀ d_i is applied to
/// the given W and b arrays directly.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn mlp_step<'py>(
    py: Python<'py>,
    net: NetSpec,
    weights: Vec<Bound<'py, PyAny>>,
    biases: Vec<Bound<'py, PyAny>>,
    x: &Bound<'py, PyAny>,
    direction: &Bound<'py, PyAny>,
    out_f: &Bound<'py, PyAny>,
    lr: f64,
) -> PyResult<()> {
    let net = network(net)?;
    if !lr.is_finite() {
        return Err(PyValueError::new_err("lr must be finite"));
    }
    if x.downcast::<PyArray2<f64>>().is_ok() {
        step_typed::<f64>(py, &net, &weights, &biases, x, direction, out_f, lr)
    } else if x.downcast::<PyArray2<f32>>().is_ok() {
        step_typed::<f32>(py, &net, &weights, &biases, x, direction, out_f, lr)
    } else {
        Err(PyTypeError::new_err(
            "x must be a 2-D float32 or float64 array",
        ))
    }
}

/// init_normal(seed, stream, out): standard normal stream `stream` of `seed` into the
/// float64 array out (see rust/src/init.rs for the generator).
#[pyfunction]
fn init_normal(py: Python<'_>, seed: u64, stream: u64, out: &Bound<'_, PyAny>) -> PyResult<()> {
    let mut out = readwrite::<f64>(out, "out")?;
    let out = slice_mut(&mut out, "out")?;
    py.allow_threads(|| init::standard_normal(seed, stream, out))
        .map_err(to_py)
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
    m.add_function(wrap_pyfunction!(limit_kernel_diagonal, m)?)?;
    m.add_function(wrap_pyfunction!(mlp_apply, m)?)?;
    m.add_function(wrap_pyfunction!(mlp_ntk, m)?)?;
    m.add_function(wrap_pyfunction!(mlp_jacobian, m)?)?;
    m.add_function(wrap_pyfunction!(mlp_vjp, m)?)?;
    m.add_function(wrap_pyfunction!(mlp_step, m)?)?;
    m.add_function(wrap_pyfunction!(init_normal, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add("TILE", tiles::TILE)?;
    m.add("TILE_F32", tiles::TILE_F32)?;
    m.add("PANEL_TILES", tiles::PANEL_TILES)?;
    m.add("ACTIVATIONS", Activation::NAMES.to_vec())?;
    Ok(())
}
