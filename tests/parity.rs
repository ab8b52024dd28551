//! GPU against the f64 CPU reference: one test body per behaviour, run on the CPU
//! always (against itself, to keep the body honest) and on the GPU when an adapter
//! exists. Without one the GPU half says it skipped and why; with
//! MMM_REQUIRE_GPU=1 (CI, after installing lavapipe) a missing adapter fails.

mod common;

use common::{Shape, assert_close, gpu, random_case};
use mmm_budget::io::load_case;
use mmm_budget::*;
use std::path::Path;
use std::sync::Arc;

/// Compares `ev` with the CPU reference on `problem` at a few allocations, with
/// uniform and per-draw weights, and the time-varying form.
fn check_against_cpu(what: &str, problem: &Problem, ev: &mut dyn Evaluator, tol: f64) {
    let mut cpu = CpuEvaluator::new(problem).unwrap();
    let n = problem.num_cells();
    let d = problem.num_draws();
    let u: Vec<f64> = (0..d).map(|i| (1.0 + (i % 7) as f64) / d as f64).collect();
    for scale in [0.3, 1.0, 2.5] {
        let x: Vec<f64> = (0..n)
            .map(|c| scale * problem.total_budget / n as f64 * (0.5 + (c % 3) as f64 * 0.5))
            .collect();
        for weights in [DrawWeights::Uniform, DrawWeights::PerDraw(&u)] {
            let mut a = Evaluation::new(d, n);
            let mut b = Evaluation::new(d, n);
            ev.evaluate(&x, weights, &mut a).unwrap();
            cpu.evaluate(&x, weights, &mut b).unwrap();
            assert_close(
                &format!("{what} responses"),
                &a.responses,
                &b.responses,
                tol,
            );
            let (ua, ub) = (
                Utility::mean().value(&a.responses, &[]),
                Utility::mean().value(&b.responses, &[]),
            );
            assert!(
                (ua - ub).abs() <= tol * ub.abs(),
                "{what} utility {ua} vs {ub}"
            );
            assert_close(
                &format!("{what} contributions"),
                &a.contributions,
                &b.contributions,
                tol,
            );
            assert_close(&format!("{what} gradient"), &a.gradient, &b.gradient, tol);
            assert_close(
                &format!("{what} curvature"),
                &a.curvature,
                &b.curvature,
                tol,
            );
        }
        let np = problem.num_periods;
        let xt: Vec<f64> = (0..n * np)
            .map(|i| x[i / np] * (0.5 + ((i * 7) % 5) as f64 * 0.25))
            .collect();
        let mut a = TimeVaryingEvaluation::default();
        let mut b = TimeVaryingEvaluation::default();
        ev.evaluate_time_varying(&xt, DrawWeights::PerDraw(&u), &mut a)
            .unwrap();
        cpu.evaluate_time_varying(&xt, DrawWeights::PerDraw(&u), &mut b)
            .unwrap();
        assert_close(
            &format!("{what} time-varying responses"),
            &a.responses,
            &b.responses,
            tol,
        );
        assert_close(
            &format!("{what} time-varying gradient"),
            &a.gradient,
            &b.gradient,
            tol,
        );
        assert_close(
            &format!("{what} time-varying contributions"),
            &a.contributions,
            &b.contributions,
            tol,
        );
    }
}

