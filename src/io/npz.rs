//! The posterior's NPZ archive: float64 or float32 arrays, C or Fortran order, read so
//! that nothing the file declares is trusted before it is checked.
//!
//! Each member is read as a stream: the NPY preamble and header (at most
//! [`MAX_HEADER_BYTES`], nesting at most [`MAX_NESTING`] deep, parsed with
//! `py_literal`, the parser numpy's format is written for), the shape's element count
//! with checked arithmetic, its bytes compared with the member's declared size, with
//! what deflate can make of the member's compressed bytes, with the caller's check
//! against the model, and with a memory budget, all before any value is read; then the
//! values in chunks of [`CHUNK_BYTES`], never more than the shape declares.

use crate::error::{Error, Result, one_line, truncated};
use crate::model::{Array, Posterior};
use std::io::Read;
use std::path::Path;

/// The largest NPY header accepted, in bytes: numpy's own reading limit
/// (`numpy.lib.format._MAX_HEADER_SIZE`, 10,000).
pub const MAX_HEADER_BYTES: usize = 10_000;

/// The deepest nesting of brackets accepted in an NPY header.
pub const MAX_NESTING: usize = 64;

/// Values are read and converted this many bytes at a time.
const CHUNK_BYTES: usize = 1 << 20;

/// Deflate makes at most 1032 bytes of one compressed byte (its longest match per
/// shortest code); a member that declares more was not made by deflate.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// The f64 values of all arrays together may take at most this much memory, unless
/// `MMM_MEMORY_BUDGET` (bytes) says otherwise: three quarters of the machine's memory
/// where it can be read (Linux), else 16 GiB.
pub fn memory_budget() -> u64 {
    if let Some(b) = std::env::var("MMM_MEMORY_BUDGET")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return b;
    }
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    });
    total.map_or(16 << 30, |t| t / 4 * 3)
}

/// An array's header: its shape and element type.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyHeader {
    /// The shape as declared.
    pub shape: Vec<usize>,
    /// Bytes per element (4 or 8).
    pub item_bytes: usize,
    /// Big-endian values.
    pub big_endian: bool,
    /// Fortran (column-major) order.
    pub fortran: bool,
}

/// An array still in its file, an NPZ archive or a saved model's netCDF-4 variable:
/// checked (header, size, the model's shape), its values read when a problem is built
/// ([`StoredArray::read_all`], or straight into the problem's layout by
/// [`StoredArray::read_elements`], [`StoredArray::value_stream`] or
/// [`StoredArray::read_rows`]).
#[derive(Debug, PartialEq)]
pub struct StoredArray {
    path: std::path::PathBuf,
    name: String,
    header: NpyHeader,
    header_bytes: u64,
    count: usize,
    declared: u64,
    /// Where the first value lies in the file when the member is stored uncompressed.
    values_at: Option<u64>,
    /// Where the deflated bytes lie in the file (start, length) when it is deflated.
    deflated: Option<(u64, u64)>,
    /// The file's length and modification time when it was checked: a file changed
    /// since is refused rather than read as another posterior.
    stamp: (u64, Option<std::time::SystemTime>),
    /// The netCDF-4 variable it is, where it is one (the NPZ fields then unused).
    netcdf: Option<super::saved_model::NetcdfVariable>,
}

impl StoredArray {
    /// A saved model's variable, its values left in the file.
    pub(crate) fn from_netcdf(var: super::saved_model::NetcdfVariable) -> Self {
        let shape = var.shape().to_vec();
        StoredArray {
            path: var.path().to_path_buf(),
            name: var.name().to_string(),
            header: NpyHeader {
                shape,
                item_bytes: var.item_bytes(),
                big_endian: false,
                fortran: false,
            },
            header_bytes: 0,
            count: var.count(),
            declared: 0,
            values_at: None,
            deflated: None,
            stamp: (0, None),
            netcdf: Some(var),
        }
    }

    /// Whether [`StoredArray::read_rows`] reads it: a netCDF-4 variable.
    pub fn rows_readable(&self) -> bool {
        self.netcdf.is_some()
    }

    /// Values `first .. first + len` (row-major element indices) as f64 into `out`
    /// (replaced), read from a netCDF-4 variable ([`StoredArray::rows_readable`]) by
    /// hyperslabs, each decoded chunk by chunk on every core. The values are checked
    /// against their domains by the caller.
    pub fn read_rows(&self, first: usize, len: usize, out: &mut Vec<f64>) -> Result<()> {
        match &self.netcdf {
            Some(var) => var.read_rows(first, len, out),
            None => Err(self.error("not a netCDF variable: read by ranges or in order".into())),
        }
    }

