//! What an allocation is worth: the utility, the response's distribution over draws,
//! and each cell's budget, mean contribution, ROI and marginal ROI, in JSON and as a
//! table.
//!
//! Units: `budget` is per period (PyMC-Marketing's convention) and `budget_window`
//! the money spent over the N periods (N × budget). Contributions are totals over the
//! window and its carry-over tail. ROI = mean contribution / budget_window; marginal
//! ROI = ∂E\[R\]/∂budget_window = (∂E\[R\]/∂x_c) / N: the response to one more unit of
//! money spread over the window like the rest.

use crate::error::{Error, Result};
use crate::eval::{DrawWeights, Evaluation, Evaluator};
use crate::problem::Problem;
use crate::solution::{Solution, Status};
use crate::utility::quantile;
use serde_json::{Map, Value, json};
use std::fmt::Write;

/// One cell's line.
#[derive(Clone, Debug, PartialEq)]
pub struct CellReport {
    /// `(dim, coordinate)` pairs, `channel` last.
    pub coords: Vec<(String, String)>,
    /// The cell's label.
    pub label: String,
    /// x_c, per period.
    pub budget: f64,
    /// N x_c, over the window.
    pub budget_window: f64,
    /// E\[r_c\]: mean contribution over draws (window plus carry-over).
    pub mean_contribution: f64,
    /// E\[r_c\] / (N x_c); `None` when the cell spends nothing.
    pub roi: Option<f64>,
    /// (∂E\[R\]/∂x_c) / N.
    pub marginal_roi: f64,
}

/// An allocation's evaluation.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 2, geos: 1, draws: 30 }, 3);
/// let problem = Problem::new(&model, &scenario).unwrap();
/// let mut ev = CpuEvaluator::new(&problem).unwrap();
/// let report = report::Report::new(&problem, &mut ev, &problem.uniform_allocation()).unwrap();
/// assert_eq!(report.cells.len(), 2);
/// assert!(report.response_quantiles[0] <= report.response_quantiles[2]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The utility's name.
    pub utility_kind: String,
    /// a, where the objective is a · spend with a < 0 (`minimize spend`): the
    /// multipliers are then marginal costs.
    pub least_spend: Option<f64>,
    /// U at the allocation.
    pub utility: f64,
    /// E\[R\] over draws.
    pub mean_response: f64,
    /// The 5%, 50% and 95% quantiles of R over draws.
    pub response_quantiles: [f64; 3],
    /// N.
    pub num_periods: usize,
    /// B, per period.
    pub total_budget: f64,
    /// Σ_c x_c, per period.
    pub allocated: f64,
    /// Per cell.
    pub cells: Vec<CellReport>,
    /// Draws.
    pub num_draws: usize,
    /// The evaluator that computed it.
    pub backend: String,
    /// With carry-in (the scenario's `history`): the mean response of the spend
    /// before the window alone (at zero spend in the window), part of
    /// `mean_response`.
    pub carry_in_response: Option<f64>,
}

/// The quantile levels of [`Report::response_quantiles`].
pub const QUANTILES: [f64; 3] = [0.05, 0.5, 0.95];

impl Report {
    /// Evaluates `x` (per period, over the optimized cells) with `ev`.
    pub fn new(problem: &Problem, ev: &mut dyn Evaluator, x: &[f64]) -> Result<Self> {
        Self::with_responses(problem, ev, x).map(|(report, _)| report)
    }

