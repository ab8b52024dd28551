//! The final polish: bounds exactly, the budget to rounding.

use crate::problem::Problem;
use crate::scenario::BudgetConstraint;

/// Snaps onto the bounds (within `snap` · s, [`super::Tuning::snap`]) and restores Σx = B (or Σx ≤ B) by
/// spreading the residual over cells with room; the changes are at the QP's tolerance.
/// `lower`: the lower bounds in use; a steep cell's raised one is only clamped to, not
/// snapped to: its marginal return changes by percents over 1e-10 of the budget there.
pub(super) fn polish(
    p: &Problem,
    lower: &[f64],
    curvature: Option<&[f64]>,
    x: &mut [f64],
    scale: f64,
    snap: f64,
) {
    let snap = snap * scale;
    for (c, v) in x.iter_mut().enumerate() {
        let raised = lower[c] > p.lower[c];
        *v = if *v <= lower[c] || (!raised && *v <= lower[c] + snap) {
            lower[c]
        } else if *v >= p.upper[c] - snap {
            p.upper[c]
        } else {
            *v
        };
    }
    let target = match p.budget_constraint {
        BudgetConstraint::Equal => p.total_budget,
        BudgetConstraint::AtMost if x.iter().sum::<f64>() > p.total_budget => p.total_budget,
        _ => return,
    };
    for _ in 0..3 {
        let residual = target - x.iter().sum::<f64>();
        if residual == 0.0 {
            return;
        }
        // Cells strictly inside their bounds take the residual; bound-active cells stay
        // exactly on their bound unless no other cell has room. Each in proportion to
        // its room over its curvature, where that is known: equal changes of the
        // marginal returns, so the KKT residual stays where the solve left it (a steep
        // cell next to its bound, whose curvature is ~1e8 times the others', takes
        // almost none).
        let inside = |c: usize| x[c] > lower[c] && x[c] < p.upper[c];
        let any_inside = (0..x.len()).any(inside);
        let room: Vec<f64> = (0..x.len())
            .map(|c| {
                let room = if any_inside && !inside(c) {
                    0.0
                } else if residual > 0.0 {
                    p.upper[c] - x[c]
                } else {
                    x[c] - lower[c]
                };
                curvature.map_or(room, |h| room / h[c])
            })
            .collect();
        let total_room: f64 = room.iter().sum();
        if total_room <= 0.0 {
            return;
        }
        for c in 0..x.len() {
            x[c] = (x[c] + residual * room[c] / total_room).clamp(lower[c], p.upper[c]);
        }
    }
}
