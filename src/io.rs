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

use crate::adstock::{Adstock, AdstockKind};
use crate::error::{Error, Result};
use crate::model::{Array, Dim, Model, Posterior};
use crate::saturation::Saturation;
use crate::scenario::{BoundRule, BudgetConstraint, PeriodRule, Scenario, Selector};
use crate::utility::Utility;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A case loaded from a folder.
#[derive(Clone, Debug)]
pub struct Case {
    /// The folder.
    pub dir: PathBuf,
    /// The model with its posterior.
    pub model: Model,
    /// The scenario.
    pub scenario: Scenario,
    /// The posterior archive.
    pub posterior_path: PathBuf,
    /// The scenario file.
    pub scenario_path: PathBuf,
    /// The scenario's `options` object, kept for the solver's settings.
    pub options: Map<String, Value>,
}

/// Loads `dir/model.json` (with its posterior) and `dir/scenario.json`, or the
/// scenario from `scenario` when given.
pub fn load_case(dir: &Path, scenario: Option<&Path>) -> Result<Case> {
    let (model, posterior_path) = load_model(&dir.join("model.json"))?;
    let scenario_path = scenario.map_or_else(|| dir.join("scenario.json"), Path::to_path_buf);
    let (scenario, options) = load_scenario(&scenario_path)?;
    Ok(Case {
        dir: dir.to_path_buf(),
        posterior_path,
        scenario_path,
        model,
        scenario,
        options,
    })
}

