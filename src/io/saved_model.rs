//! A model saved by PyMC-Marketing (`mmm.save("fitted.nc")`), read directly, or the
//! same `InferenceData` handed over in memory (the Python package).
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
//! What the reader needs of an `InferenceData` is the trait [`InferenceSource`]: the
//! netCDF file implements it ([`load_saved_model`]), and so does the Python package's
//! view of an in-memory `InferenceData` ([`load_inference_data`]).
//!
//! The file is read with `netcdf-reader` (pure Rust, no C library): bounded reads
//! (`max_read_bytes` is the memory budget), no external files or links followed.

use super::npz::{CHANGED_SINCE_LOADED, path_stamp};
use super::{PosteriorAxes, memory_budget, parameter_names};
use crate::adstock::{Adstock, AdstockKind};
use crate::error::{Error, Result, truncated};
use crate::model::{Array, Dim, Model, Posterior};
use crate::saturation::Saturation;
use netcdf_reader::{
    NcFile, NcFormat, NcOpenOptions, NcSliceInfo, NcSliceInfoElem, NcType, NcVariable,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// A variable's dims and shape, known before its values are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VariableShape {
    /// The dim names, outermost first.
    pub dims: Vec<String>,
    /// The length along each dim.
    pub shape: Vec<usize>,
}

/// What the reader needs of an ArviZ `InferenceData`, wherever it lives: root
/// attributes, groups with attributes and named variables (dims, shape, then values),
/// and coordinates. Groups are named as ArviZ names them (`posterior`,
/// `constant_data`). Implemented by the netCDF file; the Python package implements it
/// over numpy arrays it borrows.
pub trait InferenceSource {
    /// The name errors give (a file's path, or what the caller handed over).
    fn context(&self) -> &str;
    /// A root attribute: `None` where absent, `Some(Err(shown))` where it is not a
    /// string (`shown`: the value as it should appear in the error).
    fn root_attribute(&self, name: &str) -> Option<std::result::Result<String, String>>;
    /// A group's string attribute; `None` where the group or attribute is absent or not
    /// a string.
    fn group_attribute(&self, group: &str, name: &str) -> Option<String>;
    /// The names of a group's variables; `None` where the group is absent.
    fn variable_names(&self, group: &str) -> Option<Vec<String>>;
    /// A variable's dims and shape; `None` where absent.
    fn variable(&self, group: &str, name: &str) -> Option<VariableShape>;
    /// A one-dimensional variable's values as strings: text as it is, numbers as Rust
    /// prints an f64.
    fn coordinate_values(&self, group: &str, name: &str) -> Result<Vec<String>>;
    /// A numeric variable's values as f64, row-major (C order), `count` of them.
    fn values(&self, group: &str, name: &str, count: usize) -> Result<Vec<f64>>;
    /// The variable left where it is, its values read when a problem is built (a
    /// [stored](crate::Array::stored) array); `None` (the default) where the source
    /// has no such reads, and [`InferenceSource::values`] is called instead.
    fn stored(&self, _group: &str, _name: &str) -> Option<Result<super::StoredArray>> {
        None
    }
}

/// Reads a model saved by PyMC-Marketing's `MMM.save` (netCDF-4), posterior included.
///
/// ```no_run
/// let saved = mmm_budget::io::load_saved_model("fitted.nc".as_ref())?;
/// println!("{} cells, PyMC-Marketing {}", saved.model.num_cells(), saved.pymc_marketing_version);
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn load_saved_model(path: &Path) -> Result<SavedModel> {
    load_inference_data(&NetcdfSource::open(path)?)
}

