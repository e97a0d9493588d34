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
//! a_k = Σ_n (g_n σ(√q z_n)) ψ_k(z_n): GEMMs over all samples (h_k has the
//! parity of k, so the tables hold the non-negative nodes only).
//!
//! **Error control.** Parseval gives Σ_k a_k² = E[σ²] =: S, computed on the same
//! grid, so the tail beyond T terms is S − Σ_{k<T} a_k² (and likewise for b
//! with E[σ'²]). By Cauchy–Schwarz the truncation error of a pair is at most
//! δ₁(K) δ₂(K) |ρ|^K √(S₁S₂), with δ(K) the relative root tail. The number of
//! terms doubles until every sample has δ(T) ≤ 1e-6; each row of a tile then
//! sums only the K terms its largest |ρ| needs for 1e-12. The trapezoid sum
//! on every other node (step 2h) estimates the quadrature error; a σ with kinks shows
//! up there and in tails that stop decreasing, and the caller gets the
//! estimated error instead of a silently inaccurate kernel.

use crate::activation::Activation;
use crate::error::{invalid, Error, Result};
use crate::pool;
use crate::real::Real;
use crate::tiles::{SharedOutput, Tile, TILE};
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

    /// Whether `eval` may run on several threads at once with small inputs
    /// (true for the built-ins); otherwise it gets few, large calls.
    fn concurrent(&self) -> bool {
        false
    }
}

impl Pointwise for Activation {
    fn eval(&self, x: &[f64], sigma: &mut [f64], dsigma: &mut [f64]) -> Result<()> {
        for ((x, s), d) in x.iter().zip(sigma).zip(dsigma) {
            (*s, *d) = self.sigma_and_derivative(*x);
        }
        Ok(())
    }

