//! Tests of the limit recursion: tiles against the scalar recursion, SIMD
//! paths, float32 layers, overflow.

use super::diagonal::superscript;
use super::layers::Layers;
use super::product::Which;
use super::*;
use crate::activation::with_dual;
use crate::error::Error;
use crate::tiles::Tile;
use crate::trig::{Polynomial, Rational};

/// ReLU on the diagonal: Σ⁽ˡ⁺¹⁾ = Σ⁽ˡ⁾/2 + β², Θ⁽ˡ⁺¹⁾ = Θ⁽ˡ⁾/2 + Σ⁽ˡ⁺¹⁾.
#[test]
fn diagonal_layers_follow_the_relu_recursion() {
    let x = [3.0, 4.0];
    let k = LimitKernel::new(3, Activation::Relu, 0.5).unwrap();
    let d = k.diagonal(Samples::new(&x, 1, 2).unwrap()).unwrap();
    let q1 = 12.5 + 0.25;
    let q2 = q1 / 2.0 + 0.25;
    let q3 = q2 / 2.0 + 0.25;
    assert_eq!(
        d.layers.iter().map(|l| l.q[0]).collect::<Vec<_>>(),
        vec![q1, q2, q3]
    );
    assert_eq!(d.ntk[0], (q1 / 2.0 + q2) / 2.0 + q3);
}

/// n samples of n0 deterministic values in [−1.6, 1.7), row-major.
fn inputs(n: usize, n0: usize) -> Vec<f64> {
    (0..n * n0)
        .map(|i| ((i * 7919 % 997) as f64) / 300.0 - 1.6)
        .collect()
}

/// Off-diagonal entries against a scalar evaluation of the recursion, and
/// the symmetric path against the general one.
#[test]
fn tiles_agree_with_the_scalar_recursion() {
    let (n, n0) = (150, 3);
    let x = inputs(n, n0);
    let k = LimitKernel::new(4, Activation::Gelu, 0.3).unwrap();
    let s = Samples::new(&x, n, n0).unwrap();
    let (mut sym, mut gen) = (vec![0.0; n * n], vec![0.0; n * n]);
    let cancel = AtomicBool::new(false);
    k.compute(
        s,
        None,
        Outputs {
            nngp: None,
            ntk: Some(&mut sym),
        },
        &cancel,
    )
    .unwrap();
    k.compute(
        s,
        Some(s),
        Outputs {
            nngp: None,
            ntk: Some(&mut gen),
        },
        &cancel,
    )
    .unwrap();
    let d = k.diagonal(s).unwrap();
    for (i, j) in [(0, 1), (5, 140), (149, 7), (77, 78)] {
        let (xi, xj) = (&x[i * n0..(i + 1) * n0], &x[j * n0..(j + 1) * n0]);
        let mut q12 = xi.iter().zip(xj).map(|(a, b)| a * b).sum::<f64>() / n0 as f64 + 0.09;
        let mut theta = q12;
        for l in 0..3 {
            let (sig, dot) =
                crate::duals::dual_pair(Activation::Gelu, d.layers[l].q[i], d.layers[l].q[j], q12)
                    .unwrap();
            q12 = sig + 0.09;
            theta = theta * dot + q12;
        }
        assert!((sym[i * n + j] - theta).abs() < 1e-13 * theta.abs());
        assert!((gen[i * n + j] - theta).abs() < 1e-13 * theta.abs());
        assert_eq!(sym[i * n + j], sym[j * n + i]);
    }
}

