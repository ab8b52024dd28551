//! Sequential quadratic programming over Clarabel QPs.
//!
//! The solver maximises U(x) over the per-period allocation x subject to bounds, the
//! budget constraint, linear constraints and nonlinear ones. It works in scaled
//! variables y = x/s (s = the total budget, or the largest upper bound when the budget
//! is 0) and minimises f(y) = −U(s y)/|U₀| with U₀ the utility at the start.
//!
//! Each iteration, at y_k:
//! 1. the evaluator gives U, ∇U and, for utilities with constant draw weights (the
//!    mean), the exact diagonal Hessian Σ_d u_d r''_dc; where a curve is locally convex
//!    the diagonal is raised to a small positive floor so the QP stays convex. With
//!    nonlinear constraints (whose Hessians are not known) a damped BFGS model of
//!    their curvature Σ_j z_j ∇²c_j is added to it (`hessian::Model`);
//! 2. Clarabel solves the QP min ½pᵀHp + ∇fᵀp subject to the linear rows at y_k + p
//!    (equalities in a zero cone, inequalities and bounds in a nonnegative cone) and the
//!    nonlinear constraints linearised with elastic slacks t ≥ 0 penalised by ρΣt, so
//!    the QP is always feasible once the linear rows are; the sparsity is built once
//!    and only values change between iterations;
//!    With the exact diagonal and no nonlinear rows, the QP's answer is then solved
//!    again exactly on the active set Clarabel points to (`refine`): an interior-point
//!    answer leaves spurious multipliers μ/s on rows with a tiny slack s;
//! 3. the KKT residual at y_k is computed from the QP's multipliers; below `gtol`
//!    (with violation below `ctol`) the solve ends there;
//! 4. a backtracking line search on the ℓ1 merit f + ν Σ violation takes the step.
//!
//! Cells whose marginal return is infinite at their lower bound (`root` with α < 1,
//! `hill` with slope < 1 in some draw) have their bound raised by 1e-12 of the budget
//! (where the constraints leave room) and approach it at most 90% of the way per
//! step (see `steep_cells`). A stall (no change in f) does not end the solve while the
//! KKT residual still falls tenfold an iteration or such a cell is still on its way
//! down.
//!
//! Before the first iteration the start is projected (a QP) onto the linear rows:
//! when they admit no point, the solve ends `Infeasible`, naming the rows of
//! Clarabel's infeasibility certificate.

use crate::constraint::{NonlinearConstraint, Sense};
use crate::error::{Error, Result};
use crate::eval::{DrawWeights, Evaluation, Evaluator};
use crate::problem::Problem;
use crate::scenario::BudgetConstraint;
use crate::solution::{IterationInfo, Multiplier, Solution, Status};
use clarabel::algebra::CscMatrix;
use clarabel::solver::{
    DefaultSettings, DefaultSettingsBuilder, DefaultSolver, IPSolver, SolverStatus, SupportedConeT,
};
use std::time::Instant;

mod hessian;
mod kkt;
mod polish;
mod qp;
mod refine;
mod steep;

use hessian::*;
use kkt::*;
use polish::*;
use qp::*;
use steep::*;

/// How the QP's Hessian is formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HessianMode {
    /// Exact where the evaluator gives it (mean utility): with nonlinear constraints
    /// that all give their curvature ([`NonlinearConstraint::with_curvature`]), the
    /// exact diagonal of the Lagrangian; with others the objective's exact diagonal
    /// plus a damped BFGS model of the constraints' curvature; BFGS of the whole
    /// Lagrangian otherwise.
    #[default]
    Auto,
    /// The evaluator's diagonal curvature (plus the nonlinear constraints' where they
    /// all give it), regularised to positive definite.
    Exact,
    /// Damped BFGS on the Lagrangian, started from the regularised exact diagonal.
    Bfgs,
}

/// Solver settings.
///
/// ```
/// use mmm_budget::Settings;
/// let s = Settings::default().max_iter(50).gtol(1e-9);
/// assert!(s.validate().is_ok());
/// assert!(Settings::default().gtol(-1.0).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Iteration limit.
    pub max_iter: usize,
    /// Wall-time limit in seconds (∞: none).
    pub time_limit: f64,
    /// KKT residual tolerance (scaled: marginal returns relative to U₀ per budget unit s).
    pub gtol: f64,
    /// Constraint violation tolerance (relative to each constraint's scale).
    pub ctol: f64,
    /// Relative objective change below which progress is deemed stalled.
    pub ftol: f64,
    /// Step size (‖Δx‖∞ / s) below which progress is deemed stalled.
    pub xtol: f64,
    /// 0 silent, 1 a closing report, 2 a line per iteration (on stderr).
    pub verbose: u8,
    /// How the QP's Hessian is formed.
    pub hessian: HessianMode,
    /// A start allocation (per period, over the optimized cells); default: the
    /// problem's start, else the budget spread evenly, projected onto the constraints.
    pub start: Option<Vec<f64>>,
    /// Solves from this many starts and returns the best (default 1). The first is
    /// [`Settings::start`] (or the default start); the others split the budget by
    /// weights drawn from a flat Dirichlet distribution (fixed seeds), projected onto
    /// the constraints. For S-shaped curves (`hill` with slope > 1, `hill_sigmoid`),
    /// where the solver returns a local optimum that depends on the start; a concave
    /// problem has one optimum and gains nothing. `time_limit` covers all the starts;
    /// a callback that stops the solve stops them all.
    pub starts: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_iter: 200,
            time_limit: f64::INFINITY,
            gtol: 1e-8,
            ctol: 1e-9,
            ftol: 1e-15,
            xtol: 1e-14,
            verbose: 0,
            hessian: HessianMode::Auto,
            start: None,
            starts: 1,
        }
    }
}

