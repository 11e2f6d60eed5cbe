//! Conv3d: 3-D convolution of `[N, C, D, H, W]` volumes (ONNX Conv with a 5-D weight), grouped, strided, dilated
//! and padded. Each output depth slice is one product `W · columns`, the columns gathered from the input slices its
//! window covers (an im2col per slice, so the buffer stays one slice's size); the backward scatters `Wᵀ · ∂y` back.

use super::thin_matmul::matmul;
use super::window3d::Window3d;
use super::{arity, Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{contiguous, from_vec, Tensor};
use crate::Element;
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

/// 3-D convolution; input `[N, C, D, H, W]`, weight `[M, C/groups, kd, kh, kw]`, optional bias `[M]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3d {
    pub window: Window3d,
    pub groups: usize,
}

/// Sizes of one convolution.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geo {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) dims: [usize; 3],
    pub(super) m: usize,
    pub(super) out: [usize; 3],
    /// Input channels per group.
    pub(super) cg: usize,
    /// Output channels per group.
    pub(super) mg: usize,
    /// Taps per input channel.
    pub(super) k3: usize,
}

impl Conv3d {
    pub(super) fn geo(&self, shapes: &[&[usize]]) -> Result<Geo, OpError> {
        arity(shapes, 2, 3)?;
        let (x, w) = (shapes[0], shapes[1]);
        let out = self.window.output(x, shapes)?;
        if w.len() != 5 || w[2..] != self.window.kernel {
            return Err(OpError::shape(format!("weight must be [M, C/groups, {:?}]", self.window.kernel), shapes));
        }
        let (c, m, g) = (x[1], w[0], self.groups);
        if c == 0 || m == 0 || g == 0 || g > c || c % g != 0 || m % g != 0 || w[1] != c / g {
            return Err(OpError::shape(format!("channels do not split into {g} groups"), shapes));
        }
        if shapes.get(2).is_some_and(|b| *b != [m]) {
            return Err(OpError::shape(format!("bias must be [{m}]"), shapes));
        }
        let k3 = w[2] * w[3] * w[4];
        Ok(Geo { n: x[0], c, dims: [x[2], x[3], x[4]], m, out, cg: c / g, mg: m / g, k3 })
    }

    /// The columns of output depth `od` for image `n`, group `g`: `[cg·k3, Ho·Wo]`.
    fn columns<T: Element>(&self, x: &[T], geo: &Geo, n: usize, g: usize, od: usize) -> Array2<T> {
        let w = &self.window;
        let [d, h, wd] = geo.dims;
        let [_, ho, wo] = geo.out;
        let [kd, kh, kw] = w.kernel;
        let mut cols = Array2::<T>::zeros((geo.cg * geo.k3, ho * wo));
        for c in 0..geo.cg {
            let plane = (n * geo.c + g * geo.cg + c) * d;
            for a in 0..kd {
                let Some(id) = w.source(od, a, 0, d) else { continue };
                for b in 0..kh {
                    for e in 0..kw {
                        let row = ((c * kd + a) * kh + b) * kw + e;
                        let mut r = cols.row_mut(row);
                        for oh in 0..ho {
                            let Some(ih) = w.source(oh, b, 1, h) else { continue };
                            let base = ((plane + id) * h + ih) * wd;
                            for ow in 0..wo {
                                if let Some(iw) = w.source(ow, e, 2, wd) {
                                    r[oh * wo + ow] = x[base + iw];
                                }
                            }
                        }
                    }
                }
            }
        }
        cols
    }

