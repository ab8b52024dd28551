//! Violations, KKT residuals (scaled and in user units) and the multipliers as
//! reported.

use super::point::Point;
use super::qp::QpResult;
use super::rows::{NonlinearRow, Origin, Row};
use crate::constraint::{NonlinearConstraint, Sense};
use crate::problem::Problem;
use crate::solution::Multiplier;

pub(super) fn nl_violation(nl: &[NonlinearRow], values: &[f64]) -> f64 {
    nl.iter()
        .zip(values)
        .map(|(r, v)| if r.equality { v.abs() } else { v.max(0.0) })
        .sum()
}

/// Largest violation of the linear rows at the point.
pub(super) fn violation_scaled(rows: &[Row], pt: &Point) -> f64 {
    rows.iter()
        .map(|r| {
            let v = r.lhs(&pt.y) - r.rhs;
            if r.equality { v.abs() } else { v.max(0.0) }
        })
        .fold(0.0, f64::max)
}

/// KKT residual at the point with the QP's multipliers, in scaled units.
/// Cells `pinned` at a bound where their marginal return is infinite are left out.
pub(super) fn kkt_scaled(
    rows: &[Row],
    nl: &[NonlinearRow],
    pt: &Point,
    qp: &QpResult,
    pinned: &[bool],
) -> f64 {
    let n = pinned.len();
    let mut stat = pt.g.clone();
    let mut comp = 0.0f64;
    for (r, z) in rows.iter().zip(&qp.z_lin) {
        for &(c, a) in &r.coefficients {
            stat[c] += z * a;
        }
        if !r.equality {
            comp = comp.max((z * (r.rhs - r.lhs(&pt.y))).abs());
        }
    }
    for (j, (r, z)) in nl.iter().zip(&qp.z_nl).enumerate() {
        for (c, s) in stat.iter_mut().enumerate() {
            *s += z * pt.nl_grads[j * n + c];
        }
        if !r.equality {
            comp = comp.max((z * pt.nl_values[j]).abs());
        }
    }
    stat.iter()
        .zip(pinned)
        .filter(|(_, p)| !**p)
        .fold(comp, |m, (v, _)| m.max(v.abs()))
}

/// Multipliers in user units, λ = ∂U*/∂rhs: one per linear row (in `rows` order)
/// and one per nonlinear constraint. ∇U = Σ λ_i ∇lhs_i at a KKT point.
pub(super) fn user_lambdas(
    rows: &[Row],
    nl: &[NonlinearRow],
    qp: &QpResult,
    f0: f64,
    scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let lin = rows
        .iter()
        .zip(&qp.z_lin)
        .map(|(r, z)| r.sign * z * f0 / scale)
        .collect();
    let nonlin = nl
        .iter()
        .zip(&qp.z_nl)
        .map(|(r, z)| r.sign * z * f0 / r.scale)
        .collect();
    (lin, nonlin)
}

/// Bound multipliers taken again at the final allocation: a cell exactly on a bound
/// there gets the rest of its stationarity, ∂U/∂x_c − Σ (other rows' λ_i ∂lhs_i/∂x_c),
/// when that has the bound's sign (≤ 0 for a lower bound, ≥ 0 for an upper one). The
/// QP's multipliers belong to the last iterate, a hair off the bound, where a curve
/// with an unbounded curvature at 0 (hill with slope just above 1) can have a
/// marginal return several percent away from its value on the bound.
pub(super) fn rebalance_bounds(
    rows: &[Row],
    lin: &mut [f64],
    nonlin: &[f64],
    x: &[f64],
    pt: &Point,
    scale: f64,
) {
    let n = x.len();
    let mut rest = pt.grad_u.clone();
    for (r, lambda) in rows.iter().zip(lin.iter()) {
        if !matches!(r.origin, Origin::Lower(_) | Origin::Upper(_)) {
            for &(c, a) in &r.coefficients {
                rest[c] -= lambda * r.sign * a;
            }
        }
    }
    for (j, lambda) in nonlin.iter().enumerate() {
        for (c, v) in rest.iter_mut().enumerate() {
            *v -= lambda * pt.nl_raw_grads[j * n + c];
        }
    }
    for (r, lambda) in rows.iter().zip(lin.iter_mut()) {
        // The row in user form: x_c ≥ l (lower) or x_c ≤ u (upper), at rhs·s.
        // (rhs · s is the bound to an ulp or so.)
        let at = |b: f64, c: usize| (x[c] - b).abs() <= 4.0 * f64::EPSILON * b.abs();
        let (c, on_bound, sign_ok) = match r.origin {
            Origin::Lower(c) => (c, at(-r.rhs * scale, c), rest[c] <= 0.0),
            Origin::Upper(c) => (c, at(r.rhs * scale, c), rest[c] >= 0.0),
            _ => continue,
        };
        if on_bound && sign_ok && rest[c].is_finite() {
            *lambda = rest[c];
        }
    }
}

