//! The QP's Hessian: the exact diagonal with a floor; with nonlinear constraints that
//! give their curvature the exact diagonal of the Lagrangian; with others the exact
//! diagonal plus a damped BFGS model of the constraints' curvature; for a CVaR the
//! exact Hessian, its diagonal plus the coupling through the draws near the quantile;
//! or damped BFGS of the whole Lagrangian.

use super::point::Point;
use super::{HessianMode, Tuning};

/// The QP's Hessian block.
#[derive(Clone, Debug)]
pub(super) enum Hessian {
    Diagonal(Vec<f64>),
    /// Row-major n × n.
    Dense(Vec<f64>),
    /// diag(d) + Σ u uᵀ − Σ v vᵀ, positive definite (the QP takes it through
    /// auxiliary variables, `low_rank.rs`).
    LowRank(LowRank),
}

/// diag(d) + Σ_k u_k u_kᵀ − Σ_k v_k v_kᵀ: a quasi-Newton matrix as its updates build
/// it, from the diagonal it started from.
#[derive(Clone, Debug)]
pub(super) struct LowRank {
    pub(super) diag: Vec<f64>,
    pub(super) plus: Vec<Vec<f64>>,
    pub(super) minus: Vec<Vec<f64>>,
}

impl LowRank {
    /// The number of rank-one terms.
    pub(super) fn rank(&self) -> usize {
        self.plus.len() + self.minus.len()
    }

    /// The n × n matrix, row-major.
    pub(super) fn dense(&self) -> Vec<f64> {
        let n = self.diag.len();
        let mut m = vec![0.0; n * n];
        for (i, d) in self.diag.iter().enumerate() {
            m[i * n + i] = *d;
        }
        for (terms, sign) in [(&self.plus, 1.0), (&self.minus, -1.0)] {
            for u in terms {
                for i in 0..n {
                    let ui = sign * u[i];
                    for j in 0..n {
                        m[i * n + j] += ui * u[j];
                    }
                }
            }
        }
        m
    }
}

/// A quasi-Newton model's matrix: dense, or as its updates build it ([`LowRank`],
/// from [`Tuning::low_rank_cells`] variables on).
#[derive(Clone, Debug)]
enum Matrix {
    Dense(Vec<f64>),
    Factored(LowRank),
}

impl Matrix {
    /// diag(d), factored or not.
    fn diagonal(d: Vec<f64>, factored: bool) -> Self {
        if factored {
            Matrix::Factored(LowRank {
                diag: d,
                plus: vec![],
                minus: vec![],
            })
        } else {
            let n = d.len();
            let mut m = vec![0.0; n * n];
            for (i, v) in d.into_iter().enumerate() {
                m[i * n + i] = v;
            }
            Matrix::Dense(m)
        }
    }

    /// B s.
    fn times(&self, s: &[f64]) -> Vec<f64> {
        let n = s.len();
        match self {
            Matrix::Dense(m) => (0..n)
                .map(|i| (0..n).map(|j| m[i * n + j] * s[j]).sum())
                .collect(),
            Matrix::Factored(l) => {
                let mut out: Vec<f64> = l.diag.iter().zip(s).map(|(d, v)| d * v).collect();
                for (terms, sign) in [(&l.plus, 1.0), (&l.minus, -1.0)] {
                    for u in terms {
                        let k = sign * u.iter().zip(s).map(|(a, b)| a * b).sum::<f64>();
                        out.iter_mut().zip(u).for_each(|(o, a)| *o += k * a);
                    }
                }
                out
            }
        }
    }

    /// B × k.
    fn scale(&mut self, k: f64) {
        match self {
            Matrix::Dense(m) => m.iter_mut().for_each(|v| *v *= k),
            Matrix::Factored(l) => {
                l.diag.iter_mut().for_each(|v| *v *= k);
                let root = k.sqrt();
                for u in l.plus.iter_mut().chain(l.minus.iter_mut()) {
                    u.iter_mut().for_each(|v| *v *= root);
                }
            }
        }
    }

