// Response of every posterior draw to an allocation, with the per-cell reductions
// the solver needs (mmm_budget::eval::gpu). One invocation per (draw, group of
// cells, slot): the constant form evaluates k allocations at once, one per slot
// (workgroup_id.z), each with its own partials and responses; a workgroup holds WG consecutive draws and walks its group's cells together
// (groups are short enough that no invocation loops more than llvmpipe's 65535
// iterations, and give small posteriors more parallelism), reducing
// Σ_d u_d τ_c [r, r', r''] (constant form) or Σ_d u_d ∂R_d/∂X_tc and Σ_d u_d r_dc
// (time-varying form)
// over its draws into one partial per (workgroup, cell). f32 throughout; the host
// finishes the sums in f64.
//
// Formulas (PyMC-Marketing 0.19.2; see src/adstock.rs, src/saturation.rs,
// src/eval/mod.rs): with the adstocked unit pattern q_t = Σ_l w_l p_(t−l),
//   r = τ Σ_(t<N+L) g(x q_t),  r' = τ Σ_t q_t g'(x q_t),  r'' = τ Σ_t q_t² g''(x q_t)
// (adstock first), or r = τ W Σ_(t<N) g(x p_t) with W = Σ_l w_l (saturation first).

// Kinds, fixed per pipeline.
override ADSTOCK: u32;        // 0 geometric, 1 delayed, 2 binomial, 3 weibull_pdf, 4 weibull_cdf, 5 none
override SATURATION: u32;     // 0 logistic, 1 inverse_scaled_logistic, 2 michaelis_menten, 3 hill,
                              // 4 hill_sigmoid, 5 tanh, 6 root, 7 none
override ADSTOCK_FIRST: bool;
override NORMALIZE: bool;
override L_MAX: u32;          // L
override KERNEL: u32;         // number of weights: L, L+1 (weibull_cdf) or 1 (none)
override N_PERIODS: u32;      // N
override N_ADSTOCK: u32;      // adstock parameters per (draw, cell)
override N_SATURATION: u32;   // saturation parameters per (draw, cell)
override PACKED_F16: bool;    // parameters stored as pairs of f16 in each u32
override HISTORY: bool = false; // carry-in: each cell's scaled spend in the L periods before
                              // the window, oldest first, after the [c][t] table of `pattern`
override MOMENTS: bool = false; // the constant form's cell moments (Evaluator::cell_moments):
                              // per (block, cell) Σ r, Σ r', Σ (r − m)², Σ (r − m)(r' − m')
                              // with m, m' the block's means; R_d in slot 0 of `responses`,
                              // P_d = Σ_c a_c r_dc in slot 1, the cell weights a after x in `alloc`

override GEOMETRIC: bool = false; // every cell's pattern constant, geometric adstock first, no
                              // carry-in, N + 1 >= K: the constant form forms the weights as
                              // it goes (`geometric_terms`), without the array w
override STORE_TERMS: bool = false; // the constant form also writes each (draw, cell)'s
                              // τ_c [r, r', r''] into `terms` (slot 0 only), for
                              // `terms_partials` and `terms_responses` to weight them again

override WG: u32 = 256u;      // invocations per workgroup: a power of two, 32 to 1024
const TB: u32 = 8u;           // periods reduced together in the time-varying form
const MAX_KERNEL: u32 = 64u;
const MAX_WINDOW: u32 = 512u;
const LN_3: f32 = 1.0986122886681098;

