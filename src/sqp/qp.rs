//! The QP subproblem of each iteration: its pattern built once, and the ordered list
//! of ways to answer it ([`ATTEMPTS`]), from the cheapest (the last active set, solved
//! exactly) to Clarabel's own interior-point answer.
//!
//! min ½pᵀHp + ∇fᵀp + ρΣt subject to the linear rows at y + p (equalities in a zero
//! cone, inequalities and bounds in a nonnegative cone) and the nonlinear rows
//! linearised with elastic slacks t ≥ 0. Where H is diagonal and there are no slacks,
//! an answer is solved exactly on an active set (`refine`): an interior-point answer
//! leaves spurious multipliers μ/s on rows with a tiny slack s.

use super::Tuning;
use super::hessian::{Hessian, HessianShape};
use super::low_rank;
use super::pattern::{Pattern, clarabel_settings, clarabel_solver, solver_with};
use super::point::Point;
use super::refine::{DiagonalQp, LowRankTerms, Refined};
use super::rows::{NonlinearRow, Origin, Row};
use crate::error::{Error, Result};
use clarabel::solver::{DefaultSolver, IPSolver, SolverStatus};

/// A QP's answer, in cells.
pub(super) struct QpResult {
    /// The step in y.
    pub(super) p: Vec<f64>,
    /// The elastic slacks.
    pub(super) t: Vec<f64>,
    /// Multipliers of the linear rows (in `rows` order), then of the nonlinear rows.
    pub(super) z_lin: Vec<f64>,
    pub(super) z_nl: Vec<f64>,
    /// Clarabel's answer at reduced accuracy, taken as it is.
    pub(super) reduced: bool,
    /// A steep cell next to its bound still moves by a good part of its distance to it
    /// (diving, cut at [`Tuning::to_boundary`] of the way, or climbing back up):
    /// progress that the objective cannot resolve.
    pub(super) diving: bool,
}

/// A QP answered, or the status of the Clarabel run that nothing after it could mend.
pub(super) enum QpOutcome {
    Solved(QpResult),
    Failed(SolverStatus),
}

/// Which cells are special to the QP.
pub(super) struct Cells<'c> {
    /// Held at their bound by the constraints: not QP variables.
    pub(super) pinned: &'c [bool],
    /// Infinite marginal return at their lower bound.
    pub(super) steep: &'c [bool],
    /// Whether the steep cells' lower bounds were raised.
    pub(super) raised: bool,
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
    /// The shape of the Hessian block.
    pub(super) shape: HessianShape,
    /// Cells whose marginal return is infinite at their lower bound (see
    /// [`super::steep::steep_cells`]): a step goes at most [`Tuning::to_boundary`] of
    /// the way there.
    pub(super) steep: Vec<bool>,
    /// Whether their lower bounds were raised by [`Tuning::steep_floor`].
    pub(super) raised: bool,
    /// The last QP's active set (diagonal Hessian, no slacks): the next QP is first
    /// solved exactly from it, and Clarabel runs only where that fails.
    pub(super) warm: Option<Vec<bool>>,
    pub(super) tuning: Tuning,
}

#[derive(Clone, Copy)]
pub(super) enum QpRow {
    Linear(usize),
    /// Nonlinear row j; its first slack's index.
    Nonlinear(usize, usize),
    Slack(usize),
}

