//! Sequential quadratic programming over Clarabel QPs.
//!
//! The solver maximises U(x) over the per-period allocation x subject to bounds, the
//! budget constraint, linear constraints and nonlinear ones. It works in scaled
//! variables y = x/s (s = the total budget, or the largest upper bound when the budget
//! is 0) and minimises f(y) = −U(s y)/|U₀| with U₀ the utility at the start.
//!
//! The method, as the code reads ([`Solver::solve`] → `iterate`):
//! - **set-up** (`start.rs`, `Run::begin`): the rows (`rows.rs`), the steep cells and
//!   their raised bounds (`steep.rs`), the start projected onto the linear rows
//!   (`project.rs`: when they admit no point the solve ends `Infeasible`, naming the
//!   rows of Clarabel's infeasibility certificate), the objective's scale, the Hessian
//!   model (`hessian.rs`) and the QP's patterns (`qp.rs`, `pattern.rs`);
//! - then, each iteration at y_k:
//!   1. **evaluate** (`point.rs`): U, ∇U and, for utilities with constant draw weights
//!      (the mean), the exact diagonal Hessian Σ_d u_d r''_dc, raised to a small floor
//!      where a curve is locally convex so the QP stays convex; with nonlinear
//!      constraints their exact curvature where they give it, else a damped BFGS model
//!      of it;
//!   2. **the QP** (`Run::solve_qp`, `Qp::solve`): min ½pᵀHp + ∇fᵀp subject to the
//!      linear rows at y_k + p and the nonlinear rows linearised with elastic slacks,
//!      answered by the first of an ordered list of attempts (the last active set
//!      solved exactly, Clarabel solved again exactly on its active set, …, Clarabel's
//!      own answer), within a trust radius;
//!   3. **check termination** (`termination.rs`): the KKT residual from the QP's
//!      multipliers below `gtol` with the violation below `ctol` ends the solve
//!      `Solved`; the stall rules ([`StallRules`]) and the limits end it otherwise;
//!   4. **update the penalty** ν of the ℓ1 merit f + ν Σ violation
//!      (`Run::update_penalty`);
//!   5. **line search** (`line_search.rs`): backtracking on the merit, with a
//!      second-order correction after a refused full step; accepted or refused;
//!   6. the trust radius, the trace and callback, the stall counters, the Hessian
//!      model's update;
//! - **finish** (`finish.rs`): the multipliers at the final iterate, the polish
//!   (bounds exactly, the budget to rounding), the multipliers and KKT residual in
//!   user units, the final status, ROI and the [`Solution`].
//!
//! Every threshold is a field of [`Tuning`]. An evaluator's error ends the solve with
//! that error at once (a lost GPU is not a refused step).

use crate::constraint::NonlinearConstraint;
use crate::error::{Error, Result};
use crate::eval::Evaluator;
use crate::problem::Problem;
use crate::solution::{IterationInfo, Solution, Status};
use std::time::Instant;

mod finish;
mod hessian;
mod kernel;
mod kkt;
mod line_search;
mod low_rank;
mod pattern;
mod point;
mod polish;
mod project;
mod qp;
mod refine;
mod rows;
mod run;
mod settings;
mod start;
mod steep;
mod termination;
mod tuning;

/// Uniform numbers in [−½, ½) from a 64-bit linear congruential generator (Knuth's
/// MMIX constants), for the unit tests' random matrices.
#[cfg(test)]
pub(crate) fn test_uniform(mut seed: u64) -> impl FnMut() -> f64 {
    move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    }
}

pub use settings::{HessianMode, Settings};
pub use tuning::{StallRules, Tuning};

use line_search::Search;
use run::{Run, State};
use start::Begin;
use termination::Ending;

/// The SQP solver for one problem.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 200 }, 5);
/// let problem = Problem::new(&model, &scenario)?;
/// let mut ev = CpuEvaluator::new(&problem)?;
/// let solution = Solver::new(&problem, &mut ev, Settings::default())?.solve()?;
/// assert_eq!(solution.status, Status::Solved);
/// assert!(solution.utility >= solution.start_utility);
/// let spent: f64 = solution.allocation.iter().sum();
/// assert!((spent - problem.total_budget).abs() <= 1e-9 * problem.total_budget);
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub struct Solver<'a> {
    problem: &'a Problem,
    evaluator: &'a mut dyn Evaluator,
    settings: Settings,
    nonlinear: Vec<NonlinearConstraint>,
    callback: Option<BoxedCallback<'a>>,
}