/// The layers give the same bits on every SIMD path for a given arcsine
/// evaluation, and the two evaluations agree to a few ulps.
#[test]
fn layers_give_the_same_bits_on_every_simd_path() {
    let (n, n0) = (70, 5);
    let x = inputs(n, n0);
    let s = Samples::new(&x, n, n0).unwrap();
    let cancel = AtomicBool::new(false);
    let tile = Tile {
        r0: 3,
        r1: 61,
        c0: 10,
        c1: 70,
    };
    let (h, w) = (tile.rows(), tile.cols());
    for act in crate::activation::EVERY_KIND {
        let k = LimitKernel::new(4, act, 0.3).unwrap();
        let Some(Closed::Builtin(closed)) = k.closed_form() else {
            continue;
        };
        let d = k.diagonal(s).unwrap();
        let layers = Layers {
            rows: &d.layers[..3],
            cols: &d.layers[..3],
            tile,
            want_ntk: true,
            b2: 0.09,
            cancel: &cancel,
        };
        // Σ⁽¹⁾ of the tile, then the layers with one arcsine evaluation on
        // one instruction set.
        let first: Vec<f64> = (0..h * w)
            .map(|p| {
                let (i, j) = (tile.r0 + p / w, tile.c0 + p % w);
                let dot: f64 = (0..n0).map(|f| x[i * n0 + f] * x[j * n0 + f]).sum();
                dot / n0 as f64 + 0.09
            })
            .collect();
        let run = |polynomial: bool, simd: Simd| {
            let (mut sigma, mut theta) = (first.clone(), vec![0.0; h * w]);
            with_dual!(
                closed,
                |dual| if polynomial {
                    layers.run_with::<_, Polynomial>(dual, simd, &mut sigma, &mut theta)
                } else {
                    layers.run_with::<_, Rational>(dual, simd, &mut sigma, &mut theta)
                },
                else ()
            );
            (sigma, theta)
        };
        for polynomial in [false, true] {
            let base = run(polynomial, Simd::Baseline);
            for simd in Simd::available() {
                assert_eq!(run(polynomial, simd), base, "{act:?} {simd:?}");
            }
        }
        let (rational, polynomial) = (run(false, Simd::Baseline), run(true, Simd::Baseline));
        for (a, b) in [(&rational.0, &polynomial.0), (&rational.1, &polynomial.1)] {
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let worst = a
                .iter()
                .zip(b)
                .fold(0.0f64, |m, (u, v)| m.max((u - v).abs()));
            assert!(worst <= 4e-15 * scale, "{act:?}: {worst:e} of {scale:e}");
        }
    }
}

#[test]
fn layer_numbers_are_superscripts() {
    assert_eq!(superscript(1), "¹");
    assert_eq!(superscript(120), "¹²⁰");
}

#[test]
fn overflowing_variances_are_an_error() {
    let x = [1e160, 1.0];
    let k = LimitKernel::new(3, Activation::Relu, 0.1).unwrap();
    let mut out = vec![0.0; 4];
    let s = Samples::new(&x, 2, 1).unwrap();
    let r = k.compute(
        s,
        None,
        Outputs {
            nngp: Some(&mut out),
            ntk: None,
        },
        &AtomicBool::new(false),
    );
    assert!(matches!(r, Err(Error::Invalid(m)) if m.contains("overflows") && m.contains("row 0")));
}

/// float32 Gram entries of (nearly) parallel rows are recomputed in f64, so
/// duplicated rows see ρ = 1 exactly, as in float64.
#[test]
fn float32_parallel_rows_match_float64() {
    let base: Vec<f64> = (0..300)
        .map(|i| ((i * 7919 % 613) as f64) / 97.0 - 3.1)
        .collect();
    let mut x = base.clone();
    x.extend(base.iter().map(|v| 2.0 * v));
    x.extend(base.iter().rev());
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
    let k = LimitKernel::new(4, Activation::Relu, 0.0).unwrap();
    let cancel = AtomicBool::new(false);
    let (mut a, mut b) = (vec![0.0f32; 9], vec![0.0f64; 9]);
    let s32 = Samples::new(&x32, 3, 300).unwrap();
    let s64 = Samples::new(&x64, 3, 300).unwrap();
    k.compute(
        s32,
        Some(s32),
        Outputs {
            nngp: None,
            ntk: Some(&mut a),
        },
        &cancel,
    )
    .unwrap();
    k.compute(
        s64,
        None,
        Outputs {
            nngp: None,
            ntk: Some(&mut b),
        },
        &cancel,
    )
    .unwrap();
    for (p, q) in a.iter().zip(&b) {
        assert!((*p as f64 - q).abs() <= 1e-6 * q.abs(), "{p} vs {q}");
    }
}

