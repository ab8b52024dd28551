//! Writers: JSON, NPZ, a case folder, the per-cell CSV.

use crate::error::{Error, Result};
use crate::model::{Array, Model};
use crate::scenario::{BudgetConstraint, Scenario};
use serde_json::{Map, Value};
use std::path::Path;

/// Creates the folder `path` will be written into, where it is missing.
fn make_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// Writes `text` to `path`, creating its folder where missing.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    make_parent(path)?;
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` as pretty JSON to `path`, creating its folder where missing.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    write_text(path, &(text + "\n"))
}

/// Writes an NPZ archive of float64 arrays (uncompressed, as `numpy.savez` does).
pub fn write_npz(path: &Path, arrays: &[(&str, &[usize], &[f64])]) -> Result<()> {
    use npyz::WriterBuilder;
    use std::io::Write;
    let io_err = |source: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    make_parent(path)?;
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
/// [`super::load_case`] reads back.
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
    let values = model
        .posterior
        .arrays
        .values()
        .map(|a| a.read_values())
        .collect::<Result<Vec<_>>>()?;
    let arrays: Vec<(&str, &[usize], &[f64])> = model
        .posterior
        .arrays
        .iter()
        .zip(&values)
        .map(|((k, a), v)| (k.as_str(), a.shape.as_slice(), v.as_ref()))
        .collect();
    write_npz(&dir.join("posterior.npz"), &arrays)?;
    write_json(&dir.join("scenario.json"), &scenario_json(scenario))
}

/// A scenario as the JSON of a `scenario.json` (what [`crate::io::scenario_from_json`]
/// reads back as the same scenario).
pub fn scenario_json(scenario: &Scenario) -> Value {
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
            .map(|b| {
                let mut v = serde_json::json!({"select": b.select, "min": b.min, "max": b.max});
                if b.relative {
                    v["relative_to"] = Value::from("reference");
                }
                v
            })
            .collect();
        obj.insert("bounds".into(), Value::Array(b));
    }
    if let Some(reference) = &scenario.reference {
        let entries: Vec<Value> = reference
            .iter()
            .map(|(select, budget)| {
                let mut v = serde_json::json!(select);
                v["budget"] = Value::from(*budget);
                v
            })
            .collect();
        obj.insert("reference".into(), Value::Array(entries));
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
    if !scenario.history.is_empty() {
        let h: Vec<Value> = scenario
            .history
            .iter()
            .map(|r| serde_json::json!({"select": r.select, "spend": r.values}))
            .collect();
        obj.insert("history".into(), Value::Array(h));
    }
    match scenario.decision {
        crate::scenario::Decision::Constant => {}
        crate::scenario::Decision::Every(1) => {
            obj.insert("decision".into(), Value::from("per_period"));
        }
        crate::scenario::Decision::Every(k) => {
            obj.insert("decision".into(), serde_json::json!({ "every": k }));
        }
    }
    if !scenario.flighting.is_empty() {
        let f: Vec<Value> = scenario
            .flighting
            .iter()
            .map(|f| serde_json::json!({"select": f.select, "max_change": f.max_change}))
            .collect();
        obj.insert("flighting".into(), Value::Array(f));
    }
    if !scenario.period_sums.is_empty() {
        let f: Vec<Value> = scenario
            .period_sums
            .iter()
            .map(|p| {
                let mut v = serde_json::json!({"select": p.select, "periods": [p.first, p.last]});
                if let Some(m) = p.min {
                    v["min"] = Value::from(m);
                }
                if let Some(m) = p.max {
                    v["max"] = Value::from(m);
                }
                v
            })
            .collect();
        obj.insert("period_sums".into(), Value::Array(f));
    }
    if !scenario.constraints.is_empty() {
        obj.insert(
            "constraints".into(),
            serde_json::json!(scenario.constraints),
        );
    }
    if !scenario.utility.is_mean() {
        obj.insert(
            "objective".into(),
            serde_json::json!(format!("maximize {}", scenario.utility)),
        );
    }
    scenario_json
}

/// Writes the per-cell lines of a report as CSV: the dims, `budget_per_period`,
/// `budget_over_window`, `share_of_allocated`, `mean_contribution_over_window`, `roi`,
/// `marginal_roi` (the header names each unit).
pub fn write_csv(path: &Path, report: &crate::report::Report) -> Result<()> {
    let err = |e: csv::Error| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    make_parent(path)?;
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    let dims: Vec<String> = report
        .cells
        .first()
        .map(|c| c.coords.iter().map(|(d, _)| d.clone()).collect())
        .unwrap_or_default();
    let mut header = dims.clone();
    header.extend(
        [
            "budget_per_period",
            "budget_over_window",
            "share_of_allocated",
            "mean_contribution_over_window",
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
