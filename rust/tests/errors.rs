//! Every error path of the core's public API returns `Err(ntkfast::Error::…)`
//! with a message that names the problem and the offending values, never a
//! panic.
//!
//! The last group covers misuse that once panicked or was accepted silently:
//! forward passes, cotangents and parameters of different networks or
//! batches, overflowing shapes, absurd depths, and literals of the public
//! structs that bypass their checking constructors.

use ntkfast::init::standard_normal;
use ntkfast::pool;
use ntkfast::{empirical_ntk, Contraction, Features, Pointwise, Real, Report, Sigma};
use ntkfast::{Activation, Error, LimitKernel, Outputs, Result, Samples};
use ntkfast::{Forward, Layer, LayerMut, Network, Pass, Sink};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn go() -> AtomicBool {
    AtomicBool::new(false)
}

fn stop() -> AtomicBool {
    AtomicBool::new(true)
}

/// The message of an `Error::Invalid`; fails the test on anything else.
#[track_caller]
fn invalid<T>(r: Result<T>) -> String {
    match r {
        Err(Error::Invalid(msg)) => {
            assert!(!msg.is_empty(), "empty error message");
            msg
        }
        Err(other) => panic!("expected Error::Invalid, got {other:?}"),
        Ok(_) => panic!("expected Error::Invalid, got Ok"),
    }
}

#[track_caller]
fn cancelled<T>(r: Result<T>) {
    match r {
        Err(Error::Cancelled) => {}
        Err(other) => panic!("expected Error::Cancelled, got {other:?}"),
        Ok(_) => panic!("expected Error::Cancelled, got Ok"),
    }
}

#[track_caller]
fn mentions(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            msg.contains(part),
            "message {msg:?} does not mention {part:?}"
        );
    }
}

/// Both kernels between `x1` and `x2` (x1 with itself when None) into
/// correctly sized outputs.
fn compute<T: Real>(
    k: &LimitKernel<'_>,
    x1: Samples<'_, T>,
    x2: Option<Samples<'_, T>>,
    cancel: &AtomicBool,
) -> Result<Report> {
    let n = x1.rows() * x2.map_or(x1.rows(), |s| s.rows());
    let (mut nngp, mut ntk) = (vec![T::default(); n], vec![T::default(); n]);
    let out = Outputs {
        nngp: Some(&mut nngp),
        ntk: Some(&mut ntk),
    };
    k.compute(x1, x2, out, cancel)
}

fn values(n: usize, salt: usize) -> Vec<f64> {
    (0..n)
        .map(|i| ((i * 7919 + salt * 104_729) % 97) as f64 / 48.0 - 1.0)
        .collect()
}

/// A small network with deterministic parameters and inputs.
struct Net {
    net: Network,
    params: Vec<(Vec<f64>, Vec<f64>)>,
    x: Vec<f64>,
    rows: usize,
}

impl Net {
    fn new(widths: &[usize], rows: usize) -> Net {
        let net = Network::new(widths.to_vec(), Activation::Tanh, 0.3).unwrap();
        let params = widths
            .windows(2)
            .enumerate()
            .map(|(l, w)| (values(w[0] * w[1], 2 * l), values(w[1], 2 * l + 1)))
            .collect();
        Net {
            net,
            params,
            x: values(rows * widths[0], 99),
            rows,
        }
    }

    fn layers(&self) -> Vec<Layer<'_, f64>> {
        self.params
            .iter()
            .map(|(weight, bias)| Layer { weight, bias })
            .collect()
    }

    fn samples(&self) -> Samples<'_, f64> {
        Samples::new(&self.x, self.rows, self.net.widths()[0]).unwrap()
    }

    fn forward(&self, pass: Pass) -> Forward<'_, f64> {
        self.net
            .forward(&self.layers(), self.samples(), pass, &go())
            .unwrap()
    }

    fn cotangents(&self, fwd: &Forward<'_, f64>) -> Vec<Vec<f64>> {
        self.net.cotangents(&self.layers(), fwd, &go()).unwrap()
    }

    /// Zeroed storage shaped like the parameters.
    fn zeros(&self) -> Vec<(Vec<f64>, Vec<f64>)> {
        self.params
            .iter()
            .map(|(w, b)| (vec![0.0; w.len()], vec![0.0; b.len()]))
            .collect()
    }

    fn jacobian_len(&self) -> usize {
        self.rows * self.net.outputs() * self.net.num_params()
    }
}

fn layers_mut(storage: &mut [(Vec<f64>, Vec<f64>)]) -> Vec<LayerMut<'_, f64>> {
    storage
        .iter_mut()
        .map(|(weight, bias)| LayerMut { weight, bias })
        .collect()
}

/// A caller's σ that always fails with `error`.
struct Failing {
    error: Error,
    concurrent: bool,
}

impl Pointwise for Failing {
    fn eval(&self, _: &[f64], _: &mut [f64], _: &mut [f64]) -> Result<()> {
        Err(self.error.clone())
    }
    fn concurrent(&self) -> bool {
        self.concurrent
    }
}

/// A caller's σ with constant σ and σ' (NaN or ∞ to test the finiteness check).
struct Constant {
    sigma: f64,
    dsigma: f64,
}

impl Pointwise for Constant {
    fn eval(&self, _: &[f64], s: &mut [f64], d: &mut [f64]) -> Result<()> {
        s.fill(self.sigma);
        d.fill(self.dsigma);
        Ok(())
    }
}

/// σ(x) = c·x: finite everywhere, but it multiplies the variance by c².
struct Scaled(f64);

impl Pointwise for Scaled {
    fn eval(&self, x: &[f64], s: &mut [f64], d: &mut [f64]) -> Result<()> {
        for ((x, s), d) in x.iter().zip(s).zip(d) {
            *s = self.0 * x;
            *d = self.0;
        }
        Ok(())
    }
}

