//! Loading a posterior: the values read straight from the archive into the problem's
//! layout equal those read whole, for every layout an NPZ member may have; a file
//! changed after its model was loaded is refused, not read as another posterior.

mod common;

use mmm_budget::Problem;
use mmm_budget::io::load_case;
use mmm_budget::saturation::Domain;
use rand::{Rng, SeedableRng};
use std::io::Write;

const CHAINS: usize = 2;
const DRAWS: usize = 5;
const GEOS: usize = 2;
const CHANNELS: usize = 3;

/// One way a member may be written.
#[derive(Clone, Copy, Debug)]
struct Layout {
    f32: bool,
    big_endian: bool,
    fortran: bool,
    deflate: bool,
    /// `geo` before `chain` and `draw`: the draws are not consecutive blocks.
    geo_first: bool,
}

/// An NPY member (version 1) of `values` given in C order over `shape`.
fn npy(values: &[f64], shape: &[usize], layout: Layout) -> Vec<u8> {
    let descr = format!(
        "{}f{}",
        if layout.big_endian { '>' } else { '<' },
        if layout.f32 { 4 } else { 8 }
    );
    let tuple = shape.iter().map(|s| format!("{s}, ")).collect::<String>();
    let mut text = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({tuple}), }}",
        if layout.fortran { "True" } else { "False" }
    );
    while !(10 + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text.as_bytes());
    // Fortran order: the first axis fastest.
    let order: Vec<usize> = if layout.fortran {
        let n = values.len();
        let mut idx = Vec::with_capacity(n);
        let mut multi = vec![0usize; shape.len()];
        for _ in 0..n {
            let mut flat = 0;
            for (k, &i) in multi.iter().enumerate() {
                flat = flat * shape[k] + i;
            }
            idx.push(flat);
            for k in 0..shape.len() {
                multi[k] += 1;
                if multi[k] < shape[k] {
                    break;
                }
                multi[k] = 0;
            }
        }
        idx
    } else {
        (0..values.len()).collect()
    };
    for i in order {
        let v = values[i];
        match (layout.f32, layout.big_endian) {
            (true, false) => out.extend((v as f32).to_le_bytes()),
            (true, true) => out.extend((v as f32).to_be_bytes()),
            (false, false) => out.extend(v.to_le_bytes()),
            (false, true) => out.extend(v.to_be_bytes()),
        }
    }
    out
}

/// A case folder over geo × channel with `adstock_alpha` and `saturation_lam` per
/// cell and `saturation_beta` per channel only (broadcast over geos), each member
/// written in `layout`; returns the folder and the values as written (C order).
fn case(layout: Layout, seed: u64) -> (tempfile::TempDir, Vec<(String, Vec<f64>)>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let per_cell: Vec<&str> = if layout.geo_first {
        vec!["geo", "chain", "draw", "channel"]
    } else {
        vec!["chain", "draw", "geo", "channel"]
    };
    let per_cell_shape: Vec<usize> = if layout.geo_first {
        vec![GEOS, CHAINS, DRAWS, CHANNELS]
    } else {
        vec![CHAINS, DRAWS, GEOS, CHANNELS]
    };
    // (name, dims, shape, range of values)
    type Member<'a> = (String, Vec<&'a str>, Vec<usize>, (f64, f64));
    let arrays: Vec<Member> = vec![
        (
            "adstock_alpha".into(),
            per_cell.clone(),
            per_cell_shape.clone(),
            (0.05, 0.95),
        ),
        (
            "saturation_lam".into(),
            per_cell.clone(),
            per_cell_shape.clone(),
            (0.5, 4.0),
        ),
        (
            "saturation_beta".into(),
            vec!["chain", "draw", "channel"],
            vec![CHAINS, DRAWS, CHANNELS],
            (0.1, 2.0),
        ),
    ];
    let file = std::fs::File::create(dir.path().join("posterior.npz")).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let method = if layout.deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let mut written = Vec::new();
    let mut posterior_dims = serde_json::Map::new();
    for (name, dims, shape, (lo, hi)) in &arrays {
        let n: usize = shape.iter().product();
        let values: Vec<f64> = (0..n)
            .map(|_| {
                let v = rng.random_range(*lo..*hi);
                if layout.f32 { v as f32 as f64 } else { v }
            })
            .collect();
        zip.start_file(
            format!("{name}.npy"),
            zip::write::SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        zip.write_all(&npy(&values, shape, layout)).unwrap();
        posterior_dims.insert(name.clone(), serde_json::json!(dims));
        written.push((name.clone(), values));
    }
    zip.finish().unwrap();
    let model = serde_json::json!({
        "channels": ["tv", "radio", "search"],
        "dims": {"geo": ["north", "south"]},
        "adstock": {"kind": "geometric", "l_max": 4, "normalize": true},
        "saturation": {"kind": "logistic"},
        "adstock_first": true,
        "channel_scale": 100.0,
        "target_scale": 1000.0,
        "posterior": "posterior.npz",
        "posterior_dims": posterior_dims,
    });
    std::fs::write(dir.path().join("model.json"), model.to_string()).unwrap();
    std::fs::write(
        dir.path().join("scenario.json"),
        r#"{"num_periods": 6, "total_budget": 600.0}"#,
    )
    .unwrap();
    (dir, written)
}

