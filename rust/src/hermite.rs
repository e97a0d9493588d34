//! Dual activations without a closed form, through Hermite series.
//!
//! With the normalised probabilists' Hermite polynomials h_k = He_k/√(k!) and
//! z ~ N(0, 1), every σ with E[σ(√q z)²] < ∞ expands as
//!
//! ```text
//! σ(√q z) = Σ_k a_k(q) h_k(z),     a_k(q) = E[σ(√q z) h_k(z)]
//! σ'(√q z) = Σ_k b_k(q) h_k(z),    b_k(q) = E[σ'(√q z) h_k(z)]
//! ```
//!
//! and Mehler's formula turns the two-dimensional Gaussian expectations of the
//! recursion into power series in the correlation ρ = q₁₂/√(q₁₁q₂₂):
//!
//! ```text
//! Σ  = E[σ(u)σ(v)]   = Σ_k a_k(q₁₁) a_k(q₂₂) ρ^k
//! Σ̇ = E[σ'(u)σ'(v)] = Σ_k b_k(q₁₁) b_k(q₂₂) ρ^k
//! ```
//!
//! The coefficients cost one set of one-dimensional integrals per sample and
//! layer; every pair then costs a few multiply-adds per term.
//!
//! **Quadrature.** The integrals use the trapezoid rule on z ∈ [−13, 13]
//! (beyond, √φ(z) < 1e-18 bounds every integrand). For integrands analytic in
//! a strip the rule converges geometrically in 1/h; the step
//! h = π / (2(√T + 6√q_max)) resolves both the oscillation of h_k for k < T
//! (wavenumber ≈ √k) and the scale 1/√q of σ(√q z). One grid serves all
//! coefficients: with g_n = √(h φ(z_n)) and ψ_k(z_n) = g_n h_k(z_n) (by the
//! stable three-term recurrence ψ_{k+1} = (z ψ_k − √k ψ_{k−1})/√(k+1)),
//! a_k = Σ_n (g_n σ(√q z_n)) ψ_k(z_n): one GEMM for all samples.
//!
//! **Error control.** Parseval gives Σ_k a_k² = E[σ²] =: S, computed on the same
//! grid, so the tail beyond T terms is S − Σ_{k<T} a_k² (and likewise for b
//! with E[σ'²]). By Cauchy–Schwarz the truncation error of a pair is at most
//! δ₁(K) δ₂(K) |ρ|^K √(S₁S₂), with δ(K) the relative root tail. The number of
//! terms doubles until every sample has δ(T) ≤ 1e-6; each tile then sums only
//! the K terms its largest |ρ| needs for 1e-12. The trapezoid sum on every
//! other node (step 2h) estimates the quadrature error; a σ with kinks shows
//! up there and in tails that stop decreasing, and the caller gets the
//! estimated error instead of a silently inaccurate kernel.

use crate::activation::Activation;
use crate::error::{invalid, Error, Result};
use crate::gram::par_product;
use crate::tiles::{self, TILE};
use faer::MatRef;
use rayon::prelude::*;
use std::f64::consts::PI;
use std::sync::atomic::{AtomicBool, Ordering};

/// σ and σ' at many points at once: a built-in activation, or a function
/// supplied by the caller. Called with O(N · nodes) points per layer, never
/// per pair.
pub trait Pointwise: Sync {
    /// Writes σ(x) and σ'(x) for every x.
    fn eval(&self, x: &[f64], sigma: &mut [f64], dsigma: &mut [f64]) -> Result<()>;
}

impl Pointwise for Activation {
    fn eval(&self, x: &[f64], sigma: &mut [f64], dsigma: &mut [f64]) -> Result<()> {
        const CHUNK: usize = 4096;
        tiles::pool()?.install(|| {
            x.par_chunks(CHUNK)
                .zip(sigma.par_chunks_mut(CHUNK))
                .zip(dsigma.par_chunks_mut(CHUNK))
                .for_each(|((x, s), d)| {
                    for ((x, s), d) in x.iter().zip(s).zip(d) {
                        (*s, *d) = self.sigma_and_derivative(*x);
                    }
                })
        });
        Ok(())
    }
}

