//! The command line: output, JSON, exit codes and one-line errors.

use serde_json::Value;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
}

/// Runs `cmd`, which must exit 0 (its stderr in the failure); its stdout.
fn succeeds(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The entry of a JSON list whose `key` is `value`.
fn entry<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no entry with {key} = {value} in {list}"))
}

/// The JSON in a file.
fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn evaluate_prints_a_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result.json");
    let table = succeeds(
        bin()
            .args(["evaluate", "tests/data/m8x4", "--out"])
            .arg(&out),
    );
    assert!(table.contains("g0/ch0"), "{table}");
    assert!(
        table.contains("budget 2000 per period = 24000 over 12 periods"),
        "{table}"
    );
    let v: Value = read_json(&out);
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string("tests/data/m8x4/expected.json").unwrap())
            .unwrap();
    let (ours, theirs) = (
        v["utility"].as_f64().unwrap(),
        expected["objective_at_uniform"].as_f64().unwrap(),
    );
    assert!((ours - theirs).abs() <= 1e-9 * theirs);
    assert_eq!(v["mean_response"], v["utility"]);
    for q in ["0.05", "0.5", "0.95"] {
        assert!(v["response_quantiles"][q].is_f64(), "{q}");
    }
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 32);
    assert_eq!(cells[9]["geo"], "g1");
    assert_eq!(cells[9]["channel"], "ch1");
    assert_eq!(cells[9]["budget"], 62.5);
    assert_eq!(cells[9]["budget_window"], 750.0);
    let sum: f64 = cells
        .iter()
        .map(|c| c["mean_contribution"].as_f64().unwrap())
        .sum();
    assert!((sum - ours).abs() <= 1e-9 * ours);
    let c = &cells[0];
    let roi = c["mean_contribution"].as_f64().unwrap() / c["budget_window"].as_f64().unwrap();
    assert!((c["roi"].as_f64().unwrap() - roi).abs() <= 1e-12 * roi);
    assert_eq!(v["total_budget_window"], 24000.0);
}

