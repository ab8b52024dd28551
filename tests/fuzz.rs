//! A stable-Rust fuzzer: mutated NPZ archives, NPY headers, case JSON files and
//! constraint texts, each target for a bounded time. Nothing it makes may panic
//! (a caught panic fails the test, naming the seed and case to replay); an abort or a
//! hang shows as the test binary dying or timing out, with the seed printed first.
//!
//! CI runs each target for `MMM_FUZZ_SECONDS` (default 2) from a seed that changes
//! per run unless `MMM_FUZZ_SEED` fixes it. By hand, for an hour over all targets:
//!
//!     MMM_FUZZ_SECONDS=900 cargo test --release --test fuzz -- --nocapture --test-threads 1
//!
//! A finding becomes a regression test in tests/hostile_input.rs.

use mmm_budget::io::{load_case, read_npy_header, read_npz};
use mmm_budget::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

fn seconds() -> f64 {
    std::env::var("MMM_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0)
}

fn seed() -> u64 {
    std::env::var("MMM_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// Runs `case(rng)` with fresh randomness until the time is up; a panic fails the test
/// naming the seed and the case number (`MMM_FUZZ_SEED=… MMM_FUZZ_CASE=…` replays it).
fn fuzz(target: &str, mut case: impl FnMut(&mut StdRng)) {
    let seed = seed();
    let only: Option<u64> = std::env::var("MMM_FUZZ_CASE")
        .ok()
        .and_then(|v| v.parse().ok());
    eprintln!("fuzz {target}: MMM_FUZZ_SEED={seed}");
    let end = Instant::now() + Duration::from_secs_f64(seconds());
    let mut n = 0u64;
    while Instant::now() < end || only.is_some() {
        let mut rng = StdRng::seed_from_u64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        if only.is_none_or(|k| k == n) {
            let r = catch_unwind(AssertUnwindSafe(|| case(&mut rng)));
            assert!(
                r.is_ok(),
                "fuzz {target}: panicked at MMM_FUZZ_SEED={seed} MMM_FUZZ_CASE={n}"
            );
            if only.is_some() {
                return;
            }
        }
        n += 1;
    }
    eprintln!("fuzz {target}: {n} cases, none panicked");
}

/// Byte-level mutations: flips, interesting 32-bit values, truncation, splices.
fn mutate(rng: &mut StdRng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..8) {
        if bytes.is_empty() {
            bytes.push(rng.random());
            continue;
        }
        let at = rng.random_range(0..bytes.len());
        match rng.random_range(0..6) {
            0 => bytes[at] ^= 1 << rng.random_range(0..8),
            1 => bytes[at] = rng.random(),
            2 => {
                let v: u32 =
                    [0, 1, 0x7FFF_FFFF, 0xFFFF_FFFF, 0x8000_0000, 65535][rng.random_range(0..6)];
                let end = (at + 4).min(bytes.len());
                bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
            3 => bytes.truncate(at),
            4 => {
                let len = rng.random_range(0..64).min(bytes.len() - at);
                let piece = bytes[at..at + len].to_vec();
                let to = rng.random_range(0..bytes.len());
                bytes.splice(to..to, piece);
            }
            _ => {
                let n = rng.random_range(1..16);
                bytes.splice(at..at, (0..n).map(|_| rng.random::<u8>()));
            }
        }
    }
}

fn names() -> Vec<String> {
    ["adstock_alpha", "saturation_lam", "saturation_beta"]
        .map(String::from)
        .to_vec()
}

#[test]
fn npz_archives() {
    let original = std::fs::read("tests/data/s3/posterior.npz").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("posterior.npz");
    fuzz("npz", |rng| {
        let mut bytes = original.clone();
        mutate(rng, &mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let _ = read_npz(&path, &names(), "fuzz", |_, _| Ok(()));
    });
}

#[test]
fn npy_headers() {
    let pieces = [
        "{",
        "}",
        "(",
        ")",
        "[",
        "]",
        ",",
        ":",
        "'descr'",
        "'shape'",
        "'fortran_order'",
        "'<f8'",
        "'>f4'",
        "'|O'",
        "True",
        "False",
        "None",
        "0",
        "1",
        "-1",
        "18446744073709551615",
        "99999999999999999999999999",
        "1e308",
        "'\\x00'",
        "\"",
        "'",
        " ",
        "\n",
        "b'x'",
        "1j",
    ];
    fuzz("npy header", |rng| {
        let mut text = String::new();
        for _ in 0..rng.random_range(0..60) {
            text.push_str(pieces[rng.random_range(0..pieces.len())]);
        }
        if rng.random_bool(0.5) {
            text = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {text}, }}");
        }
        let mut member = b"\x93NUMPY\x01\x00".to_vec();
        member.extend((text.len().min(65535) as u16).to_le_bytes());
        member.extend(text.as_bytes());
        member.extend((0..rng.random_range(0..64)).map(|_| rng.random::<u8>()));
        let _ = read_npy_header(&mut &member[..]);
    });
}

/// JSON values that stress a reader: huge, tiny, negative, wrong types, deep.
fn odd_value(rng: &mut StdRng) -> serde_json::Value {
    use serde_json::json;
    match rng.random_range(0..14) {
        0 => json!(1e308),
        1 => json!(-1e308),
        2 => json!(5e-324),
        3 => json!(0),
        4 => json!(-1),
        5 => json!(u64::MAX),
        6 => json!("x".repeat(rng.random_range(0..5000))),
        7 => json!([]),
        8 => json!({}),
        9 => json!(null),
        10 => json!(true),
        11 => json!([1e308, -5, "a", null]),
        12 => json!(rng.random::<f64>() * 10f64.powi(rng.random_range(-300..300))),
        _ => {
            let depth = rng.random_range(1..200);
            serde_json::from_str(&format!("{}1{}", "[".repeat(depth), "]".repeat(depth)))
                .unwrap_or(json!(null))
        }
    }
}

/// Replaces a random value somewhere in `v` (a leaf or a whole subtree).
fn poke(rng: &mut StdRng, v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) if !map.is_empty() && rng.random_bool(0.8) => {
            let k = rng.random_range(0..map.len());
            let key = map.keys().nth(k).cloned().unwrap();
            poke(rng, map.get_mut(&key).unwrap());
        }
        Value::Array(items) if !items.is_empty() && rng.random_bool(0.8) => {
            let k = rng.random_range(0..items.len());
            poke(rng, &mut items[k]);
        }
        _ => *v = odd_value(rng),
    }
}

