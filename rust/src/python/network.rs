//! Finite-width networks: `Network(widths, activation, param, beta)` holds the
//! parsed architecture; its methods run the forward pass, the empirical NTK,
//! the Jacobian, vector–Jacobian products and training steps on parameters
//! passed as lists of W and b arrays.

use super::arrays::{
    self, layers_mut, readonly, readwrite, readwrite_all, samples, slice, slice_mut, Generic,
    Params,
};
use super::runtime::run_interruptible;
use super::to_py;
use crate::error::Error;
use crate::training::Cost;
use crate::{empirical_ntk, Activation, Contraction, Features, Network, Pass, Real, Sink};
use numpy::{Element, PyArray2, PyArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Network(widths, activation, param, beta)
///
/// A fully-connected network n_0 … n_L with a built-in activation (`param`
/// is its parameter, e.g. the leaky ReLU slope) and bias scale β.
#[pyclass(frozen, name = "Network", module = "ntkfast._ntkfast")]
pub(super) struct PyNetwork {
    net: Network,
}

impl PyNetwork {
    /// Runs `task` in the dtype of `x`.
    fn call<'py>(
        &self,
        py: Python<'py>,
        weights: &[Bound<'py, PyAny>],
        biases: &[Bound<'py, PyAny>],
        x: &Bound<'py, PyAny>,
        task: Task<'_, 'py>,
    ) -> PyResult<()> {
        let call = Call {
            py,
            net: &self.net,
            weights,
            biases,
            x,
            task,
        };
        arrays::dispatch(x, "x", call)
    }
}

#[pymethods]
impl PyNetwork {
    #[new]
    fn new(widths: Vec<usize>, activation: &str, param: f64, beta: f64) -> PyResult<Self> {
        let activation = Activation::from_name(activation, param).map_err(to_py)?;
        let net = Network::new(widths, activation, beta).map_err(to_py)?;
        Ok(PyNetwork { net })
    }

    /// apply(weights, biases, x, out): f_θ(x) into out (N, n_L).
    fn apply<'py>(
        &self,
        py: Python<'py>,
        weights: Vec<Bound<'py, PyAny>>,
        biases: Vec<Bound<'py, PyAny>>,
        x: &Bound<'py, PyAny>,
        out: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        self.call(py, &weights, &biases, x, Task::Apply { out })
    }

    /// ntk(weights, biases, x1, x2, output, out): the empirical NTK into out
    /// (output "trace", "diagonal" or "full"; x2 None for x2 = x1).
    #[allow(clippy::too_many_arguments)]
    fn ntk<'py>(
        &self,
        py: Python<'py>,
        weights: Vec<Bound<'py, PyAny>>,
        biases: Vec<Bound<'py, PyAny>>,
        x1: &Bound<'py, PyAny>,
        x2: Option<&Bound<'py, PyAny>>,
        output: &str,
        out: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let contraction = Contraction::from_name(output).map_err(to_py)?;
        let task = Task::Ntk {
            x2,
            contraction,
            out,
        };
        self.call(py, &weights, &biases, x1, task)
    }

    /// jacobian(weights, biases, x, out): ∂f/∂θ into out (N, n_L, P).
    fn jacobian<'py>(
        &self,
        py: Python<'py>,
        weights: Vec<Bound<'py, PyAny>>,
        biases: Vec<Bound<'py, PyAny>>,
        x: &Bound<'py, PyAny>,
        out: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        self.call(py, &weights, &biases, x, Task::Jacobian { out })
    }

    /// vjp(weights, biases, x, d, out_weights, out_biases): (1/N) Σ_i J(x_i)ᵀ d_i.
    #[allow(clippy::too_many_arguments)]
    fn vjp<'py>(
        &self,
        py: Python<'py>,
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
        self.call(py, &weights, &biases, x, task)
    }

    /// step(weights, biases, x, y, out_f, lr, direction=None): one step of gradient
    /// descent in place. The forward pass writes f_θ(x) (the outputs before the update)
    /// into out_f; the direction is d = y − f (the MSE cost ½‖f − y‖²_{p_in}) when `y`
    /// (float64, (N, n_L)) is given, else `direction()`, called with the GIL after out_f is
    /// written, returns d (N, n_L) in the parameters' dtype; then
    /// θ ← θ + lr · (1/N) Σ_i J(x_i)ᵀ d_i is added into the given W and b arrays.
    #[pyo3(signature = (weights, biases, x, y, out_f, lr, direction=None))]
    #[allow(clippy::too_many_arguments)]
    fn step<'py>(
        &self,
        py: Python<'py>,
        weights: Vec<Bound<'py, PyAny>>,
        biases: Vec<Bound<'py, PyAny>>,
        x: &Bound<'py, PyAny>,
        y: Option<&Bound<'py, PyAny>>,
        out_f: &Bound<'py, PyAny>,
        lr: f64,
        direction: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        if !lr.is_finite() {
            return Err(PyValueError::new_err("lr must be finite"));
        }
        let step = Step {
            py,
            net: &self.net,
            weights: &weights,
            biases: &biases,
            x,
            y,
            direction,
            out_f,
            lr,
        };
        arrays::dispatch(x, "x", step)
    }

    /// working_memory(rows, itemsize, cotangents) -> bytes of the per-input
    /// intermediates of a pass over `rows` inputs (see `Network::working_memory`).
    fn working_memory(&self, rows: usize, itemsize: usize, cotangents: bool) -> usize {
        self.net.working_memory(rows, itemsize, cotangents)
    }
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

