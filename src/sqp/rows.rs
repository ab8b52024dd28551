//! The QP's rows: the budget, the linear constraints and the bounds as rows
//! a·y ≤ rhs (or = rhs) in scaled variables, the nonlinear constraints' scaled form,
//! and their names for messages.

use crate::constraint::Sense;
use crate::problem::Problem;
use crate::scenario::BudgetConstraint;

/// Which user constraint a QP row comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Origin {
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
pub(super) struct Row {
    pub(super) coefficients: Vec<(usize, f64)>,
    pub(super) rhs: f64,
    pub(super) equality: bool,
    pub(super) sign: f64,
    pub(super) origin: Origin,
}

impl Row {
    /// a·y.
    pub(super) fn lhs(&self, y: &[f64]) -> f64 {
        self.coefficients.iter().map(|&(c, a)| a * y[c]).sum()
    }
}

/// A nonlinear constraint's scaled form: sign·(c(x) − rhs)/scale ≤ 0 (or = 0).
pub(super) struct NonlinearRow {
    pub(super) sign: f64,
    pub(super) equality: bool,
    pub(super) scale: f64,
}

/// The linear rows: the budget, the scenario's linear constraints, upper and lower
/// bounds, in scaled variables.
pub(super) fn linear_rows(p: &Problem, scale: f64) -> Vec<Row> {
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

/// Names for certificate rows; bounds are grouped.
pub(super) fn describe_rows(p: &Problem, origins: &[Origin]) -> Vec<String> {
    let mut out = vec![];
    let mut upper = vec![];
    let mut lower = vec![];
    for o in origins {
        match o {
            Origin::Budget => out.push(format!(
                "budget (sum {} {})",
                if p.budget_constraint == BudgetConstraint::Equal {
                    "=="
                } else {
                    "<="
                },
                p.total_budget
            )),
            Origin::Linear(i) => out.push(format!(
                "constraints[{i}] ({})",
                p.linear_constraints[*i].name
            )),
            Origin::Upper(c) => upper.push(*c),
            Origin::Fixed(c) => {
                upper.push(*c);
                lower.push(*c);
            }
            Origin::Lower(c) => lower.push(*c),
        }
    }
    for (side, cells, values) in [("upper", &upper, &p.upper), ("lower", &lower, &p.lower)] {
        if !cells.is_empty() {
            let list: Vec<String> = cells
                .iter()
                .map(|&c| format!("{} {}", p.cells[c].label, values[c]))
                .collect();
            out.push(format!("{side} bounds of {}", list.join(", ")));
        }
    }
    out
}