/// Half-width of the integration interval in z.
const Z_MAX: f64 = 13.0;
/// Terms tried first, and the most ever used.
const FIRST_TERMS: usize = 32;
pub const MAX_TERMS: usize = 4096;
/// Relative root tail δ(T) every sample must reach: pairs then carry at most
/// δ² = 1e-12 of truncation error even at |ρ| = 1.
const TAIL_TOLERANCE: f64 = 1e-6;
/// Truncation error allowed per pair, relative to √(S₁S₂).
const PAIR_TOLERANCE: f64 = 1e-12;
/// Points per call of [`Pointwise::eval`] (and rows of the coefficient GEMM).
const CHUNK_POINTS: usize = 1 << 20;

/// The trapezoid rule with T Hermite functions tabulated on its nodes.
struct Rule {
    z: Vec<f64>,
    /// g_n = √(h φ(z_n)).
    g: Vec<f64>,
    /// ψ_k(z_n) = g_n h_k(z_n), T × nodes, row-major.
    psi: Vec<f64>,
    terms: usize,
}

impl Rule {
    fn new(terms: usize, q_max: f64) -> Result<Self> {
        let h = (PI / (2.0 * ((terms as f64).sqrt() + 6.0 * q_max.sqrt()))).min(0.2);
        // An even number of steps on each side, so that the even nodes form
        // the rule of step 2h.
        let half = 2 * ((Z_MAX / h / 2.0).ceil() as usize);
        let nodes = 2 * half + 1;
        let z: Vec<f64> = (0..nodes).map(|n| (n as f64 - half as f64) * h).collect();
        let inv_sqrt_2pi = 1.0 / (2.0 * PI).sqrt();
        let g: Vec<f64> = z
            .iter()
            .map(|z| (h * inv_sqrt_2pi * (-0.5 * z * z).exp()).sqrt())
            .collect();
        let mut psi = try_zeros(terms * nodes, "the Hermite table")?;
        psi[..nodes].copy_from_slice(&g);
        if terms > 1 {
            for n in 0..nodes {
                psi[nodes + n] = z[n] * g[n];
            }
        }
        for k in 1..terms.saturating_sub(1) {
            let (done, next) = psi.split_at_mut((k + 1) * nodes);
            let (prev, cur) = (&done[(k - 1) * nodes..k * nodes], &done[k * nodes..]);
            let (c1, c0) = (1.0 / ((k + 1) as f64).sqrt(), (k as f64).sqrt());
            for n in 0..nodes {
                next[n] = (z[n] * cur[n] - c0 * prev[n]) * c1;
            }
        }
        Ok(Rule { z, g, psi, terms })
    }

    fn nodes(&self) -> usize {
        self.z.len()
    }
}

fn try_zeros(len: usize, what: &str) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::Memory(format!(
            "{what} needs {:.1} GiB",
            len as f64 * 8.0 / (1u64 << 30) as f64
        ))
    })?;
    v.resize(len, 0.0);
    Ok(v)
}

/// One layer's Hermite series for a set of N samples.
#[derive(Debug, Clone)]
pub struct Series {
    /// T, coefficients k = 0 … T − 1 per sample.
    pub terms: usize,
    pub samples: usize,
    /// a[k·N + i] = a_k(q_i) (k-major: a tile reads its columns contiguously).
    pub a: Vec<f64>,
    /// b[k·N + i] = b_k(q_i).
    pub b: Vec<f64>,
    /// E[σ(√q_i z)²]: Σ on the diagonal (before adding β²).
    pub sigma: Vec<f64>,
    /// E[σ'(√q_i z)²]: Σ̇ on the diagonal.
    pub sigma_dot: Vec<f64>,
    /// Per block of [`TILE`] samples and K = 0 … T: the largest δ(K) of the
    /// block, (T + 1) values per block; for a and for b.
    tails_a: Vec<f64>,
    tails_b: Vec<f64>,
    /// Estimated relative error of the series (worst sample): truncation at
    /// T terms and quadrature.
    pub error: f64,
}

