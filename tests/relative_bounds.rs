//! Bounds relative to a reference allocation (Meridian's pct_of_spend, Robyn's
//! multiples of historical spend): each cell within multiples of its reference spend.

use mmm_budget::io::{load_case, load_scenario, write_case};
use mmm_budget::*;
use serde_json::Value;
use std::path::Path;

#[test]
fn each_cell_stays_within_its_multiples_of_the_reference() {
    let case = load_case(Path::new("tests/data/m8x4"), None).unwrap();
    let mut scenario = case.scenario.clone();
    // A reference of 62.5 per cell (the uniform split), tv-like ch0 at 100.
    scenario.reference = Some(vec![
        (Selector::new(), 60.0),
        ([("channel".to_string(), "ch0".to_string())].into(), 100.0),
    ]);
    scenario.bounds = vec![BoundRule {
        select: Selector::new(),
        min: Some(0.7),
        max: Some(1.3),
        relative: true,
    }];
    let problem = Problem::new(&case.model, &scenario).unwrap();
    for (c, cell) in problem.cells.iter().enumerate() {
        let r = if cell.coord("channel") == Some("ch0") {
            100.0
        } else {
            60.0
        };
        assert_eq!(
            (problem.lower[c], problem.upper[c]),
            (0.7 * r, 1.3 * r),
            "{}",
            cell.label
        );
    }
    let options = Options {
        backend: Backend::Cpu,
        ..Options::default()
    };
    let s = optimize(&case.model, &scenario, &options).unwrap();
    assert_eq!(s.status, Status::Solved, "{}", s.message);
    let mut binding = 0;
    for (c, x) in s.allocation.iter().enumerate() {
        let (lo, hi) = (problem.lower[c], problem.upper[c]);
        assert!(
            *x >= lo * (1.0 - 1e-9) && *x <= hi * (1.0 + 1e-9),
            "{x} outside [{lo}, {hi}]"
        );
        if (x - lo).abs() < 1e-6 * hi || (x - hi).abs() < 1e-6 * hi {
            binding += 1;
        }
    }
    assert!(binding > 0, "no relative bound binds");
}

#[test]
fn relative_bounds_come_from_the_scenario_file_and_go_back_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("tests/data/m8x4/scenario.json").unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["reference"] =
        serde_json::json!([{"budget": 62.5}, {"channel": "ch3", "geo": "g1", "budget": 10}]);
    v["bounds"] =
        serde_json::json!([{"select": {}, "relative_to": "reference", "min": 0.5, "max": 1.5}]);
    let path = dir.path().join("scenario.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let (scenario, _) = load_scenario(&path).unwrap();
    assert!(scenario.bounds[0].relative);
    assert_eq!(scenario.reference.as_ref().unwrap().len(), 2);
    // Written with a case folder and read back: the same scenario.
    let case = load_case(Path::new("tests/data/m8x4"), None).unwrap();
    let out = dir.path().join("case");
    write_case(&out, &case.model, &scenario).unwrap();
    let (back, _) = load_scenario(&out.join("scenario.json")).unwrap();
    assert_eq!(back, scenario);
    // Errors: no reference; an unknown relative_to.
    v.as_object_mut().unwrap().remove("reference");
    std::fs::write(&path, v.to_string()).unwrap();
    let (no_ref, _) = load_scenario(&path).unwrap();
    let e = Problem::new(&case.model, &no_ref).unwrap_err().to_string();
    assert!(
        e.contains("bounds[0].relative_to") && e.contains("reference"),
        "{e}"
    );
    v["bounds"][0]["relative_to"] = Value::from("history");
    std::fs::write(&path, v.to_string()).unwrap();
    let e = load_scenario(&path).unwrap_err().to_string();
    assert!(e.contains("bounds[0].relative_to = \"history\""), "{e}");
}
