//! Hostile input: nothing a file or flag holds crashes, exhausts memory, hangs or
//! yields a wrong plan. Each class of attack is refused with one line naming it.

mod common;

use mmm_budget::io::load_case;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// An NPY member: preamble (version 1 or 2), `header` padded to 64 bytes, `data`.
fn npy(header: &str, data: &[u8], version: u8) -> Vec<u8> {
    let pre = if version == 1 { 10 } else { 12 };
    let mut text = header.to_string();
    while !(pre + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.push(version);
    out.push(0);
    if version == 1 {
        out.extend((text.len() as u16).to_le_bytes());
    } else {
        out.extend((text.len() as u32).to_le_bytes());
    }
    out.extend(text.as_bytes());
    out.extend(data);
    out
}

/// The header of a float64 C-order array of `shape` (a Python tuple's text).
fn f8(shape: &str) -> String {
    format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}")
}

fn values(n: usize, v: f64) -> Vec<u8> {
    (0..n).flat_map(|_| v.to_le_bytes()).collect()
}

/// A case folder: s3's model and scenario, and an archive of these members.
fn case_with(members: &[(&str, Vec<u8>, bool)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["model.json", "scenario.json"] {
        std::fs::copy(Path::new("tests/data/s3").join(f), dir.path().join(f)).unwrap();
    }
    let file = std::fs::File::create(dir.path().join("posterior.npz")).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    for (name, bytes, deflate) in members {
        let method = if *deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(method)
            .large_file(bytes.len() > u32::MAX as usize / 2);
        zip.start_file(format!("{name}.npy"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    dir
}

/// s3's three arrays, shape (2, 5, 3), with `name` replaced by `member`.
fn s3_with(name: &str, member: Vec<u8>, deflate: bool) -> tempfile::TempDir {
    let good = |v: f64| npy(&f8("(2, 5, 3)"), &values(30, v), 1);
    let mut members = vec![
        ("adstock_alpha", good(0.5), false),
        ("saturation_lam", good(1.0), false),
        ("saturation_beta", good(1.0), false),
    ];
    for m in members.iter_mut() {
        if m.0 == name {
            *m = (m.0, member.clone(), deflate);
        }
    }
    case_with(&members)
}

/// Edits the case folder's model.json in place.
fn edit_model(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("model.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&path, m.to_string()).unwrap();
}

fn error_of(dir: &Path) -> String {
    match load_case(dir, None).and_then(|c| c.problem()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_one_line(e: &str, parts: &[&str]) {
    assert!(!e.contains('\n'), "not one line: {e}");
    for p in parts {
        assert!(e.contains(p), "{e:?} should mention {p:?}");
    }
}

#[test]
fn well_formed_members_load() {
    let dir = s3_with(
        "adstock_alpha",
        npy(&f8("(2, 5, 3)"), &values(30, 0.5), 2),
        true,
    );
    load_case(dir.path(), None).unwrap().problem().unwrap();
}

#[test]
fn a_shape_whose_size_overflows_is_refused() {
    let shape = format!("({}, {}, 3)", u64::MAX / 2, 7);
    let dir = s3_with(
        "saturation_lam",
        npy(&f8(&shape), &values(30, 1.0), 1),
        false,
    );
    let e = error_of(dir.path());
    assert_one_line(
        &e,
        &[
            "posterior.npz",
            "saturation_lam",
            "more elements than memory",
        ],
    );
}

#[test]
fn a_shape_larger_than_its_data_is_refused_before_reading() {
    // 10^5 × 10^5 × 3 float64 = 240 GB declared, 240 bytes present.
    let dir = s3_with(
        "saturation_lam",
        npy(&f8("(100000, 100000, 3)"), &values(30, 1.0), 1),
        true,
    );
    let e = error_of(dir.path());
    assert_one_line(&e, &["saturation_lam", "does not match the member's"]);
}

#[test]
fn a_shape_that_disagrees_with_the_model_is_refused_before_reading() {
    // Consistent with its own data, but 4 channels where the model has 3.
    let dir = s3_with(
        "saturation_lam",
        npy(&f8("(2, 5, 4)"), &values(40, 1.0), 1),
        false,
    );
    let e = error_of(dir.path());
    assert_one_line(&e, &["saturation_lam", "[2, 5, 4]", "length 3", "channel"]);
}

#[test]
fn headers_too_long_or_too_deep_are_refused() {
    // A version-2 preamble declaring a 4 GB header.
    let mut member = b"\x93NUMPY\x02\x00".to_vec();
    member.extend(0xFFFF_FFF0u32.to_le_bytes());
    member.extend(b"{'descr'");
    let dir = s3_with("adstock_alpha", member, false);
    let e = error_of(dir.path());
    assert_one_line(
        &e,
        &[
            "adstock_alpha",
            "header of 4294967280 bytes",
            "at most 10000",
        ],
    );
    // Brackets nested 1000 deep.
    let deep = format!("{}{}", "(".repeat(1000), ")".repeat(1000));
    let dir = s3_with("adstock_alpha", npy(&f8(&deep), &[], 1), false);
    let e = error_of(dir.path());
    assert_one_line(&e, &["adstock_alpha", "nesting deeper than 64"]);
    // Not a Python literal: one line, the header cut short.
    let junk = format!("{{'descr': '<f8', 'shape': (2, {}", "x".repeat(5000));
    let dir = s3_with("adstock_alpha", npy(&junk, &[], 1), false);
    let e = error_of(dir.path());
    assert_one_line(
        &e,
        &["adstock_alpha", "not a Python literal", "more characters"],
    );
    assert!(e.len() < 400, "{}", e.len());
}

#[test]
fn truncated_and_overlong_data_are_refused() {
    let mut member = npy(&f8("(2, 5, 3)"), &values(30, 1.0), 1);
    let cut = member.len() - 8;
    member.truncate(cut);
    let dir = s3_with("saturation_lam", member, true);
    let e = error_of(dir.path());
    assert_one_line(&e, &["saturation_lam"]);
    let dir = s3_with(
        "saturation_lam",
        npy(&f8("(2, 5, 3)"), &values(31, 1.0), 1),
        true,
    );
    let e = error_of(dir.path());
    assert_one_line(&e, &["saturation_lam"]);
}

/// A deflate bomb: 64 MB of zeros in ~64 KB, with a header that matches it (and, as
/// the first array, sets the draw count). The memory budget (here 1 MB) refuses it
/// before it is inflated.
#[test]
fn a_deflate_bomb_is_refused_before_it_is_inflated() {
    let n = 8 << 20; // values: 64 MB
    let shape = format!("(1, {}, 3)", n / 3 + 1);
    let count = n / 3 + 1;
    let member = npy(&f8(&shape), &vec![0u8; count * 3 * 8], 1);
    let dir = s3_with("adstock_alpha", member, true);
    let compressed = std::fs::metadata(dir.path().join("posterior.npz"))
        .unwrap()
        .len();
    assert!(compressed < 1 << 20, "{compressed}");
    let out = Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
        .args(["evaluate"])
        .arg(dir.path())
        .env("MMM_MEMORY_BUDGET", "1000000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_one_line(
        err.trim_end(),
        &[
            "adstock_alpha",
            "memory budget of 1000000",
            "MMM_MEMORY_BUDGET",
        ],
    );
}

/// A member whose zip entry declares 4 GB uncompressed from a few hundred bytes
/// stored: refused before anything is allocated for it.
#[test]
fn a_declared_size_beyond_the_compressed_bytes_is_refused() {
    let dir = s3_with(
        "adstock_alpha",
        npy(&f8("(2, 5, 3)"), &values(30, 0.5), 1),
        false,
    );
    let path = dir.path().join("posterior.npz");
    let mut bytes = std::fs::read(&path).unwrap();
    let patch = |bytes: &mut Vec<u8>, signature: &[u8], offset: usize| {
        let at = bytes.windows(4).position(|w| w == signature).unwrap();
        bytes[at + offset..at + offset + 4].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    };
    patch(&mut bytes, b"PK\x03\x04", 22);
    patch(&mut bytes, b"PK\x01\x02", 24);
    std::fs::write(&path, bytes).unwrap();
    let e = error_of(dir.path());
    assert_one_line(&e, &["posterior.npz", "adstock_alpha"]);
}

/// s3 with its model and scenario JSON edited; its posterior as it is.
fn edited(
    edit_model: impl FnOnce(&mut serde_json::Value),
    edit_scenario: impl FnOnce(&mut serde_json::Value),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new("tests/data/s3");
    std::fs::copy(src.join("posterior.npz"), dir.path().join("posterior.npz")).unwrap();
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(src.join(f)).unwrap()).unwrap()
    };
    let (mut m, mut s) = (read("model.json"), read("scenario.json"));
    edit_model(&mut m);
    edit_scenario(&mut s);
    std::fs::write(dir.path().join("model.json"), m.to_string()).unwrap();
    std::fs::write(dir.path().join("scenario.json"), s.to_string()).unwrap();
    dir
}

/// Runs the binary (killed after a minute: a hang is a failure), returning its exit
/// code, stdout and stderr.
fn cli(args: &[&str], dir: &Path) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mmm-budget"))
        .args(args)
        .arg(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed().as_secs() > 60 {
            child.kill().unwrap();
            panic!("{args:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Exit 2 with one line on stderr naming each of `parts`, nothing panicking.
fn refused(args: &[&str], dir: &Path, parts: &[&str]) {
    let (code, _, err) = cli(args, dir);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(code, Some(2), "{args:?}: {err}");
    let line = err.trim_end();
    assert_one_line(line, parts);
    assert!(line.len() < 1000, "{} characters", line.len());
}

#[test]
fn model_sizes_are_checked_before_the_posterior_is_read() {
    // 3000 × 3000 × 3000 geos/regions/stores × 3 channels: 8e10 cells.
    let coords: Vec<String> = (0..3000).map(|i| format!("c{i}")).collect();
    let dir = edited(
        |m| {
            m["dims"] = serde_json::json!({"geo": coords, "region": coords, "store": coords});
        },
        |_| {},
    );
    refused(
        &["evaluate"],
        dir.path(),
        &["model.json", "dims", "at most 1000000 cells"],
    );
    // 100,000 channel names, one repeated at the end: found in linear time.
    let mut names: Vec<String> = (0..100_000).map(|i| format!("ch{i}")).collect();
    names.push("ch5".into());
    let dir = edited(|m| m["channels"] = serde_json::json!(names), |_| {});
    refused(
        &["evaluate"],
        dir.path(),
        &["model.json", "channels", "\"ch5\" (repeated)"],
    );
}

#[test]
fn deep_or_long_constraints_are_refused() {
    let deep = format!("{}ch0{} <= 10", "(".repeat(100_000), ")".repeat(100_000));
    let dir = edited(|_| {}, |s| s["constraints"] = serde_json::json!([deep]));
    refused(&["optimize"], dir.path(), &["constraints[0]", "characters"]);
    let deep = format!("{}ch0{} <= 10", "(".repeat(3000), ")".repeat(3000));
    let dir = edited(|_| {}, |s| s["constraints"] = serde_json::json!([deep]));
    refused(
        &["optimize"],
        dir.path(),
        &["constraints[0]", "nesting deeper than 64"],
    );
    let minus = format!("{}ch0 <= 10", "- ".repeat(4000));
    let dir = edited(|_| {}, |s| s["constraints"] = serde_json::json!([minus]));
    refused(
        &["optimize"],
        dir.path(),
        &["constraints[0]", "nesting deeper than 64"],
    );
    let huge = "1e307 * ch0 <= 10";
    let dir = edited(|_| {}, |s| s["constraints"] = serde_json::json!([huge]));
    refused(&["optimize"], dir.path(), &["constraints[0]", "overflows"]);
    let spread = "1e13 * ch0 + ch1 <= 10";
    let dir = edited(|_| {}, |s| s["constraints"] = serde_json::json!([spread]));
    refused(
        &["optimize"],
        dir.path(),
        &["constraints[0]", "within a factor"],
    );
}

#[test]
fn values_whose_products_overflow_are_refused() {
    let dir = edited(|m| m["target_scale"] = serde_json::json!(1e308), |_| {});
    refused(
        &["optimize"],
        dir.path(),
        &["model.json", "target_scale[ch0]", "1e308"],
    );
    let dir = edited(|m| m["channel_scale"] = serde_json::json!(5e-324), |_| {});
    refused(
        &["optimize"],
        dir.path(),
        &["model.json", "channel_scale[ch0]"],
    );
    let dir = edited(|_| {}, |s| s["total_budget"] = serde_json::json!(1e308));
    refused(
        &["optimize"],
        dir.path(),
        &["scenario.json", "total_budget", "1e308"],
    );
    refused(
        &["evaluate"],
        dir.path(),
        &["scenario.json", "total_budget"],
    );
    let dir = edited(|_| {}, |_| {});
    refused(
        &["optimize", "--budget", "1e308"],
        dir.path(),
        &["command line", "--budget", "1e308"],
    );
    let dir = edited(
        |_| {},
        |s| {
            s["cost_per_unit"] =
                serde_json::json!([{"select": {"channel": "ch1"}, "values": 5e-324}])
        },
    );
    refused(
        &["optimize"],
        dir.path(),
        &["channel_scale[ch1]", "cost_per_unit"],
    );
}

#[test]
fn requested_work_is_capped() {
    let dir = edited(
        |_| {},
        |s| s["options"] = serde_json::json!({"starts": 1_000_000_000_000u64}),
    );
    refused(
        &["optimize"],
        dir.path(),
        &["scenario.json", "starts", "[1, 1000]"],
    );
    let dir = edited(
        |m| m["adstock"]["l_max"] = serde_json::json!(100_000),
        |_| {},
    );
    refused(
        &["optimize"],
        dir.path(),
        &["model.json", "adstock.l_max", "4096"],
    );
    assert_eq!(mmm_budget::Settings::default().time_limit, 3600.0);
}

#[test]
fn long_malformed_strings_are_echoed_cut_short() {
    let long = "x".repeat(1 << 20);
    let dir = edited(|_| {}, |s| s["budget_constraint"] = serde_json::json!(long));
    refused(
        &["optimize"],
        dir.path(),
        &["scenario.json", "budget_constraint", "more characters"],
    );
}

#[test]
fn an_exponent_out_of_range_is_refused() {
    let good = |v: f64| npy(&f8("(2, 5, 3)"), &values(30, v), 1);
    let mut slope: Vec<u8> = values(30, 1.5);
    slope[8 * 7..8 * 8].copy_from_slice(&1e300f64.to_le_bytes());
    let dir = case_with(&[
        ("adstock_alpha", good(0.5), false),
        ("saturation_slope", npy(&f8("(2, 5, 3)"), &slope, 1), false),
        ("saturation_kappa", good(1.0), false),
        ("saturation_beta", good(1.0), false),
    ]);
    edit_model(dir.path(), |m| {
        m["saturation"]["kind"] = serde_json::json!("hill");
        m["posterior_dims"] = serde_json::json!({});
    });
    refused(
        &["optimize"],
        dir.path(),
        &["saturation_slope", "1e300", "(0, 100]"],
    );
}

#[test]
fn an_allocation_whose_responses_overflow_is_refused() {
    // τ (N + L) is finite, but with β = 1e10 the responses are ~1e310.
    let good = |v: f64| npy(&f8("(2, 5, 3)"), &values(30, v), 1);
    let dir = case_with(&[
        ("adstock_alpha", good(0.5), false),
        ("saturation_lam", good(1.0), false),
        ("saturation_beta", good(1e10), false),
    ]);
    edit_model(dir.path(), |m| {
        m["target_scale"] = serde_json::json!(1e300);
    });
    refused(
        &["optimize"],
        dir.path(),
        &["utility at the start", "overflow"],
    );
    let alloc = dir.path().join("allocation.json");
    std::fs::write(
        &alloc,
        r#"{"allocation": [{"channel": "ch0", "budget": 1e300}, {"channel": "ch1", "budget": 1}, {"channel": "ch2", "budget": 1}]}"#,
    )
    .unwrap();
    let (code, out, err) = cli(
        &["evaluate", "--allocation", alloc.to_str().unwrap()],
        dir.path(),
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.contains("NaN") && !out.contains("inf"), "{out}");
    assert_eq!(code, Some(2), "{out}{err}");
    // Warnings first (over the budget, outside the bounds), then the error.
    let last = err.trim_end().lines().last().unwrap_or("");
    assert_one_line(last, &["error: allocation", "ch0", "1e300"]);
    assert!(err.len() < 1000, "{err}");
}

/// Parameters without cell dims broadcast over a million cells: what that would take
/// is checked against the memory budget before it is allocated.
#[test]
fn a_broadcast_larger_than_the_memory_budget_is_refused() {
    let per_draw = |v: f64| npy(&f8("(2, 5)"), &values(10, v), 1);
    let dir = case_with(&[
        ("adstock_alpha", per_draw(0.5), false),
        ("saturation_lam", per_draw(1.0), false),
        ("saturation_beta", per_draw(1.0), false),
    ]);
    let path = dir.path().join("model.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let coords: Vec<String> = (0..1000).map(|i| format!("c{i}")).collect();
    m["channels"] = serde_json::json!(["tv"]);
    m["channel_scale"] = serde_json::json!(100.0);
    m["dims"] = serde_json::json!({"geo": coords, "region": coords});
    m["posterior_dims"] = serde_json::json!({});
    std::fs::write(&path, m.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mmm-budget"));
    let out = child
        .args(["evaluate"])
        .arg(dir.path())
        .env("MMM_MEMORY_BUDGET", "50000000")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_one_line(
        err.trim_end(),
        &["problem", "memory budget", "MMM_MEMORY_BUDGET"],
    );
}

/// A risk-aware objective (or a plan over time) over more variables than a dense
/// quasi-Newton model is built for is refused with one line, not a multi-gigabyte
/// matrix; the mean over as many cells still solves (its Hessian is diagonal).
#[test]
fn a_dense_model_too_large_is_refused_before_it_is_built() {
    use mmm_budget::*;
    let (model, mut scenario) = demo::case(
        &demo::DemoSize {
            channels: 50,
            geos: 201,
            draws: 2,
        },
        3,
    );
    let mean = Problem::new(&model, &scenario).unwrap();
    let mut ev = CpuEvaluator::new(&mean).unwrap();
    let settings = Settings {
        max_iter: 2,
        ..Settings::default()
    };
    let s = Solver::new(&mean, &mut ev, settings.clone())
        .unwrap()
        .solve()
        .unwrap();
    assert!(!s.allocation.is_empty());
    scenario.utility = Utility::parse("maximize cvar(0.9)").unwrap();
    let risky = Problem::new(&model, &scenario).unwrap();
    let e = Solver::new(&risky, &mut ev, settings.clone())
        .unwrap()
        .solve()
        .unwrap_err()
        .to_string();
    assert!(e.contains("10050") && e.contains("at most 10000"), "{e}");
    assert_eq!(e.lines().count(), 1);
}