impl Series {
    /// Expands σ for samples of pre-activation variances `q` (all ≥ 0 and
    /// finite), doubling the number of terms until every sample's tail is
    /// below tolerance or [`MAX_TERMS`] is reached (then `error` says how far
    /// off the kernel may be).
    pub fn expand(sigma: &dyn Pointwise, q: &[f64], cancel: &AtomicBool) -> Result<Self> {
        if let Some(i) = q.iter().position(|q| !(q.is_finite() && *q >= 0.0)) {
            return invalid(format!("variance {} of sample {i} is not finite", q[i]));
        }
        let q_max = q.iter().copied().fold(0.0, f64::max);
        // Probe with the sample of largest variance, which usually needs the
        // most terms, so that the full expansion rarely has to be redone.
        let mut terms = FIRST_TERMS;
        if q.len() > 1 {
            loop {
                let probe = expand_with(&Rule::new(terms, q_max)?, sigma, &[q_max], cancel)?;
                if let Some(t) = probe.terms_needed() {
                    terms = t.max(FIRST_TERMS);
                    break;
                }
                if terms == MAX_TERMS {
                    break;
                }
                terms = (2 * terms).min(MAX_TERMS);
            }
        }
        loop {
            let rule = Rule::new(terms, q_max)?;
            let series = expand_with(&rule, sigma, q, cancel)?;
            let needed = series.terms_needed();
            if let Some(t) = needed {
                return Ok(series.truncated(t));
            }
            if terms == MAX_TERMS {
                return Ok(series);
            }
            terms = (2 * terms).min(MAX_TERMS);
        }
    }

    /// The fewest terms with δ ≤ tolerance for every sample, if there are enough.
    fn terms_needed(&self) -> Option<usize> {
        let stride = self.terms + 1;
        let first_good = |tails: &[f64]| {
            tails
                .chunks_exact(stride)
                .map(|block| block.iter().position(|&d| d <= TAIL_TOLERANCE))
                .try_fold(0, |acc, p| p.map(|p| acc.max(p)))
        };
        Some(first_good(&self.tails_a)?.max(first_good(&self.tails_b)?))
    }

    /// Keeps the first `t` terms (whose tails are already within tolerance).
    fn truncated(mut self, t: usize) -> Self {
        let t = t.max(1);
        if t >= self.terms {
            return self;
        }
        let n = self.samples;
        self.a.truncate(t * n);
        self.b.truncate(t * n);
        let old = self.terms + 1;
        let keep = |tails: &[f64]| -> Vec<f64> {
            tails
                .chunks_exact(old)
                .flat_map(|block| block[..=t].iter().copied())
                .collect()
        };
        self.tails_a = keep(&self.tails_a);
        self.tails_b = keep(&self.tails_b);
        self.terms = t;
        self.error = self.error.max(max_last(&self.tails_a, t + 1).powi(2));
        self.error = self.error.max(max_last(&self.tails_b, t + 1).powi(2));
        self
    }

    fn block_tails<'t>(&self, tails: &'t [f64], block: usize) -> &'t [f64] {
        let stride = self.terms + 1;
        &tails[block * stride..(block + 1) * stride]
    }

    /// Terms a tile needs: the smallest K with
    /// δ_rows(K) δ_cols(K) r^K ≤ 1e-12 for both series, where `r` bounds |ρ|
    /// on the tile and `rows`, `cols` are the tile's first samples.
    pub fn tile_terms(rows: (&Series, usize), cols: (&Series, usize), r: f64) -> (usize, usize) {
        let (sr, r0) = rows;
        let (sc, c0) = cols;
        let terms = sr.terms.min(sc.terms);
        let need = |tr: &[f64], tc: &[f64]| {
            let mut power = 1.0;
            for k in 0..terms {
                if tr[k] * tc[k] * power <= PAIR_TOLERANCE {
                    return k;
                }
                power *= r;
            }
            terms
        };
        let (br, bc) = (r0 / TILE, c0 / TILE);
        (
            need(
                sr.block_tails(&sr.tails_a, br),
                sc.block_tails(&sc.tails_a, bc),
            ),
            need(
                sr.block_tails(&sr.tails_b, br),
                sc.block_tails(&sc.tails_b, bc),
            ),
        )
    }

    /// Coefficients k < `terms` of sample i from a k-major table.
    pub fn gather(table: &[f64], samples: usize, i: usize, terms: usize, out: &mut Vec<f64>) {
        out.clear();
        out.extend((0..terms).map(|k| table[k * samples + i]));
    }
}

fn max_last(tails: &[f64], stride: usize) -> f64 {
    tails
        .chunks_exact(stride)
        .map(|b| b[stride - 1])
        .fold(0.0, f64::max)
}

/// Neumaier's compensated sum of squares.
fn sum_squares(values: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut carry) = (0.0f64, 0.0f64);
    for v in values {
        let x = v * v;
        let t = sum + x;
        carry += if sum.abs() >= x {
            (sum - t) + x
        } else {
            (x - t) + sum
        };
        sum = t;
    }
    sum + carry
}