/// Reads a fitted PyMC-Marketing model from any [`InferenceSource`]: the checks,
/// names and messages of [`load_saved_model`], the source's context in place of the
/// file's path.
pub fn load_inference_data(src: &dyn InferenceSource) -> Result<SavedModel> {
    let src = Reader(src);
    let ctx = src.0.context().to_string();
    let version = src.version()?;
    let model_type = src.text_attribute("model_type")?;
    if !MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(Error::invalid(
            &ctx,
            "model_type",
            format!("{:?}", truncated(&model_type, 200)),
            format!("one of {MODEL_TYPES:?} (PyMC-Marketing's MMM classes)"),
        ));
    }
    let (adstock, adstock_prefix) = src.adstock()?;
    let (saturation, saturation_prefix) = src.saturation()?;
    let adstock_first = match src.json_attribute("adstock_first")? {
        Value::Bool(b) => b,
        v => return Err(Error::invalid(&ctx, "adstock_first", v, "true or false")),
    };
    match src.json_attribute_or_null("time_varying_media")? {
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
        src.json_attribute("channel_columns")?,
    )?;
    let dim_names = match src.json_attribute_or_null("dims")? {
        Value::Null => vec![],
        v => string_list(&ctx, "dims", v)?,
    };
    let coords_channel = src.coordinates("posterior", "channel")?;
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
            coords: src.coordinates("posterior", name)?,
        });
    }
    let mut model = Model {
        channels,
        dims,
        adstock,
        saturation,
        adstock_first,
        channel_scale: src.constant("channel_scale")?,
        target_scale: src.constant("target_scale")?,
        posterior: Posterior::default(),
    };
    model.validate_structure(&ctx)?;
    let (names, needed_by) = parameter_names(
        adstock.kind,
        saturation,
        &adstock_prefix,
        &saturation_prefix,
    );
    model.posterior = src.posterior(&model, &names, &needed_by)?;
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
struct NetcdfSource {
    file: Arc<NcFile>,
    path: PathBuf,
    ctx: String,
}

impl NetcdfSource {
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
        Ok(NetcdfSource {
            file: Arc::new(file),
            path: path.to_path_buf(),
            ctx,
        })
    }

    fn failed(&self, what: &str, e: &netcdf_reader::Error) -> Error {
        Error::Netcdf {
            path: self.ctx.clone().into(),
            message: format!("{what}: {}", one_line(e)),
        }
    }

    fn nc_variable(&self, group: &str, name: &str) -> Option<&NcVariable> {
        self.file.variable(&format!("{group}/{name}")).ok()
    }
}

impl InferenceSource for NetcdfSource {
    fn context(&self) -> &str {
        &self.ctx
    }

    fn root_attribute(&self, name: &str) -> Option<std::result::Result<String, String>> {
        let attr = self.file.global_attribute(name).ok()?;
        Some(
            attr.value
                .as_string()
                .ok_or_else(|| truncated(&format!("{:?}", attr.value), 200)),
        )
    }

    fn group_attribute(&self, group: &str, name: &str) -> Option<String> {
        let group = self.file.group(group).ok()?;
        group.attribute(name).and_then(|a| a.value.as_string())
    }

    fn variable_names(&self, group: &str) -> Option<Vec<String>> {
        let group = self.file.group(group).ok()?;
        Some(group.variables.iter().map(|v| v.name.clone()).collect())
    }

    fn variable(&self, group: &str, name: &str) -> Option<VariableShape> {
        let var = self.nc_variable(group, name)?;
        Some(VariableShape {
            dims: var.dimensions().iter().map(|d| d.name.clone()).collect(),
            shape: var
                .shape()
                .iter()
                .map(|&n| usize::try_from(n).unwrap_or(usize::MAX))
                .collect(),
        })
    }

    fn coordinate_values(&self, group: &str, name: &str) -> Result<Vec<String>> {
        let path = format!("{group}/{name}");
        if let Ok(strings) = self.file.read_variable_as_strings(&path) {
            return Ok(strings);
        }
        let numbers = self
            .file
            .read_variable_as_f64(&path)
            .map_err(|e| self.failed(&path, &e))?;
        Ok(numbers.iter().map(|x| x.to_string()).collect())
    }

    fn values(&self, group: &str, name: &str, count: usize) -> Result<Vec<f64>> {
        let var = self.variable_handle(group, name)?;
        if var.count() != count {
            return Err(Error::Shape {
                context: self.context().to_string(),
                field: var.var.clone(),
                found: var.shape.clone(),
                expected: format!("{count} values"),
            });
        }
        var.read_all()
    }

