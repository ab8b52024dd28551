//! The start projected onto the linear rows, or the rows that admit no point.

use super::Tuning;
use super::pattern::{ConeOrder, Pattern, clarabel_solver};
use super::rows::{Origin, Row, describe_rows};
use crate::error::{Error, Result};
use crate::problem::Problem;
use clarabel::solver::{IPSolver, SolverStatus};

/// Projects y0 onto the linear rows: min ½‖y − y0‖². `Err(names)` when the rows admit
/// no point, naming the rows of the infeasibility certificate.
pub(super) fn project(
    p: &Problem,
    rows: &[Row],
    y0: &[f64],
    n: usize,
    tuning: &Tuning,
) -> Result<std::result::Result<Vec<f64>, Vec<String>>> {
    let ConeOrder {
        rows: ordered,
        a_rows,
        b,
        n_eq,
    } = ConeOrder::new(rows);
    let a = Pattern::new(&a_rows, n);
    let p_mat = Pattern::new(&(0..n).map(|c| vec![(c, 1.0)]).collect::<Vec<_>>(), n).matrix;
    let q: Vec<f64> = y0.iter().map(|v| -v).collect();
    let mut solver =
        clarabel_solver(&p_mat, &q, &a.matrix, &b, n_eq, tuning).map_err(|e| Error::Solver {
            stage: "projection of the start onto the constraints",
            message: format!("Clarabel could not set up the QP: {e}"),
        })?;
    solver.solve();
    let sol = &solver.solution;
    match sol.status {
        SolverStatus::Solved | SolverStatus::AlmostSolved => Ok(Ok(sol.x.clone())),
        SolverStatus::PrimalInfeasible | SolverStatus::AlmostPrimalInfeasible => {
            let zmax = sol.z.iter().fold(0.0f64, |m, z| m.max(z.abs()));
            let involved: Vec<Origin> = ordered
                .iter()
                .zip(&sol.z)
                .filter(|(_, z)| z.abs() > 1e-6 * zmax)
                .map(|(r, _)| r.origin)
                .collect();
            Ok(Err(describe_rows(p, &involved)))
        }
        s => Err(Error::Solver {
            stage: "projection of the start onto the constraints",
            message: format!("Clarabel ended with status {s:?}"),
        }),
    }
}
