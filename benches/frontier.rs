//! The frontier over 25 budgets: each solve warm-started from the last optimum
//! against 25 cold solves (each from the usual start), side by side on the CPU, on
//! the demo case and a larger synthetic one.
//!
//!     cargo bench --bench frontier
//!     MMM_BENCH_QUICK=1 cargo bench --bench frontier     # the demo case only

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mmm_budget::demo::{SyntheticSize, synthetic};
use mmm_budget::*;

fn cases() -> Vec<(String, Model, Scenario)> {
    let mut list = vec![];
    let (m, s) = demo::case(&demo::DEMO, 42);
    list.push(("demo 5x3, 2000 draws".to_string(), m, s));
    if std::env::var("MMM_BENCH_QUICK").is_err() {
        let size = SyntheticSize {
            channels: 20,
            geos: 10,
            draws: 1000,
            periods: 26,
            l_max: 8,
        };
        let (m, s) = synthetic(&size, 7);
        list.push(("synthetic 20x10, 1000 draws".to_string(), m, s));
    }
    list
}

fn frontier_warm_vs_cold(c: &mut Criterion) {
    let mut group = c.benchmark_group("frontier_25_budgets");
    group.sample_size(10);
    for (name, model, scenario) in cases() {
        let problem = Problem::new(&model, &scenario).expect("valid case");
        let mut ev = CpuEvaluator::new(&problem).expect("evaluator");
        let b = scenario.total_budget;
        let budgets = frontier::budgets(0.5 * b, 2.0 * b, 25);
        for warm in [true, false] {
            let mut run = || {
                frontier::frontier(
                    &model,
                    &scenario,
                    &mut ev,
                    &budgets,
                    &Settings::default(),
                    warm,
                )
                .expect("frontier")
            };
            let evaluations: usize = run().iter().map(|p| p.solution.evaluations).sum();
            let label = if warm { "warm" } else { "cold" };
            eprintln!("{name}: {label}: {evaluations} evaluations over 25 solves");
            group.bench_function(BenchmarkId::new(label, &name), |bench| bench.iter(&mut run));
        }
    }
    group.finish();
}

criterion_group!(benches, frontier_warm_vs_cold);
criterion_main!(benches);
