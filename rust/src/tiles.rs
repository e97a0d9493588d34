//! Tiling of the output matrices, and the output they are written into.
//!
//! A kernel matrix is cut into square tiles of `TILE` rows and columns, and
//! the tiles down a column block into panels of a few tiles. Each panel is
//! computed from start to finish by one thread (one Gram block for the panel,
//! then all layers of the recursion on each tile while it sits in cache) and
//! written once into the caller's output, so extra memory is a few tiles per
//! thread whatever the size of the output, and the result does not depend on
//! the thread count.

use crate::simd::Simd;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

/// Tile edge: a multiple of the GEMM's register blocks (24 rows in f32, 12 in
/// f64, 4 columns), so that no tile runs the slower edge kernels. The f64 tiles
/// of a thread (Σ, Θ and the mirror image, 120² each) take 338 KiB, the f32 tiles
/// of the single-precision layers half that: they stay in L2 during the layer loop.
pub const TILE: usize = 120;

/// Tile edge of float32 kernels whose layers run in f32 (`limit::layers_f32`):
/// also a multiple of the AVX-512 register blocks' 48 rows (faer runs 96 × 4 f32
/// blocks there), and the f32 tiles of a thread (Gram, Σ, Θ, mirror: 81 KiB
/// each) still fit in L2 (the edges measured are in docs/performance.md).
pub const TILE_F32: usize = 144;

/// Rows `r0..r1` × columns `c0..c1` of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub r0: usize,
    pub r1: usize,
    pub c0: usize,
    pub c1: usize,
}

impl Tile {
    pub fn rows(&self) -> usize {
        self.r1 - self.r0
    }
    pub fn cols(&self) -> usize {
        self.c1 - self.c0
    }
    /// A tile on the diagonal of a symmetric output.
    pub fn is_diagonal(&self) -> bool {
        self.r0 == self.c0
    }
    /// The tiles of `edge` rows (the last one shorter) that make up a panel.
    pub fn row_tiles(self, edge: usize) -> impl Iterator<Item = Tile> {
        (self.r0..self.r1).step_by(edge).map(move |r0| Tile {
            r0,
            r1: (r0 + edge).min(self.r1),
            ..self
        })
    }
}

/// Rows of tiles that one GEMM call covers in [`panels`]: four tiles share the
/// packed copy of their columns' inputs that the GEMM makes once per call.
pub const PANEL_TILES: usize = 4;

/// Outputs of fewer tiles than this are not grouped into panels: they leave
/// the pool few work items already (the choice depends on the shape only, so
/// the work items never depend on the thread count).
const MIN_TILES_FOR_PANELS: usize = 64;

/// The square tiles of edge `edge` (≥ 1) covering an n1 × n2 output (with
/// `symmetric`, only those on or below the diagonal; n1 == n2), grouped into
/// panels: up to `height` consecutive tiles of one column block, whose Gram blocks one GEMM call
/// computes (it packs the column samples once per call, so once per panel
/// instead of once per tile). A last block of fewer than `edge` rows is a
/// panel of its own, so every row's Gram entries come from the same kind of
/// GEMM call whichever panel holds them (faer's GEMM sums each entry in the
/// same order for any number of rows, except in its one-row path and, for
/// products of at most 4096 multiply-adds per depth chunk, its small-product
/// path). With
/// `symmetric`, a column block's diagonal tile is a panel of its own (it may
/// be computed as one triangle), and the panels below it follow. Outputs of
/// fewer than 64 tiles get panels of one tile.
pub fn panels(n1: usize, n2: usize, symmetric: bool, edge: usize, height: usize) -> Vec<Tile> {
    let (rows, cols) = (n1.div_ceil(edge), n2.div_ceil(edge));
    let tiles = if symmetric {
        rows * (rows + 1) / 2
    } else {
        rows * cols
    };
    let height = if tiles < MIN_TILES_FOR_PANELS {
        1
    } else {
        height
    };
    let whole = n1 / edge * edge;
    let mut out = Vec::new();
    for c0 in (0..n2).step_by(edge) {
        let c1 = (c0 + edge).min(n2);
        let mut start = 0;
        if symmetric {
            if c1 - c0 == edge {
                out.push(Tile {
                    r0: c0,
                    r1: c1,
                    c0,
                    c1,
                });
            }
            start = c1;
        }
        for r0 in (start..whole).step_by(edge * height) {
            let r1 = (r0 + edge * height).min(whole);
            out.push(Tile { r0, r1, c0, c1 });
        }
        if whole < n1 {
            // The short last row block (for a symmetric output's last column
            // block, its diagonal tile).
            out.push(Tile {
                r0: whole,
                r1: n1,
                c0,
                c1,
            });
        }
    }
    out
}