    fn concurrent(&self) -> bool {
        true
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
/// Largest pre-activation variance the series accept: beyond, σ(√q z) varies
/// on scales below 0.01 in z and the quadrature alone would need over 10⁴
/// nodes (the series of tanh is already capped from q ≈ 36 on).
pub const MAX_SERIES_VARIANCE: f64 = 1e4;
/// Largest Hermite table (T × nodes / 2 entries, 64 MiB): the number of terms
/// stops doubling before the table would outgrow it.
const MAX_TABLE: usize = 1 << 23;

/// The trapezoid rule with T Hermite functions tabulated on its nodes.
///
/// h_k has the parity of k, so only the nodes z_m = m·h, m = 0 … M, are
/// tabulated: a_k = Σ_m ψ_k(z_m) (v(z_m) ± v(−z_m)) (the centre once), with +
/// for even and − for odd k. That halves the coefficient GEMMs.
struct Rule {
    /// z_{−M} … z_M.
    z: Vec<f64>,
    /// g_n = √(h φ(z_n)) on the same nodes.
    g: Vec<f64>,
    /// M, the index of z = 0 in `z`.
    half: usize,
    /// ψ_k(z_m) = g_m h_k(z_m) for even k (rows k/2) and odd k (rows (k−1)/2),
    /// m = 0 … M, row-major.
    psi_even: Vec<f64>,
    psi_odd: Vec<f64>,
    terms: usize,
}

impl Rule {
    /// The step and the number of non-negative nodes M for T terms.
    fn grid(terms: usize, q_max: f64) -> (f64, usize) {
        let h = (PI / (2.0 * ((terms as f64).sqrt() + 6.0 * q_max.sqrt()))).min(0.2);
        // An even number of steps on each side, so that the even nodes form
        // the rule of step 2h. q_max ≤ MAX_SERIES_VARIANCE keeps this small.
        (h, 2 * ((Z_MAX / h / 2.0).ceil() as usize))
    }

    /// Entries of the tables of T terms.
    fn table_size(terms: usize, q_max: f64) -> usize {
        terms * (Self::grid(terms, q_max).1 + 1)
    }

    fn new(terms: usize, q_max: f64) -> Result<Self> {
        let (h, half) = Self::grid(terms, q_max);
        let nodes = 2 * half + 1;
        let mut z = try_zeros(nodes, "the quadrature nodes")?;
        for (n, z) in z.iter_mut().enumerate() {
            *z = (n as f64 - half as f64) * h;
        }
        let inv_sqrt_2pi = 1.0 / (2.0 * PI).sqrt();
        let mut g = try_zeros(nodes, "the quadrature weights")?;
        for (g, z) in g.iter_mut().zip(&z) {
            *g = (h * inv_sqrt_2pi * (-0.5 * z * z).exp()).sqrt();
        }
        let width = half + 1;
        let (zp, gp) = (&z[half..], &g[half..]);
        let mut psi_even = try_zeros(terms.div_ceil(2) * width, "the Hermite table")?;
        let mut psi_odd = try_zeros((terms / 2) * width, "the Hermite table")?;
        let (mut prev, mut cur) = (vec![0.0; width], gp.to_vec());
        for k in 0..terms {
            let table = if k % 2 == 0 {
                &mut psi_even
            } else {
                &mut psi_odd
            };
            table[(k / 2) * width..(k / 2 + 1) * width].copy_from_slice(&cur);
            // ψ_{k+1} = (z ψ_k − √k ψ_{k−1}) / √(k+1)
            let (c1, c0) = (1.0 / ((k + 1) as f64).sqrt(), (k as f64).sqrt());
            for ((p, c), z) in prev.iter_mut().zip(cur.iter_mut()).zip(zp) {
                let next = (z * *c - c0 * *p) * c1;
                *p = *c;
                *c = next;
            }
        }
        Ok(Rule {
            z,
            g,
            half,
            psi_even,
            psi_odd,
            terms,
        })
    }

    fn nodes(&self) -> usize {
        self.z.len()
    }
}

fn try_zeros(len: usize, what: &str) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        let mib = len as f64 * 8.0 / (1u64 << 20) as f64;
        Error::Memory(format!(
            "{what} needs {mib:.1} MiB, which cannot be allocated"
        ))
    })?;
    v.resize(len, 0.0);
    Ok(v)
}

/// Coefficients c_k(q_i) of N samples, k-major and split by parity (the
/// pair loop runs Horner's rule in ρ² on each half): `even[j·N + i]` is
/// c_{2j}(q_i) and `odd[j·N + i]` is c_{2j+1}(q_i).
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub even: Vec<f64>,
    pub odd: Vec<f64>,
}

impl Table {
    fn zeros(terms: usize, n: usize) -> Result<Self> {
        Ok(Table {
            even: try_zeros(terms.div_ceil(2) * n, "the Hermite coefficients")?,
            odd: try_zeros((terms / 2) * n, "the Hermite coefficients")?,
        })
    }

    /// c_k(q_i) for N samples.
    #[cfg(test)]
    pub fn get(&self, k: usize, i: usize, n: usize) -> f64 {
        let half = if k.is_multiple_of(2) {
            &self.even
        } else {
            &self.odd
        };
        half[(k / 2) * n + i]
    }

    fn truncate(&mut self, terms: usize, n: usize) {
        self.even.truncate(terms.div_ceil(2) * n);
        self.odd.truncate((terms / 2) * n);
    }

    /// Sample i's first `terms` coefficients, split by parity into `row`.
    pub fn gather(&self, i: usize, n: usize, terms: usize, row: &mut Row) {
        row.even.clear();
        row.odd.clear();
        row.even
            .extend((0..terms.div_ceil(2)).map(|j| self.even[j * n + i]));
        row.odd.extend((0..terms / 2).map(|j| self.odd[j * n + i]));
    }
}

