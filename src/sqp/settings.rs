//! The solver's settings: plain fields, a builder, `validate`.

use super::Tuning;
use crate::error::{Error, Result};

/// How the QP's Hessian is formed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HessianMode {
    /// Exact where the evaluator gives it (mean utility): with nonlinear constraints
    /// that all give their curvature ([`crate::NonlinearConstraint::with_curvature`]), the
    /// exact diagonal of the Lagrangian; with others the objective's exact diagonal
    /// plus a damped BFGS model of the constraints' curvature. For the mean with
    /// CVaRs (with no nonlinear constraints, or only ones that give their curvature),
    /// the exact Hessian: the diagonal plus the cells' coupling through the draws near
    /// each CVaR's quantile (diag + Σ v vᵀ, a few dozen terms). BFGS of the whole
    /// Lagrangian otherwise.
    #[default]
    Auto,
    /// The evaluator's diagonal curvature (plus the nonlinear constraints' where they
    /// all give it), regularised to positive definite.
    Exact,
    /// Damped BFGS on the Lagrangian, started from the regularised exact diagonal.
    Bfgs,
}

/// The most starts [`Settings::starts`] may ask for.
pub const MAX_STARTS: usize = 1000;

/// Solver settings.
///
/// ```
/// use mmm_budget::Settings;
/// let s = Settings::default().max_iter(50).gtol(1e-9);
/// assert!(s.validate().is_ok());
/// assert!(Settings::default().gtol(-1.0).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Iteration limit.
    pub max_iter: usize,
    /// Wall-time limit in seconds over all the starts (default an hour; ∞: none).
    pub time_limit: f64,
    /// KKT residual tolerance (scaled: marginal returns relative to U₀ per budget unit s).
    pub gtol: f64,
    /// Constraint violation tolerance (relative to each constraint's scale).
    pub ctol: f64,
    /// Relative objective change below which progress is deemed stalled.
    pub ftol: f64,
    /// Step size (‖Δx‖∞ / s) below which progress is deemed stalled.
    pub xtol: f64,
    /// 0 silent, 1 a closing report, 2 a line per iteration (on stderr).
    pub verbose: u8,
    /// How the QP's Hessian is formed.
    pub hessian: HessianMode,
    /// A start allocation (per period, over the optimized cells); default: the
    /// problem's start, else the budget spread evenly, projected onto the constraints.
    pub start: Option<Vec<f64>>,
    /// Solves from this many starts and returns the best (default 1). The first is
    /// [`Settings::start`] (or the default start); the others split the budget by
    /// weights drawn from a flat Dirichlet distribution (fixed seeds), projected onto
    /// the constraints. For S-shaped curves (`hill` with slope > 1, `hill_sigmoid`),
    /// where the solver returns a local optimum that depends on the start; a concave
    /// problem has one optimum and gains nothing. `time_limit` covers all the starts;
    /// a callback that stops the solve stops them all.
    pub starts: usize,
    /// The method's thresholds ([`Tuning`]); the defaults are what every figure in
    /// benches/NOTES.md was measured with.
    pub tuning: Tuning,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_iter: 200,
            time_limit: 3600.0,
            gtol: 1e-8,
            ctol: 1e-9,
            ftol: 1e-15,
            xtol: 1e-14,
            verbose: 0,
            hessian: HessianMode::Auto,
            start: None,
            starts: 1,
            tuning: Tuning::default(),
        }
    }
}

macro_rules! setter {
    ($name:ident, $t:ty) => {
        #[doc = concat!("Sets `", stringify!($name), "`.")]
        pub fn $name(mut self, v: $t) -> Self {
            self.$name = v;
            self
        }
    };
}

impl Settings {
    setter!(max_iter, usize);
    setter!(time_limit, f64);
    setter!(gtol, f64);
    setter!(ctol, f64);
    setter!(ftol, f64);
    setter!(xtol, f64);
    setter!(verbose, u8);
    setter!(hessian, HessianMode);
    setter!(starts, usize);
    setter!(tuning, Tuning);

    /// Sets the start allocation.
    pub fn start(mut self, x: Vec<f64>) -> Self {
        self.start = Some(x);
        self
    }

    /// Checks every field, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = out_of_range;
        if self.max_iter == 0 {
            return Err(bad("max_iter", 0.0, "an integer >= 1"));
        }
        if self.starts == 0 || self.starts > MAX_STARTS {
            return Err(bad("starts", self.starts as f64, "an integer in [1, 1000]"));
        }
        if self.time_limit.is_nan() || self.time_limit <= 0.0 {
            return Err(bad("time_limit", self.time_limit, "seconds > 0"));
        }
        for (field, v) in [
            ("gtol", self.gtol),
            ("ctol", self.ctol),
            ("ftol", self.ftol),
            ("xtol", self.xtol),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(bad(field, v, "a finite number >= 0"));
            }
        }
        if self.verbose > 2 {
            return Err(bad("verbose", self.verbose as f64, "0, 1 or 2"));
        }
        self.tuning.validate()
    }
}

/// The [`Error::Settings`] for a field out of range.
pub(super) fn out_of_range(field: &'static str, value: f64, expected: &'static str) -> Error {
    Error::Settings {
        context: "settings".into(),
        field,
        value: value.to_string(),
        expected,
    }
}
