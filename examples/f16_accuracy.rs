//! Measures what f16 parameter storage costs in accuracy on the reference cases:
//! the utility and gradient at the uniform allocation against the f64 CPU, and the f64
//! utility of the allocation optimized with f16 parameters against the true optimum.
//!
//!     cargo run --release --example f16_accuracy      (needs a GPU adapter; lavapipe works)

use mmm_budget::*;
use std::path::Path;

fn main() -> Result<()> {
    println!(
        "{:<8} {:>12} {:>12} {:>14} {:>14}",
        "case", "utility f32", "utility f16", "gradient f16", "optimum f16"
    );
    for name in ["s3", "m8x4", "l20x10"] {
        let case = io::load_case(&Path::new("tests/data").join(name), None)?;
        let p = case.problem()?;
        let mut cpu = CpuEvaluator::new(&p)?;
        let x = p.uniform_allocation();
        let mut reference = Evaluation::default();
        cpu.evaluate(&x, DrawWeights::Uniform, &mut reference)?;
        let u0 = Utility::mean().value(&reference.responses, &[]);
        let best = Solver::new(&p, &mut cpu, Settings::default())?
            .solve()?
            .utility;
        let mut row = vec![];
        for half in [false, true] {
            let mut g = GpuEvaluator::new(
                &p,
                &GpuOptions {
                    f16_parameters: half,
                    ..Default::default()
                },
            )?;
            let mut out = Evaluation::default();
            g.evaluate(&x, DrawWeights::Uniform, &mut out)?;
            let u = Utility::mean().value(&out.responses, &[]);
            let gmax = reference
                .gradient
                .iter()
                .fold(0.0f64, |m, v| m.max(v.abs()));
            let gerr = out
                .gradient
                .iter()
                .zip(&reference.gradient)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
                / gmax;
            let s = Solver::new(&p, &mut g, Settings::default())?.solve()?;
            let mut r = vec![0.0; p.num_draws()];
            cpu.responses(&s.allocation, &mut r)?;
            let lost = (best - Utility::mean().value(&r, &[])) / best;
            row.push(((u - u0).abs() / u0, gerr, lost));
        }
        println!(
            "{:<8} {:>12.1e} {:>12.1e} {:>14.1e} {:>14.1e}   (f32: gradient {:.1e}, optimum {:.1e})",
            name, row[0].0, row[1].0, row[1].1, row[1].2, row[0].1, row[0].2
        );
    }
    Ok(())
}
