//! Plans over time (src/plan.rs): a spend per period or group of periods, period
//! sums and flighting limits, on the time-varying evaluator.

use mmm_budget::*;

fn case(adstock_first: bool) -> (Model, Scenario) {
    let (mut model, mut scenario) = demo::case(
        &demo::DemoSize {
            channels: 3,
            geos: 2,
            draws: 200,
        },
        5,
    );
    model.adstock_first = adstock_first;
    scenario.num_periods = 8;
    (model, scenario)
}

fn solve_plan(model: &Model, scenario: &Scenario) -> (Problem, plan::PlanSolution) {
    solve_plan_with(model, scenario, Settings::default())
}

fn solve_plan_with(
    model: &Model,
    scenario: &Scenario,
    settings: Settings,
) -> (Problem, plan::PlanSolution) {
    let problem = Problem::new(model, scenario).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let plan = plan::solve(&problem, &mut ev, settings).unwrap();
    (problem, plan)
}

fn solve_constant(model: &Model, scenario: &Scenario, settings: Settings) -> Solution {
    let problem = Problem::new(model, scenario).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    Solver::new(&problem, &mut ev, settings)
        .unwrap()
        .solve()
        .unwrap()
}

/// Solved to a KKT residual of 1e-12, so that optima compare to 1e-9.
fn tight() -> Settings {
    Settings {
        gtol: 1e-12,
        ..Settings::default()
    }
}

/// The mean response of a per-period spend X (`[c * N + t]`), directly.
fn mean_response(problem: &Problem, x: &[f64]) -> f64 {
    let mut ev = CpuEvaluator::new(problem).unwrap();
    let mut out = TimeVaryingEvaluation::default();
    ev.evaluate_time_varying(x, DrawWeights::Uniform, &mut out)
        .unwrap();
    out.responses.iter().sum::<f64>() / out.responses.len() as f64
}

#[test]
fn one_group_is_the_constant_decision() {
    for adstock_first in [true, false] {
        let (model, mut scenario) = case(adstock_first);
        let constant = solve_constant(&model, &scenario, tight());
        scenario.decision = Decision::Every(100);
        let (problem, plan) = solve_plan_with(&model, &scenario, tight());
        assert_eq!(
            plan.solution.status,
            Status::Solved,
            "{}",
            plan.solution.message
        );
        assert_eq!(plan.groups, vec![0..8]);
        for (a, b) in plan.average.iter().zip(&constant.allocation) {
            assert!((a - b).abs() <= 1e-9 * problem.total_budget, "{a} vs {b}");
        }
        assert!((plan.solution.utility - constant.utility).abs() <= 1e-9 * constant.utility);
    }
}

#[test]
fn saturation_first_with_a_flat_pattern_spends_the_same_every_period() {
    // Concave curves and a response that is a sum over periods of one curve each:
    // equal spend in every period is optimal, the constant optimum.
    let (model, mut scenario) = case(false);
    let constant = solve_constant(&model, &scenario, tight());
    scenario.decision = Decision::Every(1);
    let (problem, plan) = solve_plan_with(&model, &scenario, tight());
    assert_eq!(
        plan.solution.status,
        Status::Solved,
        "{}",
        plan.solution.message
    );
    let np = problem.num_periods;
    for (c, x) in constant.allocation.iter().enumerate() {
        for t in 0..np {
            let v = plan.spend[c * np + t];
            assert!(
                (v - x).abs() <= 1e-9 * problem.total_budget,
                "cell {c} period {t}: {v} vs {x}"
            );
        }
    }
    assert!((plan.solution.utility - constant.utility).abs() <= 1e-8 * constant.utility);
}

#[test]
fn with_adstock_first_a_plan_is_never_worse_than_the_constant_optimum() {
    let (model, mut scenario) = case(true);
    let constant = solve_constant(&model, &scenario, Settings::default());
    scenario.decision = Decision::Every(1);
    let (problem, plan) = solve_plan(&model, &scenario);
    assert_eq!(
        plan.solution.status,
        Status::Solved,
        "{}",
        plan.solution.message
    );
    assert!(plan.solution.utility >= constant.utility * (1.0 - 1e-9));
    // The reported utility is the mean response of the per-period spend.
    let direct = mean_response(&problem, &plan.spend);
    assert!((direct - plan.solution.utility).abs() <= 1e-12 * direct);
    // The budget over the window: N · B.
    let window: f64 = plan.spend.iter().sum();
    let expected = problem.num_periods as f64 * problem.total_budget;
    assert!((window - expected).abs() <= 1e-9 * expected);
    // Each cell's per-period spend within its bounds (default [0, B]).
    assert!(
        plan.spend
            .iter()
            .all(|v| *v >= 0.0 && *v <= problem.total_budget * (1.0 + 1e-12))
    );
}