    /// The archive.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The array's header.
    pub fn header(&self) -> &NpyHeader {
        &self.header
    }

    /// Whether [`StoredArray::read_elements`] can read ranges of it: stored
    /// uncompressed, in C order, on a system with positioned reads.
    pub fn ranges_readable(&self) -> bool {
        cfg!(unix) && self.values_at.is_some() && !self.header.fortran
    }

    /// Whether [`StoredArray::value_stream`] reads it: deflated, in C order.
    pub fn streamable(&self) -> bool {
        self.deflated.is_some() && !self.header.fortran
    }

    /// Its values in order, inflated as they are read (a deflated member in C order,
    /// [`StoredArray::streamable`]), the header skipped. The archive's checksum is not
    /// verified (deflate's own framing is); the values are checked against their
    /// domains by the caller.
    pub fn value_stream(&self) -> Result<ValueStream> {
        let Some((start, length)) = self.deflated.filter(|_| self.streamable()) else {
            return Err(self.error("not readable as a stream (stored, or Fortran order)".into()));
        };
        use std::io::{Seek, SeekFrom};
        let mut file = self.open()?;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| self.error(one_line(&e.to_string())))?;
        let raw = std::io::BufReader::with_capacity(1 << 20, file).take(length);
        let mut inflated = flate2::read::DeflateDecoder::new(raw).take(self.declared);
        self.skip_header(&mut inflated)?;
        Ok(ValueStream {
            inflated,
            header: self.header.clone(),
            name: self.name.clone(),
            path: self.path.clone(),
            read: 0,
            count: self.count,
            bytes: vec![],
        })
    }

    /// Reads past the member's header (as checked when the archive was opened).
    fn skip_header(&self, reader: &mut impl Read) -> Result<()> {
        let skipped = std::io::copy(&mut reader.take(self.header_bytes), &mut std::io::sink())
            .map_err(|e| self.error(one_line(&e.to_string())))?;
        if skipped != self.header_bytes {
            return Err(self.error("header truncated".into()));
        }
        Ok(())
    }

    fn error(&self, message: String) -> Error {
        if self.netcdf.is_some() {
            return Error::Netcdf {
                path: self.path.clone(),
                message: format!("{}: {message}", self.name),
            };
        }
        Error::Npz {
            path: self.path.clone(),
            message: format!("{}: {message}", self.name),
        }
    }

    /// Opens the archive, refusing it if it changed since it was checked.
    pub(crate) fn open(&self) -> Result<std::fs::File> {
        let file = std::fs::File::open(&self.path).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })?;
        let stamp = file_stamp(&file);
        if stamp != self.stamp {
            return Err(self.error(CHANGED_SINCE_LOADED.into()));
        }
        Ok(file)
    }

    /// Every value, row-major (C order), as f64: the member streamed through the
    /// archive's reader (its checksum verified), Fortran order transposed; a netCDF
    /// variable decoded chunk by chunk on every core.
    pub fn read_all(&self) -> Result<Vec<f64>> {
        if let Some(var) = &self.netcdf {
            return var.read_all();
        }
        let file = self.open()?;
        let zip_err = |e: zip::result::ZipError| self.error(one_line(&e.to_string()));
        let mut zip = zip::ZipArchive::new(std::io::BufReader::with_capacity(1 << 20, file))
            .map_err(zip_err)?;
        let entry = zip
            .by_name(&format!("{}.npy", self.name))
            .map_err(zip_err)?;
        let mut reader = entry.take(self.declared.saturating_add(1));
        self.skip_header(&mut reader)?;
        let values =
            read_values(&mut reader, &self.header, self.count).map_err(|m| self.error(m))?;
        Ok(if self.header.fortran {
            fortran_to_c(&values, &self.header.shape)
        } else {
            values
        })
    }

    /// Values `first .. first + out.len()` (row-major element indices) as f64 into
    /// `out`, by one positioned read of the file into `bytes` (reused between calls).
    /// Only where [`StoredArray::ranges_readable`]; the archive's checksum is not
    /// verified (as numpy's memory-mapped `load`), the values are checked against
    /// their domains by the caller.
    pub fn read_elements(
        &self,
        file: &std::fs::File,
        first: usize,
        out: &mut [f64],
        bytes: &mut Vec<u8>,
    ) -> Result<()> {
        let size = self.header.item_bytes;
        let (Some(at), true) = (self.values_at, self.ranges_readable()) else {
            return Err(self.error("not readable by ranges (compressed or Fortran order)".into()));
        };
        if first
            .checked_add(out.len())
            .is_none_or(|end| end > self.count)
        {
            return Err(self.error(format!(
                "elements {first}.. {} beyond its {} values",
                first.saturating_add(out.len()),
                self.count
            )));
        }
        bytes.resize(out.len() * size, 0);
        let offset = at + (first * size) as u64;
        read_at(file, bytes, offset).map_err(|e| {
            self.error(format!(
                "data truncated at element {first}: {}",
                one_line(&e.to_string())
            ))
        })?;
        decode(bytes, &self.header, out);
        Ok(())
    }
}

