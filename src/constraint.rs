//! Constraints beyond bounds and the budget: linear ones over cells, parsed from
//! strings, and nonlinear ones: functions given with gradients, or outcomes of the
//! draws' responses.
//!
//! The string grammar (whitespace free):
//!
//! ```text
//! constraint := expr ("<=" | ">=" | "==") expr
//! expr       := term (("+" | "-") term)*
//! term       := unary (("*" | "/") unary)*      (a product may hold one cell sum at most)
//! unary      := "-" unary | atom
//! atom       := number | "total" | "sum(" [key "=" value ("," key "=" value)*] ")"
//!             | name | "(" expr ")"
//! ```
//!
//! `total` is the total budget per period; `sum(channel=tv, geo=north)` is the summed
//! per-period budget of the optimized cells that match; a bare `name` is a channel
//! when the model has no extra dims; values may be quoted (`"Brand A"`); numbers may
//! use scientific notation. Examples: `sum(channel=tv) <= 0.3 * total`,
//! `tv + 2 * radio <= 400`, `sum(product="Brand A") >= 0.5 * total`.

use crate::error::{Error, Result};
use crate::model::{CellInfo, Model};
use crate::utility::{Measure, Utility};
use std::fmt;

/// The relation of a constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sense {
    /// lhs ≤ rhs.
    LessEqual,
    /// lhs ≥ rhs.
    GreaterEqual,
    /// lhs = rhs.
    Equal,
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sense::LessEqual => "<=",
            Sense::GreaterEqual => ">=",
            Sense::Equal => "==",
        })
    }
}

/// A linear constraint a·x (sense) b over the optimized cells' per-period budgets.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 2, geos: 1, draws: 5 }, 0);
/// let problem = Problem::new(&model, &scenario).unwrap();
/// let c = LinearConstraint::parse("ch0 + 2 * ch1 <= 0.5 * total", &model, &problem.cells, problem.total_budget).unwrap();
/// assert_eq!(c.coefficients, vec![1.0, 2.0]);
/// assert_eq!(c.rhs, 0.5 * problem.total_budget);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct LinearConstraint {
    /// A name for reports (the source string, for parsed constraints).
    pub name: String,
    /// a: one coefficient per optimized cell.
    pub coefficients: Vec<f64>,
    /// The relation.
    pub sense: Sense,
    /// b.
    pub rhs: f64,
}

/// A function of the allocation: writes ∇c into `gradient` and returns c(x).
pub type ConstraintFn = Box<dyn FnMut(&[f64], &mut [f64]) -> Result<f64> + Send>;

/// A function of the allocation that writes the diagonal of ∇²c(x) into its second
/// argument.
pub type CurvatureFn = Box<dyn FnMut(&[f64], &mut [f64]) -> Result<()> + Send>;

/// A nonlinear constraint c(x) (sense) rhs: a function of the allocation given in
/// code, or an outcome of the draws' responses.
///
/// ```
/// use mmm_budget::*;
/// // Σ x_c² ≤ 10
/// let c = NonlinearConstraint::new("squares", Sense::LessEqual, 10.0, |x: &[f64], g: &mut [f64]| {
///     for (g, x) in g.iter_mut().zip(x) { *g = 2.0 * x; }
///     Ok(x.iter().map(|v| v * v).sum())
/// })
/// .with_curvature(|_x: &[f64], h: &mut [f64]| {
///     h.fill(2.0); // ∂²c/∂x_c² = 2
///     Ok(())
/// });
/// assert_eq!(c.name, "squares");
/// assert!(c.has_curvature());
/// // The 10% CVaR of the response at least 4000.
/// let tail = NonlinearConstraint::outcome(
///     "cvar(0.9) >= 4000", Sense::GreaterEqual, 4000.0, Utility::parse("cvar(0.9)").unwrap());
/// assert!(!tail.has_curvature());
/// ```
pub struct NonlinearConstraint {
    /// A name for reports.
    pub name: String,
    /// The relation.
    pub sense: Sense,
    /// The right-hand side.
    pub rhs: f64,
    /// What c(x) is.
    pub function: ConstraintFunction,
}