    fn stored(&self, group: &str, name: &str) -> Option<Result<super::StoredArray>> {
        Some(
            self.variable_handle(group, name)
                .map(super::StoredArray::from_netcdf),
        )
    }
}

impl NetcdfSource {
    fn variable_handle(&self, group: &str, name: &str) -> Result<NetcdfVariable> {
        let var = format!("{group}/{name}");
        let v = self.nc_variable(group, name).ok_or_else(|| Error::Netcdf {
            path: self.path.clone(),
            message: format!("{var}: no such variable"),
        })?;
        Ok(NetcdfVariable {
            file: Arc::clone(&self.file),
            path: self.path.clone(),
            shape: v.dimensions().iter().map(|d| d.size as usize).collect(),
            dtype: v.dtype().clone(),
            var,
            stamp: path_stamp(&self.path),
        })
    }
}

/// A numeric netCDF-4 variable left in its open file: what a
/// [stored](crate::Array::stored) array of a saved model reads its values from.
#[derive(Clone)]
pub(crate) struct NetcdfVariable {
    file: Arc<NcFile>,
    path: PathBuf,
    /// The variable's path in the file (`posterior/adstock_alpha`).
    var: String,
    shape: Vec<usize>,
    dtype: NcType,
    /// The file's length and modification time when it was opened.
    stamp: (u64, Option<std::time::SystemTime>),
}

impl std::fmt::Debug for NetcdfVariable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetcdfVariable")
            .field("path", &self.path)
            .field("var", &self.var)
            .field("shape", &self.shape)
            .field("dtype", &self.dtype)
            .finish()
    }
}

/// The same variable of the same open file.
impl PartialEq for NetcdfVariable {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file) && self.var == other.var
    }
}

impl NetcdfVariable {
    /// The file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The variable's path in the file.
    pub(crate) fn name(&self) -> &str {
        &self.var
    }

    /// The variable's shape.
    pub(crate) fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Bytes a value takes in the file's arrays: 4 for float32, 8 otherwise (read as
    /// f64).
    pub(crate) fn item_bytes(&self) -> usize {
        if self.dtype == NcType::Float { 4 } else { 8 }
    }

    /// The number of values (saturating).
    pub(crate) fn count(&self) -> usize {
        checked_count(&self.shape).unwrap_or(usize::MAX)
    }

    fn failed(&self, e: &netcdf_reader::Error) -> Error {
        Error::Netcdf {
            path: self.path.clone(),
            message: format!("{}: {}", self.var, one_line(e)),
        }
    }

    /// Refuses a file whose length or modification time changed since it was opened.
    fn check_unchanged(&self) -> Result<()> {
        if path_stamp(&self.path) != self.stamp {
            return Err(Error::Netcdf {
                path: self.path.clone(),
                message: format!("{}: {CHANGED_SINCE_LOADED}", self.var),
            });
        }
        Ok(())
    }

    /// Every value, row-major, as f64: float64 decoded chunk by chunk on every core
    /// into the vector returned (its buffer taken as it is), other numeric types
    /// converted.
    pub(crate) fn read_all(&self) -> Result<Vec<f64>> {
        self.check_unchanged()?;
        let count = self.count();
        if self.dtype == NcType::Double {
            let array = self
                .file
                .read_variable_parallel::<f64>(&self.var)
                .map_err(|e| self.failed(&e))?;
            return self.taken(array, count);
        }
        let values = self
            .file
            .read_variable_as_f64(&self.var)
            .map_err(|e| self.failed(&e))?;
        self.taken(values, count)
    }

