//! Utilities over posterior draws: what the optimizer maximises, a weighted sum
//! U = Σ_k c_k M_k(R, x) of measures of the draws' responses R_1, …, R_D (and, for
//! two of them, of the allocation x).
//!
//! The measures follow PyMC-Marketing 0.19.2 (`pymc_marketing.mmm.utility`), with
//! μ = (1/D) Σ_d R_d, σ the sample standard deviation (ddof 1), and Q_q the
//! q-quantile with linear interpolation at q(D−1) over the sorted R (NumPy's default):
//!
//! | measure | definition |
//! |---|---|
//! | `mean` | μ |
//! | `std` | σ |
//! | `quantile(q)` | Q_q |
//! | `var(c)` | Q_{1−c} (PyMC-Marketing's `value_at_risk` returns the quantile itself) |
//! | `cvar(c)` | CVaR at α = 1 − c, see below |
//! | `tail_distance(c)` | \|Q_c − μ\| + \|μ − Q_{1−c}\| |
//! | `mean_tightness(a, c)` | 1 − a · tail_distance(c) / μ |
//! | `sharpe(r_f)` | (μ − r_f) / σ |
//! | `raroc(r_f)` | (μ − r_f) / Σ_c x_c |
//! | `adjusted_var(c, ρ)` | (1 − ρ) μ + ρ Q_{1−c} |
//! | `portfolio_entropy` | −Σ_c w_c ln w_c, w = x / Σ x (0 ln 0 = 0) |
//! | `diversification_ratio` | Σ_c w_c σ_c / σ_P, w = x / Σ x, σ_c = sd_d(r_dc), σ_P = sd_d(Σ_c w_c r_dc) |
//! | `diversification_gap(f)` | Σ_c x_c σ_c − f sd_d(Σ_c x_c r_dc) = Σx σ_P (DR − f) (how `diversification_ratio >= f` is held) |
//! | `spend` | Σ_c x_c, per period (`minimize spend` with an outcome constraint: the least spend that reaches a target) |
//!
//! **Our definitions where PyMC-Marketing's are fragile.** CVaR is Rockafellar and
//! Uryasev's: CVaR_α = max_t { t − (1/(αD)) Σ_d (t − R_d)₊ }, the mean of the lowest
//! αD draws (the boundary draw counted fractionally). PyMC-Marketing averages the draws
//! at or below the interpolated VaR, which equals ours when αD is whole and is NaN when
//! no draw lies there; ours is always defined. Portfolio entropy takes 0 ln 0 = 0
//! where PyMC-Marketing gives NaN for a cell with no budget.
//!
//! **The diversification ratio.** PyMC-Marketing's formula (Choueifaty and Coignard's
//! Σ_i w_i σ_i / √(wᵀΣw), the assets' returns as the columns of `samples`, w the
//! budgets' shares) takes the assets to be the cells, their returns each draw's
//! per-cell response r_dc: σ_c is the sample standard deviation (ddof 1) of cell c's
//! response over the draws and wᵀΣw the sample variance of the portfolio P_d =
//! Σ_c w_c r_dc. Its 0.19.2 code cannot be run by its own optimizer (it checks that
//! `samples` is one-dimensional, then renames a cell dimension that a one-dimensional
//! sample does not have); ours is that formula over the cells' responses. Where the
//! portfolio does not vary over the draws (σ_P = 0: nothing spent, or every draw
//! alike) the ratio is 1 when no cell varies either. It is always ≥ 1 (a standard
//! deviation of a sum is at most the sum of the standard deviations) and needs at
//! least two draws. Its value and gradient take one pass of per-cell moments
//! ([`crate::eval::Evaluator::cell_moments`]) and one weighted pass. As an outcome
//! constraint, `diversification_ratio >= f` is held as `diversification_gap(f) >= 0`,
//! the same set without the ratio's quotient, which the solver's linearisations
//! follow far better (benches/NOTES.md, "Diversification ratio").
//!
//! **Smoothing.** Quantiles (and so VaR, CVaR, tail distance, mean tightness,
//! adjusted VaR) are not differentiable where two draws swap order; the solver
//! maximises smoothed versions with exact gradients (never finite differences), and
//! [`Utility::value`] reports the exact ones. With the bandwidth h = σ max(η/√D,
//! 3/D) ([`SMOOTHING`] η = 0.1: a tenth of the order of a quantile's own sampling
//! error over D draws, so the smoothing follows the spread of R and shrinks with more
//! draws; at least 3σ/D, a few times the spacing of the draws in a distribution's
//! tail, because where two adjacent draws lie more than ~60 h apart the smoothed
//! quantile goes numerically flat between them and its derivative is lost in
//! rounding) and the logistic function s:
//! - the smoothed quantile Q^h_q is the t with (1/D) Σ_d s((t − R_d)/h) = (p + ½)/D,
//!   p = q(D − 1): the draws smoothed by a logistic kernel, at the level where the
//!   interpolated quantile's position p sits. With the order statistics R_(0) ≤ … ≤
//!   R_(D−1), it lies between R_(⌈p⌉−1) − h ln(2D) and R_(⌊p⌋+1) + h ln(2D) (for any
//!   a > 0 the kernel moves the empirical CDF by at most e^{−a/h} beyond a distance
//!   a; take a = h ln(2D)), while Q_q lies between R_(⌊p⌋) and R_(⌈p⌉): within one
//!   draw and h ln(2D) of it;
//! - the smoothed CVaR is the same maximum with (t − R)₊ replaced by h softplus((t −
//!   R)/h), which lies between (t − R)₊ and (t − R)₊ + h ln 2: so CVaR − h ln 2 / α ≤
//!   CVaR^h ≤ CVaR, and its maximiser t is Q^h_α.
//!
//! Gradients: ∂U/∂R_d (the weights of the evaluator's pass, so that ∇_x U = Σ_d
//! (∂U/∂R_d) ∇_x R_d) and the explicit ∂U/∂x of `raroc` and `portfolio_entropy`; h's
//! dependence on σ is differentiated too.

use crate::error::{Error, Result};
use std::fmt;

/// The draws of a CVaR's curvature ([`Utility::tail_curvature`]) kept: those whose
/// weight is at least this fraction of the largest. The weights fall as e^(−|z|) away
/// from the quantile, so the draws left out carry ~this fraction of the curvature
/// (an error of the size of h's own dependence on σ, which the model leaves out),
/// while the rank of the QP's model, whose cost grows as its square, halves against
/// 1e-6 (20,000 × 1,000: the QPs 0.9 → 0.35 s of a CVaR solve, the same iterations;
/// benches/NOTES.md).
pub(crate) const TAIL_KEPT: f64 = 1e-3;

/// One CVaR term's curvature in the responses: c (diag(k) − k kᵀ/K) over `draws`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct TailCurvature {
    /// The draws, ascending.
    pub(crate) draws: Vec<usize>,
    /// c k_d for each.
    pub(crate) weights: Vec<f64>,
}

/// η: the smoothing bandwidth of quantiles is h = σ max(η/√D, 3/D).
pub const SMOOTHING: f64 = 0.1;

/// h / σ for D draws: max(η/√D, 3/D).
pub fn bandwidth(draws: usize) -> f64 {
    let d = draws as f64;
    (SMOOTHING / d.sqrt()).max(3.0 / d)
}

