//! The `mmm-budget` command line.

use clap::{Parser, Subcommand};
use mmm_budget::io::{load_allocation, load_case, write_json};
use mmm_budget::report::Report;
use mmm_budget::{CpuEvaluator, Problem};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mmm-budget",
    version,
    about = "Budget allocation over a Bayesian MMM posterior"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate an allocation (budgets per period) on a case: utility, response
    /// quantiles, and each cell's contribution, ROI and marginal ROI.
    Evaluate {
        /// The case folder (model.json, posterior.npz, scenario.json).
        case: PathBuf,
        /// A scenario file to use instead of CASE/scenario.json.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// An allocation JSON file, or `uniform` (total_budget spread evenly over the
        /// optimized cells).
        #[arg(long, default_value = "uniform")]
        allocation: String,
        /// Write the result as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> mmm_budget::Result<ExitCode> {
    match cli.command {
        Command::Evaluate {
            case,
            scenario,
            allocation,
            out,
        } => {
            let case = load_case(&case, scenario.as_deref())?;
            let problem = case.problem()?;
            let x = allocation_of(&problem, &case.model, &allocation)?;
            let mut ev = CpuEvaluator::new(&problem)?;
            let report = Report::new(&problem, &mut ev, &x)?;
            print!("{}", report.table());
            if let Some(path) = out {
                write_json(&path, &report.to_json())?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn allocation_of(
    problem: &Problem,
    model: &mmm_budget::Model,
    spec: &str,
) -> mmm_budget::Result<Vec<f64>> {
    if spec == "uniform" {
        return Ok(problem.uniform_allocation());
    }
    let path = Path::new(spec);
    let entries = load_allocation(path)?;
    problem
        .allocation_from(model, &entries, "allocation")
        .map_err(|e| e.recontext("allocation", &path.display().to_string()))
}
