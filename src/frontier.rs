//! The efficient frontier: the optimum over a range of total budgets, each solve
//! started from the last one's allocation scaled to the new budget.
//!
//! At each budget B the optimal mean response U*(B) and its marginal return
//! dU*/dB, which is the budget constraint's multiplier λ_B (per unit of per-period
//! budget; λ_B / N per unit spent over the window, the unit of mROI).

use crate::error::{Error, Result};
use crate::eval::{DrawWeights, Evaluation, Evaluator, TimeVaryingEvaluation};
use crate::model::Model;
use crate::problem::Problem;
use crate::report::QUANTILES;
use crate::scenario::Scenario;
use crate::solution::{Solution, Status};
use crate::sqp::{Settings, Solver};
use crate::utility::quantile;

/// One budget of the frontier.
#[derive(Clone, Debug, PartialEq)]
pub struct FrontierPoint {
    /// The total budget per period.
    pub budget: f64,
    /// The solve at that budget.
    pub solution: Solution,
    /// The 5%, 50% and 95% quantiles of the response over draws at its allocation.
    pub response_quantiles: [f64; 3],
    /// dU*/dB: the budget's multiplier, per unit of per-period budget (`None` where the
    /// solve did not end solved).
    pub marginal_return: Option<f64>,
}

/// The start for `budget` from the optima before it: with two solved neighbours, the
/// secant through them extended to `budget` (error O(ΔB²) where the optimum moves
/// smoothly), floored at 0; with one, its optimum scaled to `budget` (error O(ΔB));
/// else none. The solver projects the start onto the constraints.
fn warm_start(points: &[FrontierPoint], budget: f64) -> Option<Vec<f64>> {
    let solved = |p: &&FrontierPoint| p.solution.status == Status::Solved;
    let mut last = points.iter().rev().take(2).filter(solved);
    match (last.next(), last.next()) {
        (Some(b), Some(a)) if (b.budget - a.budget).abs() > 0.0 => {
            let t = (budget - b.budget) / (b.budget - a.budget);
            Some(
                b.solution
                    .allocation
                    .iter()
                    .zip(&a.solution.allocation)
                    .map(|(xb, xa)| (xb + t * (xb - xa)).max(0.0))
                    .collect(),
            )
        }
        (Some(b), _) if b.budget > 0.0 => {
            let scale = budget / b.budget;
            Some(b.solution.allocation.iter().map(|v| v * scale).collect())
        }
        _ => None,
    }
}

/// `steps` budgets from `from` to `to` per period, evenly spaced.
///
/// ```
/// let b = mmm_budget::frontier::budgets(100.0, 200.0, 5);
/// assert_eq!(b, vec![100.0, 125.0, 150.0, 175.0, 200.0]);
/// ```
pub fn budgets(from: f64, to: f64, steps: usize) -> Vec<f64> {
    match steps {
        0 => vec![],
        1 => vec![from],
        _ => (0..steps)
            .map(|k| from + (to - from) * k as f64 / (steps - 1) as f64)
            .collect(),
    }
}

/// Solves `scenario` at each of `budgets` (per period) with one evaluator for all
/// (it depends on the posterior and the time patterns, not on the budget). With
/// `warm`, each solve after the first starts from the previous optimum scaled to its
/// budget (projected onto its constraints), else from the usual start.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 1, draws: 100 }, 2);
/// let problem = Problem::new(&model, &scenario)?;
/// let mut ev = CpuEvaluator::new(&problem)?;
/// let b = frontier::budgets(0.5 * scenario.total_budget, 1.5 * scenario.total_budget, 5);
/// let points = frontier::frontier(&model, &scenario, &mut ev, &b, &Settings::default(), true)?;
/// assert!(points.windows(2).all(|w| w[1].solution.mean_response > w[0].solution.mean_response));
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn frontier(
    model: &Model,
    scenario: &Scenario,
    evaluator: &mut dyn Evaluator,
    budgets: &[f64],
    settings: &Settings,
    warm: bool,
) -> Result<Vec<FrontierPoint>> {
    frontier_each(
        model,
        scenario,
        evaluator,
        budgets,
        settings,
        warm,
        &mut |_| true,
    )
}

/// [`frontier`], calling `each` with every point as it is solved (for progress); when
/// `each` returns `false`, the points so far are returned (a caller's interruption).
pub fn frontier_each(
    model: &Model,
    scenario: &Scenario,
    evaluator: &mut dyn Evaluator,
    budgets: &[f64],
    settings: &Settings,
    warm: bool,
    each: &mut dyn FnMut(&FrontierPoint) -> bool,
) -> Result<Vec<FrontierPoint>> {
    let mut points: Vec<FrontierPoint> = Vec::with_capacity(budgets.len());
    // Each budget's problem shares the posterior's tables with the one before (a
    // posterior still in its file is read once).
    let mut last: Option<Problem> = None;
    for (k, &budget) in budgets.iter().enumerate() {
        let mut sc = scenario.clone();
        sc.total_budget = budget;
        let built = match &last {
            Some(like) => Problem::new_like(model, &sc, like),
            None => Problem::new(model, &sc),
        };
        let problem = built.map_err(|e| match e {
            Error::InvalidValue {
                field,
                value,
                expected,
                ..
            } if field == "total_budget" => Error::InvalidValue {
                context: "frontier".into(),
                field: format!("budgets[{k}]"),
                value,
                expected,
            },
            other => other,
        })?;
        let mut settings = settings.clone();
        if warm {
            settings.start = warm_start(&points, budget);
        }
        // A plan over time: solved per group of periods, reported per cell (each
        // cell's spend per period averaged over the window), its responses those of
        // the spend in each period.
        let (solution, responses) = if problem.plan.is_some() {
            let plan = crate::plan::solve(&problem, &mut *evaluator, settings)?;
            let mut r = TimeVaryingEvaluation::default();
            if !plan.spend.is_empty() {
                evaluator.evaluate_time_varying(&plan.spend, DrawWeights::Uniform, &mut r)?;
            }
            (plan.per_cell(problem.num_periods), r.responses)
        } else {
            let solution = Solver::new(&problem, &mut *evaluator, settings)?.solve()?;
            let mut out = Evaluation::new(problem.num_draws(), problem.num_cells());
            if !solution.allocation.is_empty() {
                evaluator.evaluate(&solution.allocation, DrawWeights::Uniform, &mut out)?;
            }
            (solution, out.responses)
        };
        let response_quantiles = if solution.allocation.is_empty() {
            [f64::NAN; 3]
        } else {
            QUANTILES.map(|q| quantile(&responses, q))
        };
        let marginal_return = (solution.status == Status::Solved)
            .then(|| {
                solution
                    .multipliers
                    .iter()
                    .find(|m| m.constraint == "budget")
                    .map(|m| m.value)
            })
            .flatten();
        let point = FrontierPoint {
            budget,
            solution,
            response_quantiles,
            marginal_return,
        };
        let go_on = each(&point);
        points.push(point);
        last = Some(problem);
        if !go_on {
            break;
        }
    }
    Ok(points)
}