    /// [`Report::new`], and every draw's response R_d from the same evaluation.
    pub fn with_responses(
        problem: &Problem,
        ev: &mut dyn Evaluator,
        x: &[f64],
    ) -> Result<(Self, Vec<f64>)> {
        // With carry-in, the response to no spend at all (the carry-in's own) in the
        // same pass.
        let mut both = vec![Evaluation::default(); 2];
        if problem.history.is_empty() {
            ev.evaluate(x, DrawWeights::Uniform, &mut both[0])?;
        } else {
            let zero = vec![0.0; x.len()];
            ev.evaluate_many(&[x, &zero], DrawWeights::Uniform, &mut both)?;
        }
        let carried = both.pop().map(|e| e.responses).unwrap_or_default();
        let out = both.pop().unwrap_or_default();
        // A report never shows a non-finite response: an allocation whose responses
        // overflow is refused, naming the largest spend. (A marginal return is infinite
        // only where a power-law curve has no spend, and says so.)
        let finite = out
            .responses
            .iter()
            .chain(&out.contributions)
            .all(|v| v.is_finite())
            && !out.gradient.iter().any(|v| v.is_nan());
        if !finite {
            let (c, v) = x
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or((0, 0.0), |(c, v)| (c, *v));
            let label = problem.cells.get(c).map_or("", |cell| cell.label.as_str());
            return Err(Error::invalid(
                "allocation",
                format!("budget of {label}"),
                v,
                "spends whose responses stay finite",
            ));
        }
        // A utility of the cells' own responses (the diversification ratio) from
        // their moments at x.
        let utility = if problem.utility.needs_cell_moments() {
            let shares = crate::utility::budget_shares(x);
            let mut moments = crate::eval::CellMoments::default();
            ev.cell_moments(x, &shares, &mut moments)?;
            problem
                .utility
                .value_with(&out.responses, x, Some(&moments))
        } else {
            problem.utility.value(&out.responses, x)
        };
        let n_periods = problem.num_periods as f64;
        let cells = problem
            .cells
            .iter()
            .enumerate()
            .map(|(c, cell)| CellReport {
                coords: cell.coords.clone(),
                label: cell.label.clone(),
                budget: x[c],
                budget_window: n_periods * x[c],
                mean_contribution: out.contributions[c],
                roi: crate::solution::roi(out.contributions[c], x[c], problem.num_periods),
                marginal_roi: crate::solution::marginal_roi(out.gradient[c], problem.num_periods),
            })
            .collect();
        let report = Report {
            utility_kind: problem.utility.name(),
            least_spend: problem
                .utility
                .linear_form()
                .filter(|(k, a)| *k == 0.0 && *a < 0.0)
                .map(|(_, a)| a),
            utility,
            mean_response: out.responses.iter().sum::<f64>() / out.responses.len() as f64,
            response_quantiles: QUANTILES.map(|q| quantile(&out.responses, q)),
            num_periods: problem.num_periods,
            total_budget: problem.total_budget,
            allocated: x.iter().sum(),
            cells,
            num_draws: problem.num_draws(),
            backend: ev.describe(),
            carry_in_response: (!problem.history.is_empty())
                .then(|| carried.iter().sum::<f64>() / carried.len() as f64),
        };
        Ok((report, out.responses))
    }

    /// The JSON form: `{"utility", "mean_response", "response_quantiles": {"0.05",
    /// "0.5", "0.95"}, "cells": [{"channel", <dim>…, "budget", "budget_window",
    /// "mean_contribution", "roi", "marginal_roi"}], …}` with the units spelled out;
    /// an infinite marginal ROI (a power-law curve at 0) as the string `"inf"`.
    pub fn to_json(&self) -> Value {
        let cells: Vec<Value> = self
            .cells
            .iter()
            .map(|c| {
                let mut m = Map::new();
                for (d, v) in c.coords.iter().rev() {
                    m.insert(d.clone(), json!(v));
                }
                m.insert("budget".into(), json!(c.budget));
                m.insert("budget_window".into(), json!(c.budget_window));
                m.insert("mean_contribution".into(), json!(c.mean_contribution));
                m.insert("roi".into(), json!(c.roi));
                m.insert("marginal_roi".into(), number(c.marginal_roi));
                Value::Object(m)
            })
            .collect();
        let mut q = Map::new();
        for (level, v) in QUANTILES.iter().zip(self.response_quantiles) {
            q.insert(level.to_string(), json!(v));
        }
        json!({
            "utility_kind": self.utility_kind,
            "utility": self.utility,
            "mean_response": self.mean_response,
            "response_quantiles": q,
            "num_periods": self.num_periods,
            "num_draws": self.num_draws,
            "total_budget": self.total_budget,
            "total_budget_window": self.total_budget * self.num_periods as f64,
            "allocated": self.allocated,
            "allocated_window": self.allocated * self.num_periods as f64,
            "units": {
                "budget": "per period (PyMC-Marketing's convention)",
                "budget_window": "over the num_periods window: num_periods × budget",
                "mean_contribution": "mean over draws of the response summed over the window and its l_max carry-over periods",
                "roi": "mean_contribution / budget_window",
                "marginal_roi": "d mean_response / d budget_window",
            },
            "backend": self.backend,
            "carry_in_response": self.carry_in_response,
            "cells": cells,
        })
    }

