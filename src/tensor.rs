//! Tensor type and shape helpers shared by the ops.

use crate::error::OpError;
use crate::Element;
use gradcam_kernels::{HalfVec, Precision};
use ndarray::{ArrayD, Axis, IxDyn};
use rayon::prelude::*;

/// An n-dimensional array; image tensors are NCHW.
pub type Tensor<T> = ArrayD<T>;

/// The numpy broadcast of two shapes, or `None` if they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], i: usize| if i + s.len() < rank { 1 } else { s[i + s.len() - rank] };
    (0..rank)
        .map(|i| match (dim(a, i), dim(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// Sums `grad` over the axes along which `shape` was broadcast to `grad`'s shape: the adjoint of broadcasting.
pub fn sum_to_shape<T: Element>(grad: Tensor<T>, shape: &[usize]) -> Tensor<T> {
    if grad.shape() == shape {
        return grad;
    }
    let mut g = grad;
    while g.ndim() > shape.len() {
        g = g.sum_axis(Axis(0));
    }
    for (axis, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[axis] != 1 {
            g = g.sum_axis(Axis(axis)).insert_axis(Axis(axis));
        }
    }
    g.into_shape_with_order(IxDyn(shape)).expect("sum_to_shape: broadcast-compatible shapes")
}

/// Resolves a possibly negative axis against `rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(OpError::attribute("axis", format!("{axis} is out of range for rank {rank}")));
    }
    Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
}

/// Checks that every input has rank `rank`.
pub fn expect_rank(shape: &[usize], rank: usize, what: &str, all: &[&[usize]]) -> Result<(), OpError> {
    if shape.len() != rank {
        return Err(OpError::shape(format!("{what} must have rank {rank}, got rank {}", shape.len()), all));
    }
    Ok(())
}

/// A tensor of `shape` from row-major `values` (an op's freshly computed output), as a typed error on a length
/// mismatch.
pub fn from_vec<T: Element>(shape: &[usize], values: Vec<T>) -> Result<Tensor<T>, OpError> {
    Tensor::from_shape_vec(IxDyn(shape), values).map_err(|e| OpError::Invalid(e.to_string()))
}

/// `t`'s elements in row-major order under a new shape (the forward and backward of every view-like op).
pub fn reshaped<T: Element>(t: &Tensor<T>, shape: &[usize]) -> Result<Tensor<T>, OpError> {
    t.as_standard_layout().into_owned().into_shape_with_order(IxDyn(shape)).map_err(|e| OpError::Invalid(e.to_string()))
}

/// Softmax of one row of scores, accumulated in f64 (probabilities for reports and attack objectives).
pub fn softmax_row(row: &[f32]) -> Vec<f32> {
    softmax_row_f64(row).into_iter().map(|p| p as f32).collect()
}

/// [`softmax_row`] before rounding to f32 (for derivatives taken through the probabilities).
pub fn softmax_row_f64(row: &[f32]) -> Vec<f64> {
    let wide = ArrayD::from_shape_vec(IxDyn(&[row.len()]), row.iter().map(|&v| v as f64).collect())
        .expect("a 1-D shape of the row's length");
    crate::ops::softmax::softmax(&wide, 0).into_raw_vec_and_offset().0
}

/// A contiguous, row-major view of `t`'s data (copies only if `t` is not already standard layout).
pub fn contiguous<T: Element>(t: &Tensor<T>) -> std::borrow::Cow<'_, [T]> {
    match t.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.iter().copied().collect()),
    }
}

/// Whether `t` holds a NaN or an infinity: over its memory in blocks (the per-block test vectorizes; `any` over an
/// n-dimensional iterator went value by value through dynamic indices).
pub fn has_non_finite<T: Element>(t: &Tensor<T>) -> bool {
    match t.as_slice_memory_order() {
        Some(values) => values.chunks(1024).any(|block| block.iter().fold(false, |bad, v| bad | !v.is_finite())),
        None => t.iter().any(|v| !v.is_finite()),
    }
}

