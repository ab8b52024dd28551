//! The `mmm-budget` command line.
//!
//! Exit codes: 0 solved (or evaluated), 2 bad input or a device error, 3 infeasible,
//! 4 any other solver outcome (almost solved, iteration or time limit, line-search or
//! numerical failure).

mod bench;
mod progress;

use progress::Progress;
use std::sync::atomic::{AtomicBool, Ordering};

/// `--quiet`: nothing on stdout, no progress, no notes; warnings and errors only.
static QUIET: AtomicBool = AtomicBool::new(false);

fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Prints `text` on stdout unless `--quiet`.
fn say(text: &str) {
    if !quiet() {
        print!("{text}");
    }
}

/// A note on stderr (what was written where) unless `--quiet`.
fn note(text: &str) {
    if !quiet() {
        eprintln!("{text}");
    }
}

use clap::{Args, Parser, Subcommand, ValueEnum};
use mmm_budget::io::{
    Case, load_allocation, load_case, load_saved_model, load_scenario, write_case, write_csv,
    write_json, write_text,
};
use mmm_budget::report::{Report, solution_json, solution_table};
use mmm_budget::{
    Backend, CpuEvaluator, Error, GpuOptions, Model, Options, Posterior, Problem, Scenario,
    Settings, Status, charts, demo, solve_on,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "mmm-budget",
    version,
    about = "Budget allocation over a Bayesian MMM posterior"
)]
#[command(
    after_help = "Budgets are per period (PyMC-Marketing's convention); tables and JSON also show the total over the window.\nExit codes: 0 solved, 2 bad input or device error, 3 infeasible, 4 other solver outcomes."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print nothing but warnings and errors: no table, no progress (results in the
    /// files of --out, --csv, …; the exit code says the status).
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate an allocation (budgets per period) on a case: utility, response
    /// quantiles, and each cell's contribution, ROI and marginal ROI.
    Evaluate {
        #[command(flatten)]
        source: SourceArgs,
        /// An allocation JSON file, or `uniform` (total_budget spread evenly over the
        /// optimized cells).
        #[arg(long, default_value = "uniform")]
        allocation: String,
        /// Write the result as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Evaluator: cpu (the f64 reference), gpu or auto.
        #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
        backend: BackendArg,
    },
    /// Optimize the allocation of a case.
    Optimize {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Time evaluation and optimization of a synthetic problem on each backend, side
    /// by side, and print a table with ratios.
    Bench {
        /// Posterior draws.
        #[arg(long, default_value_t = 2000)]
        draws: usize,
        /// Budget cells (channels × geos; channels = min(cells, 50)).
        #[arg(long, default_value_t = 200)]
        cells: usize,
        /// Periods N.
        #[arg(long, default_value_t = 52)]
        periods: usize,
        /// Carry-over L (l_max).
        #[arg(long, default_value_t = 13)]
        lmax: usize,
        /// Saturation curve of the synthetic posterior (geometric adstock first).
        #[arg(long, default_value = "logistic")]
        saturation: String,
        /// Backends to run: all (cpu, then gpu when an adapter exists), cpu or gpu.
        #[arg(long, value_enum, default_value_t = BenchBackends::All)]
        backend: BenchBackends,
        /// Timed evaluations per backend (the median is reported).
        #[arg(long, default_value_t = 10)]
        repeats: usize,
        /// Skip the whole optimizations.
        #[arg(long)]
        no_optimize: bool,
        /// GPU: store parameters as f16 too (an extra row).
        #[arg(long)]
        f16: bool,
        /// GPU: invocations per workgroup of the response kernels, a comma-separated
        /// list of 32, 64, 128, 256, 512, 1024 (a row each, side by side; those above
        /// the adapter's limits are refused).
        #[arg(long, value_delimiter = ',', default_value = "256")]
        workgroup: Vec<u32>,
        /// GPU: also a row whose weighted passes are all recomputed (no terms stored
        /// on the device), beside the default's.
        #[arg(long)]
        recompute: bool,
        /// GPU: also a row whose sums over a workgroup go through a tree in workgroup
        /// memory, beside the default's (subgroup operations, where the adapter has
        /// them).
        #[arg(long)]
        tree: bool,
        /// GPU: also a row whose shaders keep wgpu's loop bounding (a counter in every
        /// loop), beside the default's (loops that end by their own conditions).
        #[arg(long)]
        bounded_loops: bool,
        /// GPU: also a row whose constant form walks held adstock weights for
        /// geometric adstock too, beside the default's (the weights formed as needed).
        #[arg(long)]
        general_walk: bool,
        /// Also time several allocations in one pass (`evaluate_many`), for each k of
        /// this comma-separated list (e.g. 8,32): the time per allocation beside a
        /// single evaluation's.
        #[arg(long, value_delimiter = ',')]
        many: Vec<usize>,
        /// Also optimize with these objectives, `;`-separated (e.g. `cvar(0.9);mean -
        /// 0.5 * std`), each beside the mean's optimization: time and evaluations as
        /// ratios (skipped with --no-optimize).
        #[arg(long, value_delimiter = ';')]
        objectives: Vec<String>,
        /// Also time loading this case folder (model.json, posterior.npz,
        /// scenario.json) into a ready evaluator on each backend, before the synthetic
        /// runs: seconds, GB/s of the archive and peak host memory.
        #[arg(long, value_name = "DIR")]
        load: Option<PathBuf>,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// The efficient frontier: optimize a case at each of a range of total budgets
    /// (each solve started from the last optimum) and print the optimal mean response,
    /// its 90% band and the budget's marginal return at each (also `curve`).
    #[command(alias = "curve")]
    Frontier {
        #[command(flatten)]
        source: SourceArgs,
        /// Total budgets per period, FROM..TO: numbers, or multiples of the scenario's
        /// budget (`0.5x..2x`).
        #[arg(long, default_value = "0.5x..2x")]
        budgets: String,
        /// How many budgets, evenly spaced.
        #[arg(long, default_value_t = 25)]
        steps: usize,
        /// Evaluator: cpu (the f64 reference), gpu or auto.
        #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
        backend: BackendArg,
        /// Write the frontier as JSON here (every point's allocation too).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the chart of the frontier with its 90% band as DIR/frontier.svg.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
    },
    /// Optimize a demo case built into the binary (5 channels × 3 geos, 2000 draws).
    Demo {
        /// Also write the demo case as a case folder here.
        #[arg(long)]
        write_case: Option<PathBuf>,
        /// Total budget per period, replacing the demo's.
        #[arg(long)]
        budget: Option<f64>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Write a model saved by PyMC-Marketing 0.19.x (`mmm.save("fitted.nc")`) as a case
    /// folder: model.json, posterior.npz (float64) and scenario.json.
    Export {
        /// The saved model (netCDF-4).
        model: PathBuf,
        /// The folder to write (created if missing).
        dir: PathBuf,
        #[command(flatten)]
        scenario: ScenarioArgs,
    },
}

/// Where the model and the scenario come from: a case folder, or a model saved by
/// PyMC-Marketing with a scenario file or flags.
#[derive(Args)]
struct SourceArgs {
    /// A case folder (model.json, posterior.npz, scenario.json), or a model saved by
    /// PyMC-Marketing 0.19.x (a .nc file, as with --model).
    #[arg(required_unless_present = "model")]
    case: Option<PathBuf>,
    /// A model saved by PyMC-Marketing 0.19.x (`mmm.save("fitted.nc")`, netCDF-4),
    /// instead of a case folder; the scenario then comes from --scenario or from
    /// --budget and --periods.
    #[arg(long, value_name = "FILE", conflicts_with = "case")]
    model: Option<PathBuf>,
    #[command(flatten)]
    scenario: ScenarioArgs,
}

/// The scenario: a file, and flags that replace its values (or, for a saved model
/// without a file, make it).
#[derive(Args)]
struct ScenarioArgs {
    /// A scenario file to use instead of CASE/scenario.json.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Total budget per period, replacing the scenario's.
    #[arg(long)]
    budget: Option<f64>,
    /// Periods N of the budget window, replacing the scenario's.
    #[arg(long)]
    periods: Option<usize>,
    /// What to maximise over the draws, replacing the scenario's: `maximize mean`
    /// (the default), `maximize cvar(0.9)`, `maximize mean - 0.5 * std`, …
    #[arg(long)]
    objective: Option<String>,
    /// Carry-in from a CSV file (columns `period`: -1 for the period just before
    /// the window, `spend`, and the dims that select cells), replacing the
    /// scenario's history.
    #[arg(long, value_name = "CSV")]
    history: Option<PathBuf>,
}

/// `--backend` of `evaluate`, `optimize` and `demo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    /// A hardware GPU where there is one (the CPU where it fails), else the CPU.
    Auto,
    /// The f64 CPU evaluator.
    Cpu,
    /// The GPU evaluator (an error where no adapter runs it).
    Gpu,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Gpu => Backend::Gpu,
        }
    }
}

