//! Evaluators: every posterior draw's response to an allocation, with the gradient
//! and curvature reductions the solver needs, in one call for all draws.
//!
//! For a per-period allocation x over the optimized cells the response of draw d is
//! separable (see [`crate::problem`] for the unit pattern p_tc):
//! R_d(x) = Σ_c r_dc(x_c), with, when adstock comes first,
//! - r_dc = τ_c Σ_(t<N+L) g(x_c q_tcd),
//! - r'_dc = τ_c Σ_t g'(x_c q_tcd) q_tcd,
//! - r''_dc = τ_c Σ_t g''(x_c q_tcd) q_tcd²,
//!
//! where q_tcd = Σ_l w_l(θ_dc) p_(t−l)c is the adstocked unit pattern. When saturation
//! comes first, adstock redistributes g(z) over time without losing any of it inside
//! the N+L window, so r_dc = τ_c W_dc Σ_(t<N) g(x_c p_tc) with W_dc = Σ_l w_l
//! (1 when normalised). The Hessian of every R_d is diagonal.
//!
//! An evaluator returns R_d for every draw and, for draw weights u_d (the utility's
//! ∂U/∂R_d), the reductions Σ_d u_d r_dc, Σ_d u_d r'_dc and Σ_d u_d r''_dc per cell;
//! and, for measures of the cells' own spread (the diversification ratio), each cell's
//! centred moments over the draws with a cell-weighted response P_d = Σ_c a_c r_dc
//! ([`Evaluator::cell_moments`]).

mod cpu;
mod gpu;
mod sharded;
mod terms;

pub use cpu::CpuEvaluator;
pub use gpu::{
    GpuContext, GpuEvaluator, GpuOptions, REDUCE_WGSL, RESPONSE_WGSL, SUMS_SUBGROUP_WGSL,
    SUMS_TREE_WGSL, WORKGROUP_SIZES,
};
pub use sharded::ShardedEvaluator;

use crate::error::Result;

/// Which evaluator to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// The f64 CPU evaluator.
    Cpu,
    /// The GPU evaluator.
    Gpu,
    /// The GPU when one is available, else the CPU.
    #[default]
    Auto,
}

impl Backend {
    /// The backend for its CLI name: `cpu`, `gpu`, `auto`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "cpu" => Some(Backend::Cpu),
            "gpu" => Some(Backend::Gpu),
            "auto" => Some(Backend::Auto),
            _ => None,
        }
    }

    /// An evaluator for `problem` on this backend. `Gpu` fails with an
    /// [`crate::Error::Device`] when no adapter can run it; `Auto` takes a hardware GPU
    /// when there is one and otherwise the CPU (a software adapter such as lavapipe is
    /// slower than the CPU evaluator), saying why in `warning` when a GPU was expected
    /// but failed.
    pub fn evaluator(&self, problem: &crate::Problem, options: &GpuOptions) -> Result<Selected> {
        self.select(problem, options, || CpuEvaluator::new(problem))
    }

    /// [`Backend::evaluator`] for a problem shared with the caller: the CPU evaluator
    /// holds it without copying its parameters ([`CpuEvaluator::shared`]).
    pub fn shared_evaluator(
        &self,
        problem: &std::sync::Arc<crate::Problem>,
        options: &GpuOptions,
    ) -> Result<Selected> {
        self.select(problem, options, || CpuEvaluator::shared(problem.clone()))
    }

    fn select(
        &self,
        problem: &crate::Problem,
        options: &GpuOptions,
        make_cpu: impl Fn() -> Result<CpuEvaluator>,
    ) -> Result<Selected> {
        let cpu = |warning| -> Result<Selected> {
            Ok(Selected {
                evaluator: Box::new(make_cpu()?),
                backend: Backend::Cpu,
                warning,
            })
        };
        if options.adapters.len() > 1 && *self != Backend::Cpu {
            let sharded = ShardedEvaluator::gpu(problem, &options.adapters, options);
            return match (sharded, self) {
                (Ok(s), _) => Ok(Selected {
                    evaluator: Box::new(s),
                    backend: Backend::Gpu,
                    warning: None,
                }),
                (Err(e), Backend::Auto) => cpu(Some(format!(
                    "the GPU evaluators failed ({e}); running on the CPU"
                ))),
                (Err(e), _) => Err(e),
            };
        }
        match self {
            Backend::Cpu => cpu(None),
            Backend::Gpu => Ok(Selected {
                evaluator: Box::new(GpuEvaluator::new(problem, options)?),
                backend: Backend::Gpu,
                warning: None,
            }),
            Backend::Auto => match GpuContext::with_adapter(options.adapter) {
                Ok(ctx) if !ctx.is_software() => {
                    match GpuEvaluator::with_context(std::sync::Arc::new(ctx), problem, options) {
                        Ok(g) => Ok(Selected {
                            evaluator: Box::new(g),
                            backend: Backend::Gpu,
                            warning: None,
                        }),
                        Err(e) => cpu(Some(format!(
                            "the GPU evaluator failed ({e}); running on the CPU"
                        ))),
                    }
                }
                _ => cpu(None),
            },
        }
    }
}