    /// B + r rᵀ / sr − b bᵀ / sb.
    fn rank_two(&mut self, r: &[f64], sr: f64, b: &[f64], sb: f64) {
        match self {
            Matrix::Dense(m) => {
                let n = r.len();
                for i in 0..n {
                    for j in 0..n {
                        m[i * n + j] += r[i] * r[j] / sr - b[i] * b[j] / sb;
                    }
                }
            }
            Matrix::Factored(l) => {
                let (a, c) = (sr.sqrt(), sb.sqrt());
                l.plus.push(r.iter().map(|v| v / a).collect());
                l.minus.push(b.iter().map(|v| v / c).collect());
            }
        }
    }

    /// The QP's Hessian: this matrix plus diag(`extra`) where given; factored while
    /// its rank is below an eighth of its size, else dense (the auxiliary QP's
    /// factorisation grows as n r², the dense one's as n³/3 with faster kernels: they
    /// met near r = n/8 at n = 1,000).
    fn hessian(&self, extra: Option<&[f64]>) -> Hessian {
        let add = |d: &mut [f64]| {
            if let Some(e) = extra {
                d.iter_mut().zip(e).for_each(|(v, e)| *v += e);
            }
        };
        match self {
            Matrix::Dense(m) => {
                let mut m = m.clone();
                if let Some(e) = extra {
                    let n = e.len();
                    for (i, d) in e.iter().enumerate() {
                        m[i * n + i] += d;
                    }
                }
                Hessian::Dense(m)
            }
            Matrix::Factored(l) => {
                let mut l = l.clone();
                add(&mut l.diag);
                if 8 * l.rank() < l.diag.len() {
                    Hessian::LowRank(l)
                } else {
                    Hessian::Dense(l.dense())
                }
            }
        }
    }
}

/// The shape of the QP's Hessian block, fixed for a solve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HessianShape {
    Diagonal,
    Dense,
}

/// The exact diagonal raised to a floor: `floor` ([`Tuning::curvature_floor`]) × the
/// median positive entry (at least `floor`). Not the largest entry: one cell next to
/// a bound where its curvature is unbounded (a power law at 0) would raise every
/// other cell's floor with it and shrink their Newton steps.
pub(super) fn floored(h: &[f64], floor: f64) -> Vec<f64> {
    let mut positive: Vec<f64> = h.iter().copied().filter(|v| *v > 0.0).collect();
    let typical = if positive.is_empty() {
        0.0
    } else {
        let mid = positive.len() / 2;
        *positive.select_nth_unstable_by(mid, f64::total_cmp).1
    };
    let floor = floor * typical.max(1.0);
    h.iter().map(|v| v.max(floor)).collect()
}

/// The most variables a dense quasi-Newton model (n × n, row-major f64) is built
/// for: 800 MB, and a QP's dense factorisation of ~3·10¹¹ operations.
pub(super) const MAX_DENSE: usize = 10_000;

/// BFGS starts from the regularised exact diagonal (at least `start`).
fn initial_bfgs(h: &[f64], floor: f64, start: f64, factored: bool) -> Matrix {
    let d = floored(h, floor);
    Matrix::diagonal(d.iter().map(|v| v.max(start)).collect(), factored)
}

/// How the QP's Hessian is made, iteration after iteration, and the floor of its
/// diagonal ([`Tuning::curvature_floor`]).
pub(super) struct Model {
    kind: ModelKind,
    floor: f64,
    /// Whether the quasi-Newton part is yet to be scaled to its first secant
    /// ([`scale_to_secant`]): BFGS of the whole for utilities without quantiles, the
    /// constraints' BFGS model beside the exact diagonal where a constraint bounds the
    /// diversification ratio.
    scale_pending: bool,
}

