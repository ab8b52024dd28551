//! The finish of a run: the multipliers at the final iterate, the polish, the
//! multipliers and KKT residual in user units, the final status, and the solution.

use super::kkt::{
    dependent_nonlinear, kkt_user, multiplier_list, nl_violation, rebalance_bounds, user_lambdas,
    violation_scaled,
};
use super::point::Point;
use super::polish::polish;
use super::qp::{QpOutcome, QpResult};
use super::rows::Origin;
use super::run::{Run, State};
use super::termination::Ending;
use crate::error::Result;
use crate::eval::{DrawWeights, Evaluation};
use crate::solution::{Multiplier, Solution, Status, marginal_roi, roi};
use std::time::Instant;

impl Run<'_> {
    /// The solution from where the iterations ended.
    pub(super) fn finish(mut self, state: State, ending: Ending) -> Result<Solution> {
        let Ending {
            status,
            mut message,
            qp,
        } = ending;
        let result = match qp {
            Some(r) => Some(r),
            None => self.final_qp(&state)?,
        };
        let (x, y, point) = self.polished(&state)?;
        let held: Vec<&str> = (0..x.len())
            .filter(|&c| self.pinned[c])
            .map(|c| self.problem.cells[c].label.as_str())
            .collect();
        if !held.is_empty() {
            message.push_str(&format!(
                "; held at their lower bound by the constraints, where their marginal return is infinite (left out of the KKT residual; the active constraints on them have infinite multipliers): {}",
                held.join(", ")
            ));
        }
        let (multipliers, kkt_residual) = match &result {
            Some(r) => self.reported_multipliers(r, &x, &y, &point),
            None => (vec![], f64::NAN),
        };
        let violation = violation_scaled(&self.rows, &point)
            .max(nl_violation(self.nl_rows(), &point.nl_values));
        let (status, message) = self.settle(status, message, kkt_residual, violation);
        if let Some(violated) = self.violated_nonlinear(status, &point) {
            return Ok(self.nonlinear_infeasible(violated, state, violation));
        }
        let message = self.qualification_note(status, message, &point);
        // A non-finite number is never part of an answer that claims an allocation.
        let finite = point.utility.is_finite()
            && x.iter().all(|v| v.is_finite())
            && !multipliers.iter().any(|m| m.value.is_nan());
        let claims = matches!(status, Status::Solved | Status::AlmostSolved);
        let (status, message) = if finite || !claims {
            (status, message)
        } else {
            (
                Status::NumericalError,
                format!("{message}; but the utility, the allocation or a multiplier is not finite"),
            )
        };
        self.solution(
            state,
            status,
            message,
            x,
            point,
            multipliers,
            kkt_residual,
            violation,
        )
    }

    /// The QP at the final iterate, for its multipliers, where the iterations ended
    /// after a step.
    fn final_qp(&mut self, state: &State) -> Result<Option<QpResult>> {
        let hessian = state.model.hessian(&state.point);
        let outcome = self.qp.solve(
            &self.rows,
            &self.objective.nl_rows,
            &state.point,
            &hessian,
            f64::INFINITY,
        )?;
        Ok(match outcome {
            QpOutcome::Solved(r) => Some(r),
            QpOutcome::Failed(_) => None,
        })
    }

    /// The final allocation (per period and scaled) and the point there: bounds
    /// exactly, the budget to rounding ([`polish`]).
    fn polished(&mut self, state: &State) -> Result<(Vec<f64>, Vec<f64>, Point)> {
        let (p, scale) = (self.problem, self.objective.scale);
        let point = &state.point;
        let mut x: Vec<f64> = point.y.iter().map(|v| v * scale).collect();
        let lower = &self.objective.lower;
        let floor: Vec<f64> = (0..x.len())
            .map(|c| {
                if lower[c] * scale > p.lower[c] {
                    lower[c] * scale
                } else {
                    p.lower[c]
                }
            })
            .collect();
        // |h|: a cell on a convex stretch (h < 0) moves its marginal return as much.
        let curvature = state.model.is_exact().then(|| {
            state
                .model
                .floored(&point.h.iter().map(|v| v.abs()).collect::<Vec<_>>())
        });
        polish(
            p,
            &floor,
            curvature.as_deref(),
            &mut x,
            scale,
            self.tuning.snap,
        );
        let y: Vec<f64> = x.iter().map(|v| v / scale).collect();
        let point = if y != point.y {
            let pt = self.objective.point(&y)?;
            self.objective.rescale(pt)
        } else {
            point.clone()
        };
        Ok((x, y, point))
    }

    /// The multipliers in user units (bound multipliers retaken at the polished
    /// allocation; infinite on active constraints that hold a pinned cell) and the
    /// KKT residual measured with them.
    fn reported_multipliers(
        &self,
        r: &QpResult,
        x: &[f64],
        y: &[f64],
        point: &Point,
    ) -> (Vec<Multiplier>, f64) {
        let (f0, scale) = (self.objective.f0, self.objective.scale);
        let rows = &self.rows;
        let (mut lin, nonlin) = user_lambdas(rows, self.nl_rows(), r, f0, scale);
        rebalance_bounds(rows, &mut lin, &nonlin, x, point, scale);
        let nonlinear = &*self.objective.nonlinear;
        let kkt = kkt_user(
            rows,
            nonlinear,
            x,
            point,
            &lin,
            &nonlin,
            f0,
            scale,
            &self.pinned,
        );
        // An active constraint on a pinned cell holds back an infinite marginal return.
        for (r, l) in rows.iter().zip(lin.iter_mut()) {
            if matches!(r.origin, Origin::Linear(_))
                && r.coefficients.iter().any(|&(c, _)| self.pinned[c])
                && (r.rhs - r.lhs(y)).abs() <= 1e-9 * (1.0 + r.rhs.abs())
            {
                *l = r.sign * f64::INFINITY;
            }
        }
        let list = multiplier_list(self.problem, rows, nonlinear, &lin, &nonlin);
        (list, kkt)
    }

    /// The status at the returned allocation: iterations that ended short of the test
    /// at an allocation that passes it (the polish put cells exactly on their bounds,
    /// the bound multipliers were retaken there) are solved; a solved allocation that
    /// the polish left violating a constraint by more than ctol (the budget's rounding
    /// spread onto a nonlinear constraint's boundary, say) is almost solved.
    fn settle(
        &self,
        mut status: Status,
        mut message: String,
        kkt_residual: f64,
        violation: f64,
    ) -> (Status, String) {
        let ctol = self.settings.ctol;
        if matches!(
            status,
            Status::AlmostSolved | Status::MaxIterations | Status::LineSearchFailed
        ) && kkt_residual <= self.gtol
            && violation <= ctol
        {
            status = Status::Solved;
            message = format!(
                "KKT residual {kkt_residual:.2e} <= gtol at the returned allocation; violation {violation:.2e} (the iterations ended: {message})"
            );
        }
        if status == Status::Solved && violation > ctol {
            status = Status::AlmostSolved;
            message = format!(
                "{message}; at the returned allocation a constraint is violated by {violation:.2e} of its scale (> ctol)"
            );
        }
        (status, message)
    }

    /// The nonlinear constraints still violated where the solve came to rest by more
    /// than rounding ([`super::Tuning::infeasible_violation`]: their elastic slacks
    /// could not be driven to zero), where the status would otherwise report an
    /// allocation.
    fn violated_nonlinear(&self, status: Status, point: &Point) -> Option<Vec<String>> {
        let infeasible_at = self.settings.ctol.max(self.tuning.infeasible_violation);
        let violated: Vec<String> = self
            .objective
            .nonlinear
            .iter()
            .zip(self.nl_rows())
            .zip(&point.nl_values)
            .filter(|((_, r), v)| if r.equality { v.abs() } else { v.max(0.0) } > infeasible_at)
            .map(|((c, _), v)| format!("{} (violated by {:.3e} of its scale)", c.name, v.abs()))
            .collect();
        let reports = matches!(
            status,
            Status::Solved | Status::AlmostSolved | Status::LineSearchFailed
        );
        (!violated.is_empty() && reports).then_some(violated)
    }

    /// No allocation found that satisfies the nonlinear constraints: the constraints,
    /// never the allocation.
    fn nonlinear_infeasible(
        &self,
        violated: Vec<String>,
        state: State,
        violation: f64,
    ) -> Solution {
        let message = format!(
            "no allocation found that satisfies the nonlinear constraints: {} (with the bounds, the budget and the linear constraints)",
            violated.join("; ")
        );
        let mut solution = infeasible_solution(
            &message,
            violated,
            self.started,
            self.objective.scale,
            self.objective.evaluator.describe(),
        );
        solution.iterations = state.iterations;
        solution.evaluations = self.objective.evaluations;
        solution.trace = state.trace;
        solution.violation = violation;
        if self.settings.verbose >= 1 {
            eprintln!("infeasible: {message}");
        }
        solution
    }

    /// Short of solved with nonlinear constraints: where a nonlinear constraint's
    /// gradient lies in the span of the other active constraints' no multipliers need
    /// exist, and the message says so.
    fn qualification_note(&self, status: Status, message: String, point: &Point) -> String {
        if self.nl_rows().is_empty() || matches!(status, Status::Solved | Status::Stopped) {
            return message;
        }
        let dependent = dependent_nonlinear(
            &self.rows,
            self.nl_rows(),
            point,
            self.tuning.dependent_gradient,
        );
        if dependent.is_empty() {
            return message;
        }
        let names: Vec<String> = dependent
            .iter()
            .map(|&(j, d)| {
                format!(
                    "{} ({d:.1e} of its norm away)",
                    self.objective.nonlinear[j].name
                )
            })
            .collect();
        format!(
            "{message}; at the returned (feasible) allocation the gradient of {} lies in or next to the span of the other active constraints' gradients: the constraint qualification fails or nearly fails there, and multipliers do not exist or are huge (as when the constraints leave a single feasible allocation or a tiny set)",
            names.join(", ")
        )
    }

    /// The solution, with the mean's figures per cell (E[r_c], ∂E[R]/∂x_c, ROI and
    /// marginal ROI): the point's own reductions for the mean, one uniform evaluation
    /// otherwise.
    #[allow(clippy::too_many_arguments)]
    fn solution(
        mut self,
        state: State,
        status: Status,
        message: String,
        x: Vec<f64>,
        point: Point,
        multipliers: Vec<Multiplier>,
        kkt_residual: f64,
        violation: f64,
    ) -> Result<Solution> {
        let p = self.problem;
        let (marginal_response, mean_contribution) = if p.utility.has_constant_weights() {
            (point.grad_u.clone(), point.contributions.clone())
        } else {
            let mut o = Evaluation::new(p.num_draws(), x.len());
            self.objective
                .evaluator
                .evaluate(&x, DrawWeights::Uniform, &mut o)?;
            self.objective.evaluations += 1;
            (o.gradient, o.contributions)
        };
        let periods = p.num_periods;
        let roi = x
            .iter()
            .zip(&mean_contribution)
            .map(|(x, r)| roi(*r, *x, periods))
            .collect();
        let marginal_roi = marginal_response
            .iter()
            .map(|g| marginal_roi(*g, periods))
            .collect();
        let scale = self.objective.scale;
        let solution = Solution {
            status,
            message,
            allocation: x,
            utility: point.utility,
            mean_response: point.mean_response,
            start_allocation: state.start.y.iter().map(|v| v * scale).collect(),
            start_utility: state.start.utility,
            start_mean_response: state.start.mean_response,
            iterations: state.iterations,
            evaluations: self.objective.evaluations,
            kkt_residual,
            violation,
            multipliers,
            marginal_response,
            mean_contribution,
            roi,
            marginal_roi,
            conflicting: vec![],
            trace: state.trace,
            seconds: self.started.elapsed().as_secs_f64(),
            backend: self.objective.evaluator.describe(),
            scale,
            objective_scale: self.objective.f0,
            warnings: vec![],
        };
        if self.settings.verbose >= 1 {
            eprintln!(
                "{}: {} after {} iterations, {} evaluations, {:.3} s; utility {:.9e} (start {:.9e}); KKT residual {:.2e}",
                solution.status,
                solution.message,
                solution.iterations,
                solution.evaluations,
                solution.seconds,
                solution.utility,
                solution.start_utility,
                solution.kkt_residual
            );
        }
        Ok(solution)
    }
}

