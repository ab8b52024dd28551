//! Utilities over posterior draws: what the optimizer maximises, as a function
//! U(R_1, …, R_D) of the draws' responses.

use std::fmt;

/// A utility over draws.
///
/// ```
/// use mmm_budget::Utility;
/// let r = [1.0, 2.0, 6.0];
/// assert_eq!(Utility::Mean.value(&r), 3.0);
/// let mut u = [0.0; 3];
/// Utility::Mean.weights(&r, &mut u); // ∂U/∂R_d
/// assert_eq!(u, [1.0 / 3.0; 3]);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Utility {
    /// U = (1/D) Σ_d R_d (PyMC-Marketing's `average_response`).
    #[default]
    Mean,
}

impl Utility {
    /// The kind for its scenario name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "mean" | "average_response" => Some(Utility::Mean),
            _ => None,
        }
    }

    /// The scenario name.
    pub fn name(&self) -> &'static str {
        match self {
            Utility::Mean => "mean",
        }
    }

    /// U(R).
    pub fn value(&self, responses: &[f64]) -> f64 {
        match self {
            Utility::Mean => responses.iter().sum::<f64>() / responses.len() as f64,
        }
    }

    /// u_d = ∂U/∂R_d, written into `out`.
    pub fn weights(&self, responses: &[f64], out: &mut [f64]) {
        match self {
            Utility::Mean => out.fill(1.0 / responses.len() as f64),
        }
    }

    /// Whether ∂U/∂R is the same for every R (then one evaluator pass gives the
    /// value, gradient and curvature).
    pub fn has_constant_weights(&self) -> bool {
        matches!(self, Utility::Mean)
    }
}

impl fmt::Display for Utility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The q-quantile of `values` with linear interpolation at q(D−1) over the sorted
/// values (NumPy's default, as PyMC-Marketing uses it).
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let h = q * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}
