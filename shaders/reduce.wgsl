// Sums per-workgroup partials over blocks: out[k * width + j] = (s, c) with s − c the
// compensated (Kahan) sum of partials[(k * blocks + b) * width + j] over b, for each
// slot k (global_invocation_id.y) (mmm_budget::eval::gpu). The host finishes in f64.

struct ReduceDims {
    blocks: u32,
    width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> dims: ReduceDims;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<vec2<f32>>;

@compute @workgroup_size(256)
fn reduce_blocks(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let k = gid.y;
    if (j >= dims.width) {
        return;
    }
    var s = 0.0;
    var comp = 0.0;
    for (var b = 0u; b < dims.blocks; b++) {
        let y = partials[(k * dims.blocks + b) * dims.width + j] - comp;
        let t = s + y;
        comp = (t - s) - y;
        s = t;
    }
    sums[k * dims.width + j] = vec2(s, comp);
}
