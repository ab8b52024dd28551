//! Sums of saturation terms over one (draw, cell)'s adstocked unit pattern, vectorised.
//!
//! The CPU evaluator reduces each (draw, cell) to a list of (q, m) terms: q a value of
//! the adstocked unit pattern, m how many periods share it. For a per-period budget x
//! it needs
//!
//! [Σ m g(xq), Σ m q g'(xq), Σ m q² g''(xq)]
//!
//! which is nearly all of its work. The curves built on e^z (`logistic`,
//! `inverse_scaled_logistic`, `hill_sigmoid`) and `michaelis_menten` are computed here
//! eight terms at a time, with an exp written for SIMD lanes ([`exp`]); the function is
//! compiled for AVX-512, AVX2 + FMA and the baseline and the best one the CPU runs is
//! picked at run time (the `multiversion` crate), so one binary is fast everywhere.
//! Rust's standard library has no vector exp on stable, and `wide` picks its
//! instructions when it is compiled (SSE2 halves in a default build), hence the small
//! polynomial below. The other curves (`hill`, `root`, `tanh`, `none`) take the scalar
//! formulas of [`Saturation::term_derivatives`].

use crate::saturation::{LN_3, Saturation};
use multiversion::multiversion;
use multiversion::target::{match_target, target_cfg_f};

/// Compiles a kernel for each SIMD level (AVX-512, AVX2 + FMA, NEON, baseline); the
/// best one the CPU runs is picked at the first call.
macro_rules! lanes {
    ($kernel:item) => {
        #[multiversion(targets(
            "x86_64+avx512f+avx512dq+avx2+fma",
            "x86_64+avx2+fma",
            "aarch64+neon"
        ))]
        $kernel
    };
}

lanes! {
    /// The SIMD level the kernels run at on this CPU, for reports.
    pub(crate) fn simd_level() -> &'static str {
        match_target! {
            "x86_64+avx512f" => "avx-512",
            "x86_64+avx2" => "avx2",
            "aarch64+neon" => "neon",
            _ => "baseline",
        }
    }
}

/// Lanes per step: two AVX-512 or four AVX2 vectors, so that independent chains
/// hide the latency of the polynomial and the division.
const W: usize = 16;

/// Lanes per step, for callers that pad their term lists (see [`vectorised`]).
pub(crate) const LANES: usize = W;

/// a·b + c, fused where the compiled target has FMA (`F`), else a multiply and an add
/// (f64::mul_add without hardware FMA is a slow library call).
#[inline(always)]
fn fma<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// e^x to within 2 ulp for x in [−708.39, 709.78] (results below 2^−1022, the
/// subnormals, are flushed to 0; above, +∞), written without branches so that it
/// vectorises: x = n ln 2 + r with |r| ≤ ln 2 / 2 (Cody–Waite, fdlibm's split of
/// ln 2), e^r by its Taylor polynomial of degree 13 (truncation < 4e−18) evaluated by
/// Estrin's scheme (depth 4 instead of Horner's 13), and 2^n from the exponent bits.
/// `F`: use fused multiply-adds.
#[inline(always)]
pub fn exp<const F: bool>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    // 1.5 · 2^52: adding it rounds to an integer held in the low mantissa bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    const LO: f64 = -708.39;
    const HI: f64 = 709.78;
    // 1/k!, k = 0..=13.
    const C: [f64; 14] = [
        1.0,
        1.0,
        0.5,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5_040.0,
        1.0 / 40_320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    #[allow(clippy::manual_clamp)] // f64::clamp stops LLVM from vectorising this
    let xc = if x < LO { LO } else if x > HI { HI } else { x };
    let k = fma::<F>(xc, LOG2E, SHIFT);
    let n = k - SHIFT;
    let r = fma::<F>(-n, LN2_LO, fma::<F>(-n, LN2_HI, xc));
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let p01 = fma::<F>(C[1], r, C[0]);
    let p23 = fma::<F>(C[3], r, C[2]);
    let p45 = fma::<F>(C[5], r, C[4]);
    let p67 = fma::<F>(C[7], r, C[6]);
    let p89 = fma::<F>(C[9], r, C[8]);
    let p1011 = fma::<F>(C[11], r, C[10]);
    let p1213 = fma::<F>(C[13], r, C[12]);
    let q0 = fma::<F>(p23, r2, p01);
    let q1 = fma::<F>(p67, r2, p45);
    let q2 = fma::<F>(p1011, r2, p89);
    let s0 = fma::<F>(q1, r4, q0);
    let s1 = fma::<F>(p1213, r4, q2);
    let p = fma::<F>(s1, r8, s0);
    // n ∈ [−1022, 1024]: 2^n as 2^min(n, 1023) · (2 when n = 1024). Selects, not
    // f64::min/max: those (IEEE minNum) keep LLVM from vectorising this function.
    let top = if n > 1023.0 { 1023.0 } else { n };
    let bits = ((top + (SHIFT + 1023.0)).to_bits() - SHIFT.to_bits()) << 52;
    let v = p * f64::from_bits(bits) * if n > 1023.0 { 2.0 } else { 1.0 };
    if x < LO {
        0.0
    } else if x > HI {
        f64::INFINITY
    } else {
        v
    }
}

