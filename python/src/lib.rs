//! The native half of the `mmm_budget` Python package: the library's model readers,
//! solver and reports behind a few functions that take and give JSON (the formats of
//! `scenario.json`, allocation files and the command line's `--out`), so that Python
//! and the command line read the same inputs, refuse them with the same messages and
//! answer the same numbers. The Python half (`mmm_budget/`) turns those answers into
//! xarray and pandas objects.
//!
//! - The posterior of an in-memory `InferenceData` is read through
//!   [`mmm_budget::io::InferenceSource`] from the numpy buffers themselves (borrowed,
//!   not copied; float64 taken as it is, float32 widened as it is read).
//! - The GIL is released while a problem is resolved and solved; every solver
//!   iteration (and every point of a curve) takes it back for a moment to run Python's
//!   signal handlers, so that Ctrl-C stops the solve at the next iteration and raises
//!   `KeyboardInterrupt`.
//! - Errors become the exceptions of `mmm_budget.errors`, their message the library's
//!   one line.

use mmm_budget::io::{self, InferenceSource, VariableShape};
use mmm_budget::report::{Report, frontier_json, solution_json};
use mmm_budget::{
    Backend, Error, GpuOptions, Model, Options, Problem, Scenario, Settings, solve_on,
};
use numpy::{PyArray1, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The exception of `mmm_budget.errors` for a library error.
fn to_py(e: Error) -> PyErr {
    let class = match &e {
        Error::Device { .. } => "DeviceError",
        Error::Solver { .. } => "SolverError",
        Error::Render { .. } => "MmmBudgetError",
        _ => "InputError",
    };
    raise(class, e.to_string())
}

/// An exception of `mmm_budget.errors` by class name.
fn raise(class: &str, message: String) -> PyErr {
    Python::attach(|py| {
        let made = py
            .import("mmm_budget.errors")
            .and_then(|m| m.getattr(class))
            .and_then(|c| c.call1((message.clone(),)));
        match made {
            Ok(exception) => PyErr::from_value(exception),
            Err(e) => e,
        }
    })
}

/// A model loaded once and used by many calls: its posterior lives in Rust.
#[pyclass(frozen, module = "mmm_budget._native")]
struct NativeModel {
    model: Arc<Model>,
    /// Where it came from, as errors name it.
    source: String,
    /// The scenario that came with it (a case folder's `scenario.json`, the demo's).
    scenario: Option<String>,
    /// The PyMC-Marketing version that fitted it, where known.
    pymc_marketing_version: Option<String>,
}

#[pymethods]
impl NativeModel {
    /// Where the model came from.
    #[getter]
    fn source(&self) -> &str {
        &self.source
    }

    /// The channel names.
    #[getter]
    fn channels(&self) -> Vec<String> {
        self.model.channels.clone()
    }

    /// The extra dims (geo, …) and their coordinates, in the cells' order.
    #[getter]
    fn dims(&self) -> Vec<(String, Vec<String>)> {
        self.model
            .dims
            .iter()
            .map(|d| (d.name.clone(), d.coords.clone()))
            .collect()
    }

    /// Posterior draws (chains × draws).
    #[getter]
    fn num_draws(&self) -> usize {
        self.model.num_draws()
    }

    /// The scenario JSON that came with the model, if any.
    #[getter]
    fn scenario(&self) -> Option<String> {
        self.scenario.clone()
    }

    /// The PyMC-Marketing version that fitted the model, where known.
    #[getter]
    fn pymc_marketing_version(&self) -> Option<String> {
        self.pymc_marketing_version.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "NativeModel({} channels × {} cells, {} draws, from {})",
            self.model.channels.len(),
            self.model.num_cells(),
            self.model.num_draws(),
            self.source
        )
    }
}

/// A model from a path: a model saved by PyMC-Marketing (`.nc`), a case folder (its
/// `model.json`, and its `scenario.json` where there is one) or a `model.json`.
#[pyfunction]
fn load_path(py: Python<'_>, path: std::path::PathBuf) -> PyResult<NativeModel> {
    py.detach(|| load_path_inner(&path)).map_err(to_py)
}

