//! Helpers shared by the integration tests.
#![allow(dead_code)]

use mmm_budget::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A parameter value drawn inside the kind's usual range.
fn draw_param(rng: &mut StdRng, name: &str, l_max: usize) -> f64 {
    match name {
        "alpha" => rng.random_range(0.05..0.95),
        "theta" => rng.random_range(0.0..(l_max as f64 - 1.0).max(0.5)),
        "lam" => rng.random_range(0.3..3.0),
        "k" => rng.random_range(0.5..3.0),
        "beta" => rng.random_range(0.2..2.0),
        "slope" => rng.random_range(0.5..3.0),
        "kappa" => rng.random_range(0.3..3.0),
        "sigma" => rng.random_range(0.2..2.0),
        "b" => rng.random_range(0.3..3.0),
        "c" => rng.random_range(0.3..3.0),
        other => panic!("no range for {other}"),
    }
}

/// Options for [`random_problem`].
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub draws: usize,
    pub channels: usize,
    pub geos: usize,
    pub periods: usize,
    pub l_max: usize,
}

/// A random model and scenario of the given kinds: every parameter drawn per draw and
/// cell, geo-varying channel scales, a per-geo target scale, and (when asked) a
/// non-uniform time distribution and cost per unit.
pub fn random_case(
    seed: u64,
    shape: Shape,
    adstock: AdstockKind,
    saturation: Saturation,
    adstock_first: bool,
    time_varying_inputs: bool,
) -> (Model, Scenario) {
    let mut rng = StdRng::seed_from_u64(seed);
    let l_max = if adstock == AdstockKind::WeibullPdf {
        shape.l_max.max(2)
    } else {
        shape.l_max
    };
    let geos: Vec<String> = (0..shape.geos).map(|g| format!("g{g}")).collect();
    let channels: Vec<String> = (0..shape.channels).map(|c| format!("c{c}")).collect();
    let mut posterior = Posterior::default();
    let names = adstock
        .parameters()
        .iter()
        .map(|p| ("adstock", *p))
        .chain(saturation.parameters().iter().map(|p| ("saturation", *p)));
    for (prefix, p) in names {
        let n = shape.draws * shape.geos * shape.channels;
        let values = (0..n).map(|_| draw_param(&mut rng, p, l_max)).collect();
        posterior.arrays.insert(
            format!("{prefix}_{p}"),
            Array::new(
                &["chain", "draw", "geo", "channel"],
                &[1, shape.draws, shape.geos, shape.channels],
                values,
            )
            .unwrap(),
        );
    }
    let scales = (0..shape.geos * shape.channels)
        .map(|_| rng.random_range(0.5..3.0))
        .collect();
    let targets = (0..shape.geos)
        .map(|_| rng.random_range(0.5..2.0))
        .collect();
    let model = Model {
        channels,
        dims: vec![Dim {
            name: "geo".into(),
            coords: geos,
        }],
        adstock: Adstock {
            kind: adstock,
            l_max,
            normalize: rng.random_bool(0.7),
        },
        saturation,
        adstock_first,
        channel_scale: Array::new(&["geo", "channel"], &[shape.geos, shape.channels], scales)
            .unwrap(),
        target_scale: Array::new(&["geo"], &[shape.geos], targets).unwrap(),
        posterior,
    };
    let mut scenario = Scenario::new(shape.periods, 2.0 * (shape.geos * shape.channels) as f64);
    if time_varying_inputs {
        let mut f: Vec<f64> = (0..shape.periods)
            .map(|_| rng.random_range(0.2..1.0))
            .collect();
        let s: f64 = f.iter().sum();
        f.iter_mut().for_each(|v| *v /= s);
        scenario.time_distribution.push(PeriodRule {
            select: Selector::new(),
            values: f,
        });
        let k = (0..shape.periods)
            .map(|_| rng.random_range(0.5..2.0))
            .collect();
        let mut sel = Selector::new();
        sel.insert("channel".into(), "c0".into());
        scenario.cost_per_unit.push(PeriodRule {
            select: sel,
            values: k,
        });
    }
    (model, scenario)
}