/// One measure of the draws' responses (and of the allocation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measure {
    /// μ.
    Mean,
    /// σ (ddof 1).
    Std,
    /// Q_q.
    Quantile(f64),
    /// Q_{1−c} for the confidence level c.
    ValueAtRisk(f64),
    /// CVaR at α = 1 − c for the confidence level c.
    ConditionalValueAtRisk(f64),
    /// \|Q_c − μ\| + \|μ − Q_{1−c}\|.
    TailDistance(f64),
    /// 1 − a · tail_distance(c) / μ.
    MeanTightness {
        /// a.
        alpha: f64,
        /// c.
        confidence: f64,
    },
    /// (μ − r_f) / σ.
    SharpeRatio(f64),
    /// (μ − r_f) / Σ x.
    Raroc(f64),
    /// (1 − ρ) μ + ρ Q_{1−c}.
    AdjustedValueAtRisk {
        /// c.
        confidence: f64,
        /// ρ.
        risk_aversion: f64,
    },
    /// −Σ w ln w, w = x / Σ x.
    PortfolioEntropy,
    /// Σ_c x_c: the spend per period (`minimize spend`).
    Spend,
    /// Σ_c w_c σ_c / σ_P over the cells' responses, w = x / Σ x.
    DiversificationRatio,
    /// Σ_c x_c σ_c − f sd_d(Σ_c x_c r_dc) = Σx σ_P (DR − f): an outcome constraint
    /// `diversification_ratio >= f` is held as this gap ≥ 0.
    DiversificationGap(f64),
}

/// What the optimizer maximises: Σ_k c_k M_k.
///
/// ```
/// use mmm_budget::Utility;
/// let u = Utility::parse("maximize mean - 0.5 * std").unwrap();
/// let r = [1.0, 2.0, 6.0];
/// let x = [1.0, 1.0];
/// let (mean, std) = (3.0, (7.0f64).sqrt());
/// assert!((u.value(&r, &x) - (mean - 0.5 * std)).abs() < 1e-12);
/// assert_eq!(u.to_string(), "mean - 0.5 * std");
/// assert_eq!(Utility::mean().value(&r, &x), 3.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Utility {
    /// (c_k, M_k).
    pub terms: Vec<(f64, Measure)>,
}

impl Default for Utility {
    fn default() -> Self {
        Utility::mean()
    }
}

/// The draws' summary shared by the measures.
struct Draws<'a> {
    r: &'a [f64],
    mean: f64,
    std: f64,
    /// h = σ [`bandwidth`].
    h: f64,
    /// ∂h/∂σ.
    dh: f64,
    /// Σ of the coefficients k of the terms k σ met so far: their weights k ∂σ/∂R_d
    /// are added once, at the end ([`Draws::std_slope`]).
    std_k: std::cell::Cell<f64>,
}

impl<'a> Draws<'a> {
    fn new(r: &'a [f64]) -> Self {
        let d = r.len() as f64;
        let mean = r.iter().sum::<f64>() / d;
        let ss: f64 = r.iter().map(|v| (v - mean) * (v - mean)).sum();
        let std = if r.len() > 1 {
            (ss / (d - 1.0)).sqrt()
        } else {
            0.0
        };
        let dh = bandwidth(r.len());
        Draws {
            r,
            mean,
            std,
            h: dh * std,
            dh,
            std_k: std::cell::Cell::new(0.0),
        }
    }

    fn d(&self) -> f64 {
        self.r.len() as f64
    }

    /// A term k σ: its weights k ∂σ/∂R_d = k (R_d − μ) / ((D − 1) σ) are added with
    /// the other such terms' once all are known ([`Draws::std_slope`]).
    fn add_std_gradient(&self, k: f64) {
        self.std_k.set(self.std_k.get() + k);
    }

    /// b with Σ_terms k ∂σ/∂R_d = b (R_d − μ): Σk / ((D − 1) σ), 0 where σ = 0.
    fn std_slope(&self) -> f64 {
        let k = self.std_k.get();
        if self.std > 0.0 && k != 0.0 {
            k / ((self.d() - 1.0) * self.std)
        } else {
            0.0
        }
    }

    /// The smoothed quantile Q^h_q; its gradient × `k` added into `out`.
    fn quantile(&self, q: f64, k: f64, out: &mut [f64]) -> f64 {
        let t = self.quantile_value(q);
        self.add_quantile_gradient(t, k, out);
        t
    }

    /// Whether the draws have no spread to smooth by (every draw equal, or one draw).
    fn flat(&self) -> bool {
        self.h <= 0.0 || !self.h.is_finite()
    }

    /// The smoothed quantile Q^h_q (the exact one where the draws are [`Draws::flat`]).
    fn quantile_value(&self, q: f64) -> f64 {
        if self.flat() {
            return quantile(self.r, q);
        }
        let d = self.d();
        let level = ((q * (d - 1.0) + 0.5) / d).clamp(0.5 / d, 1.0 - 0.5 / d);
        self.smoothed_quantile(level)
    }

    /// The gradient of the smoothed quantile at its value `t`, × `k`, added into
    /// `out`.
    fn add_quantile_gradient(&self, t: f64, k: f64, out: &mut [f64]) {
        if self.flat() {
            // The quantile is the draws' one value, and moving every draw moves it
            // alike.
            let d = self.d();
            out.iter_mut().for_each(|o| *o += k / d);
            return;
        }
        let h = self.h;
        let [s1, s2] = draw_sums(self.r, |v| {
            let z = (t - v) / h;
            let ds = dlogistic(z);
            [ds, ds * z]
        });
        if k != 0.0 && s1 > 0.0 {
            for_each_draw(out, self.r, |o, v| *o += k * dlogistic((t - v) / h) / s1);
            // Through h ∝ σ: ∂t/∂h = S2 / S1.
            self.add_std_gradient(k * self.dh * s2 / s1);
        }
    }

    /// The t with (1/D) Σ s((t − R_d)/h) = `level`: Newton steps kept inside a
    /// bracket.
    fn smoothed_quantile(&self, q: f64) -> f64 {
        let (lo0, hi0) = self
            .r
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let pad = 50.0 * self.h;
        let (mut lo, mut hi) = (lo0 - pad, hi0 + pad);
        let mut t = quantile(self.r, q).clamp(lo, hi);
        let d = self.d();
        for _ in 0..200 {
            let h = self.h;
            let [f, df] = draw_sums(self.r, |v| {
                let z = (t - v) / h;
                [logistic(z), dlogistic(z)]
            });
            let g = f / d - q;
            if g > 0.0 {
                hi = t;
            } else {
                lo = t;
            }
            let newton = t - g / (df / (d * self.h));
            let next = if df > 0.0 && newton > lo && newton < hi {
                newton
            } else {
                0.5 * (lo + hi)
            };
            if (next - t).abs() <= 1e-15 * t.abs().max(self.h) {
                return next;
            }
            t = next;
        }
        t
    }

