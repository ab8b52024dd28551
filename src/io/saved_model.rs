//! A model saved by PyMC-Marketing (`mmm.save("fitted.nc")`), read directly.
//!
//! PyMC-Marketing writes the fitted model's ArviZ `InferenceData` as netCDF-4 (HDF5):
//! - the root attributes hold the configuration as JSON strings: `adstock`
//!   (`lookup_name`, `prefix`, `l_max`, `normalize`, `mode`), `saturation`
//!   (`lookup_name`, `prefix`), `adstock_first`, `channel_columns`, `dims` (the
//!   multidimensional `MMM` only), `time_varying_media`, plus `model_type`;
//! - the `posterior` group holds the draws, `{prefix}_{parameter}` over `(chain, draw,
//!   …)`, the coordinates of every dim, and the attribute `pymc_marketing_version`;
//! - the `constant_data` group holds `channel_scale` and `target_scale`.
//!
//! Supported: files written by PyMC-Marketing 0.19.x, of its multidimensional `MMM`
//! (`pymc_marketing.mmm.multidimensional.MMM`) or the one-dimensional `MMM`
//! (`pymc_marketing.mmm.MMM`). A file from another version, or one that lacks an
//! attribute or array the optimizer needs, is refused with one line naming it.
//!
//! The file is read with `netcdf-reader` (pure Rust, no C library): bounded reads
//! (`max_read_bytes` is the memory budget), no external files or links followed.

use super::{PosteriorAxes, memory_budget, parameter_names};
use crate::adstock::{Adstock, AdstockKind};
use crate::error::{Error, Result, truncated};
use crate::model::{Array, Dim, Model, Posterior};
use crate::saturation::Saturation;
use netcdf_reader::{NcFile, NcFormat, NcOpenOptions, NcType, NcVariable};
use serde_json::Value;
use std::path::Path;

/// The PyMC-Marketing versions whose saved files this reader knows: `0.19.x`.
pub const SUPPORTED_VERSIONS: &str = "0.19.x";

/// The `model_type` attributes of the model classes this reader knows.
pub const MODEL_TYPES: [&str; 2] = ["MMMM (Multi-Dimensional Marketing Mix Model)", "MMM"];

/// A model read from a PyMC-Marketing file, with where it came from.
#[derive(Clone, Debug)]
pub struct SavedModel {
    /// The model, its posterior included.
    pub model: Model,
    /// The PyMC-Marketing version that fitted it (the posterior's
    /// `pymc_marketing_version`).
    pub pymc_marketing_version: String,
    /// The model class (the root attribute `model_type`).
    pub model_type: String,
}

/// Reads a model saved by PyMC-Marketing's `MMM.save` (netCDF-4), posterior included.
///
/// ```no_run
/// let saved = mmm_budget::io::load_saved_model("fitted.nc".as_ref())?;
/// println!("{} cells, PyMC-Marketing {}", saved.model.num_cells(), saved.pymc_marketing_version);
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn load_saved_model(path: &Path) -> Result<SavedModel> {
    let ctx = path.display().to_string();
    let file = Saved::open(path)?;
    let version = file.version()?;
    let model_type = file.text_attribute("model_type")?;
    if !MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(Error::invalid(
            &ctx,
            "model_type",
            format!("{:?}", truncated(&model_type, 200)),
            format!("one of {MODEL_TYPES:?} (PyMC-Marketing's MMM classes)"),
        ));
    }
    let (adstock, adstock_prefix) = file.adstock()?;
    let (saturation, saturation_prefix) = file.saturation()?;
    let adstock_first = match file.json_attribute("adstock_first")? {
        Value::Bool(b) => b,
        v => return Err(Error::invalid(&ctx, "adstock_first", v, "true or false")),
    };
    match file.json_attribute_or_null("time_varying_media")? {
        Value::Null | Value::Bool(false) => {}
        v => {
            return Err(Error::invalid(
                &ctx,
                "time_varying_media",
                truncated(&v.to_string(), 200),
                "false: a time-varying media effect is not supported by the optimizer",
            ));
        }
    }
    let channels = string_list(
        &ctx,
        "channel_columns",
        file.json_attribute("channel_columns")?,
    )?;
    let dim_names = match file.json_attribute_or_null("dims")? {
        Value::Null => vec![],
        v => string_list(&ctx, "dims", v)?,
    };
    let coords_channel = file.coordinates("posterior", "channel")?;
    if coords_channel != channels {
        return Err(Error::invalid(
            &ctx,
            "posterior/channel",
            format!("{coords_channel:?}"),
            format!("the channels of the attribute channel_columns, {channels:?}"),
        ));
    }
    let mut dims = Vec::with_capacity(dim_names.len());
    for name in &dim_names {
        if name == "channel" || name == "chain" || name == "draw" {
            return Err(Error::invalid(
                &ctx,
                "dims",
                format!("{name:?}"),
                "dims other than channel, chain and draw",
            ));
        }
        dims.push(Dim {
            name: name.clone(),
            coords: file.coordinates("posterior", name)?,
        });
    }
    let mut model = Model {
        channels,
        dims,
        adstock,
        saturation,
        adstock_first,
        channel_scale: file.constant("channel_scale")?,
        target_scale: file.constant("target_scale")?,
        posterior: Posterior::default(),
    };
    model.validate_structure(&ctx)?;
    let (names, needed_by) = parameter_names(
        adstock.kind,
        saturation,
        &adstock_prefix,
        &saturation_prefix,
    );
    model.posterior = file.posterior(&model, &names, &needed_by)?;
    // The optimizer knows the parameters by PyMC-Marketing's default prefixes.
    if adstock_prefix != "adstock" || saturation_prefix != "saturation" {
        let arrays = std::mem::take(&mut model.posterior.arrays);
        for (name, array) in arrays {
            let renamed = if let Some(p) = name.strip_prefix(&format!("{adstock_prefix}_")) {
                format!("adstock_{p}")
            } else if let Some(p) = name.strip_prefix(&format!("{saturation_prefix}_")) {
                format!("saturation_{p}")
            } else {
                name
            };
            model.posterior.arrays.insert(renamed, array);
        }
    }
    Ok(SavedModel {
        model,
        pymc_marketing_version: version,
        model_type,
    })
}

