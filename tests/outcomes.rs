//! Outcome constraints: a measure of the draws' responses (the mean, a quantile, the
//! CVaR) held above or below a level, evaluated with the solver's evaluator.

use mmm_budget::*;

fn case() -> (Model, Scenario) {
    demo::case(
        &demo::DemoSize {
            channels: 4,
            geos: 2,
            draws: 400,
        },
        8,
    )
}

fn solve(
    model: &Model,
    scenario: &Scenario,
    objective: &str,
    constraints: Vec<NonlinearConstraint>,
) -> (Solution, Vec<f64>) {
    let mut s = scenario.clone();
    s.utility = Utility::parse(objective).unwrap();
    let problem = Problem::new(model, &s).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let mut solver = Solver::new(&problem, &mut ev, Settings::default()).unwrap();
    for c in constraints {
        solver = solver.with_nonlinear(c);
    }
    let solution = solver.solve().unwrap();
    let mut out = Evaluation::new(problem.num_draws(), problem.num_cells());
    if !solution.allocation.is_empty() {
        ev.evaluate(&solution.allocation, DrawWeights::Uniform, &mut out)
            .unwrap();
    }
    (solution, out.responses)
}

fn mean(r: &[f64]) -> f64 {
    r.iter().sum::<f64>() / r.len() as f64
}

#[test]
fn a_cvar_floor_moves_the_mean_optimum_to_it() {
    let (model, scenario) = case();
    let cvar = Utility::parse("cvar(0.9)").unwrap();
    let (free, r_free) = solve(&model, &scenario, "maximize mean", vec![]);
    let (best, r_best) = solve(&model, &scenario, "maximize cvar(0.9)", vec![]);
    assert_eq!((free.status, best.status), (Status::Solved, Status::Solved));
    let (lo, hi) = (
        cvar.value(&r_free, &free.allocation),
        cvar.value(&r_best, &best.allocation),
    );
    assert!(hi > lo, "{hi} vs {lo}");
    let floor = lo + 0.5 * (hi - lo);
    let c = NonlinearConstraint::outcome(
        "cvar(0.9) >= floor",
        Sense::GreaterEqual,
        floor,
        cvar.clone(),
    );
    let (s, r) = solve(&model, &scenario, "maximize mean", vec![c]);
    assert_eq!(s.status, Status::Solved, "{}", s.message);
    // The floor holds (the smoothed CVaR lies below the exact one) and binds: the
    // mean falls between the two optima's.
    assert!(cvar.value(&r, &s.allocation) >= floor * (1.0 - 1e-9));
    assert!(mean(&r) < mean(&r_free) && mean(&r) > mean(&r_best));
    // λ = ∂U*/∂floor: raising the floor costs mean response.
    let m = s
        .multipliers
        .iter()
        .find(|m| m.constraint == "cvar(0.9) >= floor")
        .unwrap();
    assert!(m.value < 0.0, "{m:?}");
}

#[test]
fn a_mean_floor_under_a_risk_objective_uses_its_exact_curvature() {
    let (model, scenario) = case();
    let (free, r_free) = solve(&model, &scenario, "maximize mean", vec![]);
    let (tail, r_tail) = solve(&model, &scenario, "maximize quantile(0.1)", vec![]);
    assert_eq!((free.status, tail.status), (Status::Solved, Status::Solved));
    let floor = mean(&r_tail) + 0.5 * (mean(&r_free) - mean(&r_tail));
    let c =
        NonlinearConstraint::outcome("mean >= floor", Sense::GreaterEqual, floor, Utility::mean());
    assert!(c.has_curvature());
    let (s, r) = solve(&model, &scenario, "maximize quantile(0.1)", vec![c]);
    assert_eq!(s.status, Status::Solved, "{}", s.message);
    assert!(mean(&r) >= floor * (1.0 - 1e-9), "{} < {floor}", mean(&r));
    let q = Utility::parse("quantile(0.1)").unwrap();
    assert!(q.value(&r, &s.allocation) <= q.value(&r_tail, &tail.allocation) * (1.0 + 1e-9));
}