/// A deflated member's values, read in order ([`StoredArray::value_stream`]).
pub struct ValueStream {
    inflated: std::io::Take<
        flate2::read::DeflateDecoder<std::io::Take<std::io::BufReader<std::fs::File>>>,
    >,
    header: NpyHeader,
    name: String,
    path: std::path::PathBuf,
    read: usize,
    count: usize,
    bytes: Vec<u8>,
}

impl ValueStream {
    /// Values read so far.
    pub fn position(&self) -> usize {
        self.read
    }

    /// The next `out.len()` values, as f64.
    pub fn read(&mut self, out: &mut [f64]) -> Result<()> {
        let error = |message: String| Error::Npz {
            path: self.path.clone(),
            message: format!("{}: {message}", self.name),
        };
        if self.read + out.len() > self.count {
            return Err(error(format!(
                "values {}.. {} beyond its {} values",
                self.read,
                self.read + out.len(),
                self.count
            )));
        }
        self.bytes.resize(out.len() * self.header.item_bytes, 0);
        self.inflated.read_exact(&mut self.bytes).map_err(|e| {
            error(format!(
                "data truncated: {} of {} values read ({})",
                self.read,
                self.count,
                one_line(&e.to_string())
            ))
        })?;
        decode(&self.bytes, &self.header, out);
        self.read += out.len();
        Ok(())
    }
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_at(_: &std::fs::File, _: &mut [u8], _: u64) -> std::io::Result<()> {
    Err(std::io::Error::other("positioned reads need a Unix system"))
}

/// What a stored array's file must still say when its values are read.
pub(super) const CHANGED_SINCE_LOADED: &str =
    "the file changed since it was loaded (length or modification time); load the model again";

/// A file's length and modification time (`u64::MAX` where they cannot be read): a
/// file whose stamp changed is refused rather than read as another posterior.
fn stamp(metadata: std::io::Result<std::fs::Metadata>) -> (u64, Option<std::time::SystemTime>) {
    metadata
        .map(|m| (m.len(), m.modified().ok()))
        .unwrap_or((u64::MAX, None))
}

fn file_stamp(file: &std::fs::File) -> (u64, Option<std::time::SystemTime>) {
    stamp(file.metadata())
}

/// [`file_stamp`] of the file at `path`.
pub(super) fn path_stamp(path: &Path) -> (u64, Option<std::time::SystemTime>) {
    stamp(std::fs::metadata(path))
}

/// Bytes of values of the header's type into f64s, `out.len()` of them.
fn decode(bytes: &[u8], header: &NpyHeader, out: &mut [f64]) {
    match (header.item_bytes, header.big_endian) {
        (8, false) => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = f64::from_le_bytes(b.try_into().expect("8 bytes"));
            }
        }
        (8, true) => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = f64::from_be_bytes(b.try_into().expect("8 bytes"));
            }
        }
        (_, false) => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f64::from(f32::from_le_bytes(b.try_into().expect("4 bytes")));
            }
        }
        (_, true) => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f64::from(f32::from_be_bytes(b.try_into().expect("4 bytes")));
            }
        }
    }
}

/// Reads the arrays `names` from an NPZ archive (as written by `numpy.savez` or
/// `numpy.savez_compressed`), converting float32 to f64. Dims are left empty.
/// `needed_by` says, for each name, what needs it (for the error when it is missing).
/// `check(name, shape)` is called with each array's declared shape before its values
/// are read (the model's sizes); its error stops the read.
pub fn read_npz(
    path: &Path,
    names: &[String],
    needed_by: &str,
    check: impl FnMut(&str, &[usize]) -> Result<()>,
) -> Result<Posterior> {
    let members = open_members(path, names, needed_by, check)?;
    use rayon::prelude::*;
    let arrays: Vec<Result<Vec<f64>>> = members.par_iter().map(|m| m.read_all()).collect();
    let mut posterior = Posterior::default();
    // The first error in the members' order.
    for (member, values) in members.iter().zip(arrays) {
        posterior.arrays.insert(
            member.name.clone(),
            Array {
                dims: vec![],
                shape: member.header.shape.clone(),
                values: values?,
                stored: None,
            },
        );
    }
    Ok(posterior)
}

