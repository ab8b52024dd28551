// Sums over the workgroup by a tree in workgroup memory (every adapter), prepended to
// response.wgsl (mmm_budget::eval::gpu). The other file of this pair,
// sums_subgroup.wgsl, gives the same functions from subgroup operations.
//
// Contract (both files): every invocation of the workgroup calls `sum_rows(lid, n)`
// with its values in rows[0..n]; afterwards `row_total(i)` is Σ over the workgroup's
// invocations of rows[i], the same value for each of them, until `rows_read()`, which
// every invocation calls before the next `sum_rows`.

// The entry points' inputs.
struct Invocation {
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
}

fn enter(inv: Invocation) {}

// [row][WG]: SHW = WG × the most rows an entry point sums at once.
var<workgroup> shw: array<f32, SHW>;

fn sum_rows(lid: u32, n: u32) {
    for (var i = 0u; i < n; i++) {
        shw[i * WG + lid] = rows[i];
    }
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        workgroupBarrier();
        if (lid < stride) {
            for (var i = 0u; i < n; i++) {
                shw[i * WG + lid] += shw[i * WG + lid + stride];
            }
        }
    }
    workgroupBarrier();
}

fn row_total(i: u32) -> f32 {
    return shw[i * WG];
}

fn rows_read() {
    workgroupBarrier();
}
