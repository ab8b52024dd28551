//! Sums of saturation terms over one (draw, cell)'s adstocked unit pattern, vectorised.
//!
//! The CPU evaluator reduces each (draw, cell) to a list of (q, m) terms: q a value of
//! the adstocked unit pattern, m how many periods share it. For a per-period budget x
//! it needs
//!
//! [Σ m g(xq), Σ m q g'(xq), Σ m q² g''(xq)]
//!
//! which is nearly all of its work. Every curve is computed here sixteen terms at a
//! time, with exp, expm1 and ln written for SIMD lanes ([`exp`], [`expm1`], [`ln`]:
//! branch-free, within 2 ulp); each kernel is compiled for AVX-512, AVX2 + FMA, NEON
//! and the baseline, and the best one the CPU runs is picked at run time (the
//! `multiversion` crate), so one binary is fast everywhere. Rust's standard library
//! has no vector exp on stable, and `wide` picks its instructions when it is compiled
//! (SSE2 halves in a default build), hence the small polynomials below. Only the
//! power laws (`hill`, `root`) at x = 0, where the derivatives are one-sided limits,
//! take the scalar formulas of [`Saturation::term_derivatives`].

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

/// Lanes per step: callers pad their term lists with (q = 0, m = 0) to a multiple of
/// it, so that the kernels read every step in place.
pub(crate) const LANES: usize = W;

/// a·b + c, fused where the compiled target has FMA (`F`), else a multiply and an add
/// (f64::mul_add without hardware FMA is a slow library call).
#[inline(always)]
fn fma<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F { a.mul_add(b, c) } else { a * b + c }
}

/// Σ_(k ≤ 13) c_k r^k by Estrin's scheme (depth 4 instead of Horner's 13).
#[inline(always)]
fn estrin13<const F: bool>(r: f64, c: &[f64; 14]) -> f64 {
    let r2 = r * r;
    let r4 = r2 * r2;
    let r8 = r4 * r4;
    let p01 = fma::<F>(c[1], r, c[0]);
    let p23 = fma::<F>(c[3], r, c[2]);
    let p45 = fma::<F>(c[5], r, c[4]);
    let p67 = fma::<F>(c[7], r, c[6]);
    let p89 = fma::<F>(c[9], r, c[8]);
    let p1011 = fma::<F>(c[11], r, c[10]);
    let p1213 = fma::<F>(c[13], r, c[12]);
    let q0 = fma::<F>(p23, r2, p01);
    let q1 = fma::<F>(p67, r2, p45);
    let q2 = fma::<F>(p1011, r2, p89);
    let s0 = fma::<F>(q1, r4, q0);
    let s1 = fma::<F>(p1213, r4, q2);
    fma::<F>(s1, r8, s0)
}

/// 1/k!, k = 0..=14.
const INV_FACTORIAL: [f64; 15] = [
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
    1.0 / 87_178_291_200.0,
];

/// The exp argument range: below, results are under 2^−1022 (subnormal; flushed to
/// 0); above, +∞.
const EXP_LO: f64 = -708.39;
const EXP_HI: f64 = 709.78;
/// 1.5 · 2^52: adding it rounds to an integer held in the low mantissa bits.
const SHIFT: f64 = 6_755_399_441_055_744.0;
/// fdlibm's split of ln 2: LN2_HI has 32 trailing zero bits, so n·LN2_HI is exact.
const LN2_HI: f64 = 6.931_471_803_691_238e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// x = n ln 2 + r with n an integer (as f64) and |r| ≤ ln 2 / 2 (Cody–Waite), for x
/// clamped to [EXP_LO, EXP_HI].
#[inline(always)]
fn reduce<const F: bool>(x: f64) -> (f64, f64) {
    #[allow(clippy::manual_clamp)] // f64::clamp keeps LLVM from vectorising the callers
    let xc = if x < EXP_LO {
        EXP_LO
    } else if x > EXP_HI {
        EXP_HI
    } else {
        x
    };
    let n = fma::<F>(xc, std::f64::consts::LOG2_E, SHIFT) - SHIFT;
    (n, fma::<F>(-n, LN2_LO, fma::<F>(-n, LN2_HI, xc)))
}

