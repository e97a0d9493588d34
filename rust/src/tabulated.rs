//! An activation read once and kept as piecewise Chebyshev interpolants, with
//! its kinks located.
//!
//! On [−U, U], σ is cut into pieces [t_p, t_{p+1}]; on each, the polynomial of
//! degree N − 1 through σ at the N Chebyshev points of the first kind,
//!
//! ```text
//! σ(t) ≈ Σ_k c_k T_k(ξ),   ξ = (2t − t_p − t_{p+1}) / (t_{p+1} − t_p),   c_k = (2/N) Σ_j σ(t_j) T_k(ξ_j)
//! ```
//!
//! (c₀ halved), matches σ to about 1e-15 of the piece's own |σ|: a piece
//! whose last three coefficients are larger, or whose interpolant misses σ at
//! its ends (a kink within 1e-3 of the width from an end lies outside the
//! points), is halved. For σ analytic on a piece the coefficients fall
//! geometrically and halving stops after a few rounds; at a kink (a jump of σ
//! or of one of its derivatives, or a singular derivative such as |t|^1.5 at
//! 0) they fall only algebraically, so the halving runs into the kink,
//! leaving ever narrower pieces on both sides, until they converge or are
//! narrower than 1e-13 of max(|t|, U/1000). In a run of pieces below 1e-3 of
//! that measure, the one that never converged, or else the narrowest, is the
//! *kink piece*; a second pass starts again from the kink pieces' ends. Two
//! more rules: pieces off 0 span at most a factor 4 in |t| and none at 0 is
//! wider than 1e-8·U (so σ = t² keeps its relative accuracy near 0); and a
//! tail that halving no longer shrinks (σ's own rounding noise) is accepted
//! below 1e-13 of the piece's |σ| or of 1e-3 of the largest. Integrals split
//! at every boundary but the graded ones (see [`Tabulated::cuts`]). A kink
//! piece that never converged (a jump) is made a straight line between its
//! neighbours: it is too narrow for its values to matter, but the
//! interpolant's derivative there would be J over its width.
//!
//! σ' is the derivative of the interpolant (σ' almost everywhere: what a
//! finite network's gradient sees; 0 for a step), so a σ given without its
//! derivative, whose finite differences would smear the kinks, gets an exact
//! σ'. The points of one round of halving go to [`Pointwise::eval`] in one
//! call: a user's σ is called a few dozen times, never per pair of samples.

use crate::chebyshev::{clenshaw_pair, derivative, ends, Basis, N};
use crate::error::{invalid, Error, Result};
use crate::hermite::Pointwise;

/// Coefficients left over, relative to the largest |σ| on the piece, that
/// make a piece converged.
const TAIL: f64 = 1e-15;
/// The smallest size a piece's |σ| is taken to have, relative to the
/// largest |σ| on the table (where σ passes through 0).
const LOCAL_FLOOR: f64 = 1e-24;
/// Halving stops below this width relative to max(|t|, U/1000).
const KINK_WIDTH: f64 = 1e-13;
/// Pieces narrower than this relative to max(|t|, U/1000), and not made by
/// grading, are the halving's runs into a kink.
const KINK_RUN: f64 = 1e-3;
/// A tail that halving no longer shrinks (σ's own rounding noise) is
/// accepted below this, relative to the piece's |σ| or 1e-3 of the largest.
const PLATEAU: f64 = 1e-13;
/// Pieces off 0 are graded geometrically down to this width relative to U.
const GRADED: f64 = 1e-8;
/// Where the first cut goes, relative to U.
const FIRST_CUT: f64 = 0.073_196_431_058;
/// The most pieces a table may hold (a σ that is noise, or not finite).
const MAX_PIECES: usize = 1 << 16;
/// Rounds of halving: from 2U to 1e-13 of U/1000 takes about 55.
const MAX_ROUNDS: usize = 200;

/// σ and σ' on [−U, U] as piecewise Chebyshev series.
#[derive(Debug, Clone)]
pub struct Tabulated {
    /// Piece boundaries t₀ = −U < t₁ < … < t_P = U.
    bounds: Vec<f64>,
    /// The boundaries an integral must cut at (all but those made only to
    /// grade pieces towards 0), and whether each ends a kink piece.
    cuts: Vec<f64>,
    kink_ends: Vec<bool>,
    /// Chebyshev coefficients of σ and of σ' (with respect to t) per piece.
    sigma: Vec<[f64; N]>,
    dsigma: Vec<[f64; N]>,
    /// The kink pieces' midpoints.
    kinks: Vec<f64>,
    /// U.
    range: f64,
}