/// The offset, in a standard-layout tensor of shape `outer` (its innermost axis `inner_len` long), of the first
/// element of row `row` of the block at `start` whose rows are `block` (all axes but the innermost).
fn block_row_offset(row: usize, start: &[usize], block: &[usize], outer: &[usize], inner_len: usize) -> usize {
    let (mut rest, mut offset, mut stride) = (row, start[start.len() - 1], inner_len);
    for a in (0..block.len()).rev() {
        offset += (start[a] + rest % block[a]) * stride;
        rest /= block[a];
        stride *= outer[a];
    }
    offset
}

/// The slice of axis `ax` that the block at `start` of shape `shape` covers (for ndarray's sliced views, the path
/// of tensors not in standard layout).
fn block_slice(start: &[usize], shape: &[usize], ax: ndarray::AxisDescription) -> ndarray::Slice {
    let a = ax.axis.index();
    ndarray::Slice::from(start[a]..start[a] + shape[a])
}

/// Rows per parallel task of the block copies (whole rows; copies only, so the split never shows in a result).
const ROWS_PER_TASK: usize = 64;

/// The block of `t` at `start` (one index per axis) of shape `shape`, as a standard-layout tensor: one `memcpy`
/// per innermost row, rows in parallel. ndarray's `to_owned` of a sliced view goes element by element.
///
/// # Panics
/// If the block does not lie inside `t` (a caller's bug).
pub fn crop<T: Element>(t: &Tensor<T>, start: &[usize], shape: &[usize]) -> Tensor<T> {
    let r = t.ndim();
    assert!(start.len() == r && shape.len() == r, "crop: one start and length per axis");
    assert!((0..r).all(|a| start[a] + shape[a] <= t.shape()[a]), "crop: block outside the tensor");
    let (Some(src), Some(&row_len)) = (t.as_slice(), shape.last()) else {
        return t.slice_each_axis(|ax| block_slice(start, shape, ax)).to_owned();
    };
    let mut out = Tensor::zeros(IxDyn(shape));
    let Some(dst) = out.as_slice_mut() else { unreachable!("a new tensor is standard layout") };
    let (outer, inner_len) = (&t.shape()[..r - 1], t.shape()[r - 1]);
    dst.par_chunks_mut(row_len.max(1)).with_min_len(ROWS_PER_TASK).enumerate().for_each(|(row, d)| {
        let at = block_row_offset(row, start, &shape[..r - 1], outer, inner_len);
        d.copy_from_slice(&src[at..at + d.len()]);
    });
    out
}

/// `t[start .. start + block.shape()] ← block`: one `memcpy` per innermost row, rows in parallel (ndarray's `assign`
/// into a sliced view goes element by element).
///
/// # Panics
/// If the block does not lie inside `t` or their ranks differ (a caller's bug).
pub fn paste<T: Element>(t: &mut Tensor<T>, start: &[usize], block: &Tensor<T>) {
    let r = t.ndim();
    let shape = block.shape().to_vec();
    assert!(start.len() == r && shape.len() == r, "paste: one start and length per axis");
    assert!((0..r).all(|a| start[a] + shape[a] <= t.shape()[a]), "paste: block outside the tensor");
    if r == 0 {
        return t.assign(block);
    }
    let (outer, inner_len) = (t.shape()[..r - 1].to_vec(), t.shape()[r - 1]);
    let src = contiguous(block);
    let (Some(dst), Some(&row_len)) = (t.as_slice_mut(), shape.last()) else {
        t.slice_each_axis_mut(|ax| block_slice(start, &shape, ax)).assign(block);
        return;
    };
    if row_len == 0 {
        return;
    }
    // Rows of the block land at increasing, disjoint offsets: hand each task its own rows of `dst`.
    let mut pieces = Vec::with_capacity(src.len() / row_len);
    let mut rest = dst;
    let mut consumed = 0;
    for (row, s) in src.chunks_exact(row_len).enumerate() {
        let at = block_row_offset(row, start, &shape[..r - 1], &outer, inner_len);
        let (_, tail) = rest.split_at_mut(at - consumed);
        let (piece, after) = tail.split_at_mut(s.len());
        pieces.push((piece, s));
        rest = after;
        consumed = at + s.len();
    }
    pieces.into_par_iter().with_min_len(ROWS_PER_TASK).for_each(|(d, s)| d.copy_from_slice(s));
}

