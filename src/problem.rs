//! A model and a scenario, checked and resolved per optimized cell and draw: the form
//! the evaluators and the solver work on.
//!
//! Spend of optimized cell c in period t, for a per-period budget x_c
//! (PyMC-Marketing's `BudgetOptimizer`):
//! S_tc = x_c · N · φ_tc for t < N (S_tc = x_c when no time distribution is given),
//! and 0 for the L carry-over periods N ≤ t < N+L. The model's input is
//! z_tc = S_tc / (κ_tc s_c) = x_c p_tc with the **unit pattern**
//! p_tc = N φ_tc / (κ_tc s_c).

use crate::adstock::Adstock;
use crate::constraint::LinearConstraint;
use crate::error::{Error, Result, readable_number};
use crate::marginal_roi::MarginalRoiConstraint;
use crate::model::{Array, Broadcast, CellInfo, MAX_PERIODS, Model};
use crate::parameters::{ParameterTable, Params};
use crate::saturation::Saturation;
use crate::scenario::{BudgetConstraint, PeriodRule, Scenario, Selector};
use crate::utility::Utility;

/// A checked model + scenario, resolved over the optimized cells.
///
/// ```
/// use mmm_budget::*;
/// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 1, draws: 10 }, 0);
/// let problem = Problem::new(&model, &scenario).unwrap();
/// assert_eq!(problem.num_cells(), 3);
/// assert!(problem.num_draws() > 1);
/// ```
#[derive(Clone, Debug)]
pub struct Problem {
    /// The adstock transformation.
    pub adstock: Adstock,
    /// The saturation curve.
    pub saturation: Saturation,
    /// Adstock before saturation.
    pub adstock_first: bool,
    /// N.
    pub num_periods: usize,
    /// The optimized cells, in model order.
    pub cells: Vec<CellInfo>,
    /// τ_c per optimized cell.
    pub target_scale: Vec<f64>,
    /// p_tc, optimized-cell-major: `pattern[c * N + t]`.
    pub pattern: Vec<f64>,
    /// 1/(κ_tc s_c), media units per unit of spend, `[c * N + t]`: the time-varying
    /// form's input scale.
    pub input_scale: Vec<f64>,
    /// Carry-in: the scaled spend (÷ s_c) of each optimized cell in the L periods
    /// before the window, oldest first, `history[c * L + i]` for period i − L; empty
    /// when the scenario gives none.
    pub history: Vec<f64>,
    /// Adstock parameters, `[draw][cell][parameter]` (f32 where the posterior's
    /// arrays are float32 in their file); shared by the problems a frontier builds
    /// from one model at other budgets.
    pub adstock_params: std::sync::Arc<ParameterTable>,
    /// Saturation parameters, `[draw][cell][parameter]` (likewise).
    pub saturation_params: std::sync::Arc<ParameterTable>,
    /// D.
    pub(crate) num_draws: usize,
    /// B, per period.
    pub total_budget: f64,
    /// The budget constraint.
    pub budget_constraint: BudgetConstraint,
    /// Lower bound per optimized cell (per period).
    pub lower: Vec<f64>,
    /// Upper bound per optimized cell (per period).
    pub upper: Vec<f64>,
    /// Linear constraints, parsed from the scenario's strings.
    pub linear_constraints: Vec<LinearConstraint>,
    /// Outcome constraints (a measure of the draws' responses against a level),
    /// parsed from the scenario's strings; the solver adds each as a
    /// [`crate::NonlinearConstraint::outcome`].
    pub outcome_constraints: Vec<crate::constraint::OutcomeConstraint>,
    /// Marginal-ROI constraints (`mroi(channel=tv) >= 1.2`), parsed from the
    /// scenario's strings; each is held by its caps, rows of `linear_constraints`
    /// named after it (see [`crate::marginal_roi`]).
    pub marginal_roi_constraints: Vec<MarginalRoiConstraint>,
    /// The plan over time when the scenario decides a spend per period or group of
    /// periods (`None`: one spend per period for the whole window); solved by
    /// [`crate::plan::solve`].
    pub plan: Option<crate::plan::PlanSpec>,
    /// The utility.
    pub utility: Utility,
    /// The scenario's start allocation, per optimized cell.
    pub start: Option<Vec<f64>>,
    /// Dim names of the model in cell order (extra dims, then `channel`).
    pub dim_names: Vec<String>,
}

impl Problem {
    /// Checks the model and the scenario and resolves them. Every error names the
    /// part (`model`, `posterior`, `scenario`), the field and the value.
    pub fn new(model: &Model, scenario: &Scenario) -> Result<Self> {
        Self::build(model, scenario, None)
    }

    /// As [`Problem::new`], the posterior's parameter tables shared with `like`, a
    /// problem built from the same `model` (another budget of a frontier), where it
    /// optimizes the same cells: a posterior still in its file is read once, and held
    /// once.
    pub(crate) fn new_like(model: &Model, scenario: &Scenario, like: &Problem) -> Result<Self> {
        Self::build(model, scenario, Some(like))
    }

    fn build(model: &Model, scenario: &Scenario, like: Option<&Problem>) -> Result<Self> {
        model.validate_structure("model")?;
        let all_cells = model.cells();
        let labels: Vec<String> = all_cells.iter().map(|c| model.cell_label(c)).collect();
        let dim_names: Vec<String> = model.dim_names().iter().map(|s| s.to_string()).collect();

        // Scales.
        let channel_scale = per_cell(model, "channel_scale", &model.channel_scale)?;
        let target_scale = per_cell(model, "target_scale", &model.target_scale)?;
        for (name, values) in [
            ("channel_scale", &channel_scale),
            ("target_scale", &target_scale),
        ] {
            if let Some(c) = values.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(Error::invalid(
                    "model",
                    format!("{name}[{}]", labels[c]),
                    values[c],
                    "a finite number > 0",
                ));
            }
        }

        // Scenario basics.
        let n_periods = scenario.num_periods;
        if n_periods == 0 || n_periods > MAX_PERIODS {
            return Err(Error::invalid(
                "scenario",
                "num_periods",
                n_periods,
                format!("an integer in [1, {MAX_PERIODS}]"),
            ));
        }
        let budget = scenario.total_budget;
        if !(budget.is_finite() && budget >= 0.0) {
            return Err(Error::invalid(
                "scenario",
                "total_budget",
                budget,
                "a finite number >= 0",
            ));
        }