/// A buffer from which [`aligned`] cuts at least `len` values.
pub(crate) fn alignable<T: Default + Clone>(len: usize) -> Vec<T> {
    vec![T::default(); len + 64]
}

/// `buffer` (from [`alignable`]) from its first 64-byte boundary on. faer's GEMM chooses its kernels for short blocks by the alignment
/// of the output, and their sums can differ in the last bit: GEMM outputs at a
/// fixed alignment keep the results independent of where the allocator put a
/// thread's buffers.
pub(crate) fn aligned<T>(buffer: &mut [T]) -> &mut [T] {
    let start = buffer.as_ptr().align_offset(64).min(buffer.len());
    &mut buffer[start..]
}

/// How a computed tile is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// At its position only.
    Plain,
    /// At its position and, transposed, at the mirror position (symmetric output).
    Mirrored,
    /// A diagonal tile of a symmetric output: its lower triangle is written to
    /// both triangles, so the output is exactly symmetric.
    Symmetrised,
}

/// A row-major output that several threads write, each into its own tiles.
pub struct SharedOutput<'a, T> {
    ptr: *mut T,
    rows: usize,
    cols: usize,
    /// How [`SharedOutput::write`] stores rows: fixed by the output's size
    /// and the CPU.
    writes: Writes,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the pointer comes from a `&mut [T]` held for 'a; writers touch
// disjoint tiles (see `write`), so sharing it between threads is sound.
unsafe impl<T: Send> Send for SharedOutput<'_, T> {}
unsafe impl<T: Send> Sync for SharedOutput<'_, T> {}

impl<'a, T: Copy> SharedOutput<'a, T> {
    pub fn new(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        // SAFETY: the slice is borrowed for 'a.
        unsafe { Self::from_parts(data.as_mut_ptr(), data.len(), rows, cols) }
    }

    /// # Safety
    /// `ptr` must be valid for writes of `len` values, and not otherwise used, for 'a.
    unsafe fn from_parts(ptr: *mut T, len: usize, rows: usize, cols: usize) -> Self {
        assert_eq!(len, rows * cols, "output length");
        SharedOutput {
            ptr,
            rows,
            cols,
            writes: Writes::for_output(len * std::mem::size_of::<T>()),
            _borrow: PhantomData,
        }
    }

    /// An output whose entries hold no values yet (as in `gram::par_product_new`):
    /// each must be written, through [`SharedOutput::block_mut`] by a product
    /// that overwrites, before [`SharedOutput::row_mut`] or the caller reads it.
    pub fn uninit(data: &'a mut [MaybeUninit<T>], rows: usize, cols: usize) -> Self {
        // SAFETY: the slice is borrowed for 'a; `MaybeUninit<T>` has the layout of `T`.
        unsafe { Self::from_parts(data.as_mut_ptr().cast(), data.len(), rows, cols) }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The tile as a mutable matrix view.
    ///
    /// # Safety
    /// As for [`SharedOutput::write`]: no other live view or write may cover
    /// the same entries, and the tile must lie inside the output. For an
    /// output made by [`SharedOutput::uninit`], the view must be overwritten
    /// before any of it is read.
    pub unsafe fn block_mut(&self, tile: Tile) -> faer::MatMut<'a, T> {
        debug_assert!(tile.r1 <= self.rows && tile.c1 <= self.cols);
        faer::MatMut::from_raw_parts_mut(
            self.ptr.add(tile.r0 * self.cols + tile.c0),
            tile.rows(),
            tile.cols(),
            self.cols as isize,
            1,
        )
    }

    /// Columns c0..c1 of row r.
    ///
    /// # Safety
    /// As for [`SharedOutput::block_mut`], and the entries must have been written.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn row_mut(&self, r: usize, c0: usize, c1: usize) -> &'a mut [T] {
        debug_assert!(r < self.rows && c0 <= c1 && c1 <= self.cols);
        std::slice::from_raw_parts_mut(self.ptr.add(r * self.cols + c0), c1 - c0)
    }
}

