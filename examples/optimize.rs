//! Builds a small problem in code, optimizes it with the one-call API and prints the
//! allocation.
//!
//!     cargo run --release --example optimize

use mmm_budget::*;

fn main() -> Result<()> {
    // Three channels, 500 posterior draws of a geometric-adstock → logistic model.
    let (model, mut scenario) = demo::case(
        &demo::DemoSize {
            channels: 3,
            geos: 1,
            draws: 500,
        },
        11,
    );
    scenario.total_budget = 300.0; // per period, over 12 periods
    scenario.bounds.push(BoundRule {
        select: [("channel".to_string(), "ch0".to_string())].into(),
        min: Some(50.0),
        ..Default::default()
    });
    scenario.constraints.push("ch1 <= 0.5 * total".into());
    // A hardware GPU where there is one (the CPU where it fails), else the CPU.
    let options = Options {
        backend: Backend::Auto,
        settings: Settings::default().gtol(1e-9),
        ..Options::default()
    };
    let solution = optimize(&model, &scenario, &options)?;
    println!(
        "{}: {} ({})",
        solution.status, solution.message, solution.backend
    );
    for w in &solution.warnings {
        println!("warning: {w}");
    }
    // The cells in the solution's order, with their labels.
    let problem = Problem::new(&model, &scenario)?;
    for (cell, x) in problem.cells.iter().zip(&solution.allocation) {
        println!(
            "{:>6}: {:>9.3} per period ({:>10.2} over {} periods)",
            cell.label,
            x,
            x * problem.num_periods as f64,
            problem.num_periods
        );
    }
    println!(
        "mean response {:.3} (start {:.3})",
        solution.mean_response, solution.start_mean_response
    );
    for m in solution
        .multipliers
        .iter()
        .filter(|m| m.value != 0.0 && !m.constraint.contains("bound"))
    {
        println!("multiplier of {}: {:.6}", m.constraint, m.value);
    }
    Ok(())
}
