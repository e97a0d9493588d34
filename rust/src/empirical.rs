//! The empirical (finite-width) neural tangent kernel Θ̂ = Σ_p ∂_p f ⊗ ∂_p f.
//!
//! For a dense layer, ∂f_k/∂W⁽ˡ⁾ is the outer product of the cotangent
//! G_{l+1}[(i, k)] and α⁽ˡ⁾(x_i) / √n_l, so the sum over the parameters of
//! layer l factorises into two Gram matrices:
//!
//! ```text
//! Θ̂[i, j, k, k'] = Σ_l (α⁽ˡ⁾(x_i)·α⁽ˡ⁾(x_j) / n_l + β²) · (G_{l+1}[(i, k)] · G_{l+1}[(j, k')])
//! ```
//!
//! with G_L = I. The N × P Jacobian is never formed: each output tile takes
//! one Gram block of the activations and one of the cotangents per layer,
//! costing O(N₁ N₂ Σ_l n_l n_L²) multiply–adds for the full kernel.

use crate::error::{invalid, Result};
use crate::network::{Forward, Network};
use crate::pool;
use crate::real::Real;
use crate::simd::Simd;
use crate::tiles::{self, Placement, Tile};
use faer::MatRef;
use std::sync::atomic::AtomicBool;

/// Tile edge (inputs per side) of the trace and diagonal kernels: a multiple
/// of faer's register blocks on AVX2 (24, 12 rows) and AVX-512 (96, 48), so
/// that no tile runs the narrower edge kernels (docs/performance.md).
const GRAM_TILE: usize = 96;

/// Which part of the n_L × n_L block of each pair of inputs is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contraction {
    /// (N₁, N₂): the mean over k of Θ̂_kk.
    Trace,
    /// (N₁, N₂, n_L): Θ̂_kk.
    Diagonal,
    /// (N₁, N₂, n_L, n_L): every Θ̂_kk'.
    Full,
}

impl Contraction {
    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "trace" => Ok(Contraction::Trace),
            "diagonal" => Ok(Contraction::Diagonal),
            "full" => Ok(Contraction::Full),
            _ => invalid(format!(
                "output must be 'trace', 'diagonal' or 'full', got {name:?}"
            )),
        }
    }

    /// Values stored per pair of inputs.
    pub fn block(&self, outputs: usize) -> usize {
        match self {
            Contraction::Trace => 1,
            Contraction::Diagonal => outputs,
            Contraction::Full => outputs * outputs,
        }
    }
}

/// The per-input quantities the kernel is built from: the forward pass (with
/// slopes) and the cotangents of [`Network::cotangents`].
pub struct Features<'f, T> {
    pub forward: &'f Forward<'f, T>,
    pub cotangents: &'f [Vec<T>],
}

/// The empirical NTK of `net` between the inputs behind `f1` and `f2` (or `f1`
/// with itself, computing one triangle and mirroring it, when `f2` is None),
/// written into `out` of shape (N₁, N₂, block) row-major.
pub fn empirical_ntk<T: Real>(
    net: &Network,
    f1: &Features<'_, T>,
    f2: Option<&Features<'_, T>>,
    contraction: Contraction,
    out: &mut [T],
    cancel: &AtomicBool,
) -> Result<()> {
    compute(net, f1, f2, contraction, out, cancel, Simd::detect())
}

fn compute<T: Real>(
    net: &Network,
    f1: &Features<'_, T>,
    f2: Option<&Features<'_, T>>,
    contraction: Contraction,
    out: &mut [T],
    cancel: &AtomicBool,
    simd: Simd,
) -> Result<()> {
    let symmetric = f2.is_none();
    let f2 = f2.unwrap_or(f1);
    for f in [f1, f2] {
        net.check_forward(f.forward, false)?;
        net.check_cotangents(f.cotangents, f.forward.rows)?;
    }
    let (n1, n2) = (f1.forward.rows, f2.forward.rows);
    let m = net.outputs();
    let block = contraction.block(m);
    if n1.checked_mul(n2).and_then(|n| n.checked_mul(block)) != Some(out.len()) {
        return invalid(format!(
            "empirical NTK output must hold {n1} x {n2} x {block} values, has {}",
            out.len()
        ));
    }
    // Full kernels multiply Gram blocks of n_L rows per input: keep those near
    // 256 rows so that they stay in cache.
    // The trace takes panels of several tiles down a column block (one GEMM
    // call per panel and layer); the other kernels' per-tile buffers grow
    // with n_L, so they keep one tile per work item.
    let (edge, height) = match contraction {
        Contraction::Full => ((256 / m).max(8), 1),
        Contraction::Diagonal => (GRAM_TILE, 1),
        Contraction::Trace => (GRAM_TILE, tiles::PANEL_TILES),
    };
    let tile_list = tiles::panels(n1, n2, symmetric, edge, height);
    let kernel = TileKernel {
        net,
        f1,
        f2,
        contraction,
        symmetric,
        simd,
        out: tiles::SharedOutput::new(out, n1, n2 * block),
        blocks: BlockWriter {
            block,
            outputs: m,
            transpose_blocks: contraction == Contraction::Full,
        },
    };
    pool::for_each_tile(
        &tile_list,
        cancel,
        || Scratch::<T>::new(edge, height, m, block),
        |s, tile| kernel.run(s, tile),
    )
}

