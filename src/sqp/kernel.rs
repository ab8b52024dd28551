//! One evaluator pass an iterate for utilities whose draw weights are a kernel at a
//! quantile (quantile, VaR, CVaR, tail distance, mean tightness, adjusted VaR).
//!
//! Their weights ∂U/∂R_d = κ_d + b (R_d − μ) ([`Utility::smooth_split`]) depend on the
//! smoothed quantile t and the bandwidth h, known only once every R_d is; but κ is
//! constant (to 1e-14 of its largest value) outside ~32 h of each kernel's centre:
//! CVaR's is 1/(αD) below t and 0 above, a quantile's 0 on both sides. So one pass
//! ([`Evaluator::evaluate_banded`]) sums each cell's terms t_dc = [r_dc, r'_dc, r''_dc]
//! per region between predicted bands of responses and by R_d − shift over every
//! draw, and keeps the draws inside a band whole; then
//!
//! Σ_d w_d t_dc = Σ_regions κ̄_region S_region + Σ_kept κ_d t_dc + b ((shift − μ) S_all + L),
//!
//! exact where every region's κ is constant to [`FLAT`] of the largest (checked after
//! the pass, for every draw). The bands are predicted from the last such pass: each
//! band found there moved by its own draws' linearised moves Σ_c r'_dc Δx_c and
//! widened. Where the prediction fails, a second pass with the bands found at this
//! point's responses (the two passes of the general path); where the kernel is too
//! wide to keep (more than [`max_kept`] draws in its bands) or the evaluator cannot,
//! the weighted pass.

use super::point::add_weighted_pass;
use crate::error::Result;
use crate::eval::{BandedSums, Evaluation, Evaluator, band_position};
use crate::utility::{Utility, bandwidth};

/// A region's kernel weights count as one where they agree to this fraction of the
/// largest |κ_d| (the sums then agree with a weighted pass's to rounding).
pub(super) const FLAT: f64 = 1e-16;

/// Runs of at least this many draws (in response order) with one kernel weight are
/// regions; shorter runs lie in bands.
const MIN_REGION: usize = 8;

/// A predicted band is widened on each side by this fraction of its width plus the
/// spread of its draws' predicted moves.
const WIDEN: f64 = 0.5;

/// The draws kept whole at most: a sixteenth of them, or 16 MiB of terms, whichever is
/// more (never more than all).
pub(super) fn max_kept(draws: usize, cells: usize) -> usize {
    let bytes = (16usize << 20) / (24 * cells.max(1));
    draws.min((draws / 16).max(bytes))
}

/// What the last banded pass found, to predict the next one's bands.
struct Reference {
    x: Vec<f64>,
    /// The bands of the kernel at x.
    bands: Vec<(f64, f64)>,
    /// Per band, the slopes r'_dc (n a draw, concatenated) of its kept draws.
    slopes: Vec<Vec<f64>>,
    /// The least half-margin of a predicted band: 32 h at x.
    pad: f64,
}

/// The banded path's state through a solve.
#[derive(Default)]
pub(super) struct KernelPass {
    reference: Option<Reference>,
    /// The evaluator cannot, or the kernel's bands hold more than [`max_kept`] draws:
    /// the caller's two passes from now on.
    off: bool,
    sums: BandedSums,
    kernel: Vec<f64>,
    /// The draws kept at most where not [`max_kept`] (tests).
    limit: Option<usize>,
    /// The last call's uniform sums (1/D) Σ_d [r, r', r'']_dc (`contributions`,
    /// `gradient`, `curvature`; no responses), where it was banded: what a mean
    /// outcome constraint needs at x, without a pass of its own.
    pub(super) uniform: Option<Evaluation>,
    /// The last call ended banded: `sums.kept` and its terms are at its x.
    banded: bool,
}

