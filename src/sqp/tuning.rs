//! Every threshold of the method in one place, each with why it has its value.

use crate::error::Result;

/// The solver's thresholds. The defaults are what the reference cases and the
/// random-problem sweeps (`examples/random_problems.rs`, benches/NOTES.md) were solved
/// with; a change is a change of the method, to be checked there
/// (`benches/same_behaviour.sh`). Distances and steps are in scaled units (1 is the
/// whole budget s), objective values relative to |U₀|.
///
/// ```
/// use mmm_budget::{Settings, Tuning};
/// let mut tuning = Tuning::default();
/// tuning.stall.merit_patience = 20;
/// let settings = Settings::default().tuning(tuning);
/// assert!(settings.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// Distance within which the final allocation is put exactly on a bound (1e-10):
    /// the interior-point QP leaves active bounds at about its tolerance. Only the
    /// polish snaps; iterates are clamped, so that the line search measures the points
    /// the QP's model describes.
    pub snap: f64,
    /// Penalty ρ on the elastic slacks of the linearised nonlinear constraints (1e5):
    /// far above any multiplier of a well-scaled problem, so a slack is used only where
    /// the linearisation cannot hold.
    pub elastic_penalty: f64,
    /// A slack (or its sum) above this counts as used (1e-9): Clarabel's answers hold
    /// unused slacks at ~1e-11.
    pub slack_used: f64,
    /// The largest fraction of the distance to its lower bound that one step may take
    /// a steep cell (0.9): next to the bound its curvature is unbounded, and a step
    /// that lands there crawls back out.
    pub to_boundary: f64,
    /// How far a steep cell's lower bound is raised (1e-12): above it the marginal
    /// return is finite, at a cost to U of at most 1e-12 of the budget times it.
    pub steep_floor: f64,
    /// Below this room above its bound (1e-8, well above the LP's accuracy) a steep
    /// cell counts as held there by the constraints (as by `tv <= 0`).
    pub pinned_room: f64,
    /// Within this many floors of its raised bound a steep cell may reach it (10).
    pub steep_reach: f64,
    /// A steep cell within this distance of its bound (1e-6) that moves by
    /// [`Tuning::diving_fraction`] of that distance or more is still diving.
    pub diving_near: f64,
    /// See [`Tuning::diving_near`] (0.1: a tenfold dive each iteration).
    pub diving_fraction: f64,
    /// The floor of the QP's diagonal, relative to the median positive curvature
    /// (1e-8, at least 1e-8 absolute): keeps the QP convex where a curve is locally
    /// convex; the median, not the largest, so that one steep cell does not raise
    /// every other cell's floor.
    pub curvature_floor: f64,
    /// The diagonal BFGS starts from, at least (1e-4), and the structured model's
    /// start for the constraints' curvature.
    pub bfgs_start: f64,
    /// From this many variables on (500) a quasi-Newton model is kept as the diagonal
    /// it started from plus the rank-one terms of its updates, and handed to the QP
    /// through auxiliary variables while its rank is below an eighth of the
    /// cells: O(n r²) a factorisation instead of a dense n × n one (benches/NOTES.md,
    /// "Quasi-Newton QPs at n ≥ 1,000"). Below it, the dense matrix.
    pub low_rank_cells: usize,
    /// A first QP that Clarabel gives up on is tried again with the curvatures capped
    /// at this multiple of their median (1e8): a steep cell's 1e13 beside a floored
    /// 2e-8 is past what an interior-point method resolves.
    pub curvature_cap: f64,
    /// A QP that nothing answers is solved again with each cell's step within this
    /// trust radius (0.1 of the budget), where the radius was larger than a tenth of
    /// [`Tuning::snap`].
    pub fallback_radius: f64,
    /// The trust radius after a shortened step: that step, but at least this (1e-6).
    pub min_radius: f64,
    /// A full step that reaches this fraction of the radius (0.9) grows it by
    /// [`Tuning::radius_growth`].
    pub radius_reached: f64,
    /// See [`Tuning::radius_reached`] (2).
    pub radius_growth: f64,
    /// The merit weight ν is kept at this multiple of the largest nonlinear multiplier
    /// (1.1).
    pub penalty_margin: f64,
    /// Once the QPs need no slacks and ν exceeds the multipliers this many times (100),
    /// ν starts again from [`Tuning::penalty_restart`] times them: after an elastic
    /// start ν sits at the elastic penalty and the merit refuses every step.
    pub penalty_reset: f64,
    /// See [`Tuning::penalty_reset`] (2).
    pub penalty_restart: f64,
    /// The QP's relative accuracy (1e-11): objective changes below it (times |φ|) are
    /// noise the line search allows; also Clarabel's gap and feasibility tolerances.
    pub qp_accuracy: f64,
    /// Clarabel's infeasibility tolerances (1e-9).
    pub qp_infeasibility: f64,
    /// Clarabel's iteration limit per QP (500).
    pub qp_max_iter: u32,
    /// The noise allowance in units of the evaluator's precision (10): an f32
    /// evaluator cannot resolve changes below ~1e-6 of the objective.
    pub precision_noise: f64,
    /// gtol is raised to this many ulps of the evaluator's precision (30), times the
    /// utility's draw-weight concentration √(D Σu²)/|Σu| at the start (1 for the
    /// mean): an f32 evaluator's marginal returns are not more precise.
    pub precision_gtol: f64,
    /// Armijo's sufficient-decrease fraction (1e-4).
    pub armijo: f64,
    /// The line search gives up below this step fraction (1e-12).
    pub min_alpha: f64,
    /// A refused step is cut to this fraction of itself (0.5): S-shaped problems
    /// halve, where shorter steps chose worse local optima.
    pub backtrack: f64,
    /// On concave problems a refused step is cut instead to the minimiser of the
    /// quadratic through φ(0), φ'(0) and φ(α), kept within [min, max] × α (0.1, 0.5):
    /// a step that moved 78% of the budget into a cell with no curvature at 0 took ten
    /// halvings.
    pub interpolation: (f64, f64),
    /// A line-search failure within this multiple of gtol (100) is almost solved.
    pub almost_solved: f64,
    /// A nonlinear constraint violated by more than this (1e-6 of its scale, or ctol
    /// if larger) where the solve came to rest is reported infeasible.
    pub infeasible_violation: f64,
    /// The objective's scale is |U₀| unless U₀ is below this fraction (1e-8) of the
    /// start's largest marginal return times s (a start worth almost nothing).
    pub worthless_start: f64,
    /// An infinite marginal return (g'(0) = ∞) is replaced by this multiple (1e6) of
    /// the largest finite one.
    pub infinite_slope: f64,
    /// A nonlinear constraint whose gradient lies within this relative distance
    /// (1e-3) of the span of the other active rows fails the constraint
    /// qualification, and the message says so.
    pub dependent_gradient: f64,
    /// When progress that stalls still counts as progress.
    pub stall: StallRules,
}

