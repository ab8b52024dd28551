//! `scenario.json` and allocation files; the solver's settings from the scenario's
//! `options`.

use super::{parse_json, read_text};
use crate::error::{Error, Result};
use crate::scenario::{
    BoundRule, BudgetConstraint, Decision, FlightRule, PeriodRule, PeriodSum, Scenario, Selector,
};
use crate::utility::Utility;
use crate::{HessianMode, Settings};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;

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
    objective: Option<String>,
    #[serde(default)]
    start: Option<Vec<Map<String, Value>>>,
    #[serde(default)]
    reference: Option<Vec<Map<String, Value>>>,
    /// Rules, or a CSV file's path (read as [`HistoryFile`]s when not a string, so
    /// that a bad rule's error names its field).
    #[serde(default)]
    history: Option<Value>,
    #[serde(default)]
    decision: Option<Value>,
    #[serde(default)]
    flighting: Vec<FlightFile>,
    #[serde(default)]
    period_sums: Vec<PeriodSumFile>,
    #[serde(default)]
    options: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlightFile {
    #[serde(default)]
    select: Selector,
    max_change: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeriodSumFile {
    #[serde(default)]
    select: Selector,
    periods: [usize; 2],
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    equal: Option<f64>,
}

/// `"decision"`: `"constant"`, `"per_period"` or `{"every": k}` (k ≥ 1).
fn decision_of(v: &Option<Value>, ctx: &str) -> Result<Decision> {
    let expected = r#""constant", "per_period" or {"every": k} with k an integer >= 1"#;
    Ok(match v {
        None => Decision::Constant,
        Some(Value::String(s)) if s == "constant" => Decision::Constant,
        Some(Value::String(s)) if s == "per_period" => Decision::Every(1),
        Some(Value::Object(m)) if m.len() == 1 && m.contains_key("every") => {
            match m["every"].as_u64() {
                Some(k) if k >= 1 => Decision::Every(k.min(usize::MAX as u64) as usize),
                _ => return Err(Error::invalid(ctx, "decision.every", &m["every"], expected)),
            }
        }
        Some(other) => return Err(Error::invalid(ctx, "decision", other, expected)),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryFile {
    #[serde(default)]
    select: Selector,
    spend: Vec<f64>,
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
    #[serde(default)]
    relative_to: Option<String>,
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

/// Loads `scenario.json`: the scenario and the solver's settings from its `options`.
pub fn load_scenario(path: &Path) -> Result<(Scenario, crate::Settings)> {
    scenario_in(
        &read_text(path)?,
        &path.display().to_string(),
        path.parent().unwrap_or(Path::new(".")),
    )
}

/// One row of a history CSV: (period, spend, line).
type HistoryRow = (i64, f64, u64);

/// The largest history CSV read, in bytes: l_max values per cell fit easily.
pub const MAX_HISTORY_BYTES: u64 = 64 << 20;

/// Carry-in from a CSV file in long form: a column `period` (−1 is the period just
/// before the window, −2 the one before, …), a column `spend` (in the channel data's
/// units, as scenario.json's `history`), and a column for each dim that selects the
/// cells (`channel`, `geo`, …; none, or a blank value: every coordinate of that
/// dim). Each combination of those
/// columns' values becomes a rule whose spends are its rows ordered oldest first;
/// its periods must be −k … −1 without gaps or repeats (k = l_max, which the
/// problem checks). Errors name the file, the line and the column.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("history.csv");
/// std::fs::write(&path, "channel,period,spend\ntv,-2,50\ntv,-1,70\nradio,-1,5\nradio,-2,4\n")?;
/// let rules = mmm_budget::io::history_from_csv(&path)?;
/// assert_eq!(rules.len(), 2);
/// assert_eq!(rules[0].select["channel"], "tv");
/// assert_eq!(rules[0].values, vec![50.0, 70.0]);
/// assert_eq!(rules[1].values, vec![4.0, 5.0]); // oldest first
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn history_from_csv(path: &Path) -> Result<Vec<PeriodRule>> {
    let ctx = path.display().to_string();
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_HISTORY_BYTES {
        return Err(Error::invalid(
            &ctx,
            "size",
            format!("{size} bytes"),
            format!("at most {MAX_HISTORY_BYTES} bytes"),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| Error::invalid(&ctx, "file", e.to_string(), "a readable CSV file"))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| Error::invalid(&ctx, "header", e.to_string(), "a CSV header"))?
        .iter()
        .map(str::to_string)
        .collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(period_col), Some(spend_col)) = (column("period"), column("spend")) else {
        return Err(Error::invalid(
            &ctx,
            "header",
            header.join(","),
            "columns `period` and `spend`, and one per selecting dim (`channel`, `geo`, …)",
        ));
    };
    let dims: Vec<(usize, &String)> = header
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != period_col && *i != spend_col)
        .collect();
    // Rules in order of first appearance, each with its (period, spend, line) rows.
    let mut rules: Vec<(Selector, Vec<HistoryRow>)> = vec![];
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            Error::invalid(&ctx, format!("line {line}"), e.to_string(), "a CSV row")
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("");
        let period = field(period_col)
            .parse::<i64>()
            .ok()
            .filter(|p| *p < 0)
            .ok_or_else(|| {
                Error::invalid(
                    &ctx,
                    format!("line {line}, period"),
                    format!("{:?}", field(period_col)),
                    "a negative integer (-1: the period just before the window)",
                )
            })?;
        let spend = field(spend_col)
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                Error::invalid(
                    &ctx,
                    format!("line {line}, spend"),
                    format!("{:?}", field(spend_col)),
                    "a finite number >= 0",
                )
            })?;
        // A blank value selects on that dim no more.
        let select: Selector = dims
            .iter()
            .filter(|(i, _)| !field(*i).is_empty())
            .map(|(i, d)| ((*d).clone(), field(*i).to_string()))
            .collect();
        match rules.iter_mut().find(|(s, _)| *s == select) {
            Some((_, rows)) => rows.push((period, spend, line)),
            None => rules.push((select, vec![(period, spend, line)])),
        }
    }
    rules
        .into_iter()
        .map(|(select, mut rows)| {
            rows.sort_by_key(|r| r.0);
            // Oldest first: −k, …, −1, each once.
            let k = rows.len() as i64;
            if let Some((period, _, line)) = rows
                .iter()
                .enumerate()
                .find(|(j, r)| r.0 != *j as i64 - k)
                .map(|(_, r)| *r)
            {
                return Err(Error::invalid(
                    &ctx,
                    format!("line {line}, period"),
                    period,
                    format!(
                        "periods -{k} to -1, each once, for the cells of {}",
                        serde_json::json!(select)
                    ),
                ));
            }
            Ok(PeriodRule {
                select,
                values: rows.into_iter().map(|r| r.1).collect(),
            })
        })
        .collect()
}

/// A scenario (and the solver's settings from its `options`) from the text of a
/// `scenario.json`; errors name `context` where they would name the file.
///
/// ```
/// let (scenario, _) = mmm_budget::io::scenario_from_json(
///     r#"{"num_periods": 8, "total_budget": 100.0, "objective": "maximize cvar(0.9)"}"#,
///     "notebook",
/// )?;
/// assert_eq!(scenario.num_periods, 8);
/// let e = mmm_budget::io::scenario_from_json(r#"{"num_periods": 8}"#, "notebook").unwrap_err();
/// assert!(e.to_string().starts_with("notebook: missing field `total_budget`"));
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn scenario_from_json(text: &str, context: &str) -> Result<(Scenario, crate::Settings)> {
    scenario_in(text, context, Path::new("."))
}

/// [`scenario_from_json`], a history CSV's relative path taken from `dir`.
fn scenario_in(text: &str, context: &str, dir: &Path) -> Result<(Scenario, crate::Settings)> {
    let file: ScenarioFile = parse_json(Path::new(context), text)?;
    let ctx = context.to_string();
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
        None => Utility::mean(),
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
                    r#""mean", or a measure as in "objective""#,
                )
            })?
        }
    };
    let utility = match (&file.objective, &file.utility) {
        (Some(text), None) => Utility::parse_in(text, &ctx, "objective")?,
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                &ctx,
                "objective",
                "given with utility",
                "one of objective and utility",
            ));
        }
        (None, _) => utility,
    };
    let start = file
        .start
        .as_ref()
        .map(|entries| allocation_entries(&ctx, "start", entries))
        .transpose()?;
    let reference = file
        .reference
        .as_ref()
        .map(|entries| allocation_entries(&ctx, "reference", entries))
        .transpose()?;
    let n = file.num_periods;
    let decision = decision_of(&file.decision, &ctx)?;
    let period_sums = file
        .period_sums
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let (min, max) = match (p.equal, p.min, p.max) {
                (Some(v), None, None) => (Some(v), Some(v)),
                (None, min, max) if min.is_some() || max.is_some() => (min, max),
                _ => {
                    return Err(Error::invalid(
                        &ctx,
                        format!("period_sums[{i}]"),
                        "no limit, or equal with min or max",
                        "min and/or max, or equal alone",
                    ));
                }
            };
            Ok(PeriodSum {
                select: p.select,
                first: p.periods[0],
                last: p.periods[1],
                min,
                max,
            })
        })
        .collect::<Result<_>>()?;
    let scenario = Scenario {
        num_periods: n,
        total_budget: file.total_budget,
        budget_constraint,
        bounds: file
            .bounds
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let relative = match b.relative_to.as_deref() {
                    None => false,
                    Some("reference") => true,
                    Some(other) => {
                        return Err(Error::invalid(
                            &ctx,
                            format!("bounds[{i}].relative_to"),
                            format!("{other:?}"),
                            r#""reference" (min and max as multiples of the scenario's reference)"#,
                        ));
                    }
                };
                Ok(BoundRule {
                    select: b.select,
                    min: b.min,
                    max: b.max,
                    relative,
                })
            })
            .collect::<Result<_>>()?,
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
        reference,
        history: match file.history {
            None => vec![],
            Some(Value::String(path)) => history_from_csv(&dir.join(path))?,
            Some(rules) => serde_json::from_value::<Vec<HistoryFile>>(rules)
                .map_err(|e| Error::Json {
                    path: Path::new(context).to_path_buf(),
                    message: format!("history: {e}"),
                })?
                .into_iter()
                .map(|h| PeriodRule {
                    select: h.select,
                    values: h.spend,
                })
                .collect(),
        },
        decision,
        flighting: file
            .flighting
            .into_iter()
            .map(|f| FlightRule {
                select: f.select,
                max_change: f.max_change,
            })
            .collect(),
        period_sums,
    };
    let settings = settings_from_options(&file.options, &ctx)?;
    Ok((scenario, settings))
}

