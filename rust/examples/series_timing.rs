//! Times the Hermite expansion of one layer: `cargo run --release --example series_timing`.
use ntkfast::hermite::Series;
use ntkfast::Activation;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn main() {
    let n = 1024;
    let q: Vec<f64> = (0..n)
        .map(|i| 0.87 + 0.35 * (i as f64) / n as f64)
        .collect();
    let cancel = AtomicBool::new(false);
    for act in [Activation::Tanh, Activation::Sigmoid] {
        let mut best = f64::INFINITY;
        let mut terms = 0;
        for _ in 0..20 {
            let t = Instant::now();
            let s = Series::expand(&act, &q, &cancel).unwrap();
            best = best.min(t.elapsed().as_secs_f64());
            terms = s.terms;
        }
        println!("{act:?}: {terms} terms, best {:.2} ms", best * 1e3);
    }
}
