//! The set-up of a run: scaled variables, the rows, the steep cells, the start
//! projected onto the linear rows, the nonlinear rows' scales, the objective's scale.

use super::hessian::Model;
use super::point::{Objective, clamp_scaled};
use super::project::project;
use super::qp::{Cells, Qp};
use super::rows::{NonlinearRow, Origin, Row, linear_rows};
use super::run::{Run, State};
use super::steep::{raised_rows, steep_cells};
use super::termination::Stall;
use super::{Settings, finish};
use crate::constraint::{ConstraintFunction, NonlinearConstraint, Sense};
use crate::error::{Error, Result};
use crate::eval::{Evaluation, Evaluator};
use crate::problem::Problem;
use crate::solution::Solution;
use std::time::Instant;

/// A run ready to iterate, or the rows' infeasibility found by the projection (once
/// a run, its size no matter).
#[allow(clippy::large_enum_variant)]
pub(super) enum Begin<'r> {
    Ready(Run<'r>, State),
    Infeasible(Box<Solution>),
}

/// The start projected onto the linear rows, with the rows it holds (the steep
/// cells' lower bounds raised where that leaves a point), or the rows that admit none.
struct Projected {
    y: Vec<f64>,
    rows: Vec<Row>,
    lower: Vec<f64>,
    pinned: Vec<bool>,
    raised: bool,
}

