//! Saturation curves g(a; ψ): diminishing returns of adstocked media.
//!
//! Each kind follows PyMC-Marketing 0.19.2 (`mmm/components/saturation.py` and
//! `mmm/transformers.py`) exactly, with the same parameter names; in a posterior they
//! carry the prefix `saturation_` (`saturation_lam`, `saturation_beta`, …). For every
//! kind this module gives the value g and its first two derivatives in `a`, which the
//! evaluators turn into the gradient and curvature of the response.

use std::fmt;

/// A saturation curve kind. Parameters are passed as a slice in the order of
/// [`Saturation::parameters`].
///
/// ```
/// use mmm_budget::Saturation;
/// let s = Saturation::from_name("logistic").unwrap();
/// assert_eq!(s.parameters(), &["lam", "beta"]);
/// // β (1 − e^(−λa)) / (1 + e^(−λa)) at a = 1, λ = 2, β = 3
/// let e = (-2.0f64).exp();
/// assert!((s.value(1.0, &[2.0, 3.0]) - 3.0 * (1.0 - e) / (1.0 + e)).abs() < 1e-15);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Saturation {
    /// g = β (1 − e^(−λa)) / (1 + e^(−λa)) = β tanh(λa/2). Parameters `lam` ≥ 0, `beta`.
    Logistic,
    /// Logistic with λ' = ln(3)/λ (so that g(λ) = β/2): g = β (1 − e^(−λ'a)) / (1 + e^(−λ'a)).
    /// Parameters `lam` > 0, `beta`.
    InverseScaledLogistic,
    /// g = α a / (λ + a). Parameters `alpha`, `lam` > 0.
    MichaelisMenten,
    /// g = β (1 − κ^s / (κ^s + a^s)). Parameters `slope` s > 0, `kappa` κ > 0, `beta`.
    Hill,
    /// g = σ / (1 + e^(−β(a − λ))) − σ / (1 + e^(βλ)). Parameters `sigma`, `beta`, `lam`.
    HillSigmoid,
    /// g = b tanh(a / (b c)). Parameters `b` > 0, `c` > 0.
    Tanh,
    /// g = β a^α. Parameters `alpha` > 0, `beta`.
    Root,
    /// g = β a (PyMC-Marketing's `no_saturation`). Parameter `beta`.
    None,
}

/// Where a saturation or adstock parameter falls outside its domain.
#[derive(Clone, Debug, PartialEq)]
pub struct ParameterDomainError {
    /// Index of the parameter in `parameters()`.
    pub index: usize,
    /// The domain it should lie in.
    pub domain: Domain,
}

/// The domain of one parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// Any finite number.
    Finite,
    /// Finite and > 0.
    Positive,
    /// Finite and >= 0.
    NonNegative,
    /// In [0, 1].
    UnitInterval,
    /// An exponent: > 0 and at most [`MAX_EXPONENT`] (beyond, the curve is a step
    /// whose derivatives overflow).
    Exponent,
}

/// The largest exponent (hill's slope) accepted.
pub const MAX_EXPONENT: f64 = 100.0;

impl Domain {
    /// Whether `v` lies in the domain.
    pub fn contains(&self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Domain::Finite => true,
                Domain::Positive => v > 0.0,
                Domain::NonNegative => v >= 0.0,
                Domain::UnitInterval => (0.0..=1.0).contains(&v),
                Domain::Exponent => v > 0.0 && v <= MAX_EXPONENT,
            }
    }

    /// The domain as a closed interval [lo, hi] of finite numbers: `contains(v)` is
    /// `v >= lo && v <= hi` (false for NaN), a test without branches for bulk checks.
    pub fn interval(&self) -> (f64, f64) {
        // The least positive number: "> 0" for a finite f64.
        let tiny = f64::from_bits(1);
        match self {
            Domain::Finite => (f64::MIN, f64::MAX),
            Domain::Positive => (tiny, f64::MAX),
            Domain::NonNegative => (0.0, f64::MAX),
            Domain::UnitInterval => (0.0, 1.0),
            Domain::Exponent => (tiny, MAX_EXPONENT),
        }
    }

    /// The domain in words, for error messages.
    pub fn expected(&self) -> &'static str {
        match self {
            Domain::Finite => "a finite number",
            Domain::Positive => "a finite number > 0",
            Domain::NonNegative => "a finite number >= 0",
            Domain::UnitInterval => "a number in [0, 1]",
            Domain::Exponent => "a number in (0, 100]",
        }
    }
}

