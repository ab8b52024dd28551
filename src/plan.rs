//! Plans over time: a spend per period (or per group of periods) and cell, with
//! flighting limits and sums over ranges of periods.
//!
//! With `"decision": "per_period"` (or `{"every": k}`) the optimizer decides, for
//! each optimized cell c and group g of consecutive periods (m_g periods each), the
//! spend per period z_cg in those periods: X_tc = z_c,g(t). The solver works in the
//! variables v_cg = (m_g/N) z_cg, each group's share of the cell's average spend per
//! period, so that x̄_c = Σ_g v_cg is the cell's spend per period averaged over the
//! window and every rule of a constant plan keeps its meaning:
//! - the budget: Σ_c x̄_c = B (per period, as always);
//! - bounds: each period's spend of a cell within its bounds, l_c ≤ z_cg ≤ u_c;
//! - linear constraints (`sum(channel=tv) <= 300`) on the cells' average spends x̄_c;
//! - period sums: Σ_(c∈S) Σ_(t=a..b) X_tc within [min, max] (money over periods a..b,
//!   e.g. the weeks of a month), Σ_g |[a, b] ∩ g| (N/m_g) v_cg;
//! - flighting: |z_cg − z_c,g−1| ≤ δ between consecutive groups.
//!
//! The response is the time-varying form of the evaluators
//! ([`Evaluator::evaluate_time_varying`]): R_d(X) with its adjoint gradient, so
//! ∂R_d/∂v_cg = (N/m_g) Σ_(t∈g) ∂R_d/∂X_tc. Adstock couples the periods, so the
//! Hessian is not diagonal: the SQP runs with a damped BFGS model
//! ([`crate::HessianMode::Bfgs`]) started from a diagonal scale (each group's
//! curvature as if the cell spent z_cg in every period, from the constant form at
//! the start). With one group (`{"every": k}`, k ≥ N) the plan is the constant
//! decision. With a flat pattern and saturation first, the optimum spends the same
//! in every period (concavity and symmetry); with adstock first it may not (spend
//! early in the window builds carry-over that later periods keep), so a plan is never
//! worse than the constant optimum.

use crate::constraint::{LinearConstraint, Sense};
use crate::error::{Error, Result};
use crate::eval::{DrawWeights, Evaluation, Evaluator, TimeVaryingEvaluation};
use crate::model::CellInfo;
use crate::problem::Problem;
use crate::solution::Solution;
use crate::sqp::{HessianMode, Settings, Solver};
use std::ops::Range;

/// The resolved plan of a problem whose decision varies over time.
#[derive(Clone, Debug, PartialEq)]
pub struct PlanSpec {
    /// The groups of consecutive periods, 0-based, covering 0..N in order.
    pub groups: Vec<Range<usize>>,
    /// Flighting limits.
    pub flighting: Vec<Flighting>,
    /// Period sums.
    pub period_sums: Vec<PeriodSumRows>,
}

/// A resolved flighting limit: |z_cg − z_c,g−1| ≤ δ for the selected cells.
#[derive(Clone, Debug, PartialEq)]
pub struct Flighting {
    /// Its name in reports (`flighting[i]`).
    pub name: String,
    /// Which optimized cells.
    pub cells: Vec<bool>,
    /// δ, money per period.
    pub max_change: f64,
}

/// A resolved period sum: Σ_(c∈S) Σ_(t∈periods) X_tc within [min, max].
#[derive(Clone, Debug, PartialEq)]
pub struct PeriodSumRows {
    /// Its name in reports (`period_sums[i] (periods a-b)`).
    pub name: String,
    /// Which optimized cells.
    pub cells: Vec<bool>,
    /// The periods, 0-based.
    pub periods: Range<usize>,
    /// Lower limit (money over those periods).
    pub min: Option<f64>,
    /// Upper limit.
    pub max: Option<f64>,
}

impl PlanSpec {
    /// G: the number of groups.
    pub fn num_groups(&self) -> usize {
        self.groups.len()
    }

