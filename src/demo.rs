//! Synthetic problems: the built-in demo case and the benchmarks' posteriors.
//!
//! A demo model has geometric adstock (normalised, l_max 6) followed by logistic
//! saturation, parameters drawn per draw and cell from fixed ranges with a seeded
//! generator, so that the same size and seed always give the same case.

use crate::adstock::{Adstock, AdstockKind};
use crate::model::{Array, Dim, Model, Posterior};
use crate::saturation::Saturation;
use crate::scenario::Scenario;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The size of a synthetic case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoSize {
    /// Channels.
    pub channels: usize,
    /// Geos (1: no geo dim).
    pub geos: usize,
    /// Posterior draws (one chain).
    pub draws: usize,
}

/// The CLI's `demo` case: 5 channels × 3 geos, 2000 draws.
pub const DEMO: DemoSize = DemoSize {
    channels: 5,
    geos: 3,
    draws: 2000,
};

/// The size of a synthetic benchmark problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyntheticSize {
    /// Channels.
    pub channels: usize,
    /// Geos (1: no geo dim).
    pub geos: usize,
    /// Posterior draws.
    pub draws: usize,
    /// N.
    pub periods: usize,
    /// L.
    pub l_max: usize,
}

/// A synthetic problem of any size: [`case`]'s model with `periods` and `l_max`
/// replaced.
///
/// ```
/// use mmm_budget::demo::{synthetic, SyntheticSize};
/// let (model, scenario) = synthetic(&SyntheticSize { channels: 4, geos: 2, draws: 10, periods: 52, l_max: 13 }, 1);
/// assert_eq!((model.num_cells(), scenario.num_periods, model.adstock.l_max), (8, 52, 13));
/// ```
pub fn synthetic(size: &SyntheticSize, seed: u64) -> (Model, Scenario) {
    synthetic_with(size, Saturation::Logistic, seed)
}

/// [`synthetic`] with another saturation curve, its parameters drawn from ranges
/// that give responses of the same order as the logistic demo's.
///
/// ```
/// use mmm_budget::Saturation;
/// use mmm_budget::demo::{synthetic_with, SyntheticSize};
/// let size = SyntheticSize { channels: 2, geos: 1, draws: 5, periods: 8, l_max: 4 };
/// let (model, _) = synthetic_with(&size, Saturation::Hill, 1);
/// assert!(model.posterior.arrays.contains_key("saturation_kappa"));
/// ```
pub fn synthetic_with(
    size: &SyntheticSize,
    saturation: Saturation,
    seed: u64,
) -> (Model, Scenario) {
    let (mut model, mut scenario) = case_with(
        &DemoSize {
            channels: size.channels,
            geos: size.geos,
            draws: size.draws,
        },
        saturation,
        seed,
    );
    model.adstock.l_max = size.l_max;
    scenario.num_periods = size.periods;
    (model, scenario)
}

/// A synthetic model and a scenario (12 periods, 100 per cell and period).
///
/// ```
/// use mmm_budget::demo;
/// let (model, scenario) = demo::case(&demo::DEMO, 42);
/// assert_eq!(model.num_cells(), 15);
/// assert_eq!(scenario.total_budget, 1500.0);
/// ```
pub fn case(size: &DemoSize, seed: u64) -> (Model, Scenario) {
    case_with(size, Saturation::Logistic, seed)
}

/// Per-cell centres of a saturation parameter (each draw within ±30% of its cell's).
fn saturation_range(saturation: Saturation, name: &str) -> (f64, f64) {
    match (saturation, name) {
        (Saturation::Logistic, "lam") => (0.5, 3.0),
        (Saturation::InverseScaledLogistic, "lam") => (0.3, 2.0),
        (Saturation::MichaelisMenten, "lam") => (0.3, 2.0),
        (Saturation::Hill, "slope") => (0.8, 2.5),
        (Saturation::Hill, "kappa") => (0.3, 2.0),
        (Saturation::HillSigmoid, "beta") => (1.0, 4.0),
        (Saturation::HillSigmoid, "lam") => (0.2, 1.0),
        (Saturation::Tanh, "c") => (0.5, 3.0),
        (Saturation::Root, "alpha") => (0.3, 0.8),
        // The curves' heights: beta, michaelis_menten's alpha, sigma, tanh's b.
        _ => (0.05, 0.4),
    }
}

fn case_with(size: &DemoSize, saturation: Saturation, seed: u64) -> (Model, Scenario) {
    let mut rng = StdRng::seed_from_u64(seed);
    let channels: Vec<String> = (0..size.channels).map(|i| format!("ch{i}")).collect();
    let dims = if size.geos > 1 {
        vec![Dim {
            name: "geo".into(),
            coords: (0..size.geos).map(|i| format!("g{i}")).collect(),
        }]
    } else {
        vec![]
    };
    let cells = size.channels * size.geos;
    let (dim_names, cell_shape): (Vec<&str>, Vec<usize>) = if size.geos > 1 {
        (vec!["geo", "channel"], vec![size.geos, size.channels])
    } else {
        (vec!["channel"], vec![size.channels])
    };
    let mut full_dims = vec!["draw"];
    full_dims.extend(&dim_names);
    let mut full_shape = vec![size.draws];
    full_shape.extend(&cell_shape);
    // Per-cell centres, per-draw spread around them.
    let centre = |rng: &mut StdRng, lo: f64, hi: f64| -> Vec<f64> {
        (0..cells).map(|_| rng.random_range(lo..hi)).collect()
    };
    let alpha_c = centre(&mut rng, 0.2, 0.7);
    let saturation_c: Vec<Vec<f64>> = saturation
        .parameters()
        .iter()
        .map(|name| {
            let (lo, hi) = saturation_range(saturation, name);
            centre(&mut rng, lo, hi)
        })
        .collect();
    let draws = |rng: &mut StdRng, centres: &[f64], spread: f64, clamp: (f64, f64)| -> Vec<f64> {
        let mut v = Vec::with_capacity(size.draws * cells);
        for _ in 0..size.draws {
            for &c in centres {
                let x: f64 = c * (1.0 + spread * rng.random_range(-1.0..1.0));
                v.push(x.clamp(clamp.0, clamp.1));
            }
        }
        v
    };
    let mut posterior = Posterior::default();
    let mut insert = |name: &str, values: Vec<f64>| {
        let array = Array {
            dims: full_dims.iter().map(|s| s.to_string()).collect(),
            shape: full_shape.clone(),
            values,
            stored: None,
        };
        posterior.arrays.insert(name.to_string(), array);
    };
    insert("adstock_alpha", draws(&mut rng, &alpha_c, 0.3, (0.0, 0.95)));
    for (name, centres) in saturation.parameters().iter().zip(&saturation_c) {
        let values = draws(&mut rng, centres, 0.3, (1e-3, 10.0));
        insert(&format!("saturation_{name}"), values);
    }
    let scale: Vec<f64> = (0..cells).map(|_| rng.random_range(50.0..500.0)).collect();
    let model = Model {
        channels,
        dims,
        adstock: Adstock {
            kind: AdstockKind::Geometric,
            l_max: 6,
            normalize: true,
        },
        saturation,
        adstock_first: true,
        channel_scale: Array {
            dims: dim_names.iter().map(|s| s.to_string()).collect(),
            shape: cell_shape,
            values: scale,
            stored: None,
        },
        target_scale: Array::scalar(1000.0),
        posterior,
    };
    (model, Scenario::new(12, 100.0 * cells as f64))
}