    /// The smoothed CVaR at α; its gradient × `k` added into `out`.
    fn cvar(&self, alpha: f64, k: f64, out: &mut [f64]) -> f64 {
        let d = self.d();
        if self.flat() {
            out.iter_mut().for_each(|o| *o += k / d);
            return cvar_exact(self.r, alpha);
        }
        let t = self.smoothed_quantile(alpha);
        let h = self.h;
        let [tail, dh] = draw_sums(self.r, |v| {
            let z = (t - v) / h;
            let sp = softplus(z);
            [sp, sp - z * logistic(z)]
        });
        let value = t - h * tail / (alpha * d);
        if k != 0.0 {
            for_each_draw(out, self.r, |o, v| {
                *o += k * logistic((t - v) / h) / (alpha * d)
            });
            // ∂/∂h of −(h/(αD)) Σ softplus((t − R)/h) at the maximiser t.
            self.add_std_gradient(-k * self.dh * dh / (alpha * d));
        }
        value
    }
}

/// Draws a chunk of [`draw_sums`].
const SUM_CHUNK: usize = 4096;

/// Σ_d f(R_d) over the draws, in chunks of [`SUM_CHUNK`] draws on rayon's threads,
/// each chunk summed in order and the chunks' sums added in order: the same bits for
/// any number of threads, and for D ≤ [`SUM_CHUNK`] the bits of one sum in order.
fn draw_sums<const K: usize>(r: &[f64], f: impl Fn(f64) -> [f64; K] + Sync) -> [f64; K] {
    use rayon::prelude::*;
    let sum = |chunk: &[f64]| {
        let mut s = [0.0; K];
        for v in chunk {
            for (a, b) in s.iter_mut().zip(f(*v)) {
                *a += b;
            }
        }
        s
    };
    if r.len() <= SUM_CHUNK {
        return sum(r);
    }
    let parts: Vec<[f64; K]> = r.par_chunks(SUM_CHUNK).map(sum).collect();
    let mut s = [0.0; K];
    for p in parts {
        for (a, b) in s.iter_mut().zip(p) {
            *a += b;
        }
    }
    s
}

/// f(out_d, R_d) for every draw, in chunks of [`SUM_CHUNK`] on rayon's threads
/// (each draw's own value: the same bits as in order).
fn for_each_draw(out: &mut [f64], r: &[f64], f: impl Fn(&mut f64, f64) + Sync) {
    use rayon::prelude::*;
    if r.len() <= SUM_CHUNK {
        out.iter_mut().zip(r).for_each(|(o, v)| f(o, *v));
        return;
    }
    out.par_chunks_mut(SUM_CHUNK)
        .zip(r.par_chunks(SUM_CHUNK))
        .for_each(|(o, r)| o.iter_mut().zip(r).for_each(|(o, v)| f(o, *v)));
}

/// Below this, exp underflows to exactly 0 (its smallest subnormal is e^−744.4): the
/// smoothing's far draws take their exact values without libm's underflow path, which
/// costs ~10 × a plain exp and was most of the smoothing's time at 20,000 draws.
const EXP_ZERO: f64 = -746.0;