#[test]
fn period_sums_and_flighting_limits_hold() {
    let (model, mut scenario) = case(true);
    scenario.decision = Decision::Every(2); // 4 groups of 2 periods
    let b = scenario.total_budget;
    // The first half of the window spends exactly 40% of the window's money, the
    // channel ch0 at most 10% of it in periods 3..4.
    scenario.period_sums.push(PeriodSum {
        select: Selector::new(),
        first: 1,
        last: 4,
        min: Some(0.4 * 8.0 * b),
        max: Some(0.4 * 8.0 * b),
    });
    let mut ch0 = Selector::new();
    ch0.insert("channel".into(), "ch0".into());
    scenario.period_sums.push(PeriodSum {
        select: ch0,
        first: 3,
        last: 4,
        min: None,
        max: Some(0.02 * 8.0 * b),
    });
    let delta = 0.1 * b;
    scenario.flighting.push(FlightRule {
        select: Selector::new(),
        max_change: delta,
    });
    let (problem, plan) = solve_plan(&model, &scenario);
    assert_eq!(
        plan.solution.status,
        Status::Solved,
        "{}",
        plan.solution.message
    );
    let np = problem.num_periods;
    let n = problem.num_cells();
    let spend = |c: usize, t: usize| plan.spend[c * np + t];
    let first_half: f64 = (0..n)
        .map(|c| (0..4).map(|t| spend(c, t)).sum::<f64>())
        .sum();
    assert!(
        (first_half - 0.4 * 8.0 * b).abs() <= 1e-7 * 8.0 * b,
        "{first_half}"
    );
    let ch0_mid: f64 = (0..n)
        .filter(|&c| problem.cells[c].coord("channel") == Some("ch0"))
        .map(|c| spend(c, 2) + spend(c, 3))
        .sum();
    assert!(ch0_mid <= 0.02 * 8.0 * b * (1.0 + 1e-7), "{ch0_mid}");
    for c in 0..n {
        for t in 1..np {
            let step = (spend(c, t) - spend(c, t - 1)).abs();
            assert!(
                step <= delta * (1.0 + 1e-7) + 1e-9 * b,
                "cell {c} period {t}: {step}"
            );
        }
        // Within a group the spend is the same.
        for g in 0..4 {
            assert_eq!(spend(c, 2 * g), spend(c, 2 * g + 1));
        }
    }
}

#[test]
fn the_plan_evaluators_gradient_matches_central_differences() {
    let (model, mut scenario) = case(true);
    scenario.decision = Decision::Every(3); // groups of 3, 3, 2 periods
    let problem = Problem::new(&model, &scenario).unwrap();
    let spec = problem.plan.clone().unwrap();
    let mut inner = CpuEvaluator::new(&problem).unwrap();
    let mut ev = plan::PlanEvaluator::new(&mut inner, spec.groups.clone());
    let m = ev.num_cells();
    assert_eq!(m, problem.num_cells() * 3);
    let v: Vec<f64> = (0..m)
        .map(|i| problem.total_budget / m as f64 * (0.3 + (i * 7 % 5) as f64 * 0.4))
        .collect();
    let mut out = Evaluation::default();
    ev.evaluate(&v, DrawWeights::Uniform, &mut out).unwrap();
    let mean = |ev: &mut plan::PlanEvaluator<'_>, v: &[f64]| {
        let mut r = vec![0.0; problem.num_draws()];
        ev.responses(v, &mut r).unwrap();
        r.iter().sum::<f64>() / r.len() as f64
    };
    for i in 0..m {
        let h = 1e-4 * v[i];
        let (mut up, mut down) = (v.clone(), v.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (mean(&mut ev, &up) - mean(&mut ev, &down)) / (2.0 * h);
        assert!(
            (fd - out.gradient[i]).abs() <= 1e-6 * fd.abs().max(1e-3),
            "v[{i}]: {} vs {fd}",
            out.gradient[i]
        );
    }
    // A wrong-length allocation is an error, not a panic.
    let mut r = vec![0.0; problem.num_draws()];
    assert!(ev.responses(&v[..m - 1], &mut r).is_err());
    assert!(
        ev.evaluate(&v[..m - 1], DrawWeights::Uniform, &mut out)
            .is_err()
    );
    // The contributions add up to the mean response.
    let total: f64 = out.contributions.iter().sum();
    let mean_r = out.responses.iter().sum::<f64>() / out.responses.len() as f64;
    assert!((total - mean_r).abs() <= 1e-10 * mean_r);
}

