//! The exact solution of a QP with a diagonal Hessian on the active set that an
//! interior-point solution points to (in the manner of OSQP's solution polishing).
//!
//! An interior-point method stops with every inequality row's slack sᵢ and multiplier
//! zᵢ at about zᵢ sᵢ = μ > 0. Where a variable sits very close to a bound that is not
//! active (a steep cell 5e-8 of the budget above 0), μ/sᵢ is a sizeable spurious
//! multiplier, the step is biased and the KKT residual measured with those multipliers
//! never falls below tolerance. Here the rows with zᵢ > sᵢ are taken as active and the
//! equality-constrained QP on them is solved exactly:
//!
//! - an active row with one coefficient a (a bound, or a constraint on one cell) fixes
//!   its variable: p_c = bᵢ / a;
//! - the other active rows G (the equalities and the active multi-cell rows) act on the
//!   free variables F: with H diagonal, p_F = −H_F⁻¹(q_F + G_Fᵀ z_G), where
//!   (G_F H_F⁻¹ G_Fᵀ) z_G = −(b_G − G_X p_X + G_F H_F⁻¹ q_F) (X: the fixed variables),
//!   a system of the size of G (the budget and a few constraints; a multi-cell row
//!   whose cells are all fixed acts on nothing and takes no multiplier), solved through
//!   the eigenvectors of its matrix S: a row that the others imply (a zero eigenvalue)
//!   takes no multiplier (S's pseudo-inverse), and two rounds of iterative refinement
//!   hold the rows to rounding;
//! - a fixed variable's row takes the rest of its stationarity:
//!   zᵢ = −(h_c p_c + q_c + Σ_G z_g G_gc) / a.
//!
//! The answer is accepted when every inactive row holds and every active inequality's
//! multiplier is ≥ 0; otherwise the rows that break this leave or join the active set
//! and it is tried again (a few rounds), and failing that the interior-point solution
//! stands.

use nalgebra::{DMatrix, DVector};

/// A QP min ½ pᵀ H p + qᵀp s.t. rows 0..n_eq: a·p = b, the rest: a·p ≤ b, with
/// H = diag(h), or diag(h) + W S Wᵀ ([`LowRankTerms`]).
pub(super) struct DiagonalQp<'a> {
    pub h: &'a [f64],
    pub q: &'a [f64],
    /// Sparse rows (column, coefficient).
    pub rows: &'a [Vec<(usize, f64)>],
    pub b: &'a [f64],
    pub n_eq: usize,
    /// H's low-rank part, where it has one.
    pub low_rank: Option<LowRankTerms<'a>>,
}

/// W S Wᵀ: W row-major (a row of `signs.len()` coefficients a column of the QP), S =
/// diag(signs), each ±1 (a quasi-Newton model's rank-one terms, `LowRank`). With it,
/// H restricted to the free variables F is inverted by Woodbury's identity,
/// H_FF⁻¹ = D⁻¹ − D⁻¹ W_F (S + W_Fᵀ D⁻¹ W_F)⁻¹ W_Fᵀ D⁻¹, in O(|F| r²); H is to be
/// positive definite (the model is), so that H_FF is.
pub(super) struct LowRankTerms<'a> {
    pub w: &'a [f64],
    pub signs: &'a [f64],
}

impl LowRankTerms<'_> {
    fn rank(&self) -> usize {
        self.signs.len()
    }

    fn row(&self, c: usize) -> &[f64] {
        let r = self.rank();
        &self.w[c * r..(c + 1) * r]
    }

    /// S Wᵀ p over the columns `which` admits.
    fn project(&self, p: &[f64], which: impl Fn(usize) -> bool) -> Vec<f64> {
        let mut t = vec![0.0; self.rank()];
        for (c, v) in p.iter().enumerate().filter(|&(c, _)| which(c)) {
            for (t, w) in t.iter_mut().zip(self.row(c)) {
                *t += w * v;
            }
        }
        t.iter_mut().zip(self.signs).for_each(|(t, s)| *t *= s);
        t
    }

    /// (W t)_c.
    fn at(&self, c: usize, t: &[f64]) -> f64 {
        self.row(c).iter().zip(t).map(|(w, t)| w * t).sum()
    }
}