enum ModelKind {
    /// The exact diagonal, floored ([`floored`]).
    Exact,
    /// The exact diagonal of the Lagrangian f + Σ_j z_j c_j, floored, with z from the
    /// last QP: every nonlinear constraint gives the diagonal of its Hessian
    /// (`NonlinearConstraint::curvature`).
    Lagrangian(Vec<f64>),
    /// The exact diagonal of f plus a damped BFGS model (row-major n × n) of
    /// Σ_j z_j ∇²c_j, the nonlinear constraints' curvature, which the API does not
    /// give: the objective's curvature stays exact at every iterate, and only what is
    /// unknown is learnt from the secants Σ_j z_j (∇c_j(y₊) − ∇c_j(y)).
    Structured(Matrix),
    /// For a utility whose draw weights move smoothly with the allocation (std, RAROC,
    /// entropy: `Utility::structured_curvature`; the others get [`ModelKind::Bfgs`]):
    /// the exact diagonal of f at every iterate, −(s²/|U₀|) Σ_d u_d r''_dc
    /// with the iterate's weights, plus a damped BFGS model (row-major n × n) of the
    /// rest, learnt from the secants of what the diagonal does not explain:
    /// ∇f(y₊) − ∇f(y) − ½(h₊ + h)∘s (the weights' own change, Σ_d Δu_d ∇R_d, couples
    /// the cells) plus the nonlinear constraints' Σ_j z_j (∇c_j(y₊) − ∇c_j(y)).
    StructuredObjective(Matrix),
    /// Damped BFGS of the whole Lagrangian's Hessian.
    Bfgs(Matrix),
    /// For a utility whose curvature in the responses is known
    /// (`Utility::tail_curvature`: the mean and CVaRs): its exact Hessian, the exact
    /// diagonal (of the Lagrangian, where nonlinear constraints give their
    /// curvature) plus the coupling of the cells through the draws near each CVaR's
    /// quantile ([`Point::coupling`]); at a point without it (a response not finite)
    /// the last point's coupling.
    Tail {
        last: Vec<Vec<f64>>,
        factored: bool,
        /// The multipliers of the nonlinear constraints (each giving its curvature's
        /// diagonal), from the last QP: their Σ_j z_j diag(∇²c_j) joins the diagonal.
        z: Vec<f64>,
    },
}

/// What the utility says of its curvature, for [`Model::new`].
pub(super) struct UtilityCurvature {
    /// Its draw weights are constant (the mean, the spend): the evaluator's diagonal
    /// is its exact Hessian.
    pub(super) constant_weights: bool,
    /// `Utility::structured_curvature`.
    pub(super) structured: bool,
    /// No term involves a quantile (`Utility::quantile_based`): a BFGS model of the
    /// whole is scaled to its first secant. The quantile-based measures keep their
    /// unscaled start, whose paths were measured better (benches/NOTES.md,
    /// "Diversification ratio").
    pub(super) smooth: bool,
    /// A nonlinear constraint bounds the diversification ratio (its gap,
    /// `Utility::needs_cell_moments`): the BFGS model of the constraints' curvature is
    /// scaled to its first secant. Other constraints without curvature solved worse
    /// with it (the fingerprints' `squares-bfgs` set: 756 → 648 solved of 1,000) and
    /// keep the unscaled start (benches/NOTES.md, "Diversification ratio").
    pub(super) ratio_constraint: bool,
    /// `Utility::has_tail_curvature`.
    pub(super) tail: bool,
}

