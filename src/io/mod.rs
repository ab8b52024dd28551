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
    MAX_HEADER_BYTES, MAX_NESTING as MAX_NPY_NESTING, NpyHeader, StoredArray, ValueStream,
    memory_budget, open_npz, read_header as read_npy_header, read_npz,
};
pub use saved_model::{
    InferenceSource, MODEL_TYPES, SUPPORTED_VERSIONS, SavedModel, VariableShape,
    load_inference_data, load_saved_model,
};
pub use scenario_file::{
    MAX_HISTORY_BYTES, allocation_from_json, history_from_csv, load_allocation, load_scenario,
    scenario_from_json, settings_from_options,
};
pub use write::{scenario_json, write_case, write_csv, write_json, write_npz, write_text};

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

/// The posterior arrays an adstock and a saturation need, named
/// `{prefix}_{parameter}` (PyMC-Marketing's prefixes are `adstock` and `saturation`),
/// and what needs them, for errors.
pub(crate) fn parameter_names(
    adstock: crate::adstock::AdstockKind,
    saturation: crate::saturation::Saturation,
    adstock_prefix: &str,
    saturation_prefix: &str,
) -> (Vec<String>, String) {
    let names = adstock
        .parameters()
        .iter()
        .map(|p| format!("{adstock_prefix}_{p}"))
        .chain(
            saturation
                .parameters()
                .iter()
                .map(|p| format!("{saturation_prefix}_{p}")),
        )
        .collect();
    (
        names,
        format!("adstock `{adstock}` and saturation `{saturation}`"),
    )
}

/// The posterior arrays' axes checked against the model before any value is read:
/// each axis named `channel` or after one of the model's dims as long as its
/// coordinates, and every array with as many chains × draws as the first.
pub(crate) struct PosteriorAxes<'m> {
    model: &'m Model,
    context: String,
    /// The first array's name, chains and draws.
    first: Option<(String, usize, usize)>,
    /// Whether an axis named after none of the model's dims (nor chain, draw) is an
    /// error.
    known_dims_only: bool,
}

impl<'m> PosteriorAxes<'m> {
    /// A check for `model`'s posterior; errors name `context` (the file).
    pub(crate) fn new(model: &'m Model, context: impl Into<String>) -> Self {
        PosteriorAxes {
            model,
            context: context.into(),
            first: None,
            known_dims_only: false,
        }
    }

    /// The same check, refusing axes named after none of the model's dims (nor chain,
    /// draw).
    pub(crate) fn known_dims_only(mut self) -> Self {
        self.known_dims_only = true;
        self
    }

    /// Checks one array: `field` as errors name it, `name` as later arrays' errors
    /// refer to it, its `dims` and `shape`.
    pub(crate) fn check(
        &mut self,
        field: &str,
        name: &str,
        dims: &[String],
        shape: &[usize],
    ) -> Result<()> {
        let (names, lengths) = (self.model.dim_names(), self.model.dim_lengths());
        for (dim, &len) in dims.iter().zip(shape) {
            match names.iter().position(|n| n == dim) {
                Some(k) if lengths[k] != len => {
                    return Err(Error::Shape {
                        context: self.context.clone(),
                        field: field.to_string(),
                        found: shape.to_vec(),
                        expected: format!(
                            "length {} along `{dim}` (the model's coordinates)",
                            lengths[k]
                        ),
                    });
                }
                None if self.known_dims_only && dim != "chain" && dim != "draw" => {
                    return Err(Error::invalid(
                        &self.context,
                        format!("{field} dims"),
                        format!("{dims:?}"),
                        "dims among chain, draw, channel and the model's dims",
                    ));
                }
                _ => {}
            }
        }
        let along = |dim: &str| dims.iter().position(|d| d == dim).map_or(1, |k| shape[k]);
        let (chains, draws) = (along("chain"), along("draw"));
        match &self.first {
            Some((first, c, d)) if (*c, *d) != (chains, draws) => Err(Error::Shape {
                context: self.context.clone(),
                field: field.to_string(),
                found: shape.to_vec(),
                expected: format!("{} draws ({c} chains × {d}), as `{first}` has", c * d),
            }),
            Some(_) => Ok(()),
            None => {
                self.first = Some((name.to_string(), chains, draws));
                Ok(())
            }
        }
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
