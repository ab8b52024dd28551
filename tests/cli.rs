//! The command line: output, JSON, exit codes and one-line errors.

use serde_json::Value;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
}

#[test]
fn evaluate_prints_a_table_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result.json");
    let o = bin()
        .args(["evaluate", "tests/data/m8x4", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8(o.stdout).unwrap();
    assert!(table.contains("g0/ch0"), "{table}");
    assert!(
        table.contains("budget 2000 per period = 24000 over 12 periods"),
        "{table}"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
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
    let o = bin()
        .args(["evaluate", "tests/data/s3", "--allocation"])
        .arg(&alloc)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let u = v["utility"].as_f64().unwrap();
    assert!((u - 20892.67201557025).abs() <= 1e-9 * u, "{u}");
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