/// What every tile of one call needs.
struct TileKernel<'a, 'f, T> {
    net: &'a Network,
    f1: &'a Features<'f, T>,
    f2: &'a Features<'f, T>,
    contraction: Contraction,
    symmetric: bool,
    simd: Simd,
    /// The output as (N₁, N₂·block), for one value per pair.
    out: tiles::SharedOutput<'a, T>,
    /// The per-pair blocks of the diagonal and full kernels.
    blocks: BlockWriter,
}

impl<T: Real> TileKernel<'_, '_, T> {
    /// Computes one panel of tiles and writes it (and its mirror image) to the output,
    /// with the elementwise work in the widest SIMD the machine has; the
    /// arithmetic is the same on every path, so the result does not depend on it.
    fn run(&self, s: &mut Scratch<T>, tile: Tile) {
        self.simd.run(
            #[inline(always)]
            || self.run_generic(s, tile),
        )
    }

    #[inline(always)]
    fn run_generic(&self, s: &mut Scratch<T>, tile: Tile) {
        let (net, f1, f2) = (self.net, self.f1, self.f2);
        let m = net.outputs();
        let block = self.contraction.block(m);
        let depth = net.depth();
        let beta2 = T::from_f64(net.beta * net.beta);
        let (ti, tj) = (tile.rows(), tile.cols());
        let pairs = ti * tj;
        // Diagonal tiles of a symmetric kernel need only their lower triangle
        // (the writer mirrors it), except in the full kernel, whose diagonal
        // entries Θ̂[i, i, k, k'] need both triangles of the n_L × n_L block.
        let lower = self.symmetric && tile.is_diagonal() && self.contraction != Contraction::Full;
        let acc = &mut s.acc[..pairs * block];
        let (a_gram, g_gram) = (tiles::aligned(&mut s.a_gram), tiles::aligned(&mut s.g_gram));
        // The first layer's terms are stored, later ones added (x + 0 = x, so
        // this is the sum from zero); the full kernel adds to off-diagonal
        // output pairs only from hidden layers, so it starts from zero.
        let mut first = true;
        if self.contraction == Contraction::Full {
            acc.fill(T::default());
            first = false;
        }
        for l in 0..depth {
            let n = net.widths[l];
            let (a1, a2) = (f1.forward.activation(l), f2.forward.activation(l));
            tile_gram(a_gram, a1, a2, tile, n, lower);
            // A[i, j] = α⁽ˡ⁾(x_i)·α⁽ˡ⁾(x_j) / n_l + β², in place.
            let inv_n = T::from_f64(1.0 / n as f64);
            for a in &mut a_gram[..pairs] {
                *a = *a * inv_n + beta2;
            }
            let a_term = &a_gram[..pairs];
            if l + 1 == depth {
                // G_L = I: the last layer adds A to Θ̂_kk only.
                match self.contraction {
                    Contraction::Trace => accumulate(acc, a_term.iter().copied(), first),
                    Contraction::Diagonal => {
                        for (at, &v) in acc.chunks_exact_mut(m).zip(a_term) {
                            at.iter_mut()
                                .for_each(|x| *x = if first { v } else { *x + v });
                        }
                    }
                    Contraction::Full => {
                        for (at, &v) in acc.chunks_exact_mut(m * m).zip(a_term) {
                            (0..m).for_each(|k| at[k * m + k] += v);
                        }
                    }
                }
                break;
            }
            let width = net.widths[l + 1];
            let (g1, g2) = (&f1.cotangents[l], &f2.cotangents[l]);
            match self.contraction {
                Contraction::Trace => {
                    // Σ_k G[(i, k)]·G[(j, k)]: one Gram block of the rows flattened over k.
                    tile_gram(g_gram, g1, g2, tile, m * width, lower);
                    let inv_m = T::from_f64(1.0 / m as f64);
                    let terms = a_term.iter().zip(&g_gram[..pairs]);
                    accumulate(acc, terms.map(|(&a, &g)| a * g * inv_m), first);
                }
                Contraction::Diagonal => {
                    let stride = m * width;
                    for k in 0..m {
                        // Rows (i, k) for fixed k: every m-th row of G.
                        fn rows<T>(
                            g: &[T],
                            first: usize,
                            count: usize,
                            width: usize,
                            stride: usize,
                        ) -> MatRef<'_, T> {
                            MatRef::from_row_major_slice_with_stride(
                                &g[first * width..],
                                count,
                                width,
                                stride,
                            )
                        }
                        let dst =
                            faer::MatMut::from_row_major_slice_mut(&mut g_gram[..pairs], ti, tj);
                        let lhs = rows(g1, tile.r0 * m + k, ti, width, stride);
                        let rhs = rows(g2, tile.c0 * m + k, tj, width, stride).transpose();
                        if lower {
                            T::product_lower(dst, lhs, rhs, 1.0);
                        } else {
                            T::product(dst, lhs, rhs, 1.0);
                        }
                        let terms = a_term.iter().zip(&g_gram[..pairs]);
                        for (at, (&a, &g)) in acc.chunks_exact_mut(m).zip(terms) {
                            at[k] = if first { a * g } else { at[k] + a * g };
                        }
                    }
                }
                Contraction::Full => {
                    T::gram_block(
                        g_gram,
                        &g1[tile.r0 * m * width..tile.r1 * m * width],
                        &g2[tile.c0 * m * width..tile.c1 * m * width],
                        ti * m,
                        tj * m,
                        width,
                    );
                    let cols = tj * m;
                    for i in 0..ti {
                        for j in 0..tj {
                            let v = a_term[i * tj + j];
                            let at = (i * tj + j) * block;
                            for k in 0..m {
                                let g_row = &g_gram[(i * m + k) * cols + j * m..][..m];
                                for (x, &g) in
                                    acc[at + k * m..at + (k + 1) * m].iter_mut().zip(g_row)
                                {
                                    *x += v * g;
                                }
                            }
                        }
                    }
                }
            }
            first = false;
        }
        // SAFETY: tiles are disjoint, mirrors included (one triangle when symmetric).
        unsafe {
            if block == 1 {
                let placement = match (self.symmetric, tile.is_diagonal()) {
                    (false, _) => Placement::Plain,
                    (true, true) => Placement::Symmetrised,
                    (true, false) => Placement::Mirrored,
                };
                self.out
                    .write(tile, &s.acc[..pairs], placement, &mut s.transposed);
            } else {
                self.blocks
                    .write(&self.out, tile, &s.acc[..pairs * block], self.symmetric);
            }
        }
    }
}