impl Tabulated {
    /// Reads σ on [−range, range]; the pieces start at 0, at ±range and at
    /// `seeds` (for instance an earlier table's kinks).
    ///
    /// Two passes: the first halves pieces until each is converged or a kink
    /// piece; the second starts again from the kink pieces' ends, so that the
    /// pieces beside a kink are as wide as σ allows instead of the run of
    /// ever narrower pieces the first pass left there (differentiating an
    /// interpolant loses accuracy as N²/width: σ' on a piece 1e-9 wide would
    /// be off by 1e-4).
    pub fn new(pointwise: &dyn Pointwise, range: f64, seeds: &[f64]) -> Result<Self> {
        if !(range.is_finite() && range > 0.0) {
            return invalid(format!(
                "the range of σ to tabulate must be positive, got {range}"
            ));
        }
        // The first cut is off 0 (and the halving's points then off the round
        // numbers where kinks tend to sit): a kink on a boundary goes unseen.
        let mut cuts: Vec<f64> = [-range, FIRST_CUT * range, range]
            .into_iter()
            .chain(seeds.iter().copied().filter(|t| t.abs() < range))
            .collect();
        let mut halving = Halving::new(pointwise, range)?;
        let first = halving.run(&mut cuts, &[])?;
        halving.graded.sort_by(f64::total_cmp);
        let kinks = widened(&first, &kink_pieces(&first, range, &halving.graded), |p| {
            narrow(p, range, &halving.graded)
        });
        let pieces = if kinks.is_empty() {
            first
        } else {
            cuts.extend(kinks.iter().flat_map(|&(a, b, _, _)| [a, b]));
            halving.run(&mut cuts, &kinks)?
        };
        halving.graded.sort_by(f64::total_cmp);
        let kinks = kink_pieces(&pieces, range, &halving.graded);
        let unconverged: Vec<usize> = kinks.iter().copied().filter(|&p| !pieces[p].3).collect();
        let mut bounds = vec![-range];
        bounds.extend(pieces.iter().map(|d| d.1));
        // Where integrals cut: every boundary but the graded ones and the
        // first cut, each with whether it ends a kink piece.
        halving.graded.push(FIRST_CUT * range);
        halving.graded.sort_by(f64::total_cmp);
        let kink_end = |i: usize| {
            let kink = |p: usize| kinks.binary_search(&p).is_ok();
            (i > 0 && kink(i - 1)) || (i + 1 < bounds.len() && kink(i))
        };
        let cuts: Vec<(f64, bool)> = (0..bounds.len())
            .filter(|&i| {
                kink_end(i)
                    || halving
                        .graded
                        .binary_search_by(|g| g.total_cmp(&bounds[i]))
                        .is_err()
            })
            .map(|i| (bounds[i], kink_end(i)))
            .collect();
        let dsigma = pieces
            .iter()
            .map(|&(a, b, c, _)| derivative(&c, 2.0 / (b - a)))
            .collect();
        let sigma = pieces.into_iter().map(|d| d.2).collect();
        let midpoints = kinks
            .iter()
            .map(|&p| 0.5 * (bounds[p] + bounds[p + 1]))
            .collect();
        let mut table = Tabulated {
            bounds,
            cuts: cuts.iter().map(|c| c.0).collect(),
            kink_ends: cuts.iter().map(|c| c.1).collect(),
            sigma,
            dsigma,
            kinks: midpoints,
            range,
        };
        table.bridge(&unconverged);
        Ok(table)
    }

    /// Makes each of `pieces` (kink pieces that never converged) a straight
    /// line from the end of the piece on its left to the start of the one on
    /// its right, with σ' the mean of theirs: the interpolant of a jump would
    /// give σ' of J over the width there.
    fn bridge(&mut self, pieces: &[usize]) {
        let last = self.sigma.len() - 1;
        for &p in pieces {
            if p == 0 || p == last {
                continue;
            }
            let (s0, s1) = (ends(&self.sigma[p - 1]).1, ends(&self.sigma[p + 1]).0);
            let (d0, d1) = (ends(&self.dsigma[p - 1]).1, ends(&self.dsigma[p + 1]).0);
            self.sigma[p] = [0.0; N];
            self.sigma[p][0] = 0.5 * (s0 + s1);
            self.sigma[p][1] = 0.5 * (s1 - s0);
            self.dsigma[p] = [0.0; N];
            self.dsigma[p][0] = 0.5 * (d0 + d1);
        }
    }

    /// U: the table holds σ on [−U, U].
    pub fn range(&self) -> f64 {
        self.range
    }

