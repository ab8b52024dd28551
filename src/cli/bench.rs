//! Timing of evaluation and optimization on each backend, side by side in one run,
//! for the `bench` command.

use mmm_budget::{DrawWeights, Evaluation, Evaluator, Problem, Result, Settings, Solver};
use serde_json::{Value, json};
use std::fmt::Write;
use std::time::Instant;

/// One backend's measurements.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchRow {
    /// The evaluator's description.
    pub backend: String,
    /// Seconds to build the evaluator (upload, pipelines, caches).
    pub setup_seconds: f64,
    /// Median seconds of one evaluation of value + gradient + curvature over all draws.
    pub evaluate_seconds: f64,
    /// The same, per draw × cell × period (N + L), in nanoseconds.
    pub ns_per_term: f64,
    /// Seconds of a whole optimization from the uniform start (`None` when skipped).
    pub optimize_seconds: Option<f64>,
    /// Its iterations.
    pub iterations: usize,
    /// Its evaluator calls.
    pub evaluations: usize,
    /// U at the optimum.
    pub utility: f64,
    /// Its status.
    pub status: String,
    /// GPU: (bytes of all device buffers, bytes of the parameters in f32, bytes of the
    /// parameters as stored: f32 or f16).
    pub device_memory: Option<(u64, u64, u64)>,
    /// The process's peak resident memory in bytes while this backend was built and
    /// measured (the problem included), where the system reports it (Linux).
    pub peak_host_bytes: Option<u64>,
    /// `evaluate_many`: (k, median seconds of one pass of k allocations).
    pub many: Vec<(usize, f64)>,
    /// Whole optimizations with other objectives than the problem's, beside its own.
    pub objectives: Vec<ObjectiveRun>,
}

/// One optimization with a given objective.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectiveRun {
    /// The objective, as written.
    pub objective: String,
    /// Wall seconds.
    pub seconds: f64,
    /// SQP iterations.
    pub iterations: usize,
    /// Evaluator calls.
    pub evaluations: usize,
    /// Its status.
    pub status: String,
}

/// Optimizes `problem` on `ev` once per objective (the problem's utility replaced,
/// then restored; the evaluator does not depend on it, and the posterior is not
/// copied).
pub fn measure_objectives(
    problem: &mut Problem,
    ev: &mut dyn Evaluator,
    objectives: &[mmm_budget::Utility],
) -> Result<Vec<ObjectiveRun>> {
    let own = problem.utility.clone();
    let mut runs = vec![];
    for u in objectives {
        problem.utility = u.clone();
        let t = Instant::now();
        let solved = Solver::new(problem, ev, Settings::default()).and_then(|s| s.solve());
        problem.utility = own.clone();
        let s = solved?;
        runs.push(ObjectiveRun {
            objective: format!("maximize {u}"),
            seconds: t.elapsed().as_secs_f64(),
            iterations: s.iterations,
            evaluations: s.evaluations,
            status: s.status.name().to_string(),
        });
    }
    Ok(runs)
}

/// Loading a case folder into a ready evaluator on one backend.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadRow {
    /// The evaluator's description.
    pub backend: String,
    /// Bytes of the posterior archive.
    pub file_bytes: u64,
    /// Bytes of the problem's gathered parameters in f64.
    pub parameter_bytes: u64,
    /// Bytes of the parameters as the problem holds them (f32 for a float32 archive).
    pub held_bytes: u64,
    /// Seconds to read and check the case's files (headers, shapes, scenario).
    pub open_seconds: f64,
    /// Seconds to build the problem (the posterior's values read into its layout).
    pub problem_seconds: f64,
    /// Seconds to build the evaluator from the problem.
    pub evaluator_seconds: f64,
    /// The process's peak resident memory while loading, where the system reports it.
    pub peak_host_bytes: Option<u64>,
}

impl LoadRow {
    /// From the case folder to a ready evaluator, in seconds.
    pub fn seconds(&self) -> f64 {
        self.open_seconds + self.problem_seconds + self.evaluator_seconds
    }
}