    /// Values `first .. first + len` (row-major element indices) as f64 into `out`
    /// (replaced): the range cut into hyperslabs along the outer axes of which it
    /// holds whole rows (a block of draws: one slab a chain it touches), each
    /// decoded chunk by chunk on every core. Values are checked against their domains
    /// by the caller.
    pub(crate) fn read_rows(&self, first: usize, len: usize, out: &mut Vec<f64>) -> Result<()> {
        self.check_unchanged()?;
        if first.checked_add(len).is_none_or(|end| end > self.count()) {
            return Err(Error::Netcdf {
                path: self.path.clone(),
                message: format!(
                    "{}: values {first}.. {} beyond its {} values",
                    self.var,
                    first.saturating_add(len),
                    self.count()
                ),
            });
        }
        out.clear();
        for selection in slabs(&self.shape, first, len) {
            let part = match self.dtype {
                NcType::Double => self
                    .file
                    .read_variable_slice_parallel::<f64>(&self.var, &selection),
                NcType::Float => self
                    .file
                    .read_variable_slice_parallel::<f32>(&self.var, &selection)
                    .map(|a| a.mapv(f64::from)),
                _ => self.file.read_variable_slice_as_f64(&self.var, &selection),
            }
            .map_err(|e| self.failed(&e))?;
            let n = part.len();
            if out.is_empty() && n == len {
                *out = self.taken(part, n)?;
            } else {
                out.extend(part.iter().copied());
            }
        }
        if out.len() != len {
            return Err(Error::Netcdf {
                path: self.path.clone(),
                message: format!("{}: {} values read of {len}", self.var, out.len()),
            });
        }
        Ok(())
    }

    /// An array's values in row-major order, its buffer taken where it is laid out
    /// so; `count` of them expected.
    fn taken(&self, array: ndarray::ArrayD<f64>, count: usize) -> Result<Vec<f64>> {
        if array.len() != count {
            return Err(Error::Shape {
                context: self.path.display().to_string(),
                field: self.var.clone(),
                found: array.shape().to_vec(),
                expected: format!("{count} values"),
            });
        }
        if array.is_standard_layout() {
            let (values, offset) = array.into_raw_vec_and_offset();
            let at = offset.unwrap_or(0);
            if at == 0 && values.len() == count {
                return Ok(values);
            }
            // Not expected of a whole read; copied in order all the same.
            return values
                .get(at..at.saturating_add(count))
                .map(<[f64]>::to_vec)
                .ok_or_else(|| Error::Shape {
                    context: self.path.display().to_string(),
                    field: self.var.clone(),
                    found: vec![values.len()],
                    expected: format!("{count} values from offset {at}"),
                });
        }
        Ok(array.iter().copied().collect())
    }
}

/// The hyperslabs that cover row-major elements `first .. first + len` of an array of
/// `shape`, in order: along the outermost axis `k` of which the range holds whole rows
/// (`shape[k + 1 ..]`), each slab one run along axis `k` with the outer axes fixed.
fn slabs(shape: &[usize], first: usize, len: usize) -> Vec<NcSliceInfo> {
    let full = |n: usize| NcSliceInfoElem::Slice {
        start: 0,
        end: n as u64,
        step: 1,
    };
    if len == 0 {
        return vec![];
    }
    if shape.is_empty() {
        return vec![NcSliceInfo { selections: vec![] }];
    }
    let row = |k: usize| shape[k + 1..].iter().product::<usize>().max(1);
    let k = (0..shape.len())
        .find(|&k| first.is_multiple_of(row(k)) && len.is_multiple_of(row(k)))
        .unwrap_or(shape.len() - 1);
    let (mut pos, end) = (first / row(k), (first + len) / row(k));
    let along = shape[k].max(1);
    let mut out = vec![];
    while pos < end {
        let at = pos % along;
        let run = (end - pos).min(along - at);
        let mut outer = pos / along;
        let mut selections = vec![NcSliceInfoElem::Index(0); k];
        for (sel, &n) in selections.iter_mut().zip(&shape[..k]).rev() {
            *sel = NcSliceInfoElem::Index((outer % n.max(1)) as u64);
            outer /= n.max(1);
        }
        selections.push(NcSliceInfoElem::Slice {
            start: at as u64,
            end: (at + run) as u64,
            step: 1,
        });
        selections.extend(shape[k + 1..].iter().map(|&n| full(n)));
        out.push(NcSliceInfo { selections });
        pos += run;
    }
    out
}

