//! Adstock weights, saturation values and whole-case objectives against numbers
//! PyMC-Marketing 0.19.2 produced (tests/fixtures/make_pymc_fixtures.py, and
//! tests/data/<case>/expected.json from the shared reference cases).

mod common;

use common::close;
use mmm_budget::io::load_case;
use mmm_budget::*;
use serde_json::Value;
use std::path::Path;

fn fixtures() -> Value {
    let text = std::fs::read_to_string("tests/data/pymc_fixtures.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn params_of(names: &[&str], v: &Value) -> Vec<f64> {
    names
        .iter()
        .map(|n| v["params"][*n].as_f64().unwrap())
        .collect()
}

#[test]
fn adstock_weights_match_pymc_marketing() {
    let f = fixtures();
    let cases = f["adstock"].as_array().unwrap();
    assert!(cases.len() >= 80);
    for case in cases {
        let kind = AdstockKind::from_name(case["kind"].as_str().unwrap()).unwrap();
        let adstock = Adstock {
            kind,
            l_max: case["l_max"].as_u64().unwrap() as usize,
            normalize: case["normalize"].as_bool().unwrap(),
        };
        let expected: Vec<f64> = case["impulse_response"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let mut w = vec![0.0; adstock.kernel_len()];
        adstock.weights(&params_of(kind.parameters(), case), &mut w);
        // The impulse response is the weights, then zeros.
        for (t, e) in expected.iter().enumerate() {
            let ours = w.get(t).copied().unwrap_or(0.0);
            assert!(
                close(ours, *e, 1e-12, 1e-15),
                "{kind} {adstock:?} {}: lag {t}: {ours} vs {e}",
                case["params"]
            );
        }
        // And our convolution reproduces it.
        let mut impulse = vec![0.0; expected.len()];
        impulse[0] = 1.0;
        let mut a = vec![0.0; expected.len()];
        mmm_budget::adstock::convolve(&w, &impulse, &mut a);
        assert_eq!(
            a,
            (0..expected.len())
                .map(|t| w.get(t).copied().unwrap_or(0.0))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn saturation_values_match_pymc_marketing() {
    let f = fixtures();
    let cases = f["saturation"].as_array().unwrap();
    let mut kinds_seen = std::collections::BTreeSet::new();
    for case in cases {
        let s = Saturation::from_name(case["kind"].as_str().unwrap()).unwrap();
        kinds_seen.insert(s.name());
        let p = params_of(s.parameters(), case);
        let xs = case["x"].as_array().unwrap();
        let values = case["values"].as_array().unwrap();
        for (x, e) in xs.iter().zip(values) {
            let (x, e) = (x.as_f64().unwrap(), e.as_f64().unwrap());
            assert!(
                close(s.value(x, &p), e, 1e-12, 1e-15),
                "{s} {p:?} at {x}: {} vs {e}",
                s.value(x, &p)
            );
            let g = s.derivatives(x, &p)[0];
            assert!(
                close(g, e, 1e-12, 1e-15),
                "{s} {p:?} at {x}: derivatives()[0] {g} vs {e}"
            );
        }
    }
    assert_eq!(kinds_seen.len(), Saturation::ALL.len());
}

fn mean_response(problem: &Problem, x: &[f64]) -> f64 {
    let mut ev = CpuEvaluator::new(problem).unwrap();
    let mut r = vec![0.0; problem.num_draws()];
    ev.responses(x, &mut r).unwrap();
    Utility::mean().value(&r, &[])
}

/// Each shared case's objective at the uniform allocation and at the allocation in
/// expected.json, to 1e-9 relative.
#[test]
fn reference_cases_reproduce_pymc_marketing_objectives() {
    for name in ["s3", "m8x4", "l20x10"] {
        let (case, problem, expected) = common::reference_case(name);
        let uniform = mean_response(&problem, &problem.uniform_allocation());
        let e_uniform = expected["objective_at_uniform"].as_f64().unwrap();
        assert!(
            close(uniform, e_uniform, 1e-9, 0.0),
            "{name}: at uniform {uniform} vs {e_uniform}"
        );
        if let Some(p) = expected["pymc_marketing_objective_at_uniform"].as_f64() {
            assert!(
                close(uniform, p, 1e-9, 0.0),
                "{name}: at uniform {uniform} vs PyMC-Marketing's {p}"
            );
        }
        let entries: Vec<(Selector, f64)> = expected["allocation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut s = Selector::new();
                for (k, v) in e.as_object().unwrap() {
                    if k != "budget" {
                        s.insert(k.clone(), v.as_str().unwrap().to_string());
                    }
                }
                (s, e["budget"].as_f64().unwrap())
            })
            .collect();
        let x = problem
            .allocation_from(&case.model, &entries, "allocation")
            .unwrap();
        let at_optimum = mean_response(&problem, &x);
        let e_opt = expected["objective"].as_f64().unwrap();
        assert!(
            close(at_optimum, e_opt, 1e-9, 0.0),
            "{name}: at optimum {at_optimum} vs {e_opt}"
        );
    }
}

fn entries(v: &Value, key: &str) -> Vec<(Selector, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let mut s = Selector::new();
            for (k, v) in e.as_object().unwrap() {
                if k != key {
                    s.insert(k.clone(), v.as_str().unwrap().to_string());
                }
            }
            (s, e[key].as_f64().unwrap())
        })
        .collect()
}

/// Other adstock × saturation pairs, saturation first, unnormalised weights, a
/// time distribution and a cost per unit, end to end: the objective and its gradient
/// as PyMC-Marketing's BudgetOptimizer computes them
/// (tests/fixtures/make_pymc_response_fixtures.py).
#[test]
fn budget_optimizer_objective_and_gradient_match_on_other_kinds() {
    let root = Path::new("tests/data/pymc_e2e");
    let mut seen = 0;
    for dir in std::fs::read_dir(root).unwrap() {
        let dir = dir.unwrap().path();
        let case = load_case(&dir, None).unwrap();
        let problem = case.problem().unwrap();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        let x = problem
            .allocation_from(
                &case.model,
                &entries(&expected["allocation"], "budget"),
                "allocation",
            )
            .unwrap();
        let mut ev = CpuEvaluator::new(&problem).unwrap();
        let mut out = Evaluation::new(problem.num_draws(), problem.num_cells());
        ev.evaluate(&x, DrawWeights::Uniform, &mut out).unwrap();
        let objective = Utility::mean().value(&out.responses, &[]);
        let e = expected["objective"].as_f64().unwrap();
        assert!(
            close(objective, e, 1e-9, 0.0),
            "{}: objective {objective} vs {e}",
            dir.display()
        );
        // The gradient entries may be negative, so compare them one by one.
        // null where PyTensor's own gradient is NaN (see the script).
        let g: Vec<Option<f64>> = expected["gradient"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["value"].as_f64())
            .collect();
        let order: Vec<usize> = entries(&expected["allocation"], "budget")
            .iter()
            .map(|(s, _)| {
                problem
                    .cells
                    .iter()
                    .position(|c| s.iter().all(|(d, v)| c.coord(d) == Some(v)))
                    .unwrap()
            })
            .collect();
        let scale = g.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, &c) in order.iter().enumerate() {
            assert!(out.gradient[c].is_finite());
            if let Some(gk) = g[k] {
                assert!(
                    close(out.gradient[c], gk, 1e-8, scale),
                    "{}: gradient of {} {} vs {gk}",
                    dir.display(),
                    problem.cells[c].label,
                    out.gradient[c]
                );
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 5);
}
