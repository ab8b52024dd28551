//! Synthetic problems: the built-in demo case and the benchmarks' posteriors.
//!
//! A demo model has geometric adstock (normalised, l_max 6) followed by logistic
//! saturation, parameters drawn per draw and cell from fixed ranges with a seeded
//! generator, so that the same size and seed always give the same case.

use crate::adstock::{Adstock, AdstockKind};
use crate::model::{Array, Dim, Model, Posterior};
use crate::saturation::Saturation;
use crate::scenario::Scenario;
use rand::{Rng, SeedableRng};
// StdRng's generator, named so that its stream can be entered at any position: the
// posterior's draws are made in parallel blocks, each from where the one sequential
// stream would be, so a size and seed give the same case however it is split.
use rand_chacha::ChaCha12Rng as StdRng;

/// Draws a parallel task makes of one array.
const DRAWS_PER_BLOCK: usize = 1024;

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

/// `draws` draws of every cell's value, each `c · (1 + spread · u)` clamped, u uniform
/// in [−1, 1), in parallel blocks of `block` draws. Each value takes one u64 of the
/// stream (rand's float sampling), so each block starts its own copy of `rng` at
/// the block's first value's position: the values are those of one sequential pass,
/// and `rng` is left after the last, as a sequential pass would leave it.
fn draws_in_blocks(
    rng: &mut StdRng,
    centres: &[f64],
    draws: usize,
    (spread, clamp): (f64, (f64, f64)),
    block: usize,
) -> Vec<f64> {
    use rayon::prelude::*;
    let cells = centres.len();
    let start = rng.get_word_pos();
    let words_per_value = 2u128;
    let mut v = crate::memory::zeroed::<f64>(draws * cells);
    v.par_chunks_mut((block * cells).max(1))
        .enumerate()
        .for_each(|(b, values)| {
            let mut r = rng.clone();
            r.set_word_pos(start + words_per_value * (b * block * cells) as u128);
            for (x, &c) in values.iter_mut().zip(centres.iter().cycle()) {
                *x = (c * (1.0 + spread * r.random_range(-1.0..1.0))).clamp(clamp.0, clamp.1);
            }
        });
    rng.set_word_pos(start + words_per_value * (draws * cells) as u128);
    v
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

pub(crate) fn case_with(size: &DemoSize, saturation: Saturation, seed: u64) -> (Model, Scenario) {
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
        draws_in_blocks(rng, centres, size.draws, (spread, clamp), DRAWS_PER_BLOCK)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of any size give the values of one sequential pass, and leave the
    /// stream where that pass would.
    #[test]
    fn draws_in_blocks_are_one_sequential_stream() {
        let centres = [0.3, 1.7, 0.05];
        let mut sequential = StdRng::seed_from_u64(11);
        let _: f64 = sequential.random_range(0.0..1.0);
        let mut expected = vec![];
        for _ in 0..37 {
            for &c in &centres {
                let x: f64 = c * (1.0 + 0.3 * sequential.random_range(-1.0..1.0));
                expected.push(x.clamp(1e-3, 10.0));
            }
        }
        let next: f64 = sequential.random_range(0.0..1.0);
        for block in [1, 2, 5, 36, 37, 1000] {
            let mut rng = StdRng::seed_from_u64(11);
            let _: f64 = rng.random_range(0.0..1.0);
            let v = draws_in_blocks(&mut rng, &centres, 37, (0.3, (1e-3, 10.0)), block);
            assert_eq!(v, expected, "block {block}");
            assert_eq!(rng.random_range(0.0..1.0), next, "block {block}");
        }
    }

    /// rand's StdRng is this generator: the cases are those made with StdRng.
    #[test]
    fn the_generator_is_rands_standard_one() {
        let mut a = rand::rngs::StdRng::seed_from_u64(42);
        let mut b = StdRng::seed_from_u64(42);
        for _ in 0..100 {
            assert_eq!(a.random::<u64>(), b.random::<u64>());
        }
    }
}
