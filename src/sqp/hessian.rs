//! The QP's Hessian: the exact diagonal with a floor, or damped BFGS.

use super::*;

/// The QP's Hessian block.
#[derive(Clone, Debug)]
pub(super) enum Hessian {
    Diagonal(Vec<f64>),
    /// Row-major n × n.
    Dense(Vec<f64>),
}

/// The exact diagonal raised to a floor: 1e-8 × the median positive entry (at least
/// 1e-8). Not the largest entry: one cell next to a bound where its curvature is
/// unbounded (a power law at 0) would raise every other cell's floor with it and
/// shrink their Newton steps.
pub(super) fn regularised(h: &[f64]) -> Hessian {
    Hessian::Diagonal(floored(h))
}

pub(super) fn floored(h: &[f64]) -> Vec<f64> {
    let mut positive: Vec<f64> = h.iter().copied().filter(|v| *v > 0.0).collect();
    let typical = if positive.is_empty() {
        0.0
    } else {
        let mid = positive.len() / 2;
        *positive.select_nth_unstable_by(mid, f64::total_cmp).1
    };
    let floor = 1e-8 * typical.max(1.0);
    h.iter().map(|v| v.max(floor)).collect()
}

/// BFGS starts from the regularised exact diagonal (at least 1e-4).
pub(super) fn initial_bfgs(h: &[f64], n: usize) -> Hessian {
    let d = floored(h);
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = d[i].max(1e-4);
    }
    Hessian::Dense(m)
}

/// Powell-damped BFGS update of the Lagrangian's Hessian model. (`!(v > 0.0)` also
/// skips the update on NaN.)
#[allow(clippy::neg_cmp_op_on_partial_ord)]
pub(super) fn bfgs_update(b: &mut Hessian, old: &Point, new: &Point, z_nl: &[f64], n: usize) {
    let Hessian::Dense(m) = b else { return };
    let s: Vec<f64> = new.y.iter().zip(&old.y).map(|(a, b)| a - b).collect();
    let mut r: Vec<f64> = new.g.iter().zip(&old.g).map(|(a, b)| a - b).collect();
    for (j, z) in z_nl.iter().enumerate() {
        let (new_g, old_g) = (
            &new.nl_grads[j * n..(j + 1) * n],
            &old.nl_grads[j * n..(j + 1) * n],
        );
        for ((rc, a), b) in r.iter_mut().zip(new_g).zip(old_g) {
            *rc += z * (a - b);
        }
    }
    let bs: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| m[i * n + j] * s[j]).sum())
        .collect();
    let sbs: f64 = s.iter().zip(&bs).map(|(a, b)| a * b).sum();
    if !(sbs > 0.0) {
        return;
    }
    let sr: f64 = s.iter().zip(&r).map(|(a, b)| a * b).sum();
    let theta = if sr >= 0.2 * sbs {
        1.0
    } else {
        0.8 * sbs / (sbs - sr)
    };
    for (ri, bsi) in r.iter_mut().zip(&bs) {
        *ri = theta * *ri + (1.0 - theta) * bsi;
    }
    let sr: f64 = s.iter().zip(&r).map(|(a, b)| a * b).sum();
    if !(sr > 0.0) || !sr.is_finite() {
        return;
    }
    for i in 0..n {
        for j in 0..n {
            m[i * n + j] += r[i] * r[j] / sr - bs[i] * bs[j] / sbs;
        }
    }
}