/// The reader's steps over a source: each checks what it reads and names it.
struct Reader<'a>(&'a dyn InferenceSource);

impl Reader<'_> {
    fn missing(&self, field: impl Into<String>, expected: impl Into<String>) -> Error {
        Error::Missing {
            context: self.0.context().to_string(),
            field: field.into(),
            expected: expected.into(),
        }
    }

    /// The PyMC-Marketing version, checked against [`SUPPORTED_VERSIONS`].
    fn version(&self) -> Result<String> {
        const FIELD: &str = "posterior.attrs.pymc_marketing_version";
        if self.0.variable_names("posterior").is_none() {
            return Err(self.missing(
                "group `posterior`",
                "the posterior draws, as PyMC-Marketing's MMM.save writes them",
            ));
        }
        let version = self
            .0
            .group_attribute("posterior", "pymc_marketing_version")
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
                self.0.context(),
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
        match self.0.root_attribute(name) {
            None => Err(self.missing(
                format!("attribute `{name}`"),
                "the model's configuration, as PyMC-Marketing's MMM.save writes it",
            )),
            Some(Ok(text)) => Ok(text),
            Some(Err(shown)) => Err(Error::invalid(
                self.0.context(),
                format!("attribute `{name}`"),
                shown,
                "a string",
            )),
        }
    }

    fn json_attribute(&self, name: &str) -> Result<Value> {
        let text = self.text_attribute(name)?;
        serde_json::from_str(&text).map_err(|e| {
            Error::invalid(
                self.0.context(),
                format!("attribute `{name}`"),
                format!("{:?}", truncated(&text, 200)),
                format!("JSON ({e})"),
            )
        })
    }

    /// A JSON attribute, `null` where the file lacks it.
    fn json_attribute_or_null(&self, name: &str) -> Result<Value> {
        if self.0.root_attribute(name).is_none() {
            return Ok(Value::Null);
        }
        self.json_attribute(name)
    }

    fn adstock(&self) -> Result<(Adstock, String)> {
        let v = self.json_attribute("adstock")?;
        let field = |key: &str| format!("attribute `adstock`.{key}");
        let kind = text_field(self.0.context(), &v, "adstock", "lookup_name")?;
        let kind = AdstockKind::from_name(&kind).ok_or_else(|| {
            Error::invalid(
                self.0.context(),
                field("lookup_name"),
                format!("{kind:?}"),
                format!("one of {:?}", AdstockKind::ALL.map(|k| k.name())),
            )
        })?;
        let prefix = text_field(self.0.context(), &v, "adstock", "prefix")?;
        let l_max = v.get("l_max").and_then(Value::as_u64).ok_or_else(|| {
            Error::invalid(
                self.0.context(),
                field("l_max"),
                v.get("l_max").map_or("missing".into(), Value::to_string),
                "a whole number of periods",
            )
        })?;
        let normalize = match v.get("normalize") {
            Some(Value::Bool(b)) => *b,
            other => {
                return Err(Error::invalid(
                    self.0.context(),
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
                    self.0.context(),
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
        let kind = text_field(self.0.context(), &v, "saturation", "lookup_name")?;
        let saturation = Saturation::from_name(&kind).ok_or_else(|| {
            Error::invalid(
                self.0.context(),
                "attribute `saturation`.lookup_name",
                format!("{kind:?}"),
                format!("one of {:?}", Saturation::ALL.map(|k| k.name())),
            )
        })?;
        let prefix = text_field(self.0.context(), &v, "saturation", "prefix")?;
        Ok((saturation, prefix))
    }

    /// The coordinates of `dim` in `group`, as strings.
    fn coordinates(&self, group: &str, dim: &str) -> Result<Vec<String>> {
        let path = format!("{group}/{dim}");
        let var = self.0.variable(group, dim).ok_or_else(|| {
            self.missing(
                format!("variable `{path}`"),
                format!("the coordinates of the dim `{dim}`"),
            )
        })?;
        // Coordinates are few; a hostile length is caught before any read.
        if var.shape.len() != 1 || var.shape[0] > crate::model::MAX_CELLS {
            return Err(Error::Shape {
                context: self.0.context().to_string(),
                field: path,
                found: var.shape,
                expected: format!(
                    "one axis (a coordinate variable) of at most {} coordinates",
                    crate::model::MAX_CELLS
                ),
            });
        }
        let values = self.0.coordinate_values(group, dim)?;
        if values.len() != var.shape[0] {
            return Err(Error::Shape {
                context: self.0.context().to_string(),
                field: path,
                found: vec![values.len()],
                expected: format!("{} coordinates, as its shape says", var.shape[0]),
            });
        }
        Ok(values)
    }

    /// `constant_data/{name}` with its dims.
    fn constant(&self, name: &str) -> Result<Array> {
        let path = format!("constant_data/{name}");
        let var = self.0.variable("constant_data", name).ok_or_else(|| {
            self.missing(
                format!("variable `{path}`"),
                "the model's scales, as PyMC-Marketing's MMM.save writes them",
            )
        })?;
        let count = checked_count(&var.shape).filter(|&n| n <= crate::model::MAX_CELLS);
        let Some(count) = count else {
            return Err(Error::Shape {
                context: self.0.context().to_string(),
                field: path,
                found: var.shape,
                expected: format!("at most {} values", crate::model::MAX_CELLS),
            });
        };
        let values = self.0.values("constant_data", name, count)?;
        Ok(Array {
            dims: var.dims,
            shape: var.shape,
            values,
            stored: None,
        })
    }

    /// The posterior arrays `names`, each checked against the model's sizes and the
    /// memory budget before its values are read.
    fn posterior(&self, model: &Model, names: &[String], needed_by: &str) -> Result<Posterior> {
        let ctx = self.0.context();
        let mut vars = Vec::with_capacity(names.len());
        for name in names {
            let path = format!("posterior/{name}");
            let var = self
                .0
                .variable("posterior", name)
                .ok_or_else(|| Error::MissingArray {
                    context: ctx.to_string(),
                    name: path.clone(),
                    needed_by: needed_by.into(),
                    present: self.present("posterior"),
                })?;
            vars.push((name, path, var));
        }
        let mut axes = PosteriorAxes::new(model, ctx).known_dims_only();
        let mut total: u64 = 0;
        for (name, path, var) in &vars {
            axes.check(path, name, &var.dims, &var.shape)?;
            let count = checked_count(&var.shape).unwrap_or(usize::MAX) as u64;
            total = total.saturating_add(count.saturating_mul(8));
        }
        let budget = memory_budget();
        if total > budget {
            return Err(Error::invalid(
                ctx,
                "posterior",
                format!("{total} bytes as f64"),
                format!("at most the memory budget, {budget} bytes (MMM_MEMORY_BUDGET)"),
            ));
        }
        // Left in the file where the source can read them later (a problem reads
        // them straight into its layout), else read now.
        let mut posterior = Posterior::default();
        for (name, _, var) in vars {
            let count = checked_count(&var.shape).unwrap_or(0);
            let (values, stored) = match self.0.stored("posterior", name) {
                Some(stored) => {
                    let stored = stored?;
                    if stored.header().shape != var.shape {
                        return Err(Error::Shape {
                            context: ctx.to_string(),
                            field: format!("posterior/{name}"),
                            found: stored.header().shape.clone(),
                            expected: format!("{:?}", var.shape),
                        });
                    }
                    (vec![], Some(std::sync::Arc::new(stored)))
                }
                None => (self.0.values("posterior", name, count)?, None),
            };
            let array = Array {
                dims: var.dims,
                shape: var.shape,
                values,
                stored,
            };
            posterior.arrays.insert(name.clone(), array);
        }
        Ok(posterior)
    }

    /// The variable names of a group, comma-separated.
    fn present(&self, group: &str) -> String {
        self.0.variable_names(group).map_or_else(
            || format!("no group `{group}`"),
            |names| truncated(&names.join(", "), 300),
        )
    }
}

fn one_line(e: &netcdf_reader::Error) -> String {
    truncated(&e.to_string().replace('\n', " "), 300)
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