/// 2^n for an integer n ∈ [−1022, 1024] as the factors (2^min(n, 1023), 2 when
/// n = 1024 else 1), from the exponent bits: multiply a mantissa below 1 by the first
/// before the second, so that e^709.78 does not overflow on the way. Selects, not
/// f64::min/max: those (IEEE minNum) keep LLVM from vectorising the callers.
#[inline(always)]
fn pow2(n: f64) -> (f64, f64) {
    let top = if n > 1023.0 { 1023.0 } else { n };
    let bits = ((top + (SHIFT + 1023.0)).to_bits() - SHIFT.to_bits()) << 52;
    (f64::from_bits(bits), if n > 1023.0 { 2.0 } else { 1.0 })
}

/// e^x to within 2 ulp for x in [−708.39, 709.78] (below, 0: the subnormal results
/// are flushed; above, +∞), written without branches so that it vectorises:
/// x = n ln 2 + r, e^r by its Taylor polynomial of degree 13 (truncation < 4e−18),
/// times 2^n. `F`: use fused multiply-adds.
#[inline(always)]
pub fn exp<const F: bool>(x: f64) -> f64 {
    let (n, r) = reduce::<F>(x);
    let c: &[f64; 14] = INV_FACTORIAL[..14].try_into().unwrap();
    let (scale, extra) = pow2(n);
    let v = estrin13::<F>(r, c) * scale * extra;
    if x < EXP_LO {
        0.0
    } else if x > EXP_HI {
        f64::INFINITY
    } else {
        v
    }
}

/// e^x − 1 to within 3 ulp, also near 0 (where e^x − 1 would cancel), for
/// x ≤ 709: with
/// x = n ln 2 + r, e^r − 1 = r Σ_k r^k/(k+1)! without its leading 1, and for n ≠ 0
/// 2^n (e^r − 1) + (2^n − 1), which does not cancel. Below −708.39 it is −1.
#[inline(always)]
pub fn expm1<const F: bool>(x: f64) -> f64 {
    let (n, r) = reduce::<F>(x);
    let c: &[f64; 14] = INV_FACTORIAL[1..].try_into().unwrap();
    let em1_r = r * estrin13::<F>(r, c);
    let (scale, extra) = pow2(n);
    let p = scale * extra;
    let v = if n == 0.0 {
        em1_r
    } else {
        fma::<F>(p, em1_r, p - 1.0)
    };
    if x > EXP_HI { f64::INFINITY } else { v }
}

