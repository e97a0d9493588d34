//! The recursion on the diagonal: Σ⁽ˡ⁾(x, x) for every layer and Θ⁽ᴸ⁾(x, x),
//! once per sample, O(N·(n₀ + L)); with the Hermite series of each layer when
//! σ has no closed-form dual. The tiles read their rows' and columns'
//! variances from here, and a symmetric output's diagonal is this exact value.

use super::{Closed, LimitKernel, Sigma};
use crate::duals::{dual_diag, Dual, Var};
use crate::error::{invalid, Error, Result};
use crate::hermite::{Pointwise, Series};
use crate::kinked;
use crate::pool;
use crate::real::Real;
use crate::samples::Samples;
use crate::tabulated::Tabulated;
use std::sync::atomic::{AtomicBool, Ordering};

/// Variances of one layer for a set of samples, stored column-wise so that the
/// inner loops read them contiguously.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayerVars {
    pub q: Vec<f64>,
    pub sqrt_q: Vec<f64>,
    pub inv_sqrt_q: Vec<f64>,
}

impl LayerVars {
    fn from_q(q: Vec<f64>) -> Self {
        let (sqrt_q, inv_sqrt_q) = q
            .iter()
            .map(|&q| {
                let v = Var::new(q);
                (v.sqrt_q, v.inv_sqrt_q)
            })
            .unzip();
        LayerVars {
            q,
            sqrt_q,
            inv_sqrt_q,
        }
    }

    #[inline(always)]
    pub(super) fn get(&self, i: usize) -> Var {
        Var {
            q: self.q[i],
            sqrt_q: self.sqrt_q[i],
            inv_sqrt_q: self.inv_sqrt_q[i],
        }
    }
}

/// Σ⁽ˡ⁾(x, x) for l = 1 … L (`layers[l − 1]`) and Θ⁽ᴸ⁾(x, x) for each sample;
/// for σ without a closed-form dual also the Hermite series that map layer l
/// to layer l + 1 (`series[l − 1]`, l = 1 … L − 1).
#[derive(Debug, Clone)]
pub struct Diagonal {
    pub(crate) layers: Vec<LayerVars>,
    pub(crate) ntk: Vec<f64>,
    pub(crate) series: Vec<Series>,
    /// For a kinked σ, its table over these samples' pre-activations, and
    /// the quadrature's estimated relative error (0 otherwise).
    pub(crate) table: Option<Tabulated>,
    pub(crate) quadrature_error: f64,
}

impl Diagonal {
    /// Σ⁽ᴸ⁾(x, x) per sample.
    pub fn nngp(&self) -> &[f64] {
        &self.layers.last().expect("depth ≥ 1").q
    }

    /// Θ⁽ᴸ⁾(x, x) per sample.
    pub fn ntk(&self) -> &[f64] {
        &self.ntk
    }

    /// The most Hermite-series terms any layer kept (0 for closed forms).
    pub fn series_terms(&self) -> usize {
        self.series.iter().map(|s| s.terms).max().unwrap_or(0)
    }

    /// An error naming the first sample and layer whose variance (or NTK
    /// diagonal) leaves [0, limit] (the input type's [`Real::MAX_VARIANCE`]).
    /// Off-diagonal entries are bounded by the diagonal (Cauchy–Schwarz), so a
    /// diagonal within the limit means a finite kernel.
    pub(crate) fn check_range(&self, name: &str, limit: f64) -> Result<()> {
        let out_of_range = |v: &f64| !(0.0..=limit).contains(v);
        let per_layer = self
            .layers
            .iter()
            .enumerate()
            .map(|(l, layer)| (format!("Σ⁽{}⁾", superscript(l + 1)), &layer.q));
        for (what, values) in per_layer.chain(std::iter::once(("Θ".to_string(), &self.ntk))) {
            if let Some(i) = values.iter().position(out_of_range) {
                return invalid(format!(
                    "the kernel overflows: {what} of {name} row {i} is {:e} (limit \
                     {limit:e} for this dtype); scale the inputs, beta or the activation down",
                    values[i]
                ));
            }
        }
        Ok(())
    }
}

