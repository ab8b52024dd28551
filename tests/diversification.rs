//! The diversification ratio (PyMC-Marketing's `diversification_ratio` over the cells'
//! responses): the evaluators' cell moments against each cell's own responses, the
//! ratio against PyMC-Marketing's formula on them, the GPU, sharded and chunked
//! evaluators against the CPU, solves against a grid and the mean's optimum, and its
//! errors.

mod common;

use common::{Shape, assert_close, gpu, random_case, solve_objective as solve};
use mmm_budget::utility::budget_shares;
use mmm_budget::*;

/// r_dc: every draw's response with only cell c spending x_c (g(0) = 0 for every
/// curve, so the other cells give nothing), `[c][d]`.
fn cell_responses(ev: &mut dyn Evaluator, x: &[f64]) -> Vec<Vec<f64>> {
    (0..x.len())
        .map(|c| {
            let mut only = vec![0.0; x.len()];
            only[c] = x[c];
            let mut r = vec![0.0; ev.num_draws()];
            ev.responses(&only, &mut r).unwrap();
            r
        })
        .collect()
}

/// PyMC-Marketing 0.19.2's formula with `samples` the cells' responses: Σ w σ (ddof 1)
/// over √(wᵀ Σ w), Σ the sample covariance matrix.
fn pymc_formula(r: &[Vec<f64>], x: &[f64]) -> f64 {
    let (n, d) = (r.len(), r[0].len());
    let total: f64 = x.iter().sum();
    let w: Vec<f64> = x.iter().map(|v| v / total).collect();
    let mean: Vec<f64> = r.iter().map(|c| c.iter().sum::<f64>() / d as f64).collect();
    let cov = |a: usize, b: usize| {
        (0..d)
            .map(|k| (r[a][k] - mean[a]) * (r[b][k] - mean[b]))
            .sum::<f64>()
            / (d - 1) as f64
    };
    let mut var = 0.0;
    for a in 0..n {
        for b in 0..n {
            var += w[a] * w[b] * cov(a, b);
        }
    }
    let weighted: f64 = (0..n).map(|c| w[c] * cov(c, c).sqrt()).sum();
    weighted / var.sqrt()
}

fn moments(ev: &mut dyn Evaluator, x: &[f64]) -> CellMoments {
    let mut m = CellMoments::default();
    ev.cell_moments(x, &budget_shares(x), &mut m).unwrap();
    m
}

fn shape(draws: usize) -> Shape {
    Shape {
        draws,
        channels: 3,
        geos: 2,
        periods: 6,
        l_max: 4,
    }
}

/// Random curves, adstocks and orders; allocations spread unevenly over the cells.
fn cases() -> Vec<(String, Problem, Vec<f64>)> {
    let mut out = vec![];
    for (seed, a, s, first) in [
        (1, AdstockKind::Geometric, Saturation::Logistic, true),
        (2, AdstockKind::Delayed, Saturation::Hill, true),
        (
            3,
            AdstockKind::WeibullCdf,
            Saturation::MichaelisMenten,
            false,
        ),
        (4, AdstockKind::Binomial, Saturation::Tanh, true),
        (5, AdstockKind::WeibullPdf, Saturation::HillSigmoid, true),
        (6, AdstockKind::Geometric, Saturation::Root, false),
    ] {
        let (model, scenario) = random_case(seed, shape(53), a, s, first, seed % 2 == 0);
        let problem = Problem::new(&model, &scenario).unwrap();
        let n = problem.num_cells();
        let x: Vec<f64> = (0..n)
            .map(|c| {
                problem.total_budget / n as f64 * (0.2 + 0.3 * ((c * 5 + seed as usize) % 6) as f64)
            })
            .collect();
        out.push((format!("{a:?}/{s:?}/first {first}"), problem, x));
    }
    out
}