/// The stall rules: when a step that barely changes the objective ends the solve
/// (almost solved) and when it does not.
#[derive(Clone, Debug, PartialEq)]
pub struct StallRules {
    /// A stall while the KKT residual still falls below [`StallRules::kkt_fall`] of its
    /// last value gets this many more iterations in all (8): Newton's last steps,
    /// where the objective no longer moves.
    pub grace: usize,
    /// See [`StallRules::grace`] (0.75: falling by a quarter an iteration).
    pub kkt_fall: f64,
    /// A stall while a steep cell is still diving towards its bound gets this many
    /// more iterations in all (30): the objective cannot resolve that progress.
    pub dives: usize,
    /// With nonlinear rows, this many iterations (30) at a feasible point without a
    /// smaller KKT residual is a stall (a cycle where ν and the merit move with the
    /// multipliers). Not without nonlinear rows: an S-shaped problem leaving a saddle
    /// raises its KKT residual for dozens of iterations while U climbs.
    pub kkt_patience: usize,
    /// This many iterations in a row (10) without a merit better than the best by
    /// more than the noise is a stall (a cycle at the level of rounding).
    pub merit_patience: usize,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            snap: 1e-10,
            elastic_penalty: 1e5,
            slack_used: 1e-9,
            to_boundary: 0.9,
            steep_floor: 1e-12,
            pinned_room: 1e-8,
            steep_reach: 10.0,
            diving_near: 1e-6,
            diving_fraction: 0.1,
            curvature_floor: 1e-8,
            bfgs_start: 1e-4,
            low_rank_cells: 500,
            curvature_cap: 1e8,
            fallback_radius: 0.1,
            min_radius: 1e-6,
            radius_reached: 0.9,
            radius_growth: 2.0,
            penalty_margin: 1.1,
            penalty_reset: 100.0,
            penalty_restart: 2.0,
            qp_accuracy: 1e-11,
            qp_infeasibility: 1e-9,
            qp_max_iter: 500,
            precision_noise: 10.0,
            precision_gtol: 30.0,
            armijo: 1e-4,
            min_alpha: 1e-12,
            backtrack: 0.5,
            interpolation: (0.1, 0.5),
            almost_solved: 100.0,
            infeasible_violation: 1e-6,
            worthless_start: 1e-8,
            infinite_slope: 1e6,
            dependent_gradient: 1e-3,
            stall: StallRules {
                grace: 8,
                kkt_fall: 0.75,
                dives: 30,
                kkt_patience: 30,
                merit_patience: 10,
            },
        }
    }
}

