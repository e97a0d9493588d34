//! The infinite-width kernels: `LimitKernel(depth, activation, param, beta,
//! custom=None, pieces=None, tol=inf)` holds the parsed configuration;
//! `compute` and `diagonal` run it.

use super::arrays::{self, contiguous_mut, samples, writable, Generic};
use super::runtime::run_interruptible;
use super::to_py;
use crate::error::Error;
use crate::{
    Activation, LimitKernel, Outputs, Pieces, Pointwise, Prepared, Real, Report, Sigma, Which,
};
use numpy::{
    Element, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::sync::Mutex;

/// LimitKernel(depth, activation, param, beta, custom=None, pieces=None, tol=inf)
///
/// Σ⁽ᴸ⁾ and Θ∞⁽ᴸ⁾ of a depth-L network with the named activation (`param` is
/// its parameter, e.g. the leaky ReLU slope), or, when `custom` is given, a
/// callable x -> (σ(x), σ'(x)) on 1-D float64 arrays (through its Hermite
/// series, or when they miss `tol`, through quadrature over a table of σ),
/// or, when `pieces` is given, the piecewise-linear σ (breaks, slopes,
/// intercepts).
#[pyclass(frozen, name = "LimitKernel", module = "ntkfast._ntkfast")]
pub(super) struct PyLimitKernel {
    depth: usize,
    activation: Option<Activation>,
    custom: Option<PyObject>,
    pieces: Option<Pieces>,
    tol: f64,
    beta: f64,
}

/// PreparedKernel: what `LimitKernel.prepare(x1, x2)` made (the diagonal
/// recursions, a kinked σ's correlation tables), for products over the same
/// samples with the same kernel.
#[pyclass(frozen, name = "PreparedKernel", module = "ntkfast._ntkfast")]
pub(super) struct PyPrepared {
    inner: Prepared,
}

#[pymethods]
impl PyPrepared {
    /// Whether σ is integrated by quadrature (a kinked σ): then preparing is
    /// most of a product's cost at moderate N.
    #[getter]
    fn integrates(&self) -> bool {
        self.inner.integrates()
    }
}

impl PyLimitKernel {
    /// One of the products (`mode`) of the named kernel between the rows of
    /// x1 and x2, in the dtype of x1.
    fn products(
        &self,
        py: Python<'_>,
        (x1, x2): (&Bound<'_, PyAny>, Option<&Bound<'_, PyAny>>),
        kernel: &str,
        v: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        mode: Mode<'_, '_>,
    ) -> PyResult<(f64, usize)> {
        let which = Which::from_name(kernel).map_err(to_py)?;
        let report = self.with_kernel(py, |limit| {
            let limit = match &mode {
                Mode::Plain(Some(p)) => limit.with_prepared(&p.inner),
                _ => limit,
            };
            let call = Product {
                py,
                kernel: limit,
                which,
                x1,
                x2,
                v,
                out,
                mode,
            };
            arrays::dispatch(x1, "x1", call)
        })?;
        Ok((report.series_error, report.series_terms))
    }

    /// Runs `job` with the core's kernel; a Python error raised by the user's
    /// activation takes precedence over the core's error it caused.
    fn with_kernel<R>(
        &self,
        py: Python<'_>,
        job: impl FnOnce(LimitKernel<'_>) -> PyResult<crate::Result<R>>,
    ) -> PyResult<R> {
        let user = self
            .custom
            .as_ref()
            .map(|c| PyActivation::new(c.clone_ref(py)));
        let sigma = match (&user, &self.pieces, self.activation) {
            (_, Some(pieces), _) => Sigma::Pieces(pieces),
            (Some(user), None, _) => Sigma::Custom(user),
            (None, None, Some(a)) => Sigma::Builtin(a),
            (None, None, None) => unreachable!("made with an activation, callable or pieces"),
        };
        let kernel = LimitKernel::new(self.depth, sigma, self.beta)
            .map_err(to_py)?
            .with_fallback(self.tol);
        let result = job(kernel)?;
        if let Some(err) = user.and_then(PyActivation::into_error) {
            return Err(err);
        }
        result.map_err(to_py)
    }
}

#[pymethods]
impl PyLimitKernel {
    #[new]
    #[pyo3(signature = (depth, activation, param, beta, custom=None, pieces=None, tol=f64::INFINITY))]
    fn new(
        depth: usize,
        activation: &str,
        param: f64,
        beta: f64,
        custom: Option<PyObject>,
        pieces: Option<(Vec<f64>, Vec<f64>, Vec<f64>)>,
        tol: f64,
    ) -> PyResult<Self> {
        let pieces = pieces
            .map(|(breaks, slopes, intercepts)| Pieces::new(&breaks, &slopes, &intercepts))
            .transpose()
            .map_err(to_py)?;
        let activation = match (&custom, &pieces) {
            (None, None) => Some(Activation::from_name(activation, param).map_err(to_py)?),
            _ => None,
        };
        // The checks of the core's constructor, once, here.
        LimitKernel::new(depth, activation.unwrap_or(Activation::Identity), beta).map_err(to_py)?;
        Ok(PyLimitKernel {
            depth,
            activation,
            custom,
            pieces,
            tol,
            beta,
        })
    }

    /// compute(x1, x2, out_nngp, out_ntk) -> (series error, series terms)
    ///
    /// Writes Σ⁽ᴸ⁾ and Θ∞⁽ᴸ⁾ into the given C-contiguous arrays (either may be
    /// None); x2 None means x2 = x1 (one triangle). Returns the estimated
    /// relative error of the Hermite series and the most terms used; (0.0, 0)
    /// for closed forms.
    #[pyo3(signature = (x1, x2, out_nngp, out_ntk))]
    fn compute(
        &self,
        py: Python<'_>,
        x1: &Bound<'_, PyAny>,
        x2: Option<&Bound<'_, PyAny>>,
        out_nngp: Option<&Bound<'_, PyAny>>,
        out_ntk: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(f64, usize)> {
        let report = self.with_kernel(py, |kernel| {
            let call = Compute {
                py,
                kernel,
                x1,
                x2,
                out_nngp,
                out_ntk,
            };
            arrays::dispatch(x1, "x1", call)
        })?;
        Ok((report.series_error, report.series_terms))
    }

    /// diagonal(x) -> (Σ⁽ᴸ⁾(x, x), Θ∞⁽ᴸ⁾(x, x))
    ///
    /// Both as float64 arrays of one value per row of x, in O(N·(n₀ + L)):
    /// the per-sample recursion alone.
    fn diagonal<'py>(&self, py: Python<'py>, x: &Bound<'py, PyAny>) -> PyResult<ArrayPair<'py>> {
        let (nngp, ntk) = self.with_kernel(py, |kernel| {
            arrays::dispatch(x, "x", Diagonal { py, kernel, x })
        })?;
        Ok((PyArray1::from_vec(py, nngp), PyArray1::from_vec(py, ntk)))
    }

    /// product(x1, x2, kernel, v, out) -> (series error, series terms)
    ///
    /// out (N1, k) = K(x1, x2) · v (N2, k), both float64 and C-contiguous, with K
    /// the "nngp" or "ntk" kernel made tile by tile and never stored (x2 None:
    /// x2 = x1, each tile below the diagonal used twice). Same bits for any
    /// number of threads.
    #[pyo3(signature = (x1, x2, kernel, v, out, prepared=None))]
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        py: Python<'_>,
        x1: &Bound<'_, PyAny>,
        x2: Option<&Bound<'_, PyAny>>,
        kernel: &str,
        v: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        prepared: Option<PyRef<'_, PyPrepared>>,
    ) -> PyResult<(f64, usize)> {
        let mode = Mode::Plain(prepared.as_deref());
        self.products(py, (x1, x2), kernel, v, out, mode)
    }

    /// prepare(x1, x2) -> PreparedKernel
    ///
    /// The diagonal recursions of x1 and x2 (None: x2 = x1) and, for a kinked
    /// σ, its correlation tables: what every product over these samples
    /// starts from, made once for `product(..., prepared=)`. The samples must
    /// not change in between (a product over another number of samples is a
    /// ValueError).
    #[pyo3(signature = (x1, x2))]
    fn prepare(
        &self,
        py: Python<'_>,
        x1: &Bound<'_, PyAny>,
        x2: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyPrepared> {
        let inner = self.with_kernel(py, |kernel| {
            arrays::dispatch(x1, "x1", Prepare { py, kernel, x1, x2 })
        })?;
        Ok(PyPrepared { inner })
    }

    /// normal_product(x, c, kernel, v, out) -> (series error, series terms)
    ///
    /// out (M, k) = K(x, c)ᵀ K(x, c) · v (M, k), both float64 and C-contiguous,
    /// K(x, c) (N × M) made one row block at a time and never stored. Same
    /// bits for any number of threads.
    #[pyo3(signature = (x, c, kernel, v, out))]
    fn normal_product(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        c: &Bound<'_, PyAny>,
        kernel: &str,
        v: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
    ) -> PyResult<(f64, usize)> {
        self.products(py, (x, Some(c)), kernel, v, out, Mode::Normal)
    }

    /// product_pair(x1, x2, kernel, v, v_t, out, out_t) -> (series error, series terms)
    ///
    /// out (N1, k) = K(x1, x2) · v (N2, k) and out_t (N2, k) = K(x1, x2)ᵀ · v_t
    /// (N1, k), all float64 and C-contiguous, from each tile made once.
    #[pyo3(signature = (x1, x2, kernel, v, v_t, out, out_t))]
    #[allow(clippy::too_many_arguments)]
    fn product_pair(
        &self,
        py: Python<'_>,
        x1: &Bound<'_, PyAny>,
        x2: &Bound<'_, PyAny>,
        kernel: &str,
        v: &Bound<'_, PyAny>,
        v_t: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        out_t: &Bound<'_, PyAny>,
    ) -> PyResult<(f64, usize)> {
        self.products(py, (x1, Some(x2)), kernel, v, out, Mode::Pair(v_t, out_t))
    }

    /// normal_product_memory(rows, centres, k) -> bytes `normal_product`
    /// allocates besides v and out for N + M = rows, M = centres, k columns.
    fn normal_product_memory(&self, rows: usize, centres: usize, k: usize) -> PyResult<usize> {
        let threads = crate::pool::num_threads().map_err(to_py)?;
        Ok(LimitKernel::normal_product_memory(
            self.depth, rows, centres, k, threads,
        ))
    }

    /// product_memory(rows, k, symmetric) -> bytes `product` allocates besides v
    /// and out for N1 = rows and k columns.
    fn product_memory(&self, rows: usize, k: usize, symmetric: bool) -> PyResult<usize> {
        let threads = crate::pool::num_threads().map_err(to_py)?;
        Ok(LimitKernel::product_memory(
            self.depth, rows, k, symmetric, threads,
        ))
    }

    /// working_memory(rows) -> bytes the core allocates besides the outputs for
    /// a kernel of `rows` samples (see `LimitKernel::working_memory`).
    fn working_memory(&self, rows: usize) -> PyResult<usize> {
        let threads = crate::pool::num_threads().map_err(to_py)?;
        Ok(LimitKernel::working_memory(self.depth, rows, threads))
    }
}

type ArrayPair<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

/// x1 (of dtype T) and x2 (of x1's dtype) borrowed for reading.
fn inputs<'py, T: Element>(
    x1: &Bound<'py, PyAny>,
    x2: Option<&Bound<'py, PyAny>>,
) -> PyResult<(PyReadonlyArray2<'py, T>, Option<PyReadonlyArray2<'py, T>>)> {
    let x1 = arrays::readonly_as::<T>(x1, "x1", "float32 or float64")?;
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
    Ok((x1, x2))
}

/// [`PyLimitKernel::compute`] in one dtype.
struct Compute<'a, 'py> {
    py: Python<'py>,
    kernel: LimitKernel<'a>,
    x1: &'a Bound<'py, PyAny>,
    x2: Option<&'a Bound<'py, PyAny>>,
    out_nngp: Option<&'a Bound<'py, PyAny>>,
    out_ntk: Option<&'a Bound<'py, PyAny>>,
}

impl Generic for Compute<'_, '_> {
    type Output = crate::Result<Report>;

    fn run<T: Real + Element>(self) -> PyResult<Self::Output> {
        let (x1, x2) = inputs::<T>(self.x1, self.x2)?;
        let mut nngp = writable::<T>(self.out_nngp, "out nngp")?;
        let mut ntk = writable::<T>(self.out_ntk, "out ntk")?;
        let s1 = samples(&x1, "x1")?;
        let s2 = x2.as_ref().map(|x| samples(x, "x2")).transpose()?;
        let out = Outputs {
            nngp: contiguous_mut(&mut nngp, "out nngp")?,
            ntk: contiguous_mut(&mut ntk, "out ntk")?,
        };
        let kernel = self.kernel;
        run_interruptible(self.py, |cancel| kernel.compute(s1, s2, out, cancel))
    }
}

/// Which of the products [`Product`] makes.
enum Mode<'a, 'py> {
    /// K(x1, x2) · v, from data prepared for x1 and x2 when given.
    Plain(Option<&'a PyPrepared>),
    /// K(x1, x2)ᵀ K(x1, x2) · v.
    Normal,
    /// K(x1, x2) · v and K(x1, x2)ᵀ · v_t (v_t, out_t).
    Pair(&'a Bound<'py, PyAny>, &'a Bound<'py, PyAny>),
}

/// [`PyLimitKernel::product`], `normal_product` or `product_pair` in the
/// dtype of x1.
struct Product<'a, 'py> {
    py: Python<'py>,
    kernel: LimitKernel<'a>,
    which: Which,
    x1: &'a Bound<'py, PyAny>,
    x2: Option<&'a Bound<'py, PyAny>>,
    v: &'a Bound<'py, PyAny>,
    out: &'a Bound<'py, PyAny>,
    mode: Mode<'a, 'py>,
}

impl Generic for Product<'_, '_> {
    type Output = crate::Result<Report>;

    fn run<T: Real + Element>(self) -> PyResult<Self::Output> {
        let (x1, x2) = inputs::<T>(self.x1, self.x2)?;
        let s1 = samples(&x1, "x1")?;
        let s2 = x2.as_ref().map(|x| samples(x, "x2")).transpose()?;
        let v = arrays::readonly_as::<f64>(self.v, "v", "float64")?;
        let k = v.shape()[1];
        let v = arrays::slice(&v, "v")?;
        let mut out = writable::<f64>(Some(self.out), "out")?;
        let out = contiguous_mut(&mut out, "out")?.expect("given");
        let (kernel, which) = (self.kernel, self.which);
        match (self.mode, s2) {
            (Mode::Normal, Some(c)) => run_interruptible(self.py, |cancel| {
                kernel.normal_product(s1, c, which, v, k, out, cancel)
            }),
            (Mode::Pair(v_t, out_t), Some(x2)) => {
                let v_t = arrays::readonly_as::<f64>(v_t, "v_t", "float64")?;
                let v_t = arrays::slice(&v_t, "v_t")?;
                let mut out_t = writable::<f64>(Some(out_t), "out_t")?;
                let out_t = contiguous_mut(&mut out_t, "out_t")?.expect("given");
                run_interruptible(self.py, |cancel| {
                    kernel.product_pair(s1, x2, which, (v, v_t), k, (out, out_t), cancel)
                })
            }
            _ => run_interruptible(self.py, |cancel| {
                kernel.product(s1, s2, which, v, k, out, cancel)
            }),
        }
    }
}

/// [`PyLimitKernel::prepare`] in one dtype.
struct Prepare<'a, 'py> {
    py: Python<'py>,
    kernel: LimitKernel<'a>,
    x1: &'a Bound<'py, PyAny>,
    x2: Option<&'a Bound<'py, PyAny>>,
}

impl Generic for Prepare<'_, '_> {
    type Output = crate::Result<Prepared>;

    fn run<T: Real + Element>(self) -> PyResult<Self::Output> {
        let (x1, x2) = inputs::<T>(self.x1, self.x2)?;
        let s1 = samples(&x1, "x1")?;
        let s2 = x2.as_ref().map(|x| samples(x, "x2")).transpose()?;
        let kernel = self.kernel;
        run_interruptible(self.py, |cancel| kernel.prepare(s1, s2, cancel))
    }
}

/// [`PyLimitKernel::diagonal`] in one dtype.
struct Diagonal<'a, 'py> {
    py: Python<'py>,
    kernel: LimitKernel<'a>,
    x: &'a Bound<'py, PyAny>,
}

impl Generic for Diagonal<'_, '_> {
    type Output = crate::Result<(Vec<f64>, Vec<f64>)>;

    fn run<T: Real + Element>(self) -> PyResult<Self::Output> {
        let x = arrays::readonly_as::<T>(self.x, "x", "float32 or float64")?;
        let s = samples(&x, "x")?;
        let kernel = self.kernel;
        run_interruptible(self.py, |cancel| {
            let (d, _) = kernel.diagonals(s, None, cancel)?;
            Ok((d.nngp().to_vec(), d.ntk().to_vec()))
        })
    }
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