/// acc = terms (the first layer's) or acc += terms, elementwise.
#[inline(always)]
fn accumulate<T: Real>(acc: &mut [T], terms: impl Iterator<Item = T>, first: bool) {
    if first {
        acc.iter_mut().zip(terms).for_each(|(x, t)| *x = t);
    } else {
        acc.iter_mut().zip(terms).for_each(|(x, t)| *x += t);
    }
}

/// The tile's Gram block: dst (rows × cols) = x1[rows] · x2[cols]ᵀ, where x1
/// and x2 hold one input per row of k values (all row-major); with `lower` only
/// the lower triangle of a square dst.
fn tile_gram<T: Real>(dst: &mut [T], x1: &[T], x2: &[T], tile: Tile, k: usize, lower: bool) {
    let (m, n) = (tile.rows(), tile.cols());
    let (a, b) = (&x1[tile.r0 * k..tile.r1 * k], &x2[tile.c0 * k..tile.c1 * k]);
    if lower {
        let lhs = MatRef::from_row_major_slice(a, m, k);
        let rhs = MatRef::from_row_major_slice(b, n, k).transpose();
        T::product_lower(
            faer::MatMut::from_row_major_slice_mut(&mut dst[..m * n], m, n),
            lhs,
            rhs,
            1.0,
        );
    } else {
        T::gram_block(dst, a, b, m, n, k);
    }
}