/// An evaluator chosen by [`Backend::evaluator`].
pub struct Selected {
    /// The evaluator.
    pub evaluator: Box<dyn Evaluator>,
    /// Which backend it is: [`Backend::Cpu`] or [`Backend::Gpu`] (never `Auto`).
    pub backend: Backend,
    /// Why `Auto` fell back to the CPU, when it did after a failure.
    pub warning: Option<String>,
}

/// Weights u_d of the draws in the per-cell reductions.
#[derive(Clone, Copy, Debug)]
pub enum DrawWeights<'a> {
    /// u_d = 1/D: the reductions are means over draws.
    Uniform,
    /// One weight per draw.
    PerDraw(&'a [f64]),
}

impl DrawWeights<'_> {
    /// u_d.
    #[inline]
    pub fn get(&self, d: usize, num_draws: usize) -> f64 {
        match self {
            DrawWeights::Uniform => 1.0 / num_draws as f64,
            DrawWeights::PerDraw(u) => u[d],
        }
    }
}

/// The result of [`Evaluator::evaluate`]; buffers are reused across calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    /// R_d for every draw.
    pub responses: Vec<f64>,
    /// Σ_d u_d r_dc per cell (with uniform weights: the mean contribution).
    pub contributions: Vec<f64>,
    /// Σ_d u_d r'_dc per cell: the gradient of Σ_d u_d R_d.
    pub gradient: Vec<f64>,
    /// Σ_d u_d r''_dc per cell: the (diagonal) Hessian of Σ_d u_d R_d.
    pub curvature: Vec<f64>,
}

impl Evaluation {
    /// Buffers for `num_draws` draws and `num_cells` cells.
    pub fn new(num_draws: usize, num_cells: usize) -> Self {
        Evaluation {
            responses: vec![0.0; num_draws],
            contributions: vec![0.0; num_cells],
            gradient: vec![0.0; num_cells],
            curvature: vec![0.0; num_cells],
        }
    }
}

/// The result of [`Evaluator::evaluate_time_varying`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimeVaryingEvaluation {
    /// R_d for every draw.
    pub responses: Vec<f64>,
    /// Σ_d u_d ∂R_d/∂X_τc, cell-major: `gradient[c * N + τ]`.
    pub gradient: Vec<f64>,
    /// Σ_d u_d r_dc per cell (with uniform weights: the mean contribution).
    pub contributions: Vec<f64>,
}

impl TimeVaryingEvaluation {
    /// Buffers for `num_draws` draws, `num_cells` cells and `num_periods` periods.
    pub fn new(num_draws: usize, num_cells: usize, num_periods: usize) -> Self {
        TimeVaryingEvaluation {
            responses: vec![0.0; num_draws],
            gradient: vec![0.0; num_cells * num_periods],
            contributions: vec![0.0; num_cells],
        }
    }
}

/// The result of [`Evaluator::evaluate_banded`]: one pass's sums for draw weights
/// that are known only once every draw's response is, and that are constant (up to a
/// term affine in R_d) outside a few bands of responses: the kernel of a smoothed
/// quantile or CVaR. Each cell's terms t_dc = [r_dc, r'_dc, r''_dc] are summed per
/// region between the bands, and by R_d − shift over every draw; the draws inside a
/// band are kept whole. Then for weights w_d = κ_d + b (R_d − μ) with κ constant on
/// each region, Σ_d w_d t_dc = Σ_regions κ_region S_region + Σ_kept κ_d t_dc +
/// b ((shift − μ) S_all + L).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BandedSums {
    /// R_d for every draw.
    pub responses: Vec<f64>,
    /// L = Σ_d (R_d − shift) t_dc over every draw, per cell (`contributions`,
    /// `gradient`, `curvature`; no responses).
    pub linear: Evaluation,
    /// S_region = Σ_d t_dc over the draws of each region (bands + 1 of them: below the
    /// first band, between bands, above the last; no responses).
    pub regions: Vec<Evaluation>,
    /// The draws inside a band, ascending.
    pub kept: Vec<usize>,
    /// Their terms, 3n values a draw: `[r_dc, r'_dc, r''_dc]` cell by cell.
    pub kept_terms: Vec<f64>,
    /// More draws lay inside the bands than could be kept: `kept` and `regions` are
    /// incomplete, only the responses and `linear` hold.
    pub overflow: bool,
}