/// `evaluate_many` at k allocations against k single evaluations by `ev` itself (to
/// the last bit on the CPU, 1e-6 elsewhere) and by the CPU reference (to `tol`).
fn check_many(
    what: &str,
    problem: &Problem,
    ev: &mut dyn Evaluator,
    cpu: &mut CpuEvaluator,
    k: usize,
    weights: DrawWeights<'_>,
    tol: f64,
) {
    let (n, d) = (problem.num_cells(), problem.num_draws());
    let xs: Vec<Vec<f64>> = (0..k)
        .map(|j| {
            (0..n)
                .map(|c| {
                    problem.total_budget / n as f64 * (0.2 + ((j * 5 + c * 3) % 11) as f64 * 0.3)
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[f64]> = xs.iter().map(|x| x.as_slice()).collect();
    let mut many = vec![Evaluation::default(); k];
    ev.evaluate_many(&refs, weights, &mut many).unwrap();
    let own_tol = if tol <= 1e-12 { 0.0 } else { 1e-6 };
    for (j, x) in xs.iter().enumerate() {
        let mut one = Evaluation::new(d, n);
        ev.evaluate(x, weights, &mut one).unwrap();
        let mut reference = Evaluation::new(d, n);
        cpu.evaluate(x, weights, &mut reference).unwrap();
        for (part, a, b, c) in [
            (
                "responses",
                &many[j].responses,
                &one.responses,
                &reference.responses,
            ),
            (
                "contributions",
                &many[j].contributions,
                &one.contributions,
                &reference.contributions,
            ),
            (
                "gradient",
                &many[j].gradient,
                &one.gradient,
                &reference.gradient,
            ),
            (
                "curvature",
                &many[j].curvature,
                &one.curvature,
                &reference.curvature,
            ),
        ] {
            if own_tol == 0.0 {
                assert!(
                    a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()) && a.len() == b.len(),
                    "{what} evaluate_many slot {j} {part}: not the bits of a single evaluation"
                );
            } else {
                assert_close(
                    &format!("{what} evaluate_many slot {j} {part} vs one"),
                    a,
                    b,
                    own_tol,
                );
            }
            assert_close(
                &format!("{what} evaluate_many slot {j} {part} vs cpu"),
                a,
                c,
                tol,
            );
        }
    }
    let mut wrong = vec![Evaluation::default(); k + 1];
    assert!(ev.evaluate_many(&refs, weights, &mut wrong).is_err());
}

/// Runs `body` with the CPU evaluator and, when a device exists, the GPU one.
fn on_each_backend(
    problem: &Problem,
    options: &GpuOptions,
    mut body: impl FnMut(&str, &mut dyn Evaluator, f64),
) {
    let mut cpu = CpuEvaluator::new(problem).unwrap();
    body("cpu", &mut cpu, 1e-12);
    if let Some(ctx) = gpu() {
        let mut g = GpuEvaluator::with_context(ctx, problem, options).unwrap();
        body(&g.describe(), &mut g, 1e-5);
    }
}

#[test]
fn every_kind_agrees_with_the_cpu() {
    let shape = Shape {
        draws: 37,
        channels: 3,
        geos: 2,
        periods: 6,
        l_max: 4,
    };
    let mut seed = 0;
    for a in AdstockKind::ALL {
        for s in Saturation::ALL {
            for first in [true, false] {
                seed += 1;
                let (model, scenario) = random_case(seed, shape, a, s, first, seed % 2 == 0);
                let problem = Problem::new(&model, &scenario).unwrap();
                on_each_backend(&problem, &GpuOptions::default(), |name, ev, tol| {
                    check_against_cpu(&format!("{name} {a}/{s}/first={first}"), &problem, ev, tol)
                });
            }
        }
    }
}

/// Every utility's value and gradient, as the solver forms them from an evaluator
/// (the responses, the draw weights ∂U/∂R_d, then the weighted pass plus the
/// explicit ∂U/∂x), agree with the f64 CPU reference to 1e-5 on the GPU.
#[test]
fn every_utility_value_and_gradient_agree_with_the_cpu() {
    let shape = Shape {
        draws: 301,
        channels: 4,
        geos: 2,
        periods: 8,
        l_max: 4,
    };
    let (model, scenario) = random_case(
        41,
        shape,
        AdstockKind::Geometric,
        Saturation::Logistic,
        true,
        false,
    );
    let problem = Problem::new(&model, &scenario).unwrap();
    let (d, n) = (problem.num_draws(), problem.num_cells());
    let utilities = [
        "mean",
        "std",
        "mean - 0.5 * std",
        "quantile(0.1)",
        "var(0.95)",
        "cvar(0.9)",
        "tail_distance(0.75)",
        "mean_tightness(0.5, 0.8)",
        "sharpe(10)",
        "raroc(5)",
        "adjusted_var(0.9, 0.6)",
        "portfolio_entropy",
        "mean + 100 * portfolio_entropy",
    ];
    // Value and gradient at x: (U, ∇U), and the size of the gradient's terms
    // (Σ_d |∂U/∂R_d| ∂R_d/∂x + |∂U/∂x|, largest over cells: where the terms cancel,
    // f32 keeps digits of the terms, not of their sum).
    let objective = |ev: &mut dyn Evaluator, u: &Utility, x: &[f64]| {
        let mut e = Evaluation::new(d, n);
        ev.evaluate(x, DrawWeights::Uniform, &mut e).unwrap();
        let (mut wr, mut wx) = (vec![0.0; d], vec![0.0; n]);
        let value = u.smooth(&e.responses, x, &mut wr, &mut wx);
        ev.evaluate(x, DrawWeights::PerDraw(&wr), &mut e).unwrap();
        let gradient: Vec<f64> = e.gradient.iter().zip(&wx).map(|(g, w)| g + w).collect();
        let size: Vec<f64> = wr.iter().map(|w| w.abs()).collect();
        ev.evaluate(x, DrawWeights::PerDraw(&size), &mut e).unwrap();
        let terms = e
            .gradient
            .iter()
            .zip(&wx)
            .map(|(g, w)| g.abs() + w.abs())
            .fold(0.0, f64::max);
        (value, gradient, terms)
    };
    on_each_backend(&problem, &GpuOptions::default(), |name, ev, tol| {
        let mut cpu = CpuEvaluator::new(&problem).unwrap();
        for scale in [0.5, 1.0, 2.0] {
            let x: Vec<f64> = (0..n)
                .map(|c| scale * problem.total_budget / n as f64 * (0.4 + (c % 4) as f64 * 0.4))
                .collect();
            for text in utilities {
                let u = Utility::parse(text).unwrap();
                let (va, ga, _) = objective(ev, &u, &x);
                let (vb, gb, terms) = objective(&mut cpu, &u, &x);
                assert!(
                    (va - vb).abs() <= tol * vb.abs(),
                    "{name} {text} at {scale}: value {va} vs {vb}"
                );
                for (c, (a, b)) in ga.iter().zip(&gb).enumerate() {
                    assert!(
                        (a - b).abs() <= tol * terms,
                        "{name} {text} at {scale}: ∂U/∂x[{c}] {a} vs {b} (terms up to {terms:e})"
                    );
                }
            }
        }
    });
}

/// An evaluation's responses (as bits) and its per-cell sums.
fn parts(e: &Evaluation) -> (Vec<u64>, Vec<f64>) {
    (
        e.responses.iter().map(|x| x.to_bits()).collect(),
        [&e.contributions, &e.gradient, &e.curvature]
            .into_iter()
            .flatten()
            .copied()
            .collect(),
    )
}

/// A pass at the allocation of a pass that stored its terms weights them again on
/// the device: the responses the same bits as recomputing them, the sums to f32
/// rounding (summed in draw order where the full pass sums a tree), whatever runs in
/// between (other allocations, the time-varying form, several allocations at once),
/// in one chunk and in several; and a CVaR solve ends at the same optimum either way.
#[test]
fn passes_from_stored_terms_are_the_passes_recomputed() {
    let Some(ctx) = gpu() else { return };
    let shape = Shape {
        draws: 203,
        channels: 3,
        geos: 2,
        periods: 6,
        l_max: 4,
    };
    let (model, scenario) = random_case(
        17,
        shape,
        AdstockKind::Geometric,
        Saturation::Hill,
        true,
        true,
    );
    let problem = Problem::new(&model, &scenario).unwrap();
    let (d, n, np) = (
        problem.num_draws(),
        problem.num_cells(),
        problem.num_periods,
    );
    let w1: Vec<f64> = (0..d).map(|i| ((i * 7) % 11) as f64 / d as f64).collect();
    let w2: Vec<f64> = (0..d).map(|i| 1.0 - ((i * 3) % 5) as f64 / 5.0).collect();
    let x1: Vec<f64> = (0..n).map(|c| 100.0 + 40.0 * c as f64).collect();
    let x2: Vec<f64> = (0..n).map(|c| 300.0 - 20.0 * c as f64).collect();
    let xt: Vec<f64> = (0..n * np).map(|i| 50.0 + (i % 7) as f64 * 10.0).collect();
    // Chunks of 64 draws (four parameters of 4 bytes a draw and cell), there with the
    // sums over a workgroup by the tree.
    for chunks in [None, Some(64 * 4 * 4 * n as u64)] {
        let options = |recompute: bool| GpuOptions {
            max_chunk_bytes: chunks,
            workgroup_size: chunks.map(|_| 32),
            recompute_weighted_passes: recompute,
            tree_sums: chunks.is_some(),
            ..Default::default()
        };
        let mut stored =
            GpuEvaluator::with_context(ctx.clone(), &problem, &options(false)).unwrap();
        let mut plain = GpuEvaluator::with_context(ctx.clone(), &problem, &options(true)).unwrap();
        let what = stored.describe();
        assert_eq!(stored.num_chunks() > 1, chunks.is_some(), "{what}");
        let step = |ev: &mut GpuEvaluator, k: usize| {
            let mut e = Evaluation::new(d, n);
            let (x, w) = match k {
                0 => (&x1, DrawWeights::Uniform),
                1 => (&x1, DrawWeights::PerDraw(&w1)),
                2 => (&x1, DrawWeights::PerDraw(&w2)),
                3 => (&x1, DrawWeights::Uniform),
                4 => (&x2, DrawWeights::Uniform),
                5 => {
                    let mut t = TimeVaryingEvaluation::default();
                    ev.evaluate_time_varying(&xt, DrawWeights::Uniform, &mut t)
                        .unwrap();
                    return (vec![], t.gradient);
                }
                6 => (&x2, DrawWeights::PerDraw(&w1)),
                7 => {
                    let mut many = vec![Evaluation::default(); 2];
                    ev.evaluate_many(&[&x1, &x2], DrawWeights::PerDraw(&w2), &mut many)
                        .unwrap();
                    let (a, b) = (parts(&many[0]), parts(&many[1]));
                    return ([a.0, b.0].concat(), [a.1, b.1].concat());
                }
                _ => (&x2, DrawWeights::PerDraw(&w2)),
            };
            ev.evaluate(x, w, &mut e).unwrap();
            parts(&e)
        };
        for k in 0..9 {
            let (a, b) = (step(&mut stored, k), step(&mut plain, k));
            assert_eq!(a.0, b.0, "{what}: step {k}, responses");
            assert_eq!(a.1, b.1, "{what}: step {k}, sums");
        }
        // Served from the terms: x1 with w2, then uniform; x2 with w1, then w2.
        assert_eq!(stored.stored_term_passes(), 4, "{what}");
        assert_eq!(plain.stored_term_passes(), 0, "{what}");
        let mut cvar = problem.clone();
        cvar.utility = Utility::parse("cvar(0.9)").unwrap();
        let mut stored = GpuEvaluator::with_context(ctx.clone(), &cvar, &options(false)).unwrap();
        let mut plain = GpuEvaluator::with_context(ctx.clone(), &cvar, &options(true)).unwrap();
        let a = Solver::new(&cvar, &mut stored, Settings::default())
            .unwrap()
            .solve()
            .unwrap();
        let b = Solver::new(&cvar, &mut plain, Settings::default())
            .unwrap()
            .solve()
            .unwrap();
        // The same bits every pass: the same solve.
        assert_eq!(
            (a.status, b.status),
            (Status::Solved, Status::Solved),
            "{what}"
        );
        assert_eq!(
            (a.iterations, a.evaluations),
            (b.iterations, b.evaluations),
            "{what}"
        );
        assert_eq!(a.utility, b.utility, "{what}");
        assert_eq!(a.allocation, b.allocation, "{what}");
        assert!(stored.stored_term_passes() > 0, "{what}");
    }
}

#[test]
fn windows_shorter_than_the_carry_over_agree_with_the_cpu() {
    // N + 1 < K: the tail periods sum different ranges of weights (the kernels take a
    // separate path from the usual N ≥ K − 1).
    let shape = Shape {
        draws: 41,
        channels: 2,
        geos: 2,
        periods: 2,
        l_max: 7,
    };
    let mut seed = 500;
    for a in [
        AdstockKind::Geometric,
        AdstockKind::WeibullCdf,
        AdstockKind::Delayed,
    ] {
        for s in [
            Saturation::Logistic,
            Saturation::MichaelisMenten,
            Saturation::Hill,
        ] {
            for constant in [true, false] {
                seed += 1;
                let (model, scenario) = random_case(seed, shape, a, s, true, !constant);
                let problem = Problem::new(&model, &scenario).unwrap();
                on_each_backend(&problem, &GpuOptions::default(), |name, ev, tol| {
                    check_against_cpu(&format!("{name} {a}/{s} N=2 L=7"), &problem, ev, tol)
                });
            }
        }
    }
}

#[test]
fn odd_sizes_agree_with_the_cpu() {
    for (draws, channels, geos) in [(1, 1, 1), (1, 3, 2), (300, 1, 1), (513, 2, 3)] {
        let shape = Shape {
            draws,
            channels,
            geos: geos.max(1),
            periods: 5,
            l_max: 3,
        };
        let (model, scenario) = random_case(
            draws as u64,
            shape,
            AdstockKind::Geometric,
            Saturation::Logistic,
            true,
            true,
        );
        let problem = Problem::new(&model, &scenario).unwrap();
        // Every workgroup size the kernels take (a D that is a multiple of none), its
        // sums over the workgroup from subgroups (where the adapter has them) and by
        // the tree.
        for (wg, tree_sums) in WORKGROUP_SIZES
            .into_iter()
            .flat_map(|wg| [(wg, false), (wg, true)])
        {
            let options = GpuOptions {
                workgroup_size: Some(wg),
                tree_sums,
                ..Default::default()
            };
            on_each_backend(&problem, &options, |name, ev, tol| {
                check_against_cpu(
                    &format!("{name} D={draws} n={}", channels * geos),
                    &problem,
                    ev,
                    tol,
                )
            });
        }
    }
}

#[test]
fn chunks_that_split_the_draws_agree_with_the_cpu() {
    let shape = Shape {
        draws: 1000,
        channels: 2,
        geos: 2,
        periods: 4,
        l_max: 2,
    };
    let (model, scenario) = random_case(
        5,
        shape,
        AdstockKind::Delayed,
        Saturation::Hill,
        true,
        false,
    );
    let problem = Problem::new(&model, &scenario).unwrap();
    // 5 parameters (delayed: alpha, theta; hill: slope, kappa, beta) × 4 cells × 4 bytes
    // × 256 draws per chunk: four chunks, the last partial.
    let options = GpuOptions {
        max_chunk_bytes: Some(5 * 4 * 4 * 256),
        ..Default::default()
    };
    if let Some(ctx) = gpu() {
        let g = GpuEvaluator::with_context(ctx, &problem, &options).unwrap();
        assert_eq!(g.num_chunks(), 4);
    }
    on_each_backend(&problem, &options, |name, ev, tol| {
        check_against_cpu(&format!("{name} chunked"), &problem, ev, tol)
    });
    // Workgroups of 32 draws: chunks of 224 draws (7 workgroups), the last partial.
    let small = GpuOptions {
        max_chunk_bytes: Some(5 * 4 * 4 * 250),
        workgroup_size: Some(32),
        ..Default::default()
    };
    if let Some(ctx) = gpu() {
        let g = GpuEvaluator::with_context(ctx.clone(), &problem, &small).unwrap();
        assert_eq!(g.num_chunks(), 5);
        assert!(g.describe().contains("workgroup 32"), "{}", g.describe());
        // Subgroup sums wherever the adapter has subgroups, unless told otherwise.
        let subgroups = ctx.subgroup_min_size().is_some();
        assert_eq!(
            g.describe().contains("tree sums"),
            !subgroups,
            "{}",
            g.describe()
        );
        let tree = GpuOptions {
            tree_sums: true,
            ..small.clone()
        };
        let t = GpuEvaluator::with_context(ctx.clone(), &problem, &tree).unwrap();
        assert!(t.describe().contains("tree sums"), "{}", t.describe());
        let bad = GpuOptions {
            workgroup_size: Some(100),
            ..Default::default()
        };
        let e = GpuEvaluator::with_context(ctx, &problem, &bad)
            .err()
            .expect("an error")
            .to_string();
        assert!(e.contains("workgroup_size") && e.contains("100"), "{e}");
    }
    on_each_backend(&problem, &small, |name, ev, tol| {
        check_against_cpu(&format!("{name} chunked"), &problem, ev, tol)
    });
}

#[test]
fn reference_cases_solve_to_the_same_optimum() {
    for name in ["s3", "m8x4", "l20x10"] {
        let case = load_case(&Path::new("tests/data").join(name), None).unwrap();
        let problem = case.problem().unwrap();
        let mut cpu = CpuEvaluator::new(&problem).unwrap();
        let reference = Solver::new(&problem, &mut cpu, Settings::default())
            .unwrap()
            .solve()
            .unwrap();
        let Some(ctx) = gpu() else { return };
        let mut g = GpuEvaluator::with_context(ctx, &problem, &GpuOptions::default()).unwrap();
        // Default settings: the solver raises gtol to the f32 evaluator's floor.
        let s = Solver::new(&problem, &mut g, Settings::default())
            .unwrap()
            .solve()
            .unwrap();
        assert_eq!(s.status, Status::Solved, "{name}: {}", s.message);
        // Judge the GPU's allocation with the f64 evaluator.
        let mut r = vec![0.0; problem.num_draws()];
        cpu.responses(&s.allocation, &mut r).unwrap();
        let u = Utility::mean().value(&r, &[]);
        assert!(
            (u - reference.utility).abs() <= 1e-6 * reference.utility,
            "{name}: {u} vs {}",
            reference.utility
        );
        assert!(s.backend.starts_with("gpu"), "{}", s.backend);
    }
}

/// hill with slope < 1 in some draws (cells with an infinite marginal return at 0):
/// solved on each backend, to the same utility when judged in f64.
#[test]
fn steep_hill_cells_solve_on_each_backend() {
    let size = demo::SyntheticSize {
        channels: 30,
        geos: 1,
        draws: 4,
        periods: 52,
        l_max: 13,
    };
    let (model, scenario) = demo::synthetic_with(&size, Saturation::Hill, 7);
    let problem = Problem::new(&model, &scenario).unwrap();
    let mut cpu = CpuEvaluator::new(&problem).unwrap();
    let mut r = vec![0.0; problem.num_draws()];
    let mut best = None;
    on_each_backend(&problem, &GpuOptions::default(), |name, ev, _| {
        let s = Solver::new(&problem, ev, Settings::default())
            .unwrap()
            .solve()
            .unwrap();
        assert_eq!(s.status, Status::Solved, "{name}: {}", s.message);
        cpu.responses(&s.allocation, &mut r).unwrap();
        let u = Utility::mean().value(&r, &[]);
        let reference = *best.get_or_insert(u);
        assert!(
            (u - reference).abs() <= 1e-7 * reference,
            "{name}: {u} vs {reference}"
        );
    });
}

/// `problem` solved on the CPU and then on the GPU, each with the nonlinear
/// constraints that `nonlinear` makes.
fn solve_on_both(
    ctx: &Arc<GpuContext>,
    problem: &Problem,
    nonlinear: &dyn Fn() -> Vec<NonlinearConstraint>,
) -> (Solution, Solution) {
    let mut cpu = CpuEvaluator::new(problem).unwrap();
    let mut gpu = GpuEvaluator::with_context(ctx.clone(), problem, &GpuOptions::default()).unwrap();
    let solve = |ev: &mut dyn Evaluator| {
        nonlinear()
            .into_iter()
            .fold(
                Solver::new(problem, ev, Settings::default()).unwrap(),
                |s, c| s.with_nonlinear(c),
            )
            .solve()
            .unwrap()
    };
    (solve(&mut cpu), solve(&mut gpu))
}

/// The GPU's optimum, judged in f64, is as good as the CPU's to 1e-5 (the f32 solve
/// stops at a KKT residual of 3.6e-6, which allows a loss of that order).
fn assert_as_good(problem: &Problem, gpu: &Solution, cpu: &Solution, what: &str) {
    let mut r = vec![0.0; problem.num_draws()];
    CpuEvaluator::new(problem)
        .unwrap()
        .responses(&gpu.allocation, &mut r)
        .unwrap();
    let u = Utility::mean().value(&r, &[]);
    assert!(
        u >= cpu.utility - 1e-5 * cpu.utility.abs(),
        "{what}: {u} vs {}",
        cpu.utility
    );
}

/// Random small problems (tests/common: every curve, random bounds and constraints)
/// end with the same status on each backend, and the GPU's optimum is as good as the
/// CPU's ([`assert_as_good`]).
#[test]
fn random_problems_end_alike_on_each_backend() {
    let Some(ctx) = gpu() else { return };
    for seed in 0..60u64 {
        let (model, scenario, what) = common::random_problem(seed);
        let problem = Problem::new(&model, &scenario).unwrap();
        let (reference, s) = solve_on_both(&ctx, &problem, &Vec::new);
        assert_eq!(s.status, reference.status, "{what}: {}", s.message);
        if s.status == Status::Solved {
            assert_as_good(&problem, &s, &reference, &what);
        }
    }
}

/// The random problems with a sum-of-squares cap and its curvature (the exact
/// Lagrangian path) end alike on each backend: the same status, the GPU's optimum as
/// good as the CPU's, the cap met; where the CPU stops short at an allocation whose
/// constraint qualification fails (about one feasible allocation), the GPU ends
/// feasible too.
#[test]
fn random_problems_with_a_nonlinear_constraint_end_alike_on_each_backend() {
    let Some(ctx) = gpu() else { return };
    for seed in 0..60u64 {
        let (model, scenario, what) = common::random_problem(seed);
        let problem = Problem::new(&model, &scenario).unwrap();
        let cap = 1.5
            * problem
                .uniform_allocation()
                .iter()
                .map(|v| v * v)
                .sum::<f64>();
        let squares = || {
            vec![common::with_its_curvature(common::sum_of_squares_at_most(
                cap,
            ))]
        };
        let (reference, s) = solve_on_both(&ctx, &problem, &squares);
        if reference.message.contains("constraint qualification fails") {
            assert_ne!(s.status, Status::Infeasible, "{what}: {}", s.message);
        } else {
            assert_eq!(s.status, reference.status, "{what}: {}", s.message);
        }
        if s.status != Status::Infeasible {
            let sq: f64 = s.allocation.iter().map(|v| v * v).sum();
            assert!(sq <= cap * (1.0 + 1e-8), "{what}: {sq} > {cap}");
        }
        if reference.status == Status::Solved {
            assert_as_good(&problem, &s, &reference, &what);
        }
    }
}

#[test]
fn f16_parameters_stay_close() {
    let case = load_case(Path::new("tests/data/m8x4"), None).unwrap();
    let problem = case.problem().unwrap();
    let Some(ctx) = gpu() else { return };
    let mut half = GpuEvaluator::with_context(
        ctx.clone(),
        &problem,
        &GpuOptions {
            f16_parameters: true,
            ..Default::default()
        },
    )
    .unwrap();
    let full = GpuEvaluator::with_context(ctx, &problem, &GpuOptions::default()).unwrap();
    assert_eq!(half.parameter_bytes() * 2, full.parameter_bytes());
    let mut cpu = CpuEvaluator::new(&problem).unwrap();
    let x = problem.uniform_allocation();
    let (mut a, mut b) = (Evaluation::new(1000, 32), Evaluation::new(1000, 32));
    half.evaluate(&x, DrawWeights::Uniform, &mut a).unwrap();
    cpu.evaluate(&x, DrawWeights::Uniform, &mut b).unwrap();
    let (ua, ub) = (
        Utility::mean().value(&a.responses, &[]),
        Utility::mean().value(&b.responses, &[]),
    );
    // f16 keeps 11 significant bits per parameter: the mean moves by ~1e-4.
    assert!((ua - ub).abs() <= 1e-3 * ub, "f16 utility {ua} vs {ub}");
    assert_close("f16 gradient", &a.gradient, &b.gradient, 1e-2);
}

/// `mmm-budget optimize CASE --backend gpu` solves every shared case (exit 0), within
/// 1e-6 of PyMC-Marketing's objective or better.
#[test]
fn cli_optimize_with_the_gpu_backend() {
    if gpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["s3", "m8x4", "l20x10"] {
        let out = dir.path().join(format!("{name}.json"));
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
            .args([
                "optimize",
                &format!("tests/data/{name}"),
                "--backend",
                "gpu",
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let e: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(format!("tests/data/{name}/expected.json")).unwrap(),
        )
        .unwrap();
        let (ours, theirs) = (
            v["utility"].as_f64().unwrap(),
            e["objective"].as_f64().unwrap(),
        );
        assert!(ours >= theirs * (1.0 - 1e-6), "{name}: {ours} vs {theirs}");
        assert!(v["backend"].as_str().unwrap().starts_with("gpu"));
    }
}

/// Device-side limits and choices come back as typed errors or recorded choices,
/// never panics.
#[test]
fn device_errors_are_typed_and_auto_chooses_sensibly() {
    let (model, scenario) = random_case(
        3,
        Shape {
            draws: 300,
            channels: 2,
            geos: 1,
            periods: 4,
            l_max: 2,
        },
        AdstockKind::Geometric,
        Saturation::Logistic,
        true,
        false,
    );
    let problem = Problem::new(&model, &scenario).unwrap();
    if let Some(ctx) = gpu() {
        let tiny = GpuOptions {
            max_chunk_bytes: Some(16),
            ..Default::default()
        };
        match GpuEvaluator::with_context(ctx.clone(), &problem, &tiny) {
            Err(Error::Device { message, .. }) => {
                assert!(message.contains("binding limit"), "{message}")
            }
            Err(e) => panic!("expected a device error, got {e}"),
            Ok(_) => panic!("expected a device error"),
        }
        // Auto takes a hardware GPU, and the CPU over a software adapter.
        let selected = Backend::Auto
            .evaluator(&problem, &GpuOptions::default())
            .unwrap();
        let on_gpu = selected.evaluator.describe().starts_with("gpu");
        assert_eq!(
            on_gpu,
            !ctx.is_software(),
            "{}",
            selected.evaluator.describe()
        );
        assert!(selected.warning.is_none());
    }
    // The kernels' per-invocation arrays bound l_max and N + l_max.
    let (model, scenario) = random_case(
        4,
        Shape {
            draws: 3,
            channels: 1,
            geos: 1,
            periods: 500,
            l_max: 64,
        },
        AdstockKind::Geometric,
        Saturation::Logistic,
        true,
        false,
    );
    let problem = Problem::new(&model, &scenario).unwrap();
    if let Some(ctx) = gpu() {
        let e = GpuEvaluator::with_context(ctx, &problem, &GpuOptions::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("at most 64 adstock weights"), "{e}");
    }
}

/// An adapter chosen by index (as a Ray task's assigned GPU): the listed adapter opens
/// and evaluates as the default one does; an index past the list is a device error
/// that names the adapters.
#[test]
fn an_adapter_chosen_by_index() {
    if gpu().is_none() {
        return;
    }
    let adapters = GpuContext::adapters();
    assert!(!adapters.is_empty());
    let (model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 3,
            geos: 2,
            draws: 64,
        },
        3,
    );
    let problem = Problem::new(&model, &scenario).unwrap();
    let x = problem.uniform_allocation();
    let mut want = Evaluation::new(problem.num_draws(), problem.num_cells());
    CpuEvaluator::new(&problem)
        .unwrap()
        .evaluate(&x, DrawWeights::Uniform, &mut want)
        .unwrap();
    for index in 0..adapters.len() {
        let options = GpuOptions {
            adapter: Some(index),
            ..GpuOptions::default()
        };
        let mut ev = GpuEvaluator::new(&problem, &options).unwrap();
        let mut got = Evaluation::new(problem.num_draws(), problem.num_cells());
        ev.evaluate(&x, DrawWeights::Uniform, &mut got).unwrap();
        assert_close("responses", &got.responses, &want.responses, 1e-5);
    }
    let past = GpuOptions {
        adapter: Some(adapters.len()),
        ..GpuOptions::default()
    };
    match GpuEvaluator::new(&problem, &past) {
        Err(Error::Device { message, .. }) => {
            assert!(
                message.starts_with(&format!("no adapter {}: the adapters are", adapters.len())),
                "{message}"
            );
            let first = adapters[0].get_info().name;
            assert!(message.contains(&first), "{message}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("adapter {} opened", adapters.len()),
    }
}

/// One evaluation split over shards of draws agrees with one evaluator: CPU shards
/// with the CPU to 1e-12, and (where a device exists) two logical devices on one
/// adapter with the CPU to the GPU's tolerance, for every output and the
/// time-varying form; a solve on the shards reaches the single evaluator's optimum.
#[test]
fn an_evaluation_split_over_shards_agrees_with_one() {
    let shape = Shape {
        draws: 203,
        channels: 4,
        geos: 3,
        periods: 9,
        l_max: 5,
    };
    let (model, scenario) = random_case(
        11,
        shape,
        AdstockKind::WeibullCdf,
        Saturation::Tanh,
        true,
        true,
    );
    let problem = Problem::new(&model, &scenario).unwrap();
    let ranges = [0..50, 50..51, 51..203];
    let shards: Vec<Box<dyn Evaluator + Send>> = ranges
        .iter()
        .map(|r| {
            Box::new(CpuEvaluator::new(&problem.draws(r.clone()).unwrap()).unwrap())
                as Box<dyn Evaluator + Send>
        })
        .collect();
    let mut sharded = ShardedEvaluator::new(shards).unwrap();
    assert_eq!(sharded.num_draws(), 203);
    check_against_cpu("cpu shards", &problem, &mut sharded, 1e-12);
    let mut cpu = CpuEvaluator::new(&problem).unwrap();
    check_many(
        "cpu shards",
        &problem,
        &mut sharded,
        &mut cpu,
        3,
        DrawWeights::Uniform,
        1e-12,
    );
    let single = Solver::new(
        &problem,
        &mut CpuEvaluator::new(&problem).unwrap(),
        Settings::default(),
    )
    .unwrap()
    .solve()
    .unwrap();
    let split = Solver::new(&problem, &mut sharded, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    assert_eq!(split.status, Status::Solved);
    assert_close("optimum", &split.allocation, &single.allocation, 1e-7);
    if gpu().is_none() {
        return;
    }
    let mut two = ShardedEvaluator::gpu(&problem, &[0, 0], &GpuOptions::default()).unwrap();
    assert_eq!(two.num_shards(), 2);
    assert!(
        two.describe().starts_with("sharded (101 draws on gpu"),
        "{}",
        two.describe()
    );
    check_against_cpu("two logical devices", &problem, &mut two, 1e-5);
    let mut cpu = CpuEvaluator::new(&problem).unwrap();
    let u: Vec<f64> = (0..203).map(|i| (i % 3) as f64 / 203.0).collect();
    check_many(
        "two logical devices",
        &problem,
        &mut two,
        &mut cpu,
        4,
        DrawWeights::PerDraw(&u),
        1e-5,
    );
    let on_two = Solver::new(&problem, &mut two, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    assert_eq!(on_two.status, Status::Solved);
    assert_close(
        "optimum on two devices",
        &on_two.allocation,
        &single.allocation,
        1e-4,
    );
    assert!(ShardedEvaluator::new(vec![]).is_err());
    assert!(problem.draws(10..10).is_err() && problem.draws(0..204).is_err());
}

/// Carry-in (`"history"`): the GPU agrees with the CPU for every adstock kind and
/// both orders, across a window shorter and one longer than the carry-over (each
/// pair of kind and order one of three windows), in the constant and the
/// time-varying forms.
#[test]
fn carry_in_agrees_with_the_cpu() {
    let kinds = [
        AdstockKind::Geometric,
        AdstockKind::Delayed,
        AdstockKind::Binomial,
        AdstockKind::WeibullPdf,
        AdstockKind::WeibullCdf,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        for adstock_first in [true, false] {
            let windows = [(2, false), (11, true), (11, false)];
            {
                let (periods, time_varying_inputs) =
                    windows[(2 * i + usize::from(adstock_first)) % 3];
                let shape = Shape {
                    draws: 70,
                    channels: 3,
                    geos: 2,
                    periods,
                    l_max: 6,
                };
                let (model, mut scenario) = random_case(
                    90 + i as u64,
                    shape,
                    kind,
                    Saturation::Logistic,
                    adstock_first,
                    time_varying_inputs,
                );
                let mut select = Selector::new();
                select.insert("channel".into(), "c1".into());
                scenario.history.push(PeriodRule {
                    select,
                    values: (0..model.adstock.l_max).map(|t| 0.5 + t as f64).collect(),
                });
                let problem = Problem::new(&model, &scenario).unwrap();
                assert!(!problem.history.is_empty());
                on_each_backend(&problem, &GpuOptions::default(), |what, ev, tol| {
                    check_against_cpu(
                        &format!("{what} {kind} first {adstock_first} N {periods}"),
                        &problem,
                        ev,
                        tol,
                    );
                });
            }
        }
    }
}

/// `evaluate_many` with more allocations than one pass holds (GPU: 32 slots) and
/// parameters in several chunks, uniform and per-draw weights, and none at all.
#[test]
fn several_allocations_in_one_pass_equal_single_evaluations() {
    let shape = Shape {
        draws: 700,
        channels: 3,
        geos: 2,
        periods: 7,
        l_max: 4,
    };
    let (model, scenario) = random_case(
        23,
        shape,
        AdstockKind::Geometric,
        Saturation::MichaelisMenten,
        true,
        true,
    );
    let problem = Problem::new(&model, &scenario).unwrap();
    let options = GpuOptions {
        // 3 parameters × 6 cells × 4 bytes × 256 draws a chunk: three chunks.
        max_chunk_bytes: Some(3 * 6 * 4 * 256),
        ..Default::default()
    };
    let d = problem.num_draws();
    let u: Vec<f64> = (0..d).map(|i| ((i % 5) as f64 - 1.0) / d as f64).collect();
    on_each_backend(&problem, &options, |name, ev, tol| {
        let mut cpu = CpuEvaluator::new(&problem).unwrap();
        for (k, weights) in [
            (1, DrawWeights::Uniform),
            (40, DrawWeights::Uniform),
            (33, DrawWeights::PerDraw(&u)),
        ] {
            check_many(
                &format!("{name} k {k}"),
                &problem,
                ev,
                &mut cpu,
                k,
                weights,
                tol,
            );
        }
        let mut none: Vec<Evaluation> = vec![];
        ev.evaluate_many(&[], DrawWeights::Uniform, &mut none)
            .unwrap();
        // Single evaluations and the time-varying form on the enlarged buffers.
        check_against_cpu(&format!("{name} after evaluate_many"), &problem, ev, tol);
    });
}

/// A plan over time (a spend per group of periods, flighting limits) on the GPU ends
/// at the CPU's plan.
#[test]
fn a_plan_over_time_solves_alike_on_each_backend() {
    let (model, mut scenario) = demo::case(
        &demo::DemoSize {
            channels: 3,
            geos: 2,
            draws: 300,
        },
        9,
    );
    scenario.num_periods = 6;
    scenario.decision = Decision::Every(2);
    scenario.flighting.push(FlightRule {
        select: Selector::new(),
        max_change: 0.2 * scenario.total_budget,
    });
    let problem = Problem::new(&model, &scenario).unwrap();
    let mut cpu = CpuEvaluator::new(&problem).unwrap();
    let on_cpu = plan::solve(&problem, &mut cpu, Settings::default()).unwrap();
    assert_eq!(on_cpu.solution.status, Status::Solved);
    let Some(ctx) = gpu() else { return };
    let mut g = GpuEvaluator::with_context(ctx, &problem, &GpuOptions::default()).unwrap();
    let on_gpu = plan::solve(&problem, &mut g, Settings::default()).unwrap();
    assert_eq!(
        on_gpu.solution.status,
        Status::Solved,
        "{}",
        on_gpu.solution.message
    );
    assert_close("plan on the gpu", &on_gpu.spend, &on_cpu.spend, 1e-3);
    assert!(
        (on_gpu.solution.utility - on_cpu.solution.utility).abs() <= 1e-5 * on_cpu.solution.utility
    );
}

/// The constant form's geometric walk (weights formed as it goes, not held) at the
/// decay's edges — α = 0 (w = (1, 0, …)), tiny, ½, near 1 and 1 — over windows long
/// and short, normalized and not, agrees with the CPU.
#[test]
fn geometric_decay_at_its_edges_agrees_with_the_cpu() {
    let edges = [0.0, 1e-30, 1e-6, 0.5, 0.999, 1.0];
    for (seed, (l_max, periods)) in [(3, 8), (13, 52), (40, 52), (8, 7)].into_iter().enumerate() {
        let shape = Shape {
            draws: 2 * edges.len() + 5,
            channels: 3,
            geos: 2,
            periods,
            l_max,
        };
        for normalize in [true, false] {
            let (mut model, scenario) = random_case(
                300 + seed as u64,
                shape,
                AdstockKind::Geometric,
                Saturation::Logistic,
                true,
                false,
            );
            model.adstock.normalize = normalize;
            let alpha = model.posterior.arrays.get_mut("adstock_alpha").unwrap();
            for (i, v) in alpha.values.iter_mut().enumerate() {
                if i % 2 == 0 {
                    *v = edges[(i / 2) % edges.len()];
                }
            }
            let problem = Problem::new(&model, &scenario).unwrap();
            on_each_backend(&problem, &GpuOptions::default(), |name, ev, tol| {
                check_against_cpu(
                    &format!("{name} l_max {l_max} periods {periods} normalize {normalize}"),
                    &problem,
                    ev,
                    tol,
                )
            });
        }
    }
}
