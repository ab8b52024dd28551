//! CPU against GPU evaluation (value + gradient + curvature over all draws) across
//! sizes, the time-varying form, and whole optimizations of the reference cases.
//!
//!     cargo bench --bench evaluate
//!     cargo bench --bench evaluate -- carry_in            # one group
//!     cargo bench --bench evaluate -- evaluate_many       # k allocations a pass
//!     cargo bench --bench evaluate -- linear_weights      # one pass for std's weights
//!     cargo bench --bench evaluate -- weighted_pass       # GPU: weighting stored terms
//!     MMM_BENCH_QUICK=1 cargo bench --bench evaluate     # small sizes, for CI
//!
//! Throughput is in draw × cell × period terms (periods include the l_max
//! carry-over). Devices are created and warmed up outside the timed loops.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mmm_budget::demo::{SyntheticSize, synthetic};
use mmm_budget::io::load_case;
use mmm_budget::*;
use std::path::Path;
use std::sync::Arc;

fn sizes() -> Vec<SyntheticSize> {
    let s = |draws, channels, geos, periods, l_max| SyntheticSize {
        channels,
        geos,
        draws,
        periods,
        l_max,
    };
    if std::env::var("MMM_BENCH_QUICK").is_ok() {
        vec![s(256, 4, 2, 12, 4)]
    } else {
        vec![
            s(1000, 8, 4, 12, 8),
            s(2000, 20, 10, 26, 12),
            s(10_000, 50, 4, 52, 13),
        ]
    }
}

/// The synthetic problem of `size` (seed 7) and its draw × cell × period terms
/// (periods with the l_max carry-over).
fn synthetic_problem(size: &SyntheticSize) -> (Problem, u64) {
    let (model, scenario) = synthetic(size, 7);
    let problem = Problem::new(&model, &scenario).expect("valid synthetic problem");
    let terms = (problem.num_draws()
        * problem.num_cells()
        * (problem.num_periods + problem.adstock.l_max)) as u64;
    (problem, terms)
}

/// The CPU evaluator and, with a device, the GPU one, for `problem`.
fn evaluators(
    problem: &Problem,
    gpu: Option<&Arc<GpuContext>>,
) -> Vec<(&'static str, Box<dyn Evaluator>)> {
    let mut evaluators: Vec<(&str, Box<dyn Evaluator>)> = vec![(
        "cpu",
        Box::new(CpuEvaluator::new(problem).expect("cpu evaluator")),
    )];
    if let Some(ctx) = gpu {
        let g = GpuEvaluator::with_context(ctx.clone(), problem, &GpuOptions::default())
            .expect("gpu evaluator");
        evaluators.push(("gpu", Box::new(g)));
    }
    evaluators
}

/// A timed step: one evaluation on the evaluator it is given.
type Step = Box<dyn FnMut(&mut dyn Evaluator)>;

/// One benchmark group: for each size, the step `make(problem)` returns timed on the
/// CPU evaluator and, when a device exists, the GPU one, each warmed up once outside
/// the timed loop.
fn on_each_backend(
    c: &mut Criterion,
    group_name: &str,
    sizes: Vec<SyntheticSize>,
    make: fn(&Problem) -> Step,
) {
    let gpu = GpuContext::new().ok().map(Arc::new);
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10);
    for size in sizes {
        let (problem, terms) = synthetic_problem(&size);
        group.throughput(Throughput::Elements(terms));
        let label = format!(
            "D{}xn{}xN{}+L{}",
            size.draws,
            problem.num_cells(),
            size.periods,
            size.l_max
        );
        let evaluators = evaluators(&problem, gpu.as_ref());
        for (name, mut ev) in evaluators {
            let mut step = make(&problem);
            step(ev.as_mut());
            group.bench_function(BenchmarkId::new(name, &label), |b| {
                b.iter(|| step(ev.as_mut()))
            });
        }
    }
    group.finish();
}