/// The first coefficients of a tile's columns c0 … c0 + w − 1, copied out of
/// a [`Table`] (rows of N samples) into rows of w, as many terms as asked for
/// so far. Read in place, the rows N apart put every term of a column group
/// in the same few L1 cache sets when N is a multiple of 512 (a third of a
/// tanh kernel's time on correlated inputs at N = 4096).
#[derive(Debug, Clone, Default)]
pub struct Columns {
    even: Vec<f64>,
    odd: Vec<f64>,
    width: usize,
}

impl Columns {
    /// Empties the copy, for a tile `w` columns wide.
    pub fn reset(&mut self, w: usize) {
        self.even.clear();
        self.odd.clear();
        self.width = w;
    }

    /// Makes the copy hold at least the first `terms` coefficients of the
    /// columns c0 … c0 + w − 1 of `table` (rows of `n` samples).
    pub fn extend(&mut self, table: &Table, n: usize, c0: usize, terms: usize) {
        let w = self.width;
        for (half, copy, rows) in [
            (&table.even, &mut self.even, terms.div_ceil(2)),
            (&table.odd, &mut self.odd, terms / 2),
        ] {
            for m in copy.len() / w.max(1)..rows {
                copy.extend_from_slice(&half[m * n + c0..m * n + c0 + w]);
            }
        }
    }

    /// The even- and odd-order rows, each `w` wide, for [`series_row`].
    pub fn tables(&self) -> (&[f64], &[f64]) {
        (&self.even, &self.odd)
    }
}

/// One sample's coefficients, split by parity.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub even: Vec<f64>,
    pub odd: Vec<f64>,
}

/// One layer's Hermite series for a set of N samples.
#[derive(Debug, Clone)]
pub struct Series {
    /// T, coefficients k = 0 … T − 1 per sample.
    pub terms: usize,
    pub samples: usize,
    /// a_k(q_i), the coefficients of σ.
    pub a: Table,
    /// b_k(q_i), the coefficients of σ'.
    pub b: Table,
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
    #[cfg(test)]
    pub fn expand(sigma: &dyn Pointwise, q: &[f64], cancel: &AtomicBool) -> Result<Self> {
        Self::expand_at_least(sigma, q, 1, cancel)
    }

    /// As [`Series::expand`], keeping at least `min_terms` terms (so that two
    /// sets of samples paired in one kernel carry the same number).
    pub fn expand_at_least(
        sigma: &dyn Pointwise,
        q: &[f64],
        min_terms: usize,
        cancel: &AtomicBool,
    ) -> Result<Self> {
        if let Some(i) = q
            .iter()
            .position(|q| !(q.is_finite() && (0.0..=MAX_SERIES_VARIANCE).contains(q)))
        {
            return invalid(format!(
                "the pre-activation variance of sample {i} is {:e}, beyond the {:e} that the \
                 Hermite series of this activation accept; scale the inputs or beta down",
                q[i], MAX_SERIES_VARIANCE
            ));
        }
        let q_max = q.iter().copied().fold(0.0, f64::max);
        let cap = Self::largest_terms(q_max);
        let min_terms = min_terms.clamp(1, cap);
        let next = |terms: usize| (2 * terms).min(cap);
        // Probe with the sample of largest variance, which usually needs the
        // most terms, so that the full expansion rarely has to be redone.
        let mut terms = FIRST_TERMS.min(cap);
        if q.len() > 1 {
            loop {
                let probe = expand_with(&Rule::new(terms, q_max)?, sigma, &[q_max], cancel)?;
                if let Some(t) = probe.terms_needed() {
                    terms = t.max(FIRST_TERMS).min(cap);
                    break;
                }
                if terms == cap {
                    break;
                }
                terms = next(terms);
            }
        }
        terms = terms.max(min_terms);
        loop {
            let rule = Rule::new(terms, q_max)?;
            let series = expand_with(&rule, sigma, q, cancel)?;
            if let Some(t) = series.terms_needed() {
                return Ok(series.truncated(t.max(min_terms)));
            }
            if terms == cap {
                return Ok(series);
            }
            terms = next(terms);
        }
    }