#[test]
fn cell_moments_are_the_cells_own_means_and_spreads() {
    for (what, problem, x) in cases() {
        let mut ev = CpuEvaluator::new(&problem).unwrap();
        let r = cell_responses(&mut ev, &x);
        let d = problem.num_draws() as f64;
        let m = moments(&mut ev, &x);
        let mut full = vec![0.0; problem.num_draws()];
        ev.responses(&x, &mut full).unwrap();
        assert_eq!(m.responses, full, "{what}: R_d as `responses` gives it");
        let w = budget_shares(&x);
        let weighted: Vec<f64> = (0..full.len())
            .map(|k| (0..x.len()).map(|c| w[c] * r[c][k]).sum())
            .collect();
        assert_close(&format!("{what} P_d"), &m.weighted, &weighted, 1e-12);
        for (c, rc) in r.iter().enumerate() {
            let mean = rc.iter().sum::<f64>() / d;
            let squares: f64 = rc.iter().map(|v| (v - mean) * (v - mean)).sum();
            assert!(
                (m.mean[c] - mean).abs() <= 1e-12 * mean.abs(),
                "{what} mean[{c}]"
            );
            assert!(
                (m.squares[c] - squares).abs() <= 1e-9 * squares,
                "{what} squares[{c}]: {} vs {squares}",
                m.squares[c]
            );
            // r'_dc by central differences of the cell's own responses.
            let h = 1e-5 * x[c];
            let (mut up, mut down) = (x.clone(), x.clone());
            up[c] += h;
            down[c] -= h;
            let (ru, rd) = (cell_responses(&mut ev, &up), cell_responses(&mut ev, &down));
            let slope: Vec<f64> = (0..rc.len())
                .map(|k| (ru[c][k] - rd[c][k]) / (2.0 * h))
                .collect();
            let mean_slope = slope.iter().sum::<f64>() / d;
            let cross: f64 = (0..rc.len())
                .map(|k| (rc[k] - mean) * (slope[k] - mean_slope))
                .sum();
            assert!(
                (m.mean_slope[c] - mean_slope).abs() <= 1e-6 * mean_slope.abs(),
                "{what} mean_slope[{c}]: {} vs {mean_slope}",
                m.mean_slope[c]
            );
            assert!(
                (m.cross[c] - cross).abs()
                    <= 1e-6 * (squares * slope.iter().map(|s| s * s).sum::<f64>()).sqrt(),
                "{what} cross[{c}]: {} vs {cross}",
                m.cross[c]
            );
        }
    }
}

#[test]
fn the_ratio_is_pymc_marketings_formula_over_the_cells_responses() {
    let u = Utility::parse("diversification_ratio").unwrap();
    let pymc = Utility::parse("diversification_ratio").unwrap();
    assert_eq!(u, pymc);
    for (what, problem, x) in cases() {
        let mut ev = CpuEvaluator::new(&problem).unwrap();
        let m = moments(&mut ev, &x);
        let ours = u.value_with(&m.responses, &x, Some(&m));
        let theirs = pymc_formula(&cell_responses(&mut ev, &x), &x);
        assert!(
            (ours - theirs).abs() <= 1e-10 * theirs,
            "{what}: {ours} vs {theirs}"
        );
        // A standard deviation of a sum is at most the sum of the deviations.
        assert!(ours >= 1.0 - 1e-12, "{what}: {ours}");
        // Without the moments the ratio is not known: NaN, never a number.
        assert!(u.value(&m.responses, &x).is_nan());
        // Weighted sums with other measures add up.
        let mixed = Utility::parse("mean - 2 * diversification_ratio").unwrap();
        let mean = m.responses.iter().sum::<f64>() / m.responses.len() as f64;
        let v = mixed.value_with(&m.responses, &x, Some(&m));
        assert!(
            (v - (mean - 2.0 * ours)).abs() <= 1e-12 * mean.abs(),
            "{what}"
        );
    }
}

