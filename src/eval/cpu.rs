//! The f64 reference evaluator, threaded over draws with rayon.

use super::terms;
use super::{
    BandedSums, CellMoments, DrawWeights, Evaluation, Evaluator, MomentSum, TimeVaryingEvaluation,
    band_position, check_len, check_many, check_weights,
};
use crate::adstock::{convolve, convolve_adjoint};
use crate::error::Result;
use crate::problem::Problem;
use rayon::prelude::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Above this many bytes the adstocked unit patterns are recomputed at every
/// evaluation instead of being kept.
const TERM_CACHE_BYTES: usize = 1 << 30;

/// The f64 CPU evaluator: the reference every other evaluator is checked against.
///
/// At construction it computes, for every draw and cell, the adstocked unit pattern
/// q_tcd as a list of (value, multiplicity) terms: equal consecutive values (the
/// steady state of a constant pattern) are merged and zeros dropped, which changes
/// nothing in the sums but their rounding. An evaluation then costs one saturation
/// call per term. Above 1 GiB of terms they are recomputed at each evaluation (for a
/// constant pattern in O(K·L) per draw and cell, from prefix sums of the weights).
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 2, geos: 2, draws: 20 }, 1);
/// let problem = Problem::new(&model, &scenario).unwrap();
/// let mut ev = CpuEvaluator::new(&problem).unwrap();
/// let mut r = vec![0.0; ev.num_draws()];
/// ev.responses(&problem.uniform_allocation(), &mut r).unwrap();
/// assert!(r.iter().all(|v| *v > 0.0));
/// ```
#[derive(Clone, Debug)]
pub struct CpuEvaluator {
    problem: std::sync::Arc<Problem>,
    /// Cached terms, when they fit in [`TERM_CACHE_BYTES`].
    terms: Option<Terms>,
    /// Whether each cell's unit pattern is the same in every period.
    constant: Vec<bool>,
    threads: usize,
}

/// (q, m) terms for every (draw, cell) i: `lens[i]` of them from `q[i * stride]` and
/// `m[i * stride]`; with carry-in, also its shifted terms and constant (see
/// [`CellTerms`]).
#[derive(Clone, Debug)]
struct Terms {
    stride: usize,
    lens: Vec<u32>,
    q: Vec<f64>,
    m: Vec<f64>,
    carry: Option<CarryTerms>,
}

/// The carry-in's terms for every (draw, cell) i: `lens[i]` (q, m, h) from
/// `[i * stride]`, and its constant.
#[derive(Clone, Debug)]
struct CarryTerms {
    stride: usize,
    lens: Vec<u32>,
    q: Vec<f64>,
    m: Vec<f64>,
    h: Vec<f64>,
    constant: Vec<f64>,
}

/// One draw's rows of [`CarryTerms`], filled with the usual terms.
struct CarryRow<'a> {
    q: &'a mut [f64],
    m: &'a mut [f64],
    h: &'a mut [f64],
    lens: &'a mut [u32],
    constant: &'a mut [f64],
}

/// Shifted terms kept per (draw, cell): the K − 1 periods a carry-in can shift,
/// padded to whole lane blocks.
fn carry_stride(p: &Problem) -> usize {
    p.adstock
        .kernel_len()
        .saturating_sub(1)
        .next_multiple_of(terms::LANES)
        .max(terms::LANES)
}

/// One (draw, cell)'s terms: r = Σ m g(x q) + Σ cm g(x cq + ch) + constant, and the
/// derivatives of its sums. Without carry-in the shifted terms are empty and the
/// constant 0. With it (adstock first), the periods whose input carries the
/// adstocked spend before the window (h_t > 0, t < K − 1) are shifted terms instead
/// of usual ones; with saturation first, the carry-in is the constant
/// [`Problem::carry_in_saturated`].
struct CellTerms<'s> {
    q: &'s [f64],
    m: &'s [f64],
    cq: &'s [f64],
    cm: &'s [f64],
    ch: &'s [f64],
    constant: f64,
}