/// The per-iteration callback: `false` stops the solver.
type BoxedCallback<'a> = Box<dyn FnMut(&IterationInfo) -> bool + 'a>;

impl<'a> Solver<'a> {
    /// A solver for `problem` evaluated by `evaluator` (which must have been built for
    /// the same problem).
    pub fn new(
        problem: &'a Problem,
        evaluator: &'a mut dyn Evaluator,
        settings: Settings,
    ) -> Result<Self> {
        settings.validate()?;
        if problem.plan.is_some() {
            return Err(Error::invalid(
                "solver",
                "decision",
                "a spend per period or group of periods",
                "a constant decision (a plan over time is solved by mmm_budget::plan::solve)",
            ));
        }
        if evaluator.num_cells() != problem.num_cells()
            || evaluator.num_draws() != problem.num_draws()
        {
            return Err(Error::invalid(
                "solver",
                "evaluator",
                format!(
                    "{} draws × {} cells",
                    evaluator.num_draws(),
                    evaluator.num_cells()
                ),
                format!(
                    "the problem's {} draws × {} cells",
                    problem.num_draws(),
                    problem.num_cells()
                ),
            ));
        }
        // The scenario's outcome constraints first, then those added in code.
        let nonlinear = problem
            .outcome_constraints
            .iter()
            .map(|o| {
                NonlinearConstraint::outcome(o.name.clone(), o.sense, o.rhs, o.utility.clone())
            })
            .collect();
        Ok(Solver {
            problem,
            evaluator,
            settings,
            nonlinear,
            callback: None,
        })
    }

    /// Adds a nonlinear constraint. Give its curvature
    /// ([`NonlinearConstraint::with_curvature`]) where its Hessian is diagonal: the
    /// QPs then use the exact Hessian of the Lagrangian.
    ///
    /// ```
    /// use mmm_budget::*;
    /// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 200 }, 5);
    /// let problem = Problem::new(&model, &scenario)?;
    /// // No cell above 40% of the budget in the ℓ2 sense: Σ x_c² ≤ 0.4 B².
    /// let cap = 0.4 * problem.total_budget * problem.total_budget;
    /// let squares = NonlinearConstraint::new("squares", Sense::LessEqual, cap, |x: &[f64], g: &mut [f64]| {
    ///     for (g, x) in g.iter_mut().zip(x) { *g = 2.0 * x; }
    ///     Ok(x.iter().map(|v| v * v).sum())
    /// })
    /// .with_curvature(|_x: &[f64], h: &mut [f64]| { h.fill(2.0); Ok(()) });
    /// let mut ev = CpuEvaluator::new(&problem)?;
    /// let solution = Solver::new(&problem, &mut ev, Settings::default())?
    ///     .with_nonlinear(squares)
    ///     .solve()?;
    /// assert_eq!(solution.status, Status::Solved);
    /// assert!(solution.allocation.iter().map(|v| v * v).sum::<f64>() <= cap * (1.0 + 1e-9));
    /// # Ok::<(), mmm_budget::Error>(())
    /// ```
    pub fn with_nonlinear(mut self, c: NonlinearConstraint) -> Self {
        self.nonlinear.push(c);
        self
    }

    /// Sets the per-iteration callback; returning false stops the solve (`Stopped`).
    pub fn with_callback(mut self, f: impl FnMut(&IterationInfo) -> bool + 'a) -> Self {
        self.callback = Some(Box::new(f));
        self
    }