        // Mask.
        let mask = match &scenario.optimize {
            None => vec![true; all_cells.len()],
            Some(selectors) => {
                let mut mask = vec![false; all_cells.len()];
                for (i, s) in selectors.iter().enumerate() {
                    for (m, hit) in
                        mask.iter_mut()
                            .zip(select(model, s, &format!("optimize[{i}]"))?)
                    {
                        *m |= hit;
                    }
                }
                if !mask.iter().any(|&m| m) {
                    return Err(Error::invalid(
                        "scenario",
                        "optimize",
                        "[]",
                        "selectors that pick at least one cell",
                    ));
                }
                mask
            }
        };
        let opt: Vec<usize> = (0..all_cells.len()).filter(|&c| mask[c]).collect();
        // Two period × cell tables of f64 follow (the unit pattern and the input
        // scale): they must fit the memory budget, checked before the optimized cells'
        // descriptions are built.
        fits("cells × num_periods", &[opt.len(), n_periods, 2])?;
        let cells: Vec<CellInfo> = opt
            .iter()
            .map(|&c| CellInfo {
                model_index: c,
                coords: all_cells[c]
                    .coords
                    .iter()
                    .enumerate()
                    .map(|(k, &i)| (dim_names[k].clone(), model.coords_of(k)[i].clone()))
                    .collect(),
                label: labels[c].clone(),
            })
            .collect();