/// [Σ m g(xq), Σ m q g'(xq), Σ m q² g''(xq)] over the terms (q, m), `q` and `m` of the
/// same length.
#[inline]
pub(crate) fn sums(sat: Saturation, params: &[f64], x: f64, q: &[f64], m: &[f64]) -> [f64; 3] {
    match sat {
        Saturation::Logistic => logistic(params[0], params[1], x, q, m),
        Saturation::InverseScaledLogistic => logistic(LN_3 / params[0], params[1], x, q, m),
        Saturation::HillSigmoid => hill_sigmoid(params[0], params[1], params[2], x, q, m),
        Saturation::MichaelisMenten => michaelis_menten(params[0], params[1], x, q, m),
        _ => {
            let mut s = [0.0; 3];
            for (&q, &m) in q.iter().zip(m) {
                let [g, g1, g2] = sat.term_derivatives(x, q, params);
                s[0] += m * g;
                s[1] += m * g1;
                s[2] += m * g2;
            }
            s
        }
    }
}

/// Whether [`sums`] has a vectorised kernel for `sat`: then its callers should pad
/// each term list with (q = 0, m = 0) to a multiple of [`LANES`] terms, which the
/// kernel then reads in place.
pub(crate) fn vectorised(sat: Saturation) -> bool {
    matches!(
        sat,
        Saturation::Logistic
            | Saturation::InverseScaledLogistic
            | Saturation::HillSigmoid
            | Saturation::MichaelisMenten
    )
}

/// Σ term(q, m) over the terms, W at a time in lane accumulators (which LLVM turns
/// into vector registers), then any remainder of fewer than W terms one at a time
/// (callers pad to avoid it). The chunks are read in place: copying them to the stack
/// first stalls on store forwarding.
#[inline(always)]
fn by_lanes(q: &[f64], m: &[f64], term: impl Fn(f64, f64) -> [f64; 3]) -> [f64; 3] {
    let mut acc = [[0.0; W]; 3];
    let (qc, mc) = (q.chunks_exact(W), m.chunks_exact(W));
    let (qr, mr) = (qc.remainder(), mc.remainder());
    for (qw, mw) in qc.zip(mc) {
        let (qw, mw): (&[f64; W], &[f64; W]) = (qw.try_into().unwrap(), mw.try_into().unwrap());
        for i in 0..W {
            let t = term(qw[i], mw[i]);
            for k in 0..3 {
                acc[k][i] += t[k];
            }
        }
    }
    let mut sums = acc.map(|lanes| lanes.iter().sum());
    for (&q, &m) in qr.iter().zip(mr) {
        let t = term(q, m);
        for k in 0..3 {
            sums[k] += t[k];
        }
    }
    sums
}

lanes! {
    /// Logistic, g = β (1 − e)/(1 + e) with e = e^(−λa): g' = β(λ/2)·4e/(1 + e)²,
    /// g'' = −2β(λ/2)² · (1 − e)/(1 + e) · 4e/(1 + e)² (see [`Saturation::derivatives`]).
    fn logistic(lam: f64, beta: f64, x: f64, q: &[f64], m: &[f64]) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        let (h, nlx) = (0.5 * lam, -lam * x);
        let [s0, s1, s2] = by_lanes(
            q,
            m,
            #[inline(always)]
            |q, m| {
                let e = exp::<F>(nlx * q);
                let inv = 1.0 / (1.0 + e);
                let t = (1.0 - e) * inv;
                let mq_sech2 = m * q * 4.0 * e * inv * inv;
                [m * t, mq_sech2, mq_sech2 * q * t]
            },
        );
        [beta * s0, beta * h * s1, -2.0 * beta * h * h * s2]
    }
}