/// Loads the case folder `dir` (its model, posterior and scenario) into a problem and
/// an evaluator on `backend` ("cpu" or "gpu"), timing each step, with the peak memory
/// of the process from the start of the load (the caller holds nothing else large).
pub fn measure_load(dir: &std::path::Path, backend: &str) -> Result<LoadRow> {
    reset_host_peak();
    let t = Instant::now();
    let case = mmm_budget::io::load_case(dir, None)?;
    let file_bytes = std::fs::metadata(&case.posterior_path)
        .map_err(|source| mmm_budget::Error::Io {
            path: case.posterior_path.clone(),
            source,
        })?
        .len();
    let open_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let problem = case.problem()?;
    let problem_seconds = t.elapsed().as_secs_f64();
    let parameter_bytes =
        (problem.adstock_params.len() + problem.saturation_params.len()) as u64 * 8;
    let held_bytes = (problem.adstock_params.bytes() + problem.saturation_params.bytes()) as u64;
    let t = Instant::now();
    let name = if backend == "gpu" {
        let ev = mmm_budget::GpuEvaluator::new(&problem, &mmm_budget::GpuOptions::default())?;
        ev.describe()
    } else {
        let ev = mmm_budget::CpuEvaluator::shared(std::sync::Arc::new(problem))?;
        ev.describe()
    };
    Ok(LoadRow {
        backend: name,
        file_bytes,
        parameter_bytes,
        held_bytes,
        open_seconds,
        problem_seconds,
        evaluator_seconds: t.elapsed().as_secs_f64(),
        peak_host_bytes: host_peak_bytes(),
    })
}

/// The load rows as lines of the table.
pub fn load_lines(dir: &std::path::Path, rows: &[LoadRow]) -> String {
    let mut s = String::new();
    for r in rows {
        let _ = writeln!(
            s,
            "{}: load {} ({:.1} MB): {:.3} s to a ready evaluator = {:.2} GB/s of the archive (files {:.3} s, problem {:.3} s, evaluator {:.3} s){}",
            r.backend,
            dir.display(),
            r.file_bytes as f64 / 1e6,
            r.seconds(),
            r.file_bytes as f64 / 1e9 / r.seconds().max(1e-12),
            r.open_seconds,
            r.problem_seconds,
            r.evaluator_seconds,
            r.peak_host_bytes.map_or(String::new(), |p| format!(
                "; peak host memory {:.1} MB = {:.2} × the parameters in f64 ({:.1} MB), {:.2} × as the problem holds them ({:.1} MB)",
                p as f64 / 1e6,
                p as f64 / r.parameter_bytes.max(1) as f64,
                r.parameter_bytes as f64 / 1e6,
                p as f64 / r.held_bytes.max(1) as f64,
                r.held_bytes as f64 / 1e6
            ))
        );
    }
    s
}

/// The load rows' JSON.
pub fn load_json(rows: &[LoadRow]) -> Value {
    json!(
        rows.iter()
            .map(|r| json!({
                    "backend": r.backend,
                    "file_bytes": r.file_bytes,
                    "parameter_bytes_f64": r.parameter_bytes,
            "parameter_bytes_held": r.held_bytes,
                    "open_seconds": r.open_seconds,
                    "problem_seconds": r.problem_seconds,
                    "evaluator_seconds": r.evaluator_seconds,
                    "seconds": r.seconds(),
                    "bytes_per_second": r.file_bytes as f64 / r.seconds().max(1e-12),
                    "peak_host_bytes": r.peak_host_bytes,
                }))
            .collect::<Vec<_>>()
    )
}

