//! A model saved by PyMC-Marketing 0.19.2 (`mmm.save`, tests/fixtures/make_saved_model.py)
//! read directly: the same model as its case-folder twin (written by
//! scripts/export_case.py with arviz), the same optimum, an export that reads back,
//! and one-line refusals of files the reader does not support.

mod common;

use mmm_budget::io::{load_case, load_model, load_saved_model};
use mmm_budget::*;
use proptest::prelude::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const FITTED: &str = "tests/data/saved/fitted.nc";
const TWIN: &str = "tests/data/saved/twin";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
}

fn cpu() -> Options {
    Options {
        backend: Backend::Cpu,
        ..Options::default()
    }
}

#[test]
fn the_saved_model_is_its_case_folder_twin() {
    let saved = load_saved_model(Path::new(FITTED)).unwrap();
    assert_eq!(saved.pymc_marketing_version, "0.19.2");
    assert_eq!(
        saved.model_type,
        "MMMM (Multi-Dimensional Marketing Mix Model)"
    );
    let (twin, _) = load_model(&Path::new(TWIN).join("model.json")).unwrap();
    assert_eq!(saved.model.channels, ["tv", "radio", "search"]);
    assert_eq!(saved.model.dims[0].coords, ["north", "south"]);
    // Scales per geo and channel, as the fixture's scaling asks.
    assert_eq!(saved.model.channel_scale.dims, ["geo", "channel"]);
    assert_eq!(saved.model.target_scale.dims, ["geo"]);
    assert_eq!(
        saved.model.posterior.arrays["adstock_alpha"].dims,
        ["chain", "draw", "geo", "channel"]
    );
    // Every value, bit for bit.
    assert_eq!(saved.model, twin);
}

#[test]
fn the_saved_model_and_its_twin_reach_the_same_optimum() {
    let saved = load_saved_model(Path::new(FITTED)).unwrap();
    let case = load_case(Path::new(TWIN), None).unwrap();
    let a = optimize(&saved.model, &case.scenario, &cpu()).unwrap();
    let b = optimize(&case.model, &case.scenario, &cpu()).unwrap();
    assert_eq!(a.status, Status::Solved);
    assert_eq!(b.status, Status::Solved);
    for (x, y) in a.allocation.iter().zip(&b.allocation) {
        assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{x} vs {y}");
    }
    assert!((a.utility - b.utility).abs() <= 1e-9 * b.utility.abs());
}

