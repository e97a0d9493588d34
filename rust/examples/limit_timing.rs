//! Times the ReLU limit kernel of SPEC row 1 (N = 4096, n₀ = 784) by depth,
//! dtype and outputs: `cargo run --release --example limit_timing [threads]`.
use ntkfast::Real;
use ntkfast::{Activation, LimitKernel, Outputs, Samples};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn best<T: Real>(x: &[T], n: usize, k: usize, depth: usize, ntk: bool) -> f64 {
    let kernel = LimitKernel::new(depth, Activation::Relu, 0.1).unwrap();
    let mut a = vec![T::default(); n * n];
    let mut b = vec![T::default(); n * n];
    let cancel = AtomicBool::new(false);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        let out = Outputs {
            nngp: Some(&mut a[..]),
            ntk: if ntk { Some(&mut b[..]) } else { None },
        };
        kernel
            .compute(Samples::new(x, n, k).unwrap(), None, out, &cancel)
            .unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    if let Some(t) = std::env::args().nth(1) {
        ntkfast::pool::set_num_threads(t.parse().unwrap()).unwrap();
    }
    let (n, k) = (4096usize, 784usize);
    // Deterministic pseudo-Gaussian rows (sum of uniforms).
    let mut state = 12345u64;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let x: Vec<f64> = (0..n * k)
        .map(|_| (0..4).map(|_| uniform()).sum::<f64>() - 2.0)
        .collect();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    // An optional second argument picks one dtype (32 or 64) for profiling.
    let only = std::env::args().nth(2);
    if let Some(bits) = only {
        let t = if bits == "32" {
            best(&x32, n, k, 4, true)
        } else {
            best(&x, n, k, 4, true)
        };
        println!("depth 4 ntk true: f{bits} {:.1} ms", 1e3 * t);
        return;
    }
    for (depth, ntk) in [(1, false), (1, true), (4, true), (10, true)] {
        println!(
            "depth {depth:2} ntk {ntk:5}: f32 {:.1} ms, f64 {:.1} ms",
            1e3 * best(&x32, n, k, depth, ntk),
            1e3 * best(&x, n, k, depth, ntk)
        );
    }
}
