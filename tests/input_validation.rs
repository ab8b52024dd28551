//! Malformed inputs give an error that names the file, the field and the value, and
//! never a panic.

mod common;

use common::write_npz;
use mmm_budget::io::{load_allocation, load_case};
use mmm_budget::*;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// A copy of the s3 case in a temporary folder, with `model` and `scenario` JSON
/// edited by the closures.
struct TempCase {
    dir: tempfile::TempDir,
}

impl TempCase {
    fn new(edit_model: impl FnOnce(&mut Value), edit_scenario: impl FnOnce(&mut Value)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let src = Path::new("tests/data/s3");
        std::fs::copy(src.join("posterior.npz"), dir.path().join("posterior.npz")).unwrap();
        for (file, edit) in [
            (
                "model.json",
                Box::new(edit_model) as Box<dyn FnOnce(&mut Value)>,
            ),
            ("scenario.json", Box::new(edit_scenario)),
        ] {
            let mut v: Value =
                serde_json::from_str(&std::fs::read_to_string(src.join(file)).unwrap()).unwrap();
            edit(&mut v);
            std::fs::write(dir.path().join(file), v.to_string()).unwrap();
        }
        TempCase { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Loads and resolves the case; the error's message.
    fn error(&self) -> String {
        match load_case(self.dir.path(), None).and_then(|c| c.problem()) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }
}

fn model_error(edit: impl FnOnce(&mut Value)) -> String {
    TempCase::new(edit, |_| {}).error()
}

fn scenario_error(edit: impl FnOnce(&mut Value)) -> String {
    TempCase::new(|_| {}, edit).error()
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for p in parts {
        assert!(
            message.contains(p),
            "error {message:?} should mention {p:?}"
        );
    }
    assert!(
        !message.contains('\n'),
        "error {message:?} should be one line"
    );
}

#[test]
fn the_unedited_case_loads() {
    let c = TempCase::new(|_| {}, |_| {});
    load_case(c.dir.path(), None).unwrap().problem().unwrap();
}

#[test]
fn missing_files_are_named() {
    let e = load_case(Path::new("tests/data/no-such-case"), None)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["no-such-case/model.json"]);
    let c = TempCase::new(|_| {}, |_| {});
    std::fs::remove_file(c.path("posterior.npz")).unwrap();
    assert_mentions(&c.error(), &["posterior.npz"]);
    let c = TempCase::new(|m| m["posterior"] = json!("elsewhere.npz"), |_| {});
    assert_mentions(&c.error(), &["elsewhere.npz"]);
}

#[test]
fn invalid_json_names_file_line_and_column() {
    let c = TempCase::new(|_| {}, |_| {});
    std::fs::write(
        c.path("scenario.json"),
        "{\"num_periods\": 8,\n \"total_budget\": }",
    )
    .unwrap();
    assert_mentions(&c.error(), &["scenario.json", "line 2"]);
}

#[test]
fn unknown_kinds_list_the_known_ones() {
    let e = model_error(|m| m["adstock"]["kind"] = json!("geometrik"));
    assert_mentions(
        &e,
        &[
            "model.json",
            "adstock.kind",
            "geometrik",
            "geometric",
            "weibull_cdf",
        ],
    );
    let e = model_error(|m| m["saturation"]["kind"] = json!("sigmoid"));
    assert_mentions(&e, &["saturation.kind", "sigmoid", "hill_sigmoid"]);
    let e = scenario_error(|s| s["utility"] = json!({"kind": "median"}));
    assert_mentions(&e, &["utility.kind", "median"]);
    let e = scenario_error(|s| s["budget_constraint"] = json!("exactly"));
    assert_mentions(&e, &["budget_constraint", "exactly", "at_most"]);
}

#[test]
fn unknown_fields_are_rejected() {
    let e = scenario_error(|s| s["num_period"] = json!(8));
    assert_mentions(&e, &["scenario.json", "num_period"]);
    let e = model_error(|m| m["adstock"]["lmax"] = json!(4));
    assert_mentions(&e, &["model.json", "lmax"]);
}

#[test]
fn bad_scales_are_named_with_their_cell() {
    let e = model_error(|m| m["channel_scale"][1] = json!(-3.0));
    assert_mentions(&e, &["model.json", "channel_scale[ch1]", "-3", "> 0"]);
    let e = model_error(|m| m["target_scale"] = json!(0.0));
    assert_mentions(&e, &["target_scale", "0", "> 0"]);
    let e = model_error(|m| m["channel_scale"] = json!([1.0, 2.0]));
    assert_mentions(&e, &["channel_scale", "[2]", "length 3"]);
    let e = model_error(|m| m["channel_scale"] = json!([[1.0, 2.0], [3.0]]));
    assert_mentions(&e, &["channel_scale", "rectangular"]);
}

#[test]
fn structure_errors() {
    let e = model_error(|m| m["adstock"]["l_max"] = json!(0));
    assert_mentions(&e, &["adstock.l_max", "[1, 4096]"]);
    let e = model_error(|m| m["channels"] = json!(["ch0", "ch0", "ch2"]));
    assert_mentions(&e, &["channels", "ch0", "unique"]);
    let e =
        model_error(|m| m["posterior_dims"]["saturation_lam"] = json!(["chain", "draw", "region"]));
    assert_mentions(&e, &["saturation_lam", "region"]);
}

fn with_posterior(arrays: &[(&str, Vec<u64>, Vec<f64>)]) -> String {
    let c = TempCase::new(|m| m["posterior_dims"] = json!({}), |_| {});
    write_npz(&c.path("posterior.npz"), arrays);
    c.error()
}

fn good(value: f64) -> Vec<f64> {
    vec![value; 2 * 5 * 3]
}

#[test]
fn posterior_errors() {
    let shape = vec![2u64, 5, 3];
    // Missing array: names what needs it and what is there.
    let e = with_posterior(&[
        ("adstock_alpha", shape.clone(), good(0.5)),
        ("saturation_lam", shape.clone(), good(1.0)),
    ]);
    assert_mentions(
        &e,
        &[
            "posterior.npz",
            "saturation_beta",
            "logistic",
            "adstock_alpha, saturation_lam",
        ],
    );
    // NaN: names array, chain, draw, cell and value.
    let mut lam = good(1.0);
    lam[5 * 3 + 2 * 3 + 1] = f64::NAN; // chain 1, draw 2, channel 1
    let e = with_posterior(&[
        ("adstock_alpha", shape.clone(), good(0.5)),
        ("saturation_lam", shape.clone(), lam),
        ("saturation_beta", shape.clone(), good(1.0)),
    ]);
    assert_mentions(
        &e,
        &[
            "posterior.npz",
            "saturation_lam[chain 1, draw 2, cell ch1]",
            "NaN",
            "finite",
        ],
    );
    // Out of range.
    let mut alpha = good(0.5);
    alpha[4] = 1.5;
    let e = with_posterior(&[
        ("adstock_alpha", shape.clone(), alpha),
        ("saturation_lam", shape.clone(), good(1.0)),
        ("saturation_beta", shape.clone(), good(1.0)),
    ]);
    assert_mentions(
        &e,
        &["adstock_alpha[chain 0, draw 1, cell ch1]", "1.5", "[0, 1]"],
    );
    // Wrong channel count.
    let e = with_posterior(&[
        ("adstock_alpha", shape.clone(), good(0.5)),
        ("saturation_lam", vec![2, 5, 4], vec![1.0; 40]),
        ("saturation_beta", shape.clone(), good(1.0)),
    ]);
    assert_mentions(&e, &["saturation_lam", "[2, 5, 4]", "length 3"]);
    // Draw counts that differ.
    let e = with_posterior(&[
        ("adstock_alpha", shape.clone(), good(0.5)),
        ("saturation_lam", vec![2, 4, 3], vec![1.0; 24]),
        ("saturation_beta", shape.clone(), good(1.0)),
    ]);
    assert_mentions(&e, &["saturation_lam", "draws", "10 draws"]);
    // Rank the defaults cannot place.
    let e = with_posterior(&[
        ("adstock_alpha", vec![2, 5, 3, 1], good(0.5)),
        ("saturation_lam", shape.clone(), good(1.0)),
        ("saturation_beta", shape, good(1.0)),
    ]);
    assert_mentions(&e, &["adstock_alpha", "posterior_dims"]);
}

#[test]
fn a_parameter_without_channel_broadcasts() {
    // saturation_beta of shape (chain, draw) applies to every channel.
    let c = TempCase::new(|m| m["posterior_dims"] = json!({}), |_| {});
    let shape = vec![2u64, 5, 3];
    write_npz(
        &c.path("posterior.npz"),
        &[
            ("adstock_alpha", shape.clone(), good(0.5)),
            ("saturation_lam", shape, good(1.0)),
            ("saturation_beta", vec![2, 5], vec![2.0; 10]),
        ],
    );
    let problem = load_case(c.dir.path(), None).unwrap().problem().unwrap();
    assert!(
        problem
            .saturation_params
            .to_f64()
            .chunks(2)
            .all(|p| p[1] == 2.0)
    );
}

#[test]
fn files_that_are_not_archives_or_not_floats() {
    let c = TempCase::new(|_| {}, |_| {});
    std::fs::write(c.path("posterior.npz"), b"not a zip").unwrap();
    assert_mentions(&c.error(), &["posterior.npz", "not an NPZ"]);
}

#[test]
fn scenario_values() {
    assert_mentions(
        &scenario_error(|s| s["num_periods"] = json!(0)),
        &["scenario.json", "num_periods", "[1, 100000]"],
    );
    assert_mentions(
        &scenario_error(|s| s["num_periods"] = json!(1_000_000_000u64)),
        &["num_periods = 1000000000"],
    );
    assert_mentions(
        &scenario_error(|s| s["num_periods"] = json!(-3)),
        &["scenario.json", "-3"],
    );
    assert_mentions(
        &scenario_error(|s| s["total_budget"] = json!(-1.0)),
        &["total_budget", "-1", ">= 0"],
    );
}

#[test]
fn bounds_errors() {
    let e = scenario_error(|s| {
        s["bounds"] = json!([{"select": {"channel": "ch1"}, "min": 50, "max": 10}])
    });
    assert_mentions(
        &e,
        &[
            "scenario.json",
            "bounds of cell ch1",
            "[50, 10]",
            "min <= max",
        ],
    );
    let e = scenario_error(|s| s["bounds"] = json!([{"select": {"channel": "ch1"}, "min": -5}]));
    assert_mentions(&e, &["bounds[0].min", "-5"]);
    // A later rule overrides an earlier one: no error.
    let c = TempCase::new(
        |_| {},
        |s| {
            s["bounds"] = json!([{"select": {}, "min": 50, "max": 60}, {"select": {"channel": "ch1"}, "min": 0}])
        },
    );
    let p = load_case(c.dir.path(), None).unwrap().problem().unwrap();
    assert_eq!(p.lower, vec![50.0, 0.0, 50.0]);
    assert_eq!(p.upper, vec![60.0; 3]);
}

#[test]
fn selector_errors() {
    let e = scenario_error(|s| s["bounds"] = json!([{"select": {"region": "north"}, "max": 5}]));
    assert_mentions(&e, &["bounds[0].select.region", "\"region\"", "channel"]);
    let e = scenario_error(|s| s["bounds"] = json!([{"select": {"channel": "tv"}, "max": 5}]));
    assert_mentions(&e, &["bounds[0].select.channel", "\"tv\"", "ch0"]);
    let e = scenario_error(|s| s["optimize"] = json!([]));
    assert_mentions(&e, &["optimize", "at least one cell"]);
    let e = scenario_error(|s| s["optimize"] = json!([{"channel": 3}]));
    assert_mentions(&e, &["scenario.json", "string"]);
}

#[test]
fn period_factors() {
    let e = scenario_error(|s| {
        s["time_distribution"] =
            json!([{"select": {}, "factors": [0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]}])
    });
    assert_mentions(
        &e,
        &["time_distribution of cell ch0", "summing to 2", "sum to 1"],
    );
    let e =
        scenario_error(|s| s["time_distribution"] = json!([{"select": {}, "factors": [0.5, 0.5]}]));
    assert_mentions(&e, &["time_distribution[0]", "[2]", "8 values"]);
    let e = scenario_error(|s| {
        s["time_distribution"] = json!([{"factors": [1.5, -0.5, 0, 0, 0, 0, 0, 0]}])
    });
    assert_mentions(&e, &["time_distribution[0][1]", "-0.5"]);
    let e = scenario_error(|s| {
        s["cost_per_unit"] = json!([{"select": {"channel": "ch2"}, "values": 0.0}])
    });
    assert_mentions(&e, &["cost_per_unit[0][0]", "> 0"]);
}

#[test]
fn allocations() {
    let c = TempCase::new(
        |_| {},
        |s| s["optimize"] = json!([{"channel": "ch0"}, {"channel": "ch1"}]),
    );
    let case = load_case(c.dir.path(), None).unwrap();
    let problem = case.problem().unwrap();
    let file = c.path("alloc.json");
    std::fs::write(
        &file,
        json!({"allocation": [{"channel": "ch2", "budget": 5.0}]}).to_string(),
    )
    .unwrap();
    let e = problem
        .allocation_from(&case.model, &load_allocation(&file).unwrap(), "allocation")
        .unwrap_err();
    assert_mentions(
        &e.to_string(),
        &["allocation[0]", "5 for cell ch2", "optimized"],
    );
    std::fs::write(
        &file,
        json!({"allocation": [{"channel": "ch0", "budget": -1.0}]}).to_string(),
    )
    .unwrap();
    let e = problem
        .allocation_from(&case.model, &load_allocation(&file).unwrap(), "allocation")
        .unwrap_err();
    assert_mentions(&e.to_string(), &["allocation[0].budget", "-1"]);
    std::fs::write(
        &file,
        json!({"allocation": [{"channel": "ch0"}]}).to_string(),
    )
    .unwrap();
    assert_mentions(
        &load_allocation(&file).unwrap_err().to_string(),
        &["alloc.json", "allocation[0]", "budget"],
    );
    // Evaluator input.
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let mut r = vec![0.0; ev.num_draws()];
    let e = ev.responses(&[1.0], &mut r).unwrap_err().to_string();
    assert_mentions(&e, &["x", "[1]", "2 values"]);
    let e = ev
        .responses(&[1.0, f64::NAN], &mut r)
        .unwrap_err()
        .to_string();
    assert_mentions(&e, &["x[1] (cell ch1)", "NaN"]);
}

#[test]
fn models_built_in_code_are_checked_too() {
    let (mut model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 2,
            geos: 2,
            draws: 4,
        },
        0,
    );
    model
        .posterior
        .arrays
        .get_mut("saturation_lam")
        .unwrap()
        .values[3] = f64::INFINITY;
    let e = Problem::new(&model, &scenario).unwrap_err().to_string();
    assert_mentions(
        &e,
        &[
            "posterior",
            "saturation_lam[chain 0, draw 0, cell g1/ch1]",
            "inf",
        ],
    );
    let (mut model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 2,
            geos: 2,
            draws: 4,
        },
        0,
    );
    model
        .posterior
        .arrays
        .get_mut("adstock_alpha")
        .unwrap()
        .values
        .pop();
    let e = Problem::new(&model, &scenario).unwrap_err().to_string();
    assert_mentions(&e, &["adstock_alpha", "16 values, found 15"]);
}

