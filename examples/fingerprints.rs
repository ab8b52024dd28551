//! Prints one line per solve — status, iterations, evaluations and the bits of the
//! utility, the KKT residual, the allocation and the multipliers — over the solver's
//! reference problems, so that two builds can be compared line by line: a change meant
//! to keep the solver's behaviour keeps every line (`benches/same_behaviour.sh`).
//!
//!     cargo run --release --example fingerprints -- SET [FROM TO]
//!
//! SET is `cases` (the reference cases and PyMC-Marketing's end-to-end cases, default
//! settings and BFGS), `starts` (seeds FROM..TO with four starts), or a constraint kind
//! of `examples/random_problems.rs` (`none`, `squares`, `squares-bfgs`, `roots-ge`,
//! `roots-eq`, `roots-le`) over seeds FROM..TO. Uses only the public API that every
//! compared build has (`Solver::new`, `with_nonlinear`, `solve`); the script copies
//! this file and tests/common into the other build.

#[path = "../tests/common/mod.rs"]
mod common;

use mmm_budget::*;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

/// The bits of a list of numbers, hashed.
fn bits(values: impl IntoIterator<Item = f64>) -> u64 {
    let mut h = DefaultHasher::new();
    for v in values {
        v.to_bits().hash(&mut h);
    }
    h.finish()
}

fn line(label: &str, s: &Solution) -> String {
    format!(
        "{label}: {} it {} ev {} U {:016x} kkt {:016x} x {:016x} z {:016x}",
        s.status.name(),
        s.iterations,
        s.evaluations,
        s.utility.to_bits(),
        s.kkt_residual.to_bits(),
        bits(s.allocation.iter().copied()),
        bits(s.multipliers.iter().map(|m| m.value)),
    )
}

fn solve(
    problem: &Problem,
    settings: Settings,
    nl: Option<NonlinearConstraint>,
) -> Result<Solution> {
    let mut ev = CpuEvaluator::new(problem)?;
    let mut solver = Solver::new(problem, &mut ev, settings)?;
    if let Some(c) = nl {
        solver = solver.with_nonlinear(c);
    }
    solver.solve()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let set = args.first().map_or("cases", |s| s.as_str());
    let number = |i: usize, default: u64| -> Result<u64> {
        args.get(i).map_or(Ok(default), |s| {
            s.parse()
                .map_err(|_| Error::invalid("command line", "seed range", s, "an integer"))
        })
    };
    let (from, to) = (number(1, 0)?, number(2, 1000)?);
    match set {
        "cases" => {
            let mut dirs: Vec<_> = ["s3", "m8x4", "l20x10"]
                .iter()
                .map(|n| Path::new("tests/data").join(n))
                .collect();
            let e2e = Path::new("tests/data/pymc_e2e");
            let mut more: Vec<_> = std::fs::read_dir(e2e)
                .map_err(|source| Error::Io {
                    path: e2e.into(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            more.sort();
            dirs.extend(more);
            for dir in dirs {
                let case = io::load_case(&dir, None)?;
                let problem = case.problem()?;
                let label = dir.display().to_string();
                for (how, settings) in [
                    ("default", Settings::default()),
                    ("bfgs", Settings::default().hessian(HessianMode::Bfgs)),
                    ("starts 3", Settings::default().starts(3)),
                ] {
                    let s = solve(&problem, settings, None)?;
                    println!("{}", line(&format!("{label} {how}"), &s));
                }
            }
        }
        "starts" => {
            for seed in from..to {
                let (model, scenario, _) = common::random_problem(seed);
                let problem = Problem::new(&model, &scenario)?;
                let s = solve(&problem, Settings::default().starts(4), None)?;
                println!("{}", line(&format!("starts seed {seed}"), &s));
            }
        }
        kind => {
            for seed in from..to {
                let (model, scenario, _) = common::random_problem(seed);
                let problem = Problem::new(&model, &scenario)?;
                let nl = common::constraint_of_kind(kind, &problem.uniform_allocation());
                if kind != "none" && nl.is_none() {
                    return Err(Error::invalid("command line", "SET", kind, "a known set"));
                }
                let s = solve(&problem, Settings::default(), nl)?;
                println!("{}", line(&format!("{kind} seed {seed}"), &s));
            }
        }
    }
    Ok(())
}