fn load_path_inner(path: &Path) -> mmm_budget::Result<NativeModel> {
    let source = path.display().to_string();
    if path.is_dir() {
        let (mut model, _) = io::load_model(&path.join("model.json"))?;
        // Read whole: the model lives on in Python, whatever becomes of its file.
        model.posterior.load()?;
        let scenario_path = path.join("scenario.json");
        let scenario = if scenario_path.is_file() {
            Some(
                std::fs::read_to_string(&scenario_path).map_err(|source| Error::Io {
                    path: scenario_path.clone(),
                    source,
                })?,
            )
        } else {
            None
        };
        return Ok(NativeModel {
            model: Arc::new(model),
            source,
            scenario,
            pymc_marketing_version: None,
        });
    }
    if path.extension().is_some_and(|e| e == "json") {
        let (mut model, _) = io::load_model(path)?;
        model.posterior.load()?;
        return Ok(NativeModel {
            model: Arc::new(model),
            source,
            scenario: None,
            pymc_marketing_version: None,
        });
    }
    let mut saved = io::load_saved_model(path)?;
    saved.model.posterior.load()?;
    Ok(NativeModel {
        model: Arc::new(saved.model),
        source,
        scenario: None,
        pymc_marketing_version: Some(saved.pymc_marketing_version),
    })
}

/// One group of an in-memory `InferenceData`: its attributes and variables.
struct PyGroup<'py> {
    attrs: HashMap<String, Bound<'py, PyAny>>,
    /// name → (dims, the variable: an `xarray.Variable` or anything with `shape` and
    /// `values`, read only when needed).
    variables: Vec<(String, Vec<String>, Bound<'py, PyAny>)>,
}

/// An in-memory `InferenceData`, as `mmm_budget._model.inference_parts` hands it
/// over: `{"attrs": {…}, "groups": {"posterior": {"attrs": {…}, "variables": {name:
/// (dims, xarray.Variable)}}, "constant_data": …}}`. A variable's `values` are asked
/// for only when the model needs them, and its numpy buffer is borrowed, not copied.
struct PySource<'py> {
    context: String,
    attrs: HashMap<String, Bound<'py, PyAny>>,
    groups: HashMap<String, PyGroup<'py>>,
}

fn attrs_of<'py>(d: Option<Bound<'py, PyAny>>) -> PyResult<HashMap<String, Bound<'py, PyAny>>> {
    let mut out = HashMap::new();
    if let Some(d) = d {
        let d = d.cast::<PyDict>()?;
        for (k, v) in d.iter() {
            out.insert(k.extract::<String>()?, v);
        }
    }
    Ok(out)
}

impl<'py> PySource<'py> {
    fn new(parts: &Bound<'py, PyDict>, context: String) -> PyResult<Self> {
        let attrs = attrs_of(parts.get_item("attrs")?)?;
        let mut groups = HashMap::new();
        if let Some(g) = parts.get_item("groups")? {
            for (name, group) in g.cast::<PyDict>()?.iter() {
                let group = group.cast::<PyDict>()?;
                let mut variables = vec![];
                if let Some(vars) = group.get_item("variables")? {
                    for (vname, entry) in vars.cast::<PyDict>()?.iter() {
                        let entry = entry.cast::<PyTuple>()?;
                        let dims: Vec<String> = entry.get_item(0)?.extract()?;
                        let array = entry.get_item(1)?;
                        variables.push((vname.extract::<String>()?, dims, array));
                    }
                }
                groups.insert(
                    name.extract::<String>()?,
                    PyGroup {
                        attrs: attrs_of(group.get_item("attrs")?)?,
                        variables,
                    },
                );
            }
        }
        Ok(PySource {
            context,
            attrs,
            groups,
        })
    }

    fn array(&self, group: &str, name: &str) -> Option<&(String, Vec<String>, Bound<'py, PyAny>)> {
        self.groups
            .get(group)?
            .variables
            .iter()
            .find(|(n, _, _)| n == name)
    }

    fn field(group: &str, name: &str) -> String {
        format!("{group}/{name}")
    }
}

/// The string an attribute holds, or how it shows in an error.
fn text_of(v: &Bound<'_, PyAny>) -> std::result::Result<String, String> {
    if let Ok(s) = v.cast::<PyString>() {
        return s.to_str().map(str::to_string).map_err(|e| e.to_string());
    }
    Err(v
        .repr()
        .map_or_else(|_| "an object".to_string(), |r| r.to_string()))
}