/// ln y to within 1 ulp for y ≥ 0 (ln 0 = −∞; subnormals are scaled first), without
/// branches: y = 2^k m with m ∈ [√2/2, √2), ln m = 2 atanh(s) with s = (m − 1)/(m + 1)
/// by fdlibm's polynomial (`e_log.c`), plus k ln 2.
#[inline(always)]
pub fn ln<const F: bool>(y: f64) -> f64 {
    const LG: [f64; 7] = [
        6.666_666_666_666_735e-1,
        3.999_999_999_940_942e-1,
        2.857_142_874_366_239e-1,
        2.222_219_843_214_978_4e-1,
        1.818_357_216_161_805e-1,
        1.531_383_769_920_937_3e-1,
        1.479_819_860_511_658_6e-1,
    ];
    const TWO54: f64 = 18_014_398_509_481_984.0;
    let tiny = y < f64::MIN_POSITIVE;
    let ys = if tiny { y * TWO54 } else { y };
    let bits = ys.to_bits();
    // The biased exponent as an exact f64 (2^52 + e, minus 2^52), and the mantissa in
    // [1, 2).
    let e = f64::from_bits((bits >> 52) | 0x4330_0000_0000_0000) - 4_503_599_627_370_496.0;
    let m1 = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let big = m1 > std::f64::consts::SQRT_2;
    let m = if big { 0.5 * m1 } else { m1 };
    let k = e - 1023.0 + if big { 1.0 } else { 0.0 } - if tiny { 54.0 } else { 0.0 };
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * fma::<F>(w, fma::<F>(w, LG[5], LG[3]), LG[1]);
    let t2 = z * fma::<F>(w, fma::<F>(w, fma::<F>(w, LG[6], LG[4]), LG[2]), LG[0]);
    let hfsq = 0.5 * f * f;
    let v = k * LN2_HI - ((hfsq - fma::<F>(s, hfsq + t1 + t2, k * LN2_LO)) - f);
    if y == 0.0 {
        f64::NEG_INFINITY
    } else if y == f64::INFINITY {
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
        Saturation::Tanh => tanh(params[0], params[1], x, q, m),
        Saturation::Hill if x > 0.0 => hill(params[0], params[1], params[2], x, q, m),
        Saturation::Root if x > 0.0 => root(params[0], params[1], x, q, m),
        Saturation::None => {
            let s: f64 = q.iter().zip(m).map(|(q, m)| q * m).sum();
            [params[0] * x * s, params[0] * s, 0.0]
        }
        // x = 0 for the power laws: the one-sided limits (±∞ where the curve is not
        // differentiable at 0), from the scalar formulas; padding (m = 0) skipped.
        _ => {
            let mut s = [0.0; 3];
            for (&q, &m) in q.iter().zip(m).filter(|(_, m)| **m != 0.0) {
                let [g, g1, g2] = sat.term_derivatives(x, q, params);
                s[0] += m * g;
                s[1] += m * g1;
                s[2] += m * g2;
            }
            s
        }
    }
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
        // s at a = 0, subtracted in each term (one pass, not a second sum of m).
        let s_at_0 = 1.0 / (1.0 + (beta * lam).exp());
        let (nbx, bl) = (-beta * x, beta * lam);
        let [s0, s1, s2] = by_lanes(
            q,
            m,
            #[inline(always)]
            |q, m| {
                let s = 1.0 / (1.0 + exp::<F>(fma::<F>(nbx, q, bl)));
                let mq_s1 = m * q * s * (1.0 - s);
                [m * (s - s_at_0), mq_s1, mq_s1 * q * (1.0 - 2.0 * s)]
            },
        );
        [sigma * s0, sigma * beta * s1, sigma * beta * beta * s2]
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

lanes! {
    /// Tanh, g = b tanh(u) with u = a/(bc): with em = e^(−2u) − 1 (computed without
    /// cancellation for small u), tanh u = −em/(2 + em), sech² u = 4(1 + em)/(2 + em)²;
    /// g' = sech²(u)/c, g'' = −2 tanh(u) sech²(u)/(b c²).
    fn tanh(b: f64, c: f64, x: f64, q: &[f64], m: &[f64]) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        let n2x = -2.0 * x / (b * c);
        let [s0, s1, s2] = by_lanes(
            q,
            m,
            #[inline(always)]
            |q, m| {
                let em = expm1::<F>(n2x * q);
                let inv = 1.0 / (2.0 + em);
                let t = -em * inv;
                let mq_sech2 = m * q * 4.0 * (1.0 + em) * inv * inv;
                [m * t, mq_sech2, mq_sech2 * q * t]
            },
        );
        [b * s0, s1 / c, -2.0 * s2 / (b * c * c)]
    }
}

