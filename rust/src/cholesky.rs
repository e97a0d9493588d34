//! Dense solves A X = B for a symmetric positive-definite A (a kernel plus a
//! ridge), by the Cholesky factorisation A = L Lᵀ, in place.
//!
//! ntkfast factorises here rather than through SciPy because the OpenBLAS in
//! NumPy's and SciPy's wheels has crashed inside its Cholesky on some CPUs
//! (AMD Zen 4, from n = 16,000 on): a crash would take the user's process.
//!
//! The factorisation is blocked and right-looking, on the pool's threads: for
//! each column block of width [`BLOCK`], the diagonal block is factorised, the
//! panel below it is solved against that factor in row blocks, and the
//! trailing matrix is updated column block by column block. The blocks depend
//! on n alone, so the result has the same bits for any thread count, and a
//! cancellation is honoured between column blocks. Every step is one of faer's
//! sequential kernels: faer's own parallel factorisation would need its `rayon`
//! feature, which also switches on the cache-size detection of its x86 GEMM
//! and with it a lazily reserved buffer of twice the L3 cache in every thread
//! that multiplies (docs/performance.md).

use crate::error::{invalid, Error, Result};
use crate::pool;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::{factor, solve};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Accum, Conj, MatMut, MatRef, Par};
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// The width of the column blocks: the depth at which the GEMM of the trailing
/// update runs at its full rate (`real::DEPTH_CHUNK`), narrow enough for the
/// diagonal blocks and panels to be a small share (about n²·BLOCK/2 of the n³/3
/// operations). 256 was 5 % slower on two threads at n = 8000.
const BLOCK: usize = 384;

/// The most rows of one piece of a trailing update: pieces this size keep
/// the threads evenly loaded while each is still a GEMM at full rate.
const PIECE: usize = 1024;

/// Solves A X = B in place: `a` (n × n, row-major, symmetric) has its upper
/// triangle overwritten by U = Lᵀ (A = Uᵀ U) and its strict lower triangle,
/// never read, partly used as workspace; `b` (n × k, row-major) is
/// overwritten by X. An error when A is not
/// positive definite (naming the pivot; a larger ridge helps) and
/// [`Error::Cancelled`] once `cancel` is set.
pub fn solve_spd(
    a: &mut [f64],
    n: usize,
    b: &mut [f64],
    k: usize,
    cancel: &AtomicBool,
) -> Result<()> {
    if n.checked_mul(n) != Some(a.len()) {
        return invalid(format!("A must hold {n} x {n} values, has {}", a.len()));
    }
    if n.checked_mul(k) != Some(b.len()) {
        return invalid(format!("B must hold {n} x {k} values, has {}", b.len()));
    }
    pool::pool()?.install(|| {
        // Row-major A is its own transpose in column-major: the lower
        // triangle of the column-major view is A's upper triangle, which
        // equals the lower one for a symmetric A.
        let mut l = MatMut::from_column_major_slice_mut(a, n, n);
        factorise(l.rb_mut(), cancel)?;
        // B row-major (n × k) is Bᵀ column-major (k × n): solve on its transpose.
        let rhs = MatMut::from_row_major_slice_mut(b, n, k);
        let scratch = solve::solve_in_place_scratch::<f64>(n, k, Par::Seq);
        let mut memory = MemBuffer::try_new(scratch)
            .map_err(|_| Error::Memory("the triangular solves' workspace".into()))?;
        solve::solve_in_place_with_conj(
            l.rb(),
            Conj::No,
            rhs,
            Par::Seq,
            MemStack::new(&mut memory),
        );
        Ok(())
    })
}

/// L with A = L Lᵀ into the lower triangle of `a` (n × n, column-major), whose
/// strict upper triangle is not read (faer's factorisation of the diagonal
/// blocks writes intermediate values there).
fn factorise(mut a: MatMut<'_, f64>, cancel: &AtomicBool) -> Result<()> {
    let n = a.nrows();
    let scratch =
        factor::cholesky_in_place_scratch::<f64>(BLOCK.min(n), Par::Seq, Default::default());
    let mut memory = MemBuffer::try_new(scratch)
        .map_err(|_| Error::Memory("the Cholesky factorisation's workspace".into()))?;
    for k0 in (0..n).step_by(BLOCK) {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let width = BLOCK.min(n - k0);
        let rest = n - k0 - width;
        // Columns k0.. hold [A11; A21] (`width` wide) and then the trailing matrix.
        let (block, trailing) = a
            .rb_mut()
            .submatrix_mut(k0, k0, n - k0, n - k0)
            .split_at_col_mut(width);
        let (mut diagonal, mut panel) = block.split_at_row_mut(width);
        // A11 = L11 L11ᵀ.
        factor::cholesky_in_place(
            diagonal.rb_mut(),
            Default::default(),
            Par::Seq,
            MemStack::new(&mut memory),
            Default::default(),
        )
        .map_err(|err| match err {
            factor::LltError::NonPositivePivot { index } => Error::Invalid(format!(
                "the matrix is not positive definite (pivot {} of {n}); increase the ridge",
                k0 + index
            )),
        })?;
        let l11 = diagonal.rb();
        // L21 = A21 L11⁻ᵀ, i.e. L21ᵀ = L11⁻¹ A21ᵀ, row block by row block.
        row_blocks(panel.rb_mut(), BLOCK)
            .into_par_iter()
            .for_each(|rows| solve_lower_triangular_in_place(l11, rows.transpose_mut(), Par::Seq));
        // A22 −= L21 L21ᵀ on its lower triangle, in pieces: column blocks (row
        // blocks of the transpose) cut into row blocks from their diagonal down.
        let l21 = panel.rb();
        let trailing = trailing.subrows_mut(width, rest);
        let pieces: Vec<_> = row_blocks(trailing.transpose_mut(), BLOCK)
            .into_iter()
            .enumerate()
            .flat_map(|(j, columns)| {
                let c0 = j * BLOCK;
                let below = columns.transpose_mut().subrows_mut(c0, rest - c0);
                row_blocks(below, PIECE)
                    .into_iter()
                    .enumerate()
                    .map(move |(i, m)| (c0, i * PIECE, m))
            })
            .collect();
        pieces
            .into_par_iter()
            .for_each(|(c0, r0, piece)| update(piece, c0, r0, l21));
    }
    Ok(())
}

