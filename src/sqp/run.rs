//! One run of the method from one start: what stays fixed ([`Run`]), what changes
//! from iterate to iterate ([`State`]), and the loop's small steps (the QP, the merit
//! weight, the trust radius, the trace).

use super::hessian::{Hessian, Model};
use super::kkt::{kkt_scaled, nl_violation, violation_scaled};
use super::line_search::Step;
use super::point::{Objective, Point};
use super::qp::{Qp, QpOutcome, QpResult};
use super::rows::{NonlinearRow, Row};
use super::termination::Stall;
use super::{Settings, Tuning};
use crate::error::Result;
use crate::problem::Problem;
use crate::solution::IterationInfo;
use clarabel::solver::SolverStatus;
use std::time::Instant;

/// What stays fixed through one run.
pub(super) struct Run<'r> {
    pub(super) problem: &'r Problem,
    pub(super) settings: &'r Settings,
    pub(super) tuning: &'r Tuning,
    /// f, its derivatives and the nonlinear rows at any y.
    pub(super) objective: Objective<'r>,
    /// The linear rows (budget, constraints, bounds) in scaled variables.
    pub(super) rows: Vec<Row>,
    /// Cells held at their lower bound by the constraints where their marginal return
    /// is infinite: not QP variables, left out of the KKT residual.
    pub(super) pinned: Vec<bool>,
    /// The QP, its patterns built once.
    pub(super) qp: Qp,
    /// The KKT tolerance: `gtol`, raised to [`Tuning::precision_gtol`] ulps of an f32
    /// evaluator's precision, times the utility's weight concentration.
    pub(super) gtol: f64,
    /// The evaluator's relative precision.
    pub(super) precision: f64,
    /// The utility's draw-weight concentration at the start ([`super::start::weight_concentration`]):
    /// gtol's floor is `precision_gtol` ulps of the precision times it.
    pub(super) concentration: f64,
    /// Every curve concave, the mean utility, the exact Hessian: the line search may
    /// interpolate.
    pub(super) concave: bool,
    /// When this run began.
    pub(super) started: Instant,
}

/// What changes from iterate to iterate.
pub(super) struct State {
    /// The iterate.
    pub(super) point: Point,
    /// The start (projected), for the solution's start figures.
    pub(super) start: Point,
    /// How the QP's Hessian is made.
    pub(super) model: Model,
    /// The ℓ1 merit's weight ν on the nonlinear rows' violation.
    pub(super) nu: f64,
    /// Trust radius on each cell's step (scaled units: 1 is the whole budget). It
    /// shrinks to the step the line search accepted and grows when a full step
    /// reaches it, so that a cell with almost no curvature (a flat or empty one)
    /// cannot propose moving the whole budget at once.
    pub(super) radius: f64,
    /// QPs solved so far.
    pub(super) iterations: usize,
    pub(super) trace: Vec<IterationInfo>,
    /// The stall rules' counters.
    pub(super) stall: Stall,
}

/// The KKT residual and the violation at an iterate, with the QP's multipliers.
pub(super) struct Measure {
    pub(super) kkt: f64,
    pub(super) violation: f64,
}