/// Kernels of `x` (rows × cols) in f32 and f64 for the same f32 inputs,
/// symmetric or against a copy of `x`.
fn both_dtypes(
    kernel: &LimitKernel,
    x: &[f64],
    rows: usize,
    symmetric: bool,
) -> [(Vec<f32>, Vec<f64>); 2] {
    let cols = x.len() / rows;
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let x64: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
    let cancel = AtomicBool::new(false);
    let n = rows * rows;
    let (mut s32, mut t32) = (vec![0.0f32; n], vec![0.0f32; n]);
    let (mut s64, mut t64) = (vec![0.0f64; n], vec![0.0f64; n]);
    let a = Samples::new(&x32, rows, cols).unwrap();
    let b = Samples::new(&x64, rows, cols).unwrap();
    let out32 = Outputs {
        nngp: Some(&mut s32[..]),
        ntk: Some(&mut t32[..]),
    };
    let other = (!symmetric).then_some(a);
    kernel.compute(a, other, out32, &cancel).unwrap();
    let out64 = Outputs {
        nngp: Some(&mut s64[..]),
        ntk: Some(&mut t64[..]),
    };
    kernel.compute(b, None, out64, &cancel).unwrap();
    [(s32, s64), (t32, t64)]
}

/// The single-precision layers of the piecewise-linear activations against
/// f64, relative to √(K(x, x) K(x', x')): 1e-6 on random rows, and also on
/// near-duplicates and deep networks whose ρ climbs past 0.999, which must be
/// handed to f64 (with the f32 layers alone those pairs are off by 1e-4).
#[test]
fn float32_layers_match_float64() {
    let (rows, cols) = (300, 40);
    let mut state = 7u64;
    let mut uniform = || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let mut x: Vec<f64> = (0..rows * cols).map(|_| uniform()).collect();
    // Rows 200..260 repeat rows 0..60 up to 1e-4.
    for i in 200..260 {
        for j in 0..cols {
            x[i * cols + j] = x[(i - 200) * cols + j] + 1e-4 * uniform();
        }
    }
    let activations = [
        Activation::Relu,
        Activation::LeakyRelu { slope: 0.2 },
        Activation::Abs,
    ];
    for activation in activations {
        for (depth, beta) in [(2, 0.1), (5, 0.1), (12, 1.0), (40, 1.0)] {
            let kernel = LimitKernel::new(depth, activation, beta).unwrap();
            for symmetric in [true, false] {
                for (single, double) in both_dtypes(&kernel, &x, rows, symmetric) {
                    let diag: Vec<f64> = (0..rows).map(|i| double[i * rows + i]).collect();
                    let mut worst = 0.0f64;
                    for (k, (a, b)) in single.iter().zip(&double).enumerate() {
                        let scale = (diag[k / rows] * diag[k % rows]).sqrt();
                        worst = worst.max((*a as f64 - b).abs() / scale);
                    }
                    assert!(
                        worst < 1e-6,
                        "{activation:?} depth {depth} symmetric {symmetric}: {worst:e}"
                    );
                }
            }
        }
    }
}

/// K(x1, x2) from `compute` and from `product` with V = I: the same values
/// (exactly in f64, where each entry of the product is one term).
fn kernel_by_product<T: Real>(
    k: &LimitKernel<'_>,
    x1: Samples<'_, T>,
    x2: Option<Samples<'_, T>>,
    which: Which,
) -> Vec<f64> {
    let n2 = x2.map_or(x1.rows, |s| s.rows);
    let mut eye = vec![0.0; n2 * n2];
    for i in 0..n2 {
        eye[i * n2 + i] = 1.0;
    }
    let mut out = vec![0.0; x1.rows * n2];
    k.product(x1, x2, which, &eye, n2, &mut out, &AtomicBool::new(false))
        .unwrap();
    out
}