impl Tuning {
    /// Checks every field: each a finite positive number, fractions below 1, the
    /// interpolation interval inside (0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = super::settings::out_of_range;
        let positive = [
            ("tuning.snap", self.snap),
            ("tuning.elastic_penalty", self.elastic_penalty),
            ("tuning.slack_used", self.slack_used),
            ("tuning.steep_floor", self.steep_floor),
            ("tuning.pinned_room", self.pinned_room),
            ("tuning.steep_reach", self.steep_reach),
            ("tuning.diving_near", self.diving_near),
            ("tuning.curvature_floor", self.curvature_floor),
            ("tuning.bfgs_start", self.bfgs_start),
            ("tuning.curvature_cap", self.curvature_cap),
            ("tuning.fallback_radius", self.fallback_radius),
            ("tuning.min_radius", self.min_radius),
            ("tuning.radius_growth", self.radius_growth),
            ("tuning.penalty_margin", self.penalty_margin),
            ("tuning.penalty_reset", self.penalty_reset),
            ("tuning.penalty_restart", self.penalty_restart),
            ("tuning.qp_accuracy", self.qp_accuracy),
            ("tuning.qp_infeasibility", self.qp_infeasibility),
            ("tuning.precision_noise", self.precision_noise),
            ("tuning.precision_gtol", self.precision_gtol),
            ("tuning.min_alpha", self.min_alpha),
            ("tuning.almost_solved", self.almost_solved),
            ("tuning.infeasible_violation", self.infeasible_violation),
            ("tuning.worthless_start", self.worthless_start),
            ("tuning.infinite_slope", self.infinite_slope),
            ("tuning.dependent_gradient", self.dependent_gradient),
        ];
        for (field, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(bad(field, v, "a finite number > 0"));
            }
        }
        let fractions = [
            ("tuning.to_boundary", self.to_boundary),
            ("tuning.diving_fraction", self.diving_fraction),
            ("tuning.radius_reached", self.radius_reached),
            ("tuning.armijo", self.armijo),
            ("tuning.backtrack", self.backtrack),
            ("tuning.stall.kkt_fall", self.stall.kkt_fall),
        ];
        for (field, v) in fractions {
            if !(v > 0.0 && v < 1.0) {
                return Err(bad(field, v, "a number in (0, 1)"));
            }
        }
        let (lo, hi) = self.interpolation;
        if !(lo > 0.0 && lo <= hi && hi < 1.0) {
            return Err(bad(
                "tuning.interpolation",
                lo,
                "0 < min <= max < 1 (min shown)",
            ));
        }
        if self.qp_max_iter == 0 {
            return Err(bad("tuning.qp_max_iter", 0.0, "an integer >= 1"));
        }
        Ok(())
    }
}
