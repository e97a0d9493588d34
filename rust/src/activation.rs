//! The nonlinearities σ and their derivatives σ'.
//!
//! Each activation here has a closed-form dual (see `duals.rs`); the scalar
//! σ and σ' are used by the tests (quadrature references) and by finite-width
//! networks.

use crate::error::{invalid, Result};
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// σ(x) = max(0, x).
    Relu,
    /// σ(x) = max(0, x) + slope · min(0, x).
    LeakyRelu { slope: f64 },
    /// σ(x) = |x|.
    Abs,
    /// σ(x) = erf(x).
    Erf,
    /// σ(x) = x Φ(x), Φ the standard normal CDF (exact, not the tanh approximation).
    Gelu,
    /// σ(x) = sin(x).
    Sin,
    /// σ(x) = cos(x).
    Cos,
    /// σ(x) = x.
    Identity,
}

impl Activation {
    /// The names accepted by [`Activation::from_name`].
    pub const NAMES: [&'static str; 8] = [
        "relu",
        "leaky_relu",
        "abs",
        "erf",
        "gelu",
        "sin",
        "cos",
        "identity",
    ];

    /// Looks an activation up by name; `param` is the slope of `leaky_relu`
    /// and is ignored by the others.
    pub fn from_name(name: &str, param: f64) -> Result<Self> {
        Ok(match name {
            "relu" => Activation::Relu,
            "leaky_relu" => {
                if !param.is_finite() {
                    return invalid(format!("leaky_relu slope must be finite, got {param}"));
                }
                Activation::LeakyRelu { slope: param }
            }
            "abs" => Activation::Abs,
            "erf" => Activation::Erf,
            "gelu" => Activation::Gelu,
            "sin" => Activation::Sin,
            "cos" => Activation::Cos,
            "identity" => Activation::Identity,
            _ => {
                return invalid(format!(
                    "unknown activation {name:?}; valid names: {}",
                    Self::NAMES.join(", ")
                ))
            }
        })
    }

    /// σ(x).
    pub fn sigma(&self, x: f64) -> f64 {
        match *self {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu { slope } => {
                if x > 0.0 {
                    x
                } else {
                    slope * x
                }
            }
            Activation::Abs => x.abs(),
            Activation::Erf => libm::erf(x),
            Activation::Gelu => x * normal_cdf(x),
            Activation::Sin => x.sin(),
            Activation::Cos => x.cos(),
            Activation::Identity => x,
        }
    }

    /// σ'(x); at the kinks of the piecewise-linear activations the right derivative.
    pub fn dsigma(&self, x: f64) -> f64 {
        match *self {
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu { slope } => {
                if x > 0.0 {
                    1.0
                } else {
                    slope
                }
            }
            Activation::Abs => {
                if x >= 0.0 {
                    1.0
                } else {
                    -1.0
                }
            }
            Activation::Erf => FRAC_2_SQRT_PI * (-x * x).exp(),
            Activation::Gelu => normal_cdf(x) + x * normal_pdf(x),
            Activation::Sin => x.cos(),
            Activation::Cos => -x.sin(),
            Activation::Identity => 1.0,
        }
    }
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x * FRAC_1_SQRT_2)
}

fn normal_pdf(x: f64) -> f64 {
    const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    INV_SQRT_2PI * (-0.5 * x * x).exp()
}

/// One activation of each kind, for tests.
#[cfg(test)]
pub(crate) const EVERY_KIND: [Activation; 8] = [
    Activation::Relu,
    Activation::LeakyRelu { slope: 0.2 },
    Activation::Abs,
    Activation::Erf,
    Activation::Gelu,
    Activation::Sin,
    Activation::Cos,
    Activation::Identity,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences() {
        for act in EVERY_KIND {
            for &x in &[-2.3, -0.7, 0.4, 1.9] {
                let h = 1e-6;
                let fd = (act.sigma(x + h) - act.sigma(x - h)) / (2.0 * h);
                assert!((fd - act.dsigma(x)).abs() < 1e-8, "{act:?} at {x}");
            }
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = Activation::from_name("tanhh", 0.0).unwrap_err();
        assert!(err.to_string().contains("relu, leaky_relu"));
        assert_eq!(
            Activation::from_name("leaky_relu", 0.1).unwrap(),
            Activation::LeakyRelu { slope: 0.1 }
        );
    }
}
