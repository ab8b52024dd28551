//! Carry-in of the spend before the window (`"history"`): the response at a fixed
//! plan rises by exactly the hand-computed adstocked tail; the gradient and
//! curvature stay exact; the time-varying form agrees; the optimum moves; bad
//! histories are refused naming the field.

mod common;

use common::{Shape, random_case};
use mmm_budget::*;

const KINDS: [AdstockKind; 5] = [
    AdstockKind::Geometric,
    AdstockKind::Delayed,
    AdstockKind::Binomial,
    AdstockKind::WeibullPdf,
    AdstockKind::WeibullCdf,
];

/// The spend of every cell over the l_max periods before the window (oldest first).
fn history(l_max: usize, scale: f64) -> Vec<f64> {
    (0..l_max).map(|i| scale * (1.0 + i as f64)).collect()
}

fn with_history(scenario: &Scenario, spend: Vec<f64>) -> Scenario {
    let mut s = scenario.clone();
    s.history.push(PeriodRule {
        select: Selector::new(),
        values: spend,
    });
    s
}

/// By hand, for one draw and cell: Σ_t g(a_t + h_t) − g(a_t) over the window, with
/// a_t = x Σ_l w_l p_(t−l) and h_t = Σ_(l>t) w_l z_(t−l) (adstock first), or
/// Σ_j g(z_(−j)) Σ_(l ≥ j) w_l (saturation first); z the spend ÷ the channel scale.
fn tail_by_hand(p: &Problem, d: usize, c: usize, x: f64, spend: &[f64]) -> f64 {
    let k = p.adstock.kernel_len();
    let mut w = vec![0.0; k];
    p.adstock.weights(&p.adstock_params_of(d, c), &mut w);
    let params = &p.saturation_params_of(d, c);
    let g = |a: f64| p.saturation.derivatives(a, params)[0];
    // Without a time distribution or cost, p_t = 1/s_c: the scaled spend is spend p.
    let unit = p.pattern_of(c)[0];
    let l_max = spend.len();
    let z = |period: isize| -> f64 {
        if period < 0 {
            spend[(l_max as isize + period) as usize] * unit
        } else {
            0.0
        }
    };
    if !p.adstock_first {
        return (1..=l_max)
            .map(|j| g(z(-(j as isize))) * w.iter().skip(j).sum::<f64>())
            .sum();
    }
    let n = p.num_periods;
    let mut tail = 0.0;
    for t in 0..n + p.adstock.l_max {
        let mut a = 0.0;
        let mut h = 0.0;
        for (l, wl) in w.iter().enumerate() {
            let s = t as isize - l as isize;
            if s >= 0 && (s as usize) < n {
                a += wl * x * unit;
            } else if s < 0 {
                h += wl * z(s);
            }
        }
        tail += g(a + h) - g(a);
    }
    tail
}