impl InferenceSource for PySource<'_> {
    fn context(&self) -> &str {
        &self.context
    }

    fn root_attribute(&self, name: &str) -> Option<std::result::Result<String, String>> {
        self.attrs.get(name).map(text_of)
    }

    fn group_attribute(&self, group: &str, name: &str) -> Option<String> {
        self.groups
            .get(group)?
            .attrs
            .get(name)
            .and_then(|v| text_of(v).ok())
    }

    fn variable_names(&self, group: &str) -> Option<Vec<String>> {
        let g = self.groups.get(group)?;
        Some(g.variables.iter().map(|(n, _, _)| n.clone()).collect())
    }

    fn variable(&self, group: &str, name: &str) -> Option<VariableShape> {
        let (_, dims, var) = self.array(group, name)?;
        let shape: Vec<usize> = var.getattr("shape").and_then(|s| s.extract()).ok()?;
        // An array whose dims do not match its axes is shown with its real shape and
        // as many dim names as it has axes ("?" for the missing).
        let mut dims = dims.clone();
        dims.resize(shape.len(), "?".to_string());
        Some(VariableShape { dims, shape })
    }

    fn coordinate_values(&self, group: &str, name: &str) -> mmm_budget::Result<Vec<String>> {
        let field = Self::field(group, name);
        let Some((_, _, var)) = self.array(group, name) else {
            return Err(Error::Missing {
                context: self.context.clone(),
                field: format!("variable `{field}`"),
                expected: "the coordinates".into(),
            });
        };
        let items = var
            .getattr("values")
            .and_then(|v| v.call_method0("tolist"))
            .and_then(|l| l.extract::<Vec<Bound<'_, PyAny>>>());
        let items = items.map_err(|e| {
            Error::invalid(
                &self.context,
                &field,
                e.to_string(),
                "a list of coordinates",
            )
        })?;
        items
            .iter()
            .map(|v| {
                if let Ok(s) = v.extract::<String>() {
                    Ok(s)
                } else if let Ok(x) = v.extract::<f64>() {
                    Ok(x.to_string())
                } else {
                    Err(Error::invalid(
                        &self.context,
                        &field,
                        text_of(v).unwrap_or_else(|s| s),
                        "text or numbers",
                    ))
                }
            })
            .collect()
    }

    fn values(&self, group: &str, name: &str, count: usize) -> mmm_budget::Result<Vec<f64>> {
        let field = Self::field(group, name);
        let Some((_, dims, var)) = self.array(group, name) else {
            return Err(Error::Missing {
                context: self.context.clone(),
                field: format!("variable `{field}`"),
                expected: "a numeric array".into(),
            });
        };
        let array = var
            .getattr("values")
            .and_then(|v| v.cast_into::<PyUntypedArray>().map_err(PyErr::from))
            .map_err(|e| {
                Error::invalid(
                    &self.context,
                    &field,
                    e.to_string(),
                    "a numpy array of float64 or float32",
                )
            })?;
        if dims.len() != array.ndim() {
            return Err(Error::Shape {
                context: self.context.clone(),
                field: format!("{field} dims"),
                found: array.shape().to_vec(),
                expected: format!("as many axes as dims, {dims:?}"),
            });
        }
        // Row-major order: a C-contiguous buffer is read as one slice; any other
        // layout (Fortran order, strided views) element by element in logical order.
        // (`as_slice` alone would also take a Fortran-ordered buffer, in memory order.)
        let c_order = array.is_c_contiguous();
        let values = if let Ok(a) = array.cast::<PyArrayDyn<f64>>() {
            let a = a.readonly();
            match a.as_slice() {
                Ok(s) if c_order => s.to_vec(),
                _ => a.as_array().iter().copied().collect(),
            }
        } else if let Ok(a) = array.cast::<PyArrayDyn<f32>>() {
            let a = a.readonly();
            match a.as_slice() {
                Ok(s) if c_order => s.iter().map(|&v| f64::from(v)).collect(),
                _ => a.as_array().iter().map(|&v| f64::from(v)).collect(),
            }
        } else {
            let dtype = array.dtype().to_string();
            return Err(Error::invalid(
                &self.context,
                format!("{field} dtype"),
                dtype,
                "float64 or float32",
            ));
        };
        if values.len() != count {
            return Err(Error::Shape {
                context: self.context.clone(),
                field,
                found: array.shape().to_vec(),
                expected: format!("{count} values"),
            });
        }
        Ok(values)
    }
}

/// A model from an in-memory `InferenceData`'s parts (see `PySource`).
#[pyfunction]
fn from_inference_data(parts: &Bound<'_, PyDict>, context: String) -> PyResult<NativeModel> {
    let src = PySource::new(parts, context.clone())?;
    let saved = io::load_inference_data(&src).map_err(to_py)?;
    Ok(NativeModel {
        model: Arc::new(saved.model),
        source: context,
        scenario: None,
        pymc_marketing_version: Some(saved.pymc_marketing_version),
    })
}