impl CellTerms<'_> {
    /// [r, r′, r″] of the cell before τ at per-period spend x.
    #[inline]
    fn sums(&self, p: &Problem, params: &[f64], x: f64) -> [f64; 3] {
        let mut s = terms::sums(p.saturation, params, x, self.q, self.m);
        if !self.cq.is_empty() {
            let c = terms::sums_shifted(p.saturation, params, x, self.cq, self.cm, self.ch);
            for k in 0..3 {
                s[k] += c[k];
            }
        }
        s[0] += self.constant;
        s
    }
}

/// Per-thread scratch space.
#[derive(Default)]
struct Scratch {
    w: Vec<f64>,
    z: Vec<f64>,
    a: Vec<f64>,
    v: Vec<f64>,
    y: Vec<f64>,
    /// The terms' q and m.
    tq: Vec<f64>,
    tm: Vec<f64>,
    /// The carry-in's shifted terms (q, m, h) and constant.
    cq: Vec<f64>,
    cm: Vec<f64>,
    ch: Vec<f64>,
    constant: f64,
}

impl CpuEvaluator {
    /// An evaluator for `problem` (copied; the posterior is not modified). To share a
    /// problem without copying its parameters, [`CpuEvaluator::shared`].
    pub fn new(problem: &Problem) -> Result<Self> {
        Self::shared(std::sync::Arc::new(problem.clone()))
    }

    /// An evaluator for a problem shared with the caller: no copy of its parameters.
    ///
    /// ```
    /// use mmm_budget::*;
    /// use std::sync::Arc;
    /// let (model, scenario) = demo::case(&demo::DemoSize { channels: 2, geos: 1, draws: 20 }, 3);
    /// let problem = Arc::new(Problem::new(&model, &scenario)?);
    /// let ev = CpuEvaluator::shared(problem.clone())?;
    /// assert!(std::ptr::eq(ev.problem(), &*problem));
    /// # Ok::<(), mmm_budget::Error>(())
    /// ```
    pub fn shared(problem: std::sync::Arc<Problem>) -> Result<Self> {
        let mut ev = Self::without_cache(problem.clone());
        let (d, n) = (problem.num_draws(), problem.num_cells());
        let per_pair = if ev.constant.iter().all(|c| *c) {
            problem.num_periods.min(problem.adstock.kernel_len()) + problem.adstock.l_max
        } else {
            problem.num_periods + problem.adstock.l_max
        };
        let per_pair = per_pair.next_multiple_of(terms::LANES);
        // With carry-in, (q, m, h) of up to K − 1 shifted terms and a constant more.
        let carry_pair = if problem.history.is_empty() {
            0
        } else {
            3 * carry_stride(&problem) + 1
        };
        let bytes = d * n * (per_pair * 2 + carry_pair) * std::mem::size_of::<f64>();
        if bytes <= TERM_CACHE_BYTES {
            ev.terms = Some(ev.build_terms(per_pair));
        }
        Ok(ev)
    }

    /// An evaluator that computes each (draw, cell)'s terms at every pass instead of
    /// keeping them: for a pass or two over a few draws (the solver's slopes of the
    /// draws near a CVaR's quantile, `sqp::point`), where building the cache would
    /// cost more than the passes.
    pub(crate) fn without_cache(problem: std::sync::Arc<Problem>) -> Self {
        let n = problem.num_cells();
        let constant = (0..n)
            .map(|c| {
                let p = problem.pattern_of(c);
                p.iter().all(|v| *v == p[0])
            })
            .collect();
        CpuEvaluator {
            problem,
            terms: None,
            constant,
            threads: rayon::current_num_threads(),
        }
    }

    /// The problem this evaluator was built for.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }

