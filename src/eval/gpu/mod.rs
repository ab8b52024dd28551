//! The GPU evaluator: WGSL compute shaders on wgpu (shaders/response.wgsl,
//! shaders/reduce.wgsl). Every wgpu call of the crate lives in this module.
//!
//! Parameters are uploaded once per problem as f32 (or packed f16 pairs), laid out
//! `[parameter][cell][draw]` so that neighbouring invocations (draws) read
//! neighbouring words. Posteriors larger than one storage binding are split into
//! chunks of draws sized from the adapter's limits. Each evaluation uploads the
//! allocation (n or n·N floats) and the draw weights (D floats, when not uniform),
//! runs one pass per chunk (a 2-D grid: blocks of draws × groups of cells) and two
//! reduction passes (over blocks for the per-cell sums, over cell groups for the
//! responses), and reads back 2·D + 2·width·n floats, which the host finishes in f64.
//! [`Evaluator::evaluate_many`] runs k allocations of the constant form as k slots of
//! the same passes (the grids' third dimension), with one upload and one read-back.
//! [`Evaluator::cell_moments`] runs the constant form with `MOMENTS` (each workgroup's
//! per-cell sums and centred sums, read back per block and merged on the host).

mod context;

pub use context::GpuContext;

use super::{
    CellMoments, DrawWeights, Evaluation, Evaluator, MomentSum, TimeVaryingEvaluation, check_len,
    check_many, check_weights,
};
use crate::adstock::AdstockKind;
use crate::error::Result;
use crate::problem::{Problem, check_allocation};
use crate::saturation::Saturation;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// The response and derivative kernels, after one of the two files of sums over a
/// workgroup ([`SUMS_TREE_WGSL`] or [`SUMS_SUBGROUP_WGSL`]).
pub const RESPONSE_WGSL: &str = include_str!("../../../shaders/response.wgsl");
/// Sums over a workgroup by a tree in workgroup memory (every adapter).
pub const SUMS_TREE_WGSL: &str = include_str!("../../../shaders/sums_tree.wgsl");
/// Sums over a workgroup from subgroup operations (adapters with subgroups).
pub const SUMS_SUBGROUP_WGSL: &str = include_str!("../../../shaders/sums_subgroup.wgsl");
/// The block reduction kernel.
pub const REDUCE_WGSL: &str = include_str!("../../../shaders/reduce.wgsl");

/// Invocations per workgroup of the reduction kernel (reduce.wgsl), and of the
/// response kernels unless [`GpuOptions::workgroup_size`] says otherwise.
const WG: u64 = 256;
/// The workgroup sizes the response kernels take (a power of two: the reduction
/// trees halve), those above 256 where the adapter's limits allow them.
pub const WORKGROUP_SIZES: [u32; 6] = [32, 64, 128, 256, 512, 1024];
/// Periods of the time-varying gradient summed together (`TB` in response.wgsl): the
/// most rows a kernel sums over its workgroup at once.
const TB: u64 = 8;
/// Most allocations [`Evaluator::evaluate_many`] runs in one pass (slots); more are
/// run in several.
const MAX_SLOTS: usize = 32;
/// Most device bytes the slots' partial sums and responses may take together (beyond
/// one slot's), so that a batch never needs much more memory than the evaluator had.
const SLOT_BYTES: u64 = 256 << 20;
/// Largest kernel (l_max + 1) and window (N + l_max) the shaders hold per invocation.
const MAX_KERNEL: usize = 64;
const MAX_WINDOW: usize = 512;