/// Writes an NPZ archive of float64 arrays.
pub fn write_npz(path: &Path, arrays: &[(&str, Vec<u64>, Vec<f64>)]) {
    let shapes: Vec<Vec<usize>> = arrays
        .iter()
        .map(|a| a.1.iter().map(|&s| s as usize).collect())
        .collect();
    let list: Vec<(&str, &[usize], &[f64])> = arrays
        .iter()
        .zip(&shapes)
        .map(|(a, s)| (a.0, s.as_slice(), a.2.as_slice()))
        .collect();
    mmm_budget::io::write_npz(path, &list).unwrap();
}

/// |a − b| ≤ rtol · max(|a|, |b|, floor).
pub fn close(a: f64, b: f64, rtol: f64, floor: f64) -> bool {
    (a - b).abs() <= rtol * a.abs().max(b.abs()).max(floor)
}

/// A reference case from tests/data: the loaded case, its problem and expected.json.
pub fn reference_case(name: &str) -> (mmm_budget::io::Case, Problem, serde_json::Value) {
    let dir = Path::new("tests/data").join(name);
    let case = mmm_budget::io::load_case(&dir, None).unwrap();
    let problem = case.problem().unwrap();
    let expected =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (case, problem, expected)
}

/// A random small problem (see `random_problems_solve_or_are_infeasible` in
/// tests/solver.rs): a synthetic posterior of a random curve and size, random bounds,
/// and random linear constraints (shares, `ch <= 0`, pair sums and differences), the
/// budget `=` or `<=`; with a line that says what it is.
pub fn random_problem(seed: u64) -> (Model, Scenario, String) {
    let mut rng = StdRng::seed_from_u64(seed);
    let kind = Saturation::ALL[rng.random_range(0..Saturation::ALL.len())];
    let channels = rng.random_range(2..8);
    let size = demo::SyntheticSize {
        channels,
        geos: rng.random_range(1..3),
        draws: rng.random_range(1..40),
        periods: rng.random_range(1..14),
        l_max: rng.random_range(1..6),
    };
    let (model, mut sc) = demo::synthetic_with(&size, kind, seed);
    if rng.random_bool(0.25) {
        sc.budget_constraint = BudgetConstraint::AtMost;
    }
    let b = sc.total_budget;
    for _ in 0..rng.random_range(0..3) {
        let (lo, hi) = (rng.random_range(0.0..0.2), rng.random_range(0.2..0.6));
        sc.bounds.push(BoundRule {
            select: [(
                "channel".into(),
                format!("ch{}", rng.random_range(0..channels)),
            )]
            .into(),
            min: rng.random_bool(0.5).then_some(lo * b),
            max: rng.random_bool(0.5).then_some(hi * b),
            ..Default::default()
        });
    }
    for _ in 0..rng.random_range(0..3) {
        let a = rng.random_range(0..channels);
        let c = (a + rng.random_range(1..channels)) % channels;
        let share: f64 = rng.random_range(0.0..0.5);
        let text = match rng.random_range(0..5) {
            0 => format!("sum(channel=ch{a}) <= {share:.3} * total"),
            1 => format!("sum(channel=ch{a}) >= {:.3} * total", share / 2.0),
            2 => format!("sum(channel=ch{a}) <= 0"),
            3 => format!("sum(channel=ch{a}) + sum(channel=ch{c}) <= {share:.3} * total"),
            _ => format!("sum(channel=ch{a}) - sum(channel=ch{c}) >= 0"),
        };
        // (The same text twice makes two rows with one name: the tests find
        // multipliers by name.)
        if !sc.constraints.contains(&text) {
            sc.constraints.push(text);
        }
    }
    let what = format!("seed {seed}: {} {size:?} {:?}", kind.name(), sc.constraints);
    (model, sc, what)
}

/// Σ_c x_c² ≤ cap, with its gradient 2x.
pub fn sum_of_squares_at_most(cap: f64) -> NonlinearConstraint {
    NonlinearConstraint::new(
        "sum of squares",
        Sense::LessEqual,
        cap,
        |x: &[f64], g: &mut [f64]| {
            for (g, x) in g.iter_mut().zip(x) {
                *g = 2.0 * x;
            }
            Ok(x.iter().map(|v| v * v).sum())
        },
    )
}