    fn build_terms(&self, stride: usize) -> Terms {
        let (d, n) = (self.problem.num_draws(), self.problem.num_cells());
        // Written in place, a fixed stride per (draw, cell): no per-draw buffers to
        // concatenate (at this size, first-touch page clearing is most of the cost).
        let mut q = vec![0.0; d * n * stride];
        let mut m = vec![0.0; d * n * stride];
        let mut lens = vec![0u32; d * n];
        let mut carry = (!self.problem.history.is_empty()).then(|| {
            let stride = carry_stride(&self.problem);
            CarryTerms {
                stride,
                lens: vec![0; d * n],
                q: vec![0.0; d * n * stride],
                m: vec![0.0; d * n * stride],
                h: vec![0.0; d * n * stride],
                constant: vec![0.0; d * n],
            }
        });
        // One pass over the draws fills the usual terms and, with carry-in, the
        // shifted ones (terms_of makes both).
        let cstride = carry.as_ref().map_or(0, |k| k.stride);
        let mut carry_rows: Vec<Option<CarryRow<'_>>> = match &mut carry {
            None => (0..d).map(|_| None).collect(),
            Some(k) => {
                k.q.chunks_mut(n * cstride)
                    .zip(k.m.chunks_mut(n * cstride))
                    .zip(k.h.chunks_mut(n * cstride))
                    .zip(k.lens.chunks_mut(n).zip(k.constant.chunks_mut(n)))
                    .map(|(((q, m), h), (lens, constant))| {
                        Some(CarryRow {
                            q,
                            m,
                            h,
                            lens,
                            constant,
                        })
                    })
                    .collect()
            }
        };
        q.par_chunks_mut(n * stride)
            .zip(m.par_chunks_mut(n * stride))
            .zip(lens.par_chunks_mut(n))
            .zip(carry_rows.par_iter_mut())
            .enumerate()
            .for_each_init(Scratch::default, |s, (draw, (((q, m), lens), row))| {
                for (c, len) in lens.iter_mut().enumerate() {
                    terms_of(&self.problem, draw, c, self.constant[c], s);
                    let at = c * stride..c * stride + s.tq.len();
                    q[at.clone()].copy_from_slice(&s.tq);
                    m[at].copy_from_slice(&s.tm);
                    *len = s.tq.len() as u32;
                    if let Some(row) = row {
                        let at = c * cstride..c * cstride + s.cq.len();
                        row.q[at.clone()].copy_from_slice(&s.cq);
                        row.m[at.clone()].copy_from_slice(&s.cm);
                        row.h[at].copy_from_slice(&s.ch);
                        row.lens[c] = s.cq.len() as u32;
                        row.constant[c] = s.constant;
                    }
                }
            });
        drop(carry_rows);
        Terms {
            stride,
            lens,
            q,
            m,
            carry,
        }
    }

    /// Draws a block of the parallel loops: four blocks a thread.
    fn block(&self, num_draws: usize) -> usize {
        num_draws.div_ceil(self.threads * 4).max(1)
    }

    /// Runs `per_draw(d, scratch, partial)` for every draw over rayon, each block of
    /// draws accumulating into its own `partial` of `width` values; the partials are
    /// summed in block order, so results do not depend on scheduling.
    fn for_draws<F>(&self, responses: &mut [f64], width: usize, per_draw: F) -> Vec<f64>
    where
        F: Fn(usize, &mut Scratch, &mut [f64]) -> f64 + Sync,
    {
        let (r, total) = self.for_draws_k(responses.len(), 1, width, |d, s, partial, r| {
            r[0] = per_draw(d, s, partial);
        });
        responses.copy_from_slice(&r);
        total
    }

    /// [`CpuEvaluator::for_draws`] for `k` responses a draw: `per_draw(d, scratch,
    /// partial, r)` writes draw d's k responses into `r`; returns them draw-major
    /// (`[d * k + j]`) and the summed partials. The blocks of draws are those of
    /// `for_draws`, so each of k slots is summed in the same order as alone.
    fn for_draws_k<F>(
        &self,
        num_draws: usize,
        k: usize,
        width: usize,
        per_draw: F,
    ) -> (Vec<f64>, Vec<f64>)
    where
        F: Fn(usize, &mut Scratch, &mut [f64], &mut [f64]) + Sync,
    {
        let mut responses = vec![0.0; num_draws * k];
        let block = self.block(num_draws);
        let partials: Vec<Vec<f64>> = responses
            .par_chunks_mut(block * k)
            .enumerate()
            .map(|(b, chunk)| {
                let mut scratch = Scratch::default();
                let mut partial = vec![0.0; width];
                for (i, r) in chunk.chunks_mut(k).enumerate() {
                    per_draw(b * block + i, &mut scratch, &mut partial, r);
                }
                partial
            })
            .collect();
        let mut total = vec![0.0; width];
        for p in partials {
            for (t, v) in total.iter_mut().zip(p) {
                *t += v;
            }
        }
        (responses, total)
    }

    /// The terms of draw `d`, cell `c`: cached, or computed into `scratch`.
    #[inline]
    fn terms<'s>(&'s self, d: usize, c: usize, scratch: &'s mut Scratch) -> CellTerms<'s> {
        match &self.terms {
            Some(t) => {
                let i = d * self.problem.num_cells() + c;
                let at = i * t.stride..i * t.stride + t.lens[i] as usize;
                let (q, m) = (&t.q[at.clone()], &t.m[at]);
                match &t.carry {
                    None => CellTerms {
                        q,
                        m,
                        cq: &[],
                        cm: &[],
                        ch: &[],
                        constant: 0.0,
                    },
                    Some(k) => {
                        let at = i * k.stride..i * k.stride + k.lens[i] as usize;
                        CellTerms {
                            q,
                            m,
                            cq: &k.q[at.clone()],
                            cm: &k.m[at.clone()],
                            ch: &k.h[at],
                            constant: k.constant[i],
                        }
                    }
                }
            }
            None => {
                terms_of(&self.problem, d, c, self.constant[c], scratch);
                CellTerms {
                    q: &scratch.tq,
                    m: &scratch.tm,
                    cq: &scratch.cq,
                    cm: &scratch.cm,
                    ch: &scratch.ch,
                    constant: scratch.constant,
                }
            }
        }
    }
}