#[test]
fn gpu_chunked_and_sharded_moments_agree_with_the_cpu() {
    for (what, problem, x) in cases() {
        let mut cpu = CpuEvaluator::new(&problem).unwrap();
        let reference = moments(&mut cpu, &x);
        // Two CPU shards: the merge of disjoint draws, to rounding.
        let d = problem.num_draws();
        let shards: Vec<Box<dyn Evaluator + Send>> = vec![
            Box::new(CpuEvaluator::new(&problem.draws(0..20).unwrap()).unwrap()),
            Box::new(CpuEvaluator::new(&problem.draws(20..d).unwrap()).unwrap()),
        ];
        let mut sharded = ShardedEvaluator::new(shards).unwrap();
        let m = moments(&mut sharded, &x);
        assert_eq!(m.responses, reference.responses, "{what}");
        for (name, a, b) in [
            ("weighted", &m.weighted, &reference.weighted),
            ("mean", &m.mean, &reference.mean),
            ("mean_slope", &m.mean_slope, &reference.mean_slope),
            ("squares", &m.squares, &reference.squares),
            ("cross", &m.cross, &reference.cross),
        ] {
            assert_close(&format!("sharded {what} {name}"), a, b, 1e-12);
        }
        let Some(ctx) = gpu() else { continue };
        // One chunk, and chunks of one workgroup of 32 draws (several blocks, the
        // last one short); sums over the workgroup from subgroups (where the adapter
        // has them) and by the tree, and workgroups of 1,024.
        for options in [
            GpuOptions::default(),
            GpuOptions {
                workgroup_size: Some(32),
                max_chunk_bytes: Some(32 * 5 * 4 * problem.num_cells() as u64),
                ..Default::default()
            },
            GpuOptions {
                workgroup_size: Some(32),
                max_chunk_bytes: Some(32 * 5 * 4 * problem.num_cells() as u64),
                tree_sums: true,
                ..Default::default()
            },
            GpuOptions {
                workgroup_size: Some(1024),
                tree_sums: true,
                ..Default::default()
            },
        ] {
            let mut g = GpuEvaluator::with_context(ctx.clone(), &problem, &options).unwrap();
            let m = moments(&mut g, &x);
            let tag = format!("{} {what}", g.describe());
            assert_close(
                &format!("{tag} responses"),
                &m.responses,
                &reference.responses,
                1e-5,
            );
            assert_close(
                &format!("{tag} weighted"),
                &m.weighted,
                &reference.weighted,
                1e-5,
            );
            assert_close(&format!("{tag} mean"), &m.mean, &reference.mean, 1e-5);
            assert_close(
                &format!("{tag} mean_slope"),
                &m.mean_slope,
                &reference.mean_slope,
                1e-5,
            );
            assert_close(
                &format!("{tag} squares"),
                &m.squares,
                &reference.squares,
                1e-5,
            );
            assert_close(&format!("{tag} cross"), &m.cross, &reference.cross, 1e-5);
            let u = Utility::parse("diversification_ratio").unwrap();
            let (a, b) = (
                u.value_with(&m.responses, &x, Some(&m)),
                u.value_with(&reference.responses, &x, Some(&reference)),
            );
            assert!((a - b).abs() <= 1e-5 * b, "{tag}: ratio {a} vs {b}");
        }
    }
}

fn two_cells() -> (Model, Scenario) {
    demo::case(
        &demo::DemoSize {
            channels: 2,
            geos: 1,
            draws: 300,
        },
        11,
    )
}

fn ratio_at(problem: &Problem, x: &[f64]) -> f64 {
    let mut ev = CpuEvaluator::new(problem).unwrap();
    let m = moments(&mut ev, x);
    Utility::parse("diversification_ratio")
        .unwrap()
        .value_with(&m.responses, x, Some(&m))
}