/// σ = tanh, except that the call number `fail_at` (0-based) fails.
struct FailsLater {
    calls: AtomicUsize,
    fail_at: usize,
}

impl Pointwise for FailsLater {
    fn eval(&self, x: &[f64], s: &mut [f64], d: &mut [f64]) -> Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.fail_at {
            return Err(Error::Invalid("σ failed on a later call".into()));
        }
        Activation::Tanh.eval(x, s, d)
    }
}

// ---------------------------------------------------------------------------
// The error type
// ---------------------------------------------------------------------------

#[test]
fn errors_display_their_message_and_are_std_errors() {
    assert_eq!(Error::Cancelled.to_string(), "computation cancelled");
    assert_eq!(Error::Invalid("bad shape".into()).to_string(), "bad shape");
    assert_eq!(Error::Memory("too big".into()).to_string(), "too big");
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(Error::Invalid("x".into()));
    assert_eq!(boxed.to_string(), "x");
}

// ---------------------------------------------------------------------------
// LimitKernel::new and Samples::new
// ---------------------------------------------------------------------------

#[test]
fn limit_kernel_rejects_depth_zero() {
    let msg = invalid(LimitKernel::new(0, Activation::Relu, 0.1));
    mentions(&msg, &["depth must be at least 1", "got 0"]);
    // Also with a caller's σ.
    let custom = Scaled(1.0);
    let msg = invalid(LimitKernel::new(0, Sigma::Custom(&custom), 0.1));
    mentions(&msg, &["depth must be at least 1"]);
}

#[test]
fn limit_kernel_rejects_non_finite_beta() {
    for (beta, shown) in [
        (f64::NAN, "NaN"),
        (f64::INFINITY, "inf"),
        (f64::NEG_INFINITY, "-inf"),
    ] {
        let msg = invalid(LimitKernel::new(2, Activation::Relu, beta));
        mentions(&msg, &["beta must be finite", shown]);
    }
}

#[test]
fn samples_must_be_non_empty() {
    for (rows, cols) in [(0, 3), (3, 0), (0, 0)] {
        let msg = invalid(Samples::<f64>::new(&[], rows, cols));
        mentions(&msg, &["non-empty", &format!("({rows}, {cols})")]);
        let msg = invalid(Samples::<f32>::new(&[], rows, cols));
        mentions(&msg, &["non-empty"]);
    }
}

#[test]
fn samples_must_match_their_shape() {
    let x = [1.0; 5];
    let msg = invalid(Samples::new(&x, 2, 3));
    mentions(&msg, &["5 values", "(2, 3)"]);
    let msg = invalid(Samples::new(&x, 1, 4));
    mentions(&msg, &["5 values", "(1, 4)"]);
    let x32 = [1.0f32; 7];
    let msg = invalid(Samples::new(&x32, 2, 3));
    mentions(&msg, &["7 values", "(2, 3)"]);
}

// ---------------------------------------------------------------------------
// LimitKernel::compute / diagonal
// ---------------------------------------------------------------------------

#[test]
fn compute_rejects_a_feature_mismatch() {
    let k = LimitKernel::new(3, Activation::Relu, 0.1).unwrap();
    let (a, b) = (values(4, 0), values(6, 1));
    let x1 = Samples::new(&a, 2, 2).unwrap();
    let x2 = Samples::new(&b, 2, 3).unwrap();
    let msg = invalid(compute(&k, x1, Some(x2), &go()));
    mentions(&msg, &["x1 has 2 features but x2 has 3"]);
    // float32, and a series activation (the check comes before any work).
    let (a32, b32): (Vec<f32>, Vec<f32>) = (
        a.iter().map(|&v| v as f32).collect(),
        b.iter().map(|&v| v as f32).collect(),
    );
    let k = LimitKernel::new(2, Activation::Tanh, 0.1).unwrap();
    let x1 = Samples::new(&a32, 2, 2).unwrap();
    let x2 = Samples::new(&b32, 2, 3).unwrap();
    let msg = invalid(compute(&k, x1, Some(x2), &go()));
    mentions(&msg, &["x1 has 2 features but x2 has 3"]);
}

#[test]
fn compute_rejects_wrong_output_lengths() {
    let k = LimitKernel::new(2, Activation::Erf, 0.1).unwrap();
    let (a, b) = (values(4, 0), values(6, 1));
    let x1 = Samples::new(&a, 2, 2).unwrap();
    let x2 = Samples::new(&b, 3, 2).unwrap();
    let cancel = go();
    let (mut right, mut short, mut long) = (vec![0.0; 6], vec![0.0; 5], vec![0.0; 9]);
    let msg = invalid(k.compute(
        x1,
        Some(x2),
        Outputs {
            nngp: Some(&mut short),
            ntk: Some(&mut right),
        },
        &cancel,
    ));
    mentions(&msg, &["output nngp", "2 x 3", "has 5"]);
    let msg = invalid(k.compute(
        x1,
        Some(x2),
        Outputs {
            nngp: None,
            ntk: Some(&mut long),
        },
        &cancel,
    ));
    mentions(&msg, &["output ntk", "2 x 3", "has 9"]);
    // Symmetric: N × N.
    let msg = invalid(k.compute(
        x1,
        None,
        Outputs {
            nngp: Some(&mut right),
            ntk: None,
        },
        &cancel,
    ));
    mentions(&msg, &["output nngp", "2 x 2", "has 6"]);
    let mut empty: Vec<f64> = Vec::new();
    let msg = invalid(k.compute(
        x1,
        None,
        Outputs {
            nngp: None,
            ntk: Some(&mut empty),
        },
        &cancel,
    ));
    mentions(&msg, &["output ntk", "2 x 2", "has 0"]);
    // float32 outputs.
    let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    let x32 = Samples::new(&a32, 2, 2).unwrap();
    let mut short32 = vec![0.0f32; 3];
    let msg = invalid(k.compute(
        x32,
        None,
        Outputs {
            nngp: Some(&mut short32),
            ntk: None,
        },
        &cancel,
    ));
    mentions(&msg, &["output nngp", "2 x 2", "has 3"]);
}

