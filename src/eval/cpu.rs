//! The f64 reference evaluator, threaded over draws with rayon.

use super::terms;
use super::{DrawWeights, Evaluation, Evaluator, TimeVaryingEvaluation, check_len, check_weights};
use crate::adstock::{convolve, convolve_adjoint};
use crate::error::Result;
use crate::problem::Problem;
use rayon::prelude::*;

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
/// `m[i * stride]`.
#[derive(Clone, Debug)]
struct Terms {
    stride: usize,
    lens: Vec<u32>,
    q: Vec<f64>,
    m: Vec<f64>,
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
        let (d, n) = (problem.num_draws(), problem.num_cells());
        let constant: Vec<bool> = (0..n)
            .map(|c| {
                let p = problem.pattern_of(c);
                p.iter().all(|v| *v == p[0])
            })
            .collect();
        let per_pair = if constant.iter().all(|c| *c) {
            problem.num_periods.min(problem.adstock.kernel_len()) + problem.adstock.l_max
        } else {
            problem.num_periods + problem.adstock.l_max
        };
        let per_pair = per_pair.next_multiple_of(terms::LANES);
        let bytes = d * n * per_pair * 2 * std::mem::size_of::<f64>();
        let mut ev = CpuEvaluator {
            problem: problem.clone(),
            terms: None,
            constant,
            threads: rayon::current_num_threads(),
        };
        if bytes <= TERM_CACHE_BYTES {
            ev.terms = Some(ev.build_terms(per_pair));
        }
        Ok(ev)
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
        q.par_chunks_mut(n * stride)
            .zip(m.par_chunks_mut(n * stride))
            .zip(lens.par_chunks_mut(n))
            .enumerate()
            .for_each_init(Scratch::default, |s, (draw, ((q, m), lens))| {
                for (c, len) in lens.iter_mut().enumerate() {
                    terms_of(&self.problem, draw, c, self.constant[c], s);
                    let at = c * stride..c * stride + s.tq.len();
                    q[at.clone()].copy_from_slice(&s.tq);
                    m[at].copy_from_slice(&s.tm);
                    *len = s.tq.len() as u32;
                }
            });
        Terms { stride, lens, q, m }
    }

    /// Runs `per_draw(d, scratch, partial)` for every draw over rayon, each block of
    /// draws accumulating into its own `partial` of `width` values; the partials are
    /// summed in block order, so results do not depend on scheduling.
    fn for_draws<F>(&self, responses: &mut [f64], width: usize, per_draw: F) -> Vec<f64>
    where
        F: Fn(usize, &mut Scratch, &mut [f64]) -> f64 + Sync,
    {
        let d = responses.len();
        let block = d.div_ceil(self.threads * 4).max(1);
        let partials: Vec<Vec<f64>> = responses
            .par_chunks_mut(block)
            .enumerate()
            .map(|(b, chunk)| {
                let mut scratch = Scratch::default();
                let mut partial = vec![0.0; width];
                for (i, r) in chunk.iter_mut().enumerate() {
                    *r = per_draw(b * block + i, &mut scratch, &mut partial);
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
        total
    }

    /// The (q, m) terms of draw `d`, cell `c`: cached, or computed into `scratch`.
    #[inline]
    fn terms<'s>(&'s self, d: usize, c: usize, scratch: &'s mut Scratch) -> (&'s [f64], &'s [f64]) {
        match &self.terms {
            Some(t) => {
                let i = d * self.problem.num_cells() + c;
                let at = i * t.stride..i * t.stride + t.lens[i] as usize;
                (&t.q[at.clone()], &t.m[at])
            }
            None => {
                terms_of(&self.problem, d, c, self.constant[c], scratch);
                (&scratch.tq, &scratch.tm)
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
}

fn unpadded_terms_of(p: &Problem, d: usize, c: usize, constant: bool, s: &mut Scratch) {
    let k = p.adstock.kernel_len();
    s.w.resize(k, 0.0);
    p.adstock.weights(p.adstock_params_of(d, c), &mut s.w);
    s.tq.clear();
    s.tm.clear();
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
            if pre != 0.0 {
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
            if tail != 0.0 {
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
        push_runs(&s.a, 1.0, &mut s.tq, &mut s.tm);
    } else {
        let total: f64 = s.w.iter().sum();
        push_runs(pattern, total, &mut s.tq, &mut s.tm);
    }
}

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

/// The carry-in's share of cell c's [r, r′, r″] (before τ_c) for draw d at spend x.
///
/// Adstock first: the spend before the window adds h_t (see [`Problem::carry_in`])
/// to the adstocked input of the first K − 1 periods, a_t = x q_t + h_t; the usual
/// terms hold g(x q_t), so this adds, over those periods,
/// [g(a_t) − g(x q_t), q_t (g′(a_t) − g′(x q_t)), q_t² (g″(a_t) − g″(x q_t))]
/// (a derivative that is not finite at x q_t, a power law at 0, is left to the usual
/// terms). Saturation first: the constant [`Problem::carry_in_saturated`].
fn carry_in_terms(p: &Problem, d: usize, c: usize, x: f64, s: &mut Scratch) -> [f64; 3] {
    let k = p.adstock.kernel_len();
    s.w.resize(k, 0.0);
    p.adstock.weights(p.adstock_params_of(d, c), &mut s.w);
    let params = p.saturation_params_of(d, c);
    if !p.adstock_first {
        return [p.carry_in_saturated(c, &s.w, params), 0.0, 0.0];
    }
    p.carry_in(c, &s.w, &mut s.v);
    let pattern = p.pattern_of(c);
    let n = p.num_periods;
    let mut out = [0.0; 3];
    for (t, &h) in s.v.iter().enumerate() {
        if h == 0.0 {
            continue;
        }
        // q_t = Σ_l w_l p_(t−l) over the periods t − l of the window.
        let q: f64 = (t.saturating_sub(n - 1)..=t.min(k - 1))
            .map(|l| s.w[l] * pattern[t - l])
            .sum();
        let with = p.saturation.derivatives(x * q + h, params);
        let without = p.saturation.derivatives(x * q, params);
        out[0] += with[0] - without[0];
        if without[1].is_finite() {
            out[1] += q * (with[1] - without[1]);
        }
        if without[2].is_finite() {
            out[2] += q * q * (with[2] - without[2]);
        }
    }
    out
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
        let carry = !p.history.is_empty();
        self.for_draws(out, 0, |d, scratch, _| {
            (0..n)
                .map(|c| {
                    let (q, m) = self.terms(d, c, scratch);
                    let [mut v, _, _] =
                        terms::sums(p.saturation, p.saturation_params_of(d, c), x[c], q, m);
                    if carry {
                        v += carry_in_terms(p, d, c, x[c], scratch)[0];
                    }
                    p.target_scale[c] * v
                })
                .sum()
        });
        Ok(())
    }

    fn evaluate(
        &mut self,
        x: &[f64],
        weights: DrawWeights<'_>,
        out: &mut Evaluation,
    ) -> Result<()> {
        let (nd, n) = (self.num_draws(), self.num_cells());
        self.problem.check_allocation(x, n)?;
        check_weights(&weights, nd)?;
        out.responses.resize(nd, 0.0);
        let p = &self.problem;
        let carry = !p.history.is_empty();
        let sums = self.for_draws(&mut out.responses, 3 * n, |d, scratch, partial| {
            let u = weights.get(d, nd);
            let mut r = 0.0;
            for c in 0..n {
                let (q, m) = self.terms(d, c, scratch);
                let [mut v, mut v1, mut v2] =
                    terms::sums(p.saturation, p.saturation_params_of(d, c), x[c], q, m);
                if carry {
                    let [h, h1, h2] = carry_in_terms(p, d, c, x[c], scratch);
                    (v, v1, v2) = (v + h, v1 + h1, v2 + h2);
                }
                let tau = p.target_scale[c];
                r += tau * v;
                partial[c] += u * tau * v;
                partial[n + c] += u * tau * v1;
                partial[2 * n + c] += u * tau * v2;
            }
            r
        });
        out.contributions = sums[..n].to_vec();
        out.gradient = sums[n..2 * n].to_vec();
        out.curvature = sums[2 * n..].to_vec();
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
        out.gradient = self.for_draws(&mut out.responses, n * np, |d, s, partial| {
            let u = weights.get(d, nd);
            let mut r = 0.0;
            for c in 0..n {
                let params = p.saturation_params_of(d, c);
                let tau = p.target_scale[c];
                let scale = p.input_scale_of(c);
                s.w.resize(p.adstock.kernel_len(), 0.0);
                p.adstock.weights(p.adstock_params_of(d, c), &mut s.w);
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
                        r += tau * g;
                        s.v.push(g1);
                    }
                    s.y.resize(np, 0.0);
                    convolve_adjoint(&s.w, &s.v, &mut s.y);
                    for t in 0..np {
                        grad[t] += u * tau * scale[t] * s.y[t];
                    }
                } else {
                    let total: f64 = s.w.iter().sum();
                    r += tau * p.carry_in_saturated(c, &s.w, params);
                    for t in 0..np {
                        let [g, g1, _] = p.saturation.derivatives(s.z[t], params);
                        r += tau * total * g;
                        grad[t] += u * tau * total * g1 * scale[t];
                    }
                }
            }
            r
        });
        Ok(())
    }
}
