//! Solves the random small problems of the tests (tests/common: every curve, random
//! sizes, bounds and linear constraints) over a range of seeds and prints how they
//! ended: the sweeps behind the solver figures in benches/NOTES.md.
//!
//!     cargo run --release --example random_problems -- [FROM TO] [CONSTRAINT] [cpu|gpu]
//!
//! CONSTRAINT adds one nonlinear constraint through the API: `none` (default),
//! `squares` (Σ x² ≤ 1.5 × its value at the uniform allocation, with its curvature),
//! `squares-bfgs` (the same without it), `roots-ge`, `roots-eq`, `roots-le`
//! (Σ √(x + 1) ≥ 0.98, = 0.9, ≤ 0.95 × its uniform value, with curvature). Each
//! problem that ends neither solved nor infeasible is printed with its message.

#[path = "../tests/common/mod.rs"]
mod common;

use mmm_budget::*;
use std::collections::BTreeMap;
use std::sync::Arc;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: u64| -> Result<u64> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse()
                .map_err(|_| Error::invalid("command line", "seed range", s, "an integer"))
        })
    };
    let (from, to) = (number(0, 0)?, number(1, 1000)?);
    let kind = args.get(2).map_or("none", |s| s.as_str());
    let kinds = [
        "none",
        "squares",
        "squares-bfgs",
        "roots-ge",
        "roots-eq",
        "roots-le",
    ];
    if !kinds.contains(&kind) {
        return Err(Error::invalid(
            "command line",
            "CONSTRAINT",
            kind,
            format!("one of {kinds:?}"),
        ));
    }
    let gpu = match args.get(3).map(|s| s.as_str()) {
        Some("gpu") => Some(Arc::new(GpuContext::new()?)),
        _ => None,
    };
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut iterations, mut evaluations) = (0, 0);
    let started = std::time::Instant::now();
    for seed in from..to {
        let (model, scenario, what) = common::random_problem(seed);
        let problem = Problem::new(&model, &scenario)?;
        let mut ev: Box<dyn Evaluator> = match &gpu {
            Some(ctx) => Box::new(GpuEvaluator::with_context(
                ctx.clone(),
                &problem,
                &GpuOptions::default(),
            )?),
            None => Box::new(CpuEvaluator::new(&problem)?),
        };
        let mut solver = Solver::new(&problem, ev.as_mut(), Settings::default())?;
        if let Some(c) = common::constraint_of_kind(kind, &problem.uniform_allocation()) {
            solver = solver.with_nonlinear(c);
        }
        let s = solver.solve()?;
        *counts.entry(s.status.name()).or_default() += 1;
        iterations += s.iterations;
        evaluations += s.evaluations;
        if !matches!(s.status, Status::Solved | Status::Infeasible) {
            println!("{what}: {}: {}", s.status, s.message);
        }
    }
    println!(
        "seeds {from}..{to}, constraint {kind}: {counts:?}; {iterations} iterations, {evaluations} evaluations, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
