//! The finite-width network f_θ in NTK parametrisation: forward pass,
//! back-propagated cotangents, vector–Jacobian products and the Jacobian.
//!
//! ```text
//! α⁽⁰⁾ = x,   α̃⁽ˡ⁺¹⁾ = W⁽ˡ⁾ α⁽ˡ⁾ / √n_l + β b⁽ˡ⁾,   α⁽ˡ⁾ = σ(α̃⁽ˡ⁾),   f_θ = α̃⁽ᴸ⁾
//! ```
//!
//! Batches are row-major: the N inputs are rows, so layer l + 1 is the GEMM
//! α⁽ˡ⁺¹⁾ = σ(A_l W⁽ˡ⁾ᵀ / √n_l + β 1 b⁽ˡ⁾ᵀ) with A_l of shape (N, n_l).
//! The cotangents G_l = ∂f_k/∂α̃⁽ˡ⁾ have one row per (sample i, output k),
//! row index i·n_L + k, and follow
//! G_L = I,  G_l = (G_{l+1} W⁽ˡ⁾ / √n_l) ⊙ σ'(α̃⁽ˡ⁾).

use crate::activation::Activation;
use crate::error::{invalid, Result};
use crate::gram::{filled, par_product, par_product_add, par_product_new};
use crate::pool;
use crate::real::Real;
use crate::samples::Samples;
use crate::simd::Simd;
use crate::tiles;
use faer::MatRef;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};

/// Architecture of a fully-connected network: widths n_0 … n_L, σ and β.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub(crate) widths: Vec<usize>,
    pub(crate) activation: Activation,
    pub(crate) beta: f64,
}

/// The parameters of one dense layer l: W⁽ˡ⁾ (n_{l+1} × n_l, row-major) and b⁽ˡ⁾ (n_{l+1}).
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a, T> {
    pub weight: &'a [T],
    pub bias: &'a [T],
}

/// Mutable storage for one layer's parameters (gradients).
#[derive(Debug)]
pub struct LayerMut<'a, T> {
    pub weight: &'a mut [T],
    pub bias: &'a mut [T],
}

/// What the forward pass keeps: the hidden activations α⁽ˡ⁾ and, for back
/// propagation, σ'(α̃⁽ˡ⁾) (l = 1 … L − 1), each (N, n_l) row-major, and the
/// output f_θ (N, n_L).
pub struct Forward<'x, T> {
    pub rows: usize,
    input: &'x [T],
    hidden: Vec<Vec<T>>,
    slopes: Vec<Vec<T>>,
    pub output: Vec<T>,
}

impl<T> Forward<'_, T> {
    /// α⁽ˡ⁾ for l = 0 … L − 1, (N, n_l) row-major.
    pub fn activation(&self, l: usize) -> &[T] {
        if l == 0 {
            self.input
        } else {
            &self.hidden[l - 1]
        }
    }
}

/// Where [`Network::vjp`] puts the gradient g = (1/N) Σ_i J(x_i)ᵀ d_i.
pub enum Sink<'s, 'a, T> {
    /// Into `grads`; the parameters are only read.
    Store {
        params: &'s [Layer<'a, T>],
        grads: &'s mut [LayerMut<'a, T>],
    },
    /// θ ← θ + lr · g in place: one step of training, with no storage for g
    /// (the GEMM adds into W directly).
    Update {
        params: &'s mut [LayerMut<'a, T>],
        lr: f64,
    },
}

impl<T> Sink<'_, '_, T> {
    fn check(&self, widths: &[usize]) -> Result<()> {
        let sizes: Vec<(usize, usize)> = match self {
            Sink::Store { params, grads } => {
                if params.len() != grads.len() {
                    return invalid("parameters and gradients differ in length");
                }
                for (l, p) in params.iter().enumerate() {
                    if (p.weight.len(), p.bias.len())
                        != (grads[l].weight.len(), grads[l].bias.len())
                    {
                        return invalid(format!(
                            "gradient storage of layer {l} has the wrong size"
                        ));
                    }
                }
                params
                    .iter()
                    .map(|p| (p.weight.len(), p.bias.len()))
                    .collect()
            }
            Sink::Update { params, .. } => params
                .iter()
                .map(|p| (p.weight.len(), p.bias.len()))
                .collect(),
        };
        let expected: Vec<(usize, usize)> =
            widths.windows(2).map(|w| (w[0] * w[1], w[1])).collect();
        if sizes != expected {
            return invalid(format!(
                "parameters or gradients do not match the widths {widths:?}: expected \
                 (weight, bias) sizes {expected:?}, got {sizes:?}"
            ));
        }
        Ok(())
    }