impl Case {
    /// Resolves the case into a [`crate::Problem`], naming the case's files in errors.
    pub fn problem(&self) -> Result<crate::Problem> {
        crate::Problem::new(&self.model, &self.scenario).map_err(|e| {
            e.recontext("model", &self.dir.join("model.json").display().to_string())
                .recontext("posterior", &self.posterior_path.display().to_string())
                .recontext("scenario", &self.scenario_path.display().to_string())
        })
    }
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_json<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    channels: Vec<String>,
    #[serde(default)]
    dims: Map<String, Value>,
    adstock: AdstockFile,
    saturation: SaturationFile,
    #[serde(default = "yes")]
    adstock_first: bool,
    channel_scale: Value,
    target_scale: Value,
    #[serde(default = "default_posterior")]
    posterior: String,
    #[serde(default)]
    posterior_dims: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdstockFile {
    kind: String,
    l_max: usize,
    #[serde(default = "yes")]
    normalize: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaturationFile {
    kind: String,
}

fn yes() -> bool {
    true
}

fn default_posterior() -> String {
    "posterior.npz".into()
}

/// Loads `model.json` and the posterior archive it names (relative to its folder);
/// returns the model and the archive's path.
pub fn load_model(path: &Path) -> Result<(Model, PathBuf)> {
    let file: ModelFile = parse_json(path, &read_text(path)?)?;
    let ctx = path.display().to_string();
    let adstock_kind = AdstockKind::from_name(&file.adstock.kind).ok_or_else(|| {
        Error::invalid(
            &ctx,
            "adstock.kind",
            format!("{:?}", file.adstock.kind),
            format!("one of {:?}", AdstockKind::ALL.map(|k| k.name())),
        )
    })?;
    let saturation = Saturation::from_name(&file.saturation.kind).ok_or_else(|| {
        Error::invalid(
            &ctx,
            "saturation.kind",
            format!("{:?}", file.saturation.kind),
            format!("one of {:?}", Saturation::ALL.map(|k| k.name())),
        )
    })?;
    let mut dims = Vec::new();
    for (name, coords) in &file.dims {
        let coords = string_list(coords).ok_or_else(|| {
            Error::invalid(
                &ctx,
                format!("dims.{name}"),
                coords,
                "a list of coordinate strings",
            )
        })?;
        dims.push(Dim {
            name: name.clone(),
            coords,
        });
    }
    let extra: Vec<String> = dims.iter().map(|d| d.name.clone()).collect();
    let channel_scale = nested_array(&ctx, "channel_scale", &file.channel_scale)?;
    let channel_scale = with_dims(&ctx, "channel_scale", channel_scale, |rank| {
        if rank == 0 {
            Some(vec![])
        } else if rank == 1 {
            Some(vec!["channel".into()])
        } else if rank == extra.len() + 1 {
            Some(extra.iter().cloned().chain(["channel".into()]).collect())
        } else {
            None
        }
    })?;
    let target_scale = nested_array(&ctx, "target_scale", &file.target_scale)?;
    let target_scale = with_dims(&ctx, "target_scale", target_scale, |rank| {
        if rank == 0 {
            Some(vec![])
        } else if rank == extra.len() {
            Some(extra.clone())
        } else {
            None
        }
    })?;
    let adstock = Adstock {
        kind: adstock_kind,
        l_max: file.adstock.l_max,
        normalize: file.adstock.normalize,
    };
    let names: Vec<String> = adstock_kind
        .parameters()
        .iter()
        .map(|p| format!("adstock_{p}"))
        .chain(
            saturation
                .parameters()
                .iter()
                .map(|p| format!("saturation_{p}")),
        )
        .collect();
    let posterior_path = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&file.posterior);
    let needed_by = format!("adstock `{adstock_kind}` and saturation `{saturation}`");
    let mut posterior = read_npz(&posterior_path, &names, &needed_by)?;
    let pctx = posterior_path.display().to_string();
    for (name, array) in posterior.arrays.iter_mut() {
        array.dims = match file.posterior_dims.get(name) {
            Some(v) => string_list(v).ok_or_else(|| {
                Error::invalid(
                    &ctx,
                    format!("posterior_dims.{name}"),
                    v,
                    "a list of dim names",
                )
            })?,
            None => {
                let rank = array.shape.len();
                let mut d: Vec<String> = vec!["chain".into(), "draw".into()];
                if rank == 2 + extra.len() + 1 {
                    d.extend(extra.iter().cloned());
                    d.push("channel".into());
                } else if rank == 3 {
                    d.push("channel".into());
                } else if rank != 2 {
                    return Err(Error::Shape {
                        context: pctx.clone(),
                        field: name.clone(),
                        found: array.shape.clone(),
                        expected: format!(
                            "(chain, draw, {}channel) or (chain, draw[, channel]), or dims given in {}: posterior_dims.{name}",
                            extra.iter().map(|e| format!("{e}, ")).collect::<String>(),
                            ctx
                        ),
                    });
                }
                d
            }
        };
        if array.dims.len() != array.shape.len() {
            return Err(Error::Shape {
                context: pctx.clone(),
                field: name.clone(),
                found: array.shape.clone(),
                expected: format!(
                    "{} axes, one per dim of posterior_dims.{name} {:?}",
                    array.dims.len(),
                    array.dims
                ),
            });
        }
    }
    for name in file.posterior_dims.keys() {
        if !names.contains(name) {
            return Err(Error::invalid(
                &ctx,
                "posterior_dims",
                format!("{name:?}"),
                format!("names among the model's parameters {names:?}"),
            ));
        }
    }
    let model = Model {
        channels: file.channels,
        dims,
        adstock,
        saturation,
        adstock_first: file.adstock_first,
        channel_scale,
        target_scale,
        posterior,
    };
    Ok((model, posterior_path))
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// A number or nested lists of numbers as a row-major array (dims left empty).
fn nested_array(ctx: &str, field: &str, v: &Value) -> Result<Array> {
    fn shape_of(v: &Value, shape: &mut Vec<usize>) {
        if let Some(a) = v.as_array() {
            shape.push(a.len());
            if let Some(first) = a.first() {
                shape_of(first, shape);
            }
        }
    }
    fn flatten(
        ctx: &str,
        field: &str,
        v: &Value,
        shape: &[usize],
        out: &mut Vec<f64>,
    ) -> Result<()> {
        match (v, shape.split_first()) {
            (Value::Number(n), None) => {
                out.push(n.as_f64().unwrap_or(f64::NAN));
                Ok(())
            }
            (Value::Array(a), Some((&len, rest))) if a.len() == len => {
                a.iter().try_for_each(|x| flatten(ctx, field, x, rest, out))
            }
            _ => Err(Error::invalid(
                ctx,
                field,
                v,
                "a number or rectangular nested lists of numbers",
            )),
        }
    }
    let mut shape = Vec::new();
    shape_of(v, &mut shape);
    let mut values = Vec::new();
    flatten(ctx, field, v, &shape, &mut values)?;
    Ok(Array {
        dims: vec![],
        shape,
        values,
    })
}

fn with_dims(
    ctx: &str,
    field: &str,
    mut a: Array,
    dims_for_rank: impl Fn(usize) -> Option<Vec<String>>,
) -> Result<Array> {
    a.dims = dims_for_rank(a.shape.len()).ok_or_else(|| Error::Shape {
        context: ctx.into(),
        field: field.into(),
        found: a.shape.clone(),
        expected: "a scalar or an array over the model's dims (see model.json's format)".into(),
    })?;
    Ok(a)
}

/// Reads the arrays `names` from an NPZ archive (as written by `numpy.savez` or
/// `numpy.savez_compressed`), converting float32 to f64. Dims are left empty.
/// `needed_by` says, for each name, what needs it (for the error when it is missing).
pub fn read_npz(path: &Path, names: &[String], needed_by: &str) -> Result<Posterior> {
    let npz_err = |message: String| Error::Npz {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| npz_err(format!("not an NPZ (zip) archive: {e}")))?;
    let present: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.strip_suffix(".npy").unwrap_or(&n).to_string())
        .collect();
    if let Some(missing) = names.iter().find(|n| !present.contains(n)) {
        return Err(Error::MissingArray {
            context: path.display().to_string(),
            name: missing.clone(),
            needed_by: needed_by.into(),
            present: present.join(", "),
        });
    }
    let mut posterior = Posterior::default();
    for name in names {
        let mut entry = zip
            .by_name(&format!("{name}.npy"))
            .map_err(|e| npz_err(format!("{name}: {e}")))?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| npz_err(format!("{name}: {e}")))?;
        let npy = npyz::NpyFile::new(&bytes[..])
            .map_err(|e| npz_err(format!("{name}: not an NPY array: {e}")))?;
        let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
        let fortran = npy.order() == npyz::Order::Fortran;
        let dtype = npy.dtype();
        let values: Vec<f64> = match npy.try_data::<f64>() {
            Ok(r) => r.into_iter().collect::<std::io::Result<_>>(),
            Err(npy) => match npy.try_data::<f32>() {
                Ok(r) => r
                    .into_iter()
                    .map(|v| v.map(f64::from))
                    .collect::<std::io::Result<_>>(),
                Err(_) => {
                    return Err(npz_err(format!(
                        "{name}: dtype {} is not supported: expected float64 or float32",
                        dtype.descr()
                    )));
                }
            },
        }
        .map_err(|e| npz_err(format!("{name}: {e}")))?;
        let values = if fortran {
            fortran_to_c(&values, &shape)
        } else {
            values
        };
        posterior.arrays.insert(
            name.clone(),
            Array {
                dims: vec![],
                shape,
                values,
            },
        );
    }
    Ok(posterior)
}