#[test]
fn evaluate_reads_an_allocation_file() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = dir.path().join("alloc.json");
    std::fs::write(
        &alloc,
        r#"{"allocation": [{"channel": "ch0", "budget": 87.70587722664186},
                           {"channel": "ch1", "budget": 129.43486415269314},
                           {"channel": "ch2", "budget": 82.85925862066503}]}"#,
    )
    .unwrap();
    let out = dir.path().join("r.json");
    succeeds(
        bin()
            .args(["evaluate", "tests/data/s3", "--allocation"])
            .arg(&alloc)
            .arg("--out")
            .arg(&out),
    );
    let v: Value = read_json(&out);
    let u = v["utility"].as_f64().unwrap();
    assert!((u - 20892.67201557025).abs() <= 1e-9 * u, "{u}");
    // That allocation spends the budget within its bounds: no warning.
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn evaluate_warns_about_an_allocation_that_breaks_the_budget_or_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let alloc = dir.path().join("alloc.json");
    std::fs::write(
        &alloc,
        r#"{"allocation": [{"channel": "ch0", "budget": 100}, {"channel": "ch1", "budget": 500}]}"#,
    )
    .unwrap();
    let out = dir.path().join("r.json");
    let o = bin()
        .args(["evaluate", "tests/data/s3", "--allocation"])
        .arg(&alloc)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let err = String::from_utf8(o.stderr).unwrap();
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 3, "{err}");
    assert!(
        warnings[0].contains("spends 600 per period, the budget is 300"),
        "{err}"
    );
    assert!(
        warnings[1].contains("1 cell outside its bounds: ch1 500"),
        "{err}"
    );
    assert!(
        warnings[2].contains("1 cell not in the allocation file given 0: ch2"),
        "{err}"
    );
    let v: Value = read_json(&out);
    assert_eq!(v["warnings"].as_array().unwrap().len(), 3);
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let o = bin()
        .args(["evaluate", "tests/data/does-not-exist"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && err.contains("does-not-exist/model.json"),
        "{err}"
    );
    let o = bin()
        .args(["evaluate", "tests/data/s3", "--allocation", "missing.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8(o.stderr)
            .unwrap()
            .contains("missing.json")
    );
}

#[test]
fn demo_solves_and_writes_a_case_that_optimize_reads() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("demo");
    let out = dir.path().join("demo.json");
    let text = succeeds(
        bin()
            .args(["demo", "--write-case"])
            .arg(&case)
            .arg("--out")
            .arg(&out),
    );
    assert!(text.contains("status: optimal"), "{text}");
    let demo: Value = read_json(&out);
    // The written case optimizes to the same utility.
    let out2 = dir.path().join("case.json");
    let csv = dir.path().join("case.csv");
    succeeds(
        bin()
            .arg("optimize")
            .arg(&case)
            .arg("--out")
            .arg(&out2)
            .arg("--csv")
            .arg(&csv),
    );
    let v: Value = read_json(&out2);
    let (a, b) = (
        demo["utility"].as_f64().unwrap(),
        v["utility"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= 1e-9 * a, "{a} vs {b}");
    assert_eq!(v["status"], "solved");
    for key in [
        "message",
        "start",
        "multipliers",
        "iterations",
        "evaluations",
        "backend",
        "seconds",
        "cells",
        "response_quantiles",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert!(v["start"]["utility"].as_f64().unwrap() < b);
    assert_eq!(v["multipliers"][0]["constraint"], "budget");
    let lines: Vec<String> = std::fs::read_to_string(&csv)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(
        lines[0],
        "geo,channel,budget_per_period,budget_over_window,share_of_allocated,\
         mean_contribution_over_window,roi,marginal_roi"
    );
    assert_eq!(lines.len(), 16);
}

#[test]
fn optimize_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.json", "posterior.npz"] {
        std::fs::copy(format!("tests/data/s3/{f}"), dir.path().join(f)).unwrap();
    }
    // Infeasible: exit 3, the status in the JSON, no cells.
    std::fs::write(
        dir.path().join("scenario.json"),
        r#"{"num_periods": 8, "total_budget": 300, "constraints": ["ch0 >= 200", "ch0 + ch1 <= 150"]}"#,
    )
    .unwrap();
    let out = dir.path().join("r.json");
    let o = bin()
        .arg("optimize")
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let v: Value = read_json(&out);
    assert_eq!(v["status"], "infeasible");
    assert!(v.get("cells").is_none());
    assert!(v["message"].as_str().unwrap().contains("ch0 >= 200"));
    // An iteration limit: exit 4.
    std::fs::write(
        dir.path().join("scenario.json"),
        r#"{"num_periods": 8, "total_budget": 300, "options": {"max_iter": 1}}"#,
    )
    .unwrap();
    let o = bin().arg("optimize").arg(dir.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(4));
    // Bad options and a constraint that does not parse: exit 2, one line naming the column.
    std::fs::write(
        dir.path().join("scenario.json"),
        r#"{"num_periods": 8, "total_budget": 300, "options": {"gtoll": 1}}"#,
    )
    .unwrap();
    let o = bin().arg("optimize").arg(dir.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8(o.stderr)
            .unwrap()
            .contains("options.gtoll")
    );
    std::fs::write(
        dir.path().join("scenario.json"),
        r#"{"num_periods": 8, "total_budget": 300, "constraints": ["ch0 + ch9 <= 5"]}"#,
    )
    .unwrap();
    let o = bin().arg("optimize").arg(dir.path()).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("constraints[0]")
            && err.contains("column 7")
            && err.contains("unknown channel \"ch9\""),
        "{err}"
    );
    // --budget replaces the scenario's.
    std::fs::write(
        dir.path().join("scenario.json"),
        r#"{"num_periods": 8, "total_budget": 300}"#,
    )
    .unwrap();
    succeeds(
        bin()
            .arg("optimize")
            .arg(dir.path())
            .args(["--budget", "600", "--out"])
            .arg(&out),
    );
    let v: Value = read_json(&out);
    assert_eq!(v["total_budget"], 600.0);
}

