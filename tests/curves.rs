//! Each cell's response curve around the optimum: through the optimum's own
//! contribution and marginal return, its slope the marginal return, rising and
//! concave for a concave curve.

mod common;

use mmm_budget::*;

#[test]
fn curves_pass_through_the_optimum_with_the_marginal_return_as_slope() {
    let (_, problem, _) = common::reference_case("m8x4");
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let s = Solver::new(&problem, &mut ev, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    assert_eq!(s.status, Status::Solved);
    let points = 201;
    let curves = curves::response_curves(&problem, &mut ev, &s.allocation, points, 2.0).unwrap();
    assert_eq!(curves.len(), problem.num_cells());
    let even = problem.total_budget / problem.num_cells() as f64;
    let mut checked = 0;
    for (c, curve) in curves.iter().enumerate() {
        assert_eq!(curve.spend.len(), points);
        assert_eq!(curve.spend[0], 0.0);
        assert!(
            curve.contribution[0].abs() <= 1e-12,
            "{}",
            curve.contribution[0]
        );
        // Logistic: rising and concave.
        assert!(
            curve.contribution.windows(2).all(|w| w[1] >= w[0]),
            "{}",
            curve.label
        );
        assert!(
            curve
                .marginal
                .windows(2)
                .all(|w| w[1] <= w[0] * (1.0 + 1e-12)),
            "{}",
            curve.label
        );
        // The middle of the grid is the chosen spend where it is at least B/n.
        if s.allocation[c] >= even {
            let mid = points / 2;
            assert_eq!(curve.spend[mid], s.allocation[c]);
            let (a, b) = (curve.contribution[mid], s.mean_contribution[c]);
            assert!(
                (a - b).abs() <= 1e-12 * b.abs(),
                "{}: {a} vs {b}",
                curve.label
            );
            let (a, b) = (curve.marginal[mid], s.marginal_response[c]);
            assert!(
                (a - b).abs() <= 1e-12 * b.abs(),
                "{}: {a} vs {b}",
                curve.label
            );
            checked += 1;
        }
        // The slope between grid points is the marginal return at their middle.
        for k in (2..points - 2).step_by(20) {
            let h = curve.spend[k + 1] - curve.spend[k - 1];
            let slope = (curve.contribution[k + 1] - curve.contribution[k - 1]) / h;
            let m = curve.marginal[k];
            assert!(
                (slope - m).abs() <= 1e-3 * m.abs().max(1e-9),
                "{}: {slope} vs {m}",
                curve.label
            );
        }
    }
    assert!(checked >= 10, "{checked}");
    assert!(curves::response_curves(&problem, &mut ev, &s.allocation, 1, 2.0).is_err());
    assert!(curves::response_curves(&problem, &mut ev, &s.allocation[1..], 5, 2.0).is_err());
}
