//! The posterior's NPZ archive: float64 or float32 arrays, C or Fortran order.

use crate::error::{Error, Result};
use crate::model::{Array, Posterior};
use std::io::Read;
use std::path::Path;

/// Reads the arrays `names` from an NPZ archive (as written by `numpy.savez` or
/// `numpy.savez_compressed`), converting float32 to f64. Dims are left empty.
/// `needed_by` says, for each name, what needs it (for the error when it is missing).
pub fn read_npz(path: &Path, names: &[String], needed_by: &str) -> Result<Posterior> {
    let npz_err = |message: String| Error::Npz {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| npz_err(format!("not an NPZ (zip) archive: {e}")))?;
    let present: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok())
        .map(|n| n.strip_suffix(".npy").unwrap_or(&n).to_string())
        .collect();
    if let Some(missing) = names.iter().find(|n| !present.contains(n)) {
        return Err(Error::MissingArray {
            context: path.display().to_string(),
            name: missing.clone(),
            needed_by: needed_by.into(),
            present: present.join(", "),
        });
    }
    let mut posterior = Posterior::default();
    for name in names {
        let mut entry = zip
            .by_name(&format!("{name}.npy"))
            .map_err(|e| npz_err(format!("{name}: {e}")))?;
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| npz_err(format!("{name}: {e}")))?;
        let npy = npyz::NpyFile::new(&bytes[..])
            .map_err(|e| npz_err(format!("{name}: not an NPY array: {e}")))?;
        let shape: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
        let fortran = npy.order() == npyz::Order::Fortran;
        let dtype = npy.dtype();
        let values: Vec<f64> = match npy.try_data::<f64>() {
            Ok(r) => r.into_iter().collect::<std::io::Result<_>>(),
            Err(npy) => match npy.try_data::<f32>() {
                Ok(r) => r
                    .into_iter()
                    .map(|v| v.map(f64::from))
                    .collect::<std::io::Result<_>>(),
                Err(_) => {
                    return Err(npz_err(format!(
                        "{name}: dtype {} is not supported: expected float64 or float32",
                        dtype.descr()
                    )));
                }
            },
        }
        .map_err(|e| npz_err(format!("{name}: {e}")))?;
        let values = if fortran {
            fortran_to_c(&values, &shape)
        } else {
            values
        };
        posterior.arrays.insert(
            name.clone(),
            Array {
                dims: vec![],
                shape,
                values,
            },
        );
    }
    Ok(posterior)
}

fn fortran_to_c(values: &[f64], shape: &[usize]) -> Vec<f64> {
    let n = values.len();
    let mut out = vec![0.0; n];
    let mut idx = vec![0usize; shape.len()];
    for v in out.iter_mut() {
        // idx is the row-major multi-index of this output position.
        let mut f = 0;
        let mut stride = 1;
        for (k, &i) in idx.iter().enumerate() {
            f += i * stride;
            stride *= shape[k];
        }
        *v = values[f];
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}
