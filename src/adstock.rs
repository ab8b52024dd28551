//! Adstock (carry-over): weight vectors and the convolution that spreads spend over
//! later periods.
//!
//! Kinds and weights follow PyMC-Marketing 0.19.2 (`mmm/transformers.py`) with lags
//! l = 0..L−1 (L = `l_max`); in a posterior the parameters carry the prefix
//! `adstock_` (`adstock_alpha`, `adstock_theta`, `adstock_lam`, `adstock_k`):
//! - geometric: w_l = α^l
//! - delayed: w_l = α^((l−θ)²)
//! - binomial: w_l = (1 − l/(L+1))^(1/α − 1)
//! - weibull_pdf: the Weibull(shape k, scale λ) density at l+1, min-max scaled over
//!   the L lags
//! - weibull_cdf: the cumulative product of \[1, 1−F(1), …, 1−F(L)\] with F the Weibull
//!   CDF: **L+1 weights**, as PyMC-Marketing builds them
//! - none: w = (1)
//!
//! With `normalize` (PyMC-Marketing's default) the weights are divided by their sum.
//! The convolution is PyMC-Marketing's `ConvMode.After`:
//! a_t = Σ_l w_l z_(t−l), with z = 0 before the first period.

use crate::saturation::{Domain, ParameterDomainError, check_domain};
use std::fmt;

/// An adstock kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdstockKind {
    /// w_l = α^l; parameter `alpha` in \[0, 1\].
    Geometric,
    /// w_l = α^((l−θ)²); parameters `alpha` in \[0, 1\], `theta`.
    Delayed,
    /// w_l = (1 − l/(L+1))^(1/α − 1); parameter `alpha` in \[0, 1\].
    Binomial,
    /// Weibull density at l+1, min-max scaled; parameters `lam` > 0 (scale), `k` > 0 (shape).
    WeibullPdf,
    /// Cumulative product of Weibull survival values, L+1 weights; parameters `lam`, `k`.
    WeibullCdf,
    /// No carry-over: w = (1).
    None,
}

impl AdstockKind {
    /// Every kind.
    pub const ALL: [AdstockKind; 6] = [
        AdstockKind::Geometric,
        AdstockKind::Delayed,
        AdstockKind::Binomial,
        AdstockKind::WeibullPdf,
        AdstockKind::WeibullCdf,
        AdstockKind::None,
    ];

    /// The kind for a PyMC-Marketing lookup name (`"none"` and `"no_adstock"` both
    /// give [`AdstockKind::None`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "geometric" => AdstockKind::Geometric,
            "delayed" => AdstockKind::Delayed,
            "binomial" => AdstockKind::Binomial,
            "weibull_pdf" => AdstockKind::WeibullPdf,
            "weibull_cdf" => AdstockKind::WeibullCdf,
            "none" | "no_adstock" => AdstockKind::None,
            _ => return Option::None,
        })
    }

    /// The lookup name.
    pub fn name(&self) -> &'static str {
        match self {
            AdstockKind::Geometric => "geometric",
            AdstockKind::Delayed => "delayed",
            AdstockKind::Binomial => "binomial",
            AdstockKind::WeibullPdf => "weibull_pdf",
            AdstockKind::WeibullCdf => "weibull_cdf",
            AdstockKind::None => "none",
        }
    }

    /// Parameter names as PyMC-Marketing names them (without the `adstock_` prefix).
    pub fn parameters(&self) -> &'static [&'static str] {
        match self {
            AdstockKind::Geometric | AdstockKind::Binomial => &["alpha"],
            AdstockKind::Delayed => &["alpha", "theta"],
            AdstockKind::WeibullPdf | AdstockKind::WeibullCdf => &["lam", "k"],
            AdstockKind::None => &[],
        }
    }

    /// Whether every parameter in its domain gives finite weights, so that no draw
    /// need be checked: geometric (w_l = αˡ with α ∈ [0, 1]: each in [0, 1], w_0 = 1,
    /// so the normalising sum is ≥ 1), binomial (w_l = (1 − l/(L+1))^(1/α − 1) with
    /// α ∈ [0, 1]: the base in (0, 1], the exponent in [0, ∞], each in [0, 1], w_0 = 1)
    /// and none. Delayed and the Weibull kernels can underflow to all zeros or
    /// overflow, and are checked.
    ///
    /// ```
    /// use mmm_budget::AdstockKind;
    /// assert!(AdstockKind::Geometric.weights_always_finite());
    /// assert!(!AdstockKind::WeibullPdf.weights_always_finite());
    /// ```
    pub fn weights_always_finite(&self) -> bool {
        matches!(
            self,
            AdstockKind::Geometric | AdstockKind::Binomial | AdstockKind::None
        )
    }

    /// The domain of each parameter, in the order of [`AdstockKind::parameters`].
    pub fn domains(&self) -> &'static [Domain] {
        use Domain as D;
        match self {
            AdstockKind::Geometric | AdstockKind::Binomial => &[D::UnitInterval],
            AdstockKind::Delayed => &[D::UnitInterval, D::Finite],
            AdstockKind::WeibullPdf | AdstockKind::WeibullCdf => &[D::Positive, D::Positive],
            AdstockKind::None => &[],
        }
    }
}

impl fmt::Display for AdstockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An adstock transformation: kind, maximum lag and normalisation.
///
/// ```
/// use mmm_budget::{Adstock, AdstockKind};
/// let adstock = Adstock { kind: AdstockKind::Geometric, l_max: 3, normalize: true };
/// let mut w = vec![0.0; adstock.kernel_len()];
/// adstock.weights(&[0.5], &mut w);
/// // [1, 0.5, 0.25] / 1.75
/// assert!((w[1] - 0.5 / 1.75).abs() < 1e-15);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adstock {
    /// The kind.
    pub kind: AdstockKind,
    /// L: the number of lags (PyMC-Marketing's `l_max`, ≥ 1). The carry-over tail
    /// of a budget scenario is L periods long.
    pub l_max: usize,
    /// Divide the weights by their sum (PyMC-Marketing's default: true).
    pub normalize: bool,
}

