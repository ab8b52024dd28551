//! Marginal-ROI constraints, `mroi(select) >= k`: each selected cell's spend capped
//! where its marginal ROI falls to k (src/marginal_roi.rs).

mod common;

use common::solve;
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

/// Every cell's marginal ROI at `x`, from a direct evaluation.
fn mroi_at(problem: &Problem, x: &[f64]) -> Vec<f64> {
    let mut ev = CpuEvaluator::new(problem).unwrap();
    let mut out = Evaluation::default();
    ev.evaluate(x, DrawWeights::Uniform, &mut out).unwrap();
    out.gradient
        .iter()
        .map(|g| solution::marginal_roi(*g, problem.num_periods))
        .collect()
}

fn is_ch0(problem: &Problem, c: usize) -> bool {
    problem.cells[c].coord("channel") == Some("ch0")
}

#[test]
fn a_marginal_roi_floor_caps_the_selected_cells_where_it_binds() {
    let (model, mut scenario) = case();
    let (problem, free) = solve(&model, &scenario);
    assert_eq!(free.status, Status::Solved);
    // At the mean optimum every cell that spends has the same mROI; ask more of ch0.
    let m_free = mroi_at(&problem, &free.allocation);
    let spends = |c: usize| free.allocation[c] > 0.0;
    let common = (0..problem.num_cells())
        .find(|&c| spends(c))
        .map(|c| m_free[c])
        .unwrap();
    assert!((0..problem.num_cells()).any(|c| is_ch0(&problem, c) && spends(c)));
    let k = 1.1 * common;
    scenario
        .constraints
        .push(format!("mroi(channel=ch0) >= {k}"));
    let (capped, s) = solve(&model, &scenario);
    assert_eq!(s.status, Status::Solved, "{}", s.message);
    assert_eq!(capped.marginal_roi_constraints.len(), 1);
    let rows: Vec<&LinearConstraint> = capped
        .linear_constraints
        .iter()
        .filter(|c| c.name.starts_with("mroi(channel=ch0)"))
        .collect();
    assert_eq!(rows.len(), 2, "one cap per geo");
    let m = mroi_at(&capped, &s.allocation);
    for c in 0..capped.num_cells() {
        if is_ch0(&capped, c) && spends(c) {
            // At its cap: the marginal ROI is k there (found to 1e-10 of the bound).
            assert!(s.allocation[c] > 0.0, "cell {c}: no spend");
            assert!(
                (m[c] - k).abs() <= 1e-6 * k,
                "cell {c}: mROI {} vs {k}",
                m[c]
            );
            assert!(s.allocation[c] < free.allocation[c]);
        } else if is_ch0(&capped, c) {
            // Its curve never returns k: capped at 0.
            assert!(m_free[c] < k && s.allocation[c] == 0.0, "cell {c}");
        } else if spends(c) {
            assert!(
                s.allocation[c] > free.allocation[c],
                "the rest moves elsewhere"
            );
        }
    }
    let spent: f64 = s.allocation.iter().sum();
    assert!((spent - scenario.total_budget).abs() <= 1e-9 * scenario.total_budget);
    assert!(s.utility < free.utility);
    // Each cap's multiplier is reported under the row's name.
    for r in rows.iter().filter(|r| r.rhs > 0.0) {
        assert!(
            s.multipliers
                .iter()
                .any(|mu| mu.constraint == r.name && mu.value > 0.0),
            "{}: {:?}",
            r.name,
            s.multipliers
        );
    }
}

#[test]
fn a_floor_below_the_optimum_changes_nothing() {
    let (model, mut scenario) = case();
    let (problem, free) = solve(&model, &scenario);
    let common = mroi_at(&problem, &free.allocation)[0];
    scenario
        .constraints
        .push(format!("mroi >= {}", 0.5 * common));
    let (_, s) = solve(&model, &scenario);
    assert_eq!(s.status, Status::Solved);
    for (a, b) in s.allocation.iter().zip(&free.allocation) {
        assert!((a - b).abs() <= 1e-7 * scenario.total_budget, "{a} vs {b}");
    }
}

#[test]
fn every_cell_capped_under_a_loose_budget_is_meridians_flexible_budget() {
    // The largest spend whose marginal ROI stays at least k, two ways: caps from
    // `mroi >= k`, and `maximize mean - k N spend`.
    let (model, mut scenario) = case();
    scenario.budget_constraint = BudgetConstraint::AtMost;
    scenario.total_budget *= 10.0;
    let k = 1.5;
    let mut by_caps = scenario.clone();
    by_caps.constraints.push(format!("mroi() >= {k}"));
    let (_, caps) = solve(&model, &by_caps);
    let mut by_price = scenario.clone();
    by_price.utility = Utility::parse(&format!(
        "maximize mean - {} * spend",
        k * scenario.num_periods as f64
    ))
    .unwrap();
    let (_, price) = solve(&model, &by_price);
    assert_eq!(
        (caps.status, price.status),
        (Status::Solved, Status::Solved)
    );
    let spend: f64 = price.allocation.iter().sum();
    assert!(spend > 0.0 && spend < 0.99 * scenario.total_budget);
    for (a, b) in caps.allocation.iter().zip(&price.allocation) {
        assert!((a - b).abs() <= 1e-6 * spend, "{a} vs {b}");
    }
}

#[test]
fn a_level_no_spend_reaches_leaves_the_cells_empty_or_infeasible() {
    let (model, mut scenario) = case();
    scenario.constraints.push("mroi(channel=ch0) >= 1e9".into());
    let (problem, s) = solve(&model, &scenario);
    assert_eq!(s.status, Status::Solved);
    for c in (0..problem.num_cells()).filter(|&c| is_ch0(&problem, c)) {
        assert_eq!(s.allocation[c], 0.0);
    }
    // With a floor on that spend, no plan exists: infeasible, naming the cap.
    let mut floor = Selector::new();
    floor.insert("channel".into(), "ch0".into());
    scenario.bounds.push(BoundRule {
        select: floor,
        min: Some(1.0),
        max: None,
        relative: false,
    });
    let (_, s) = solve(&model, &scenario);
    assert_eq!(s.status, Status::Infeasible, "{}", s.message);
    assert!(
        s.message.contains("mroi(channel=ch0) >= 1e9"),
        "{}",
        s.message
    );
}

#[test]
fn bad_marginal_roi_constraints_name_the_column() {
    let (model, scenario) = case();
    for (text, column, says) in [
        ("mroi(channel=zz) >= 1", 14, "unknown coordinate"),
        ("mroi(channel=ch0) <= 1", 19, "expected >="),
        ("mroi >= -2", 9, "finite number >= 0"),
        ("mroi(channel=ch0) >= lots", 22, "finite number >= 0"),
        ("mroi(channel=ch0 >= 1", 22, "')'"),
        ("  mroi(colour=red) >= 1", 8, "unknown dim"),
    ] {
        let mut s = scenario.clone();
        s.constraints.push(text.into());
        match Problem::new(&model, &s) {
            Err(Error::Constraint {
                column: c, message, ..
            }) => {
                assert_eq!(c, column, "{text}: {message}");
                assert!(message.contains(says), "{text}: {message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    // A channel whose name starts with `mroi` is still a linear term.
    assert!(
        mmm_budget::marginal_roi::MarginalRoiConstraint::parse(
            "mroi_tv <= 3",
            0,
            &model,
            &Problem::new(&model, &scenario).unwrap().cells
        )
        .is_none()
    );
}