#[test]
fn the_most_diversified_split_of_two_cells_is_the_grids_best() {
    let (model, scenario) = two_cells();
    let (problem, s) = solve(&model, &scenario, "maximize diversification_ratio");
    assert!(
        matches!(s.status, Status::Solved | Status::AlmostSolved),
        "{:?}: {}",
        s.status,
        s.message
    );
    let b = problem.total_budget;
    assert!((s.allocation.iter().sum::<f64>() - b).abs() <= 1e-9 * b);
    let steps = 2000;
    let (best_x, best) = (0..=steps)
        .map(|i| {
            let x0 = b * i as f64 / steps as f64;
            (x0, ratio_at(&problem, &[x0, b - x0]))
        })
        .fold(
            (0.0, f64::NEG_INFINITY),
            |a, v| if v.1 > a.1 { v } else { a },
        );
    let ours = ratio_at(&problem, &s.allocation);
    assert!(ours >= best - 1e-9 * best, "{ours} vs the grid's {best}");
    assert!(
        (s.allocation[0] - best_x).abs() <= b / steps as f64,
        "{:?} vs the grid's {best_x}",
        s.allocation
    );
    assert!((s.utility - ours).abs() <= 1e-12 * ours);
}

#[test]
fn diversifying_costs_mean_response_and_a_floor_on_the_ratio_holds() {
    let (model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 4,
            geos: 2,
            draws: 400,
        },
        8,
    );
    let (problem, mean_opt) = solve(&model, &scenario, "maximize mean");
    let (_, dr_opt) = solve(&model, &scenario, "maximize diversification_ratio");
    assert!(
        matches!(dr_opt.status, Status::Solved | Status::AlmostSolved),
        "{:?}: {}",
        dr_opt.status,
        dr_opt.message
    );
    let (at_mean, at_dr) = (
        ratio_at(&problem, &mean_opt.allocation),
        ratio_at(&problem, &dr_opt.allocation),
    );
    assert!(at_dr > at_mean, "{at_dr} vs the mean optimum's {at_mean}");
    assert!(dr_opt.mean_response < mean_opt.mean_response);
    // The mean's optimum under a floor between the two ratios: the floor binds, and
    // the mean lies between the two optima's.
    let floor = 0.5 * (at_mean + at_dr);
    let mut s = scenario.clone();
    s.constraints
        .push(format!("diversification_ratio >= {floor}"));
    let problem = Problem::new(&model, &s).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let floored = Solver::new(&problem, &mut ev, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    assert!(
        matches!(floored.status, Status::Solved | Status::AlmostSolved),
        "{:?}: {}",
        floored.status,
        floored.message
    );
    let at = ratio_at(&problem, &floored.allocation);
    assert!(at >= floor * (1.0 - 1e-6), "{at} below the floor {floor}");
    assert!(floored.mean_response <= mean_opt.mean_response * (1.0 + 1e-9));
    assert!(floored.mean_response >= dr_opt.mean_response);
    let m = floored
        .multipliers
        .iter()
        .find(|m| m.constraint.contains("diversification_ratio"))
        .expect("the floor's multiplier");
    assert!(m.value.abs() > 0.0, "the floor binds: {m:?}");
}

#[test]
fn the_ratio_needs_two_draws_and_one_spend_per_cell() {
    let (model, mut scenario) = demo::case(
        &demo::DemoSize {
            channels: 2,
            geos: 1,
            draws: 1,
        },
        3,
    );
    scenario.utility = Utility::parse("maximize diversification_ratio").unwrap();
    let e = Problem::new(&model, &scenario).unwrap_err().to_string();
    assert!(
        e.contains("objective") && e.contains("at least 2 posterior draws"),
        "{e}"
    );
    let (model, mut scenario) = two_cells();
    scenario
        .constraints
        .push("diversification_ratio >= 1.1".into());
    scenario.decision = Decision::Every(1);
    let e = Problem::new(&model, &scenario).unwrap_err().to_string();
    assert!(
        e.contains("constraints") && e.contains("per-period decision"),
        "{e}"
    );
    let (column, message) = Utility::parse("maximize diversification_ratio(2)").unwrap_err();
    assert_eq!(column, 10, "{message}");
    assert!(message.contains("at most 0 argument"), "{message}");
}

