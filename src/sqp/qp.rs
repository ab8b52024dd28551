//! The QP subproblem: its pattern built once, Clarabel, the exact answer on the
//! active set (`refine`), the warm start; and the projection QP of the start.

use super::*;

pub(super) fn clarabel_settings() -> DefaultSettings<f64> {
    DefaultSettingsBuilder::default()
        .verbose(false)
        .presolve_enable(false)
        .input_sparse_dropzeros(false)
        .tol_gap_abs(1e-11)
        .tol_gap_rel(1e-11)
        .tol_feas(1e-11)
        .tol_infeas_abs(1e-9)
        .tol_infeas_rel(1e-9)
        .max_iter(500)
        .build()
        .expect("constant Clarabel settings are valid")
}

/// A Clarabel solver for min ½ xᵀPx + qᵀx subject to the rows of `a`: the first
/// `n_eq` equalities (a zero cone), the rest `a·x ≤ b` (a nonnegative cone).
pub(super) fn clarabel_solver(
    p: &CscMatrix<f64>,
    q: &[f64],
    a: &CscMatrix<f64>,
    b: &[f64],
    n_eq: usize,
) -> std::result::Result<DefaultSolver<f64>, clarabel::solver::SolverError> {
    let cones = [
        SupportedConeT::ZeroConeT(n_eq),
        SupportedConeT::NonnegativeConeT(a.m - n_eq),
    ];
    DefaultSolver::new(p, q, a, b, &cones, clarabel_settings())
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
    fn filled(&self, nz: &[f64]) -> CscMatrix<f64> {
        let mut m = self.matrix.clone();
        m.nzval.copy_from_slice(nz);
        m
    }

    fn values(&self, rows: &[Vec<(usize, f64)>]) -> Vec<f64> {
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

/// Projects y0 onto the linear rows: min ½‖y − y0‖². `Err(names)` when the rows admit
/// no point, naming the rows of the infeasibility certificate.
pub(super) fn project(
    p: &Problem,
    rows: &[Row],
    y0: &[f64],
    n: usize,
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
    let mut solver = clarabel_solver(&p_mat, &q, &a.matrix, &b, n_eq).map_err(|e| {
        Error::invalid(
            "solver",
            "projection QP",
            format!("{e:?}"),
            "a well-formed QP",
        )
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
        s => Err(Error::invalid(
            "solver",
            "projection onto the constraints",
            format!("Clarabel status {s:?}"),
            "a solved projection QP",
        )),
    }
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

/// The SQP's QP with its pattern built once. Cells whose bounds are equal are not
/// QP variables (their step is 0); rows left without a variable are left out, and the
/// multiplier of a pinned cell's bound comes from stationarity.
pub(super) struct Qp {
    pub(super) solver: Option<DefaultSolver<f64>>,
    pub(super) a: Pattern,
    pub(super) p: Pattern,
    /// The free cells (QP columns 0..free.len()).
    pub(super) free: Vec<usize>,
    /// QP column of each cell.
    pub(super) column: Vec<Option<usize>>,
    pub(super) nt: usize,
    pub(super) n_eq: usize,
    pub(super) order: Vec<QpRow>,
    pub(super) exact: bool,
    /// Cells whose marginal return is infinite at their lower bound (see
    /// [`steep_cells`]): a step goes at most [`TO_BOUNDARY`] of the way there.
    pub(super) steep: Vec<bool>,
    /// Whether their lower bounds were raised by [`STEEP_FLOOR`].
    pub(super) raised: bool,
    /// The last QP's active set (diagonal Hessian, no slacks): the next QP is first
    /// solved exactly from it, and Clarabel runs only where that fails.
    pub(super) warm: Option<Vec<bool>>,
}

/// The largest fraction of the distance to its lower bound that one step may take a
/// steep cell.
pub(super) const TO_BOUNDARY: f64 = 0.9;

#[derive(Clone, Copy)]
pub(super) enum QpRow {
    Linear(usize),
    /// Nonlinear row j; its first slack's index.
    Nonlinear(usize, usize),
    Slack(usize),
}

impl Qp {
    pub(super) fn new(
        rows: &[Row],
        nl: &[NonlinearRow],
        n: usize,
        exact: bool,
        pinned: &[bool],
    ) -> Result<Self> {
        let fixed: Vec<bool> = {
            let mut f = pinned.to_vec();
            for r in rows {
                if let Origin::Fixed(c) = r.origin {
                    f[c] = true;
                }
            }
            f
        };
        let free: Vec<usize> = (0..n).filter(|&c| !fixed[c]).collect();
        let mut column = vec![None; n];
        for (k, &c) in free.iter().enumerate() {
            column[c] = Some(k);
        }
        let nf = free.len();
        let nt: usize = nl.iter().map(|r| if r.equality { 2 } else { 1 }).sum();
        let nv = nf + nt;
        let mut slack_of = vec![0; nl.len()];
        let mut t = 0;
        for (j, r) in nl.iter().enumerate() {
            slack_of[j] = t;
            t += if r.equality { 2 } else { 1 };
        }
        let has_free = |r: &Row| r.coefficients.iter().any(|&(c, _)| column[c].is_some());
        let mut order = vec![];
        for equality in [true, false] {
            for (i, r) in rows.iter().enumerate() {
                if r.equality == equality && has_free(r) {
                    order.push(QpRow::Linear(i));
                }
            }
            for (j, r) in nl.iter().enumerate() {
                if r.equality == equality {
                    order.push(QpRow::Nonlinear(j, slack_of[j]));
                }
            }
        }
        let n_eq = order
            .iter()
            .take_while(|o| match **o {
                QpRow::Linear(i) => rows[i].equality,
                QpRow::Nonlinear(j, _) => nl[j].equality,
                QpRow::Slack(_) => false,
            })
            .count();
        order.extend((0..nt).map(QpRow::Slack));
        let mut qp = Qp {
            solver: None,
            a: Pattern::new(&[], 0),
            p: Pattern::new(&[], 0),
            free,
            column,
            nt,
            n_eq,
            order,
            exact,
            steep: vec![false; n],
            raised: false,
            warm: None,
        };
        let a_rows = qp.a_rows(rows, nl, &vec![1.0; nl.len() * n], n);
        qp.a = Pattern::new(&a_rows, nv);
        let p_rows: Vec<Vec<(usize, f64)>> = if exact {
            (0..nv)
                .map(|c| if c < nf { vec![(c, 1.0)] } else { vec![] })
                .collect()
        } else {
            (0..nv)
                .map(|i| {
                    if i < nf {
                        (i..nf).map(|j| (j, 1.0)).collect()
                    } else {
                        vec![]
                    }
                })
                .collect()
        };
        qp.p = Pattern::new(&p_rows, nv);
        Ok(qp)
    }

    fn a_rows(
        &self,
        rows: &[Row],
        nl: &[NonlinearRow],
        nl_grads: &[f64],
        n: usize,
    ) -> Vec<Vec<(usize, f64)>> {
        let nf = self.free.len();
        self.order
            .iter()
            .map(|o| match *o {
                QpRow::Linear(i) => rows[i]
                    .coefficients
                    .iter()
                    .filter_map(|&(c, a)| self.column[c].map(|k| (k, a)))
                    .collect(),
                QpRow::Nonlinear(j, t) => {
                    let mut e: Vec<(usize, f64)> = self
                        .free
                        .iter()
                        .enumerate()
                        .map(|(k, &c)| (k, nl_grads[j * n + c]))
                        .collect();
                    e.push((nf + t, -1.0));
                    if nl[j].equality {
                        e.push((nf + t + 1, 1.0));
                    }
                    e
                }
                QpRow::Slack(k) => vec![(nf + k, -1.0)],
            })
            .collect()
    }

    /// Solves the QP at `pt`; each cell's step is kept within `radius` (scaled units)
    /// on top of its bounds: a trust region on the bound rows' right-hand sides.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn solve(
        &mut self,
        rows: &[Row],
        pt: &Point,
        hess: &Hessian,
        nl: &[NonlinearRow],
        n: usize,
        radius: f64,
    ) -> Result<QpOutcome> {
        let nf = self.free.len();
        let nv = nf + self.nt;
        let mut z_lin = vec![0.0; rows.len()];
        let mut z_nl = vec![0.0; nl.len()];
        let mut p = vec![0.0; n];
        let mut t = vec![0.0; self.nt];
        let mut reduced = false;
        let mut diving = false;
        if nv > 0 {
            let a_rows = self.a_rows(rows, nl, &pt.nl_grads, n);
            let a_nz = self.a.values(&a_rows);
            let b: Vec<f64> = self
                .order
                .iter()
                .map(|o| match *o {
                    QpRow::Linear(i) => {
                        let r = &rows[i];
                        let slack = r.rhs - r.lhs(&pt.y);
                        match r.origin {
                            // Within a few floors of a raised bound a steep cell may
                            // reach it: its marginal return is finite there.
                            Origin::Lower(c)
                                if self.steep[c]
                                    && !(self.raised && slack <= 10.0 * STEEP_FLOOR) =>
                            {
                                slack.min(radius).min(TO_BOUNDARY * slack)
                            }
                            Origin::Upper(_) | Origin::Lower(_) => slack.min(radius),
                            _ => slack,
                        }
                    }
                    QpRow::Nonlinear(j, _) => -pt.nl_values[j],
                    QpRow::Slack(_) => 0.0,
                })
                .collect();
            let mut q: Vec<f64> = self.free.iter().map(|&c| pt.g[c]).collect();
            q.extend(std::iter::repeat_n(ELASTIC_PENALTY, self.nt));
            let p_rows: Vec<Vec<(usize, f64)>> = match hess {
                Hessian::Diagonal(h) => (0..nv)
                    .map(|k| {
                        if k < nf {
                            vec![(k, h[self.free[k]])]
                        } else {
                            vec![]
                        }
                    })
                    .collect(),
                Hessian::Dense(m) => (0..nv)
                    .map(|i| {
                        if i < nf {
                            (i..nf)
                                .map(|j| (j, m[self.free[i] * n + self.free[j]]))
                                .collect()
                        } else {
                            vec![]
                        }
                    })
                    .collect(),
            };
            debug_assert_eq!(matches!(hess, Hessian::Diagonal(_)), self.exact);
            let p_nz = self.p.values(&p_rows);
            // With the exact diagonal and no slacks: first the exact answer from the
            // last QP's active set; Clarabel only where that fails.
            let diagonal = matches!(hess, Hessian::Diagonal(_)) && self.nt == 0;
            let floored: Vec<f64> = if diagonal {
                p_rows.iter().map(|r| r[0].1).collect()
            } else {
                vec![]
            };
            let exact: Vec<f64> = if diagonal {
                self.free.iter().map(|&c| pt.h[c]).collect()
            } else {
                vec![]
            };
            let n_eq = self.n_eq;
            let (qp_floored, qp_exact) = [&floored, &exact]
                .map(|h| refine::DiagonalQp {
                    h,
                    q: &q,
                    rows: &a_rows,
                    b: &b,
                    n_eq,
                })
                .into();
            // First with the exact curvature where the floor raised it (a convex
            // stretch of a curve that the active rows outweigh: Newton's step, not a
            // floored one that converges linearly), kept only where it is a descent
            // direction with a model value (in the exact curvature) no worse than the
            // floored step's; else with the QP's own.
            // A descent direction up to the noise the line search allows (1e-11 of
            // the objective): a Newton step of 1e-15 whose slope rounds to +1e-16 is
            // the exact answer all the same.
            let noise = 1e-11 * pt.f.abs().max(1e-300);
            let pick = |with_exact: Option<refine::Refined>,
                        with_floor: Option<refine::Refined>| {
                let slope =
                    |r: &refine::Refined| -> f64 { r.p.iter().zip(&q).map(|(x, q)| x * q).sum() };
                // The model value (exact curvature) plus the rows' violation weighted
                // by the largest multiplier (the QP's exact penalty): both answers hold
                // their rows only to 1e-12, and a model value bought by violating a row
                // by that much must not win where a cell lives at that scale (a steep
                // cell's optimum 3e-12 of the budget above 0).
                let model = |r: &refine::Refined, weight: f64| -> f64 {
                    let violation: f64 = a_rows
                        .iter()
                        .zip(&b)
                        .enumerate()
                        .map(|(i, (row, b))| {
                            let v = row.iter().map(|&(c, a)| a * r.p[c]).sum::<f64>() - b;
                            if i < n_eq { v.abs() } else { v.max(0.0) }
                        })
                        .sum();
                    r.p.iter()
                        .zip(&q)
                        .zip(&exact)
                        .map(|((x, q), h)| q * x + 0.5 * h * x * x)
                        .sum::<f64>()
                        + weight * violation
                };
                match (with_exact, with_floor) {
                    (Some(e), Some(f)) => {
                        let weight = e.z.iter().chain(&f.z).fold(0.0f64, |m, z| m.max(z.abs()));
                        if slope(&e) < noise && model(&e, weight) <= model(&f, weight) {
                            Some(e)
                        } else {
                            Some(f)
                        }
                    }
                    (e, f) => f.or(e.filter(|e| slope(e) < noise)),
                }
            };
            let both = |solve: &dyn Fn(&refine::DiagonalQp) -> Option<refine::Refined>| {
                let with_floor = solve(&qp_floored);
                let with_exact = (exact != floored).then(|| solve(&qp_exact)).flatten();
                pick(with_exact, with_floor)
            };
            let warm = match (&self.warm, diagonal) {
                (Some(active), true) => both(&|qp| qp.solve_from(active.clone())),
                _ => None,
            };
            // The answer (x, z), and the active set it is exact on (none: Clarabel's).
            let (sx, sz, active) = match warm {
                Some(r) => (r.p, r.z, Some(r.active)),
                None => {
                    let updated = match self.solver.as_mut() {
                        Some(s) => {
                            s.update_P(&p_nz).is_ok()
                                && s.update_A(&a_nz).is_ok()
                                && s.update_q(&q).is_ok()
                                && s.update_b(&b).is_ok()
                        }
                        None => false,
                    };
                    if !updated {
                        let solver = clarabel_solver(
                            &self.p.filled(&p_nz),
                            &q,
                            &self.a.filled(&a_nz),
                            &b,
                            self.n_eq,
                        )
                        .map_err(|e| {
                            Error::invalid(
                                "solver",
                                "QP subproblem",
                                format!("{e:?}"),
                                "a well-formed QP",
                            )
                        })?;
                        self.solver = Some(solver);
                    }
                    let solver = self.solver.as_mut().expect("set above");
                    solver.solve();
                    let sol = &solver.solution;
                    // Clarabel's verdict; where it gave up (insufficient progress, say),
                    // its last iterate may still point to the active set (`refine`).
                    let failed = match sol.status {
                        SolverStatus::Solved => None,
                        SolverStatus::AlmostSolved => {
                            reduced = true;
                            None
                        }
                        s => Some(s),
                    };
                    // Where Clarabel gave up and its iterate points nowhere, the rows
                    // tight at the current point (then the equalities alone) are
                    // guesses the active-set repair can start from.
                    let refined = if diagonal {
                        both(&|qp| qp.refine(&sol.x, &sol.z)).or_else(|| {
                            failed?;
                            let tight: Vec<bool> = (0..b.len())
                                .map(|i| i < n_eq || b[i] <= 1e-12 * (1.0 + b[i].abs()))
                                .collect();
                            let equalities: Vec<bool> = (0..b.len()).map(|i| i < n_eq).collect();
                            both(&|qp| qp.solve_from(tight.clone()))
                                .or_else(|| both(&|qp| qp.solve_from(equalities.clone())))
                                .or_else(|| {
                                    // Clarabel again with the curvatures capped at 1e8
                                    // of their median (a steep cell's 1e13 beside a
                                    // floored 2e-8 is past what an interior-point
                                    // method resolves): its answer only guesses the
                                    // active set, on which the true QP is solved.
                                    let mut sorted = p_nz.clone();
                                    sorted.sort_by(f64::total_cmp);
                                    let cap = 1e8 * sorted.get(sorted.len() / 2).copied()?;
                                    let capped: Vec<f64> =
                                        p_nz.iter().map(|v| v.min(cap)).collect();
                                    let mut capped = clarabel_solver(
                                        &self.p.filled(&capped),
                                        &q,
                                        &self.a.filled(&a_nz),
                                        &b,
                                        self.n_eq,
                                    )
                                    .ok()?;
                                    capped.solve();
                                    let (x, z) = (&capped.solution.x, &capped.solution.z);
                                    both(&|qp| qp.refine(x, z))
                                })
                        })
                    } else {
                        None
                    };
                    // With elastic slacks (nonlinear rows) that the answer does not use
                    // and a diagonal Hessian (their curvature given): the same QP
                    // without the slacks, solved exactly on Clarabel's active set, as
                    // above (a steep cell 1e-10 of the budget above 0 cycled on
                    // Clarabel's 1e-11 imprecision).
                    let unused_slacks = matches!(hess, Hessian::Diagonal(_))
                        && self.nt > 0
                        && sol.x[nf..].iter().all(|t| t.abs() <= 1e-9);
                    let without_slacks = if unused_slacks {
                        let kept = self.order.len() - self.nt;
                        let rows_r: Vec<Vec<(usize, f64)>> = a_rows[..kept]
                            .iter()
                            .map(|r| r.iter().copied().filter(|&(c, _)| c < nf).collect())
                            .collect();
                        let h_r: Vec<f64> = p_rows[..nf].iter().map(|r| r[0].1).collect();
                        refine::DiagonalQp {
                            h: &h_r,
                            q: &q[..nf],
                            rows: &rows_r,
                            b: &b[..kept],
                            n_eq,
                        }
                        .refine(&sol.x[..nf], &sol.z[..kept])
                    } else {
                        None
                    };
                    match (refined, without_slacks, failed) {
                        (Some(r), _, _) => {
                            reduced = false;
                            (r.p, r.z, Some(r.active))
                        }
                        (None, Some(r), _) => {
                            reduced = false;
                            let mut x = r.p;
                            x.resize(nv, 0.0);
                            let mut z = r.z;
                            z.resize(self.order.len(), 0.0);
                            (x, z, None)
                        }
                        (None, None, Some(s)) => return Ok(QpOutcome::Failed(s)),
                        (None, None, None) => (sol.x.clone(), sol.z.clone(), None),
                    }
                }
            };
            self.warm = active;
            for (o, z) in self.order.iter().zip(&sz) {
                match *o {
                    QpRow::Linear(i) => z_lin[i] = *z,
                    QpRow::Nonlinear(j, _) => z_nl[j] = *z,
                    QpRow::Slack(_) => {}
                }
            }
            for (k, &c) in self.free.iter().enumerate() {
                p[c] = sx[k];
            }
            // A steep cell next to its bound (within 1e-6 of the budget) that moves by
            // a tenth of its distance to it or more: diving towards it (cut short, or
            // landing), or climbing back up to an optimum a little above it.
            diving = rows.iter().any(|r| match r.origin {
                Origin::Lower(c) if self.steep[c] => {
                    let above = pt.y[c] + r.rhs;
                    above > 0.0 && above <= 1e-6 && p[c].abs() >= 0.1 * above
                }
                _ => false,
            });
            t.copy_from_slice(&sx[nf..]);
        }
        // A pinned cell's bound takes up whatever the other rows leave of its gradient.
        let mut residual = pt.g.clone();
        for (r, z) in rows.iter().zip(&z_lin) {
            for &(c, a) in &r.coefficients {
                residual[c] += z * a;
            }
        }
        for (j, z) in z_nl.iter().enumerate() {
            for (c, res) in residual.iter_mut().enumerate() {
                *res += z * pt.nl_grads[j * n + c];
            }
        }
        for (i, r) in rows.iter().enumerate() {
            if let Origin::Fixed(c) = r.origin {
                z_lin[i] = -residual[c];
            }
        }
        Ok(QpOutcome::Solved(QpResult {
            p,
            t,
            z_lin,
            z_nl,
            reduced,
            diving,
        }))
    }
}