/// Options of the GPU evaluator.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GpuOptions {
    /// Store the posterior parameters as f16 (half the memory; about 3 significant
    /// digits per parameter, see the README for the measured effect on the objective).
    pub f16_parameters: bool,
    /// Cap on the bytes of one parameter chunk (default: the adapter's storage-binding
    /// and buffer limits). Tests use it to force several chunks.
    pub max_chunk_bytes: Option<u64>,
    /// Invocations (draws) per workgroup of the response kernels, one of
    /// [`WORKGROUP_SIZES`] within the adapter's limits (default 256): a tuning knob
    /// for `mmm-budget bench --workgroup`.
    pub workgroup_size: Option<u32>,
    /// Sum over a workgroup by a tree in workgroup memory, log2(workgroup) barriers a
    /// sum, even where the adapter has subgroup operations (default `false`: there,
    /// each subgroup adds its values and one barrier joins the subgroups'). Results
    /// agree to f32 rounding (the order of the additions differs).
    pub tree_sums: bool,
    /// Which adapter, by its index in [`GpuContext::adapters`] (hardware by PCI bus
    /// id, then software); `None`: the first high-performance adapter.
    pub adapter: Option<usize>,
    /// Several adapters (indices as for `adapter`; one index twice: two logical
    /// devices on one adapter): the draws split over them, a
    /// [`crate::ShardedEvaluator`]. Empty or one: a single device.
    pub adapters: Vec<usize>,
    /// Recompute every (draw, cell) in a pass at the allocation of the pass before,
    /// instead of weighting the terms that pass stored on the device (default
    /// `false`: once a weighted pass follows a pass at the same allocation, as the
    /// quantile-based utilities' gradients do, each pass stores its terms, 12 bytes a
    /// draw and cell, where they take at most twice the parameters' bytes and fit a
    /// binding a chunk). The results are the same bits either way.
    pub recompute_weighted_passes: bool,
    /// Compile the shaders with wgpu's loop bounding (a counter in every loop that
    /// breaks it after 2⁶⁴ iterations, against loops that would not end), which hides
    /// the loops' trip counts from the driver's compiler (default `false`: every loop
    /// in shaders/ ends by its own condition). A tuning knob for `mmm-budget bench
    /// --bounded-loops`; the results are the same bits.
    pub bounded_loops: bool,
    /// Walk held adstock weights in the constant form also where the adstock is
    /// geometric (default `false`: there the weights α^l are formed as they are
    /// needed, without the array). A tuning knob for `mmm-budget bench
    /// --general-walk`; results agree to f32 rounding.
    pub general_walk: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Dims {
    draws: u32,
    cells: u32,
    draw_offset: u32,
    block_offset: u32,
    total_draws: u32,
    per_draw_weights: u32,
    width: u32,
    cells_per_group: u32,
    total_blocks: u32,
    groups: u32,
    pad0: u32,
    pad1: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceDims {
    blocks: u32,
    width: u32,
    pad0: u32,
    pad1: u32,
}

/// Values per slot (allocation) of one run: `[slot][i]`.
type PerSlot = Vec<Vec<f64>>;

/// One chunk of draws with its parameters.
struct Chunk {
    draws: u32,
    draw_offset: u32,
    block_offset: u32,
    blocks: u32,
    dims: wgpu::Buffer,
    params: wgpu::Buffer,
}

/// The buffers and bind groups of one kernel form: constant allocations (width 3:
/// r, r', r'') or time-varying ones (width N), so that the larger partial sums of the
/// time-varying form exist only once it is used.
struct Stage {
    binds: Vec<wgpu::BindGroup>,
    reduce_bind: wgpu::BindGroup,
    sums: wgpu::Buffer,
    read_sums: wgpu::Buffer,
    bytes: u64,
}

/// The cell moments' pass ([`Evaluator::cell_moments`]), built on first use: its
/// pipeline (the constant form with `MOMENTS`), its own allocation (x, then the cell
/// weights), responses (R_d and P_d: two slots) and per-(block, cell) partials, read
/// back whole and merged on the host.
struct MomentStage {
    pipeline: wgpu::ComputePipeline,
    binds: Vec<wgpu::BindGroup>,
    alloc: wgpu::Buffer,
    response_bind: wgpu::BindGroup,
    response_sums: wgpu::Buffer,
    read_responses: wgpu::Buffer,
    partials: wgpu::Buffer,
    read_partials: wgpu::Buffer,
}

/// Each (draw, cell)'s τ_c [r, r', r''] of the last constant-form pass, kept on the
/// device so that a pass at the same allocation with other draw weights only weights
/// and sums them (`from_terms`: the constant form's walk and sums, each term read
/// instead of computed), the responses and sums bit for bit what recomputing gives.
struct Terms {
    store_pipeline: wgpu::ComputePipeline,
    from_terms_pipeline: wgpu::ComputePipeline,
    /// Group 1 a chunk: its terms buffer.
    binds: Vec<wgpu::BindGroup>,
    /// The allocation whose terms the buffers hold (none until a pass stores them).
    x: Option<Vec<f64>>,
}

/// Per-problem buffers every stage binds.
struct Shared {
    layout: wgpu::BindGroupLayout,
    /// Group 1 of the response kernels: the stored terms.
    terms_layout: wgpu::BindGroupLayout,
    /// Group 1 where no terms are stored or read: a placeholder buffer.
    no_terms: wgpu::BindGroup,
    reduce_layout: wgpu::BindGroupLayout,
    reduce_dims: wgpu::Buffer,
    pattern: wgpu::Buffer,
    input_scale: wgpu::Buffer,
    cells: wgpu::Buffer,
    alloc: wgpu::Buffer,
    weights: wgpu::Buffer,
    responses: wgpu::Buffer,
}

/// Evaluates every draw on a GPU (f32 on the device, sums finished in f64).
///
/// ```no_run
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DEMO, 42);
/// let problem = Problem::new(&model, &scenario)?;
/// let mut ev = GpuEvaluator::new(&problem, &GpuOptions::default())?;
/// let mut out = Evaluation::new(ev.num_draws(), ev.num_cells());
/// ev.evaluate(&problem.uniform_allocation(), DrawWeights::Uniform, &mut out)?;
/// println!("{} on {}", problem.utility.value(&out.responses, &problem.uniform_allocation()), ev.describe());
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub struct GpuEvaluator {
    ctx: Arc<GpuContext>,
    num_draws: usize,
    num_cells: usize,
    num_periods: usize,
    f16: bool,
    /// Invocations per workgroup of the response kernels.
    wg: u64,
    chunks: Vec<Chunk>,
    total_blocks: u32,
    constant_pipeline: wgpu::ComputePipeline,
    /// Built on first use: the solver never needs it.
    varying_pipeline: Option<wgpu::ComputePipeline>,
    response_module: wgpu::ShaderModule,
    /// How the response kernels sum over a workgroup.
    sums: Sums,
    constants: Vec<(&'static str, f64)>,
    reduce_pipeline: wgpu::ComputePipeline,
    shared: Shared,
    constant_stage: Stage,
    /// Built on first use, with `varying_pipeline`.
    varying_stage: Option<Stage>,
    /// Built on first use: only the diversification ratio needs it.
    moment_stage: Option<MomentStage>,
    /// Cells per invocation, and the number of cell groups (dispatch y).
    cells_per_group: u32,
    groups: u32,
    response_dims: wgpu::Buffer,
    response_bind: wgpu::BindGroup,
    response_sums: wgpu::Buffer,
    read_responses: wgpu::Buffer,
    /// Parameter bytes on the device.
    parameter_bytes: u64,
    /// Bytes of all buffers on the device.
    device_bytes: u64,
    /// Allocations the constant form's buffers hold (slots), and the most they may.
    slots: usize,
    max_slots: usize,
    /// The optimized cells, for errors.
    cells: Vec<crate::model::CellInfo>,
    /// Stored terms, from the first weighted pass at the allocation of the pass
    /// before (unless `recompute_weighted_passes`, or they do not fit).
    terms: Option<Terms>,
    /// Whether terms may still be stored.
    may_store_terms: bool,
    /// `GpuOptions::recompute_weighted_passes`.
    recompute: bool,
    /// The kernel's tuning knobs that show in `describe`: `GpuOptions::bounded_loops`
    /// and `general_walk`.
    knobs: (bool, bool),
    /// The allocation of the last single constant-form pass.
    last_x: Option<Vec<f64>>,
    /// Passes served from stored terms.
    term_passes: u64,
}

/// How the response kernels sum a value of each invocation over the workgroup.
#[derive(Clone, Copy, Debug)]
struct Sums {
    /// From subgroup operations: the most subgroups a workgroup has (its size over
    /// the adapter's smallest subgroup); `None`: by a tree in workgroup memory.
    subgroups: Option<u64>,
}

impl Sums {
    /// The response kernels' source: the sums' file, then response.wgsl.
    fn source(&self) -> String {
        let sums = if self.subgroups.is_some() {
            SUMS_SUBGROUP_WGSL
        } else {
            SUMS_TREE_WGSL
        };
        format!("{sums}\n{RESPONSE_WGSL}")
    }

    /// Floats of workgroup memory (`SHW`) for sums of up to `rows` rows at once by
    /// `wg` invocations: a row of `wg` values each for the tree, two halves of
    /// [subgroup][TB] sums for subgroups.
    fn floats(&self, wg: u64, rows: u64) -> u64 {
        match self.subgroups {
            Some(s) => 2 * TB * s,
            None => rows * wg,
        }
    }
}

fn adstock_code(k: AdstockKind) -> u32 {
    match k {
        AdstockKind::Geometric => 0,
        AdstockKind::Delayed => 1,
        AdstockKind::Binomial => 2,
        AdstockKind::WeibullPdf => 3,
        AdstockKind::WeibullCdf => 4,
        AdstockKind::None => 5,
    }
}

fn saturation_code(s: Saturation) -> u32 {
    match s {
        Saturation::Logistic => 0,
        Saturation::InverseScaledLogistic => 1,
        Saturation::MichaelisMenten => 2,
        Saturation::Hill => 3,
        Saturation::HillSigmoid => 4,
        Saturation::Tanh => 5,
        Saturation::Root => 6,
        Saturation::None => 7,
    }
}

impl GpuEvaluator {
    /// An evaluator on a new device (`options.adapter`, or the first high-performance
    /// adapter).
    pub fn new(problem: &Problem, options: &GpuOptions) -> Result<Self> {
        Self::with_context(
            Arc::new(GpuContext::with_adapter(options.adapter)?),
            problem,
            options,
        )
    }

    /// An evaluator on an existing device (share one device among evaluators).
    pub fn with_context(
        ctx: Arc<GpuContext>,
        problem: &Problem,
        options: &GpuOptions,
    ) -> Result<Self> {
        let (nd, n, np) = (
            problem.num_draws(),
            problem.num_cells(),
            problem.num_periods,
        );
        let kernel = problem.adstock.kernel_len();
        let window = np + problem.adstock.l_max;
        if kernel > MAX_KERNEL || window > MAX_WINDOW {
            return Err(ctx.error(format!(
                "the kernels hold at most {MAX_KERNEL} adstock weights and {MAX_WINDOW} periods plus carry-over; this problem has {kernel} and {window}"
            )));
        }
        let na = problem.adstock.kind.parameters().len();
        let ns = problem.saturation.parameters().len();
        let np_total = (na + ns) as u64;
        let limits = ctx.limits();
        let f16 = options.f16_parameters;
        let bytes_per_value: u64 = if f16 { 2 } else { 4 };
        let cap = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size)
            .min(options.max_chunk_bytes.unwrap_or(u64::MAX));
        let wg = match options.workgroup_size {
            None => WG,
            Some(v) if WORKGROUP_SIZES.contains(&v) => v as u64,
            Some(v) => {
                return Err(crate::error::Error::invalid(
                    "GPU options",
                    "workgroup_size",
                    v,
                    format!("one of {WORKGROUP_SIZES:?}"),
                ));
            }
        };
        let sums = Sums {
            subgroups: ctx
                .subgroup_min_size()
                .filter(|_| !options.tree_sums)
                .map(|s| wg.div_ceil(s as u64)),
        };
        let most = (limits.max_compute_invocations_per_workgroup as u64)
            .min(limits.max_compute_workgroup_size_x as u64);
        let memory = limits.max_compute_workgroup_storage_size as u64;
        if wg > most || 4 * sums.floats(wg, TB) > memory {
            return Err(crate::error::Error::invalid(
                "GPU options",
                "workgroup_size",
                wg,
                format!(
                    "at most {most} invocations and {memory} bytes of workgroup memory on {}",
                    ctx.adapter_name()
                ),
            ));
        }
        // Draws per chunk: a multiple of wg whose parameters fit in `cap`.
        let per_draw = np_total * n as u64 * bytes_per_value;
        let mut chunk_draws = (cap / per_draw.max(1)) / wg * wg;
        if chunk_draws == 0 {
            return Err(ctx.error(format!(
                "{wg} draws of {n} cells need {} bytes of parameters, above the device's binding limit of {cap} bytes",
                per_draw * wg
            )));
        }
        chunk_draws = chunk_draws.min((nd as u64).div_ceil(wg) * wg);
        let scope = ctx.scope();

        let device = ctx.device();
        let mut checks = wgpu::ShaderRuntimeChecks::checked();
        checks.force_loop_bounding = options.bounded_loops;
        let module = |label: &str, src: &str| {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            };
            // SAFETY: only loop bounding may be off (bounds checks stay on), which
            // asks that no loop of the shader run forever: every loop in shaders/
            // counts up to a bound (an override or a `dims` field) or down to 1, and
            // none changes its counter in its body.
            unsafe { device.create_shader_module_trusted(desc, checks) }
        };
        let response_module = module("response.wgsl", &sums.source());
        let reduce_module = module("reduce.wgsl", REDUCE_WGSL);
        // Whether each cell's unit pattern is the same in every period.
        let constant: Vec<bool> = (0..n)
            .map(|c| {
                let p = problem.pattern_of(c);
                p.iter().all(|v| *v == p[0])
            })
            .collect();
        // The constant form's weights formed on the fly (`geometric_terms`): geometric
        // adstock first, every pattern constant, no carry-in, N + 1 ≥ K.
        let geometric = !options.general_walk
            && problem.adstock.kind == AdstockKind::Geometric
            && problem.adstock_first
            && problem.history.is_empty()
            && np + 1 >= kernel
            && constant.iter().all(|c| *c);
        let constants: Vec<(&str, f64)> = vec![
            ("ADSTOCK", adstock_code(problem.adstock.kind) as f64),
            ("SATURATION", saturation_code(problem.saturation) as f64),
            (
                "ADSTOCK_FIRST",
                if problem.adstock_first { 1.0 } else { 0.0 },
            ),
            (
                "NORMALIZE",
                if problem.adstock.normalize { 1.0 } else { 0.0 },
            ),
            ("L_MAX", problem.adstock.l_max as f64),
            ("KERNEL", kernel as f64),
            ("N_PERIODS", np as f64),
            ("N_ADSTOCK", na as f64),
            ("N_SATURATION", ns as f64),
            ("PACKED_F16", if f16 { 1.0 } else { 0.0 }),
            (
                "HISTORY",
                if problem.history.is_empty() { 0.0 } else { 1.0 },
            ),
            ("GEOMETRIC", if geometric { 1.0 } else { 0.0 }),
            ("WG", wg as f64),
            // The constant form's sums: three rows at once (the time-varying
            // pipeline sets TB).
            ("SHW", sums.floats(wg, 3) as f64),
        ];
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let uniform = |binding: u32| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("response"),
            entries: &[
                uniform(0),
                storage(1, true),
                storage(2, true),
                storage(3, true),
                storage(4, true),
                storage(5, true),
                storage(6, false),
                storage(7, false),
            ],
        });
        let terms_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("terms"),
            entries: &[storage(0, false)],
        });
        let reduce_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("reduce"),
            entries: &[uniform(0), storage(1, true), storage(2, false)],
        });
        let constant_pipeline = compute_pipeline(
            device,
            &[&layout, &terms_layout],
            &response_module,
            "constant_form",
            &constants,
        );
        let reduce_pipeline = compute_pipeline(
            device,
            &[&reduce_layout],
            &reduce_module,
            "reduce_blocks",
            &[],
        );

        // Per-problem data.
        let f32s = |v: &[f64]| -> Vec<f32> { v.iter().map(|&x| x as f32).collect() };
        // Every buffer's bytes, for the memory target (≤ 1.2 × the parameters).
        let allocated = std::cell::Cell::new(0u64);
        let init = |label: &str, contents: &[u8], usage: wgpu::BufferUsages| {
            allocated.set(allocated.get() + contents.len() as u64);
            device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage,
            })
        };
        let storage_ro = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        // Both tables carry the carry-in after their [c][t] values (the shader reads
        // it from whichever the form binds).
        let with_history = |table: &[f64]| {
            let mut v = f32s(table);
            v.extend(f32s(&problem.history));
            v
        };
        let pattern = init(
            "pattern",
            bytemuck::cast_slice(&with_history(&problem.pattern)),
            storage_ro,
        );
        let input_scale = init(
            "input scale",
            bytemuck::cast_slice(&with_history(&problem.input_scale)),
            storage_ro,
        );
        // (τ_c, 1 when the cell's unit pattern is the same in every period).
        let cell_data: Vec<f32> = (0..n)
            .flat_map(|c| {
                [
                    problem.target_scale[c] as f32,
                    if constant[c] { 1.0 } else { 0.0 },
                ]
            })
            .collect();
        let tau = init("cells", bytemuck::cast_slice(&cell_data), storage_ro);
        let empty = |label: &str, bytes: u64, usage: wgpu::BufferUsages| {
            allocated.set(allocated.get() + bytes.max(16));
            new_buffer(device, label, bytes, usage)
        };
        let alloc = empty("allocation", (n * np) as u64 * 4, storage_ro);
        let weights = empty("draw weights", nd as u64 * 4, storage_ro);
        // Cells per invocation: llvmpipe stops any invocation after 65535 loop
        // iterations in all, so keep each well below that (a generous per-cell count).
        let per_cell = 2 * np * kernel + 10 * np + window + 3 * kernel + 32;
        let cells_per_group = (30_000 / per_cell).clamp(1, n) as u32;
        let groups = (n as u32).div_ceil(cells_per_group);
        let responses = empty(
            "responses",
            groups as u64 * nd as u64 * 4,
            wgpu::BufferUsages::STORAGE,
        );
        let response_sums = empty(
            "response sums",
            nd as u64 * 8,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let total_blocks = (nd as u64).div_ceil(wg) as u32;
        // A slot's partial sums and responses; as many slots as fit in a binding and
        // in SLOT_BYTES beyond the first.
        let slot_bytes = total_blocks as u64 * 3 * n as u64 * 4 + groups as u64 * nd as u64 * 4;
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_slots = (MAX_SLOTS as u64)
            .min(binding / (total_blocks as u64 * 3 * n as u64 * 4).max(1))
            .min(binding / (groups as u64 * nd as u64 * 4).max(1))
            .min(1 + SLOT_BYTES / slot_bytes.max(1))
            .min(limits.max_compute_workgroups_per_dimension as u64)
            .max(1) as usize;
        let read = |label: &str, bytes: u64| {
            empty(
                label,
                bytes,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )
        };
        let read_responses = read("read responses", nd as u64 * 8);
        let reduce_dims = empty(
            "reduce dims",
            std::mem::size_of::<ReduceDims>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );

        let response_dims = empty(
            "response reduce dims",
            std::mem::size_of::<ReduceDims>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let response_bind = bind_group(
            device,
            "reduce responses",
            &reduce_layout,
            &[&response_dims, &responses, &response_sums],
        );

        // Parameter chunks, [p][c][d] within each.
        let mut chunks = vec![];
        let mut parameter_bytes = 0;
        let mut d0 = 0usize;
        while d0 < nd {
            let d1 = (d0 + chunk_draws as usize).min(nd);
            let cd = d1 - d0;
            // The words the device reads, [p][c][d] over the chunk's draws: f32 bits,
            // or f16 pairs of consecutive values. f32 tables are read as they are
            // (never through f64). Written in pieces of PIECE_WORDS, each built in
            // parallel and uploaded before the next is built, so the host holds one
            // piece beside the problem, not a copy of the chunk.
            let value = |i: usize| -> f32 {
                let (kc, d) = (i / cd, d0 + i % cd);
                let (k, c) = (kc / n, kc % n);
                if k < na {
                    problem.adstock_params.get_f32((d * n + c) * na + k)
                } else {
                    problem.saturation_params.get_f32((d * n + c) * ns + k - na)
                }
            };
            let values = (na + ns) * n * cd;
            let total_words = if f16 { values.div_ceil(2) } else { values }.max(1);
            parameter_bytes += total_words as u64 * 4;
            let params = empty("parameters", total_words as u64 * 4, storage_ro);
            // f16 bits of value i (0 past the last: the odd count's padding).
            let f16_bits = |i: usize| {
                if i < values {
                    half::f16::from_f32(value(i)).to_bits() as u32
                } else {
                    0
                }
            };
            let mut piece = vec![0u32; PIECE_WORDS.min(total_words)];
            for first in (0..total_words).step_by(PIECE_WORDS) {
                let words = &mut piece[..PIECE_WORDS.min(total_words - first)];
                use rayon::prelude::*;
                words
                    .par_chunks_mut(4096)
                    .enumerate()
                    .for_each(|(j, part)| {
                        for (i, word) in part.iter_mut().enumerate() {
                            let w = first + j * 4096 + i;
                            *word = if f16 {
                                f16_bits(2 * w) | (f16_bits(2 * w + 1) << 16)
                            } else if w < values {
                                value(w).to_bits()
                            } else {
                                0
                            };
                        }
                    });
                ctx.queue()
                    .write_buffer(&params, first as u64 * 4, bytemuck::cast_slice(words));
                ctx.queue().submit([]);
                device
                    .poll(wgpu::PollType::Wait {
                        submission_index: None,
                        timeout: None,
                    })
                    .map_err(|e| ctx.error(format!("uploading the parameters: {e}")))?;
            }
            let block_offset = (d0 as u64 / wg) as u32;
            let blocks = (cd as u64).div_ceil(wg) as u32;
            let dims = empty(
                "dims",
                std::mem::size_of::<Dims>() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            chunks.push(Chunk {
                draws: cd as u32,
                draw_offset: d0 as u32,
                block_offset,
                blocks,
                dims,
                params,
            });
            d0 = d1;
        }
        let placeholder = empty("no terms", 16, wgpu::BufferUsages::STORAGE);
        let no_terms = bind_group(device, "no terms", &terms_layout, &[&placeholder]);
        let shared = Shared {
            layout,
            terms_layout,
            no_terms,
            reduce_layout,
            reduce_dims,
            pattern,
            input_scale,
            cells: tau,
            alloc,
            weights,
            responses,
        };
        let constant_stage = build_stage(
            device,
            &shared,
            &chunks,
            total_blocks,
            3 * n,
            1,
            Form::Constant,
        );
        ctx.check(scope)?;
        let device_bytes = allocated.get() + constant_stage.bytes;
        Ok(GpuEvaluator {
            ctx,
            num_draws: nd,
            num_cells: n,
            num_periods: np,
            f16,
            wg,
            chunks,
            total_blocks,
            constant_pipeline,
            varying_pipeline: None,
            response_module,
            sums,
            constants,
            reduce_pipeline,
            shared,
            constant_stage,
            varying_stage: None,
            moment_stage: None,
            cells_per_group,
            groups,
            response_dims,
            response_bind,
            response_sums,
            read_responses,
            parameter_bytes,
            device_bytes,
            slots: 1,
            max_slots,
            cells: problem.cells.clone(),
            terms: None,
            may_store_terms: !options.recompute_weighted_passes,
            recompute: options.recompute_weighted_passes,
            knobs: (options.bounded_loops, options.general_walk),
            last_x: None,
            term_passes: 0,
        })
    }

    /// The number of parameter chunks (1 unless the posterior exceeds a binding).
    pub fn num_chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Bytes of posterior parameters on the device.
    pub fn parameter_bytes(&self) -> u64 {
        self.parameter_bytes
    }

    /// Bytes of all the evaluator's buffers: parameters, per-problem data, partial
    /// sums and read-back staging.
    pub fn device_bytes(&self) -> u64 {
        self.device_bytes
    }

    /// Makes room for `k` allocations of the constant form (at most `max_slots`):
    /// the allocation, response and partial-sum buffers are made again for k slots
    /// (the time-varying stage, which binds the first two, is rebuilt on its next use).
    fn grow(&mut self, k: usize) {
        if k <= self.slots {
            return;
        }
        let k = k.min(self.max_slots);
        let (n, nd) = (self.num_cells, self.num_draws);
        let device = self.ctx.device();
        let buffer = |label: &str, bytes: u64, usage| new_buffer(device, label, bytes, usage);
        let old = self.shared.alloc.size()
            + self.shared.responses.size()
            + self.response_sums.size()
            + self.read_responses.size()
            + self.constant_stage.bytes
            + self.varying_stage.as_ref().map_or(0, |s| s.bytes);
        self.shared.alloc = buffer(
            "allocation",
            (n * self.num_periods).max(k * n) as u64 * 4,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        self.shared.responses = buffer(
            "responses",
            k as u64 * self.groups as u64 * nd as u64 * 4,
            wgpu::BufferUsages::STORAGE,
        );
        self.response_sums = buffer(
            "response sums",
            k as u64 * nd as u64 * 8,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        self.read_responses = buffer(
            "read responses",
            k as u64 * nd as u64 * 8,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        self.response_bind = bind_group(
            device,
            "reduce responses",
            &self.shared.reduce_layout,
            &[
                &self.response_dims,
                &self.shared.responses,
                &self.response_sums,
            ],
        );
        self.constant_stage = build_stage(
            device,
            &self.shared,
            &self.chunks,
            self.total_blocks,
            3 * n,
            k,
            Form::Constant,
        );
        self.varying_stage = None;
        self.device_bytes = self.device_bytes - old
            + self.shared.alloc.size()
            + self.shared.responses.size()
            + self.response_sums.size()
            + self.read_responses.size()
            + self.constant_stage.bytes;
        self.slots = k;
    }

    /// Runs one evaluation of the allocations `xs` in the `form` (the constant form:
    /// up to `slots` of them; the time-varying form: one); returns each one's
    /// responses and, per cell × width entry, its f64 sums over draws.
    fn run(
        &mut self,
        xs: &[&[f64]],
        weights: DrawWeights<'_>,
        form: Form,
    ) -> Result<(PerSlot, PerSlot)> {
        let varying = form == Form::TimeVarying;
        let k = xs.len();
        debug_assert!(k >= 1 && k <= self.slots && (!varying || k == 1));
        let n = self.num_cells;
        let width = if varying { self.num_periods + 1 } else { 3 };
        // One constant-form allocation: from its stored terms where they are this x's,
        // else storing them once a weighted pass has followed a pass at the same x.
        let single = (!varying && k == 1).then(|| xs[0]);
        if let Some(x) = single {
            let again = self.last_x.as_deref() == Some(x);
            if again && matches!(weights, DrawWeights::PerDraw(_)) {
                self.store_terms()?;
            }
        }
        let queue = self.ctx.queue();
        let scope = self.ctx.scope();
        if varying && self.varying_pipeline.is_none() {
            let mut constants = self.constants.clone();
            constants.retain(|(name, _)| *name != "SHW");
            constants.push(("SHW", self.sums.floats(self.wg, TB) as f64));
            self.varying_pipeline = Some(compute_pipeline(
                self.ctx.device(),
                &[&self.shared.layout, &self.shared.terms_layout],
                &self.response_module,
                "time_varying",
                &constants,
            ));
        }
        if varying && self.varying_stage.is_none() {
            let stage = build_stage(
                self.ctx.device(),
                &self.shared,
                &self.chunks,
                self.total_blocks,
                n * (self.num_periods + 1),
                1,
                Form::TimeVarying,
            );
            self.device_bytes += stage.bytes;
            self.varying_stage = Some(stage);
        }
        // Overwritten by this pass: no allocation's terms until it is done.
        if let (Some(x), Some(t)) = (single, &mut self.terms)
            && t.x.as_deref() != Some(x)
        {
            t.x = None;
        }
        let terms = match (single, &self.terms) {
            (Some(x), Some(t)) => Some((t.x.as_deref() == Some(x), t)),
            _ => None,
        };
        let from_terms = terms.is_some_and(|(held, _)| held);
        self.last_x = single.map(<[f64]>::to_vec);
        let x32: Vec<f32> = xs
            .iter()
            .flat_map(|x| x.iter().map(|&v| v as f32))
            .collect();
        queue.write_buffer(&self.shared.alloc, 0, bytemuck::cast_slice(&x32));
        let per_draw = match weights {
            DrawWeights::Uniform => 0,
            DrawWeights::PerDraw(u) => {
                let u32s: Vec<f32> = u.iter().map(|&v| v as f32).collect();
                queue.write_buffer(&self.shared.weights, 0, bytemuck::cast_slice(&u32s));
                1
            }
        };
        self.write_dims(per_draw, width as u32);
        let rd = ReduceDims {
            blocks: self.total_blocks,
            width: (n * width) as u32,
            pad0: 0,
            pad1: 0,
        };
        queue.write_buffer(&self.shared.reduce_dims, 0, bytemuck::bytes_of(&rd));
        let device = self.ctx.device();
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("evaluate"),
        });
        let slots = k as u32;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("response"),
                timestamp_writes: None,
            });
            // The constant form: recomputed, recomputed and stored, or weighted
            // from the stored terms.
            let (response, stage) = match (&self.varying_pipeline, &self.varying_stage, varying) {
                (Some(p), Some(st), true) => (p, st),
                _ => match terms {
                    Some((false, t)) => (&t.store_pipeline, &self.constant_stage),
                    Some((true, t)) => (&t.from_terms_pipeline, &self.constant_stage),
                    None => (&self.constant_pipeline, &self.constant_stage),
                },
            };
            pass.set_pipeline(response);
            for (i, (chunk, bind)) in self.chunks.iter().zip(&stage.binds).enumerate() {
                pass.set_bind_group(0, bind, &[]);
                let group1 = terms.map_or(&self.shared.no_terms, |(_, t)| &t.binds[i]);
                pass.set_bind_group(1, group1, &[]);
                pass.dispatch_workgroups(chunk.blocks, self.groups, slots);
            }
            pass.set_pipeline(&self.reduce_pipeline);
            pass.set_bind_group(0, &stage.reduce_bind, &[]);
            pass.dispatch_workgroups(((n * width) as u64).div_ceil(WG) as u32, slots, 1);
            pass.set_bind_group(0, &self.response_bind, &[]);
            pass.dispatch_workgroups((self.num_draws as u64).div_ceil(WG) as u32, slots, 1);
        }
        let stage = if varying {
            self.varying_stage.as_ref().unwrap_or(&self.constant_stage)
        } else {
            &self.constant_stage
        };
        let resp_bytes = k as u64 * self.num_draws as u64 * 8;
        let sum_bytes = k as u64 * (n * width) as u64 * 8;
        encoder.copy_buffer_to_buffer(&self.response_sums, 0, &self.read_responses, 0, resp_bytes);
        encoder.copy_buffer_to_buffer(&stage.sums, 0, &stage.read_sums, 0, sum_bytes);
        queue.submit([encoder.finish()]);
        let responses: Vec<[f32; 2]> = self.ctx.read(&self.read_responses, resp_bytes)?;
        let sums: Vec<[f32; 2]> = self.ctx.read(&stage.read_sums, sum_bytes)?;
        self.ctx.check(scope)?;
        if let (Some(x), Some(t)) = (single, &mut self.terms) {
            if from_terms {
                self.term_passes += 1;
            } else {
                t.x = Some(x.to_vec());
            }
        }
        let finish = |s: &[f32; 2]| s[0] as f64 - s[1] as f64;
        let responses = responses
            .chunks(self.num_draws)
            .map(|slot| slot.iter().map(finish).collect())
            .collect();
        let sums = sums
            .chunks(n * width)
            .map(|slot| slot.iter().map(finish).collect())
            .collect();
        Ok((responses, sums))
    }

    /// Builds the stored terms' buffers and pipelines (once), where they may be kept:
    /// each chunk's 12 bytes a (draw, cell) within a binding, all of them within
    /// twice the parameters' bytes, and the device able to make them; otherwise
    /// passes go on recomputing.
    fn store_terms(&mut self) -> Result<()> {
        if self.terms.is_some() || !self.may_store_terms {
            return Ok(());
        }
        self.may_store_terms = false;
        let n = self.num_cells as u64;
        let limits = self.ctx.limits();
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let sizes: Vec<u64> = self
            .chunks
            .iter()
            .map(|c| 12 * n * c.draws as u64)
            .collect();
        let total: u64 = sizes.iter().sum();
        if sizes.iter().any(|&b| b > binding) || total > 2 * self.parameter_bytes {
            return Ok(());
        }
        let scope = self.ctx.scope();
        let device = self.ctx.device();
        let layouts = [&self.shared.layout, &self.shared.terms_layout];
        let mut constants = self.constants.clone();
        constants.push(("STORE_TERMS", 1.0));
        let store_pipeline = compute_pipeline(
            device,
            &layouts,
            &self.response_module,
            "constant_form",
            &constants,
        );
        let from_terms_pipeline = compute_pipeline(
            device,
            &layouts,
            &self.response_module,
            "from_terms",
            &self.constants,
        );
        let binds = sizes
            .iter()
            .map(|&bytes| {
                let buffer = new_buffer(device, "terms", bytes, wgpu::BufferUsages::STORAGE);
                bind_group(device, "terms", &self.shared.terms_layout, &[&buffer])
            })
            .collect();
        if self.ctx.check(scope).is_err() {
            // Not made (the device's memory, say): passes go on recomputing.
            return Ok(());
        }
        self.device_bytes += total;
        self.terms = Some(Terms {
            store_pipeline,
            from_terms_pipeline,
            binds,
            x: None,
        });
        Ok(())
    }

    /// Passes served from stored terms (each a weighted pass at the allocation of a
    /// pass that stored them) since the evaluator was made.
    pub fn stored_term_passes(&self) -> u64 {
        self.term_passes
    }

    /// The cell moments' stage, its buffers counted in `device_bytes`; an error where
    /// its per-(block, cell) partials exceed one binding.
    fn moment_stage(&mut self) -> Result<()> {
        if self.moment_stage.is_some() {
            return Ok(());
        }
        let (n, nd) = (self.num_cells as u64, self.num_draws as u64);
        let partial_bytes = self.total_blocks as u64 * n * 4 * 4;
        let limits = self.ctx.limits();
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let response_bytes = 2 * self.groups as u64 * nd * 4;
        if partial_bytes.max(response_bytes) > binding {
            return Err(self.ctx.error(format!(
                "the cell moments of {nd} draws × {n} cells need {} bytes in one binding, above the device's {binding}",
                partial_bytes.max(response_bytes)
            )));
        }
        let scope = self.ctx.scope();
        let device = self.ctx.device();
        let buffer = |label: &str, bytes: u64, usage| new_buffer(device, label, bytes, usage);
        let mut constants = self.constants.clone();
        constants.push(("MOMENTS", 1.0));
        let pipeline = compute_pipeline(
            device,
            &[&self.shared.layout, &self.shared.terms_layout],
            &self.response_module,
            "constant_form",
            &constants,
        );
        let alloc = buffer(
            "moments allocation",
            2 * n * 4,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        let responses = buffer(
            "moments responses",
            response_bytes,
            wgpu::BufferUsages::STORAGE,
        );
        let (response_sums, read_responses) =
            with_read_back(device, "moments response sums", 2 * nd * 8);
        let (partials, read_partials) = with_read_back(device, "moments partials", partial_bytes);
        let binds = self
            .chunks
            .iter()
            .map(|chunk| {
                let buffers = [
                    &chunk.dims,
                    &chunk.params,
                    &self.shared.pattern,
                    &self.shared.cells,
                    &alloc,
                    &self.shared.weights,
                    &responses,
                    &partials,
                ];
                bind_group(device, "moments", &self.shared.layout, &buffers)
            })
            .collect();
        let response_bind = bind_group(
            device,
            "reduce moments responses",
            &self.shared.reduce_layout,
            &[&self.response_dims, &responses, &response_sums],
        );
        self.ctx.check(scope)?;
        self.device_bytes += alloc.size()
            + responses.size()
            + response_sums.size()
            + read_responses.size()
            + partials.size()
            + read_partials.size();
        self.moment_stage = Some(MomentStage {
            pipeline,
            binds,
            alloc,
            response_bind,
            response_sums,
            read_responses,
            partials,
            read_partials,
        });
        Ok(())
    }

    /// Each chunk's dimensions for a run with `per_draw_weights` (0 or 1) and `width`
    /// partial values a cell, and the response reduction's (over cell groups).
    fn write_dims(&self, per_draw_weights: u32, width: u32) {
        let queue = self.ctx.queue();
        for chunk in &self.chunks {
            let dims = Dims {
                draws: chunk.draws,
                cells: self.num_cells as u32,
                draw_offset: chunk.draw_offset,
                block_offset: chunk.block_offset,
                total_draws: self.num_draws as u32,
                per_draw_weights,
                width,
                cells_per_group: self.cells_per_group,
                total_blocks: self.total_blocks,
                groups: self.groups,
                pad0: 0,
                pad1: 0,
            };
            queue.write_buffer(&chunk.dims, 0, bytemuck::bytes_of(&dims));
        }
        let rr = ReduceDims {
            blocks: self.groups,
            width: self.num_draws as u32,
            pad0: 0,
            pad1: 0,
        };
        queue.write_buffer(&self.response_dims, 0, bytemuck::bytes_of(&rr));
    }

    /// `out` from one slot's responses and [r, r', r''] sums per cell.
    fn constant_evaluation(&self, responses: Vec<f64>, sums: &[f64], out: &mut Evaluation) {
        let n = self.num_cells;
        out.responses = responses;
        out.contributions = (0..n).map(|c| sums[3 * c]).collect();
        out.gradient = (0..n).map(|c| sums[3 * c + 1]).collect();
        out.curvature = (0..n).map(|c| sums[3 * c + 2]).collect();
    }
}