struct Dims {
    draws: u32,            // draws in this chunk
    cells: u32,
    draw_offset: u32,      // first draw of the chunk
    block_offset: u32,     // first workgroup (block) of the chunk
    total_draws: u32,
    per_draw_weights: u32, // 0: u_d = 1/total_draws; 1: weights[d]
    width: u32,            // partial values per cell: 3, or N + 1 (time-varying)
    cells_per_group: u32,  // cells an invocation walks (workgroup_id.y picks the group)
    total_blocks: u32,     // workgroups of draws over all chunks (a slot's partials)
    groups: u32,           // cell groups (a slot's responses)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> params: array<u32>;     // chunk-local [p][c][d]
@group(0) @binding(2) var<storage, read> pattern: array<f32>;    // [c][t]: p_tc, or 1/(κ_tc s_c)
@group(0) @binding(3) var<storage, read> cell: array<vec2<f32>>; // [c]: (τ_c, 1 if p_tc is constant in t)
@group(0) @binding(4) var<storage, read> alloc: array<f32>;      // [slot][c], or [c][t]
@group(0) @binding(5) var<storage, read> weights: array<f32>;    // [D]
@group(0) @binding(6) var<storage, read_write> responses: array<f32>; // [slot][group][D]
@group(0) @binding(7) var<storage, read_write> partials: array<f32>;  // [slot][block][c][width]
// The chunk's terms τ_c [r, r', r''] of the last pass that stored them, [k][c][d]
// (chunk-local d); a 16-byte placeholder where no form stores or reads them.
@group(1) @binding(0) var<storage, read_write> terms: array<f32>;

var<private> w: array<f32, MAX_KERNEL>;
var<private> v: array<f32, MAX_WINDOW>;
var<private> sp: array<f32, 3>;
var<private> inf_bits: u32 = 0x7f800000u;
// Values to sum over the workgroup (`sum_rows`, from sums_tree.wgsl or
// sums_subgroup.wgsl, whichever the host put before this file): the three sums of
// the constant form, or TB periods of the time-varying gradient.
var<private> rows: array<f32, TB>;
override SHW: u32;            // floats of workgroup memory the sums take (the host's)

fn param(p: u32, c: u32, d: u32) -> f32 {
    let i = (p * dims.cells + c) * dims.draws + d;
    if (PACKED_F16) {
        let pair = unpack2x16float(params[i >> 1u]);
        return select(pair.x, pair.y, (i & 1u) == 1u);
    }
    return bitcast<f32>(params[i]);
}

// a^b for a >= 0, with 0^0 = 1 and 0^b = 0 for b > 0 (pow is undefined at 0).
fn pow0(a: f32, b: f32) -> f32 {
    if (a == 0.0) {
        return select(0.0, 1.0, b == 0.0);
    }
    return pow(a, b);
}

// Fills w[0..KERNEL) for draw d, cell c, normalized to sum 1 where NORMALIZE;
// returns Σ w (1 where normalized).
fn adstock_weights(c: u32, d: u32) -> f32 {
    let lmax = f32(L_MAX);
    switch ADSTOCK {
        case 0u: { // geometric: α^l
            let alpha = param(0u, c, d);
            var a = 1.0;
            for (var l = 0u; l < KERNEL; l++) {
                w[l] = a;
                a = a * alpha;
            }
        }
        case 1u: { // delayed: α^((l−θ)²)
            let alpha = param(0u, c, d);
            let theta = param(1u, c, d);
            for (var l = 0u; l < KERNEL; l++) {
                let e = (f32(l) - theta) * (f32(l) - theta);
                w[l] = pow0(alpha, e);
            }
        }
        case 2u: { // binomial: (1 − l/(L+1))^(1/α − 1)
            let e = 1.0 / param(0u, c, d) - 1.0;
            for (var l = 0u; l < KERNEL; l++) {
                w[l] = select(pow(1.0 - f32(l) / (lmax + 1.0), e), 1.0, l == 0u);
            }
        }
        case 3u: { // weibull_pdf, min-max scaled
            let lam = param(0u, c, d);
            let k = param(1u, c, d);
            var lo = 3.4e38;
            var hi = -3.4e38;
            for (var l = 0u; l < KERNEL; l++) {
                let z = f32(l + 1u) / lam;
                let pdf = k / lam * pow(z, k - 1.0) * exp(-pow(z, k));
                w[l] = pdf;
                lo = min(lo, pdf);
                hi = max(hi, pdf);
            }
            for (var l = 0u; l < KERNEL; l++) {
                w[l] = (w[l] - lo) / (hi - lo);
            }
        }
        case 4u: { // weibull_cdf: cumulative product of survival values, L+1 weights
            let lam = param(0u, c, d);
            let k = param(1u, c, d);
            w[0] = 1.0;
            for (var l = 1u; l < KERNEL; l++) {
                w[l] = w[l - 1u] * exp(-pow(f32(l) / lam, k));
            }
        }
        default: {
            w[0] = 1.0;
        }
    }
    var total = 0.0;
    for (var l = 0u; l < KERNEL; l++) {
        total += w[l];
    }
    if (NORMALIZE) {
        // One division, not one a weight.
        let inv = 1.0 / total;
        for (var l = 0u; l < KERNEL; l++) {
            w[l] = w[l] * inv;
        }
        return 1.0;
    }
    return total;
}

// The cell's saturation parameters, and the factors of [g, g', g''] that do not
// depend on the input: [g, g', g''](a) = sat_scale ⊙ shape(a), so that a cell's
// terms are summed unscaled and scaled once (`constant_form`), and the exponentials
// are exp2(sat_rate a + sat_shift) with the constants folded.
var<private> sat_scale: vec3<f32>;
var<private> sat_rate: f32;
var<private> sat_shift: f32;
var<private> sat_offset: f32;
const LOG2_E: f32 = 1.4426950408889634;

fn load_saturation(c: u32, d: u32) {
    for (var j = 0u; j < N_SATURATION; j++) {
        sp[j] = param(N_ADSTOCK + j, c, d);
    }
    sat_scale = vec3(1.0);
    switch SATURATION {
        case 0u, 1u: { // logistic: β (1 − e)/(1 + e), e = exp(−λa)
            var lam = sp[0];
            if (SATURATION == 1u) {
                lam = LN_3 / sp[0];
            }
            let beta = sp[1];
            sat_rate = -lam * LOG2_E;
            sat_scale = vec3(beta, 2.0 * beta * lam, -2.0 * beta * lam * lam);
        }
        case 2u: { // michaelis_menten: α a / (λ + a)
            let alpha = sp[0];
            let lam = sp[1];
            sat_scale = vec3(alpha, alpha * lam, -2.0 * alpha * lam);
        }
        case 4u: { // hill_sigmoid: σ/(1 + e^(−β(a−λ))) − σ/(1 + e^(βλ))
            let sigma = sp[0];
            let beta = sp[1];
            let lam = sp[2];
            sat_rate = -beta * LOG2_E;
            sat_shift = beta * lam * LOG2_E;
            sat_offset = 1.0 / (1.0 + exp(beta * lam));
            sat_scale = vec3(sigma, sigma * beta, sigma * beta * beta);
        }
        case 5u: { // tanh: b tanh(a/(b c))
            let b = sp[0];
            let cc = sp[1];
            sat_rate = -2.0 * LOG2_E / (b * cc);
            sat_scale = vec3(b, 4.0 / cc, -8.0 / (b * cc * cc));
        }
        case 7u: { // none: β a
            sat_scale = vec3(sp[0], sp[0], 0.0);
        }
        default: {}
    }
}

// +∞, made at run time (a constant expression may not overflow).
fn infinity() -> f32 {
    return bitcast<f32>(inf_bits);
}

// [g, g', g''] at a >= 0 for the cell's loaded parameters; limits at a = 0.
fn derivatives(a: f32) -> vec3<f32> {
    return sat_scale * shape(a);
}

// [g, g', g''] / sat_scale at a >= 0 (`load_saturation`'s factors taken out).
fn shape(a: f32) -> vec3<f32> {
    switch SATURATION {
        case 0u, 1u, 5u: {
            // logistic: with e = exp(−λa), (1 − e)/(1 + e) = t, g' = β (λ/2) 4e/(1 + e)²,
            // g'' = −β λ² t · 2e/(1 + e)²; tanh: e = exp(−2a/(bc)), the same t and
            // 4e/(1 + e)² = sech²: one exp and one reciprocal a term.
            let e = exp2(sat_rate * a);
            let inv = 1.0 / (1.0 + e);
            let t = (1.0 - e) * inv;
            let s2 = e * inv * inv;
            return vec3(t, s2, t * s2);
        }
        case 2u: { // michaelis_menten: g = α a/(λ + a), g' = αλ/(λ + a)², g'' = −2αλ/(λ + a)³
            let inv = 1.0 / (sp[1] + a);
            let inv2 = inv * inv;
            return vec3(a * inv, inv2, inv2 * inv);
        }
        case 3u: { // hill: β (1 − κ^s/(κ^s + a^s))
            let s = sp[0];
            let kappa = sp[1];
            let beta = sp[2];
            if (a == 0.0) {
                if (s == 1.0) {
                    return vec3(0.0, beta / kappa, -2.0 * beta / (kappa * kappa));
                }
                if (s < 1.0) {
                    return vec3(0.0, beta * infinity(), -beta * infinity());
                }
                if (s < 2.0) {
                    return vec3(0.0, 0.0, beta * infinity());
                }
                if (s == 2.0) {
                    return vec3(0.0, 0.0, 2.0 * beta / (kappa * kappa));
                }
                return vec3(0.0);
            }
            let u = pow(a / kappa, s);
            let vv = 1.0 / (1.0 + u);
            let h1 = s * u * vv * vv / a;
            let h2 = h1 * vv * (s - 1.0 - u - s * u) / a;
            return vec3(beta * (1.0 - vv), beta * h1, beta * h2);
        }
        case 4u: { // hill_sigmoid: s = 1/(1 + e^(−β(a−λ))): g/σ = s − s(0 limit), s(1 − s), s(1 − s)(1 − 2s)
            let s = 1.0 / (1.0 + exp2(sat_rate * a + sat_shift));
            let s1 = s * (1.0 - s);
            return vec3(s - sat_offset, s1, s1 * (1.0 - 2.0 * s));
        }
        case 6u: { // root: β a^α
            let alpha = sp[0];
            let beta = sp[1];
            if (a == 0.0) {
                let g1 = select(select(0.0, beta * infinity(), alpha < 1.0), beta, alpha == 1.0);
                var g2 = 0.0;
                if (alpha < 1.0) { g2 = -beta * infinity(); }
                if (alpha > 1.0 && alpha < 2.0) { g2 = beta * infinity(); }
                if (alpha == 2.0) { g2 = 2.0 * beta; }
                return vec3(0.0, g1, g2);
            }
            let g = beta * pow(a, alpha);
            return vec3(g, alpha * g / a, alpha * (alpha - 1.0) * g / (a * a));
        }
        default: { // none: β a
            return vec3(a, 1.0, 0.0);
        }
    }
}

// Carry-in (src/problem.rs, Problem::carry_in): h_t = Σ_(t < l < K) w_l z_(t−l) for
// period t of the window, z_(−j) the scaled spend j periods before it (0 from
// t = K − 1 on, and without history).
fn carry_in(c: u32, t: u32) -> f32 {
    if (!HISTORY || t + 1u >= KERNEL) {
        return 0.0;
    }
    let base = dims.cells * N_PERIODS + c * L_MAX;
    var h = 0.0;
    for (var l = t + 1u; l < KERNEL; l++) {
        let j = l - t;
        if (j <= L_MAX) {
            h += w[l] * pattern[base + L_MAX - j];
        }
    }
    return h;
}

// Saturation first: the carry-in's share of the window's response (before τ):
// Σ_(j=1..L) g(z_(−j)) Σ_(j ≤ l < K) w_l (Problem::carry_in_saturated).
fn carry_in_saturated(c: u32) -> f32 {
    if (!HISTORY) {
        return 0.0;
    }
    let base = dims.cells * N_PERIODS + c * L_MAX;
    var r = 0.0;
    for (var j = 1u; j <= L_MAX; j++) {
        var reach = 0.0;
        for (var l = j; l < KERNEL; l++) {
            reach += w[l];
        }
        if (reach != 0.0) {
            r += derivatives(pattern[base + L_MAX - j]).x * reach;
        }
    }
    return r;
}

// term(x, q) with the carry-in h added to the input: [g(xq + h), q g'(xq + h),
// q² g''(xq + h)] / sat_scale.
fn term_h(x: f32, q: f32, h: f32) -> vec3<f32> {
    if (h == 0.0) {
        return term(x, q);
    }
    let r = shape(x * q + h);
    return vec3(r.x, q * r.y, q * q * r.z);
}

// The cell's allocation x's factors of the power-law curves' terms (`term`), once a
// (draw, cell): 1/x, and log2(x/κ) (hill) or log2 x (root), so that a term takes
// (xq/κ)^s = 2^(s (log2 q + log2(x/κ))) without a division.
var<private> term_inv_x: f32;
var<private> term_log2_x: f32;

fn prepare_terms(x: f32) {
    if (x > 0.0 && (SATURATION == 3u || SATURATION == 6u)) {
        term_inv_x = 1.0 / x;
        if (SATURATION == 3u) {
            term_log2_x = log2(x / sp[1]);
        } else {
            term_log2_x = log2(x);
        }
    }
}

// [g(xq), q g'(xq), q² g''(xq)] / sat_scale, the power-law curves (whose sat_scale
// is 1) in a form that does not overflow for tiny xq (as
// Saturation::term_derivatives on the CPU), from `prepare_terms`' factors of x.
fn term(x: f32, q: f32) -> vec3<f32> {
    if (x > 0.0 && (SATURATION == 3u || SATURATION == 6u)) {
        if (q == 0.0) {
            return vec3(0.0);
        }
        let lq = log2(q) + term_log2_x;
        if (SATURATION == 6u) {
            // root: g = β (xq)^α, ∂g/∂x = α g/x, ∂²g/∂x² = (α − 1) (∂g/∂x)/x
            let alpha = sp[0];
            let g = sp[1] * exp2(alpha * lq);
            let g1 = alpha * g * term_inv_x;
            return vec3(g, g1, (alpha - 1.0) * g1 * term_inv_x);
        }
        // hill: u = (xq/κ)^s, v = 1/(1 + u): g = β (1 − v), ∂g/∂x = β s u v²/x,
        // ∂²g/∂x² = (∂g/∂x) v (s − 1 − u − s u)/x
        let s = sp[0];
        let u = exp2(s * lq);
        let vv = 1.0 / (1.0 + u);
        let g1 = sp[2] * s * u * vv * vv * term_inv_x;
        return vec3(sp[2] * (1.0 - vv), g1, g1 * vv * (s - 1.0 - u - s * u) * term_inv_x);
    }
    let r = shape(x * q);
    return vec3(r.x, q * r.y, q * q * r.z);
}

fn draw_weight(gd: u32) -> f32 {
    if (dims.per_draw_weights == 1u) {
        return weights[gd];
    }
    return 1.0 / f32(dims.total_draws);
}

// MOMENTS: cell c's partials of its block's valid draws (`count` of them), from each
// invocation's (r, r') (0 where the draw does not exist): the sums, then the sums of
// squares and products centred on the block's means, so that the host's f64 merge of
// the blocks (Chan, Golub and LeVeque) keeps a spread far below the mean.
fn block_moments(lid: u32, valid: bool, block: u32, c: u32, v: vec2<f32>, count: f32) {
    rows[0] = v.x;
    rows[1] = v.y;
    sum_rows(lid, 2u);
    let s = vec2(row_total(0u), row_total(1u));
    rows_read();
    var e = vec2(0.0);
    if (valid) {
        e = v - s / count;
    }
    rows[0] = e.x * e.x;
    rows[1] = e.x * e.y;
    sum_rows(lid, 2u);
    if (lid == 0u) {
        let i = (block * dims.cells + c) * 4u;
        partials[i] = s.x;
        partials[i + 1u] = s.y;
        partials[i + 2u] = row_total(0u);
        partials[i + 3u] = row_total(1u);
    }
    rows_read();
}

// An invocation's draw: d in the chunk, gd overall, whether it exists (the last
// workgroup may run past the chunk's draws), its weight u_d (0 when it does not),
// its workgroup's block of draws, and the cells [first, last) of its group.
struct Slot {
    d: u32,
    gd: u32,
    valid: bool,
    u: f32,
    block: u32,
    first: u32,
    last: u32,
}

fn slot(lid: u32, wid: vec3<u32>) -> Slot {
    let d = wid.x * WG + lid;
    let valid = d < dims.draws;
    let gd = dims.draw_offset + d;
    var u = 0.0;
    if (valid) {
        u = draw_weight(gd);
    }
    let first = wid.y * dims.cells_per_group;
    let last = min(dims.cells, first + dims.cells_per_group);
    return Slot(d, gd, valid, u, dims.block_offset + wid.x, first, last);
}

// GEOMETRIC: the constant form's unscaled sums for a constant pattern p and the
// weights w_l = α^l (l < K), formed as they are needed instead of held in w (their
// K registers or a private array's loads through every term): with the prefix sums
// P_t = Σ_(l ≤ t) α^l and the tail sums S_j = Σ_(j ≤ l < K) α^l,
//   Σ_(t < min(N, K)) m_t term(x, p P_t / W) + Σ_(j = 1..L) term(x, p S_j / W),
// m_t = N − t at t = K − 1 and 1 before, W = P_(K−1) where NORMALIZE (else 1): the
// terms of the general walk. The tail adds α^j = 2^(j log2 α) from the smallest up
// (as the general walk adds w_j), α = 0 giving w = (1, 0, …).
fn geometric_terms(x: f32, p: f32, alpha: f32) -> vec3<f32> {
    var total = 0.0;
    var a = 1.0;
    for (var l = 0u; l < KERNEL; l++) {
        total += a;
        a = a * alpha;
    }
    var scale = p;
    if (NORMALIZE) {
        scale = p / total;
    }
    var acc = vec3(0.0);
    var pre = 0.0;
    a = 1.0;
    for (var t = 0u; t < min(N_PERIODS, KERNEL); t++) {
        pre += a;
        a = a * alpha;
        let m = select(1.0, f32(N_PERIODS - t), t + 1u == KERNEL);
        acc += m * term(x, scale * pre);
    }
    if (alpha > 0.0) {
        let lg = log2(alpha);
        var s = 0.0;
        for (var j = KERNEL - 1u; j >= 1u; j--) {
            s += exp2(f32(j) * lg);
            if (s != 0.0) {
                acc += term(x, scale * s);
            }
        }
    }
    return acc;
}

// Σ over the workgroup's draws of u_d τ_c [r, r', r''] into cell c's partials of
// slot z (every invocation calls it; acc is 0 where the draw does not exist).
fn add_partials(lid: u32, z: u32, at: Slot, c: u32, acc: vec3<f32>) {
    rows[0] = at.u * acc.x;
    rows[1] = at.u * acc.y;
    rows[2] = at.u * acc.z;
    sum_rows(lid, 3u);
    if (lid < 3u) {
        partials[((z * dims.total_blocks + at.block) * dims.cells + c) * 3u + lid] =
            row_total(lid);
    }
    rows_read();
}

@compute @workgroup_size(WG)
fn constant_form(inv: Invocation) {
    enter(inv);
    let lid = inv.lid3.x;
    let wid = inv.wid;
    let at = slot(lid, wid);
    let window = N_PERIODS + L_MAX;
    var total = 0.0;
    var weighted = 0.0; // MOMENTS: P_d's share of this group
    let count = f32(min(WG, dims.draws - wid.x * WG));
    for (var c = at.first; c < at.last; c++) {
        var acc = vec3<f32>(0.0);
        if (at.valid) {
            let constant = cell[c].y == 1.0;
            var wsum = 1.0;
            if (!GEOMETRIC) {
                wsum = adstock_weights(c, at.d);
            }
            load_saturation(c, at.d);
            let x = alloc[wid.z * dims.cells + c];
            prepare_terms(x);
            let base = c * N_PERIODS;
            // The terms are summed without the saturation's factors (`shape`), scaled
            // once below.
            if (GEOMETRIC) {
                acc = geometric_terms(x, pattern[base], param(0u, c, at.d));
            } else if (ADSTOCK_FIRST && constant) {
                // p_t = p: q_t = p Σ_(l ≤ min(t, K−1)) w_l for t < N, constant from
                // t = K−1 on (one term weighted by its N−K+1 periods), then the tail.
                let p = pattern[base];
                var pre = 0.0;
                for (var t = 0u; t < min(N_PERIODS, KERNEL); t++) {
                    pre += w[t];
                    let m = select(1.0, f32(N_PERIODS - t), t + 1u == KERNEL);
                    let h = carry_in(c, t);
                    if (pre != 0.0 || h != 0.0) {
                        acc += m * term_h(x, p * pre, h);
                    }
                }
                if (N_PERIODS + 1u >= KERNEL) {
                    // Every tail period t = N + j − 1 (j = 1..L) sums the weights from
                    // j on: S_j = S_(j+1) + w_j, from the smallest up (O(K), not O(K·L)).
                    var s = 0.0;
                    for (var j = L_MAX; j >= 1u; j--) {
                        if (j < KERNEL) {
                            s += w[j];
                        }
                        if (s != 0.0) {
                            acc += term(x, p * s);
                        }
                    }
                } else {
                    for (var t = N_PERIODS; t < window; t++) {
                        var s = 0.0;
                        for (var l = t + 1u - N_PERIODS; l < min(t + 1u, KERNEL); l++) {
                            s += w[l];
                        }
                        let h = carry_in(c, t);
                        if (s != 0.0 || h != 0.0) {
                            acc += term_h(x, p * s, h);
                        }
                    }
                }
            } else if (ADSTOCK_FIRST) {
                for (var t = 0u; t < window; t++) {
                    var q = 0.0;
                    let lo = select(0u, t + 1u - N_PERIODS, t + 1u > N_PERIODS);
                    let hi = min(t + 1u, KERNEL);
                    for (var l = lo; l < hi; l++) {
                        q += w[l] * pattern[base + t - l];
                    }
                    let h = carry_in(c, t);
                    if (q != 0.0 || h != 0.0) {
                        acc += term_h(x, q, h);
                    }
                }
            } else if (constant) {
                // Saturation first, p_t = p: r = τ W N g(x p).
                let q = pattern[base];
                if (q != 0.0) {
                    acc = wsum * f32(N_PERIODS) * term(x, q);
                }
            } else {
                for (var t = 0u; t < N_PERIODS; t++) {
                    let q = pattern[base + t];
                    if (q != 0.0) {
                        acc += wsum * term(x, q);
                    }
                }
            }
            acc = sat_scale * acc;
            if (!ADSTOCK_FIRST) {
                acc.x += carry_in_saturated(c);
            }
            acc = cell[c].x * acc;
            total += acc.x;
        }
        if (MOMENTS) {
            weighted += alloc[dims.cells + c] * acc.x;
            block_moments(lid, at.valid, at.block, c, acc.xy, count);
            continue;
        }
        if (STORE_TERMS && at.valid) {
            let i = c * dims.draws + at.d;
            let plane = dims.cells * dims.draws;
            terms[i] = acc.x;
            terms[plane + i] = acc.y;
            terms[2u * plane + i] = acc.z;
        }
        add_partials(lid, wid.z, at, c, acc);
    }
    if (at.valid) {
        responses[(wid.z * dims.groups + wid.y) * dims.total_draws + at.gd] = total;
        if (MOMENTS) {
            responses[(dims.groups + wid.y) * dims.total_draws + at.gd] = weighted;
        }
    }
}

// From the terms the last STORE_TERMS pass wrote (slot 0), without the adstock and
// saturation: `constant_form`'s walk over the group's cells with each (draw, cell)'s
// τ_c [r, r', r''] read instead of computed (coalesced: a workgroup's draws are
// consecutive), so that the partials and responses are the bits that recomputing
// them gives.
@compute @workgroup_size(WG)
fn from_terms(inv: Invocation) {
    enter(inv);
    let lid = inv.lid3.x;
    let wid = inv.wid;
    let at = slot(lid, wid);
    let plane = dims.cells * dims.draws;
    var total = 0.0;
    for (var c = at.first; c < at.last; c++) {
        var acc = vec3<f32>(0.0);
        if (at.valid) {
            let i = c * dims.draws + at.d;
            acc = vec3(terms[i], terms[plane + i], terms[2u * plane + i]);
            total += acc.x;
        }
        add_partials(lid, 0u, at, c, acc);
    }
    if (at.valid) {
        responses[wid.y * dims.total_draws + at.gd] = total;
    }
}

@compute @workgroup_size(WG)
fn time_varying(inv: Invocation) {
    enter(inv);
    let lid = inv.lid3.x;
    let wid = inv.wid;
    let at = slot(lid, wid);
    let window = N_PERIODS + L_MAX;
    var total = 0.0;
    for (var c = at.first; c < at.last; c++) {
        let base = c * N_PERIODS;
        var wsum = 0.0;
        var rc = 0.0; // τ_c Σ_t g: the cell's contribution
        if (at.valid) {
            wsum = adstock_weights(c, at.d);
            load_saturation(c, at.d);
            if (ADSTOCK_FIRST) {
                for (var t = 0u; t < window; t++) {
                    var a = 0.0;
                    let lo = select(0u, t + 1u - N_PERIODS, t + 1u > N_PERIODS);
                    let hi = min(t + 1u, KERNEL);
                    for (var l = lo; l < hi; l++) {
                        a += w[l] * alloc[base + t - l] * pattern[base + t - l];
                    }
                    let gg = derivatives(a + carry_in(c, t));
                    rc += cell[c].x * gg.x;
                    v[t] = gg.y;
                }
            } else {
                rc += cell[c].x * carry_in_saturated(c);
                for (var t = 0u; t < N_PERIODS; t++) {
                    let gg = derivatives(alloc[base + t] * pattern[base + t]);
                    rc += cell[c].x * wsum * gg.x;
                    v[t] = gg.y;
                }
            }
        }
        for (var t0 = 0u; t0 < N_PERIODS; t0 += TB) {
            for (var k = 0u; k < TB; k++) {
                let t = t0 + k;
                var grad = 0.0;
                if (at.valid && t < N_PERIODS) {
                    if (ADSTOCK_FIRST) {
                        let hi = min(KERNEL, window - t);
                        for (var l = 0u; l < hi; l++) {
                            if (w[l] != 0.0) {
                                grad += w[l] * v[t + l];
                            }
                        }
                    } else {
                        grad = wsum * v[t];
                    }
                    grad = cell[c].x * pattern[base + t] * grad;
                }
                rows[k] = at.u * grad;
            }
            sum_rows(lid, TB);
            if (lid < TB && t0 + lid < N_PERIODS) {
                partials[(at.block * dims.cells + c) * dims.width + t0 + lid] = row_total(lid);
            }
            rows_read();
        }
        // The cell's contribution, after its N gradient values (width = N + 1).
        total += rc;
        rows[0] = at.u * rc;
        sum_rows(lid, 1u);
        if (lid == 0u) {
            partials[(at.block * dims.cells + c) * dims.width + N_PERIODS] = row_total(0u);
        }
        rows_read();
    }
    if (at.valid) {
        responses[wid.y * dims.total_draws + at.gd] = total;
    }
}
