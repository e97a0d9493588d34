//! Where the time of the empirical NTK goes: forward pass, cotangents and Gram
//! tiles, best of 20, float32, ReLU MLP 784-512-512-512-n_L, N = 1024.
//!
//!     cargo run --release --example empirical_split [n_L]
//!
//! n_L = 1 times the "trace" kernel, n_L > 1 the "full" one.
use ntkfast::init::standard_normal;
use ntkfast::{empirical_ntk, Activation, Contraction, Features, Layer, Network, Pass, Samples};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

fn normal_f32(seed: u64, stream: u64, len: usize) -> Vec<f32> {
    let mut v = vec![0.0; len];
    standard_normal(seed, stream, &mut v).unwrap();
    v.iter().map(|&z| z as f32).collect()
}

fn main() {
    let outputs: usize = std::env::args().nth(1).map_or(1, |s| s.parse().unwrap());
    let (n, widths) = (1024, vec![784, 512, 512, 512, outputs]);
    let net = Network::new(widths.clone(), Activation::Relu, 0.1).unwrap();
    let params: Vec<(Vec<f32>, Vec<f32>)> = (0..net.depth())
        .map(|l| {
            let stream = 2 * l as u64;
            let size = widths[l] * widths[l + 1];
            (
                normal_f32(0, stream, size),
                normal_f32(0, stream + 1, widths[l + 1]),
            )
        })
        .collect();
    let layers: Vec<Layer<f32>> = params
        .iter()
        .map(|(weight, bias)| Layer { weight, bias })
        .collect();
    let x = normal_f32(1, 0, n * widths[0]);
    let cancel = AtomicBool::new(false);
    let contraction = if outputs == 1 {
        Contraction::Trace
    } else {
        Contraction::Full
    };
    let mut out = vec![0.0f32; n * n * contraction.block(outputs)];
    let mut best = [f64::INFINITY; 3];
    for _ in 0..20 {
        let t0 = Instant::now();
        let samples = Samples::new(&x, n, widths[0]).unwrap();
        let fwd = net
            .forward(&layers, samples, Pass::Backprop, &cancel)
            .unwrap();
        let t1 = Instant::now();
        let cot = net.cotangents(&layers, &fwd, &cancel).unwrap();
        let t2 = Instant::now();
        let f = Features {
            forward: &fwd,
            cotangents: &cot,
        };
        empirical_ntk(&net, &f, None, contraction, &mut out, &cancel).unwrap();
        let t3 = Instant::now();
        for (b, t) in best.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
            *b = b.min(t.as_secs_f64());
        }
    }
    println!(
        "forward {:.4} s, cotangents {:.4} s, Gram tiles {:.4} s, total {:.4} s",
        best[0],
        best[1],
        best[2],
        best.iter().sum::<f64>()
    );
}
