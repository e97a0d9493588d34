//! The nonlinearities σ and their derivatives σ'.
//!
//! The first eight have closed-form duals (`duals.rs`); tanh, sigmoid,
//! softplus and silu do not and go through the Hermite series of
//! `hermite.rs`. The scalar σ and σ' serve finite-width networks, the series
//! (which evaluates them at quadrature nodes) and the tests.

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
    /// σ(x) = tanh(x).
    Tanh,
    /// σ(x) = 1 / (1 + e^{−x}), the logistic function.
    Sigmoid,
    /// σ(x) = log(1 + eˣ).
    Softplus,
    /// σ(x) = x / (1 + e^{−x}) (also called swish).
    Silu,
}

impl Activation {
    /// Every built-in activation once, parametrised ones with their default
    /// parameter: the registry that names, the Python classes, the CLI's list
    /// and the tests are made from (a variant missing here fails the test
    /// `the_registry_lists_every_variant_once`).
    pub const ALL: [Activation; 12] = [
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.01 },
        Activation::Abs,
        Activation::Erf,
        Activation::Gelu,
        Activation::Sin,
        Activation::Cos,
        Activation::Identity,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Softplus,
        Activation::Silu,
    ];

    /// The name by which Python, the CLI and messages know the activation.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::Abs => "abs",
            Activation::Erf => "erf",
            Activation::Gelu => "gelu",
            Activation::Sin => "sin",
            Activation::Cos => "cos",
            Activation::Identity => "identity",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Softplus => "softplus",
            Activation::Silu => "silu",
        }
    }

    /// σ(x) as text, for documentation and the Python classes' docstrings.
    pub fn formula(&self) -> &'static str {
        match self {
            Activation::Relu => "max(0, x)",
            Activation::LeakyRelu { .. } => "max(0, x) + slope · min(0, x)",
            Activation::Abs => "|x|",
            Activation::Erf => "erf(x)",
            Activation::Gelu => "x Φ(x), Φ the standard normal CDF (exact GELU)",
            Activation::Sin => "sin(x)",
            Activation::Cos => "cos(x)",
            Activation::Identity => "x",
            Activation::Tanh => "tanh(x)",
            Activation::Sigmoid => "1 / (1 + e^{−x}), the logistic function",
            Activation::Softplus => "log(1 + eˣ)",
            Activation::Silu => "x / (1 + e^{−x}), also called swish",
        }
    }

    /// The name and value of the activation's one parameter, if it has one.
    pub fn param(&self) -> Option<(&'static str, f64)> {
        match *self {
            Activation::LeakyRelu { slope } => Some(("slope", slope)),
            _ => None,
        }
    }

    /// The same activation with parameter `value` (ignored by parameter-free
    /// ones); an error for a non-finite value.
    pub fn with_param(self, value: f64) -> Result<Self> {
        Ok(match self {
            Activation::LeakyRelu { .. } => {
                if !value.is_finite() {
                    return invalid(format!("leaky_relu slope must be finite, got {value}"));
                }
                Activation::LeakyRelu { slope: value }
            }
            other => other,
        })
    }

    /// The names of [`Activation::ALL`], in its order.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(Activation::name)
    }

    /// Looks an activation up by name; `param` is the parameter of those that
    /// have one (the slope of `leaky_relu`) and is ignored by the others.
    pub fn from_name(name: &str, param: f64) -> Result<Self> {
        match Self::ALL.iter().find(|a| a.name() == name) {
            Some(a) => a.with_param(param),
            None => invalid(format!(
                "unknown activation {name:?}; valid names: {}",
                Self::names().collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// Whether Σ and Σ̇ have closed forms (`duals.rs`); the others use the
    /// Hermite series. Decided by [`with_dual!`], the one place that maps an
    /// activation to its dual.
    pub fn has_closed_form(&self) -> bool {
        with_dual!(*self, |_dual| true, else false)
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
            Activation::Tanh => x.tanh(),
            // One exponential serves σ and σ' of these (see sigma_and_derivative).
            Activation::Sigmoid | Activation::Softplus | Activation::Silu => {
                self.sigma_and_derivative(x).0
            }
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
            Activation::Tanh => {
                let t = x.tanh();
                (1.0 - t) * (1.0 + t)
            }
            Activation::Sigmoid | Activation::Softplus | Activation::Silu => {
                self.sigma_and_derivative(x).1
            }
        }
    }
}

impl Activation {
    /// (σ(x), σ'(x)) together, sharing the transcendental work where the
    /// activations without a closed-form dual allow it (their series
    /// evaluate both at every quadrature node).
    pub fn sigma_and_derivative(&self, x: f64) -> (f64, f64) {
        match *self {
            Activation::Tanh => {
                // tanh|x| = (1 − e)/(1 + e), 1 − tanh² = 4e/(1 + e)², e = e^{−2|x|}:
                // one exponential, exact to rounding in absolute terms (all the
                // quadrature needs), and σ' keeps full relative accuracy in the tails.
                let e = (-2.0 * x.abs()).exp();
                let inv = 1.0 / (1.0 + e);
                ((1.0 - e) * inv * x.signum(), 4.0 * e * inv * inv)
            }
            Activation::Sigmoid => {
                let (s, c) = logistic_pair(x);
                (s, s * c)
            }
            Activation::Softplus => {
                // log(1 + eˣ) = max(x, 0) + log1p(e^{−|x|}) without overflow;
                // σ' = logistic(x).
                let e = (-x.abs()).exp();
                (x.max(0.0) + e.ln_1p(), logistic_split(e, x).0)
            }
            Activation::Silu => {
                let (s, c) = logistic_pair(x);
                (x * s, s + x * s * c)
            }
            // The rest have no shared work (and sigma/dsigma do not come back here).
            _ => (self.sigma(x), self.dsigma(x)),
        }
    }
}

/// (logistic(x), logistic(−x)) from one exponential, without overflow.
fn logistic_pair(x: f64) -> (f64, f64) {
    logistic_split((-x.abs()).exp(), x)
}

/// (logistic(x), logistic(−x)) given e = e^{−|x|}.
fn logistic_split(e: f64, x: f64) -> (f64, f64) {
    let (big, small) = (1.0 / (1.0 + e), e / (1.0 + e));
    if x >= 0.0 {
        (big, small)
    } else {
        (small, big)
    }
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x * FRAC_1_SQRT_2)
}

fn normal_pdf(x: f64) -> f64 {
    const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
    INV_SQRT_2PI * (-0.5 * x * x).exp()
}

/// The dual of each activation: calls `$body` with `$dual` bound to the
/// concrete closed-form dual of `$activation` (`duals.rs`), so that generic
/// code is monomorphised (and vectorised) per activation; `$otherwise` for the
/// activations that go through the Hermite series. A new activation gets its
/// arm here, next to its name and σ above.
macro_rules! with_dual {
    ($activation:expr, |$dual:ident| $body:expr, else $otherwise:expr) => {{
        use $crate::activation::Activation as A;
        use $crate::duals::*;
        match $activation {
            A::Relu => {
                let $dual = Relu;
                $body
            }
            A::LeakyRelu { slope } => {
                let $dual = PiecewiseLinear {
                    neg: slope,
                    pos: 1.0,
                };
                $body
            }
            A::Abs => {
                let $dual = PiecewiseLinear {
                    neg: -1.0,
                    pos: 1.0,
                };
                $body
            }
            A::Erf => {
                let $dual = Erf;
                $body
            }
            A::Gelu => {
                let $dual = Gelu;
                $body
            }
            A::Sin => {
                let $dual = Trigonometric { cosine: false };
                $body
            }
            A::Cos => {
                let $dual = Trigonometric { cosine: true };
                $body
            }
            A::Identity => {
                let $dual = Identity;
                $body
            }
            A::Tanh | A::Sigmoid | A::Softplus | A::Silu => $otherwise,
        }
    }};
}
pub(crate) use with_dual;

/// One activation of each kind, for tests: [`Activation::ALL`] with a leaky
/// ReLU slope far from the default.
#[cfg(test)]
pub(crate) const EVERY_KIND: [Activation; 12] = {
    let mut kinds = Activation::ALL;
    kinds[1] = Activation::LeakyRelu { slope: 0.2 };
    kinds
};

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
    fn fused_evaluation_agrees_with_sigma_and_dsigma() {
        for act in EVERY_KIND {
            for &x in &[-40.0, -2.3, -0.7, 0.0, 0.4, 1.9, 35.0] {
                let (s, d) = act.sigma_and_derivative(x);
                assert!(
                    (s - act.sigma(x)).abs() <= 1e-15 * s.abs().max(1.0),
                    "{act:?} σ({x})"
                );
                assert!(
                    (d - act.dsigma(x)).abs() <= 1e-15 * d.abs().max(1.0),
                    "{act:?} σ'({x})"
                );
            }
        }
    }

    #[test]
    fn the_registry_lists_every_variant_once() {
        // Exhaustive: a new variant must be given a place here.
        fn place(a: &Activation) -> usize {
            match a {
                Activation::Relu => 0,
                Activation::LeakyRelu { .. } => 1,
                Activation::Abs => 2,
                Activation::Erf => 3,
                Activation::Gelu => 4,
                Activation::Sin => 5,
                Activation::Cos => 6,
                Activation::Identity => 7,
                Activation::Tanh => 8,
                Activation::Sigmoid => 9,
                Activation::Softplus => 10,
                Activation::Silu => 11,
            }
        }
        let places: Vec<usize> = Activation::ALL.iter().map(place).collect();
        assert_eq!(places, (0..Activation::ALL.len()).collect::<Vec<_>>());
        let mut names: Vec<&str> = Activation::names().collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Activation::ALL.len());
        for a in Activation::ALL {
            assert_eq!(Activation::from_name(a.name(), 0.01).unwrap(), a);
        }
        let closed: Vec<&str> = Activation::ALL
            .iter()
            .filter(|a| a.has_closed_form())
            .map(|a| a.name())
            .collect();
        assert_eq!(
            closed,
            [
                "relu",
                "leaky_relu",
                "abs",
                "erf",
                "gelu",
                "sin",
                "cos",
                "identity"
            ]
        );
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