/// The solution where the linear rows admit no allocation, naming the rows.
pub(super) fn infeasible(
    conflicting: Vec<String>,
    started: Instant,
    scale: f64,
    backend: String,
    verbose: u8,
) -> Solution {
    let message = format!("no allocation satisfies: {}", conflicting.join("; "));
    if verbose >= 1 {
        eprintln!("infeasible: {message}");
    }
    infeasible_solution(&message, conflicting, started, scale, backend)
}

/// An `Infeasible` solution: no allocation, the constraints involved.
fn infeasible_solution(
    message: &str,
    conflicting: Vec<String>,
    started: Instant,
    scale: f64,
    backend: String,
) -> Solution {
    Solution {
        status: Status::Infeasible,
        message: message.to_string(),
        allocation: vec![],
        utility: f64::NAN,
        mean_response: f64::NAN,
        start_allocation: vec![],
        start_utility: f64::NAN,
        start_mean_response: f64::NAN,
        iterations: 0,
        evaluations: 0,
        kkt_residual: f64::NAN,
        violation: f64::NAN,
        multipliers: vec![],
        marginal_response: vec![],
        mean_contribution: vec![],
        roi: vec![],
        marginal_roi: vec![],
        conflicting,
        trace: vec![],
        seconds: started.elapsed().as_secs_f64(),
        backend,
        scale,
        objective_scale: f64::NAN,
        warnings: vec![],
    }
}