/// Computes the (q, m) terms of draw `d`, cell `c` into `s.tq` and `s.tm`, padded
/// with (0, 0) to a multiple of [`terms::LANES`] for the vectorised kernels.
/// `constant`: whether cell c's unit pattern is the same in every period.
fn terms_of(p: &Problem, d: usize, c: usize, constant: bool, s: &mut Scratch) {
    unpadded_terms_of(p, d, c, constant, s);
    let len = s.tq.len().next_multiple_of(terms::LANES);
    s.tq.resize(len, 0.0);
    s.tm.resize(len, 0.0);
    // The shifted terms' padding evaluates g at 1 (finite for every curve), times 0.
    let len = s.cq.len().next_multiple_of(terms::LANES);
    s.cq.resize(len, 0.0);
    s.cm.resize(len, 0.0);
    s.ch.resize(len, 1.0);
}

fn unpadded_terms_of(p: &Problem, d: usize, c: usize, constant: bool, s: &mut Scratch) {
    let k = p.adstock.kernel_len();
    s.w.resize(k, 0.0);
    p.adstock.weights(&p.adstock_params_of(d, c), &mut s.w);
    s.tq.clear();
    s.tm.clear();
    s.cq.clear();
    s.cm.clear();
    s.ch.clear();
    s.constant = 0.0;
    // Carry-in: h_t for the first K − 1 periods (adstock first), or the constant.
    let mut carry = std::mem::take(&mut s.v);
    carry.clear();
    if p.history_of(c).is_some() {
        if p.adstock_first {
            p.carry_in(c, &s.w, &mut carry);
        } else {
            s.constant = p.carry_in_saturated(c, &s.w, &p.saturation_params_of(d, c));
        }
    }
    let h_at = |t: usize| carry.get(t).copied().unwrap_or(0.0);
    let pattern = p.pattern_of(c);
    let (n, l_max) = (p.num_periods, p.adstock.l_max);
    if p.adstock_first && constant {
        // A constant unit pattern p: q_t = p Σ_(l ≤ min(t, K−1)) w_l for t < N, the same
        // from t = K−1 on (one term for those N−K+1 periods), then the tail
        // q_t = p Σ_(t−N < l ≤ min(t, K−1)) w_l = p (S_(t+1−N) − S_(min(t, K−1)+1)) with
        // the suffix sums S_j = Σ_(l ≥ j) w_l (for N + 1 ≥ K; shorter windows sum their
        // weights directly): min(N, K) + L terms, O(K) work.
        let pv = pattern[0];
        if pv == 0.0 {
            // Only the carry-in, if any: g(h_t) a shifted term with q = 0.
            for &h in carry.iter().filter(|h| **h != 0.0) {
                s.cq.push(0.0);
                s.cm.push(1.0);
                s.ch.push(h);
            }
            s.v = carry;
            return;
        }
        // Written through local slices, not pushed: this runs once per draw and cell
        // and per evaluation when the terms are not kept.
        s.tq.resize(n.min(k) + l_max, 0.0);
        s.tm.resize(n.min(k) + l_max, 0.0);
        let (tq, tm, w) = (&mut s.tq[..], &mut s.tm[..], &s.w[..]);
        let mut len = 0;
        let mut pre = 0.0;
        // An index loop: the iterator form measured 30% slower evaluations (codegen).
        #[allow(clippy::needless_range_loop)]
        for t in 0..n.min(k) {
            pre += w[t];
            let h = h_at(t);
            if h != 0.0 {
                // t < K − 1: one period, shifted by its carry-in.
                s.cq.push(pv * pre);
                s.cm.push(1.0);
                s.ch.push(h);
            } else if pre != 0.0 {
                tq[len] = pv * pre;
                tm[len] = if t + 1 == k { (n - t) as f64 } else { 1.0 };
                len += 1;
            }
        }
        // S_j in s.a[j], j = 0..=K.
        s.a.clear();
        s.a.resize(k + 1, 0.0);
        let suffix = &mut s.a[..];
        let mut acc = 0.0;
        for j in (0..k).rev() {
            acc += w[j];
            suffix[j] = acc;
        }
        for t in n..n + l_max {
            let tail = if t + 1 - n >= k {
                0.0
            } else if t + 1 >= k {
                suffix[t + 1 - n]
            } else {
                // A window shorter than the carry-over (N + 1 < K): summed directly, not
                // as S_(t+1−N) − S_(t+1), which cancels where small weights sit beside
                // large ones (delayed adstock: 1e-16 next to 1) and a power law at 0
                // (root) magnifies what is left.
                w[t + 1 - n..=t].iter().sum()
            };
            let h = h_at(t);
            if h != 0.0 {
                s.cq.push(pv * tail);
                s.cm.push(1.0);
                s.ch.push(h);
            } else if tail != 0.0 {
                tq[len] = pv * tail;
                tm[len] = 1.0;
                len += 1;
            }
        }
        s.tq.truncate(len);
        s.tm.truncate(len);
    } else if p.adstock_first {
        s.a.resize(n + l_max, 0.0);
        convolve(&s.w, pattern, &mut s.a);
        for (t, &h) in carry.iter().enumerate().filter(|(_, h)| **h != 0.0) {
            s.cq.push(s.a[t]);
            s.cm.push(1.0);
            s.ch.push(h);
            s.a[t] = 0.0;
        }
        push_runs(&s.a, 1.0, &mut s.tq, &mut s.tm);
    } else {
        let total: f64 = s.w.iter().sum();
        push_runs(pattern, total, &mut s.tq, &mut s.tm);
    }
    s.v = carry;
}