    /// Runs the method from each of [`Settings::starts`] starts and keeps the best:
    /// solved before not, then the larger utility. `time_limit` covers all the starts;
    /// a callback that stops one stops them all.
    pub fn solve(mut self) -> Result<Solution> {
        let clock = Clock {
            started: Instant::now(),
            limit: self.settings.time_limit,
        };
        let first = self.settings.start.clone();
        let mut best = self.solve_from(first.as_deref(), &clock)?;
        let starts = self.settings.starts;
        if starts <= 1 || matches!(best.status, Status::Infeasible | Status::Stopped) {
            return Ok(best);
        }
        let (mut iterations, mut evaluations, mut from, mut tried) =
            (best.iterations, best.evaluations, 1, 1);
        for k in 1..starts {
            if clock.is_up() {
                break;
            }
            let s = self.solve_from(Some(&self.dirichlet_start(k)), &clock)?;
            tried += 1;
            iterations += s.iterations;
            evaluations += s.evaluations;
            if s.status == Status::Stopped {
                break;
            }
            let solved = |s: &Solution| s.status == Status::Solved;
            if (solved(&s) && !solved(&best))
                || (solved(&s) == solved(&best) && s.utility > best.utility)
            {
                (best, from) = (s, k + 1);
            }
        }
        best.message = format!(
            "{} (the best of {tried} starts: start {from}; iterations and evaluations over all)",
            best.message
        );
        best.iterations = iterations;
        best.evaluations = evaluations;
        best.seconds = clock.started.elapsed().as_secs_f64();
        Ok(best)
    }

    /// Start k of several: the budget split by weights from a flat Dirichlet
    /// distribution (seed k).
    fn dirichlet_start(&self, k: usize) -> Vec<f64> {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let p = self.problem;
        let mut rng = rand::rngs::StdRng::seed_from_u64(k as u64);
        let w: Vec<f64> = (0..p.num_cells())
            .map(|_| rand_distr::Exp1.sample(&mut rng))
            .collect();
        let total: f64 = w.iter().sum();
        let budget = if p.total_budget > 0.0 {
            p.total_budget
        } else {
            1.0
        };
        w.iter().map(|v| budget * v / total).collect()
    }

    /// One run of the method from `start` (default: the problem's start, else the
    /// budget spread evenly): set up, iterate, finish.
    fn solve_from(&mut self, start: Option<&[f64]>, clock: &Clock) -> Result<Solution> {
        let started = Instant::now();
        let begin = Run::begin(
            self.problem,
            &mut *self.evaluator,
            &mut self.nonlinear,
            &self.settings,
            start,
            started,
        )?;
        let (mut run, mut state) = match begin {
            Begin::Ready(run, state) => (run, state),
            Begin::Infeasible(solution) => return Ok(*solution),
        };
        let callback = self.callback.as_mut().map(|c| &mut **c as Callback<'_>);
        let ending = iterate(&mut run, &mut state, clock, callback)?;
        run.finish(state, ending)
    }
}

/// The per-iteration callback as the loop holds it.
type Callback<'c> = &'c mut dyn FnMut(&IterationInfo) -> bool;

/// The wall clock of a whole solve (all its starts) and its limit.
struct Clock {
    started: Instant,
    limit: f64,
}

impl Clock {
    fn is_up(&self) -> bool {
        self.started.elapsed().as_secs_f64() >= self.limit
    }
}

/// The method: at each iterate a QP gives the step and the multipliers; the KKT test
/// there ends the solve, else a line search on the ℓ1 merit takes the step.
fn iterate(
    run: &mut Run,
    state: &mut State,
    clock: &Clock,
    mut callback: Option<Callback<'_>>,
) -> Result<Ending> {
    loop {
        let hessian = state.model.hessian(&state.point);
        let qp = match run.solve_qp(state, &hessian)? {
            Ok(qp) => qp,
            Err(failed) => return Ok(Ending::qp_failed(failed, state.iterations + 1)),
        };
        state.iterations += 1;
        let at = run.measure(&state.point, &qp);
        if let Some(ending) = run.check_termination(state, &at, &qp, clock) {
            state.trace.push(run.info(state, &at, None));
            return Ok(ending.with_qp(qp));
        }
        run.update_penalty(state, &qp);
        let mut step = match run.line_search(state, &qp, &hessian)? {
            Search::Accepted(step) => step,
            Search::Refused(why) => {
                state.trace.push(run.info(state, &at, None));
                return Ok(run.refused(why, &at).with_qp(qp));
            }
        };
        run.update_radius(state, &step);
        let info = run.info(state, &at, Some(&step));
        run.print(&info);
        let keep_going = callback.as_mut().is_none_or(|cb| cb(&info));
        state.trace.push(info);
        run.after_step(state, &step);
        run.objective.complete_coupling(&mut step.point)?;
        state.model.update(&state.point, &step.point, &qp.z_nl);
        state.point = step.point;
        if !keep_going {
            return Ok(Ending::stopped());
        }
    }
}