        // Bounds: absolute, or multiples of each cell's reference spend.
        let reference = reference_spend(model, scenario)?;
        let mut lower = vec![0.0; all_cells.len()];
        let mut upper = vec![budget; all_cells.len()];
        for (i, rule) in scenario.bounds.iter().enumerate() {
            let hits = select(model, &rule.select, &format!("bounds[{i}].select"))?;
            let of = match (rule.relative, &reference) {
                (false, _) => None,
                (true, Some(r)) => Some(r),
                (true, None) => {
                    return Err(Error::invalid(
                        "scenario",
                        format!("bounds[{i}].relative_to"),
                        "\"reference\"",
                        "a scenario with a reference allocation (\"reference\")",
                    ));
                }
            };
            for (side, value, target) in
                [("min", rule.min, &mut lower), ("max", rule.max, &mut upper)]
            {
                if let Some(v) = value {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(Error::invalid(
                            "scenario",
                            format!("bounds[{i}].{side}"),
                            v,
                            "a finite number >= 0",
                        ));
                    }
                    for (c, (t, &hit)) in target.iter_mut().zip(&hits).enumerate() {
                        if hit {
                            *t = of.map_or(v, |r| v * r[c]);
                        }
                    }
                }
            }
        }
        for &c in &opt {
            if lower[c] > upper[c] {
                return Err(Error::invalid(
                    "scenario",
                    format!("bounds of cell {}", labels[c]),
                    format!("[{}, {}]", lower[c], upper[c]),
                    "min <= max",
                ));
            }
        }

        // Time distribution and cost per unit.
        let factors = period_values(
            model,
            &scenario.time_distribution,
            n_periods,
            "time_distribution",
            |v| v.is_finite() && v >= 0.0,
        )?;
        for (c, f) in factors.iter().enumerate() {
            if let Some(f) = f {
                let sum: f64 = f.iter().sum();
                if (sum - 1.0).abs() > 1e-6 {
                    return Err(Error::invalid(
                        "scenario",
                        format!("time_distribution of cell {}", labels[c]),
                        format!("factors summing to {sum}"),
                        "factors that sum to 1 over the periods",
                    ));
                }
            }
        }
        let costs = period_values(
            model,
            &scenario.cost_per_unit,
            n_periods,
            "cost_per_unit",
            |v| v.is_finite() && v > 0.0,
        )?;
        let mut pattern = Vec::with_capacity(opt.len() * n_periods);
        let mut input_scale = Vec::with_capacity(opt.len() * n_periods);
        for &c in &opt {
            for t in 0..n_periods {
                let kappa = costs[c].as_ref().map_or(1.0, |k| k[t]);
                input_scale.push(1.0 / kappa / channel_scale[c]);
                // PyMC-Marketing's order: ((x φ) N) / κ, then / s in the model.
                let mut p = match &factors[c] {
                    Some(f) => f[t] * n_periods as f64,
                    None => 1.0,
                };
                if let Some(k) = &costs[c] {
                    p /= k[t];
                }
                pattern.push(p / channel_scale[c]);
            }
        }
        // Carry-in: l_max values a rule, oldest first, finite and >= 0.
        let l_max = model.adstock.l_max;
        let mut spent_before: Vec<Option<&[f64]>> = vec![None; model.num_cells()];
        for (i, rule) in scenario.history.iter().enumerate() {
            let field = format!("history[{i}]");
            let hits = select(model, &rule.select, &format!("{field}.select"))?;
            if rule.values.len() != l_max {
                return Err(Error::Shape {
                    context: "scenario".into(),
                    field: format!("{field}.spend"),
                    found: vec![rule.values.len()],
                    expected: format!(
                        "{l_max} values: the spend of each of the l_max periods before the window, oldest first"
                    ),
                });
            }
            if let Some(t) = rule
                .values
                .iter()
                .position(|v| !(v.is_finite() && *v >= 0.0))
            {
                return Err(Error::invalid(
                    "scenario",
                    format!("{field}.spend[{t}]"),
                    rule.values[t],
                    "a finite number >= 0",
                ));
            }
            for (o, hit) in spent_before.iter_mut().zip(hits) {
                if hit {
                    *o = Some(&rule.values);
                }
            }
        }
        let history: Vec<f64> = if scenario.history.is_empty() {
            vec![]
        } else {
            let mut scaled = Vec::with_capacity(opt.len() * l_max);
            for &c in &opt {
                match spent_before[c] {
                    Some(h) => scaled.extend(h.iter().map(|v| v / channel_scale[c])),
                    None => scaled.extend(std::iter::repeat_n(0.0, l_max)),
                }
            }
            scaled
        };
        check_derived(
            model,
            scenario,
            &opt,
            &labels,
            &channel_scale,
            &target_scale,
            &input_scale,
            &pattern,
        )?;

        // Posterior.
        let read =
            |prefix: &str,
             names: &[&str],
             needed_by: &str|
             -> Result<Vec<(String, &Array, Broadcast)>> {
                names
                    .iter()
                    .map(|p| {
                        let name = format!("{prefix}_{p}");
                        let array = model.posterior.arrays.get(&name).ok_or_else(|| {
                            Error::MissingArray {
                                context: "posterior".into(),
                                name: name.clone(),
                                needed_by: needed_by.into(),
                                present: model
                                    .posterior
                                    .arrays
                                    .keys()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", "),
                            }
                        })?;
                        let b = model.broadcast("posterior", &name, array, true)?;
                        Ok((name, array, b))
                    })
                    .collect()
            };
        let ad = read(
            "adstock",
            model.adstock.kind.parameters(),
            &format!("adstock `{}`", model.adstock.kind),
        )?;
        let sat = read(
            "saturation",
            model.saturation.parameters(),
            &format!("saturation `{}`", model.saturation),
        )?;
        let mut num_draws = None;
        for (name, _, b) in ad.iter().chain(&sat) {
            match num_draws {
                None => num_draws = Some((b.num_draws(), name.clone())),
                Some((d, ref first)) if d != b.num_draws() => {
                    return Err(Error::invalid(
                        "posterior",
                        format!("{name} draws (chain × draw)"),
                        b.num_draws(),
                        format!("{d} draws, as in {first}"),
                    ));
                }
                _ => {}
            }
        }
        let num_draws = match num_draws {
            Some((d, _)) if d > 0 => d,
            Some((_, name)) => {
                return Err(Error::invalid(
                    "posterior",
                    format!("{name} draws"),
                    0,
                    "at least one draw",
                ));
            }
            None => {
                return Err(Error::invalid(
                    "posterior",
                    "arrays",
                    "none",
                    "at least one posterior parameter array",
                ));
            }
        };
        // The same model's tables where `like` optimizes the same cells: read and
        // checked when it was built.
        let shared = like
            .filter(|l| {
                l.num_draws == num_draws
                    && l.adstock == model.adstock
                    && l.saturation == model.saturation
                    && l.cells
                        .iter()
                        .map(|c| c.model_index)
                        .eq(opt.iter().copied())
            })
            .map(|l| (l.adstock_params.clone(), l.saturation_params.clone()));
        let (adstock_params, saturation_params) = match shared {
            Some(tables) => tables,
            None => Self::parameters(model, &ad, &sat, &opt, &labels, num_draws)?,
        };

        let mut problem = Problem {
            adstock: model.adstock,
            saturation: model.saturation,
            adstock_first: model.adstock_first,
            num_periods: n_periods,
            target_scale: opt.iter().map(|&c| target_scale[c]).collect(),
            pattern,
            input_scale,
            history,
            adstock_params,
            saturation_params,
            num_draws,
            total_budget: budget,
            // With the spend in the objective (`minimize spend`) the budget is a cap.
            budget_constraint: match scenario.budget_constraint {
                crate::scenario::BudgetConstraint::Equal if scenario.utility.uses_spend() => {
                    crate::scenario::BudgetConstraint::AtMost
                }
                other => other,
            },
            lower: opt.iter().map(|&c| lower[c]).collect(),
            upper: opt.iter().map(|&c| upper[c]).collect(),
            linear_constraints: vec![],
            outcome_constraints: vec![],
            marginal_roi_constraints: vec![],
            plan: None,
            utility: scenario.utility.clone(),
            start: None,
            dim_names,
            cells,
        };
        let mut marginal = vec![];
        for (i, text) in scenario.constraints.iter().enumerate() {
            match crate::constraint::OutcomeConstraint::parse(text, scenario.num_periods) {
                Some(Ok(c)) => problem.outcome_constraints.push(c),
                Some(Err((column, message))) => {
                    return Err(Error::Constraint {
                        context: "scenario".into(),
                        index: i,
                        text: crate::error::truncated(text, 200),
                        column,
                        message,
                    });
                }
                None => {
                    if let Some(m) = MarginalRoiConstraint::parse(text, i, model, &problem.cells) {
                        marginal.push(m?);
                        continue;
                    }
                    let c =
                        LinearConstraint::parse_indexed(text, i, model, &problem.cells, budget)?;
                    problem.linear_constraints.push(c);
                }
            }
        }
        if let Some(start) = &scenario.start {
            problem.start = Some(problem.allocation_from(model, start, "start")?);
        }
        problem.plan = plan_spec(model, scenario, &opt)?;
        // The diversification ratio: a spread over draws of each cell's response.
        let ratio = std::iter::once(("objective", &problem.utility))
            .chain(
                problem
                    .outcome_constraints
                    .iter()
                    .map(|c| ("constraints", &c.utility)),
            )
            .find(|(_, u)| u.needs_cell_moments());
        if let Some((field, u)) = ratio {
            if num_draws < 2 {
                return Err(Error::invalid(
                    "scenario",
                    field,
                    format!("{u:?} over {num_draws} draw", u = u.to_string()),
                    "at least 2 posterior draws (the diversification ratio is a ratio of standard deviations over draws)",
                ));
            }
            if problem.plan.is_some() {
                return Err(Error::invalid(
                    "scenario",
                    field,
                    format!("{:?}", u.to_string()),
                    "no diversification_ratio with a per-period decision (it compares the cells' spreads at one spend per cell)",
                ));
            }
        }
        if problem.plan.is_some() && !marginal.is_empty() {
            return Err(Error::invalid(
                "scenario",
                "constraints",
                format!("{:?}", marginal[0].name),
                "no mroi(…) constraint with a per-period decision (a cap on one spend per period)",
            ));
        }
        if marginal.is_empty() {
            return Ok(problem);
        }
        // Marginal-ROI caps, found on the f64 CPU evaluator of this very problem
        // (shared, not copied), as linear rows.
        let shared = std::sync::Arc::new(problem);
        let mut ev = crate::eval::CpuEvaluator::shared(shared.clone())?;
        let mut rows = vec![];
        for m in &marginal {
            rows.extend(m.rows(&shared, &mut ev)?);
        }
        drop(ev);
        let mut problem = std::sync::Arc::try_unwrap(shared).unwrap_or_else(|p| (*p).clone());
        problem.linear_constraints.extend(rows);
        problem.marginal_roi_constraints = marginal;
        Ok(problem)
    }

    /// Every draw's parameters for every optimized cell, broadcast, each in its
    /// domain, the adstock's weights finite.
    fn parameters(
        model: &Model,
        ad: &[(String, &Array, Broadcast)],
        sat: &[(String, &Array, Broadcast)],
        opt: &[usize],
        labels: &[String],
        num_draws: usize,
    ) -> Result<(
        std::sync::Arc<ParameterTable>,
        std::sync::Arc<ParameterTable>,
    )> {
        // Every draw's parameters for every optimized cell, broadcast, in f64.
        fits(
            "draws × cells × parameters",
            &[num_draws, opt.len(), ad.len() + sat.len()],
        )?;
        // Each group in f32 where all its arrays are float32 in their file (f32 → f64
        // is exact: the same values at half the memory), else in f64.
        let gather = |params: &[(String, &Array, Broadcast)],
                      domains: &[crate::saturation::Domain]|
         -> Result<ParameterTable> {
            let all_f32 = !params.is_empty()
                && params
                    .iter()
                    .all(|(_, a, _)| a.stored().is_some_and(|s| s.header().item_bytes == 4));
            let g = Gather {
                params,
                domains,
                opt,
                labels,
                num_draws,
            };
            Ok(if all_f32 {
                ParameterTable::F32(g.run()?)
            } else {
                ParameterTable::F64(g.run()?)
            })
        };
        let adstock_params = gather(ad, model.adstock.kind.domains())?;
        let saturation_params = gather(sat, model.saturation.domains())?;

        // Adstock weights must be finite for every draw and cell: checked in parallel
        // over draws where the kind's parameters in their domains do not already
        // guarantee it (`AdstockKind::weights_always_finite`), the first failure named.
        let na = model.adstock.kind.parameters().len();
        let rows = num_draws * opt.len();
        let all_finite = model.adstock.kind.weights_always_finite() || {
            use rayon::prelude::*;
            (0..num_draws).into_par_iter().all(|d| {
                let mut w = vec![0.0; model.adstock.kernel_len()];
                (d * opt.len()..(d + 1) * opt.len()).all(|i| {
                    model.adstock.weights(&adstock_params.row(i, na), &mut w);
                    w.iter().all(|v| v.is_finite())
                })
            })
        };
        let mut w = vec![0.0; model.adstock.kernel_len()];
        for i in 0..if all_finite { 0 } else { rows } {
            let p = adstock_params.row(i, na);
            model.adstock.weights(&p, &mut w);
            if let Some(bad) = w.iter().find(|v| !v.is_finite()) {
                let (d, j) = (i / opt.len(), i % opt.len());
                return Err(Error::invalid(
                    "posterior",
                    format!(
                        "adstock weights of draw {d}, cell {} (parameters {:?})",
                        labels[opt[j]], &*p
                    ),
                    bad,
                    "finite weights (the parameters give weights that are all zero or undefined)",
                ));
            }
        }
        Ok((
            std::sync::Arc::new(adstock_params),
            std::sync::Arc::new(saturation_params),
        ))
    }

    /// D: the number of posterior draws (chain × draw).
    pub fn num_draws(&self) -> usize {
        self.num_draws
    }

    /// n: the number of optimized cells.
    pub fn num_cells(&self) -> usize {
        self.cells.len()
    }

    /// The same problem over the draws `range` only (their parameters copied): a
    /// shard for an evaluator of its own, as [`crate::ShardedEvaluator`] spreads the
    /// draws over several devices.
    ///
    /// ```
    /// use mmm_budget::*;
    /// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 100 }, 1);
    /// let problem = Problem::new(&model, &scenario)?;
    /// let half = problem.draws(50..100)?;
    /// assert_eq!((half.num_draws(), half.num_cells()), (50, problem.num_cells()));
    /// # Ok::<(), mmm_budget::Error>(())
    /// ```
    pub fn draws(&self, range: std::ops::Range<usize>) -> Result<Problem> {
        if range.start >= range.end || range.end > self.num_draws {
            return Err(Error::invalid(
                "problem",
                "draws",
                format!("{range:?}"),
                format!("a non-empty range within 0..{}", self.num_draws),
            ));
        }
        Ok(self.with_draws(range.len(), |params, per| {
            params.slice(range.start * per..range.end * per)
        }))
    }

    /// The same problem over the listed draws only, in their order (their parameters
    /// copied): what the solver needs of a few draws' own slopes, on the host,
    /// whatever evaluates the rest.
    ///
    /// ```
    /// use mmm_budget::*;
    /// let (model, scenario) = demo::case(&demo::DemoSize { channels: 3, geos: 2, draws: 100 }, 1);
    /// let problem = Problem::new(&model, &scenario)?;
    /// let some = problem.draws_at(&[7, 3, 99])?;
    /// assert_eq!(some.num_draws(), 3);
    /// let c = problem.num_cells() - 1;
    /// assert_eq!(some.saturation_params_of(1, c), problem.saturation_params_of(3, c));
    /// assert!(problem.draws_at(&[100]).is_err());
    /// # Ok::<(), mmm_budget::Error>(())
    /// ```
    pub fn draws_at(&self, draws: &[usize]) -> Result<Problem> {
        if let Some(d) = draws.iter().find(|d| **d >= self.num_draws) {
            return Err(Error::invalid(
                "problem",
                "draws",
                d,
                format!("draws within 0..{}", self.num_draws),
            ));
        }
        if draws.is_empty() {
            return Err(Error::invalid(
                "problem",
                "draws",
                "[]",
                "at least one draw",
            ));
        }
        Ok(self.with_draws(draws.len(), |params, per| {
            params.gather(draws.iter().map(|d| d * per..(d + 1) * per))
        }))
    }

    /// This problem with `num_draws` draws whose parameter tables `take` makes from
    /// the tables here (given a table and its values per draw).
    fn with_draws(
        &self,
        num_draws: usize,
        take: impl Fn(&ParameterTable, usize) -> ParameterTable,
    ) -> Problem {
        let n = self.num_cells();
        let table = |params: &ParameterTable, per_cell: usize| {
            std::sync::Arc::new(take(params, n * per_cell))
        };
        Problem {
            adstock: self.adstock,
            saturation: self.saturation,
            adstock_first: self.adstock_first,
            num_periods: self.num_periods,
            cells: self.cells.clone(),
            target_scale: self.target_scale.clone(),
            pattern: self.pattern.clone(),
            input_scale: self.input_scale.clone(),
            history: self.history.clone(),
            adstock_params: table(&self.adstock_params, self.adstock.kind.parameters().len()),
            saturation_params: table(&self.saturation_params, self.saturation.parameters().len()),
            num_draws,
            total_budget: self.total_budget,
            budget_constraint: self.budget_constraint,
            lower: self.lower.clone(),
            upper: self.upper.clone(),
            linear_constraints: self.linear_constraints.clone(),
            marginal_roi_constraints: self.marginal_roi_constraints.clone(),
            plan: self.plan.clone(),
            outcome_constraints: self.outcome_constraints.clone(),
            utility: self.utility.clone(),
            start: self.start.clone(),
            dim_names: self.dim_names.clone(),
        }
    }

    /// The adstock parameters of draw `d`, optimized cell `c`, as f64.
    #[inline]
    pub fn adstock_params_of(&self, d: usize, c: usize) -> Params {
        let np = self.adstock.kind.parameters().len();
        self.adstock_params.row(d * self.cells.len() + c, np)
    }

    /// The saturation parameters of draw `d`, optimized cell `c`, as f64.
    #[inline]
    pub fn saturation_params_of(&self, d: usize, c: usize) -> Params {
        let np = self.saturation.parameters().len();
        self.saturation_params.row(d * self.cells.len() + c, np)
    }

    /// 1/(κ_tc s_c) for t < N of optimized cell `c`.
    #[inline]
    pub fn input_scale_of(&self, c: usize) -> &[f64] {
        &self.input_scale[c * self.num_periods..(c + 1) * self.num_periods]
    }

    /// Checks an allocation over the optimized cells: `len` finite values >= 0
    /// (n, or n·N for the time-varying form).
    pub fn check_allocation(&self, x: &[f64], len: usize) -> Result<()> {
        check_allocation(&self.cells, x, len)
    }

    /// Cell c's carry-in (scaled spend in the L periods before the window, oldest
    /// first), if the scenario gives any.
    pub fn history_of(&self, c: usize) -> Option<&[f64]> {
        let l = self.adstock.l_max;
        (!self.history.is_empty()).then(|| &self.history[c * l..(c + 1) * l])
    }

    /// The adstocked carry-in of cell c with adstock weights `w` (K of them), for
    /// the first periods of the window: h_t = Σ_(t < l < K) w_l z_(t−l), z_(−j) the
    /// scaled spend j periods before the window, into `h[t]` for t < K − 1 (later
    /// periods get none). Zeros without history.
    pub fn carry_in(&self, c: usize, w: &[f64], h: &mut Vec<f64>) {
        let k = w.len();
        h.clear();
        h.resize(k.saturating_sub(1), 0.0);
        let Some(z) = self.history_of(c) else {
            return;
        };
        let l_max = z.len();
        for (t, ht) in h.iter_mut().enumerate() {
            // Period t − l = −j, j = l − t ∈ [1, L]: z[L − j].
            *ht = (t + 1..k)
                .filter(|l| l - t <= l_max)
                .map(|l| w[l] * z[l_max - (l - t)])
                .sum();
        }
    }

    /// With saturation first, the carry-in's share of the window's response of cell
    /// c (before τ_c): Σ_(j=1..L) g(z_(−j)) Σ_(j ≤ l < K) w_l, the saturated spend
    /// before the window as adstock carries it past period 0; it does not depend on
    /// the allocation.
    pub fn carry_in_saturated(&self, c: usize, w: &[f64], params: &[f64]) -> f64 {
        let Some(z) = self.history_of(c) else {
            return 0.0;
        };
        let l_max = z.len();
        (1..=l_max)
            .map(|j| {
                let reach: f64 = w.iter().skip(j).sum();
                if reach == 0.0 {
                    0.0
                } else {
                    self.saturation.derivatives(z[l_max - j], params)[0] * reach
                }
            })
            .sum()
    }

    /// p_tc for t < N of optimized cell `c`.
    #[inline]
    pub fn pattern_of(&self, c: usize) -> &[f64] {
        &self.pattern[c * self.num_periods..(c + 1) * self.num_periods]
    }

    /// Whether every draw's response is concave in every optimized cell's spend (the
    /// saturation curve of every draw and cell is, [`Saturation::is_concave`]; adstock,
    /// time distribution and cost per unit are linear): then the mean response is
    /// concave and a KKT point with linear constraints is the optimum.
    pub fn is_concave(&self) -> bool {
        let np = self.saturation.parameters().len();
        np == 0
            || (0..self.saturation_params.len() / np).all(|i| {
                self.saturation
                    .is_concave(&self.saturation_params.row(i, np))
            })
    }

    /// The budget spread evenly over the optimized cells (B/n each), the start
    /// PyMC-Marketing uses.
    pub fn uniform_allocation(&self) -> Vec<f64> {
        vec![self.total_budget / self.num_cells() as f64; self.num_cells()]
    }

    /// Resolves `(selector, budget per period)` entries to an allocation over the
    /// optimized cells. Cells no entry names get 0; an entry that names a cell not
    /// optimized with a budget other than 0 is an error.
    pub fn allocation_from(
        &self,
        model: &Model,
        entries: &[(Selector, f64)],
        field: &str,
    ) -> Result<Vec<f64>> {
        self.allocation_named(model, entries, field).map(|(x, _)| x)
    }

    /// [`Problem::allocation_from`], with which optimized cells an entry named.
    pub fn allocation_named(
        &self,
        model: &Model,
        entries: &[(Selector, f64)],
        field: &str,
    ) -> Result<(Vec<f64>, Vec<bool>)> {
        let mut x = vec![0.0; self.num_cells()];
        let mut named = vec![false; self.num_cells()];
        // Model cell → optimized cell, once (a search per cell was quadratic).
        let mut slot = vec![None; model.num_cells()];
        for (j, cell) in self.cells.iter().enumerate() {
            slot[cell.model_index] = Some(j);
        }
        for (i, (selector, value)) in entries.iter().enumerate() {
            let field = format!("{field}[{i}]");
            if !(value.is_finite() && *value >= 0.0) {
                return Err(Error::invalid(
                    "allocation",
                    format!("{field}.budget"),
                    value,
                    "a finite number >= 0",
                ));
            }
            let hits = select(model, selector, &field)
                .map_err(|e| e.recontext("scenario", "allocation"))?;
            for (c, hit) in hits.iter().enumerate() {
                if !hit {
                    continue;
                }
                match slot[c] {
                    Some(j) => {
                        x[j] = *value;
                        named[j] = true;
                    }
                    None if *value == 0.0 => {}
                    None => {
                        return Err(Error::invalid(
                            "allocation",
                            field.clone(),
                            format!("{value} for cell {}", model.cell_label(&model.cells()[c])),
                            "budget only for optimized cells",
                        ));
                    }
                }
            }
        }
        Ok((x, named))
    }

    /// What an allocation (per period) does that an optimized plan would not: spend
    /// other than the budget (or more, under `at_most`), leave its bounds, or leave
    /// cells out (`named`: the cells the allocation's source named; those left out
    /// have 0). One line each, for the user to read.
    pub fn allocation_warnings(&self, x: &[f64], named: Option<&[bool]>) -> Vec<String> {
        let mut out = vec![];
        let spent: f64 = x.iter().sum();
        let b = self.total_budget;
        let off = (spent - b).abs() > 1e-9 * b.max(1.0);
        let over = spent > b * (1.0 + 1e-9);
        match self.budget_constraint {
            crate::scenario::BudgetConstraint::Equal if off => out.push(format!(
                "the allocation spends {} per period, the budget is {} ({}%)",
                readable_number(spent),
                readable_number(b),
                readable_number(100.0 * (spent - b) / b.max(f64::MIN_POSITIVE))
            )),
            crate::scenario::BudgetConstraint::AtMost if over => out.push(format!(
                "the allocation spends {} per period, over the budget of at most {}",
                readable_number(spent),
                readable_number(b)
            )),
            _ => {}
        }
        let outside: Vec<String> = (0..x.len())
            .filter(|&c| x[c] < self.lower[c] || x[c] > self.upper[c])
            .map(|c| {
                format!(
                    "{} {} (bounds {} to {})",
                    self.cells[c].label,
                    readable_number(x[c]),
                    readable_number(self.lower[c]),
                    readable_number(self.upper[c])
                )
            })
            .collect();
        if !outside.is_empty() {
            out.push(format!(
                "{} outside {} bounds: {}",
                count(outside.len(), "cell"),
                if outside.len() == 1 { "its" } else { "their" },
                list(&outside)
            ));
        }
        if let Some(named) = named {
            let left: Vec<String> = (0..x.len())
                .filter(|&c| !named[c])
                .map(|c| self.cells[c].label.clone())
                .collect();
            if !left.is_empty() {
                out.push(format!(
                    "{} not in the allocation file given 0: {}",
                    count(left.len(), "cell"),
                    list(&left)
                ));
            }
        }
        out
    }
}