#[test]
fn overflowing_variances_are_errors_in_f64() {
    let k = LimitKernel::new(3, Activation::Relu, 0.1).unwrap();
    // Row 1 of x1 overflows to ∞ already in Σ⁽¹⁾.
    let x = [1.0, 1e160];
    let s = Samples::new(&x, 2, 1).unwrap();
    let msg = invalid(compute(&k, s, None, &go()));
    mentions(
        &msg,
        &[
            "overflows",
            "Σ⁽¹⁾",
            "x1 row 1",
            "inf",
            "limit 1e150",
            "scale the inputs",
        ],
    );
    // Beyond the limit but finite (1e152 > 1e150), and on the x2 side.
    let ok = [1.0, 2.0];
    let big = [0.5, 1e76];
    let x1 = Samples::new(&ok, 2, 1).unwrap();
    let x2 = Samples::new(&big, 2, 1).unwrap();
    let msg = invalid(compute(&k, x1, Some(x2), &go()));
    mentions(&msg, &["overflows", "x2 row 1", "e152"]);
    // A huge (finite) beta overflows too.
    let k = LimitKernel::new(2, Activation::Gelu, 1e80).unwrap();
    let msg = invalid(compute(&k, x1, None, &go()));
    mentions(&msg, &["overflows", "x1 row 0", "beta"]);
    // Non-finite inputs.
    let k = LimitKernel::new(2, Activation::Relu, 0.0).unwrap();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let x = [0.3, 0.2, bad, 0.1];
        let s = Samples::new(&x, 2, 2).unwrap();
        let msg = invalid(compute(&k, s, None, &go()));
        mentions(&msg, &["overflows", "x1 row 1"]);
    }
}

#[test]
fn an_overflowing_ntk_diagonal_is_an_error() {
    // Identity, β = 0: every Σ⁽ˡ⁾ = q = 9e149 stays below 1e150, but
    // Θ⁽²⁾ = Θ⁽¹⁾ + Σ⁽²⁾ = 1.8e150 does not.
    let k = LimitKernel::new(2, Activation::Identity, 0.0).unwrap();
    let x = [(9e149f64).sqrt()];
    let s = Samples::new(&x, 1, 1).unwrap();
    let msg = invalid(compute(&k, s, None, &go()));
    mentions(&msg, &["overflows", "Θ of x1 row 0"]);
    // One layer less is fine.
    let k = LimitKernel::new(1, Activation::Identity, 0.0).unwrap();
    compute(&k, s, None, &go()).unwrap();
}

#[test]
fn overflowing_variances_are_errors_in_f32() {
    let k = LimitKernel::new(2, Activation::Relu, 0.1).unwrap();
    let x = [1.0f32, 1e20];
    let s = Samples::new(&x, 2, 1).unwrap();
    let msg = invalid(compute(&k, s, None, &go()));
    mentions(&msg, &["overflows", "x1 row 1", "e40", "limit 1e30"]);
    // f32 has the lower limit: q = 1e32 is fine in f64 but not in f32.
    let x64 = [1e16f64];
    let x32 = [1e16f32];
    compute(&k, Samples::new(&x64, 1, 1).unwrap(), None, &go()).unwrap();
    let msg = invalid(compute(&k, Samples::new(&x32, 1, 1).unwrap(), None, &go()));
    mentions(&msg, &["overflows", "limit 1e30"]);
    for bad in [f32::NAN, f32::INFINITY] {
        let x = [bad, 1.0];
        let s = Samples::new(&x, 1, 2).unwrap();
        let msg = invalid(compute(&k, s, None, &go()));
        mentions(&msg, &["overflows", "x1 row 0"]);
    }
    // The x2 side in f32.
    let (a, b) = ([1.0f32, 2.0], [3.0f32, 1e25]);
    let msg = invalid(compute(
        &k,
        Samples::new(&a, 2, 1).unwrap(),
        Some(Samples::new(&b, 2, 1).unwrap()),
        &go(),
    ));
    mentions(&msg, &["x2 row 1"]);
}

#[test]
fn series_activations_reject_variances_above_the_limit() {
    // tanh goes through the Hermite series: q = 4e4 > 1e4.
    let k = LimitKernel::new(2, Activation::Tanh, 0.0).unwrap();
    let x = [1.0, 200.0];
    let s = Samples::new(&x, 2, 1).unwrap();
    let msg = invalid(compute(&k, s, None, &go()));
    mentions(
        &msg,
        &["sample 1", "4e4", "1e4", "Hermite", "scale the inputs"],
    );
    let msg = invalid(k.diagonal(s));
    mentions(&msg, &["sample 1", "Hermite"]);
    // f32, and on the x2 side.
    let (a, b) = ([1.0f32], [0.5f32, 300.0]);
    let msg = invalid(compute(
        &k,
        Samples::new(&a, 1, 1).unwrap(),
        Some(Samples::new(&b, 2, 1).unwrap()),
        &go(),
    ));
    mentions(&msg, &["sample 1", "9e4", "Hermite"]);
    // Non-finite inputs with a series activation.
    let k = LimitKernel::new(3, Activation::Softplus, 0.0).unwrap();
    let x = [f64::NAN, 1.0];
    let msg = invalid(compute(&k, Samples::new(&x, 2, 1).unwrap(), None, &go()));
    mentions(&msg, &["sample 0", "NaN"]);
}