/// Checks `params` against `domains`, reporting the first one outside.
pub(crate) fn check_domain(params: &[f64], domains: &[Domain]) -> Result<(), ParameterDomainError> {
    match params
        .iter()
        .zip(domains)
        .position(|(&v, d)| !d.contains(v))
    {
        Some(index) => Err(ParameterDomainError {
            index,
            domain: domains[index],
        }),
        Option::None => Ok(()),
    }
}

impl Saturation {
    /// Every kind, in declaration order.
    pub const ALL: [Saturation; 8] = [
        Saturation::Logistic,
        Saturation::InverseScaledLogistic,
        Saturation::MichaelisMenten,
        Saturation::Hill,
        Saturation::HillSigmoid,
        Saturation::Tanh,
        Saturation::Root,
        Saturation::None,
    ];

    /// The kind for a PyMC-Marketing lookup name (`"logistic"`, `"hill_sigmoid"`, …;
    /// `"none"` and `"no_saturation"` both give [`Saturation::None`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "logistic" => Saturation::Logistic,
            "inverse_scaled_logistic" => Saturation::InverseScaledLogistic,
            "michaelis_menten" => Saturation::MichaelisMenten,
            "hill" => Saturation::Hill,
            "hill_sigmoid" => Saturation::HillSigmoid,
            "tanh" => Saturation::Tanh,
            "root" => Saturation::Root,
            "none" | "no_saturation" => Saturation::None,
            _ => return Option::None,
        })
    }

    /// The lookup name.
    pub fn name(&self) -> &'static str {
        match self {
            Saturation::Logistic => "logistic",
            Saturation::InverseScaledLogistic => "inverse_scaled_logistic",
            Saturation::MichaelisMenten => "michaelis_menten",
            Saturation::Hill => "hill",
            Saturation::HillSigmoid => "hill_sigmoid",
            Saturation::Tanh => "tanh",
            Saturation::Root => "root",
            Saturation::None => "none",
        }
    }

    /// Parameter names as PyMC-Marketing names them (without the `saturation_` prefix).
    pub fn parameters(&self) -> &'static [&'static str] {
        match self {
            Saturation::Logistic | Saturation::InverseScaledLogistic => &["lam", "beta"],
            Saturation::MichaelisMenten => &["alpha", "lam"],
            Saturation::Hill => &["slope", "kappa", "beta"],
            Saturation::HillSigmoid => &["sigma", "beta", "lam"],
            Saturation::Tanh => &["b", "c"],
            Saturation::Root => &["alpha", "beta"],
            Saturation::None => &["beta"],
        }
    }

    /// The domain of each parameter, in the order of [`Saturation::parameters`].
    pub fn domains(&self) -> &'static [Domain] {
        use Domain as D;
        match self {
            Saturation::Logistic => &[D::NonNegative, D::Finite],
            Saturation::InverseScaledLogistic => &[D::Positive, D::Finite],
            Saturation::MichaelisMenten => &[D::Finite, D::Positive],
            Saturation::Hill => &[D::Exponent, D::Positive, D::Finite],
            Saturation::HillSigmoid => &[D::Finite, D::Finite, D::Finite],
            Saturation::Tanh => &[D::Positive, D::Positive],
            Saturation::Root => &[D::Positive, D::Finite],
            Saturation::None => &[D::Finite],
        }
    }

    /// Checks that `params` lie in the curve's domain (finite, and positive where the
    /// formula divides by them or raises to them).
    pub fn check(&self, params: &[f64]) -> Result<(), ParameterDomainError> {
        check_domain(params, self.domains())
    }

    /// Whether g(·; ψ) is concave on a ≥ 0: logistic, inverse_scaled_logistic,
    /// michaelis_menten and tanh with a non-negative scale, root with α ≤ 1 and hill
    /// with slope ≤ 1 (β ≥ 0), none; never hill_sigmoid (S-shaped).
    ///
    /// ```
    /// use mmm_budget::Saturation;
    /// assert!(Saturation::Hill.is_concave(&[0.8, 1.0, 2.0]));
    /// assert!(!Saturation::Hill.is_concave(&[2.5, 1.0, 2.0]));
    /// ```
    pub fn is_concave(&self, p: &[f64]) -> bool {
        match self {
            Saturation::Logistic | Saturation::InverseScaledLogistic => p[1] >= 0.0,
            Saturation::MichaelisMenten => p[0] >= 0.0,
            Saturation::Tanh => true,
            Saturation::Root => p[0] <= 1.0 && p[1] >= 0.0,
            Saturation::Hill => p[0] <= 1.0 && p[2] >= 0.0,
            Saturation::HillSigmoid => false,
            Saturation::None => true,
        }
    }

    /// g(a; ψ).
    #[inline]
    pub fn value(&self, a: f64, p: &[f64]) -> f64 {
        match self {
            Saturation::Logistic => p[1] * logistic(a, p[0]),
            Saturation::InverseScaledLogistic => p[1] * logistic(a, LN_3 / p[0]),
            Saturation::MichaelisMenten => p[0] * a / (p[1] + a),
            Saturation::Hill => {
                let (s, k) = (p[0], p[1]);
                p[2] * (1.0 - k.powf(s) / (k.powf(s) + a.powf(s)))
            }
            Saturation::HillSigmoid => {
                let (sigma, beta, lam) = (p[0], p[1], p[2]);
                sigma / (1.0 + (-beta * (a - lam)).exp()) - sigma / (1.0 + (beta * lam).exp())
            }
            Saturation::Tanh => p[0] * (a / (p[0] * p[1])).tanh(),
            Saturation::Root => p[1] * a.powf(p[0]),
            Saturation::None => p[0] * a,
        }
    }

    /// [g, g', g''] at `a` ≥ 0: the value and the first two derivatives in `a`.
    /// At a = 0 the one-sided limits are returned (±∞ where the curve is not
    /// differentiable there, e.g. `hill` with slope < 1 or `root` with α < 1).
    #[inline]
    pub fn derivatives(&self, a: f64, p: &[f64]) -> [f64; 3] {
        match self {
            Saturation::Logistic => logistic_derivatives(a, p[0], p[1]),
            Saturation::InverseScaledLogistic => logistic_derivatives(a, LN_3 / p[0], p[1]),
            Saturation::MichaelisMenten => {
                let (alpha, lam) = (p[0], p[1]);
                let d = 1.0 / (lam + a);
                let g1 = alpha * lam * d * d;
                [alpha * a * d, g1, -2.0 * g1 * d]
            }
            Saturation::Hill => hill_derivatives(a, p[0], p[1], p[2]),
            Saturation::HillSigmoid => {
                let (sigma, beta, lam) = (p[0], p[1], p[2]);
                let s = 1.0 / (1.0 + (-beta * (a - lam)).exp());
                let s1 = s * (1.0 - s);
                [
                    sigma * s - sigma / (1.0 + (beta * lam).exp()),
                    sigma * beta * s1,
                    sigma * beta * beta * s1 * (1.0 - 2.0 * s),
                ]
            }
            Saturation::Tanh => {
                let (b, c) = (p[0], p[1]);
                let u = a / (b * c);
                let t = u.tanh();
                let e = (-2.0 * u).exp();
                let sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
                [b * t, sech2 / c, -2.0 * t * sech2 / (b * c * c)]
            }
            Saturation::Root => {
                let (alpha, beta) = (p[0], p[1]);
                let g2 = if alpha == 1.0 {
                    0.0
                } else {
                    beta * alpha * (alpha - 1.0) * a.powf(alpha - 2.0)
                };
                [beta * a.powf(alpha), beta * alpha * a.powf(alpha - 1.0), g2]
            }
            Saturation::None => [p[0] * a, p[0], 0.0],
        }
    }
}