    /// The most terms for variances up to q_max: [`MAX_TERMS`], or fewer
    /// where the tables would outgrow [`MAX_TABLE`].
    fn largest_terms(q_max: f64) -> usize {
        let mut terms = MAX_TERMS;
        while terms > FIRST_TERMS && Rule::table_size(terms, q_max) > MAX_TABLE {
            terms /= 2;
        }
        terms
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
        self.a.truncate(t, n);
        self.b.truncate(t, n);
        for half in [
            &mut self.a.even,
            &mut self.a.odd,
            &mut self.b.even,
            &mut self.b.odd,
        ] {
            half.shrink_to_fit();
        }
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
        self.error = self.error.max(self.worst_tail(t).powi(2));
        self
    }

    /// The largest relative root tail δ(K) of any sample, for σ or σ', K ≤ T.
    pub fn worst_tail(&self, k: usize) -> f64 {
        let stride = self.terms + 1;
        let k = k.min(self.terms);
        [&self.tails_a, &self.tails_b]
            .iter()
            .flat_map(|t| t.chunks_exact(stride).map(|b| b[k]))
            .fold(0.0, f64::max)
    }

    fn block_tails<'t>(&self, tails: &'t [f64], block: usize) -> &'t [f64] {
        let stride = self.terms + 1;
        &tails[block * stride..(block + 1) * stride]
    }

    /// Terms needed for pairs of a sample of `rows` (its index) and samples of
    /// `cols` in the block of [`TILE`] that starts at the given index: the
    /// smallest K with δ_rows(K) δ_cols(K) r^K ≤ 1e-12 for both series, with
    /// δ the largest over each sample's block and `r` bounding |ρ|.
    pub fn terms_for(rows: (&Series, usize), cols: (&Series, usize), r: f64) -> (usize, usize) {
        let (sr, i) = rows;
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
        let (br, bc) = (i / TILE, c0 / TILE);
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
}

fn expand_with(
    rule: &Rule,
    sigma: &dyn Pointwise,
    q: &[f64],
    cancel: &AtomicBool,
) -> Result<Series> {
    let (n, nodes, terms) = (q.len(), rule.nodes(), rule.terms);
    let concurrent = sigma.concurrent();
    // Built-in activations: small chunks on every thread, buffers in cache.
    // A caller's function: few large calls, the GEMMs parallel inside.
    let rows_per_chunk = if concurrent {
        16
    } else {
        (CHUNK_POINTS / nodes).clamp(1, n.max(1))
    };
    let (mut a, mut b) = (Table::zeros(terms, n)?, Table::zeros(terms, n)?);
    let (te, to) = (terms.div_ceil(2), terms / 2);
    let outputs = Outputs {
        a_even: SharedOutput::new(&mut a.even, te, n),
        a_odd: SharedOutput::new(&mut a.odd, to, n),
        b_even: SharedOutput::new(&mut b.even, te, n),
        b_odd: SharedOutput::new(&mut b.odd, to, n),
    };
    let starts: Vec<usize> = (0..n).step_by(rows_per_chunk).collect();
    let process = |i0: usize| -> Result<Moments> {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        let rows = rows_per_chunk.min(n - i0);
        let len = rows * nodes;
        let mut x = try_zeros(len, "the quadrature nodes")?;
        for (xr, q) in x.chunks_exact_mut(nodes).zip(&q[i0..i0 + rows]) {
            let sq = q.sqrt();
            for (xv, z) in xr.iter_mut().zip(&rule.z) {
                *xv = sq * z;
            }
        }
        let (mut s, mut d) = (try_zeros(len, "σ")?, try_zeros(len, "σ'")?);
        sigma.eval(&x, &mut s, &mut d)?;
        if let Some(p) = s.iter().chain(&d).position(|v| !v.is_finite()) {
            let p = p % len;
            return invalid(format!("the activation is not finite at x = {:e}", x[p]));
        }
        // SAFETY: each chunk writes only its own columns i0..i0 + rows.
        unsafe { fold_and_expand(rule, &mut s, &mut d, i0, rows, !concurrent, &outputs) }
    };
    let pool = pool::pool()?;
    let moments: Vec<Moments> = if concurrent {
        pool.install(|| {
            starts
                .par_iter()
                .map(|&i0| process(i0))
                .collect::<Result<_>>()
        })?
    } else {
        starts
            .iter()
            .map(|&i0| process(i0))
            .collect::<Result<_>>()?
    };
    let s_diag: Vec<f64> = moments
        .iter()
        .flat_map(|m| m.sigma.iter().copied())
        .collect();
    let d_diag: Vec<f64> = moments
        .iter()
        .flat_map(|m| m.sigma_dot.iter().copied())
        .collect();
    let quadrature = moments.iter().fold(0.0f64, |g, m| g.max(m.gap));
    let tails_a = block_tails(&a, &s_diag, terms, n);
    let tails_b = block_tails(&b, &d_diag, terms, n);
    let mut series = Series {
        terms,
        samples: n,
        a,
        b,
        sigma: s_diag,
        sigma_dot: d_diag,
        tails_a,
        tails_b,
        error: 0.0,
    };
    series.error = quadrature.max(series.worst_tail(terms).powi(2));
    Ok(series)
}