impl Qp {
    /// The QP for these rows, with its patterns built once. `pinned`: cells held at
    /// their bound (not QP variables); `steep`, `raised`: see the fields.
    pub(super) fn new(
        rows: &[Row],
        nl: &[NonlinearRow],
        shape: HessianShape,
        cells: Cells<'_>,
        tuning: &Tuning,
    ) -> Self {
        let Cells {
            pinned,
            steep,
            raised,
        } = cells;
        let n = pinned.len();
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
            shape,
            steep: steep.to_vec(),
            raised,
            warm: None,
            tuning: tuning.clone(),
        };
        let a_rows = qp.a_rows(rows, nl, &vec![1.0; nl.len() * n], n);
        qp.a = Pattern::new(&a_rows, nv);
        let p_rows: Vec<Vec<(usize, f64)>> = if shape == HessianShape::Diagonal {
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
        qp
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
    /// on top of its bounds: a trust region on the bound rows' right-hand sides. The
    /// [`ATTEMPTS`] are tried in order; the first answer is taken.
    pub(super) fn solve(
        &mut self,
        rows: &[Row],
        nl: &[NonlinearRow],
        pt: &Point,
        hess: &Hessian,
        radius: f64,
    ) -> Result<QpOutcome> {
        let n = pt.y.len();
        let nf = self.free.len();
        let nv = nf + self.nt;
        let mut result = QpResult {
            p: vec![0.0; n],
            t: vec![0.0; self.nt],
            z_lin: vec![0.0; rows.len()],
            z_nl: vec![0.0; nl.len()],
            reduced: false,
            diving: false,
        };
        if nv > 0 {
            let data = self.data(rows, nl, pt, hess, radius);
            let mut clarabel = None;
            let mut answer = None;
            for attempt in &ATTEMPTS {
                answer = (attempt.run)(self, &data, &mut clarabel)?;
                if answer.is_some() {
                    break;
                }
            }
            let Some(answer) = answer else {
                let status = clarabel.map_or(SolverStatus::Unsolved, |c: ClarabelRun| c.status);
                return Ok(QpOutcome::Failed(status));
            };
            self.warm = answer.active;
            self.to_cells(rows, pt, &answer.x, &answer.z, &mut result);
            result.reduced = answer.reduced;
        }
        // A pinned cell's bound takes up whatever the other rows leave of its gradient.
        let mut residual = pt.g.clone();
        for (r, z) in rows.iter().zip(&result.z_lin) {
            for &(c, a) in &r.coefficients {
                residual[c] += z * a;
            }
        }
        for (j, z) in result.z_nl.iter().enumerate() {
            for (c, res) in residual.iter_mut().enumerate() {
                *res += z * pt.nl_grads[j * n + c];
            }
        }
        for (i, r) in rows.iter().enumerate() {
            if let Origin::Fixed(c) = r.origin {
                result.z_lin[i] = -residual[c];
            }
        }
        Ok(QpOutcome::Solved(result))
    }

    /// The QP's data at `pt`.
    fn data(
        &self,
        rows: &[Row],
        nl: &[NonlinearRow],
        pt: &Point,
        hess: &Hessian,
        radius: f64,
    ) -> QpData {
        let n = pt.y.len();
        let nf = self.free.len();
        let nv = nf + self.nt;
        let tuning = &self.tuning;
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
                                && !(self.raised
                                    && slack <= tuning.steep_reach * tuning.steep_floor) =>
                        {
                            slack.min(radius).min(tuning.to_boundary * slack)
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
        q.extend(std::iter::repeat_n(tuning.elastic_penalty, self.nt));
        let mut aux = None;
        // A low-rank Hessian's diagonal and terms over the free cells, for exact
        // answers on an active set.
        let mut low_rank = None;
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
            Hessian::Dense(m) => self.dense_rows(m, n),
            Hessian::LowRank(l) => match low_rank::auxiliary(l, &self.free, nv) {
                Some(a) => {
                    aux = Some(a);
                    let terms: Vec<&Vec<f64>> = l.plus.iter().chain(&l.minus).collect();
                    let w = self
                        .free
                        .iter()
                        .flat_map(|&c| terms.iter().map(move |t| t[c]))
                        .collect();
                    let signs = (0..terms.len())
                        .map(|j| if j < l.plus.len() { 1.0 } else { -1.0 })
                        .collect();
                    let diag = self.free.iter().map(|&c| l.diag[c]).collect();
                    low_rank = Some((diag, w, signs));
                    vec![]
                }
                None => self.dense_rows(&l.dense(), n),
            },
        };
        debug_assert_eq!(
            matches!(hess, Hessian::Diagonal(_)),
            self.shape == HessianShape::Diagonal
        );
        let p_nz = if aux.is_some() {
            vec![]
        } else {
            self.p.values(&p_rows)
        };
        let diagonal = matches!(hess, Hessian::Diagonal(_));
        let low_rank = low_rank.filter(|_| self.nt == 0);
        let exactly = (diagonal || low_rank.is_some()) && self.nt == 0;
        let (h_free, low_rank) = match low_rank {
            Some((diag, w, signs)) => (diag, Some((w, signs))),
            None if diagonal => (p_rows[..nf].iter().map(|r| r[0].1).collect(), None),
            None => (vec![], None),
        };
        // The exact curvature beside the floored one (diagonal Hessians); a low-rank
        // model has only itself.
        let exact: Vec<f64> = if exactly && diagonal {
            self.free.iter().map(|&c| pt.h[c]).collect()
        } else if exactly {
            h_free.clone()
        } else {
            vec![]
        };
        let auxiliary = aux.map(|x| {
            let skip = x.rows.len();
            let rows: Vec<Vec<(usize, f64)>> =
                x.rows.into_iter().chain(a_rows.iter().cloned()).collect();
            let mut full_b = vec![0.0; skip];
            full_b.extend_from_slice(&b);
            let mut full_q = q.clone();
            full_q.resize(x.columns, 0.0);
            AuxiliaryQp {
                p: Pattern::new(&x.p_rows, x.columns).matrix,
                a: Pattern::new(&rows, x.columns).matrix,
                q: full_q,
                b: full_b,
                n_eq: self.n_eq + skip,
                skip,
            }
        });
        QpData {
            a_rows,
            a_nz,
            b,
            q,
            p_nz,
            auxiliary,
            exact,
            h_free,
            low_rank,
            diagonal,
            exactly,
            n_eq: self.n_eq,
            // A descent direction up to the noise the line search allows: a Newton
            // step of 1e-15 whose slope rounds to +1e-16 is the exact answer all the
            // same.
            noise: tuning.qp_accuracy * pt.f.abs().max(1e-300),
        }
    }

    /// P's rows for a dense Hessian (row-major n × n) over the free cells (upper
    /// triangle).
    fn dense_rows(&self, m: &[f64], n: usize) -> Vec<Vec<(usize, f64)>> {
        let nf = self.free.len();
        (0..nf + self.nt)
            .map(|i| {
                if i < nf {
                    (i..nf)
                        .map(|j| (j, m[self.free[i] * n + self.free[j]]))
                        .collect()
                } else {
                    vec![]
                }
            })
            .collect()
    }

    /// An answer in QP columns moved into `result`, in cells and rows.
    fn to_cells(&self, rows: &[Row], pt: &Point, x: &[f64], z: &[f64], result: &mut QpResult) {
        let nf = self.free.len();
        for (o, z) in self.order.iter().zip(z) {
            match *o {
                QpRow::Linear(i) => result.z_lin[i] = *z,
                QpRow::Nonlinear(j, _) => result.z_nl[j] = *z,
                QpRow::Slack(_) => {}
            }
        }
        for (k, &c) in self.free.iter().enumerate() {
            result.p[c] = x[k];
        }
        // A steep cell next to its bound (within 1e-6 of the budget) that moves by
        // a tenth of its distance to it or more: diving towards it (cut short, or
        // landing), or climbing back up to an optimum a little above it.
        let t = &self.tuning;
        result.diving = rows.iter().any(|r| match r.origin {
            Origin::Lower(c) if self.steep[c] => {
                let above = pt.y[c] + r.rhs;
                above > 0.0
                    && above <= t.diving_near
                    && result.p[c].abs() >= t.diving_fraction * above
            }
            _ => false,
        });
        result.t.copy_from_slice(&x[nf..]);
    }
}

/// The QP at one point, in QP columns and Clarabel's row order.
struct QpData {
    a_rows: Vec<Vec<(usize, f64)>>,
    a_nz: Vec<f64>,
    b: Vec<f64>,
    q: Vec<f64>,
    p_nz: Vec<f64>,
    /// A low-rank Hessian's QP through auxiliary variables (`low_rank.rs`), where it
    /// has one: Clarabel solves this one instead.
    auxiliary: Option<AuxiliaryQp>,
    /// The exact curvature, where it is solved exactly.
    exact: Vec<f64>,
    /// The diagonal over the free cells as the QP has it (floored), for any diagonal
    /// Hessian, or a low-rank one's diagonal where it has auxiliary variables.
    h_free: Vec<f64>,
    /// A low-rank Hessian's terms over the free cells (W row-major, and their signs),
    /// where the QP has no slacks: its answers are solved exactly on an active set too.
    low_rank: Option<(Vec<f64>, Vec<f64>)>,
    /// The Hessian is diagonal.
    diagonal: bool,
    /// Diagonal or low-rank, and without slacks: answers are solved exactly on an
    /// active set.
    exactly: bool,
    n_eq: usize,
    noise: f64,
}

/// The QP with a low-rank Hessian's auxiliary variables and rows: its rows defining
/// them come first (equalities), its columns after the QP's own.
struct AuxiliaryQp {
    p: clarabel::algebra::CscMatrix<f64>,
    a: clarabel::algebra::CscMatrix<f64>,
    q: Vec<f64>,
    b: Vec<f64>,
    n_eq: usize,
    /// The auxiliary rows, before the QP's own.
    skip: usize,
}

/// An answer in QP columns.
struct Answer {
    x: Vec<f64>,
    z: Vec<f64>,
    /// The active set it is exact on (none: Clarabel's answer).
    active: Option<Vec<bool>>,
    reduced: bool,
}

impl Answer {
    fn exact(r: Refined) -> Self {
        Answer {
            x: r.p,
            z: r.z,
            active: Some(r.active),
            reduced: false,
        }
    }
}

/// Clarabel's run on the QP, kept for the attempts after it.
struct ClarabelRun {
    x: Vec<f64>,
    z: Vec<f64>,
    status: SolverStatus,
}

impl ClarabelRun {
    /// Clarabel gave up (neither solved nor almost solved).
    fn failed(&self) -> bool {
        !matches!(
            self.status,
            SolverStatus::Solved | SolverStatus::AlmostSolved
        )
    }
}

impl QpData {
    /// Row i is an equality or tight at the current point (p = 0 on its bound).
    fn tight(&self, i: usize) -> bool {
        i < self.n_eq || self.b[i] <= 1e-12 * (1.0 + self.b[i].abs())
    }