/// One block's part of [`Evaluator::evaluate_banded`]: its sums (response-weighted,
/// then per region), its kept draws and their terms, and whether any did not fit.
type BlockBands = (Vec<f64>, Vec<usize>, Vec<f64>, bool);

/// Appends (value, multiplicity × run length) for each run of equal non-zero values.
fn push_runs(values: &[f64], multiplicity: f64, q: &mut Vec<f64>, m: &mut Vec<f64>) {
    let mut i = 0;
    while i < values.len() {
        let v = values[i];
        let mut j = i + 1;
        while j < values.len() && values[j] == v {
            j += 1;
        }
        if v != 0.0 {
            q.push(v);
            m.push(multiplicity * (j - i) as f64);
        }
        i = j;
    }
}

impl Evaluator for CpuEvaluator {
    fn num_draws(&self) -> usize {
        self.problem.num_draws()
    }

    fn num_cells(&self) -> usize {
        self.problem.num_cells()
    }

    fn num_periods(&self) -> usize {
        self.problem.num_periods
    }

    fn describe(&self) -> String {
        format!(
            "cpu (f64, {} threads, {})",
            self.threads,
            terms::simd_level()
        )
    }

    fn responses(&mut self, x: &[f64], out: &mut [f64]) -> Result<()> {
        let (d, n) = (self.num_draws(), self.num_cells());
        self.problem.check_allocation(x, n)?;
        check_len(out.len(), d, "responses")?;
        let p = &self.problem;
        self.for_draws(out, 0, |d, scratch, _| {
            (0..n)
                .map(|c| {
                    let [v, _, _] =
                        self.terms(d, c, scratch)
                            .sums(p, &p.saturation_params_of(d, c), x[c]);
                    p.target_scale[c] * v
                })
                .sum()
        });
        Ok(())
    }