fn logistic(z: f64) -> f64 {
    if z >= 0.0 {
        if -z < EXP_ZERO {
            return 1.0;
        }
        1.0 / (1.0 + (-z).exp())
    } else {
        if z < EXP_ZERO {
            return 0.0;
        }
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn dlogistic(z: f64) -> f64 {
    let s = logistic(z);
    s * (1.0 - s)
}

fn softplus(z: f64) -> f64 {
    if -z.abs() < EXP_ZERO {
        return z.max(0.0);
    }
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// Rockafellar–Uryasev's CVaR at α of `values`: the mean of the lowest αD values, the
/// boundary one counted fractionally (the minimum where αD < 1).
pub fn cvar_exact(values: &[f64], alpha: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let k = alpha * sorted.len() as f64;
    if k < 1.0 {
        return sorted[0];
    }
    let whole = (k.floor() as usize).min(sorted.len());
    let mut sum: f64 = sorted[..whole].iter().sum();
    if whole < sorted.len() {
        sum += (k - whole as f64) * sorted[whole];
    }
    sum / k
}

impl Measure {
    /// The exact value at R and x (what reports show); NaN for the diversification
    /// measures, which need the cells' moments ([`Utility::value_with`]).
    pub fn value(&self, r: &[f64], x: &[f64]) -> f64 {
        let dr = Draws::new(r);
        let q = |p: f64| quantile(r, p);
        match *self {
            Measure::Mean => dr.mean,
            Measure::Std => dr.std,
            Measure::Quantile(p) => q(p),
            Measure::ValueAtRisk(c) => q(1.0 - c),
            Measure::ConditionalValueAtRisk(c) => cvar_exact(r, 1.0 - c),
            Measure::TailDistance(c) => (q(c) - dr.mean).abs() + (dr.mean - q(1.0 - c)).abs(),
            Measure::MeanTightness { alpha, confidence } => {
                let td = (q(confidence) - dr.mean).abs() + (dr.mean - q(1.0 - confidence)).abs();
                1.0 - alpha * td / dr.mean
            }
            Measure::SharpeRatio(rf) => (dr.mean - rf) / dr.std,
            Measure::Raroc(rf) => (dr.mean - rf) / x.iter().sum::<f64>(),
            Measure::AdjustedValueAtRisk {
                confidence,
                risk_aversion,
            } => (1.0 - risk_aversion) * dr.mean + risk_aversion * q(1.0 - confidence),
            Measure::PortfolioEntropy => entropy(x),
            Measure::Spend => x.iter().sum(),
            // Need the cells' moments: `Utility::value_with`.
            Measure::DiversificationRatio | Measure::DiversificationGap(_) => f64::NAN,
        }
    }

    /// The smoothed value; ∂/∂R × `k` added into `wr`, ∂/∂x × `k` into `wx`.
    fn smooth(&self, dr: &Draws, x: &[f64], k: f64, wr: &mut [f64], wx: &mut [f64]) -> f64 {
        let d = dr.d();
        let add_mean = |k: f64, wr: &mut [f64]| wr.iter_mut().for_each(|o| *o += k / d);
        match *self {
            Measure::Mean => {
                add_mean(k, wr);
                dr.mean
            }
            Measure::Std => {
                dr.add_std_gradient(k);
                dr.std
            }
            Measure::Quantile(p) => dr.quantile(p, k, wr),
            Measure::ValueAtRisk(c) => dr.quantile(1.0 - c, k, wr),
            Measure::ConditionalValueAtRisk(c) => dr.cvar(1.0 - c, k, wr),
            Measure::TailDistance(c) => tail_distance(dr, c, k, wr),
            Measure::MeanTightness { alpha, confidence } => {
                // 1 − a T / μ: ∂ = −(a/μ) ∂T + (a T/μ²) ∂μ.
                let m = dr.mean;
                let td = tail_distance(dr, confidence, -k * alpha / m, wr);
                add_mean(k * alpha * td / (m * m), wr);
                1.0 - alpha * td / m
            }
            Measure::SharpeRatio(rf) => {
                let (m, s) = (dr.mean, dr.std);
                add_mean(k / s, wr);
                dr.add_std_gradient(-k * (m - rf) / (s * s));
                (m - rf) / s
            }
            Measure::Raroc(rf) => {
                let total: f64 = x.iter().sum();
                add_mean(k / total, wr);
                let dx = -k * (dr.mean - rf) / (total * total);
                wx.iter_mut().for_each(|o| *o += dx);
                (dr.mean - rf) / total
            }
            Measure::AdjustedValueAtRisk {
                confidence,
                risk_aversion,
            } => {
                add_mean(k * (1.0 - risk_aversion), wr);
                let var = dr.quantile(1.0 - confidence, k * risk_aversion, wr);
                (1.0 - risk_aversion) * dr.mean + risk_aversion * var
            }
            Measure::PortfolioEntropy => {
                // ∂H/∂x_c = −(ln w_c + H) / S; +∞ where w_c = 0.
                let total: f64 = x.iter().sum();
                let h = entropy(x);
                for (o, xc) in wx.iter_mut().zip(x) {
                    let w = xc / total;
                    *o += if w > 0.0 {
                        -k * (w.ln() + h) / total
                    } else {
                        k * f64::INFINITY
                    };
                }
                h
            }
            Measure::Spend => {
                wx.iter_mut().for_each(|o| *o += k);
                x.iter().sum()
            }
            // Need the cells' moments: `Utility::smooth_with`.
            Measure::DiversificationRatio | Measure::DiversificationGap(_) => f64::NAN,
        }
    }

    /// Whether the measure depends on x directly (not only through R).
    pub fn uses_allocation(&self) -> bool {
        matches!(
            self,
            Measure::Raroc(_)
                | Measure::PortfolioEntropy
                | Measure::Spend
                | Measure::DiversificationRatio
                | Measure::DiversificationGap(_)
        )
    }

    /// Its name in objective strings, with its parameters.
    fn write(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Measure::Mean => write!(f, "mean"),
            Measure::Std => write!(f, "std"),
            Measure::Quantile(q) => write!(f, "quantile({q})"),
            Measure::ValueAtRisk(c) => write!(f, "var({c})"),
            Measure::ConditionalValueAtRisk(c) => write!(f, "cvar({c})"),
            Measure::TailDistance(c) => write!(f, "tail_distance({c})"),
            Measure::MeanTightness { alpha, confidence } => {
                write!(f, "mean_tightness({alpha}, {confidence})")
            }
            Measure::SharpeRatio(rf) => write!(f, "sharpe({rf})"),
            Measure::Raroc(rf) => write!(f, "raroc({rf})"),
            Measure::AdjustedValueAtRisk {
                confidence,
                risk_aversion,
            } => write!(f, "adjusted_var({confidence}, {risk_aversion})"),
            Measure::PortfolioEntropy => write!(f, "portfolio_entropy"),
            Measure::Spend => write!(f, "spend"),
            Measure::DiversificationRatio => write!(f, "diversification_ratio"),
            Measure::DiversificationGap(v) => write!(f, "diversification_gap({v})"),
        }
    }
}

fn entropy(x: &[f64]) -> f64 {
    let total: f64 = x.iter().sum();
    -x.iter()
        .map(|v| v / total)
        .filter(|w| *w > 0.0)
        .map(|w| w * w.ln())
        .sum::<f64>()
}

/// The budget shares w = x / Σx (all 0 when nothing is spent): the cell weights of
/// [`crate::eval::Evaluator::cell_moments`] for the diversification ratio.
pub fn budget_shares(x: &[f64]) -> Vec<f64> {
    let total: f64 = x.iter().sum();
    x.iter()
        .map(|v| if total > 0.0 { v / total } else { 0.0 })
        .collect()
}

/// What the gradient of the diversification measures needs from a pass of the
/// evaluator with the draw weights `draws` (v_d = P_d − P̄): ∇ = explicit + `slope`_c
/// Σ_d v_d r'_dc + `level` Σ_d v_d r_dc, the coefficients of every such term folded in.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RatioPass {
    /// v_d.
    pub(crate) draws: Vec<f64>,
    /// The factor of Σ_d v_d r'_dc, per cell.
    pub(crate) slope: Vec<f64>,
    /// The factor of Σ_d v_d r_dc.
    pub(crate) level: f64,
}

/// The cells' spreads at x, from their moments: σ_c = sd_d(r_dc) and σ'_c = ∂σ_c/∂x_c
/// = Σ_d (r_dc − r̄_c)(r'_dc − r̄'_c) / ((D − 1) σ_c) (0 where σ_c = 0), the shares
/// w = x / T (T = Σ_c x_c), A = Σ_c w_c σ_c, the portfolio's deviations v_d = P_d − P̄
/// (P_d = Σ_c w_c r_dc) and S = sd_d(P_d), all with ddof 1.
struct Spread {
    d: f64,
    total: f64,
    sigma: Vec<f64>,
    slope: Vec<f64>,
    w: Vec<f64>,
    a: f64,
    v: Vec<f64>,
    s: f64,
}

impl Spread {
    fn new(m: &crate::eval::CellMoments, x: &[f64]) -> Self {
        let d = m.weighted.len() as f64;
        let sigma: Vec<f64> = m
            .squares
            .iter()
            .map(|s| (s.max(0.0) / (d - 1.0)).sqrt())
            .collect();
        let slope = sigma
            .iter()
            .zip(&m.cross)
            .map(|(s, c)| if *s > 0.0 { c / ((d - 1.0) * s) } else { 0.0 })
            .collect();
        let w = budget_shares(x);
        let a = w.iter().zip(&sigma).map(|(w, s)| w * s).sum();
        let p_mean = m.weighted.iter().sum::<f64>() / d;
        let v: Vec<f64> = m.weighted.iter().map(|p| p - p_mean).collect();
        let s = (v.iter().map(|v| v * v).sum::<f64>() / (d - 1.0)).sqrt();
        Spread {
            d,
            total: x.iter().sum(),
            sigma,
            slope,
            w,
            a,
            v,
            s,
        }
    }

    /// The pass's factors, `k` × the given ones added.
    fn add_pass(&self, pass: &mut Option<RatioPass>, slope: impl Fn(usize) -> f64, level: f64) {
        let pass = pass.get_or_insert_with(|| RatioPass {
            draws: self.v.clone(),
            slope: vec![0.0; self.w.len()],
            level: 0.0,
        });
        for (c, o) in pass.slope.iter_mut().enumerate() {
            *o += slope(c);
        }
        pass.level += level;
    }

    /// DR = A / S, its gradient × `k` (explicit part into `explicit`, the rest into
    /// `pass`): with G_c = Σ_d v_d r'_dc, K_c = Σ_d v_d r_dc and κ = A / ((D − 1) S³),
    /// ∂DR/∂x_c = (σ_c/T + w_c σ'_c)/S − κ (w_c G_c + K_c/T), since ∂A/∂x_c = σ_c/T +
    /// w_c σ'_c − A/T, ∂P_d/∂x_c = w_c r'_dc + (r_dc − P_d)/T and Σ_d v_d P_d =
    /// (D − 1) S² (the two A/(T S) cancel). 1 where S = 0 and A = 0 (nothing varies),
    /// +∞ where only the portfolio does not.
    fn ratio(&self, k: f64, explicit: &mut [f64], pass: &mut Option<RatioPass>) -> f64 {
        let (t, s) = (self.total, self.s);
        if !(s > 0.0 && t > 0.0) {
            return if self.a > 0.0 { f64::INFINITY } else { 1.0 };
        }
        if k != 0.0 {
            for (c, e) in explicit.iter_mut().enumerate() {
                *e += k * (self.sigma[c] / t + self.w[c] * self.slope[c]) / s;
            }
            let kappa = k * self.a / ((self.d - 1.0) * s * s * s);
            self.add_pass(pass, |c| -kappa * self.w[c], -kappa / t);
        }
        self.a / s
    }

    /// The gap Σ_c x_c σ_c − f sd_d(Σ_c x_c r_dc) = T S (DR − f), its gradient × `k`:
    /// ∂/∂x_c = σ_c + x_c σ'_c − f (x_c G_c + K_c) / ((D − 1) S) (the standard
    /// deviation's part 0 where S = 0, its subgradient there).
    fn gap(
        &self,
        f: f64,
        x: &[f64],
        k: f64,
        explicit: &mut [f64],
        pass: &mut Option<RatioPass>,
    ) -> f64 {
        let value = self.total * (self.a - f * self.s);
        if k != 0.0 {
            for (c, e) in explicit.iter_mut().enumerate() {
                *e += k * (self.sigma[c] + x[c] * self.slope[c]);
            }
            if self.s > 0.0 {
                let kappa = k * f / ((self.d - 1.0) * self.s);
                self.add_pass(pass, |c| -kappa * x[c], -kappa);
            }
        }
        value
    }
}

/// The smoothed |Q_c − μ| + |μ − Q_{1−c}|, its gradient × `k` added into `out`.
fn tail_distance(dr: &Draws, c: f64, k: f64, out: &mut [f64]) -> f64 {
    let d = dr.d();
    let (q1, q2) = (dr.quantile_value(c), dr.quantile_value(1.0 - c));
    let (s1, s2) = ((q1 - dr.mean).signum(), (dr.mean - q2).signum());
    if k != 0.0 {
        dr.add_quantile_gradient(q1, k * s1, out);
        dr.add_quantile_gradient(q2, -k * s2, out);
        let m = k * (s2 - s1) / d;
        out.iter_mut().for_each(|o| *o += m);
    }
    (q1 - dr.mean).abs() + (dr.mean - q2).abs()
}

impl Utility {
    /// U = μ (PyMC-Marketing's `average_response`).
    pub fn mean() -> Self {
        Utility {
            terms: vec![(1.0, Measure::Mean)],
        }
    }

    /// Whether U is the mean response.
    pub fn is_mean(&self) -> bool {
        self.terms == [(1.0, Measure::Mean)]
    }

    /// The kind for its scenario name (`"utility": {"kind": …}`): `mean`
    /// (`average_response`); see [`Utility::parse`] for the rest.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "mean" | "average_response" => Some(Utility::mean()),
            _ => Utility::parse(name).ok(),
        }
    }

    /// The exact U(R, x): what reports show (quantiles unsmoothed). A utility with
    /// `diversification_ratio` needs the cells' moments too ([`Utility::value_with`]):
    /// without them it is NaN.
    pub fn value(&self, responses: &[f64], x: &[f64]) -> f64 {
        self.value_with(responses, x, None)
    }

    /// [`Utility::value`] with the cells' moments at x, when U needs them
    /// ([`Utility::needs_cell_moments`]; [`crate::eval::Evaluator::cell_moments`]
    /// with the budget shares x / Σx as the cell weights).
    pub fn value_with(
        &self,
        responses: &[f64],
        x: &[f64],
        cells: Option<&crate::eval::CellMoments>,
    ) -> f64 {
        self.terms
            .iter()
            .map(|(c, m)| match (m, cells) {
                (Measure::DiversificationRatio, Some(cells)) => {
                    c * Spread::new(cells, x).ratio(0.0, &mut [], &mut None)
                }
                (Measure::DiversificationGap(f), Some(cells)) => {
                    c * Spread::new(cells, x).gap(*f, x, 0.0, &mut [], &mut None)
                }
                _ => c * m.value(responses, x),
            })
            .sum()
    }

    /// Whether U has a term of the cells' own responses (`diversification_ratio`),
    /// whose value needs [`crate::eval::Evaluator::cell_moments`].
    pub fn needs_cell_moments(&self) -> bool {
        self.terms.iter().any(|(_, m)| {
            matches!(
                m,
                Measure::DiversificationRatio | Measure::DiversificationGap(_)
            )
        })
    }

    /// The smoothed U(R, x) the solver maximises, with ∂U/∂R_d into `weights` and
    /// the explicit ∂U/∂x into `explicit` (both overwritten). Equal to
    /// [`Utility::value`] where no term involves a quantile.
    pub fn smooth(
        &self,
        responses: &[f64],
        x: &[f64],
        weights: &mut [f64],
        explicit: &mut [f64],
    ) -> f64 {
        self.smooth_with(responses, x, None, weights, explicit).0
    }

    /// [`Utility::smooth`] with the cells' moments at x (from
    /// [`crate::eval::Evaluator::cell_moments`] with the cell weights x / Σx) where U
    /// needs them: the ratio's gradient then needs a weighted pass of its own, whose
    /// draw weights and factors come back as a [`RatioPass`].
    pub(crate) fn smooth_with(
        &self,
        responses: &[f64],
        x: &[f64],
        cells: Option<&crate::eval::CellMoments>,
        weights: &mut [f64],
        explicit: &mut [f64],
    ) -> (f64, Option<RatioPass>) {
        let (value, pass, b) = self.smooth_parts(responses, x, cells, weights, explicit);
        if b != 0.0 {
            let mean = responses.iter().sum::<f64>() / responses.len() as f64;
            for (w, r) in weights.iter_mut().zip(responses) {
                *w += b * (r - mean);
            }
        }
        (value, pass)
    }

    /// [`Utility::smooth`] with U's draw weights split in two: ∂U/∂R_d = κ_d + b (R_d −
    /// μ), the kernel κ (into `kernel`) and the slope b (returned beside the value) of
    /// the terms through σ (std, Sharpe's ratio and the bandwidth h ∝ σ of the
    /// smoothed quantiles). κ is constant wherever no quantile's kernel reaches: what
    /// lets one pass give the weighted sums ([`crate::eval::Evaluator::evaluate_banded`]).
    pub(crate) fn smooth_split(
        &self,
        responses: &[f64],
        x: &[f64],
        kernel: &mut [f64],
        explicit: &mut [f64],
    ) -> (f64, f64) {
        let (value, _, b) = self.smooth_parts(responses, x, None, kernel, explicit);
        (value, b)
    }

    /// The value, the ratio's pass, κ into `weights` and b of [`Utility::smooth_split`].
    fn smooth_parts(
        &self,
        responses: &[f64],
        x: &[f64],
        cells: Option<&crate::eval::CellMoments>,
        weights: &mut [f64],
        explicit: &mut [f64],
    ) -> (f64, Option<RatioPass>, f64) {
        weights.fill(0.0);
        explicit.fill(0.0);
        let dr = Draws::new(responses);
        let mut pass = None;
        let value = self
            .terms
            .iter()
            .map(|(c, m)| match (m, cells) {
                (Measure::DiversificationRatio, Some(cells)) => {
                    c * Spread::new(cells, x).ratio(*c, explicit, &mut pass)
                }
                (Measure::DiversificationGap(f), Some(cells)) => {
                    c * Spread::new(cells, x).gap(*f, x, *c, explicit, &mut pass)
                }
                _ => c * m.smooth(&dr, x, *c, weights, explicit),
            })
            .sum();
        (value, pass, dr.std_slope())
    }

    /// Whether [`Utility::tail_curvature`] applies: some CVaR with a positive
    /// coefficient, and beside it only the mean and the spend.
    pub(crate) fn has_tail_curvature(&self) -> bool {
        let cvar =
            |c: &f64, m: &Measure| *c > 0.0 && matches!(m, Measure::ConditionalValueAtRisk(_));
        self.terms.iter().any(|(c, m)| cvar(c, m))
            && self
                .terms
                .iter()
                .all(|(c, m)| cvar(c, m) || matches!(m, Measure::Mean | Measure::Spend))
    }

    /// The curvature of U in the responses where its only terms beyond the mean and the
    /// spend are CVaRs with positive coefficients: −∇²_R U = Σ_terms c (diag(k) −
    /// k kᵀ / K), with k_d = s'(z_d)/(αDh) at z_d = (t − R_d)/h (t the smoothed
    /// quantile, h's own dependence on σ left out) and K = Σ_d k_d: positive
    /// semidefinite (vᵀ(diag(k) − k kᵀ/K)v = Σ_d k_d (v_d − v̄)², v̄ the k-weighted
    /// mean), nonzero only for the draws near t. One [`TailCurvature`] per CVaR term,
    /// its draws those with c k_d at least [`TAIL_KEPT`] of the largest (ascending).
    /// `None` for any other utility, or where the draws are flat.
    pub(crate) fn tail_curvature(&self, responses: &[f64]) -> Option<Vec<TailCurvature>> {
        let mut out = vec![];
        let dr = Draws::new(responses);
        for (c, m) in &self.terms {
            match m {
                Measure::Mean | Measure::Spend => {}
                Measure::ConditionalValueAtRisk(level) if *c > 0.0 => {
                    if dr.flat() {
                        return None;
                    }
                    let alpha = 1.0 - level;
                    let t = dr.smoothed_quantile(alpha);
                    let scale = c / (alpha * dr.d() * dr.h);
                    let mut k = vec![0.0; responses.len()];
                    let h = dr.h;
                    for_each_draw(&mut k, responses, |k, v| {
                        *k = scale * dlogistic((t - v) / h)
                    });
                    let largest = k.iter().fold(0.0f64, |a, b| a.max(*b));
                    let (draws, weights) = k
                        .iter()
                        .enumerate()
                        .filter(|(_, v)| **v > 0.0 && **v >= TAIL_KEPT * largest)
                        .map(|(d, v)| (d, *v))
                        .unzip();
                    out.push(TailCurvature { draws, weights });
                }
                _ => return None,
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// Whether U is the mean response (its terms all `mean`, their coefficients summing
    /// to 1): then ∂U/∂R_d = 1/D for every R and one evaluator pass gives the value,
    /// gradient and curvature.
    pub fn has_constant_weights(&self) -> bool {
        self.linear_form() == Some((1.0, 0.0))
    }

    /// Whether the solver models U's curvature as its exact diagonal (each draw's
    /// curvature under U's draw weights) plus a quasi-Newton model of the rest: where
    /// every term is the mean, std, the spend, RAROC or the portfolio entropy, whose
    /// weights ∂U/∂R_d move smoothly with the responses. The quantile-based measures
    /// (quantile, VaR, CVaR, tail distance, mean tightness, adjusted VaR), whose
    /// weights are a narrow kernel around a quantile and jump with the draws near it,
    /// and Sharpe's ratio were solved in fewer iterations, or to better optima, with a
    /// quasi-Newton model of the whole (benches/NOTES.md, "Risk-aware objectives: the
    /// exact diagonal kept"), except the CVaRs beside the mean, whose exact Hessian is
    /// known ([`Utility::tail_curvature`]).
    pub(crate) fn structured_curvature(&self) -> bool {
        self.terms.iter().all(|(c, m)| {
            *c == 0.0
                || matches!(
                    m,
                    Measure::Mean
                        | Measure::Std
                        | Measure::Spend
                        | Measure::Raroc(_)
                        | Measure::PortfolioEntropy
                )
        })
    }

    /// (a, b) with ∂U/∂R_d = a + b (R_d − μ) for every draw, where every term's draw
    /// weights are affine in the draw's response (the mean, std, Sharpe's ratio,
    /// RAROC, the entropy and the spend): then one pass that sums each cell's terms
    /// plainly and weighted by R_d gives ∇U ([`crate::eval::Evaluator::evaluate_linear`]).
    /// With σ > 0: mean k/D; std k (R_d − μ)/((D − 1) σ); Sharpe k/(D σ) − k (μ − r_f)
    /// (R_d − μ)/((D − 1) σ³); RAROC k/(D Σx). `None` for the others, and for std or
    /// Sharpe's ratio where σ = 0 (no spread: their weights are not defined).
    pub(crate) fn affine_weights(&self, responses: &[f64], x: &[f64]) -> Option<(f64, f64)> {
        let dr = Draws::new(responses);
        let (d, m, s) = (dr.d(), dr.mean, dr.std);
        let (mut a, mut b) = (0.0, 0.0);
        for (k, term) in &self.terms {
            match term {
                Measure::Mean => a += k / d,
                Measure::Std if s > 0.0 => b += k / ((d - 1.0) * s),
                Measure::SharpeRatio(rf) if s > 0.0 => {
                    a += k / (d * s);
                    b -= k * (m - rf) / ((d - 1.0) * s * s * s);
                }
                Measure::Raroc(_) => a += k / (d * x.iter().sum::<f64>()),
                Measure::PortfolioEntropy | Measure::Spend => {}
                _ if *k == 0.0 => {}
                _ => return None,
            }
        }
        Some((a, b))
    }

    /// Whether every term's draw weights can be affine in the draw's response (see
    /// [`Utility::affine_weights`]; std and Sharpe's ratio where the responses vary).
    pub(crate) fn has_affine_weights(&self) -> bool {
        self.terms.iter().all(|(k, m)| {
            *k == 0.0
                || matches!(
                    m,
                    Measure::Mean
                        | Measure::Std
                        | Measure::SharpeRatio(_)
                        | Measure::Raroc(_)
                        | Measure::PortfolioEntropy
                        | Measure::Spend
                )
        })
    }

    /// Whether a term with a nonzero coefficient involves a quantile (quantile, VaR,
    /// CVaR, tail distance, mean tightness, adjusted VaR): its draw weights are a
    /// narrow kernel that jumps with the draws near the quantile.
    pub(crate) fn quantile_based(&self) -> bool {
        self.terms.iter().any(|(c, m)| {
            *c != 0.0
                && matches!(
                    m,
                    Measure::Quantile(_)
                        | Measure::ValueAtRisk(_)
                        | Measure::ConditionalValueAtRisk(_)
                        | Measure::TailDistance(_)
                        | Measure::MeanTightness { .. }
                        | Measure::AdjustedValueAtRisk { .. }
                )
        })
    }

    /// (k, a) where U = k μ + a Σ_c x_c (terms `mean` and `spend` only): linear in R
    /// and x, so one uniform evaluator pass gives its value, gradient (k ∇μ + a) and
    /// exact curvature (k diag ∇²μ).
    pub fn linear_form(&self) -> Option<(f64, f64)> {
        let (mut k, mut a) = (0.0, 0.0);
        for (c, m) in &self.terms {
            match m {
                Measure::Mean => k += c,
                Measure::Spend => a += c,
                _ => return None,
            }
        }
        Some((k, a))
    }

    /// Whether U involves the spend (`minimize spend`): the total budget is then a
    /// cap, not a target.
    pub fn uses_spend(&self) -> bool {
        self.terms.iter().any(|(_, m)| *m == Measure::Spend)
    }

    /// Whether U depends on x directly (`raroc`, `portfolio_entropy`,
    /// `diversification_ratio`, `spend`).
    pub fn uses_allocation(&self) -> bool {
        self.terms.iter().any(|(_, m)| m.uses_allocation())
    }

    /// The scenario name: the expression maximised.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// An objective string: `[maximize|minimize] TERM (± TERM)*`, each TERM a measure
    /// optionally times a number (`0.5 * std`, `std * 0.5`), a measure being `mean`,
    /// `std`, `quantile(q)`, `var(c)`, `cvar(c)`, `tail_distance(c)`,
    /// `mean_tightness(a, c)`, `sharpe(r_f)`, `raroc(r_f)`, `adjusted_var(c, ρ)`,
    /// `portfolio_entropy`, `diversification_ratio`, or PyMC-Marketing's names (`average_response`,
    /// `value_at_risk`, `conditional_value_at_risk`, `sharpe_ratio`,
    /// `mean_tightness_score`, `adjusted_value_at_risk_score`); parameters left out
    /// take PyMC-Marketing's defaults. `minimize` negates the expression. Errors give
    /// the column (1-based) and what was expected.
    pub fn parse(text: &str) -> std::result::Result<Self, (usize, String)> {
        Parser::new(text).objective()
    }

    /// [`Utility::parse`] with the error as [`Error::InvalidValue`] naming `context`
    /// and `field`.
    pub fn parse_in(text: &str, context: &str, field: &str) -> Result<Self> {
        Utility::parse(text).map_err(|(column, message)| {
            Error::invalid(
                context,
                field,
                format!("{text:?}"),
                format!("column {column}: {message}"),
            )
        })
    }
}

impl fmt::Display for Utility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, (c, m)) in self.terms.iter().enumerate() {
            let (sign, magnitude) = if *c < 0.0 { ("-", -c) } else { ("+", *c) };
            match (k, sign) {
                (0, "-") => write!(f, "-")?,
                (0, _) => {}
                (_, s) => write!(f, " {s} ")?,
            }
            if magnitude != 1.0 {
                write!(f, "{magnitude} * ")?;
            }
            m.write(f)?;
        }
        Ok(())
    }
}

