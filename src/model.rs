//! The fitted MMM: channels and extra dims (budget cells), the adstock and saturation
//! transformations, the channel and target scales, and the posterior draws.
//!
//! A [`Model`] holds the data as the user gave it (arrays with named dims, which may
//! lack some dims and then broadcast); [`crate::Problem::new`] checks every value
//! and resolves it per draw and cell.
//!
//! Budget cells are every combination of the extra dims' coordinates and the channel,
//! enumerated in row-major order over `(*dims, channel)`, the order of PyMC-Marketing's
//! `(*dims, channel)` budget arrays.

use crate::adstock::Adstock;
use crate::error::{Error, Result};
use crate::saturation::Saturation;
use std::collections::BTreeMap;

/// An extra dimension of the budget (geo, product, …) with its coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Dim {
    /// The dim's name, e.g. `"geo"`.
    pub name: String,
    /// Its coordinates, e.g. `["north", "south"]`.
    pub coords: Vec<String>,
}

/// An array with named dims, row-major (last dim fastest). Dims named `chain` and
/// `draw` index posterior draws; the others must be `channel` or one of the model's
/// extra dims. A dim the array lacks broadcasts.
///
/// A posterior array loaded from a file ([`crate::io::load_model`]) may be
/// [stored](Array::stored): checked, but its values left in the file until a problem
/// is built, which reads them straight into its own layout; `values` is then empty.
/// [`Array::read_values`] and [`Posterior::load`] read them. Arrays are equal when
/// their dims, shapes and values are, wherever the values lie (a stored array's are
/// read to compare; one that cannot be read equals nothing).
#[derive(Clone, Debug)]
pub struct Array {
    /// Dim names, one per axis.
    pub dims: Vec<String>,
    /// Axis lengths.
    pub shape: Vec<usize>,
    /// Values, row-major; `shape.iter().product()` of them (none while stored).
    pub values: Vec<f64>,
    /// Where the values lie in their file while they have not been read.
    pub(crate) stored: Option<std::sync::Arc<crate::io::StoredArray>>,
}

impl Array {
    /// A scalar (no dims).
    pub fn scalar(v: f64) -> Self {
        Array {
            dims: vec![],
            shape: vec![],
            values: vec![v],
            stored: None,
        }
    }

    /// An array from dims, shape and values, checked for a consistent length.
    pub fn new(dims: &[&str], shape: &[usize], values: Vec<f64>) -> Result<Self> {
        let a = Array {
            dims: dims.iter().map(|s| s.to_string()).collect(),
            shape: shape.to_vec(),
            values,
            stored: None,
        };
        if a.dims.len() != a.shape.len() || a.shape.iter().product::<usize>() != a.values.len() {
            return Err(Error::Shape {
                context: "model".into(),
                field: "array".into(),
                found: vec![a.values.len()],
                expected: format!(
                    "{} values for dims {:?} of shape {:?}",
                    a.shape.iter().product::<usize>(),
                    a.dims,
                    a.shape
                ),
            });
        }
        Ok(a)
    }

    /// The number of values: the shape's product where the values are stored, else
    /// the values held.
    pub fn len(&self) -> usize {
        match &self.stored {
            Some(_) => self.shape.iter().product(),
            None => self.values.len(),
        }
    }

    /// Whether the array holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file the values are still in, if they are.
    pub fn stored(&self) -> Option<&crate::io::StoredArray> {
        self.stored.as_deref()
    }

    /// The values, row-major: those held, or read from the file.
    pub fn read_values(&self) -> Result<std::borrow::Cow<'_, [f64]>> {
        match &self.stored {
            Some(s) => Ok(std::borrow::Cow::Owned(s.read_all()?)),
            None => Ok(std::borrow::Cow::Borrowed(&self.values)),
        }
    }
}

impl PartialEq for Array {
    fn eq(&self, other: &Self) -> bool {
        if self.dims != other.dims || self.shape != other.shape {
            return false;
        }
        match (&self.stored, &other.stored) {
            (None, None) => self.values == other.values,
            (Some(a), Some(b)) if a == b => true,
            _ => match (self.read_values(), other.read_values()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            },
        }
    }
}