    fn weight(&self, l: usize) -> &[T] {
        match self {
            Sink::Store { params, .. } => params[l].weight,
            Sink::Update { params, .. } => params[l].weight,
        }
    }

    /// (W storage, b storage, scale, whether to add) for layer l.
    fn target(&mut self, l: usize) -> (&mut [T], &mut [T], f64, bool) {
        match self {
            Sink::Store { grads, .. } => (&mut *grads[l].weight, &mut *grads[l].bias, 1.0, false),
            Sink::Update { params, lr } => {
                (&mut *params[l].weight, &mut *params[l].bias, *lr, true)
            }
        }
    }
}

/// What a forward pass keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The network's output f_θ(x).
    Output,
    /// What back propagation needs: σ'(α̃⁽ˡ⁾) of the hidden layers, no output.
    Backprop,
    /// Both: the output and σ'(α̃⁽ˡ⁾), for a training step.
    Training,
}

/// α = σ(z + β b) in place for one row segment, and σ'(z + β b) into `slope`.
fn activate_row<T: Real>(
    act: Activation,
    values: &mut [T],
    bias: &[T],
    beta: f64,
    slope: Option<&mut [MaybeUninit<T>]>,
) {
    if act == Activation::Relu {
        // ReLU in the type itself, vectorised: the elementwise work of a float32
        // network is then a small part of its GEMMs.
        return with_simd(
            #[inline(always)]
            || relu_row(values, bias, T::from_f64(beta), slope),
        );
    }
    let pre = |v: &T, b: &T| v.to_f64() + beta * b.to_f64();
    match slope {
        Some(slope) => {
            for ((v, b), s) in values.iter_mut().zip(bias).zip(slope) {
                let z = pre(v, b);
                *v = T::from_f64(act.sigma(z));
                s.write(T::from_f64(act.dsigma(z)));
            }
        }
        None => {
            for (v, b) in values.iter_mut().zip(bias) {
                *v = T::from_f64(act.sigma(pre(v, b)));
            }
        }
    }
}

/// ReLU of z + β b, with the same formulas as [`Activation`]: max(z, 0) and
/// the step 1[z > 0].
#[inline(always)]
fn relu_row<T: Real>(values: &mut [T], bias: &[T], beta: T, slope: Option<&mut [MaybeUninit<T>]>) {
    let zero = T::default();
    let one = T::from_f64(1.0);
    match slope {
        Some(slope) => {
            for ((v, &b), s) in values.iter_mut().zip(bias).zip(slope) {
                let z = *v + beta * b;
                *v = if z > zero { z } else { zero };
                s.write(if z > zero { one } else { zero });
            }
        }
        None => {
            for (v, &b) in values.iter_mut().zip(bias) {
                let z = *v + beta * b;
                *v = if z > zero { z } else { zero };
            }
        }
    }
}

/// values ⊙= factors.
fn multiply<T: Real>(values: &mut [T], factors: &[T]) {
    with_simd(
        #[inline(always)]
        || {
            for (v, &f) in values.iter_mut().zip(factors) {
                *v = *v * f;
            }
        },
    )
}

/// Runs `f` (inlined into it) compiled for the widest instruction set of the
/// CPU; the arithmetic is the same on every path (see `simd`).
#[inline(always)]
fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    Simd::detect().run(f)
}

fn check_cancel(cancel: &AtomicBool) -> Result<()> {
    if cancel.load(Ordering::Relaxed) {
        Err(crate::error::Error::Cancelled)
    } else {
        Ok(())
    }
}

impl Network {
    pub fn new(widths: Vec<usize>, activation: Activation, beta: f64) -> Result<Self> {
        let net = Network {
            widths,
            activation,
            beta,
        };
        net.check()?;
        Ok(net)
    }