    fn diagonal_qp<'d>(&'d self, h: &'d [f64]) -> DiagonalQp<'d> {
        DiagonalQp {
            h,
            q: &self.q,
            rows: &self.a_rows,
            b: &self.b,
            n_eq: self.n_eq,
            low_rank: self
                .low_rank
                .as_ref()
                .map(|(w, signs)| LowRankTerms { w, signs }),
        }
    }

    /// An exact answer with the floored curvature and, where the floor raised it, with
    /// the exact curvature (a convex stretch of a curve that the active rows outweigh:
    /// Newton's step, not a floored one that converges linearly); the exact one is kept
    /// where it is a descent direction with a model value no worse than the floored
    /// step's.
    fn both(&self, solve: impl Fn(&DiagonalQp) -> Option<Refined>) -> Option<Refined> {
        let with_floor = solve(&self.diagonal_qp(&self.h_free));
        let with_exact = (self.exact != self.h_free)
            .then(|| solve(&self.diagonal_qp(&self.exact)))
            .flatten();
        self.pick(with_exact, with_floor)
    }

    fn slope(&self, r: &Refined) -> f64 {
        r.p.iter().zip(&self.q).map(|(x, q)| x * q).sum()
    }

    /// The model value (exact curvature) plus the rows' violation weighted by the
    /// largest multiplier (the QP's exact penalty): both answers hold their rows only to
    /// 1e-12, and a model value bought by violating a row by that much must not win
    /// where a cell lives at that scale (a steep cell's optimum 3e-12 of the budget
    /// above 0).
    fn model(&self, r: &Refined, weight: f64) -> f64 {
        let violation: f64 = self
            .a_rows
            .iter()
            .zip(&self.b)
            .enumerate()
            .map(|(i, (row, b))| {
                let v = row.iter().map(|&(c, a)| a * r.p[c]).sum::<f64>() - b;
                if i < self.n_eq { v.abs() } else { v.max(0.0) }
            })
            .sum();
        r.p.iter()
            .zip(&self.q)
            .zip(&self.exact)
            .map(|((x, q), h)| q * x + 0.5 * h * x * x)
            .sum::<f64>()
            + weight * violation
    }