/// An open netCDF-4 file and its name for messages.
struct Saved {
    file: NcFile,
    ctx: String,
}

impl Saved {
    fn open(path: &Path) -> Result<Self> {
        let ctx = path.display().to_string();
        let options = NcOpenOptions {
            max_read_bytes: usize::try_from(memory_budget()).unwrap_or(usize::MAX),
            ..NcOpenOptions::default()
        };
        let file = NcFile::open_with_options(path, options).map_err(|e| match e {
            netcdf_reader::Error::Io(source) => Error::Io {
                path: path.to_path_buf(),
                source,
            },
            e => Error::Netcdf {
                path: path.to_path_buf(),
                message: format!(
                    "{} (expected a model saved by PyMC-Marketing's MMM.save, netCDF-4)",
                    one_line(&e)
                ),
            },
        })?;
        if file.format() != NcFormat::Nc4 {
            return Err(Error::Netcdf {
                path: path.to_path_buf(),
                message: format!(
                    "a netCDF {:?} file: PyMC-Marketing saves netCDF-4 (HDF5) with a posterior group",
                    file.format()
                ),
            });
        }
        Ok(Saved { file, ctx })
    }

    fn failed(&self, what: &str, e: &netcdf_reader::Error) -> Error {
        Error::Netcdf {
            path: self.ctx.clone().into(),
            message: format!("{what}: {}", one_line(e)),
        }
    }

    fn missing(&self, field: impl Into<String>, expected: impl Into<String>) -> Error {
        Error::Missing {
            context: self.ctx.clone(),
            field: field.into(),
            expected: expected.into(),
        }
    }

    /// The PyMC-Marketing version, checked against [`SUPPORTED_VERSIONS`].
    fn version(&self) -> Result<String> {
        const FIELD: &str = "posterior.attrs.pymc_marketing_version";
        let group = self.file.group("posterior").map_err(|_| {
            self.missing(
                "group `posterior`",
                "the posterior draws, as PyMC-Marketing's MMM.save writes them",
            )
        })?;
        let version = group
            .attribute("pymc_marketing_version")
            .and_then(|a| a.value.as_string())
            .ok_or_else(|| {
                self.missing(
                    FIELD,
                    format!(
                        "the PyMC-Marketing version that fitted the model ({SUPPORTED_VERSIONS})"
                    ),
                )
            })?;
        if !version.starts_with("0.19.") {
            return Err(Error::invalid(
                &self.ctx,
                FIELD,
                format!("{:?}", truncated(&version, 100)),
                format!(
                    "a file from PyMC-Marketing {SUPPORTED_VERSIONS}; from another version, \
                     export a case folder with scripts/export_case.py"
                ),
            ));
        }
        Ok(version)
    }

    fn text_attribute(&self, name: &str) -> Result<String> {
        let attr = self.file.global_attribute(name).map_err(|_| {
            self.missing(
                format!("attribute `{name}`"),
                "the model's configuration, as PyMC-Marketing's MMM.save writes it",
            )
        })?;
        attr.value.as_string().ok_or_else(|| {
            Error::invalid(
                &self.ctx,
                format!("attribute `{name}`"),
                truncated(&format!("{:?}", attr.value), 200),
                "a string",
            )
        })
    }