impl KernelPass {
    /// U (smoothed) and ∇U at x, `out` filled as by a weighted pass (responses and the
    /// weighted sums Σ_d w_d t_dc); the evaluator calls added to `calls`. `None`
    /// where this path is off (before any pass of this call).
    pub(super) fn evaluate(
        &mut self,
        evaluator: &mut dyn Evaluator,
        utility: &Utility,
        x: &[f64],
        shift: f64,
        out: &mut Evaluation,
        calls: &mut usize,
    ) -> Result<Option<(f64, Vec<f64>)>> {
        self.uniform = None;
        self.banded = false;
        if self.off || x.is_empty() {
            return Ok(None);
        }
        let limit = self
            .limit
            .unwrap_or_else(|| max_kept(evaluator.num_draws(), x.len()));
        if let Some(bands) = self.predict(x) {
            if !evaluator.evaluate_banded(x, shift, &bands, limit, &mut self.sums)? {
                self.off = true;
                return Ok(None);
            }
            *calls += 1;
            if !self.sums.overflow
                && let Some(done) = self.finish(utility, x, shift, &bands, out)
            {
                return Ok(Some(done));
            }
        } else {
            self.sums.responses.resize(evaluator.num_draws(), 0.0);
            evaluator.responses(x, &mut self.sums.responses)?;
            *calls += 1;
        }
        // The bands at x, from its responses (and their mean as the shift).
        let r = &self.sums.responses;
        let shift = r.iter().sum::<f64>() / r.len() as f64;
        let mut explicit = vec![0.0; x.len()];
        self.kernel.resize(r.len(), 0.0);
        utility.smooth_split(r, x, &mut self.kernel, &mut explicit);
        let bands = detect(r, &self.kernel);
        let inside = r
            .iter()
            .filter(|v| band_position(&bands, **v).is_err())
            .count();
        if inside <= limit {
            if !evaluator.evaluate_banded(x, shift, &bands, limit, &mut self.sums)? {
                self.off = true;
                return self.weighted(evaluator, utility, x, out, calls).map(Some);
            }
            *calls += 1;
            if !self.sums.overflow
                && let Some(done) = self.finish(utility, x, shift, &bands, out)
            {
                return Ok(Some(done));
            }
        } else {
            self.off = true;
        }
        self.reference = None;
        self.weighted(evaluator, utility, x, out, calls).map(Some)
    }

    /// The weighted pass at the responses in `self.sums`.
    fn weighted(
        &mut self,
        evaluator: &mut dyn Evaluator,
        utility: &Utility,
        x: &[f64],
        out: &mut Evaluation,
        calls: &mut usize,
    ) -> Result<(f64, Vec<f64>)> {
        let r = &self.sums.responses;
        let mut weights = vec![0.0; r.len()];
        let mut grad = vec![0.0; x.len()];
        let value = utility.smooth(r, x, &mut weights, &mut grad);
        add_weighted_pass(evaluator, x, &weights, out, &mut grad)?;
        *calls += 1;
        Ok((value, grad))
    }

    /// U and ∇U from the banded sums where every region's kernel weights are one (and
    /// then the reference for the next prediction); `None` where one is not.
    fn finish(
        &mut self,
        utility: &Utility,
        x: &[f64],
        shift: f64,
        bands: &[(f64, f64)],
        out: &mut Evaluation,
    ) -> Option<(f64, Vec<f64>)> {
        let n = x.len();
        let s = &self.sums;
        let r = &s.responses;
        // An evaluator's sums of the wrong shape are not used (the weighted pass is).
        let sized = |e: &Evaluation| {
            e.contributions.len() == n && e.gradient.len() == n && e.curvature.len() == n
        };
        if s.regions.len() != bands.len() + 1
            || !s.regions.iter().all(sized)
            || !sized(&s.linear)
            || s.kept_terms.len() != s.kept.len() * 3 * n
            || s.kept.iter().any(|d| *d >= r.len())
        {
            return None;
        }
        let mut explicit = vec![0.0; n];
        self.kernel.resize(r.len(), 0.0);
        let (value, b) = utility.smooth_split(r, x, &mut self.kernel, &mut explicit);
        let kernel = &self.kernel;
        let m = bands.len() + 1;
        let (mut lo, mut hi) = (vec![f64::INFINITY; m], vec![f64::NEG_INFINITY; m]);
        let (mut sum, mut count) = (vec![0.0; m], vec![0usize; m]);
        let mut largest = 0.0f64;
        for (v, k) in r.iter().zip(kernel) {
            largest = largest.max(k.abs());
            if let Ok(j) = band_position(bands, *v) {
                lo[j] = lo[j].min(*k);
                hi[j] = hi[j].max(*k);
                sum[j] += k;
                count[j] += 1;
            }
        }
        let flat = |j: usize| count[j] == 0 || hi[j] - lo[j] <= FLAT * largest;
        if !(0..m).all(flat) {
            return None;
        }
        let level: Vec<f64> = (0..m)
            .map(|j| {
                if count[j] > 0 {
                    sum[j] / count[j] as f64
                } else {
                    0.0
                }
            })
            .collect();
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        // Σ_d κ_d t_dc and S_all = Σ_d t_dc for t = r, r', r''.
        let mut weighted = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
        let mut all = [vec![0.0; n], vec![0.0; n], vec![0.0; n]];
        for (j, region) in s.regions.iter().enumerate() {
            for (k, sums) in [&region.contributions, &region.gradient, &region.curvature]
                .into_iter()
                .enumerate()
            {
                for c in 0..n {
                    weighted[k][c] += level[j] * sums[c];
                    all[k][c] += sums[c];
                }
            }
        }
        for (d, terms) in s.kept.iter().zip(s.kept_terms.chunks_exact(3 * n)) {
            for (c, t) in terms.chunks_exact(3).enumerate() {
                for k in 0..3 {
                    weighted[k][c] += kernel[*d] * t[k];
                    all[k][c] += t[k];
                }
            }
        }
        let linear = [
            &s.linear.contributions,
            &s.linear.gradient,
            &s.linear.curvature,
        ];
        for k in 0..3 {
            for c in 0..n {
                weighted[k][c] += b * ((shift - mean) * all[k][c] + linear[k][c]);
            }
        }
        let [contributions, gradient, curvature] = weighted;
        let per_draw = 1.0 / r.len() as f64;
        let [c, g, h] = all.map(|v| v.into_iter().map(|s| s * per_draw).collect());
        self.uniform = Some(Evaluation {
            responses: vec![],
            contributions: c,
            gradient: g,
            curvature: h,
        });
        out.responses.clone_from(r);
        out.contributions = contributions;
        out.gradient = gradient;
        out.curvature = curvature;
        for (g, e) in explicit.iter_mut().zip(&out.gradient) {
            *g += e;
        }
        self.remember(x);
        self.banded = true;
        Some((value, explicit))
    }