    /// Groups of `every` periods over `num_periods` (the last may be shorter).
    pub fn groups_of(every: usize, num_periods: usize) -> Vec<Range<usize>> {
        let k = every.clamp(1, num_periods.max(1));
        (0..num_periods)
            .step_by(k)
            .map(|a| a..(a + k).min(num_periods))
            .collect()
    }
}

/// A solved plan.
#[derive(Clone, Debug)]
pub struct PlanSolution {
    /// The solver's answer over the decision cells, cell-major (`[c * G + g]`: the
    /// share v_cg of cell c's average spend per period that group g spends); its
    /// utility, status, multipliers (bounds named per cell and group) and trace.
    pub solution: Solution,
    /// The groups of periods.
    pub groups: Vec<Range<usize>>,
    /// X_tc: each optimized cell's spend in each period, `[c * N + t]`.
    pub spend: Vec<f64>,
    /// x̄_c: each cell's spend per period, averaged over the window (Σ_g v_cg).
    pub average: Vec<f64>,
}

/// Solves a problem whose scenario decides a spend per period (or group): builds the
/// problem over the decision cells and runs the SQP on `evaluator` (built for
/// `problem`) through a [`PlanEvaluator`].
///
/// ```
/// use mmm_budget::*;
/// let (model, mut scenario) = demo::case(&demo::DemoSize { channels: 2, geos: 1, draws: 50 }, 3);
/// scenario.decision = Decision::Every(4); // 12 periods: 3 groups
/// let problem = Problem::new(&model, &scenario)?;
/// let mut ev = CpuEvaluator::new(&problem)?;
/// let plan = plan::solve(&problem, &mut ev, Settings::default())?;
/// assert_eq!(plan.solution.status, Status::Solved);
/// assert_eq!(plan.spend.len(), 2 * 12);
/// let window: f64 = plan.spend.iter().sum();
/// assert!((window - 12.0 * problem.total_budget).abs() <= 1e-6 * window);
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn solve(
    problem: &Problem,
    evaluator: &mut dyn Evaluator,
    settings: Settings,
) -> Result<PlanSolution> {
    solve_with_callback(problem, evaluator, settings, &mut |_| true)
}

/// [`solve`] with a per-iteration callback; returning `false` stops the solve
/// (`Stopped`), as [`Solver::with_callback`].
pub fn solve_with_callback(
    problem: &Problem,
    evaluator: &mut dyn Evaluator,
    mut settings: Settings,
    callback: &mut dyn FnMut(&crate::solution::IterationInfo) -> bool,
) -> Result<PlanSolution> {
    let spec = problem.plan.clone().ok_or_else(|| {
        Error::invalid(
            "plan",
            "decision",
            "constant",
            "a scenario with \"decision\": \"per_period\" or {\"every\": k}",
        )
    })?;
    let view = decision_problem(problem, &spec)?;
    if let Some(start) = &settings.start {
        settings.start = Some(shares(start, &spec.groups, problem.num_periods));
    }
    settings.hessian = HessianMode::Bfgs;
    let mut plan_ev = PlanEvaluator::new(evaluator, spec.groups.clone());
    let solution = Solver::new(&view, &mut plan_ev, settings)?
        .with_callback(callback)
        .solve()?;
    let (n, g) = (problem.num_cells(), spec.num_groups());
    let (spend, average) = if solution.allocation.len() == n * g {
        (
            plan_ev.per_period(&solution.allocation)?,
            solution
                .allocation
                .chunks(g)
                .map(|v| v.iter().sum())
                .collect(),
        )
    } else {
        (vec![], vec![])
    };
    Ok(PlanSolution {
        solution,
        groups: spec.groups,
        spend,
        average,
    })
}

