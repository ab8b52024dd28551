//! A QP whose Hessian over the free cells is diag(d) + U Uᵀ − V Vᵀ (a quasi-Newton
//! model as its updates build it, [`LowRank`]) given to Clarabel without an n × n
//! block.
//!
//! With p̃ = D^½ p and the thin QR of D^−½ [U V] = Q R (Q: n × r, orthonormal columns),
//! B̃ = D^−½ B D^−½ = I + Q Λ Qᵀ with Λ = R S Rᵀ, S = diag(+1 for U, −1 for V). Since
//! Qᵀ B̃ Q = I + Λ, which is positive definite where B is,
//!
//! pᵀ B p = p̃ᵀ B̃ p̃ = ‖(I − Q Qᵀ) p̃‖² + (Qᵀ p̃)ᵀ (I + Λ) (Qᵀ p̃) = ‖w‖² + vᵀ (I + Λ) v
//!
//! with the auxiliary variables v = Qᵀ D^½ p (r of them) and w = D^½ p − Q v (n). The
//! QP's P is then diag(0, I + Λ, I), positive semidefinite as Clarabel needs, and the
//! r + n rows defining v and w (equalities) have ~2 n r nonzeros: a KKT system that
//! factors in O(n r²) instead of O(n³).

use super::hessian::LowRank;
use nalgebra::DMatrix;

/// The auxiliary part of a QP over `nv` columns (the free cells first): its columns
/// follow the QP's own (v: nv..nv + r, w: nv + r..nv + r + nf).
pub(super) struct Auxiliary {
    /// The rows defining v and w, over every column (equalities, right-hand side 0).
    pub(super) rows: Vec<Vec<(usize, f64)>>,
    /// P's rows over every column (upper triangle): empty for the QP's own columns.
    pub(super) p_rows: Vec<Vec<(usize, f64)>>,
    /// The columns in all.
    pub(super) columns: usize,
}

/// The auxiliary form of `h` restricted to the `free` cells, for a QP of `nv` columns;
/// `None` where it would not help or does not hold (the terms outnumber the cells, a
/// diagonal entry is not positive, or I + Λ is not positive definite in floating
/// point): the caller then takes the dense matrix.
pub(super) fn auxiliary(h: &LowRank, free: &[usize], nv: usize) -> Option<Auxiliary> {
    let nf = free.len();
    let r = h.rank();
    if r >= nf {
        return None;
    }
    let root: Vec<f64> = free.iter().map(|&c| h.diag[c].sqrt()).collect();
    if !root.iter().all(|v| v.is_finite() && *v > 0.0) {
        return None;
    }
    if h.minus.is_empty() && !h.plus.is_empty() {
        return Some(positive_terms(h, free, nv));
    }
    let terms: Vec<&Vec<f64>> = h.plus.iter().chain(&h.minus).collect();
    let m = DMatrix::from_fn(nf, r, |k, j| terms[j][free[k]] / root[k]);
    if !m.iter().all(|v| v.is_finite()) {
        return None;
    }
    let qr = m.qr();
    let (q, rr) = (qr.q(), qr.r());
    let mut signed = rr.clone();
    for j in h.plus.len()..r {
        signed.column_mut(j).neg_mut();
    }
    // I + Λ, Λ = R S Rᵀ.
    let mut c = &signed * rr.transpose();
    for i in 0..r {
        c[(i, i)] += 1.0;
    }
    let c = (c.clone() + c.transpose()) * 0.5;
    c.clone().cholesky()?;
    let (v0, w0) = (nv, nv + r);
    let mut rows = Vec::with_capacity(r + nf);
    for a in 0..r {
        let mut row: Vec<(usize, f64)> = (0..nf).map(|k| (k, -q[(k, a)] * root[k])).collect();
        row.push((v0 + a, 1.0));
        rows.push(row);
    }
    for i in 0..nf {
        let mut row = vec![(i, -root[i])];
        row.extend((0..r).map(|a| (v0 + a, q[(i, a)])));
        row.push((w0 + i, 1.0));
        rows.push(row);
    }
    let columns = w0 + nf;
    let mut p_rows = vec![Vec::new(); columns];
    for a in 0..r {
        p_rows[v0 + a] = (a..r).map(|b| (v0 + b, c[(a, b)])).collect();
    }
    for i in 0..nf {
        p_rows[w0 + i] = vec![(w0 + i, 1.0)];
    }
    Some(Auxiliary {
        rows,
        p_rows,
        columns,
    })
}