#[test]
fn products_with_the_identity_are_the_kernel() {
    let (n, m, n0) = (300, 130, 7);
    let x = inputs(n, n0);
    let z: Vec<f64> = inputs(m + 3, n0)[3 * n0..].to_vec();
    let xs = Samples::new(&x, n, n0).unwrap();
    let zs = Samples::new(&z, m, n0).unwrap();
    for act in [Activation::Relu, Activation::Erf, Activation::Tanh] {
        let k = LimitKernel::new(3, act, 0.1).unwrap();
        for (x2, n2) in [(None, n), (Some(zs), m)] {
            let mut nngp = vec![0.0; n * n2];
            let mut ntk = vec![0.0; n * n2];
            let out = Outputs {
                nngp: Some(&mut nngp),
                ntk: Some(&mut ntk),
            };
            k.compute(xs, x2, out, &AtomicBool::new(false)).unwrap();
            assert_eq!(kernel_by_product(&k, xs, x2, Which::Nngp), nngp, "{act:?}");
            assert_eq!(kernel_by_product(&k, xs, x2, Which::Ntk), ntk, "{act:?}");
        }
    }
}

#[test]
fn float32_products_match_the_float32_kernel() {
    let (n, n0) = (400, 9);
    let x: Vec<f32> = inputs(n, n0).iter().map(|&v| v as f32).collect();
    let xs = Samples::new(&x, n, n0).unwrap();
    let k = LimitKernel::new(4, Activation::Relu, 0.1).unwrap();
    let mut ntk = vec![0.0f32; n * n];
    let out = Outputs {
        nngp: None,
        ntk: Some(&mut ntk),
    };
    k.compute(xs, None, out, &AtomicBool::new(false)).unwrap();
    let product = kernel_by_product(&k, xs, None, Which::Ntk);
    for (p, s) in product.iter().zip(&ntk) {
        assert!(
            (p - *s as f64).abs() <= 1e-6 * p.abs().max(1.0),
            "{p} vs {s}"
        );
    }
}

#[test]
fn products_have_the_same_bits_for_any_thread_count() {
    let (n, n0, k) = (700, 5, 3);
    let x = inputs(n, n0);
    let xs = Samples::new(&x, n, n0).unwrap();
    let v: Vec<f64> = (0..n * k)
        .map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0)
        .collect();
    let kernel = LimitKernel::new(3, Activation::Gelu, 0.2).unwrap();
    let default_threads = crate::pool::num_threads().unwrap();
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        crate::pool::set_num_threads(threads).unwrap();
        let mut out = vec![0.0; n * k];
        let cancel = AtomicBool::new(false);
        kernel
            .product(xs, None, Which::Ntk, &v, k, &mut out, &cancel)
            .unwrap();
        results.push(out);
    }
    crate::pool::set_num_threads(default_threads).unwrap();
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    // Against the stored kernel, to rounding.
    let mut ntk = vec![0.0; n * n];
    let out = Outputs {
        nngp: None,
        ntk: Some(&mut ntk),
    };
    kernel
        .compute(xs, None, out, &AtomicBool::new(false))
        .unwrap();
    for i in 0..n {
        for c in 0..k {
            let want: f64 = (0..n).map(|j| ntk[i * n + j] * v[j * k + c]).sum();
            let got = results[0][i * k + c];
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{got} vs {want}"
            );
        }
    }
}

#[test]
fn products_check_their_shapes_and_stop_when_cancelled() {
    let x = inputs(10, 3);
    let xs = Samples::new(&x, 10, 3).unwrap();
    let k = LimitKernel::new(2, Activation::Relu, 0.0).unwrap();
    let go = AtomicBool::new(false);
    let mut out = vec![0.0; 20];
    assert!(k
        .product(xs, None, Which::Ntk, &[0.0; 19], 2, &mut out, &go)
        .is_err());
    assert!(k
        .product(xs, None, Which::Ntk, &[0.0; 20], 2, &mut out[..18], &go)
        .is_err());
    assert!(k
        .product(xs, None, Which::Ntk, &[], 0, &mut [], &go)
        .is_err());
    let stop = AtomicBool::new(true);
    assert_eq!(
        k.product(xs, None, Which::Ntk, &[0.0; 20], 2, &mut out, &stop),
        Err(Error::Cancelled)
    );
    assert_eq!(Which::from_name("ntk").unwrap(), Which::Ntk);
    assert!(Which::from_name("theta").is_err());
}

