//! Single-thread throughput of Gram blocks of different shapes (GFLOP/s).
use ntkfast::gram::Real;
use std::time::Instant;

fn main() {
    let (n, k) = (4096usize, 784usize);
    let x: Vec<f64> = (0..n * k)
        .map(|i| ((i * 7919 % 1000) as f64) / 500.0 - 1.0)
        .collect();
    for &(m, w) in &[
        (128usize, 128usize),
        (256, 256),
        (128, 1024),
        (128, 4096),
        (256, 4096),
    ] {
        let mut dst = vec![0.0; m * w];
        let reps = (4096 * 4096 / (m * w)).max(1);
        let t = Instant::now();
        for r in 0..reps {
            let r0 = (r * m) % (n - m);
            f64::gram_block(&mut dst, &x[r0 * k..], &x[..w * k], m, w, k);
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "{m}x{w}: {:.1} GFLOP/s",
            2.0 * (m * w * k * reps) as f64 / s / 1e9
        );
    }
}
