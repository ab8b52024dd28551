//! The objective side of the loop: f(y) = −U(s y)/|U₀| and the nonlinear rows at an
//! iterate, from one call of the evaluator.

use super::kernel::KernelPass;
use super::rows::NonlinearRow;
use crate::constraint::{ConstraintFunction, NonlinearConstraint};
use crate::error::{Error, Result};
use crate::eval::{CellMoments, DrawWeights, Evaluation, Evaluator};
use crate::problem::Problem;
use crate::utility::Utility;

/// Everything known at one iterate.
#[derive(Clone, Debug)]
pub(super) struct Point {
    pub(super) y: Vec<f64>,
    pub(super) f: f64,
    pub(super) utility: f64,
    pub(super) mean_response: f64,
    /// ∇_y f.
    pub(super) g: Vec<f64>,
    /// ∇_x U.
    pub(super) grad_u: Vec<f64>,
    /// Σ_d u_d r_dc (for the mean: the mean contribution of each cell).
    pub(super) contributions: Vec<f64>,
    /// −(s²/|U₀|) Σ_d u_d r''_dc (exact diagonal of ∇²f), before regularisation.
    pub(super) h: Vec<f64>,
    /// Scaled nonlinear row values sign·(c − rhs)/scale.
    pub(super) nl_values: Vec<f64>,
    /// Their gradients in y, row-major (m_nl × n).
    pub(super) nl_grads: Vec<f64>,
    /// The diagonals of their Hessians in y, row-major (m_nl × n), where every
    /// nonlinear constraint gives its curvature; else empty.
    pub(super) nl_h: Vec<f64>,
    /// c(x) of each nonlinear constraint.
    pub(super) nl_raw: Vec<f64>,
    /// ∇c(x), row-major.
    pub(super) nl_raw_grads: Vec<f64>,
    /// Where U's curvature in the responses is known and the draws it needs were
    /// kept ([`Utility::tail_curvature`]): vectors v_j with ∇²_y f = diag(h) + Σ_j v_j
    /// v_jᵀ (the coupling of the cells through the draws near a CVaR's quantile).
    pub(super) coupling: Option<Vec<Vec<f64>>>,
    /// The responses at this point, kept where its coupling is computed only once the
    /// point is accepted ([`Objective::complete_coupling`]): a trial point that the
    /// line search refuses never pays for the draws near the quantile.
    pub(super) pending_coupling: Option<Vec<f64>>,
}

/// The evaluation side of the loop.
pub(super) struct Objective<'e> {
    pub(super) evaluator: &'e mut dyn Evaluator,
    pub(super) nonlinear: &'e mut [NonlinearConstraint],
    pub(super) nl_rows: Vec<NonlinearRow>,
    pub(super) problem: &'e Problem,
    pub(super) scale: f64,
    pub(super) f0: f64,
    pub(super) lower: Vec<f64>,
    pub(super) upper: Vec<f64>,
    pub(super) evaluations: usize,
    pub(super) out: Evaluation,
    pub(super) weights: Vec<f64>,
    pub(super) ngrad: Vec<f64>,
    /// Whether every nonlinear constraint gives the diagonal of its Hessian.
    pub(super) curvature: bool,
    /// Whether the model takes each point's [`Point::coupling`] (`hessian::exact_tail`):
    /// else it is not computed.
    pub(super) tail_coupling: bool,
    /// [`super::Tuning::infinite_slope`].
    pub(super) infinite_slope: f64,
    /// The last iterate's mean response: the shift of [`Evaluator::evaluate_linear`]
    /// and [`Evaluator::evaluate_banded`].
    pub(super) shift: f64,
    /// One pass an iterate for draw weights that are a kernel at a quantile.
    pub(super) kernel: KernelPass,
}