/// Where every term is added (B = D + U Uᵀ, the exact curvature of a CVaR:
/// `ModelKind::Tail`): pᵀ B p = pᵀ D p + ‖u‖² with u = Uᵀ p, r auxiliary variables
/// and r rows (n + r columns, r dense rows), P = diag(D, I). Smaller than the general
/// form (no w, no QR) and the same answer.
fn positive_terms(h: &LowRank, free: &[usize], nv: usize) -> Auxiliary {
    let r = h.rank();
    let rows = h
        .plus
        .iter()
        .enumerate()
        .map(|(a, u)| {
            let mut row: Vec<(usize, f64)> =
                free.iter().enumerate().map(|(k, &c)| (k, -u[c])).collect();
            row.push((nv + a, 1.0));
            row
        })
        .collect();
    let columns = nv + r;
    let mut p_rows = vec![Vec::new(); columns];
    for (k, &c) in free.iter().enumerate() {
        p_rows[k] = vec![(k, h.diag[c])];
    }
    for a in 0..r {
        p_rows[nv + a] = vec![(nv + a, 1.0)];
    }
    Auxiliary {
        rows,
        p_rows,
        columns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pᵀ B p for the `free` cells' step p, through the auxiliary form: each row
    /// solved for its own variable (coefficient 1, last), in order, then P's form.
    fn through_auxiliary(aux: &Auxiliary, p: &[f64]) -> f64 {
        let mut x = vec![0.0; aux.columns];
        x[..p.len()].copy_from_slice(p);
        for row in &aux.rows {
            let (own, _) = *row.last().unwrap();
            x[own] = -row[..row.len() - 1]
                .iter()
                .map(|&(c, a)| a * x[c])
                .sum::<f64>();
        }
        let mut quad = 0.0;
        for (i, row) in aux.p_rows.iter().enumerate() {
            for &(j, v) in row {
                quad += if i == j {
                    v * x[i] * x[i]
                } else {
                    2.0 * v * x[i] * x[j]
                };
            }
        }
        quad
    }

    /// pᵀ B p with B formed densely.
    fn directly(h: &LowRank, free: &[usize], p: &[f64]) -> f64 {
        let n = h.diag.len();
        let dense = h.dense();
        let mut exact = 0.0;
        for (a, &i) in free.iter().enumerate() {
            for (b, &j) in free.iter().enumerate() {
                exact += p[a] * dense[i * n + j] * p[b];
            }
        }
        exact
    }

    /// ‖w‖² + vᵀ(I + Λ)v at the v, w the rows define equals pᵀ B p for random B
    /// (diagonal plus random updates kept positive definite) and random p, with some
    /// cells left out; with added terms only, pᵀ D p + ‖Uᵀp‖² (r columns, no w).
    #[test]
    fn the_auxiliary_form_gives_the_quadratic_form() {
        let n = 40;
        let mut rand = crate::sqp::test_uniform(7);
        let diag: Vec<f64> = (0..n).map(|_| 1.0 + rand()).collect();
        let plus: Vec<Vec<f64>> = (0..5).map(|_| (0..n).map(|_| rand()).collect()).collect();
        // Subtract small multiples of the diagonal's directions: B stays definite.
        let minus: Vec<Vec<f64>> = (0..4)
            .map(|_| (0..n).map(|_| 0.2 * rand()).collect())
            .collect();
        let free: Vec<usize> = (0..n).filter(|c| c % 7 != 3).collect();
        let nf = free.len();
        let nv = nf + 2; // two slack columns
        let p: Vec<f64> = (0..nf).map(|_| rand()).collect();
        for (h, columns) in [
            (
                LowRank {
                    diag: diag.clone(),
                    plus: plus.clone(),
                    minus,
                },
                nv + 9 + nf,
            ),
            (
                LowRank {
                    diag: diag.clone(),
                    plus: plus.clone(),
                    minus: vec![],
                },
                nv + 5,
            ),
        ] {
            let aux = auxiliary(&h, &free, nv).expect("definite");
            assert_eq!(aux.columns, columns);
            let (quad, exact) = (through_auxiliary(&aux, &p), directly(&h, &free, &p));
            assert!(
                (quad - exact).abs() <= 1e-12 * exact.abs(),
                "{quad} vs {exact}"
            );
        }
        // An indefinite model is refused.
        let bad = LowRank {
            diag: vec![1.0; n],
            plus: vec![],
            minus: vec![vec![2.0; n]],
        };
        assert!(auxiliary(&bad, &free, nv).is_none());
    }
}
