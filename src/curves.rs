//! Each cell's response curve around an allocation: its mean contribution and
//! marginal return as its spend varies, the others held where they are.
//!
//! The response is separable, R_d(x) = Σ_c r_dc(x_c), so one evaluation at the
//! allocation with every cell at its k-th grid spend gives the k-th point of every
//! cell's curve at once: `points` evaluations in all, run [`BATCH`] at a time by
//! [`Evaluator::evaluate_many`].

use crate::error::{Error, Result};
use crate::eval::{DrawWeights, Evaluation, Evaluator};
use crate::problem::Problem;

/// Points of the curves evaluated in one [`Evaluator::evaluate_many`] call.
pub const BATCH: usize = 32;

/// One cell's curve.
#[derive(Clone, Debug, PartialEq)]
pub struct CellCurve {
    /// The cell's label.
    pub label: String,
    /// Spends per period, from 0.
    pub spend: Vec<f64>,
    /// E\[r_c\] at each spend: the mean contribution over the window (and its
    /// carry-over), in the target's units.
    pub contribution: Vec<f64>,
    /// ∂E\[r_c\]/∂x_c at each spend, per unit of per-period spend.
    pub marginal: Vec<f64>,
    /// The allocation's spend for this cell.
    pub at: f64,
}

/// The curves of every optimized cell around `at` (per period): `points` spends from
/// 0 to `span` × max(at_c, B/n) each.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 1, draws: 100 }, 4);
/// let problem = Problem::new(&model, &scenario)?;
/// let mut ev = CpuEvaluator::new(&problem)?;
/// let x = problem.uniform_allocation();
/// let curves = curves::response_curves(&problem, &mut ev, &x, 11, 2.0)?;
/// assert_eq!(curves.len(), 3);
/// assert_eq!(curves[0].spend[0], 0.0);
/// assert!(curves[0].contribution.windows(2).all(|w| w[1] >= w[0]));
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn response_curves(
    problem: &Problem,
    evaluator: &mut dyn Evaluator,
    at: &[f64],
    points: usize,
    span: f64,
) -> Result<Vec<CellCurve>> {
    let n = problem.num_cells();
    if at.len() != n {
        return Err(Error::invalid(
            "curves",
            "allocation",
            format!("{} values", at.len()),
            format!("{n} values, one per optimized cell"),
        ));
    }
    if !(2..=1000).contains(&points) {
        return Err(Error::invalid(
            "curves",
            "points",
            points,
            "an integer in [2, 1000]",
        ));
    }
    if !(span.is_finite() && span > 0.0) {
        return Err(Error::invalid(
            "curves",
            "span",
            span,
            "a finite number > 0",
        ));
    }
    let even = problem.total_budget / n as f64;
    let top: Vec<f64> = at.iter().map(|&a| span * a.max(even)).collect();
    let mut curves: Vec<CellCurve> = problem
        .cells
        .iter()
        .zip(at)
        .map(|(cell, &a)| CellCurve {
            label: cell.label.clone(),
            spend: Vec::with_capacity(points),
            contribution: Vec::with_capacity(points),
            marginal: Vec::with_capacity(points),
            at: a,
        })
        .collect();
    // The points in batches, each batch one `evaluate_many`.
    let grid: Vec<usize> = (0..points).collect();
    let mut out = vec![Evaluation::default(); BATCH.min(points)];
    for batch in grid.chunks(BATCH) {
        let xs: Vec<Vec<f64>> = batch
            .iter()
            .map(|&k| {
                let t = k as f64 / (points - 1) as f64;
                top.iter().map(|m| t * m).collect()
            })
            .collect();
        let refs: Vec<&[f64]> = xs.iter().map(|x| x.as_slice()).collect();
        let out = &mut out[..batch.len()];
        evaluator.evaluate_many(&refs, DrawWeights::Uniform, out)?;
        for (x, e) in xs.iter().zip(out.iter()) {
            for (c, curve) in curves.iter_mut().enumerate() {
                curve.spend.push(x[c]);
                curve.contribution.push(e.contributions[c]);
                curve.marginal.push(e.gradient[c]);
            }
        }
    }
    Ok(curves)
}