/// Where the response `r` lies among sorted, disjoint `bands` (lo ≤ hi, each closed):
/// `Ok(region)` outside every band (region i lies below band i), `Err(band)` inside.
/// The one rule for [`Evaluator::evaluate_banded`] and its callers.
///
/// ```
/// use mmm_budget::eval::band_position;
/// let bands = [(1.0, 2.0), (5.0, 6.0)];
/// assert_eq!(band_position(&bands, 0.5), Ok(0));
/// assert_eq!(band_position(&bands, 2.0), Err(0));
/// assert_eq!(band_position(&bands, 3.0), Ok(1));
/// assert_eq!(band_position(&bands, 7.0), Ok(2));
/// ```
pub fn band_position(bands: &[(f64, f64)], r: f64) -> std::result::Result<usize, usize> {
    let i = bands.partition_point(|b| b.1 < r);
    if i < bands.len() && bands[i].0 <= r {
        Err(i)
    } else {
        Ok(i)
    }
}

/// The result of [`Evaluator::cell_moments`]: every draw's response, its response
/// with the cells weighted, and each cell's spread over the draws: what measures of
/// the cells' own responses (the diversification ratio) need. Sums over draws are
/// centred (Welford's update within a block of draws, Chan, Golub and LeVeque's
/// merge between blocks), so a spread far below the mean keeps its digits.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CellMoments {
    /// R_d = Σ_c r_dc for every draw.
    pub responses: Vec<f64>,
    /// P_d = Σ_c a_c r_dc for every draw, with the cell weights a given.
    pub weighted: Vec<f64>,
    /// r̄_c = (1/D) Σ_d r_dc per cell.
    pub mean: Vec<f64>,
    /// r̄'_c = (1/D) Σ_d r'_dc per cell.
    pub mean_slope: Vec<f64>,
    /// Σ_d (r_dc − r̄_c)² per cell.
    pub squares: Vec<f64>,
    /// Σ_d (r_dc − r̄_c)(r'_dc − r̄'_c) per cell.
    pub cross: Vec<f64>,
}

/// Per-cell moments of a set of draws, merged set by set: the per-cell part of
/// [`CellMoments`] while it is being accumulated.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct MomentSum {
    /// Draws so far.
    pub(crate) count: f64,
    pub(crate) mean: Vec<f64>,
    pub(crate) mean_slope: Vec<f64>,
    pub(crate) squares: Vec<f64>,
    pub(crate) cross: Vec<f64>,
}

impl MomentSum {
    /// No draws yet, over `n` cells.
    pub(crate) fn new(n: usize) -> Self {
        MomentSum {
            count: 0.0,
            mean: vec![0.0; n],
            mean_slope: vec![0.0; n],
            squares: vec![0.0; n],
            cross: vec![0.0; n],
        }
    }

    /// Welford's update with one draw's r_dc and r'_dc of cell c; `count` must have
    /// been increased for the draw already.
    #[inline]
    pub(crate) fn push(&mut self, c: usize, r: f64, slope: f64) {
        let dr = r - self.mean[c];
        let ds = slope - self.mean_slope[c];
        self.mean[c] += dr / self.count;
        self.mean_slope[c] += ds / self.count;
        let after = r - self.mean[c];
        self.squares[c] += dr * after;
        self.cross[c] += after * ds;
    }