/// Starts a new peak of resident memory (Linux: `5` to /proc/self/clear_refs resets
/// VmHWM); elsewhere nothing.
pub fn reset_host_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident memory since the last reset (Linux: VmHWM), in bytes.
pub fn host_peak_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Times `ev` on `problem`: `repeats` evaluations after warm-up (`median_seconds`), then one
/// optimization when `optimize`.
pub fn measure(
    problem: &Problem,
    ev: &mut dyn Evaluator,
    setup_seconds: f64,
    repeats: usize,
    optimize: bool,
) -> Result<BenchRow> {
    let x = problem.uniform_allocation();
    let mut out = Evaluation::new(problem.num_draws(), problem.num_cells());
    let evaluate_seconds =
        median_seconds(repeats, || ev.evaluate(&x, DrawWeights::Uniform, &mut out))?;
    let terms = (problem.num_draws()
        * problem.num_cells()
        * (problem.num_periods + problem.adstock.l_max)) as f64;
    let (mut optimize_seconds, mut iterations, mut evaluations, mut utility, mut status) =
        (None, 0, 0, f64::NAN, "skipped".to_string());
    if optimize {
        let t = Instant::now();
        let s = Solver::new(problem, ev, Settings::default())?.solve()?;
        optimize_seconds = Some(t.elapsed().as_secs_f64());
        iterations = s.iterations;
        evaluations = s.evaluations;
        utility = s.utility;
        status = s.status.name().to_string();
    }
    Ok(BenchRow {
        backend: ev.describe(),
        setup_seconds,
        evaluate_seconds,
        ns_per_term: evaluate_seconds * 1e9 / terms,
        optimize_seconds,
        iterations,
        evaluations,
        utility,
        status,
        device_memory: None,
        peak_host_bytes: None,
        many: vec![],
        objectives: vec![],
    })
}

/// Untimed runs before the timed ones: at least one, and for at least this long (a
/// GPU raises its clocks under load; short evaluations would be timed before it has).
const WARM_UP_SECONDS: f64 = 0.25;