fn expand_with(
    rule: &Rule,
    sigma: &dyn Pointwise,
    q: &[f64],
    cancel: &AtomicBool,
) -> Result<Series> {
    let (n, nodes, terms) = (q.len(), rule.nodes(), rule.terms);
    let mut a = try_zeros(terms * n, "the Hermite coefficients")?;
    let mut b = try_zeros(terms * n, "the Hermite coefficients")?;
    let mut s_diag = vec![0.0; n];
    let mut d_diag = vec![0.0; n];
    let mut quadrature = 0.0f64;
    let chunk = (CHUNK_POINTS / nodes).max(1).min(n);
    let mut x = try_zeros(chunk * nodes, "the quadrature nodes")?;
    let (mut s, mut d) = (x.clone(), x.clone());
    let (mut ca, mut cb) = (
        try_zeros(chunk * terms, "the Hermite coefficients")?,
        try_zeros(chunk * terms, "the Hermite coefficients")?,
    );
    // ψᵀ, nodes × T, as a view of the row-major T × nodes table.
    let psi_t = MatRef::from_row_major_slice(&rule.psi, terms, nodes).transpose();
    for i0 in (0..n).step_by(chunk) {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let rows = chunk.min(n - i0);
        let len = rows * nodes;
        let pool = tiles::pool()?;
        pool.install(|| {
            x[..len]
                .par_chunks_mut(nodes)
                .zip(&q[i0..i0 + rows])
                .for_each(|(xr, q)| {
                    let sq = q.sqrt();
                    for (xv, z) in xr.iter_mut().zip(&rule.z) {
                        *xv = sq * z;
                    }
                })
        });
        sigma.eval(&x[..len], &mut s[..len], &mut d[..len])?;
        if let Some(p) = s[..len]
            .iter()
            .chain(&d[..len])
            .position(|v| !v.is_finite())
        {
            let p = p % len;
            return invalid(format!("the activation is not finite at x = {:e}", x[p]));
        }
        // Per sample: weight by g, then E[σ²], E[σ'²] and the discrepancy of
        // the rule of step 2h (the even nodes with twice the weight).
        let moments: Vec<(f64, f64, f64)> = pool.install(|| {
            s[..len]
                .par_chunks_mut(nodes)
                .zip(d[..len].par_chunks_mut(nodes))
                .map(|(sr, dr)| {
                    for ((sv, dv), g) in sr.iter_mut().zip(dr.iter_mut()).zip(&rule.g) {
                        *sv *= g;
                        *dv *= g;
                    }
                    let (s1, d1) = (
                        sum_squares(sr.iter().copied()),
                        sum_squares(dr.iter().copied()),
                    );
                    let s2 = 2.0 * sum_squares(sr.iter().step_by(2).copied());
                    let d2 = 2.0 * sum_squares(dr.iter().step_by(2).copied());
                    let gap = |full: f64, half: f64| {
                        if full > 0.0 {
                            (full - half).abs() / full
                        } else {
                            0.0
                        }
                    };
                    (s1, d1, gap(s1, s2).max(gap(d1, d2)))
                })
                .collect()
        });
        for (r, (s1, d1, gap)) in moments.into_iter().enumerate() {
            s_diag[i0 + r] = s1;
            d_diag[i0 + r] = d1;
            quadrature = quadrature.max(gap);
        }
        let lhs_s = MatRef::from_row_major_slice(&s[..len], rows, nodes);
        let lhs_d = MatRef::from_row_major_slice(&d[..len], rows, nodes);
        par_product(&mut ca[..rows * terms], lhs_s, psi_t, 1.0, cancel)?;
        par_product(&mut cb[..rows * terms], lhs_d, psi_t, 1.0, cancel)?;
        // Into the k-major tables.
        pool.install(|| {
            a.par_chunks_mut(n)
                .zip(b.par_chunks_mut(n))
                .enumerate()
                .for_each(|(k, (ak, bk))| {
                    for r in 0..rows {
                        ak[i0 + r] = ca[r * terms + k];
                        bk[i0 + r] = cb[r * terms + k];
                    }
                })
        });
    }
    let tails_a = block_tails(&a, &s_diag, terms, n);
    let tails_b = block_tails(&b, &d_diag, terms, n);
    let mut error = quadrature;
    error = error.max(max_last(&tails_a, terms + 1).powi(2));
    error = error.max(max_last(&tails_b, terms + 1).powi(2));
    Ok(Series {
        terms,
        samples: n,
        a,
        b,
        sigma: s_diag,
        sigma_dot: d_diag,
        tails_a,
        tails_b,
        error,
    })
}