impl LimitKernel<'_> {
    /// The per-sample recursion on the diagonal, O(N·(n₀ + L)) (times the
    /// quadrature nodes for the series).
    pub fn diagonal<T: Real>(&self, x: Samples<'_, T>) -> Result<Diagonal> {
        self.diagonal_until(x, &[], &AtomicBool::new(false))
    }

    /// [`LimitKernel::diagonal`], stopping between layers once `cancel` is set
    /// (Error::Cancelled then): deep networks make this O(N·L) phase long too.
    /// `min_terms[l]`, where given, is the fewest terms the series of layer
    /// l + 1 may keep.
    pub(crate) fn diagonal_until<T: Real>(
        &self,
        x: Samples<'_, T>,
        min_terms: &[usize],
        cancel: &AtomicBool,
    ) -> Result<Diagonal> {
        let b2 = self.beta * self.beta;
        let inv_n0 = 1.0 / x.cols as f64;
        let mut q: Vec<f64> = x.squared_norms().map(|n| n * inv_n0 + b2).collect();
        let mut theta = q.clone();
        let mut layers = Vec::new();
        layers.try_reserve_exact(self.depth).map_err(|_| {
            Error::Memory(format!(
                "depth {} needs more memory than can be allocated",
                self.depth
            ))
        })?;
        let mut series = Vec::new();
        let builtin;
        let pointwise: &dyn Pointwise = match self.activation {
            Sigma::Builtin(a) => {
                builtin = a;
                &builtin
            }
            Sigma::Custom(p) | Sigma::Kinked(p) => p,
            Sigma::Pieces(p) => p,
        };
        let mut table: Option<Tabulated> = None;
        let mut quadrature_error = 0.0f64;
        for _ in 1..self.depth {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let duals: Vec<(f64, f64)> = match (self.activation, self.closed_form()) {
                (Sigma::Kinked(_), _) => {
                    let table = tabulate(pointwise, &q, &mut table)?;
                    quadrature_error = quadrature_error.max(estimate(table, &q));
                    pool::map(&q, cancel, |&qi| kinked::diag(table, qi))?
                }
                (_, Some(Closed::Builtin(a))) => q
                    .iter()
                    .map(|&qi| dual_diag(a, qi).unwrap_or_default())
                    .collect(),
                (_, Some(Closed::Pieces(p))) => q.iter().map(|&qi| p.diag(qi)).collect(),
                (_, Some(Closed::Kinked(k))) => q.iter().map(|&qi| k.diag(qi)).collect(),
                (_, None) => {
                    let least = min_terms.get(series.len()).copied().unwrap_or(1);
                    let s = Series::expand_at_least(pointwise, &q, least, cancel)?;
                    let duals = s.sigma.iter().copied().zip(s.sigma_dot.iter().copied());
                    let duals = duals.collect();
                    series.push(s);
                    duals
                }
            };
            let next: Vec<f64> = duals
                .iter()
                .zip(theta.iter_mut())
                .map(|(&(sigma, sigma_dot), ti)| {
                    let next = sigma + b2;
                    *ti = *ti * sigma_dot + next;
                    next
                })
                .collect();
            layers.push(LayerVars::from_q(std::mem::replace(&mut q, next)));
        }
        layers.push(LayerVars::from_q(q));
        Ok(Diagonal {
            layers,
            ntk: theta,
            series,
            table,
            quadrature_error,
        })
    }
}

/// The kinked σ's table, made or widened so that it covers Z standard
/// deviations of every variance in `q` (a wider one is made with half as
/// much again, seeded with the old one's kinks, so growing variances do not
/// remake it every layer).
fn tabulate<'t>(
    pointwise: &dyn Pointwise,
    q: &[f64],
    table: &'t mut Option<Tabulated>,
) -> Result<&'t Tabulated> {
    let q_max = q.iter().fold(0.0f64, |m, &v| m.max(v));
    let needed = (kinked::Z * q_max.sqrt()).max(1e-3);
    if table.as_ref().is_none_or(|t| t.range() < needed) {
        let seeds = table
            .as_ref()
            .map(|t| t.kinks().to_vec())
            .unwrap_or_default();
        let range = if table.is_some() {
            1.5 * needed
        } else {
            needed
        };
        *table = Some(Tabulated::new(pointwise, range, &seeds)?);
    }
    Ok(table.as_ref().expect("made above"))
}

/// The quadrature's estimated relative error on a layer: the diagonal at
/// its smallest and largest variance against the rule with subintervals
/// halved.
fn estimate(table: &Tabulated, q: &[f64]) -> f64 {
    let lo = q.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if q.is_empty() {
        return 0.0;
    }
    kinked::diag_error(table, lo).max(kinked::diag_error(table, hi))
}

/// `n` in superscript digits (layer numbers in messages: Σ⁽¹²⁾).
pub(super) fn superscript(n: usize) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    n.to_string()
        .chars()
        .map(|c| c.to_digit(10).map_or(c, |d| DIGITS[d as usize]))
        .collect()
}