#[test]
fn the_response_rises_by_the_hand_computed_tail() {
    for (i, kind) in KINDS.into_iter().enumerate() {
        for adstock_first in [true, false] {
            for periods in [2, 9] {
                let shape = Shape {
                    draws: 7,
                    channels: 3,
                    geos: 1,
                    periods,
                    l_max: 6,
                };
                let (model, scenario) = random_case(
                    40 + i as u64,
                    shape,
                    kind,
                    Saturation::Logistic,
                    adstock_first,
                    false,
                );
                let l_max = model.adstock.l_max;
                let spend = history(l_max, 0.7);
                let plain = Problem::new(&model, &scenario).unwrap();
                let carried =
                    Problem::new(&model, &with_history(&scenario, spend.clone())).unwrap();
                let x: Vec<f64> = (0..3).map(|c| 0.4 + c as f64).collect();
                let (mut a, mut b) = (vec![0.0; 7], vec![0.0; 7]);
                CpuEvaluator::new(&plain)
                    .unwrap()
                    .responses(&x, &mut a)
                    .unwrap();
                CpuEvaluator::new(&carried)
                    .unwrap()
                    .responses(&x, &mut b)
                    .unwrap();
                for d in 0..7 {
                    let want: f64 = (0..3)
                        .map(|c| plain.target_scale[c] * tail_by_hand(&plain, d, c, x[c], &spend))
                        .sum();
                    assert!(want > 0.0, "{kind} {adstock_first}: no tail");
                    let got = b[d] - a[d];
                    assert!(
                        (got - want).abs() <= 1e-12 * b[d].abs(),
                        "{kind}, adstock first {adstock_first}, N {periods}, draw {d}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn gradient_and_curvature_match_central_differences_with_carry_in() {
    for (i, kind) in KINDS.into_iter().enumerate() {
        for saturation in [Saturation::Logistic, Saturation::Hill, Saturation::Tanh] {
            let shape = Shape {
                draws: 5,
                channels: 2,
                geos: 2,
                periods: 4,
                l_max: 5,
            };
            let (model, scenario) = random_case(60 + i as u64, shape, kind, saturation, true, true);
            let spend = history(model.adstock.l_max, 1.3);
            let p = Problem::new(&model, &with_history(&scenario, spend)).unwrap();
            let mut ev = CpuEvaluator::new(&p).unwrap();
            let x: Vec<f64> = (0..4).map(|c| 0.5 + 0.3 * c as f64).collect();
            let mut e = Evaluation::new(5, 4);
            ev.evaluate(&x, DrawWeights::Uniform, &mut e).unwrap();
            let mut mean_at = |x: &[f64]| {
                let mut f = Evaluation::new(5, 4);
                ev.evaluate(x, DrawWeights::Uniform, &mut f).unwrap();
                f
            };
            for c in 0..4 {
                let eps = 1e-5 * x[c];
                let (mut up, mut down) = (x.clone(), x.clone());
                up[c] += eps;
                down[c] -= eps;
                let (fu, fd) = (mean_at(&up), mean_at(&down));
                let g = (fu.contributions[c] - fd.contributions[c]) / (2.0 * eps);
                let h = (fu.gradient[c] - fd.gradient[c]) / (2.0 * eps);
                assert!(
                    common::close(e.gradient[c], g, 1e-6, 1e-9),
                    "{kind} {saturation} gradient[{c}]: {} vs {g}",
                    e.gradient[c]
                );
                assert!(
                    common::close(e.curvature[c], h, 1e-5, 1e-9),
                    "{kind} {saturation} curvature[{c}]: {} vs {h}",
                    e.curvature[c]
                );
            }
        }
    }
}

#[test]
fn the_time_varying_form_agrees_with_the_constant_form() {
    for adstock_first in [true, false] {
        let shape = Shape {
            draws: 6,
            channels: 2,
            geos: 2,
            periods: 5,
            l_max: 7,
        };
        let (model, scenario) = random_case(
            81,
            shape,
            AdstockKind::Delayed,
            Saturation::Logistic,
            adstock_first,
            false,
        );
        let spend = history(model.adstock.l_max, 0.9);
        let p = Problem::new(&model, &with_history(&scenario, spend)).unwrap();
        let mut ev = CpuEvaluator::new(&p).unwrap();
        let x: Vec<f64> = (0..4).map(|c| 0.2 + 0.5 * c as f64).collect();
        let mut e = Evaluation::new(6, 4);
        ev.evaluate(&x, DrawWeights::Uniform, &mut e).unwrap();
        // The same spend in every period, in the time-varying form.
        let xt: Vec<f64> = (0..4 * 5).map(|i| x[i / 5]).collect();
        let mut tv = TimeVaryingEvaluation::default();
        ev.evaluate_time_varying(&xt, DrawWeights::Uniform, &mut tv)
            .unwrap();
        for d in 0..6 {
            assert!(common::close(tv.responses[d], e.responses[d], 1e-12, 1e-12));
        }
        // Its gradient over the periods sums to the constant form's.
        for c in 0..4 {
            let sum: f64 = tv.gradient[c * 5..(c + 1) * 5].iter().sum();
            assert!(
                common::close(sum, e.gradient[c], 1e-10, 1e-12),
                "{sum} vs {}",
                e.gradient[c]
            );
        }
    }
}

/// Saturation is not additive: a cell still carrying much of its earlier spend is
/// further along its curve, and the optimum moves spend away from it.
#[test]
fn the_optimum_moves_away_from_a_cell_that_carries_spend_in() {
    let (model, mut scenario) = demo::case(
        &demo::DemoSize {
            channels: 3,
            geos: 1,
            draws: 300,
        },
        4,
    );
    scenario.total_budget = 300.0;
    let before = optimize(&model, &scenario, &Options::default()).unwrap();
    let mut select = Selector::new();
    select.insert("channel".into(), model.channels[0].clone());
    let l_max = model.adstock.l_max;
    let mut carried = scenario.clone();
    carried.history.push(PeriodRule {
        select,
        values: vec![2.0 * before.allocation[0].max(50.0); l_max],
    });
    let after = optimize(&model, &carried, &Options::default()).unwrap();
    assert_eq!(after.status, Status::Solved);
    assert!(
        after.allocation[0] < before.allocation[0] - 1e-3 * scenario.total_budget,
        "{:?} -> {:?}",
        before.allocation,
        after.allocation
    );
    assert!(after.mean_response > before.mean_response);
    // The report says how much of the response the carry-in brings.
    let problem = Problem::new(&model, &carried).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let report = report::Report::new(&problem, &mut ev, &after.allocation).unwrap();
    let carried_in = report.carry_in_response.unwrap();
    let mut at_zero = vec![0.0; problem.num_draws()];
    ev.responses(&[0.0; 3], &mut at_zero).unwrap();
    let mean_at_zero = at_zero.iter().sum::<f64>() / at_zero.len() as f64;
    assert!(carried_in > 0.0 && carried_in < report.mean_response);
    assert!(common::close(carried_in, mean_at_zero, 1e-12, 0.0));
    assert!(report.to_json()["carry_in_response"].as_f64().is_some());
    assert!(
        report
            .table()
            .contains("carried in from the spend before the window")
    );
    // Every spending cell at one marginal return (first-order optimality holds).
    let spending: Vec<f64> = after
        .allocation
        .iter()
        .zip(&after.marginal_response)
        .filter(|(x, _)| **x > 1e-6)
        .map(|(_, g)| *g)
        .collect();
    for g in &spending {
        assert!(common::close(*g, spending[0], 1e-5, 1e-12), "{spending:?}");
    }
}

#[test]
fn bad_histories_are_refused_naming_the_field() {
    let (model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 2,
            geos: 1,
            draws: 10,
        },
        1,
    );
    let l_max = model.adstock.l_max;
    let e = Problem::new(&model, &with_history(&scenario, vec![1.0; l_max + 1]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("history[0].spend") && e.contains(&format!("expected {l_max} values")),
        "{e}"
    );
    let mut bad = vec![1.0; l_max];
    bad[2] = -4.0;
    let e = Problem::new(&model, &with_history(&scenario, bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("history[0].spend[2] = -4"), "{e}");
    let mut sel = Selector::new();
    sel.insert("channel".into(), "nope".into());
    let mut s = scenario.clone();
    s.history.push(PeriodRule {
        select: sel,
        values: vec![1.0; l_max],
    });
    let e = Problem::new(&model, &s).unwrap_err().to_string();
    assert!(e.contains("history[0].select"), "{e}");
    // From a scenario file: the same field, and written back by export.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.json");
    std::fs::write(
        &path,
        format!(
            r#"{{"num_periods": 4, "total_budget": 10, "history": [{{"spend": {:?}}}]}}"#,
            vec![1.0; l_max]
        ),
    )
    .unwrap();
    let (read, _) = io::load_scenario(&path).unwrap();
    assert_eq!(read.history[0].values, vec![1.0; l_max]);
    let (again, _) =
        io::scenario_from_json(&io::scenario_json(&read).to_string(), "written").unwrap();
    assert_eq!(again.history, read.history);
}

/// A history CSV in long form (`period`, `spend`, selecting dims) gives the rules of
/// scenario.json's `history`, from the scenario (`"history": "past.csv"`, relative
/// to the scenario file) or the command line (`--history`); bad rows are named by
/// file, line and column.
#[test]
fn a_history_csv_is_the_same_carry_in_as_its_rules() {
    let dir = tempfile::tempdir().unwrap();
    let case = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/m8x4");
    let l_max = mmm_budget::io::load_case(std::path::Path::new(case), None)
        .unwrap()
        .model
        .adstock
        .l_max;
    // ch1 in every geo, and ch2 in g0, rows in no particular order.
    let mut csv = String::from("geo,channel,period,spend\n");
    let mut rules = vec![];
    for (geo, channel, scale) in [("", "ch1", 10.0), ("g0", "ch2", 3.0)] {
        let spend: Vec<f64> = (0..l_max).map(|i| scale * (1.0 + i as f64)).collect();
        for (i, v) in spend.iter().enumerate().rev() {
            csv.push_str(&format!(
                "{geo},{channel},{},{v}\n",
                i as i64 - l_max as i64
            ));
        }
        let mut select = serde_json::json!({"channel": channel});
        if !geo.is_empty() {
            select["geo"] = serde_json::json!(geo);
        }
        rules.push(serde_json::json!({"select": select, "spend": spend}));
    }
    std::fs::write(dir.path().join("past.csv"), &csv).unwrap();
    let rules_path = dir.path().join("rules.json");
    let by_csv = dir.path().join("by_csv.json");
    std::fs::write(
        &rules_path,
        serde_json::json!({"num_periods": 12, "total_budget": 2000.0, "history": rules})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        &by_csv,
        r#"{"num_periods": 12, "total_budget": 2000.0, "history": "past.csv"}"#,
    )
    .unwrap();
    let (from_rules, _) = mmm_budget::io::load_scenario(&rules_path).unwrap();
    let (from_csv, _) = mmm_budget::io::load_scenario(&by_csv).unwrap();
    // A blank geo selects every geo: the same rules.
    assert_eq!(from_csv.history, from_rules.history);
    let loaded = mmm_budget::io::load_case(std::path::Path::new(case), None).unwrap();
    let a = Problem::new(&loaded.model, &from_rules).unwrap();
    let b = Problem::new(&loaded.model, &from_csv).unwrap();
    assert_eq!(a.history, b.history);
    assert!(a.history.iter().any(|v| *v > 0.0));
    // On the command line: --history gives the same optimum as the rules.
    let bin = env!("CARGO_BIN_EXE_mmm-budget");
    let only_ch1: String = (0..l_max)
        .rev()
        .map(|i| {
            format!(
                "ch1,{},{}\n",
                i as i64 - l_max as i64,
                10.0 * (1.0 + i as f64)
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("ch1.csv"),
        format!("channel,period,spend\n{only_ch1}"),
    )
    .unwrap();
    std::fs::write(
        &rules_path,
        serde_json::json!({"num_periods": 12, "total_budget": 2000.0,
            "history": [{"select": {"channel": "ch1"}, "spend": (0..l_max).map(|i| 10.0 * (1.0 + i as f64)).collect::<Vec<_>>()}]})
        .to_string(),
    )
    .unwrap();
    let run = |extra: &[&std::ffi::OsStr], scenario: &std::path::Path, out: &str| {
        let o = std::process::Command::new(bin)
            .args(["optimize", case, "--backend", "cpu", "--scenario"])
            .arg(scenario)
            .args(extra)
            .arg("--out")
            .arg(dir.path().join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(out)).unwrap()).unwrap();
        v["utility"].as_f64().unwrap()
    };
    let plain = dir.path().join("plain.json");
    std::fs::write(&plain, r#"{"num_periods": 12, "total_budget": 2000.0}"#).unwrap();
    let flag = dir.path().join("ch1.csv");
    let u_flag = run(&["--history".as_ref(), flag.as_os_str()], &plain, "a.json");
    let u_rules = run(&[], &rules_path, "b.json");
    assert_eq!(u_flag.to_bits(), u_rules.to_bits());
    // Bad rows: named by file, line and column.
    for (body, says) in [
        ("channel,period,spend\nch1,0,5\n", "line 2, period"),
        ("channel,period,spend\nch1,-1,-5\n", "line 2, spend"),
        ("channel,period,spend\nch1,-1,5\nch1,-3,5\n", "period"),
        ("channel,spend\nch1,5\n", "header"),
        ("channel,period,spend\nch1,-1\n", "line 2"),
    ] {
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, body).unwrap();
        let e = mmm_budget::io::history_from_csv(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.csv") && e.contains(says), "{body:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}
