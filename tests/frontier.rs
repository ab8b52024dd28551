//! The frontier over total budgets: increasing, concave where the curves are, its
//! marginal return the budget's multiplier, and cheaper warm than cold.

mod common;

use mmm_budget::*;

fn m8x4() -> (mmm_budget::io::Case, Problem) {
    let (case, problem, _) = common::reference_case("m8x4");
    (case, problem)
}

#[test]
fn the_frontier_rises_with_a_marginal_return_that_is_its_slope() {
    let (case, problem) = m8x4();
    let b0 = case.scenario.total_budget;
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let budgets = frontier::budgets(0.5 * b0, 2.0 * b0, 7);
    let points = frontier::frontier(
        &case.model,
        &case.scenario,
        &mut ev,
        &budgets,
        &Settings::default(),
        true,
    )
    .unwrap();
    assert_eq!(points.len(), 7);
    for p in &points {
        assert_eq!(
            p.solution.status,
            Status::Solved,
            "{}: {}",
            p.budget,
            p.solution.message
        );
        let spent: f64 = p.solution.allocation.iter().sum();
        assert!((spent - p.budget).abs() <= 1e-9 * p.budget);
        let [lo, mid, hi] = p.response_quantiles;
        assert!(lo <= mid && mid <= hi, "{:?}", p.response_quantiles);
    }
    for w in points.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let (la, lb) = (a.marginal_return.unwrap(), b.marginal_return.unwrap());
        // Concave curves: the marginal return falls, and the chord's slope lies
        // between the two ends' marginal returns.
        assert!(lb < la, "{lb} >= {la}");
        let slope = (b.solution.mean_response - a.solution.mean_response) / (b.budget - a.budget);
        assert!(lb <= slope && slope <= la, "{lb} <= {slope} <= {la}");
    }
    // The marginal return is dU*/dB: a central difference at one budget.
    let (k, h) = (3, 1e-3 * budgets[3]);
    let mut at = |b: f64| {
        frontier::frontier(
            &case.model,
            &case.scenario,
            &mut ev,
            &[b],
            &Settings::default(),
            false,
        )
        .unwrap()[0]
            .solution
            .mean_response
    };
    let slope = (at(budgets[k] + h) - at(budgets[k] - h)) / (2.0 * h);
    let lambda = points[k].marginal_return.unwrap();
    assert!(
        (slope - lambda).abs() <= 1e-5 * lambda,
        "{slope} vs {lambda}"
    );
}

#[test]
fn warm_starts_cost_fewer_evaluations_than_cold_ones() {
    let (case, problem) = m8x4();
    let b0 = case.scenario.total_budget;
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let budgets = frontier::budgets(0.5 * b0, 2.0 * b0, 25);
    let run = |ev: &mut CpuEvaluator, warm: bool| {
        frontier::frontier(
            &case.model,
            &case.scenario,
            ev,
            &budgets,
            &Settings::default(),
            warm,
        )
        .unwrap()
    };
    let (warm, cold) = (run(&mut ev, true), run(&mut ev, false));
    let evaluations = |p: &[FrontierPoint]| p.iter().map(|p| p.solution.evaluations).sum::<usize>();
    assert!(
        evaluations(&warm) < evaluations(&cold),
        "warm {} vs cold {}",
        evaluations(&warm),
        evaluations(&cold)
    );
    for (w, c) in warm.iter().zip(&cold) {
        let (a, b) = (w.solution.mean_response, c.solution.mean_response);
        assert!((a - b).abs() <= 1e-9 * a, "{}: {a} vs {b}", w.budget);
    }
}