impl Evaluator for GpuEvaluator {
    fn num_draws(&self) -> usize {
        self.num_draws
    }

    fn num_cells(&self) -> usize {
        self.num_cells
    }

    fn num_periods(&self) -> usize {
        self.num_periods
    }

    fn describe(&self) -> String {
        format!(
            "gpu ({}, f32{}, {} chunk{}{}{}{}{}{})",
            self.ctx.adapter_name(),
            if self.f16 { ", f16 parameters" } else { "" },
            self.chunks.len(),
            if self.chunks.len() == 1 { "" } else { "s" },
            if self.wg == WG {
                String::new()
            } else {
                format!(", workgroup {}", self.wg)
            },
            if self.recompute {
                ", passes recomputed"
            } else {
                ""
            },
            if self.sums.subgroups.is_some() {
                ""
            } else {
                ", tree sums"
            },
            if self.knobs.0 { ", bounded loops" } else { "" },
            if self.knobs.1 { ", general walk" } else { "" },
        )
    }

    fn precision(&self) -> f64 {
        f32::EPSILON as f64
    }

    fn responses(&mut self, x: &[f64], out: &mut [f64]) -> Result<()> {
        check_allocation(&self.cells, x, self.num_cells)?;
        check_len(out.len(), self.num_draws, "responses")?;
        let (r, _) = self.run(&[x], DrawWeights::Uniform, Form::Constant)?;
        out.copy_from_slice(&r[0]);
        Ok(())
    }