    /// Where integrals over σ must cut (sorted): boundaries across which σ
    /// is not one smooth function at the scale of its pieces.
    pub fn cuts(&self) -> &[f64] {
        &self.cuts
    }

    /// The cuts, each with whether it ends a kink piece.
    pub fn cuts_and_kinks(&self) -> impl Iterator<Item = (f64, bool)> + '_ {
        self.cuts
            .iter()
            .copied()
            .zip(self.kink_ends.iter().copied())
    }

    /// The kink pieces' midpoints: where σ has kinks (to the kink pieces'
    /// width: 1e-13 relative for jumps and kinks of σ', wider for kinks of
    /// higher derivatives).
    pub fn kinks(&self) -> &[f64] {
        &self.kinks
    }

    /// The piece that holds t (the first or last one beyond the range).
    #[inline]
    fn piece(&self, t: f64) -> usize {
        let p = self.bounds.partition_point(|&b| b <= t);
        p.clamp(1, self.sigma.len()) - 1
    }

    /// (σ(t), σ'(t)) from piece p.
    #[inline]
    fn eval_in(&self, p: usize, t: f64) -> (f64, f64) {
        let (a, b) = (self.bounds[p], self.bounds[p + 1]);
        let xi = (2.0 * t - a - b) / (b - a);
        clenshaw_pair(&self.sigma[p], &self.dsigma[p], xi)
    }

    /// (σ(t), σ'(t)).
    pub fn eval(&self, t: f64) -> (f64, f64) {
        self.eval_in(self.piece(t), t)
    }
}

/// A piece [a, b], its coefficients, and whether they converged.
type Piece = (f64, f64, [f64; N], bool);

/// The halving of pieces, with the size of σ its convergence test is
/// relative to (the largest |σ| seen, starting from a coarse grid).
struct Halving<'p> {
    pointwise: &'p dyn Pointwise,
    basis: Basis,
    range: f64,
    scale: f64,
    /// Boundaries made by grading a converged piece: σ is smooth across them
    /// at the scale of the piece they split, so integrals need not cut there.
    graded: Vec<f64>,
}

impl<'p> Halving<'p> {
    fn new(pointwise: &'p dyn Pointwise, range: f64) -> Result<Self> {
        let grid: Vec<f64> = (0..=4096)
            .map(|i| -range + 2.0 * range * i as f64 / 4096.0)
            .collect();
        let scale = evaluate(pointwise, &grid)?
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        Ok(Halving {
            pointwise,
            basis: Basis::new(),
            range,
            scale,
            graded: Vec::new(),
        })
    }