/// `--backend` of `bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BenchBackends {
    /// The CPU, then the GPU where an adapter exists.
    All,
    /// The CPU only.
    Cpu,
    /// The GPU only (an error where no adapter runs it).
    Gpu,
}

#[derive(Args)]
struct RunArgs {
    /// Evaluator: auto (a hardware GPU if present, else the CPU), cpu or gpu.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// GPU only: store the posterior parameters as f16 (half the device memory).
    #[arg(long)]
    f16: bool,
    /// GPU only: split the draws over these adapters (indices: hardware adapters by
    /// PCI bus id, then software; `0,0` is two logical devices on the first), each
    /// evaluating its share, the sums added on the host.
    #[arg(long, value_delimiter = ',')]
    gpus: Vec<usize>,
    /// Write the result as JSON here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the per-cell table as CSV here.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write each cell's response curve around the optimum as JSON here (25 spends
    /// from 0 to twice the chosen one: mean contribution and marginal return).
    #[arg(long)]
    curves: Option<PathBuf>,
    /// Write the charts as SVG into this folder: allocation.svg (start and optimum
    /// per cell) and curves.svg (each cell's response curve, the chosen spend marked).
    #[arg(long, value_name = "DIR")]
    plot: Option<PathBuf>,
    /// Write the plan as one self-contained HTML page here: the summary in plain
    /// words, the tables, the binding constraints and their worth, and the charts
    /// (with the efficient frontier from 0.5 to 1.5 times the budget, 9 more solves).
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// 0 silent, 1 a closing report, 2 a line per iteration (stderr).
    #[arg(long)]
    verbose: Option<u8>,
}

