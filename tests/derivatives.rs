//! Gradient and curvature of the f64 evaluator against central differences, for every
//! adstock × saturation pair, both orders, with and without time distribution and
//! cost per unit, on random parameters; and the time-varying form's adjoint gradient.

mod common;

use common::{Shape, close, random_case};
use mmm_budget::*;
use proptest::prelude::*;

const SHAPE: Shape = Shape {
    draws: 3,
    channels: 2,
    geos: 2,
    periods: 5,
    l_max: 3,
};

fn kinds() -> impl Strategy<Value = (AdstockKind, Saturation, bool, bool)> {
    (
        0..AdstockKind::ALL.len(),
        0..Saturation::ALL.len(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(a, s, first, tv)| (AdstockKind::ALL[a], Saturation::ALL[s], first, tv))
}

fn problem(seed: u64, (a, s, first, tv): (AdstockKind, Saturation, bool, bool)) -> Problem {
    let (model, scenario) = random_case(seed, SHAPE, a, s, first, tv);
    Problem::new(&model, &scenario).expect("random problem is valid")
}

/// Σ_d u_d R_d with u_d = (d + 1) / D: weights that differ per draw.
fn weighted_total(ev: &mut CpuEvaluator, x: &[f64], u: &[f64]) -> f64 {
    let mut r = vec![0.0; ev.num_draws()];
    ev.responses(x, &mut r).unwrap();
    r.iter().zip(u).map(|(r, u)| r * u).sum()
}

fn draw_weights(d: usize) -> Vec<f64> {
    (0..d).map(|i| (i + 1) as f64 / d as f64).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// ∂/∂x_c of Σ_d u_d R_d and its second derivative match central differences,
    /// to 1e-6 relative (floor: the typical size of the gradient).
    #[test]
    fn gradient_and_curvature_match_central_differences(
        seed in any::<u64>(), kinds in kinds(), x in prop::collection::vec(0.2f64..4.0, 4),
    ) {
        let p = problem(seed, kinds);
        let mut ev = CpuEvaluator::new(&p).unwrap();
        let u = draw_weights(p.num_draws());
        let mut out = Evaluation::new(p.num_draws(), p.num_cells());
        ev.evaluate(&x, DrawWeights::PerDraw(&u), &mut out).unwrap();
        let floor = out.gradient.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        for c in 0..p.num_cells() {
            let h = 1e-4 * x[c];
            let at = |dx: f64| {
                let mut y = x.clone();
                y[c] += dx;
                y
            };
            let (xp, xm) = (at(h), at(-h));
            let fd = (weighted_total(&mut ev, &xp, &u) - weighted_total(&mut ev, &xm, &u)) / (2.0 * h);
            prop_assert!(close(out.gradient[c], fd, 1e-6, floor),
                "{kinds:?} cell {c}: gradient {} vs central difference {fd}", out.gradient[c]);
            let mut gp = Evaluation::default();
            let mut gm = Evaluation::default();
            ev.evaluate(&xp, DrawWeights::PerDraw(&u), &mut gp).unwrap();
            ev.evaluate(&xm, DrawWeights::PerDraw(&u), &mut gm).unwrap();
            let fd2 = (gp.gradient[c] - gm.gradient[c]) / (2.0 * h);
            let floor2 = out.curvature.iter().fold(floor / x[c], |m, g| m.max(g.abs()));
            prop_assert!(close(out.curvature[c], fd2, 1e-5, floor2),
                "{kinds:?} cell {c}: curvature {} vs central difference {fd2}", out.curvature[c]);
        }
        // The per-cell contributions add up to the weighted total.
        let total: f64 = out.contributions.iter().sum();
        let direct: f64 = out.responses.iter().zip(&u).map(|(r, u)| r * u).sum();
        prop_assert!(close(total, direct, 1e-12, 1e-300));
    }

    /// The time-varying gradient (adjoint convolution) matches central differences.
    #[test]
    fn time_varying_gradient_matches_central_differences(
        seed in any::<u64>(), kinds in kinds(), x in prop::collection::vec(0.2f64..4.0, 20),
    ) {
        let p = problem(seed, kinds);
        let mut ev = CpuEvaluator::new(&p).unwrap();
        let u = draw_weights(p.num_draws());
        let mut out = TimeVaryingEvaluation::default();
        ev.evaluate_time_varying(&x, DrawWeights::PerDraw(&u), &mut out).unwrap();
        let floor = out.gradient.iter().fold(0.0f64, |m, g| m.max(g.abs()));
        let total = |ev: &mut CpuEvaluator, y: &[f64]| {
            let mut o = TimeVaryingEvaluation::default();
            ev.evaluate_time_varying(y, DrawWeights::PerDraw(&u), &mut o).unwrap();
            o.responses.iter().zip(&u).map(|(r, u)| r * u).sum::<f64>()
        };
        for i in 0..x.len() {
            let h = 1e-4 * x[i];
            let mut xp = x.clone();
            xp[i] += h;
            let mut xm = x.clone();
            xm[i] -= h;
            let fd = (total(&mut ev, &xp) - total(&mut ev, &xm)) / (2.0 * h);
            prop_assert!(close(out.gradient[i], fd, 1e-6, floor),
                "{kinds:?} entry {i}: gradient {} vs central difference {fd}", out.gradient[i]);
        }
    }

    /// A time-varying plan that spends x_c N φ_tc in period t gives the same responses
    /// as the per-period allocation x (the time-varying form convolves directly; the
    /// constant form sums prefix and suffix sums of the weights), also for windows
    /// shorter than the carry-over.
    #[test]
    fn time_varying_form_agrees_with_the_constant_form(
        seed in any::<u64>(), kinds in kinds(), x in prop::collection::vec(0.0f64..4.0, 4),
        short in any::<bool>(),
    ) {
        let p = if short {
            let shape = Shape { periods: 2, l_max: 6, ..SHAPE };
            let (model, scenario) = random_case(seed, shape, kinds.0, kinds.1, kinds.2, kinds.3);
            Problem::new(&model, &scenario).expect("random problem is valid")
        } else {
            problem(seed, kinds)
        };
        let (a, b) = both_forms(&p, &x);
        for (ra, rb) in a.iter().zip(&b) {
            prop_assert!(close(*ra, *rb, 1e-12, 1e-12), "{kinds:?}: {ra} vs {rb}");
        }
    }
}

/// Every kind's g' and g'' against central differences of g, at points away from 0.
#[test]
fn saturation_derivatives_match_central_differences() {
    let params: [(Saturation, &[f64]); 8] = [
        (Saturation::Logistic, &[1.3, 0.8]),
        (Saturation::InverseScaledLogistic, &[0.7, 1.1]),
        (Saturation::MichaelisMenten, &[2.0, 0.6]),
        (Saturation::Hill, &[1.7, 0.9, 1.4]),
        (Saturation::HillSigmoid, &[1.2, 2.5, 0.6]),
        (Saturation::Tanh, &[0.8, 1.3]),
        (Saturation::Root, &[0.45, 1.2]),
        (Saturation::None, &[0.9]),
    ];
    for (s, p) in params {
        for a in [0.05, 0.4, 1.0, 2.7] {
            let h = 1e-5 * a;
            let [g, g1, g2] = s.derivatives(a, p);
            assert!(
                close(g, s.value(a, p), 1e-13, 1e-300),
                "{s}: value {g} vs {}",
                s.value(a, p)
            );
            let fd1 = (s.value(a + h, p) - s.value(a - h, p)) / (2.0 * h);
            let fd2 = (s.derivatives(a + h, p)[1] - s.derivatives(a - h, p)[1]) / (2.0 * h);
            assert!(close(g1, fd1, 1e-7, 1e-6), "{s} at {a}: g' {g1} vs {fd1}");
            assert!(close(g2, fd2, 1e-6, 1e-6), "{s} at {a}: g'' {g2} vs {fd2}");
        }
    }
}

/// One-sided limits at a = 0 for the curves whose derivatives blow up or vanish there.
#[test]
fn derivatives_at_zero_are_the_limits() {
    let hill = |s: f64| Saturation::Hill.derivatives(0.0, &[s, 2.0, 1.0]);
    assert_eq!(hill(1.0), [0.0, 0.5, -0.5]);
    assert_eq!(hill(0.5)[1], f64::INFINITY);
    assert_eq!(hill(1.5), [0.0, 0.0, f64::INFINITY]);
    assert_eq!(hill(2.0), [0.0, 0.0, 0.5]);
    assert_eq!(hill(3.0), [0.0, 0.0, 0.0]);
    assert_eq!(
        Saturation::Root.derivatives(0.0, &[1.0, 2.0]),
        [0.0, 2.0, 0.0]
    );
    assert_eq!(
        Saturation::Root.derivatives(0.0, &[0.5, 2.0])[1],
        f64::INFINITY
    );
    let l = Saturation::Logistic.derivatives(0.0, &[2.0, 3.0]);
    assert_eq!(l, [0.0, 3.0, 0.0]);
}

/// Every draw's response to the per-period allocation x in the constant form, and to
/// the time-varying plan that spends x_c N φ_tc in period t (direct convolution).
fn both_forms(p: &Problem, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut ev = CpuEvaluator::new(p).unwrap();
    let n = p.num_periods;
    let mut spend = vec![0.0; p.num_cells() * n];
    for c in 0..p.num_cells() {
        for t in 0..n {
            // p_tc / input_scale_tc = N φ_tc (1 without a time distribution)
            spend[c * n + t] = x[c] * p.pattern_of(c)[t] / p.input_scale_of(c)[t];
        }
    }
    let mut a = vec![0.0; p.num_draws()];
    ev.responses(x, &mut a).unwrap();
    let mut b = TimeVaryingEvaluation::default();
    ev.evaluate_time_varying(&spend, DrawWeights::Uniform, &mut b)
        .unwrap();
    (a, b.responses)
}

/// Found by the property test above: a window shorter than the carry-over (N = 2,
/// L = 6) with delayed adstock (weights from 1e-25 to 1) and root saturation. The
/// constant form took a tail period's weights as a difference of suffix sums, which
/// cancels to rounding noise for the tiny ones, and x^0.31 magnified it to 3.5e-11 of
/// the response; it now sums those windows directly.
#[test]
fn short_windows_with_tiny_weights_agree_with_direct_convolution() {
    let shape = Shape {
        periods: 2,
        l_max: 6,
        ..SHAPE
    };
    let (model, scenario) = random_case(
        7993073267749676564,
        shape,
        AdstockKind::Delayed,
        Saturation::Root,
        true,
        false,
    );
    let p = Problem::new(&model, &scenario).unwrap();
    let (a, b) = both_forms(&p, &[2.6958277744320913, 0.0, 0.0, 0.0]);
    for (ra, rb) in a.iter().zip(&b) {
        assert!(close(*ra, *rb, 1e-14, 1e-14), "{ra} vs {rb}");
    }
}
