//! The line search on the ℓ1 merit φ = f + ν Σ violation along the QP's step, with a
//! second-order correction after a refused full step.

use super::hessian::Hessian;
use super::kkt::nl_violation;
use super::point::Point;
use super::qp::{QpOutcome, QpResult};
use super::run::{Run, State};
use crate::error::Result;

/// A step the merit accepted.
pub(super) struct Step {
    /// The new iterate.
    pub(super) point: Point,
    /// The fraction of the QP's step taken (1 for a corrected step).
    pub(super) alpha: f64,
    /// ‖Δy‖∞.
    pub(super) length: f64,
    /// Merit changes below this cannot be resolved (the QP's accuracy or the
    /// evaluator's, relative to φ at the iterate).
    pub(super) noise: f64,
}

/// Why no step was taken.
pub(super) enum Refusal {
    /// The QP's step does not descend the merit (or is zero).
    NotDescent { slope: f64 },
    /// No fraction of it down to [`super::Tuning::min_alpha`] decreases the merit
    /// enough.
    NoDecrease,
}

/// The line search's outcome (one a step, its size no matter).
#[allow(clippy::large_enum_variant)]
pub(super) enum Search {
    Accepted(Step),
    Refused(Refusal),
}

impl Run<'_> {
    /// Backtracks from the full step until Armijo's condition on the merit holds, up to
    /// the noise that the QP's and the evaluator's accuracy leave (so that a Newton
    /// step near the optimum is taken). A refused full step with nonlinear rows gets a
    /// second-order correction first. Evaluator errors end the solve with that error.
    pub(super) fn line_search(
        &mut self,
        state: &State,
        qp: &QpResult,
        hessian: &Hessian,
    ) -> Result<Search> {
        let t = self.tuning;
        let point = &state.point;
        let nu = state.nu;
        let phi0 = self.merit(nu, point);
        let gp: f64 = point.g.iter().zip(&qp.p).map(|(g, p)| g * p).sum();
        let t_sum: f64 = qp.t.iter().sum();
        let slope = gp - nu * (nl_violation(self.nl_rows(), &point.nl_values) - t_sum);
        let step_norm = qp.p.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let noise = t.qp_accuracy.max(t.precision_noise * self.precision) * phi0.abs().max(1e-300);
        if slope >= noise || step_norm == 0.0 {
            return Ok(Search::Refused(Refusal::NotDescent { slope }));
        }
        let accepts =
            |phi: f64, alpha: f64| phi <= phi0 + t.armijo * alpha * slope.min(0.0) + noise;
        let mut alpha = 1.0;
        loop {
            let trial: Vec<f64> = point
                .y
                .iter()
                .zip(&qp.p)
                .map(|(y, p)| y + alpha * p)
                .collect();
            let pt = self.objective.point(&trial)?;
            let pt = self.objective.rescale(pt);
            let phi = pt.f.is_finite().then(|| self.merit(nu, &pt));
            if let Some(phi) = phi
                && accepts(phi, alpha)
            {
                return Ok(Search::Accepted(Step {
                    point: pt,
                    alpha,
                    length: alpha * step_norm,
                    noise,
                }));
            }
            if alpha == 1.0
                && !self.nl_rows().is_empty()
                && phi.is_some()
                && let Some((point, length)) = self.corrected(state, qp, hessian, &pt)?
                && point.f.is_finite()
                && accepts(self.merit(nu, &point), 1.0)
            {
                return Ok(Search::Accepted(Step {
                    point,
                    alpha,
                    length,
                    noise,
                }));
            }
            alpha = self.shorter(alpha, phi, phi0, slope);
            if alpha < t.min_alpha {
                return Ok(Search::Refused(Refusal::NoDecrease));
            }
        }
    }

    /// The next fraction after α was refused with merit `phi`: on a concave problem
    /// the minimiser of the quadratic through φ(0), φ'(0) and φ(α) within
    /// [`super::Tuning::interpolation`]; else (S-shaped curves, where shorter steps
    /// chose worse local optima, or no finite merit) [`super::Tuning::backtrack`] × α.
    fn shorter(&self, alpha: f64, phi: Option<f64>, phi0: f64, slope: f64) -> f64 {
        let t = self.tuning;
        match phi {
            Some(phi) if self.concave && slope < 0.0 => {
                let curvature = phi - phi0 - slope * alpha;
                let next = if curvature > 0.0 {
                    -slope * alpha * alpha / (2.0 * curvature)
                } else {
                    t.backtrack * alpha
                };
                next.clamp(t.interpolation.0 * alpha, t.interpolation.1 * alpha)
            }
            _ => t.backtrack * alpha,
        }
    }

    /// The second-order correction of a refused full step (the Maratos effect: the
    /// linearised constraints miss their curvature, the merit refuses the step, the
    /// steps shrink): the QP again at y with each nonlinear row taken from its value at
    /// y + p, c(y + p) + ∇c(y)ᵀ(d − p) ≤ 0. The corrected point and its step length.
    fn corrected(
        &mut self,
        state: &State,
        qp: &QpResult,
        hessian: &Hessian,
        at_full: &Point,
    ) -> Result<Option<(Point, f64)>> {
        let point = &state.point;
        let n = point.y.len();
        let mut shifted = point.clone();
        for (j, v) in shifted.nl_values.iter_mut().enumerate() {
            let along: f64 = (0..n).map(|c| point.nl_grads[j * n + c] * qp.p[c]).sum();
            *v = at_full.nl_values[j] - along;
        }
        let outcome = self.qp.solve(
            &self.rows,
            &self.objective.nl_rows,
            &shifted,
            hessian,
            state.radius,
        )?;
        let QpOutcome::Solved(soc) = outcome else {
            return Ok(None);
        };
        let trial: Vec<f64> = point.y.iter().zip(&soc.p).map(|(y, d)| y + d).collect();
        let pt = self.objective.point(&trial)?;
        let length = soc.p.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        Ok(Some((self.objective.rescale(pt), length)))
    }
}
