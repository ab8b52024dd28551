//! Marginal-ROI constraints: `mroi(channel=tv) >= 1.2` in a scenario's constraints.
//!
//! The marginal ROI of cell c is mROI_c(x_c) = (1/N) ∂E\[R\]/∂x_c (what one more unit
//! spent over the window returns; [`crate::solution::marginal_roi`]). The mean
//! response is separable over cells, so mROI_c depends on x_c alone and a constraint
//! on it is a constraint on that cell's spend. `mroi(select) >= k` holds every
//! selected cell's spend at or below its **cap**, the largest per-period spend in
//! [0, u_c] at which its marginal ROI is still at least k:
//!
//!   cap_c = max { x ∈ [0, u_c] : mROI_c(x) ≥ k },  0 when there is none
//!
//! (spend beyond the cap returns less than k a unit; a cell whose curve never
//! returns k gets none). For a concave curve mROI_c falls with x and the cap is where
//! it crosses k; for an S-shaped one it is the last crossing. The caps are bounds, so
//! the solver holds them exactly as linear rows `x_c <= cap_c`, each named after the
//! constraint and the cell; a row's multiplier is what one more unit of that cell's
//! cap is worth. With the budget a cap (`budget_constraint: at_most`) and `mroi >= k`
//! on every cell, the optimum is Meridian's flexible budget in marginal-ROI form:
//! the most spend whose marginal ROI stays at least k.
//!
//! The caps are found when the problem is built, on the f64 CPU evaluator: one pass
//! of [`GRID`] spends per cell ([`crate::Evaluator::evaluate_many`]), then bisection
//! of each cell's last bracket to [`RELATIVE_TOLERANCE`] of its upper bound (about 30
//! more evaluations, every cell at once). A bump of an S-shaped curve narrower than
//! one grid step (u_c / 31) can be missed.

use crate::constraint::{LinearConstraint, Sense};
use crate::error::{Error, Result};
use crate::eval::{DrawWeights, Evaluation, Evaluator};
use crate::model::{CellInfo, Model};
use crate::problem::Problem;

/// Spends per cell of the first pass, from 0 to the cell's upper bound.
pub const GRID: usize = 32;

/// Each cap is found to this fraction of its cell's upper bound (below the true one:
/// the marginal ROI at a cap is always at least k).
pub const RELATIVE_TOLERANCE: f64 = 1e-10;

/// A parsed `mroi(select) >= k`.
///
/// ```
/// use mmm_budget::*;
/// use mmm_budget::marginal_roi::MarginalRoiConstraint;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 20 }, 1);
/// let problem = Problem::new(&model, &scenario)?;
/// let c = MarginalRoiConstraint::parse("mroi(channel=ch1) >= 1.5", 0, &model, &problem.cells)
///     .expect("an mROI constraint")?;
/// assert_eq!(c.level, 1.5);
/// assert_eq!(c.cells.iter().filter(|s| **s).count(), 2); // ch1 in both geos
/// assert!(MarginalRoiConstraint::parse("sum(channel=ch1) <= 5", 0, &model, &problem.cells).is_none());
/// # Ok::<(), mmm_budget::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct MarginalRoiConstraint {
    /// The source string.
    pub name: String,
    /// Which optimized cells it holds.
    pub cells: Vec<bool>,
    /// k: the least marginal ROI.
    pub level: f64,
}