    /// A readable table: one line a cell, then the totals.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let width = self
            .cells
            .iter()
            .map(|c| c.label.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let n = self.num_periods as f64;
        let _ = writeln!(
            s,
            "{:width$}  {:>12}  {:>14}  {:>7}  {:>14}  {:>9}  {:>9}",
            "cell", "budget/period", "budget/window", "share", "contribution", "ROI", "mROI"
        );
        for c in &self.cells {
            let share = if self.allocated > 0.0 {
                c.budget / self.allocated
            } else {
                0.0
            };
            let roi = c.roi.map_or_else(|| "-".to_string(), |r| format!("{r:.4}"));
            let _ = writeln!(
                s,
                "{:width$}  {:>12.4}  {:>14.2}  {:>6.2}%  {:>14.4}  {:>9}  {:>9.4}",
                c.label,
                c.budget,
                c.budget_window,
                100.0 * share,
                c.mean_contribution,
                roi,
                c.marginal_roi
            );
        }
        let _ = writeln!(
            s,
            "{:width$}  {:>12.4}  {:>14.2}  {:>7}  {:>14.4}",
            "total",
            self.allocated,
            self.allocated * n,
            "",
            self.cells.iter().map(|c| c.mean_contribution).sum::<f64>()
        );
        // The utility only where it is not the mean response itself.
        let utility = if self.utility_kind == "mean" {
            String::new()
        } else {
            format!("utility ({}) {:.6}; ", self.utility_kind, self.utility)
        };
        let _ = writeln!(
            s,
            "budget {} per period = {} over {} periods; {} draws; {utility}mean response {:.6} (90% of draws between {:.4} and {:.4}, median {:.4})",
            self.total_budget,
            self.total_budget * n,
            self.num_periods,
            self.num_draws,
            self.mean_response,
            self.response_quantiles[0],
            self.response_quantiles[2],
            self.response_quantiles[1]
        );
        if let Some(c) = self.carry_in_response {
            let _ = writeln!(
                s,
                "of which carried in from the spend before the window (its adstocked tail, at zero spend in the window): {c:.6}"
            );
        }
        s
    }
}

/// A number for JSON, which has no infinities: those (a steep cell's marginal return
/// at 0, the multiplier of a constraint holding one there) and NaN (no multipliers
/// computed) are written as the strings `"inf"`, `"-inf"` and `"nan"`.
fn number(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("nan")
    } else if v > 0.0 {
        json!("inf")
    } else {
        json!("-inf")
    }
}