/// Posterior draws of the transformation parameters, keyed by PyMC-Marketing's names
/// (`adstock_alpha`, `saturation_lam`, `saturation_beta`, …).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Posterior {
    /// The arrays, each with `draw` (and optionally `chain`) among its dims.
    pub arrays: BTreeMap<String, Array>,
}

impl Posterior {
    /// Reads every [stored](Array::stored) array's values into memory, so that the
    /// posterior no longer depends on its file.
    pub fn load(&mut self) -> Result<()> {
        for array in self.arrays.values_mut() {
            if let Some(s) = array.stored.take() {
                array.values = s.read_all()?;
            }
        }
        Ok(())
    }
}

/// A fitted marketing-mix model.
///
/// ```
/// use mmm_budget::*;
/// let mut posterior = Posterior::default();
/// // 2 draws × 2 channels
/// posterior.arrays.insert("adstock_alpha".into(),
///     Array::new(&["draw", "channel"], &[2, 2], vec![0.5, 0.3, 0.6, 0.2]).unwrap());
/// posterior.arrays.insert("saturation_lam".into(),
///     Array::new(&["draw", "channel"], &[2, 2], vec![1.0, 2.0, 1.5, 2.5]).unwrap());
/// posterior.arrays.insert("saturation_beta".into(),
///     Array::new(&["draw"], &[2], vec![0.4, 0.5]).unwrap()); // broadcasts over channels
/// let model = Model {
///     channels: vec!["tv".into(), "radio".into()],
///     dims: vec![],
///     adstock: Adstock { kind: AdstockKind::Geometric, l_max: 4, normalize: true },
///     saturation: Saturation::Logistic,
///     adstock_first: true,
///     channel_scale: Array::new(&["channel"], &[2], vec![100.0, 50.0]).unwrap(),
///     target_scale: Array::scalar(1000.0),
///     posterior,
/// };
/// assert_eq!(model.num_cells(), 2);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Channel names.
    pub channels: Vec<String>,
    /// Extra dims in order; cells run over `(*dims, channel)`.
    pub dims: Vec<Dim>,
    /// The adstock transformation.
    pub adstock: Adstock,
    /// The saturation curve.
    pub saturation: Saturation,
    /// Adstock before saturation (PyMC-Marketing's default, true) or after.
    pub adstock_first: bool,
    /// s_c: spend is divided by it before adstock and saturation. Dims a subset of
    /// `(*dims, channel)`; positive.
    pub channel_scale: Array,
    /// τ_c: contributions are multiplied by it. Dims a subset of `dims`; positive.
    pub target_scale: Array,
    /// The posterior draws.
    pub posterior: Posterior,
}

/// The longest carry-over (`l_max`) accepted: years of weekly or daily data; each
/// evaluation costs draws × cells × (N + l_max) terms.
pub const MAX_L_MAX: usize = 4096;

/// The most cells (channels × the coordinates of every other dim) a model may have.
pub const MAX_CELLS: usize = 1_000_000;

/// The largest `num_periods` accepted: beyond it a typo would exhaust memory before
/// any other check could report it.
pub const MAX_PERIODS: usize = 100_000;

/// One optimized cell.
#[derive(Clone, Debug, PartialEq)]
pub struct CellInfo {
    /// Index among all of the model's cells.
    pub model_index: usize,
    /// `(dim, coordinate)` pairs, the extra dims first and `channel` last.
    pub coords: Vec<(String, String)>,
    /// The coordinates joined by `/`.
    pub label: String,
}

impl CellInfo {
    /// The coordinate along `dim`.
    pub fn coord(&self, dim: &str) -> Option<&str> {
        self.coords
            .iter()
            .find(|(d, _)| d == dim)
            .map(|(_, c)| c.as_str())
    }
}

/// One budget cell: a channel and a coordinate of every extra dim.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Index among all of the model's cells (row-major over `(*dims, channel)`).
    pub index: usize,
    /// Coordinate index along each dim, `channel` last.
    pub coords: Vec<usize>,
}

