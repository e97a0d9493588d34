//! Borrowing NumPy arrays as slices (no copies), and the one dispatch from an
//! array's dtype to the generic core.

use super::to_py;
use crate::network::{Layer, LayerMut};
use crate::{Real, Samples};
use numpy::{
    Element, PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyReadwriteArray2, PyReadwriteArrayDyn, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A computation generic over the float type, run by [`dispatch`] in the
/// dtype of the array that decides it.
pub(super) trait Generic {
    type Output;
    fn run<T: Real + Element>(self) -> PyResult<Self::Output>;
}

/// Runs `task` in the dtype of `x` (float64 or float32); a TypeError naming
/// `name` for anything else.
pub(super) fn dispatch<G: Generic>(
    x: &Bound<'_, PyAny>,
    name: &str,
    task: G,
) -> PyResult<G::Output> {
    if x.downcast::<PyArray2<f64>>().is_ok() {
        task.run::<f64>()
    } else if x.downcast::<PyArray2<f32>>().is_ok() {
        task.run::<f32>()
    } else {
        Err(PyTypeError::new_err(format!(
            "{name} must be a 2-D float32 or float64 array"
        )))
    }
}

/// x as (N, n₀) samples, without a copy.
pub(super) fn samples<'a, T: Element>(
    x: &'a PyReadonlyArray2<'_, T>,
    name: &str,
) -> PyResult<Samples<'a, T>> {
    let (rows, cols) = (x.shape()[0], x.shape()[1]);
    Samples::new(slice(x, name)?, rows, cols).map_err(to_py)
}

/// A 2-D array of dtype T, borrowed for reading; `what` describes the dtype
/// expected in the TypeError.
pub(super) fn readonly_as<'py, T: Element>(
    x: &Bound<'py, PyAny>,
    name: &str,
    what: &str,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    x.downcast::<PyArray2<T>>()
        .map_err(|_| PyTypeError::new_err(format!("{name} must be a 2-D array of {what}")))?
        .try_readonly()
        .map_err(|e| {
            PyValueError::new_err(format!(
                "{name} cannot be read (written by another call?): {e}"
            ))
        })
}

/// A 2-D array in the parameters' dtype, borrowed for reading.
pub(super) fn readonly<'py, T: Element>(
    x: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<PyReadonlyArray2<'py, T>> {
    readonly_as(x, name, "the parameters' dtype")
}

pub(super) fn slice<'a, T: Element>(
    x: &'a PyReadonlyArray2<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    x.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

/// An optional 2-D output array of dtype T, borrowed for writing.
pub(super) fn writable<'py, T: Element>(
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

pub(super) fn contiguous_mut<'a, T: Element>(
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

/// An output array of any number of dimensions, borrowed for writing.
pub(super) fn readwrite<'py, T: Element>(
    out: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<PyReadwriteArrayDyn<'py, T>> {
    out.downcast::<PyArrayDyn<T>>()
        .map_err(|_| PyTypeError::new_err(format!("{name} has the wrong dtype")))?
        .try_readwrite()
        .map_err(|e| PyValueError::new_err(format!("{name} cannot be written: {e}")))
}

pub(super) fn slice_mut<'a, T: Element>(
    out: &'a mut PyReadwriteArrayDyn<'_, T>,
    name: &str,
) -> PyResult<&'a mut [T]> {
    out.as_slice_mut()
        .map_err(|_| PyValueError::new_err(format!("{name} must be C-contiguous")))
}

pub(super) fn readwrite_all<'py, T: Element>(
    arrays: &[Bound<'py, PyAny>],
    name: &str,
) -> PyResult<Vec<PyReadwriteArrayDyn<'py, T>>> {
    arrays.iter().map(|o| readwrite::<T>(o, name)).collect()
}

/// The parameters borrowed from Python lists of W (2-D) and b (1-D) arrays.
pub(super) struct Params<'py, T: Element> {
    weights: Vec<PyReadonlyArray2<'py, T>>,
    biases: Vec<PyReadonlyArray1<'py, T>>,
}

impl<'py, T: Element> Params<'py, T> {
    pub fn borrow(weights: &[Bound<'py, PyAny>], biases: &[Bound<'py, PyAny>]) -> PyResult<Self> {
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

    pub fn layers(&self) -> PyResult<Vec<Layer<'_, T>>> {
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

/// Parameters to update in place, from arrays borrowed for writing.
pub(super) fn layers_mut<'a, T: Element>(
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