    /// The pieces between `cuts` (sorted here), halved until converged or
    /// narrower than `KINK_WIDTH`, sorted; the pieces in `fixed` are kept as
    /// they are.
    fn run(&mut self, cuts: &mut Vec<f64>, fixed: &[Piece]) -> Result<Vec<Piece>> {
        let range = self.range;
        cuts.sort_by(f64::total_cmp);
        cuts.dedup();
        let mut done: Vec<Piece> = Vec::new();
        // Pieces to fit, with the tail their parent had.
        let mut pending = Vec::new();
        for w in cuts.windows(2) {
            if let Some(piece) = fixed.iter().find(|f| (f.0, f.1) == (w[0], w[1])) {
                done.push(*piece);
            } else {
                pending.push((w[0], w[1], f64::INFINITY));
            }
        }
        for _ in 0..MAX_ROUNDS {
            if pending.is_empty() {
                break;
            }
            if done.len() + pending.len() > MAX_PIECES {
                return invalid(format!(
                    "σ could not be tabulated in {MAX_PIECES} Chebyshev pieces on |x| ≤ \
                     {range:e}: it varies too fast or is not a function of x"
                ));
            }
            // The Chebyshev points and both ends: a kink within 1e-3 of the
            // width from an end lies outside the points and would go unseen.
            let points: Vec<f64> = pending
                .iter()
                .flat_map(|&(a, b, _)| {
                    let inner = self.basis.xi.map(|xi| 0.5 * (a + b) + 0.5 * (b - a) * xi);
                    inner.into_iter().chain([a, b])
                })
                .collect();
            let values = evaluate(self.pointwise, &points)?;
            self.scale = values.iter().fold(self.scale, |m, v| m.max(v.abs()));
            let floor = LOCAL_FLOOR * self.scale.max(f64::MIN_POSITIVE);
            let mut next = Vec::new();
            for (&(a, b, parent), v) in pending.iter().zip(values.chunks_exact(N + 2)) {
                let (v, at) = v.split_at(N);
                let c = self.basis.coefficients(v);
                let size = v.iter().fold(floor, |m, v| m.max(v.abs()));
                // σ read at t rounded to t(1 ± ε): noise of ε|t||σ'| that no
                // piece can fit where σ crosses 0 away from t = 0.
                let slope = c[1].abs() * 2.0 / (b - a);
                let noise = 8.0 * f64::EPSILON * a.abs().max(b.abs()) * slope;
                let tail = c[N - 3..].iter().fold(0.0f64, |m, c| m.max(c.abs()));
                // σ computed with an absolute error (tanh as 1 − 2/(e²ᵗ + 1)
                // near 0) leaves a tail that halving no longer shrinks: accept
                // it once small against the whole σ. A kink's tail halves.
                let plateau = PLATEAU * size.max(1e-3 * self.scale);
                let tol = if tail <= plateau && tail > 0.8 * parent {
                    tail
                } else {
                    (TAIL * size).max(noise)
                };
                let (left, right) = ends(&c);
                let converged = tail <= tol
                    && (left - at[0]).abs() <= 1e3 * tol
                    && (right - at[1]).abs() <= 1e3 * tol;
                let mid = 0.5 * (a + b);
                let narrow = b - a <= KINK_WIDTH * mid.abs().max(1e-3 * range);
                // Off 0, a piece spans at most a factor 4 in |t|, and none is
                // wider than GRADED·U at 0: σ = t² on [1e-7, 1e3] would fit
                // one piece, to 1e-16 of 1e6, so σ(1) only to 1e-10 of itself.
                let off_zero = if a * b > 0.0 {
                    3.0 * a.abs().min(b.abs())
                } else {
                    0.0
                };
                let spread = b - a > off_zero.max(GRADED * range);
                if (converged && !spread) || narrow || !(a < mid && mid < b) {
                    done.push((a, b, c, converged));
                } else {
                    if converged {
                        self.graded.push(mid);
                    }
                    next.push((a, mid, tail));
                    next.push((mid, b, tail));
                }
            }
            pending = next;
        }
        if !pending.is_empty() {
            return invalid("σ could not be tabulated: the halving did not end".to_string());
        }
        done.sort_by(|x, y| x.0.total_cmp(&y.0));
        Ok(done)
    }
}

/// The kink pieces: near a kink the halving leaves a run of ever narrower
/// pieces on either side; in each run of pieces narrower than `KINK_RUN`,
/// those that never converged (a jump) or else the narrowest hold the kink. An analytic σ never needs
/// pieces that narrow (its features would have to be 1e-8 of their distance
/// from 0 wide).
fn kink_pieces(pieces: &[Piece], range: f64, graded: &[f64]) -> Vec<usize> {
    let narrow = |p: &Piece| narrow(p, range, graded);
    let mut kinks = Vec::new();
    let mut p = 0;
    while p < pieces.len() {
        if !narrow(&pieces[p]) {
            p += 1;
            continue;
        }
        let start = p;
        while p < pieces.len() && narrow(&pieces[p]) {
            p += 1;
        }
        let unconverged: Vec<usize> = (start..p).filter(|&i| !pieces[i].3).collect();
        if unconverged.is_empty() {
            let width = |i: &usize| pieces[*i].1 - pieces[*i].0;
            kinks.extend((start..p).min_by(|i, j| width(i).total_cmp(&width(j))));
        } else {
            kinks.extend(unconverged);
        }
    }
    kinks
}

/// A piece of a run into a kink: narrower than `KINK_RUN` of its distance
/// from 0 (or of U/1000) and not made by grading (`graded`, sorted).
fn narrow(&(a, b, _, _): &Piece, range: f64, graded: &[f64]) -> bool {
    let is_graded = |t: f64| graded.binary_search_by(|g| g.total_cmp(&t)).is_ok();
    b - a <= KINK_RUN * (0.5 * (a + b)).abs().max(1e-3 * range) && !is_graded(a) && !is_graded(b)
}

/// The first pass's kink pieces with their narrow neighbours, kept as they
/// are by the second pass. The narrowest piece of a run can be the kink's
/// neighbour, converged to the plateau of σ's rounding with the kink just
/// beyond its end: a second pass started from its ends alone would run into
/// the kink again, leaving dozens of narrowing pieces (and as many cuts for
/// every integral).
fn widened(pieces: &[Piece], kinks: &[usize], narrow: impl Fn(&Piece) -> bool) -> Vec<Piece> {
    let mut keep: Vec<usize> = kinks
        .iter()
        .flat_map(|&p| {
            let lo = if p > 0 && narrow(&pieces[p - 1]) {
                p - 1
            } else {
                p
            };
            let hi = if p + 1 < pieces.len() && narrow(&pieces[p + 1]) {
                p + 1
            } else {
                p
            };
            lo..=hi
        })
        .collect();
    keep.dedup();
    keep.into_iter().map(|p| pieces[p]).collect()
}

