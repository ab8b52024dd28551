//! The posterior's parameters per draw and optimized cell, in the precision they came
//! in: a float32 archive stays f32 (half the memory; f32 → f64 is exact, so the f64
//! evaluator computes with the very values the file holds, and the GPU uploads them
//! as they are), anything else is f64.

/// The most parameters a transformation takes (hill, hill_sigmoid: 3).
pub const MAX_PARAMETERS: usize = 4;

/// Parameters `[draw][cell][parameter]`, each draw's cells in optimized-cell order.
///
/// ```
/// use mmm_budget::ParameterTable;
/// let t = ParameterTable::F32(vec![0.5, 2.0, 0.25, 4.0]);
/// assert_eq!(t.len(), 4);
/// assert_eq!(&*t.row(1, 2), &[0.25, 4.0]);
/// assert_eq!(t.get(3), 4.0);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum ParameterTable {
    /// f64 values: arrays given in memory or as float64.
    F64(Vec<f64>),
    /// f32 values: float32 arrays, as the archive holds them.
    F32(Vec<f32>),
}

impl Default for ParameterTable {
    fn default() -> Self {
        ParameterTable::F64(vec![])
    }
}

/// One draw and cell's parameters, as f64 (a copy: at most [`MAX_PARAMETERS`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    values: [f64; MAX_PARAMETERS],
    len: usize,
}

impl std::ops::Deref for Params {
    type Target = [f64];
    #[inline]
    fn deref(&self) -> &[f64] {
        &self.values[..self.len]
    }
}

impl ParameterTable {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            ParameterTable::F64(v) => v.len(),
            ParameterTable::F32(v) => v.len(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory the values take.
    pub fn bytes(&self) -> usize {
        match self {
            ParameterTable::F64(v) => v.len() * 8,
            ParameterTable::F32(v) => v.len() * 4,
        }
    }

    /// Whether the values are f32.
    pub fn is_f32(&self) -> bool {
        matches!(self, ParameterTable::F32(_))
    }

    /// Value `i`, as f64 (exact from f32).
    #[inline]
    pub fn get(&self, i: usize) -> f64 {
        match self {
            ParameterTable::F64(v) => v[i],
            ParameterTable::F32(v) => f64::from(v[i]),
        }
    }

    /// Value `i` as the f32 a device reads (rounded from f64, as it is from f32).
    #[inline]
    pub fn get_f32(&self, i: usize) -> f32 {
        match self {
            ParameterTable::F64(v) => v[i] as f32,
            ParameterTable::F32(v) => v[i],
        }
    }

    /// The `np` values of row `i` (a draw and cell): values `i·np .. (i+1)·np`.
    ///
    /// # Panics
    /// When `np` exceeds [`MAX_PARAMETERS`] or the row lies beyond the table.
    #[inline]
    pub fn row(&self, i: usize, np: usize) -> Params {
        let mut values = [0.0; MAX_PARAMETERS];
        let at = i * np;
        match self {
            ParameterTable::F64(v) => values[..np].copy_from_slice(&v[at..at + np]),
            ParameterTable::F32(v) => {
                for (o, &x) in values[..np].iter_mut().zip(&v[at..at + np]) {
                    *o = f64::from(x);
                }
            }
        }
        Params { values, len: np }
    }

    /// Values `range` as a table of the same precision.
    pub fn slice(&self, range: std::ops::Range<usize>) -> ParameterTable {
        match self {
            ParameterTable::F64(v) => ParameterTable::F64(v[range].to_vec()),
            ParameterTable::F32(v) => ParameterTable::F32(v[range].to_vec()),
        }
    }

    /// The values of each range in turn, as a table of the same precision.
    pub fn gather(
        &self,
        ranges: impl IntoIterator<Item = std::ops::Range<usize>>,
    ) -> ParameterTable {
        match self {
            ParameterTable::F64(v) => ParameterTable::F64(
                ranges
                    .into_iter()
                    .flat_map(|r| v[r].iter().copied())
                    .collect(),
            ),
            ParameterTable::F32(v) => ParameterTable::F32(
                ranges
                    .into_iter()
                    .flat_map(|r| v[r].iter().copied())
                    .collect(),
            ),
        }
    }

    /// Every value as f64.
    pub fn to_f64(&self) -> Vec<f64> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}