/// What a nonlinear constraint's c(x) is.
pub enum ConstraintFunction {
    /// A function of the allocation given in code.
    Code {
        /// c(x) and its gradient.
        value: ConstraintFn,
        /// The diagonal of ∇²c(x), for a c whose Hessian is diagonal (a sum of
        /// functions of one cell each, plus linear terms). When every nonlinear
        /// constraint gives it, the solver's QPs use the exact Hessian of the
        /// Lagrangian, diag(∇²f) + Σ_j z_j diag(∇²c_j), and converge as Newton's method
        /// does; without it they use a quasi-Newton (BFGS) model of the constraints'
        /// curvature, slower and less dependable (README, "Known limits").
        curvature: Option<CurvatureFn>,
    },
    /// An outcome of the draws' responses: c(x) = U(R(x), x) for a utility as the
    /// objectives take (`mean`, `quantile(0.05)`, `cvar(0.9)`, `mean - 0.5 * std`),
    /// evaluated with the solver's evaluator (one more weighted pass per iterate; its
    /// quantiles smoothed as in objectives). The mean's curvature is exact (its
    /// Hessian is diagonal); the others' is learnt by BFGS.
    Outcome(Utility),
}

impl NonlinearConstraint {
    /// A nonlinear constraint from a closure.
    pub fn new(
        name: impl Into<String>,
        sense: Sense,
        rhs: f64,
        function: impl FnMut(&[f64], &mut [f64]) -> Result<f64> + Send + 'static,
    ) -> Self {
        NonlinearConstraint {
            name: name.into(),
            sense,
            rhs,
            function: ConstraintFunction::Code {
                value: Box::new(function),
                curvature: None,
            },
        }
    }

    /// An outcome constraint: `utility` of the draws' responses (sense) rhs.
    pub fn outcome(name: impl Into<String>, sense: Sense, rhs: f64, utility: Utility) -> Self {
        NonlinearConstraint {
            name: name.into(),
            sense,
            rhs,
            function: ConstraintFunction::Outcome(utility),
        }
    }

    /// Adds the diagonal of ∇²c(x) to a constraint given in code (see
    /// [`ConstraintFunction::Code`]; a c whose Hessian has off-diagonal entries must
    /// not give it). An outcome constraint is returned unchanged.
    pub fn with_curvature(
        mut self,
        curvature: impl FnMut(&[f64], &mut [f64]) -> Result<()> + Send + 'static,
    ) -> Self {
        if let ConstraintFunction::Code { curvature: c, .. } = &mut self.function {
            *c = Some(Box::new(curvature));
        }
        self
    }

    /// Whether the solver knows the exact diagonal of ∇²c: given in code, or an
    /// outcome that is the mean response.
    pub fn has_curvature(&self) -> bool {
        match &self.function {
            ConstraintFunction::Code { curvature, .. } => curvature.is_some(),
            ConstraintFunction::Outcome(u) => u.has_constant_weights(),
        }
    }
}

impl fmt::Debug for NonlinearConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NonlinearConstraint({:?} {} {})",
            self.name, self.sense, self.rhs
        )
    }
}

/// An outcome constraint from a string: a measure of the draws' responses, as the
/// objectives take, against a number: `mean_response >= 5000`, `quantile(0.05) >=
/// 3000`, `cvar(0.9) >= 4000`, `mean - 0.5 * std >= 100`; or the return on the spend
/// over the window, `roi >= 2.5` (held as mean − 2.5 N spend ≥ 0, linear in the
/// mean and the spend, so its curvature is exact).
///
/// ```
/// use mmm_budget::*;
/// let c = OutcomeConstraint::parse("cvar(0.9) >= 4000", 8).unwrap().unwrap();
/// assert_eq!((c.sense, c.rhs), (Sense::GreaterEqual, 4000.0));
/// assert_eq!(c.utility, Utility::parse("cvar(0.9)").unwrap());
/// assert!(OutcomeConstraint::parse("sum(channel=tv) <= 300", 8).is_none()); // a linear one
/// // roi >= 2.5 over 8 periods: mean − 2.5 · 8 · spend ≥ 0.
/// let roi = OutcomeConstraint::parse("roi >= 2.5", 8).unwrap().unwrap();
/// assert_eq!((roi.utility.to_string(), roi.rhs), ("mean - 20 * spend".to_string(), 0.0));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct OutcomeConstraint {
    /// The source string.
    pub name: String,
    /// The measure.
    pub utility: Utility,
    /// The relation.
    pub sense: Sense,
    /// The level.
    pub rhs: f64,
}