#[test]
fn plan_rules_are_checked() {
    let (model, scenario) = case(true);
    let bad = |edit: &dyn Fn(&mut Scenario), field: &str| {
        let mut s = scenario.clone();
        edit(&mut s);
        let e = Problem::new(&model, &s).expect_err("an error").to_string();
        assert!(e.contains(field), "{field}: {e}");
    };
    let sum = |first, last| PeriodSum {
        select: Selector::new(),
        first,
        last,
        min: None,
        max: Some(10.0),
    };
    bad(&|s| s.period_sums.push(sum(1, 2)), "period_sums");
    bad(
        &|s| {
            s.decision = Decision::Every(1);
            s.period_sums.push(sum(3, 9));
        },
        "period_sums[0].periods",
    );
    bad(
        &|s| {
            s.decision = Decision::Every(1);
            s.flighting.push(FlightRule {
                select: Selector::new(),
                max_change: -1.0,
            });
        },
        "flighting[0].max_change",
    );
    bad(
        &|s| {
            s.decision = Decision::Every(1);
            s.time_distribution.push(PeriodRule {
                select: Selector::new(),
                values: vec![0.125; 8],
            });
        },
        "time_distribution",
    );
    bad(
        &|s| {
            s.decision = Decision::Every(1);
            s.constraints.push("mroi >= 1".into());
        },
        "mroi",
    );
    // Read from a scenario file, and written back the same.
    let text = r#"{"num_periods": 8, "total_budget": 100, "decision": {"every": 2},
        "flighting": [{"select": {"channel": "ch0"}, "max_change": 5}],
        "period_sums": [{"periods": [1, 4], "equal": 300}]}"#;
    let (s, _) = io::scenario_from_json(text, "plan.json").unwrap();
    assert_eq!(s.decision, Decision::Every(2));
    assert_eq!(s.period_sums[0].min, Some(300.0));
    let again = io::scenario_from_json(&io::scenario_json(&s).to_string(), "again")
        .unwrap()
        .0;
    assert_eq!(again, s);
    let e = io::scenario_from_json(
        r#"{"num_periods": 8, "total_budget": 100, "decision": "weekly"}"#,
        "plan.json",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("plan.json: decision"), "{e}");
}

#[test]
fn the_command_line_writes_a_plan_and_refuses_what_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("plan.json");
    std::fs::write(
        &scenario,
        r#"{"num_periods": 12, "total_budget": 2000.0, "decision": {"every": 4},
            "flighting": [{"max_change": 30}],
            "period_sums": [{"select": {"channel": "ch2"}, "periods": [1, 4], "max": 1500}]}"#,
    )
    .unwrap();
    let out = dir.path().join("out.json");
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/m8x4");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
        .args(["optimize", folder, "--backend", "cpu", "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("p1-4") && stdout.contains("p9-12"),
        "{stdout}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(json["status"], "solved");
    assert_eq!(json["groups"], serde_json::json!([[1, 4], [5, 8], [9, 12]]));
    let cells = json["cells"].as_array().unwrap();
    let mut window = 0.0;
    let mut ch2_first = 0.0;
    for c in cells {
        let spend: Vec<f64> = c["spend_per_period"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(spend.len(), 12);
        let total: f64 = spend.iter().sum();
        assert!((total - c["budget_window"].as_f64().unwrap()).abs() <= 1e-9 * total.max(1.0));
        for t in 1..12 {
            assert!((spend[t] - spend[t - 1]).abs() <= 30.0 * (1.0 + 1e-7));
        }
        if c["channel"] == "ch2" {
            ch2_first += spend[..4].iter().sum::<f64>();
        }
        window += total;
    }
    assert!((window - 24_000.0).abs() <= 1e-6 * 24_000.0, "{window}");
    assert!(ch2_first <= 1500.0 * (1.0 + 1e-7), "{ch2_first}");
    // Per-cell files of a constant plan are refused, naming the flag.
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
        .args(["optimize", folder, "--backend", "cpu", "--scenario"])
        .arg(&scenario)
        .arg("--csv")
        .arg(dir.path().join("plan.csv"))
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("--csv") && err.lines().count() == 1, "{err}");
    // A constant solver refuses a plan (it would ignore the decision).
    let (model, mut s) = case(true);
    s.decision = Decision::Every(1);
    let problem = Problem::new(&model, &s).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    assert!(Solver::new(&problem, &mut ev, Settings::default()).is_err());
}

#[test]
fn the_frontier_of_a_plan_solves_a_plan_at_each_budget() {
    let (model, mut scenario) = case(true);
    scenario.decision = Decision::Every(4);
    let b = scenario.total_budget;
    let problem = Problem::new(&model, &scenario).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let points = frontier::frontier(
        &model,
        &scenario,
        &mut ev,
        &[0.8 * b, b, 1.2 * b],
        &Settings::default(),
        true,
    )
    .unwrap();
    assert!(points.iter().all(|p| p.solution.status == Status::Solved));
    assert!(
        points
            .windows(2)
            .all(|w| w[1].solution.utility > w[0].solution.utility)
    );
    let (_, at_b) = solve_plan(&model, &scenario);
    let p = &points[1];
    assert!((p.solution.utility - at_b.solution.utility).abs() <= 1e-8 * at_b.solution.utility);
    // Per cell: the averages of the plan, the budget's multiplier its marginal return.
    assert_eq!(p.solution.allocation.len(), problem.num_cells());
    for (a, x) in p.solution.allocation.iter().zip(&at_b.average) {
        assert!((a - x).abs() <= 1e-6 * b, "{a} vs {x}");
    }
    assert!(p.marginal_return.unwrap() > 0.0);
    let [lo, mid, hi] = p.response_quantiles;
    assert!(lo <= mid && mid <= hi && lo < p.solution.mean_response * 1.5);
}