/// The solver's settings from a scenario file's `options` object (`max_iter`,
/// `time_limit`, `gtol`, `ctol`, `ftol`, `xtol`, `verbose`, `hessian`: "auto" |
/// "exact" | "bfgs", `starts`); errors name `context` (the file) and the option.
pub fn settings_from_options(options: &Map<String, Value>, context: &str) -> Result<Settings> {
    let mut s = Settings::default();
    for (key, v) in options {
        let bad =
            |expected: &'static str| Error::invalid(context, format!("options.{key}"), v, expected);
        let num = || v.as_f64().ok_or_else(|| bad("a number"));
        match key.as_str() {
            "max_iter" => s.max_iter = v.as_u64().ok_or_else(|| bad("an integer >= 1"))? as usize,
            "starts" => s.starts = v.as_u64().ok_or_else(|| bad("an integer >= 1"))? as usize,
            "time_limit" => s.time_limit = num()?,
            "gtol" => s.gtol = num()?,
            "ctol" => s.ctol = num()?,
            "ftol" => s.ftol = num()?,
            "xtol" => s.xtol = num()?,
            "verbose" => {
                s.verbose = v
                    .as_u64()
                    .filter(|&x| x <= 2)
                    .ok_or_else(|| bad("0, 1 or 2"))? as u8
            }
            "hessian" => {
                s.hessian = match v.as_str() {
                    Some("auto") => HessianMode::Auto,
                    Some("exact") => HessianMode::Exact,
                    Some("bfgs") => HessianMode::Bfgs,
                    _ => return Err(bad(r#""auto", "exact" or "bfgs""#)),
                }
            }
            _ => {
                return Err(bad(
                    "one of max_iter, time_limit, gtol, ctol, ftol, xtol, verbose, hessian, starts",
                ));
            }
        }
    }
    s.validate().map_err(|e| e.recontext("settings", context))?;
    Ok(s)
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
    allocation_from_json(&read_text(path)?, &path.display().to_string())
}

/// An allocation from the text of an allocation file; errors name `context` where
/// they would name the file.
///
/// ```
/// let entries = mmm_budget::io::allocation_from_json(
///     r#"{"allocation": [{"channel": "tv", "budget": 40.0}]}"#,
///     "notebook",
/// )?;
/// assert_eq!(entries[0].1, 40.0);
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn allocation_from_json(text: &str, context: &str) -> Result<Vec<(Selector, f64)>> {
    let file: AllocationFile = parse_json(Path::new(context), text)?;
    allocation_entries(context, "allocation", &file.allocation)
}
