//! The inputs of a computation: N samples of dimension n₀, row-major.
//!
//! Shapes are checked once, when the view is made; the computations take the
//! view as valid.

use crate::error::{invalid, Result};
use crate::real::Real;

/// A row-major matrix of samples: `rows` inputs of dimension `cols` (n₀).
#[derive(Debug, Clone, Copy)]
pub struct Samples<'a, T> {
    pub(crate) data: &'a [T],
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

impl<'a, T> Samples<'a, T> {
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        let samples = Samples { data, rows, cols };
        samples.check()?;
        Ok(samples)
    }

    fn check(&self) -> Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        if rows == 0 || cols == 0 {
            return invalid(format!(
                "inputs must be non-empty, got shape ({rows}, {cols})"
            ));
        }
        if rows.checked_mul(cols) != Some(self.data.len()) {
            return invalid(format!(
                "{} values cannot form a ({rows}, {cols}) array",
                self.data.len()
            ));
        }
        Ok(())
    }

    /// The number of samples N.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The dimension of a sample, n₀.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The values of rows `r0..r1`, row-major.
    pub(crate) fn block(&self, r0: usize, r1: usize) -> &'a [T] {
        &self.data[r0 * self.cols..r1 * self.cols]
    }
}

impl<T: Real> Samples<'_, T> {
    /// ‖x‖² of every sample, in f64.
    pub(crate) fn squared_norms(&self) -> impl Iterator<Item = f64> + '_ {
        self.data
            .chunks_exact(self.cols)
            .map(|row| row.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>())
    }
}
