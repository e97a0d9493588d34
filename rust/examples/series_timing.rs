//! Times the Hermite expansion of one layer (the diagonal recursion of a
//! depth-2 kernel, whose rows have variances 0.87–1.22):
//! `cargo run --release --example series_timing`.
use ntkfast::{Activation, LimitKernel, Samples};
use std::time::Instant;

fn main() {
    let n = 1024;
    // One feature per sample and β = 0: Σ⁽¹⁾(x, x) = x².
    let x: Vec<f64> = (0..n)
        .map(|i| (0.87 + 0.35 * (i as f64) / n as f64).sqrt())
        .collect();
    let samples = Samples::new(&x, n, 1).unwrap();
    for act in [Activation::Tanh, Activation::Sigmoid] {
        let kernel = LimitKernel::new(2, act, 0.0).unwrap();
        let mut best = f64::INFINITY;
        let mut terms = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let d = kernel.diagonal(samples).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            terms = d.series_terms();
        }
        println!("{act:?}: {terms} terms, best {:.2} ms", best * 1e3);
    }
}