fn main() -> ExitCode {
    // The Vulkan loader's window-system layers print "XDG_RUNTIME_DIR is invalid or
    // not set" twice when it is unset (as under CI, cron or ssh without a session),
    // though nothing here opens a window: give them the temporary folder.
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // SAFETY: the first statement of main: no other thread exists yet to read the
        // environment.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            // One line, as for every other error: clap's message and its list of
            // possible values, without the usage block.
            let text = e.to_string();
            let line: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
                .filter(|l| !l.starts_with("Usage:"))
                .collect();
            let line = line.join(" ");
            eprintln!(
                "error: {} (command line)",
                line.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> mmm_budget::Result<ExitCode> {
    QUIET.store(cli.quiet, Ordering::Relaxed);
    match cli.command {
        Command::Evaluate {
            source,
            allocation,
            out,
            backend,
        } => {
            let mut case = load_source(&source)?;
            let problem = Arc::new(source_problem(&case, &source)?);
            // Resolved into the problem: the posterior's own copy is not needed again.
            case.model.posterior = Posterior::default();
            let (x, warnings) = allocation_of(&problem, &case.model, &allocation)?;
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            let selected =
                Backend::from(backend).shared_evaluator(&problem, &GpuOptions::default())?;
            if let Some(w) = &selected.warning {
                eprintln!("warning: {w}");
            }
            let mut ev = selected.evaluator;
            let report = Report::new(&problem, ev.as_mut(), &x)?;
            say(&report.table());
            if let Some(path) = out {
                let mut json = report.to_json();
                if let Some(map) = json.as_object_mut() {
                    map.insert("warnings".into(), serde_json::json!(warnings));
                }
                write_json(&path, &json)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Optimize { source, run } => {
            let mut case = load_source(&source)?;
            let settings = case.settings.clone();
            let problem = source_problem(&case, &source)?;
            if run.report.is_none() {
                // Resolved into the problem: the posterior's own copy is not needed
                // again (the report's frontier re-solves the model at other budgets).
                case.model.posterior = Posterior::default();
            }
            optimize(
                Arc::new(problem),
                settings,
                &run,
                (&case.model, &case.scenario),
            )
        }
        Command::Bench {
            draws,
            cells,
            periods,
            lmax,
            saturation,
            backend,
            repeats,
            no_optimize,
            f16,
            workgroup,
            recompute,
            tree,
            bounded_loops,
            general_walk,
            many,
            objectives,
            load,
            json,
        } => run_bench(
            (draws, cells, periods, lmax),
            &saturation,
            backend,
            repeats,
            !no_optimize,
            [f16, recompute, tree, bounded_loops, general_walk],
            &workgroup,
            (&many, &objectives, load.as_deref()),
            json,
        ),
        Command::Frontier {
            source,
            budgets,
            steps,
            backend,
            out,
            plot,
        } => {
            let case = load_source(&source)?;
            let problem = source_problem(&case, &source)?;
            let list = budget_range(&budgets, steps, case.scenario.total_budget)?;
            let mut selected =
                Backend::from(backend).evaluator(&problem, &GpuOptions::default())?;
            if let Some(w) = &selected.warning {
                eprintln!("warning: {w}");
            }
            let points = frontier_with_progress(
                "frontier",
                (&case.model, &case.scenario),
                selected.evaluator.as_mut(),
                &list,
                &case.settings,
            )?;
            say(&frontier_table(&points, problem.num_periods));
            if let Some(path) = out {
                write_json(&path, &mmm_budget::report::frontier_json(&points, &problem))?;
            }
            if let Some(dir) = plot {
                let chart = frontier_chart(&points, case.scenario.total_budget)?;
                write_charts(&dir, &[chart])?;
            }
            let all = points.iter().all(|p| p.solution.status == Status::Solved);
            Ok(if all {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(4)
            })
        }
        Command::Demo {
            write_case: dir,
            budget,
            run,
        } => {
            let (model, scenario) = demo::case(&demo::DEMO, 42);
            if let Some(dir) = dir {
                write_case(&dir, &model, &scenario)?;
                note(&format!("wrote the demo case to {}", dir.display()));
            }
            demo_run(&model, scenario, budget, &run)
        }
        Command::Export {
            model,
            dir,
            scenario,
        } => {
            let source = SourceArgs {
                case: None,
                model: Some(model),
                scenario,
            };
            let case = load_source(&source)?;
            // The scenario is checked against the model before anything is written.
            let problem = source_problem(&case, &source)?;
            write_case(&dir, &case.model, &case.scenario)?;
            note(&format!(
                "wrote {} (model.json, posterior.npz, scenario.json): {} cells, {} draws",
                dir.display(),
                problem.num_cells(),
                problem.num_draws()
            ));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The case of `source`: a case folder, or a saved model with a scenario file or the
/// flags; `--budget` and `--periods` replace the scenario's values.
fn load_source(source: &SourceArgs) -> mmm_budget::Result<Case> {
    let flags = &source.scenario;
    let what = source
        .model
        .as_ref()
        .or(source.case.as_ref())
        .map_or_else(String::new, |p| p.display().to_string());
    let _progress = Progress::spinner(format!("reading {what}"), quiet());
    let saved = match (&source.model, &source.case) {
        (Some(path), _) => Some(path),
        (None, Some(path)) if path.is_file() => Some(path),
        _ => None,
    };
    let mut case = match (saved, &source.case) {
        (Some(path), _) => {
            let model = load_saved_model(path)?.model;
            let (scenario, settings, scenario_path) = match &flags.scenario {
                Some(file) => {
                    let (scenario, settings) = load_scenario(file)?;
                    (scenario, settings, Some(file.clone()))
                }
                None => {
                    let need = |flag: &str, what: &str| Error::Missing {
                        context: "command line".into(),
                        field: flag.into(),
                        expected: format!(
                            "{what} (or --scenario FILE): a saved model holds no budget scenario"
                        ),
                    };
                    let periods = flags
                        .periods
                        .ok_or_else(|| need("--periods", "the periods N of the budget window"))?;
                    let budget = flags
                        .budget
                        .ok_or_else(|| need("--budget", "the total budget per period"))?;
                    (Scenario::new(periods, budget), Settings::default(), None)
                }
            };
            Case {
                dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
                model_path: path.clone(),
                posterior_path: path.clone(),
                model,
                scenario,
                scenario_path,
                settings,
            }
        }
        (None, Some(dir)) => load_case(dir, flags.scenario.as_deref())?,
        (None, None) => unreachable!("clap requires CASE or --model"),
    };
    if let Some(b) = flags.budget {
        case.scenario.total_budget = b;
    }
    if let Some(n) = flags.periods {
        case.scenario.num_periods = n;
    }
    if let Some(text) = &flags.objective {
        case.scenario.utility = mmm_budget::Utility::parse_in(text, "command line", "--objective")?;
    }
    if let Some(path) = &flags.history {
        case.scenario.history = mmm_budget::io::history_from_csv(path)?;
    }
    Ok(case)
}

/// The problem of a case, errors naming its files, or the flag that set a value.
fn source_problem(case: &Case, source: &SourceArgs) -> mmm_budget::Result<Problem> {
    case.problem()
        .map_err(|e| scenario_flags(e, source.scenario.budget, source.scenario.periods))
}

fn demo_run(
    model: &Model,
    mut scenario: Scenario,
    budget: Option<f64>,
    run: &RunArgs,
) -> mmm_budget::Result<ExitCode> {
    if let Some(b) = budget {
        scenario.total_budget = b;
    }
    let problem = Problem::new(model, &scenario).map_err(|e| scenario_flags(e, budget, None))?;
    say(&format!(
        "demo: {} channels × {} geos, {} draws, {} periods + {} carry-over; budget {} per period\n",
        model.channels.len(),
        model.dims.first().map_or(1, |d| d.coords.len()),
        problem.num_draws(),
        problem.num_periods,
        problem.adstock.l_max,
        problem.total_budget
    ));
    optimize(
        Arc::new(problem),
        Settings::default(),
        run,
        (model, &scenario),
    )
}

fn optimize(
    problem: Arc<Problem>,
    mut settings: Settings,
    run: &RunArgs,
    (model, scenario): (&Model, &Scenario),
) -> mmm_budget::Result<ExitCode> {
    if let Some(v) = run.verbose {
        settings.verbose = v;
        settings.validate()?;
    }
    let options = Options {
        backend: run.backend.into(),
        gpu: GpuOptions {
            f16_parameters: run.f16,
            adapters: run.gpus.clone(),
            ..Default::default()
        },
        settings,
        callback: None,
    };
    let mut selected = options.backend.shared_evaluator(&problem, &options.gpu)?;
    let problem = &*problem;
    let progress = Progress::spinner("optimizing", quiet());
    let handle = progress.handle();
    let options = Options {
        callback: Some(Arc::new(move |info: &mmm_budget::IterationInfo| {
            handle.set_message(format!(
                "optimizing: iteration {}, utility {:.6e}",
                info.iteration, info.utility
            ));
            true
        })),
        ..options
    };
    if problem.plan.is_some() {
        drop(progress);
        return optimize_plan(problem, selected.evaluator.as_mut(), run, options.settings);
    }
    // Under auto, a device failure (during the solve too) falls back to the CPU.
    let solution = solve_on(problem, &mut selected, &options)?;
    drop(progress);
    for w in &solution.warnings {
        eprintln!("warning: {w}");
    }
    let report = if solution.allocation.is_empty() {
        None
    } else {
        Some(Report::new(
            problem,
            selected.evaluator.as_mut(),
            &solution.allocation,
        )?)
    };
    say(&solution_table(
        report.as_ref(),
        &solution,
        run.verbose.unwrap_or(0) >= 1,
    ));
    if let Some(path) = &run.out {
        write_json(path, &solution_json(report.as_ref(), &solution))?;
    }
    if let (Some(path), Some(r)) = (&run.csv, &report) {
        write_csv(path, r)?;
    }
    let wants_curves = run.curves.is_some() || run.plot.is_some() || run.report.is_some();
    let curves = if wants_curves && !solution.allocation.is_empty() {
        mmm_budget::curves::response_curves(
            problem,
            selected.evaluator.as_mut(),
            &solution.allocation,
            25,
            2.0,
        )?
    } else {
        vec![]
    };
    if let Some(path) = &run.curves
        && !curves.is_empty()
    {
        write_json(path, &curves_json(&curves, problem.num_periods))?;
    }
    if run.plot.is_some() || run.report.is_some() {
        let mut charts: Vec<Chart> = vec![];
        if !solution.allocation.is_empty() {
            charts.push(Chart {
                file: "allocation",
                title: "Start and optimum per cell",
                svg: charts::allocation_svg(
                    &problem.cells,
                    &solution.start_allocation,
                    &solution.allocation,
                )?,
            });
            charts.push(Chart {
                file: "curves",
                title: "Response curves",
                svg: charts::curves_svg(&curves)?,
            });
        }
        if run.report.is_some() && solution.status == Status::Solved {
            // The frontier around the budget: 9 budgets from half to one and a half
            // times it, each solve started from the last.
            let b = scenario.total_budget;
            let list = mmm_budget::frontier::budgets(0.5 * b, 1.5 * b, 9);
            let points = frontier_with_progress(
                "the report's frontier",
                (model, scenario),
                selected.evaluator.as_mut(),
                &list,
                &options.settings,
            )?;
            charts.push(frontier_chart(&points, b)?);
        }
        if let Some(dir) = &run.plot {
            write_charts(dir, &charts)?;
        }
        if let Some(path) = &run.report {
            let list: Vec<(&str, &str)> =
                charts.iter().map(|c| (c.title, c.svg.as_str())).collect();
            let page = mmm_budget::html_report::plan_page(report.as_ref(), &solution, &list);
            write_text(path, &page)?;
        }
    }
    Ok(match solution.status {
        Status::Solved => ExitCode::SUCCESS,
        Status::Infeasible => ExitCode::from(3),
        _ => ExitCode::from(4),
    })
}

/// `optimize` for a plan over time (a spend per period or group of periods): the
/// plan's table and JSON; the per-cell files and charts of a constant plan are
/// refused.
fn optimize_plan(
    problem: &Problem,
    evaluator: &mut dyn mmm_budget::Evaluator,
    run: &RunArgs,
    settings: Settings,
) -> mmm_budget::Result<ExitCode> {
    for (flag, given) in [
        ("--csv", run.csv.is_some()),
        ("--curves", run.curves.is_some()),
        ("--plot", run.plot.is_some()),
        ("--report", run.report.is_some()),
    ] {
        if given {
            return Err(mmm_budget::Error::invalid(
                "command line",
                flag,
                "given with a per-period decision",
                "a constant decision (a plan over time writes its periods with --out)",
            ));
        }
    }
    let progress = Progress::spinner("optimizing a plan over time", quiet());
    let plan = mmm_budget::plan::solve(problem, evaluator, settings)?;
    drop(progress);
    say(&mmm_budget::report::plan_table(
        problem,
        &plan,
        run.verbose.unwrap_or(0) >= 1,
    ));
    if let Some(path) = &run.out {
        write_json(path, &mmm_budget::report::plan_json(problem, &plan))?;
    }
    Ok(match plan.solution.status {
        Status::Solved => ExitCode::SUCCESS,
        Status::Infeasible => ExitCode::from(3),
        _ => ExitCode::from(4),
    })
}

#[allow(clippy::too_many_arguments)]
fn run_bench(
    (draws, cells, periods, lmax): (usize, usize, usize, usize),
    saturation: &str,
    backend: BenchBackends,
    repeats: usize,
    optimize: bool,
    [f16, recompute, tree, bounded_loops, general_walk]: [bool; 5],
    workgroups: &[u32],
    (many, objectives, load): (&[usize], &[String], Option<&Path>),
    json: bool,
) -> mmm_budget::Result<ExitCode> {
    use bench::{measure, measure_many, measure_objectives, table, to_json};
    let objectives: Vec<mmm_budget::Utility> = objectives
        .iter()
        .filter(|o| !o.trim().is_empty())
        .map(|o| mmm_budget::Utility::parse_in(o, "command line", "--objectives"))
        .collect::<mmm_budget::Result<_>>()?;
    let objectives: &[mmm_budget::Utility] = if optimize { &objectives } else { &[] };
    if let Some(k) = many.iter().find(|k| **k == 0) {
        return Err(Error::invalid(
            "command line",
            "--many",
            k,
            "allocations a pass, each >= 1",
        ));
    }
    use std::time::Instant;
    if let Some(w) = workgroups
        .iter()
        .find(|w| !mmm_budget::WORKGROUP_SIZES.contains(w))
    {
        return Err(Error::invalid(
            "command line",
            "--workgroup",
            w,
            format!("one or more of {:?}", mmm_budget::WORKGROUP_SIZES),
        ));
    }
    let channels = cells.clamp(1, 50);
    if cells == 0 || !cells.is_multiple_of(channels) {
        return Err(Error::invalid(
            "command line",
            "--cells",
            cells,
            "a multiple of min(cells, 50), >= 1",
        ));
    }
    let size = demo::SyntheticSize {
        channels,
        geos: cells / channels,
        draws,
        periods,
        l_max: lmax,
    };
    let saturation = mmm_budget::Saturation::from_name(saturation).ok_or_else(|| {
        Error::invalid(
            "command line",
            "--saturation",
            saturation,
            format!("one of {:?}", mmm_budget::Saturation::ALL.map(|k| k.name())),
        )
    })?;
    // Loading first, while the process holds nothing else large.
    let mut loads = vec![];
    if let Some(dir) = load {
        if backend != BenchBackends::Gpu {
            loads.push(bench::measure_load(dir, "cpu")?);
        }
        if backend != BenchBackends::Cpu {
            match bench::measure_load(dir, "gpu") {
                Ok(row) => loads.push(row),
                Err(e) if backend == BenchBackends::All => {
                    eprintln!("gpu load skipped: {e}")
                }
                Err(e) => return Err(e),
            }
        }
    }
    let t = Instant::now();
    let (model, scenario) = demo::synthetic_with(&size, saturation, 7);
    let posterior_seconds = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut problem = Problem::new(&model, &scenario)?;
    let problem_seconds = t.elapsed().as_secs_f64();
    drop(model);
    let mut rows = vec![];
    if backend != BenchBackends::Gpu {
        bench::reset_host_peak();
        let t = Instant::now();
        let mut ev = CpuEvaluator::new(&problem)?;
        let mut row = measure(
            &problem,
            &mut ev,
            t.elapsed().as_secs_f64(),
            repeats,
            optimize,
        )?;
        row.peak_host_bytes = bench::host_peak_bytes();
        row.many = measure_many(&problem, &mut ev, many, repeats)?;
        row.objectives = measure_objectives(&mut problem, &mut ev, objectives)?;
        rows.push(row);
    }
    if backend != BenchBackends::Cpu {
        // A row each: every workgroup size, then those again with each knob asked for
        // (f16 parameters, weighted passes recomputed, tree sums, bounded loops, the
        // general walk).
        let plain = |w: &u32| GpuOptions {
            workgroup_size: Some(*w),
            ..Default::default()
        };
        let mut variants: Vec<GpuOptions> = workgroups.iter().map(plain).collect();
        type Knob = (bool, fn(&mut GpuOptions));
        let knobs: [Knob; 5] = [
            (f16, |o| o.f16_parameters = true),
            (recompute, |o| o.recompute_weighted_passes = true),
            (tree, |o| o.tree_sums = true),
            (bounded_loops, |o| o.bounded_loops = true),
            (general_walk, |o| o.general_walk = true),
        ];
        for (_, set) in knobs.iter().filter(|(asked, _)| *asked) {
            variants.extend(workgroups.iter().map(|w| {
                let mut o = plain(w);
                set(&mut o);
                o
            }));
        }
        for options in variants {
            bench::reset_host_peak();
            let t = Instant::now();
            match mmm_budget::GpuEvaluator::new(&problem, &options) {
                Ok(mut ev) => {
                    let setup = t.elapsed().as_secs_f64();
                    let mut row = measure(&problem, &mut ev, setup, repeats, optimize)?;
                    let f32_params =
                        (problem.adstock_params.len() + problem.saturation_params.len()) as u64 * 4;
                    row.peak_host_bytes = bench::host_peak_bytes();
                    row.many = measure_many(&problem, &mut ev, many, repeats)?;
                    row.objectives = measure_objectives(&mut problem, &mut ev, objectives)?;
                    // After the other objectives: the stored terms included, where
                    // their weighted passes kept them.
                    row.device_memory = Some((ev.device_bytes(), f32_params, ev.parameter_bytes()));
                    rows.push(row);
                }
                Err(e) if backend == BenchBackends::All => eprintln!("gpu skipped: {e}"),
                Err(e) => return Err(e),
            }
        }
    }
    if json {
        let mut out = to_json(&problem, &rows);
        out["load"] = bench::load_json(&loads);
        out["posterior_seconds"] = posterior_seconds.into();
        out["problem_seconds"] = problem_seconds.into();
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        print!("{}", table(&problem, &rows));
        println!(
            "set-up: the synthetic posterior in {posterior_seconds:.3} s, the problem from it in {problem_seconds:.3} s"
        );
        if let Some(dir) = load {
            print!("{}", bench::load_lines(dir, &loads));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A chart: its file name (without `.svg`), its title in the report, its SVG.
struct Chart {
    file: &'static str,
    title: &'static str,
    svg: String,
}

/// The frontier at `budgets`, each solve started from the last, with a progress bar
/// named `label`.
fn frontier_with_progress(
    label: &str,
    (model, scenario): (&Model, &Scenario),
    evaluator: &mut dyn mmm_budget::Evaluator,
    budgets: &[f64],
    settings: &Settings,
) -> mmm_budget::Result<Vec<mmm_budget::FrontierPoint>> {
    let progress = Progress::bar(budgets.len(), label, quiet());
    mmm_budget::frontier::frontier_each(
        model,
        scenario,
        evaluator,
        budgets,
        settings,
        true,
        &mut |_| {
            progress.step();
            true
        },
    )
}

/// The frontier's chart, the scenario's budget `current` marked.
fn frontier_chart(points: &[mmm_budget::FrontierPoint], current: f64) -> mmm_budget::Result<Chart> {
    Ok(Chart {
        file: "frontier",
        title: "Efficient frontier",
        svg: charts::frontier_svg(points, Some(current))?,
    })
}

/// Writes each chart as `DIR/<file>.svg`.
fn write_charts(dir: &Path, charts: &[Chart]) -> mmm_budget::Result<()> {
    for chart in charts {
        write_text(&dir.join(format!("{}.svg", chart.file)), &chart.svg)?;
    }
    Ok(())
}

/// Response curves as JSON, with units: spends per period and over the window, the
/// mean contribution over the window, the marginal return per unit over the window.
fn curves_json(curves: &[mmm_budget::CellCurve], periods: usize) -> serde_json::Value {
    let n = periods as f64;
    let cells: Vec<serde_json::Value> = curves
        .iter()
        .map(|c| {
            serde_json::json!({
                "cell": c.label,
                "budget": c.at,
                "spend": c.spend,
                "spend_window": c.spend.iter().map(|s| s * n).collect::<Vec<_>>(),
                "contribution": c.contribution,
                "marginal_roi": c.marginal.iter().map(|m| mmm_budget::solution::marginal_roi(*m, periods)).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "units": {
            "budget": "chosen spend per period",
            "spend": "per period",
            "spend_window": "over the window",
            "contribution": "mean response over the window and its carry-over",
            "marginal_roi": "d contribution / d spend_window",
        },
        "num_periods": periods,
        "cells": cells,
    })
}

/// `FROM..TO` (numbers, or multiples of `base` written `0.5x`) as `steps` budgets.
fn budget_range(spec: &str, steps: usize, base: f64) -> mmm_budget::Result<Vec<f64>> {
    let bad = || {
        Error::invalid(
            "command line",
            "--budgets",
            spec,
            "FROM..TO, each a number >= 0 or a multiple of the budget such as 0.5x, FROM < TO",
        )
    };
    let side = |t: &str| -> Option<f64> {
        let t = t.trim();
        let v = match t.strip_suffix('x') {
            Some(k) => k.trim().parse::<f64>().ok()? * base,
            None => t.parse::<f64>().ok()?,
        };
        (v.is_finite() && v >= 0.0).then_some(v)
    };
    let (from, to) = spec.split_once("..").ok_or_else(bad)?;
    let (from, to) = (side(from).ok_or_else(bad)?, side(to).ok_or_else(bad)?);
    if from >= to {
        return Err(bad());
    }
    if !(2..=1000).contains(&steps) {
        return Err(Error::invalid(
            "command line",
            "--steps",
            steps,
            "an integer in [2, 1000]",
        ));
    }
    Ok(mmm_budget::frontier::budgets(from, to, steps))
}

/// The frontier as a table: per budget the optimal mean response, its band and the
/// budget's marginal return in mROI's unit (per unit spent over the window).
fn frontier_table(points: &[mmm_budget::FrontierPoint], periods: usize) -> String {
    let mut s = format!(
        "{:>14} {:>14} {:>16} {:>16} {:>16} {:>10}  status\n",
        "budget/period", "budget/window", "mean response", "5%", "95%", "marginal"
    );
    for p in points {
        let marginal = p.marginal_return.map_or("-".to_string(), |m| {
            format!("{:.4}", mmm_budget::solution::marginal_roi(m, periods))
        });
        s.push_str(&format!(
            "{:>14.4} {:>14.2} {:>16.4} {:>16.4} {:>16.4} {:>10}  {}\n",
            p.budget,
            p.budget * periods as f64,
            p.solution.mean_response,
            p.response_quantiles[0],
            p.response_quantiles[2],
            marginal,
            p.solution.status
        ));
    }
    s.push_str(&format!(
        "marginal: the mean response that one more unit spent over the window brings (the budget's multiplier / {periods}, as mROI)\n"
    ));
    s
}

/// An error about `total_budget` or `num_periods` names `--budget` or `--periods`
/// where the flag set it.
fn scenario_flags(e: Error, budget: Option<f64>, periods: Option<usize>) -> Error {
    match e {
        Error::InvalidValue {
            field,
            value,
            expected,
            context,
        } => {
            let flag = match field.as_str() {
                "total_budget" if budget.is_some() => Some("--budget"),
                "num_periods" if periods.is_some() => Some("--periods"),
                _ => None,
            };
            Error::InvalidValue {
                context: flag.map_or(context, |_| "command line".into()),
                field: flag.map_or(field, Into::into),
                value,
                expected,
            }
        }
        other => other,
    }
}

/// The allocation to evaluate, and what it does that a plan would not (warnings).
fn allocation_of(
    problem: &Problem,
    model: &Model,
    spec: &str,
) -> mmm_budget::Result<(Vec<f64>, Vec<String>)> {
    if spec == "uniform" {
        let x = problem.uniform_allocation();
        let warnings = problem.allocation_warnings(&x, None);
        return Ok((x, warnings));
    }
    let path = Path::new(spec);
    let entries = load_allocation(path)?;
    let (x, named) = problem
        .allocation_named(model, &entries, "allocation")
        .map_err(|e| e.recontext("allocation", &path.display().to_string()))?;
    let warnings = problem.allocation_warnings(&x, Some(&named));
    Ok((x, warnings))
}