/// The JSON of an optimization: the optimum's [`Report::to_json`] (absent when
/// infeasible) plus `status`, `message`, `start`, `multipliers`, `iterations`,
/// `evaluations`, `backend`, `seconds`, `kkt_residual`, `violation` and, when
/// infeasible, `conflicting`. Infinite multipliers are written as `"inf"`/`"-inf"`.
pub fn solution_json(report: Option<&Report>, solution: &Solution) -> Value {
    let mut v = report.map_or_else(|| json!({}), Report::to_json);
    let o = v.as_object_mut().expect("an object");
    o.insert("status".into(), json!(solution.status.name()));
    o.insert("message".into(), json!(solution.message));
    if solution.status != Status::Infeasible {
        o.insert(
            "start".into(),
            json!({"utility": solution.start_utility, "mean_response": solution.start_mean_response}),
        );
    }
    let multipliers: Vec<Value> = solution
        .multipliers
        .iter()
        .map(|m| json!({"constraint": m.constraint, "value": number(m.value)}))
        .collect();
    o.insert("multipliers".into(), Value::Array(multipliers));
    o.insert(
        "multipliers_units".into(),
        json!("d utility / d right-hand side, per period (the budget's: per extra unit of budget per period)"),
    );
    o.insert("iterations".into(), json!(solution.iterations));
    o.insert("evaluations".into(), json!(solution.evaluations));
    o.insert("backend".into(), json!(solution.backend));
    o.insert("seconds".into(), json!(solution.seconds));
    o.insert("kkt_residual".into(), number(solution.kkt_residual));
    o.insert("violation".into(), json!(solution.violation));
    if !solution.conflicting.is_empty() {
        o.insert("conflicting".into(), json!(solution.conflicting));
    }
    v
}

/// The readable summary of an optimization: the status, start vs optimum, the table,
/// and the multipliers of the budget and of the linear/nonlinear constraints.
pub fn solution_table(report: Option<&Report>, solution: &Solution, detail: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "status: {}", plain_status(solution, detail));
    let Some(report) = report else {
        return s;
    };
    s.push_str(&report.table());
    let pct = |a: f64, b: f64| 100.0 * (b - a) / a.abs().max(f64::MIN_POSITIVE);
    if report.utility_kind == "mean" {
        let _ = writeln!(
            s,
            "mean response: start {:.6} -> optimum {:.6} ({:+.4}%)",
            solution.start_mean_response,
            solution.mean_response,
            pct(solution.start_mean_response, solution.mean_response)
        );
    } else {
        let _ = writeln!(
            s,
            "utility ({}): start {:.6} -> optimum {:.6} ({:+.4}%); mean response {:.6} -> {:.6}",
            report.utility_kind,
            solution.start_utility,
            solution.utility,
            pct(solution.start_utility, solution.utility),
            solution.start_mean_response,
            solution.mean_response
        );
    }
    // In the unit of mROI: the response one more unit spent over the window brings,
    // where the constraint's right-hand side (per period) moves by 1/N.
    if let Some(a) = report.least_spend {
        // U = a Σx: λ = ∂U*/∂level = a ∂S*/∂level, so one more unit of a binding
        // outcome's level costs λ/a per period, N times that over the window.
        let n = report.num_periods as f64;
        let _ = writeln!(
            s,
            "least spend: {:.4} per period, {:.2} over the window",
            report.allocated,
            report.allocated * n
        );
        for m in solution.multipliers.iter().filter(|m| {
            !m.constraint.contains(" bound of ") && m.constraint != "budget" && m.value != 0.0
        }) {
            let _ = writeln!(
                s,
                "marginal cost of one more unit of `{}`: {:.6} spent over the window ({:.6} per period)",
                m.constraint,
                m.value * n / a,
                m.value / a
            );
        }
    }
    if report.least_spend.is_none() {
        binding_lines(&mut s, binding_worth(solution, report.num_periods));
    }
    closing_line(&mut s, solution);
    s
}

/// The constraints that bind and what one more unit of each is worth, a line each.
fn binding_lines(s: &mut String, worth: Vec<(String, f64)>) {
    if !worth.is_empty() {
        let _ = writeln!(
            s,
            "what one more unit is worth, per unit over the window (as mROI), where a constraint binds:"
        );
        for (constraint, value) in worth {
            let _ = writeln!(s, "  {constraint}: {value:.4}");
        }
    }
}