/// `bench` on 30 draws × 4 cells × (6 + 3) periods on the CPU, one repeat, with
/// `extra` flags: its JSON.
fn tiny_bench(extra: &[&str]) -> Value {
    let stdout = succeeds(
        bin()
            .args([
                "bench",
                "--draws",
                "30",
                "--cells",
                "4",
                "--periods",
                "6",
                "--lmax",
                "3",
                "--backend",
                "cpu",
                "--repeats",
                "1",
                "--json",
            ])
            .args(extra),
    );
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn bench_runs_every_saturation_kind_and_names_a_bad_one() {
    for kind in mmm_budget::Saturation::ALL.map(|k| k.name()) {
        let v = tiny_bench(&["--saturation", kind]);
        let row = &v["rows"][0];
        // hill included: its synthetic slopes span 1 (0.56 to 3.25).
        assert_eq!(row["status"], "solved", "{kind}: {row}");
        assert!(row["utility"].as_f64().unwrap() > 0.0, "{kind}: {row}");
        if cfg!(target_os = "linux") {
            // The peak resident memory of the process while the row was measured.
            let peak = row["peak_host_bytes"].as_u64().unwrap();
            assert!(peak > 1 << 20 && peak < 1 << 32, "{kind}: {peak}");
        }
    }
    let o = bin()
        .args(["bench", "--saturation", "sigmoid"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("--saturation") && err.contains("sigmoid"),
        "{err}"
    );
    // Several allocations a pass: a row per k, the time of the pass.
    let v = tiny_bench(&["--no-optimize", "--many", "2,5"]);
    let many = v["rows"][0]["many"].as_array().unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(
        (many[0]["k"].as_u64(), many[1]["k"].as_u64()),
        (Some(2), Some(5))
    );
    assert!(many.iter().all(|m| m["seconds"].as_f64().unwrap() > 0.0));
    // The set-up's two steps, timed.
    let v = tiny_bench(&["--no-optimize"]);
    assert!(v["posterior_seconds"].as_f64().unwrap() > 0.0);
    assert!(v["problem_seconds"].as_f64().unwrap() > 0.0);
    // Loading a case folder into a ready evaluator: its archive's bytes, its
    // parameters' bytes in f64 (s3: 400 draws × 3 cells × 3 parameters).
    let v = tiny_bench(&["--no-optimize", "--load", "tests/data/s3"]);
    let load = v["load"].as_array().unwrap();
    assert_eq!(load.len(), 1, "{v}");
    let file = std::fs::metadata("tests/data/s3/posterior.npz")
        .unwrap()
        .len();
    assert_eq!(load[0]["file_bytes"].as_u64(), Some(file));
    assert_eq!(
        load[0]["parameter_bytes_f64"].as_u64(),
        Some(400 * 3 * 3 * 8)
    );
    let parts = ["open_seconds", "problem_seconds", "evaluator_seconds"];
    let sum: f64 = parts.iter().map(|p| load[0][p].as_f64().unwrap()).sum();
    assert!((load[0]["seconds"].as_f64().unwrap() - sum).abs() < 1e-12);
    assert!(load[0]["bytes_per_second"].as_f64().unwrap() > 0.0);
    let o = bin()
        .args(["bench", "--load", "no/such/case", "--backend", "cpu"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8(o.stderr)
            .unwrap()
            .contains("no/such/case")
    );
    // Other objectives beside the mean's optimization.
    let v = tiny_bench(&["--objectives", "cvar(0.9);mean - 0.5 * std"]);
    let runs = v["rows"][0]["objectives"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0]["objective"], "maximize cvar(0.9)");
    assert!(runs.iter().all(|r| r["evaluations"].as_u64().unwrap() > 0));
    let o = bin()
        .args(["bench", "--objectives", "cvar(2)"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8(o.stderr)
            .unwrap()
            .contains("--objectives")
    );
    let o = bin().args(["bench", "--many", "0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8(o.stderr).unwrap().contains("--many"));
    let o = bin()
        .args(["bench", "--workgroup", "64,100"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("--workgroup") && err.contains("100") && err.lines().count() == 1,
        "{err}"
    );
}

/// A hill case whose constraint holds a steep cell (slope < 1 in some draw) at 0: the
/// JSON writes the infinite multiplier and marginal ROI as "inf" (JSON has no
/// infinities; `null` would say nothing).
#[test]
fn infinite_multipliers_are_written_as_inf() {
    use mmm_budget::{Saturation, demo, io};
    let dir = tempfile::tempdir().unwrap();
    let size = demo::SyntheticSize {
        channels: 8,
        geos: 1,
        draws: 50,
        periods: 26,
        l_max: 8,
    };
    let (model, mut scenario) = demo::synthetic_with(&size, Saturation::Hill, 1);
    scenario.constraints = vec!["ch3 <= 0".into()];
    let case = dir.path().join("hill");
    io::write_case(&case, &model, &scenario).unwrap();
    let out = dir.path().join("hill.json");
    let text = succeeds(bin().arg("optimize").arg(&case).arg("--out").arg(&out));
    assert!(text.contains("  ch3 <= 0: inf"), "{text}");
    let v: Value = read_json(&out);
    assert_eq!(
        entry(&v["multipliers"], "constraint", "ch3 <= 0")["value"],
        "inf"
    );
    let ch3 = entry(&v["cells"], "channel", "ch3");
    assert_eq!(ch3["budget"].as_f64(), Some(0.0));
    assert_eq!(ch3["marginal_roi"], "inf");
    assert!(v["kkt_residual"].as_f64().unwrap() <= 1e-8);
}

#[test]
fn frontier_prints_a_rising_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.json");
    let text = succeeds(
        bin()
            .args([
                "frontier",
                "tests/data/m8x4",
                "--budgets",
                "0.5x..1.5x",
                "--steps",
                "5",
                "--out",
            ])
            .arg(&out),
    );
    assert!(text.contains("marginal"), "{text}");
    let v: Value = read_json(&out);
    let points = v["points"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    let responses: Vec<f64> = points
        .iter()
        .map(|p| p["mean_response"].as_f64().unwrap())
        .collect();
    assert!(responses.windows(2).all(|w| w[1] > w[0]), "{responses:?}");
    assert_eq!(points[0]["budget"].as_f64().unwrap(), 1000.0);
    assert_eq!(points[0]["cells"].as_array().unwrap().len(), 32);
    let o = bin()
        .args(["frontier", "tests/data/m8x4", "--budgets", "2x..1x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.contains("--budgets") && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn optimize_writes_response_curves() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("curves.json");
    succeeds(
        bin()
            .args(["optimize", "tests/data/s3", "--backend", "cpu", "--curves"])
            .arg(&out),
    );
    let v: Value = read_json(&out);
    let cells = v["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 3);
    for c in cells {
        assert_eq!(c["spend"].as_array().unwrap().len(), 25);
        assert_eq!(c["contribution"].as_array().unwrap().len(), 25);
        assert!(c["budget"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(v["units"]["spend"], "per period");
}

#[test]
fn quiet_prints_nothing_and_still_writes_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/plan.json");
    let o = bin()
        .args([
            "optimize",
            "tests/data/m8x4",
            "--backend",
            "cpu",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(read_json(&out)["status"], "solved");
}

#[test]
fn without_a_terminal_stderr_holds_no_progress_and_no_error_lines() {
    // A frontier of 60 solves: long enough for a bar on a terminal, none here.
    let o = bin()
        .args([
            "frontier",
            "tests/data/m8x4",
            "--steps",
            "60",
            "--backend",
            "cpu",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Auto on a machine whose only adapter is software: no `error:` line either.
    let o = bin()
        .args(["optimize", "tests/data/s3"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.lines().any(|l| l.starts_with("error")), "{err}");
}

#[test]
fn the_csv_header_names_each_unit() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("plan.csv");
    succeeds(
        bin()
            .args([
                "optimize",
                "tests/data/m8x4",
                "--backend",
                "cpu",
                "-q",
                "--csv",
            ])
            .arg(&csv),
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        "geo,channel,budget_per_period,budget_over_window,share_of_allocated,\
         mean_contribution_over_window,roi,marginal_roi"
    );
    assert_eq!(text.lines().count(), 1 + 32);
}

#[test]
fn curve_is_the_frontier() {
    let a = succeeds(bin().args([
        "frontier",
        "tests/data/s3",
        "--steps",
        "5",
        "--backend",
        "cpu",
    ]));
    let b = succeeds(bin().args(["curve", "tests/data/s3", "--steps", "5", "--backend", "cpu"]));
    let numbers = |t: &str| -> Vec<String> {
        t.lines()
            .skip(1)
            .take(5)
            .map(|l| l.split_whitespace().take(5).collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(numbers(&a), numbers(&b));
}

/// `--gpus 0,0`: the draws split over two logical devices on one adapter give the
/// optimum of one device (where wgpu finds an adapter; MMM_REQUIRE_GPU=1 makes a
/// missing one fail); an adapter index past the list is a one-line error.
#[test]
fn optimize_splits_the_draws_over_several_gpus() {
    if mmm_budget::GpuContext::adapters().is_empty() {
        assert!(
            std::env::var("MMM_REQUIRE_GPU").map_or(true, |v| v != "1"),
            "MMM_REQUIRE_GPU=1 but no GPU adapter"
        );
        eprintln!("skipped: no GPU adapter");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one.json"), dir.path().join("two.json"));
    succeeds(
        bin()
            .args(["-q", "demo", "--backend", "gpu", "--out"])
            .arg(&one),
    );
    succeeds(
        bin()
            .args(["-q", "demo", "--backend", "gpu", "--gpus", "0,0", "--out"])
            .arg(&two),
    );
    let (a, b) = (read_json(&one), read_json(&two));
    assert!(
        b["backend"]
            .as_str()
            .unwrap()
            .starts_with("sharded (1000 draws on gpu"),
        "{b}"
    );
    let (ua, ub) = (
        a["utility"].as_f64().unwrap(),
        b["utility"].as_f64().unwrap(),
    );
    assert!((ua - ub).abs() <= 1e-6 * ua, "{ua} vs {ub}");
    let o = bin()
        .args(["-q", "demo", "--backend", "gpu", "--gpus", "0,99"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("no adapter 99: the adapters are"),
        "{err}"
    );
}