    fn evaluate(
        &mut self,
        x: &[f64],
        weights: DrawWeights<'_>,
        out: &mut Evaluation,
    ) -> Result<()> {
        check_allocation(&self.cells, x, self.num_cells)?;
        check_weights(&weights, self.num_draws)?;
        let (mut r, sums) = self.run(&[x], weights, Form::Constant)?;
        self.constant_evaluation(r.swap_remove(0), &sums[0], out);
        Ok(())
    }

    /// The allocations in batches of as many slots as the device's limits allow (up
    /// to 32, their buffers within 256 MiB beyond one slot's): one upload, one set of
    /// dispatches and one read-back a batch.
    fn evaluate_many(
        &mut self,
        xs: &[&[f64]],
        weights: DrawWeights<'_>,
        out: &mut [Evaluation],
    ) -> Result<()> {
        check_many(&self.cells, xs, out.len(), &weights, self.num_draws)?;
        let scope = self.ctx.scope();
        self.grow(xs.len());
        self.ctx.check(scope)?;
        for (batch, outs) in xs.chunks(self.slots).zip(out.chunks_mut(self.slots)) {
            let (responses, sums) = self.run(batch, weights, Form::Constant)?;
            for ((r, s), o) in responses.into_iter().zip(&sums).zip(outs.iter_mut()) {
                self.constant_evaluation(r, s, o);
            }
        }
        Ok(())
    }

