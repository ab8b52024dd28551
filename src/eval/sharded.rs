//! One evaluation spread over several evaluators, each holding a contiguous range of
//! the draws (a shard: on its own GPU, or its own logical device, or the CPU). Every
//! shard returns its draws' responses and its partial sums of the per-cell
//! reductions; the sums are added on the host, where the solver stays. The shards run
//! at once, one thread each.
//!
//! With u_d the draw weights (1/D for uniform weights, over all D draws):
//! Σ_d u_d r_dc = Σ_shards Σ_(d ∈ shard) u_d r_dc, and likewise for r' and r''. A
//! shard is handed the weights of its own draws, so that each partial sum is exactly
//! the restriction of the whole; the result differs from one evaluator's only by the
//! order of the additions. The cells' moments ([`Evaluator::cell_moments`]) are merged
//! shard by shard as disjoint sets of draws: means weighted by the draws, centred
//! sums with Chan, Golub and LeVeque's correction.
//!
//! How far one device goes, and what then: see the README ("Bigger than one GPU").

use super::{
    BandedSums, CellMoments, DrawWeights, Evaluation, Evaluator, MomentSum, TimeVaryingEvaluation,
    check_len, check_weights,
};
use crate::error::{Error, Result};

/// An evaluator made of shards over consecutive draw ranges.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 100 }, 1);
/// let problem = Problem::new(&model, &scenario)?;
/// let shards: Vec<Box<dyn Evaluator + Send>> = vec![
///     Box::new(CpuEvaluator::new(&problem.draws(0..40)?)?),
///     Box::new(CpuEvaluator::new(&problem.draws(40..100)?)?),
/// ];
/// let mut sharded = ShardedEvaluator::new(shards)?;
/// let x = problem.uniform_allocation();
/// let (mut one, mut two) = (Evaluation::new(100, 6), Evaluation::new(100, 6));
/// CpuEvaluator::new(&problem)?.evaluate(&x, DrawWeights::Uniform, &mut one)?;
/// sharded.evaluate(&x, DrawWeights::Uniform, &mut two)?;
/// assert_eq!(one.responses, two.responses);
/// assert!((one.gradient[0] - two.gradient[0]).abs() <= 1e-12 * one.gradient[0].abs());
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub struct ShardedEvaluator {
    shards: Vec<Shard>,
    num_draws: usize,
    /// 1/D per draw, for uniform weights.
    uniform: Vec<f64>,
}

struct Shard {
    evaluator: Box<dyn Evaluator + Send>,
    /// The shard's first draw among all.
    start: usize,
    evaluation: Evaluation,
    /// The shard's evaluations of [`Evaluator::evaluate_many`].
    many: Vec<Evaluation>,
    time_varying: TimeVaryingEvaluation,
    /// The shard's [`Evaluator::cell_moments`].
    moments: CellMoments,
    /// The shard's [`Evaluator::evaluate_banded`]: its sums, and whether it gave
    /// them.
    banded: (BandedSums, bool),
}

impl ShardedEvaluator {
    /// Shards in draw order: the first holds draws 0..D₀, the next D₀..D₀+D₁, …; all
    /// over the same cells and periods.
    pub fn new(evaluators: Vec<Box<dyn Evaluator + Send>>) -> Result<Self> {
        let Some(first) = evaluators.first() else {
            return Err(Error::invalid(
                "sharded evaluator",
                "shards",
                0,
                "at least one",
            ));
        };
        let (cells, periods) = (first.num_cells(), first.num_periods());
        let mut shards = Vec::with_capacity(evaluators.len());
        let mut start = 0;
        for (i, evaluator) in evaluators.into_iter().enumerate() {
            if evaluator.num_cells() != cells || evaluator.num_periods() != periods {
                return Err(Error::invalid(
                    "sharded evaluator",
                    format!("shards[{i}]"),
                    format!(
                        "{} cells × {} periods",
                        evaluator.num_cells(),
                        evaluator.num_periods()
                    ),
                    format!("{cells} cells × {periods} periods, as shards[0]"),
                ));
            }
            let d = evaluator.num_draws();
            shards.push(Shard {
                evaluator,
                start,
                evaluation: Evaluation::new(d, cells),
                many: vec![],
                time_varying: TimeVaryingEvaluation::new(d, cells, periods),
                moments: CellMoments::default(),
                banded: Default::default(),
            });
            start += d;
        }
        Ok(ShardedEvaluator {
            shards,
            num_draws: start,
            uniform: vec![1.0 / start as f64; start],
        })
    }