    fn check(&self) -> Result<()> {
        let widths = &self.widths;
        if widths.len() < 2 {
            return invalid(format!(
                "widths needs at least two entries [n0, nL], got {widths:?}"
            ));
        }
        if let Some(i) = widths.iter().position(|&w| w == 0) {
            return invalid(format!("widths[{i}] must be at least 1, got 0"));
        }
        let params = widths.windows(2).try_fold(0usize, |total, w| {
            w[0].checked_add(1)
                .and_then(|n| n.checked_mul(w[1]))
                .and_then(|p| p.checked_add(total))
        });
        if params.is_none() {
            return invalid(format!(
                "widths {widths:?} have more parameters than memory can address"
            ));
        }
        if !self.beta.is_finite() {
            return invalid(format!("beta must be finite, got {}", self.beta));
        }
        Ok(())
    }

    /// Checks that `fwd` is a forward pass of this network (one activation of
    /// the right size per layer, and σ' of the hidden layers when `slopes`).
    pub(crate) fn check_forward<T>(&self, fwd: &Forward<'_, T>, slopes: bool) -> Result<()> {
        let (rows, depth) = (fwd.rows, self.depth());
        let sizes_match = |arrays: &[Vec<T>]| {
            arrays.len() >= depth - 1
                && arrays
                    .iter()
                    .take(depth - 1)
                    .zip(&self.widths[1..])
                    .all(|(a, &n)| rows.checked_mul(n) == Some(a.len()))
        };
        if rows.checked_mul(self.widths[0]) != Some(fwd.input.len()) || !sizes_match(&fwd.hidden) {
            return invalid(format!(
                "the forward pass does not match the widths {:?} for {rows} inputs",
                self.widths
            ));
        }
        if slopes && !sizes_match(&fwd.slopes) {
            return invalid(
                "the forward pass kept no σ' of the hidden layers (run it with Pass::Backprop or Pass::Training)",
            );
        }
        Ok(())
    }

    /// Checks that `cot` holds the cotangents of this network for `rows` inputs.
    pub(crate) fn check_cotangents<T>(&self, cot: &[Vec<T>], rows: usize) -> Result<()> {
        let depth = self.depth();
        let fits = cot.len() == depth - 1
            && cot.iter().zip(&self.widths[1..]).all(|(g, &n)| {
                rows.checked_mul(self.outputs())
                    .and_then(|r| r.checked_mul(n))
                    == Some(g.len())
            });
        if !fits {
            return invalid(format!(
                "expected the cotangents of {} hidden layers for {rows} inputs, got {} arrays \
                 of other sizes",
                depth - 1,
                cot.len()
            ));
        }
        Ok(())
    }

    /// L, the number of dense layers.
    /// The widths n_0 … n_L.
    pub fn widths(&self) -> &[usize] {
        &self.widths
    }

    /// σ.
    pub fn activation(&self) -> Activation {
        self.activation
    }

    /// β.
    pub fn beta(&self) -> f64 {
        self.beta
    }

    /// Bytes of the per-input intermediates of a pass over `rows` inputs of
    /// `itemsize`-byte values: per input 2 Σ_{0<l<L} n_l + n_L numbers
    /// (activations, σ' and outputs) and, with `cotangents` (kernels,
    /// Jacobians), n_L Σ_{0<l<L} n_l more. Callers check it before any work.
    pub fn working_memory(&self, rows: usize, itemsize: usize, cotangents: bool) -> usize {
        let hidden = self.widths[1..self.depth()]
            .iter()
            .fold(0usize, |s, &n| s.saturating_add(n));
        let outputs = self.outputs();
        let mut per_row = hidden.saturating_mul(2).saturating_add(outputs);
        if cotangents {
            per_row = per_row.saturating_add(outputs.saturating_mul(hidden));
        }
        rows.saturating_mul(per_row).saturating_mul(itemsize)
    }

    pub fn depth(&self) -> usize {
        self.widths.len() - 1
    }

    /// n_L, the number of outputs.
    pub fn outputs(&self) -> usize {
        self.widths[self.depth()]
    }

    /// P = Σ_l (n_l + 1) n_{l+1}.
    pub fn num_params(&self) -> usize {
        self.widths.windows(2).map(|w| (w[0] + 1) * w[1]).sum()
    }