    /// [`Evaluator::evaluate_many`] with one slot: the same loop, the same bits.
    fn evaluate(
        &mut self,
        x: &[f64],
        weights: DrawWeights<'_>,
        out: &mut Evaluation,
    ) -> Result<()> {
        self.evaluate_many(&[x], weights, std::slice::from_mut(out))
    }

    /// One pass over the draws: each (draw, cell)'s terms and parameters are taken
    /// once for all k allocations; each slot's sums are formed in the order they are
    /// with one slot, so `out[j]` has the same bits as `evaluate(xs[j])`.
    fn evaluate_many(
        &mut self,
        xs: &[&[f64]],
        weights: DrawWeights<'_>,
        out: &mut [Evaluation],
    ) -> Result<()> {
        let (nd, n, k) = (self.num_draws(), self.num_cells(), xs.len());
        check_many(&self.problem.cells, xs, out.len(), &weights, nd)?;
        if k == 0 {
            return Ok(());
        }
        let p = &self.problem;
        let (responses, sums) = self.for_draws_k(nd, k, 3 * n * k, |d, scratch, partial, r| {
            let u = weights.get(d, nd);
            r.fill(0.0);
            for c in 0..n {
                let terms = self.terms(d, c, scratch);
                let params = &p.saturation_params_of(d, c);
                let tau = p.target_scale[c];
                for (j, x) in xs.iter().enumerate() {
                    let [v, v1, v2] = terms.sums(p, params, x[c]);
                    let slot = &mut partial[3 * n * j..3 * n * (j + 1)];
                    r[j] += tau * v;
                    slot[c] += u * tau * v;
                    slot[n + c] += u * tau * v1;
                    slot[2 * n + c] += u * tau * v2;
                }
            }
        });
        for (j, o) in out.iter_mut().enumerate() {
            o.responses.clear();
            o.responses.extend((0..nd).map(|d| responses[d * k + j]));
            let slot = &sums[3 * n * j..3 * n * (j + 1)];
            o.contributions = slot[..n].to_vec();
            o.gradient = slot[n..2 * n].to_vec();
            o.curvature = slot[2 * n..].to_vec();
        }
        Ok(())
    }