/// An outcome constraint's value U(R, x) at the responses `r`, its gradient into
/// `grad` (one weighted pass of the evaluator: Σ_d (∂U/∂R_d) ∇R_d + ∂U/∂x; the
/// passes of [`cell_utility`] where U needs the cells' moments), the exact diagonal
/// of its Hessian where U is the mean (else empty), and the evaluator calls taken.
pub(super) fn outcome(
    evaluator: &mut dyn Evaluator,
    u: &Utility,
    r: &[f64],
    x: &[f64],
    grad: &mut [f64],
) -> Result<(f64, Vec<f64>, usize)> {
    let mut out = Evaluation::new(r.len(), x.len());
    if u.has_constant_weights() {
        evaluator.evaluate(x, DrawWeights::Uniform, &mut out)?;
        grad.copy_from_slice(&out.gradient);
        return Ok((u.value(&out.responses, x), out.curvature, 1));
    }
    if u.needs_cell_moments() {
        let (value, calls) = cell_utility(evaluator, u, x, &mut out, grad)?;
        return Ok((value, vec![], calls));
    }
    let mut weights = vec![0.0; r.len()];
    let value = u.smooth(r, x, &mut weights, grad);
    add_weighted_pass(evaluator, x, &weights, &mut out, grad)?;
    Ok((value, vec![], 1))
}

/// One pass with the draw weights u_d = `weights` into `out`, its Σ_d u_d r'_dc added
/// into `grad` (which holds ∂U/∂x).
pub(super) fn add_weighted_pass(
    evaluator: &mut dyn Evaluator,
    x: &[f64],
    weights: &[f64],
    out: &mut Evaluation,
    grad: &mut [f64],
) -> Result<()> {
    evaluator.evaluate(x, DrawWeights::PerDraw(weights), out)?;
    for (g, e) in grad.iter_mut().zip(&out.gradient) {
        *g += e;
    }
    Ok(())
}

/// U(x) and ∇U into `grad` for a utility with the diversification ratio, and the
/// evaluator calls taken: the cells' moments at x with the budget shares x / Σx as
/// cell weights (R_d, P_d, each cell's spread); a weighted pass with the ratio's draw
/// weights v_d = P_d − P̄; and one with the other terms' draw weights ∂U/∂R_d, unless
/// these are all equal (the mean's: then Σ_d u_d r'_dc = u D r̄'_c from the moments).
/// `out` ends with the responses, each cell's mean contribution, ∇U and no curvature
/// (the solver models this utility's curvature by BFGS).
pub(super) fn cell_utility(
    evaluator: &mut dyn Evaluator,
    u: &Utility,
    x: &[f64],
    out: &mut Evaluation,
    grad: &mut [f64],
) -> Result<(f64, usize)> {
    let shares = crate::utility::budget_shares(x);
    let mut moments = CellMoments::default();
    evaluator.cell_moments(x, &shares, &mut moments)?;
    let mut calls = 1;
    let mut weights = vec![0.0; moments.responses.len()];
    let (value, ratio) = u.smooth_with(&moments.responses, x, Some(&moments), &mut weights, grad);
    let first = weights.first().copied().unwrap_or(0.0);
    if weights.iter().all(|w| *w == first) {
        let draws = weights.len() as f64;
        for (g, s) in grad.iter_mut().zip(&moments.mean_slope) {
            *g += first * draws * s;
        }
    } else {
        add_weighted_pass(evaluator, x, &weights, out, grad)?;
        calls += 1;
    }
    if let Some(r) = ratio {
        evaluator.evaluate(x, DrawWeights::PerDraw(&r.draws), out)?;
        calls += 1;
        for (c, g) in grad.iter_mut().enumerate() {
            *g += r.slope[c] * out.gradient[c] + r.level * out.contributions[c];
        }
    }
    out.responses = moments.responses;
    out.contributions = moments.mean;
    out.gradient = grad.to_vec();
    out.curvature = vec![0.0; x.len()];
    Ok((value, calls))
}