#[test]
fn an_unreachable_outcome_is_infeasible() {
    let (model, scenario) = case();
    let (free, r_free) = solve(&model, &scenario, "maximize mean", vec![]);
    assert_eq!(free.status, Status::Solved);
    let c = NonlinearConstraint::outcome(
        "mean >= 2 x max",
        Sense::GreaterEqual,
        2.0 * mean(&r_free),
        Utility::mean(),
    );
    let (s, _) = solve(&model, &scenario, "maximize mean", vec![c]);
    assert_eq!(s.status, Status::Infeasible, "{}", s.message);
    assert!(s.allocation.is_empty() || s.status != Status::Solved);
}

#[test]
fn outcome_constraints_come_as_strings_beside_linear_ones() {
    let (model, mut scenario) = case();
    let (free, r_free) = solve(&model, &scenario, "maximize mean", vec![]);
    let q = Utility::parse("quantile(0.05)").unwrap();
    let (best, r_best) = solve(&model, &scenario, "maximize quantile(0.05)", vec![]);
    assert_eq!(best.status, Status::Solved);
    let (lo, hi) = (
        q.value(&r_free, &free.allocation),
        q.value(&r_best, &best.allocation),
    );
    let floor = lo + 0.3 * (hi - lo);
    scenario.constraints = vec![
        format!("quantile(0.05) >= {floor}"),
        "sum(channel=ch0) <= 0.5 * total".into(),
        format!("mean_response >= {}", 0.9 * mean(&r_free)),
    ];
    let problem = Problem::new(&model, &scenario).unwrap();
    assert_eq!(problem.linear_constraints.len(), 1);
    assert_eq!(problem.outcome_constraints.len(), 2);
    assert_eq!(problem.outcome_constraints[1].utility, Utility::mean());
    let solution = optimize(
        &model,
        &scenario,
        &Options {
            backend: Backend::Cpu,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(solution.status, Status::Solved, "{}", solution.message);
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let mut out = Evaluation::new(problem.num_draws(), problem.num_cells());
    ev.evaluate(&solution.allocation, DrawWeights::Uniform, &mut out)
        .unwrap();
    // The smoothed quantile is held at the floor; the exact one within the smoothing.
    let h = mmm_budget::utility::bandwidth(out.responses.len());
    let sd = {
        let m = mean(&out.responses);
        (out.responses.iter().map(|v| (v - m).powi(2)).sum::<f64>()
            / (out.responses.len() - 1) as f64)
            .sqrt()
    };
    let slack = h * sd * (2.0 * out.responses.len() as f64).ln() + 0.02 * sd;
    assert!(q.value(&out.responses, &solution.allocation) >= floor - slack);
    // Errors give the column.
    scenario.constraints = vec!["cvar(0.9) >= lots".into()];
    let e = Problem::new(&model, &scenario).unwrap_err();
    match e {
        Error::Constraint { column, .. } => assert_eq!(column, 14),
        other => panic!("{other:?}"),
    }
    scenario.constraints = vec!["cvar(1.9) >= 5".into()];
    let e = Problem::new(&model, &scenario).unwrap_err().to_string();
    assert!(
        e.contains("column 1") && e.contains("strictly between 0 and 1"),
        "{e}"
    );
}

#[test]
fn the_least_spend_that_reaches_a_target_and_its_marginal_cost() {
    let (model, mut scenario) = case();
    let (free, r_free) = solve(&model, &scenario, "maximize mean", vec![]);
    assert_eq!(free.status, Status::Solved);
    let target = 0.8 * mean(&r_free);
    let least = |target: f64, scenario: &mut Scenario| {
        scenario.constraints = vec![format!("mean_response >= {target}")];
        solve(&model, scenario, "minimize spend", vec![])
    };
    let (s, r) = least(target, &mut scenario);
    assert_eq!(s.status, Status::Solved, "{}", s.message);
    let spend: f64 = s.allocation.iter().sum();
    // The budget is a cap: less is spent, and the target is met exactly.
    assert!(spend < scenario.total_budget, "{spend}");
    assert!(
        (mean(&r) - target).abs() <= 1e-7 * target,
        "{} vs {target}",
        mean(&r)
    );
    // The multiplier is dU*/dT with U = −spend: the marginal cost −λ per period,
    // checked by solving again at a slightly higher target.
    let lambda = s
        .multipliers
        .iter()
        .find(|m| m.constraint.starts_with("mean_response"))
        .unwrap()
        .value;
    let dt = 1e-4 * target;
    let (s2, _) = least(target + dt, &mut scenario);
    let spend2: f64 = s2.allocation.iter().sum();
    let fd = (spend2 - spend) / dt;
    assert!(
        (fd - (-lambda)).abs() <= 1e-3 * fd.abs(),
        "cost {} vs finite difference {fd}",
        -lambda
    );
    // It is the inverse of the common marginal ROI of the cells that spend.
    let problem = Problem::new(&model, &scenario).unwrap();
    let n = problem.num_periods as f64;
    for (x, mroi) in s.allocation.iter().zip(&s.marginal_roi) {
        if *x > 1e-3 * spend {
            assert!(
                (mroi * (-lambda) * n - 1.0).abs() <= 1e-5,
                "mROI {mroi} vs cost {}",
                -lambda * n
            );
        }
    }
}

#[test]
fn a_roi_floor_caps_the_spend_where_the_return_falls_to_it() {
    // Meridian's flexible budget in ROI form: the most response while the return on
    // the spend over the window stays at least k, the budget only a cap.
    let (model, mut scenario) = case();
    scenario.budget_constraint = BudgetConstraint::AtMost;
    let (free, r_free) = solve(&model, &scenario, "maximize mean", vec![]);
    let n = scenario.num_periods as f64;
    let roi = |r: &[f64], x: &[f64]| mean(r) / (n * x.iter().sum::<f64>());
    let k = 1.2 * roi(&r_free, &free.allocation);
    scenario.constraints = vec![format!("roi >= {k}")];
    let (s, r) = solve(&model, &scenario, "maximize mean", vec![]);
    assert!(
        matches!(s.status, Status::Solved | Status::AlmostSolved),
        "{}",
        s.message
    );
    let spend: f64 = s.allocation.iter().sum();
    assert!(
        spend < 0.999 * scenario.total_budget,
        "the cap does not bind: {spend}"
    );
    assert!(
        (roi(&r, &s.allocation) - k).abs() <= 1e-6 * k,
        "{} vs {k}",
        roi(&r, &s.allocation)
    );
    assert!(mean(&r) < mean(&r_free));
}

#[test]
fn the_flexible_budget_in_marginal_roi_form_is_mean_minus_k_n_spend() {
    // Meridian's flexible budget: the largest spend whose marginal ROI stays at least
    // k. Maximising mean − k N spend under a loose cap ends where every cell that
    // spends has mROI = k (and the others less).
    let (model, mut scenario) = case();
    scenario.budget_constraint = BudgetConstraint::AtMost;
    scenario.total_budget *= 10.0;
    let n = scenario.num_periods as f64;
    let k = 1.5;
    let (s, _) = solve(
        &model,
        &scenario,
        &format!("maximize mean - {} * spend", k * n),
        vec![],
    );
    assert_eq!(s.status, Status::Solved, "{}", s.message);
    let spend: f64 = s.allocation.iter().sum();
    assert!(
        spend > 0.0 && spend < 0.99 * scenario.total_budget,
        "{spend}"
    );
    for (x, mroi) in s.allocation.iter().zip(&s.marginal_roi) {
        if *x > 1e-6 * spend {
            assert!((mroi - k).abs() <= 1e-6 * k, "active cell: mROI {mroi}");
        } else {
            assert!(*mroi <= k * (1.0 + 1e-6), "idle cell: mROI {mroi}");
        }
    }
}