    /// Merges the moments of `count` further draws with per-cell means `mean`,
    /// `mean_slope` and centred sums `squares`, `cross`: with n = n_a + n_b and
    /// δ = m_b − m_a, the mean moves by δ n_b/n and the centred sums gain
    /// δ δ' n_a n_b/n.
    pub(crate) fn merge(
        &mut self,
        count: f64,
        mean: &[f64],
        mean_slope: &[f64],
        squares: &[f64],
        cross: &[f64],
    ) {
        if count == 0.0 {
            return;
        }
        let total = self.count + count;
        let (fa, fb) = (self.count / total, count / total);
        for c in 0..self.mean.len() {
            let d = mean[c] - self.mean[c];
            let ds = mean_slope[c] - self.mean_slope[c];
            self.squares[c] += squares[c] + d * d * self.count * fb;
            self.cross[c] += cross[c] + d * ds * self.count * fb;
            self.mean[c] = fa * self.mean[c] + fb * mean[c];
            self.mean_slope[c] = fa * self.mean_slope[c] + fb * mean_slope[c];
        }
        self.count = total;
    }

    /// [`MomentSum::merge`] of another sum.
    pub(crate) fn merge_sum(&mut self, o: &MomentSum) {
        self.merge(o.count, &o.mean, &o.mean_slope, &o.squares, &o.cross);
    }

    /// Into `out`'s per-cell fields.
    pub(crate) fn finish(self, out: &mut CellMoments) {
        out.mean = self.mean;
        out.mean_slope = self.mean_slope;
        out.squares = self.squares;
        out.cross = self.cross;
    }
}