lanes! {
    /// Hill, g = β u/(1 + u) with u = (xq/κ)^s = e^(s ln(xq/κ)) and v = 1/(1 + u), for
    /// x > 0 (as [`Saturation::term_derivatives`]): q g' = β s u v²/x,
    /// q² g'' = β s u v³ (s − 1 − u − s u)/x².
    fn hill(slope: f64, kappa: f64, beta: f64, x: f64, q: &[f64], m: &[f64]) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        let xk = x / kappa;
        let [s0, s1, s2] = by_lanes(
            q,
            m,
            #[inline(always)]
            |q, m| {
                let u = exp::<F>(slope * ln::<F>(xk * q));
                let v = 1.0 / (1.0 + u);
                let muv2 = m * u * v * v;
                [m * (1.0 - v), muv2, muv2 * v * (slope - 1.0 - u - slope * u)]
            },
        );
        [beta * s0, beta * slope * s1 / x, beta * slope * s2 / (x * x)]
    }
}

lanes! {
    /// Root, g = β (xq)^α = β e^(α ln(xq)) for x > 0: q g' = α g/x,
    /// q² g'' = α(α − 1) g/x².
    fn root(alpha: f64, beta: f64, x: f64, q: &[f64], m: &[f64]) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        let [s0, _, _] = by_lanes(
            q,
            m,
            #[inline(always)]
            |q, m| [m * exp::<F>(alpha * ln::<F>(x * q)), 0.0, 0.0],
        );
        let g = beta * s0;
        [g, alpha * g / x, alpha * (alpha - 1.0) * g / (x * x)]
    }
}

/// [Σ m g(xq + h), Σ m q g'(xq + h), Σ m q² g''(xq + h)] over the terms (q, m, h):
/// the periods whose input carries an offset h (the adstocked spend before the
/// window, `Problem::carry_in`), vectorised as [`sums`] is. Every h must be > 0 (or
/// the padding's q = 0, m = 0, h = 1), so that the power laws are evaluated away
/// from 0.
#[inline]
pub(crate) fn sums_shifted(
    sat: Saturation,
    params: &[f64],
    x: f64,
    q: &[f64],
    m: &[f64],
    h: &[f64],
) -> [f64; 3] {
    match sat {
        Saturation::Logistic => shifted_logistic(params[0], params[1], x, q, m, h),
        Saturation::InverseScaledLogistic => {
            shifted_logistic(LN_3 / params[0], params[1], x, q, m, h)
        }
        Saturation::HillSigmoid => {
            shifted_hill_sigmoid(params[0], params[1], params[2], x, q, m, h)
        }
        Saturation::MichaelisMenten => shifted_michaelis_menten(params[0], params[1], x, q, m, h),
        Saturation::Tanh => shifted_tanh(params[0], params[1], x, q, m, h),
        Saturation::Hill => shifted_hill(params[0], params[1], params[2], x, q, m, h),
        Saturation::Root => shifted_root(params[0], params[1], x, q, m, h),
        Saturation::None => {
            let (mut s0, mut s1) = (0.0, 0.0);
            for ((q, m), h) in q.iter().zip(m).zip(h) {
                s0 += m * (x * q + h);
                s1 += m * q;
            }
            [params[0] * s0, params[0] * s1, 0.0]
        }
    }
}

/// Σ over (q, m, h) of [m g, m q g', m q² g''] with [g, g', g''] = `deriv(xq + h)`,
/// W lanes at a time as [`by_lanes`].
#[inline(always)]
fn by_lanes_shifted(
    x: f64,
    q: &[f64],
    m: &[f64],
    h: &[f64],
    deriv: impl Fn(f64) -> [f64; 3],
) -> [f64; 3] {
    let mut acc = [[0.0; W]; 3];
    let (qc, mc, hc) = (q.chunks_exact(W), m.chunks_exact(W), h.chunks_exact(W));
    let (qr, mr, hr) = (qc.remainder(), mc.remainder(), hc.remainder());
    let add = |acc: &mut [[f64; W]; 3], i: usize, q: f64, m: f64, h: f64| {
        let [g, g1, g2] = deriv(x * q + h);
        acc[0][i] += m * g;
        acc[1][i] += m * q * g1;
        acc[2][i] += m * q * q * g2;
    };
    for ((qw, mw), hw) in qc.zip(mc).zip(hc) {
        for i in 0..W {
            add(&mut acc, i, qw[i], mw[i], hw[i]);
        }
    }
    for (i, ((&q, &m), &h)) in qr.iter().zip(mr).zip(hr).enumerate() {
        add(&mut acc, i, q, m, h);
    }
    acc.map(|lanes| lanes.iter().sum())
}

