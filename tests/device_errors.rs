//! A device error in the middle of a solve ends it with that error at once, and the
//! one-call API's `Backend::Auto` then solves again on the CPU.

mod common;

use mmm_budget::*;
use std::cell::Cell;
use std::rc::Rc;

/// The CPU evaluator, failing as a lost GPU would from its `ok`-th call on.
struct LostDevice {
    inner: CpuEvaluator,
    ok: usize,
    calls: Rc<Cell<usize>>,
}

impl LostDevice {
    fn call(&self) -> Result<()> {
        self.calls.set(self.calls.get() + 1);
        if self.calls.get() > self.ok {
            return Err(Error::Device {
                backend: "gpu (test)".into(),
                message: "device lost".into(),
            });
        }
        Ok(())
    }
}

impl Evaluator for LostDevice {
    fn num_draws(&self) -> usize {
        self.inner.num_draws()
    }
    fn num_cells(&self) -> usize {
        self.inner.num_cells()
    }
    fn num_periods(&self) -> usize {
        self.inner.num_periods()
    }
    fn describe(&self) -> String {
        "gpu (test)".into()
    }
    fn responses(&mut self, x: &[f64], out: &mut [f64]) -> Result<()> {
        self.call()?;
        self.inner.responses(x, out)
    }
    fn evaluate(&mut self, x: &[f64], w: DrawWeights<'_>, out: &mut Evaluation) -> Result<()> {
        self.call()?;
        self.inner.evaluate(x, w, out)
    }
    fn evaluate_time_varying(
        &mut self,
        x: &[f64],
        w: DrawWeights<'_>,
        out: &mut TimeVaryingEvaluation,
    ) -> Result<()> {
        self.call()?;
        self.inner.evaluate_time_varying(x, w, out)
    }
}

fn lost_after(problem: &Problem, ok: usize) -> (LostDevice, Rc<Cell<usize>>) {
    let calls = Rc::new(Cell::new(0));
    let ev = LostDevice {
        inner: CpuEvaluator::new(problem).unwrap(),
        ok,
        calls: calls.clone(),
    };
    (ev, calls)
}

/// s3 takes several iterations: the start, then a trial step each. The device is lost
/// at the trial step of the second iteration.
#[test]
fn a_device_error_in_the_line_search_ends_the_solve_at_once() {
    let (_, problem, _) = common::reference_case("s3");
    let mut cpu = CpuEvaluator::new(&problem).unwrap();
    let reference = Solver::new(&problem, &mut cpu, Settings::default())
        .unwrap()
        .solve()
        .unwrap();
    assert!(reference.iterations >= 3, "{}", reference.iterations);
    let (mut ev, calls) = lost_after(&problem, 2);
    let iterations = Cell::new(0);
    let e = Solver::new(&problem, &mut ev, Settings::default())
        .unwrap()
        .with_callback(|info| {
            iterations.set(info.iteration);
            true
        })
        .solve()
        .unwrap_err();
    assert!(matches!(e, Error::Device { .. }), "{e}");
    assert!(e.to_string().contains("device lost"), "{e}");
    // The failing call was the last: no halvings after it.
    assert_eq!(calls.get(), 3);
    // It came after the first step was taken: in the second iteration's line search.
    assert_eq!(iterations.get(), 1);
}

#[test]
fn auto_finishes_on_the_cpu_with_the_same_optimum() {
    let (_, problem, _) = common::reference_case("m8x4");
    let cpu = optimize_problem(
        &problem,
        &Options {
            backend: Backend::Cpu,
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(cpu.status, Status::Solved);
    assert!(cpu.warnings.is_empty());
    for (ok, backend) in [(0, Backend::Auto), (3, Backend::Auto), (3, Backend::Gpu)] {
        let (ev, calls) = lost_after(&problem, ok);
        let mut selected = Selected {
            evaluator: Box::new(ev),
            backend: Backend::Gpu,
            warning: None,
        };
        let options = Options {
            backend,
            ..Options::default()
        };
        let result = solve_on(&problem, &mut selected, &options);
        assert_eq!(calls.get(), ok + 1);
        if backend == Backend::Gpu {
            // Asked for the GPU: its error, no fallback.
            assert!(matches!(result, Err(Error::Device { .. })));
            continue;
        }
        let s = result.unwrap();
        assert_eq!(selected.backend, Backend::Cpu);
        assert!(s.backend.starts_with("cpu"), "{}", s.backend);
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("device lost"), "{:?}", s.warnings);
        assert_eq!(s.status, Status::Solved);
        assert_eq!(s.allocation, cpu.allocation);
        assert_eq!(s.utility.to_bits(), cpu.utility.to_bits());
        assert_eq!(s.iterations, cpu.iterations);
    }
}

/// The one-call API with a callback that stops the solve.
#[test]
fn optimize_takes_a_callback() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (model, scenario) = demo::case(
        &demo::DemoSize {
            channels: 3,
            geos: 2,
            draws: 100,
        },
        3,
    );
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let options = Options {
        backend: Backend::Cpu,
        callback: Some(Arc::new(move |_: &IterationInfo| {
            counter.fetch_add(1, Ordering::SeqCst);
            false
        })),
        ..Options::default()
    };
    let s = optimize(&model, &scenario, &options).unwrap();
    assert_eq!(s.status, Status::Stopped);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