/// Every field of model.json and scenario.json set to every odd JSON value: an error
/// or a problem, never a panic.
#[test]
fn odd_values_in_every_field_never_panic() {
    let odd = [
        json!(null),
        json!(-1),
        json!(0),
        json!(1e308),
        json!(-1e-308),
        json!("x"),
        json!([]),
        json!({}),
        json!([1, "a"]),
        json!([[1.0], [2.0, 3.0]]),
        json!(true),
        json!({"kind": "x"}),
        json!([{"select": {"channel": "ch0"}, "min": 5, "max": 1}]),
    ];
    let model_fields = [
        "channels",
        "dims",
        "adstock",
        "saturation",
        "adstock_first",
        "channel_scale",
        "target_scale",
        "posterior",
        "posterior_dims",
    ];
    let scenario_fields = [
        "num_periods",
        "total_budget",
        "budget_constraint",
        "bounds",
        "optimize",
        "time_distribution",
        "cost_per_unit",
        "constraints",
        "utility",
        "start",
        "options",
    ];
    for v in &odd {
        for f in model_fields {
            let c = TempCase::new(|m| m[f] = v.clone(), |_| {});
            let _ = load_case(c.dir.path(), None).and_then(|c| c.problem());
        }
        for f in scenario_fields {
            let c = TempCase::new(|_| {}, |s| s[f] = v.clone());
            let r = load_case(c.dir.path(), None);
            if let Ok(case) = r
                && let Ok(p) = case.problem()
            {
                let _ = CpuEvaluator::new(&p)
                    .and_then(|mut ev| Solver::new(&p, &mut ev, case.settings.clone())?.solve());
            }
        }
    }
}

/// The problem is built in parallel over draws; with several values out of their
/// domains, the error still names the first (in draw, then cell order), whatever
/// thread met which.
#[test]
fn the_first_bad_draw_is_named_when_several_are_bad() {
    let (mut model, scenario) = mmm_budget::demo::case(
        &mmm_budget::demo::DemoSize {
            channels: 5,
            geos: 4,
            draws: 4000,
        },
        3,
    );
    let lam = model.posterior.arrays.get_mut("saturation_lam").unwrap();
    let draw_axis = lam.dims.iter().position(|d| d == "draw").unwrap();
    let per_draw: usize = lam.shape[draw_axis + 1..].iter().product();
    assert_eq!(lam.shape[..draw_axis].iter().product::<usize>(), 1);
    for (draw, cell) in [(3900, 2), (2500, 7), (1234, 19), (1234, 5), (3999, 0)] {
        lam.values[draw * per_draw + cell] = f64::NAN;
    }
    let e = mmm_budget::Problem::new(&model, &scenario)
        .unwrap_err()
        .to_string();
    let cells = model.cells();
    let label = model.cell_label(&cells[5]);
    assert!(
        e.contains(&format!("saturation_lam[chain 0, draw 1234, cell {label}]")),
        "{e}"
    );
}