/// Evaluates the response of every posterior draw to an allocation.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 1, draws: 50 }, 7);
/// let problem = Problem::new(&model, &scenario).unwrap();
/// let mut ev = CpuEvaluator::new(&problem).unwrap();
/// let x = problem.uniform_allocation();
/// let mut out = Evaluation::new(ev.num_draws(), ev.num_cells());
/// ev.evaluate(&x, DrawWeights::Uniform, &mut out).unwrap();
/// let mean: f64 = out.responses.iter().sum::<f64>() / out.responses.len() as f64;
/// let by_cell: f64 = out.contributions.iter().sum();
/// assert!((mean - by_cell).abs() <= 1e-9 * mean.abs());
/// ```
pub trait Evaluator {
    /// D.
    fn num_draws(&self) -> usize;
    /// n: optimized cells.
    fn num_cells(&self) -> usize;
    /// N.
    fn num_periods(&self) -> usize;
    /// What runs the evaluation, e.g. `cpu (f64, 2 threads)` or the GPU adapter's name.
    fn describe(&self) -> String;
    /// The relative precision of its arithmetic (f64: 2.2e-16; f32: 1.2e-7). The
    /// solver cannot drive the KKT residual much below it and adjusts its tolerances.
    fn precision(&self) -> f64 {
        f64::EPSILON
    }
    /// R_d for every draw at the per-period allocation `x` (n values).
    fn responses(&mut self, x: &[f64], out: &mut [f64]) -> Result<()>;
    /// R_d for every draw and the per-cell reductions weighted by `weights`.
    fn evaluate(&mut self, x: &[f64], weights: DrawWeights<'_>, out: &mut Evaluation)
    -> Result<()>;
    /// R_d and the per-cell reductions at each of k allocations, with the same draw
    /// weights: `out[j]` as [`Evaluator::evaluate`] would give for `xs[j]`. An
    /// evaluator that can shares the work of one pass over the posterior between
    /// them (the CPU: each draw's terms once, the same bits as k calls; the GPU: one
    /// upload, one set of dispatches, one read-back). The default makes k calls.
    ///
    /// ```
    /// use mmm_budget::*;
    /// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 1, draws: 50 }, 7);
    /// let problem = Problem::new(&model, &scenario)?;
    /// let mut ev = CpuEvaluator::new(&problem)?;
    /// let x = problem.uniform_allocation();
    /// let half: Vec<f64> = x.iter().map(|v| v / 2.0).collect();
    /// let mut many = vec![Evaluation::default(); 2];
    /// ev.evaluate_many(&[&x, &half], DrawWeights::Uniform, &mut many)?;
    /// let mut one = Evaluation::default();
    /// ev.evaluate(&half, DrawWeights::Uniform, &mut one)?;
    /// assert_eq!(many[1], one);
    /// # Ok::<(), mmm_budget::Error>(())
    /// ```
    fn evaluate_many(
        &mut self,
        xs: &[&[f64]],
        weights: DrawWeights<'_>,
        out: &mut [Evaluation],
    ) -> Result<()> {
        check_len(out.len(), xs.len(), "evaluations")?;
        for (x, o) in xs.iter().zip(out.iter_mut()) {
            self.evaluate(x, weights, o)?;
        }
        Ok(())
    }
    /// R_d for every draw and, per cell, the plain sums Σ_d [r_dc, r'_dc, r''_dc]
    /// into `plain` and the sums weighted by the draw's own response, Σ_d (R_d − shift)
    /// [r_dc, r'_dc, r''_dc], into `linear` (both unnormalised, in their
    /// `contributions`, `gradient`, `curvature`; `responses` in `plain`), in one pass:
    /// for draw weights affine in the response, u_d = a + b R_d (the mean, std,
    /// Sharpe's ratio, RAROC), Σ_d u_d r'_dc = (a + b shift) Σ_d r'_dc + b Σ_d (R_d −
    /// shift) r'_dc without a pass to learn R_d first. `shift` near the mean response
    /// keeps the second sums' digits. Returns false where the evaluator does not do
    /// it in one pass (the caller then takes two); the default.
    ///
    /// ```
    /// use mmm_budget::*;
    /// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 1, draws: 50 }, 7);
    /// let problem = Problem::new(&model, &scenario)?;
    /// let mut ev = CpuEvaluator::new(&problem)?;
    /// let x = problem.uniform_allocation();
    /// let (mut plain, mut linear) = (Evaluation::default(), Evaluation::default());
    /// assert!(ev.evaluate_linear(&x, 1000.0, &mut plain, &mut linear)?);
    /// // The same sums as a pass with the weights R_d − 1000.
    /// let u: Vec<f64> = plain.responses.iter().map(|r| r - 1000.0).collect();
    /// let mut two = Evaluation::default();
    /// ev.evaluate(&x, DrawWeights::PerDraw(&u), &mut two)?;
    /// assert!((linear.gradient[1] - two.gradient[1]).abs() <= 1e-9 * two.gradient[1].abs());
    /// # Ok::<(), mmm_budget::Error>(())
    /// ```
    fn evaluate_linear(
        &mut self,
        x: &[f64],
        shift: f64,
        plain: &mut Evaluation,
        linear: &mut Evaluation,
    ) -> Result<bool> {
        let mut sums = BandedSums::default();
        if !self.evaluate_banded(x, shift, &[], 0, &mut sums)? {
            return Ok(false);
        }
        *plain = sums.regions.swap_remove(0);
        plain.responses = sums.responses;
        *linear = sums.linear;
        Ok(true)
    }
    /// One pass that sums each cell's terms [r_dc, r'_dc, r''_dc] per region between
    /// the sorted, disjoint `bands` of responses and by R_d − `shift` over every draw,
    /// and keeps the terms of each draw whose response lies inside a band
    /// ([`band_position`]), at most `max_kept` of them ([`BandedSums`]): the sums of
    /// any draw weights that are constant on each region up to a term affine in R_d
    /// (a smoothed quantile's or CVaR's kernel, whose centre is known only once every
    /// R_d is) without a pass to learn R_d first. Kept draws are in ascending order,
    /// the sums formed in the same order whatever the scheduling. Returns false where
    /// the evaluator does not do it (the caller then takes two passes); the default.
    /// [`Evaluator::evaluate_linear`] is this with no bands.
    ///
    /// ```
    /// use mmm_budget::*;
    /// use mmm_budget::eval::BandedSums;
    /// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 1, draws: 50 }, 7);
    /// let problem = Problem::new(&model, &scenario)?;
    /// let mut ev = CpuEvaluator::new(&problem)?;
    /// let x = problem.uniform_allocation();
    /// let mut r = vec![0.0; 50];
    /// ev.responses(&x, &mut r)?;
    /// let mut sorted = r.clone();
    /// sorted.sort_by(f64::total_cmp);
    /// // Keep the draws between the 10th and the 20th response.
    /// let mut sums = BandedSums::default();
    /// assert!(ev.evaluate_banded(&x, 0.0, &[(sorted[10], sorted[20])], 50, &mut sums)?);
    /// assert_eq!(sums.kept.len(), 11);
    /// // Below, inside and above the band: every draw's slope once.
    /// let kept: f64 = sums.kept_terms.chunks(3 * 3).map(|t| t[1]).sum();
    /// let all = sums.regions[0].gradient[0] + kept + sums.regions[1].gradient[0];
    /// let mut one = Evaluation::default();
    /// ev.evaluate(&x, DrawWeights::PerDraw(&[1.0; 50]), &mut one)?;
    /// assert!((all - one.gradient[0]).abs() <= 1e-12 * one.gradient[0].abs());
    /// # Ok::<(), mmm_budget::Error>(())
    /// ```
    fn evaluate_banded(
        &mut self,
        x: &[f64],
        shift: f64,
        bands: &[(f64, f64)],
        max_kept: usize,
        out: &mut BandedSums,
    ) -> Result<bool> {
        let _ = (x, shift, bands, max_kept, out);
        Ok(false)
    }
    /// Every draw's response R_d and its cell-weighted response P_d = Σ_c a_c r_dc at
    /// the per-period allocation `x`, with each cell's mean, mean slope and centred
    /// second moments over the draws ([`CellMoments`]), in one pass: what the
    /// diversification ratio's value and gradient need beside one weighted pass.
    ///
    /// ```
    /// use mmm_budget::*;
    /// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 1, draws: 50 }, 7);
    /// let problem = Problem::new(&model, &scenario)?;
    /// let mut ev = CpuEvaluator::new(&problem)?;
    /// let x = problem.uniform_allocation();
    /// let mut m = CellMoments::default();
    /// ev.cell_moments(&x, &[1.0, 0.0, 0.0], &mut m)?;
    /// let mut one = Evaluation::default();
    /// ev.evaluate(&x, DrawWeights::Uniform, &mut one)?;
    /// assert_eq!(m.responses, one.responses);
    /// assert!((m.mean[0] - one.contributions[0]).abs() <= 1e-12 * m.mean[0]);
    /// // With the weights (1, 0, 0), P_d is the first cell's response: its spread is
    /// // the first cell's.
    /// let p_mean = m.weighted.iter().sum::<f64>() / 50.0;
    /// let ss: f64 = m.weighted.iter().map(|p| (p - p_mean) * (p - p_mean)).sum();
    /// assert!((ss - m.squares[0]).abs() <= 1e-9 * ss);
    /// # Ok::<(), mmm_budget::Error>(())
    /// ```
    fn cell_moments(
        &mut self,
        x: &[f64],
        cell_weights: &[f64],
        out: &mut CellMoments,
    ) -> Result<()> {
        let _ = (x, cell_weights, out);
        Err(crate::Error::invalid(
            "evaluator",
            "cell moments",
            self.describe(),
            "an evaluator of one spend per cell (the diversification ratio is not defined over a plan's periods)",
        ))
    }
    /// The time-varying form: `x[c * N + t]` is the spend of cell c in period t
    /// (no time distribution applies). Gives R_d and Σ_d u_d ∂R_d/∂X_tc, the
    /// adjoint convolution: ∂R_d/∂X_τc = τ_c/(κ_τc s_c) Σ_l w_l g'(a_(τ+l)cd).
    fn evaluate_time_varying(
        &mut self,
        x: &[f64],
        weights: DrawWeights<'_>,
        out: &mut TimeVaryingEvaluation,
    ) -> Result<()>;
}

/// `found == expected`, else an [`crate::Error::Shape`] naming `field`.
pub(crate) fn check_len(found: usize, expected: usize, field: &str) -> Result<()> {
    if found != expected {
        return Err(crate::Error::Shape {
            context: "evaluator".into(),
            field: field.into(),
            found: vec![found],
            expected: format!("{expected} values"),
        });
    }
    Ok(())
}

/// The arguments of [`Evaluator::evaluate_many`]: one output a slot, every
/// allocation `num_cells` finite values ≥ 0 (the error naming the cell), one weight a
/// draw.
pub(crate) fn check_many(
    cells: &[crate::model::CellInfo],
    xs: &[&[f64]],
    outputs: usize,
    weights: &DrawWeights<'_>,
    num_draws: usize,
) -> Result<()> {
    check_len(outputs, xs.len(), "evaluations")?;
    for x in xs {
        crate::problem::check_allocation(cells, x, cells.len())?;
    }
    check_weights(weights, num_draws)
}

/// One weight per draw, when weights are given.
pub(crate) fn check_weights(w: &DrawWeights<'_>, num_draws: usize) -> Result<()> {
    match w {
        DrawWeights::Uniform => Ok(()),
        DrawWeights::PerDraw(u) => check_len(u.len(), num_draws, "draw weights"),
    }
}