impl Model {
    /// Dim names in cell order: the extra dims, then `channel`.
    pub fn dim_names(&self) -> Vec<&str> {
        self.dims
            .iter()
            .map(|d| d.name.as_str())
            .chain(std::iter::once("channel"))
            .collect()
    }

    /// Lengths in cell order: the extra dims, then the channels.
    pub fn dim_lengths(&self) -> Vec<usize> {
        self.dims
            .iter()
            .map(|d| d.coords.len())
            .chain(std::iter::once(self.channels.len()))
            .collect()
    }

    /// Coordinates of dim `k` in cell order (`k == dims.len()` is the channel).
    pub fn coords_of(&self, k: usize) -> &[String] {
        if k < self.dims.len() {
            &self.dims[k].coords
        } else {
            &self.channels
        }
    }

    /// The number of budget cells: the product of all dims' lengths.
    pub fn num_cells(&self) -> usize {
        self.dim_lengths().iter().product()
    }

    /// The posterior's draws (chains × draws) as its first array gives them; 0
    /// without a posterior.
    pub fn num_draws(&self) -> usize {
        self.posterior.arrays.values().next().map_or(0, |a| {
            let along = |dim: &str| {
                a.dims
                    .iter()
                    .position(|d| d == dim)
                    .map_or(1, |k| a.shape[k])
            };
            along("chain") * along("draw")
        })
    }

    /// Every cell, in row-major order over `(*dims, channel)`.
    pub fn cells(&self) -> Vec<Cell> {
        let lengths = self.dim_lengths();
        let n = lengths.iter().product();
        (0..n)
            .map(|index| {
                let mut coords = vec![0; lengths.len()];
                let mut rest = index;
                for k in (0..lengths.len()).rev() {
                    coords[k] = rest % lengths[k];
                    rest /= lengths[k];
                }
                Cell { index, coords }
            })
            .collect()
    }