/// H_FF⁻¹ by Woodbury's identity for one free set (the diagonal inverse alone
/// without a low-rank part).
struct FreeInverse {
    hinv: Vec<f64>,
    /// LU of S + W_Fᵀ D⁻¹ W_F, with a low-rank part.
    capacitance: Option<nalgebra::LU<f64, nalgebra::Dyn, nalgebra::Dyn>>,
}

/// The variables that single-coefficient active rows fix, and the other active rows.
struct Fixed {
    /// The row fixing each variable.
    by: Vec<Option<usize>>,
    /// A second row fixing it at the same value.
    also: Vec<Option<usize>>,
    /// The fixed values (0 elsewhere).
    p: Vec<f64>,
    /// The active rows over several variables.
    general: Vec<usize>,
}

/// Rounds of active-set repair before giving up.
const ROUNDS: usize = 12;

/// An exact QP answer: the step, the multipliers, and the active set they belong to.
pub(super) struct Refined {
    pub p: Vec<f64>,
    pub z: Vec<f64>,
    pub active: Vec<bool>,
}

impl DiagonalQp<'_> {
    /// The exact solution on the active set that `(x, z)` (an interior-point solution)
    /// points to, or `None` when no consistent active set was found.
    pub fn refine(&self, x: &[f64], z: &[f64]) -> Option<Refined> {
        let active: Vec<bool> = (0..self.rows.len())
            .map(|i| i < self.n_eq || z[i] > self.b[i] - self.dot(i, x))
            .collect();
        self.solve_from(active)
    }

    /// The exact solution from a guess of the active set (the last QP's, say),
    /// repaired: rows whose multiplier has the wrong sign leave it, violated rows join
    /// it. Verified, so that a `Some` is the QP's solution (its KKT conditions hold to
    /// 1e-12), whatever the guess.
    pub fn solve_from(&self, active: Vec<bool>) -> Option<Refined> {
        self.solve_from_within(active, ROUNDS, 1e-12)
    }

    /// [`Self::solve_from`] in at most `rounds` rounds of repair, the rows held to
    /// `tol` (absolute, plus relative to their bounds): a guess of the active set
    /// (`tol` above rounding) where the answer itself is not used.
    pub fn solve_from_within(
        &self,
        mut active: Vec<bool>,
        rounds: usize,
        tol: f64,
    ) -> Option<Refined> {
        let m = self.rows.len();
        let violation = |i: usize, p: &[f64]| self.dot(i, p) - self.b[i];
        // Where adding every violated row at once over-constrains (every variable of
        // an equality fixed), the set with only the worst of them added instead.
        let mut fallback: Option<Vec<bool>> = None;
        for _ in 0..rounds {
            // The active rows must hold: where they contradict each other (more rows
            // taken as active than the variables can meet) the least-squares
            // multipliers give an answer that does not.
            let solved = self.solve_on(&active).filter(|(p, _)| {
                (0..m)
                    .filter(|&i| active[i])
                    .all(|i| violation(i, p).abs() <= tol * (1.0 + self.b[i].abs()))
            });
            let Some((p, zz)) = solved else {
                active = fallback.take()?;
                continue;
            };
            let scale_z = zz.iter().fold(1.0f64, |s, v| s.max(v.abs()));
            // Rows whose multiplier has the wrong sign leave; violated rows join.
            let mut next = active.clone();
            for i in self.n_eq..m {
                if active[i] && zz[i] < -1e-12 * scale_z {
                    next[i] = false;
                }
            }
            let violated: Vec<usize> = (self.n_eq..m)
                .filter(|&i| !active[i] && violation(i, &p) > tol * (1.0 + self.b[i].abs()))
                .collect();
            if next == active && violated.is_empty() {
                return Some(Refined { p, z: zz, active });
            }
            fallback = violated
                .iter()
                .copied()
                .max_by(|&i, &j| violation(i, &p).total_cmp(&violation(j, &p)))
                .filter(|_| violated.len() > 1)
                .map(|worst| {
                    let mut f = next.clone();
                    f[worst] = true;
                    f
                });
            for &i in &violated {
                next[i] = true;
            }
            active = next;
        }
        None
    }

    /// Row i times p.
    fn dot(&self, i: usize, p: &[f64]) -> f64 {
        self.rows[i].iter().map(|&(c, a)| a * p[c]).sum()
    }

    /// Single-coefficient active rows fix their variable. A second one on the same
    /// variable (its bound and `tv <= 0`, both active at 0) must fix the same value
    /// and shares the multiplier; different values admit no answer (`None`).
    fn fixed_rows(&self, active: &[bool]) -> Option<Fixed> {
        let n = self.h.len();
        let mut f = Fixed {
            by: vec![None; n],
            also: vec![None; n],
            p: vec![0.0; n],
            general: vec![],
        };
        for i in (0..self.rows.len()).filter(|&i| active[i]) {
            match self.rows[i].as_slice() {
                &[(c, a)] if a != 0.0 => {
                    let v = self.b[i] / a;
                    match f.by[c] {
                        None => {
                            f.by[c] = Some(i);
                            f.p[c] = v;
                        }
                        Some(_)
                            if f.also[c].is_none()
                                && (v - f.p[c]).abs() <= 1e-12 * (1.0 + v.abs()) =>
                        {
                            f.also[c] = Some(i);
                        }
                        Some(_) => return None,
                    }
                }
                _ => f.general.push(i),
            }
        }
        Some(f)
    }

    /// H p.
    fn times(&self, p: &[f64]) -> Vec<f64> {
        let mut out: Vec<f64> = self.h.iter().zip(p).map(|(h, p)| h * p).collect();
        if let Some(l) = &self.low_rank {
            let t = l.project(p, |_| true);
            for (c, o) in out.iter_mut().enumerate() {
                *o += l.at(c, &t);
            }
        }
        out
    }

    /// H_FF⁻¹ for the free variables (those `fixed_by` leaves free).
    fn free_inverse(&self, fixed_by: &[Option<usize>]) -> Option<FreeInverse> {
        let hinv: Vec<f64> = self
            .h
            .iter()
            .map(|&v| if v != 0.0 { 1.0 / v } else { f64::NAN })
            .collect();
        let capacitance = match &self.low_rank {
            Some(l) if l.rank() > 0 => {
                let r = l.rank();
                // W_Fᵀ D⁻¹ W_F = AᵀA with A's rows √(1/h_c) W_c: one matrix product
                // (blocked, O(|F| r²)), not r² scalar loops a variable.
                let mut a = Vec::with_capacity(self.h.len() * r);
                let mut rows = 0;
                for c in (0..self.h.len()).filter(|&c| fixed_by[c].is_none()) {
                    if self.h[c].is_nan() || self.h[c] <= 0.0 {
                        return None;
                    }
                    let root = hinv[c].sqrt();
                    a.extend(l.row(c).iter().map(|w| w * root));
                    rows += 1;
                }
                let a = DMatrix::<f64>::from_row_slice(rows, r, &a);
                let k = DMatrix::<f64>::from_diagonal(&DVector::from_column_slice(l.signs))
                    + a.tr_mul(&a);
                Some(k.lu())
            }
            _ => None,
        };
        Some(FreeInverse { hinv, capacitance })
    }

    /// y ← H_FF⁻¹ y on the free variables (others untouched).
    fn solve_free(&self, inv: &FreeInverse, fixed_by: &[Option<usize>], y: &mut [f64]) -> bool {
        let free = |c: usize| fixed_by[c].is_none();
        let (Some(l), Some(lu)) = (&self.low_rank, &inv.capacitance) else {
            for c in (0..y.len()).filter(|&c| free(c)) {
                y[c] *= inv.hinv[c];
            }
            return true;
        };
        // D⁻¹ y − D⁻¹ W (S + Wᵀ D⁻¹ W)⁻¹ Wᵀ D⁻¹ y on the free variables.
        let woodbury = |y: &mut [f64]| -> bool {
            for c in (0..y.len()).filter(|&c| free(c)) {
                y[c] *= inv.hinv[c];
            }
            let mut t = DVector::<f64>::zeros(l.rank());
            for c in (0..y.len()).filter(|&c| free(c)) {
                for (t, w) in t.iter_mut().zip(l.row(c)) {
                    *t += w * y[c];
                }
            }
            let Some(s) = lu.solve(&t) else {
                return false;
            };
            for c in (0..y.len()).filter(|&c| free(c)) {
                y[c] -= inv.hinv[c] * l.at(c, s.as_slice());
            }
            true
        };
        // Two rounds of iterative refinement on H_FF x − y: the capacitance matrix
        // loses digits where the terms nearly cancel.
        let rhs = y.to_vec();
        if !woodbury(y) {
            return false;
        }
        for _ in 0..2 {
            let t = l.project(y, free);
            let mut e: Vec<f64> = (0..y.len())
                .map(|c| {
                    if free(c) {
                        self.h[c] * y[c] + l.at(c, &t) - rhs[c]
                    } else {
                        0.0
                    }
                })
                .collect();
            if !woodbury(&mut e) {
                return false;
            }
            y.iter_mut().zip(&e).for_each(|(y, e)| *y -= e);
        }
        true
    }

    /// The equality-constrained QP on the active rows.
    fn solve_on(&self, active: &[bool]) -> Option<(Vec<f64>, Vec<f64>)> {
        let n = self.h.len();
        let Fixed {
            by: fixed_by,
            also,
            mut p,
            general,
        } = self.fixed_rows(active)?;
        // A multi-cell row whose cells are all fixed has nothing to act on: it holds
        // or not (the caller checks) and takes no part in S below (where it would be
        // a zero eigenvalue, which with negative curvature reads as a singular
        // reduced Hessian); its multiplier is shared out with its cells' rows at the
        // end.
        let (general, idle): (Vec<usize>, Vec<usize>) = general
            .into_iter()
            .partition(|&i| self.rows[i].iter().any(|&(c, _)| fixed_by[c].is_none()));
        let inverse = self.free_inverse(&fixed_by)?;
        // The fixed variables' pull on the free ones, H_FX p_X (none where H is
        // diagonal).
        let pull: Vec<f64> = match &self.low_rank {
            None => vec![0.0; n],
            Some(l) => {
                let t = l.project(&p, |c| fixed_by[c].is_some());
                (0..n).map(|c| l.at(c, &t)).collect()
            }
        };
        // Free variables with negative curvature: allowed where the active rows leave
        // no direction of negative curvature (checked below through S's inertia).
        let negative = (0..n)
            .filter(|&c| fixed_by[c].is_none() && self.h[c] < 0.0)
            .count();
        let k = general.len();
        if negative > k {
            return None;
        }
        // The G rows over the free variables, and their right-hand sides less the
        // fixed variables' part.
        let mut rows_free: Vec<Vec<(usize, f64)>> = Vec::with_capacity(k);
        let mut bprime = DVector::<f64>::zeros(k);
        for (r, &i) in general.iter().enumerate() {
            let mut free = vec![];
            let mut v = self.b[i];
            for &(c, a) in &self.rows[i] {
                if fixed_by[c].is_some() {
                    v -= a * p[c];
                } else {
                    free.push((c, a));
                }
            }
            bprime[r] = v;
            rows_free.push(free);
        }
        // p_F = −H_FF⁻¹(q_F + H_FX p_X + G_Fᵀ z_G) for a given z_G.
        let free_step = |zg: &DVector<f64>, p: &mut [f64]| -> Option<()> {
            let mut y = vec![0.0; n];
            for (r, row) in rows_free.iter().enumerate() {
                for &(c, a) in row {
                    y[c] += a * zg[r];
                }
            }
            for c in (0..n).filter(|&c| fixed_by[c].is_none()) {
                y[c] += self.q[c] + pull[c];
            }
            self.solve_free(&inverse, &fixed_by, &mut y).then_some(())?;
            for c in (0..n).filter(|&c| fixed_by[c].is_none()) {
                p[c] = -y[c];
            }
            Some(())
        };
        let mut zg = DVector::<f64>::zeros(k);
        free_step(&zg, &mut p)?;
        if k > 0 {
            let mut s = DMatrix::<f64>::zeros(k, k);
            let mut dense = vec![0.0; n];
            for r in 0..k {
                for &(c, a) in &rows_free[r] {
                    dense[c] = a;
                }
                if !self.solve_free(&inverse, &fixed_by, &mut dense) {
                    return None;
                }
                for (t, row) in rows_free.iter().enumerate().skip(r) {
                    let v: f64 = row.iter().map(|&(c, a)| a * dense[c]).sum();
                    s[(r, t)] = v;
                    s[(t, r)] = v;
                }
                dense.fill(0.0);
            }
            if !s.iter().all(|v| v.is_finite()) {
                return None;
            }
            // S⁺ by eigenvectors. Without negative curvature S is positive
            // semidefinite; a (near) zero eigenvalue is an active row that the others
            // imply (a row over fixed variables only, `a − b ≥ 0` beside `b − a ≥ 0`):
            // the pseudo-inverse gives the least multipliers, and whether the rows hold
            // is checked after. With negative curvature the reduced Hessian (H on the
            // null space of G_F) is positive definite iff S has exactly as many negative
            // eigenvalues as H_F (Haynsworth's inertia additivity on the KKT matrix),
            // none near zero.
            let e = s.symmetric_eigen();
            let largest = e.eigenvalues.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let tiny = 1e-12 * largest;
            let below = e.eigenvalues.iter().filter(|v| **v < -tiny).count();
            let zero = e.eigenvalues.iter().filter(|v| v.abs() <= tiny).count();
            if below != negative || (negative > 0 && zero > 0) {
                return None;
            }
            let inverse = e
                .eigenvalues
                .map(|v| if v.abs() <= tiny { 0.0 } else { 1.0 / v });
            let solve_s = |x: &DVector<f64>| {
                &e.eigenvectors * (e.eigenvectors.transpose() * x).component_mul(&inverse)
            };
            // S z_G = −(b′ + G_F H_F⁻¹ q_F), i.e. G_F p_F = b′ at z_G; then two rounds of
            // iterative refinement on the residual b′ − G_F p_F (its error grows with
            // the spread of the curvatures, 1e8 next to a steep cell's bound).
            let residual = |p: &[f64]| -> DVector<f64> {
                DVector::from_iterator(
                    k,
                    rows_free.iter().enumerate().map(|(r, row)| {
                        bprime[r] - row.iter().map(|&(c, a)| a * p[c]).sum::<f64>()
                    }),
                )
            };
            for _ in 0..3 {
                let rho = residual(&p);
                zg -= solve_s(&rho);
                free_step(&zg, &mut p)?;
            }
        }
        let z = self.multipliers(&general, &idle, &fixed_by, &also, &p, &zg);
        if !p.iter().chain(&z).all(|v| v.is_finite()) {
            return None;
        }
        // With a low-rank part, stationarity H p + q + Aᵀz = 0 checked (the
        // capacitance matrix may be ill-conditioned where the terms nearly cancel).
        if self.low_rank.is_some() {
            let mut res = self.times(&p);
            let scale = res
                .iter()
                .chain(self.q)
                .fold(1e-300f64, |m, v| m.max(v.abs()));
            res.iter_mut().zip(self.q).for_each(|(r, q)| *r += q);
            for (row, z) in self.rows.iter().zip(&z) {
                for &(c, a) in row {
                    res[c] += a * z;
                }
            }
            if res.iter().any(|v| v.is_nan() || v.abs() > 1e-9 * scale) {
                return None;
            }
        }
        Some((p, z))
    }

    /// The multipliers of every row from the general rows' z_G: a fixed variable's row
    /// takes the rest of its stationarity, an idle row its share.
    fn multipliers(
        &self,
        general: &[usize],
        idle: &[usize],
        fixed_by: &[Option<usize>],
        also: &[Option<usize>],
        p: &[f64],
        zg: &DVector<f64>,
    ) -> Vec<f64> {
        let (n, m) = (self.h.len(), self.rows.len());
        let hp = self.times(p);
        // A fixed variable's row takes the rest of its stationarity.
        let mut gz = vec![0.0; n];
        for (r, &i) in general.iter().enumerate() {
            for &(c, a) in &self.rows[i] {
                gz[c] += a * zg[r];
            }
        }
        let mut z = vec![0.0; m];
        for c in 0..n {
            if let Some(i) = fixed_by[c] {
                // Σ z_i a_i over the rows fixing c; one row takes it all: the first
                // where that has an inequality's sign, else the second.
                let rest = -(hp[c] + self.q[c] + gz[c]);
                let takes = |i: usize| i < self.n_eq || rest / self.rows[i][0].1 >= 0.0;
                let row = match also[c] {
                    Some(j) if !takes(i) => j,
                    _ => i,
                };
                z[row] = rest / self.rows[row][0].1;
            }
        }
        for (r, &i) in general.iter().enumerate() {
            z[i] = zg[r];
        }
        // An idle inequality row takes the least z ≥ 0 that leaves its cells' rows
        // with an inequality's sign, where one exists (`ch1 <= 0` over two cells held
        // at 0 holds back what their lower bounds cannot: a negative multiplier
        // there would drop them from the active set).
        for &i in idle.iter().filter(|&&i| i >= self.n_eq) {
            let (mut lo, mut hi) = (0.0f64, f64::INFINITY);
            for &(c, a) in &self.rows[i] {
                let Some(b) = fixed_by[c] else { continue };
                if b < self.n_eq {
                    continue;
                }
                // z_b' = z_b − z a / a_b ≥ 0.
                let (u, v) = (z[b], a / self.rows[b][0].1);
                if v > 0.0 {
                    hi = hi.min(u / v);
                } else if v < 0.0 {
                    lo = lo.max(u / v);
                }
            }
            if lo > 0.0 && lo <= hi {
                z[i] = lo;
                for &(c, a) in &self.rows[i] {
                    if let Some(b) = fixed_by[c] {
                        z[b] -= lo * a / self.rows[b][0].1;
                    }
                }
            }
        }
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// min ½ Σ h p² + q p over three cells, Σ p = 0, p ≥ −s (as −p ≤ s), and its
    /// answer by hand: cell 2 wants p = −(3 + λ)/4 < −0.25, so it sits on its bound
    /// with z > 0; cells 0 and 1 share the rest: p0 = −(−1 + λ)/2, p1 = −(0.5 + λ),
    /// p0 + p1 = 0.25.
    fn three_cells(start: &[f64], z0: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let h = [2.0, 1.0, 4.0];
        let q = [-1.0, 0.5, 3.0];
        // Rows: budget (equality), then lower bounds −p_c ≤ s_c.
        let rows = vec![
            vec![(0, 1.0), (1, 1.0), (2, 1.0)],
            vec![(0, -1.0)],
            vec![(1, -1.0)],
            vec![(2, -1.0)],
        ];
        let b = [0.0, 1.0, 1.0, 0.25];
        let qp = DiagonalQp {
            h: &h,
            q: &q,
            rows: &rows,
            b: &b,
            n_eq: 1,
            low_rank: None,
        };
        let r = qp.refine(start, z0).expect("a consistent active set");
        let (p, z) = (r.p, r.z);
        let lambda = -0.25 / 1.5; // p0 + p1 = (1 − λ)/2 − 0.5 − λ = −1.5 λ
        let want = [-(-1.0 + lambda) / 2.0, -(0.5 + lambda), -0.25];
        for (a, b) in p.iter().zip(&want) {
            assert!((a - b).abs() < 1e-14, "{p:?} vs {want:?}");
        }
        assert!((z[0] - lambda).abs() < 1e-14);
        assert_eq!((z[1], z[2]), (0.0, 0.0));
        // Stationarity of cell 2: h p + q + λ − z = 0.
        assert!((4.0 * -0.25 + 3.0 + lambda - z[3]).abs() < 1e-14 && z[3] > 0.0);
        (p, z)
    }

    #[test]
    fn budget_and_bounds_solved_exactly_from_a_rough_start() {
        three_cells(&[0.1, 0.1, -0.2], &[0.1, 1e-3, 1e-3, 0.5]);
    }

    /// A wrong guess (cell 0 taken as active, cell 2 not) is repaired.
    #[test]
    fn a_wrong_active_set_is_repaired() {
        three_cells(&[-1.0, 0.0, 0.0], &[0.0, 5.0, 0.0, 0.0]);
    }

    /// Two cells tied by Σ p = 1, one with negative curvature that the other
    /// outweighs: min ½(3 p0² − p1²) subject to p0 + p1 = 1 has the reduced curvature
    /// 3 − 1 = 2 > 0 and the answer p0 = −1/2, p1 = 3/2 (λ = 3/2). Alone, or
    /// outweighed the other way, there is no minimum and no answer.
    #[test]
    fn negative_curvature_only_where_the_active_rows_outweigh_it() {
        let rows = vec![vec![(0, 1.0), (1, 1.0)]];
        let solve = |h: &[f64]| {
            DiagonalQp {
                h,
                q: &[0.0, 0.0],
                rows: &rows,
                b: &[1.0],
                n_eq: 1,
                low_rank: None,
            }
            .refine(&[0.5, 0.5], &[0.0])
        };
        let r = solve(&[3.0, -1.0]).expect("a minimum");
        let (p, z) = (r.p, r.z);
        assert!(
            (p[0] + 0.5).abs() < 1e-14 && (p[1] - 1.5).abs() < 1e-14,
            "{p:?}"
        );
        assert!((z[0] - 1.5).abs() < 1e-14, "{z:?}");
        assert!(solve(&[1.0, -3.0]).is_none());
        let lone = DiagonalQp {
            h: &[-1.0],
            q: &[1.0],
            rows: &[],
            b: &[],
            n_eq: 0,
            low_rank: None,
        };
        assert!(lone.refine(&[0.0], &[]).is_none());
    }

    /// The same two cells beside two more held at their bounds (−p ≤ 0, pushed down
    /// by q = 1) and an active row over those two only (p2 − p3 ≤ 0): that row has
    /// nothing to act on and takes no multiplier; it must not read as a singular
    /// reduced Hessian beside the negative curvature (a hill_sigmoid problem once
    /// crawled linearly for want of this exact step).
    /// min ½(3 p0² − p1² + p2² + p3²) + q (p2 + p3) subject to p0 + p1 = 1, a row
    /// `row` over cells 2 and 3 and their lower bounds −p ≤ 0, from a start that takes
    /// all three as active.
    fn two_cells_held_at_zero(row: [f64; 2], q: f64) -> Refined {
        let rows = vec![
            vec![(0, 1.0), (1, 1.0)],
            vec![(2, row[0]), (3, row[1])],
            vec![(2, -1.0)],
            vec![(3, -1.0)],
        ];
        DiagonalQp {
            h: &[3.0, -1.0, 1.0, 1.0],
            q: &[0.0, 0.0, q, q],
            rows: &rows,
            b: &[1.0, 0.0, 0.0, 0.0],
            n_eq: 1,
            low_rank: None,
        }
        .refine(&[0.5, 0.5, 0.0, 0.0], &[0.0, 1.0, 1.0, 1.0])
        .expect("a minimum")
    }

    #[test]
    fn a_row_over_fixed_cells_only_beside_negative_curvature() {
        let r = two_cells_held_at_zero([1.0, -1.0], 1.0);
        let want = [-0.5, 1.5, 0.0, 0.0];
        for (a, b) in r.p.iter().zip(&want) {
            assert!((a - b).abs() < 1e-14, "{:?}", r.p);
        }
        assert!((r.z[0] - 1.5).abs() < 1e-14, "{:?}", r.z);
        assert_eq!(r.z[1], 0.0);
        assert!(
            (r.z[2] - 1.0).abs() < 1e-14 && (r.z[3] - 1.0).abs() < 1e-14,
            "{:?}",
            r.z
        );
    }

    /// Two cells held at 0 by their lower bounds and by `p2 + p3 <= 0`, both pushed up
    /// (q = −1): the row, not the bounds, holds them back; the bounds' multipliers
    /// would be negative, so the row takes z = 1 and the bounds 0.
    #[test]
    fn a_row_over_fixed_cells_holds_back_what_their_bounds_cannot() {
        let r = two_cells_held_at_zero([1.0, 1.0], -1.0);
        assert_eq!(&r.p[2..], &[0.0, 0.0]);
        assert!((r.z[1] - 1.0).abs() < 1e-14, "{:?}", r.z);
        assert!(r.z[2].abs() < 1e-14 && r.z[3].abs() < 1e-14, "{:?}", r.z);
    }

    /// Rows that cannot all hold (two equalities on one free variable's sum with
    /// different values) give no answer rather than a wrong one.
    #[test]
    fn a_singular_active_set_gives_none() {
        let h = [1.0, 1.0];
        let q = [0.0, 0.0];
        let rows = vec![vec![(0, 1.0), (1, 1.0)], vec![(0, 2.0), (1, 2.0)]];
        let b = [1.0, 3.0];
        let qp = DiagonalQp {
            h: &h,
            q: &q,
            rows: &rows,
            b: &b,
            n_eq: 2,
            low_rank: None,
        };
        assert!(qp.refine(&[0.5, 0.5], &[0.0, 0.0]).is_none());
    }

    /// Σ p = 0 and −0.3 ≤ p_c ≤ 0.5 as rows (a·p ≤ b after the equality).
    fn budget_and_box(n: usize) -> (Vec<Vec<(usize, f64)>>, Vec<f64>) {
        let mut rows = vec![(0..n).map(|c| (c, 1.0)).collect::<Vec<_>>()];
        let mut b = vec![0.0];
        for c in 0..n {
            rows.push(vec![(c, -1.0)]);
            b.push(0.3);
            rows.push(vec![(c, 1.0)]);
            b.push(0.5);
        }
        (rows, b)
    }

    /// The active set of the QP's diagonal part (held to a guess's 1e-9, in many
    /// rounds) starts the exact repair of the whole low-rank QP (the attempt that
    /// spares Clarabel's auxiliary form): the same answer as from the equalities.
    #[test]
    fn the_diagonal_parts_active_set_starts_the_low_rank_qp() {
        let (n, r) = (200, 6);
        let mut rand = crate::sqp::test_uniform(5);
        let h: Vec<f64> = (0..n).map(|_| 1.0 + rand()).collect();
        let w: Vec<f64> = (0..n * r).map(|_| rand()).collect();
        let signs = vec![1.0; r];
        let q: Vec<f64> = (0..n).map(|_| 4.0 * rand()).collect();
        let (rows, b) = budget_and_box(n);
        let whole = DiagonalQp {
            h: &h,
            q: &q,
            rows: &rows,
            b: &b,
            n_eq: 1,
            low_rank: Some(LowRankTerms {
                w: &w,
                signs: &signs,
            }),
        };
        let part = DiagonalQp {
            low_rank: None,
            ..whole
        };
        let equalities: Vec<bool> = (0..rows.len()).map(|i| i == 0).collect();
        let guess = part
            .solve_from_within(equalities.clone(), 200, 1e-9)
            .expect("the diagonal part's answer");
        let bound = guess.active.iter().filter(|a| **a).count() - 1;
        assert!(bound > 10 && bound < n, "{bound} bounds active in the part");
        let from_part = whole
            .solve_from(guess.active)
            .expect("an answer from the part's set");
        let from_equalities = whole
            .solve_from_within(equalities, 200, 1e-12)
            .expect("an answer from the equalities");
        for (a, b) in from_part.p.iter().zip(&from_equalities.p) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
        assert_eq!(from_part.active, from_equalities.active);
    }

    /// With a low-rank part, H = diag(h) + W S Wᵀ (positive definite, a minus term
    /// among the plus ones), the budget and both bounds on 30 cells: from the
    /// equalities alone the active set is repaired to the QP's answer, whose KKT
    /// conditions hold with H formed densely (so it is the minimum: the QP is convex).
    #[test]
    fn a_low_rank_hessian_is_solved_exactly() {
        let (n, r) = (30, 6);
        let mut rand = crate::sqp::test_uniform(11);
        let h: Vec<f64> = (0..n).map(|_| 1.0 + rand()).collect();
        let w: Vec<f64> = (0..n * r)
            .map(|k| if k % r == r - 1 { 0.1 * rand() } else { rand() })
            .collect();
        let signs: Vec<f64> = (0..r)
            .map(|j| if j == r - 1 { -1.0 } else { 1.0 })
            .collect();
        let q: Vec<f64> = (0..n).map(|_| 4.0 * rand()).collect();
        let (rows, b) = budget_and_box(n);
        let qp = DiagonalQp {
            h: &h,
            q: &q,
            rows: &rows,
            b: &b,
            n_eq: 1,
            low_rank: Some(LowRankTerms {
                w: &w,
                signs: &signs,
            }),
        };
        let guess: Vec<bool> = (0..rows.len()).map(|i| i == 0).collect();
        let Refined { p, z, active } = qp.solve_from(guess).expect("an answer");
        let dense = |i: usize, j: usize| {
            let d = if i == j { h[i] } else { 0.0 };
            d + (0..r)
                .map(|a| signs[a] * w[i * r + a] * w[j * r + a])
                .sum::<f64>()
        };
        let bound = active.iter().skip(1).filter(|a| **a).count();
        assert!(bound > 0 && bound < n, "{bound} bounds active");
        for (c, qc) in q.iter().enumerate() {
            let mut s: f64 = (0..n).map(|j| dense(c, j) * p[j]).sum::<f64>() + qc;
            for (row, z) in rows.iter().zip(&z) {
                s += row
                    .iter()
                    .filter(|e| e.0 == c)
                    .map(|e| e.1 * z)
                    .sum::<f64>();
            }
            assert!(s.abs() < 1e-10, "stationarity of {c}: {s}");
        }
        for (i, row) in rows.iter().enumerate() {
            let slack = b[i] - row.iter().map(|&(c, a)| a * p[c]).sum::<f64>();
            if i == 0 {
                assert!(slack.abs() < 1e-12);
            } else {
                assert!(
                    slack > -1e-12 && z[i] > -1e-12 && (z[i] * slack).abs() < 1e-10,
                    "row {i}: slack {slack}, z {}",
                    z[i]
                );
            }
        }
    }
}