impl MarginalRoiConstraint {
    /// `None` where `text` does not start with `mroi`; else the constraint, or an
    /// [`Error::Constraint`] with the column. `mroi(…)` takes the selectors of
    /// `sum(…)` (empty, or bare `mroi`: every optimized cell); only `>=` and a finite
    /// k >= 0 are accepted.
    pub fn parse(
        text: &str,
        index: usize,
        model: &Model,
        cells: &[CellInfo],
    ) -> Option<Result<Self>> {
        let lead = text.len() - text.trim_start().len();
        let rest = &text[lead..];
        let after = rest.strip_prefix("mroi")?;
        if after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return None;
        }
        let fail = |at: usize, message: String| {
            Some(Err(Error::Constraint {
                context: "scenario".into(),
                index,
                text: crate::error::truncated(text, 200),
                column: text[..at.min(text.len())].chars().count() + 1,
                message,
            }))
        };
        let name_end = lead + 4;
        let open = text[name_end..]
            .find(|c: char| !c.is_whitespace())
            .map(|i| name_end + i);
        // The selection: `(…)` read by the linear parser as `sum(…)` at the same
        // columns, or nothing (every cell).
        let (selected, after_selection) = match open {
            Some(at) if text[at..].starts_with('(') => {
                let Some(close) = text[at..].find(')').map(|i| at + i) else {
                    return fail(
                        text.len(),
                        "expected ')' after the selectors of `mroi(`".into(),
                    );
                };
                let as_sum = format!("{}sum{} >= 0", " ".repeat(at - 3), &text[at..=close]);
                let sum = match LinearConstraint::parse_indexed(&as_sum, index, model, cells, 0.0) {
                    Ok(c) => c,
                    Err(Error::Constraint {
                        column, message, ..
                    }) => {
                        let at = text
                            .char_indices()
                            .nth(column - 1)
                            .map_or(text.len(), |(i, _)| i);
                        return fail(at, message);
                    }
                    Err(e) => return Some(Err(e)),
                };
                (
                    sum.coefficients.iter().map(|a| *a != 0.0).collect(),
                    close + 1,
                )
            }
            _ => (vec![true; cells.len()], name_end),
        };
        let tail = &text[after_selection..];
        let op_at = after_selection + (tail.len() - tail.trim_start().len());
        let Some(level_text) = text[op_at..].strip_prefix(">=") else {
            return fail(
                op_at,
                "expected >= and the least marginal ROI (an mROI constraint caps each selected cell's spend where its marginal ROI falls to that level)".into(),
            );
        };
        let level_at = op_at + 2 + (level_text.len() - level_text.trim_start().len());
        let level = match level_text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v,
            _ => {
                return fail(
                    level_at,
                    format!(
                        "expected a finite number >= 0 (the least marginal ROI); found {:?}",
                        level_text.trim()
                    ),
                );
            }
        };
        if !selected.iter().any(|s| *s) {
            return fail(lead, "the selection holds no optimized cell".into());
        }
        Some(Ok(MarginalRoiConstraint {
            name: text.trim().to_string(),
            cells: selected,
            level,
        }))
    }

    /// The cap of every selected cell (`None`: not selected, or its cap is its upper
    /// bound), found with `ev` (an evaluator of `problem`'s mean response).
    pub fn caps(&self, problem: &Problem, ev: &mut dyn Evaluator) -> Result<Vec<Option<f64>>> {
        let n = problem.num_cells();
        let periods = problem.num_periods;
        let k = self.level;
        // An infinite slope (a power law at 0) returns more than any k.
        let holds = |gradient: f64| crate::solution::marginal_roi(gradient, periods) >= k;
        let active: Vec<usize> = (0..n)
            .filter(|&c| self.cells[c] && problem.upper[c] > 0.0)
            .collect();
        let mut caps: Vec<Option<f64>> = (0..n)
            .map(|c| (self.cells[c] && problem.upper[c] <= 0.0).then_some(0.0))
            .collect();
        // The grid: spend j/(GRID − 1) of the upper bound in every cell at once.
        let xs: Vec<Vec<f64>> = (0..GRID)
            .map(|j| {
                (0..n)
                    .map(|c| problem.upper[c] * j as f64 / (GRID - 1) as f64)
                    .collect()
            })
            .collect();
        let refs: Vec<&[f64]> = xs.iter().map(|x| x.as_slice()).collect();
        let mut out = vec![Evaluation::default(); GRID];
        ev.evaluate_many(&refs, DrawWeights::Uniform, &mut out)?;
        // Brackets [lo, hi] with mROI(lo) >= k > mROI(hi).
        let mut brackets: Vec<(usize, f64, f64)> = vec![];
        for &c in &active {
            match (0..GRID).rev().find(|&j| holds(out[j].gradient[c])) {
                None => caps[c] = Some(0.0),
                Some(j) if j == GRID - 1 => {}
                Some(j) => brackets.push((c, xs[j][c], xs[j + 1][c])),
            }
        }
        let mut x = vec![0.0; n];
        let mut e = Evaluation::default();
        while brackets
            .iter()
            .any(|&(c, lo, hi)| hi - lo > RELATIVE_TOLERANCE * problem.upper[c])
        {
            for &(c, lo, hi) in &brackets {
                x[c] = 0.5 * (lo + hi);
            }
            ev.evaluate(&x, DrawWeights::Uniform, &mut e)?;
            for (c, lo, hi) in brackets.iter_mut() {
                if holds(e.gradient[*c]) {
                    *lo = x[*c];
                } else {
                    *hi = x[*c];
                }
            }
        }
        for (c, lo, _) in brackets {
            caps[c] = Some(lo);
        }
        Ok(caps)
    }

    /// The caps as linear rows `x_c <= cap_c`, named `"<constraint>: <cell>"`.
    pub fn rows(&self, problem: &Problem, ev: &mut dyn Evaluator) -> Result<Vec<LinearConstraint>> {
        let n = problem.num_cells();
        Ok(self
            .caps(problem, ev)?
            .into_iter()
            .enumerate()
            .filter_map(|(c, cap)| {
                cap.map(|cap| {
                    let mut coefficients = vec![0.0; n];
                    coefficients[c] = 1.0;
                    LinearConstraint {
                        name: format!("{}: {}", self.name, problem.cells[c].label),
                        coefficients,
                        sense: Sense::LessEqual,
                        rhs: cap,
                    }
                })
            })
            .collect())
    }
}