    /// Each draw's cells computed into scratch, summed into R_d, then added to the
    /// response-weighted sums and to its region's sums, or kept; blocks of draws as in
    /// `evaluate`, summed (and their kept draws listed) in block order.
    fn evaluate_banded(
        &mut self,
        x: &[f64],
        shift: f64,
        bands: &[(f64, f64)],
        max_kept: usize,
        out: &mut BandedSums,
    ) -> Result<bool> {
        let (nd, n) = (self.num_draws(), self.num_cells());
        self.problem.check_allocation(x, n)?;
        let p = &self.problem;
        let width = 3 * n * (bands.len() + 2);
        let taken = AtomicUsize::new(0);
        out.responses.resize(nd, 0.0);
        let block = self.block(nd);
        let parts: Vec<BlockBands> = out
            .responses
            .par_chunks_mut(block)
            .enumerate()
            .map(|(b, responses)| {
                let mut scratch = Scratch::default();
                let mut partial = vec![0.0; width];
                let (mut kept, mut terms, mut overflow) = (vec![], vec![], false);
                let mut cells = Vec::with_capacity(3 * n);
                for (i, out_r) in responses.iter_mut().enumerate() {
                    let d = b * block + i;
                    cells.clear();
                    let mut r = 0.0;
                    for (c, &xc) in x.iter().enumerate() {
                        let [v, v1, v2] = self.terms(d, c, &mut scratch).sums(
                            p,
                            &p.saturation_params_of(d, c),
                            xc,
                        );
                        let tau = p.target_scale[c];
                        r += tau * v;
                        cells.extend([tau * v, tau * v1, tau * v2]);
                    }
                    *out_r = r;
                    // Its region's sums, or kept whole.
                    let region = match band_position(bands, r) {
                        Ok(region) => Some(3 * n * (region + 1)),
                        Err(_) if taken.fetch_add(1, Ordering::Relaxed) < max_kept => {
                            kept.push(d);
                            terms.extend_from_slice(&cells);
                            None
                        }
                        Err(_) => {
                            overflow = true;
                            None
                        }
                    };
                    let u = r - shift;
                    for (c, t) in cells.chunks_exact(3).enumerate() {
                        for k in 0..3 {
                            partial[k * n + c] += u * t[k];
                            if let Some(at) = region {
                                partial[at + k * n + c] += t[k];
                            }
                        }
                    }
                }
                (partial, kept, terms, overflow)
            })
            .collect();
        let mut total = vec![0.0; width];
        out.kept.clear();
        out.kept_terms.clear();
        out.overflow = false;
        for (partial, kept, terms, overflow) in parts {
            for (t, v) in total.iter_mut().zip(partial) {
                *t += v;
            }
            out.kept.extend(kept);
            out.kept_terms.extend(terms);
            out.overflow |= overflow;
        }
        let sums = |at: usize| Evaluation {
            responses: vec![],
            contributions: total[at..at + n].to_vec(),
            gradient: total[at + n..at + 2 * n].to_vec(),
            curvature: total[at + 2 * n..at + 3 * n].to_vec(),
        };
        out.linear = sums(0);
        out.regions = (0..=bands.len()).map(|j| sums(3 * n * (j + 1))).collect();
        Ok(true)
    }

