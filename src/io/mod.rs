//! Case files: `model.json`, `posterior.npz` and `scenario.json` in a folder, and
//! allocation files. Every error names the file, the field and the value.
//!
//! A case folder holds:
//! - `model.json`: `{"channels": [...], "dims": {"geo": [...]}, "adstock": {"kind":
//!   "geometric", "l_max": 8, "normalize": true}, "saturation": {"kind": "logistic"},
//!   "adstock_first": true, "channel_scale": number | array, "target_scale": number |
//!   array, "posterior": "posterior.npz", "posterior_dims": {"adstock_alpha":
//!   ["chain", "draw", "geo", "channel"], ...}}`;
//! - the posterior, an NPZ archive of float64 or float32 arrays named as
//!   PyMC-Marketing names them (`adstock_alpha`, `saturation_lam`, …);
//! - `scenario.json`: `{"num_periods": 12, "total_budget": 2000.0}` plus optional
//!   `budget_constraint`, `bounds`, `optimize`, `time_distribution`, `cost_per_unit`,
//!   `constraints`, `utility`, `start`, `options`.

mod model_file;
mod npz;
mod saved_model;
mod scenario_file;
mod write;

pub use model_file::load_model;
pub use npz::{
    MAX_HEADER_BYTES, MAX_NESTING as MAX_NPY_NESTING, NpyHeader, memory_budget,
    read_header as read_npy_header, read_npz,
};
pub use saved_model::{MODEL_TYPES, SUPPORTED_VERSIONS, SavedModel, load_saved_model};
pub use scenario_file::{load_allocation, load_scenario, settings_from_options};
pub use write::{write_case, write_csv, write_json, write_npz, write_text};

use crate::error::{Error, Result};
use crate::model::Model;
use crate::scenario::Scenario;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A case: a model and a scenario, and the files they came from.
#[derive(Clone, Debug)]
pub struct Case {
    /// The folder.
    pub dir: PathBuf,
    /// The model's file: `model.json`, or a model saved by PyMC-Marketing.
    pub model_path: PathBuf,
    /// The model with its posterior.
    pub model: Model,
    /// The scenario.
    pub scenario: Scenario,
    /// The posterior's file: the NPZ archive, or the saved model.
    pub posterior_path: PathBuf,
    /// The scenario file; `None` where the scenario was built otherwise (flags, code).
    pub scenario_path: Option<PathBuf>,
    /// The solver's settings from the scenario's `options` object.
    pub settings: crate::Settings,
}

/// Loads `dir/model.json` (with its posterior) and `dir/scenario.json`, or the
/// scenario from `scenario` when given.
pub fn load_case(dir: &Path, scenario: Option<&Path>) -> Result<Case> {
    let model_path = dir.join("model.json");
    let (model, posterior_path) = load_model(&model_path)?;
    let scenario_path = scenario.map_or_else(|| dir.join("scenario.json"), Path::to_path_buf);
    let (scenario, settings) = load_scenario(&scenario_path)?;
    Ok(Case {
        dir: dir.to_path_buf(),
        model_path,
        posterior_path,
        scenario_path: Some(scenario_path),
        model,
        scenario,
        settings,
    })
}

impl Case {
    /// Resolves the case into a [`crate::Problem`], naming the case's files in errors.
    pub fn problem(&self) -> Result<crate::Problem> {
        crate::Problem::new(&self.model, &self.scenario).map_err(|e| {
            let e = e
                .recontext("model", &self.model_path.display().to_string())
                .recontext("posterior", &self.posterior_path.display().to_string());
            match &self.scenario_path {
                Some(p) => e.recontext("scenario", &p.display().to_string()),
                None => e,
            }
        })
    }
}

pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}