fn fortran_to_c(values: &[f64], shape: &[usize]) -> Vec<f64> {
    let n = values.len();
    let mut out = vec![0.0; n];
    let mut idx = vec![0usize; shape.len()];
    for v in out.iter_mut() {
        // idx is the row-major multi-index of this output position.
        let mut f = 0;
        let mut stride = 1;
        for (k, &i) in idx.iter().enumerate() {
            f += i * stride;
            stride *= shape[k];
        }
        *v = values[f];
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    num_periods: usize,
    total_budget: f64,
    #[serde(default)]
    budget_constraint: Option<String>,
    #[serde(default)]
    bounds: Vec<BoundFile>,
    #[serde(default)]
    optimize: Option<Vec<Selector>>,
    #[serde(default)]
    time_distribution: Vec<PeriodFile>,
    #[serde(default)]
    cost_per_unit: Vec<CostFile>,
    #[serde(default)]
    constraints: Vec<String>,
    #[serde(default)]
    utility: Option<Map<String, Value>>,
    #[serde(default)]
    start: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    options: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundFile {
    #[serde(default)]
    select: Selector,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeriodFile {
    #[serde(default)]
    select: Selector,
    factors: Vec<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CostFile {
    #[serde(default)]
    select: Selector,
    #[serde(alias = "factors")]
    values: NumberOrList,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrList {
    Number(f64),
    List(Vec<f64>),
}

/// Loads `scenario.json`: the scenario and its raw `options` object.
pub fn load_scenario(path: &Path) -> Result<(Scenario, Map<String, Value>)> {
    let file: ScenarioFile = parse_json(path, &read_text(path)?)?;
    let ctx = path.display().to_string();
    let budget_constraint = match &file.budget_constraint {
        None => BudgetConstraint::Equal,
        Some(s) => BudgetConstraint::from_name(s).ok_or_else(|| {
            Error::invalid(
                &ctx,
                "budget_constraint",
                format!("{s:?}"),
                r#"one of "equal", "at_most", "none""#,
            )
        })?,
    };
    let utility = match &file.utility {
        None => Utility::Mean,
        Some(u) => {
            let kind = u.get("kind").and_then(Value::as_str).ok_or_else(|| {
                Error::invalid(
                    &ctx,
                    "utility",
                    Value::Object(u.clone()),
                    r#"an object with a "kind""#,
                )
            })?;
            Utility::from_name(kind).ok_or_else(|| {
                Error::invalid(
                    &ctx,
                    "utility.kind",
                    format!("{kind:?}"),
                    r#"one of "mean""#,
                )
            })?
        }
    };
    let start = file
        .start
        .as_ref()
        .map(|entries| allocation_entries(&ctx, "start", entries))
        .transpose()?;
    let n = file.num_periods;
    let scenario = Scenario {
        num_periods: n,
        total_budget: file.total_budget,
        budget_constraint,
        bounds: file
            .bounds
            .into_iter()
            .map(|b| BoundRule {
                select: b.select,
                min: b.min,
                max: b.max,
            })
            .collect(),
        optimize: file.optimize,
        time_distribution: file
            .time_distribution
            .into_iter()
            .map(|p| PeriodRule {
                select: p.select,
                values: p.factors,
            })
            .collect(),
        cost_per_unit: file
            .cost_per_unit
            .into_iter()
            .map(|p| PeriodRule {
                select: p.select,
                values: match p.values {
                    NumberOrList::Number(v) => vec![v; n],
                    NumberOrList::List(v) => v,
                },
            })
            .collect(),
        constraints: file.constraints,
        utility,
        start,
    };
    Ok((scenario, file.options))
}

/// `[{"channel": "tv", "geo": "north", "budget": 12.5}, …]` as (selector, budget) pairs.
fn allocation_entries(
    ctx: &str,
    field: &str,
    entries: &[Map<String, Value>],
) -> Result<Vec<(Selector, f64)>> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut selector = Selector::new();
            let mut budget = None;
            for (k, v) in e {
                if k == "budget" {
                    budget = Some(v.as_f64().ok_or_else(|| {
                        Error::invalid(
                            ctx,
                            format!("{field}[{i}].budget"),
                            v,
                            "a number (budget per period)",
                        )
                    })?);
                } else {
                    let coord = v.as_str().ok_or_else(|| {
                        Error::invalid(ctx, format!("{field}[{i}].{k}"), v, "a coordinate string")
                    })?;
                    selector.insert(k.clone(), coord.to_string());
                }
            }
            let budget = budget.ok_or_else(|| {
                Error::invalid(
                    ctx,
                    format!("{field}[{i}]"),
                    Value::Object(e.clone()),
                    r#"a "budget" field"#,
                )
            })?;
            Ok((selector, budget))
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllocationFile {
    allocation: Vec<Map<String, Value>>,
}

/// Loads an allocation file `{"allocation": [{"channel": …, <dim>: …, "budget": …}]}`
/// (budgets per period) as (selector, budget) pairs.
pub fn load_allocation(path: &Path) -> Result<Vec<(Selector, f64)>> {
    let file: AllocationFile = parse_json(path, &read_text(path)?)?;
    allocation_entries(&path.display().to_string(), "allocation", &file.allocation)
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    std::fs::write(path, text + "\n").map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes an NPZ archive of float64 arrays (uncompressed, as `numpy.savez` does).
pub fn write_npz(path: &Path, arrays: &[(&str, &[usize], &[f64])]) -> Result<()> {
    use npyz::WriterBuilder;
    use std::io::Write;
    let io_err = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io_err)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for (name, shape, values) in arrays {
        let mut buf = Vec::with_capacity(values.len() * 8 + 128);
        let shape: Vec<u64> = shape.iter().map(|&s| s as u64).collect();
        let mut w = npyz::WriteOptions::<f64>::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut buf)
            .begin_nd()
            .map_err(io_err)?;
        w.extend(values.iter().copied()).map_err(io_err)?;
        w.finish().map_err(io_err)?;
        zip.start_file(format!("{name}.npy"), options)
            .map_err(|e| io_err(std::io::Error::other(e)))?;
        zip.write_all(&buf).map_err(io_err)?;
    }
    zip.finish().map_err(|e| io_err(std::io::Error::other(e)))?;
    Ok(())
}

/// Writes a model (with its posterior) and a scenario as a case folder that
/// [`load_case`] reads back.
pub fn write_case(dir: &Path, model: &Model, scenario: &Scenario) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let nested = |a: &Array| -> Value {
        fn build(values: &[f64], shape: &[usize]) -> Value {
            match shape.split_first() {
                None => serde_json::json!(values[0]),
                Some((&len, rest)) => {
                    let stride = rest.iter().product::<usize>();
                    Value::Array(
                        (0..len)
                            .map(|i| build(&values[i * stride..(i + 1) * stride], rest))
                            .collect(),
                    )
                }
            }
        }
        build(&a.values, &a.shape)
    };
    let mut dims = Map::new();
    for d in &model.dims {
        dims.insert(d.name.clone(), serde_json::json!(d.coords));
    }
    let mut posterior_dims = Map::new();
    for (name, a) in &model.posterior.arrays {
        posterior_dims.insert(name.clone(), serde_json::json!(a.dims));
    }
    let model_json = serde_json::json!({
        "channels": model.channels,
        "dims": dims,
        "adstock": {"kind": model.adstock.kind.name(), "l_max": model.adstock.l_max, "normalize": model.adstock.normalize},
        "saturation": {"kind": model.saturation.name()},
        "adstock_first": model.adstock_first,
        "channel_scale": nested(&model.channel_scale),
        "target_scale": nested(&model.target_scale),
        "posterior": "posterior.npz",
        "posterior_dims": posterior_dims,
    });
    write_json(&dir.join("model.json"), &model_json)?;
    let arrays: Vec<(&str, &[usize], &[f64])> = model
        .posterior
        .arrays
        .iter()
        .map(|(k, a)| (k.as_str(), a.shape.as_slice(), a.values.as_slice()))
        .collect();
    write_npz(&dir.join("posterior.npz"), &arrays)?;
    let mut scenario_json = serde_json::json!({
        "num_periods": scenario.num_periods,
        "total_budget": scenario.total_budget,
    });
    let obj = scenario_json.as_object_mut().expect("an object");
    if scenario.budget_constraint != BudgetConstraint::Equal {
        let name = match scenario.budget_constraint {
            BudgetConstraint::AtMost => "at_most",
            _ => "none",
        };
        obj.insert("budget_constraint".into(), serde_json::json!(name));
    }
    if !scenario.bounds.is_empty() {
        let b: Vec<Value> = scenario
            .bounds
            .iter()
            .map(|b| serde_json::json!({"select": b.select, "min": b.min, "max": b.max}))
            .collect();
        obj.insert("bounds".into(), Value::Array(b));
    }
    if let Some(o) = &scenario.optimize {
        obj.insert("optimize".into(), serde_json::json!(o));
    }
    for (key, field, rules) in [
        ("time_distribution", "factors", &scenario.time_distribution),
        ("cost_per_unit", "values", &scenario.cost_per_unit),
    ] {
        if !rules.is_empty() {
            let r: Vec<Value> = rules
                .iter()
                .map(|r| serde_json::json!({"select": r.select, field: r.values}))
                .collect();
            obj.insert(key.into(), Value::Array(r));
        }
    }
    if !scenario.constraints.is_empty() {
        obj.insert(
            "constraints".into(),
            serde_json::json!(scenario.constraints),
        );
    }
    if scenario.utility != Utility::Mean {
        obj.insert(
            "utility".into(),
            serde_json::json!({"kind": scenario.utility.name()}),
        );
    }
    write_json(&dir.join("scenario.json"), &scenario_json)
}

/// Writes the per-cell lines of a report as CSV: the dims, `budget` (per period),
/// `budget_window`, `share`, `mean_contribution`, `roi`, `marginal_roi`.
pub fn write_csv(path: &Path, report: &crate::report::Report) -> Result<()> {
    let err = |e: csv::Error| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    let dims: Vec<String> = report
        .cells
        .first()
        .map(|c| c.coords.iter().map(|(d, _)| d.clone()).collect())
        .unwrap_or_default();
    let mut header = dims.clone();
    header.extend(
        [
            "budget",
            "budget_window",
            "share",
            "mean_contribution",
            "roi",
            "marginal_roi",
        ]
        .map(String::from),
    );
    w.write_record(&header).map_err(err)?;
    for c in &report.cells {
        let mut rec: Vec<String> = c.coords.iter().map(|(_, v)| v.clone()).collect();
        let share = if report.allocated > 0.0 {
            c.budget / report.allocated
        } else {
            0.0
        };
        rec.extend([
            c.budget.to_string(),
            c.budget_window.to_string(),
            share.to_string(),
            c.mean_contribution.to_string(),
            c.roi.map_or_else(String::new, |r| r.to_string()),
            c.marginal_roi.to_string(),
        ]);
        w.write_record(&rec).map_err(err)?;
    }
    w.flush().map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}