/// The reported list: budget, linear constraints, nonlinear constraints, then every
/// cell's upper and lower bound (a pinned cell's one multiplier split by sign).
pub(super) fn multiplier_list(
    p: &Problem,
    rows: &[Row],
    nonlinear: &[NonlinearConstraint],
    lin: &[f64],
    nonlin: &[f64],
) -> Vec<Multiplier> {
    let mut out = vec![];
    let mut upper = vec![0.0; p.num_cells()];
    let mut lower = vec![0.0; p.num_cells()];
    for (r, &value) in rows.iter().zip(lin) {
        match r.origin {
            Origin::Budget => out.push(Multiplier {
                constraint: "budget".into(),
                value,
            }),
            Origin::Linear(i) => out.push(Multiplier {
                constraint: p.linear_constraints[i].name.clone(),
                value,
            }),
            Origin::Upper(c) => upper[c] = value,
            Origin::Lower(c) => lower[c] = value,
            Origin::Fixed(c) => {
                upper[c] = value.max(0.0);
                lower[c] = value.min(0.0);
            }
        }
    }
    for (c, &value) in nonlinear.iter().zip(nonlin) {
        out.push(Multiplier {
            constraint: c.name.clone(),
            value,
        });
    }
    for (c, cell) in p.cells.iter().enumerate() {
        out.push(Multiplier {
            constraint: format!("upper bound of {}", cell.label),
            value: upper[c],
        });
        out.push(Multiplier {
            constraint: format!("lower bound of {}", cell.label),
            value: lower[c],
        });
    }
    out
}

/// The reported KKT residual at x from the user-unit multipliers (see
/// [`Solution::kkt_residual`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn kkt_user(
    rows: &[Row],
    nonlinear: &[NonlinearConstraint],
    x: &[f64],
    pt: &Point,
    lin: &[f64],
    nonlin: &[f64],
    f0: f64,
    scale: f64,
    pinned: &[bool],
) -> f64 {
    let n = x.len();
    let mut stat = pt.grad_u.clone();
    let mut comp = 0.0f64;
    for (r, lambda) in rows.iter().zip(lin) {
        // In user form the row is lhs = sign · a·x against rhs = sign · rhs_row · s.
        for &(c, a) in &r.coefficients {
            stat[c] -= lambda * r.sign * a;
        }
        if !r.equality {
            comp = comp.max((lambda * (r.rhs * scale - r.lhs(x))).abs());
        }
    }
    for (j, (lambda, c)) in nonlin.iter().zip(nonlinear).enumerate() {
        for (k, s) in stat.iter_mut().enumerate() {
            *s -= lambda * pt.nl_raw_grads[j * n + k];
        }
        if c.sense != Sense::Equal {
            comp = comp.max((lambda * (c.rhs - pt.nl_raw[j])).abs());
        }
    }
    let k = scale / f0;
    stat.iter()
        .zip(pinned)
        .filter(|(_, p)| !**p)
        .map(|(v, _)| v.abs() * k)
        .fold(comp / f0, f64::max)
}

/// The active nonlinear rows at `pt` whose gradient lies within `within` (relative) of
/// the span of the other active rows' gradients, each with that distance: there the
/// constraint qualification fails or nearly fails, and KKT multipliers need not exist
/// or are huge (the constraints may leave a single feasible point, or a tiny set,
/// where a nonlinear row touches the face of the linear ones).
pub(super) fn dependent_nonlinear(
    rows: &[Row],
    nl: &[NonlinearRow],
    pt: &Point,
    within: f64,
) -> Vec<(usize, f64)> {
    let n = pt.y.len();
    let tight = |slack: f64, rhs: f64| slack.abs() <= 1e-9 * (1.0 + rhs.abs());
    // Cells at a bound: their unit rows span those coordinates.
    let mut at_bound = vec![false; n];
    let mut general: Vec<Vec<f64>> = vec![];
    for r in rows {
        if !(r.equality || tight(r.rhs - r.lhs(&pt.y), r.rhs)) {
            continue;
        }
        match r.origin {
            Origin::Upper(c) | Origin::Lower(c) | Origin::Fixed(c) => at_bound[c] = true,
            Origin::Budget | Origin::Linear(_) => {
                let mut a = vec![0.0; n];
                for &(c, v) in &r.coefficients {
                    a[c] = v;
                }
                general.push(a);
            }
        }
    }
    let active_nl: Vec<usize> = (0..nl.len())
        .filter(|&j| nl[j].equality || pt.nl_values[j].abs() <= 1e-6)
        .collect();
    let free: Vec<usize> = (0..n).filter(|&c| !at_bound[c]).collect();
    let row_of = |j: usize| &pt.nl_grads[j * n..(j + 1) * n];
    active_nl
        .iter()
        .filter_map(|&j| {
            let g = row_of(j);
            let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
            let b = nalgebra::DVector::from_iterator(free.len(), free.iter().map(|&c| g[c]));
            let others: Vec<&[f64]> = general
                .iter()
                .map(|a| a.as_slice())
                .chain(active_nl.iter().filter(|&&k| k != j).map(|&k| row_of(k)))
                .collect();
            let distance = if norm == 0.0 {
                0.0
            } else if others.is_empty() || free.is_empty() {
                b.norm() / norm
            } else {
                let m =
                    nalgebra::DMatrix::from_fn(free.len(), others.len(), |i, k| others[k][free[i]]);
                match m.clone().svd(true, true).solve(&b, 1e-12) {
                    Ok(l) => (m * l - &b).norm() / norm,
                    Err(_) => return None,
                }
            };
            (distance <= within).then_some((j, distance))
        })
        .collect()
}