/// `1 cell`, `3 cells`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The first few items and how many more.
fn list(items: &[String]) -> String {
    const SHOWN: usize = 5;
    let head = items[..items.len().min(SHOWN)].join(", ");
    if items.len() > SHOWN {
        format!("{head} and {} more", items.len() - SHOWN)
    } else {
        head
    }
}

/// Which of the model's cells a selector picks.
/// The scenario's reference spend per model cell (later entries override earlier
/// ones; cells no entry names have 0), where it has one.
fn reference_spend(model: &Model, scenario: &Scenario) -> Result<Option<Vec<f64>>> {
    let Some(entries) = &scenario.reference else {
        return Ok(None);
    };
    let mut r = vec![0.0; model.num_cells()];
    for (i, (selector, value)) in entries.iter().enumerate() {
        if !(value.is_finite() && *value >= 0.0) {
            return Err(Error::invalid(
                "scenario",
                format!("reference[{i}].budget"),
                value,
                "a finite number >= 0",
            ));
        }
        let hits = select(model, selector, &format!("reference[{i}]"))?;
        for (slot, hit) in r.iter_mut().zip(hits) {
            if hit {
                *slot = *value;
            }
        }
    }
    Ok(Some(r))
}

pub(crate) fn select(model: &Model, selector: &Selector, field: &str) -> Result<Vec<bool>> {
    let names = model.dim_names();
    let mut wanted: Vec<Option<usize>> = vec![None; names.len()];
    for (dim, coord) in selector {
        let k = names.iter().position(|n| n == dim).ok_or_else(|| {
            Error::invalid(
                "scenario",
                format!("{field}.{dim}"),
                format!("{dim:?}"),
                format!("a dim among {names:?}"),
            )
        })?;
        let i = model
            .coords_of(k)
            .iter()
            .position(|c| c == coord)
            .ok_or_else(|| {
                Error::invalid(
                    "scenario",
                    format!("{field}.{dim}"),
                    format!("{coord:?}"),
                    format!("a coordinate of `{dim}` among {:?}", model.coords_of(k)),
                )
            })?;
        wanted[k] = Some(i);
    }
    Ok(model
        .cells()
        .iter()
        .map(|c| {
            c.coords
                .iter()
                .zip(&wanted)
                .all(|(i, w)| w.is_none_or(|w| w == *i))
        })
        .collect())
}

