//! When the method stops: the KKT test, the stall rules, the limits, and the ending
//! each leaves.

use super::Clock;
use super::line_search::{Refusal, Step};
use super::qp::QpResult;
use super::run::{Measure, Run, State};
use super::tuning::StallRules;
use crate::solution::Status;
use clarabel::solver::SolverStatus;

/// How the iterations ended: the status (which the finish may still revise: see
/// [`Run::finish`]), its message, and the last QP's answer when it belongs to the
/// final iterate (its multipliers are then reported).
pub(super) struct Ending {
    pub(super) status: Status,
    pub(super) message: String,
    pub(super) qp: Option<QpResult>,
}

impl Ending {
    fn new(status: Status, message: String) -> Self {
        Ending {
            status,
            message,
            qp: None,
        }
    }

    /// The same ending with the QP answered at the final iterate.
    pub(super) fn with_qp(mut self, qp: QpResult) -> Self {
        self.qp = Some(qp);
        self
    }

    /// Nothing answered the QP of iteration `iteration`.
    pub(super) fn qp_failed(status: SolverStatus, iteration: usize) -> Self {
        Ending::new(
            Status::NumericalError,
            format!(
                "the QP subproblem failed at iteration {iteration}: Clarabel status {status:?}"
            ),
        )
    }

    /// The callback returned false.
    pub(super) fn stopped() -> Self {
        Ending::new(Status::Stopped, "stopped by the callback".into())
    }
}

/// The stall rules' counters ([`StallRules`]): whether the last step made progress
/// that the objective shows, and what still counts as progress where it does not.
pub(super) struct Stall {
    /// Why the last step counted as no progress, if it did.
    stalled: Option<String>,
    /// The KKT residual at the last iterate.
    last_kkt: f64,
    /// Stalls still excused while the KKT residual falls.
    grace: usize,
    /// Stalls still excused while a steep cell dives.
    dives: usize,
    /// The best merit so far as (f, violation of the nonlinear rows), the ν it was
    /// measured with, and the iterations since.
    best: Option<(f64, f64)>,
    best_nu: f64,
    since_best: usize,
    /// The smallest KKT residual so far and the iterations since.
    best_kkt: f64,
    kkt_since: usize,
}

impl Stall {
    pub(super) fn new(rules: &StallRules) -> Self {
        Stall {
            stalled: None,
            last_kkt: f64::INFINITY,
            grace: rules.grace,
            dives: rules.dives,
            best: None,
            best_nu: 0.0,
            since_best: 0,
            best_kkt: f64::INFINITY,
            kkt_since: 0,
        }
    }
}