    fn json_attribute(&self, name: &str) -> Result<Value> {
        let text = self.text_attribute(name)?;
        serde_json::from_str(&text).map_err(|e| {
            Error::invalid(
                &self.ctx,
                format!("attribute `{name}`"),
                format!("{:?}", truncated(&text, 200)),
                format!("JSON ({e})"),
            )
        })
    }

    /// A JSON attribute, `null` where the file lacks it.
    fn json_attribute_or_null(&self, name: &str) -> Result<Value> {
        if self.file.global_attribute(name).is_err() {
            return Ok(Value::Null);
        }
        self.json_attribute(name)
    }

    fn adstock(&self) -> Result<(Adstock, String)> {
        let v = self.json_attribute("adstock")?;
        let field = |key: &str| format!("attribute `adstock`.{key}");
        let kind = text_field(&self.ctx, &v, "adstock", "lookup_name")?;
        let kind = AdstockKind::from_name(&kind).ok_or_else(|| {
            Error::invalid(
                &self.ctx,
                field("lookup_name"),
                format!("{kind:?}"),
                format!("one of {:?}", AdstockKind::ALL.map(|k| k.name())),
            )
        })?;
        let prefix = text_field(&self.ctx, &v, "adstock", "prefix")?;
        let l_max = v.get("l_max").and_then(Value::as_u64).ok_or_else(|| {
            Error::invalid(
                &self.ctx,
                field("l_max"),
                v.get("l_max").map_or("missing".into(), Value::to_string),
                "a whole number of periods",
            )
        })?;
        let normalize = match v.get("normalize") {
            Some(Value::Bool(b)) => *b,
            other => {
                return Err(Error::invalid(
                    &self.ctx,
                    field("normalize"),
                    other.map_or("missing".into(), Value::to_string),
                    "true or false",
                ));
            }
        };
        match v.get("mode").and_then(Value::as_str) {
            None | Some("After") => {}
            Some(mode) => {
                return Err(Error::invalid(
                    &self.ctx,
                    field("mode"),
                    format!("{:?}", truncated(mode, 100)),
                    r#""After" (the carry-over of spend into later periods; the optimizer supports no other)"#,
                ));
            }
        }
        let adstock = Adstock {
            kind,
            l_max: usize::try_from(l_max).unwrap_or(usize::MAX),
            normalize,
        };
        Ok((adstock, prefix))
    }

    fn saturation(&self) -> Result<(Saturation, String)> {
        let v = self.json_attribute("saturation")?;
        let kind = text_field(&self.ctx, &v, "saturation", "lookup_name")?;
        let saturation = Saturation::from_name(&kind).ok_or_else(|| {
            Error::invalid(
                &self.ctx,
                "attribute `saturation`.lookup_name",
                format!("{kind:?}"),
                format!("one of {:?}", Saturation::ALL.map(|k| k.name())),
            )
        })?;
        let prefix = text_field(&self.ctx, &v, "saturation", "prefix")?;
        Ok((saturation, prefix))
    }

    fn variable(&self, path: &str) -> Option<&NcVariable> {
        self.file.variable(path).ok()
    }

    /// The coordinates of `dim` in `group`, as strings.
    fn coordinates(&self, group: &str, dim: &str) -> Result<Vec<String>> {
        let path = format!("{group}/{dim}");
        let var = self.variable(&path).ok_or_else(|| {
            self.missing(
                format!("variable `{path}`"),
                format!("the coordinates of the dim `{dim}`"),
            )
        })?;
        if var.ndim() != 1 {
            return Err(Error::Shape {
                context: self.ctx.clone(),
                field: path,
                found: usize_shape(var),
                expected: "one axis (a coordinate variable)".into(),
            });
        }
        // Coordinates are few; a hostile length is caught before any read.
        let len = var.shape()[0];
        if len > crate::model::MAX_CELLS as u64 {
            return Err(Error::Shape {
                context: self.ctx.clone(),
                field: path,
                found: usize_shape(var),
                expected: format!("at most {} coordinates", crate::model::MAX_CELLS),
            });
        }
        if let Ok(strings) = self.file.read_variable_as_strings(&path) {
            return Ok(strings);
        }
        let numbers = self
            .file
            .read_variable_as_f64(&path)
            .map_err(|e| self.failed(&path, &e))?;
        Ok(numbers.iter().map(|x| x.to_string()).collect())
    }