    /// One pass of the constant form with `MOMENTS`: R_d and P_d reduced over cell
    /// groups on the device, each (block, cell)'s sums and centred sums read back and
    /// merged in f64 on the host, block by block.
    fn cell_moments(
        &mut self,
        x: &[f64],
        cell_weights: &[f64],
        out: &mut CellMoments,
    ) -> Result<()> {
        check_allocation(&self.cells, x, self.num_cells)?;
        check_len(cell_weights.len(), self.num_cells, "cell weights")?;
        self.moment_stage()?;
        let (n, nd) = (self.num_cells, self.num_draws);
        let Some(stage) = &self.moment_stage else {
            return Err(self
                .ctx
                .error("the cell moments' stage was not built".into()));
        };
        let queue = self.ctx.queue();
        let scope = self.ctx.scope();
        let data: Vec<f32> = x.iter().chain(cell_weights).map(|&v| v as f32).collect();
        queue.write_buffer(&stage.alloc, 0, bytemuck::cast_slice(&data));
        self.write_dims(0, 4);
        let mut encoder =
            self.ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("cell moments"),
                });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("cell moments"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&stage.pipeline);
            pass.set_bind_group(1, &self.shared.no_terms, &[]);
            for (chunk, bind) in self.chunks.iter().zip(&stage.binds) {
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(chunk.blocks, self.groups, 1);
            }
            pass.set_pipeline(&self.reduce_pipeline);
            pass.set_bind_group(0, &stage.response_bind, &[]);
            pass.dispatch_workgroups((nd as u64).div_ceil(WG) as u32, 2, 1);
        }
        let resp_bytes = 2 * nd as u64 * 8;
        let partial_bytes = stage
            .partials
            .size()
            .min(self.total_blocks as u64 * n as u64 * 16);
        encoder.copy_buffer_to_buffer(
            &stage.response_sums,
            0,
            &stage.read_responses,
            0,
            resp_bytes,
        );
        encoder.copy_buffer_to_buffer(&stage.partials, 0, &stage.read_partials, 0, partial_bytes);
        queue.submit([encoder.finish()]);
        let responses: Vec<[f32; 2]> = self.ctx.read(&stage.read_responses, resp_bytes)?;
        let partials: Vec<f32> = self.ctx.read(&stage.read_partials, partial_bytes)?;
        self.ctx.check(scope)?;
        let finish = |s: &[f32; 2]| s[0] as f64 - s[1] as f64;
        out.responses = responses[..nd].iter().map(finish).collect();
        out.weighted = responses[nd..].iter().map(finish).collect();
        let mut sum = MomentSum::new(n);
        let (mut mean, mut slope, mut squares, mut cross) =
            (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for (b, block) in partials.chunks(4 * n).enumerate() {
            let count = (self.wg as usize).min(nd - b * self.wg as usize) as f64;
            for (c, p) in block.chunks(4).enumerate() {
                mean[c] = p[0] as f64 / count;
                slope[c] = p[1] as f64 / count;
                squares[c] = p[2] as f64;
                cross[c] = p[3] as f64;
            }
            sum.merge(count, &mean, &slope, &squares, &cross);
        }
        sum.finish(out);
        Ok(())
    }

    fn evaluate_time_varying(
        &mut self,
        x: &[f64],
        weights: DrawWeights<'_>,
        out: &mut TimeVaryingEvaluation,
    ) -> Result<()> {
        check_allocation(&self.cells, x, self.num_cells * self.num_periods)?;
        check_weights(&weights, self.num_draws)?;
        let (mut r, sums) = self.run(&[x], weights, Form::TimeVarying)?;
        out.responses = r.swap_remove(0);
        // Per cell: N gradient values, then its contribution.
        let np = self.num_periods;
        out.gradient.clear();
        out.contributions.clear();
        for cell in sums[0].chunks(np + 1) {
            out.gradient.extend_from_slice(&cell[..np]);
            out.contributions.push(cell[np]);
        }
        Ok(())
    }
}

