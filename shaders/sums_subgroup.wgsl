// Sums over the workgroup from subgroup operations (adapters with wgpu's SUBGROUP
// feature; naga 30 takes them without an `enable subgroups;`), prepended to
// response.wgsl (mmm_budget::eval::gpu); the contract is
// sums_tree.wgsl's. Each subgroup adds its rows with `subgroupAdd` and its first
// invocation writes them to workgroup memory; one barrier; each reader then adds the
// subgroups' sums in subgroup order. Two halves of workgroup memory taken in turn
// make `rows_read` free: a half is written again only two calls later, after a
// barrier that every reader of the call before has passed.

struct Invocation {
    @builtin(local_invocation_id) lid3: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
    @builtin(subgroup_invocation_id) lane: u32,
}

var<private> subgroup: u32;
var<private> subgroups: u32;
var<private> lane: u32;
var<private> half: u32 = 0u;

fn enter(inv: Invocation) {
    subgroup = inv.subgroup;
    subgroups = inv.subgroups;
    lane = inv.lane;
}

// Two halves of [subgroup][TB]: SHW = 2 × TB × the most subgroups a workgroup has.
var<workgroup> shw: array<f32, SHW>;

fn sum_rows(lid: u32, n: u32) {
    half = SHW / 2u - half;
    for (var i = 0u; i < n; i++) {
        let s = subgroupAdd(rows[i]);
        if (lane == 0u) {
            shw[half + subgroup * TB + i] = s;
        }
    }
    workgroupBarrier();
}

fn row_total(i: u32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < subgroups; j++) {
        s += shw[half + j * TB + i];
    }
    return s;
}

fn rows_read() {}