    /// The slopes r'_dc of `draws` (ascending) at the last call's x, n a draw,
    /// concatenated, where that call ended banded and kept every one of them.
    pub(super) fn kept_slopes(&self, draws: &[usize], n: usize) -> Option<Vec<f64>> {
        if !self.banded {
            return None;
        }
        let s = &self.sums;
        let mut out = Vec::with_capacity(draws.len() * n);
        for d in draws {
            let i = s.kept.binary_search(d).ok()?;
            let terms = s.kept_terms.get(i * 3 * n..(i + 1) * 3 * n)?;
            out.extend(terms.chunks_exact(3).map(|t| t[1]));
        }
        Some(out)
    }

    /// The reference for the next prediction: the bands of the kernel at x and the
    /// slopes of the kept draws inside them.
    fn remember(&mut self, x: &[f64]) {
        let n = x.len();
        let s = &self.sums;
        let bands = detect(&s.responses, &self.kernel);
        let mut slopes = vec![Vec::new(); bands.len()];
        for (d, terms) in s.kept.iter().zip(s.kept_terms.chunks_exact(3 * n)) {
            if let Err(j) = band_position(&bands, s.responses[*d]) {
                slopes[j].extend(terms.chunks_exact(3).map(|t| t[1]));
            }
        }
        let d = s.responses.len();
        let mean = s.responses.iter().sum::<f64>() / d as f64;
        let ss: f64 = s.responses.iter().map(|v| (v - mean) * (v - mean)).sum();
        let std = if d > 1 {
            (ss / (d - 1) as f64).sqrt()
        } else {
            0.0
        };
        self.reference = Some(Reference {
            x: x.to_vec(),
            bands,
            slopes,
            pad: 40.0 * bandwidth(d) * std,
        });
    }

    /// The bands at x predicted from the reference: each band moved by the least and
    /// the largest of its draws' linearised moves Σ_c r'_dc (x_c − x_ref,c), widened by
    /// [`WIDEN`] × (its width + their spread) and at least 32 h on each side, merged
    /// where they meet. `None` without a reference.
    fn predict(&self, x: &[f64]) -> Option<Vec<(f64, f64)>> {
        let reference = self.reference.as_ref()?;
        let n = x.len();
        let dx: Vec<f64> = x.iter().zip(&reference.x).map(|(a, b)| a - b).collect();
        let mut bands: Vec<(f64, f64)> = reference
            .bands
            .iter()
            .zip(&reference.slopes)
            .map(|(&(lo, hi), slopes)| {
                let (least, most) = slopes
                    .chunks_exact(n)
                    .map(|s| s.iter().zip(&dx).map(|(a, b)| a * b).sum::<f64>())
                    .fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
                let margin = (WIDEN * (hi - lo + most - least)).max(reference.pad);
                (lo + least - margin, hi + most + margin)
            })
            .collect();
        bands.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged: Vec<(f64, f64)> = Vec::with_capacity(bands.len());
        for b in bands {
            match merged.last_mut() {
                Some(last) if b.0 <= last.1 => last.1 = last.1.max(b.1),
                _ => merged.push(b),
            }
        }
        Some(merged)
    }
}