/// The built-in demo model and its scenario (JSON).
#[pyfunction]
#[pyo3(signature = (channels=5, geos=3, draws=2000, seed=1))]
fn demo(channels: usize, geos: usize, draws: usize, seed: u64) -> PyResult<NativeModel> {
    for (name, v) in [("channels", channels), ("geos", geos), ("draws", draws)] {
        if v == 0 {
            return Err(to_py(Error::invalid("demo()", name, 0, "at least 1")));
        }
    }
    let size = mmm_budget::demo::DemoSize {
        channels,
        geos,
        draws,
    };
    let (model, scenario) = mmm_budget::demo::case(&size, seed);
    Ok(NativeModel {
        model: Arc::new(model),
        source: format!("demo({channels} channels × {geos} geos, {draws} draws, seed {seed})"),
        scenario: Some(io::scenario_json(&scenario).to_string()),
        pymc_marketing_version: None,
    })
}

/// What the solving functions share: the problem, its settings and the backend.
struct Prepared {
    problem: Arc<Problem>,
    scenario: Scenario,
    settings: Settings,
    backend: Backend,
    gpu: GpuOptions,
}

/// What a call was given: the scenario's JSON, the context errors name, the fields
/// set by keyword arguments (`("total_budget", "budget")`: an error about the field
/// names the argument), the backend and the adapters.
struct Call<'a> {
    scenario: &'a str,
    context: &'a str,
    renames: &'a [(String, String)],
    backend: &'a str,
    gpu_adapters: Vec<usize>,
}

/// An error about a field that a keyword argument set names the argument.
fn renamed(e: Error, call: &Call<'_>) -> Error {
    match e {
        Error::InvalidValue {
            context,
            field,
            value,
            expected,
        } => {
            let arg = call.renames.iter().find(|(f, _)| *f == field);
            Error::InvalidValue {
                context: if arg.is_some() {
                    call.context.to_string()
                } else {
                    context
                },
                field: arg.map_or(field, |(_, a)| a.clone()),
                value,
                expected,
            }
        }
        other => other,
    }
}

fn prepare(model: &NativeModel, call: &Call<'_>) -> mmm_budget::Result<Prepared> {
    prepare_inner(model, call).map_err(|e| renamed(e, call))
}

fn prepare_inner(model: &NativeModel, call: &Call<'_>) -> mmm_budget::Result<Prepared> {
    let (context, backend) = (call.context, call.backend);
    let (scenario, settings) = io::scenario_from_json(call.scenario, context)?;
    let backend = Backend::from_name(backend).ok_or_else(|| {
        Error::invalid(
            context,
            "backend",
            format!("{backend:?}"),
            r#"one of "auto", "cpu", "gpu""#,
        )
    })?;
    let problem = Problem::new(&model.model, &scenario).map_err(|e| {
        e.recontext("scenario", context)
            .recontext("model", &model.source)
            .recontext("posterior", &model.source)
    })?;
    Ok(Prepared {
        problem: Arc::new(problem),
        scenario,
        settings,
        backend,
        // One adapter: that one; several: the draws split over them.
        gpu: GpuOptions {
            adapter: (call.gpu_adapters.len() == 1).then(|| call.gpu_adapters[0]),
            adapters: call.gpu_adapters.clone(),
            ..GpuOptions::default()
        },
    })
}

/// Runs Python's signal handlers from a thread without the GIL: `false` (stop) once
/// one raised, the exception kept in `raised`.
fn signals_ok(raised: &Mutex<Option<PyErr>>) -> bool {
    match Python::attach(|py| py.check_signals()) {
        Ok(()) => true,
        Err(e) => {
            if let Ok(mut slot) = raised.lock() {
                slot.get_or_insert(e);
            }
            false
        }
    }
}

fn trace_json(solution: &mmm_budget::Solution) -> Value {
    Value::Array(
        solution
            .trace
            .iter()
            .map(|t| {
                json!({
                    "iteration": t.iteration, "utility": t.utility, "kkt_residual": t.kkt_residual,
                    "violation": t.violation, "step": t.step, "alpha": t.alpha,
                    "evaluations": t.evaluations, "elapsed": t.elapsed,
                })
            })
            .collect(),
    )
}