impl PlanSolution {
    /// The solution per optimized cell: the allocation is each cell's spend per period
    /// averaged over the window (its start likewise), its mean contribution and ROI
    /// summed over its groups, its marginal response and ROI for one more unit in the
    /// plan's own proportions (evenly over the periods where it spends nothing); the
    /// status, utility, multipliers (named per cell and group) and trace as solved.
    /// What the frontier and per-cell reports take.
    pub fn per_cell(&self, num_periods: usize) -> Solution {
        let g = self.groups.len();
        let np = num_periods as f64;
        let sums = |v: &[f64]| -> Vec<f64> {
            if !v.len().is_multiple_of(g.max(1)) || v.is_empty() {
                return vec![];
            }
            v.chunks(g).map(|c| c.iter().sum()).collect()
        };
        let mut s = self.solution.clone();
        if s.allocation.is_empty() {
            return s;
        }
        let marginal: Vec<f64> = s
            .marginal_response
            .chunks(g)
            .zip(s.allocation.chunks(g))
            .map(|(d, v)| {
                let average: f64 = v.iter().sum();
                d.iter()
                    .zip(v)
                    .zip(&self.groups)
                    .map(|((d, v), r)| {
                        let share = if average > 0.0 {
                            v / average
                        } else {
                            r.len() as f64 / np
                        };
                        d * share
                    })
                    .sum()
            })
            .collect();
        s.start_allocation = sums(&s.start_allocation);
        s.mean_contribution = sums(&s.mean_contribution);
        s.allocation = self.average.clone();
        s.roi = s
            .mean_contribution
            .iter()
            .zip(&s.allocation)
            .map(|(c, x)| crate::solution::roi(*c, *x, num_periods))
            .collect();
        s.marginal_roi = marginal
            .iter()
            .map(|d| crate::solution::marginal_roi(*d, num_periods))
            .collect();
        s.marginal_response = marginal;
        s
    }
}

/// Per-cell spends per period x_c as shares v_cg = (m_g/N) x_c.
fn shares(x: &[f64], groups: &[Range<usize>], num_periods: usize) -> Vec<f64> {
    x.iter()
        .flat_map(|&v| {
            groups
                .iter()
                .map(move |r| v * r.len() as f64 / num_periods as f64)
        })
        .collect()
}