impl<'r> Run<'r> {
    /// Sets up a run from `start` (default: the problem's start, else the budget
    /// spread evenly).
    pub(super) fn begin(
        problem: &'r Problem,
        evaluator: &'r mut dyn Evaluator,
        nonlinear: &'r mut [NonlinearConstraint],
        settings: &'r Settings,
        start: Option<&[f64]>,
        started: Instant,
    ) -> Result<Begin<'r>> {
        let p = problem;
        let tuning = &settings.tuning;
        let n = p.num_cells();
        // y = x/s with s the total budget, or the largest upper bound when it is 0.
        let scale = if p.total_budget > 0.0 {
            p.total_budget
        } else {
            p.upper.iter().copied().fold(0.0, f64::max).max(1.0)
        };
        let upper: Vec<f64> = p.upper.iter().map(|v| v / scale).collect();
        let mut out = Evaluation::new(p.num_draws(), n);
        let (steep, probed) = steep_cells(evaluator, p, &mut out)?;
        let x0 = match start.or(p.start.as_deref()) {
            Some(x) => {
                p.check_allocation(x, n)
                    .map_err(|e| e.recontext("allocation", "start"))?;
                x.to_vec()
            }
            None => p.uniform_allocation(),
        };
        let y0: Vec<f64> = x0.iter().map(|v| v / scale).collect();
        let projected = match projected(p, scale, &steep, &y0, settings)? {
            Ok(projected) => projected,
            Err(conflicting) => {
                let solution = finish::infeasible(
                    conflicting,
                    started,
                    scale,
                    evaluator.describe(),
                    settings.verbose,
                );
                return Ok(Begin::Infeasible(Box::new(solution)));
            }
        };
        let Projected {
            y: y0,
            rows,
            lower,
            pinned,
            raised,
        } = projected;
        let x_start: Vec<f64> = clamp_scaled(&y0, &lower, &upper)
            .iter()
            .map(|v| v * scale)
            .collect();
        let (nl_rows, outcome_calls) = nonlinear_rows(nonlinear, &x_start, evaluator)?;
        let curvature = !nonlinear.is_empty() && nonlinear.iter().all(|c| c.has_curvature());
        let tail_coupling = super::hessian::exact_tail(
            settings.hessian,
            nl_rows.len(),
            curvature,
            p.utility.has_tail_curvature(),
        );
        let precision = evaluator.precision();
        let mut objective = Objective {
            evaluator,
            nonlinear,
            nl_rows,
            problem: p,
            scale,
            f0: 1.0,
            lower,
            upper,
            evaluations: usize::from(probed) + outcome_calls,
            out,
            weights: vec![0.0; p.num_draws()],
            ngrad: vec![0.0; n],
            curvature,
            tail_coupling,
            infinite_slope: tuning.infinite_slope,
            shift: 0.0,
            kernel: Default::default(),
        };
        let start = objective.point(&y0)?;
        if !start.utility.is_finite() {
            return Err(Error::invalid(
                "problem",
                "utility at the start",
                start.utility,
                "a finite number: the responses overflow (target_scale, channel_scale or the posterior's parameters are too large)",
            ));
        }
        // How few draws carry U's weights at the start (1 for the mean): the noise of
        // an f32 evaluator's ∇U grows with it, and gtol's floor with it.
        let concentration = if p.utility.linear_form().is_some() || p.utility.needs_cell_moments() {
            1.0
        } else {
            let x: Vec<f64> = start.y.iter().map(|v| v * scale).collect();
            let mut w = vec![0.0; p.num_draws()];
            let mut g = vec![0.0; n];
            p.utility
                .smooth(&objective.out.responses, &x, &mut w, &mut g);
            weight_concentration(&w)
        };
        objective.f0 = objective_scale(&start, scale, tuning.worthless_start);
        let mut point = objective.rescale(start);
        objective.complete_coupling(&mut point)?;
        // Linear in R and x (the mean, the spend): the evaluator's diagonal is exact.
        let constant_weights = p.utility.linear_form().is_some();
        let model = Model::new(
            settings.hessian,
            objective.nl_rows.len(),
            super::hessian::UtilityCurvature {
                constant_weights,
                structured: p.utility.structured_curvature(),
                smooth: !p.utility.quantile_based(),
                tail: p.utility.has_tail_curvature(),
                ratio_constraint: objective.nonlinear.iter().any(|c| {
                    matches!(&c.function, ConstraintFunction::Outcome(u) if u.needs_cell_moments())
                }),
            },
            &point,
            tuning,
        )?;
        let cells = Cells {
            pinned: &pinned,
            steep: &steep,
            raised,
        };
        let qp = Qp::new(&rows, &objective.nl_rows, model.shape(), cells, tuning);
        let concave = model.is_exact()
            && p.is_concave()
            && p.utility.linear_form().is_some_and(|(k, _)| k >= 0.0);
        let run = Run {
            problem: p,
            settings,
            tuning,
            objective,
            rows,
            pinned,
            qp,
            gtol: settings
                .gtol
                .max(tuning.precision_gtol * precision * concentration),
            precision,
            concentration,
            concave,
            started,
        };
        let state = State {
            start: point.clone(),
            point,
            model,
            nu: 0.0,
            radius: f64::INFINITY,
            iterations: 0,
            trace: vec![],
            stall: Stall::new(&tuning.stall),
        };
        Ok(Begin::Ready(run, state))
    }
}

/// The start projected onto the linear rows: first with the steep cells' lower bounds
/// raised (where the constraints leave room), pinning the cells they hold at their
/// bound; where the raised rows admit no point, or there are no steep cells, onto the
/// rows as they are. `Err`: the rows of the infeasibility certificate.
fn projected(
    p: &Problem,
    scale: f64,
    steep: &[bool],
    y0: &[f64],
    settings: &Settings,
) -> Result<std::result::Result<Projected, Vec<String>>> {
    let tuning = &settings.tuning;
    let n = p.num_cells();
    let mut lower: Vec<f64> = p.lower.iter().map(|v| v / scale).collect();
    let rows = linear_rows(p, scale);
    let (shifted_rows, mut pinned) = raised_rows(&rows, steep, &lower, tuning);
    if let Some(raised) = shifted_rows
        && let Ok(mut y) = project(p, &raised, y0, n, tuning)?
    {
        for row in &raised {
            if let Origin::Lower(c) = row.origin {
                lower[c] = -row.rhs;
                if pinned[c] {
                    y[c] = lower[c];
                }
            }
        }
        return Ok(Ok(Projected {
            y,
            rows: raised,
            lower,
            pinned,
            raised: true,
        }));
    }
    // Not raised: nothing pinned either.
    pinned.fill(false);
    Ok(project(p, &rows, y0, n, tuning)?.map(|y| Projected {
        y,
        rows,
        lower,
        pinned,
        raised: false,
    }))
}