/// As [`read_npz`], every check made, but the values left in the file: each array is
/// [`Array::stored`] and read when a problem is built, straight into its layout (a
/// posterior is never held twice). The file must not change meanwhile: a different
/// length or modification time is refused when it is read.
pub fn open_npz(
    path: &Path,
    names: &[String],
    needed_by: &str,
    check: impl FnMut(&str, &[usize]) -> Result<()>,
) -> Result<Posterior> {
    let members = open_members(path, names, needed_by, check)?;
    let mut posterior = Posterior::default();
    for member in members {
        posterior.arrays.insert(
            member.name.clone(),
            Array {
                dims: vec![],
                shape: member.header.shape.clone(),
                values: vec![],
                stored: Some(std::sync::Arc::new(member)),
            },
        );
    }
    Ok(posterior)
}

/// Every member's header read and checked, in order, before any value is read.
fn open_members(
    path: &Path,
    names: &[String],
    needed_by: &str,
    mut check: impl FnMut(&str, &[usize]) -> Result<()>,
) -> Result<Vec<StoredArray>> {
    let npz_err = |message: String| Error::Npz {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let stamp = file_stamp(&file);
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
        npz_err(format!(
            "not an NPZ (zip) archive: {}",
            one_line(&e.to_string())
        ))
    })?;
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
            present: truncated(&present.join(", "), 400),
        });
    }
    let budget = memory_budget();
    let mut used: u64 = 0;
    let mut members = Vec::with_capacity(names.len());
    for name in names {
        let entry = zip
            .by_name(&format!("{name}.npy"))
            .map_err(|e| npz_err(format!("{name}: {}", one_line(&e.to_string()))))?;
        let declared = entry.size();
        let compressed = entry.compressed_size();
        let stored = entry.compression() == zip::CompressionMethod::Stored && !entry.encrypted();
        let entry_deflated =
            entry.compression() == zip::CompressionMethod::Deflated && !entry.encrypted();
        let data_start = entry.data_start();
        let most = if stored {
            compressed
        } else {
            compressed
                .saturating_mul(DEFLATE_MAX_RATIO)
                .saturating_add(1024)
        };
        if declared > most {
            return Err(npz_err(format!(
                "{name}: declares {declared} bytes uncompressed from {compressed} compressed: more than {} can make",
                if stored { "storing" } else { "deflate" }
            )));
        }
        // Never more than the member declares, whatever the stream holds.
        let mut reader = entry.take(declared.saturating_add(1));
        let (header, header_bytes) =
            read_header(&mut reader).map_err(|m| npz_err(format!("{name}: {m}")))?;
        let count = header
            .shape
            .iter()
            .try_fold(1usize, |a, &s| a.checked_mul(s))
            .ok_or_else(|| {
                npz_err(format!(
                    "{name}: shape {:?} has more elements than memory can address",
                    header.shape
                ))
            })?;
        let data_bytes = (count as u64).checked_mul(header.item_bytes as u64);
        if data_bytes.and_then(|d| d.checked_add(header_bytes)) != Some(declared) {
            return Err(npz_err(format!(
                "{name}: shape {:?} of {}-byte values does not match the member's {declared} bytes (header {header_bytes})",
                header.shape, header.item_bytes
            )));
        }
        check(name, &header.shape)?;
        let f64_bytes = (count as u64).saturating_mul(8);
        used = used.saturating_add(f64_bytes);
        if used > budget {
            return Err(npz_err(format!(
                "{name}: the posterior's arrays need {used} bytes as f64, over the memory budget of {budget} (set MMM_MEMORY_BUDGET to raise it)"
            )));
        }
        // A stored member's values lie right after its header, all within the file.
        let deflated = data_start
            .filter(|_| entry_deflated)
            .filter(|&at| at.checked_add(compressed).is_some_and(|end| end <= stamp.0))
            .map(|at| (at, compressed));
        let values_at = data_start
            .filter(|_| stored)
            .and_then(|s| s.checked_add(header_bytes))
            .filter(|&at| {
                at.checked_add(declared - header_bytes)
                    .is_some_and(|end| end <= stamp.0)
            });
        members.push(StoredArray {
            path: path.to_path_buf(),
            name: name.clone(),
            header,
            header_bytes,
            count,
            declared,
            values_at,
            deflated,
            stamp,
            netcdf: None,
        });
    }
    Ok(members)
}