macro_rules! setter {
    ($name:ident, $t:ty) => {
        #[doc = concat!("Sets `", stringify!($name), "`.")]
        pub fn $name(mut self, v: $t) -> Self {
            self.$name = v;
            self
        }
    };
}

impl Settings {
    setter!(max_iter, usize);
    setter!(time_limit, f64);
    setter!(gtol, f64);
    setter!(ctol, f64);
    setter!(ftol, f64);
    setter!(xtol, f64);
    setter!(verbose, u8);
    setter!(hessian, HessianMode);
    setter!(starts, usize);

    /// Sets the start allocation.
    pub fn start(mut self, x: Vec<f64>) -> Self {
        self.start = Some(x);
        self
    }

    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, value: f64, expected: &'static str| Error::Settings {
            context: "settings".into(),
            field,
            value: value.to_string(),
            expected,
        };
        if self.max_iter == 0 {
            return Err(bad("max_iter", 0.0, "an integer >= 1"));
        }
        if self.starts == 0 {
            return Err(bad("starts", 0.0, "an integer >= 1"));
        }
        if self.time_limit.is_nan() || self.time_limit <= 0.0 {
            return Err(bad("time_limit", self.time_limit, "seconds > 0"));
        }
        for (field, v) in [
            ("gtol", self.gtol),
            ("ctol", self.ctol),
            ("ftol", self.ftol),
            ("xtol", self.xtol),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(field, v, "a finite number >= 0"));
            }
        }
        if self.verbose > 2 {
            return Err(bad("verbose", self.verbose as f64, "0, 1 or 2"));
        }
        Ok(())
    }

    /// Settings from a scenario's `options` object (`max_iter`, `time_limit`, `gtol`,
    /// `ctol`, `ftol`, `xtol`, `verbose`, `hessian`: "auto" | "exact" | "bfgs",
    /// `starts`).
    pub fn from_options(
        options: &serde_json::Map<String, serde_json::Value>,
        context: &str,
    ) -> Result<Self> {
        let mut s = Settings::default();
        for (key, v) in options {
            let bad = |expected: &'static str| {
                Error::invalid(context, format!("options.{key}"), v, expected)
            };
            let num = || v.as_f64().ok_or_else(|| bad("a number"));
            match key.as_str() {
                "max_iter" => {
                    s.max_iter = v.as_u64().ok_or_else(|| bad("an integer >= 1"))? as usize
                }
                "starts" => s.starts = v.as_u64().ok_or_else(|| bad("an integer >= 1"))? as usize,
                "time_limit" => s.time_limit = num()?,
                "gtol" => s.gtol = num()?,
                "ctol" => s.ctol = num()?,
                "ftol" => s.ftol = num()?,
                "xtol" => s.xtol = num()?,
                "verbose" => {
                    s.verbose = v
                        .as_u64()
                        .filter(|&x| x <= 2)
                        .ok_or_else(|| bad("0, 1 or 2"))? as u8
                }
                "hessian" => {
                    s.hessian = match v.as_str() {
                        Some("auto") => HessianMode::Auto,
                        Some("exact") => HessianMode::Exact,
                        Some("bfgs") => HessianMode::Bfgs,
                        _ => return Err(bad(r#""auto", "exact" or "bfgs""#)),
                    }
                }
                _ => {
                    return Err(bad(
                        "one of max_iter, time_limit, gtol, ctol, ftol, xtol, verbose, hessian, starts",
                    ));
                }
            }
        }
        s.validate().map_err(|e| e.recontext("settings", context))?;
        Ok(s)
    }
}

/// Which user constraint a QP row comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Origin {
    Budget,
    Linear(usize),
    Upper(usize),
    Lower(usize),
    /// Lower bound = upper bound: one equality row (two inequalities would leave the
    /// interior-point QP no interior).
    Fixed(usize),
}

/// A linear row a·y ≤ rhs (or = rhs) in scaled variables; `sign` is −1 when the user
/// wrote `>=` and the row was negated.
#[derive(Clone, Debug)]
struct Row {
    coefficients: Vec<(usize, f64)>,
    rhs: f64,
    equality: bool,
    sign: f64,
    origin: Origin,
}

impl Row {
    /// a·y.
    fn lhs(&self, y: &[f64]) -> f64 {
        self.coefficients.iter().map(|&(c, a)| a * y[c]).sum()
    }
}

/// A nonlinear constraint's scaled form: sign·(c(x) − rhs)/scale ≤ 0 (or = 0).
struct NonlinearRow {
    sign: f64,
    equality: bool,
    scale: f64,
}

/// Everything known at one iterate.
#[derive(Clone, Debug)]
struct Point {
    y: Vec<f64>,
    f: f64,
    utility: f64,
    mean_response: f64,
    /// ∇_y f.
    g: Vec<f64>,
    /// ∇_x U.
    grad_u: Vec<f64>,
    /// Σ_d u_d r_dc (for the mean: the mean contribution of each cell).
    contributions: Vec<f64>,
    /// −(s²/|U₀|) Σ_d u_d r''_dc (exact diagonal of ∇²f), before regularisation.
    h: Vec<f64>,
    /// Scaled nonlinear row values sign·(c − rhs)/scale.
    nl_values: Vec<f64>,
    /// Their gradients in y, row-major (m_nl × n).
    nl_grads: Vec<f64>,
    /// The diagonals of their Hessians in y, row-major (m_nl × n), where every
    /// nonlinear constraint gives its curvature; else empty.
    nl_h: Vec<f64>,
    /// c(x) of each nonlinear constraint.
    nl_raw: Vec<f64>,
    /// ∇c(x), row-major.
    nl_raw_grads: Vec<f64>,
}