/// K(x, c)ᵀ K(x, c) V against the stored K(x, c), for f64 and f32 inputs, a
/// series activation, and with the same bits for any thread count.
#[test]
fn normal_products_match_the_stored_kernel_for_any_thread_count() {
    // M = 600 centres: two GEMM panels of centres, the second ending mid-tile.
    let (n, m, n0) = (530, 600, 6);
    let x = inputs(n, n0);
    let c: Vec<f64> = inputs(m + 11, n0)[11 * n0..].to_vec();
    let x32: Vec<f32> = x.iter().map(|&a| a as f32).collect();
    let c32: Vec<f32> = c.iter().map(|&a| a as f32).collect();
    let default_threads = crate::pool::num_threads().unwrap();
    for (act, k) in [(Activation::Relu, 1), (Activation::Tanh, 2)] {
        let v: Vec<f64> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0)
            .collect();
        let kernel = LimitKernel::new(3, act, 0.2).unwrap();
        for which in [Which::Nngp, Which::Ntk] {
            let stored = {
                let xs = Samples::new(&x, n, n0).unwrap();
                let cs = Samples::new(&c, m, n0).unwrap();
                let mut eye = vec![0.0; m * m];
                (0..m).for_each(|i| eye[i * m + i] = 1.0);
                let mut knm = vec![0.0; n * m];
                let go = AtomicBool::new(false);
                kernel
                    .product(xs, Some(cs), which, &eye, m, &mut knm, &go)
                    .unwrap();
                knm
            };
            // Kᵀ (K V), with K V (n × k) first.
            let kv: Vec<f64> = (0..n * k)
                .map(|rc| {
                    let (r, col) = (rc / k, rc % k);
                    let row = &stored[r * m..(r + 1) * m];
                    (0..m).map(|j| row[j] * v[j * k + col]).sum()
                })
                .collect();
            let want: Vec<f64> = (0..m * k)
                .map(|ic| {
                    let (i, col) = (ic / k, ic % k);
                    (0..n).map(|r| stored[r * m + i] * kv[r * k + col]).sum()
                })
                .collect();
            let mut bits = Vec::new();
            for threads in [1, 2, 3] {
                crate::pool::set_num_threads(threads).unwrap();
                let go = AtomicBool::new(false);
                let mut out = vec![0.0; m * k];
                let xs = Samples::new(&x, n, n0).unwrap();
                let cs = Samples::new(&c, m, n0).unwrap();
                kernel
                    .normal_product(xs, cs, which, &v, k, &mut out, &go)
                    .unwrap();
                bits.push(out);
            }
            crate::pool::set_num_threads(default_threads).unwrap();
            assert_eq!(bits[0], bits[1], "{act:?} {which:?}");
            assert_eq!(bits[0], bits[2], "{act:?} {which:?}");
            let scale = want.iter().fold(0.0f64, |a, w| a.max(w.abs()));
            for (got, want) in bits[0].iter().zip(&want) {
                assert!((got - want).abs() <= 1e-12 * scale, "{got} vs {want}");
            }
            // float32 tiles: the stored f64 kernel's products to f32 rounding.
            let mut out = vec![0.0; m * k];
            let xs = Samples::new(&x32, n, n0).unwrap();
            let cs = Samples::new(&c32, m, n0).unwrap();
            kernel
                .normal_product(xs, cs, which, &v, k, &mut out, &AtomicBool::new(false))
                .unwrap();
            for (got, want) in out.iter().zip(&want) {
                assert!((got - want).abs() <= 1e-5 * scale, "{got} vs {want}");
            }
        }
    }
}