#[test]
fn the_command_line_reports_the_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dr.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
        .args([
            "optimize",
            "tests/data/s3",
            "--backend",
            "cpu",
            "--objective",
        ])
        .arg("maximize diversification_ratio")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("utility (diversification_ratio)"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let (end, start) = (
        v["utility"].as_f64().unwrap(),
        v["start"]["utility"].as_f64().unwrap(),
    );
    assert!(
        end.is_finite() && end >= start && start >= 1.0,
        "{end} from {start}"
    );
}

#[test]
fn the_gpu_finds_the_cpus_most_diversified_split() {
    let Some(ctx) = gpu() else { return };
    let (model, mut scenario) = demo::case(
        &demo::DemoSize {
            channels: 3,
            geos: 2,
            draws: 300,
        },
        5,
    );
    scenario.utility = Utility::parse("maximize diversification_ratio").unwrap();
    let problem = Problem::new(&model, &scenario).unwrap();
    let mut cpu = CpuEvaluator::new(&problem).unwrap();
    let on_cpu = Solver::new(&problem, &mut cpu, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    let mut g = GpuEvaluator::with_context(ctx, &problem, &GpuOptions::default()).unwrap();
    let on_gpu = Solver::new(&problem, &mut g, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    for s in [&on_cpu, &on_gpu] {
        assert!(
            matches!(s.status, Status::Solved | Status::AlmostSolved),
            "{:?}: {}",
            s.status,
            s.message
        );
    }
    let (a, b) = (
        ratio_at(&problem, &on_gpu.allocation),
        ratio_at(&problem, &on_cpu.allocation),
    );
    assert!(
        (a - b).abs() <= 1e-5 * b,
        "GPU optimum's ratio {a} vs the CPU's {b}"
    );
    assert!((on_gpu.utility - a).abs() <= 1e-5 * a);
}

#[test]
fn a_bound_on_the_ratio_is_held_as_its_gap() {
    use mmm_budget::utility::Measure;
    let floor = OutcomeConstraint::parse("diversification_ratio >= 1.5", 12)
        .unwrap()
        .unwrap();
    assert_eq!(
        floor.utility.terms,
        vec![(1.0, Measure::DiversificationGap(1.5))]
    );
    assert_eq!((floor.sense, floor.rhs), (Sense::GreaterEqual, 0.0));
    assert_eq!(floor.name, "diversification_ratio >= 1.5");
    // −2 DR ≥ −6 is DR ≤ 3.
    let cap = OutcomeConstraint::parse("-2 * diversification_ratio >= -6", 12)
        .unwrap()
        .unwrap();
    assert_eq!(
        cap.utility.terms,
        vec![(1.0, Measure::DiversificationGap(3.0))]
    );
    assert_eq!((cap.sense, cap.rhs), (Sense::LessEqual, 0.0));
    // The ratio beside other terms stays a ratio.
    let mixed = OutcomeConstraint::parse("mean - diversification_ratio >= 3", 12)
        .unwrap()
        .unwrap();
    assert_eq!(mixed.rhs, 3.0);
    // The gap is Σx σ_P (DR − f): of the ratio's sign at every allocation.
    for (what, problem, x) in cases() {
        let mut ev = CpuEvaluator::new(&problem).unwrap();
        let m = moments(&mut ev, &x);
        let d = m.weighted.len() as f64;
        let p_mean = m.weighted.iter().sum::<f64>() / d;
        let sd = (m.weighted.iter().map(|p| (p - p_mean).powi(2)).sum::<f64>() / (d - 1.0)).sqrt();
        let total: f64 = x.iter().sum();
        let ratio =
            Utility::parse("diversification_ratio")
                .unwrap()
                .value_with(&m.responses, &x, Some(&m));
        for f in [1.0, ratio, 2.0 * ratio] {
            let gap = Utility {
                terms: vec![(1.0, Measure::DiversificationGap(f))],
            }
            .value_with(&m.responses, &x, Some(&m));
            let expected = total * sd * (ratio - f);
            assert!(
                (gap - expected).abs() <= 1e-9 * total * sd * ratio,
                "{what} f {f}: {gap} vs {expected}"
            );
        }
    }
}