impl Model {
    /// The model for a problem: exact without nonlinear rows, structured with them
    /// where the evaluator's diagonal is the utility's (constant draw weights);
    /// for other utilities structured around their exact diagonal where their weights
    /// move smoothly, exact for the mean with CVaRs (`Utility::has_tail_curvature`:
    /// [`ModelKind::Tail`]) where every nonlinear row gives its curvature, BFGS of
    /// the whole for the other quantile-based measures and Sharpe's ratio
    /// (`Utility::structured_curvature`), or when asked.
    pub(super) fn new(
        mode: HessianMode,
        nonlinear: usize,
        utility: UtilityCurvature,
        start: &Point,
        tuning: &Tuning,
    ) -> crate::error::Result<Self> {
        let UtilityCurvature {
            constant_weights,
            structured,
            smooth,
            ratio_constraint,
            tail,
        } = utility;
        let n = start.y.len();
        let floor = tuning.curvature_floor;
        use ModelKind as Model;
        let factored = n >= tuning.low_rank_cells;
        let bfgs = || Model::Bfgs(initial_bfgs(&start.h, floor, tuning.bfgs_start, factored));
        // The BFGS model of what the exact diagonal leaves, from a small multiple of I.
        let remainder = || Matrix::diagonal(vec![tuning.bfgs_start; n], factored);
        let curvature = nonlinear > 0 && start.nl_h.len() == nonlinear * n;
        let exact = match mode {
            HessianMode::Exact => true,
            HessianMode::Bfgs => false,
            HessianMode::Auto => (nonlinear == 0 || curvature) && constant_weights,
        };
        if !exact && n > MAX_DENSE {
            return Err(crate::error::Error::invalid(
                "solver",
                "variables",
                n,
                format!(
                    "at most {MAX_DENSE} for a dense quasi-Newton model (risk-aware objectives, nonlinear constraints without curvature and plans over time use one): fewer cells, or larger groups of periods"
                ),
            ));
        }
        let kind = match mode {
            HessianMode::Exact | HessianMode::Auto if curvature && constant_weights => {
                Model::Lagrangian(vec![0.0; nonlinear])
            }
            HessianMode::Exact => Model::Exact,
            HessianMode::Bfgs => bfgs(),
            HessianMode::Auto if nonlinear == 0 && constant_weights => Model::Exact,
            HessianMode::Auto if exact_tail(mode, nonlinear, curvature, tail) => Model::Tail {
                last: start.coupling.clone().unwrap_or_default(),
                factored,
                z: vec![0.0; nonlinear],
            },
            HessianMode::Auto if constant_weights => Model::Structured(remainder()),
            // Weights around a quantile move too fast for the secants of the rest
            // (`Utility::structured_curvature`).
            HessianMode::Auto if !structured => bfgs(),
            HessianMode::Auto => Model::StructuredObjective(remainder()),
        };
        let scale_pending = match kind {
            Model::Bfgs(_) => smooth,
            Model::Structured(_) => ratio_constraint,
            _ => false,
        };
        Ok(Self {
            kind,
            floor,
            scale_pending,
        })
    }

    /// Whether the QP's Hessian is the (floored) exact diagonal.
    pub(super) fn is_exact(&self) -> bool {
        matches!(self.kind, ModelKind::Exact | ModelKind::Lagrangian(_))
    }

    /// The shape of the QP's Hessian block.
    pub(super) fn shape(&self) -> HessianShape {
        if self.is_exact() {
            HessianShape::Diagonal
        } else {
            HessianShape::Dense
        }
    }

    /// The exact diagonal at `h` floored as the QP's is.
    pub(super) fn floored(&self, h: &[f64]) -> Vec<f64> {
        floored(h, self.floor)
    }

    /// The QP's Hessian at `pt`.
    pub(super) fn hessian(&self, pt: &Point) -> Hessian {
        use ModelKind as Model;
        match &self.kind {
            Model::Exact => Hessian::Diagonal(floored(&pt.h, self.floor)),
            Model::Lagrangian(z) => {
                Hessian::Diagonal(floored(&lagrangian_diagonal(pt, z), self.floor))
            }
            Model::Bfgs(b) => b.hessian(None),
            Model::Structured(c) | Model::StructuredObjective(c) => {
                c.hessian(Some(&floored(&pt.h, self.floor)))
            }
            Model::Tail { last, factored, z } => {
                let l = LowRank {
                    diag: floored(&lagrangian_diagonal(pt, z), self.floor),
                    plus: pt.coupling.as_ref().unwrap_or(last).clone(),
                    minus: vec![],
                };
                // Kept factored further than a BFGS model (to half the cells, not an
                // eighth): its terms are all added, the auxiliary QP's smaller form.
                if *factored && 2 * l.rank() < l.diag.len() {
                    Hessian::LowRank(l)
                } else {
                    Hessian::Dense(l.dense())
                }
            }
        }
    }