/// The median seconds of `repeats` (at least one) runs of `run`, after untimed
/// warm-up runs (one, and more until `WARM_UP_SECONDS` have passed).
fn median_seconds(repeats: usize, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
    let warm = Instant::now();
    run()?;
    while warm.elapsed().as_secs_f64() < WARM_UP_SECONDS {
        run()?;
    }
    let mut times = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        run()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times `evaluate_many` with k allocations (the uniform one scaled from 0.5 to 1.5)
/// for each k: the median of `repeats` passes after a warm-up.
pub fn measure_many(
    problem: &Problem,
    ev: &mut dyn Evaluator,
    ks: &[usize],
    repeats: usize,
) -> Result<Vec<(usize, f64)>> {
    let base = problem.uniform_allocation();
    let mut rows = vec![];
    for &k in ks {
        let xs: Vec<Vec<f64>> = (0..k)
            .map(|j| {
                base.iter()
                    .map(|v| v * (0.5 + j as f64 / k as f64))
                    .collect()
            })
            .collect();
        let refs: Vec<&[f64]> = xs.iter().map(|x| x.as_slice()).collect();
        let mut out = vec![Evaluation::default(); k];
        let seconds = median_seconds(repeats, || {
            ev.evaluate_many(&refs, DrawWeights::Uniform, &mut out)
        })?;
        rows.push((k, seconds));
    }
    Ok(rows)
}

/// The table: one line a backend, with each time's ratio to the first row's.
pub fn table(problem: &Problem, rows: &[BenchRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "problem: {} draws × {} cells × ({} periods + {} carry-over) = {:.3e} draw·cell·period terms",
        problem.num_draws(),
        problem.num_cells(),
        problem.num_periods,
        problem.adstock.l_max,
        (problem.num_draws() * problem.num_cells() * (problem.num_periods + problem.adstock.l_max))
            as f64
    );
    let w = rows
        .iter()
        .map(|r| r.backend.chars().count())
        .fold("backend".len(), usize::max);
    let _ = writeln!(
        s,
        "{:<w$} {:>9} {:>12} {:>9} {:>10} {:>12} {:>5} {:>5} {:>10}",
        "backend",
        "setup s",
        "evaluate ms",
        "ns/term",
        "speed-up",
        "optimize s",
        "iter",
        "evals",
        "speed-up"
    );
    let base = rows.first();
    for r in rows {
        let eval_ratio = base.map_or(1.0, |b| b.evaluate_seconds / r.evaluate_seconds);
        let opt_ratio = match (base.and_then(|b| b.optimize_seconds), r.optimize_seconds) {
            (Some(b), Some(o)) => format!("{:.2}×", b / o),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "{:<w$} {:>9.3} {:>12.3} {:>9.3} {:>9.2}× {:>12} {:>5} {:>5} {:>10}",
            r.backend,
            r.setup_seconds,
            r.evaluate_seconds * 1e3,
            r.ns_per_term,
            eval_ratio,
            r.optimize_seconds
                .map_or_else(|| "-".into(), |o| format!("{o:.4}")),
            r.iterations,
            r.evaluations,
            opt_ratio
        );
    }
    let f64_params = (problem.adstock_params.len() + problem.saturation_params.len()) as f64 * 8.0;
    for r in rows {
        if let Some(peak) = r.peak_host_bytes {
            let _ = writeln!(
                s,
                "{}: peak host memory {:.1} MB = {:.2} × the posterior parameters in f64 ({:.1} MB), the problem included",
                r.backend,
                peak as f64 / 1e6,
                peak as f64 / f64_params,
                f64_params / 1e6
            );
        }
    }
    for r in rows {
        for o in &r.objectives {
            let ratio = |a: f64, b: f64| {
                if b > 0.0 {
                    format!("{:.2}×", a / b)
                } else {
                    "-".into()
                }
            };
            let _ = writeln!(
                s,
                "{}: {}: {:.4} s, {} iterations, {} evaluations, {} = {} the time and {} the evaluations of the mean's optimization",
                r.backend,
                o.objective,
                o.seconds,
                o.iterations,
                o.evaluations,
                o.status,
                r.optimize_seconds
                    .map_or("-".into(), |m| ratio(o.seconds, m)),
                ratio(o.evaluations as f64, r.evaluations as f64)
            );
        }
        for &(k, seconds) in &r.many {
            let each = seconds / k as f64;
            let _ = writeln!(
                s,
                "{}: evaluate_many k = {k}: {:.3} ms a pass, {:.3} ms an allocation = {:.2}× a single evaluation",
                r.backend,
                seconds * 1e3,
                each * 1e3,
                each / r.evaluate_seconds
            );
        }
    }
    for r in rows {
        if let Some((device, params, stored)) = r.device_memory {
            let _ = writeln!(
                s,
                "{}: device memory {:.1} MB = {:.3} × the posterior parameters in f32 ({:.1} MB): the parameters as stored {:.1} MB, the rest {:.2} MB (allocation, patterns, per-draw responses, per-block partial sums, terms stored for weighted passes)",
                r.backend,
                device as f64 / 1e6,
                device as f64 / params as f64,
                params as f64 / 1e6,
                stored as f64 / 1e6,
                device.saturating_sub(stored) as f64 / 1e6
            );
        }
    }
    s
}

/// The JSON form of the rows.
pub fn to_json(problem: &Problem, rows: &[BenchRow]) -> Value {
    json!({
        "draws": problem.num_draws(),
        "cells": problem.num_cells(),
        "periods": problem.num_periods,
        "l_max": problem.adstock.l_max,
        "rows": rows.iter().map(|r| json!({
            "backend": r.backend,
            "setup_seconds": r.setup_seconds,
            "evaluate_seconds": r.evaluate_seconds,
            "ns_per_term": r.ns_per_term,
            "optimize_seconds": r.optimize_seconds,
            "iterations": r.iterations,
            "evaluations": r.evaluations,
            "utility": r.utility,
            "status": r.status,
            "device_bytes": r.device_memory.map(|m| m.0),
            "parameter_bytes_f32": r.device_memory.map(|m| m.1),
            "parameter_bytes_stored": r.device_memory.map(|m| m.2),
            "peak_host_bytes": r.peak_host_bytes,
            "objectives": r.objectives.iter().map(|o| json!({"objective": o.objective, "seconds": o.seconds, "iterations": o.iterations, "evaluations": o.evaluations, "status": o.status})).collect::<Vec<_>>(),
            "many": r.many.iter().map(|(k, t)| json!({"k": k, "seconds": t, "seconds_per_allocation": t / *k as f64})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