/// The nonlinear rows' scaled form, their scales from their value at the start; and
/// how many evaluator calls the outcome constraints took.
fn nonlinear_rows(
    nonlinear: &mut [NonlinearConstraint],
    x_start: &[f64],
    evaluator: &mut dyn Evaluator,
) -> Result<(Vec<NonlinearRow>, usize)> {
    let mut gbuf = vec![0.0; x_start.len()];
    let mut responses: Option<Vec<f64>> = None;
    let mut calls = 0;
    let mut rows = Vec::with_capacity(nonlinear.len());
    for c in nonlinear.iter_mut() {
        let v = match &mut c.function {
            ConstraintFunction::Code { value, .. } => value(x_start, &mut gbuf)?,
            ConstraintFunction::Outcome(u) => {
                if responses.is_none() {
                    let mut r = vec![0.0; evaluator.num_draws()];
                    evaluator.responses(x_start, &mut r)?;
                    calls += 1;
                    responses = Some(r);
                }
                let r = responses.as_deref().unwrap_or_default();
                let (v, _, taken) = super::point::outcome(evaluator, u, r, x_start, &mut gbuf)?;
                calls += taken;
                v
            }
        };
        rows.push(NonlinearRow {
            sign: if c.sense == Sense::GreaterEqual {
                -1.0
            } else {
                1.0
            },
            equality: c.sense == Sense::Equal,
            scale: c.rhs.abs().max(v.abs()).max(1e-12),
        });
    }
    Ok((rows, calls))
}

/// The objective's scale: |U₀|, unless the start is worth (almost) nothing, as at a
/// zero start; then the size of the start's marginal returns times s.
fn objective_scale(start: &super::point::Point, scale: f64, worthless: f64) -> f64 {
    let slope = scale
        * start
            .grad_u
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
    if start.utility.abs() >= worthless * slope && start.utility != 0.0 {
        start.utility.abs()
    } else if slope > 0.0 {
        slope
    } else {
        1.0
    }
}

/// √(D Σ_d u_d²) / |Σ_d u_d| of the draw weights u_d = ∂U/∂R_d (at least 1; 1 where the
/// point took none, as the mean's passes): the square root of how many times fewer
/// draws carry U than carry the mean (1/√α for a CVaR at α), by which the rounding
/// noise of ∇U = Σ_d u_d ∇R_d outgrows the mean's.
pub(super) fn weight_concentration(weights: &[f64]) -> f64 {
    let (s1, s2) = weights
        .iter()
        .fold((0.0, 0.0), |(a, b), w| (a + w, b + w * w));
    let c = (weights.len() as f64 * s2).sqrt() / s1.abs();
    if c.is_finite() { c.max(1.0) } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::weight_concentration;

    /// 1 for equal weights (the mean), 1/√α for weights on a fraction α of the draws
    /// (a CVaR's), 1 where there are none.
    #[test]
    fn weight_concentration_counts_the_draws_that_carry_the_utility() {
        let d = 1000;
        assert!((weight_concentration(&vec![1.0 / d as f64; d]) - 1.0).abs() < 1e-12);
        let tail: Vec<f64> = (0..d).map(|i| if i < 100 { 0.01 } else { 0.0 }).collect();
        assert!((weight_concentration(&tail) - 10f64.sqrt()).abs() < 1e-12);
        assert_eq!(weight_concentration(&vec![0.0; d]), 1.0);
        assert_eq!(weight_concentration(&[]), 1.0);
    }
}