/// A bind group with `buffers` at bindings 0, 1, 2, … in order.
fn bind_group(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource: b.as_entire_binding(),
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &entries,
    })
}

/// Which form of allocation a kernel evaluates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// One spend per cell, spread over the periods by the time distribution.
    Constant,
    /// A spend per cell and period.
    TimeVarying,
}

/// The partial sums, their reduction and read-back for `width` values a block (cells ×
/// values a cell) and each of `slots` allocations, and one
/// response bind group a chunk (the time-varying form reads the input scale where the
/// constant form reads the unit pattern).
fn build_stage(
    device: &wgpu::Device,
    shared: &Shared,
    chunks: &[Chunk],
    blocks: u32,
    width: usize,
    slots: usize,
    form: Form,
) -> Stage {
    let buffer = |label: &str, bytes: u64, usage| new_buffer(device, label, bytes, usage);
    let slots = slots as u64;
    let partial_bytes = slots * blocks as u64 * width as u64 * 4;
    let partials = buffer("partials", partial_bytes, wgpu::BufferUsages::STORAGE);
    let sum_bytes = slots * width as u64 * 8;
    let (sums, read_sums) = with_read_back(device, "sums", sum_bytes);
    let pattern = if form == Form::TimeVarying {
        &shared.input_scale
    } else {
        &shared.pattern
    };
    let binds = chunks
        .iter()
        .map(|chunk| {
            let buffers = [
                &chunk.dims,
                &chunk.params,
                pattern,
                &shared.cells,
                &shared.alloc,
                &shared.weights,
                &shared.responses,
                &partials,
            ];
            bind_group(device, "response", &shared.layout, &buffers)
        })
        .collect();
    let reduce_bind = bind_group(
        device,
        "reduce",
        &shared.reduce_layout,
        &[&shared.reduce_dims, &partials, &sums],
    );
    Stage {
        binds,
        reduce_bind,
        sums,
        read_sums,
        bytes: partial_bytes.max(16) + 2 * sum_bytes.max(16),
    }
}

