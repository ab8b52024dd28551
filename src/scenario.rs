//! A budget scenario: the window, the total budget and its constraint, bounds, which
//! cells are optimized, how each cell's budget spreads over the periods, cost per
//! unit, extra constraints and the utility.
//!
//! Units: x_c is the budget **per period** of cell c, as in PyMC-Marketing; over the
//! window of N periods a cell spends N · x_c. `total_budget` B is per period too
//! (Σ_c x_c = B), so the money spent over the window is N · B.

use crate::utility::Utility;
use std::collections::BTreeMap;

/// Picks cells by coordinate: a map from dim name (`channel`, `geo`, …) to one
/// coordinate. The empty selector picks every cell.
pub type Selector = BTreeMap<String, String>;

/// How the per-period budgets relate to the total budget B.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BudgetConstraint {
    /// Σ_c x_c = B (PyMC-Marketing's default).
    #[default]
    Equal,
    /// Σ_c x_c ≤ B.
    AtMost,
    /// No budget constraint (bounds and other constraints only).
    None,
}

impl BudgetConstraint {
    /// The kind for its scenario name: `equal`, `at_most`, `none`.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "equal" => BudgetConstraint::Equal,
            "at_most" => BudgetConstraint::AtMost,
            "none" => BudgetConstraint::None,
            _ => return Option::None,
        })
    }
}

/// What the optimizer decides for each cell: one spend per period for the whole
/// window (PyMC-Marketing's decision), or a spend for each group of periods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Decision {
    /// x_c: the same spend per period in every period (spread by the time
    /// distribution, when one is given).
    #[default]
    Constant,
    /// A spend per period for each group of `k` consecutive periods (the last group
    /// may be shorter); `Every(1)` is a spend per period (`"per_period"`).
    Every(usize),
}

/// A flighting limit: between consecutive periods (or groups of periods) the spend
/// per period of each selected cell changes by at most `max_change`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlightRule {
    /// Which cells.
    pub select: Selector,
    /// δ ≥ 0, money per period.
    pub max_change: f64,
}

/// The money the selected cells spend over periods `first..=last` (1-based) held at
/// or above `min`, at or below `max` (both: `min == max` for an exact sum), e.g.
/// weekly spend that adds up to a monthly budget, or a bound on one period.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeriodSum {
    /// Which cells.
    pub select: Selector,
    /// First period, 1-based.
    pub first: usize,
    /// Last period, 1-based, inclusive.
    pub last: usize,
    /// Lower limit on the sum, when given.
    pub min: Option<f64>,
    /// Upper limit on the sum, when given.
    pub max: Option<f64>,
}

/// Bounds on the per-period budget of the selected cells; a later rule overrides an
/// earlier one for the cells both select. A missing side keeps the earlier value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BoundRule {
    /// Which cells.
    pub select: Selector,
    /// Lower bound per period (or, when `relative`, a multiple of the reference).
    pub min: Option<f64>,
    /// Upper bound per period (or, when `relative`, a multiple of the reference).
    pub max: Option<f64>,
    /// `min` and `max` are multiples of each cell's reference spend
    /// ([`Scenario::reference`]): `0.7` and `1.3` keep a cell within ±30% of it
    /// (Meridian's pct_of_spend, Robyn's multiples of historical spend).
    pub relative: bool,
}

/// A value per period for the selected cells (time distribution factors, or cost per
/// unit); later rules override earlier ones.
#[derive(Clone, Debug, PartialEq)]
pub struct PeriodRule {
    /// Which cells.
    pub select: Selector,
    /// N values, one per period.
    pub values: Vec<f64>,
}

/// A budget scenario.
///
/// ```
/// use mmm_budget::*;
/// let scenario = Scenario::new(12, 2000.0);
/// assert_eq!(scenario.budget_constraint, BudgetConstraint::Equal);
/// assert!(scenario.bounds.is_empty()); // default bounds: [0, total_budget]
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// N: the number of periods the budget is spent over (the carry-over tail of
    /// `l_max` periods comes after them).
    pub num_periods: usize,
    /// B: the total budget **per period**.
    pub total_budget: f64,
    /// How Σ_c x_c relates to B.
    pub budget_constraint: BudgetConstraint,
    /// Bounds; every cell starts at [0, B].
    pub bounds: Vec<BoundRule>,
    /// The cells to optimize (a union of selectors); `None` optimizes every cell.
    /// Cells left out spend nothing.
    pub optimize: Option<Vec<Selector>>,
    /// φ_tc: the share of a cell's window budget spent in period t (sums to 1);
    /// cells no rule selects spend evenly.
    pub time_distribution: Vec<PeriodRule>,
    /// κ_tc > 0: money per media unit in period t; cells no rule selects have κ = 1.
    pub cost_per_unit: Vec<PeriodRule>,
    /// Linear constraints as strings, e.g. `sum(channel=tv) <= 0.3 * total`.
    pub constraints: Vec<String>,
    /// What to maximise over the posterior draws.
    pub utility: Utility,
    /// A start allocation (per-period budget of each selected cell).
    pub start: Option<Vec<(Selector, f64)>>,
    /// A reference allocation (per period: historical spend, last year's plan) that
    /// relative bounds are multiples of; cells it leaves out have 0.
    pub reference: Option<Vec<(Selector, f64)>>,
    /// Carry-in: the spend of the selected cells in each of the l_max periods before
    /// the window, oldest first (`values[l_max − 1]` is the period just before), in
    /// the channel data's units (divided by the channel scale as the model's inputs
    /// are; no cost per unit). Its adstocked tail enters the window's response; cells
    /// no rule selects had none.
    pub history: Vec<PeriodRule>,
    /// What is decided per cell: a constant spend per period (default) or one per
    /// period or group of periods (a plan over time, see [`crate::plan`]).
    pub decision: Decision,
    /// Flighting limits of a plan over time.
    pub flighting: Vec<FlightRule>,
    /// Sums over ranges of periods of a plan over time.
    pub period_sums: Vec<PeriodSum>,
}

impl Scenario {
    /// A scenario of `num_periods` periods and `total_budget` per period, with every
    /// other field at its default.
    pub fn new(num_periods: usize, total_budget: f64) -> Self {
        Scenario {
            num_periods,
            total_budget,
            budget_constraint: BudgetConstraint::Equal,
            bounds: vec![],
            optimize: None,
            time_distribution: vec![],
            cost_per_unit: vec![],
            constraints: vec![],
            utility: Utility::mean(),
            start: None,
            reference: None,
            history: vec![],
            decision: Decision::Constant,
            flighting: vec![],
            period_sums: vec![],
        }
    }
}
