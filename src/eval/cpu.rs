//! The f64 reference evaluator, threaded over draws with rayon.

use super::{DrawWeights, Evaluation, Evaluator, TimeVaryingEvaluation, check_len, check_weights};
use crate::adstock::{convolve, convolve_adjoint};
use crate::error::Result;
use crate::problem::Problem;
use crate::saturation::Saturation;
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
    problem: Problem,
    /// Cached terms, when they fit in [`TERM_CACHE_BYTES`].
    terms: Option<Terms>,
    threads: usize,
}

/// (q, m) pairs for every (draw, cell): `lens[i]` of them from `values[i * stride]`.
#[derive(Clone, Debug)]
struct Terms {
    stride: usize,
    lens: Vec<u32>,
    values: Vec<(f64, f64)>,
}

/// Per-thread scratch space.
#[derive(Default)]
struct Scratch {
    w: Vec<f64>,
    z: Vec<f64>,
    a: Vec<f64>,
    v: Vec<f64>,
    y: Vec<f64>,
    terms: Vec<(f64, f64)>,
}

impl CpuEvaluator {
    /// An evaluator for `problem` (copied; the posterior is not modified).
    pub fn new(problem: &Problem) -> Result<Self> {
        let (d, n) = (problem.num_draws(), problem.num_cells());
        let constant = (0..n).all(|c| {
            let p = problem.pattern_of(c);
            p.iter().all(|v| *v == p[0])
        });
        let per_pair = if constant {
            problem.num_periods.min(problem.adstock.kernel_len()) + problem.adstock.l_max
        } else {
            problem.num_periods + problem.adstock.l_max
        };
        let bytes = d * n * per_pair * std::mem::size_of::<(f64, f64)>();
        let mut ev = CpuEvaluator {
            problem: problem.clone(),
            terms: None,
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
        let mut values = vec![(0.0, 0.0); d * n * stride];
        let mut lens = vec![0u32; d * n];
        values
            .par_chunks_mut(n * stride)
            .zip(lens.par_chunks_mut(n))
            .enumerate()
            .for_each_init(Scratch::default, |s, (draw, (vals, lens))| {
                for c in 0..n {
                    terms_of(&self.problem, draw, c, s);
                    vals[c * stride..c * stride + s.terms.len()].copy_from_slice(&s.terms);
                    lens[c] = s.terms.len() as u32;
                }
            });
        Terms {
            stride,
            lens,
            values,
        }
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
    fn terms<'s>(&'s self, d: usize, c: usize, scratch: &'s mut Scratch) -> &'s [(f64, f64)] {
        match &self.terms {
            Some(t) => {
                let i = d * self.problem.num_cells() + c;
                &t.values[i * t.stride..i * t.stride + t.lens[i] as usize]
            }
            None => {
                terms_of(&self.problem, d, c, scratch);
                &scratch.terms
            }
        }
    }
}

/// Computes the (q, m) terms of draw `d`, cell `c` into `s.terms`.
fn terms_of(p: &Problem, d: usize, c: usize, s: &mut Scratch) {
    let k = p.adstock.kernel_len();
    s.w.resize(k, 0.0);
    p.adstock.weights(p.adstock_params_of(d, c), &mut s.w);
    s.terms.clear();
    let pattern = p.pattern_of(c);
    let (n, l_max) = (p.num_periods, p.adstock.l_max);
    if p.adstock_first && pattern.iter().all(|v| *v == pattern[0]) {
        // A constant unit pattern p: q_t = p Σ_(l ≤ min(t, K−1)) w_l for t < N, the same
        // from t = K−1 on (one term for those N−K+1 periods), then the tail
        // q_t = p Σ_(t−N < l < K) w_l: min(N, K) + L terms, O(K·L) work.
        let pv = pattern[0];
        let mut pre = 0.0;
        for t in 0..n.min(k) {
            pre += s.w[t];
            let m = if t + 1 == k { (n - t) as f64 } else { 1.0 };
            if pre != 0.0 && pv != 0.0 {
                s.terms.push((pv * pre, m));
            }
        }
        for t in n..n + l_max {
            let tail: f64 = s.w[(t + 1 - n).min(k)..(t + 1).min(k)].iter().sum();
            if tail != 0.0 && pv != 0.0 {
                s.terms.push((pv * tail, 1.0));
            }
        }
    } else if p.adstock_first {
        s.a.resize(n + l_max, 0.0);
        convolve(&s.w, pattern, &mut s.a);
        push_runs(&s.a, 1.0, &mut s.terms);
    } else {
        let total: f64 = s.w.iter().sum();
        push_runs(pattern, total, &mut s.terms);
    }
}

/// Appends (value, multiplicity × run length) for each run of equal non-zero values.
fn push_runs(values: &[f64], multiplicity: f64, out: &mut Vec<(f64, f64)>) {
    let mut i = 0;
    while i < values.len() {
        let v = values[i];
        let mut j = i + 1;
        while j < values.len() && values[j] == v {
            j += 1;
        }
        if v != 0.0 {
            out.push((v, multiplicity * (j - i) as f64));
        }
        i = j;
    }
}

/// [Σ m g(xq), Σ m q g'(xq), Σ m q² g''(xq)] over the terms.
#[inline]
fn cell_sums(sat: Saturation, params: &[f64], x: f64, terms: &[(f64, f64)]) -> [f64; 3] {
    #[inline(always)]
    fn accumulate(terms: &[(f64, f64)], f: impl Fn(f64) -> [f64; 3]) -> [f64; 3] {
        let mut s = [0.0; 3];
        for &(q, m) in terms {
            let [g, g1, g2] = f(q);
            s[0] += m * g;
            s[1] += m * g1;
            s[2] += m * g2;
        }
        s
    }
    match sat {
        Saturation::Logistic => {
            let (lam, beta) = (params[0], params[1]);
            accumulate(terms, |q| {
                Saturation::Logistic.term_derivatives(x, q, &[lam, beta])
            })
        }
        _ => accumulate(terms, |q| sat.term_derivatives(x, q, params)),
    }
}

/// Σ m g(xq) over the terms.
#[inline]
fn cell_value(sat: Saturation, params: &[f64], x: f64, terms: &[(f64, f64)]) -> f64 {
    terms
        .iter()
        .map(|&(q, m)| m * sat.value(x * q, params))
        .sum()
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
        format!("cpu (f64, {} threads)", self.threads)
    }

    fn responses(&mut self, x: &[f64], out: &mut [f64]) -> Result<()> {
        let (d, n) = (self.num_draws(), self.num_cells());
        self.problem.check_allocation(x, n)?;
        check_len(out.len(), d, "responses")?;
        let p = &self.problem;
        self.for_draws(out, 0, |d, scratch, _| {
            (0..n)
                .map(|c| {
                    let terms = self.terms(d, c, scratch);
                    p.target_scale[c]
                        * cell_value(p.saturation, p.saturation_params_of(d, c), x[c], terms)
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
        let sums = self.for_draws(&mut out.responses, 3 * n, |d, scratch, partial| {
            let u = weights.get(d, nd);
            let mut r = 0.0;
            for c in 0..n {
                let terms = self.terms(d, c, scratch);
                let [v, v1, v2] =
                    cell_sums(p.saturation, p.saturation_params_of(d, c), x[c], terms);
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
