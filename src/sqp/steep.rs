//! Steep cells: curves whose marginal return is infinite at the lower bound (`root`
//! with α < 1, `hill` with slope < 1 in some draw), found by one evaluation, and how
//! much room the constraints leave each above its bound.

use super::Tuning;
use super::pattern::{ConeOrder, Pattern, clarabel_solver};
use super::rows::{Origin, Row};
use crate::error::Result;
use crate::eval::{DrawWeights, Evaluation, Evaluator};
use crate::problem::Problem;
use clarabel::solver::{IPSolver, SolverStatus};

/// Which cells have an infinite marginal return at their lower bound: the power laws
/// (`root` with α < 1, `hill` with slope < 1 in some draw) at 0. Their optimum lies
/// strictly above the bound, and next to it the curvature is unbounded: a Newton step
/// that lands there crawls back out, doubling each iteration (a 200-cell root problem
/// took 61 iterations). The solver keeps their steps to a fraction of the distance to
/// the bound instead, and raises the bound by [`Tuning::steep_floor`]. One evaluation, at the
/// lower bounds, for the kinds that can have such cells (the flag says whether it ran).
pub(super) fn steep_cells(
    evaluator: &mut dyn Evaluator,
    p: &Problem,
    out: &mut Evaluation,
) -> Result<(Vec<bool>, bool)> {
    let n = p.num_cells();
    if !matches!(
        p.saturation,
        crate::Saturation::Root | crate::Saturation::Hill
    ) {
        return Ok((vec![false; n], false));
    }
    evaluator.evaluate(&p.lower, DrawWeights::Uniform, out)?;
    Ok((out.gradient.iter().map(|g| !g.is_finite()).collect(), true))
}

/// How much room (scaled) the linear rows leave each steep cell above its lower bound,
/// up to 100 × [`Tuning::pinned_room`], all at once: the LP max Σ t_c subject to the
/// rows, t_c ≤ y_c − l_c and t_c ≤ 100 × pinned_room (the LP's answer is only needed
/// to tell room from none). `None` (for every cell) when the LP does not solve; the
/// projection then reports what is wrong with the rows.
fn steep_room(
    rows: &[Row],
    steep: &[bool],
    lower: &[f64],
    n: usize,
    tuning: &Tuning,
) -> Vec<Option<f64>> {
    let cells: Vec<usize> = (0..n).filter(|&c| steep[c]).collect();
    let k = cells.len();
    let ConeOrder {
        mut a_rows,
        mut b,
        n_eq,
        ..
    } = ConeOrder::new(rows);
    for (j, &c) in cells.iter().enumerate() {
        a_rows.push(vec![(c, -1.0), (n + j, 1.0)]);
        b.push(-lower[c]);
        a_rows.push(vec![(n + j, 1.0)]);
        b.push(100.0 * tuning.pinned_room);
    }
    let a = Pattern::new(&a_rows, n + k);
    let p_mat = Pattern::new(&vec![vec![]; n + k], n + k).matrix;
    let mut q = vec![0.0; n + k];
    q[n..].iter_mut().for_each(|v| *v = -1.0);
    let Ok(mut solver) = clarabel_solver(&p_mat, &q, &a.matrix, &b, n_eq, tuning) else {
        return vec![None; n];
    };
    solver.solve();
    let sol = &solver.solution;
    if !matches!(
        sol.status,
        SolverStatus::Solved | SolverStatus::AlmostSolved
    ) {
        return vec![None; n];
    }
    let mut room = vec![None; n];
    for (j, &c) in cells.iter().enumerate() {
        room[c] = Some(sol.x[n + j]);
    }
    room
}

/// The rows with steep cells' lower bounds raised by [`Tuning::steep_floor`] where the
/// constraints leave room for it, at least [`Tuning::pinned_room`] (`None` without
/// steep cells), and the cells that the constraints hold at their bound: those are
/// pinned there (not QP variables: their marginal return there is infinite, and so
/// are the multipliers that hold them; the KKT residual leaves them out).
///
/// Why raise the bound: such a cell's optimum lies above the bound but can be
/// astronomically close to it (for x^s near 0 with s = 0.997 and a marginal return a
/// third of the budget's, at x ≈ 10⁻¹⁹⁷). No step reaches it and no KKT test passes
/// on the way (the marginal return grows without bound). Above the raised bound the
/// marginal return is finite: such a cell stops there, with a bound multiplier. Not
/// raised when the raised bounds together admit no point (then the old bounds and the
/// fraction to the boundary remain).
pub(super) fn raised_rows(
    rows: &[Row],
    steep: &[bool],
    lower: &[f64],
    tuning: &Tuning,
) -> (Option<Vec<Row>>, Vec<bool>) {
    let n = steep.len();
    let mut pinned = vec![false; n];
    if !steep.iter().any(|s| *s) {
        return (None, pinned);
    }
    let room = steep_room(rows, steep, lower, n, tuning);
    let mut raised = rows.to_vec();
    for row in raised.iter_mut() {
        if let Origin::Lower(c) = row.origin
            && steep[c]
        {
            match room[c] {
                Some(t) if t >= tuning.pinned_room => row.rhs -= tuning.steep_floor,
                Some(_) => pinned[c] = true,
                None => {}
            }
        }
    }
    (Some(raised), pinned)
}