    /// GPU evaluators over `adapters` (indices of [`crate::GpuContext::adapters`];
    /// the same index twice opens two logical devices on one adapter), the draws
    /// split into as many near-equal consecutive ranges.
    pub fn gpu(
        problem: &crate::Problem,
        adapters: &[usize],
        options: &crate::GpuOptions,
    ) -> Result<Self> {
        let k = adapters.len().max(1);
        let d = problem.num_draws();
        if d < k {
            return Err(Error::invalid(
                "sharded evaluator",
                "adapters",
                format!("{adapters:?}"),
                format!("at most as many devices as draws ({d})"),
            ));
        }
        let mut shards: Vec<Box<dyn Evaluator + Send>> = Vec::with_capacity(k);
        for (i, &adapter) in adapters.iter().enumerate() {
            let range = (i * d / k)..((i + 1) * d / k);
            let options = crate::GpuOptions {
                adapter: Some(adapter),
                ..options.clone()
            };
            shards.push(Box::new(crate::GpuEvaluator::new(
                &problem.draws(range)?,
                &options,
            )?));
        }
        Self::new(shards)
    }

    /// The number of shards.
    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }

    /// Runs `f` on every shard at once (one thread each), with the weights of its
    /// draws; the first error in shard order.
    fn each(
        &mut self,
        weights: DrawWeights<'_>,
        f: impl Fn(&mut Shard, DrawWeights<'_>) -> Result<()> + Sync,
    ) -> Result<()> {
        let all: &[f64] = match weights {
            DrawWeights::Uniform => &self.uniform,
            DrawWeights::PerDraw(u) => u,
        };
        let f = &f;
        let results: Vec<Result<()>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .shards
                .iter_mut()
                .map(|shard| {
                    let d = shard.evaluator.num_draws();
                    let u = &all[shard.start..shard.start + d];
                    scope.spawn(move || f(shard, DrawWeights::PerDraw(u)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.into_iter().collect()
    }
}

impl Evaluator for ShardedEvaluator {
    fn num_draws(&self) -> usize {
        self.num_draws
    }

    fn num_cells(&self) -> usize {
        self.shards[0].evaluator.num_cells()
    }

    fn num_periods(&self) -> usize {
        self.shards[0].evaluator.num_periods()
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .shards
            .iter()
            .map(|s| {
                format!(
                    "{} draws on {}",
                    s.evaluator.num_draws(),
                    s.evaluator.describe()
                )
            })
            .collect();
        format!("sharded ({})", parts.join("; "))
    }

    fn precision(&self) -> f64 {
        self.shards
            .iter()
            .map(|s| s.evaluator.precision())
            .fold(0.0, f64::max)
    }

    fn responses(&mut self, x: &[f64], out: &mut [f64]) -> Result<()> {
        check_len(out.len(), self.num_draws, "responses")?;
        self.each(DrawWeights::Uniform, |shard, _| {
            let mut r = std::mem::take(&mut shard.evaluation.responses);
            let done = shard.evaluator.responses(x, &mut r);
            shard.evaluation.responses = r;
            done
        })?;
        for s in &self.shards {
            let d = s.evaluation.responses.len();
            out[s.start..s.start + d].copy_from_slice(&s.evaluation.responses);
        }
        Ok(())
    }

    fn evaluate(
        &mut self,
        x: &[f64],
        weights: DrawWeights<'_>,
        out: &mut Evaluation,
    ) -> Result<()> {
        check_weights(&weights, self.num_draws)?;
        self.each(weights, |shard, u| {
            let mut e = std::mem::take(&mut shard.evaluation);
            let done = shard.evaluator.evaluate(x, u, &mut e);
            shard.evaluation = e;
            done
        })?;
        let parts: Vec<(usize, &Evaluation)> = self
            .shards
            .iter()
            .map(|s| (s.start, &s.evaluation))
            .collect();
        combine(out, &parts);
        Ok(())
    }

    /// Each shard evaluates the k allocations in one call of its own
    /// `evaluate_many`; slot by slot, the shards' sums are added as in `evaluate`.
    fn evaluate_many(
        &mut self,
        xs: &[&[f64]],
        weights: DrawWeights<'_>,
        out: &mut [Evaluation],
    ) -> Result<()> {
        check_len(out.len(), xs.len(), "evaluations")?;
        check_weights(&weights, self.num_draws)?;
        let k = xs.len();
        self.each(weights, |shard, u| {
            let mut many = std::mem::take(&mut shard.many);
            many.resize_with(k, Evaluation::default);
            let done = shard.evaluator.evaluate_many(xs, u, &mut many);
            shard.many = many;
            done
        })?;
        for (j, o) in out.iter_mut().enumerate() {
            let parts: Vec<(usize, &Evaluation)> =
                self.shards.iter().map(|s| (s.start, &s.many[j])).collect();
            combine(o, &parts);
        }
        Ok(())
    }

    /// Each shard's banded sums (the shards at once): the responses concatenated, the
    /// sums added in shard order, the kept draws listed in shard order, where every
    /// shard does it in one pass (else false, as the shards that cannot say).
    fn evaluate_banded(
        &mut self,
        x: &[f64],
        shift: f64,
        bands: &[(f64, f64)],
        max_kept: usize,
        out: &mut BandedSums,
    ) -> Result<bool> {
        self.each(DrawWeights::Uniform, |shard, _| {
            let mut sums = std::mem::take(&mut shard.banded.0);
            let done = shard
                .evaluator
                .evaluate_banded(x, shift, bands, max_kept, &mut sums);
            shard.banded = (sums, *done.as_ref().unwrap_or(&false));
            done.map(|_| ())
        })?;
        if !self.shards.iter().all(|s| s.banded.1) {
            return Ok(false);
        }
        out.responses.resize(self.num_draws, 0.0);
        out.kept.clear();
        out.kept_terms.clear();
        out.overflow = false;
        for s in &self.shards {
            let b = &s.banded.0;
            out.responses[s.start..s.start + b.responses.len()].copy_from_slice(&b.responses);
            out.kept.extend(b.kept.iter().map(|d| s.start + d));
            out.kept_terms.extend_from_slice(&b.kept_terms);
            out.overflow |= b.overflow;
        }
        out.overflow |= out.kept.len() > max_kept;
        let linears: Vec<(usize, &Evaluation)> = self
            .shards
            .iter()
            .map(|s| (0, &s.banded.0.linear))
            .collect();
        combine(&mut out.linear, &linears);
        out.regions
            .resize_with(bands.len() + 1, Evaluation::default);
        for (j, region) in out.regions.iter_mut().enumerate() {
            let parts: Vec<(usize, &Evaluation)> = self
                .shards
                .iter()
                .map(|s| (0, &s.banded.0.regions[j]))
                .collect();
            combine(region, &parts);
        }
        Ok(true)
    }

    fn cell_moments(
        &mut self,
        x: &[f64],
        cell_weights: &[f64],
        out: &mut CellMoments,
    ) -> Result<()> {
        self.each(DrawWeights::Uniform, |shard, _| {
            let mut m = std::mem::take(&mut shard.moments);
            let done = shard.evaluator.cell_moments(x, cell_weights, &mut m);
            shard.moments = m;
            done
        })?;
        out.responses.resize(self.num_draws, 0.0);
        out.weighted.resize(self.num_draws, 0.0);
        let mut sum = MomentSum::new(self.num_cells());
        for s in &self.shards {
            let m = &s.moments;
            let d = m.responses.len();
            out.responses[s.start..s.start + d].copy_from_slice(&m.responses);
            out.weighted[s.start..s.start + d].copy_from_slice(&m.weighted);
            sum.merge(d as f64, &m.mean, &m.mean_slope, &m.squares, &m.cross);
        }
        sum.finish(out);
        Ok(())
    }

    fn evaluate_time_varying(
        &mut self,
        x: &[f64],
        weights: DrawWeights<'_>,
        out: &mut TimeVaryingEvaluation,
    ) -> Result<()> {
        check_weights(&weights, self.num_draws)?;
        out.responses.resize(self.num_draws, 0.0);
        out.gradient
            .resize(self.num_cells() * self.num_periods(), 0.0);
        out.contributions.resize(self.num_cells(), 0.0);
        self.each(weights, |shard, u| {
            let mut e = std::mem::take(&mut shard.time_varying);
            let done = shard.evaluator.evaluate_time_varying(x, u, &mut e);
            shard.time_varying = e;
            done
        })?;
        out.gradient.iter_mut().for_each(|x| *x = 0.0);
        out.contributions.iter_mut().for_each(|x| *x = 0.0);
        for s in &self.shards {
            let e = &s.time_varying;
            out.responses[s.start..s.start + e.responses.len()].copy_from_slice(&e.responses);
            for (sum, part) in [
                (&mut out.gradient, &e.gradient),
                (&mut out.contributions, &e.contributions),
            ] {
                sum.iter_mut().zip(part).for_each(|(a, b)| *a += b);
            }
        }
        Ok(())
    }
}

/// `out` from the shards' evaluations (each with its first draw): the responses
/// concatenated, the per-cell sums added in shard order.
fn combine(out: &mut Evaluation, parts: &[(usize, &Evaluation)]) {
    let num_draws = parts.iter().map(|(_, e)| e.responses.len()).sum();
    let n = parts.first().map_or(0, |(_, e)| e.contributions.len());
    out.responses.resize(num_draws, 0.0);
    for v in [
        &mut out.contributions,
        &mut out.gradient,
        &mut out.curvature,
    ] {
        v.clear();
        v.resize(n, 0.0);
    }
    for (start, e) in parts {
        out.responses[*start..start + e.responses.len()].copy_from_slice(&e.responses);
        for (sum, part) in [
            (&mut out.contributions, &e.contributions),
            (&mut out.gradient, &e.gradient),
            (&mut out.curvature, &e.curvature),
        ] {
            sum.iter_mut().zip(part).for_each(|(a, b)| *a += b);
        }
    }
}