    /// `constant_data/{name}` with its dims.
    fn constant(&self, name: &str) -> Result<Array> {
        let path = format!("constant_data/{name}");
        let var = self.variable(&path).ok_or_else(|| {
            self.missing(
                format!("variable `{path}`"),
                "the model's scales, as PyMC-Marketing's MMM.save writes them",
            )
        })?;
        let shape = usize_shape(var);
        let count = checked_count(&shape).filter(|&n| n <= crate::model::MAX_CELLS);
        if count.is_none() {
            return Err(Error::Shape {
                context: self.ctx.clone(),
                field: path,
                found: shape,
                expected: format!("at most {} values", crate::model::MAX_CELLS),
            });
        }
        let values = self.values(&path, var, &shape)?;
        Ok(Array {
            dims: var.dimensions().iter().map(|d| d.name.clone()).collect(),
            shape,
            values,
        })
    }

    /// The posterior arrays `names`, each checked against the model's sizes and the
    /// memory budget before its values are read.
    fn posterior(&self, model: &Model, names: &[String], needed_by: &str) -> Result<Posterior> {
        let mut vars = Vec::with_capacity(names.len());
        for name in names {
            let path = format!("posterior/{name}");
            let var = self.variable(&path).ok_or_else(|| Error::MissingArray {
                context: self.ctx.clone(),
                name: path.clone(),
                needed_by: needed_by.into(),
                present: self.present("posterior"),
            })?;
            vars.push((name, path, var));
        }
        let mut axes = PosteriorAxes::new(model, self.ctx.clone()).known_dims_only();
        let mut total: u64 = 0;
        for (name, path, var) in &vars {
            let shape = usize_shape(var);
            let dims: Vec<String> = var.dimensions().iter().map(|d| d.name.clone()).collect();
            axes.check(path, name, &dims, &shape)?;
            let count = checked_count(&shape).unwrap_or(usize::MAX) as u64;
            total = total.saturating_add(count.saturating_mul(8));
        }
        let budget = memory_budget();
        if total > budget {
            return Err(Error::invalid(
                &self.ctx,
                "posterior",
                format!("{total} bytes as f64"),
                format!("at most the memory budget, {budget} bytes (MMM_MEMORY_BUDGET)"),
            ));
        }
        let mut posterior = Posterior::default();
        for (name, path, var) in vars {
            let shape = usize_shape(var);
            let values = self.values(&path, var, &shape)?;
            let array = Array {
                dims: var.dimensions().iter().map(|d| d.name.clone()).collect(),
                shape,
                values,
            };
            posterior.arrays.insert(name.clone(), array);
        }
        Ok(posterior)
    }

    /// A variable's values as f64, row-major: float64 read straight into place, other
    /// numeric types converted.
    fn values(&self, path: &str, var: &NcVariable, shape: &[usize]) -> Result<Vec<f64>> {
        if *var.dtype() == NcType::Double {
            let mut values = vec![0.0; checked_count(shape).unwrap_or(0)];
            self.file
                .read_variable_into::<f64>(path, &mut values)
                .map_err(|e| self.failed(path, &e))?;
            return Ok(values);
        }
        let values = self
            .file
            .read_variable_as_f64(path)
            .map_err(|e| self.failed(path, &e))?;
        Ok(values.iter().copied().collect())
    }

    /// The variable names of a group, comma-separated.
    fn present(&self, group: &str) -> String {
        self.file.group(group).map_or_else(
            |_| format!("no group `{group}`"),
            |g| {
                let names: Vec<&str> = g.variables.iter().map(|v| v.name.as_str()).collect();
                truncated(&names.join(", "), 300)
            },
        )
    }
}

fn one_line(e: &netcdf_reader::Error) -> String {
    truncated(&e.to_string().replace('\n', " "), 300)
}

fn usize_shape(var: &NcVariable) -> Vec<usize> {
    var.shape()
        .iter()
        .map(|&n| usize::try_from(n).unwrap_or(usize::MAX))
        .collect()
}

fn checked_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n))
}

fn text_field(ctx: &str, v: &Value, attribute: &str, key: &str) -> Result<String> {
    v.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            Error::invalid(
                ctx,
                format!("attribute `{attribute}`.{key}"),
                v.get(key)
                    .map_or("missing".into(), |x| truncated(&x.to_string(), 200)),
                "a string",
            )
        })
}

fn string_list(ctx: &str, field: &str, v: Value) -> Result<Vec<String>> {
    let list = v.as_array().and_then(|a| {
        a.iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
    });
    list.ok_or_else(|| {
        Error::invalid(
            ctx,
            format!("attribute `{field}`"),
            truncated(&v.to_string(), 200),
            "a JSON list of names",
        )
    })
}
