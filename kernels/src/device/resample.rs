//! Resampling along one axis by a sparse table (`axis_resample` in `kernels/cuda/resample.cu`): the device form of
//! the separable linear maps — interpolating resizes and adaptive average pooling — and of their gradients, which
//! are the same pass with the transposed table.

use super::kernels::{put, size_error, to_i64};
use super::{Buffer, Device, RawArgs, Result};

/// Tap indices and row offsets travel as floats; they are exact below this.
const EXACT_IN_F32: usize = 1 << 24;

/// For each output index along an axis, the input indices it reads and their weights.
pub type Taps = [Vec<(usize, f32)>];

/// A resampling table in device memory, checked on the host when it is made: every index lies below `in_len`.
#[derive(Debug)]
pub struct ResampleTable {
    in_len: usize,
    out_len: usize,
    offsets: Buffer,
    indices: Buffer,
    weights: Buffer,
}

impl ResampleTable {
    /// Length of the axis the table reads.
    pub fn in_len(&self) -> usize {
        self.in_len
    }

    /// Length of the axis the table writes.
    pub fn out_len(&self) -> usize {
        self.out_len
    }
}

/// The transposed table: for each input index (of `in_len`), the output indices that read it and their weights,
/// in output order. `resample(transpose(t))` is the gradient of `resample(t)`.
pub fn transpose_taps(in_len: usize, rows: &Taps) -> Vec<Vec<(usize, f32)>> {
    let mut out = vec![Vec::new(); in_len];
    for (j, row) in rows.iter().enumerate() {
        for &(i, w) in row {
            // An index past the axis is dropped here; `resample_table` refuses it in a forward table.
            debug_assert!(i < in_len, "tap {i} outside an axis of {in_len}");
            if let Some(slot) = out.get_mut(i) {
                slot.push((j, w));
            }
        }
    }
    out
}

impl Device {
    /// Uploads `rows` (one per output index) as a table over an input axis of `in_len`, refusing an index at or
    /// past `in_len` and tables too large for the kernel's float-coded indices.
    pub fn resample_table(&self, in_len: usize, rows: &Taps) -> Result<ResampleTable> {
        let taps: usize = rows.iter().map(Vec::len).sum();
        if in_len == 0 || in_len > EXACT_IN_F32 || taps > EXACT_IN_F32 || rows.len() > EXACT_IN_F32 {
            return Err(size_error(format!("resample table {in_len} → {} with {taps} taps", rows.len())));
        }
        let mut offsets = Vec::with_capacity(rows.len() + 1);
        let (mut indices, mut weights) = (Vec::with_capacity(taps), Vec::with_capacity(taps));
        offsets.push(0.0);
        for row in rows {
            for &(i, w) in row {
                if i >= in_len {
                    return Err(size_error(format!("resample tap {i} outside an axis of {in_len}")));
                }
                indices.push(i as f32);
                weights.push(w);
            }
            offsets.push(indices.len() as f32);
        }
        // A table without taps still needs addressable (if unread) buffers.
        if indices.is_empty() {
            indices.push(0.0);
            weights.push(0.0);
        }
        Ok(ResampleTable {
            in_len,
            out_len: rows.len(),
            offsets: self.upload(&offsets)?,
            indices: self.upload(&indices)?,
            weights: self.upload(&weights)?,
        })
    }

    /// `y[o, j, r] = Σ w · x[o, i, r]` over the taps `(i, w)` of row `j` of `table`, for `x` viewed as
    /// `[outer, in_len, inner]` and `y` as `[outer, out_len, inner]`.
    pub fn axis_resample(
        &self,
        table: &ResampleTable,
        outer: usize,
        inner: usize,
        x: &Buffer,
        y: &mut Buffer,
    ) -> Result<()> {
        let len = |axis: usize| {
            outer.checked_mul(axis).and_then(|v| v.checked_mul(inner)).ok_or_else(|| size_error("overflow"))
        };
        let (x_len, y_len) = (len(table.in_len)?, len(table.out_len)?);
        let mut a = RawArgs { n: to_i64(y_len), ..RawArgs::default() };
        a.x[0] = self.exact(x, x_len, "resample input")?;
        a.x[1] = self.exact(&table.offsets, table.out_len + 1, "resample offsets")?;
        a.x[2] = self.exact(&table.indices, table.indices.len(), "resample indices")?;
        a.x[3] = self.exact(&table.weights, table.indices.len(), "resample weights")?;
        a.y[0] = self.exact(y, y_len, "resample output")?;
        put(&mut a.i[..4], &[outer, table.in_len, table.out_len, inner])?;
        self.run("axis_resample", &a)
    }
}