/// σ at `x` through the caller's function, checked for finite values.
fn evaluate(pointwise: &dyn Pointwise, x: &[f64]) -> Result<Vec<f64>> {
    let mut sigma = Vec::new();
    let mut dsigma = Vec::new();
    for v in [&mut sigma, &mut dsigma] {
        v.try_reserve_exact(x.len())
            .map_err(|_| Error::Memory("the points of σ's table".to_string()))?;
        v.resize(x.len(), 0.0);
    }
    pointwise.eval(x, &mut sigma, &mut dsigma)?;
    if let Some(i) = sigma.iter().position(|v| !v.is_finite()) {
        return invalid(format!("σ({:e}) is not finite", x[i]));
    }
    Ok(sigma)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    /// σ from a Rust closure, for the tests.
    struct Function<F>(F);

    impl<F: Fn(f64) -> (f64, f64) + Sync> Pointwise for Function<F> {
        fn eval(&self, x: &[f64], sigma: &mut [f64], dsigma: &mut [f64]) -> Result<()> {
            for ((x, s), d) in x.iter().zip(sigma).zip(dsigma) {
                (*s, *d) = (self.0)(*x);
            }
            Ok(())
        }
    }

    fn elu(x: f64) -> (f64, f64) {
        if x > 0.0 {
            (x, 1.0)
        } else {
            (x.exp_m1(), x.exp())
        }
    }

    #[test]
    fn smooth_activations_have_no_kinks_and_match() {
        let t = Tabulated::new(&Activation::Tanh, 40.0, &[]).unwrap();
        for i in 0..=2000 {
            let x = -40.0 + 0.04 * i as f64 + 1e-3;
            let (s, d) = t.eval(x);
            assert!((s - x.tanh()).abs() < 1e-14, "{x}");
            assert!((d - (1.0 - x.tanh().powi(2))).abs() < 1e-12, "{x}");
        }
    }

    #[test]
    fn kinks_are_found_and_both_sides_exact() {
        let clipped = |x: f64| {
            let y = 2.0 * x.tanh();
            if y.abs() < 1.0 {
                (y, 2.0 * (1.0 - x.tanh().powi(2)))
            } else {
                (y.signum(), 0.0)
            }
        };
        let t = Tabulated::new(&Function(clipped), 30.0, &[]).unwrap();
        let expected = 0.5f64.atanh();
        // Each kink lies in a kink piece (spurious ones, where σ's rounding
        // noise stopped the halving, only cost time).
        let near =
            |t: &Tabulated, at: f64, tol: f64| t.kinks().iter().any(|k| (k - at).abs() < tol);
        assert!(
            near(&t, expected, 1e-9) && near(&t, -expected, 1e-9),
            "{:?}",
            t.kinks()
        );
        let e = Tabulated::new(&Function(elu), 20.0, &[]).unwrap();
        assert!(near(&e, 0.0, 1e-7), "{:?}", e.kinks());
        for x in [-3.0, -1e-3, -1e-9, 1e-9, 1e-3, 0.7, 19.0] {
            let (s, d) = e.eval(x);
            let (es, ed) = elu(x);
            let scale = es.abs().max(1.0);
            assert!(
                (s - es).abs() < 1e-14 * scale && (d - ed).abs() < 1e-10,
                "{x}: {s} {d}"
            );
        }
        // A jump (sign) is a kink piece too, and σ' is 0 on both sides.
        let sign = Tabulated::new(&Function(|x: f64| (x.signum(), 0.0)), 5.0, &[]).unwrap();
        assert!(
            sign.kinks().iter().any(|k| k.abs() < 1e-12),
            "{:?}",
            sign.kinks()
        );
        assert!((sign.eval(-0.1).0 + 1.0).abs() < 1e-14 && sign.eval(-0.1).1.abs() < 1e-12);
        assert!((sign.eval(0.1).0 - 1.0).abs() < 1e-14 && sign.eval(0.1).1.abs() < 1e-12);
    }

    #[test]
    fn bad_functions_are_errors() {
        let nan = Function(|x: f64| (if x > 1.0 { f64::NAN } else { x }, 1.0));
        assert!(Tabulated::new(&nan, 5.0, &[]).is_err());
        assert!(Tabulated::new(&Activation::Tanh, 0.0, &[]).is_err());
        assert!(Tabulated::new(&Activation::Tanh, f64::INFINITY, &[]).is_err());
    }
}