#[test]
fn a_failing_pointwise_passes_its_error_through() {
    let cancel = go();
    for concurrent in [false, true] {
        for error in [
            Error::Invalid("σ is broken".into()),
            Error::Memory("σ ran out of memory".into()),
            Error::Cancelled,
        ] {
            let sigma = Failing {
                error: error.clone(),
                concurrent,
            };
            // Through the limit kernel, symmetric and not, and its diagonal.
            let k = LimitKernel::new(3, Sigma::Custom(&sigma), 0.1).unwrap();
            let x = values(6, 3);
            let s = Samples::new(&x, 3, 2).unwrap();
            assert_eq!(compute(&k, s, None, &cancel).unwrap_err(), error);
            assert_eq!(compute(&k, s, Some(s), &cancel).unwrap_err(), error);
            assert_eq!(k.diagonal(s).unwrap_err(), error);
        }
    }
}

#[test]
fn a_pointwise_failing_on_a_later_call_is_an_error() {
    // The first layer's series succeeds; a later call fails.
    for fail_at in [1, 2, 3] {
        let sigma = FailsLater {
            calls: AtomicUsize::new(0),
            fail_at,
        };
        let k = LimitKernel::new(4, Sigma::Custom(&sigma), 0.2).unwrap();
        let x = values(8, 4);
        let s = Samples::new(&x, 4, 2).unwrap();
        let msg = invalid(compute(&k, s, None, &go()));
        mentions(&msg, &["σ failed on a later call"]);
    }
}

#[test]
fn a_non_finite_pointwise_is_an_error() {
    let cancel = go();
    for (sigma, dsigma) in [
        (f64::NAN, 1.0),
        (1.0, f64::NAN),
        (f64::INFINITY, 0.0),
        (0.0, f64::NEG_INFINITY),
    ] {
        let p = Constant { sigma, dsigma };
        let k = LimitKernel::new(2, Sigma::Custom(&p), 0.0).unwrap();
        let x = [0.4, -0.3, 0.9, 0.1];
        let s = Samples::new(&x, 2, 2).unwrap();
        let msg = invalid(compute(&k, s, None, &cancel));
        mentions(&msg, &["not finite"]);
        let x32 = [0.4f32, -0.3, 0.9, 0.1];
        let msg = invalid(compute(
            &k,
            Samples::new(&x32, 2, 2).unwrap(),
            None,
            &cancel,
        ));
        mentions(&msg, &["not finite"]);
    }
}

#[test]
fn a_pointwise_that_inflates_the_variance_fails_at_a_deeper_layer() {
    // σ(x) = 1000 x: Σ⁽²⁾ = 1e6 Σ⁽¹⁾ exceeds the series' limit at layer 3.
    let sigma = Scaled(1000.0);
    let x = [1.0, -1.0];
    let s = Samples::new(&x, 1, 2).unwrap();
    let k = LimitKernel::new(2, Sigma::Custom(&sigma), 0.0).unwrap();
    compute(&k, s, None, &go()).unwrap();
    let k = LimitKernel::new(3, Sigma::Custom(&sigma), 0.0).unwrap();
    let msg = invalid(compute(&k, s, None, &go()));
    mentions(&msg, &["sample 0", "Hermite"]);
}

// ---------------------------------------------------------------------------
// Activation::from_name and Contraction::from_name
// ---------------------------------------------------------------------------

#[test]
fn unknown_activation_names_list_the_valid_ones() {
    for name in ["tanhh", "ReLU", "", "relu ", "leaky-relu", "swish"] {
        let msg = invalid(Activation::from_name(name, 0.1));
        mentions(&msg, &["unknown activation", &format!("{name:?}")]);
        for valid in Activation::names() {
            mentions(&msg, &[valid]);
        }
    }
    // Every listed name is accepted.
    for name in Activation::names() {
        Activation::from_name(name, 0.1).unwrap();
    }
}

#[test]
fn leaky_relu_needs_a_finite_slope() {
    for (slope, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
        let msg = invalid(Activation::from_name("leaky_relu", slope));
        mentions(&msg, &["leaky_relu slope must be finite", shown]);
    }
    // The others ignore the parameter.
    assert_eq!(
        Activation::from_name("relu", f64::NAN).unwrap(),
        Activation::Relu
    );
}