    /// A cell's label: its coordinates joined by `/`, extra dims first
    /// (`"north/tv"`), or the channel alone when there are no extra dims.
    pub fn cell_label(&self, cell: &Cell) -> String {
        cell.coords
            .iter()
            .enumerate()
            .map(|(k, &i)| self.coords_of(k)[i].as_str())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Checks names: channels and dims non-empty, coordinates unique, no dim named
    /// `channel`, `chain` or `draw`, l_max ≥ 1.
    pub fn validate_structure(&self, context: &str) -> Result<()> {
        if self.channels.is_empty() {
            return Err(Error::invalid(
                context,
                "channels",
                "[]",
                "at least one channel",
            ));
        }
        check_unique(context, "channels", &self.channels)?;
        let mut dim_names = std::collections::HashSet::with_capacity(self.dims.len());
        for d in &self.dims {
            if ["channel", "chain", "draw"].contains(&d.name.as_str()) {
                return Err(Error::invalid(
                    context,
                    format!("dims.{}", d.name),
                    &d.name,
                    "a dim name other than channel, chain or draw",
                ));
            }
            if !dim_names.insert(d.name.as_str()) {
                return Err(Error::invalid(context, "dims", &d.name, "unique dim names"));
            }
            if d.coords.is_empty() {
                return Err(Error::invalid(
                    context,
                    format!("dims.{}", d.name),
                    "[]",
                    "at least one coordinate",
                ));
            }
            check_unique(context, &format!("dims.{}", d.name), &d.coords)?;
        }
        // The cells are listed one by one later: their number must fit first.
        let cells = self
            .dims
            .iter()
            .try_fold(self.channels.len(), |n, d| n.checked_mul(d.coords.len()))
            .filter(|&n| n <= MAX_CELLS);
        if cells.is_none() {
            let sizes: Vec<String> = self
                .dims
                .iter()
                .map(|d| format!("{} {}", d.coords.len(), d.name))
                .chain([format!("{} channels", self.channels.len())])
                .collect();
            return Err(Error::invalid(
                context,
                "dims",
                sizes.join(" × "),
                format!("at most {MAX_CELLS} cells in all"),
            ));
        }
        let max = MAX_L_MAX;
        if self.adstock.l_max == 0 || self.adstock.l_max > max {
            return Err(Error::invalid(
                context,
                "adstock.l_max",
                self.adstock.l_max,
                format!("an integer in [1, {max}]"),
            ));
        }
        Ok(())
    }

    /// Where `array` reads the value for `cell`: a per-cell offset into its values,
    /// plus the number of draws it holds (1 when it has no `chain`/`draw` dims) and the
    /// stride between draws. Errors name `field` when a dim is unknown, repeated or of
    /// the wrong length.
    pub(crate) fn broadcast(
        &self,
        context: &str,
        field: &str,
        array: &Array,
        allow_draws: bool,
    ) -> Result<Broadcast> {
        let names = self.dim_names();
        let lengths = self.dim_lengths();
        let mut strides = vec![0usize; names.len()];
        let mut stride = 1usize;
        let mut chain = None;
        let mut draw = None;
        let shape_error = |expected: String| Error::Shape {
            context: context.into(),
            field: field.into(),
            found: array.shape.clone(),
            expected,
        };
        if array.dims.len() != array.shape.len() {
            return Err(shape_error(format!(
                "one length per dim of {:?}",
                array.dims
            )));
        }
        for (axis, dim) in array.dims.iter().enumerate().rev() {
            let len = array.shape[axis];
            match dim.as_str() {
                "chain" if allow_draws && chain.is_none() => chain = Some((len, stride)),
                "draw" if allow_draws && draw.is_none() => draw = Some((len, stride)),
                name => {
                    let k = names.iter().position(|n| *n == name).ok_or_else(|| {
                        Error::invalid(
                            context,
                            format!("{field} dims"),
                            format!("{:?}", array.dims),
                            format!(
                                "dims among {:?}{}, each at most once",
                                names,
                                if allow_draws {
                                    " plus chain and draw"
                                } else {
                                    ""
                                }
                            ),
                        )
                    })?;
                    if strides[k] != 0 || array.dims[..axis].iter().any(|d| d == name) {
                        return Err(Error::invalid(
                            context,
                            format!("{field} dims"),
                            format!("{:?}", array.dims),
                            "each dim at most once",
                        ));
                    }
                    if len != lengths[k] {
                        return Err(shape_error(format!(
                            "length {} along `{}` ({} coordinates)",
                            lengths[k], name, lengths[k]
                        )));
                    }
                    strides[k] = stride;
                }
            }
            stride *= len;
        }
        if stride != array.len() {
            return Err(shape_error(format!(
                "{} values, found {}",
                stride,
                array.len()
            )));
        }
        if allow_draws && draw.is_none() {
            return Err(Error::invalid(
                context,
                format!("{field} dims"),
                format!("{:?}", array.dims),
                "a `draw` dim (and optionally `chain`)",
            ));
        }
        let offsets = self
            .cells()
            .iter()
            .map(|c| c.coords.iter().zip(&strides).map(|(i, s)| i * s).sum())
            .collect();
        Ok(Broadcast {
            offsets,
            chain: chain.unwrap_or((1, 0)),
            draw: draw.unwrap_or((1, 0)),
        })
    }
}

/// How to read a broadcast array per (draw, cell).
pub(crate) struct Broadcast {
    /// Offset of each of the model's cells.
    pub offsets: Vec<usize>,
    /// (length, stride) of the chain axis.
    pub chain: (usize, usize),
    /// (length, stride) of the draw axis.
    pub draw: (usize, usize),
}

impl Broadcast {
    /// Number of flattened draws (chain × draw).
    pub fn num_draws(&self) -> usize {
        self.chain.0 * self.draw.0
    }

    /// Index into the array's values of flattened draw `d` (chain-major) and cell.
    #[inline]
    pub fn index(&self, d: usize, cell: usize) -> usize {
        let (c, i) = (d / self.draw.0, d % self.draw.0);
        c * self.chain.1 + i * self.draw.1 + self.offsets[cell]
    }
}

/// Names that must be unique: linear in their number.
fn check_unique(context: &str, field: &str, names: &[String]) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    for a in names {
        if !seen.insert(a.as_str()) {
            let shown: String = a.chars().take(80).collect();
            return Err(Error::invalid(
                context,
                field,
                format!("{shown:?} (repeated)"),
                "unique names",
            ));
        }
    }
    Ok(())
}