/// A storage buffer the kernels write and its staging copy for reading it back.
fn with_read_back(device: &wgpu::Device, label: &str, bytes: u64) -> (wgpu::Buffer, wgpu::Buffer) {
    (
        new_buffer(
            device,
            label,
            bytes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        ),
        new_buffer(
            device,
            &format!("read {label}"),
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        ),
    )
}

/// Words of parameters built and uploaded at a time (16 MiB).
const PIECE_WORDS: usize = 4 << 20;

/// An uninitialised buffer of at least 16 bytes.
fn new_buffer(
    device: &wgpu::Device,
    label: &str,
    bytes: u64,
    usage: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16),
        usage,
        mapped_at_creation: false,
    })
}

fn compute_pipeline(
    device: &wgpu::Device,
    layouts: &[&wgpu::BindGroupLayout],
    module: &wgpu::ShaderModule,
    entry: &str,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let layouts: Vec<Option<&wgpu::BindGroupLayout>> = layouts.iter().map(|&l| Some(l)).collect();
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(entry),
        bind_group_layouts: &layouts,
        immediate_size: 0,
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: Some(&pl),
        module,
        entry_point: Some(entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each shader parses and validates through naga (no GPU needed).
    #[test]
    fn shaders_validate() {
        let tree = Sums { subgroups: None }.source();
        let subgroup = Sums { subgroups: Some(8) }.source();
        for (name, src) in [
            ("sums_tree.wgsl + response.wgsl", tree.as_str()),
            ("sums_subgroup.wgsl + response.wgsl", subgroup.as_str()),
            ("reduce.wgsl", REDUCE_WGSL),
        ] {
            let module = wgpu::naga::front::wgsl::parse_str(src)
                .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
            wgpu::naga::valid::Validator::new(
                wgpu::naga::valid::ValidationFlags::all(),
                wgpu::naga::valid::Capabilities::all(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(src)));
        }
    }
}