/// Per block of TILE samples, max over the block of
/// δ_i(K) = √((Σ_{K ≤ k < T} c_k² + rest_i) / total_i) for K = 0 … T, where
/// rest_i = total_i − Σ_{k<T} c_k² ≥ 0 is what lies beyond the T terms.
fn block_tails(coef: &[f64], total: &[f64], terms: usize, n: usize) -> Vec<f64> {
    let stride = terms + 1;
    let mut out = vec![0.0f64; n.div_ceil(TILE) * stride];
    let work = |(block, out): (usize, &mut [f64])| {
        let (i0, i1) = (block * TILE, ((block + 1) * TILE).min(n));
        let total = &total[i0..i1];
        // Running tails of the block's samples, from the last term down
        // (k outer, samples inner: the k-major table is read contiguously).
        let mut tail: Vec<f64> = (i0..i1)
            .map(|i| {
                let column = (0..terms).map(|k| coef[k * n + i]);
                (total[i - i0] - sum_squares(column)).max(0.0)
            })
            .collect();
        let inv: Vec<f64> = total
            .iter()
            .map(|&t| if t > 0.0 { 1.0 / t } else { 0.0 })
            .collect();
        let worst = |tail: &[f64]| {
            tail.iter()
                .zip(&inv)
                .fold(0.0f64, |m, (t, v)| m.max((t * v).sqrt()))
        };
        out[terms] = worst(&tail);
        for k in (0..terms).rev() {
            for (t, c) in tail.iter_mut().zip(&coef[k * n + i0..k * n + i1]) {
                *t += c * c;
            }
            out[k] = worst(&tail);
        }
    };
    match tiles::pool() {
        Ok(pool) => pool.install(|| out.par_chunks_mut(stride).enumerate().for_each(work)),
        Err(_) => out.chunks_mut(stride).enumerate().for_each(work),
    }
    out
}