/// Outputs at least this large (bytes) are written with non-temporal stores:
/// they cannot stay in cache anyway, and streaming them out saves the read of
/// each line before it is overwritten. Smaller ones stay in cache for the caller.
const STREAM_BYTES: usize = 16 << 20;

/// How rows reach an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Ordinary stores, through the cache.
    Cached,
    /// Non-temporal 16-byte stores (SSE2, on every x86-64 CPU).
    Stream,
    /// Non-temporal 64-byte stores, a whole cache line each (AVX-512): the
    /// line leaves the write-combining buffer in one piece. 2–3 % less time
    /// than 16-byte stores for a float32 ReLU kernel of 4096 samples.
    StreamLines,
}

impl Writes {
    /// Non-temporal stores for outputs of at least [`STREAM_BYTES`], of whole
    /// lines where the CPU has AVX-512.
    fn for_output(bytes: usize) -> Self {
        if bytes < STREAM_BYTES {
            return Writes::Cached;
        }
        #[cfg(target_arch = "x86_64")]
        if Simd::detect() == Simd::Avx512 {
            return Writes::StreamLines;
        }
        Writes::Stream
    }
}

/// The element types of stored kernels, written from tiles of `V` (the f64 of
/// the recursion, or f32 where float32 kernels run it in single precision):
/// conversion and a row store that can bypass the cache.
pub trait Store<V: Copy = f64>: Copy {
    /// dst[k] = src[k] rounded to `Self`, stored as `writes` says.
    fn store_row(dst: &mut [Self], src: &[V], writes: Writes);
}

/// dst[k] = convert(src[k]): elements up to the first boundary of a chunk of
/// `LANES` elements (16 or 64 bytes) in `dst` and after the last whole chunk
/// one by one, the chunks in between by `chunk(dst + k, src + k)` (a
/// non-temporal store).
///
/// # Safety
/// `chunk` may write `LANES` elements at a chunk-aligned `dst + k` and read
/// `LANES` values at `src + k`, nothing else.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn stream_row<T: Copy, V: Copy, const LANES: usize>(
    dst: &mut [T],
    src: &[V],
    convert: impl Fn(V) -> T,
    chunk: impl Fn(*mut T, *const V),
) {
    let n = dst.len().min(src.len());
    let head = dst.as_ptr().align_offset(LANES * size_of::<T>()).min(n);
    let body = head + (n - head) / LANES * LANES;
    for (d, &v) in dst[..head].iter_mut().zip(src) {
        *d = convert(v);
    }
    for k in (head..body).step_by(LANES) {
        chunk(dst.as_mut_ptr().add(k), src.as_ptr().add(k));
    }
    for (d, &v) in dst[body..n].iter_mut().zip(&src[body..n]) {
        *d = convert(v);
    }
}

/// Store of a type into itself: a copy, streamed `$lanes` at a time with the
/// SSE(2) unaligned load `$load` and non-temporal store `$stream`, or a line
/// at a time by `$lines` with the AVX-512 `$load_line` and `$stream_line`.
macro_rules! same_type_store {
    ($t:ty, $lanes:expr, $load:ident, $stream:ident,
     $lines:ident, $load_line:ident, $stream_line:ident) => {
        /// dst = src, with one non-temporal store per whole cache line of dst
        /// and ordinary stores for the partial lines at either end.
        ///
        /// # Safety
        /// The CPU must support AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn $lines(dst: &mut [$t], src: &[$t]) {
            use std::arch::x86_64::{$load_line, $stream_line};
            const LINE: usize = 64 / size_of::<$t>();
            // SAFETY: a cache line of values per chunk (AVX-512F: the caller).
            unsafe {
                stream_row::<_, _, LINE>(dst, src, |v| v, |d, s| $stream_line(d, $load_line(s)))
            }
        }

        impl Store<$t> for $t {
            #[inline]
            fn store_row(dst: &mut [$t], src: &[$t], writes: Writes) {
                #[cfg(target_arch = "x86_64")]
                match writes {
                    // SAFETY: `Writes::for_output` chose lines only where
                    // the CPU has AVX-512 (F among its subsets).
                    Writes::StreamLines => return unsafe { $lines(dst, src) },
                    Writes::Stream => {
                        use std::arch::x86_64::{$load, $stream};
                        // SAFETY: `$lanes` values per chunk, at an aligned dst
                        // (SSE and SSE2 are part of x86_64).
                        return unsafe {
                            stream_row::<_, _, $lanes>(dst, src, |v| v, |d, s| $stream(d, $load(s)))
                        };
                    }
                    Writes::Cached => {}
                }
                let _ = writes;
                dst.copy_from_slice(&src[..dst.len()]);
            }
        }
    };
}