/// A QP's answer.
struct QpResult {
    p: Vec<f64>,
    t: Vec<f64>,
    /// Multipliers of the linear rows (in `rows` order), then of the nonlinear rows.
    z_lin: Vec<f64>,
    z_nl: Vec<f64>,
    reduced: bool,
    /// A steep cell next to its bound still moves by a good part of its distance to it
    /// (diving, cut at [`TO_BOUNDARY`] of the way, or climbing back up): progress that
    /// the objective cannot resolve.
    diving: bool,
}

enum QpOutcome {
    Solved(QpResult),
    Failed(SolverStatus),
}

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
    callback: Option<Callback<'a>>,
}

/// The per-iteration callback: `false` stops the solver.
type Callback<'a> = Box<dyn FnMut(&IterationInfo) -> bool + 'a>;

/// The elastic penalty on the linearised nonlinear constraints' slacks.
const ELASTIC_PENALTY: f64 = 1e5;

impl<'a> Solver<'a> {
    /// A solver for `problem` evaluated by `evaluator` (which must have been built for
    /// the same problem).
    pub fn new(
        problem: &'a Problem,
        evaluator: &'a mut dyn Evaluator,
        settings: Settings,
    ) -> Result<Self> {
        settings.validate()?;
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
        Ok(Solver {
            problem,
            evaluator,
            settings,
            nonlinear: vec![],
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

    /// Runs the SQP loop (from each of [`Settings::starts`] starts, keeping the best:
    /// solved before not, then the larger utility).
    pub fn solve(mut self) -> Result<Solution> {
        let started = Instant::now();
        let mut best = self.solve_from_start()?;
        let starts = self.settings.starts;
        if starts <= 1 || matches!(best.status, Status::Infeasible | Status::Stopped) {
            return Ok(best);
        }
        let (mut iterations, mut evaluations, mut from) = (best.iterations, best.evaluations, 1);
        let p = self.problem;
        // The time limit covers all the starts.
        let time_limit = self.settings.time_limit;
        let mut tried = 1;
        for k in 1..starts {
            let left = time_limit - started.elapsed().as_secs_f64();
            if left <= 0.0 {
                break;
            }
            self.settings.time_limit = left;
            use rand::SeedableRng;
            use rand_distr::Distribution;
            let mut rng = rand::rngs::StdRng::seed_from_u64(k as u64);
            let exp = rand_distr::Exp1;
            let w: Vec<f64> = (0..p.num_cells()).map(|_| exp.sample(&mut rng)).collect();
            let total: f64 = w.iter().sum();
            let budget = if p.total_budget > 0.0 {
                p.total_budget
            } else {
                1.0
            };
            self.settings.start = Some(w.iter().map(|v| budget * v / total).collect());
            let s = self.solve_from_start()?;
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
        best.seconds = started.elapsed().as_secs_f64();
        Ok(best)
    }

    /// One run of the SQP loop from [`Settings::start`].
    fn solve_from_start(&mut self) -> Result<Solution> {
        let started = Instant::now();
        let p = self.problem;
        let n = p.num_cells();
        let scale = if p.total_budget > 0.0 {
            p.total_budget
        } else {
            p.upper.iter().copied().fold(0.0, f64::max).max(1.0)
        };
        let mut lower: Vec<f64> = p.lower.iter().map(|v| v / scale).collect();
        let upper: Vec<f64> = p.upper.iter().map(|v| v / scale).collect();
        let mut rows = linear_rows(p, scale);
        let mut out = Evaluation::new(p.num_draws(), n);
        let (steep, probed) = steep_cells(&mut *self.evaluator, p, &mut out)?;
        let (shifted_rows, mut pinned) = raised_rows(&rows, &steep, &lower);

        // Start: settings, scenario, or uniform; projected onto the linear rows.
        let x0 = match (&self.settings.start, &p.start) {
            (Some(x), _) | (None, Some(x)) => {
                p.check_allocation(x, n)
                    .map_err(|e| e.recontext("allocation", "start"))?;
                x.clone()
            }
            _ => p.uniform_allocation(),
        };
        let y0: Vec<f64> = x0.iter().map(|v| v / scale).collect();
        let shifted = match shifted_rows {
            Some(r) => match project(p, &r, &y0, n)? {
                Ok(y) => Some((r, y)),
                Err(_) => None,
            },
            None => None,
        };
        let raised = shifted.is_some();
        let y0 = match shifted {
            Some((r, mut y)) => {
                rows = r;
                for row in &rows {
                    if let Origin::Lower(c) = row.origin {
                        lower[c] = -row.rhs;
                        if pinned[c] {
                            y[c] = lower[c];
                        }
                    }
                }
                y
            }
            // Not raised: nothing pinned either.
            None => {
                pinned.fill(false);
                match project(p, &rows, &y0, n)? {
                    Ok(y) => y,
                    Err(conflicting) => {
                        return Ok(self.infeasible(conflicting, started, scale));
                    }
                }
            }
        };

        // Nonlinear rows' scales from their value at the start.
        let mut nl_rows = Vec::with_capacity(self.nonlinear.len());
        let mut gbuf = vec![0.0; n];
        let x_start: Vec<f64> = clamp_scaled(&y0, &lower, &upper)
            .iter()
            .map(|v| v * scale)
            .collect();
        for c in self.nonlinear.iter_mut() {
            let v = (c.function)(&x_start, &mut gbuf)?;
            nl_rows.push(NonlinearRow {
                sign: if c.sense == Sense::GreaterEqual {
                    -1.0
                } else {
                    1.0
                },
                equality: c.sense == Sense::Equal,
                scale: c.rhs.abs().max(v.abs()).max(1e-12),
            });
        }

        let curvature =
            !self.nonlinear.is_empty() && self.nonlinear.iter().all(|c| c.curvature.is_some());
        let mut ctx = Context {
            evaluator: &mut *self.evaluator,
            nonlinear: &mut self.nonlinear,
            nl_rows: &nl_rows,
            problem: p,
            scale,
            f0: 1.0,
            lower: &lower,
            upper: &upper,
            evaluations: usize::from(probed),
            out,
            weights: vec![0.0; p.num_draws()],
            ngrad: vec![0.0; n],
            curvature,
        };
        let start = ctx.point(&y0)?;
        // The objective's scale: |U₀|, unless the start is worth (almost) nothing, as
        // at a zero start, then the size of the start's marginal returns times s.
        let slope = scale
            * start
                .grad_u
                .iter()
                .filter(|v| v.is_finite())
                .fold(0.0f64, |m, v| m.max(v.abs()));
        ctx.f0 = if start.utility.abs() >= 1e-8 * slope && start.utility != 0.0 {
            start.utility.abs()
        } else if slope > 0.0 {
            slope
        } else {
            1.0
        };
        let mut point = ctx.rescale(start);
        let start_point = point.clone();

        let mut model = Model::new(
            self.settings.hessian,
            nl_rows.len(),
            p.utility.has_constant_weights(),
            &point,
            n,
        );
        let exact = model.is_exact();
        let mut qp = Qp::new(&rows, &nl_rows, n, exact, &pinned)?;
        qp.steep = steep;
        qp.raised = raised;
        let mut nu = 0.0f64;
        // Trust radius on each cell's step (scaled units: 1 is the whole budget). It
        // shrinks to the step the line search accepted and grows when a full step
        // reaches it, so that a cell with almost no curvature (a flat or empty one)
        // cannot propose moving the whole budget at once.
        let mut radius = f64::INFINITY;
        let concave = model.is_exact() && p.is_concave() && p.utility.has_constant_weights();
        let mut trace: Vec<IterationInfo> = vec![];
        let mut stalled = None::<&'static str>;
        let (mut last_kkt, mut grace, mut dives) = (f64::INFINITY, 8, 30);
        // The best point so far as (f, violation of the nonlinear rows), and the
        // iterations since.
        let (mut best, mut best_nu, mut since_best) = (None::<(f64, f64)>, 0.0, 0);
        let (mut best_kkt, mut kkt_since) = (f64::INFINITY, 0);
        let mut last_qp: Option<QpResult> = None;
        let mut status = Status::MaxIterations;
        let mut message = format!("reached max_iter = {}", self.settings.max_iter);
        let mut iterations = 0;
        // An evaluator in f32 cannot resolve marginal returns below ~30 ulps: the
        // tolerance becomes max(gtol, 30 ε) and the message says so.
        let precision = ctx.evaluator.precision();
        let gtol = self.settings.gtol.max(30.0 * precision);

        loop {
            // QP at the current point.
            let hess = model.hessian(&point);
            let first = qp.solve(&rows, &point, &hess, &nl_rows, n, radius)?;
            // A QP that neither Clarabel nor the exact re-solve could answer: again
            // within a trust radius of a tenth of the budget (or less), which keeps
            // cells of floored curvature from proposing to move the whole budget and
            // the QP within what an interior-point method resolves (seed 48141: hill
            // cells under tight pair caps, curvatures spread over 1e16).
            let first = match first {
                QpOutcome::Failed(_) if radius > 0.1 * SNAP => {
                    let r = radius.min(0.1);
                    match qp.solve(&rows, &point, &hess, &nl_rows, n, r)? {
                        QpOutcome::Solved(x) => {
                            radius = r;
                            QpOutcome::Solved(x)
                        }
                        failed => failed,
                    }
                }
                other => other,
            };
            let result = match first {
                QpOutcome::Solved(r) => r,
                QpOutcome::Failed(s) => {
                    status = Status::NumericalError;
                    message = format!(
                        "the QP subproblem failed at iteration {}: Clarabel status {s:?}",
                        iterations + 1
                    );
                    break;
                }
            };
            // The trust radius must not be what makes the linearised nonlinear
            // constraints unsatisfiable (elastic slacks > 0 and, with them, multipliers
            // at the elastic penalty that then rule the merit): without it, if that
            // satisfies them.
            let result = if radius.is_finite() && result.t.iter().any(|t| *t > 1e-9) {
                match qp.solve(&rows, &point, &hess, &nl_rows, n, f64::INFINITY)? {
                    QpOutcome::Solved(r) if r.t.iter().all(|t| *t <= 1e-9) => r,
                    _ => result,
                }
            } else {
                result
            };
            iterations += 1;
            let kkt = kkt_scaled(&rows, &nl_rows, &point, &result, &pinned);
            let violation =
                violation_scaled(&rows, &point).max(nl_violation(&nl_rows, &point.nl_values));
            let info_at = |step: f64, alpha: f64, evaluations: usize| IterationInfo {
                iteration: iterations,
                utility: point.utility,
                kkt_residual: kkt,
                violation,
                step,
                alpha,
                evaluations,
                elapsed: started.elapsed().as_secs_f64(),
            };
            let converged = kkt <= gtol && violation <= self.settings.ctol && !result.reduced;
            // A stall while the KKT residual still falls by a quarter an iteration (Newton's last
            // steps, where the objective no longer moves, or its linear convergence
            // at a degenerate optimum) gets a few more.
            if !converged && stalled.is_some() && grace > 0 && kkt <= 0.75 * last_kkt {
                stalled = None;
                grace -= 1;
            }
            last_kkt = kkt;
            // Nor while a steep cell next to its bound still moves by a good part of
            // its distance to it (a tenfold dive each iteration, or Newton climbing back
            // up): the objective can no longer resolve that, in f32 least of all.
            if !converged && stalled.is_some() && result.diving && dives > 0 {
                stalled = None;
                dives -= 1;
            }
            // With nonlinear rows, thirty iterations at a feasible point without a KKT
            // residual below its best is a stall whatever the merit does (a cycle where
            // ν and the merit move with the multipliers, as where no multipliers
            // exist). Not while infeasible: the quasi-Newton path can take that long
            // to reach the constraint, and stopping short would report it
            // unsatisfiable. Not without nonlinear rows: there the merit is the
            // objective, and an S-shaped problem leaving a saddle raises its KKT
            // residual for dozens of iterations while U climbs (4 in 100,000 random
            // problems were stopped so, short of their optimum).
            if kkt < best_kkt {
                (best_kkt, kkt_since) = (kkt, 0);
            } else {
                kkt_since += 1;
            }
            if !converged
                && stalled.is_none()
                && !nl_rows.is_empty()
                && kkt_since >= 30
                && violation <= self.settings.ctol
            {
                stalled = Some("no smaller KKT residual in 30 iterations");
            }
            if converged || stalled.is_some() {
                if converged {
                    status = Status::Solved;
                    message = if gtol > self.settings.gtol {
                        format!(
                            "KKT residual {kkt:.2e} <= {gtol:.1e} (gtol raised from {:.0e} to 30 ulps of the evaluator's precision); violation {violation:.2e}",
                            self.settings.gtol
                        )
                    } else {
                        format!("KKT residual {kkt:.2e} <= gtol; violation {violation:.2e}")
                    };
                } else {
                    status = Status::AlmostSolved;
                    message = format!(
                        "progress stalled ({}) with KKT residual {kkt:.2e} > gtol = {gtol:.0e}",
                        stalled.unwrap_or(""),
                    );
                }
                trace.push(info_at(0.0, 0.0, ctx.evaluations));
                last_qp = Some(result);
                break;
            }
            if iterations >= self.settings.max_iter {
                trace.push(info_at(0.0, 0.0, ctx.evaluations));
                last_qp = Some(result);
                break;
            }
            if started.elapsed().as_secs_f64() >= self.settings.time_limit {
                status = Status::MaxTime;
                message = format!("reached time_limit = {} s", self.settings.time_limit);
                trace.push(info_at(0.0, 0.0, ctx.evaluations));
                last_qp = Some(result);
                break;
            }

            // Line search on the ℓ1 merit.
            // The merit's weight ν stays above the multipliers. Where a QP needed
            // elastic slacks (a linearisation that cannot hold: at a start where a
            // constraint's gradient is parallel to the budget's, say), its multiplier
            // is the elastic penalty (1e5) and ν with it; once the QPs are consistent
            // again with multipliers a hundredth of ν, ν starts again from twice them,
            // or the merit refuses every step that moves the violation by 1e-5 and the
            // trust radius crawls (benches/NOTES.md, session 4).
            let zmax = 1.1 * result.z_nl.iter().fold(0.0f64, |m, z| m.max(z.abs()));
            nu = if result.t.iter().all(|t| *t <= 1e-9) && nu > 100.0 * zmax {
                2.0 * zmax
            } else {
                nu.max(zmax)
            };
            let merit = |pt: &Point| pt.f + nu * nl_violation(&nl_rows, &pt.nl_values);
            let phi0 = merit(&point);
            let gp: f64 = point.g.iter().zip(&result.p).map(|(g, p)| g * p).sum();
            let t_sum: f64 = result.t.iter().sum();
            let slope = gp - nu * (nl_violation(&nl_rows, &point.nl_values) - t_sum);
            let step_norm = result.p.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            // Changes below the QP's accuracy (its tolerance, 1e-11 of the scaled
            // objective) or the evaluator's cannot be resolved: the test allows that
            // much noise, so a Newton step near the optimum is taken.
            let noise = (1e-11f64).max(10.0 * precision) * phi0.abs().max(1e-300);
            if slope >= noise || step_norm == 0.0 {
                status = if kkt <= 100.0 * gtol {
                    Status::AlmostSolved
                } else {
                    Status::LineSearchFailed
                };
                message = format!(
                    "the QP step is not a descent direction (slope {slope:.2e}); KKT residual {kkt:.2e}"
                );
                trace.push(info_at(0.0, 0.0, ctx.evaluations));
                last_qp = Some(result);
                break;
            }
            let mut alpha = 1.0;
            let mut corrected_step = None;
            // φ(α) of the last refused trial, for the next α (see below).
            let mut refused: Option<f64>;
            let accepted = loop {
                let trial: Vec<f64> = point
                    .y
                    .iter()
                    .zip(&result.p)
                    .map(|(y, p)| y + alpha * p)
                    .collect();
                match ctx.point(&trial) {
                    Ok(pt) => {
                        let pt = ctx.rescale(pt);
                        if pt.f.is_finite()
                            && merit(&pt) <= phi0 + 1e-4 * alpha * slope.min(0.0) + noise
                        {
                            break Some(pt);
                        }
                        refused = pt.f.is_finite().then(|| merit(&pt));
                        // A full step refused with nonlinear constraints: a second-order
                        // correction (the Maratos effect: the linearised constraints
                        // miss their curvature, the merit refuses the step, the steps
                        // shrink). The QP again at y with each nonlinear row taken from
                        // its value at y + p: c(y + p) + ∇c(y)ᵀ(d − p) ≤ 0.
                        if alpha == 1.0 && !nl_rows.is_empty() && pt.f.is_finite() {
                            let mut shifted = point.clone();
                            for (j, v) in shifted.nl_values.iter_mut().enumerate() {
                                let along: f64 = (0..n)
                                    .map(|c| point.nl_grads[j * n + c] * result.p[c])
                                    .sum();
                                *v = pt.nl_values[j] - along;
                            }
                            if let QpOutcome::Solved(soc) =
                                qp.solve(&rows, &shifted, &hess, &nl_rows, n, radius)?
                            {
                                let trial: Vec<f64> =
                                    point.y.iter().zip(&soc.p).map(|(y, d)| y + d).collect();
                                if let Ok(pt) = ctx.point(&trial) {
                                    let pt = ctx.rescale(pt);
                                    if pt.f.is_finite()
                                        && merit(&pt) <= phi0 + 1e-4 * slope.min(0.0) + noise
                                    {
                                        corrected_step =
                                            Some(soc.p.iter().fold(0.0f64, |m, v| m.max(v.abs())));
                                        break Some(pt);
                                    }
                                }
                            }
                        }
                    }
                    Err(Error::Device { .. }) | Err(Error::InvalidValue { .. }) => refused = None,
                    Err(e) => return Err(e),
                }
                // Halving; on a concave problem the minimiser of the quadratic through
                // φ(0), φ'(0) and φ(α), kept within [α/10, α/2] (a step that moved 78%
                // of the budget into a cell with no curvature at 0 took ten halvings).
                // Not on S-shaped curves: there the shorter steps chose worse local
                // optima (benches/NOTES.md).
                alpha = match refused.take() {
                    Some(phi) if concave && slope < 0.0 => {
                        let curvature = phi - phi0 - slope * alpha;
                        let next = if curvature > 0.0 {
                            -slope * alpha * alpha / (2.0 * curvature)
                        } else {
                            0.5 * alpha
                        };
                        next.clamp(0.1 * alpha, 0.5 * alpha)
                    }
                    _ => 0.5 * alpha,
                };
                if alpha < 1e-12 {
                    break None;
                }
            };
            let Some(new_point) = accepted else {
                status = if kkt <= 100.0 * gtol {
                    Status::AlmostSolved
                } else {
                    Status::LineSearchFailed
                };
                message =
                    format!("no sufficient decrease along the QP step; KKT residual {kkt:.2e}");
                trace.push(info_at(0.0, 0.0, ctx.evaluations));
                last_qp = Some(result);
                break;
            };
            let step = corrected_step.unwrap_or(alpha * step_norm);
            radius = if alpha < 1.0 {
                step.max(1e-6)
            } else if step >= 0.9 * radius {
                2.0 * radius
            } else {
                radius
            };
            let info = info_at(step, alpha, ctx.evaluations);
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
            let keep_going = self.callback.as_mut().is_none_or(|cb| cb(&info));
            trace.push(info);
            // Stall detection: decided at the next QP, so that the final multipliers
            // belong to the final point.
            let df = (new_point.f - point.f).abs();
            // The merit's best so far: ten iterations in a row without beating it by
            // more than the noise is a stall too (a cycle at the level of rounding).
            // A new penalty weight ν makes a new merit and the count starts again,
            // unless the change moves no merit by more than the noise (a ν
            // flickering between 0 and 1e-17 hid a cycle for 200 iterations).
            let m_new = merit(&new_point);
            let v_new = nl_violation(&nl_rows, &new_point.nl_values);
            if let Some((_, v)) = best
                && (nu - best_nu).abs() * v.max(v_new) > noise
            {
                best = None;
            }
            best_nu = nu;
            let m_best = best.map_or(f64::INFINITY, |(f, v)| f + nu * v);
            if m_new < m_best - noise {
                best = Some((new_point.f, v_new));
                since_best = 0;
            } else {
                since_best += 1;
            }
            if df <= self.settings.ftol * point.f.abs().max(1e-300) {
                stalled = Some("ftol");
            } else if step <= self.settings.xtol {
                stalled = Some("xtol");
            } else if since_best >= 10 {
                stalled = Some("no better point in 10 iterations");
            }
            model.update(&point, &new_point, &result.z_nl, n);
            point = new_point;
            if !keep_going {
                status = Status::Stopped;
                message = "stopped by the callback".into();
                last_qp = None;
                break;
            }
        }

        // Multipliers at the final point (a QP there when the loop ended after a step).
        let result = match last_qp {
            Some(r) => Some(r),
            None => {
                let hess = model.hessian(&point);
                match qp.solve(&rows, &point, &hess, &nl_rows, n, f64::INFINITY)? {
                    QpOutcome::Solved(r) => Some(r),
                    QpOutcome::Failed(_) => None,
                }
            }
        };
        // Polish: bounds exactly, the budget to rounding.
        let mut x: Vec<f64> = point.y.iter().map(|v| v * scale).collect();
        let floor: Vec<f64> = (0..n)
            .map(|c| {
                if lower[c] * scale > p.lower[c] {
                    lower[c] * scale
                } else {
                    p.lower[c]
                }
            })
            .collect();
        // |h|: a cell on a convex stretch (h < 0) moves its marginal return as much.
        let curvature = model
            .is_exact()
            .then(|| floored(&point.h.iter().map(|v| v.abs()).collect::<Vec<_>>()));
        polish(p, &floor, curvature.as_deref(), &mut x, scale);
        let y: Vec<f64> = x.iter().map(|v| v / scale).collect();
        let final_point = if y != point.y {
            let pt = ctx.point(&y)?;
            ctx.rescale(pt)
        } else {
            point
        };
        let held: Vec<&str> = (0..n)
            .filter(|&c| pinned[c])
            .map(|c| p.cells[c].label.as_str())
            .collect();
        if !held.is_empty() {
            message.push_str(&format!(
                "; held at their lower bound by the constraints, where their marginal return is infinite (left out of the KKT residual; the active constraints on them have infinite multipliers): {}",
                held.join(", ")
            ));
        }
        let (multipliers, kkt_residual) = match &result {
            Some(r) => {
                let (mut lin, nonlin) = user_lambdas(&rows, &nl_rows, r, ctx.f0, scale);
                rebalance_bounds(&rows, &mut lin, &nonlin, &x, &final_point, scale);
                let kkt = kkt_user(
                    &rows,
                    ctx.nonlinear,
                    &x,
                    &final_point,
                    &lin,
                    &nonlin,
                    ctx.f0,
                    scale,
                    &pinned,
                );
                // An active constraint on a pinned cell holds back an infinite
                // marginal return.
                for (r, l) in rows.iter().zip(lin.iter_mut()) {
                    if matches!(r.origin, Origin::Linear(_))
                        && r.coefficients.iter().any(|&(c, _)| pinned[c])
                        && (r.rhs - r.lhs(&y)).abs() <= 1e-9 * (1.0 + r.rhs.abs())
                    {
                        *l = r.sign * f64::INFINITY;
                    }
                }
                (multiplier_list(p, &rows, ctx.nonlinear, &lin, &nonlin), kkt)
            }
            None => (vec![], f64::NAN),
        };
        let violation = violation_scaled(&rows, &final_point)
            .max(nl_violation(&nl_rows, &final_point.nl_values));
        // Iterations that ended short of the test but at an allocation that passes it
        // (the polish put cells exactly on their bounds, the bound multipliers were
        // retaken there): that allocation is solved.
        if matches!(
            status,
            Status::AlmostSolved | Status::MaxIterations | Status::LineSearchFailed
        ) && kkt_residual <= gtol
            && violation <= self.settings.ctol
        {
            status = Status::Solved;
            message = format!(
                "KKT residual {kkt_residual:.2e} <= gtol at the returned allocation; violation {violation:.2e} (the iterations ended: {message})"
            );
        }
        // A solved allocation that the polish left violating a constraint by more
        // than ctol (the budget's rounding spread onto a nonlinear constraint's
        // boundary, say) is almost solved.
        if status == Status::Solved && violation > self.settings.ctol {
            status = Status::AlmostSolved;
            message = format!(
                "{message}; at the returned allocation a constraint is violated by {violation:.2e} of its scale (> ctol)"
            );
        }
        // A nonlinear constraint still violated where the solve came to rest by more
        // than rounding (its elastic slack could not be driven to zero): no feasible
        // allocation was found near there; report the constraints, never the
        // allocation.
        let infeasible_at = self.settings.ctol.max(1e-6);
        let violated: Vec<String> = ctx
            .nonlinear
            .iter()
            .zip(&nl_rows)
            .zip(&final_point.nl_values)
            .filter(|((_, r), v)| if r.equality { v.abs() } else { v.max(0.0) } > infeasible_at)
            .map(|((c, _), v)| format!("{} (violated by {:.3e} of its scale)", c.name, v.abs()))
            .collect();
        if !violated.is_empty()
            && matches!(
                status,
                Status::Solved | Status::AlmostSolved | Status::LineSearchFailed
            )
        {
            let conflicting = violated;
            let message = format!(
                "no allocation found that satisfies the nonlinear constraints: {} (with the bounds, the budget and the linear constraints)",
                conflicting.join("; ")
            );
            let mut solution = infeasible_solution(
                &message,
                conflicting,
                started,
                scale,
                ctx.evaluator.describe(),
            );
            solution.iterations = iterations;
            solution.evaluations = ctx.evaluations;
            solution.trace = trace;
            solution.violation = violation;
            if self.settings.verbose >= 1 {
                eprintln!("infeasible: {message}");
            }
            return Ok(solution);
        }
        // Short of solved with nonlinear constraints: where a nonlinear constraint's
        // gradient lies in the span of the other active constraints' no multipliers
        // need exist, and the message says so.
        if !nl_rows.is_empty() && !matches!(status, Status::Solved | Status::Stopped) {
            let dependent = dependent_nonlinear(&rows, &nl_rows, &final_point);
            if !dependent.is_empty() {
                let names: Vec<String> = dependent
                    .iter()
                    .map(|&(j, d)| format!("{} ({d:.1e} of its norm away)", ctx.nonlinear[j].name))
                    .collect();
                message = format!(
                    "{message}; at the returned (feasible) allocation the gradient of {} lies in or next to the span of the other active constraints' gradients: the constraint qualification fails or nearly fails there, and multipliers do not exist or are huge (as when the constraints leave a single feasible allocation or a tiny set)",
                    names.join(", ")
                );
            }
        }
        // E[r_c] and ∂E[R]/∂x_c: the point's own reductions for the mean, one uniform
        // evaluation otherwise.
        let (marginal_response, mean_contribution) = if p.utility.has_constant_weights() {
            (
                final_point.grad_u.clone(),
                final_point.contributions.clone(),
            )
        } else {
            let mut o = Evaluation::new(p.num_draws(), n);
            ctx.evaluator.evaluate(&x, DrawWeights::Uniform, &mut o)?;
            ctx.evaluations += 1;
            (o.gradient, o.contributions)
        };
        let periods = p.num_periods as f64;
        let roi = x
            .iter()
            .zip(&mean_contribution)
            .map(|(x, r)| (*x > 0.0).then(|| r / (periods * x)))
            .collect();
        let marginal_roi = marginal_response.iter().map(|g| g / periods).collect();
        let evaluations = ctx.evaluations;
        let solution = Solution {
            status,
            message,
            allocation: x,
            utility: final_point.utility,
            mean_response: final_point.mean_response,
            start_allocation: start_point.y.iter().map(|v| v * scale).collect(),
            start_utility: start_point.utility,
            start_mean_response: start_point.mean_response,
            iterations,
            evaluations,
            kkt_residual,
            violation,
            multipliers,
            marginal_response,
            mean_contribution,
            roi,
            marginal_roi,
            conflicting: vec![],
            trace,
            seconds: started.elapsed().as_secs_f64(),
            backend: ctx.evaluator.describe(),
            scale,
            objective_scale: ctx.f0,
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

    fn infeasible(&self, conflicting: Vec<String>, started: Instant, scale: f64) -> Solution {
        let message = format!("no allocation satisfies: {}", conflicting.join("; "));
        if self.settings.verbose >= 1 {
            eprintln!("infeasible: {message}");
        }
        infeasible_solution(
            &message,
            conflicting,
            started,
            scale,
            self.evaluator.describe(),
        )
    }
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
    }
}

/// The evaluation side of the loop.
struct Context<'e> {
    evaluator: &'e mut dyn Evaluator,
    nonlinear: &'e mut [NonlinearConstraint],
    nl_rows: &'e [NonlinearRow],
    problem: &'e Problem,
    scale: f64,
    f0: f64,
    lower: &'e [f64],
    upper: &'e [f64],
    evaluations: usize,
    out: Evaluation,
    weights: Vec<f64>,
    ngrad: Vec<f64>,
    /// Whether every nonlinear constraint gives the diagonal of its Hessian.
    curvature: bool,
}

/// Distance (in scaled units) within which the final allocation is put exactly on a
/// bound: the interior-point QP leaves active bounds at about its tolerance. Only the
/// polish snaps; iterates are clamped, so that the line search measures the points the
/// QP's model describes.
const SNAP: f64 = 1e-10;

/// Clamps y onto the bounds.
fn clamp_scaled(y: &[f64], lower: &[f64], upper: &[f64]) -> Vec<f64> {
    y.iter()
        .zip(lower.iter().zip(upper))
        .map(|(v, (l, u))| v.clamp(*l, *u))
        .collect()
}

impl Context<'_> {
    /// Evaluates at y (clamped onto the bounds), unscaled: f, g and h are filled by
    /// [`Context::rescale`].
    fn point(&mut self, y: &[f64]) -> Result<Point> {
        let y = clamp_scaled(y, self.lower, self.upper);
        let x: Vec<f64> = y.iter().map(|v| v * self.scale).collect();
        let p = self.problem;
        let n = x.len();
        if p.utility.has_constant_weights() {
            self.evaluator
                .evaluate(&x, DrawWeights::Uniform, &mut self.out)?;
            self.evaluations += 1;
        } else {
            self.evaluator.responses(&x, &mut self.out.responses)?;
            p.utility.weights(&self.out.responses, &mut self.weights);
            self.evaluator
                .evaluate(&x, DrawWeights::PerDraw(&self.weights), &mut self.out)?;
            self.evaluations += 2;
        }
        let utility = p.utility.value(&self.out.responses);
        let mean_response =
            self.out.responses.iter().sum::<f64>() / self.out.responses.len() as f64;
        let grad_u = self.out.gradient.clone();
        let mut nl_values = Vec::with_capacity(self.nonlinear.len());
        let mut nl_grads = Vec::with_capacity(self.nonlinear.len() * n);
        let mut nl_raw = Vec::with_capacity(self.nonlinear.len());
        let mut nl_raw_grads = Vec::with_capacity(self.nonlinear.len() * n);
        let mut nl_h = Vec::new();
        for (c, row) in self.nonlinear.iter_mut().zip(self.nl_rows) {
            let v = (c.function)(&x, &mut self.ngrad)?;
            nl_raw.push(v);
            nl_raw_grads.extend_from_slice(&self.ngrad);
            nl_values.push(row.sign * (v - c.rhs) / row.scale);
            nl_grads.extend(
                self.ngrad
                    .iter()
                    .map(|g| row.sign * g * self.scale / row.scale),
            );
            if let (true, Some(curvature)) = (self.curvature, c.curvature.as_mut()) {
                self.ngrad.fill(0.0);
                curvature(&x, &mut self.ngrad)?;
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
        })
    }

    /// Turns U, ∇U, ∇²U into f = −U/|U₀|, ∇_y f, ∇²_y f, with non-finite gradient
    /// entries (curves with g'(0) = ∞) replaced by a large finite slope.
    fn rescale(&self, mut pt: Point) -> Point {
        let k = self.scale / self.f0;
        pt.f = -pt.utility / self.f0;
        let finite_max = pt
            .grad_u
            .iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        let big = 1e6 * (finite_max * k).max(1.0);
        pt.g = pt
            .grad_u
            .iter()
            .map(|v| {
                let s = -v * k;
                if s.is_finite() { s } else { -big * v.signum() }
            })
            .collect();
        let kk = self.scale * k;
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

/// The linear rows: the budget, the scenario's linear constraints, upper and lower
/// bounds, in scaled variables.
fn linear_rows(p: &Problem, scale: f64) -> Vec<Row> {
    let n = p.num_cells();
    let mut rows = vec![];
    match p.budget_constraint {
        BudgetConstraint::Equal | BudgetConstraint::AtMost => rows.push(Row {
            coefficients: (0..n).map(|c| (c, 1.0)).collect(),
            rhs: p.total_budget / scale,
            equality: p.budget_constraint == BudgetConstraint::Equal,
            sign: 1.0,
            origin: Origin::Budget,
        }),
        BudgetConstraint::None => {}
    }
    for (i, c) in p.linear_constraints.iter().enumerate() {
        let sign = if c.sense == Sense::GreaterEqual {
            -1.0
        } else {
            1.0
        };
        rows.push(Row {
            coefficients: c
                .coefficients
                .iter()
                .enumerate()
                .filter(|(_, a)| **a != 0.0)
                .map(|(j, a)| (j, sign * a))
                .collect(),
            rhs: sign * c.rhs / scale,
            equality: c.sense == Sense::Equal,
            sign,
            origin: Origin::Linear(i),
        });
    }
    for c in 0..n {
        let fixed = p.lower[c] == p.upper[c];
        rows.push(Row {
            coefficients: vec![(c, 1.0)],
            rhs: p.upper[c] / scale,
            equality: fixed,
            sign: 1.0,
            origin: if fixed {
                Origin::Fixed(c)
            } else {
                Origin::Upper(c)
            },
        });
    }
    for c in (0..n).filter(|&c| p.lower[c] != p.upper[c]) {
        rows.push(Row {
            coefficients: vec![(c, -1.0)],
            rhs: -p.lower[c] / scale,
            equality: false,
            sign: -1.0,
            origin: Origin::Lower(c),
        });
    }
    rows
}