/// The problem over the decision cells (c, g), cell-major: bounds, budget and linear
/// constraints as in the module's description, the plan's rows added; no posterior
/// (the [`PlanEvaluator`] evaluates on the original problem's evaluator).
fn decision_problem(p: &Problem, spec: &PlanSpec) -> Result<Problem> {
    let (n, g, np) = (p.num_cells(), spec.num_groups(), p.num_periods);
    let share = |r: &Range<usize>| r.len() as f64 / np as f64;
    let cells: Vec<CellInfo> = p
        .cells
        .iter()
        .flat_map(|cell| {
            spec.groups.iter().map(move |r| {
                let mut c = cell.clone();
                c.label = format!("{} [periods {}-{}]", cell.label, r.start + 1, r.end);
                c
            })
        })
        .collect();
    let per = |values: &[f64]| -> Vec<f64> {
        values
            .iter()
            .flat_map(|&v| spec.groups.iter().map(move |r| v * share(r)))
            .collect()
    };
    let mut linear: Vec<LinearConstraint> = p
        .linear_constraints
        .iter()
        .map(|c| LinearConstraint {
            name: c.name.clone(),
            coefficients: c
                .coefficients
                .iter()
                .flat_map(|&a| std::iter::repeat_n(a, g))
                .collect(),
            sense: c.sense,
            rhs: c.rhs,
        })
        .collect();
    // z_cg = (N/m_g) v_cg.
    let z = |r: &Range<usize>| np as f64 / r.len() as f64;
    for PeriodSumRows {
        name,
        cells: selected,
        periods,
        min,
        max,
    } in &spec.period_sums
    {
        let mut coefficients = vec![0.0; n * g];
        for c in (0..n).filter(|&c| selected[c]) {
            for (k, r) in spec.groups.iter().enumerate() {
                let overlap = r
                    .end
                    .min(periods.end)
                    .saturating_sub(r.start.max(periods.start));
                coefficients[c * g + k] = overlap as f64 * z(r);
            }
        }
        for (limit, sense) in [(min, Sense::GreaterEqual), (max, Sense::LessEqual)] {
            if let Some(v) = limit {
                let sense = if min == max { Sense::Equal } else { sense };
                linear.push(LinearConstraint {
                    name: name.clone(),
                    coefficients: coefficients.clone(),
                    sense,
                    rhs: *v,
                });
                if sense == Sense::Equal {
                    break;
                }
            }
        }
    }
    for Flighting {
        name,
        cells: selected,
        max_change: delta,
    } in &spec.flighting
    {
        for c in (0..n).filter(|&c| selected[c]) {
            for k in 1..g {
                let mut coefficients = vec![0.0; n * g];
                coefficients[c * g + k] = z(&spec.groups[k]);
                coefficients[c * g + k - 1] = -z(&spec.groups[k - 1]);
                let (a, b) = (&spec.groups[k - 1], &spec.groups[k]);
                let at = format!(
                    "{name}: {}, periods {}-{} to {}-{}",
                    p.cells[c].label,
                    a.start + 1,
                    a.end,
                    b.start + 1,
                    b.end
                );
                for (sense, rhs, way) in [
                    (Sense::LessEqual, *delta, "rise"),
                    (Sense::GreaterEqual, -delta, "fall"),
                ] {
                    linear.push(LinearConstraint {
                        name: format!("{at}, {way}"),
                        coefficients: coefficients.clone(),
                        sense,
                        rhs,
                    });
                }
            }
        }
    }
    Ok(Problem {
        adstock: p.adstock,
        saturation: p.saturation,
        adstock_first: p.adstock_first,
        num_periods: np,
        cells,
        target_scale: vec![],
        pattern: vec![],
        input_scale: vec![],
        history: vec![],
        adstock_params: Default::default(),
        saturation_params: Default::default(),
        num_draws: p.num_draws,
        total_budget: p.total_budget,
        budget_constraint: p.budget_constraint,
        lower: per(&p.lower),
        upper: per(&p.upper),
        linear_constraints: linear,
        outcome_constraints: p.outcome_constraints.clone(),
        marginal_roi_constraints: vec![],
        utility: p.utility.clone(),
        start: p.start.as_ref().map(|x| shares(x, &spec.groups, np)),
        dim_names: p.dim_names.clone(),
        plan: None,
    })
}

/// An evaluator over the decision cells of a plan: v (cell-major, G groups a cell)
/// becomes the spend per period X_tc = (N/m_g) v_c,g(t) of `inner`'s time-varying
/// form. Its curvature is a diagonal scale, not the Hessian (adstock couples the
/// periods): each group's curvature as if its cell spent z_cg in every period,
/// (N/m_g) r''_c(z_cg), from `inner`'s constant form at the first evaluation. Its
/// contributions attribute each cell's mean contribution to its groups by their
/// shares of its spend.
pub struct PlanEvaluator<'e> {
    inner: &'e mut dyn Evaluator,
    groups: Vec<Range<usize>>,
    /// Group of each period.
    group_of: Vec<usize>,
    varying: TimeVaryingEvaluation,
    scale: Option<Vec<f64>>,
}

impl<'e> PlanEvaluator<'e> {
    /// Over `inner` (an evaluator of the original problem), with the plan's groups.
    pub fn new(inner: &'e mut dyn Evaluator, groups: Vec<Range<usize>>) -> Self {
        let mut group_of = vec![0; inner.num_periods()];
        for (k, r) in groups.iter().enumerate() {
            for t in r.clone() {
                group_of[t] = k;
            }
        }
        PlanEvaluator {
            inner,
            groups,
            group_of,
            varying: TimeVaryingEvaluation::default(),
            scale: None,
        }
    }

    /// N/m_k: group k's spend per period for a unit share (z = (N/m_k) v).
    fn spread(&self, k: usize) -> f64 {
        self.inner.num_periods() as f64 / self.groups[k].len() as f64
    }