impl Run<'_> {
    /// The KKT test at the iterate, then the stall rules, then the limits: the ending,
    /// where the method stops here.
    pub(super) fn check_termination(
        &self,
        state: &mut State,
        at: &Measure,
        qp: &QpResult,
        clock: &Clock,
    ) -> Option<Ending> {
        let (settings, gtol) = (self.settings, self.gtol);
        let Measure { kkt, violation } = *at;
        let converged = kkt <= gtol && violation <= settings.ctol && !qp.reduced;
        let stalled = self.excuse_stall(&mut state.stall, at, converged, qp.diving);
        if converged {
            let message = if gtol > settings.gtol {
                let times = if self.concentration > 1.0 {
                    format!(
                        " times {:.2}, how few draws carry the utility",
                        self.concentration
                    )
                } else {
                    String::new()
                };
                format!(
                    "KKT residual {kkt:.2e} <= {gtol:.1e} (gtol raised from {:.0e} to {} ulps of the evaluator's precision{times}); violation {violation:.2e}",
                    settings.gtol, self.tuning.precision_gtol
                )
            } else {
                format!("KKT residual {kkt:.2e} <= gtol; violation {violation:.2e}")
            };
            return Some(Ending::new(Status::Solved, message));
        }
        if let Some(why) = stalled {
            return Some(Ending::new(
                Status::AlmostSolved,
                format!("progress stalled ({why}) with KKT residual {kkt:.2e} > gtol = {gtol:.0e}"),
            ));
        }
        if state.iterations >= settings.max_iter {
            return Some(Ending::new(
                Status::MaxIterations,
                format!("reached max_iter = {}", settings.max_iter),
            ));
        }
        if clock.is_up() {
            return Some(Ending::new(
                Status::MaxTime,
                format!("reached time_limit = {} s", clock.limit),
            ));
        }
        None
    }

    /// The stall rules at a QP: a stall of the last step is excused while the KKT
    /// residual still falls ([`StallRules::grace`]) or a steep cell still dives
    /// ([`StallRules::dives`]); with nonlinear rows, no smaller KKT residual for
    /// [`StallRules::kkt_patience`] iterations at a feasible point is a stall. Why the
    /// solve stalls, where it does.
    fn excuse_stall(
        &self,
        s: &mut Stall,
        at: &Measure,
        converged: bool,
        diving: bool,
    ) -> Option<String> {
        let rules = &self.tuning.stall;
        let kkt = at.kkt;
        if !converged && s.stalled.is_some() && s.grace > 0 && kkt <= rules.kkt_fall * s.last_kkt {
            s.stalled = None;
            s.grace -= 1;
        }
        s.last_kkt = kkt;
        if !converged && s.stalled.is_some() && diving && s.dives > 0 {
            s.stalled = None;
            s.dives -= 1;
        }
        if kkt < s.best_kkt {
            (s.best_kkt, s.kkt_since) = (kkt, 0);
        } else {
            s.kkt_since += 1;
        }
        if !converged
            && s.stalled.is_none()
            && !self.nl_rows().is_empty()
            && s.kkt_since >= rules.kkt_patience
            && at.violation <= self.settings.ctol
        {
            s.stalled = Some(format!(
                "no smaller KKT residual in {} iterations",
                rules.kkt_patience
            ));
        }
        s.stalled.clone()
    }

    /// The stall rules after a step (decided at the next QP, so that the final
    /// multipliers belong to the final point): no change in f beyond `ftol`, a step
    /// below `xtol`, or [`StallRules::merit_patience`] steps in a row without a merit
    /// better than the best by more than the noise. A new ν makes a new merit and the
    /// count starts again, unless the change moves no merit by more than the noise (a ν
    /// flickering between 0 and 1e-17 hid a cycle).
    pub(super) fn after_step(&self, state: &mut State, step: &Step) {
        let settings = self.settings;
        let (nu, noise) = (state.nu, step.noise);
        let s = &mut state.stall;
        let new = &step.point;
        let df = (new.f - state.point.f).abs();
        let m_new = self.merit(nu, new);
        let v_new = super::kkt::nl_violation(self.nl_rows(), &new.nl_values);
        if let Some((_, v)) = s.best
            && (nu - s.best_nu).abs() * v.max(v_new) > noise
        {
            s.best = None;
        }
        s.best_nu = nu;
        let m_best = s.best.map_or(f64::INFINITY, |(f, v)| f + nu * v);
        if m_new < m_best - noise {
            s.best = Some((new.f, v_new));
            s.since_best = 0;
        } else {
            s.since_best += 1;
        }
        let patience = self.tuning.stall.merit_patience;
        if df <= settings.ftol * state.point.f.abs().max(1e-300) {
            s.stalled = Some("ftol".into());
        } else if step.length <= settings.xtol {
            s.stalled = Some("xtol".into());
        } else if s.since_best >= patience {
            s.stalled = Some(format!("no better point in {patience} iterations"));
        }
    }

    /// The ending where the line search took no step: almost solved within
    /// [`super::Tuning::almost_solved`] × gtol, else a line-search failure.
    pub(super) fn refused(&self, why: Refusal, at: &Measure) -> Ending {
        let kkt = at.kkt;
        let status = if kkt <= self.tuning.almost_solved * self.gtol {
            Status::AlmostSolved
        } else {
            Status::LineSearchFailed
        };
        let message = match why {
            Refusal::NotDescent { slope } => format!(
                "the QP step is not a descent direction (slope {slope:.2e}); KKT residual {kkt:.2e}"
            ),
            Refusal::NoDecrease => {
                format!("no sufficient decrease along the QP step; KKT residual {kkt:.2e}")
            }
        };
        Ending::new(status, message)
    }
}