same_type_store!(
    f64,
    2,
    _mm_loadu_pd,
    _mm_stream_pd,
    stream_lines_f64,
    _mm512_loadu_pd,
    _mm512_stream_pd
);
same_type_store!(
    f32,
    4,
    _mm_loadu_ps,
    _mm_stream_ps,
    stream_lines_f32,
    _mm512_loadu_ps,
    _mm512_stream_ps
);

impl Store for f32 {
    #[inline]
    fn store_row(dst: &mut [f32], src: &[f64], writes: Writes) {
        // Narrowing stores stream 16 bytes at a time on every CPU.
        #[cfg(target_arch = "x86_64")]
        if writes != Writes::Cached {
            use std::arch::x86_64::{_mm_cvtpd_ps, _mm_loadu_pd, _mm_movelh_ps, _mm_stream_ps};
            // SAFETY: four values per chunk, at an aligned dst (SSE2 is part of
            // x86_64); the conversion rounds to nearest, as `as f32` does.
            unsafe {
                stream_row::<_, _, 4>(
                    dst,
                    src,
                    |v| v as f32,
                    |d, s| {
                        let lo = _mm_cvtpd_ps(_mm_loadu_pd(s));
                        let hi = _mm_cvtpd_ps(_mm_loadu_pd(s.add(2)));
                        _mm_stream_ps(d, _mm_movelh_ps(lo, hi));
                    },
                )
            };
            return;
        }
        let _ = writes;
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v as f32;
        }
    }
}

/// Widening store, for generic code only: f64 kernels never run the recursion in f32.
impl Store<f32> for f64 {
    #[inline]
    fn store_row(dst: &mut [f64], src: &[f32], _writes: Writes) {
        for (d, &v) in dst.iter_mut().zip(src) {
            *d = v as f64;
        }
    }
}