impl Adstock {
    /// The number of weights: L, except L+1 for `weibull_cdf` and 1 for `none`.
    pub fn kernel_len(&self) -> usize {
        match self.kind {
            AdstockKind::WeibullCdf => self.l_max + 1,
            AdstockKind::None => 1,
            _ => self.l_max,
        }
    }

    /// Checks the parameters against their domains.
    pub fn check(&self, params: &[f64]) -> Result<(), ParameterDomainError> {
        check_domain(params, self.kind.domains())
    }

    /// Writes the weights for `params` (in the order of [`AdstockKind::parameters`])
    /// into `w`, which must hold [`Adstock::kernel_len`] values. The result may hold
    /// NaN for degenerate parameters (e.g. all weights zero before normalising);
    /// callers check.
    pub fn weights(&self, params: &[f64], w: &mut [f64]) {
        let l_max = self.l_max as f64;
        match self.kind {
            AdstockKind::Geometric => {
                // α^l by repeated products (within l/2 ulp of powf, 20× cheaper).
                let alpha = params[0];
                let mut power = 1.0;
                for wl in w.iter_mut() {
                    *wl = power;
                    power *= alpha;
                }
            }
            AdstockKind::Delayed => {
                let (alpha, theta) = (params[0], params[1]);
                for (l, wl) in w.iter_mut().enumerate() {
                    let d = l as f64 - theta;
                    *wl = alpha.powf(d * d);
                }
            }
            AdstockKind::Binomial => {
                let e = 1.0 / params[0] - 1.0;
                for (l, wl) in w.iter_mut().enumerate() {
                    *wl = (1.0 - l as f64 / (l_max + 1.0)).powf(e);
                }
            }
            AdstockKind::WeibullPdf => {
                let (lam, k) = (params[0], params[1]);
                for (l, wl) in w.iter_mut().enumerate() {
                    let t = (l + 1) as f64;
                    let z = t / lam;
                    *wl = k / lam * z.powf(k - 1.0) * (-z.powf(k)).exp();
                }
                let min = w.iter().copied().fold(f64::INFINITY, f64::min);
                let max = w.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                for wl in w.iter_mut() {
                    *wl = (*wl - min) / (max - min);
                }
            }
            AdstockKind::WeibullCdf => {
                let (lam, k) = (params[0], params[1]);
                w[0] = 1.0;
                for l in 1..w.len() {
                    let survival = (-(l as f64 / lam).powf(k)).exp();
                    w[l] = w[l - 1] * survival;
                }
            }
            AdstockKind::None => w[0] = 1.0,
        }
        if self.normalize {
            let sum: f64 = w.iter().sum();
            for wl in w.iter_mut() {
                *wl /= sum;
            }
        }
    }
}

/// a_t = Σ_l w_l z_(t−l) for t = 0..a.len(), with z_s = 0 for s ∉ [0, z.len()):
/// PyMC-Marketing's `ConvMode.After`.
pub fn convolve(w: &[f64], z: &[f64], a: &mut [f64]) {
    for (t, at) in a.iter_mut().enumerate() {
        let lo = t.saturating_sub(z.len().saturating_sub(1));
        let hi = w.len().min(t + 1);
        let mut acc = 0.0;
        for l in lo..hi {
            acc += w[l] * z[t - l];
        }
        *at = acc;
    }
}

/// The adjoint of [`convolve`]: y_s = Σ_l w_l v_(s+l) for s = 0..y.len(), with v_t = 0
/// for t ≥ v.len(). If a = conv(w, z) then ∂(Σ_t v_t a_t)/∂z_s = y_s.
///
/// Zero weights are skipped: a lag with w_l = 0 does not link z_s to a_(s+l), so an
/// infinite v there (a curve with g'(0) = ∞) must not turn into NaN.
pub fn convolve_adjoint(w: &[f64], v: &[f64], y: &mut [f64]) {
    for (s, ys) in y.iter_mut().enumerate() {
        let hi = w.len().min(v.len().saturating_sub(s));
        let mut acc = 0.0;
        for l in 0..hi {
            if w[l] != 0.0 {
                acc += w[l] * v[s + l];
            }
        }
        *ys = acc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjoint_is_the_transpose() {
        let w = [0.5, 0.3, 0.2];
        let z = [1.0, 2.0, -1.0, 0.5];
        let v = [0.3, -0.7, 1.1, 0.2, 0.9, -0.4];
        let mut a = [0.0; 6];
        convolve(&w, &z, &mut a);
        let mut y = [0.0; 4];
        convolve_adjoint(&w, &v, &mut y);
        let lhs: f64 = a.iter().zip(&v).map(|(a, v)| a * v).sum();
        let rhs: f64 = y.iter().zip(&z).map(|(y, z)| y * z).sum();
        assert!((lhs - rhs).abs() < 1e-14);
    }

    #[test]
    fn weibull_cdf_has_l_max_plus_one_weights() {
        let a = Adstock {
            kind: AdstockKind::WeibullCdf,
            l_max: 4,
            normalize: false,
        };
        let mut w = vec![0.0; a.kernel_len()];
        a.weights(&[2.0, 1.5], &mut w);
        assert_eq!(w.len(), 5);
        assert_eq!(w[0], 1.0);
        assert!((w[1] - (-(0.5f64).powf(1.5)).exp()).abs() < 1e-15);
    }
}