    /// The secant update after the step from `old` to `new`.
    pub(super) fn update(&mut self, old: &Point, new: &Point, z_nl: &[f64]) {
        let n = new.y.len();
        let s: Vec<f64> = new.y.iter().zip(&old.y).map(|(a, b)| a - b).collect();
        // Σ_j z_j (∇c_j(new) − ∇c_j(old)), and the objective's gradient change for BFGS.
        let mut r = vec![0.0; n];
        for (j, z) in z_nl.iter().enumerate() {
            let (new_g, old_g) = (
                &new.nl_grads[j * n..(j + 1) * n],
                &old.nl_grads[j * n..(j + 1) * n],
            );
            for ((rc, a), b) in r.iter_mut().zip(new_g).zip(old_g) {
                *rc += z * (a - b);
            }
        }
        use ModelKind as Model;
        match &mut self.kind {
            Model::Exact => {}
            Model::Tail { last, z, .. } => {
                if let Some(c) = &new.coupling {
                    last.clone_from(c);
                }
                z.copy_from_slice(z_nl);
            }
            Model::Lagrangian(z) => z.copy_from_slice(z_nl),
            Model::Structured(m) => {
                if self.scale_pending {
                    self.scale_pending = !scale_to_secant(m, &s, &r);
                }
                damped_bfgs(m, &s, r)
            }
            Model::StructuredObjective(m) => {
                for (i, rc) in r.iter_mut().enumerate() {
                    *rc += new.g[i] - old.g[i] - 0.5 * (new.h[i] + old.h[i]) * s[i];
                }
                damped_bfgs(m, &s, r)
            }
            Model::Bfgs(m) => {
                for ((rc, a), b) in r.iter_mut().zip(&new.g).zip(&old.g) {
                    *rc += a - b;
                }
                if self.scale_pending {
                    self.scale_pending = !scale_to_secant(m, &s, &r);
                }
                damped_bfgs(m, &s, r)
            }
        }
    }
}

/// Whether [`Model::new`] takes [`ModelKind::Tail`] (and so whether the points need
/// their [`Point::coupling`]): asked for the automatic model, a utility of the mean
/// and CVaRs (`Utility::has_tail_curvature`), and no nonlinear row without its
/// curvature.
pub(super) fn exact_tail(mode: HessianMode, nonlinear: usize, curvature: bool, tail: bool) -> bool {
    mode == HessianMode::Auto && tail && (nonlinear == 0 || curvature)
}

/// The exact diagonal of the Lagrangian f + Σ_j z_j c_j at `pt` (the objective's
/// alone without nonlinear constraints).
fn lagrangian_diagonal(pt: &Point, z: &[f64]) -> Vec<f64> {
    let n = pt.h.len();
    let mut h = pt.h.clone();
    for (j, z) in z.iter().enumerate() {
        for (hc, c) in h.iter_mut().zip(&pt.nl_h[j * n..(j + 1) * n]) {
            *hc += z * c;
        }
    }
    h
}

/// Oren and Luenberger's scaling of the initial model before its first update: m ×
/// sᵀr / sᵀms, so that its curvature along the first step is the secant's (the
/// initial diagonal only guesses the scale). Whether it scaled (sᵀr and sᵀms > 0).
fn scale_to_secant(m: &mut Matrix, s: &[f64], r: &[f64]) -> bool {
    let sms: f64 = s.iter().zip(m.times(s)).map(|(a, b)| a * b).sum();
    let sr: f64 = s.iter().zip(r).map(|(a, b)| a * b).sum();
    if !(sms > 0.0 && sr > 0.0 && (sr / sms).is_finite()) {
        return false;
    }
    m.scale(sr / sms);
    true
}

/// Powell-damped BFGS update of `m` with the step s and the gradient change r.
/// (`!(v > 0.0)` also skips the update on NaN.)
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn damped_bfgs(m: &mut Matrix, s: &[f64], mut r: Vec<f64>) {
    let bs = m.times(s);
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
    m.rank_two(&r, sr, &bs, sbs);
}