fn cells_json(problem: &Problem) -> Value {
    Value::Array(
        problem
            .cells
            .iter()
            .map(|c| {
                let mut m = serde_json::Map::new();
                for (d, v) in &c.coords {
                    m.insert(d.clone(), json!(v));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

/// Optimizes: the command line's `--out` JSON, plus the allocation and start (per
/// optimized cell, per period), the optimized cells' coordinates, the trace and the
/// warnings.
#[pyfunction]
#[pyo3(signature = (model, scenario, context, renames=vec![], backend="auto", gpu_adapters=vec![]))]
fn optimize(
    py: Python<'_>,
    model: &NativeModel,
    scenario: &str,
    context: &str,
    renames: Vec<(String, String)>,
    backend: &str,
    gpu_adapters: Vec<usize>,
) -> PyResult<String> {
    let call = Call {
        scenario,
        context,
        renames: &renames,
        backend,
        gpu_adapters,
    };
    let raised = Arc::new(Mutex::new(None::<PyErr>));
    let watch = raised.clone();
    let out = py.detach(|| -> mmm_budget::Result<Option<Value>> {
        let p = prepare(model, &call)?;
        p.settings.validate()?;
        let mut selected = p.backend.shared_evaluator(&p.problem, &p.gpu)?;
        let options = Options {
            backend: p.backend,
            gpu: p.gpu.clone(),
            settings: p.settings.clone(),
            callback: Some(Arc::new(move |_: &mmm_budget::IterationInfo| {
                signals_ok(&watch)
            })),
        };
        if p.problem.plan.is_some() {
            // A plan over time: its JSON (a spend per period), the allocation being
            // each cell's spend per period averaged over the window.
            let watch = options.callback.clone();
            let plan = mmm_budget::plan::solve_with_callback(
                &p.problem,
                selected.evaluator.as_mut(),
                p.settings.clone(),
                &mut |info| watch.as_ref().is_none_or(|cb| cb(info)),
            )?;
            if raised.lock().map(|r| r.is_some()).unwrap_or(false) {
                return Ok(None);
            }
            let g = plan.groups.len();
            let per_cell = |v: &[f64]| -> Vec<f64> {
                if v.is_empty() {
                    vec![]
                } else {
                    v.chunks(g).map(|c| c.iter().sum()).collect()
                }
            };
            let np = p.problem.num_periods;
            let mut v = mmm_budget::report::plan_json(&p.problem, &plan);
            let o = v.as_object_mut().expect("an object");
            o.insert("allocation".into(), json!(plan.average));
            o.insert(
                "start_allocation".into(),
                json!(per_cell(&plan.solution.start_allocation)),
            );
            o.insert(
                "spend_per_period".into(),
                json!(plan.spend.chunks(np).collect::<Vec<_>>()),
            );
            o.insert("optimized_cells".into(), cells_json(&p.problem));
            o.insert("total_budget".into(), json!(p.scenario.total_budget));
            o.insert("final_utility".into(), json!(plan.solution.utility));
            o.insert(
                "final_mean_response".into(),
                json!(plan.solution.mean_response),
            );
            o.insert("trace".into(), trace_json(&plan.solution));
            o.insert("warnings".into(), json!(plan.solution.warnings));
            return Ok(Some(v));
        }
        let solution = solve_on(&p.problem, &mut selected, &options)?;
        if raised.lock().map(|r| r.is_some()).unwrap_or(false) {
            return Ok(None);
        }
        let report = if solution.allocation.is_empty() {
            None
        } else {
            Some(Report::new(
                &p.problem,
                selected.evaluator.as_mut(),
                &solution.allocation,
            )?)
        };
        let mut v = solution_json(report.as_ref(), &solution);
        let o = v.as_object_mut().expect("an object");
        o.insert("allocation".into(), json!(solution.allocation));
        o.insert("start_allocation".into(), json!(solution.start_allocation));
        o.insert("optimized_cells".into(), cells_json(&p.problem));
        o.insert("num_periods".into(), json!(p.problem.num_periods));
        o.insert("total_budget".into(), json!(p.scenario.total_budget));
        o.insert("final_utility".into(), json!(solution.utility));
        o.insert("final_mean_response".into(), json!(solution.mean_response));
        o.insert("trace".into(), trace_json(&solution));
        o.insert("warnings".into(), json!(solution.warnings));
        Ok(Some(v))
    });
    finish(out, &raised).map(|v| v.to_string())
}

/// The result of a detached call: the library's error as an exception, an
/// interruption as the exception Python's handler raised.
fn finish<T>(out: mmm_budget::Result<Option<T>>, raised: &Mutex<Option<PyErr>>) -> PyResult<T> {
    let pending = raised.lock().ok().and_then(|mut r| r.take());
    match (out, pending) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => Err(to_py(e)),
        (Ok(Some(v)), None) => Ok(v),
        (Ok(None), None) => Err(raise("MmmBudgetError", "interrupted".into())),
    }
}

/// Evaluates an allocation (an allocation file's JSON; `None`: the budget spread
/// evenly): the report's JSON with the warnings, and every draw's response.
#[pyfunction]
#[pyo3(signature = (model, scenario, context, renames=vec![], allocation=None, backend="auto", gpu_adapters=vec![]))]
#[allow(clippy::too_many_arguments)]
fn evaluate<'py>(
    py: Python<'py>,
    model: &NativeModel,
    scenario: &str,
    context: &str,
    renames: Vec<(String, String)>,
    allocation: Option<&str>,
    backend: &str,
    gpu_adapters: Vec<usize>,
) -> PyResult<(String, Bound<'py, PyArray1<f64>>)> {
    let call = Call {
        scenario,
        context,
        renames: &renames,
        backend,
        gpu_adapters,
    };
    let out = py.detach(|| -> mmm_budget::Result<(Value, Vec<f64>)> {
        let p = prepare(model, &call)?;
        let (x, warnings) = match allocation {
            None => {
                let x = p.problem.uniform_allocation();
                let w = p.problem.allocation_warnings(&x, None);
                (x, w)
            }
            Some(text) => {
                let entries = io::allocation_from_json(text, "allocation")?;
                let (x, named) =
                    p.problem
                        .allocation_named(&model.model, &entries, "allocation")?;
                let w = p.problem.allocation_warnings(&x, Some(&named));
                (x, w)
            }
        };
        let selected = p.backend.shared_evaluator(&p.problem, &p.gpu)?;
        let mut ev = selected.evaluator;
        let (report, responses) = Report::with_responses(&p.problem, ev.as_mut(), &x)?;
        let mut v = report.to_json();
        let o = v.as_object_mut().expect("an object");
        o.insert("warnings".into(), json!(warnings));
        o.insert("allocation".into(), json!(x));
        o.insert("optimized_cells".into(), cells_json(&p.problem));
        Ok((v, responses))
    });
    let (v, responses) = out.map_err(to_py)?;
    Ok((v.to_string(), PyArray1::from_vec(py, responses)))
}

/// The efficient frontier over `budgets` (per period), each solve started from the
/// last: the command line's frontier JSON, with each point's trace-free solution.
#[pyfunction]
#[pyo3(signature = (model, scenario, context, budgets, renames=vec![], backend="auto", gpu_adapters=vec![]))]
#[allow(clippy::too_many_arguments)]
fn curve(
    py: Python<'_>,
    model: &NativeModel,
    scenario: &str,
    context: &str,
    budgets: Vec<f64>,
    renames: Vec<(String, String)>,
    backend: &str,
    gpu_adapters: Vec<usize>,
) -> PyResult<String> {
    let call = Call {
        scenario,
        context,
        renames: &renames,
        backend,
        gpu_adapters,
    };
    let raised = Arc::new(Mutex::new(None::<PyErr>));
    let out = py.detach(|| -> mmm_budget::Result<Option<Value>> {
        let p = prepare(model, &call)?;
        if budgets.is_empty() {
            return Err(Error::invalid(
                context,
                "budgets",
                "[]",
                "at least one budget",
            ));
        }
        let selected = p.backend.shared_evaluator(&p.problem, &p.gpu)?;
        let mut ev = selected.evaluator;
        let points = mmm_budget::frontier::frontier_each(
            &model.model,
            &p.scenario,
            ev.as_mut(),
            &budgets,
            &p.settings,
            true,
            &mut |_| signals_ok(&raised),
        )?;
        let mut v = frontier_json(&points, &p.problem);
        let o = v.as_object_mut().expect("an object");
        o.insert("optimized_cells".into(), cells_json(&p.problem));
        o.insert("backend".into(), json!(ev.describe()));
        Ok(Some(v))
    });
    finish(out, &raised).map(|v| v.to_string())
}

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeModel>()?;
    m.add_function(wrap_pyfunction!(load_path, m)?)?;
    m.add_function(wrap_pyfunction!(from_inference_data, m)?)?;
    m.add_function(wrap_pyfunction!(demo, m)?)?;
    m.add_function(wrap_pyfunction!(optimize, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(curve, m)?)?;
    Ok(())
}