fn per_cell(model: &Model, field: &str, array: &Array) -> Result<Vec<f64>> {
    let b = model.broadcast("model", field, array, false)?;
    Ok(b.offsets.iter().map(|&o| array.values[o]).collect())
}

fn period_values(
    model: &Model,
    rules: &[PeriodRule],
    n_periods: usize,
    field: &str,
    ok: impl Fn(f64) -> bool,
) -> Result<Vec<Option<Vec<f64>>>> {
    let mut out = vec![None; model.num_cells()];
    for (i, rule) in rules.iter().enumerate() {
        let hits = select(model, &rule.select, &format!("{field}[{i}].select"))?;
        let values = if rule.values.len() == n_periods {
            rule.values.clone()
        } else {
            return Err(Error::Shape {
                context: "scenario".into(),
                field: format!("{field}[{i}]"),
                found: vec![rule.values.len()],
                expected: format!("{n_periods} values, one per period (num_periods)"),
            });
        };
        if let Some(t) = values.iter().position(|&v| !ok(v)) {
            return Err(Error::invalid(
                "scenario",
                format!("{field}[{i}][{t}]"),
                values[t],
                if field == "cost_per_unit" {
                    "a finite number > 0"
                } else {
                    "a finite number >= 0"
                },
            ));
        }
        for (o, hit) in out.iter_mut().zip(hits) {
            if hit {
                *o = Some(values.clone());
            }
        }
    }
    Ok(out)
}