/// p_j = Σ_{k<K} row_k · cols[k·stride + j] · ρ_j^k for the columns of one
/// tile row, by Horner's rule, K = `row.len()`. Columns go in groups of
/// [`LANES`] so that independent accumulators hide the latency of each step;
/// the remainder uses the same arithmetic, one column at a time.
pub fn series_row(row: &[f64], cols: &[f64], stride: usize, rho: &[f64], out: &mut [f64]) {
    const LANES: usize = 16;
    let w = rho.len();
    let groups = w / LANES;
    for g in 0..groups {
        let j0 = g * LANES;
        let r: &[f64; LANES] = rho[j0..j0 + LANES].try_into().expect("group size");
        let mut p = [0.0f64; LANES];
        for (k, &c) in row.iter().enumerate().rev() {
            let t: &[f64; LANES] = cols[k * stride + j0..k * stride + j0 + LANES]
                .try_into()
                .expect("group size");
            for l in 0..LANES {
                p[l] = p[l] * r[l] + c * t[l];
            }
        }
        out[j0..j0 + LANES].copy_from_slice(&p);
    }
    for j in groups * LANES..w {
        let mut p = 0.0;
        for (k, &c) in row.iter().enumerate().rev() {
            p = p * rho[j] + c * cols[k * stride + j];
        }
        out[j] = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duals::dual_pair;

    fn expand(act: Activation, q: &[f64]) -> Series {
        Series::expand(&act, q, &AtomicBool::new(false)).unwrap()
    }

    fn pair(s: &Series, i: usize, j: usize, rho: f64) -> (f64, f64) {
        let n = s.samples;
        let (mut ra, mut rb) = (Vec::new(), Vec::new());
        Series::gather(&s.a, n, i, s.terms, &mut ra);
        Series::gather(&s.b, n, i, s.terms, &mut rb);
        let (mut va, mut vb) = ([0.0], [0.0]);
        series_row(&ra, &s.a[j..], n, &[rho], &mut va);
        series_row(&rb, &s.b[j..], n, &[rho], &mut vb);
        (va[0], vb[0])
    }

    /// Identity: a_1 = √q and nothing else; b_0 = 1.
    #[test]
    fn identity_has_one_term() {
        let s = expand(Activation::Identity, &[0.0, 0.5, 3.0]);
        for (i, q) in [0.0f64, 0.5, 3.0].iter().enumerate() {
            for k in 0..s.terms {
                let want = if k == 1 { q.sqrt() } else { 0.0 };
                assert!((s.a[k * 3 + i] - want).abs() < 1e-14, "a_{k}({q})");
                let want_b = if k == 0 { 1.0 } else { 0.0 };
                assert!((s.b[k * 3 + i] - want_b).abs() < 1e-14, "b_{k}({q})");
            }
            assert!((s.sigma[i] - q).abs() < 1e-14 * q.max(1.0));
        }
    }

    /// The series reproduces the closed-form duals of the smooth activations,
    /// at unequal variances and |ρ| up to 1.
    #[test]
    fn series_match_closed_forms() {
        let q = [0.05, 0.8, 2.5, 6.0];
        for act in [
            Activation::Erf,
            Activation::Gelu,
            Activation::Sin,
            Activation::Cos,
        ] {
            let s = expand(act, &q);
            assert!(s.error < 1e-11, "{act:?} error estimate {}", s.error);
            for (i, j) in [(0, 1), (1, 2), (2, 3), (3, 3), (0, 3)] {
                for rho in [-1.0, -0.7, 0.0, 0.3, 0.95, 1.0] {
                    let q12 = rho * (q[i] * q[j]).sqrt();
                    let (want, want_dot) = dual_pair(act, q[i], q[j], q12).unwrap();
                    let (got, got_dot) = pair(&s, i, j, rho);
                    let scale = (s.sigma[i] * s.sigma[j]).sqrt();
                    let scale_dot = (s.sigma_dot[i] * s.sigma_dot[j]).sqrt();
                    assert!(
                        (got - want).abs() <= 1e-11 * scale,
                        "{act:?} Σ({i},{j},{rho}) {got} vs {want}"
                    );
                    assert!(
                        (got_dot - want_dot).abs() <= 1e-11 * scale_dot,
                        "{act:?} Σ̇({i},{j},{rho}) {got_dot} vs {want_dot}"
                    );
                }
            }
        }
    }

    /// Σ̇ = ∂Σ/∂q₁₂ (Price) for the activations without a closed form.
    #[test]
    fn price_identity_holds_for_the_series() {
        let q = [0.6, 2.0];
        for act in [
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Softplus,
            Activation::Silu,
        ] {
            let s = expand(act, &q);
            let scale = (q[0] * q[1]).sqrt();
            for rho in [-0.8, 0.1, 0.9] {
                let h = 1e-5;
                let fd =
                    (pair(&s, 0, 1, rho + h).0 - pair(&s, 0, 1, rho - h).0) / (2.0 * h * scale);
                let dot = pair(&s, 0, 1, rho).1;
                assert!((fd - dot).abs() < 1e-8 * dot.abs(), "{act:?} {fd} vs {dot}");
            }
        }
    }

    /// tanh needs more terms as q grows and stays within tolerance at q = 25.
    #[test]
    fn terms_grow_with_the_variance() {
        let small = expand(Activation::Tanh, &[0.25]);
        let large = expand(Activation::Tanh, &[25.0]);
        assert!(
            small.terms < 64 && large.terms > 1000,
            "{} {}",
            small.terms,
            large.terms
        );
        assert!(large.error <= 1e-11, "error {}", large.error);
        // Far from ρ = ±1 a tile needs far fewer terms.
        let (ka, kb) = Series::tile_terms((&large, 0), (&large, 0), 0.5);
        assert!(ka < 60 && kb < 60, "{ka} {kb}");
        assert_eq!(
            Series::tile_terms((&large, 0), (&large, 0), 1.0).1,
            large.terms
        );
    }

    /// A kink (|x|) cannot converge: the error estimate says so.
    #[test]
    fn kinks_are_reported() {
        let s = expand(Activation::Abs, &[1.0]);
        assert_eq!(s.terms, MAX_TERMS);
        assert!(s.error > 1e-6, "error {}", s.error);
    }

    #[test]
    fn non_finite_values_are_an_error() {
        struct Bad;
        impl Pointwise for Bad {
            fn eval(&self, x: &[f64], s: &mut [f64], d: &mut [f64]) -> Result<()> {
                for ((x, s), d) in x.iter().zip(s).zip(d) {
                    *s = 1.0 / x;
                    *d = 0.0;
                }
                Ok(())
            }
        }
        let err = Series::expand(&Bad, &[1.0], &AtomicBool::new(false)).unwrap_err();
        assert!(err.to_string().contains("not finite at x = 0"), "{err}");
    }
}