/// The names that start an outcome constraint.
const MEASURE_NAMES: [&str; 24] = [
    "diversification_ratio",
    "diversification_gap",
    "roi",
    "spend",
    "mean",
    "mean_response",
    "average_response",
    "std",
    "quantile",
    "var",
    "value_at_risk",
    "cvar",
    "conditional_value_at_risk",
    "tail_distance",
    "mean_tightness",
    "mean_tightness_score",
    "sharpe",
    "sharpe_ratio",
    "raroc",
    "adjusted_var",
    "adjusted_value_at_risk_score",
    "portfolio_entropy",
    "minimize",
    "maximize",
];

impl OutcomeConstraint {
    /// `None` where the left side does not start with a measure's name (a linear
    /// constraint, then); else the constraint, or the 1-based column and what is wrong.
    pub fn parse(
        text: &str,
        num_periods: usize,
    ) -> Option<std::result::Result<Self, (usize, String)>> {
        let lhs_start = text.len() - text.trim_start().len();
        let first: String = text[lhs_start..]
            .trim_start_matches(['-', '+', ' '])
            .chars()
            .skip_while(|c| c.is_ascii_digit() || *c == '.' || *c == '*' || *c == ' ')
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !MEASURE_NAMES.contains(&first.as_str()) || first == "minimize" || first == "maximize" {
            return None;
        }
        let found = [
            (">=", Sense::GreaterEqual),
            ("<=", Sense::LessEqual),
            ("==", Sense::Equal),
        ]
        .into_iter()
        .filter_map(|(op, sense)| text.find(op).map(|at| (at, op, sense)))
        .min_by_key(|(at, ..)| *at);
        let col = |at: usize| text[..at].chars().count() + 1;
        let Some((at, op, sense)) = found else {
            return Some(Err((
                col(text.len()),
                "expected >=, <= or == and a number".into(),
            )));
        };
        let roi = text[..at].trim() == "roi";
        let utility = if roi {
            Utility::mean()
        } else {
            match Utility::parse(&text[..at]) {
                Ok(u) => u,
                Err((c, m)) => return Some(Err((c, m))),
            }
        };
        let rhs_text = &text[at + op.len()..];
        let rhs = match rhs_text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                let skip = rhs_text.len() - rhs_text.trim_start().len();
                return Some(Err((
                    col(at + op.len() + skip),
                    "expected a finite number on the right of an outcome constraint".into(),
                )));
            }
        };
        if roi {
            // μ / (N Σx) (sense) k  ⇔  μ − k N Σx (sense) 0, for Σx > 0.
            let mut utility = utility;
            utility
                .terms
                .push((-rhs * num_periods as f64, Measure::Spend));
            return Some(Ok(OutcomeConstraint {
                name: text.to_string(),
                utility,
                sense,
                rhs: 0.0,
            }));
        }
        // c DR (sense) f  ⇔  Σ_c x_c σ_c − (f/c) sd_d(Σ_c x_c r_dc) (sense') 0: the
        // ratio's floor without its quotient (`Measure::DiversificationGap`).
        if let [(c, Measure::DiversificationRatio)] = utility.terms[..]
            && c != 0.0
        {
            let sense = match sense {
                Sense::GreaterEqual if c < 0.0 => Sense::LessEqual,
                Sense::LessEqual if c < 0.0 => Sense::GreaterEqual,
                other => other,
            };
            return Some(Ok(OutcomeConstraint {
                name: text.to_string(),
                utility: Utility {
                    terms: vec![(1.0, Measure::DiversificationGap(rhs / c))],
                },
                sense,
                rhs: 0.0,
            }));
        }
        Some(Ok(OutcomeConstraint {
            name: text.to_string(),
            utility,
            sense,
            rhs,
        }))
    }
}

/// A parse failure: the byte offset where it starts and what went wrong.
struct ParseError {
    at: usize,
    message: String,
}

