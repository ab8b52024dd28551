//! The one-call entry point: a model and a scenario in, a [`Solution`] out, on the
//! backend asked for, falling back to the CPU where [`Backend::Auto`]'s GPU fails.
//! Nonlinear constraints given as code, an evaluator of one's own, several solves on
//! one evaluator: [`Solver`] directly.

use crate::error::{Error, Result};
use crate::eval::{Backend, CpuEvaluator, GpuOptions, Selected};
use crate::model::Model;
use crate::problem::Problem;
use crate::scenario::Scenario;
use crate::solution::{IterationInfo, Solution};
use crate::sqp::{Settings, Solver};
use std::sync::Arc;

/// A per-iteration callback that may be shared: `false` stops the solve (`Stopped`).
/// Keep state in atomics or a mutex.
pub type Callback = Arc<dyn Fn(&IterationInfo) -> bool + Send + Sync>;

/// What [`optimize`] runs with.
///
/// ```
/// use mmm_budget::*;
/// let options = Options {
///     backend: Backend::Cpu,
///     settings: Settings::default().gtol(1e-9),
///     ..Options::default()
/// };
/// assert_eq!(options.gpu, GpuOptions::default());
/// ```
#[derive(Clone, Default)]
pub struct Options {
    /// Which evaluator: [`Backend::Auto`] (the default) takes a hardware GPU where
    /// there is one and falls back to the CPU where it fails, also in the middle of a
    /// solve.
    pub backend: Backend,
    /// The GPU evaluator's options.
    pub gpu: GpuOptions,
    /// The solver's settings.
    pub settings: Settings,
    /// Called after each iteration.
    pub callback: Option<Callback>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("backend", &self.backend)
            .field("gpu", &self.gpu)
            .field("settings", &self.settings)
            .field("callback", &self.callback.as_ref().map(|_| "…"))
            .finish()
    }
}

/// Optimizes the allocation of `scenario` over `model`: the problem resolved, an
/// evaluator on `options.backend`, the solve.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 200 }, 5);
/// let solution = optimize(&model, &scenario, &Options::default())?;
/// assert_eq!(solution.status, Status::Solved);
/// let spent: f64 = solution.allocation.iter().sum();
/// assert!((spent - scenario.total_budget).abs() <= 1e-9 * scenario.total_budget);
/// # Ok::<(), mmm_budget::Error>(())
/// ```
pub fn optimize(model: &Model, scenario: &Scenario, options: &Options) -> Result<Solution> {
    let problem = Problem::new(model, scenario)?;
    optimize_problem(&problem, options)
}

/// [`optimize`] for a problem already resolved.
pub fn optimize_problem(problem: &Problem, options: &Options) -> Result<Solution> {
    options.settings.validate()?;
    let mut selected = options.backend.evaluator(problem, &options.gpu)?;
    solve_on(problem, &mut selected, options)
}

/// Solves on an evaluator already chosen. Under [`Backend::Auto`], a GPU evaluator
/// that fails with a device error (during the solve too) is replaced by the CPU
/// evaluator and the solve starts again there; `selected` then holds the CPU
/// evaluator, and the solution's `warnings` say why.
pub fn solve_on(problem: &Problem, selected: &mut Selected, options: &Options) -> Result<Solution> {
    let mut warnings: Vec<String> = selected.warning.iter().cloned().collect();
    let solved = solve(problem, selected, options);
    let mut solution = match solved {
        Err(e @ Error::Device { .. })
            if options.backend == Backend::Auto && selected.backend == Backend::Gpu =>
        {
            warnings.push(format!("{e}; solved again on the CPU"));
            selected.evaluator = Box::new(CpuEvaluator::new(problem)?);
            selected.backend = Backend::Cpu;
            solve(problem, selected, options)?
        }
        other => other?,
    };
    solution.warnings = warnings;
    Ok(solution)
}

fn solve(problem: &Problem, selected: &mut Selected, options: &Options) -> Result<Solution> {
    let mut solver = Solver::new(
        problem,
        selected.evaluator.as_mut(),
        options.settings.clone(),
    )?;
    if let Some(cb) = &options.callback {
        solver = solver.with_callback(|info: &IterationInfo| cb(info));
    }
    solver.solve()
}