lanes! {
    /// Hill sigmoid, s = 1/(1 + e^(−β(a − λ))): g = σs − σ/(1 + e^(βλ)), g' = σβ s(1 − s),
    /// g'' = σβ² s(1 − s)(1 − 2s).
    fn hill_sigmoid(sigma: f64, beta: f64, lam: f64, x: f64, q: &[f64], m: &[f64]) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        let offset = sigma / (1.0 + (beta * lam).exp());
        let (nbx, bl) = (-beta * x, beta * lam);
        let [s0, s1, s2] = by_lanes(
            q,
            m,
            #[inline(always)]
            |q, m| {
                let s = 1.0 / (1.0 + exp::<F>(fma::<F>(nbx, q, bl)));
                let mq_s1 = m * q * s * (1.0 - s);
                [m * s, mq_s1, mq_s1 * q * (1.0 - 2.0 * s)]
            },
        );
        let total: f64 = m.iter().sum();
        [
            sigma * s0 - offset * total,
            sigma * beta * s1,
            sigma * beta * beta * s2,
        ]
    }
}

lanes! {
    /// Michaelis–Menten, g = αa/(λ + a): g' = αλ/(λ + a)², g'' = −2αλ/(λ + a)³.
    fn michaelis_menten(alpha: f64, lam: f64, x: f64, q: &[f64], m: &[f64]) -> [f64; 3] {
        let [s0, s1, s2] = by_lanes(
            q,
            m,
            #[inline(always)]
            |q, m| {
                let a = x * q;
                let d = 1.0 / (lam + a);
                let mq_d2 = m * q * d * d;
                [m * a * d, mq_d2, mq_d2 * q * d]
            },
        );
        [alpha * s0, alpha * lam * s1, -2.0 * alpha * lam * s2]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    #[test]
    fn exp_is_within_two_ulp_of_std() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut worst = 0.0f64;
        for i in 0..200_000 {
            let x = match i % 4 {
                0 => rng.random_range(-1.0..1.0),
                1 => rng.random_range(-50.0..0.0),
                2 => rng.random_range(-708.0..709.7),
                _ => rng.random_range(-1e-8..1e-8),
            };
            let (a, b) = (exp::<false>(x), x.exp());
            let f = exp::<true>(x);
            worst = worst.max(((f - b) / b).abs());
            worst = worst.max(((a - b) / b).abs());
        }
        assert!(
            worst <= 2.0 * f64::EPSILON,
            "worst relative error {worst:e}"
        );
    }

    #[test]
    fn exp_edges() {
        for exp in [exp::<false>, exp::<true>] {
            assert_eq!(exp(0.0), 1.0);
            assert_eq!(exp(-800.0), 0.0);
            assert_eq!(exp(-708.39 - 1e-9), 0.0);
            assert_eq!(exp(710.0), f64::INFINITY);
            let top = exp(709.78);
            assert!(top.is_finite() && ((top - 709.78f64.exp()) / top).abs() < 4e-16);
            let low = exp(-708.0);
            assert!(((low - (-708.0f64).exp()) / low).abs() < 4e-16);
        }
    }

    #[test]
    fn vector_sums_match_the_scalar_formulas() {
        let mut rng = StdRng::seed_from_u64(11);
        for sat in Saturation::ALL {
            for len in [0usize, 1, 7, 8, 9, 26, 65] {
                let params: Vec<f64> = match sat {
                    Saturation::HillSigmoid => vec![
                        rng.random_range(0.5..2.0),
                        rng.random_range(0.1..5.0),
                        rng.random_range(0.0..2.0),
                    ],
                    _ => sat
                        .parameters()
                        .iter()
                        .map(|_| rng.random_range(0.2..3.0))
                        .collect(),
                };
                let q: Vec<f64> = (0..len).map(|_| rng.random_range(0.0..1.5)).collect();
                let m: Vec<f64> = (0..len).map(|_| rng.random_range(1..40) as f64).collect();
                let x = rng.random_range(0.01..4.0);
                let got = sums(sat, &params, x, &q, &m);
                let (mut want, mut size) = ([0.0; 3], [0.0f64; 3]);
                for (&q, &m) in q.iter().zip(&m) {
                    let t = sat.term_derivatives(x, q, &params);
                    for k in 0..3 {
                        want[k] += m * t[k];
                        size[k] += (m * t[k]).abs();
                    }
                }
                for k in 0..3 {
                    assert!(
                        (got[k] - want[k]).abs() <= 1e-13 * size[k],
                        "{sat} len {len} k {k}: {} vs {}",
                        got[k],
                        want[k]
                    );
                }
            }
        }
    }
}