type Parsed<T> = std::result::Result<T, ParseError>;

/// An affine expression: coefficients per optimized cell, and a constant.
#[derive(Clone)]
struct Affine {
    coefficients: Vec<f64>,
    constant: f64,
}

impl Affine {
    fn constant(n: usize, v: f64) -> Self {
        Affine {
            coefficients: vec![0.0; n],
            constant: v,
        }
    }

    fn is_constant(&self) -> bool {
        self.coefficients.iter().all(|&c| c == 0.0)
    }

    fn scale(mut self, k: f64) -> Self {
        self.coefficients.iter_mut().for_each(|c| *c *= k);
        self.constant *= k;
        self
    }

    fn add(mut self, other: &Affine, sign: f64) -> Self {
        for (a, b) in self.coefficients.iter_mut().zip(&other.coefficients) {
            *a += sign * b;
        }
        self.constant += sign * other.constant;
        self
    }
}

/// The deepest nesting of parentheses and unary minus a constraint may have.
pub const MAX_NESTING: usize = 64;

/// The largest ratio between a constraint's coefficients: beyond it the QP's rows
/// cannot be held to its tolerance.
pub const MAX_COEFFICIENT_SPREAD: f64 = 1e12;

/// The longest constraint text accepted, in characters.
pub const MAX_CONSTRAINT_CHARS: usize = 10_000;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Parentheses and unary minus open at `pos`.
    depth: usize,
    model: &'a Model,
    cells: &'a [CellInfo],
    total: f64,
}

impl LinearConstraint {
    /// Parses a constraint string over the optimized `cells` of `model`; `total` is
    /// the total budget per period.
    pub fn parse(text: &str, model: &Model, cells: &[CellInfo], total: f64) -> Result<Self> {
        Self::parse_indexed(text, 0, model, cells, total)
    }

    pub(crate) fn parse_indexed(
        text: &str,
        index: usize,
        model: &Model,
        cells: &[CellInfo],
        total: f64,
    ) -> Result<Self> {
        let shown = crate::error::truncated(text, 200);
        let chars = text.chars().count();
        if chars > MAX_CONSTRAINT_CHARS {
            return Err(Error::Constraint {
                context: "scenario".into(),
                index,
                text: shown,
                column: MAX_CONSTRAINT_CHARS + 1,
                message: format!("{chars} characters: expected at most {MAX_CONSTRAINT_CHARS}"),
            });
        }
        let mut p = Parser {
            text,
            pos: 0,
            depth: 0,
            model,
            cells,
            total,
        };
        let parsed = p.constraint().map_err(|e| Error::Constraint {
            context: "scenario".into(),
            index,
            text: shown.clone(),
            column: text[..e.at.min(text.len())].chars().count() + 1,
            message: e.message,
        })?;
        // Coefficients that the QP can hold: finite with the budget, and within
        // MAX_COEFFICIENT_SPREAD of each other.
        let (lo, hi) = parsed
            .coefficients
            .iter()
            .filter(|a| **a != 0.0)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), a| {
                (lo.min(a.abs()), hi.max(a.abs()))
            });
        let scale = total.max(1.0);
        let fails = if !(hi * scale).is_finite() || !(parsed.rhs.is_finite()) {
            Some("a coefficient or the right-hand side overflows with the budget".to_string())
        } else if hi / lo > MAX_COEFFICIENT_SPREAD {
            Some(format!(
                "coefficients from {lo:e} to {hi:e}: expected within a factor {MAX_COEFFICIENT_SPREAD:e} of each other"
            ))
        } else {
            None
        };
        match fails {
            Some(message) => Err(Error::Constraint {
                context: "scenario".into(),
                index,
                text: shown,
                column: 1,
                message,
            }),
            None => Ok(parsed),
        }
    }
}