/// The value written for flattened draw `d` (chain-major) and cell (geo, channel).
fn written_value(
    written: &[(String, Vec<f64>)],
    name: &str,
    layout: Layout,
    d: usize,
    geo: usize,
    channel: usize,
) -> f64 {
    let values = &written.iter().find(|(n, _)| n == name).unwrap().1;
    let (chain, draw) = (d / DRAWS, d % DRAWS);
    if name == "saturation_beta" {
        return values[(chain * DRAWS + draw) * CHANNELS + channel];
    }
    if layout.geo_first {
        values[((geo * CHAINS + chain) * DRAWS + draw) * CHANNELS + channel]
    } else {
        values[((chain * DRAWS + draw) * GEOS + geo) * CHANNELS + channel]
    }
}

fn all_layouts() -> Vec<Layout> {
    let mut out = Vec::new();
    for bits in 0..32u32 {
        out.push(Layout {
            f32: bits & 1 != 0,
            big_endian: bits & 2 != 0,
            fortran: bits & 4 != 0,
            deflate: bits & 8 != 0,
            geo_first: bits & 16 != 0,
        });
    }
    out
}

#[test]
fn every_layout_loads_the_values_written_straight_or_whole() {
    for (i, layout) in all_layouts().into_iter().enumerate() {
        let (dir, written) = case(layout, i as u64);
        let case = load_case(dir.path(), None).unwrap();
        assert!(
            case.model
                .posterior
                .arrays
                .values()
                .all(|a| a.stored().is_some() && a.values.is_empty()),
            "{layout:?}: the values stay in the file until a problem is built"
        );
        // Read by ranges, or as a stream, exactly where the member allows it (then
        // straight into the layout where the draws are consecutive blocks, else whole).
        for a in case.model.posterior.arrays.values() {
            assert_eq!(
                a.stored().unwrap().ranges_readable(),
                !layout.fortran && !layout.deflate,
                "{layout:?}"
            );
            // Inflated in order where it is deflated in C order.
            assert_eq!(
                a.stored().unwrap().streamable(),
                !layout.fortran && layout.deflate,
                "{layout:?}"
            );
        }
        let straight = case.problem().unwrap();
        // The same model with its values read whole first.
        let model = common::read_whole(&case.model);
        let whole = Problem::new(&model, &case.scenario).unwrap();
        assert_eq!(straight.num_draws(), CHAINS * DRAWS, "{layout:?}");
        // float32 archives stay f32, exactly the values the file holds.
        for table in [&straight.adstock_params, &straight.saturation_params] {
            assert_eq!(table.is_f32(), layout.f32, "{layout:?}");
        }
        assert!(!whole.adstock_params.is_f32() && !whole.saturation_params.is_f32());
        assert_eq!(
            straight.adstock_params.to_f64(),
            whole.adstock_params.to_f64(),
            "{layout:?}"
        );
        assert_eq!(
            straight.saturation_params.to_f64(),
            whole.saturation_params.to_f64(),
            "{layout:?}"
        );
        for d in 0..CHAINS * DRAWS {
            for geo in 0..GEOS {
                for channel in 0..CHANNELS {
                    let c = geo * CHANNELS + channel;
                    let at = |name| written_value(&written, name, layout, d, geo, channel);
                    assert_eq!(
                        &*straight.adstock_params_of(d, c),
                        &[at("adstock_alpha")],
                        "{layout:?} draw {d} cell {c}"
                    );
                    assert_eq!(
                        &*straight.saturation_params_of(d, c),
                        &[at("saturation_lam"), at("saturation_beta")],
                        "{layout:?} draw {d} cell {c}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_value_out_of_its_domain_is_named_from_a_stored_array() {
    let layout = Layout {
        f32: true,
        big_endian: false,
        fortran: false,
        deflate: false,
        geo_first: false,
    };
    let (dir, mut written) = case(layout, 99);
    // Draw 7 (chain 1, draw 2), geo south, channel radio: a negative lam, rewritten
    // in place as the same member.
    let lam = &mut written
        .iter_mut()
        .find(|(n, _)| n == "saturation_lam")
        .unwrap()
        .1;
    lam[((DRAWS + 2) * GEOS + 1) * CHANNELS + 1] = -1.5;
    let lam = lam.clone();
    let path = dir.path().join("posterior.npz");
    let file = std::fs::File::create(&path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let shape = [CHAINS, DRAWS, GEOS, CHANNELS];
    for (name, values) in &written {
        let values = if name == "saturation_lam" {
            &lam
        } else {
            values
        };
        let shape: &[usize] = if name == "saturation_beta" {
            &[CHAINS, DRAWS, CHANNELS]
        } else {
            &shape
        };
        zip.start_file(
            format!("{name}.npy"),
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored),
        )
        .unwrap();
        zip.write_all(&npy(values, shape, layout)).unwrap();
    }
    zip.finish().unwrap();
    let e = load_case(dir.path(), None)
        .and_then(|c| c.problem())
        .unwrap_err()
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    for part in [
        "posterior.npz",
        "saturation_lam[chain 1, draw 2, cell south/radio]",
        "-1.5",
    ] {
        assert!(e.contains(part), "{e:?} should mention {part:?}");
    }
}

#[test]
fn a_posterior_changed_after_loading_is_refused() {
    let layout = Layout {
        f32: false,
        big_endian: false,
        fortran: false,
        deflate: false,
        geo_first: false,
    };
    let (dir, _) = case(layout, 5);
    let loaded = load_case(dir.path(), None).unwrap();
    loaded.problem().unwrap();
    // Another posterior written over it, of another length.
    let (other, _) = case(
        Layout {
            f32: true,
            ..layout
        },
        6,
    );
    std::fs::copy(
        other.path().join("posterior.npz"),
        dir.path().join("posterior.npz"),
    )
    .unwrap();
    let e = loaded.problem().unwrap_err().to_string();
    assert!(!e.contains('\n'), "{e}");
    for part in ["posterior.npz", "changed since it was loaded"] {
        assert!(e.contains(part), "{e:?} should mention {part:?}");
    }
    // Loaded again, it is read.
    load_case(dir.path(), None).unwrap().problem().unwrap();
}

#[test]
fn a_stored_array_is_written_back_as_it_was_read() {
    let layout = Layout {
        f32: false,
        big_endian: true,
        fortran: true,
        deflate: false,
        geo_first: false,
    };
    let (dir, _) = case(layout, 11);
    let loaded = load_case(dir.path(), None).unwrap();
    let copy = tempfile::tempdir().unwrap();
    mmm_budget::io::write_case(copy.path(), &loaded.model, &loaded.scenario).unwrap();
    let again = load_case(copy.path(), None).unwrap();
    assert_eq!(
        again.problem().unwrap().saturation_params.to_f64(),
        loaded.problem().unwrap().saturation_params.to_f64()
    );
}

#[test]
fn a_domain_interval_holds_what_the_domain_contains() {
    let tiny = f64::from_bits(1);
    let probes = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN,
        -1.0,
        -0.0,
        0.0,
        tiny,
        0.5,
        1.0,
        1.0 + f64::EPSILON,
        100.0,
        100.000_000_000_1,
        1e300,
    ];
    for domain in [
        Domain::Finite,
        Domain::Positive,
        Domain::NonNegative,
        Domain::UnitInterval,
        Domain::Exponent,
    ] {
        let (lo, hi) = domain.interval();
        for v in probes {
            assert_eq!(
                (v >= lo) & (v <= hi),
                domain.contains(v),
                "{domain:?} at {v:e}"
            );
        }
    }
}

#[test]
fn a_missing_posterior_file_is_named() {
    let (dir, _) = case(
        Layout {
            f32: true,
            big_endian: false,
            fortran: false,
            deflate: false,
            geo_first: false,
        },
        3,
    );
    let loaded = load_case(dir.path(), None).unwrap();
    std::fs::remove_file(dir.path().join("posterior.npz")).unwrap();
    let e = loaded.problem().unwrap_err().to_string();
    assert!(!e.contains('\n') && e.contains("posterior.npz"), "{e}");
}
