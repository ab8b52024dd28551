//! Clarabel's QPs as this solver builds them: a CSC pattern built once and refilled,
//! the rows in cone order (equalities first), and the solver's settings.

use super::Tuning;
use super::rows::Row;
use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSettings, DefaultSettingsBuilder, DefaultSolver, SupportedConeT};

/// Clarabel's settings: tolerances from [`Tuning::qp_accuracy`] and
/// [`Tuning::qp_infeasibility`], no presolve (the pattern must stay as built).
pub(super) fn clarabel_settings(tuning: &Tuning) -> DefaultSettings<f64> {
    let mut s = DefaultSettingsBuilder::default()
        .verbose(false)
        .presolve_enable(false)
        .input_sparse_dropzeros(false)
        .build()
        .expect("Clarabel's default settings are valid");
    s.tol_gap_abs = tuning.qp_accuracy;
    s.tol_gap_rel = tuning.qp_accuracy;
    s.tol_feas = tuning.qp_accuracy;
    s.tol_infeas_abs = tuning.qp_infeasibility;
    s.tol_infeas_rel = tuning.qp_infeasibility;
    s.max_iter = tuning.qp_max_iter;
    s
}

/// A Clarabel solver for min ½ xᵀPx + qᵀx subject to the rows of `a`: the first
/// `n_eq` equalities (a zero cone), the rest `a·x ≤ b` (a nonnegative cone).
pub(super) fn clarabel_solver(
    p: &CscMatrix<f64>,
    q: &[f64],
    a: &CscMatrix<f64>,
    b: &[f64],
    n_eq: usize,
    tuning: &Tuning,
) -> std::result::Result<DefaultSolver<f64>, clarabel::solver::SolverError> {
    solver_with(p, q, a, b, n_eq, clarabel_settings(tuning))
}

/// [`clarabel_solver`] with these settings.
pub(super) fn solver_with(
    p: &CscMatrix<f64>,
    q: &[f64],
    a: &CscMatrix<f64>,
    b: &[f64],
    n_eq: usize,
    settings: DefaultSettings<f64>,
) -> std::result::Result<DefaultSolver<f64>, clarabel::solver::SolverError> {
    let cones = [
        SupportedConeT::ZeroConeT(n_eq),
        SupportedConeT::NonnegativeConeT(a.m - n_eq),
    ];
    DefaultSolver::new(p, q, a, b, &cones, settings)
}

/// A CSC matrix with a fixed pattern built from rows of (column, value) entries;
/// `slot[r][k]` is where entry k of row r lives in `nzval`.
pub(super) struct Pattern {
    pub(super) matrix: CscMatrix<f64>,
    pub(super) slot: Vec<Vec<usize>>,
}

impl Pattern {
    pub(super) fn new(rows: &[Vec<(usize, f64)>], ncols: usize) -> Self {
        let mut counts = vec![0usize; ncols];
        for r in rows {
            for &(c, _) in r {
                counts[c] += 1;
            }
        }
        let mut colptr = vec![0usize; ncols + 1];
        for c in 0..ncols {
            colptr[c + 1] = colptr[c] + counts[c];
        }
        let nnz = colptr[ncols];
        let mut next = colptr.clone();
        let mut rowval = vec![0usize; nnz];
        let mut nzval = vec![0.0; nnz];
        let mut slot = Vec::with_capacity(rows.len());
        // Rows in increasing order, so each column's row indices come out sorted.
        for (i, r) in rows.iter().enumerate() {
            let mut s = Vec::with_capacity(r.len());
            for &(c, v) in r {
                let k = next[c];
                next[c] += 1;
                rowval[k] = i;
                nzval[k] = v;
                s.push(k);
            }
            slot.push(s);
        }
        Pattern {
            matrix: CscMatrix::new(rows.len(), ncols, colptr, rowval, nzval),
            slot,
        }
    }

    /// The matrix with the pattern's entries set to `nz`.
    pub(super) fn filled(&self, nz: &[f64]) -> CscMatrix<f64> {
        let mut m = self.matrix.clone();
        m.nzval.copy_from_slice(nz);
        m
    }

    pub(super) fn values(&self, rows: &[Vec<(usize, f64)>]) -> Vec<f64> {
        let mut nz = vec![0.0; self.matrix.nzval.len()];
        for (r, s) in rows.iter().zip(&self.slot) {
            for (&(_, v), &k) in r.iter().zip(s) {
                nz[k] = v;
            }
        }
        nz
    }
}

/// The linear rows in Clarabel's order, equalities first (its zero cone, then the
/// nonnegative one).
pub(super) struct ConeOrder<'a> {
    pub(super) rows: Vec<&'a Row>,
    /// Their coefficients and right-hand sides, in that order.
    pub(super) a_rows: Vec<Vec<(usize, f64)>>,
    pub(super) b: Vec<f64>,
    /// How many of them are equalities.
    pub(super) n_eq: usize,
}

impl<'a> ConeOrder<'a> {
    pub(super) fn new(rows: &'a [Row]) -> Self {
        let (eq, ineq): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.equality);
        let n_eq = eq.len();
        let rows: Vec<&Row> = eq.into_iter().chain(ineq).collect();
        let a_rows = rows.iter().map(|r| r.coefficients.clone()).collect();
        let b = rows.iter().map(|r| r.rhs).collect();
        ConeOrder {
            rows,
            a_rows,
            b,
            n_eq,
        }
    }
}