lanes! {
    /// Logistic at a = xq + h (see [`Saturation::derivatives`]).
    fn shifted_logistic(lam: f64, beta: f64, x: f64, q: &[f64], m: &[f64], h: &[f64]) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        let hl = 0.5 * lam;
        by_lanes_shifted(x, q, m, h, #[inline(always)] |a| {
            let e = exp::<F>(-lam * a);
            let inv = 1.0 / (1.0 + e);
            let t = (1.0 - e) * inv;
            let sech2 = 4.0 * e * inv * inv;
            [beta * t, beta * hl * sech2, -2.0 * beta * hl * hl * t * sech2]
        })
    }
}

lanes! {
    /// Hill sigmoid at a = xq + h.
    fn shifted_hill_sigmoid(
        sigma: f64,
        beta: f64,
        lam: f64,
        x: f64,
        q: &[f64],
        m: &[f64],
        h: &[f64],
    ) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        let s_at_0 = 1.0 / (1.0 + (beta * lam).exp());
        by_lanes_shifted(x, q, m, h, #[inline(always)] |a| {
            let s = 1.0 / (1.0 + exp::<F>(-beta * (a - lam)));
            let s1 = s * (1.0 - s);
            [sigma * (s - s_at_0), sigma * beta * s1, sigma * beta * beta * s1 * (1.0 - 2.0 * s)]
        })
    }
}

lanes! {
    /// Michaelis–Menten at a = xq + h.
    fn shifted_michaelis_menten(alpha: f64, lam: f64, x: f64, q: &[f64], m: &[f64], h: &[f64]) -> [f64; 3] {
        by_lanes_shifted(x, q, m, h, #[inline(always)] |a| {
            let d = 1.0 / (lam + a);
            let g1 = alpha * lam * d * d;
            [alpha * a * d, g1, -2.0 * g1 * d]
        })
    }
}

lanes! {
    /// Tanh at a = xq + h (tanh and sech² from expm1, as [`tanh`]).
    fn shifted_tanh(b: f64, c: f64, x: f64, q: &[f64], m: &[f64], h: &[f64]) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        let k = -2.0 / (b * c);
        by_lanes_shifted(x, q, m, h, #[inline(always)] |a| {
            let em = expm1::<F>(k * a);
            let inv = 1.0 / (2.0 + em);
            let t = -em * inv;
            let sech2 = 4.0 * (1.0 + em) * inv * inv;
            [b * t, sech2 / c, -2.0 * t * sech2 / (b * c * c)]
        })
    }
}

lanes! {
    /// Hill at a = xq + h > 0: u = (a/κ)^s, v = 1/(1 + u), g = βu v, g' = βs u v²/a,
    /// g'' = βs u v³ (s − 1 − u − s u)/a².
    fn shifted_hill(slope: f64, kappa: f64, beta: f64, x: f64, q: &[f64], m: &[f64], h: &[f64]) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        by_lanes_shifted(x, q, m, h, #[inline(always)] |a| {
            let u = exp::<F>(slope * ln::<F>(a / kappa));
            let v = 1.0 / (1.0 + u);
            let g1 = beta * slope * u * v * v / a;
            [beta * (1.0 - v), g1, g1 * v * (slope - 1.0 - u - slope * u) / a]
        })
    }
}