    /// X_tc (`[c * N + t]`) for the shares `v` (n·G values, else an error).
    pub fn per_period(&self, v: &[f64]) -> Result<Vec<f64>> {
        let (n, np, g) = (
            self.inner.num_cells(),
            self.inner.num_periods(),
            self.groups.len(),
        );
        crate::eval::check_len(v.len(), n * g, "allocation")?;
        let mut x = Vec::with_capacity(n * np);
        for c in 0..n {
            for t in 0..np {
                let k = self.group_of[t];
                x.push(v[c * g + k] * self.spread(k));
            }
        }
        Ok(x)
    }

    /// The diagonal scale at the shares `v` (see the type's description).
    fn curvature_scale(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        let (n, g) = (self.inner.num_cells(), self.groups.len());
        let xs: Vec<Vec<f64>> = (0..g)
            .map(|k| (0..n).map(|c| v[c * g + k] * self.spread(k)).collect())
            .collect();
        let refs: Vec<&[f64]> = xs.iter().map(|x| x.as_slice()).collect();
        let mut out = vec![Evaluation::default(); g];
        self.inner
            .evaluate_many(&refs, DrawWeights::Uniform, &mut out)?;
        let mut h = vec![0.0; n * g];
        for (k, e) in out.iter().enumerate() {
            let f = self.spread(k);
            for c in 0..n {
                h[c * g + k] = f * e.curvature[c];
            }
        }
        Ok(h)
    }
}

impl Evaluator for PlanEvaluator<'_> {
    fn num_draws(&self) -> usize {
        self.inner.num_draws()
    }

    fn num_cells(&self) -> usize {
        self.inner.num_cells() * self.groups.len()
    }

    fn num_periods(&self) -> usize {
        self.inner.num_periods()
    }

    fn describe(&self) -> String {
        format!(
            "{} (a plan over {} groups of periods)",
            self.inner.describe(),
            self.groups.len()
        )
    }

    fn precision(&self) -> f64 {
        self.inner.precision()
    }

    fn responses(&mut self, v: &[f64], out: &mut [f64]) -> Result<()> {
        let x = self.per_period(v)?;
        self.inner
            .evaluate_time_varying(&x, DrawWeights::Uniform, &mut self.varying)?;
        crate::eval::check_len(out.len(), self.varying.responses.len(), "responses")?;
        out.copy_from_slice(&self.varying.responses);
        Ok(())
    }

    fn evaluate(
        &mut self,
        v: &[f64],
        weights: DrawWeights<'_>,
        out: &mut Evaluation,
    ) -> Result<()> {
        let (n, np, g) = (
            self.inner.num_cells(),
            self.inner.num_periods(),
            self.groups.len(),
        );
        let x = self.per_period(v)?;
        self.inner
            .evaluate_time_varying(&x, weights, &mut self.varying)?;
        if self.scale.is_none() {
            self.scale = Some(self.curvature_scale(v)?);
        }
        out.responses.clone_from(&self.varying.responses);
        out.gradient = vec![0.0; n * g];
        out.contributions = vec![0.0; n * g];
        for c in 0..n {
            let total: f64 = v[c * g..(c + 1) * g].iter().sum();
            for (k, r) in self.groups.iter().enumerate() {
                out.gradient[c * g + k] = self.spread(k)
                    * r.clone()
                        .map(|t| self.varying.gradient[c * np + t])
                        .sum::<f64>();
                let share = if total > 0.0 {
                    v[c * g + k] / total
                } else {
                    1.0 / g as f64
                };
                out.contributions[c * g + k] = share * self.varying.contributions[c];
            }
        }
        out.curvature
            .clone_from(self.scale.as_ref().expect("set above"));
        Ok(())
    }

    fn evaluate_time_varying(
        &mut self,
        _x: &[f64],
        _weights: DrawWeights<'_>,
        _out: &mut TimeVaryingEvaluation,
    ) -> Result<()> {
        Err(Error::invalid(
            "plan evaluator",
            "form",
            "time-varying",
            "the decision cells' form (evaluate the original problem's evaluator instead)",
        ))
    }
}
