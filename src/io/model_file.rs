//! `model.json`: the model's structure, scales and where its posterior is.

use super::{PosteriorAxes, open_npz, parameter_names, parse_json, read_text};
use crate::adstock::{Adstock, AdstockKind};
use crate::error::truncated;
use crate::error::{Error, Result};
use crate::model::{Array, Dim, Model, Posterior};
use crate::saturation::Saturation;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

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
///
/// The archive is checked whole (members, headers, shapes against the model, sizes
/// against the memory budget), but its values stay in the file, each array
/// [stored](crate::Array::stored), until a problem is built: [`crate::Problem::new`]
/// reads them straight into its layout, so the posterior is never held twice. The
/// file must not change meanwhile (a changed file is refused when read);
/// [`crate::Posterior::load`] reads the values into the model instead.
///
/// ```
/// use mmm_budget::{Problem, demo, io};
/// let dir = std::env::temp_dir().join(format!("mmm-budget-doc-{}", std::process::id()));
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 50 }, 1);
/// io::write_case(&dir, &model, &scenario)?;
///
/// let (mut loaded, archive) = io::load_model(&dir.join("model.json"))?;
/// assert_eq!(archive, dir.join("posterior.npz"));
/// // Checked, but still in the file: read when a problem is built.
/// let alpha = &loaded.posterior.arrays["adstock_alpha"];
/// assert!(alpha.stored().is_some() && alpha.values.is_empty());
/// assert_eq!(alpha.len(), 50 * 2 * 3);
/// let problem = Problem::new(&loaded, &scenario)?;
/// assert_eq!(problem.adstock_params.to_f64(), Problem::new(&model, &scenario)?.adstock_params.to_f64());
/// // Or read into the model, which then no longer needs the file.
/// loaded.posterior.load()?;
/// assert_eq!(loaded, model);
/// std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), mmm_budget::Error>(())
/// ```
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
    let (names, needed_by) = parameter_names(adstock_kind, saturation, "adstock", "saturation");
    // The model's own sizes first: the posterior is read against them.
    let mut model = Model {
        channels: file.channels.clone(),
        dims,
        adstock,
        saturation,
        adstock_first: file.adstock_first,
        channel_scale,
        target_scale,
        posterior: Posterior::default(),
    };
    model.validate_structure(&ctx)?;
    let posterior_path = path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&file.posterior);
    let pctx = posterior_path.display().to_string();
    // Each array's dims, from posterior_dims or by its rank.
    let dims_of = |name: &str, shape: &[usize]| -> Result<Vec<String>> {
        let dims = match file.posterior_dims.get(name) {
            Some(v) => string_list(v).ok_or_else(|| {
                Error::invalid(
                    &ctx,
                    format!("posterior_dims.{name}"),
                    truncated(&v.to_string(), 200),
                    "a list of dim names",
                )
            })?,
            None => {
                let rank = shape.len();
                let mut d: Vec<String> = vec!["chain".into(), "draw".into()];
                if rank == 2 + extra.len() + 1 {
                    d.extend(extra.iter().cloned());
                    d.push("channel".into());
                } else if rank == 3 {
                    d.push("channel".into());
                } else if rank != 2 {
                    return Err(Error::Shape {
                        context: pctx.clone(),
                        field: name.to_string(),
                        found: shape.to_vec(),
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
        if dims.len() != shape.len() {
            return Err(Error::Shape {
                context: pctx.clone(),
                field: name.to_string(),
                found: shape.to_vec(),
                expected: format!(
                    "{} axes, one per dim of posterior_dims.{name} {:?}",
                    dims.len(),
                    dims
                ),
            });
        }
        Ok(dims)
    };
    // Before any value is read: each named axis as long as the model's coordinates,
    // and every array with the same number of chains and draws.
    let mut axes = PosteriorAxes::new(&model, pctx.clone());
    let check = |name: &str, shape: &[usize]| -> Result<()> {
        let dims = dims_of(name, shape)?;
        axes.check(name, name, &dims, shape)
    };
    let mut posterior = open_npz(&posterior_path, &names, &needed_by, check)?;
    for (name, array) in posterior.arrays.iter_mut() {
        array.dims = dims_of(name, &array.shape)?;
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
    model.posterior = posterior;
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
        stored: None,
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