lanes! {
    /// Root at a = xq + h > 0: g = β a^α, g' = α g/a, g'' = α(α − 1) g/a².
    fn shifted_root(alpha: f64, beta: f64, x: f64, q: &[f64], m: &[f64], h: &[f64]) -> [f64; 3] {
        const F: bool = target_cfg_f!(target_feature = "fma");
        by_lanes_shifted(x, q, m, h, #[inline(always)] |a| {
            let g = beta * exp::<F>(alpha * ln::<F>(a));
            let g1 = alpha * g / a;
            [g, g1, (alpha - 1.0) * g1 / a]
        })
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
    fn ln_and_expm1_are_within_a_few_ulp_of_std() {
        let mut rng = StdRng::seed_from_u64(9);
        let (mut worst_ln, mut worst_em1) = (0.0f64, 0.0f64);
        for i in 0..200_000 {
            let y: f64 = match i % 4 {
                0 => rng.random_range(0.5..2.0),
                1 => rng.random_range(0.0..1e-3),
                2 => 10f64.powf(rng.random_range(-300.0..300.0)),
                _ => f64::from_bits(rng.random_range(1..1u64 << 52)), // subnormal
            };
            let want = y.ln();
            for got in [ln::<false>(y), ln::<true>(y)] {
                // ln is near 0 around y = 1: measure against ulp(1) there.
                worst_ln = worst_ln.max((got - want).abs() / want.abs().max(1.0));
            }
            let x: f64 = match i % 4 {
                0 => rng.random_range(-1e-6..1e-6),
                1 => rng.random_range(-0.4..0.4),
                2 => rng.random_range(-40.0..2.0),
                _ => rng.random_range(-800.0..-30.0),
            };
            let want = x.exp_m1();
            for got in [expm1::<false>(x), expm1::<true>(x)] {
                worst_em1 = worst_em1.max(((got - want) / want).abs());
            }
        }
        assert!(
            worst_ln <= 2.0 * f64::EPSILON,
            "ln: worst error {worst_ln:e}"
        );
        assert!(
            worst_em1 <= 3.0 * f64::EPSILON,
            "expm1: worst error {worst_em1:e}"
        );
        for ln in [ln::<false>, ln::<true>] {
            assert_eq!(ln(0.0), f64::NEG_INFINITY);
            assert_eq!(ln(1.0), 0.0);
            assert_eq!(ln(f64::INFINITY), f64::INFINITY);
        }
        for expm1 in [expm1::<false>, expm1::<true>] {
            assert_eq!(expm1(0.0), 0.0);
            assert_eq!(expm1(-1e300), -1.0);
            assert_eq!(expm1(f64::NEG_INFINITY), -1.0);
        }
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
        // Term lists as the evaluator pads them, (0, 0) up to a multiple of LANES; the
        // scalar sums over the real terms only. x = 0 too (the power laws' limits).
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
                let mut q: Vec<f64> = (0..len).map(|_| rng.random_range(0.0..1.5)).collect();
                let mut m: Vec<f64> = (0..len).map(|_| rng.random_range(1..40) as f64).collect();
                let floor =
                    m.iter().sum::<f64>() * params.iter().fold(1.0f64, |a, p| a.max(p.abs()));
                for x in [rng.random_range(0.01..4.0), 0.0] {
                    let (mut want, mut size) = ([0.0; 3], [0.0f64; 3]);
                    for (&q, &m) in q.iter().zip(&m) {
                        let t = sat.term_derivatives(x, q, &params);
                        for k in 0..3 {
                            want[k] += m * t[k];
                            size[k] += (m * t[k]).abs();
                        }
                    }
                    q.resize(len.next_multiple_of(LANES), 0.0);
                    m.resize(len.next_multiple_of(LANES), 0.0);
                    let got = sums(sat, &params, x, &q, &m);
                    q.truncate(len);
                    m.truncate(len);
                    for k in 0..3 {
                        let ok = if want[k].is_finite() {
                            // (floor: the rounding of hill_sigmoid's g(0) = 0, which is
                            // a difference of terms of the size of σ Σm)
                            (got[k] - want[k]).abs() <= 1e-13 * size[k] + 1e-15 * floor
                        } else {
                            got[k] == want[k]
                        };
                        assert!(ok, "{sat} len {len} x {x} k {k}: {} vs {}", got[k], want[k]);
                    }
                }
            }
        }
    }
}