/// The scenario's plan over time, checked: `None` for the constant decision, which
/// takes no flighting limits or period sums; a per-period decision takes no time
/// distribution (the plan sets each period's spend).
fn plan_spec(
    model: &Model,
    scenario: &Scenario,
    opt: &[usize],
) -> Result<Option<crate::plan::PlanSpec>> {
    let n_periods = scenario.num_periods;
    let every = match scenario.decision {
        crate::scenario::Decision::Constant => {
            for (field, given) in [
                ("flighting", !scenario.flighting.is_empty()),
                ("period_sums", !scenario.period_sums.is_empty()),
            ] {
                if given {
                    return Err(Error::invalid(
                        "scenario",
                        field,
                        "given with a constant decision",
                        r#"a plan over time ("decision": "per_period" or {"every": k})"#,
                    ));
                }
            }
            return Ok(None);
        }
        crate::scenario::Decision::Every(k) => k,
    };
    if every == 0 {
        return Err(Error::invalid(
            "scenario",
            "decision.every",
            0,
            "an integer >= 1",
        ));
    }
    if !scenario.time_distribution.is_empty() {
        return Err(Error::invalid(
            "scenario",
            "time_distribution",
            "given with a per-period decision",
            "no time distribution (a plan over time sets each period's spend)",
        ));
    }
    let on_opt = |hits: Vec<bool>| -> Vec<bool> { opt.iter().map(|&c| hits[c]).collect() };
    let mut flighting = vec![];
    for (i, f) in scenario.flighting.iter().enumerate() {
        let field = format!("flighting[{i}]");
        if !(f.max_change.is_finite() && f.max_change >= 0.0) {
            return Err(Error::invalid(
                "scenario",
                format!("{field}.max_change"),
                f.max_change,
                "a finite number >= 0 (money per period)",
            ));
        }
        let hits = on_opt(select(model, &f.select, &format!("{field}.select"))?);
        flighting.push(crate::plan::Flighting {
            name: format!("flighting[{i}]"),
            cells: hits,
            max_change: f.max_change,
        });
    }
    let mut period_sums = vec![];
    for (i, p) in scenario.period_sums.iter().enumerate() {
        let field = format!("period_sums[{i}]");
        if !(1 <= p.first && p.first <= p.last && p.last <= n_periods) {
            return Err(Error::invalid(
                "scenario",
                format!("{field}.periods"),
                format!("[{}, {}]", p.first, p.last),
                format!("[first, last] with 1 <= first <= last <= {n_periods}"),
            ));
        }
        for (side, v) in [("min", p.min), ("max", p.max)] {
            if let Some(v) = v
                && !(v.is_finite() && v >= 0.0)
            {
                return Err(Error::invalid(
                    "scenario",
                    format!("{field}.{side}"),
                    v,
                    "a finite number >= 0 (money over those periods)",
                ));
            }
        }
        if let (Some(a), Some(b)) = (p.min, p.max)
            && a > b
        {
            return Err(Error::invalid(
                "scenario",
                &field,
                format!("min {a} > max {b}"),
                "min <= max",
            ));
        }
        let hits = on_opt(select(model, &p.select, &format!("{field}.select"))?);
        period_sums.push(crate::plan::PeriodSumRows {
            name: format!("period_sums[{i}] (periods {}-{})", p.first, p.last),
            cells: hits,
            periods: p.first - 1..p.last,
            min: p.min,
            max: p.max,
        });
    }
    Ok(Some(crate::plan::PlanSpec {
        groups: crate::plan::PlanSpec::groups_of(every, n_periods),
        flighting,
        period_sums,
    }))
}