    /// Blocks of draws as in `evaluate`, each accumulating its cells' moments by
    /// Welford's update; the blocks merged in order, so the result does not depend on
    /// scheduling.
    fn cell_moments(
        &mut self,
        x: &[f64],
        cell_weights: &[f64],
        out: &mut CellMoments,
    ) -> Result<()> {
        let (nd, n) = (self.num_draws(), self.num_cells());
        self.problem.check_allocation(x, n)?;
        check_len(cell_weights.len(), n, "cell weights")?;
        let p = &self.problem;
        out.responses.resize(nd, 0.0);
        out.weighted.resize(nd, 0.0);
        let block = self.block(nd);
        let sums: Vec<MomentSum> = out
            .responses
            .par_chunks_mut(block)
            .zip(out.weighted.par_chunks_mut(block))
            .enumerate()
            .map(|(b, (responses, weighted))| {
                let mut scratch = Scratch::default();
                let mut sum = MomentSum::new(n);
                for (i, (r, w)) in responses.iter_mut().zip(weighted.iter_mut()).enumerate() {
                    let d = b * block + i;
                    sum.count += 1.0;
                    let (mut total, mut weighted) = (0.0, 0.0);
                    for c in 0..n {
                        let [v, v1, _] = self.terms(d, c, &mut scratch).sums(
                            p,
                            &p.saturation_params_of(d, c),
                            x[c],
                        );
                        let tau = p.target_scale[c];
                        total += tau * v;
                        weighted += cell_weights[c] * tau * v;
                        sum.push(c, tau * v, tau * v1);
                    }
                    *r = total;
                    *w = weighted;
                }
                sum
            })
            .collect();
        let mut all = MomentSum::new(n);
        for s in &sums {
            all.merge_sum(s);
        }
        all.finish(out);
        Ok(())
    }

    fn evaluate_time_varying(
        &mut self,
        x: &[f64],
        weights: DrawWeights<'_>,
        out: &mut TimeVaryingEvaluation,
    ) -> Result<()> {
        let (nd, n, np) = (self.num_draws(), self.num_cells(), self.num_periods());
        self.problem.check_allocation(x, n * np)?;
        check_weights(&weights, nd)?;
        out.responses.resize(nd, 0.0);
        let p = &self.problem;
        let window = np + p.adstock.l_max;
        let mut sums = self.for_draws(&mut out.responses, n * np + n, |d, s, partial| {
            let u = weights.get(d, nd);
            let mut r = 0.0;
            for c in 0..n {
                let mut rc = 0.0;
                let params = &p.saturation_params_of(d, c);
                let tau = p.target_scale[c];
                let scale = p.input_scale_of(c);
                s.w.resize(p.adstock.kernel_len(), 0.0);
                p.adstock.weights(&p.adstock_params_of(d, c), &mut s.w);
                s.z.clear();
                s.z.extend(
                    x[c * np..(c + 1) * np]
                        .iter()
                        .zip(scale)
                        .map(|(x, k)| x * k),
                );
                let grad = &mut partial[c * np..(c + 1) * np];
                if p.adstock_first {
                    s.a.resize(window, 0.0);
                    convolve(&s.w, &s.z, &mut s.a);
                    // The carry-in of the spend before the window.
                    p.carry_in(c, &s.w, &mut s.v);
                    for (a, h) in s.a.iter_mut().zip(&s.v) {
                        *a += h;
                    }
                    s.v.clear();
                    for &a in &s.a {
                        let [g, g1, _] = p.saturation.derivatives(a, params);
                        rc += tau * g;
                        s.v.push(g1);
                    }
                    s.y.resize(np, 0.0);
                    convolve_adjoint(&s.w, &s.v, &mut s.y);
                    for t in 0..np {
                        grad[t] += u * tau * scale[t] * s.y[t];
                    }
                } else {
                    let total: f64 = s.w.iter().sum();
                    rc += tau * p.carry_in_saturated(c, &s.w, params);
                    for t in 0..np {
                        let [g, g1, _] = p.saturation.derivatives(s.z[t], params);
                        rc += tau * total * g;
                        grad[t] += u * tau * total * g1 * scale[t];
                    }
                }
                r += rc;
                partial[n * np + c] += u * rc;
            }
            r
        });
        out.contributions = sums.split_off(n * np);
        out.gradient = sums;
        Ok(())
    }
}