/// Iterations, evaluations, time and backend.
fn closing_line(s: &mut String, solution: &Solution) {
    let _ = writeln!(
        s,
        "{} iterations, {} evaluations, {:.3} s on {}",
        solution.iterations, solution.evaluations, solution.seconds, solution.backend
    );
}

/// The constraints that bind (bounds left out) and what one more unit of each is
/// worth, in mROI's unit: the mean response that one more unit of the constraint's
/// right-hand side spent over the window brings (the multiplier / N).
pub fn binding_worth(solution: &Solution, periods: usize) -> Vec<(String, f64)> {
    solution
        .multipliers
        .iter()
        .filter(|m| !m.constraint.contains(" bound of ") && m.value != 0.0)
        .map(|m| {
            (
                m.constraint.clone(),
                crate::solution::marginal_roi(m.value, periods),
            )
        })
        .collect()
}

/// The status in plain words; the solver's own account with `detail` (and always
/// where it explains why there is no optimum).
pub fn plain_status(solution: &Solution, detail: bool) -> String {
    let (words, explain) = match solution.status {
        Status::Solved => ("optimal", false),
        Status::AlmostSolved => ("nearly optimal", true),
        Status::Infeasible => ("infeasible", true),
        Status::MaxIterations => ("stopped at the iteration limit, not optimal", true),
        Status::MaxTime => ("stopped at the time limit, not optimal", true),
        Status::LineSearchFailed | Status::NumericalError => ("no optimum found", true),
        Status::Stopped => ("stopped by the caller", false),
    };
    if explain || detail {
        format!("{words}: {}", solution.message)
    } else {
        words.to_string()
    }
}

/// The frontier as JSON, with each point's allocation by cell.
pub fn frontier_json(points: &[crate::FrontierPoint], problem: &Problem) -> Value {
    let n = problem.num_periods as f64;
    let list: Vec<Value> = points
        .iter()
        .map(|p| {
            let cells: Vec<Value> = problem
                .cells
                .iter()
                .zip(&p.solution.allocation)
                .map(|(c, x)| json!({"cell": c.label, "budget": x, "budget_window": x * n}))
                .collect();
            json!({
                "budget": p.budget,
                "budget_window": p.budget * n,
                "status": p.solution.status.name(),
                "mean_response": p.solution.mean_response,
                "response_quantiles": {"0.05": p.response_quantiles[0], "0.5": p.response_quantiles[1], "0.95": p.response_quantiles[2]},
                "marginal_return": p.marginal_return.map(|m| crate::solution::marginal_roi(m, problem.num_periods)),
                "utility": p.solution.utility,
                "cells": cells,
            })
        })
        .collect();
    json!({
        "units": {"budget": "per period", "budget_window": "over the window", "marginal_return": "d mean_response / d budget_window"},
        "num_periods": problem.num_periods,
        "points": list,
    })
}