impl Run<'_> {
    pub(super) fn nl_rows(&self) -> &[NonlinearRow] {
        &self.objective.nl_rows
    }

    /// The QP at the iterate. Where nothing answers it, again within
    /// [`Tuning::fallback_radius`] (which keeps cells of floored curvature from
    /// proposing to move the whole budget, and the QP within what an interior-point
    /// method resolves: hill cells under tight pair caps, curvatures spread over
    /// 1e16). Where the trust radius makes the linearised nonlinear constraints
    /// unsatisfiable (slacks > 0, and with them multipliers at the elastic penalty that
    /// then rule the merit), without it, if that satisfies them. `Err`: Clarabel's
    /// status where nothing answered.
    pub(super) fn solve_qp(
        &mut self,
        state: &mut State,
        hessian: &Hessian,
    ) -> Result<std::result::Result<QpResult, SolverStatus>> {
        let (rows, nl, t) = (&self.rows, &self.objective.nl_rows, self.tuning);
        let point = &state.point;
        let first = match self.qp.solve(rows, nl, point, hessian, state.radius)? {
            QpOutcome::Failed(_) if state.radius > t.fallback_radius * t.snap => {
                let r = state.radius.min(t.fallback_radius);
                match self.qp.solve(rows, nl, point, hessian, r)? {
                    QpOutcome::Solved(x) => {
                        state.radius = r;
                        QpOutcome::Solved(x)
                    }
                    failed => failed,
                }
            }
            other => other,
        };
        let result = match first {
            QpOutcome::Solved(r) => r,
            QpOutcome::Failed(s) => return Ok(Err(s)),
        };
        let used = |r: &QpResult| r.t.iter().any(|t| *t > self.tuning.slack_used);
        if state.radius.is_finite()
            && used(&result)
            && let QpOutcome::Solved(r) =
                self.qp
                    .solve(rows, nl, &state.point, hessian, f64::INFINITY)?
            && r.t.iter().all(|v| *v <= self.tuning.slack_used)
        {
            return Ok(Ok(r));
        }
        Ok(Ok(result))
    }

    /// The KKT residual and the violation at `point` with the QP's multipliers.
    pub(super) fn measure(&self, point: &Point, qp: &QpResult) -> Measure {
        let nl = self.nl_rows();
        Measure {
            kkt: kkt_scaled(&self.rows, nl, point, qp, &self.pinned),
            violation: violation_scaled(&self.rows, point).max(nl_violation(nl, &point.nl_values)),
        }
    }

    /// The merit's weight ν stays above the multipliers. Where a QP needed elastic
    /// slacks (a linearisation that cannot hold: at a start where a constraint's
    /// gradient is parallel to the budget's, say), its multiplier is the elastic
    /// penalty and ν with it; once the QPs are consistent again with multipliers well
    /// below ν, ν starts again from a small multiple of them, or the merit refuses
    /// every step that moves the violation by 1e-5 and the trust radius crawls.
    pub(super) fn update_penalty(&self, state: &mut State, qp: &QpResult) {
        let t = self.tuning;
        let zmax = t.penalty_margin * qp.z_nl.iter().fold(0.0f64, |m, z| m.max(z.abs()));
        state.nu = if qp.t.iter().all(|v| *v <= t.slack_used) && state.nu > t.penalty_reset * zmax {
            t.penalty_restart * zmax
        } else {
            state.nu.max(zmax)
        };
    }

    /// The ℓ1 merit f + ν Σ violation of the nonlinear rows.
    pub(super) fn merit(&self, nu: f64, point: &Point) -> f64 {
        point.f + nu * nl_violation(self.nl_rows(), &point.nl_values)
    }

    /// The trust radius after a step: the step where it was shortened, grown where a
    /// full step reached it.
    pub(super) fn update_radius(&self, state: &mut State, step: &Step) {
        let t = self.tuning;
        state.radius = if step.alpha < 1.0 {
            step.length.max(t.min_radius)
        } else if step.length >= t.radius_reached * state.radius {
            t.radius_growth * state.radius
        } else {
            state.radius
        };
    }

    /// The trace's line for the iterate (and the step taken from it).
    pub(super) fn info(&self, state: &State, at: &Measure, step: Option<&Step>) -> IterationInfo {
        IterationInfo {
            iteration: state.iterations,
            utility: state.point.utility,
            kkt_residual: at.kkt,
            violation: at.violation,
            step: step.map_or(0.0, |s| s.length),
            alpha: step.map_or(0.0, |s| s.alpha),
            evaluations: self.objective.evaluations,
            elapsed: self.started.elapsed().as_secs_f64(),
        }
    }

    /// A line per iteration on stderr at `verbose` 2.
    pub(super) fn print(&self, info: &IterationInfo) {
        if self.settings.verbose >= 2 {
            eprintln!(
                "iter {:>4}  utility {:>16.9e}  kkt {:>9.2e}  viol {:>9.2e}  step {:>9.2e}  alpha {:>6.4}",
                info.iteration,
                info.utility,
                info.kkt_residual,
                info.violation,
                info.step,
                info.alpha
            );
        }
    }
}
