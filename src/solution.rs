//! What a solve returns: status, allocation, utilities, multipliers, counts, trace.

use std::fmt;

/// How a solve ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The KKT residual is below `gtol` and the constraint violation below `ctol`.
    Solved,
    /// Progress stopped (ftol/xtol) with a KKT residual above `gtol`, or the last QP
    /// was solved to reduced accuracy; the allocation is feasible.
    AlmostSolved,
    /// No allocation satisfies the bounds, the budget and the constraints; the
    /// message names the constraints involved. No allocation is returned.
    Infeasible,
    /// `max_iter` reached.
    MaxIterations,
    /// `time_limit` reached.
    MaxTime,
    /// The line search found no sufficient decrease.
    LineSearchFailed,
    /// The evaluator or a QP failed numerically (non-finite values, QP solver failure).
    NumericalError,
    /// The callback asked to stop.
    Stopped,
}

impl Status {
    /// The status's name as in JSON output (`"solved"`, `"infeasible"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Status::Solved => "solved",
            Status::AlmostSolved => "almost_solved",
            Status::Infeasible => "infeasible",
            Status::MaxIterations => "max_iterations",
            Status::MaxTime => "max_time",
            Status::LineSearchFailed => "line_search_failed",
            Status::NumericalError => "numerical_error",
            Status::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The multiplier of one constraint: λ = ∂U*/∂rhs, the change of the optimal utility
/// per unit the constraint's right-hand side moves. At a KKT point
/// ∇U(x) = Σ_i λ_i ∇(lhs_i)(x) over all constraints, bounds included; λ ≥ 0 for `<=`
/// (and upper bounds), λ ≤ 0 for `>=` (and lower bounds). The budget's multiplier is
/// the marginal utility of one more unit of budget **per period**.
///
/// A cell whose marginal return is infinite at its lower bound (`root` with α < 1,
/// `hill` with slope < 1 in some draw) has that bound raised by 1e-12 of the budget
/// inside the solver: where such a cell ends there (its optimum lies even closer to
/// the bound), its allocation is that tiny amount and its `lower bound` multiplier
/// belongs to the raised bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Multiplier {
    /// Which constraint: `budget`, the constraint's text or name, `upper bound of <cell>`,
    /// `lower bound of <cell>`.
    pub constraint: String,
    /// λ.
    pub value: f64,
}

/// One SQP iteration, as the callback and the trace see it.
#[derive(Clone, Debug, PartialEq)]
pub struct IterationInfo {
    /// 1-based.
    pub iteration: usize,
    /// U at the iterate the QP was solved at.
    pub utility: f64,
    /// KKT residual there (scaled; see [`Solution::kkt_residual`]).
    pub kkt_residual: f64,
    /// Constraint violation there (scaled).
    pub violation: f64,
    /// ‖Δx‖∞ / scale of the step taken (0 on the last iteration when it stops there).
    pub step: f64,
    /// Line-search step length taken.
    pub alpha: f64,
    /// Evaluator calls so far.
    pub evaluations: usize,
    /// Seconds since the solve started.
    pub elapsed: f64,
}

/// The result of a solve.
#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    /// How it ended.
    pub status: Status,
    /// A sentence on why.
    pub message: String,
    /// The per-period budget of each optimized cell; empty when `Infeasible`.
    pub allocation: Vec<f64>,
    /// U at the allocation.
    pub utility: f64,
    /// E\[R\] at the allocation.
    pub mean_response: f64,
    /// The start (after projection onto the linear constraints).
    pub start_allocation: Vec<f64>,
    /// U at the start.
    pub start_utility: f64,
    /// E\[R\] at the start.
    pub start_mean_response: f64,
    /// SQP iterations (QP subproblems at distinct iterates).
    pub iterations: usize,
    /// Evaluator calls.
    pub evaluations: usize,
    /// max(‖(s/U₀)(∇U − Σ λ_i ∇lhs_i)‖∞, max_i |λ_i · slack_i| / U₀) at the
    /// allocation, with s = `scale` and U₀ = `objective_scale` (|U| at the start, or,
    /// when the start is worth nothing, s times its largest marginal return).
    pub kkt_residual: f64,
    /// The largest constraint violation, relative to each constraint's scale.
    pub violation: f64,
    /// Every constraint's multiplier (budget, linear, nonlinear, then bounds).
    pub multipliers: Vec<Multiplier>,
    /// ∂E\[R\]/∂x_c per optimized cell (per period).
    pub marginal_response: Vec<f64>,
    /// E\[r_c\]: each cell's mean contribution over the window and its carry-over.
    pub mean_contribution: Vec<f64>,
    /// E\[r_c\] / (N x_c): return per unit of money spent over the window; `None` for a
    /// cell that spends nothing.
    pub roi: Vec<Option<f64>>,
    /// (∂E\[R\]/∂x_c) / N: the return of one more unit of money over the window.
    pub marginal_roi: Vec<f64>,
    /// The constraints involved when `Infeasible`.
    pub conflicting: Vec<String>,
    /// One entry per iteration.
    pub trace: Vec<IterationInfo>,
    /// Wall time of the solve.
    pub seconds: f64,
    /// Which evaluator ran.
    pub backend: String,
    /// The scale s of the allocation (x = s·y inside the solver).
    pub scale: f64,
    /// The objective's scale U₀ (f = −U/U₀ inside the solver; see `kkt_residual`).
    pub objective_scale: f64,
    /// What the caller should know about how it was solved (a GPU evaluator that
    /// failed and the CPU that took over, under [`crate::Backend::Auto`]).
    pub warnings: Vec<String>,
}

/// The return on investment of a cell over the window: its mean contribution over
/// the window (E\[r_c\], summed over the N periods and the carry-over) per unit spent
/// over the window (N · x_c, with x_c the per-period spend); `None` where nothing is
/// spent.
///
/// ROI_c = E\[r_c\] / (N x_c)
pub fn roi(contribution: f64, spend_per_period: f64, periods: usize) -> Option<f64> {
    (spend_per_period > 0.0).then(|| contribution / (periods as f64 * spend_per_period))
}

/// The marginal return on investment of a cell: the mean response's derivative with
/// respect to the cell's spend over the window. The gradient ∂E\[R\]/∂x_c is per unit of
/// per-period spend, which moves the window's spend N times as much:
///
/// mROI_c = (∂E\[R\]/∂x_c) / N
pub fn marginal_roi(gradient: f64, periods: usize) -> f64 {
    gradient / periods as f64
}