#[test]
fn case_files() {
    let src = Path::new("tests/data/s3");
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("model.json")).unwrap()).unwrap();
    let mut scenario: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("scenario.json")).unwrap()).unwrap();
    scenario["constraints"] = serde_json::json!(["ch0 <= 0.5 * total"]);
    scenario["bounds"] = serde_json::json!([{"select": {"channel": "ch1"}, "min": 10, "max": 200}]);
    scenario["options"] = serde_json::json!({"max_iter": 20, "time_limit": 2});
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("posterior.npz"), dir.path().join("posterior.npz")).unwrap();
    fuzz("case files", |rng| {
        let (mut m, mut s) = (model.clone(), scenario.clone());
        for _ in 0..rng.random_range(1..4) {
            if rng.random_bool(0.5) {
                poke(rng, &mut m);
            } else {
                poke(rng, &mut s);
            }
        }
        let mut texts = [m.to_string(), s.to_string()];
        if rng.random_bool(0.2) {
            let k = rng.random_range(0..2);
            let mut bytes = texts[k].clone().into_bytes();
            mutate(rng, &mut bytes);
            texts[k] = String::from_utf8_lossy(&bytes).into_owned();
        }
        std::fs::write(dir.path().join("model.json"), &texts[0]).unwrap();
        std::fs::write(dir.path().join("scenario.json"), &texts[1]).unwrap();
        let Ok(case) = load_case(dir.path(), None) else {
            return;
        };
        let Ok(problem) = case.problem() else {
            return;
        };
        let mut settings = case.settings.clone();
        settings.max_iter = settings.max_iter.min(20);
        settings.time_limit = settings.time_limit.min(2.0);
        settings.starts = settings.starts.min(2);
        if let Ok(mut ev) = CpuEvaluator::new(&problem)
            && let Ok(solver) = Solver::new(&problem, &mut ev, settings)
            && let Ok(s) = solver.solve()
            && s.status == Status::Solved
        {
            assert!(s.utility.is_finite(), "solved with utility {}", s.utility);
            assert!(s.allocation.iter().all(|v| v.is_finite()));
        }
    });
}

#[test]
fn constraint_texts() {
    let case = load_case(Path::new("tests/data/m8x4"), None).unwrap();
    let problem = case.problem().unwrap();
    let tokens = [
        "sum(", ")", "(", "channel=", "geo=", "ch0", "ch1", "g0", "\"g1\"", "total", "+", "-", "*",
        "/", "<=", ">=", "==", "0", "1.5", "1e308", "1e-320", "0.0", ",", " ", "nan", "inf", "é",
        "\"", "=",
    ];
    fuzz("constraints", |rng| {
        let mut text = String::new();
        for _ in 0..rng.random_range(0..40) {
            text.push_str(tokens[rng.random_range(0..tokens.len())]);
        }
        if rng.random_bool(0.05) {
            let d = rng.random_range(0..200);
            text = format!("{}{text}{}", "(".repeat(d), ")".repeat(d));
        }
        if let Ok(c) = LinearConstraint::parse(&text, &case.model, &problem.cells, 100.0) {
            assert!(c.rhs.is_finite(), "{text}: rhs {}", c.rhs);
            assert!(c.coefficients.iter().all(|a| a.is_finite()), "{text}");
        }
    });
}
