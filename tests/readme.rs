//! The README's case-file examples load and solve as written.

mod common;

use mmm_budget::io::load_case;
use mmm_budget::*;

/// The README's ```json blocks, in order.
fn json_blocks() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string("README.md").unwrap();
    text.split("```json")
        .skip(1)
        .map(|rest| serde_json::from_str(rest.split("```").next().unwrap()).unwrap())
        .collect()
}

#[test]
fn the_readme_case_example_loads_and_solves() {
    let blocks = json_blocks();
    let model = blocks
        .iter()
        .find(|b| b.get("channels").is_some())
        .expect("a model.json example");
    let scenario = blocks
        .iter()
        .find(|b| b.get("num_periods").is_some())
        .expect("a scenario.json example");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.json"), model.to_string()).unwrap();
    std::fs::write(dir.path().join("scenario.json"), scenario.to_string()).unwrap();
    // A posterior of the example's shape: 1 chain × 4 draws × 2 geos × 3 channels.
    let shape = vec![1u64, 4, 2, 3];
    let values = |v: f64| {
        (0..24)
            .map(|i| v * (1.0 + 0.01 * i as f64))
            .collect::<Vec<_>>()
    };
    common::write_npz(
        &dir.path().join("posterior.npz"),
        &[
            ("adstock_alpha", shape.clone(), values(0.4)),
            ("saturation_lam", shape.clone(), values(2.0)),
            ("saturation_beta", shape, values(0.5)),
        ],
    );
    let case = load_case(dir.path(), None).unwrap();
    let problem = case.problem().unwrap();
    // `optimize` picks north (3 cells) and search in south.
    assert_eq!(problem.num_cells(), 4);
    let s = optimize_problem(
        &problem,
        &Options {
            backend: Backend::Cpu,
            settings: case.settings.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(s.status, Status::Solved, "{}", s.message);
}