/// The slopes r'_dc of `draws` at x (n a draw, concatenated, in their order),
/// computed by a CPU evaluator over those draws alone (one banded pass keeping every
/// draw, its terms computed, not cached): k × n × (N + L) terms, whatever evaluates
/// the whole posterior.
/// `None` where a response is not finite.
fn host_slopes(problem: &Problem, x: &[f64], draws: &[usize]) -> Result<Option<Vec<f64>>> {
    let mut ev = crate::CpuEvaluator::without_cache(std::sync::Arc::new(problem.draws_at(draws)?));
    let mut sums = crate::eval::BandedSums::default();
    let all = [(f64::NEG_INFINITY, f64::INFINITY)];
    let kept = ev.evaluate_banded(x, 0.0, &all, draws.len(), &mut sums)?
        && !sums.overflow
        && sums.kept.len() == draws.len()
        && sums.kept_terms.len() == 3 * draws.len() * x.len();
    Ok(kept.then(|| sums.kept_terms.chunks_exact(3).map(|t| t[1]).collect()))
}

/// Clamps y onto the bounds.
pub(super) fn clamp_scaled(y: &[f64], lower: &[f64], upper: &[f64]) -> Vec<f64> {
    y.iter()
        .zip(lower.iter().zip(upper))
        .map(|(v, (l, u))| v.clamp(*l, *u))
        .collect()
}