    /// Checks the number and sizes of the layers' parameters.
    pub fn check_params<T>(&self, params: &[Layer<'_, T>]) -> Result<()> {
        if params.len() != self.depth() {
            return invalid(format!(
                "expected parameters for {} layers, got {}",
                self.depth(),
                params.len()
            ));
        }
        for (l, (p, w)) in params.iter().zip(self.widths.windows(2)).enumerate() {
            if p.weight.len() != w[0] * w[1] || p.bias.len() != w[1] {
                return invalid(format!(
                    "layer {l}: expected W of shape ({}, {}) and b of shape ({},)",
                    w[1], w[0], w[1]
                ));
            }
        }
        Ok(())
    }

    fn check_inputs<T>(&self, x: &Samples<'_, T>) -> Result<()> {
        if x.cols != self.widths[0] {
            return invalid(format!(
                "inputs have {} features but the network's input width is {}",
                x.cols, self.widths[0]
            ));
        }
        Ok(())
    }

    /// The forward pass on the rows of `x`. [`Pass::Output`] computes f_θ(x);
    /// [`Pass::Backprop`] keeps σ'(α̃⁽ˡ⁾) for back propagation instead and stops
    /// before the output layer, which nothing downstream needs; [`Pass::Training`]
    /// does both.
    pub fn forward<'x, T: Real>(
        &self,
        params: &[Layer<'_, T>],
        x: Samples<'x, T>,
        pass: Pass,
        cancel: &AtomicBool,
    ) -> Result<Forward<'x, T>> {
        self.check_params(params)?;
        self.check_inputs(&x)?;
        if let Some(w) = self
            .widths
            .iter()
            .find(|&&w| x.rows.checked_mul(w).is_none())
        {
            return invalid(format!(
                "{} inputs of width {w} do not fit in memory",
                x.rows
            ));
        }
        let (rows, depth) = (x.rows, self.depth());
        let keep_slopes = pass != Pass::Output;
        let layers = if pass == Pass::Backprop {
            depth - 1
        } else {
            depth
        };
        let mut hidden: Vec<Vec<T>> = Vec::with_capacity(depth - 1);
        let mut slopes: Vec<Vec<T>> = Vec::new();
        let mut output = Vec::new();
        for (l, layer) in params.iter().enumerate().take(layers) {
            let (n_in, n_out) = (self.widths[l], self.widths[l + 1]);
            let input = if l == 0 { x.data } else { &hidden[l - 1] };
            let last = l + 1 == depth;
            let slope_cols = if keep_slopes && !last { n_out } else { 0 };
            let (act, beta) = (self.activation, self.beta);
            let mut pre = Vec::new();
            // σ' is written by the product's epilogue, while each block is in cache.
            let forward_layer = |slope_values: &mut [MaybeUninit<T>]| -> Result<()> {
                let slope_out = tiles::SharedOutput::new(slope_values, rows, slope_cols);
                pre = par_product_new(
                    MatRef::from_row_major_slice(input, rows, n_in),
                    MatRef::from_row_major_slice(layer.weight, n_out, n_in).transpose(),
                    1.0 / (n_in as f64).sqrt(),
                    cancel,
                    |r, c0, values| {
                        let bias = &layer.bias[c0..c0 + values.len()];
                        if last {
                            for (v, &b) in values.iter_mut().zip(bias) {
                                *v = T::from_f64(v.to_f64() + beta * b.to_f64());
                            }
                        } else {
                            // SAFETY: the same disjoint blocks as the product's.
                            let slope = (slope_cols > 0)
                                .then(|| unsafe { slope_out.row_mut(r, c0, c0 + values.len()) });
                            activate_row(act, values, bias, beta, slope);
                        }
                    },
                )?;
                Ok(())
            };
            // SAFETY: the epilogue sees every row segment of every block and, when
            // σ' is kept, writes it for each of the segment's values.
            let slope = unsafe { filled(rows * slope_cols, forward_layer) }?;
            if last {
                output = pre;
            } else {
                hidden.push(pre);
                if keep_slopes {
                    slopes.push(slope);
                }
            }
        }
        Ok(Forward {
            rows,
            input: x.data,
            hidden,
            slopes,
            output,
        })
    }