/// The constraint with the diagonal of its Hessian (2 on every cell).
pub fn with_its_curvature(c: NonlinearConstraint) -> NonlinearConstraint {
    c.with_curvature(|_x: &[f64], h: &mut [f64]| {
        h.fill(2.0);
        Ok(())
    })
}

/// Σ_c √(x_c + 1).
pub fn root_sum(x: &[f64]) -> f64 {
    x.iter().map(|v| (v + 1.0).sqrt()).sum()
}

/// Σ_c √(x_c + 1) (sense) t, with its gradient and curvature: concave, so `>=` makes
/// a convex feasible set, `=` a curved one and `<=` a non-convex one.
pub fn roots(sense: Sense, t: f64) -> NonlinearConstraint {
    NonlinearConstraint::new("roots", sense, t, |x: &[f64], g: &mut [f64]| {
        for (g, x) in g.iter_mut().zip(x) {
            *g = 0.5 / (x + 1.0).sqrt();
        }
        Ok(root_sum(x))
    })
    .with_curvature(|x: &[f64], h: &mut [f64]| {
        for (h, x) in h.iter_mut().zip(x) {
            *h = -0.25 / (x + 1.0).powf(1.5);
        }
        Ok(())
    })
}

/// The nonlinear constraint named `kind` for a problem whose uniform allocation is `x0`
/// (the random-problem sweeps' kinds): `squares` (Σ x² ≤ 1.5 × its value at x0, with
/// its curvature), `squares-bfgs` (the same without it), `roots-ge`, `roots-eq`,
/// `roots-le` (Σ √(x + 1) ≥ 0.98, = 0.9, ≤ 0.95 × its value at x0); `None` for others.
pub fn constraint_of_kind(kind: &str, x0: &[f64]) -> Option<NonlinearConstraint> {
    let squares = 1.5 * x0.iter().map(|v| v * v).sum::<f64>();
    let root_total = root_sum(x0);
    match kind {
        "squares" => Some(with_its_curvature(sum_of_squares_at_most(squares))),
        "squares-bfgs" => Some(sum_of_squares_at_most(squares)),
        "roots-ge" => Some(roots(Sense::GreaterEqual, 0.98 * root_total)),
        "roots-eq" => Some(roots(Sense::Equal, 0.9 * root_total)),
        "roots-le" => Some(roots(Sense::LessEqual, 0.95 * root_total)),
        _ => None,
    }
}

/// One device for the whole test binary; `None` (saying why) without an adapter,
/// a failure then under MMM_REQUIRE_GPU=1 (CI, after installing lavapipe).
pub fn gpu() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    match CTX.get_or_init(|| GpuContext::new().map(Arc::new).map_err(|e| e.to_string())) {
        Ok(c) => Some(c.clone()),
        Err(why) => {
            if std::env::var("MMM_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("MMM_REQUIRE_GPU=1 but no GPU adapter: {why}");
            }
            eprintln!("skipped the GPU half: {why}");
            None
        }
    }
}

/// Norm-wise agreement: |a_i − b_i| ≤ tol · max_j |b_j| for every i.
pub fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * scale,
            "{what}[{i}]: {x} vs {y} (scale {scale:e}, tol {tol:e})"
        );
    }
}

/// `scenario` solved on the CPU with the default settings: the problem and its
/// solution.
pub fn solve(model: &Model, scenario: &Scenario) -> (Problem, Solution) {
    let problem = Problem::new(model, scenario).unwrap();
    let mut ev = CpuEvaluator::new(&problem).unwrap();
    let solution = Solver::new(&problem, &mut ev, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    (problem, solution)
}

/// [`solve`] with the objective `objective`.
pub fn solve_objective(model: &Model, scenario: &Scenario, objective: &str) -> (Problem, Solution) {
    let mut s = scenario.clone();
    s.utility = Utility::parse(objective).unwrap();
    solve(model, &s)
}

/// `model` with every stored posterior array read into memory (none left stored).
pub fn read_whole(model: &Model) -> Model {
    let mut whole = model.clone();
    whole.posterior.load().unwrap();
    assert!(
        whole
            .posterior
            .arrays
            .values()
            .all(|a| a.stored().is_none())
    );
    whole
}
