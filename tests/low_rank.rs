//! Quasi-Newton QPs at many cells: the model as a diagonal plus low rank through
//! auxiliary variables takes the dense model's path.

use mmm_budget::*;

/// From `Tuning::low_rank_cells` variables on, a risk-aware solve keeps its BFGS
/// model as a diagonal plus rank-one terms and gives it to the QP through auxiliary
/// variables; forced dense, the same problem takes the same iterations to the same
/// optimum (the same matrix, another factorisation).
#[test]
fn low_rank_and_dense_models_take_the_same_path() {
    let (model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 10,
            geos: 50,
            draws: 100,
        },
        5,
    );
    for objective in ["maximize mean - 0.5 * std", "maximize cvar(0.9)"] {
        let mut s = scenario.clone();
        s.utility = Utility::parse(objective).unwrap();
        let problem = Problem::new(&model, &s).unwrap();
        assert!(problem.num_cells() >= Tuning::default().low_rank_cells);
        let solve = |low_rank_cells: usize| {
            let tuning = Tuning {
                low_rank_cells,
                ..Tuning::default()
            };
            let mut ev = CpuEvaluator::new(&problem).unwrap();
            Solver::new(&problem, &mut ev, Settings::default().tuning(tuning))
                .unwrap()
                .solve()
                .unwrap()
        };
        let low = solve(Tuning::default().low_rank_cells);
        let dense = solve(usize::MAX);
        eprintln!(
            "{objective}: low rank {:?} {} it {} vs dense {:?} {} it {}",
            low.status, low.iterations, low.utility, dense.status, dense.iterations, dense.utility
        );
        assert_eq!(low.status, dense.status, "{objective}");
        assert!(
            low.iterations.abs_diff(dense.iterations) <= 1,
            "{objective}"
        );
        assert!(
            (low.utility - dense.utility).abs() <= 1e-9 * dense.utility.abs(),
            "{objective}: {} vs {}",
            low.utility,
            dense.utility
        );
        let total = problem.total_budget;
        for (a, b) in low.allocation.iter().zip(&dense.allocation) {
            assert!((a - b).abs() <= 1e-6 * total, "{objective}: {a} vs {b}");
        }
    }
}