struct Scratch<T> {
    a_gram: Vec<T>,
    g_gram: Vec<T>,
    /// The kernel's tile, accumulated over the layers.
    acc: Vec<T>,
    /// The mirror image of a tile of one value per pair.
    transposed: Vec<T>,
}

impl<T: Real> Scratch<T> {
    /// Buffers for panels of up to `height` tiles of `edge` × `edge`.
    fn new(edge: usize, height: usize, m: usize, block: usize) -> Self {
        let g_side = if block == m * m && m > 1 {
            edge * m
        } else {
            edge
        };
        let pairs = height * edge * edge;
        Scratch {
            // GEMM outputs, cut by `tiles::aligned`.
            a_gram: tiles::alignable(pairs),
            g_gram: tiles::alignable(height * g_side * g_side),
            acc: vec![T::default(); pairs * block],
            transposed: vec![T::default(); if block == 1 { pairs } else { 0 }],
        }
    }
}

/// Writes tiles of per-pair blocks into a (N₁, N₂, block) output; for a
/// symmetric kernel the entries below the diagonal are also written at the
/// mirror position, with the n_L × n_L block transposed for the full kernel.
struct BlockWriter {
    block: usize,
    outputs: usize,
    transpose_blocks: bool,
}

impl BlockWriter {
    /// # Safety
    /// No concurrent call may cover the same entries or their mirrors, and the
    /// tile must lie inside `out`, seen as (N₁, N₂·block).
    unsafe fn write<T: Copy>(
        &self,
        out: &tiles::SharedOutput<'_, T>,
        tile: Tile,
        values: &[T],
        symmetric: bool,
    ) {
        let (b, m) = (self.block, self.outputs);
        let tj = tile.cols();
        for i in 0..tile.rows() {
            let gi = tile.r0 + i;
            for j in 0..tj {
                let gj = tile.c0 + j;
                if symmetric && gj > gi {
                    continue;
                }
                let src = &values[(i * tj + j) * b..][..b];
                out.row_mut(gi, gj * b, (gj + 1) * b).copy_from_slice(src);
                if symmetric && gj < gi {
                    let mirror = out.row_mut(gj, gi * b, (gi + 1) * b);
                    if self.transpose_blocks {
                        for k in 0..m {
                            for k2 in 0..m {
                                mirror[k2 * m + k] = src[k * m + k2];
                            }
                        }
                    } else {
                        mirror.copy_from_slice(src);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::EVERY_KIND;
    use crate::network::tests::Setup;
    use crate::network::{Layer, Pass};

    /// Θ̂ = J Jᵀ from the explicit Jacobian, as (N, N, n_L, n_L).
    fn explicit(net: &Network, jac: &[f64], rows: usize) -> Vec<f64> {
        let (m, p) = (net.outputs(), net.num_params());
        let mut out = vec![0.0; rows * rows * m * m];
        for i in 0..rows {
            for j in 0..rows {
                for k in 0..m {
                    for k2 in 0..m {
                        let (ri, rj) = ((i * m + k) * p, (j * m + k2) * p);
                        out[((i * rows + j) * m + k) * m + k2] =
                            (0..p).map(|q| jac[ri + q] * jac[rj + q]).sum();
                    }
                }
            }
        }
        out
    }

    fn kernel(
        s: &Setup,
        layers: &[Layer<'_, f64>],
        contraction: Contraction,
        symmetric: bool,
    ) -> Vec<f64> {
        let cancel = AtomicBool::new(false);
        let fwd = s
            .net
            .forward(layers, s.samples(), Pass::Backprop, &cancel)
            .unwrap();
        let cot = s.net.cotangents(layers, &fwd, &cancel).unwrap();
        let f = Features {
            forward: &fwd,
            cotangents: &cot,
        };
        let m = s.net.outputs();
        let mut out = vec![0.0; s.rows * s.rows * contraction.block(m)];
        let f2 = if symmetric { None } else { Some(&f) };
        empirical_ntk(&s.net, &f, f2, contraction, &mut out, &cancel).unwrap();
        out
    }

    #[test]
    fn simd_paths_give_the_same_bits() {
        let s = Setup::new(&[6, 9, 7, 3], EVERY_KIND[0], 0.3, 130);
        let layers = s.layers();
        let cancel = AtomicBool::new(false);
        let fwd = s
            .net
            .forward(&layers, s.samples(), Pass::Backprop, &cancel)
            .unwrap();
        let cot = s.net.cotangents(&layers, &fwd, &cancel).unwrap();
        let f = Features {
            forward: &fwd,
            cotangents: &cot,
        };
        // The same values in float32, for the single-precision elementwise work.
        let x32: Vec<f32> = s.samples().data.iter().map(|&v| v as f32).collect();
        let p32: Vec<(Vec<f32>, Vec<f32>)> = layers
            .iter()
            .map(|l| {
                let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
                (narrow(l.weight), narrow(l.bias))
            })
            .collect();
        let layers32: Vec<Layer<'_, f32>> = p32
            .iter()
            .map(|(weight, bias)| Layer { weight, bias })
            .collect();
        let samples32 = crate::samples::Samples::new(&x32, s.rows, 6).unwrap();
        let fwd32 = s
            .net
            .forward(&layers32, samples32, Pass::Backprop, &cancel)
            .unwrap();
        let cot32 = s.net.cotangents(&layers32, &fwd32, &cancel).unwrap();
        let f32s = Features {
            forward: &fwd32,
            cotangents: &cot32,
        };
        fn run<T: Real>(
            net: &Network,
            f: &Features<'_, T>,
            contraction: Contraction,
            symmetric: bool,
            simd: Simd,
        ) -> Vec<T> {
            let (n, m) = (f.forward.rows, net.outputs());
            let mut out = vec![T::default(); n * n * contraction.block(m)];
            let f2 = if symmetric { None } else { Some(f) };
            let cancel = AtomicBool::new(false);
            compute(net, f, f2, contraction, &mut out, &cancel, simd).unwrap();
            out
        }
        for simd in Simd::available() {
            for contraction in [Contraction::Trace, Contraction::Diagonal, Contraction::Full] {
                for symmetric in [true, false] {
                    let (a, b) = (
                        run(&s.net, &f, contraction, symmetric, simd),
                        run(&s.net, &f, contraction, symmetric, Simd::Baseline),
                    );
                    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
                    let (a, b) = (
                        run(&s.net, &f32s, contraction, symmetric, simd),
                        run(&s.net, &f32s, contraction, symmetric, Simd::Baseline),
                    );
                    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
                }
            }
        }
    }

    #[test]
    fn equals_the_explicit_jacobian_product() {
        // 300 rows: several tiles in every mode, with partial edges.
        for (act, widths, rows) in [
            (EVERY_KIND[0], vec![5, 8, 7, 3], 300),
            (EVERY_KIND[4], vec![3, 6, 4], 40),
            (EVERY_KIND[3], vec![4, 2], 30),
            (EVERY_KIND[6], vec![3, 5, 5, 5, 1], 140),
        ] {
            let s = Setup::new(&widths, act, 0.4, rows);
            let layers = s.layers();
            let m = s.net.outputs();
            let want = explicit(&s.net, &s.jacobian(), rows);
            let scale = want.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            for symmetric in [true, false] {
                let full = kernel(&s, &layers, Contraction::Full, symmetric);
                let diag = kernel(&s, &layers, Contraction::Diagonal, symmetric);
                let trace = kernel(&s, &layers, Contraction::Trace, symmetric);
                for pair in 0..rows * rows {
                    for k in 0..m {
                        for k2 in 0..m {
                            let at = pair * m * m + k * m + k2;
                            assert!((full[at] - want[at]).abs() < 1e-12 * scale, "{act:?}");
                        }
                        let at = pair * m * m + k * m + k;
                        assert!((diag[pair * m + k] - want[at]).abs() < 1e-12 * scale);
                    }
                    let mean: f64 = (0..m).map(|k| want[pair * m * m + k * m + k]).sum::<f64>();
                    assert!((trace[pair] - mean / m as f64).abs() < 1e-12 * scale);
                }
                if symmetric {
                    for i in 0..rows {
                        for j in 0..rows {
                            for k in 0..m {
                                for k2 in 0..m {
                                    assert_eq!(
                                        full[((i * rows + j) * m + k) * m + k2],
                                        full[((j * rows + i) * m + k2) * m + k]
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