/// Value + gradient + curvature at the uniform allocation.
fn evaluate(c: &mut Criterion) {
    on_each_backend(c, "evaluate", sizes(), |problem| {
        let x = problem.uniform_allocation();
        let mut out = Evaluation::new(problem.num_draws(), problem.num_cells());
        Box::new(move |ev| {
            ev.evaluate(&x, DrawWeights::Uniform, &mut out)
                .expect("evaluation")
        })
    });
}

/// The time-varying form (a spend per period and cell, the adjoint-convolution
/// gradient), on a plan that varies over the periods.
fn time_varying(c: &mut Criterion) {
    let sizes = sizes().into_iter().take(2).collect();
    on_each_backend(c, "time_varying", sizes, |problem| {
        let (n, np) = (problem.num_cells(), problem.num_periods);
        let x: Vec<f64> = (0..n * np)
            .map(|i| problem.total_budget / n as f64 * (0.5 + (i % 5) as f64 * 0.25))
            .collect();
        let mut out = TimeVaryingEvaluation::default();
        Box::new(move |ev| {
            ev.evaluate_time_varying(&x, DrawWeights::Uniform, &mut out)
                .expect("evaluation")
        })
    });
}

/// Carry-in on the CPU: one evaluation without and with a history for every cell,
/// side by side (the prediction is in benches/NOTES.md).
fn carry_in(c: &mut Criterion) {
    let mut group = c.benchmark_group("carry_in");
    group.sample_size(10);
    for size in sizes().into_iter().take(2) {
        let (model, scenario) = synthetic(&size, 7);
        let mut carried = scenario.clone();
        carried.history.push(PeriodRule {
            select: Selector::new(),
            values: (0..model.adstock.l_max).map(|t| 10.0 + t as f64).collect(),
        });
        let label = format!("D{}xn{}", size.draws, size.channels * size.geos);
        for (name, s) in [("without", &scenario), ("with", &carried)] {
            let problem = Problem::new(&model, s).expect("valid synthetic problem");
            let mut ev = CpuEvaluator::new(&problem).expect("cpu evaluator");
            let x = problem.uniform_allocation();
            let mut out = Evaluation::new(problem.num_draws(), problem.num_cells());
            group.bench_function(BenchmarkId::new(name, &label), |b| {
                b.iter(|| {
                    ev.evaluate(&x, DrawWeights::Uniform, &mut out)
                        .expect("evaluation")
                })
            });
        }
    }
    group.finish();
}

/// Several allocations in one pass: `evaluate_many` at k = 1, 8, 32 allocations,
/// CPU and GPU side by side; throughput counts the terms of all k, so that the rows
/// compare per allocation (the prediction is in benches/NOTES.md).
fn evaluate_many(c: &mut Criterion) {
    let gpu = GpuContext::new().ok().map(Arc::new);
    let mut group = c.benchmark_group("evaluate_many");
    group.sample_size(10);
    for size in sizes().into_iter().take(2) {
        let (problem, terms) = synthetic_problem(&size);
        let evaluators = evaluators(&problem, gpu.as_ref());
        let base = problem.uniform_allocation();
        for (name, mut ev) in evaluators {
            for k in [1usize, 8, 32] {
                let xs: Vec<Vec<f64>> = (0..k)
                    .map(|j| {
                        base.iter()
                            .map(|v| v * (0.5 + j as f64 / k as f64))
                            .collect()
                    })
                    .collect();
                let refs: Vec<&[f64]> = xs.iter().map(|x| x.as_slice()).collect();
                let mut out = vec![Evaluation::default(); k];
                ev.evaluate_many(&refs, DrawWeights::Uniform, &mut out)
                    .expect("evaluation");
                group.throughput(Throughput::Elements(terms * k as u64));
                let label = format!("D{}xn{}/k{k}", size.draws, problem.num_cells());
                group.bench_function(BenchmarkId::new(name, &label), |b| {
                    b.iter(|| {
                        ev.evaluate_many(&refs, DrawWeights::Uniform, &mut out)
                            .expect("evaluation")
                    })
                });
            }
        }
    }
    group.finish();
}