#[test]
fn unknown_contraction_names_are_errors() {
    for name in ["Trace", "", "diag", "full "] {
        let msg = invalid(Contraction::from_name(name));
        mentions(
            &msg,
            &["'trace', 'diagonal' or 'full'", &format!("{name:?}")],
        );
    }
    for name in ["trace", "diagonal", "full"] {
        Contraction::from_name(name).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Network::new, check_params, forward
// ---------------------------------------------------------------------------

#[test]
fn networks_need_two_or_more_widths() {
    let msg = invalid(Network::new(vec![], Activation::Relu, 0.1));
    mentions(&msg, &["at least two entries", "[]"]);
    let msg = invalid(Network::new(vec![3], Activation::Relu, 0.1));
    mentions(&msg, &["at least two entries", "[3]"]);
}

#[test]
fn networks_reject_zero_widths_and_non_finite_beta() {
    for (widths, index) in [
        (vec![0, 2], 0),
        (vec![3, 0, 1], 1),
        (vec![3, 4, 0], 2),
        (vec![2, 2, 0, 0], 2),
    ] {
        let msg = invalid(Network::new(widths, Activation::Relu, 0.1));
        mentions(&msg, &[&format!("widths[{index}] must be at least 1")]);
    }
    for beta in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let msg = invalid(Network::new(vec![2, 2], Activation::Relu, beta));
        mentions(&msg, &["beta must be finite"]);
    }
}

#[test]
fn parameters_of_the_wrong_count_are_errors() {
    let s = Net::new(&[4, 6, 2], 3);
    let mut layers = s.layers();
    let extra = layers[1];
    layers.pop();
    let msg = invalid(s.net.check_params(&layers));
    mentions(&msg, &["expected parameters for 2 layers, got 1"]);
    let msg = invalid(s.net.forward(&layers, s.samples(), Pass::Output, &go()));
    mentions(&msg, &["expected parameters for 2 layers, got 1"]);
    layers.push(extra);
    layers.push(extra);
    let msg = invalid(s.net.check_params(&layers));
    mentions(&msg, &["got 3"]);
    let msg = invalid(s.net.check_params::<f64>(&[]));
    mentions(&msg, &["got 0"]);
}

#[test]
fn parameters_of_the_wrong_shape_are_errors() {
    let s = Net::new(&[4, 6, 2], 3);
    let (w_short, b_long) = (vec![0.0; 11], vec![0.0; 3]);
    for (l, weight, bias) in [
        (0, &s.params[1].0, &s.params[0].1), // W of layer 1 in layer 0
        (1, &w_short, &s.params[1].1),
        (1, &s.params[1].0, &b_long),
    ] {
        let mut layers = s.layers();
        layers[l] = Layer { weight, bias };
        let msg = invalid(s.net.check_params(&layers));
        let want = if l == 0 {
            "layer 0: expected W of shape (6, 4) and b of shape (6,)"
        } else {
            "layer 1: expected W of shape (2, 6) and b of shape (2,)"
        };
        mentions(&msg, &[want]);
        for pass in [Pass::Output, Pass::Backprop, Pass::Training] {
            let msg = invalid(s.net.forward(&layers, s.samples(), pass, &go()));
            mentions(&msg, &[want]);
        }
    }
    // Layers swapped.
    let layers = vec![s.layers()[1], s.layers()[0]];
    let msg = invalid(s.net.check_params(&layers));
    mentions(&msg, &["layer 0"]);
    // float32.
    let (w, b) = (vec![0.0f32; 24], vec![0.0f32; 5]);
    let layers32 = [
        Layer {
            weight: &w[..],
            bias: &b[..],
        },
        Layer {
            weight: &w[..12],
            bias: &b[..2],
        },
    ];
    let msg = invalid(s.net.check_params(&layers32));
    mentions(&msg, &["layer 0"]);
}

#[test]
fn inputs_of_the_wrong_width_are_errors() {
    let s = Net::new(&[4, 6, 2], 3);
    let x = values(15, 7);
    let wrong = Samples::new(&x, 3, 5).unwrap();
    for pass in [Pass::Output, Pass::Backprop, Pass::Training] {
        let msg = invalid(s.net.forward(&s.layers(), wrong, pass, &go()));
        mentions(&msg, &["inputs have 5 features", "input width is 4"]);
    }
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let (w, b) = (vec![0.5f32; 24], vec![0.0f32; 6]);
    let (w2, b2) = (vec![0.5f32; 12], vec![0.0f32; 2]);
    let layers32 = [
        Layer {
            weight: &w[..],
            bias: &b[..],
        },
        Layer {
            weight: &w2[..],
            bias: &b2[..],
        },
    ];
    let wrong32 = Samples::new(&x32, 5, 3).unwrap();
    let msg = invalid(s.net.forward(&layers32, wrong32, Pass::Output, &go()));
    mentions(&msg, &["inputs have 3 features", "input width is 4"]);
}

// ---------------------------------------------------------------------------
// Network::vjp, jacobian and empirical_ntk
// ---------------------------------------------------------------------------

#[test]
fn vjp_rejects_d_of_the_wrong_shape() {
    let s = Net::new(&[4, 6, 2], 3);
    let fwd = s.forward(Pass::Backprop);
    let layers = s.layers();
    for len in [0, 5, 7, 3] {
        let d = vec![1.0; len];
        let mut storage = s.zeros();
        let mut grads = layers_mut(&mut storage);
        let sink = Sink::Store {
            params: &layers,
            grads: &mut grads,
        };
        let msg = invalid(s.net.vjp(&fwd, &d, sink, &go()));
        mentions(
            &msg,
            &["d must have shape (3, 2)", &format!("got {len} values")],
        );
        let mut params = s.params.clone();
        let sink = Sink::Update {
            params: &mut layers_mut(&mut params),
            lr: 0.1,
        };
        let msg = invalid(s.net.vjp(&fwd, &d, sink, &go()));
        mentions(&msg, &["d must have shape (3, 2)"]);
        // Nothing was written.
        assert_eq!(params, s.params);
    }
}

#[test]
fn vjp_rejects_mismatched_gradient_storage() {
    let s = Net::new(&[4, 6, 2], 3);
    let fwd = s.forward(Pass::Backprop);
    let layers = s.layers();
    let d = values(6, 5);
    // Fewer gradient layers than parameter layers.
    let mut storage = s.zeros();
    storage.pop();
    let mut grads = layers_mut(&mut storage);
    let sink = Sink::Store {
        params: &layers,
        grads: &mut grads,
    };
    let msg = invalid(s.net.vjp(&fwd, &d, sink, &go()));
    mentions(&msg, &["parameters and gradients differ in length"]);
    // A gradient layer of the wrong size.
    for (l, weight_extra, bias_extra) in [(0, 1, 0), (1, 0, 1), (1, 0, 0)] {
        let mut storage = s.zeros();
        let (weight, bias) = &mut storage[l];
        weight.resize(weight.len() + weight_extra, 0.0);
        bias.resize(bias.len() + bias_extra, 0.0);
        if weight_extra + bias_extra == 0 {
            bias.pop();
        }
        let mut grads = layers_mut(&mut storage);
        let sink = Sink::Store {
            params: &layers,
            grads: &mut grads,
        };
        let msg = invalid(s.net.vjp(&fwd, &d, sink, &go()));
        mentions(
            &msg,
            &[&format!("gradient storage of layer {l} has the wrong size")],
        );
    }
}

#[test]
fn vjp_rejects_parameters_that_do_not_match_the_widths() {
    let s = Net::new(&[4, 6, 2], 3);
    let fwd = s.forward(Pass::Backprop);
    let d = values(6, 5);
    // Consistent params and grads, but not this network's shapes.
    let other = Net::new(&[4, 5, 2], 3);
    let layers = other.layers();
    let mut storage = other.zeros();
    let mut grads = layers_mut(&mut storage);
    let sink = Sink::Store {
        params: &layers,
        grads: &mut grads,
    };
    let msg = invalid(s.net.vjp(&fwd, &d, sink, &go()));
    mentions(&msg, &["do not match the widths"]);
    // The same for an in-place update, which must leave them untouched.
    let mut params = other.params.clone();
    let sink = Sink::Update {
        params: &mut layers_mut(&mut params),
        lr: 0.5,
    };
    let msg = invalid(s.net.vjp(&fwd, &d, sink, &go()));
    mentions(&msg, &["do not match the widths"]);
    assert_eq!(params, other.params);
    // Too few layers.
    let mut params = s.params.clone();
    params.pop();
    let sink = Sink::Update {
        params: &mut layers_mut(&mut params),
        lr: 0.5,
    };
    let msg = invalid(s.net.vjp(&fwd, &d, sink, &go()));
    mentions(&msg, &["do not match the widths"]);
}

#[test]
fn jacobian_rejects_an_output_of_the_wrong_size() {
    let s = Net::new(&[3, 4, 2], 5);
    let fwd = s.forward(Pass::Backprop);
    let cot = s.cotangents(&fwd);
    let p = s.jacobian_len();
    for len in [0, p - 1, p + 1, p / 5] {
        let mut out = vec![0.0; len];
        let msg = invalid(s.net.jacobian(&fwd, &cot, &mut out, &go()));
        mentions(&msg, &["jacobian output must hold"]);
    }
    let mut out = vec![0.0; p];
    s.net.jacobian(&fwd, &cot, &mut out, &go()).unwrap();
}

#[test]
fn empirical_ntk_rejects_an_output_of_the_wrong_size() {
    let s = Net::new(&[3, 4, 2], 5);
    let t = Net::new(&[3, 4, 2], 2);
    let (fs, ft) = (s.forward(Pass::Backprop), t.forward(Pass::Backprop));
    let (cs, ct) = (s.cotangents(&fs), t.cotangents(&ft));
    let f1 = Features {
        forward: &fs,
        cotangents: &cs,
    };
    let f2 = Features {
        forward: &ft,
        cotangents: &ct,
    };
    for contraction in [Contraction::Trace, Contraction::Diagonal, Contraction::Full] {
        let block = contraction.block(2);
        for (other, n2) in [(None, 5), (Some(&f2), 2)] {
            let right = 5 * n2 * block;
            for len in [0, right - 1, right + 1, 5 * 5 * block + 5 * 2 * block] {
                if len == right {
                    continue;
                }
                let mut out = vec![0.0; len];
                let msg = invalid(empirical_ntk(
                    &s.net,
                    &f1,
                    other,
                    contraction,
                    &mut out,
                    &go(),
                ));
                mentions(&msg, &["empirical NTK output must hold"]);
            }
            let mut out = vec![0.0; right];
            empirical_ntk(&s.net, &f1, other, contraction, &mut out, &go()).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------
// Threads and cancellation
// ---------------------------------------------------------------------------

#[test]
fn zero_threads_is_an_error() {
    let msg = invalid(pool::set_num_threads(0));
    mentions(&msg, &["number of threads must be at least 1"]);
    // The pool is still usable.
    assert!(pool::num_threads().unwrap() >= 1);
}

#[test]
fn a_preset_cancel_flag_cancels_the_limit_kernels() {
    let x = values(300 * 3, 11);
    let s = Samples::new(&x, 300, 3).unwrap();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let s32 = Samples::new(&x32, 300, 3).unwrap();
    let custom = Scaled(0.9);
    for (depth, sigma) in [
        (1, Sigma::from(Activation::Relu)),
        (4, Sigma::from(Activation::Relu)),
        (1, Sigma::from(Activation::Tanh)),
        (3, Sigma::from(Activation::Tanh)),
        (3, Sigma::Custom(&custom)),
    ] {
        let k = LimitKernel::new(depth, sigma, 0.2).unwrap();
        cancelled(compute(&k, s, None, &stop()));
        cancelled(compute(&k, s, Some(s), &stop()));
        cancelled(compute(&k, s32, None, &stop()));
        // Only one output requested.
        let mut ntk = vec![0.0; 300 * 300];
        let out = Outputs {
            nngp: None,
            ntk: Some(&mut ntk),
        };
        cancelled(k.compute(s, None, out, &stop()));
    }
}

#[test]
fn a_preset_cancel_flag_cancels_the_network_operations() {
    let s = Net::new(&[5, 7, 6, 3], 70);
    let layers = s.layers();
    for pass in [Pass::Output, Pass::Backprop, Pass::Training] {
        cancelled(s.net.forward(&layers, s.samples(), pass, &stop()));
    }
    let fwd = s.forward(Pass::Backprop);
    cancelled(s.net.cotangents(&layers, &fwd, &stop()));
    let cot = s.cotangents(&fwd);
    let mut jac = vec![0.0; s.jacobian_len()];
    cancelled(s.net.jacobian(&fwd, &cot, &mut jac, &stop()));
    let d = values(70 * 3, 12);
    let mut storage = s.zeros();
    let mut grads = layers_mut(&mut storage);
    let sink = Sink::Store {
        params: &layers,
        grads: &mut grads,
    };
    cancelled(s.net.vjp(&fwd, &d, sink, &stop()));
    let mut params = s.params.clone();
    let sink = Sink::Update {
        params: &mut layers_mut(&mut params),
        lr: 0.1,
    };
    cancelled(s.net.vjp(&fwd, &d, sink, &stop()));
    let f = Features {
        forward: &fwd,
        cotangents: &cot,
    };
    for contraction in [Contraction::Trace, Contraction::Diagonal, Contraction::Full] {
        let block = contraction.block(3);
        let mut out = vec![0.0; 70 * 70 * block];
        cancelled(empirical_ntk(
            &s.net,
            &f,
            None,
            contraction,
            &mut out,
            &stop(),
        ));
        cancelled(empirical_ntk(
            &s.net,
            &f,
            Some(&f),
            contraction,
            &mut out,
            &stop(),
        ));
    }
    // Shape errors are reported before cancellation.
    let mut short = vec![0.0; 3];
    invalid(s.net.jacobian(&fwd, &cot, &mut short, &stop()));
}

// ---------------------------------------------------------------------------
// No panics
// ---------------------------------------------------------------------------

/// A sample of the error paths above, each run under `catch_unwind`: every one
/// must come back as an `Err`, none may unwind.
#[test]
fn error_paths_return_instead_of_panicking() {
    let x = values(12, 1);
    let huge = [1e200, 1.0];
    let huge32 = [1e30f32, 1.0];
    let s = Net::new(&[4, 6, 2], 3);
    let fwd = s.forward(Pass::Backprop);
    let cot = s.cotangents(&fwd);
    let nan = Constant {
        sigma: f64::NAN,
        dsigma: 1.0,
    };
    let failing = Failing {
        error: Error::Invalid("no".into()),
        concurrent: true,
    };
    type Case<'a> = Box<dyn Fn() -> Result<()> + 'a>;
    let cases: Vec<(&str, Case<'_>)> = vec![
        (
            "depth 0",
            Box::new(|| LimitKernel::new(0, Activation::Relu, 0.0).map(drop)),
        ),
        (
            "NaN beta",
            Box::new(|| LimitKernel::new(2, Activation::Relu, f64::NAN).map(drop)),
        ),
        (
            "empty samples",
            Box::new(|| Samples::<f64>::new(&[], 0, 4).map(drop)),
        ),
        (
            "mismatched samples",
            Box::new(|| Samples::new(&x, 5, 2).map(drop)),
        ),
        (
            "feature mismatch",
            Box::new(|| {
                let k = LimitKernel::new(2, Activation::Relu, 0.0)?;
                let x1 = Samples::new(&x, 4, 3)?;
                let x2 = Samples::new(&x, 3, 4)?;
                compute(&k, x1, Some(x2), &go()).map(drop)
            }),
        ),
        (
            "short output",
            Box::new(|| {
                let k = LimitKernel::new(2, Activation::Relu, 0.0)?;
                let mut out = vec![0.0; 2];
                let out = Outputs {
                    nngp: Some(&mut out),
                    ntk: None,
                };
                k.compute(Samples::new(&x, 4, 3)?, None, out, &go())
                    .map(drop)
            }),
        ),
        (
            "f64 overflow",
            Box::new(|| {
                let k = LimitKernel::new(3, Activation::Erf, 0.0)?;
                compute(&k, Samples::new(&huge, 2, 1)?, None, &go()).map(drop)
            }),
        ),
        (
            "f32 overflow",
            Box::new(|| {
                let k = LimitKernel::new(3, Activation::Gelu, 0.0)?;
                compute(&k, Samples::new(&huge32, 1, 2)?, None, &go()).map(drop)
            }),
        ),
        (
            "series variance",
            Box::new(|| {
                let k = LimitKernel::new(2, Activation::Tanh, 0.0)?;
                k.diagonal(Samples::new(&[3e4f64.sqrt()], 1, 1)?).map(drop)
            }),
        ),
        (
            "NaN pointwise",
            Box::new(|| {
                let k = LimitKernel::new(2, Sigma::Custom(&nan), 0.0)?;
                compute(&k, Samples::new(&x, 4, 3)?, None, &go()).map(drop)
            }),
        ),
        (
            "failing pointwise",
            Box::new(|| {
                let k = LimitKernel::new(2, Sigma::Custom(&failing), 0.0)?;
                k.diagonal(Samples::new(&[1.0, 2.0], 2, 1)?).map(drop)
            }),
        ),
        (
            "unknown activation",
            Box::new(|| Activation::from_name("RELU", 0.0).map(drop)),
        ),
        (
            "one width",
            Box::new(|| Network::new(vec![4], Activation::Relu, 0.0).map(drop)),
        ),
        (
            "zero width",
            Box::new(|| Network::new(vec![4, 0, 1], Activation::Relu, 0.0).map(drop)),
        ),
        (
            "missing layer",
            Box::new(|| s.net.check_params(&s.layers()[..1])),
        ),
        (
            "wrong x width",
            Box::new(|| {
                let xs = Samples::new(&x, 2, 6)?;
                s.net
                    .forward(&s.layers(), xs, Pass::Output, &go())
                    .map(drop)
            }),
        ),
        (
            "wrong d",
            Box::new(|| {
                let layers = s.layers();
                let mut storage = s.zeros();
                let mut grads = layers_mut(&mut storage);
                let sink = Sink::Store {
                    params: &layers,
                    grads: &mut grads,
                };
                s.net.vjp(&fwd, &x[..5], sink, &go())
            }),
        ),
        (
            "wrong jacobian size",
            Box::new(|| s.net.jacobian(&fwd, &cot, &mut [0.0; 7], &go())),
        ),
        (
            "wrong empirical size",
            Box::new(|| {
                let f = Features {
                    forward: &fwd,
                    cotangents: &cot,
                };
                empirical_ntk(&s.net, &f, None, Contraction::Full, &mut [0.0; 9], &go())
            }),
        ),
        (
            "unknown contraction",
            Box::new(|| Contraction::from_name("sum").map(drop)),
        ),
        ("zero threads", Box::new(|| pool::set_num_threads(0))),
        (
            "cancelled",
            Box::new(|| {
                let k = LimitKernel::new(2, Activation::Relu, 0.0)?;
                compute(&k, Samples::new(&x, 4, 3)?, None, &stop()).map(drop)
            }),
        ),
    ];
    let mut problems = Vec::new();
    for (name, case) in &cases {
        match catch_unwind(AssertUnwindSafe(case)) {
            Ok(Err(_)) => {}
            Ok(Ok(())) => problems.push(format!("{name}: returned Ok")),
            Err(_) => problems.push(format!("{name}: panicked")),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Degenerate but valid inputs succeed without panicking.
#[test]
fn degenerate_valid_inputs_do_not_panic() {
    let outcome = catch_unwind(|| {
        let cancel = go();
        // No outputs requested.
        let k = LimitKernel::new(2, Activation::Relu, 0.0).unwrap();
        let x = [0.0; 3];
        let s = Samples::new(&x, 1, 3).unwrap();
        let out: Outputs<'_, f64> = Outputs {
            nngp: None,
            ntk: None,
        };
        k.compute(s, None, out, &cancel).unwrap();
        // All-zero inputs with β = 0: zero variances, through a series too.
        compute(&k, s, None, &cancel).unwrap();
        let k = LimitKernel::new(3, Activation::Tanh, 0.0).unwrap();
        compute(&k, s, None, &cancel).unwrap();
        // An empty normal stream.
        standard_normal(1, 2, &mut []).unwrap();
        // A one-layer network: no cotangents at all.
        let one = Net::new(&[3, 2], 1);
        let fwd = one.forward(Pass::Output);
        let cot = one.net.cotangents(&one.layers(), &fwd, &cancel).unwrap();
        assert!(cot.is_empty());
    });
    assert!(outcome.is_ok(), "a degenerate input panicked");
}

// ---------------------------------------------------------------------------
// Misuse of the lower-level API: mismatched passes, overflows, literals.
// ---------------------------------------------------------------------------

#[test]
fn cotangents_of_an_output_pass_are_an_error() {
    let s = Net::new(&[4, 6, 2], 3);
    let fwd = s.forward(Pass::Output);
    invalid(s.net.cotangents(&s.layers(), &fwd, &go()));
}

#[test]
fn vjp_of_an_output_pass_is_an_error() {
    let s = Net::new(&[4, 6, 2], 3);
    let fwd = s.forward(Pass::Output);
    let layers = s.layers();
    let mut storage = s.zeros();
    let mut grads = layers_mut(&mut storage);
    let sink = Sink::Store {
        params: &layers,
        grads: &mut grads,
    };
    invalid(s.net.vjp(&fwd, &values(6, 1), sink, &go()));
}

#[test]
fn jacobian_with_cotangents_of_another_batch_is_an_error() {
    let (big, small) = (Net::new(&[4, 6, 2], 3), Net::new(&[4, 6, 2], 1));
    let fwd = big.forward(Pass::Backprop);
    let cot = small.cotangents(&small.forward(Pass::Backprop));
    let mut out = vec![0.0; big.jacobian_len()];
    invalid(big.net.jacobian(&fwd, &cot, &mut out, &go()));
}

#[test]
fn jacobian_with_missing_cotangents_is_an_error() {
    let s = Net::new(&[4, 6, 2], 3);
    let fwd = s.forward(Pass::Backprop);
    let mut out = vec![0.0; s.jacobian_len()];
    invalid(s.net.jacobian(&fwd, &[], &mut out, &go()));
}

#[test]
fn empirical_ntk_with_missing_cotangents_is_an_error() {
    let s = Net::new(&[4, 6, 2], 3);
    let fwd = s.forward(Pass::Backprop);
    let f = Features {
        forward: &fwd,
        cotangents: &[],
    };
    let mut out = vec![0.0; 9];
    invalid(empirical_ntk(
        &s.net,
        &f,
        None,
        Contraction::Trace,
        &mut out,
        &go(),
    ));
}

#[test]
fn vjp_with_a_forward_of_another_network_is_an_error() {
    let s = Net::new(&[4, 6, 2], 3);
    let other = Net::new(&[4, 9, 2], 3);
    let fwd = s.forward(Pass::Backprop);
    let layers = other.layers();
    let mut storage = other.zeros();
    let mut grads = layers_mut(&mut storage);
    let sink = Sink::Store {
        params: &layers,
        grads: &mut grads,
    };
    invalid(other.net.vjp(&fwd, &values(6, 1), sink, &go()));
}

#[test]
fn samples_with_an_overflowing_shape_are_an_error() {
    invalid(Samples::<f64>::new(&[], usize::MAX, 2));
    invalid(Samples::<f64>::new(&[], 1 << (usize::BITS - 1), 2));
}

#[test]
fn networks_with_overflowing_widths_are_an_error() {
    let bias = [0.0; 2];
    let layer = Layer {
        weight: &[][..],
        bias: &bias[..],
    };
    invalid(
        Network::new(vec![usize::MAX, 2], Activation::Relu, 0.0)
            .and_then(|net| net.check_params::<f64>(&[layer])),
    );
}

#[test]
fn an_unrepresentable_depth_is_a_memory_error() {
    let x = [1.0];
    for depth in [usize::MAX, 1 << 40] {
        let r = LimitKernel::new(depth, Activation::Relu, 0.0)
            .and_then(|k| k.diagonal(Samples::new(&x, 1, 1)?));
        match r {
            Err(Error::Memory(msg)) => assert!(msg.contains(&format!("depth {depth}")), "{msg}"),
            other => panic!("expected Error::Memory, got {other:?}"),
        }
    }
}