    /// The cotangents G_l = ∂f/∂α̃⁽ˡ⁾ for l = 1 … L − 1 (entry l − 1), each of
    /// shape (N·n_L, n_l) with row i·n_L + k for sample i and output k.
    /// G_L = I is not stored.
    pub fn cotangents<T: Real>(
        &self,
        params: &[Layer<'_, T>],
        fwd: &Forward<'_, T>,
        cancel: &AtomicBool,
    ) -> Result<Vec<Vec<T>>> {
        self.check_params(params)?;
        self.check_forward(fwd, true)?;
        let depth = self.depth();
        let outputs = self.outputs();
        let rows = fwd.rows * outputs;
        let mut cot: Vec<Vec<T>> = vec![Vec::new(); depth - 1];
        let pool = pool::pool()?;
        for l in (1..depth).rev() {
            let n = self.widths[l];
            let slopes = &fwd.slopes[l - 1];
            let g = if l + 1 == depth {
                // G_{L−1}[(i, k)] = W⁽ᴸ⁻¹⁾[k] / √n ⊙ σ'(α̃⁽ᴸ⁻¹⁾(x_i)).
                let w = params[l].weight;
                let scale = 1.0 / (n as f64).sqrt();
                let last_cotangents = |g: &mut [MaybeUninit<T>]| -> Result<()> {
                    pool.install(|| {
                        g.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
                            let (i, k) = (r / outputs, r % outputs);
                            let (w_k, s_i) = (&w[k * n..(k + 1) * n], &slopes[i * n..(i + 1) * n]);
                            for ((v, &wv), &sv) in row.iter_mut().zip(w_k).zip(s_i) {
                                v.write(T::from_f64(wv.to_f64() * scale * sv.to_f64()));
                            }
                        })
                    });
                    Ok(())
                };
                // SAFETY: the rows cover g, and each is written in full.
                unsafe { filled(rows * n, last_cotangents) }?
            } else {
                let n_next = self.widths[l + 1];
                par_product_new(
                    MatRef::from_row_major_slice(&cot[l], rows, n_next),
                    MatRef::from_row_major_slice(params[l].weight, n_next, n),
                    1.0 / (n as f64).sqrt(),
                    cancel,
                    |r, c0, values| {
                        let i = r / outputs;
                        let s_i = &slopes[i * n + c0..i * n + c0 + values.len()];
                        multiply(values, s_i);
                    },
                )?
            };
            check_cancel(cancel)?;
            cot[l - 1] = g;
        }
        Ok(cot)
    }

    /// The vector–Jacobian product g = (1/N) Σ_i J(x_i)ᵀ d_i, with `d` (N, n_L)
    /// row-major, into `sink`. This is ordinary back propagation of Δ_L = d,
    /// Δ_l = (Δ_{l+1} W⁽ˡ⁾ / √n_l) ⊙ σ'(α̃⁽ˡ⁾), with
    /// g_W⁽ˡ⁾ = Δ_{l+1}ᵀ A_l / (N √n_l) and g_b⁽ˡ⁾ = β Σ_i Δ_{l+1}[i] / N.
    pub fn vjp<T: Real>(
        &self,
        fwd: &Forward<'_, T>,
        d: &[T],
        mut sink: Sink<'_, '_, T>,
        cancel: &AtomicBool,
    ) -> Result<()> {
        self.check_forward(fwd, true)?;
        let (rows, depth) = (fwd.rows, self.depth());
        if rows.checked_mul(self.outputs()) != Some(d.len()) {
            return invalid(format!(
                "d must have shape ({rows}, {}), got {} values",
                self.outputs(),
                d.len()
            ));
        }
        sink.check(&self.widths)?;
        let pool = pool::pool()?;
        let mut delta: Vec<T> = d.to_vec();
        for l in (0..depth).rev() {
            let (n_in, n_out) = (self.widths[l], self.widths[l + 1]);
            let delta_mat = MatRef::from_row_major_slice(&delta, rows, n_out);
            // Δ_l first: an update of W⁽ˡ⁾ in place must come after its last read.
            let next = if l > 0 {
                let slopes = &fwd.slopes[l - 1];
                let next = par_product_new(
                    delta_mat,
                    MatRef::from_row_major_slice(sink.weight(l), n_out, n_in),
                    1.0 / (n_in as f64).sqrt(),
                    cancel,
                    |r, c0, values| {
                        multiply(values, &slopes[r * n_in + c0..r * n_in + c0 + values.len()])
                    },
                )?;
                Some(next)
            } else {
                None
            };
            let (weight, bias, scale, accumulate) = sink.target(l);
            let activations = MatRef::from_row_major_slice(fwd.activation(l), rows, n_in);
            let alpha = scale / (rows as f64 * (n_in as f64).sqrt());
            if accumulate {
                par_product_add(weight, delta_mat.transpose(), activations, alpha, cancel)?;
            } else {
                par_product(weight, delta_mat.transpose(), activations, alpha, cancel)?;
            }
            let bias_scale = scale * self.beta / rows as f64;
            pool.install(|| {
                bias.par_iter_mut().enumerate().for_each(|(a, b)| {
                    let sum: f64 = (0..rows).map(|i| delta[i * n_out + a].to_f64()).sum();
                    let base = if accumulate { b.to_f64() } else { 0.0 };
                    *b = T::from_f64(base + bias_scale * sum);
                })
            });
            if let Some(next) = next {
                delta = next;
            }
            check_cancel(cancel)?;
        }
        Ok(())
    }

    /// The Jacobian ∂f_k(x_i)/∂θ_p into `out` of shape (N, n_L, P), row-major,
    /// with θ ordered W⁽⁰⁾ (row-major), b⁽⁰⁾, W⁽¹⁾, b⁽¹⁾, …:
    /// ∂f_k/∂W⁽ˡ⁾[a, b] = G_{l+1}[(i, k), a] α⁽ˡ⁾(x_i)[b] / √n_l and
    /// ∂f_k/∂b⁽ˡ⁾[a] = β G_{l+1}[(i, k), a].
    pub fn jacobian<T: Real>(
        &self,
        fwd: &Forward<'_, T>,
        cot: &[Vec<T>],
        out: &mut [T],
        cancel: &AtomicBool,
    ) -> Result<()> {
        self.check_forward(fwd, false)?;
        self.check_cotangents(cot, fwd.rows)?;
        let (outputs, depth, p) = (self.outputs(), self.depth(), self.num_params());
        let size = fwd.rows.checked_mul(outputs).and_then(|r| r.checked_mul(p));
        if size != Some(out.len()) {
            return invalid(format!(
                "jacobian output must hold ({}, {outputs}, {p}) values, has {}",
                fwd.rows,
                out.len()
            ));
        }
        let beta = self.beta;
        let unit: Vec<T> = vec![T::default(); outputs];
        pool::pool()?.install(|| {
            out.par_chunks_mut(p).enumerate().for_each_init(
                || unit.clone(),
                |e_k, (r, row)| {
                    if cancel.load(Ordering::Relaxed) {
                        return;
                    }
                    let (i, k) = (r / outputs, r % outputs);
                    let mut offset = 0;
                    for l in 0..depth {
                        let (n_in, n_out) = (self.widths[l], self.widths[l + 1]);
                        // G_{l+1} for the hidden layers; G_L = I, whose row (i, k) is e_k.
                        let g: &[T] = match cot.get(l) {
                            Some(g) => &g[r * n_out..(r + 1) * n_out],
                            None => {
                                e_k.fill(T::default());
                                e_k[k] = T::from_f64(1.0);
                                e_k
                            }
                        };
                        let a = &fwd.activation(l)[i * n_in..(i + 1) * n_in];
                        let scale = 1.0 / (n_in as f64).sqrt();
                        let weights = &mut row[offset..offset + n_out * n_in];
                        for (w_row, &gv) in weights.chunks_exact_mut(n_in).zip(g) {
                            let gs = gv.to_f64() * scale;
                            for (w, &av) in w_row.iter_mut().zip(a) {
                                *w = T::from_f64(gs * av.to_f64());
                            }
                        }
                        offset += n_out * n_in;
                        for (b, &gv) in row[offset..offset + n_out].iter_mut().zip(g) {
                            *b = T::from_f64(beta * gv.to_f64());
                        }
                        offset += n_out;
                    }
                },
            )
        });
        check_cancel(cancel)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::activation::EVERY_KIND;
    use crate::init::standard_normal;

    /// A small network with random parameters and inputs.
    pub(crate) struct Setup {
        pub net: Network,
        pub params: Vec<(Vec<f64>, Vec<f64>)>,
        pub x: Vec<f64>,
        pub rows: usize,
    }

    impl Setup {
        pub fn new(widths: &[usize], activation: Activation, beta: f64, rows: usize) -> Setup {
            let net = Network::new(widths.to_vec(), activation, beta).unwrap();
            let params = widths
                .windows(2)
                .enumerate()
                .map(|(l, w)| {
                    let mut weight = vec![0.0; w[0] * w[1]];
                    let mut bias = vec![0.0; w[1]];
                    standard_normal(5, 2 * l as u64, &mut weight).unwrap();
                    standard_normal(5, 2 * l as u64 + 1, &mut bias).unwrap();
                    (weight, bias)
                })
                .collect();
            let mut x = vec![0.0; rows * widths[0]];
            standard_normal(6, 0, &mut x).unwrap();
            Setup {
                net,
                params,
                x,
                rows,
            }
        }

        pub fn layers(&self) -> Vec<Layer<'_, f64>> {
            self.params
                .iter()
                .map(|(weight, bias)| Layer { weight, bias })
                .collect()
        }

        pub fn samples(&self) -> Samples<'_, f64> {
            Samples::new(&self.x, self.rows, self.net.widths[0]).unwrap()
        }

        /// The (N, n_L, P) Jacobian from the core.
        pub fn jacobian(&self) -> Vec<f64> {
            let cancel = AtomicBool::new(false);
            let layers = self.layers();
            let fwd = self
                .net
                .forward(&layers, self.samples(), Pass::Backprop, &cancel)
                .unwrap();
            let cot = self.net.cotangents(&layers, &fwd, &cancel).unwrap();
            let size = self.rows * self.net.outputs() * self.net.num_params();
            let mut jac = vec![0.0; size];
            self.net.jacobian(&fwd, &cot, &mut jac, &cancel).unwrap();
            jac
        }
    }

    /// f_θ(x) for one input, written out loop by loop.
    fn naive_forward(net: &Network, params: &[(Vec<f64>, Vec<f64>)], x: &[f64]) -> Vec<f64> {
        let mut a = x.to_vec();
        for (l, (w, b)) in params.iter().enumerate() {
            let (n_in, n_out) = (net.widths[l], net.widths[l + 1]);
            let mut z: Vec<f64> = (0..n_out)
                .map(|o| {
                    let dot: f64 = (0..n_in).map(|q| w[o * n_in + q] * a[q]).sum();
                    dot / (n_in as f64).sqrt() + net.beta * b[o]
                })
                .collect();
            if l + 1 < net.depth() {
                z.iter_mut().for_each(|v| *v = net.activation.sigma(*v));
            }
            a = z;
        }
        a
    }

    #[test]
    fn forward_matches_a_naive_loop() {
        let s = Setup::new(&[5, 7, 6, 3], Activation::Gelu, 0.3, 9);
        let cancel = AtomicBool::new(false);
        let fwd = s
            .net
            .forward(&s.layers(), s.samples(), Pass::Output, &cancel)
            .unwrap();
        for i in 0..s.rows {
            let want = naive_forward(&s.net, &s.params, &s.x[i * 5..(i + 1) * 5]);
            for (k, w) in want.iter().enumerate() {
                assert!((fwd.output[i * 3 + k] - w).abs() < 1e-13 * w.abs().max(1.0));
            }
        }
    }

    #[test]
    fn jacobian_matches_finite_differences() {
        for act in EVERY_KIND {
            let s = Setup::new(&[4, 6, 5, 2], act, 0.7, 3);
            let (p, jac) = (s.net.num_params(), s.jacobian());
            // Central differences in every parameter, through the naive forward pass.
            let mut flat: Vec<f64> = s
                .params
                .iter()
                .flat_map(|(w, b)| w.iter().chain(b).copied())
                .collect();
            let unflatten = |flat: &[f64]| {
                let mut out = Vec::new();
                let mut at = 0;
                for w in s.net.widths.windows(2) {
                    let weight = flat[at..at + w[0] * w[1]].to_vec();
                    at += w[0] * w[1];
                    out.push((weight, flat[at..at + w[1]].to_vec()));
                    at += w[1];
                }
                out
            };
            let h = 1e-6;
            for q in 0..p {
                let keep = flat[q];
                flat[q] = keep + h;
                let plus = unflatten(&flat);
                flat[q] = keep - h;
                let minus = unflatten(&flat);
                flat[q] = keep;
                for i in 0..s.rows {
                    let x = &s.x[i * 4..(i + 1) * 4];
                    let (fp, fm) = (
                        naive_forward(&s.net, &plus, x),
                        naive_forward(&s.net, &minus, x),
                    );
                    for k in 0..2 {
                        let fd = (fp[k] - fm[k]) / (2.0 * h);
                        let got = jac[(i * 2 + k) * p + q];
                        assert!((fd - got).abs() < 1e-6, "{act:?} param {q}: {fd} vs {got}");
                    }
                }
            }
        }
    }

    /// Checks the core's vjp against Jᵀd / N from the core's Jacobian.
    fn check_vjp(s: &Setup) {
        let cancel = AtomicBool::new(false);
        let layers = s.layers();
        let fwd = s
            .net
            .forward(&layers, s.samples(), Pass::Backprop, &cancel)
            .unwrap();
        let (p, jac, m) = (s.net.num_params(), s.jacobian(), s.net.outputs());
        let mut d = vec![0.0; s.rows * m];
        standard_normal(9, 0, &mut d).unwrap();
        let mut storage: Vec<(Vec<f64>, Vec<f64>)> = s
            .params
            .iter()
            .map(|(w, b)| (vec![0.0; w.len()], vec![0.0; b.len()]))
            .collect();
        let mut grads: Vec<LayerMut<'_, f64>> = storage
            .iter_mut()
            .map(|(weight, bias)| LayerMut { weight, bias })
            .collect();
        let sink = Sink::Store {
            params: &layers,
            grads: &mut grads,
        };
        s.net.vjp(&fwd, &d, sink, &cancel).unwrap();
        let flat: Vec<f64> = storage
            .iter()
            .flat_map(|(w, b)| w.iter().chain(b).copied())
            .collect();
        for (q, &got) in flat.iter().enumerate() {
            let want: f64 =
                (0..s.rows * m).map(|r| jac[r * p + q] * d[r]).sum::<f64>() / s.rows as f64;
            assert!(
                (got - want).abs() < 1e-12 * want.abs().max(1e-3),
                "widths {:?}, param {q}: {got} vs {want}",
                s.net.widths
            );
        }
    }

    #[test]
    fn vjp_is_the_jacobian_transpose_times_d() {
        check_vjp(&Setup::new(&[4, 9, 7, 3], Activation::Erf, 0.2, 70));
    }

    #[test]
    fn every_value_of_the_unzeroed_buffers_is_written() {
        // The forward, backward and Jacobian buffers are not zeroed: in debug
        // builds they start as NaN, which would reach these results from any
        // value left unwritten. Shapes down to one input and layers of width
        // one (faer's matrix-vector and rank-one paths), and blocks with edges.
        let cancel = AtomicBool::new(false);
        for (widths, rows) in [
            (&[1, 1, 1][..], 1),
            (&[3, 1, 2], 1),
            (&[1, 4, 1], 2),
            (&[2, 5, 1, 3], 7),
            (&[3, 200, 130, 2], 300),
        ] {
            let s = Setup::new(widths, Activation::Tanh, 0.4, rows);
            for pass in [Pass::Output, Pass::Training] {
                let fwd = s
                    .net
                    .forward(&s.layers(), s.samples(), pass, &cancel)
                    .unwrap();
                let n0 = widths[0];
                for i in 0..rows {
                    let want = naive_forward(&s.net, &s.params, &s.x[i * n0..(i + 1) * n0]);
                    let got = &fwd.output[i * want.len()..(i + 1) * want.len()];
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g - w).abs() < 1e-12 * w.abs().max(1.0), "{widths:?}");
                    }
                }
            }
            assert!(s.jacobian().iter().all(|v| v.is_finite()), "{widths:?}");
            check_vjp(&s);
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let s = Setup::new(&[4, 6, 2], Activation::Relu, 0.1, 3);
        let cancel = AtomicBool::new(false);
        let mut layers = s.layers();
        layers.pop();
        let err = s.net.forward(&layers, s.samples(), Pass::Output, &cancel);
        assert!(err.is_err());
        let x = vec![0.0; 15];
        let wrong = Samples::new(&x, 3, 5).unwrap();
        let msg = s
            .net
            .forward(&s.layers(), wrong, Pass::Output, &cancel)
            .err()
            .unwrap();
        assert!(msg.to_string().contains("input width is 4"));
        assert!(Network::new(vec![3], Activation::Relu, 0.1).is_err());
        assert!(Network::new(vec![3, 0, 1], Activation::Relu, 0.1).is_err());
    }
}