/// Draw weights affine in the response (std, Sharpe's ratio): one pass summing each
/// cell's terms plainly and weighted by R_d (`Evaluator::evaluate_linear`) against
/// the two passes it replaces (the responses, then the weighted pass), on the CPU.
fn linear_weights(c: &mut Criterion) {
    let mut group = c.benchmark_group("linear_weights");
    group.sample_size(10);
    for size in sizes() {
        let (problem, terms) = synthetic_problem(&size);
        group.throughput(Throughput::Elements(terms));
        let label = format!("D{}xn{}", size.draws, problem.num_cells());
        let mut ev = CpuEvaluator::new(&problem).expect("cpu evaluator");
        let x = problem.uniform_allocation();
        let (mut plain, mut linear) = (Evaluation::default(), Evaluation::default());
        group.bench_function(BenchmarkId::new("one_pass", &label), |b| {
            b.iter(|| {
                ev.evaluate_linear(&x, 0.0, &mut plain, &mut linear)
                    .expect("evaluation")
            })
        });
        let mut r = vec![0.0; problem.num_draws()];
        let mut out = Evaluation::default();
        group.bench_function(BenchmarkId::new("two_passes", &label), |b| {
            b.iter(|| {
                ev.responses(&x, &mut r).expect("responses");
                ev.evaluate(&x, DrawWeights::PerDraw(&r), &mut out)
                    .expect("evaluation")
            })
        });
    }
    group.finish();
}

/// On the GPU, a quantile-based utility's two passes at a trial point (the responses,
/// then the pass weighted by ∂U/∂R_d at the same allocation): the second from the
/// terms the first stored (`stored_terms`) against recomputed (`recomputed`), the
/// trial point alternating between two allocations.
fn weighted_pass(c: &mut Criterion) {
    let Some(ctx) = GpuContext::new().ok().map(Arc::new) else {
        eprintln!("weighted_pass: no GPU adapter, skipped");
        return;
    };
    let mut group = c.benchmark_group("weighted_pass");
    group.sample_size(10);
    for size in sizes() {
        let (problem, terms) = synthetic_problem(&size);
        group.throughput(Throughput::Elements(terms));
        let label = format!("D{}xn{}", size.draws, problem.num_cells());
        let x = problem.uniform_allocation();
        let x2: Vec<f64> = x.iter().map(|v| 1.1 * v).collect();
        let w: Vec<f64> = (0..problem.num_draws())
            .map(|d| (d % 10) as f64 / problem.num_draws() as f64)
            .collect();
        for (name, recompute) in [("stored_terms", false), ("recomputed", true)] {
            let options = GpuOptions {
                recompute_weighted_passes: recompute,
                ..Default::default()
            };
            let mut ev =
                GpuEvaluator::with_context(ctx.clone(), &problem, &options).expect("gpu evaluator");
            let (mut r, mut out) = (vec![0.0; problem.num_draws()], Evaluation::default());
            let mut two = |at: &[f64]| {
                ev.responses(at, &mut r).expect("responses");
                ev.evaluate(at, DrawWeights::PerDraw(&w), &mut out)
                    .expect("evaluation");
            };
            two(&x);
            let mut flip = false;
            group.bench_function(BenchmarkId::new(name, &label), |b| {
                b.iter(|| {
                    flip = !flip;
                    two(if flip { &x2 } else { &x })
                })
            });
        }
    }
    group.finish();
}

fn optimize(c: &mut Criterion) {
    let mut group = c.benchmark_group("optimize");
    group.sample_size(10);
    let cases: &[&str] = if std::env::var("MMM_BENCH_QUICK").is_ok() {
        &["s3"]
    } else {
        &["s3", "m8x4", "l20x10"]
    };
    for name in cases {
        let case = load_case(&Path::new("tests/data").join(name), None).expect("case");
        let problem = case.problem().expect("problem");
        let mut cpu = CpuEvaluator::new(&problem).expect("cpu evaluator");
        group.bench_function(BenchmarkId::new("cpu", name), |b| {
            b.iter(|| {
                Solver::new(&problem, &mut cpu, Settings::default())
                    .and_then(|s| s.solve())
                    .expect("solve")
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    evaluate,
    time_varying,
    carry_in,
    evaluate_many,
    linear_weights,
    weighted_pass,
    optimize
);
criterion_main!(benches);