/// `len` finite values >= 0, the error naming the cell (the values are cell-major when
/// `len` is a multiple of the cells).
pub(crate) fn check_allocation(cells: &[CellInfo], x: &[f64], len: usize) -> Result<()> {
    if x.len() != len {
        return Err(Error::Shape {
            context: "allocation".into(),
            field: "x".into(),
            found: vec![x.len()],
            expected: format!("{len} values"),
        });
    }
    if let Some(i) = x.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        let label = &cells[i / (len / cells.len().max(1)).max(1)].label;
        return Err(Error::invalid(
            "allocation",
            format!("x[{i}] (cell {label})"),
            x[i],
            "a finite number >= 0",
        ));
    }
    Ok(())
}

/// The quantities derived from finite inputs must be finite too: the budget over the
/// window (N·B), each cell's input scale 1/(κ s), the largest input to its saturation
/// curve (B · the unit pattern) and the target scale over the window's periods
/// (τ (N + L), the scale of a response).
#[allow(clippy::too_many_arguments)]
fn check_derived(
    model: &Model,
    scenario: &Scenario,
    opt: &[usize],
    labels: &[String],
    channel_scale: &[f64],
    target_scale: &[f64],
    input_scale: &[f64],
    pattern: &[f64],
) -> Result<()> {
    let n = scenario.num_periods;
    let budget = scenario.total_budget;
    if !(budget * n as f64).is_finite() {
        return Err(Error::invalid(
            "scenario",
            "total_budget",
            budget,
            format!("a budget whose total over the {n} periods is finite"),
        ));
    }
    let window = (n + model.adstock.l_max) as f64;
    for (k, &c) in opt.iter().enumerate() {
        let cell = k * n..(k + 1) * n;
        if input_scale[cell.clone()]
            .iter()
            .any(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(Error::invalid(
                "model",
                format!("channel_scale[{}]", labels[c]),
                channel_scale[c],
                "a scale whose reciprocal, with the cell's cost_per_unit, is finite and > 0",
            ));
        }
        if pattern[cell].iter().any(|p| !(budget * p).is_finite()) {
            return Err(Error::invalid(
                "scenario",
                "total_budget",
                budget,
                format!(
                    "a budget that, over channel_scale[{}] = {} (and its cost_per_unit), stays finite",
                    labels[c], channel_scale[c]
                ),
            ));
        }
        if !(target_scale[c] * window).is_finite() {
            return Err(Error::invalid(
                "model",
                format!("target_scale[{}]", labels[c]),
                target_scale[c],
                format!("a scale whose response over {window} periods stays finite"),
            ));
        }
    }
    Ok(())
}

/// Every draw's parameters of one group (adstock or saturation) for every optimized
/// cell, broadcast, `[draw][cell][parameter]`.
struct Gather<'a> {
    params: &'a [(String, &'a Array, Broadcast)],
    domains: &'a [crate::saturation::Domain],
    opt: &'a [usize],
    labels: &'a [String],
    num_draws: usize,
}

/// A table's element: f64, or f32 for values that came as f32 (exact both ways).
trait Element: Copy + Send + Sync + Default {
    fn from_f64(v: f64) -> Self;
}

impl Element for f64 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v
    }
}

impl Element for f32 {
    #[inline]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl Gather<'_> {
    /// In parallel over blocks of draws, each draw's offset into every array computed
    /// once. A stored array whose draws are consecutive blocks in its file (C order,
    /// `chain` and `draw` its leading axes) is read straight into the layout, a block
    /// of draws at a time: by positioned reads where it is stored uncompressed, by
    /// hyperslabs where it is a netCDF-4 variable, in order (the blocks then gathered
    /// in order) where it is a deflated NPZ member; any other is read whole first. Where a value is out of its domain, the first such value (in
    /// draw, cell, parameter order) is found again sequentially and named.
    fn run<T: Element>(&self) -> Result<Vec<T>> {
        use rayon::prelude::*;
        let Gather {
            params,
            domains,
            opt,
            labels,
            num_draws,
        } = *self;
        let np = params.len();
        let width = opt.len() * np;
        let mut out = crate::memory::zeroed::<T>(num_draws * width);
        if np == 0 {
            return Ok(out);
        }
        let offsets: Vec<Vec<usize>> = params
            .iter()
            .map(|(_, _, b)| opt.iter().map(|&c| b.offsets[c]).collect())
            .collect();
        let sources = params
            .iter()
            .map(|(_, array, b)| ParameterSource::of(array, b, num_draws))
            .collect::<Result<Vec<_>>>()?;
        // Blocks of about 1 MiB of any one array's values.
        let most_block = sources.iter().map(|s| s.block()).max().unwrap_or(1).max(1);
        let draws_per_task = ((1 << 17) / most_block).clamp(1, num_draws.max(1));
        let task = |(t, rows): (usize, &mut [T])| -> Result<bool> {
            let d0 = t * draws_per_task;
            let mut ok = true;
            // Each array's block read (or inflated) at once with the others'.
            let fetched = (0..np)
                .into_par_iter()
                .map(|k| {
                    let (mut bytes, mut buf) = (Vec::new(), Vec::new());
                    let (values, shift) =
                        sources[k].draws(d0, rows.len() / width, &mut bytes, &mut buf)?;
                    Ok((values, shift, buf))
                })
                .collect::<Result<Vec<_>>>()?;
            for (k, ((_, _, b), (values, shift, buf))) in params.iter().zip(&fetched).enumerate() {
                let (values, shift) = (values.unwrap_or(buf), *shift);
                let (lo, hi) = domains[k].interval();
                for (i, row) in rows.chunks_mut(width).enumerate() {
                    let base = b.index(d0 + i, 0) - b.offsets[0] - shift;
                    let draw = &values[base..];
                    let mut inside = true;
                    for (slot, &offset) in row[k..].iter_mut().step_by(np).zip(&offsets[k]) {
                        let v = draw[offset];
                        inside &= (v >= lo) & (v <= hi);
                        *slot = T::from_f64(v);
                    }
                    ok &= inside;
                }
            }
            Ok(ok)
        };
        // A deflated member is inflated in order: then the blocks are gathered in
        // order too (the members inflated at once, each on a thread).
        let all_in_domain = if sources.iter().any(|s| s.in_order()) {
            out.chunks_mut(width * draws_per_task)
                .enumerate()
                .map(task)
                .try_fold(true, |a, b| b.map(|b| a && b))?
        } else {
            out.par_chunks_mut(width * draws_per_task)
                .enumerate()
                .map(task)
                .try_reduce(|| true, |a, b| Ok(a && b))?
        };
        if all_in_domain {
            return Ok(out);
        }
        let values = params
            .iter()
            .map(|(_, array, _)| array.read_values())
            .collect::<Result<Vec<_>>>()?;
        for d in 0..num_draws {
            for &c in opt {
                for (k, (name, _, b)) in params.iter().enumerate() {
                    let v = values[k][b.index(d, c)];
                    if !domains[k].contains(v) {
                        let draws = b.draw.0;
                        return Err(Error::invalid(
                            "posterior",
                            format!(
                                "{name}[chain {}, draw {}, cell {}]",
                                d / draws,
                                d % draws,
                                labels[c]
                            ),
                            v,
                            domains[k].expected(),
                        ));
                    }
                }
            }
        }
        unreachable!("a value out of its domain was found in parallel")
    }
}