/// The NPY preamble and header from `r`, and how many bytes they took.
pub fn read_header(r: &mut impl Read) -> std::result::Result<(NpyHeader, u64), String> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| "not an NPY array: shorter than its preamble".to_string())?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("not an NPY array: no \\x93NUMPY magic".into());
    }
    let (len, pre_len) = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(|_| "not an NPY array: truncated preamble".to_string())?;
            (u16::from_le_bytes(b) as usize, 10)
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(|_| "not an NPY array: truncated preamble".to_string())?;
            (u32::from_le_bytes(b) as usize, 12)
        }
        v => {
            return Err(format!(
                "NPY format version {v} is not supported (1, 2 or 3)"
            ));
        }
    };
    if len > MAX_HEADER_BYTES {
        return Err(format!(
            "NPY header of {len} bytes: expected at most {MAX_HEADER_BYTES}"
        ));
    }
    let mut text = vec![0u8; len];
    r.read_exact(&mut text)
        .map_err(|_| format!("NPY header truncated: expected {len} bytes"))?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| "NPY header is not UTF-8 text".to_string())?
        .trim_end_matches(['\n', ' ', '\0']);
    let header = interpret(text)?;
    Ok((header, (pre_len + len) as u64))
}

/// The header's Python dict literal: `{'descr': '<f8', 'fortran_order': False,
/// 'shape': (1, 500, 3), }`.
fn interpret(text: &str) -> std::result::Result<NpyHeader, String> {
    use py_literal::Value;
    check_nesting(text)?;
    let bad = |what: &str| format!("NPY header {}: {what}", truncated(text, 120));
    let value: Value = text.parse().map_err(|_| bad("is not a Python literal"))?;
    let Value::Dict(entries) = value else {
        return Err(bad("is not a dict"));
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, Value::String(s) if s == key))
            .map(|(_, v)| v)
            .ok_or_else(|| bad(&format!("has no '{key}'")))
    };
    let descr = match get("descr")? {
        Value::String(s) => s.as_str(),
        _ => return Err(bad("'descr' is not a string")),
    };
    let (big_endian, item_bytes) = match descr {
        "<f8" | "=f8" => (cfg!(target_endian = "big") && descr == "=f8", 8),
        "<f4" | "=f4" => (cfg!(target_endian = "big") && descr == "=f4", 4),
        ">f8" => (true, 8),
        ">f4" => (true, 4),
        other => {
            return Err(format!(
                "dtype {} is not supported: expected float64 or float32",
                truncated(other, 40)
            ));
        }
    };
    let fortran = match get("fortran_order")? {
        Value::Boolean(b) => *b,
        _ => return Err(bad("'fortran_order' is not True or False")),
    };
    let shape = match get("shape")? {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|v| match v {
                Value::Integer(i) => usize::try_from(i).ok(),
                _ => None,
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("'shape' holds a value that is not a size"))?,
        _ => return Err(bad("'shape' is not a tuple")),
    };
    Ok(NpyHeader {
        shape,
        item_bytes,
        big_endian,
        fortran,
    })
}

/// Refuses brackets nested deeper than [`MAX_NESTING`] (outside strings), before the
/// recursive parser sees them.
fn check_nesting(text: &str) -> std::result::Result<(), String> {
    let (mut depth, mut quote) = (0usize, None::<char>);
    let mut escaped = false;
    for c in text.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!("NPY header: nesting deeper than {MAX_NESTING}"));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Exactly `count` values of the header's type, in chunks; an error where the stream
/// holds fewer, or more.
fn read_values(
    r: &mut impl Read,
    header: &NpyHeader,
    count: usize,
) -> std::result::Result<Vec<f64>, String> {
    let size = header.item_bytes;
    let mut values = Vec::with_capacity(count);
    let mut buf = vec![0u8; CHUNK_BYTES.min(count.saturating_mul(size)).max(size)];
    let mut left = count;
    while left > 0 {
        let take = (left * size).min(buf.len() / size * size);
        let chunk = &mut buf[..take];
        r.read_exact(chunk).map_err(|e| {
            format!(
                "data truncated: {} of {count} values read ({})",
                count - left,
                one_line(&e.to_string())
            )
        })?;
        let at = values.len();
        values.resize(at + take / size, 0.0);
        decode(chunk, header, &mut values[at..]);
        left -= take / size;
    }
    // Nothing after the values (and the archive's checksum verified at its end).
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => Ok(values),
        Ok(_) => Err(format!("more data than its shape's {count} values")),
        Err(e) => Err(one_line(&e.to_string())),
    }
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