/// The four coefficient tables, written column block by column block.
struct Outputs<'a> {
    a_even: SharedOutput<'a, f64>,
    a_odd: SharedOutput<'a, f64>,
    b_even: SharedOutput<'a, f64>,
    b_odd: SharedOutput<'a, f64>,
}

/// A chunk's E[σ²], E[σ'²] and the largest relative difference between the
/// rules of step h and 2h.
struct Moments {
    sigma: Vec<f64>,
    sigma_dot: Vec<f64>,
    gap: f64,
}

/// Weights σ and σ' at the nodes (`rows` samples × nodes, in place) by g,
/// computes their moments, folds them by parity and multiplies by the
/// tables into columns i0..i0 + rows of the outputs.
///
/// # Safety
/// No other thread may write those columns meanwhile.
unsafe fn fold_and_expand(
    rule: &Rule,
    s: &mut [f64],
    d: &mut [f64],
    i0: usize,
    rows: usize,
    parallel: bool,
    out: &Outputs<'_>,
) -> Result<Moments> {
    let (nodes, half, terms) = (rule.nodes(), rule.half, rule.terms);
    let width = half + 1;
    let (mut sigma, mut sigma_dot) = (vec![0.0; rows], vec![0.0; rows]);
    let mut gap = 0.0f64;
    // Folded values, rows × width each: even and odd parts of σ and of σ'.
    let mut folded = [
        try_zeros(rows * width, "the folded values")?,
        try_zeros(rows * width, "the folded values")?,
        try_zeros(rows * width, "the folded values")?,
        try_zeros(rows * width, "the folded values")?,
    ];
    let [s_even, s_odd, d_even, d_odd] = &mut folded;
    for (values, moment, even, odd) in [
        (&mut *s, &mut sigma, s_even, s_odd),
        (&mut *d, &mut sigma_dot, d_even, d_odd),
    ] {
        for (r, v) in values.chunks_exact_mut(nodes).enumerate() {
            for (v, g) in v.iter_mut().zip(&rule.g) {
                *v *= g;
            }
            let full = sum_squares(v);
            // The rule of step 2h: every other node (z = 0 included), twice the weight.
            let coarse = 2.0 * v.iter().step_by(2).map(|x| x * x).sum::<f64>();
            if full > 0.0 {
                gap = gap.max((full - coarse).abs() / full);
            }
            moment[r] = full;
            let (e, o) = (
                &mut even[r * width..(r + 1) * width],
                &mut odd[r * width..(r + 1) * width],
            );
            e[0] = v[half];
            o[0] = 0.0;
            for m in 1..width {
                let (plus, minus) = (v[half + m], v[half - m]);
                e[m] = plus + minus;
                o[m] = plus - minus;
            }
        }
    }
    let (te, to) = (terms.div_ceil(2), terms / 2);
    let [s_even, s_odd, d_even, d_odd] = &folded;
    let products = [
        (&out.a_even, &rule.psi_even, s_even, te),
        (&out.a_odd, &rule.psi_odd, s_odd, to),
        (&out.b_even, &rule.psi_even, d_even, te),
        (&out.b_odd, &rule.psi_odd, d_odd, to),
    ];
    // Columns in blocks of fixed width, so that the bits do not depend on
    // how many threads share them.
    const BLOCK: usize = 64;
    for (dst, table, values, count) in products {
        if count == 0 {
            continue;
        }
        let lhs = MatRef::from_row_major_slice(table, count, width);
        let block = |c0: usize| {
            let c1 = (c0 + BLOCK).min(rows);
            let rhs = MatRef::from_row_major_slice(&values[c0 * width..c1 * width], c1 - c0, width);
            let tile = Tile {
                r0: 0,
                r1: count,
                c0: i0 + c0,
                c1: i0 + c1,
            };
            // SAFETY: the caller owns columns i0..i0 + rows; blocks are disjoint.
            f64::product(unsafe { dst.block_mut(tile) }, lhs, rhs.transpose(), 1.0);
        };
        let starts: Vec<usize> = (0..rows).step_by(BLOCK).collect();
        if parallel {
            pool::pool()?.install(|| starts.par_iter().for_each(|&c0| block(c0)));
        } else {
            starts.iter().for_each(|&c0| block(c0));
        }
    }
    Ok(Moments {
        sigma,
        sigma_dot,
        gap,
    })
}