/// A constant held in 16 bits (`--weights f16|bf16`): its shape and values. Kernels that know the format read it
/// as it is; anything else gets a widened f32 copy for the duration of one op.
#[derive(Clone, Debug, PartialEq)]
pub struct HalfTensor {
    shape: Vec<usize>,
    /// Shared with the kernels that read the weights in place.
    values: std::sync::Arc<HalfVec>,
}

impl HalfTensor {
    /// `values` with `shape`; `None` if the lengths disagree.
    pub fn new(shape: Vec<usize>, values: HalfVec) -> Option<HalfTensor> {
        (shape.iter().product::<usize>() == values.len())
            .then(|| HalfTensor { shape, values: std::sync::Arc::new(values) })
    }

    /// `t` rounded to `precision` (`None` for f32), or the index of the first finite value beyond the format's
    /// range (f16 overflows past 65504).
    pub fn from_f32(t: &Tensor<f32>, precision: Precision) -> Option<Result<HalfTensor, usize>> {
        let flat = contiguous(t);
        let values = HalfVec::from_f32(precision, &flat)?;
        Some(match values.first_overflow(&flat) {
            Some(i) => Err(i),
            None => Ok(HalfTensor { shape: t.shape().to_vec(), values: std::sync::Arc::new(values) }),
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn values(&self) -> &HalfVec {
        &self.values
    }

    /// The values, shared (no copy): for kernels that keep reading them.
    pub fn shared(&self) -> std::sync::Arc<HalfVec> {
        self.values.clone()
    }

    pub fn precision(&self) -> Precision {
        self.values.precision()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.values.bytes()
    }

    /// The values widened to `T` (exact).
    pub fn widen<T: Element>(&self) -> Tensor<T> {
        let wide = self.values.to_f32_vec();
        let v: Vec<T> = wide.into_iter().map(|x| T::lit(x as f64)).collect();
        Tensor::from_shape_vec(IxDyn(&self.shape), v).expect("length checked at construction")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, Dimension, Slice};

    #[test]
    fn non_finite_values_are_found_anywhere() {
        let mut t = ArrayD::from_shape_fn(IxDyn(&[3, 1000]), |i| (i[0] * 1000 + i[1]) as f32 * 1e-3);
        assert!(!has_non_finite(&t));
        for (at, v) in [([2, 999], f32::NAN), ([0, 0], f32::INFINITY), ([1, 500], f32::NEG_INFINITY)] {
            let mut bad = t.clone();
            bad[at] = v;
            assert!(has_non_finite(&bad), "{v} at {at:?}");
            // Transposed (memory order is not logical order) and sliced (no contiguous memory) views too.
            assert!(has_non_finite(&bad.t().to_owned()) && has_non_finite(&bad.clone().reversed_axes()));
        }
        t[[1, 1]] = f32::MAX;
        assert!(!has_non_finite(&t));
    }

    /// Block copies give what ndarray's sliced views give, in every rank from 1 to 4, with empty blocks too.
    #[test]
    fn crop_and_paste_equal_sliced_views() {
        let cases: [(&[usize], &[usize], &[usize]); 7] = [
            (&[], &[], &[]),
            (&[9], &[2], &[5]),
            (&[4, 6], &[1, 2], &[2, 3]),
            (&[2, 3, 5, 7], &[0, 1, 1, 2], &[2, 2, 3, 4]),
            (&[2, 3, 5, 7], &[1, 0, 0, 0], &[1, 3, 5, 7]),
            (&[3, 70, 9], &[1, 2, 3], &[2, 65, 5]),
            (&[2, 3, 5, 7], &[1, 1, 1, 1], &[1, 2, 0, 3]),
        ];
        for (outer, start, shape) in cases {
            let t = ArrayD::from_shape_fn(IxDyn(outer), |i| i.slice().iter().fold(0.0f32, |a, &v| a * 10.0 + v as f32));
            let slice = |ax: ndarray::AxisDescription| {
                Slice::from(start[ax.axis.index()]..start[ax.axis.index()] + shape[ax.axis.index()])
            };
            let want = t.slice_each_axis(slice).to_owned();
            assert_eq!(crop(&t, start, shape), want, "{outer:?} {start:?} {shape:?}");
            // A tensor that is not in standard layout takes ndarray's path, with the same result.
            let reversed = t.clone().reversed_axes();
            let rstart: Vec<usize> = start.iter().rev().copied().collect();
            let rshape: Vec<usize> = shape.iter().rev().copied().collect();
            assert_eq!(crop(&reversed, &rstart, &rshape), want.clone().reversed_axes(), "reversed {outer:?}");
            let block = want.mapv(|v| -v - 1.0);
            let mut pasted = t.clone();
            paste(&mut pasted, start, &block);
            let mut expected = t.clone();
            expected.slice_each_axis_mut(slice).assign(&block);
            assert_eq!(pasted, expected, "{outer:?} {start:?} {shape:?}");
            let mut pasted_reversed = t.clone().reversed_axes();
            paste(&mut pasted_reversed, &rstart, &block.clone().reversed_axes());
            assert_eq!(pasted_reversed, expected.reversed_axes(), "reversed {outer:?}");
        }
    }

    #[test]
    fn half_tensors_round_widen_and_refuse_overflow() {
        let t = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0f32, 0.1, -3.0, 1e-3]).unwrap();
        let h = HalfTensor::from_f32(&t, Precision::F16).unwrap().unwrap();
        assert_eq!((h.shape(), h.bytes(), h.precision()), (&[2, 2][..], 8, Precision::F16));
        let back: Tensor<f32> = h.widen();
        for (a, b) in back.iter().zip(t.iter()) {
            assert!((a - b).abs() <= b.abs() / 2048.0, "{a} vs {b}");
        }
        assert!(HalfTensor::from_f32(&t, Precision::F32).is_none());
        let big = ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0f32, 1e5]).unwrap();
        assert_eq!(HalfTensor::from_f32(&big, Precision::F16), Some(Err(1)));
        assert!(HalfTensor::from_f32(&big, Precision::Bf16).unwrap().is_ok());
        assert!(HalfTensor::new(vec![3], h.values().clone()).is_none());
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast_shapes(&[2, 1, 4], &[3, 1]), Some(vec![2, 3, 4]));
        assert_eq!(broadcast_shapes(&[], &[5]), Some(vec![5]));
        assert_eq!(broadcast_shapes(&[2, 3], &[4, 3]), None);
    }

    #[test]
    fn axes_must_exist() {
        assert_eq!(normalize_axis(-1, 3).unwrap(), 2);
        // Found by fuzzing: a rank-0 tensor has no axis 0.
        assert!(normalize_axis(0, 0).is_err());
        assert!(normalize_axis(3, 3).is_err() && normalize_axis(-4, 3).is_err());
    }

    #[test]
    fn sum_to_shape_reduces_broadcast_axes() {
        let g = ArrayD::<f64>::ones(IxDyn(&[2, 3, 4]));
        let s = sum_to_shape(g, &[3, 1]);
        assert_eq!(s.shape(), &[3, 1]);
        assert!(s.iter().all(|&v| v == 8.0));
    }
}
