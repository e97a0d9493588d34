//! Single-thread throughput of Gram blocks of different shapes (GFLOP/s), f64 and f32:
//! `cargo run --release --example gram_speed`.
use ntkfast::Real;
use std::time::Instant;

fn rate<T: Real>(x: &[T], n: usize, k: usize, m: usize, w: usize) -> f64 {
    let mut dst = vec![T::default(); m * w];
    let reps = (2 * 4096 * 4096 / (m * w)).max(1);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        for r in 0..reps {
            let r0 = (r * m) % (n - m);
            T::gram_block(&mut dst, &x[r0 * k..], &x[..w * k], m, w, k);
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * w * k * reps) as f64 / best / 1e9
}

fn main() {
    let (n, k) = (4096usize, 784usize);
    let x: Vec<f64> = (0..n * k)
        .map(|i| ((i * 7919 % 1000) as f64) / 500.0 - 1.0)
        .collect();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    for &(m, w) in &[
        (96usize, 96usize),
        (120, 120),
        (128, 128),
        (192, 192),
        (256, 256),
    ] {
        println!(
            "{m}x{w}: f64 {:.1} GFLOP/s, f32 {:.1} GFLOP/s",
            rate(&x, n, k, m, w),
            rate(&x32, n, k, m, w)
        );
    }
}