#[test]
fn normal_products_check_their_shapes_and_stop_when_cancelled() {
    let x = inputs(10, 3);
    let c = inputs(4, 3);
    let c2 = inputs(4, 2);
    let xs = Samples::new(&x, 10, 3).unwrap();
    let cs = Samples::new(&c, 4, 3).unwrap();
    let k = LimitKernel::new(2, Activation::Relu, 0.0).unwrap();
    let go = AtomicBool::new(false);
    let mut out = vec![0.0; 8];
    let normal = |c, v: &[f64], kk, out: &mut [f64], cancel| {
        k.normal_product(xs, c, Which::Ntk, v, kk, out, cancel)
    };
    assert!(normal(cs, &[0.0; 7], 2, &mut out, &go).is_err());
    assert!(normal(cs, &[0.0; 8], 2, &mut out[..6], &go).is_err());
    assert!(normal(cs, &[], 0, &mut [], &go).is_err());
    let narrow = Samples::new(&c2, 4, 2).unwrap();
    assert!(normal(narrow, &[0.0; 8], 2, &mut out, &go).is_err());
    let stop = AtomicBool::new(true);
    assert_eq!(
        normal(cs, &[0.0; 8], 2, &mut out, &stop),
        Err(Error::Cancelled)
    );
}

/// Both products of a rectangular kernel from one pass equal two passes.
#[test]
fn product_pairs_are_two_products() {
    let (n1, n2, n0, k) = (260, 190, 4, 2);
    let x1 = inputs(n1, n0);
    let x2: Vec<f64> = inputs(n2 + 5, n0)[5 * n0..].to_vec();
    let (s1, s2) = (
        Samples::new(&x1, n1, n0).unwrap(),
        Samples::new(&x2, n2, n0).unwrap(),
    );
    let v: Vec<f64> = (0..n2 * k).map(|i| (i as f64 * 0.37).sin()).collect();
    let v_t: Vec<f64> = (0..n1 * k).map(|i| (i as f64 * 0.21).cos()).collect();
    let kernel = LimitKernel::new(3, Activation::Erf, 0.3).unwrap();
    let go = AtomicBool::new(false);
    let (mut out, mut out_t) = (vec![0.0; n1 * k], vec![1.0; n2 * k]);
    kernel
        .product_pair(
            s1,
            s2,
            Which::Ntk,
            (&v, &v_t),
            k,
            (&mut out, &mut out_t),
            &go,
        )
        .unwrap();
    let (mut want, mut want_t) = (vec![0.0; n1 * k], vec![0.0; n2 * k]);
    kernel
        .product(s1, Some(s2), Which::Ntk, &v, k, &mut want, &go)
        .unwrap();
    kernel
        .product(s2, Some(s1), Which::Ntk, &v_t, k, &mut want_t, &go)
        .unwrap();
    assert_eq!(out, want);
    for (a, b) in out_t.iter().zip(&want_t) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }
    let mut short = vec![0.0; n2 * k - 1];
    assert!(kernel
        .product_pair(
            s1,
            s2,
            Which::Ntk,
            (&v, &v_t),
            k,
            (&mut out, &mut short),
            &go
        )
        .is_err());
}

/// A piecewise-linear σ handed to the quadrature (`Sigma::Kinked`) on
/// inputs of equal norms: every layer's pairs are read from correlation
/// tables, which match the exact duals (`Sigma::Pieces`) to 1e-10 of the
/// kernel's scale. Inputs of many norms get no tables.
#[test]
fn correlation_tables_match_the_exact_duals() {
    // Hard tanh: kinks at ±1.
    let pieces =
        crate::pieces::Pieces::new(&[-1.0, 1.0], &[0.0, 1.0, 0.0], &[-1.0, 0.0, 1.0]).unwrap();
    let (n, n0) = (72, 5);
    let mut x = inputs(n, n0);
    for row in x.chunks_exact_mut(n0) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v *= 3.0 / norm);
    }
    // A copy and a negated copy of the first row: ρ = ±1.
    let first: Vec<f64> = x[..n0].to_vec();
    x[n0..2 * n0].copy_from_slice(&first);
    x[2 * n0..3 * n0]
        .iter_mut()
        .zip(&first)
        .for_each(|(d, s)| *d = -s);
    let s = Samples::new(&x, n, n0).unwrap();
    let cancel = AtomicBool::new(false);
    let kinked = LimitKernel::new(3, Sigma::Kinked(&pieces), 0.2).unwrap();
    let (d, _) = kinked.diagonals(s, None, &cancel).unwrap();
    let tables = kinked.correlation_tables(&d, &d, true, &cancel).unwrap();
    assert_eq!(tables.len(), 2);
    let kernel = |k: &LimitKernel| {
        let (mut nngp, mut ntk) = (vec![0.0; n * n], vec![0.0; n * n]);
        let out = Outputs {
            nngp: Some(&mut nngp),
            ntk: Some(&mut ntk),
        };
        let report = k.compute(s, None, out, &cancel).unwrap();
        (nngp, ntk, report)
    };
    let (nngp, ntk, report) = kernel(&kinked);
    assert!(report.series_error <= 1e-11, "{report:?}");
    let exact = LimitKernel::new(3, Sigma::Pieces(&pieces), 0.2).unwrap();
    let (exact_nngp, exact_ntk, _) = kernel(&exact);
    for (got, want) in [(nngp, exact_nngp), (ntk, exact_ntk)] {
        for i in 0..n {
            for j in 0..n {
                let scale = (want[i * n + i] * want[j * n + j]).sqrt();
                let what = format!("{i} {j}: {} {}", got[i * n + j], want[i * n + j]);
                assert!(
                    (got[i * n + j] - want[i * n + j]).abs() <= 1e-10 * scale,
                    "{what}"
                );
            }
        }
    }
    // Rows of different norms: no groups, no tables.
    let y = inputs(n, n0);
    let (d, _) = kinked
        .diagonals(Samples::new(&y, n, n0).unwrap(), None, &cancel)
        .unwrap();
    assert!(kinked
        .correlation_tables(&d, &d, true, &cancel)
        .unwrap()
        .is_empty());
}