/// The objective-string parser.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

type Parsed<T> = std::result::Result<T, (usize, String)>;

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { text, pos: 0 }
    }

    /// The 1-based column of byte offset `at`.
    fn col(&self, at: usize) -> usize {
        self.text[..at].chars().count() + 1
    }

    fn fail<T>(&self, message: impl Into<String>) -> Parsed<T> {
        Err((self.col(self.pos), message.into()))
    }

    fn skip(&mut self) {
        let rest = &self.text[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn peek(&mut self) -> Option<char> {
        self.skip();
        self.text[self.pos..].chars().next()
    }

    fn word(&mut self) -> Option<&'a str> {
        self.skip();
        let rest = &self.text[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        self.pos += len;
        Some(&rest[..len])
    }

    fn number(&mut self) -> Option<f64> {
        self.skip();
        let rest = &self.text[self.pos..];
        let len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == 'E'))
            .unwrap_or(rest.len());
        let v = rest[..len].parse::<f64>().ok().filter(|v| v.is_finite())?;
        self.pos += len;
        Some(v)
    }

    fn objective(mut self) -> Parsed<Utility> {
        let start = self.pos;
        let sign = match self.word() {
            Some("maximize" | "maximise") => 1.0,
            Some("minimize" | "minimise") => -1.0,
            _ => {
                self.pos = start;
                1.0
            }
        };
        let mut terms = vec![];
        let mut coefficient = 1.0;
        loop {
            match self.peek() {
                Some('-') => {
                    self.pos += 1;
                    coefficient = -coefficient;
                    continue;
                }
                Some('+') if terms.is_empty() => {
                    self.pos += 1;
                    continue;
                }
                _ => {}
            }
            let (c, m) = self.term()?;
            terms.push((sign * coefficient * c, m));
            match self.peek() {
                None => break,
                Some('+') => coefficient = 1.0,
                Some('-') => coefficient = -1.0,
                Some(_) => return self.fail("expected + or - between terms, or the end"),
            }
            self.pos += 1;
        }
        Ok(Utility { terms })
    }

    fn term(&mut self) -> Parsed<(f64, Measure)> {
        let mut c = 1.0;
        if let Some(v) = self.number() {
            c = v;
            if self.peek() != Some('*') {
                return self.fail("expected * after the number");
            }
            self.pos += 1;
        }
        let m = self.measure()?;
        if self.peek() == Some('*') {
            self.pos += 1;
            match self.number() {
                Some(v) => c *= v,
                None => return self.fail("expected a number after *"),
            }
        }
        Ok((c, m))
    }

    fn args(&mut self) -> Parsed<Vec<f64>> {
        let mut args = vec![];
        if self.peek() != Some('(') {
            return Ok(args);
        }
        self.pos += 1;
        if self.peek() == Some(')') {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            match self.number() {
                Some(v) => args.push(v),
                None => return self.fail("expected a number"),
            }
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    return Ok(args);
                }
                _ => return self.fail("expected , or )"),
            }
        }
    }

    fn measure(&mut self) -> Parsed<Measure> {
        self.skip();
        let at = self.pos;
        let column = self.col(at);
        let Some(name) = self.word() else {
            return self.fail("expected a measure (mean, std, quantile(q), var(c), cvar(c), …)");
        };
        let args = self.args()?;
        let end = self.pos;
        self.pos = at;
        let arg = |k: usize, default: f64| args.get(k).copied().unwrap_or(default);
        let max_args = |n: usize| -> Parsed<()> {
            if args.len() > n {
                Err((column, format!("{name} takes at most {n} argument(s)")))
            } else {
                Ok(())
            }
        };
        let level = |v: f64, what: &str| -> Parsed<f64> {
            if v > 0.0 && v < 1.0 {
                Ok(v)
            } else {
                Err((
                    column,
                    format!("{name}: {what} = {v}: expected strictly between 0 and 1"),
                ))
            }
        };
        let m = match name {
            "mean" | "mean_response" | "average_response" => {
                max_args(0)?;
                Measure::Mean
            }
            "std" => {
                max_args(0)?;
                Measure::Std
            }
            "quantile" => {
                if args.len() != 1 {
                    return Err((column, "quantile takes one argument, q".into()));
                }
                Measure::Quantile(level(args[0], "q")?)
            }
            "var" | "value_at_risk" => {
                max_args(1)?;
                Measure::ValueAtRisk(level(arg(0, 0.95), "confidence")?)
            }
            "cvar" | "conditional_value_at_risk" => {
                max_args(1)?;
                Measure::ConditionalValueAtRisk(level(arg(0, 0.95), "confidence")?)
            }
            "tail_distance" => {
                max_args(1)?;
                Measure::TailDistance(level(arg(0, 0.75), "confidence")?)
            }
            "mean_tightness" | "mean_tightness_score" => {
                max_args(2)?;
                Measure::MeanTightness {
                    alpha: arg(0, 0.5),
                    confidence: level(arg(1, 0.75), "confidence")?,
                }
            }
            "sharpe" | "sharpe_ratio" => {
                max_args(1)?;
                Measure::SharpeRatio(arg(0, 0.0))
            }
            "raroc" => {
                max_args(1)?;
                Measure::Raroc(arg(0, 0.0))
            }
            "adjusted_var" | "adjusted_value_at_risk_score" => {
                max_args(2)?;
                let rho = arg(1, 0.8);
                if !(0.0..=1.0).contains(&rho) {
                    return Err((
                        column,
                        format!("{name}: risk_aversion = {rho}: expected in [0, 1]"),
                    ));
                }
                Measure::AdjustedValueAtRisk {
                    confidence: level(arg(0, 0.95), "confidence")?,
                    risk_aversion: rho,
                }
            }
            "portfolio_entropy" => {
                max_args(0)?;
                Measure::PortfolioEntropy
            }
            "spend" => {
                max_args(0)?;
                Measure::Spend
            }
            "diversification_ratio" => {
                max_args(0)?;
                Measure::DiversificationRatio
            }
            "diversification_gap" => {
                if args.len() != 1 {
                    return Err((
                        column,
                        "diversification_gap takes one argument, the ratio f".into(),
                    ));
                }
                Measure::DiversificationGap(args[0])
            }
            other => {
                return Err((
                    column,
                    format!(
                        "unknown measure {other:?}: expected mean, std, quantile(q), var(c), cvar(c), \
                         tail_distance(c), mean_tightness(a, c), sharpe(r_f), raroc(r_f), \
                         adjusted_var(c, rho), portfolio_entropy, diversification_ratio, \
                         diversification_gap(f), spend"
                    ),
                ));
            }
        };
        self.pos = end;
        Ok(m)
    }
}