#[test]
fn optimize_with_model_matches_the_case_folder_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (from_nc, from_case) = (dir.path().join("nc.json"), dir.path().join("case.json"));
    let run = |cmd: &mut Command| {
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(bin()
        .args([
            "optimize",
            "--model",
            FITTED,
            "--budget",
            "1500",
            "--periods",
            "8",
        ])
        .args(["--backend", "cpu", "--out"])
        .arg(&from_nc));
    run(bin()
        .args(["optimize", TWIN, "--backend", "cpu", "--out"])
        .arg(&from_case));
    let read =
        |p: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap() };
    let (a, b) = (read(&from_nc), read(&from_case));
    assert_eq!(a["status"], "solved");
    let (ca, cb) = (
        a["cells"].as_array().unwrap(),
        b["cells"].as_array().unwrap(),
    );
    assert_eq!(ca.len(), 6);
    for (x, y) in ca.iter().zip(cb) {
        assert_eq!(x["cell"], y["cell"]);
        let (x, y) = (x["budget"].as_f64().unwrap(), y["budget"].as_f64().unwrap());
        assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{x} vs {y}");
    }
    // The .nc as the positional argument is the same as --model.
    let o = bin()
        .args([
            "optimize",
            FITTED,
            "--budget",
            "1500",
            "--periods",
            "8",
            "--backend",
            "cpu",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
}

#[test]
fn export_writes_a_case_folder_that_reads_back_as_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("case");
    let o = bin()
        .args(["export", FITTED])
        .arg(&out)
        .args(["--budget", "1500", "--periods", "8"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let case = load_case(&out, None).unwrap();
    let saved = load_saved_model(Path::new(FITTED)).unwrap();
    assert_eq!(case.model, saved.model);
    assert_eq!(case.scenario, Scenario::new(8, 1500.0));
}

/// Runs the CLI on `args`, which must fail with exit 2 and one line on stderr; the line.
/// A copy of fitted.nc in small deflated chunks, two arrays float32
/// (tests/fixtures/make_chunked_saved_model.py).
const CHUNKED: &str = "tests/data/saved/chunked.nc";

#[test]
fn saved_posteriors_stay_in_the_file_and_any_range_reads_as_the_whole() {
    let saved = load_saved_model(Path::new(CHUNKED)).unwrap();
    for (name, a) in &saved.model.posterior.arrays {
        let stored = a.stored().expect("left in the file");
        assert!(a.values.is_empty() && stored.rows_readable(), "{name}");
        assert!(!stored.ranges_readable() && !stored.streamable(), "{name}");
        let whole = stored.read_all().unwrap();
        assert_eq!(whole.len(), a.shape.iter().product::<usize>(), "{name}");
        // Ranges of whole chains, of whole draws (across the chains' boundary), of
        // rows of the last axis and of single values.
        let mut out = vec![];
        for first in 0..whole.len() {
            for len in [1, 2, 3, 5, 6, 7, 13, 50, 150, whole.len()] {
                if first + len > whole.len() {
                    continue;
                }
                stored.read_rows(first, len, &mut out).unwrap();
                assert_eq!(out, whole[first..first + len], "{name}[{first}; {len}]");
            }
        }
        let beyond = stored.read_rows(whole.len() - 1, 2, &mut out).unwrap_err();
        assert!(matches!(beyond, Error::Netcdf { .. }), "{beyond}");
    }
    // float32 variables hold fitted.nc's values rounded to f32; float64 ones its own.
    let fitted = load_saved_model(Path::new(FITTED)).unwrap();
    for (name, f32) in [
        ("adstock_alpha", true),
        ("saturation_lam", false),
        ("saturation_beta", true),
    ] {
        let a = saved.model.posterior.arrays[name].read_values().unwrap();
        let b = fitted.model.posterior.arrays[name].read_values().unwrap();
        let rounded: Vec<f64> = b.iter().map(|&v| f64::from(v as f32)).collect();
        assert_eq!(*a, if f32 { rounded } else { b.to_vec() }, "{name}");
    }
}

#[test]
fn a_problem_reads_a_saved_posterior_by_blocks_as_it_reads_it_whole() {
    let saved = load_saved_model(Path::new(CHUNKED)).unwrap();
    let scenario = Scenario::new(8, 1500.0);
    let straight = Problem::new(&saved.model, &scenario).unwrap();
    let model = common::read_whole(&saved.model);
    let whole = Problem::new(&model, &scenario).unwrap();
    // adstock_alpha is float32 in the file: kept f32; the saturation's arrays mix
    // float32 and float64: f64.
    assert!(straight.adstock_params.is_f32() && !straight.saturation_params.is_f32());
    assert_eq!(
        straight.adstock_params.to_f64(),
        whole.adstock_params.to_f64()
    );
    assert_eq!(
        straight.saturation_params.to_f64(),
        whole.saturation_params.to_f64()
    );
}

#[test]
fn a_frontier_over_a_saved_posterior_in_its_file_is_the_frontier_over_it_in_memory() {
    let saved = load_saved_model(Path::new(CHUNKED)).unwrap();
    let loaded = common::read_whole(&saved.model);
    let scenario = Scenario::new(8, 1500.0);
    let budgets = mmm_budget::frontier::budgets(750.0, 3000.0, 4);
    let run = |model: &Model| {
        let problem = Problem::new(model, &scenario).unwrap();
        let mut ev = CpuEvaluator::new(&problem).unwrap();
        mmm_budget::frontier::frontier(
            model,
            &scenario,
            &mut ev,
            &budgets,
            &Settings::default(),
            true,
        )
        .unwrap()
    };
    let (a, b) = (run(&saved.model), run(&loaded));
    assert_eq!(a.len(), 4);
    for (p, q) in a.iter().zip(&b) {
        assert_eq!(p.solution.status, Status::Solved);
        assert_eq!(p.solution.allocation, q.solution.allocation, "{}", p.budget);
        assert_eq!(p.solution.iterations, q.solution.iterations, "{}", p.budget);
    }
}

#[test]
fn a_saved_model_changed_after_loading_is_refused_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fitted.nc");
    std::fs::copy(CHUNKED, &path).unwrap();
    let saved = load_saved_model(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0; 16]);
    std::fs::write(&path, &bytes).unwrap();
    let err = Problem::new(&saved.model, &Scenario::new(8, 1500.0)).unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, Error::Netcdf { .. }), "{shown}");
    assert!(
        shown.contains("fitted.nc") && shown.contains("changed since it was loaded"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 1, "{shown}");
}