impl Saturation {
    /// [g(xq), q g'(xq), q² g''(xq)]: the terms of r, r' and r'' for one period's
    /// adstocked unit pattern q and per-period budget x.
    ///
    /// For the power-law curves (`root`, `hill`) and x > 0 they are computed as
    /// q g' = α g / x and q² g'' = α(α−1) g / x² (root) and the like, which stay
    /// finite where xq is so small that g'(xq) or g''(xq) alone would overflow.
    #[inline]
    pub fn term_derivatives(&self, x: f64, q: f64, p: &[f64]) -> [f64; 3] {
        match self {
            Saturation::Root if x > 0.0 => {
                let (alpha, beta) = (p[0], p[1]);
                let g = beta * (x * q).powf(alpha);
                let g1 = alpha * g / x;
                [g, g1, (alpha - 1.0) * g1 / x]
            }
            Saturation::Hill if x > 0.0 => {
                let (s, kappa, beta) = (p[0], p[1], p[2]);
                let u = (x * q / kappa).powf(s);
                let v = 1.0 / (1.0 + u);
                let g1 = beta * s * u * v * v / x;
                [beta * (1.0 - v), g1, g1 * v * (s - 1.0 - u - s * u) / x]
            }
            _ => {
                let [g, g1, g2] = self.derivatives(x * q, p);
                [g, q * g1, q * q * g2]
            }
        }
    }
}

