//! Typed errors. Every variant names where the bad input came from (a file, or
//! `model`/`scenario` for values built in code), the field, the value and what was
//! expected, so that the CLI can print one line that tells the user what to fix.

use std::path::PathBuf;

/// The library's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document is not valid JSON or does not have the expected structure.
    #[error("{path}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// serde_json's message, with line and column.
        message: String,
    },
    /// An NPY/NPZ archive could not be decoded.
    #[error("{path}: {message}")]
    Npz {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A netCDF file (a saved PyMC-Marketing model) could not be decoded.
    #[error("{path}: {message}")]
    Netcdf {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A required field (a file's attribute, variable or group) is missing.
    #[error("{context}: missing {field}: expected {expected}")]
    Missing {
        /// The file.
        context: String,
        /// What is missing: `attribute `adstock``, `variable `constant_data/target_scale``.
        field: String,
        /// What it should have held.
        expected: String,
    },
    /// A field holds a value outside what is allowed.
    #[error("{context}: {field} = {value}: expected {expected}")]
    InvalidValue {
        /// The file (or `model` / `scenario` for values built in code).
        context: String,
        /// The field, as a path: `bounds[2].max`, `saturation_lam[draw 3, cell tv]`.
        field: String,
        /// The offending value, printed.
        value: String,
        /// What would have been accepted.
        expected: String,
    },
    /// An array has the wrong shape.
    #[error("{context}: {field} has shape {found:?}, expected {expected}")]
    Shape {
        /// The file (or `model` / `scenario`).
        context: String,
        /// The array.
        field: String,
        /// Its shape.
        found: Vec<usize>,
        /// The shape (or rule) it should have followed.
        expected: String,
    },
    /// A required posterior array is missing.
    #[error("{context}: missing array `{name}` (needed by {needed_by}); arrays present: {present}")]
    MissingArray {
        /// The archive.
        context: String,
        /// The array's name.
        name: String,
        /// The transformation that needs it.
        needed_by: String,
        /// The names that are present, comma-separated.
        present: String,
    },
    /// A constraint string could not be parsed or refers to unknown cells.
    #[error("{context}: constraints[{index}] {text:?}: column {column}: {message}")]
    Constraint {
        /// The file (or `scenario`).
        context: String,
        /// Which constraint.
        index: usize,
        /// Its text.
        text: String,
        /// 1-based column where the problem starts.
        column: usize,
        /// What was found and what was expected.
        message: String,
    },
    /// Solver settings out of range.
    #[error("{context}: settings.{field} = {value}: expected {expected}")]
    Settings {
        /// Where the settings came from (`settings` or the scenario file's `options`).
        context: String,
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
    /// The QP solver (Clarabel) could not be set up, or failed where the method has
    /// no other way (a QP inside the iterations that nothing answers ends the solve
    /// as [`crate::Status::NumericalError`] instead).
    #[error("solver: {stage}: {message}")]
    Solver {
        /// Which QP: the projection of the start, the step's QP, …
        stage: &'static str,
        /// What Clarabel said.
        message: String,
    },
    /// A chart could not be drawn.
    #[error("chart `{chart}`: {message}")]
    Render {
        /// Which chart.
        chart: &'static str,
        /// What the plotting library said.
        message: String,
    },
    /// An evaluator failed (device lost, out of memory, …).
    #[error("evaluator `{backend}`: {message}")]
    Device {
        /// Which evaluator.
        backend: String,
        /// What happened.
        message: String,
    },
}

/// The most characters of a value from the input that an error message repeats.
pub const MAX_ECHO: usize = 200;

/// Shorthand for `Result<T, mmm_budget::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The same error with the context `from` (e.g. `"scenario"`) replaced by `to`
    /// (e.g. the file's path); other errors are returned unchanged.
    pub fn recontext(mut self, from: &str, to: &str) -> Self {
        match &mut self {
            Error::InvalidValue { context, .. }
            | Error::Shape { context, .. }
            | Error::MissingArray { context, .. }
            | Error::Missing { context, .. }
            | Error::Constraint { context, .. }
            | Error::Settings { context, .. }
                if context == from =>
            {
                *context = to.to_string()
            }
            _ => {}
        }
        self
    }

    /// An [`Error::InvalidValue`] from printable parts; a field or value longer than
    /// [`MAX_ECHO`] characters is cut there (with how much was left out), and either
    /// is put on one line.
    pub fn invalid(
        context: impl Into<String>,
        field: impl Into<String>,
        value: impl std::fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        // Numbers whose decimal form is long (1e308 has 309 digits) as a person reads
        // them.
        let compact = |s: String| match s.parse::<f64>() {
            Ok(v) if s.len() > 24 => readable_number(v),
            _ => s,
        };
        let echo = |s: String| truncated(&compact(s).replace(['\n', '\r'], " "), MAX_ECHO);
        Error::InvalidValue {
            context: context.into(),
            field: echo(field.into()),
            value: echo(value.to_string()),
            expected: expected.into(),
        }
    }
}

/// A message on one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max` characters of `s`, with how many were left out.
pub(crate) fn truncated(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let head: String = s.chars().take(max).collect();
    format!("{head}… ({} more characters)", n - max)
}

/// A number as a person reads it: as Rust writes it where that is short, else with six
/// decimals (1e-3 to 1e12) or in scientific form (`1e308`, `5e-324`).
pub(crate) fn readable_number(v: f64) -> String {
    let plain = format!("{v}");
    if plain.len() <= 16 {
        plain
    } else if v.abs() >= 1e-3 && v.abs() < 1e12 {
        format!("{v:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:e}")
    }
}