/// Σ v² with four accumulators (vectorises; the sums here are of a few
/// hundred positive terms, accurate to ~1e-15 without compensation).
fn sum_squares(values: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let mut chunks = values.chunks_exact(4);
    for c in &mut chunks {
        for l in 0..4 {
            acc[l] += c[l] * c[l];
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|v| v * v).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Per block of TILE samples, max over the block of
/// δ_i(K) = √((Σ_{K ≤ k < T} c_k² + rest_i) / total_i) for K = 0 … T, where
/// rest_i = total_i − Σ_{k<T} c_k² ≥ 0 is what lies beyond the T terms.
fn block_tails(coef: &Table, total: &[f64], terms: usize, n: usize) -> Vec<f64> {
    let stride = terms + 1;
    let mut out = vec![0.0f64; n.div_ceil(TILE) * stride];
    let work = |(block, out): (usize, &mut [f64])| {
        let (i0, i1) = (block * TILE, ((block + 1) * TILE).min(n));
        let column = |k: usize| {
            let half = if k.is_multiple_of(2) {
                &coef.even
            } else {
                &coef.odd
            };
            &half[(k / 2) * n + i0..(k / 2) * n + i1]
        };
        // Σ_k c_k² per sample, compensated (k outer, samples inner: the
        // tables are read contiguously).
        let (mut sum, mut carry) = (vec![0.0f64; i1 - i0], vec![0.0f64; i1 - i0]);
        for k in 0..terms {
            for ((s, c), v) in sum.iter_mut().zip(carry.iter_mut()).zip(column(k)) {
                let x = v * v;
                let t = *s + x;
                *c += if s.abs() >= x {
                    (*s - t) + x
                } else {
                    (x - t) + *s
                };
                *s = t;
            }
        }
        let mut tail: Vec<f64> = total[i0..i1]
            .iter()
            .zip(sum.iter().zip(&carry))
            .map(|(t, (s, c))| (t - (s + c)).max(0.0))
            .collect();
        let inv: Vec<f64> = total[i0..i1]
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
            for (t, c) in tail.iter_mut().zip(column(k)) {
                *t += c * c;
            }
            out[k] = worst(&tail);
        }
    };
    match pool::pool() {
        Ok(pool) => pool.install(|| out.par_chunks_mut(stride).enumerate().for_each(work)),
        Err(_) => out.chunks_mut(stride).enumerate().for_each(work),
    }
    out
}

/// p_j = Σ_k row_k · c_k(j) · ρ_j^k for the columns j of one tile row, with
/// the row's and the columns' coefficients split by parity (`row.even[m]` is
/// k = 2m, `cols.even[m·stride + j]` likewise): Horner's rule in ρ² on both
/// halves at once, p = E(ρ²) + ρ·O(ρ²), each step one fused multiply-add
/// (correctly rounded on every instruction set, so the bits do not depend
/// on it). Columns go in groups of 16 so that independent accumulators hide
/// the latency of each step, then at most one group each of 8, 4 and 2, and
/// one column: every column gets the same arithmetic, and a tile edge that is
/// not a multiple of 16 (120 in f64) never falls back to a scalar loop over
/// many columns. Inlined so that it is compiled for the instruction set of
/// its caller.
#[inline(always)]
pub fn series_row(row: &Row, cols: (&[f64], &[f64]), stride: usize, rho: &[f64], out: &mut [f64]) {
    debug_assert!(row.even.len() == row.odd.len() || row.even.len() == row.odd.len() + 1);
    let mut j0 = series_groups::<16>(row, cols, stride, 0, rho, out);
    j0 = series_groups::<8>(row, cols, stride, j0, rho, out);
    j0 = series_groups::<4>(row, cols, stride, j0, rho, out);
    j0 = series_groups::<2>(row, cols, stride, j0, rho, out);
    series_groups::<1>(row, cols, stride, j0, rho, out);
}

/// [`series_group`] on as many groups of L columns from j0 on as fit in the
/// row; returns the first column left.
#[inline(always)]
fn series_groups<const L: usize>(
    row: &Row,
    cols: (&[f64], &[f64]),
    stride: usize,
    mut j0: usize,
    rho: &[f64],
    out: &mut [f64],
) -> usize {
    while j0 + L <= rho.len() {
        series_group::<L>(row, cols, stride, j0, rho, out);
        j0 += L;
    }
    j0
}

/// [`series_row`] for the L columns j0 … j0 + L − 1.
#[inline(always)]
fn series_group<const L: usize>(
    row: &Row,
    (even, odd): (&[f64], &[f64]),
    stride: usize,
    j0: usize,
    rho: &[f64],
    out: &mut [f64],
) {
    fn at<const L: usize>(table: &[f64], offset: usize) -> &[f64; L] {
        table[offset..offset + L].try_into().expect("group size")
    }
    let (ne, no) = (row.even.len(), row.odd.len());
    let r = at::<L>(rho, j0);
    let mut r2 = [0.0f64; L];
    for l in 0..L {
        r2[l] = r[l] * r[l];
    }
    let (mut pe, mut po) = ([0.0f64; L], [0.0f64; L]);
    let mut m = ne;
    if ne > no {
        m -= 1;
        let t = at::<L>(even, m * stride + j0);
        for l in 0..L {
            pe[l] = row.even[m] * t[l];
        }
    }
    while m > 0 {
        m -= 1;
        let (te, to) = (
            at::<L>(even, m * stride + j0),
            at::<L>(odd, m * stride + j0),
        );
        let (ce, co) = (row.even[m], row.odd[m]);
        for l in 0..L {
            pe[l] = pe[l].mul_add(r2[l], ce * te[l]);
            po[l] = po[l].mul_add(r2[l], co * to[l]);
        }
    }
    let dst: &mut [f64; L] = (&mut out[j0..j0 + L]).try_into().expect("group size");
    for l in 0..L {
        dst[l] = pe[l] + r[l] * po[l];
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
        let (mut ra, mut rb) = (Row::default(), Row::default());
        s.a.gather(i, n, s.terms, &mut ra);
        s.b.gather(i, n, s.terms, &mut rb);
        let (mut va, mut vb) = ([0.0], [0.0]);
        series_row(&ra, (&s.a.even[j..], &s.a.odd[j..]), n, &[rho], &mut va);
        series_row(&rb, (&s.b.even[j..], &s.b.odd[j..]), n, &[rho], &mut vb);
        (va[0], vb[0])
    }

    /// The unrolled groups and the one-column remainder agree bit for bit.
    #[test]
    fn groups_and_remainder_agree() {
        let q: Vec<f64> = (0..40).map(|i| 0.1 + 0.05 * i as f64).collect();
        let s = expand(Activation::Tanh, &q);
        let rho: Vec<f64> = (0..40).map(|j| -0.95 + 0.049 * j as f64).collect();
        let mut row = Row::default();
        s.a.gather(3, 40, s.terms, &mut row);
        let mut all = vec![0.0; 40];
        series_row(&row, (&s.a.even, &s.a.odd), 40, &rho, &mut all);
        for j in 0..40 {
            let mut one = [0.0];
            series_row(
                &row,
                (&s.a.even[j..], &s.a.odd[j..]),
                40,
                &rho[j..=j],
                &mut one,
            );
            assert_eq!(one[0], all[j], "column {j}");
        }
    }

    /// Identity: a_1 = √q and nothing else; b_0 = 1.
    #[test]
    fn identity_has_one_term() {
        let s = expand(Activation::Identity, &[0.0, 0.5, 3.0]);
        for (i, q) in [0.0f64, 0.5, 3.0].iter().enumerate() {
            for k in 0..s.terms {
                let want = if k == 1 { q.sqrt() } else { 0.0 };
                assert!((s.a.get(k, i, 3) - want).abs() < 1e-14, "a_{k}({q})");
                let want_b = if k == 0 { 1.0 } else { 0.0 };
                assert!((s.b.get(k, i, 3) - want_b).abs() < 1e-14, "b_{k}({q})");
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
        let (ka, kb) = Series::terms_for((&large, 0), (&large, 0), 0.5);
        assert!(ka < 60 && kb < 60, "{ka} {kb}");
        assert_eq!(
            Series::terms_for((&large, 0), (&large, 0), 1.0).1,
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

    /// The message of an Error::Invalid (any other outcome fails the test).
    fn msg_of<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Err(Error::Invalid(msg)) => msg,
            other => panic!("expected Error::Invalid, got {other:?}"),
        }
    }

    fn mentions(msg: &str, parts: &[&str]) {
        for p in parts {
            assert!(msg.contains(p), "{msg:?} does not mention {p:?}");
        }
    }

    #[test]
    fn the_series_rejects_bad_variances_directly() {
        let cancel = AtomicBool::new(false);
        let msg = msg_of(Series::expand(&Activation::Silu, &[1.0, 2e4], &cancel));
        mentions(
            &msg,
            &["sample 1", "2e4", "1e4", "scale the inputs or beta down"],
        );
        for (q, shown) in [
            (-1.0, "-1e0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "inf"),
            (MAX_SERIES_VARIANCE * (1.0 + 1e-15), "1e4"),
        ] {
            let msg = msg_of(Series::expand(
                &Activation::Sigmoid,
                &[0.5, 1.0, q],
                &cancel,
            ));
            mentions(&msg, &["sample 2", shown]);
        }
        // The limit itself is accepted (identity converges at once).
        Series::expand(&Activation::Identity, &[MAX_SERIES_VARIANCE], &cancel).unwrap();
    }
}