impl Objective<'_> {
    /// Evaluates at y (clamped onto the bounds), unscaled: f, g and h are filled by
    /// [`Objective::rescale`].
    pub(super) fn point(&mut self, y: &[f64]) -> Result<Point> {
        let y = clamp_scaled(y, &self.lower, &self.upper);
        let x: Vec<f64> = y.iter().map(|v| v * self.scale).collect();
        let p = self.problem;
        let n = x.len();
        // The uniform sums (1/D) Σ_d [r, r', r''] per cell where the objective's pass
        // gives them (the mean's pass, the affine or the banded one; no responses):
        // the value, gradient and curvature of an outcome constraint on the mean (or
        // the ROI's k μ + a Σx).
        let mut uniform = None;
        // The value and gradient of the outcome constraint (its index) whose banded
        // pass gave a mean objective its sums ([`Objective::shared_outcome`]).
        let mut shared = None;
        let mut coupling = None;
        let mut pending_coupling = None;
        let (utility, grad_u) = if let Some((k, a)) = p.utility.linear_form() {
            // U = k μ + a Σx: its uniform sums from the banded pass of a quantile-based
            // outcome constraint where there is one, else one uniform pass.
            if let Some((i, u)) = self.shared_outcome() {
                let done = self.kernel.evaluate(
                    &mut *self.evaluator,
                    &u,
                    &x,
                    self.shift,
                    &mut self.out,
                    &mut self.evaluations,
                )?;
                if let Some((value, gradient)) = done {
                    shared = Some((i, value, gradient));
                    self.shift =
                        self.out.responses.iter().sum::<f64>() / self.out.responses.len() as f64;
                }
                if let Some(sums) = self.kernel.uniform.take() {
                    self.out.contributions.clone_from(&sums.contributions);
                    self.out.gradient.clone_from(&sums.gradient);
                    self.out.curvature.clone_from(&sums.curvature);
                    uniform = Some(sums);
                }
            }
            if uniform.is_none() {
                self.evaluator
                    .evaluate(&x, DrawWeights::Uniform, &mut self.out)?;
                self.evaluations += 1;
                uniform = Some(self.plain_sums(1.0));
            }
            if (k, a) != (1.0, 0.0) {
                self.out.gradient.iter_mut().for_each(|g| *g = k * *g + a);
                self.out.curvature.iter_mut().for_each(|h| *h *= k);
                self.out.contributions.iter_mut().for_each(|c| *c *= k);
            }
            (
                p.utility.value(&self.out.responses, &x),
                self.out.gradient.clone(),
            )
        } else if let Some((u, g, plain)) = self.affine(&x)? {
            uniform = Some(plain);
            (u, g)
        } else if p.utility.needs_cell_moments() {
            let mut g = vec![0.0; n];
            let (u, calls) =
                cell_utility(&mut *self.evaluator, &p.utility, &x, &mut self.out, &mut g)?;
            self.evaluations += calls;
            (u, g)
        } else if let Some(done) = self.kernel.evaluate(
            &mut *self.evaluator,
            &p.utility,
            &x,
            self.shift,
            &mut self.out,
            &mut self.evaluations,
        )? {
            self.shift = self.out.responses.iter().sum::<f64>() / self.out.responses.len() as f64;
            uniform = self.kernel.uniform.take();
            coupling = self.coupling(&x, &self.out.responses, true)?;
            done
        } else {
            // u_d = ∂U/∂R_d at these responses, then one weighted pass:
            // ∇U = Σ_d u_d ∇R_d + ∂U/∂x.
            self.evaluator.responses(&x, &mut self.out.responses)?;
            let mut g = vec![0.0; n];
            let u = p
                .utility
                .smooth(&self.out.responses, &x, &mut self.weights, &mut g);
            add_weighted_pass(
                &mut *self.evaluator,
                &x,
                &self.weights,
                &mut self.out,
                &mut g,
            )?;
            self.evaluations += 2;
            if self.tail_coupling {
                pending_coupling = Some(self.out.responses.clone());
            }
            (u, g)
        };
        let mean_response =
            self.out.responses.iter().sum::<f64>() / self.out.responses.len() as f64;
        let mut nl_values = Vec::with_capacity(self.nonlinear.len());
        let mut nl_grads = Vec::with_capacity(self.nonlinear.len() * n);
        let mut nl_raw = Vec::with_capacity(self.nonlinear.len());
        let mut nl_raw_grads = Vec::with_capacity(self.nonlinear.len() * n);
        let mut nl_h = Vec::new();
        let responses = std::mem::take(&mut self.out.responses);
        for (i, (c, row)) in self.nonlinear.iter_mut().zip(&self.nl_rows).enumerate() {
            // An outcome's exact curvature diagonal (the mean's), from its own pass.
            let mut outcome_curvature = vec![];
            let v = match &mut c.function {
                ConstraintFunction::Code { value, .. } => value(&x, &mut self.ngrad)?,
                ConstraintFunction::Outcome(u) => match (&shared, &uniform, u.linear_form()) {
                    // From the banded pass that gave the objective its sums.
                    (Some((j, value, gradient)), _, _) if *j == i => {
                        self.ngrad.copy_from_slice(gradient);
                        *value
                    }
                    // U = k μ + a Σx (the mean, the ROI's form) at x from the
                    // objective's own uniform sums.
                    (_, Some(uniform), Some((k, a))) => {
                        for (g, s) in self.ngrad.iter_mut().zip(&uniform.gradient) {
                            *g = k * s + a;
                        }
                        outcome_curvature = uniform.curvature.iter().map(|h| k * h).collect();
                        u.value(&responses, &x)
                    }
                    _ => {
                        let (v, curvature, calls) =
                            outcome(&mut *self.evaluator, u, &responses, &x, &mut self.ngrad)?;
                        self.evaluations += calls;
                        outcome_curvature = curvature;
                        v
                    }
                },
            };
            nl_raw.push(v);
            nl_raw_grads.extend_from_slice(&self.ngrad);
            nl_values.push(row.sign * (v - c.rhs) / row.scale);
            nl_grads.extend(
                self.ngrad
                    .iter()
                    .map(|g| row.sign * g * self.scale / row.scale),
            );
            if self.curvature {
                match &mut c.function {
                    ConstraintFunction::Code {
                        curvature: Some(curvature),
                        ..
                    } => {
                        self.ngrad.fill(0.0);
                        curvature(&x, &mut self.ngrad)?;
                    }
                    _ => self.ngrad.copy_from_slice(&outcome_curvature),
                }
                if let Some((i, h)) = self.ngrad.iter().enumerate().find(|(_, h)| !h.is_finite()) {
                    return Err(Error::invalid(
                        "nonlinear constraint",
                        format!("{} curvature[{i}]", c.name),
                        h,
                        "a finite second derivative",
                    ));
                }
                let k = row.sign * self.scale * self.scale / row.scale;
                nl_h.extend(self.ngrad.iter().map(|h| k * h));
            }
        }
        self.out.responses = responses;
        Ok(Point {
            y,
            f: utility,
            utility,
            mean_response,
            g: grad_u.clone(),
            grad_u,
            contributions: self.out.contributions.clone(),
            h: self.out.curvature.clone(),
            nl_values,
            nl_grads,
            nl_h,
            nl_raw,
            nl_raw_grads,
            coupling,
            pending_coupling,
        })
    }

    /// The coupling of a point evaluated by two passes (its responses kept in
    /// [`Point::pending_coupling`]), computed now that it is accepted: the draws near
    /// each quantile and their slopes on the host, scaled as [`Objective::rescale`]
    /// scales the rest.
    pub(super) fn complete_coupling(&self, pt: &mut Point) -> Result<()> {
        let Some(responses) = pt.pending_coupling.take() else {
            return Ok(());
        };
        let x: Vec<f64> = pt.y.iter().map(|v| v * self.scale).collect();
        pt.coupling = self.coupling(&x, &responses, false)?;
        self.scale_coupling(pt);
        Ok(())
    }

    /// The vectors √(c k_d) (r'_d − r̄') of [`Utility::tail_curvature`] at the
    /// `responses` at x (r̄' the k-weighted mean slope of each term's draws), in
    /// x's units; `None` where the model does not take it or the utility has no such
    /// form. The slopes r'_d are the kernel pass's where `kept` says that its last
    /// call was at x and it kept them, else computed on the host for these draws
    /// alone ([`host_slopes`]).
    fn coupling(&self, x: &[f64], responses: &[f64], kept: bool) -> Result<Option<Vec<Vec<f64>>>> {
        if !self.tail_coupling {
            return Ok(None);
        }
        let n = x.len();
        let Some(terms) = self.problem.utility.tail_curvature(responses) else {
            return Ok(None);
        };
        let mut out: Vec<Vec<f64>> = vec![];
        for term in terms {
            let from_pass = if kept {
                self.kernel.kept_slopes(&term.draws, n)
            } else {
                None
            };
            let slopes = match from_pass {
                Some(s) => s,
                None => match host_slopes(self.problem, x, &term.draws)? {
                    Some(s) => s,
                    None => return Ok(None),
                },
            };
            let total: f64 = term.weights.iter().sum();
            let mut centre = vec![0.0; n];
            for (k, g) in term.weights.iter().zip(slopes.chunks_exact(n)) {
                centre
                    .iter_mut()
                    .zip(g)
                    .for_each(|(c, g)| *c += k * g / total);
            }
            for (k, g) in term.weights.iter().zip(slopes.chunks_exact(n)) {
                let root = k.sqrt();
                out.push(g.iter().zip(&centre).map(|(g, c)| root * (g - c)).collect());
            }
        }
        Ok(out.iter().flatten().all(|v| v.is_finite()).then_some(out))
    }

    /// U and ∇U in one pass where U's draw weights are affine in the responses
    /// (`Utility::has_affine_weights`) and the evaluator sums each cell's terms both
    /// plainly and weighted by R_d − shift ([`Evaluator::evaluate_linear`]; shift the
    /// last iterate's mean response): with u_d = a + b (R_d − μ), Σ_d u_d t_dc =
    /// (a + b (shift − μ)) Σ_d t_dc + b Σ_d (R_d − shift) t_dc for t = r, r', r''.
    /// `None` where either cannot (the caller then takes two passes). Where the
    /// weights turn out not affine at these responses (no spread: σ = 0) a weighted
    /// pass follows. Beside U and ∇U, the uniform sums (1/D) Σ_d t_dc.
    fn affine(&mut self, x: &[f64]) -> Result<Option<(f64, Vec<f64>, Evaluation)>> {
        let p = self.problem;
        if !p.utility.has_affine_weights() {
            return Ok(None);
        }
        let mut linear = Evaluation::default();
        if !self
            .evaluator
            .evaluate_linear(x, self.shift, &mut self.out, &mut linear)?
        {
            return Ok(None);
        }
        self.evaluations += 1;
        let uniform = self.plain_sums(1.0 / self.out.responses.len() as f64);
        let r = &self.out.responses;
        let mut g = vec![0.0; x.len()];
        let u = p.utility.smooth(r, x, &mut self.weights, &mut g);
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        match p.utility.affine_weights(r, x) {
            Some((a, b)) => {
                let c0 = a + b * (self.shift - mean);
                for (plain, lin) in [
                    (&mut self.out.contributions, &linear.contributions),
                    (&mut self.out.gradient, &linear.gradient),
                    (&mut self.out.curvature, &linear.curvature),
                ] {
                    for (v, l) in plain.iter_mut().zip(lin) {
                        *v = c0 * *v + b * l;
                    }
                }
                for (g, e) in g.iter_mut().zip(&self.out.gradient) {
                    *g += e;
                }
            }
            None => {
                add_weighted_pass(
                    &mut *self.evaluator,
                    x,
                    &self.weights,
                    &mut self.out,
                    &mut g,
                )?;
                self.evaluations += 1;
            }
        }
        self.shift = mean;
        Ok(Some((u, g, uniform)))
    }

    /// Where the objective is k μ + a Σx: the first outcome constraint whose draw
    /// weights are a kernel at a quantile (CVaR, VaR, quantiles, …), and its utility:
    /// its banded pass gives the mean's sums as well ([`KernelPass::uniform`]).
    fn shared_outcome(&self) -> Option<(usize, Utility)> {
        self.nonlinear
            .iter()
            .enumerate()
            .find_map(|(i, c)| match &c.function {
                ConstraintFunction::Outcome(u)
                    if u.linear_form().is_none()
                        && !u.has_affine_weights()
                        && !u.needs_cell_moments() =>
                {
                    Some((i, u.clone()))
                }
                _ => None,
            })
    }

    /// `self.out`'s per-cell sums times `k`, without the responses.
    fn plain_sums(&self, k: f64) -> Evaluation {
        let times = |v: &[f64]| v.iter().map(|s| s * k).collect();
        Evaluation {
            responses: vec![],
            contributions: times(&self.out.contributions),
            gradient: times(&self.out.gradient),
            curvature: times(&self.out.curvature),
        }
    }

    /// The coupling's vectors in y's units: × √(scale²/f0), as the curvature's
    /// diagonal is scaled; dropped where that is not finite.
    fn scale_coupling(&self, pt: &mut Point) {
        let root = (self.scale * (self.scale / self.f0)).sqrt();
        if let Some(c) = &mut pt.coupling {
            c.iter_mut().flatten().for_each(|v| *v *= root);
            if !root.is_finite() || c.iter().flatten().any(|v| !v.is_finite()) {
                pt.coupling = None;
            }
        }
    }

    /// Turns U, ∇U, ∇²U into f = −U/|U₀|, ∇_y f, ∇²_y f, with non-finite gradient
    /// entries (curves with g'(0) = ∞) replaced by a large finite slope.
    pub(super) fn rescale(&self, mut pt: Point) -> Point {
        let k = self.scale / self.f0;
        pt.f = -pt.utility / self.f0;
        let finite_max = pt
            .grad_u
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        let big = self.infinite_slope * (finite_max * k).max(1.0);
        pt.g = pt
            .grad_u
            .iter()
            .map(|v| {
                let s = -v * k;
                if s.is_finite() { s } else { -big * v.signum() }
            })
            .collect();
        let kk = self.scale * k;
        self.scale_coupling(&mut pt);
        pt.h =
            pt.h.iter()
                .map(|v| {
                    let s = -v * kk;
                    if s.is_finite() { s } else { 0.0 }
                })
                .collect();
        pt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuEvaluator, Saturation, demo};

    /// The slopes computed on the host for a few draws ([`host_slopes`]) are the
    /// evaluator's own for those draws, kept by a banded pass over every draw: the
    /// same terms, the same bits.
    #[test]
    fn host_slopes_are_the_evaluators() {
        let (model, scenario) = demo::case(
            &demo::DemoSize {
                channels: 4,
                geos: 2,
                draws: 60,
            },
            3,
        );
        let problem = Problem::new(&model, &scenario).unwrap();
        let n = problem.num_cells();
        let x: Vec<f64> = (0..n).map(|c| 50.0 + 10.0 * c as f64).collect();
        let draws = [2, 17, 18, 59];
        let host = host_slopes(&problem, &x, &draws).unwrap().unwrap();
        let mut ev = CpuEvaluator::new(&problem).unwrap();
        let mut sums = crate::eval::BandedSums::default();
        let all = [(f64::NEG_INFINITY, f64::INFINITY)];
        assert!(ev.evaluate_banded(&x, 0.0, &all, 60, &mut sums).unwrap());
        assert_eq!(sums.kept, (0..60).collect::<Vec<_>>());
        for (i, d) in draws.iter().enumerate() {
            let kept: Vec<f64> = sums.kept_terms[d * 3 * n..(d + 1) * 3 * n]
                .chunks_exact(3)
                .map(|t| t[1])
                .collect();
            assert_eq!(&host[i * n..(i + 1) * n], &kept[..], "draw {d}");
        }
    }

    /// U(x) of a utility with the diversification ratio, exact.
    fn value(ev: &mut CpuEvaluator, u: &Utility, x: &[f64]) -> f64 {
        let mut m = CellMoments::default();
        ev.cell_moments(x, &crate::utility::budget_shares(x), &mut m)
            .unwrap();
        u.value_with(&m.responses, x, Some(&m))
    }

    /// The gradient of `cell_utility` (the ratio alone and beside other terms, whose
    /// draw weights are equal or not) against central differences of the exact value,
    /// on random posteriors, saturation kinds and allocations.
    #[test]
    fn the_diversification_ratio_gradient_matches_central_differences() {
        let size = demo::DemoSize {
            channels: 3,
            geos: 2,
            draws: 60,
        };
        for (seed, kind) in [
            (1, Saturation::Logistic),
            (2, Saturation::Hill),
            (3, Saturation::MichaelisMenten),
            (4, Saturation::Tanh),
        ] {
            let (model, scenario) = demo::case_with(&size, kind, seed);
            let problem = crate::Problem::new(&model, &scenario).unwrap();
            let mut ev = CpuEvaluator::new(&problem).unwrap();
            let n = problem.num_cells();
            let x: Vec<f64> = (0..n)
                .map(|c| {
                    problem.total_budget / n as f64
                        * (0.3 + 0.25 * ((c * 7 + seed as usize) % 5) as f64)
                })
                .collect();
            for text in [
                "diversification_ratio",
                "mean + 40 * diversification_ratio",
                "mean - 0.3 * std - 25 * diversification_ratio",
                "diversification_gap(1.5)",
                "mean + 3 * diversification_gap(1.2)",
            ] {
                let u = Utility::parse(text).unwrap();
                let mut g = vec![0.0; n];
                let mut out = Evaluation::default();
                let (v, _) = cell_utility(&mut ev, &u, &x, &mut out, &mut g).unwrap();
                assert!((v - value(&mut ev, &u, &x)).abs() <= 1e-12 * v.abs());
                for c in 0..n {
                    let h = 1e-5 * x[c];
                    let (mut up, mut down) = (x.clone(), x.clone());
                    up[c] += h;
                    down[c] -= h;
                    let fd = (value(&mut ev, &u, &up) - value(&mut ev, &u, &down)) / (2.0 * h);
                    let scale = g.iter().map(|v| v.abs()).fold(0.0, f64::max);
                    assert!(
                        (fd - g[c]).abs() <= 1e-6 * scale,
                        "{kind:?} {text} cell {c}: gradient {} vs central difference {fd}",
                        g[c]
                    );
                }
            }
        }
    }
}