/// Where a problem's gather reads one posterior array's values, a block of draws at a
/// time.
enum ParameterSource<'a> {
    /// Values held (or read whole from the file): any layout.
    Held(std::borrow::Cow<'a, [f64]>),
    /// Values read from the file by ranges: each flattened draw's `block` values
    /// consecutive, draw after draw.
    Ranges {
        stored: &'a crate::io::StoredArray,
        file: std::fs::File,
        block: usize,
    },
    /// Values read by hyperslabs of a netCDF-4 variable, laid out as for `Ranges`.
    Rows {
        stored: &'a crate::io::StoredArray,
        block: usize,
    },
    /// Values inflated in order from a deflated member, laid out as for `Ranges`:
    /// blocks of draws must be asked for in order.
    Stream {
        stream: Box<std::sync::Mutex<crate::io::ValueStream>>,
        block: usize,
    },
}

impl<'a> ParameterSource<'a> {
    fn of(array: &'a Array, b: &Broadcast, num_draws: usize) -> Result<Self> {
        let Some(stored) = array.stored() else {
            return Ok(Self::Held(std::borrow::Cow::Borrowed(&array.values)));
        };
        let block = array.len() / num_draws.max(1);
        let consecutive = block * num_draws == array.len()
            && b.draw.1 == block
            && (b.chain.0 <= 1 || b.chain.1 == b.draw.0 * block);
        if stored.ranges_readable() && consecutive {
            Ok(Self::Ranges {
                stored,
                file: stored.open()?,
                block,
            })
        } else if stored.rows_readable() && consecutive {
            Ok(Self::Rows { stored, block })
        } else if stored.streamable() && consecutive {
            Ok(Self::Stream {
                stream: Box::new(std::sync::Mutex::new(stored.value_stream()?)),
                block,
            })
        } else {
            Ok(Self::Held(std::borrow::Cow::Owned(stored.read_all()?)))
        }
    }

    /// Values per draw read by ranges (1 for held values: no blocks).
    fn block(&self) -> usize {
        match self {
            Self::Held(_) => 1,
            Self::Ranges { block, .. } | Self::Rows { block, .. } | Self::Stream { block, .. } => {
                *block
            }
        }
    }

    /// Whether blocks of draws must be read in order.
    fn in_order(&self) -> bool {
        matches!(self, Self::Stream { .. })
    }

    /// The values of draws `d0 .. d0 + count` and the shift to subtract from an
    /// index into the whole array: held values themselves (shift 0), or, read into
    /// `buf`, `None` (shift `d0 · block`).
    fn draws<'s>(
        &'s self,
        d0: usize,
        count: usize,
        bytes: &mut Vec<u8>,
        buf: &mut Vec<f64>,
    ) -> Result<(Option<&'s [f64]>, usize)> {
        match self {
            Self::Held(values) => Ok((Some(values), 0)),
            Self::Ranges {
                stored,
                file,
                block,
            } => {
                buf.resize(count * block, 0.0);
                stored.read_elements(file, d0 * block, buf, bytes)?;
                Ok((None, d0 * block))
            }
            Self::Rows { stored, block } => {
                stored.read_rows(d0 * block, count * block, buf)?;
                Ok((None, d0 * block))
            }
            Self::Stream { stream, block } => {
                let mut stream = stream
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // The gather asks for blocks in order where a source is a stream.
                assert_eq!(
                    stream.position(),
                    d0 * block,
                    "blocks of draws out of order"
                );
                buf.resize(count * block, 0.0);
                stream.read(buf)?;
                Ok((None, d0 * block))
            }
        }
    }
}

/// The product of `sizes` in f64 values must fit the memory budget
/// ([`crate::io::memory_budget`]), checked before anything of that size is allocated:
/// a posterior broadcast over many cells can ask for more than the file holds.
fn fits(what: &str, sizes: &[usize]) -> Result<()> {
    let budget = crate::io::memory_budget();
    let bytes = sizes
        .iter()
        .try_fold(8u64, |a, &s| a.checked_mul(s as u64))
        .filter(|&b| b <= budget);
    if bytes.is_none() {
        let shown: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
        return Err(Error::invalid(
            "problem",
            what,
            shown.join(" × "),
            format!(
                "at most {budget} bytes of f64 values in all (the memory budget; MMM_MEMORY_BUDGET raises it)"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::{SyntheticSize, synthetic};
    use std::sync::Arc;

    #[test]
    fn a_problem_like_another_shares_its_tables_where_it_optimizes_the_same_cells() {
        let size = SyntheticSize {
            channels: 3,
            geos: 2,
            draws: 40,
            periods: 8,
            l_max: 4,
        };
        let (model, scenario) = synthetic(&size, 3);
        let first = Problem::new(&model, &scenario).unwrap();
        let mut other = scenario.clone();
        other.total_budget *= 1.5;
        let like = Problem::new_like(&model, &other, &first).unwrap();
        assert!(Arc::ptr_eq(&first.adstock_params, &like.adstock_params));
        assert!(Arc::ptr_eq(
            &first.saturation_params,
            &like.saturation_params
        ));
        // Everything else as a problem built anew.
        let anew = Problem::new(&model, &other).unwrap();
        assert_eq!(format!("{like:?}"), format!("{anew:?}"));
        // Other cells: the tables gathered for them.
        let channel = model.channels[1].clone();
        other.optimize = Some(vec![[("channel".to_string(), channel)].into()]);
        let fewer = Problem::new_like(&model, &other, &first).unwrap();
        assert!(!Arc::ptr_eq(&first.adstock_params, &fewer.adstock_params));
        assert_eq!(
            format!("{fewer:?}"),
            format!("{:?}", Problem::new(&model, &other).unwrap())
        );
    }
}
