//! Utilities over draws: PyMC-Marketing 0.19.2's values (tests/fixtures/
//! make_utility_fixtures.py), exact gradients of the smoothed versions against finite
//! differences on random draws, the smoothing within its documented bounds, the
//! objective strings, and solves that do what each objective asks.

mod common;

use mmm_budget::eval::band_position;
use mmm_budget::utility::{Measure, bandwidth, cvar_exact, quantile};
use mmm_budget::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn fixtures() -> Value {
    serde_json::from_str(&std::fs::read_to_string("tests/data/utility_fixtures.json").unwrap())
        .unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn exact_values_match_pymc_marketing() {
    for case in fixtures()["cases"].as_array().unwrap() {
        let r = floats(&case["samples"]);
        let x = floats(&case["budgets"]);
        let d = r.len();
        for (name, expected) in case["values"].as_object().unwrap() {
            let expected = expected.as_f64().unwrap();
            let u = Utility::parse(name).unwrap();
            let ours = u.value(&r, &x);
            if name.starts_with("cvar") {
                // Ours is Rockafellar–Uryasev's (the lowest αD draws, the boundary
                // one fractionally); PyMC-Marketing averages the draws at or below the
                // interpolated quantile. Equal where αD is whole.
                let c: f64 = name[5..name.len() - 1].parse().unwrap();
                let k = (1.0 - c) * d as f64;
                if (k - k.round()).abs() < 1e-9 {
                    assert!(
                        (ours - expected).abs() <= 1e-12 * expected.abs(),
                        "{name} D={d}: {ours} vs {expected}"
                    );
                } else {
                    // Both lie between the lowest draw and the quantile.
                    let q = quantile(&r, 1.0 - c);
                    assert!(ours <= q + 1e-9 && expected <= q + 1e-9, "{name} D={d}");
                }
                continue;
            }
            assert!(
                (ours - expected).abs() <= 1e-12 * expected.abs().max(1e-300),
                "{name} D={d}: {ours} vs {expected}"
            );
        }
    }
}

fn all_measures() -> Vec<Measure> {
    vec![
        Measure::Mean,
        Measure::Std,
        Measure::Quantile(0.1),
        Measure::Quantile(0.5),
        Measure::ValueAtRisk(0.95),
        Measure::ConditionalValueAtRisk(0.9),
        Measure::ConditionalValueAtRisk(0.99),
        Measure::TailDistance(0.75),
        Measure::MeanTightness {
            alpha: 0.5,
            confidence: 0.8,
        },
        Measure::SharpeRatio(10.0),
        Measure::Raroc(5.0),
        Measure::AdjustedValueAtRisk {
            confidence: 0.9,
            risk_aversion: 0.6,
        },
        Measure::PortfolioEntropy,
    ]
}

#[test]
fn smoothed_gradients_match_finite_differences() {
    let mut rng = StdRng::seed_from_u64(5);
    for trial in 0..20 {
        let d = rng.random_range(5..80);
        let n = rng.random_range(2..7);
        let r: Vec<f64> = (0..d)
            .map(|_| 1000.0 * (1.0 + rng.random::<f64>()))
            .collect();
        let x: Vec<f64> = (0..n).map(|_| rng.random_range(1.0..50.0)).collect();
        for m in all_measures() {
            let u = Utility {
                terms: vec![(1.5, m), (-0.25, Measure::Std)],
            };
            let mut wr = vec![0.0; d];
            let mut wx = vec![0.0; n];
            let f0 = u.smooth(&r, &x, &mut wr, &mut wx);
            // Steps far below the bandwidth h (σ ≈ 290).
            let step = 1e-4 * bandwidth(d) * 290.0;
            let f = |r: &[f64], x: &[f64]| {
                let (mut a, mut b) = (vec![0.0; d], vec![0.0; n]);
                u.smooth(r, x, &mut a, &mut b)
            };
            for k in 0..d {
                let (mut up, mut down) = (r.clone(), r.clone());
                up[k] += step;
                down[k] -= step;
                let fd = (f(&up, &x) - f(&down, &x)) / (2.0 * step);
                let tol = 1e-5 * (wr.iter().map(|v| v.abs()).fold(0.0, f64::max) + 1e-12);
                assert!(
                    (fd - wr[k]).abs() <= tol,
                    "trial {trial} {m:?} dU/dR[{k}]: {} vs fd {fd} (U {f0})",
                    wr[k]
                );
            }
            for c in 0..n {
                let h = 1e-6 * x[c];
                let (mut up, mut down) = (x.clone(), x.clone());
                up[c] += h;
                down[c] -= h;
                let fd = (f(&r, &up) - f(&r, &down)) / (2.0 * h);
                let scale = wx.iter().map(|v| v.abs()).fold(0.0, f64::max);
                assert!(
                    (fd - wx[c]).abs() <= 1e-6 * (wx[c].abs() + fd.abs()) + 1e-8 * scale,
                    "trial {trial} {m:?} dU/dx[{c}]: {} vs fd {fd}",
                    wx[c]
                );
            }
        }
    }
}

#[test]
fn the_smoothing_stays_within_its_documented_bounds() {
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..50 {
        let d = rng.random_range(10..3000);
        let r: Vec<f64> = (0..d)
            .map(|_| 500.0 * (1.0 + rng.random::<f64>()).powi(3))
            .collect();
        let dn = d as f64;
        let mean = r.iter().sum::<f64>() / dn;
        let std = (r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (dn - 1.0)).sqrt();
        let h = bandwidth(d) * std;
        for q in [0.01, 0.05, 0.1, 0.5, 0.9] {
            let smooth = Utility {
                terms: vec![(1.0, Measure::Quantile(q))],
            };
            let mut w = vec![0.0; d];
            let qh = smooth.smooth(&r, &[], &mut w, &mut []);
            // Between R_(⌈p⌉−1) and R_(⌊p⌋+1), p = q(D − 1), widened by h ln(2D).
            let mut sorted = r.clone();
            sorted.sort_by(f64::total_cmp);
            let p = q * (dn - 1.0);
            let a = h * (2.0 * dn).ln();
            let lo = sorted[(p.ceil() as usize).saturating_sub(1)] - a;
            let hi = sorted[(p.floor() as usize + 1).min(d - 1)] + a;
            assert!(
                lo <= qh && qh <= hi,
                "Q_{q} D={d}: {qh} not in [{lo}, {hi}]"
            );
            // Moving every draw alike moves the quantile alike: Σ_d ∂Q/∂R_d = 1.
            let sum: f64 = w.iter().sum();
            assert!((sum - 1.0).abs() <= 1e-9, "Σ weights {sum}");
            let alpha = q;
            let cv = Utility {
                terms: vec![(1.0, Measure::ConditionalValueAtRisk(1.0 - alpha))],
            };
            let ch = cv.smooth(&r, &[], &mut w, &mut []);
            let exact = cvar_exact(&r, alpha);
            let slack = 1e-9 * exact.abs();
            assert!(
                exact - h * 2f64.ln() / alpha - slack <= ch && ch <= exact + slack,
                "CVaR_{alpha} D={d}: {ch} vs exact {exact}"
            );
        }
    }
}

#[test]
fn objective_strings_parse_and_print() {
    let u = Utility::parse("maximize cvar(0.9)").unwrap();
    assert_eq!(u.terms, vec![(1.0, Measure::ConditionalValueAtRisk(0.9))]);
    let u = Utility::parse("maximize mean - 0.5 * std").unwrap();
    assert_eq!(u.terms, vec![(1.0, Measure::Mean), (-0.5, Measure::Std)]);
    assert_eq!(u.to_string(), "mean - 0.5 * std");
    let u = Utility::parse("minimize std*2 - mean").unwrap();
    assert_eq!(u.terms, vec![(-2.0, Measure::Std), (1.0, Measure::Mean)]);
    // PyMC-Marketing's names and defaults.
    let u =
        Utility::parse("conditional_value_at_risk + sharpe_ratio + mean_tightness_score").unwrap();
    assert_eq!(
        u.terms,
        vec![
            (1.0, Measure::ConditionalValueAtRisk(0.95)),
            (1.0, Measure::SharpeRatio(0.0)),
            (
                1.0,
                Measure::MeanTightness {
                    alpha: 0.5,
                    confidence: 0.75
                }
            )
        ]
    );
    assert!(Utility::parse("mean").unwrap().is_mean());
    // Printed strings parse back to the same utility.
    for text in [
        "quantile(0.05) + 2 * adjusted_var(0.9, 0.3)",
        "-std",
        "raroc(1) - portfolio_entropy",
    ] {
        let u = Utility::parse(text).unwrap();
        assert_eq!(Utility::parse(&u.to_string()).unwrap(), u, "{text}");
    }
    // Errors name the column.
    assert_eq!(Utility::parse("maximize cvar(1.5)").unwrap_err().0, 10);
    assert_eq!(Utility::parse("mean - 0.5 std").unwrap_err().0, 12);
    let (col, msg) = Utility::parse("maximize revenue").unwrap_err();
    assert_eq!(col, 10);
    assert!(msg.contains("unknown measure \"revenue\""), "{msg}");
    assert_eq!(
        Utility::parse("minimize spend").unwrap().terms,
        vec![(-1.0, Measure::Spend)]
    );
    assert_eq!(Utility::parse("mean +").unwrap_err().0, 7);
}

fn demo() -> (Model, Scenario) {
    demo::case(
        &demo::DemoSize {
            channels: 4,
            geos: 2,
            draws: 400,
        },
        8,
    )
}

fn solve_with(model: &Model, scenario: &Scenario, objective: &str) -> (Solution, Vec<f64>) {
    let (problem, solution) = common::solve_objective(model, scenario, objective);
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let mut out = Evaluation::new(problem.num_draws(), problem.num_cells());
    ev.evaluate(&solution.allocation, DrawWeights::Uniform, &mut out)
        .unwrap();
    (solution, out.responses)
}

#[test]
fn risk_aware_objectives_trade_mean_for_the_tail() {
    let (model, scenario) = demo();
    let (mean_opt, r_mean) = solve_with(&model, &scenario, "maximize mean");
    assert_eq!(mean_opt.status, Status::Solved);
    let x = &mean_opt.allocation;
    for objective in [
        "maximize cvar(0.9)",
        "maximize mean - 0.5 * std",
        "maximize quantile(0.1)",
    ] {
        let (s, r) = solve_with(&model, &scenario, objective);
        assert_eq!(s.status, Status::Solved, "{objective}: {}", s.message);
        let u = Utility::parse(objective).unwrap();
        // At least as good in its own measure as the mean's optimum, by more than
        // the smoothing (exact values).
        assert!(
            u.value(&r, &s.allocation) >= u.value(&r_mean, x),
            "{objective}: {} vs {}",
            u.value(&r, &s.allocation),
            u.value(&r_mean, x)
        );
        // And no better in the mean.
        let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
        assert!(mean(&r) <= mean(&r_mean) * (1.0 + 1e-9), "{objective}");
        // The budget is spent and nothing is negative.
        let total: f64 = s.allocation.iter().sum();
        assert!((total - scenario.total_budget).abs() <= 1e-6 * scenario.total_budget);
        assert!(s.allocation.iter().all(|v| *v >= 0.0 && v.is_finite()));
    }
    // A mean with a coefficient other than 1 takes the general path: same optimum.
    let (twice, _) = solve_with(&model, &scenario, "maximize 2 * mean");
    assert_eq!(twice.status, Status::Solved);
    for (a, b) in twice.allocation.iter().zip(x) {
        assert!((a - b).abs() <= 1e-5 * scenario.total_budget, "{a} vs {b}");
    }
}

#[test]
fn objectives_come_from_the_scenario_file_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("tests/data/m8x4/scenario.json").unwrap();
    let mut v: Value = serde_json::from_str(&text).unwrap();
    v["objective"] = Value::from("maximize cvar(0.9)");
    let path = dir.path().join("scenario.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let (scenario, _) = mmm_budget::io::load_scenario(&path).unwrap();
    assert_eq!(scenario.utility, Utility::parse("cvar(0.9)").unwrap());
    v["objective"] = Value::from("maximize cvar(0.9) +");
    std::fs::write(&path, v.to_string()).unwrap();
    let e = mmm_budget::io::load_scenario(&path)
        .unwrap_err()
        .to_string();
    assert!(e.contains("objective") && e.contains("column 21"), "{e}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
        .args([
            "optimize",
            "tests/data/s3",
            "--backend",
            "cpu",
            "--objective",
            "maximize mean - 0.2 * std",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("utility (mean - 0.2 * std)"), "{out}");
}

/// The CPU evaluator with its one-pass sums hidden: the solver then takes a pass for
/// the responses and one for the weighted sums.
struct TwoPass(CpuEvaluator);

impl Evaluator for TwoPass {
    fn num_draws(&self) -> usize {
        self.0.num_draws()
    }
    fn num_cells(&self) -> usize {
        self.0.num_cells()
    }
    fn num_periods(&self) -> usize {
        self.0.num_periods()
    }
    fn describe(&self) -> String {
        format!("{} in two passes", self.0.describe())
    }
    fn responses(&mut self, x: &[f64], out: &mut [f64]) -> Result<()> {
        self.0.responses(x, out)
    }
    fn evaluate(&mut self, x: &[f64], w: DrawWeights<'_>, out: &mut Evaluation) -> Result<()> {
        self.0.evaluate(x, w, out)
    }
    fn evaluate_time_varying(
        &mut self,
        x: &[f64],
        w: DrawWeights<'_>,
        out: &mut TimeVaryingEvaluation,
    ) -> Result<()> {
        self.0.evaluate_time_varying(x, w, out)
    }
}

#[test]
fn one_pass_sums_weighted_by_the_response_match_a_weighted_pass() {
    let (model, scenario) = demo();
    let problem = Problem::new(&model, &scenario).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let d = problem.num_draws();
    let shards: Vec<Box<dyn Evaluator + Send>> = vec![
        Box::new(CpuEvaluator::new(&problem.draws(0..150).unwrap()).unwrap()),
        Box::new(CpuEvaluator::new(&problem.draws(150..d).unwrap()).unwrap()),
    ];
    let mut sharded = ShardedEvaluator::new(shards).unwrap();
    let x: Vec<f64> = problem
        .uniform_allocation()
        .iter()
        .enumerate()
        .map(|(c, v)| v * (0.5 + (c % 3) as f64 * 0.4))
        .collect();
    for shift in [0.0, 1.0e4, -3.0e3] {
        for e in [&mut ev as &mut dyn Evaluator, &mut sharded] {
            let (mut plain, mut linear) = (Evaluation::default(), Evaluation::default());
            assert!(
                e.evaluate_linear(&x, shift, &mut plain, &mut linear)
                    .unwrap()
            );
            let u: Vec<f64> = plain.responses.iter().map(|r| r - shift).collect();
            let mut ones = Evaluation::default();
            e.evaluate(&x, DrawWeights::PerDraw(&vec![1.0; d]), &mut ones)
                .unwrap();
            let mut weighted = Evaluation::default();
            e.evaluate(&x, DrawWeights::PerDraw(&u), &mut weighted)
                .unwrap();
            assert_eq!(plain.responses, ones.responses);
            for (name, a, b) in [
                ("plain r", &plain.contributions, &ones.contributions),
                ("plain r'", &plain.gradient, &ones.gradient),
                ("plain r''", &plain.curvature, &ones.curvature),
                ("linear r", &linear.contributions, &weighted.contributions),
                ("linear r'", &linear.gradient, &weighted.gradient),
                ("linear r''", &linear.curvature, &weighted.curvature),
            ] {
                let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                for (c, (p, q)) in a.iter().zip(b).enumerate() {
                    assert!(
                        (p - q).abs() <= 1e-11 * scale,
                        "{} shift {shift} {name}[{c}]: {p} vs {q}",
                        e.describe()
                    );
                }
            }
        }
    }
}

/// `problem` solved on the CPU evaluator and on the two-pass path ([`TwoPass`]): the
/// same status and iterations, optima within 1e-7 of the budget.
fn one_and_two_pass(problem: &Problem, what: &str) -> (Solution, Solution) {
    let mut one = CpuEvaluator::new(problem).unwrap();
    let mut two = TwoPass(CpuEvaluator::new(problem).unwrap());
    let a = Solver::new(problem, &mut one, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    let b = Solver::new(problem, &mut two, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    assert_eq!(a.status, Status::Solved, "{what}: {}", a.message);
    assert_eq!((a.status, a.iterations), (b.status, b.iterations), "{what}");
    let total = problem.total_budget;
    for (p, q) in a.allocation.iter().zip(&b.allocation) {
        assert!((p - q).abs() <= 1e-7 * total, "{what}: {p} vs {q}");
    }
    (a, b)
}

/// The multiplier of the constraint whose text starts with `prefix`.
fn multiplier_of(s: &Solution, prefix: &str) -> f64 {
    s.multipliers
        .iter()
        .find(|m| m.constraint.starts_with(prefix))
        .map(|m| m.value)
        .unwrap()
}

#[test]
fn one_pass_and_two_pass_solves_take_the_same_steps() {
    let (model, scenario) = demo();
    for objective in [
        "maximize mean - 0.5 * std",
        "maximize sharpe(0)",
        "maximize raroc",
        "maximize cvar(0.9)",
        "maximize mean - 0.5 * cvar(0.95)",
    ] {
        let mut s = scenario.clone();
        s.utility = Utility::parse(objective).unwrap();
        let problem = Problem::new(&model, &s).unwrap();
        let (a, b) = one_and_two_pass(&problem, objective);
        // One evaluation an iterate where the two-pass path takes two (CVaR: once the
        // kernel's bands are predicted).
        assert!(
            a.evaluations < b.evaluations,
            "{objective}: {} vs {}",
            a.evaluations,
            b.evaluations
        );
        assert!(
            (a.utility - b.utility).abs() <= 1e-10 * b.utility.abs(),
            "{objective}"
        );
    }
}

/// A mean outcome constraint beside a risk-aware objective reads the mean's value,
/// gradient and curvature from the objective's own pass (its plain sums, or the
/// banded pass's sums over every draw): the two-pass path's steps to its optimum and
/// multipliers, with no pass of its own.
#[test]
fn a_mean_outcome_constraint_takes_no_pass_of_its_own() {
    let (model, scenario) = demo();
    let mean_optimum = solve_with(&model, &scenario, "maximize mean")
        .0
        .mean_response;
    for objective in ["maximize mean - 0.5 * std", "maximize cvar(0.9)"] {
        let free = solve_with(&model, &scenario, objective).0.mean_response;
        // Binding: between the risk-aware optimum's mean and the largest mean.
        let level = free + 0.5 * (mean_optimum - free);
        let mut s = scenario.clone();
        s.utility = Utility::parse(objective).unwrap();
        s.constraints = vec![format!("mean_response >= {level}")];
        let problem = Problem::new(&model, &s).unwrap();
        let (a, b) = one_and_two_pass(&problem, objective);
        // The two-pass path: two passes for the objective and one for the constraint
        // at each point; here one for both (CVaR: once its bands are predicted), so
        // at most half as many (with a pass of its own, two thirds).
        assert!(
            2 * a.evaluations <= b.evaluations,
            "{objective}: {} vs {} evaluations in {} iterations",
            a.evaluations,
            b.evaluations,
            a.iterations
        );
        assert!(
            (a.mean_response - level).abs() <= 1e-6 * level,
            "{objective}: binding"
        );
        let (ma, mb) = (
            multiplier_of(&a, "mean_response"),
            multiplier_of(&b, "mean_response"),
        );
        assert!(
            ma != 0.0 && (ma - mb).abs() <= 1e-6 * mb.abs(),
            "{objective}: {ma} vs {mb}"
        );
    }
}

/// A quantile-based outcome constraint beside the mean objective: its banded pass
/// gives the mean's sums too (one pass a point where the two-pass path takes the
/// mean's and the constraint's), the same steps, optimum and multiplier.
#[test]
fn a_quantile_outcome_constraint_shares_its_pass_with_the_mean() {
    let (model, scenario) = demo();
    for measure in ["cvar(0.9)", "quantile(0.1)"] {
        let u = Utility::parse(measure).unwrap();
        let (at_mean, r_mean) = solve_with(&model, &scenario, "maximize mean");
        let (at_risk, r_risk) = solve_with(&model, &scenario, &format!("maximize {measure}"));
        let (low, high) = (
            u.value(&r_mean, &at_mean.allocation),
            u.value(&r_risk, &at_risk.allocation),
        );
        assert!(high > low, "{measure}: {high} vs {low}");
        let mut s = scenario.clone();
        s.constraints = vec![format!("{measure} >= {}", low + 0.5 * (high - low))];
        let problem = Problem::new(&model, &s).unwrap();
        let (a, b) = one_and_two_pass(&problem, measure);
        assert!(
            3 * a.evaluations <= 2 * b.evaluations,
            "{measure}: {} vs {} evaluations",
            a.evaluations,
            b.evaluations
        );
        let (ma, mb) = (multiplier_of(&a, measure), multiplier_of(&b, measure));
        assert!(
            ma != 0.0 && (ma - mb).abs() <= 1e-6 * mb.abs(),
            "{measure}: {ma} vs {mb}"
        );
    }
}

/// The banded sums against passes with indicator weights: each region's plain sums,
/// each kept draw's own terms, the response-weighted sums over all draws; on the CPU
/// and in two shards; and an overflow said where the bands hold more than may be kept.
#[test]
fn banded_sums_match_passes_with_indicator_weights() {
    let (model, scenario) = demo();
    let problem = Problem::new(&model, &scenario).unwrap();
    let d = problem.num_draws();
    let n = problem.num_cells();
    let x: Vec<f64> = problem
        .uniform_allocation()
        .iter()
        .enumerate()
        .map(|(c, v)| v * (0.6 + (c % 3) as f64 * 0.3))
        .collect();
    let mut cpu = CpuEvaluator::new(&problem).unwrap();
    let shards: Vec<Box<dyn Evaluator + Send>> = vec![
        Box::new(CpuEvaluator::new(&problem.draws(0..170).unwrap()).unwrap()),
        Box::new(CpuEvaluator::new(&problem.draws(170..d).unwrap()).unwrap()),
    ];
    let mut sharded = ShardedEvaluator::new(shards).unwrap();
    let mut r = vec![0.0; d];
    cpu.responses(&x, &mut r).unwrap();
    let mut sorted = r.clone();
    sorted.sort_by(f64::total_cmp);
    let bands = [(sorted[30], sorted[41]), (sorted[200], sorted[260])];
    let shift = sorted[d / 2];
    let mut first = None;
    for e in [&mut cpu as &mut dyn Evaluator, &mut sharded] {
        let mut sums = BandedSums::default();
        assert!(e.evaluate_banded(&x, shift, &bands, d, &mut sums).unwrap());
        assert_eq!(sums.responses, r);
        assert!(!sums.overflow);
        assert_eq!(sums.kept.len(), 12 + 61);
        assert_eq!(sums.regions.len(), 3);
        let pass = |e: &mut dyn Evaluator, w: &[f64]| {
            let mut o = Evaluation::default();
            e.evaluate(&x, DrawWeights::PerDraw(w), &mut o).unwrap();
            o
        };
        for (j, region) in sums.regions.iter().enumerate() {
            let w: Vec<f64> = r
                .iter()
                .map(|v| f64::from(u8::from(band_position(&bands, *v) == Ok(j))))
                .collect();
            let o = pass(&mut *e, &w);
            for (name, a, b) in [
                ("r", &region.contributions, &o.contributions),
                ("r'", &region.gradient, &o.gradient),
                ("r''", &region.curvature, &o.curvature),
            ] {
                assert_close(a, b, 1e-12, &format!("{} region {j} {name}", e.describe()));
            }
        }
        for (i, &k) in sums.kept.iter().enumerate() {
            assert!(band_position(&bands, r[k]).is_err());
            let mut w = vec![0.0; d];
            w[k] = 1.0;
            let o = pass(&mut *e, &w);
            let t = &sums.kept_terms[3 * n * i..3 * n * (i + 1)];
            for c in 0..n {
                assert_eq!(
                    [t[3 * c], t[3 * c + 1], t[3 * c + 2]],
                    [o.contributions[c], o.gradient[c], o.curvature[c]],
                    "draw {k} cell {c}"
                );
            }
        }
        let u: Vec<f64> = r.iter().map(|v| v - shift).collect();
        let o = pass(&mut *e, &u);
        assert_close(&sums.linear.gradient, &o.gradient, 1e-11, "linear r'");
        assert_close(&sums.linear.curvature, &o.curvature, 1e-11, "linear r''");
        // Every shard keeps its draws in order: the same list as one evaluator.
        match &first {
            None => first = Some(sums.kept.clone()),
            Some(kept) => assert_eq!(&sums.kept, kept),
        }
        let mut few = BandedSums::default();
        assert!(e.evaluate_banded(&x, shift, &bands, 20, &mut few).unwrap());
        assert!(few.overflow && few.kept.len() <= 40);
    }
}

fn assert_close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (c, (p, q)) in a.iter().zip(b).enumerate() {
        assert!((p - q).abs() <= tol * scale, "{what}[{c}]: {p} vs {q}");
    }
}

/// A CVaR (alone, with the mean, or under a binding mean outcome constraint, whose
/// curvature joins the diagonal) is solved with its exact Hessian: the diagonal plus
/// the cells' coupling through the draws near its quantile. Against BFGS of the whole
/// (`HessianMode::Bfgs`, the model it replaced): solved, in fewer iterations, to the
/// same optimum; on the GPU, whose passes keep no draws (their slopes then computed on
/// the host for the draws near the quantile alone), the same, to its precision.
#[test]
fn cvar_solves_take_their_exact_hessian() {
    let (model, scenario) = demo();
    // A mean between the CVaR-optimal plan's and the mean-optimal plan's binds.
    let (cvar, _) = solve_with(&model, &scenario, "maximize cvar(0.9)");
    let (mean, _) = solve_with(&model, &scenario, "maximize mean");
    assert!(cvar.mean_response < mean.mean_response);
    let between = 0.5 * (cvar.mean_response + mean.mean_response);
    for (objective, constraint) in [
        ("maximize cvar(0.9)", None),
        ("maximize 0.5 * mean + 0.5 * cvar(0.8)", None),
        (
            "maximize cvar(0.9)",
            Some(format!("mean_response >= {between}")),
        ),
    ] {
        let mut s = scenario.clone();
        s.utility = Utility::parse(objective).unwrap();
        s.constraints.extend(constraint.clone());
        let objective = format!("{objective} {constraint:?}");
        let objective = objective.as_str();
        let problem = Problem::new(&model, &s).unwrap();
        let solve = |ev: &mut dyn Evaluator, mode: HessianMode| {
            Solver::new(&problem, ev, Settings::default().hessian(mode))
                .unwrap()
                .solve()
                .unwrap()
        };
        let exact = solve(&mut CpuEvaluator::new(&problem).unwrap(), HessianMode::Auto);
        let bfgs = solve(&mut CpuEvaluator::new(&problem).unwrap(), HessianMode::Bfgs);
        eprintln!(
            "{objective}: exact {} iterations, {} evaluations; BFGS {} iterations, {} evaluations ({:?})",
            exact.iterations, exact.evaluations, bfgs.iterations, bfgs.evaluations, bfgs.status
        );
        assert_eq!(
            exact.status,
            Status::Solved,
            "{objective}: {}",
            exact.message
        );
        assert!(exact.iterations < bfgs.iterations, "{objective}");
        assert!(
            (exact.utility - bfgs.utility).abs() <= 1e-9 * bfgs.utility.abs(),
            "{objective}: {} vs {}",
            exact.utility,
            bfgs.utility
        );
        let total = problem.total_budget;
        for (a, b) in exact.allocation.iter().zip(&bfgs.allocation) {
            assert!((a - b).abs() <= 1e-5 * total, "{objective}: {a} vs {b}");
        }
        if constraint.is_some() {
            assert!(exact.mean_response >= between * (1.0 - 1e-9), "{objective}");
            assert!(exact.utility < cvar.utility, "{objective}: binds");
        }
        if let Some(ctx) = common::gpu() {
            let mut gpu =
                GpuEvaluator::with_context(ctx, &problem, &GpuOptions::default()).unwrap();
            let on_gpu = solve(&mut gpu, HessianMode::Auto);
            eprintln!(
                "{objective}: GPU {:?} {} iterations, {} evaluations",
                on_gpu.status, on_gpu.iterations, on_gpu.evaluations
            );
            // Under the outcome constraint the f32 evaluation holds it to a few 1e-9 of
            // its scale, past ctol (almost solved, as BFGS of the whole is there).
            let expected: &[Status] = if constraint.is_some() {
                &[Status::Solved, Status::AlmostSolved]
            } else {
                &[Status::Solved]
            };
            assert!(
                expected.contains(&on_gpu.status),
                "{objective}: {}",
                on_gpu.message
            );
            assert!(on_gpu.iterations <= exact.iterations + 2, "{objective}");
            assert!(
                (on_gpu.utility - exact.utility).abs() <= 1e-6 * exact.utility.abs(),
                "{objective}"
            );
        }
    }
}