/// The JSON of a plan over time: [`solution_json`]'s fields (status, message,
/// multipliers named per cell and group, iterations, …) and `utility`,
/// `mean_response`, `num_periods`, `groups` (1-based first and last period of each),
/// `cells`: `{<dim>…, "budget" (per period, averaged over the window),
/// "budget_window", "spend_per_period" (N values: the spend in each period),
/// "mean_contribution", "roi", "marginal_roi"}`, with `units`.
pub fn plan_json(problem: &Problem, plan: &crate::plan::PlanSolution) -> Value {
    let mut v = solution_json(None, &plan.solution);
    let o = v.as_object_mut().expect("an object");
    let np = problem.num_periods;
    o.insert("utility".into(), json!(plan.solution.utility));
    o.insert("mean_response".into(), json!(plan.solution.mean_response));
    o.insert("num_periods".into(), json!(np));
    o.insert(
        "groups".into(),
        json!(
            plan.groups
                .iter()
                .map(|r| [r.start + 1, r.end])
                .collect::<Vec<_>>()
        ),
    );
    if !plan.spend.is_empty() {
        let per_cell = plan.per_cell(np);
        let cells: Vec<Value> = problem
            .cells
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                let mut m = Map::new();
                for (d, v) in cell.coords.iter().rev() {
                    m.insert(d.clone(), json!(v));
                }
                let average = per_cell.allocation[c];
                m.insert("budget".into(), json!(average));
                m.insert("budget_window".into(), json!(average * np as f64));
                m.insert(
                    "spend_per_period".into(),
                    json!(plan.spend[c * np..(c + 1) * np]),
                );
                m.insert(
                    "mean_contribution".into(),
                    json!(per_cell.mean_contribution[c]),
                );
                m.insert("roi".into(), json!(per_cell.roi[c]));
                m.insert("marginal_roi".into(), number(per_cell.marginal_roi[c]));
                Value::Object(m)
            })
            .collect();
        o.insert("cells".into(), Value::Array(cells));
    }
    o.insert(
        "units".into(),
        json!({
            "budget": "money per period, averaged over the window",
            "budget_window": "money over the window (N periods)",
            "spend_per_period": "money spent in each period, periods 1..N",
            "mean_contribution": "target units over the window and its carry-over",
            "roi": "mean_contribution / budget_window",
            "marginal_roi": "d mean response / d one more unit over the window, spent in the plan's proportions",
        }),
    );
    v
}

/// The readable summary of a plan over time: the status, each cell's spend per
/// period in each group of periods, averaged and over the window, its contribution
/// and ROI; then the utility and the binding constraints.
pub fn plan_table(problem: &Problem, plan: &crate::plan::PlanSolution, detail: bool) -> String {
    let mut s = String::new();
    let solution = &plan.solution;
    let _ = writeln!(s, "status: {}", plain_status(solution, detail));
    if plan.spend.is_empty() {
        return s;
    }
    let np = problem.num_periods;
    let shown = plan.groups.len().min(12);
    let _ = write!(s, "{:<14}", "cell");
    for r in &plan.groups[..shown] {
        let _ = write!(s, " {:>11}", format!("p{}-{}", r.start + 1, r.end));
    }
    let _ = writeln!(
        s,
        " {:>13} {:>13} {:>14} {:>8}",
        "avg/period", "window", "contribution", "ROI"
    );
    let per_cell = plan.per_cell(np);
    for (c, cell) in problem.cells.iter().enumerate() {
        let _ = write!(s, "{:<14}", cell.label);
        for r in &plan.groups[..shown] {
            let _ = write!(s, " {:>11.4}", plan.spend[c * np + r.start]);
        }
        let average = per_cell.allocation[c];
        let _ = writeln!(
            s,
            " {:>13.4} {:>13.2} {:>14.4} {:>8}",
            average,
            average * np as f64,
            per_cell.mean_contribution[c],
            per_cell.roi[c].map_or("-".to_string(), |r| format!("{r:.4}"))
        );
    }
    if shown < plan.groups.len() {
        let _ = writeln!(
            s,
            "(the first {shown} of {} groups of periods shown; every period in --out)",
            plan.groups.len()
        );
    }
    let _ = writeln!(
        s,
        "spend per period in each group of periods (money per period); utility ({}) start {:.6} -> optimum {:.6}; mean response {:.6}",
        problem.utility.name(),
        solution.start_utility,
        solution.utility,
        solution.mean_response
    );
    // A plan has many rows (flighting: two per cell and step): those whose
    // multiplier is rounding (below 1e-9 of the largest) are left out.
    let worth = binding_worth(solution, np);
    let largest = worth.iter().fold(0.0f64, |m, (_, v)| m.max(v.abs()));
    binding_lines(
        &mut s,
        worth
            .into_iter()
            .filter(|(_, v)| v.abs() > 1e-9 * largest)
            .collect(),
    );
    closing_line(&mut s, solution);
    s
}