impl<T: Copy> SharedOutput<'_, T> {
    /// Stores `values` (tile.rows() × tile.cols(), row-major), using
    /// `transposed` (at least as long) for the mirror image.
    ///
    /// # Safety
    /// No two concurrent calls may cover the same output entries (tiles from
    /// [`panels`] never do, mirrors included), and the tile must lie inside the output.
    pub unsafe fn write<V: Copy>(
        &self,
        tile: Tile,
        values: &[V],
        placement: Placement,
        transposed: &mut [V],
    ) where
        T: Store<V>,
    {
        let (h, w) = (tile.rows(), tile.cols());
        debug_assert!(tile.r1 <= self.rows && tile.c1 <= self.cols && values.len() >= h * w);
        let writes = self.writes;
        if placement == Placement::Symmetrised {
            // Lower triangle to both triangles (the tile is square).
            for i in 0..h {
                for j in 0..i {
                    transposed[j * w + i] = values[i * w + j];
                    transposed[i * w + j] = values[i * w + j];
                }
                transposed[i * w + i] = values[i * w + i];
            }
        }
        let source = if placement == Placement::Symmetrised {
            &transposed[..h * w]
        } else {
            &values[..h * w]
        };
        for (i, row) in source.chunks_exact(w).enumerate() {
            T::store_row(self.row_mut(tile.r0 + i, tile.c0, tile.c1), row, writes);
        }
        if placement == Placement::Mirrored {
            // Transpose in the cache (8 × 8 blocks: rows of both tiles are
            // 1 KiB apart, and a whole column at once would thrash L1's sets),
            // then write whole rows of the mirror image.
            const B: usize = 8;
            for i0 in (0..h).step_by(B) {
                for j0 in (0..w).step_by(B) {
                    if i0 + B <= h && j0 + B <= w {
                        // A whole block through registers: fixed sizes, so no
                        // per-element bounds checks and the compiler shuffles.
                        let mut block = [[values[0]; B]; B];
                        for (i, row) in block.iter_mut().enumerate() {
                            row.copy_from_slice(&values[(i0 + i) * w + j0..][..B]);
                        }
                        for j in 0..B {
                            let column = &mut transposed[(j0 + j) * h + i0..][..B];
                            for (c, row) in column.iter_mut().zip(&block) {
                                *c = row[j];
                            }
                        }
                        continue;
                    }
                    for i in i0..(i0 + B).min(h) {
                        for j in j0..(j0 + B).min(w) {
                            transposed[j * h + i] = values[i * w + j];
                        }
                    }
                }
            }
            for (j, row) in transposed[..h * w].chunks_exact(h).enumerate() {
                T::store_row(self.row_mut(tile.c0 + j, tile.r0, tile.r1), row, writes);
            }
        }
        #[cfg(target_arch = "x86_64")]
        if writes != Writes::Cached {
            // Non-temporal stores are weakly ordered: make them visible before
            // the pool reports the tile done.
            std::arch::x86_64::_mm_sfence();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every way of storing a row copies exactly the row, whatever the
    /// alignment of its ends, and nothing around it.
    #[test]
    fn row_stores_copy_exactly_the_row() {
        fn check<T: Copy + PartialEq + std::fmt::Debug + Store<T> + From<u16>>(writes: Writes) {
            for offset in 0..20 {
                for len in 0..80 {
                    let src: Vec<T> = (0..len as u16).map(|v| T::from(v + 1)).collect();
                    let mut buf = vec![T::from(0); offset + len + 20];
                    T::store_row(&mut buf[offset..offset + len], &src, writes);
                    assert!(buf[..offset].iter().all(|&v| v == T::from(0)));
                    assert_eq!(
                        &buf[offset..offset + len],
                        &src[..],
                        "{writes:?} {offset} {len}"
                    );
                    assert!(buf[offset + len..].iter().all(|&v| v == T::from(0)));
                }
            }
        }
        let mut all = vec![Writes::Cached, Writes::Stream];
        #[cfg(target_arch = "x86_64")]
        if Simd::detect() == Simd::Avx512 {
            all.push(Writes::StreamLines);
        }
        for writes in all {
            check::<f64>(writes);
            check::<f32>(writes);
        }
    }

    /// Panels hold whole tiles of the edge, on or below the diagonal when
    /// symmetric, grouped down a column block (diagonal tiles and short last
    /// row blocks alone), and cover every entry exactly once: diagonal tiles
    /// are written whole, the others at their place and mirrored.
    #[test]
    fn panels_cover_each_entry_once_in_whole_tiles() {
        for &(n1, n2, sym) in &[
            (300, 300, true),
            (300, 130, false),
            (1, 1, true),
            (128, 129, false),
            (1000, 1000, true),
            (961, 961, true),
            (481, 7, false),
        ] {
            for edge in [1, 7, 120] {
                for height in [1, 2, 4] {
                    let mut seen = vec![0u8; n1 * n2];
                    for p in panels(n1, n2, sym, edge, height) {
                        let row_tiles: Vec<Tile> = p.row_tiles(edge).collect();
                        assert!(row_tiles.len() <= height, "{p:?}");
                        let alone = (sym && p.is_diagonal()) || p.rows() < edge;
                        let whole = row_tiles.iter().all(|t| t.rows() == edge);
                        assert!((!alone && whole) || row_tiles.len() == 1, "{p:?}");
                        for t in row_tiles {
                            assert!(t.r0 % edge == 0 && t.r1 == (t.r0 + edge).min(n1));
                            assert!(t.c0 % edge == 0 && t.c1 == (t.c0 + edge).min(n2));
                            assert!(!sym || t.r0 >= t.c0, "{t:?}");
                            for i in t.r0..t.r1 {
                                for j in t.c0..t.c1 {
                                    seen[i * n2 + j] += 1;
                                    if sym && !t.is_diagonal() {
                                        seen[j * n2 + i] += 1;
                                    }
                                }
                            }
                        }
                    }
                    let what = format!("{n1}x{n2} symmetric={sym} edge {edge} height {height}");
                    assert!(seen.iter().all(|&c| c == 1), "{what}");
                }
            }
        }
    }
}