/// The q-quantile of `values` with linear interpolation at q(D−1) over the sorted
/// values (NumPy's default, as PyMC-Marketing uses it).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    // The two order statistics by selection (O(D)), not a sort.
    let mut v = values.to_vec();
    let h = q * (v.len() - 1) as f64;
    let lo = h.floor() as usize;
    let (_, &mut at_lo, above) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let at_hi = above
        .iter()
        .copied()
        .min_by(f64::total_cmp)
        .unwrap_or(at_lo);
    at_lo + (h - lo as f64) * (at_hi - at_lo)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// −∇²_R U from [`Utility::tail_curvature`] times a direction equals central
    /// differences of the draw weights ∂U/∂R_d (h held, as the model leaves out h's
    /// dependence on σ), for a sum of the mean and two CVaRs; draws left out carry
    /// weights below [`TAIL_KEPT`] of the largest.
    #[test]
    fn tail_curvature_matches_central_differences_of_the_weights() {
        let mut rand = crate::sqp::test_uniform(11);
        let r: Vec<f64> = (0..300)
            .map(|_| 1000.0 + 400.0 * (rand() + rand() + rand()))
            .collect();
        let v: Vec<f64> = (0..r.len()).map(|_| rand()).collect();
        let u = Utility::parse("0.3 * mean + 2 * cvar(0.9) + 0.5 * cvar(0.8)").unwrap();
        let h = Draws::new(&r).h;
        // U's weights with h held: the mean's, and each CVaR's c s((t − R_d)/h)/(αD).
        let weights = |r: &[f64]| -> Vec<f64> {
            let mut dr = Draws::new(r);
            dr.h = h;
            let d = r.len() as f64;
            let mut w = vec![0.3 / d; r.len()];
            for (c, alpha) in [(2.0, 0.1), (0.5, 0.2)] {
                let t = dr.smoothed_quantile(alpha);
                for (w, v) in w.iter_mut().zip(r) {
                    *w += c * logistic((t - v) / h) / (alpha * d);
                }
            }
            w
        };
        let eps = 1e-4;
        let shifted = |k: f64| -> Vec<f64> { r.iter().zip(&v).map(|(r, v)| r + k * v).collect() };
        let (plus, minus) = (weights(&shifted(eps)), weights(&shifted(-eps)));
        let differences: Vec<f64> = plus
            .iter()
            .zip(&minus)
            .map(|(p, m)| -(p - m) / (2.0 * eps))
            .collect();
        let terms = u.tail_curvature(&r).expect("the mean and CVaRs");
        assert_eq!(terms.len(), 2);
        let mut model = vec![0.0; r.len()];
        for term in &terms {
            assert!(term.draws.windows(2).all(|w| w[0] < w[1]));
            assert!(term.draws.len() > 5 && term.draws.len() < r.len());
            let total: f64 = term.weights.iter().sum();
            let kv: f64 = term
                .draws
                .iter()
                .zip(&term.weights)
                .map(|(d, k)| k * v[*d])
                .sum();
            for (d, k) in term.draws.iter().zip(&term.weights) {
                model[*d] += k * v[*d] - k * kv / total;
            }
        }
        let largest = differences.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(largest > 0.0);
        // Exact but for the draws left out (weights below TAIL_KEPT of the largest:
        // together ~TAIL_KEPT of the curvature).
        let tol = (4.0 * TAIL_KEPT).max(1e-5) * largest;
        for (d, (a, b)) in model.iter().zip(&differences).enumerate() {
            assert!((a - b).abs() <= tol, "draw {d}: {a} vs {b}");
        }
        // Other utilities have no such form.
        for text in [
            "mean - 0.5 * std",
            "quantile(0.1)",
            "mean - cvar(0.9)",
            "mean",
        ] {
            assert!(
                Utility::parse(text).unwrap().tail_curvature(&r).is_none(),
                "{text}"
            );
        }
    }

    /// The affine form (a, b) of the draw weights is the smoothed form's weights, for
    /// every utility that has one, and none for the others.
    #[test]
    fn affine_weights_are_the_smoothed_weights() {
        let r: Vec<f64> = (0..57)
            .map(|d| 1000.0 + 37.0 * ((d * 7919) % 101) as f64)
            .collect();
        let x = [3.0, 1.5, 0.5];
        for text in [
            "mean",
            "std",
            "mean - 0.5 * std",
            "sharpe(100)",
            "raroc(5) + 2 * mean",
            "mean + portfolio_entropy - 0.01 * spend",
            "-3 * std + sharpe",
        ] {
            let u = Utility::parse(text).unwrap();
            assert!(u.has_affine_weights(), "{text}");
            let (a, b) = u.affine_weights(&r, &x).unwrap();
            let mut w = vec![0.0; r.len()];
            let mut e = vec![0.0; x.len()];
            u.smooth(&r, &x, &mut w, &mut e);
            let mean = r.iter().sum::<f64>() / r.len() as f64;
            let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (d, wd) in w.iter().enumerate() {
                let affine = a + b * (r[d] - mean);
                assert!(
                    (affine - wd).abs() <= 1e-12 * scale,
                    "{text} draw {d}: {affine} vs {wd}"
                );
            }
        }
        for text in ["cvar(0.9)", "mean - quantile(0.1)", "diversification_ratio"] {
            let u = Utility::parse(text).unwrap();
            assert!(!u.has_affine_weights(), "{text}");
            assert_eq!(u.affine_weights(&r, &x), None, "{text}");
        }
        // No spread: std's weights are not defined, and none are claimed.
        let flat = vec![5.0; 9];
        assert_eq!(
            Utility::parse("std").unwrap().affine_weights(&flat, &x),
            None
        );
    }
}
