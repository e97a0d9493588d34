//! Gradient descent on the parameters, one step at a time:
//!
//! ```text
//! f = f_θ(X),   d = direction(f),   θ ← θ + η · (1/N) Σ_i J(x_i)ᵀ d_i
//! ```
//!
//! One forward pass (which keeps σ' for the backward pass) and one backward
//! pass that adds the step into W and b inside the GEMMs. For the built-in
//! costs the direction is computed here too ([`Cost`]), so a step crosses no
//! language boundary; a caller's own direction (Theorem 2 allows any) comes
//! through the closure.

use crate::error::{invalid, Error, Result};
use crate::network::{Layer, LayerMut, Network, Pass, Sink};
use crate::real::Real;
use crate::samples::Samples;
use std::sync::atomic::AtomicBool;

/// A cost C(f) whose descent direction d = −∂C/∂f the core computes.
#[derive(Debug, Clone, Copy)]
pub enum Cost<'a> {
    /// C = ½‖f − y‖²_{p_in}: d = y − f, evaluated in f64 and rounded to the
    /// parameters' type. `y` is (N, n_L) row-major.
    Mse { y: &'a [f64] },
}

impl Cost<'_> {
    /// d = −∂C/∂f at the outputs `f` (N, n_L) row-major.
    pub fn direction<T: Real>(&self, f: &[T]) -> Result<Vec<T>> {
        match self {
            Cost::Mse { y } => {
                if y.len() != f.len() {
                    return invalid(format!(
                        "the targets hold {} values for {} outputs",
                        y.len(),
                        f.len()
                    ));
                }
                // −(f − y), as the derivative f − y negated: the same bits.
                Ok(f.iter()
                    .zip(y.iter())
                    .map(|(f, y)| T::from_f64(-(f.to_f64() - y)))
                    .collect())
            }
        }
    }
}

impl Network {
    /// One step of gradient descent in place: f_θ(x) into `f` (N × n_L), then
    /// d = `direction(f)` and θ ← θ + lr · (1/N) Σ_i J(x_i)ᵀ d_i on `params`.
    /// `f` holds the outputs before the update.
    pub fn step<T: Real, E: From<Error>>(
        &self,
        params: &mut [LayerMut<'_, T>],
        x: Samples<'_, T>,
        lr: f64,
        f: &mut [T],
        direction: impl FnOnce(&[T]) -> std::result::Result<Vec<T>, E>,
        cancel: &AtomicBool,
    ) -> std::result::Result<(), E> {
        if !lr.is_finite() {
            return Err(Error::Invalid("lr must be finite".into()).into());
        }
        let fwd = {
            let layers: Vec<Layer<'_, T>> = params
                .iter()
                .map(|p| Layer {
                    weight: &*p.weight,
                    bias: &*p.bias,
                })
                .collect();
            self.forward(&layers, x, Pass::Training, cancel)?
        };
        if f.len() != fwd.output.len() {
            return Err(Error::Invalid("out f has the wrong size".into()).into());
        }
        f.copy_from_slice(&fwd.output);
        let d = direction(f)?;
        if d.len() != f.len() {
            return Err(Error::Invalid("the direction has the wrong size".into()).into());
        }
        let sink = Sink::Update { params, lr };
        Ok(self.vjp(&fwd, &d, sink, cancel)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;
    use crate::init::standard_normal;

    /// A step with the MSE cost equals a forward pass, d = y − f and a vjp
    /// added with the learning rate, to the bit.
    #[test]
    fn an_mse_step_is_forward_direction_and_vjp() {
        let net = Network::new(vec![3, 5, 2], Activation::Tanh, 0.3).unwrap();
        let cancel = AtomicBool::new(false);
        let mut w: Vec<Vec<f64>> = vec![vec![0.0; 15], vec![0.0; 10]];
        let mut b: Vec<Vec<f64>> = vec![vec![0.0; 5], vec![0.0; 2]];
        for (l, (w, b)) in w.iter_mut().zip(b.iter_mut()).enumerate() {
            standard_normal(7, 2 * l as u64, w).unwrap();
            standard_normal(7, 2 * l as u64 + 1, b).unwrap();
        }
        let mut x = vec![0.0; 12];
        standard_normal(8, 0, &mut x).unwrap();
        let mut y = vec![0.0; 8];
        standard_normal(9, 0, &mut y).unwrap();
        let x = Samples::new(&x, 4, 3).unwrap();
        let lr = 0.7;

        // By hand: forward, d = −(f − y), gradient, θ + lr · g.
        let layers: Vec<Layer<'_, f64>> = w
            .iter()
            .zip(&b)
            .map(|(w, b)| Layer { weight: w, bias: b })
            .collect();
        let fwd = net.forward(&layers, x, Pass::Training, &cancel).unwrap();
        let d: Vec<f64> = fwd.output.iter().zip(&y).map(|(f, y)| -(f - y)).collect();
        let mut gw = [vec![0.0; 15], vec![0.0; 10]];
        let mut gb = [vec![0.0; 5], vec![0.0; 2]];
        let mut grads: Vec<LayerMut<'_, f64>> = gw
            .iter_mut()
            .zip(gb.iter_mut())
            .map(|(w, b)| LayerMut { weight: w, bias: b })
            .collect();
        let sink = Sink::Store {
            params: &layers,
            grads: &mut grads,
        };
        net.vjp(&fwd, &d, sink, &cancel).unwrap();
        let f_before = fwd.output.clone();

        let mut f = vec![0.0; 8];
        let mut params: Vec<LayerMut<'_, f64>> = w
            .iter_mut()
            .zip(b.iter_mut())
            .map(|(w, b)| LayerMut { weight: w, bias: b })
            .collect();
        let cost = Cost::Mse { y: &y };
        net.step(&mut params, x, lr, &mut f, |f| cost.direction(f), &cancel)
            .unwrap();
        assert_eq!(f, f_before);
        drop(params);
        let mut w0 = [vec![0.0; 15], vec![0.0; 10]];
        let mut b0 = [vec![0.0; 5], vec![0.0; 2]];
        for (l, (w, b)) in w0.iter_mut().zip(b0.iter_mut()).enumerate() {
            standard_normal(7, 2 * l as u64, w).unwrap();
            standard_normal(7, 2 * l as u64 + 1, b).unwrap();
        }
        for l in 0..2 {
            for (i, v) in w[l].iter().enumerate() {
                let want = w0[l][i] + lr * gw[l][i];
                assert!(
                    (v - want).abs() <= 1e-14 * want.abs().max(1.0),
                    "W[{l}][{i}]"
                );
            }
            for (i, v) in b[l].iter().enumerate() {
                let want = b0[l][i] + lr * gb[l][i];
                assert!(
                    (v - want).abs() <= 1e-14 * want.abs().max(1.0),
                    "b[{l}][{i}]"
                );
            }
        }
    }

    #[test]
    fn mse_targets_of_the_wrong_size_are_an_error() {
        let y = [1.0, 2.0];
        let f = [0.5f32; 3];
        assert!(Cost::Mse { y: &y }.direction(&f).is_err());
    }
}