/// σ that counts its calls.
struct Counted<'a> {
    sigma: &'a dyn Pointwise,
    calls: std::sync::atomic::AtomicUsize,
}

impl Pointwise for Counted<'_> {
    fn eval(&self, x: &[f64], sigma: &mut [f64], dsigma: &mut [f64]) -> Result<()> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sigma.eval(x, sigma, dsigma)
    }
}

#[test]
fn prepared_kernels_give_the_same_products_without_calling_sigma() {
    let pieces =
        crate::pieces::Pieces::new(&[-1.0, 1.0], &[0.0, 1.0, 0.0], &[-1.0, 0.0, 1.0]).unwrap();
    let counted = Counted {
        sigma: &pieces,
        calls: Default::default(),
    };
    let (n, n0, k) = (72, 5, 2);
    let mut x = inputs(n, n0);
    for row in x.chunks_exact_mut(n0) {
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        row.iter_mut().for_each(|v| *v *= 2.0 / norm);
    }
    let s = Samples::new(&x, n, n0).unwrap();
    let v: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.37).sin()).collect();
    let cancel = AtomicBool::new(false);
    let kernel = LimitKernel::new(3, Sigma::Kinked(&counted), 0.2).unwrap();
    let product = |k_: &LimitKernel| {
        let mut out = vec![0.0; n * k];
        let report = k_.product(s, None, Which::Ntk, &v, k, &mut out, &cancel);
        (out, report.unwrap())
    };
    let (want, want_report) = product(&kernel);
    let prepared = kernel.prepare(s, None, &cancel).unwrap();
    assert!(!prepared.tables.is_empty());
    let calls = counted.calls.load(std::sync::atomic::Ordering::Relaxed);
    let with = kernel.with_prepared(&prepared);
    for _ in 0..2 {
        let (got, report) = product(&with);
        assert_eq!(got, want);
        assert_eq!(report, want_report);
    }
    assert_eq!(
        counted.calls.load(std::sync::atomic::Ordering::Relaxed),
        calls
    );
    // Other samples than it was made for: an error, not a wrong product.
    let fewer = Samples::new(&x[..(n - 1) * n0], n - 1, n0).unwrap();
    let mut out = vec![0.0; (n - 1) * k];
    let err = with.product(
        fewer,
        None,
        Which::Ntk,
        &v[..(n - 1) * k],
        k,
        &mut out,
        &cancel,
    );
    assert!(matches!(err, Err(Error::Invalid(_))), "{err:?}");
    let err = with.product(
        s,
        Some(s),
        Which::Ntk,
        &v,
        k,
        &mut vec![0.0; n * k],
        &cancel,
    );
    assert!(matches!(err, Err(Error::Invalid(_))), "{err:?}");
}