/// One of the computations of [`Task`] on a network's parameters and inputs.
struct Call<'a, 'py> {
    py: Python<'py>,
    net: &'a Network,
    weights: &'a [Bound<'py, PyAny>],
    biases: &'a [Bound<'py, PyAny>],
    x: &'a Bound<'py, PyAny>,
    task: Task<'a, 'py>,
}

impl Generic for Call<'_, '_> {
    type Output = ();

    fn run<T: Real + Element>(self) -> PyResult<()> {
        let Call {
            py,
            net,
            weights,
            biases,
            x,
            task,
        } = self;
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
}

/// [`PyNetwork::step`] in one dtype.
struct Step<'a, 'py> {
    py: Python<'py>,
    net: &'a Network,
    weights: &'a [Bound<'py, PyAny>],
    biases: &'a [Bound<'py, PyAny>],
    x: &'a Bound<'py, PyAny>,
    y: Option<&'a Bound<'py, PyAny>>,
    direction: Option<&'a Bound<'py, PyAny>>,
    out_f: &'a Bound<'py, PyAny>,
    lr: f64,
}

impl Generic for Step<'_, '_> {
    type Output = ();

    fn run<T: Real + Element>(self) -> PyResult<()> {
        let mut w = readwrite_all::<T>(self.weights, "W")?;
        let mut b = readwrite_all::<T>(self.biases, "b")?;
        let mut params = layers_mut(&mut w, &mut b)?;
        let x = readonly::<T>(self.x, "x")?;
        let s1 = samples(&x, "x")?;
        let y = self
            .y
            .map(|y| arrays::readonly_as::<f64>(y, "y", "float64"))
            .transpose()?;
        let y = y.as_ref().map(|y| slice(y, "y")).transpose()?;
        let mut out_f = readwrite::<T>(self.out_f, "out f")?;
        let out_f = slice_mut(&mut out_f, "out f")?;
        let (net, lr) = (self.net, self.lr);
        let callback = self.direction.map(|d| d.clone().unbind());
        run_interruptible(self.py, |cancel| -> PyResult<()> {
            let direction = |f: &[T]| -> PyResult<Vec<T>> {
                match (y, &callback) {
                    (Some(y), _) => Ok(Cost::Mse { y }.direction(f)?),
                    (None, Some(callback)) => Python::with_gil(|py| {
                        let d = callback.bind(py).call0()?;
                        let d = d.downcast::<PyArray2<T>>().map_err(|_| {
                            PyTypeError::new_err(
                                "the direction must be a 2-D array of the parameters' dtype",
                            )
                        })?;
                        let d = d
                            .try_readonly()
                            .map_err(|e| PyValueError::new_err(e.to_string()))?;
                        Ok(slice(&d, "the direction")?.to_vec())
                    }),
                    (None, None) => Err(PyValueError::new_err("step needs y or a direction")),
                }
            };
            net.step(&mut params, s1, lr, out_f, direction, cancel)
        })?
    }
}