/// The bands of responses where the kernel κ is not constant: in response order, runs
/// of at least [`MIN_REGION`] draws whose κ agree to ½ [`FLAT`] of the largest are
/// regions; the draws between them, and the two draws either side of a step from one
/// region to the next, are bands (from the least to the largest response among them).
pub(super) fn detect(r: &[f64], kernel: &[f64]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..r.len()).collect();
    order.sort_by(|a, b| r[*a].total_cmp(&r[*b]));
    let tol = 0.5 * FLAT * kernel.iter().fold(0.0f64, |m, k| m.max(k.abs()));
    // Runs of one weight, as [start, end) in `order`.
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=order.len() {
        if i == order.len() || (kernel[order[i]] - kernel[order[start]]).abs() > tol {
            runs.push((start, i));
            start = i;
        }
    }
    // In band: every draw of a short run, and the ends of long runs that meet.
    let mut inside = vec![false; order.len()];
    let long = |run: &(usize, usize)| run.1 - run.0 >= MIN_REGION;
    for (i, run) in runs.iter().enumerate() {
        if !long(run) {
            inside[run.0..run.1].iter_mut().for_each(|v| *v = true);
        } else if let Some(next) = runs.get(i + 1).filter(|next| long(next)) {
            inside[run.1 - 1] = true;
            inside[next.0] = true;
        }
    }
    let mut bands: Vec<(f64, f64)> = Vec::new();
    let mut i = 0;
    while i < order.len() {
        if inside[i] {
            let mut j = i;
            while j + 1 < order.len() && inside[j + 1] {
                j += 1;
            }
            bands.push((r[order[i]], r[order[j]]));
            i = j + 1;
        } else {
            i += 1;
        }
    }
    bands
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuEvaluator, DrawWeights, Saturation, ShardedEvaluator, demo};

    /// U, ∇U and the weighted sums by the two passes: the reference.
    fn two_passes(ev: &mut dyn Evaluator, u: &Utility, x: &[f64]) -> (f64, Vec<f64>, Evaluation) {
        let mut r = vec![0.0; ev.num_draws()];
        ev.responses(x, &mut r).unwrap();
        let (mut w, mut g) = (vec![0.0; r.len()], vec![0.0; x.len()]);
        let value = u.smooth(&r, x, &mut w, &mut g);
        let mut out = Evaluation::default();
        ev.evaluate(x, DrawWeights::PerDraw(&w), &mut out).unwrap();
        for (g, e) in g.iter_mut().zip(&out.gradient) {
            *g += e;
        }
        (value, g, out)
    }

    fn assert_close(a: &[f64], b: &[f64], what: &str) {
        let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (c, (p, q)) in a.iter().zip(b).enumerate() {
            assert!((p - q).abs() <= 1e-12 * scale, "{what}[{c}]: {p} vs {q}");
        }
    }

    /// Along a path of allocations (small steps, then a jump), the banded path gives
    /// the two passes' value, gradient and weighted sums to rounding, in one pass once
    /// a reference is known and the kernel has not jumped, on the CPU and in two
    /// shards, for every quantile-based utility and saturation kinds.
    #[test]
    fn one_banded_pass_gives_the_two_passes_sums() {
        let size = demo::DemoSize {
            channels: 3,
            geos: 2,
            draws: 900,
        };
        for (seed, kind) in [(1, Saturation::Logistic), (2, Saturation::Hill)] {
            let (model, scenario) = demo::case_with(&size, kind, seed);
            let problem = crate::Problem::new(&model, &scenario).unwrap();
            let n = problem.num_cells();
            let base = problem.uniform_allocation();
            let at = |k: f64, j: usize| -> Vec<f64> {
                base.iter()
                    .enumerate()
                    .map(|(c, v)| v * (1.0 + k * (((c + j) % 4) as f64 - 1.5)))
                    .collect()
            };
            let d = problem.num_draws();
            for text in [
                "cvar(0.9)",
                "quantile(0.2)",
                "mean - 0.5 * cvar(0.95) + 0.1 * std",
                "tail_distance(0.85)",
                "mean_tightness(0.5, 0.9)",
                "adjusted_var(0.9, 0.7)",
            ] {
                let u = Utility::parse(text).unwrap();
                let mut cpu = CpuEvaluator::new(&problem).unwrap();
                let shards: Vec<Box<dyn Evaluator + Send>> = vec![
                    Box::new(CpuEvaluator::new(&problem.draws(0..400).unwrap()).unwrap()),
                    Box::new(CpuEvaluator::new(&problem.draws(400..d).unwrap()).unwrap()),
                ];
                let mut sharded = ShardedEvaluator::new(shards).unwrap();
                for ev in [&mut cpu as &mut dyn Evaluator, &mut sharded] {
                    let mut pass = KernelPass::default();
                    let mut out = Evaluation::default();
                    let mut calls = 0;
                    let path = [(0.0, 0), (1e-4, 1), (2e-4, 2), (0.4, 3)];
                    for (i, (k, j)) in path.into_iter().enumerate() {
                        let x = at(k, j);
                        let before = calls;
                        let shift = 1000.0 * i as f64;
                        let (value, grad) = pass
                            .evaluate(ev, &u, &x, shift, &mut out, &mut calls)
                            .unwrap()
                            .unwrap();
                        let (v2, g2, o2) = two_passes(ev, &u, &x);
                        let what = format!("{text} {kind:?} {} step {i}", ev.describe());
                        assert!(
                            (value - v2).abs() <= 1e-13 * v2.abs(),
                            "{what}: {value} vs {v2}"
                        );
                        assert_eq!(out.responses, o2.responses, "{what}");
                        assert_close(&grad, &g2, &format!("{what} gradient"));
                        assert_close(&out.contributions, &o2.contributions, &format!("{what} r"));
                        assert_close(&out.curvature, &o2.curvature, &format!("{what} r''"));
                        if i == 1 || i == 2 {
                            assert_eq!(calls - before, 1, "{what}: a small step, one pass");
                        } else {
                            assert!(calls - before <= 2, "{what}");
                        }
                    }
                    assert!(n > 0 && !pass.off, "{text}");
                }
            }
        }
    }

    /// Where the kernel's bands hold more draws than may be kept, the weighted pass
    /// gives the same answer and the path stays off; an evaluator without banded sums
    /// leaves it to the caller.
    #[test]
    fn too_wide_a_kernel_falls_back_to_the_weighted_pass() {
        let size = demo::DemoSize {
            channels: 3,
            geos: 1,
            draws: 300,
        };
        let (model, scenario) = demo::case(&size, 4);
        let problem = crate::Problem::new(&model, &scenario).unwrap();
        let x = problem.uniform_allocation();
        let u = Utility::parse("cvar(0.9)").unwrap();
        let mut ev = CpuEvaluator::new(&problem).unwrap();
        let mut pass = KernelPass {
            limit: Some(2),
            ..Default::default()
        };
        let (mut out, mut calls) = (Evaluation::default(), 0);
        let (value, grad) = pass
            .evaluate(&mut ev, &u, &x, 0.0, &mut out, &mut calls)
            .unwrap()
            .unwrap();
        let (v2, g2, _) = two_passes(&mut ev, &u, &x);
        assert_eq!((value, &grad), (v2, &g2));
        assert_eq!(calls, 2);
        assert!(pass.off);
        assert!(
            pass.evaluate(&mut ev, &u, &x, 0.0, &mut out, &mut calls)
                .unwrap()
                .is_none()
        );
    }

    /// The bands cover exactly the draws where the kernel is not flat: CVaR's step
    /// from 1/(αD) to 0, a quantile's bump, and none for the mean.
    #[test]
    fn bands_cover_the_kernel_and_nothing_else() {
        let r: Vec<f64> = (0..2000)
            .map(|i| ((i * 7919) % 2000) as f64 * 0.01)
            .collect();
        let x = [1.0];
        for text in ["cvar(0.9)", "quantile(0.5)", "mean", "tail_distance(0.9)"] {
            let u = Utility::parse(text).unwrap();
            let (mut k, mut e) = (vec![0.0; r.len()], vec![0.0; 1]);
            u.smooth_split(&r, &x, &mut k, &mut e);
            let bands = detect(&r, &k);
            let expected = match text {
                "mean" => 0,
                "tail_distance(0.9)" => 2,
                _ => 1,
            };
            assert_eq!(bands.len(), expected, "{text}: {bands:?}");
            let largest = k.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            // Outside the bands, each region's weights are one.
            let mut levels = vec![None; bands.len() + 1];
            for (v, w) in r.iter().zip(&k) {
                if let Ok(j) = band_position(&bands, *v) {
                    let level = *levels[j].get_or_insert(*w);
                    assert!(
                        (w - level).abs() <= FLAT * largest,
                        "{text}: {v} {w} {level}"
                    );
                }
            }
            // And the bands are narrow: the kernel's ±40 h, not the draws' range.
            for (lo, hi) in &bands {
                assert!(hi - lo < 0.2 * 20.0, "{text}: {lo}..{hi}");
            }
        }
    }
}
