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
use crate::gram::Real;
use crate::network::{Forward, Network};
use crate::tiles::{self, Tile};
use faer::MatRef;
use std::marker::PhantomData;
use std::sync::atomic::AtomicBool;

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
    let edge = match contraction {
        Contraction::Full => (256 / m).max(8),
        _ => tiles::TILE,
    };
    let tile_list = tiles::tiles_with_edge(n1, n2, symmetric, edge);
    let writer = BlockWriter::new(out, n2, block, m, contraction == Contraction::Full);
    let depth = net.depth();
    let beta2 = net.beta * net.beta;
    tiles::for_each_tile(
        &tile_list,
        cancel,
        || Scratch::<T>::new(edge, m, block),
        |s, tile| {
            let (ti, tj) = (tile.rows(), tile.cols());
            // Diagonal tiles of a symmetric kernel need only their lower triangle
            // (the writer mirrors it), except in the full kernel, whose diagonal
            // entries Θ̂[i, i, k, k'] need both triangles of the n_L × n_L block.
            let lower = symmetric && tile.is_diagonal() && contraction != Contraction::Full;
            s.acc[..ti * tj * block].fill(0.0);
            for l in 0..depth {
                let n = net.widths[l];
                let (a1, a2) = (f1.forward.activation(l), f2.forward.activation(l));
                gram(
                    &mut s.a_gram,
                    &a1[tile.r0 * n..tile.r1 * n],
                    &a2[tile.c0 * n..tile.c1 * n],
                    (ti, tj, n),
                    lower,
                );
                let inv_n = 1.0 / n as f64;
                let a = |i: usize, j: usize| s.a_gram[i * tj + j].to_f64() * inv_n + beta2;
                if l + 1 == depth {
                    // G_L = I: the last layer adds its Gram matrix to Θ̂_kk only.
                    for i in 0..ti {
                        for j in 0..tj {
                            let v = a(i, j);
                            let at = (i * tj + j) * block;
                            match contraction {
                                Contraction::Trace => s.acc[at] += v,
                                Contraction::Diagonal => {
                                    s.acc[at..at + m].iter_mut().for_each(|x| *x += v)
                                }
                                Contraction::Full => {
                                    (0..m).for_each(|k| s.acc[at + k * m + k] += v)
                                }
                            }
                        }
                    }
                    continue;
                }
                let width = net.widths[l + 1];
                let (g1, g2) = (&f1.cotangents[l], &f2.cotangents[l]);
                match contraction {
                    Contraction::Trace => {
                        // Σ_k G[(i, k)]·G[(j, k)]: one Gram block of the rows flattened over k.
                        let k = m * width;
                        gram(
                            &mut s.g_gram,
                            &g1[tile.r0 * k..tile.r1 * k],
                            &g2[tile.c0 * k..tile.c1 * k],
                            (ti, tj, k),
                            lower,
                        );
                        let inv_m = 1.0 / m as f64;
                        for i in 0..ti {
                            for j in 0..tj {
                                s.acc[i * tj + j] +=
                                    a(i, j) * s.g_gram[i * tj + j].to_f64() * inv_m;
                            }
                        }
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
                            let dst = faer::MatMut::from_row_major_slice_mut(
                                &mut s.g_gram[..ti * tj],
                                ti,
                                tj,
                            );
                            let lhs = rows(g1, tile.r0 * m + k, ti, width, stride);
                            let rhs = rows(g2, tile.c0 * m + k, tj, width, stride).transpose();
                            if lower {
                                T::product_lower(dst, lhs, rhs, 1.0);
                            } else {
                                T::product(dst, lhs, rhs, 1.0);
                            }
                            for i in 0..ti {
                                for j in 0..tj {
                                    s.acc[(i * tj + j) * m + k] +=
                                        a(i, j) * s.g_gram[i * tj + j].to_f64();
                                }
                            }
                        }
                    }
                    Contraction::Full => {
                        T::gram_block(
                            &mut s.g_gram,
                            &g1[tile.r0 * m * width..tile.r1 * m * width],
                            &g2[tile.c0 * m * width..tile.c1 * m * width],
                            ti * m,
                            tj * m,
                            width,
                        );
                        let cols = tj * m;
                        for i in 0..ti {
                            for j in 0..tj {
                                let v = a(i, j);
                                let at = (i * tj + j) * block;
                                for k in 0..m {
                                    let g_row = &s.g_gram[(i * m + k) * cols + j * m..][..m];
                                    for (acc, &g) in
                                        s.acc[at + k * m..at + (k + 1) * m].iter_mut().zip(g_row)
                                    {
                                        *acc += v * g.to_f64();
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // SAFETY: tiles are disjoint, mirrors included (one triangle when symmetric).
            unsafe { writer.write(tile, &s.acc, symmetric) };
        },
    )
}

/// dst (m × n) = a (m × k) · b (n × k)ᵀ, all row-major; with `lower` only the
/// lower triangle of a square dst.
fn gram<T: Real>(dst: &mut [T], a: &[T], b: &[T], (m, n, k): (usize, usize, usize), lower: bool) {
    if lower {
        let lhs = MatRef::from_row_major_slice(&a[..m * k], m, k);
        let rhs = MatRef::from_row_major_slice(&b[..n * k], n, k).transpose();
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
    acc: Vec<f64>,
}

impl<T: Real> Scratch<T> {
    fn new(edge: usize, m: usize, block: usize) -> Self {
        let g_side = if block == m * m && m > 1 {
            edge * m
        } else {
            edge
        };
        Scratch {
            a_gram: vec![T::default(); edge * edge],
            g_gram: vec![T::default(); g_side * g_side],
            acc: vec![0.0; edge * edge * block],
        }
    }
}

/// Writes tiles of per-pair blocks into a (N₁, N₂, block) output; for a
/// symmetric kernel the entries below the diagonal are also written at the
/// mirror position, with the n_L × n_L block transposed for the full kernel.
struct BlockWriter<'a, T> {
    ptr: *mut T,
    cols: usize,
    block: usize,
    outputs: usize,
    transpose_blocks: bool,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the pointer comes from a `&mut [T]` held for 'a; concurrent writers
// cover disjoint tiles and their mirrors.
unsafe impl<T: Send> Send for BlockWriter<'_, T> {}
unsafe impl<T: Send> Sync for BlockWriter<'_, T> {}

impl<'a, T: Real> BlockWriter<'a, T> {
    fn new(
        out: &'a mut [T],
        cols: usize,
        block: usize,
        outputs: usize,
        transpose_blocks: bool,
    ) -> Self {
        BlockWriter {
            ptr: out.as_mut_ptr(),
            cols,
            block,
            outputs,
            transpose_blocks,
            _borrow: PhantomData,
        }
    }

    /// # Safety
    /// No concurrent call may cover the same entries or their mirrors, and the
    /// tile must lie inside the output.
    unsafe fn write(&self, tile: Tile, values: &[f64], symmetric: bool) {
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
                let dst =
                    std::slice::from_raw_parts_mut(self.ptr.add((gi * self.cols + gj) * b), b);
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = T::from_f64(v);
                }
                if symmetric && gj < gi {
                    let mirror =
                        std::slice::from_raw_parts_mut(self.ptr.add((gj * self.cols + gi) * b), b);
                    if self.transpose_blocks {
                        for k in 0..m {
                            for k2 in 0..m {
                                mirror[k2 * m + k] = T::from_f64(src[k * m + k2]);
                            }
                        }
                    } else {
                        for (d, &v) in mirror.iter_mut().zip(src) {
                            *d = T::from_f64(v);
                        }
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