/// A piece of the trailing matrix −= the matching rows of L21 L21ᵀ: the
/// columns c0 .. c0 + w, rows c0 + r0 .. (relative to the trailing matrix).
/// The piece at r0 = 0 starts with the w × w block on the diagonal, of which
/// only the lower triangle is updated.
fn update(piece: MatMut<'_, f64>, c0: usize, r0: usize, l21: MatRef<'_, f64>) {
    let w = piece.ncols();
    let right = l21.subrows(c0, w).transpose();
    let top = if r0 == 0 { w } else { 0 };
    let (diagonal, below) = piece.split_at_row_mut(top);
    if top > 0 {
        triangular::matmul(
            diagonal,
            BlockStructure::TriangularLower,
            Accum::Add,
            l21.subrows(c0, w),
            BlockStructure::Rectangular,
            right,
            BlockStructure::Rectangular,
            -1.0,
            Par::Seq,
        );
    }
    let lhs = l21.subrows(c0 + r0 + top, below.nrows());
    matmul(below, Accum::Add, lhs, right, -1.0, Par::Seq);
}

/// `m` cut into blocks of `height` rows (the last one shorter).
fn row_blocks(mut m: MatMut<'_, f64>, height: usize) -> Vec<MatMut<'_, f64>> {
    let mut blocks = Vec::with_capacity(m.nrows().div_ceil(height));
    while m.nrows() > 0 {
        let h = height.min(m.nrows());
        let (top, rest) = m.split_at_row_mut(h);
        blocks.push(top);
        m = rest;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A = M Mᵀ + I for a fixed M (n × n, row-major).
    fn spd(n: usize) -> Vec<f64> {
        let m: Vec<f64> = (0..n * n)
            .map(|i| ((i * 31 % 17) as f64) / 17.0 - 0.5)
            .collect();
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|p| m[i * n + p] * m[j * n + p]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        a
    }

    #[test]
    fn solves_systems_across_several_blocks() {
        // n = 40 is one block; 900 is three, the last one short.
        for n in [40, 900] {
            let a = spd(n);
            let b: Vec<f64> = (0..n * 2).map(|i| (i as f64).sin()).collect();
            let (mut l, mut x) = (a.clone(), b.clone());
            solve_spd(&mut l, n, &mut x, 2, &AtomicBool::new(false)).unwrap();
            for i in 0..n {
                for c in 0..2 {
                    let ax: f64 = (0..n).map(|j| a[i * n + j] * x[j * 2 + c]).sum();
                    let scale = 1.0
                        + (0..n)
                            .map(|j| (a[i * n + j] * x[j * 2 + c]).abs())
                            .sum::<f64>();
                    assert!(
                        (ax - b[i * 2 + c]).abs() < 1e-12 * scale,
                        "{ax} vs {}",
                        b[i * 2 + c]
                    );
                }
            }
            // The upper triangle holds U with Uᵀ U = A.
            for i in (0..n).step_by(37) {
                for j in (i..n).step_by(13) {
                    let utu: f64 = (0..=i).map(|p| l[p * n + i] * l[p * n + j]).sum();
                    assert!((utu - a[i * n + j]).abs() < 1e-10 * a[i * n + i], "{utu}");
                }
            }
        }
    }

    #[test]
    fn indefinite_matrices_bad_shapes_and_cancellation_are_errors() {
        let mut a = vec![1.0, 2.0, 2.0, 1.0];
        let mut b = vec![1.0, 1.0];
        let go = AtomicBool::new(false);
        let err = solve_spd(&mut a, 2, &mut b, 1, &go).unwrap_err();
        assert!(err.to_string().contains("not positive definite"), "{err}");
        assert!(solve_spd(&mut [1.0; 3], 2, &mut [1.0; 2], 1, &go).is_err());
        assert!(solve_spd(&mut [1.0; 4], 2, &mut [1.0; 3], 1, &go).is_err());
        // A pivot past the first block is named by its place in the whole matrix.
        let n = 500;
        let mut a = spd(n);
        a[480 * n + 480] = -1.0;
        let err = solve_spd(&mut a, n, &mut [], 0, &go).unwrap_err();
        assert!(err.to_string().contains("pivot 480 of 500"), "{err}");
        let mut a = spd(n);
        let stop = AtomicBool::new(true);
        assert_eq!(
            solve_spd(&mut a, n, &mut [], 0, &stop),
            Err(Error::Cancelled)
        );
    }
}