impl fmt::Display for Saturation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// ln 3, PyMC-Marketing's `eps` of `inverse_scaled_logistic_saturation`.
pub(crate) const LN_3: f64 = 1.098_612_288_668_109_8;

/// (1 − e^(−λa)) / (1 + e^(−λa)), as PyMC-Marketing writes it.
#[inline]
fn logistic(a: f64, lam: f64) -> f64 {
    let e = (-lam * a).exp();
    (1.0 - e) / (1.0 + e)
}

/// With t = (1 − e^(−λa)) / (1 + e^(−λa)) = tanh(λa/2): g = βt, g' = β(λ/2)(1 − t²), g'' = −β(λ²/2) t (1 − t²).
#[inline]
fn logistic_derivatives(a: f64, lam: f64, beta: f64) -> [f64; 3] {
    let h = 0.5 * lam;
    let t = logistic(a, lam);
    // 1 − t² = 4e/(1 + e)², without the cancellation of 1 − t² where t → 1.
    let e = (-lam * a).exp();
    let sech2 = 4.0 * e / ((1.0 + e) * (1.0 + e));
    [beta * t, beta * h * sech2, -2.0 * beta * h * h * t * sech2]
}

/// With u = (a/κ)^s and h = u/(1+u):
/// h' = s u / (a (1+u)²), h'' = s u (s − 1 − u − s u) / (a² (1+u)³); limits at a = 0.
#[inline]
fn hill_derivatives(a: f64, s: f64, kappa: f64, beta: f64) -> [f64; 3] {
    if a == 0.0 {
        let (g1, g2) = if s == 1.0 {
            (1.0 / kappa, -2.0 / (kappa * kappa))
        } else if s < 1.0 {
            (f64::INFINITY, f64::NEG_INFINITY)
        } else if s < 2.0 {
            (0.0, f64::INFINITY)
        } else if s == 2.0 {
            (0.0, 2.0 / (kappa * kappa))
        } else {
            (0.0, 0.0)
        };
        return [0.0, beta * g1, beta * g2];
    }
    let u = (a / kappa).powf(s);
    let v = 1.0 / (1.0 + u);
    let h1 = s * u * v * v / a;
    let h2 = h1 * v * (s - 1.0 - u - s * u) / a;
    [beta * (1.0 - v), beta * h1, beta * h2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln3_is_ln3() {
        assert!((LN_3 - 3f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn names_round_trip() {
        for s in Saturation::ALL {
            assert_eq!(Saturation::from_name(s.name()), Some(s));
            assert_eq!(s.domains().len(), s.parameters().len());
        }
    }
}