    fn pick(&self, with_exact: Option<Refined>, with_floor: Option<Refined>) -> Option<Refined> {
        match (with_exact, with_floor) {
            (Some(e), Some(f)) => {
                let weight = e.z.iter().chain(&f.z).fold(0.0f64, |m, z| m.max(z.abs()));
                if self.slope(&e) < self.noise && self.model(&e, weight) <= self.model(&f, weight) {
                    Some(e)
                } else {
                    Some(f)
                }
            }
            (e, f) => f.or(e.filter(|e| self.slope(e) < self.noise)),
        }
    }
}

/// One way to answer the QP.
struct Attempt {
    /// What it is, for readers and traces.
    #[allow(dead_code)]
    name: &'static str,
    /// `None`: it does not apply, or found no answer; the next is tried.
    run: fn(&mut Qp, &QpData, &mut Option<ClarabelRun>) -> Result<Option<Answer>>,
}

/// The ways to answer the QP, in order; the first answer is taken. Each after the
/// second is there for a case that needed it.
const ATTEMPTS: [Attempt; 8] = [
    // Diagonal Hessian, no slacks: the last QP's active set, solved exactly and
    // repaired; after the first iteration it is usually right, and Clarabel need not
    // run at all.
    Attempt {
        name: "warm active set",
        run: warm_active_set,
    },
    // A diagonal plus low-rank Hessian (a quasi-Newton model, a risk-aware utility's
    // coupling), no slacks: the active set of the QP with the diagonal part alone
    // (repaired from the last QP's set, or from the rows tight at the point, at O(n)
    // a round), solved exactly with the low-rank terms and repaired. It spares
    // Clarabel's auxiliary form (O(n r²) a factorization, every interior-point
    // iteration) where the last set is too far from this QP's: the first QPs.
    Attempt {
        name: "the diagonal part's active set",
        run: diagonal_part_active_set,
    },
    // Clarabel (its pattern built once, values updated), its answer solved again
    // exactly on the active set it points to, also where Clarabel gave up (insufficient
    // progress, say: its last iterate may still point to the active set).
    Attempt {
        name: "clarabel, exact on its active set",
        run: clarabel_exact,
    },
    // Clarabel gave up and its iterate points nowhere: the rows tight at the current
    // point are a guess the active-set repair can start from.
    Attempt {
        name: "rows tight at the point",
        run: tight_rows,
    },
    // Then the equalities alone.
    Attempt {
        name: "equalities",
        run: equalities,
    },
    // Clarabel again with the curvatures capped at `curvature_cap` of their median (a
    // steep cell's 1e13 beside a floored 2e-8 is past what an interior-point method
    // resolves): its answer only guesses the active set, on which the true QP is solved.
    Attempt {
        name: "capped curvature",
        run: capped_curvature,
    },
    // With elastic slacks that the answer does not use and a diagonal Hessian (the
    // constraints' curvature given): the same QP without the slacks, solved exactly on
    // Clarabel's active set (a steep cell 1e-10 of the budget above 0 cycled on
    // Clarabel's 1e-11 imprecision).
    Attempt {
        name: "without unused slacks",
        run: without_slacks,
    },
    // Clarabel's own answer, where it solved (or almost solved) the QP.
    Attempt {
        name: "clarabel as it is",
        run: clarabel_as_is,
    },
];

fn warm_active_set(qp: &mut Qp, d: &QpData, _: &mut Option<ClarabelRun>) -> Result<Option<Answer>> {
    Ok(match (&qp.warm, d.exactly) {
        (Some(active), true) => d.both(|q| q.solve_from(active.clone())).map(Answer::exact),
        _ => None,
    })
}

/// The attempt "the diagonal part's active set" (see [`ATTEMPTS`]).
fn diagonal_part_active_set(
    qp: &mut Qp,
    d: &QpData,
    _: &mut Option<ClarabelRun>,
) -> Result<Option<Answer>> {
    if !(d.exactly && d.low_rank.is_some()) {
        return Ok(None);
    }
    let guess = qp
        .warm
        .clone()
        .unwrap_or_else(|| (0..d.b.len()).map(|i| d.tight(i)).collect());
    let diagonal = DiagonalQp {
        low_rank: None,
        ..d.diagonal_qp(&d.h_free)
    };
    // The diagonal part alone may be far worse conditioned than the whole (its
    // rows then hold to ~1e-10, not 1e-12): a guess, held to 1e-9, and given more
    // rounds (O(n) each).
    let Some(part) = diagonal.solve_from_within(guess, 200, 1e-9) else {
        return Ok(None);
    };
    Ok(d.both(|q| q.solve_from(part.active.clone()))
        .map(Answer::exact))
}

/// Clarabel's refusal to set up the step's QP, as the solver's error.
fn set_up_failed(e: clarabel::solver::SolverError) -> Error {
    Error::Solver {
        stage: "the step's QP",
        message: format!("Clarabel could not set up the QP: {e}"),
    }
}

fn clarabel_exact(
    qp: &mut Qp,
    d: &QpData,
    run: &mut Option<ClarabelRun>,
) -> Result<Option<Answer>> {
    let c = if let Some(x) = &d.auxiliary {
        // Its own pattern (the rank changes from QP to QP): a solver of its own,
        // factoring with QDLDL whatever the factor's density. The dense part is a
        // clique of ~2r auxiliary rows and columns: QDLDL's O(n r²) beat faer's
        // supernodal LDL (which `auto` picks from r ≈ 48 on) 4–6 × at n = 1,000
        // (benches/NOTES.md, "Quasi-Newton QPs at n ≥ 1,000").
        qp.solver = None;
        let mut settings = clarabel_settings(&qp.tuning);
        settings.direct_solve_method = "qdldl".into();
        let mut solver =
            solver_with(&x.p, &x.q, &x.a, &x.b, x.n_eq, settings).map_err(set_up_failed)?;
        solver.solve();
        let sol = &solver.solution;
        let nv = qp.free.len() + qp.nt;
        run.insert(ClarabelRun {
            x: sol.x[..nv].to_vec(),
            z: sol.z[x.skip..].to_vec(),
            status: sol.status,
        })
    } else {
        clarabel_pattern_kept(qp, d)?;
        let solver: &mut DefaultSolver<f64> = qp.solver.as_mut().expect("set above");
        solver.solve();
        let sol = &solver.solution;
        run.insert(ClarabelRun {
            x: sol.x.clone(),
            z: sol.z.clone(),
            status: sol.status,
        })
    };
    Ok(if d.exactly {
        d.both(|q| q.refine(&c.x, &c.z)).map(Answer::exact)
    } else {
        None
    })
}

/// The QP's Clarabel solver with its pattern built once: this QP's values put into
/// the last one's, or a new solver where that is refused.
fn clarabel_pattern_kept(qp: &mut Qp, d: &QpData) -> Result<()> {
    let updated = match qp.solver.as_mut() {
        Some(s) => {
            s.update_P(&d.p_nz).is_ok()
                && s.update_A(&d.a_nz).is_ok()
                && s.update_q(&d.q).is_ok()
                && s.update_b(&d.b).is_ok()
        }
        None => false,
    };
    if !updated {
        let solver = clarabel_solver(
            &qp.p.filled(&d.p_nz),
            &d.q,
            &qp.a.filled(&d.a_nz),
            &d.b,
            qp.n_eq,
            &qp.tuning,
        )
        .map_err(set_up_failed)?;
        qp.solver = Some(solver);
    }
    Ok(())
}

/// Where Clarabel failed and the QP is solved exactly: an exact answer from `active`.
fn after_failure(
    d: &QpData,
    run: &Option<ClarabelRun>,
    active: impl Fn(usize) -> bool,
) -> Option<Answer> {
    if !(d.exactly && run.as_ref().is_some_and(ClarabelRun::failed)) {
        return None;
    }
    let guess: Vec<bool> = (0..d.b.len()).map(active).collect();
    d.both(|q| q.solve_from(guess.clone())).map(Answer::exact)
}

fn tight_rows(_: &mut Qp, d: &QpData, run: &mut Option<ClarabelRun>) -> Result<Option<Answer>> {
    Ok(after_failure(d, run, |i| d.tight(i)))
}

fn equalities(_: &mut Qp, d: &QpData, run: &mut Option<ClarabelRun>) -> Result<Option<Answer>> {
    Ok(after_failure(d, run, |i| i < d.n_eq))
}

fn capped_curvature(
    qp: &mut Qp,
    d: &QpData,
    run: &mut Option<ClarabelRun>,
) -> Result<Option<Answer>> {
    if !(d.exactly && run.as_ref().is_some_and(ClarabelRun::failed)) {
        return Ok(None);
    }
    let mut sorted = d.p_nz.clone();
    sorted.sort_by(f64::total_cmp);
    let Some(median) = sorted.get(sorted.len() / 2).copied() else {
        return Ok(None);
    };
    let cap = qp.tuning.curvature_cap * median;
    let capped: Vec<f64> = d.p_nz.iter().map(|v| v.min(cap)).collect();
    let Ok(mut capped) = clarabel_solver(
        &qp.p.filled(&capped),
        &d.q,
        &qp.a.filled(&d.a_nz),
        &d.b,
        qp.n_eq,
        &qp.tuning,
    ) else {
        return Ok(None);
    };
    capped.solve();
    let (x, z) = (&capped.solution.x, &capped.solution.z);
    Ok(d.both(|q| q.refine(x, z)).map(Answer::exact))
}

fn without_slacks(
    qp: &mut Qp,
    d: &QpData,
    run: &mut Option<ClarabelRun>,
) -> Result<Option<Answer>> {
    let nf = qp.free.len();
    let Some(c) = run.as_ref() else {
        return Ok(None);
    };
    let unused =
        d.diagonal && qp.nt > 0 && c.x[nf..].iter().all(|t| t.abs() <= qp.tuning.slack_used);
    if !unused {
        return Ok(None);
    }
    let kept = qp.order.len() - qp.nt;
    let rows: Vec<Vec<(usize, f64)>> = d.a_rows[..kept]
        .iter()
        .map(|r| r.iter().copied().filter(|&(c, _)| c < nf).collect())
        .collect();
    let refined = DiagonalQp {
        h: &d.h_free,
        q: &d.q[..nf],
        rows: &rows,
        b: &d.b[..kept],
        n_eq: d.n_eq,
        low_rank: None,
    }
    .refine(&c.x[..nf], &c.z[..kept]);
    Ok(refined.map(|r| {
        let mut x = r.p;
        x.resize(nf + qp.nt, 0.0);
        let mut z = r.z;
        z.resize(qp.order.len(), 0.0);
        Answer {
            x,
            z,
            active: None,
            reduced: false,
        }
    }))
}

fn clarabel_as_is(_: &mut Qp, _: &QpData, run: &mut Option<ClarabelRun>) -> Result<Option<Answer>> {
    Ok(run.as_ref().filter(|c| !c.failed()).map(|c| Answer {
        x: c.x.clone(),
        z: c.z.clone(),
        active: None,
        reduced: c.status == SolverStatus::AlmostSolved,
    }))
}
