//! # mmm-budget
//!
//! Splits a marketing budget across budget cells (channels × geos × …) using the
//! posterior of a fitted Bayesian marketing-mix model, following PyMC-Marketing's
//! conventions exactly.
//!
//! Data flows one way: [`Model`] + [`Scenario`] → [`Problem`] (checked and resolved)
//! → an [`Evaluator`] (every draw's response, gradient and curvature) → a
//! [`Utility`] over draws → the solver → a result.
//!
//! ```
//! use mmm_budget::*;
//! let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 100 }, 1);
//! let problem = Problem::new(&model, &scenario)?;
//! let mut ev = CpuEvaluator::new(&problem)?;
//! let mut out = Evaluation::new(problem.num_draws(), problem.num_cells());
//! ev.evaluate(&problem.uniform_allocation(), DrawWeights::Uniform, &mut out)?;
//! println!("mean response {}", problem.utility.value(&out.responses, &problem.uniform_allocation()));
//! # Ok::<(), mmm_budget::Error>(())
//! ```
#![warn(missing_docs)]

pub mod adstock;
pub mod charts;
pub mod constraint;
pub mod curves;
pub mod demo;
pub mod error;
pub mod eval;
pub mod frontier;
pub mod html_report;
pub mod io;
pub mod marginal_roi;
mod memory;
pub mod model;
pub mod optimize;
pub mod parameters;
pub mod plan;
pub mod problem;
pub mod report;
pub mod saturation;
pub mod scenario;
pub mod solution;
pub mod sqp;
pub mod utility;

pub use adstock::{Adstock, AdstockKind};
pub use constraint::{
    ConstraintFunction, LinearConstraint, NonlinearConstraint, OutcomeConstraint, Sense,
};
pub use curves::CellCurve;
pub use error::{Error, Result};
pub use eval::{
    Backend, BandedSums, CellMoments, CpuEvaluator, DrawWeights, Evaluation, Evaluator, GpuContext,
    GpuEvaluator, GpuOptions, Selected, ShardedEvaluator, TimeVaryingEvaluation, WORKGROUP_SIZES,
};
pub use frontier::FrontierPoint;
pub use model::{Array, Cell, CellInfo, Dim, MAX_CELLS, MAX_L_MAX, MAX_PERIODS, Model, Posterior};
pub use optimize::{Callback, Options, optimize, optimize_problem, solve_on};
pub use parameters::{MAX_PARAMETERS, ParameterTable, Params};
pub use problem::Problem;
pub use saturation::{Domain, Saturation};
pub use scenario::{
    BoundRule, BudgetConstraint, Decision, FlightRule, PeriodRule, PeriodSum, Scenario, Selector,
};
pub use solution::{IterationInfo, Multiplier, Solution, Status};
pub use sqp::{HessianMode, Settings, Solver, StallRules, Tuning};
pub use utility::Utility;