fn refused(args: &[&str]) -> String {
    let o = bin().args(args).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{args:?}");
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    err
}

#[test]
fn unsupported_or_incomplete_files_are_refused_naming_what() {
    let cases = [
        ("version_0_18", "pymc_marketing_version = \"0.18.0\""),
        (
            "no_version",
            "missing posterior.attrs.pymc_marketing_version",
        ),
        ("no_adstock", "missing attribute `adstock`"),
        ("mode_before", "attribute `adstock`.mode = \"Before\""),
        (
            "no_target_scale",
            "missing variable `constant_data/target_scale`",
        ),
    ];
    for (name, says) in cases {
        let path = format!("tests/data/saved/refused/{name}.nc");
        let err = refused(&[
            "optimize",
            "--model",
            &path,
            "--budget",
            "1500",
            "--periods",
            "8",
        ]);
        assert!(err.contains(&path) && err.contains(says), "{name}: {err}");
        // The library says the same, as a typed error.
        let e = load_saved_model(Path::new(&path)).unwrap_err();
        assert!(
            matches!(e, Error::InvalidValue { .. } | Error::Missing { .. }),
            "{e:?}"
        );
    }
    let err = refused(&[
        "optimize",
        "--model",
        "README.md",
        "--budget",
        "1",
        "--periods",
        "8",
    ]);
    assert!(
        err.contains("README.md") && err.contains("netCDF-4"),
        "{err}"
    );
    let err = refused(&["optimize", "--model", FITTED, "--budget", "1500"]);
    assert!(err.contains("missing --periods"), "{err}");
    let err = refused(&[
        "optimize",
        "--model",
        FITTED,
        "--budget=-5",
        "--periods",
        "8",
    ]);
    assert!(err.contains("--budget = -5"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    /// Damaged files (bytes overwritten, or cut short) are refused or read, never a
    /// panic; what is read is a valid model. Half the edits land in the first 4 KiB,
    /// where the superblock and the root group's headers are.
    #[test]
    fn damaged_files_never_panic(
        edits in prop::collection::vec((0.0..1.0f64, any::<bool>(), any::<u8>()), 1..16),
        cut in prop::option::of(0.0..1.0f64),
    ) {
        let mut bytes = std::fs::read(FITTED).unwrap();
        for (at, head, byte) in edits {
            let span = if head { 4096 } else { bytes.len() };
            let i = ((span - 1) as f64 * at) as usize;
            bytes[i] = byte;
        }
        if let Some(c) = cut {
            bytes.truncate((bytes.len() as f64 * c) as usize);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.nc");
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(saved) = load_saved_model(&path) {
            // Whatever was read still resolves or is refused with an error.
            let _ = Problem::new(&saved.model, &Scenario::new(8, 1500.0));
        }
    }
}