impl Parser<'_> {
    fn n(&self) -> usize {
        self.cells.len()
    }

    fn fail<T>(&self, at: usize, message: impl Into<String>) -> Parsed<T> {
        Err(ParseError {
            at,
            message: message.into(),
        })
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.text[self.pos..].chars().next() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.text[self.pos..].chars().next()
    }

    fn eat(&mut self, s: &str) -> bool {
        self.skip_ws();
        if self.text[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn found(&mut self) -> String {
        match self.peek() {
            None => "end of input".into(),
            Some(_) => {
                let rest: String = self.text[self.pos..].chars().take(12).collect();
                format!("{rest:?}")
            }
        }
    }

    fn constraint(&mut self) -> Parsed<LinearConstraint> {
        let lhs = self.expr()?;
        let op_at = {
            self.skip_ws();
            self.pos
        };
        let sense = if self.eat("<=") {
            Sense::LessEqual
        } else if self.eat(">=") {
            Sense::GreaterEqual
        } else if self.eat("==") {
            Sense::Equal
        } else {
            let found = self.found();
            return self.fail(
                op_at,
                format!("expected an operator <=, >= or ==, or + - * /; found {found}"),
            );
        };
        let rhs = self.expr()?;
        if self.peek().is_some() {
            let (at, found) = (self.pos, self.found());
            return self.fail(at, format!("expected end of constraint; found {found}"));
        }
        let diff = lhs.add(&rhs, -1.0);
        if diff.is_constant() {
            return self.fail(0, "the constraint involves no optimized cell");
        }
        Ok(LinearConstraint {
            name: self.text.trim().to_string(),
            coefficients: diff.coefficients,
            sense,
            rhs: -diff.constant,
        })
    }

    fn expr(&mut self) -> Parsed<Affine> {
        let mut acc = self.term()?;
        loop {
            if self.eat("+") {
                acc = acc.add(&self.term()?, 1.0);
            } else if self.eat("-") {
                acc = acc.add(&self.term()?, -1.0);
            } else {
                return Ok(acc);
            }
        }
    }

    fn term(&mut self) -> Parsed<Affine> {
        let mut acc = self.unary()?;
        loop {
            self.skip_ws();
            let at = self.pos;
            if self.eat("*") {
                let rhs = self.unary()?;
                acc = match (acc.is_constant(), rhs.is_constant()) {
                    (_, true) => acc.scale(rhs.constant),
                    (true, false) => rhs.scale(acc.constant),
                    (false, false) => {
                        return self.fail(at, "a product of two cell sums is not linear");
                    }
                };
            } else if self.eat("/") {
                let rhs = self.unary()?;
                if !rhs.is_constant() {
                    return self.fail(at, "division by a cell sum is not linear");
                }
                if rhs.constant == 0.0 {
                    return self.fail(at, "division by zero");
                }
                acc = acc.scale(1.0 / rhs.constant);
            } else {
                return Ok(acc);
            }
        }
    }

    /// One level deeper (a parenthesis or a unary minus), within [`MAX_NESTING`].
    fn deeper(&mut self, at: usize) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return self.fail(at, format!("nesting deeper than {MAX_NESTING}"));
        }
        Ok(())
    }

    fn unary(&mut self) -> Parsed<Affine> {
        self.skip_ws();
        let at = self.pos;
        if self.eat("-") {
            self.deeper(at)?;
            let inner = self.unary()?.scale(-1.0);
            self.depth -= 1;
            return Ok(inner);
        }
        self.atom()
    }

    fn atom(&mut self) -> Parsed<Affine> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            Some('(') => {
                self.deeper(at)?;
                self.pos += 1;
                let e = self.expr()?;
                if !self.eat(")") {
                    let (at, found) = (self.pos, self.found());
                    return self.fail(at, format!("expected ')'; found {found}"));
                }
                self.depth -= 1;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                self.number().map(|v| Affine::constant(self.n(), v))
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let name = self.identifier();
                match name.as_str() {
                    "total" => Ok(Affine::constant(self.n(), self.total)),
                    "sum" => self.sum(),
                    _ => self.bare_name(at, &name),
                }
            }
            Some('"') => {
                let name = self.quoted()?;
                self.bare_name(at, &name)
            }
            _ => {
                let found = self.found();
                self.fail(
                    at,
                    format!(
                        "expected a number, `total`, `sum(...)`, a channel or '('; found {found}"
                    ),
                )
            }
        }
    }

    fn number(&mut self) -> Parsed<f64> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
            end += 1;
        }
        if end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
            let mut e = end + 1;
            if e < bytes.len() && (bytes[e] == b'+' || bytes[e] == b'-') {
                e += 1;
            }
            if e < bytes.len() && bytes[e].is_ascii_digit() {
                while e < bytes.len() && bytes[e].is_ascii_digit() {
                    e += 1;
                }
                end = e;
            }
        }
        match self.text[start..end].parse::<f64>() {
            Ok(v) if v.is_finite() => {
                self.pos = end;
                Ok(v)
            }
            _ => self.fail(
                start,
                format!("expected a number; found {:?}", &self.text[start..end]),
            ),
        }
    }

    fn identifier(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        for c in self.text[start..].chars() {
            if c.is_alphanumeric() || c == '_' || c == '.' {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        self.text[start..self.pos].to_string()
    }

    fn quoted(&mut self) -> Parsed<String> {
        self.skip_ws();
        let start = self.pos;
        self.pos += 1; // the opening quote
        match self.text[self.pos..].find('"') {
            Some(len) => {
                let s = self.text[self.pos..self.pos + len].to_string();
                self.pos += len + 1;
                Ok(s)
            }
            None => self.fail(start, "unterminated quoted name"),
        }
    }

    fn value(&mut self) -> Parsed<String> {
        match self.peek() {
            Some('"') => self.quoted(),
            _ => {
                let at = self.pos;
                let v = self.identifier();
                if v.is_empty() {
                    let found = self.found();
                    return self.fail(at, format!("expected a coordinate; found {found}"));
                }
                Ok(v)
            }
        }
    }

    /// `sum(` has been read up to the name; reads the selector list.
    fn sum(&mut self) -> Parsed<Affine> {
        if !self.eat("(") {
            let (p, found) = (self.pos, self.found());
            return self.fail(p, format!("expected '(' after `sum`; found {found}"));
        }
        let dims = self.model.dim_names();
        let mut wanted: Vec<(String, String)> = vec![];
        if !self.eat(")") {
            loop {
                self.skip_ws();
                let key_at = self.pos;
                let key = self.identifier();
                if !dims.contains(&key.as_str()) {
                    return self.fail(
                        key_at,
                        format!("unknown dim {key:?}; expected one of {dims:?}"),
                    );
                }
                if !self.eat("=") {
                    let (p, found) = (self.pos, self.found());
                    return self.fail(p, format!("expected '=' after `{key}`; found {found}"));
                }
                self.skip_ws();
                let value_at = self.pos;
                let value = self.value()?;
                let k = dims.iter().position(|d| *d == key).unwrap_or(0);
                if !self.model.coords_of(k).contains(&value) {
                    return self.fail(
                        value_at,
                        format!(
                            "unknown coordinate {value:?} of `{key}`; expected one of {:?}",
                            self.model.coords_of(k)
                        ),
                    );
                }
                wanted.push((key, value));
                if self.eat(")") {
                    break;
                }
                if !self.eat(",") {
                    let (p, found) = (self.pos, self.found());
                    return self.fail(p, format!("expected ',' or ')'; found {found}"));
                }
            }
        }
        Ok(self.sum_of(&wanted))
    }

    /// Σ x_c over the optimized cells whose coordinates match every `(dim, value)`.
    fn sum_of(&self, wanted: &[(String, String)]) -> Affine {
        let coefficients = self
            .cells
            .iter()
            .map(|c| {
                let hit = wanted.iter().all(|(d, v)| c.coord(d) == Some(v.as_str()));
                if hit { 1.0 } else { 0.0 }
            })
            .collect();
        Affine {
            coefficients,
            constant: 0.0,
        }
    }

    fn bare_name(&mut self, at: usize, name: &str) -> Parsed<Affine> {
        if !self.model.dims.is_empty() {
            return self.fail(
                at,
                format!(
                    "bare name {name:?}: the model has dims {:?}; write sum(channel={name}, …)",
                    self.model.dim_names()
                ),
            );
        }
        if !self.model.channels.iter().any(|c| c == name) {
            return self.fail(
                at,
                format!(
                    "unknown channel {name:?}; expected one of {:?}",
                    self.model.channels
                ),
            );
        }
        Ok(self.sum_of(&[("channel".to_string(), name.to_string())]))
    }
}
