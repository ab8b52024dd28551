//! Loading a case folder: the NPZ posterior read (`io::load_case`), the problem built
//! from it (`Problem::new`), and both, with the file's bytes as throughput (GB/s of
//! array data; the file in the page cache after the first read).
//!
//!     python benches/load/make_case.py /tmp/bigcase        # 20,000 × 20 × 50, float32, 240 MB
//!     MMM_LOAD_CASE=/tmp/bigcase cargo bench --bench load
//!     cargo bench --bench load                              # a 2,000-draw f64 case written here
//!
//! With `MMM_LOAD_NC=fitted.nc` (a model saved by PyMC-Marketing), also the saved
//! model read and its problem built over a 26-period window (`saved/read+problem`;
//! throughput: its posterior's values as f64, whatever the file's compression).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mmm_budget::demo::{SyntheticSize, synthetic};
use mmm_budget::io::{load_case, write_case};
use std::path::PathBuf;

fn case_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    if let Ok(dir) = std::env::var("MMM_LOAD_CASE") {
        return (PathBuf::from(dir), None);
    }
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let size = SyntheticSize {
        channels: 50,
        geos: 20,
        draws: 2000,
        periods: 52,
        l_max: 13,
    };
    let (model, scenario) = synthetic(&size, 7);
    write_case(tmp.path(), &model, &scenario).expect("case written");
    (tmp.path().to_path_buf(), Some(tmp))
}

fn load(c: &mut Criterion) {
    let (dir, _keep) = case_dir();
    let bytes = std::fs::metadata(dir.join("posterior.npz"))
        .expect("posterior.npz")
        .len();
    let case = load_case(&dir, None).expect("the case loads");
    eprintln!(
        "{}: {} MB of arrays, {} draws × {} cells",
        dir.display(),
        bytes / 1_000_000,
        case.model.num_draws(),
        case.model.num_cells()
    );
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("read", |b| b.iter(|| load_case(&dir, None).expect("read")));
    group.bench_function("problem", |b| b.iter(|| case.problem().expect("problem")));
    group.bench_function("read+problem", |b| {
        b.iter(|| {
            load_case(&dir, None)
                .and_then(|c| c.problem())
                .expect("both")
        })
    });
    group.finish();
    if let Ok(nc) = std::env::var("MMM_LOAD_NC") {
        load_saved(c, std::path::Path::new(&nc));
    }
}

fn load_saved(c: &mut Criterion, path: &std::path::Path) {
    use mmm_budget::io::load_saved_model;
    let saved = load_saved_model(path).expect("the saved model loads");
    let values: usize = saved.model.posterior.arrays.values().map(|a| a.len()).sum();
    let scenario = mmm_budget::Scenario::new(26, 1000.0);
    eprintln!(
        "{}: {} MB of posterior values as f64, {} draws × {} cells",
        path.display(),
        values * 8 / 1_000_000,
        saved.model.num_draws(),
        saved.model.num_cells()
    );
    let mut group = c.benchmark_group("saved");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(values as u64 * 8));
    group.bench_function("read+problem", |b| {
        b.iter(|| {
            let saved = load_saved_model(path).expect("read");
            mmm_budget::Problem::new(&saved.model, &scenario).expect("problem")
        })
    });
    group.finish();
}

criterion_group!(benches, load);
criterion_main!(benches);