    /// Adds the columns `dcols` (`[cg·k3, Ho·Wo]`) of output depth `od` back into image `n`'s input gradient.
    fn scatter<T: Element>(&self, dcols: &ArrayView2<'_, T>, dx: &mut [T], geo: &Geo, g: usize, od: usize) {
        let w = &self.window;
        let [d, h, wd] = geo.dims;
        let [_, ho, wo] = geo.out;
        let [kd, kh, kw] = w.kernel;
        for c in 0..geo.cg {
            let plane = (g * geo.cg + c) * d;
            for a in 0..kd {
                let Some(id) = w.source(od, a, 0, d) else { continue };
                for b in 0..kh {
                    for e in 0..kw {
                        let r = dcols.row(((c * kd + a) * kh + b) * kw + e);
                        for oh in 0..ho {
                            let Some(ih) = w.source(oh, b, 1, h) else { continue };
                            let base = ((plane + id) * h + ih) * wd;
                            for ow in 0..wo {
                                if let Some(iw) = w.source(ow, e, 2, wd) {
                                    dx[base + iw] += r[oh * wo + ow];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Conv3d {
    /// `y = conv(x, w) + bias` for contiguous operands (`[N, M, Do, Ho, Wo]` row-major).
    pub(super) fn apply<T: Element>(&self, x: &[T], w: &[T], bias: Option<&[T]>, geo: &Geo) -> Vec<T> {
        let [od_n, ho, wo] = geo.out;
        let plane = ho * wo;
        // One task per (image, output depth): its [M, Ho·Wo] slab.
        let slabs: Vec<Vec<T>> = (0..geo.n * od_n)
            .into_par_iter()
            .map(|task| {
                let (n, od) = (task / od_n, task % od_n);
                let mut slab = vec![T::zero(); geo.m * plane];
                for g in 0..self.groups {
                    let cols = self.columns(x, geo, n, g, od);
                    let y = matmul(&group_weight(w, geo, g), &cols.view());
                    for (i, row) in y.outer_iter().enumerate() {
                        let mo = g * geo.mg + i;
                        let b = bias.map_or(T::zero(), |b| b[mo]);
                        for (o, &v) in slab[mo * plane..(mo + 1) * plane].iter_mut().zip(row.iter()) {
                            *o = v + b;
                        }
                    }
                }
                slab
            })
            .collect();
        let mut y = vec![T::zero(); geo.n * geo.m * od_n * plane];
        for (task, slab) in slabs.iter().enumerate() {
            let (n, od) = (task / od_n, task % od_n);
            for mo in 0..geo.m {
                let dst = ((n * geo.m + mo) * od_n + od) * plane;
                y[dst..dst + plane].copy_from_slice(&slab[mo * plane..(mo + 1) * plane]);
            }
        }
        y
    }

    /// Image n, group g, output depth od of `dy`: `[mg, Ho·Wo]`.
    fn dy_slice<T: Element>(dy: &[T], geo: &Geo, n: usize, g: usize, od: usize) -> Array2<T> {
        let [od_n, ho, wo] = geo.out;
        let plane = ho * wo;
        Array2::from_shape_fn((geo.mg, plane), |(i, p)| dy[((n * geo.m + g * geo.mg + i) * od_n + od) * plane + p])
    }

    /// `∂x = convᵀ(∂y, w)`: the input-shaped result (also a transposed convolution's forward).
    pub(super) fn input_grad<T: Element>(&self, dy: &[T], w: &[T], geo: &Geo) -> Vec<T> {
        let image_in = geo.c * geo.dims.iter().product::<usize>();
        let mut dx = vec![T::zero(); geo.n * image_in];
        // Images in parallel; within one, depths in order (their windows overlap).
        dx.par_chunks_mut(image_in.max(1)).enumerate().for_each(|(n, dxn)| {
            for od in 0..geo.out[0] {
                for g in 0..self.groups {
                    let dcols = matmul(&group_weight(w, geo, g).t(), &Self::dy_slice(dy, geo, n, g, od).view());
                    self.scatter(&dcols.view(), dxn, geo, g, od);
                }
            }
        });
        dx
    }

    /// `∂w = Σ ∂y · columns(x)ᵀ`, summed over images in order (the same on any thread count).
    pub(super) fn weight_grad<T: Element>(&self, x: &[T], dy: &[T], geo: &Geo) -> Vec<T> {
        let size = geo.m * geo.cg * geo.k3;
        let per_image: Vec<Vec<T>> = (0..geo.n)
            .into_par_iter()
            .map(|n| {
                let mut acc = vec![T::zero(); size];
                for od in 0..geo.out[0] {
                    for g in 0..self.groups {
                        let cols = self.columns(x, geo, n, g, od);
                        let part = matmul(&Self::dy_slice(dy, geo, n, g, od).view(), &cols.t());
                        let start = g * geo.mg * geo.cg * geo.k3;
                        for (a, &v) in acc[start..].iter_mut().zip(part.iter()) {
                            *a += v;
                        }
                    }
                }
                acc
            })
            .collect();
        let mut dw = vec![T::zero(); size];
        for part in per_image {
            for (a, v) in dw.iter_mut().zip(part) {
                *a += v;
            }
        }
        dw
    }
}

/// `∂bias`: `∂y` summed over images and positions per output channel.
fn bias_grad<T: Element>(dy: &[T], geo: &Geo) -> Vec<T> {
    let per = geo.out.iter().product::<usize>();
    let mut db = vec![T::zero(); geo.m];
    for n in 0..geo.n {
        for (mo, d) in db.iter_mut().enumerate() {
            let start = (n * geo.m + mo) * per;
            *d += dy[start..start + per].iter().fold(T::zero(), |a, &v| a + v);
        }
    }
    db
}

/// Group `g`'s weight rows as `[mg, cg·k3]`.
fn group_weight<'a, T: Element>(w: &'a [T], geo: &Geo, g: usize) -> ArrayView2<'a, T> {
    let rows = geo.mg;
    let len = geo.cg * geo.k3;
    ArrayView2::from_shape((rows, len), &w[g * rows * len..(g + 1) * rows * len]).expect("weight slice")
}

impl<T: Element> Op<T> for Conv3d {
    fn op_type(&self) -> &'static str {
        "Conv"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        let geo = self.geo(inputs)?;
        Ok(vec![vec![geo.n, geo.m, geo.out[0], geo.out[1], geo.out[2]]])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let geo = self.geo(&shapes)?;
        let (x, w) = (contiguous(inputs[0]), contiguous(inputs[1]));
        let bias = inputs.get(2).map(|b| contiguous(b));
        let y = self.apply(&x, &w, bias.as_deref(), &geo);
        Ok(Outputs::one(from_vec(&[geo.n, geo.m, geo.out[0], geo.out[1], geo.out[2]], y)?))
    }

    fn saves(&self, wanted: &[bool]) -> Saves {
        super::conv::conv_saves(wanted)
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let geo = self.geo(&cx.input_shapes)?;
        let dy = contiguous(cx.grad()?);
        let dx = if cx.wants(0) {
            Some(from_vec(cx.input_shapes[0], self.input_grad(&dy, &contiguous(cx.input(1)?), &geo))?)
        } else {
            None
        };
        let dw = if cx.wants(1) {
            Some(from_vec(cx.input_shapes[1], self.weight_grad(&contiguous(cx.input(0)?), &dy, &geo))?)
        } else {
            None
        };
        let db = if cx.wants(2) { Some(from_vec(&[geo.m], bias_grad(&dy, &geo))?) } else { None };
        let mut grads = vec![dx, dw];
        if cx.input_shapes.len() > 2 {
            grads.push(db);
        }
        Ok(grads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};
    use ndarray::IxDyn;

    fn conv(kernel: [usize; 3], strides: [usize; 3], dilations: [usize; 3], pads: [usize; 6], groups: usize) -> Conv3d {
        Conv3d { window: Window3d { kernel, strides, dilations, pads, ceil_mode: false }, groups }
    }

    /// The definition, one output element at a time.
    fn direct(op: &Conv3d, x: &Tensor<f64>, w: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
        let shapes = [x.shape(), w.shape(), b.shape()];
        let geo = op.geo(&shapes).unwrap();
        let win = &op.window;
        let mut y = Tensor::<f64>::zeros(IxDyn(&[geo.n, geo.m, geo.out[0], geo.out[1], geo.out[2]]));
        for ((n, mo, od, oh, ow), v) in y.view_mut().into_dimensionality::<ndarray::Ix5>().unwrap().indexed_iter_mut() {
            let g = mo / geo.mg;
            let mut s = b[mo];
            for c in 0..geo.cg {
                for a in 0..win.kernel[0] {
                    for bb in 0..win.kernel[1] {
                        for e in 0..win.kernel[2] {
                            if let (Some(id), Some(ih), Some(iw)) = (
                                win.source(od, a, 0, geo.dims[0]),
                                win.source(oh, bb, 1, geo.dims[1]),
                                win.source(ow, e, 2, geo.dims[2]),
                            ) {
                                s += x[[n, g * geo.cg + c, id, ih, iw]] * w[[mo, c, a, bb, e]];
                            }
                        }
                    }
                }
            }
            *v = s;
        }
        y
    }

    fn cases() -> Vec<(Conv3d, [usize; 5], usize)> {
        vec![
            (conv([3, 3, 3], [1, 1, 1], [1, 1, 1], [1, 1, 1, 1, 1, 1], 1), [2, 2, 4, 5, 4], 3),
            (conv([2, 3, 1], [2, 1, 2], [1, 2, 1], [0, 1, 0, 1, 2, 0], 1), [1, 3, 5, 6, 5], 2),
            (conv([1, 2, 2], [1, 2, 2], [1, 1, 1], [0; 6], 2), [1, 4, 3, 4, 4], 4),
        ]
    }

    #[test]
    fn forward_matches_the_definition() {
        let mut rng = Rng::new(70);
        for (op, xs, m) in cases() {
            let x = rng.tensor(&xs, -1.0, 1.0);
            let w = rng.tensor(
                &[m, xs[1] / op.groups, op.window.kernel[0], op.window.kernel[1], op.window.kernel[2]],
                -1.0,
                1.0,
            );
            let b = rng.tensor(&[m], -1.0, 1.0);
            let y = Op::<f64>::forward(&op, &[&x, &w, &b]).unwrap().values.remove(0);
            let want = direct(&op, &x, &w, &b);
            assert_eq!(y.shape(), want.shape());
            let err = y.iter().zip(want.iter()).fold(0f64, |e, (a, b)| e.max((a - b).abs()));
            assert!(err < 1e-12, "{op:?}: {err}");
        }
    }

    #[test]
    fn vjp_matches_finite_differences_for_input_weight_and_bias() {
        let mut rng = Rng::new(71);
        for (op, xs, m) in cases() {
            let inputs = [
                rng.tensor(&xs, -1.0, 1.0),
                rng.tensor(
                    &[m, xs[1] / op.groups, op.window.kernel[0], op.window.kernel[1], op.window.kernel[2]],
                    -1.0,
                    1.0,
                ),
                rng.tensor(&[m], -1.0, 1.0),
            ];
            check_vjp(&op, &inputs, &[true, true, true], 3);
            check_vjp(&op, &inputs, &[true, false, false], 4);
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let op = conv([3, 3, 3], [1, 1, 1], [1, 1, 1], [0; 6], 1);
        assert!(Op::<f32>::output_shapes(&op, &[&[1, 2, 4, 4, 4], &[3, 2, 3, 3, 3]]).is_ok());
        assert!(Op::<f32>::output_shapes(&op, &[&[1, 2, 2, 4, 4], &[3, 2, 3, 3, 3]]).is_err(), "window too large");
        assert!(Op::<f32>::output_shapes(&op, &[&[1, 2, 4, 4], &[3, 2, 3, 3, 3]]).is_err(), "4-D input");
        assert!(Op::<f32>::output_shapes(&op, &[&[1, 2, 4, 4, 4], &[3, 1, 3, 3, 3]]).is_err(), "channels");
    }
}
