//! The input gradient of a convolution with constant weights on the packed kernels.
//!
//! For stride 1 and no groups, `∂L/∂x` is itself a convolution: of `∂L/∂y` with the weights transposed (input and
//! output channels swapped) and flipped in space, padded by `dilation·(k − 1) − pad` on each side. So saliency,
//! guided backpropagation and PGD, which take the input gradient through every layer, run it on the same packed
//! GEMM and Winograd kernels as the forward pass, with the transposed weights packed once per graph. Strided layers
//! make their im2col columns `Wᵀ·∂L/∂y` on the packed kernels too, then col2im. Grouped ones (depthwise has its own
//! fast kernel) keep the op's own rule.

use super::fuse::{f32_view, fold_pad, from_f32, is_f32, winograd_wins, PackKey};
use super::Graph;
use crate::error::{GraphError, GraphResult as Result, OpError};
use crate::ops::Fusable;
use crate::tensor::{contiguous, Tensor};
use crate::Element;
use gradcam_kernels::conv_packed::conv2d_forward_packed;
use gradcam_kernels::{col2im_image, simd, Clamp, ConvGeometry, PackedConv, Precision};

/// Most elements of one image's columns on the strided path (64 MB, as the chunks of the op's own rule): a larger
/// layer (a stem on a large image) keeps the rule, which makes its columns in chunks.
const MAX_COLUMNS: usize = gradcam_kernels::conv::MAX_COL_ELEMS;

impl<T: Element> Graph<T> {
    /// `∂L/∂x` of convolution node `n` given `∂L/∂y`, or `None` where the packed path does not apply (the caller
    /// then runs the op's own backward): f32 graphs, constant weights, no groups; with stride 1, pads within the
    /// kernel's reach; with strides, one image's columns within [`MAX_COLUMNS`]. With `fold`, the padding of a zero
    /// `Pad` in front that the forward pass folded in: the gradient is then the `Pad` input's. `outlives_pass`: the
    /// gradient is one the caller asked for (an exact-length buffer).
    pub(super) fn packed_conv_input_gradient(
        &self,
        n: usize,
        input_shapes: &[&[usize]],
        grad_output: &Tensor<T>,
        pool: &mut super::pool::BufferPool<T>,
        fold: Option<[usize; 4]>,
        outlives_pass: bool,
    ) -> Option<Result<Tensor<T>>> {
        let node = &self.nodes[n];
        let Some(Fusable::Conv(attrs)) = node.op.fusion() else { return None };
        if !is_f32::<T>() || !self.is_constant(node.inputs[1]) {
            return None;
        }
        let mut geo = attrs.geometry(input_shapes).ok()?;
        if let Some(pads) = fold {
            fold_pad(&mut geo, pads);
        }
        let (oh, ow) = (geo.out_h()?, geo.out_w()?);
        // The first two are the sizes of tensors that exist; the columns are not, and saturate rather than wrap.
        let columns = geo.k().saturating_mul(oh * ow);
        let sizes = [geo.out_channels * oh * ow, geo.in_channels * geo.in_h * geo.in_w, columns];
        if geo.groups != 1 || sizes.contains(&0) {
            return None;
        }
        if [geo.stride_h, geo.stride_w] != [1, 1] {
            return (sizes[2] <= MAX_COLUMNS)
                .then(|| self.run_columns(n, &geo, (oh, ow), grad_output, pool, outlives_pass));
        }
        let reach_h = geo.dilation_h * (geo.kernel_h - 1);
        let reach_w = geo.dilation_w * (geo.kernel_w - 1);
        let pads_fit = geo.pad_top.max(geo.pad_bottom) <= reach_h && geo.pad_left.max(geo.pad_right) <= reach_w;
        if !pads_fit {
            return None;
        }
        let transposed = ConvGeometry {
            in_channels: geo.out_channels,
            out_channels: geo.in_channels,
            in_h: oh,
            in_w: ow,
            pad_top: reach_h - geo.pad_top,
            pad_bottom: reach_h - geo.pad_bottom,
            pad_left: reach_w - geo.pad_left,
            pad_right: reach_w - geo.pad_right,
            ..geo
        };
        Some(self.run_transposed(n, &transposed, grad_output, pool, outlives_pass))
    }

    /// The transposed convolution `geo` of `grad_output`, into a pooled buffer (the kernels overwrite it whole).
    fn run_transposed(
        &self,
        n: usize,
        geo: &ConvGeometry,
        grad_output: &Tensor<T>,
        pool: &mut super::pool::BufferPool<T>,
        outlives_pass: bool,
    ) -> Result<Tensor<T>> {
        let (node, wrap) = (&self.nodes[n], |source| conv_error(&self.nodes[n].name, source));
        let dy = f32_view(grad_output).ok_or_else(|| wrap(not_f32()))?;
        let level = simd::level();
        let winograd = winograd_wins(geo);
        let pixel_rows = self.pixel_rows_win(node.inputs[1], geo, level);
        let key = PackKey { conv: n, batch_norm: None, level, winograd, transposed: true, pixel_rows, columns: false };
        let packed = self.packed.get_or_make(key, || {
            let (w, precision) = self.weights_f32(node.inputs[1]);
            let flipped = flip_transpose(&w, geo.in_channels, geo.out_channels, geo.kernel_h, geo.kernel_w);
            let (kernel, co, ci) = ([geo.kernel_h, geo.kernel_w], geo.out_channels, geo.in_channels);
            // (`pixel_rows` is never set with `winograd`; `None` only on a level without the tile, ruled out too.)
            let pixel = pixel_rows.then(|| PackedConv::pixel_rows(level, &flipped, None, co, ci, kernel)).flatten();
            match pixel {
                Some(p) => p,
                None if winograd => PackedConv::winograd_as(level, &flipped, None, None, co, ci, precision),
                None => PackedConv::new_as(level, &flipped, None, None, co, ci, kernel, 1, precision),
            }
        });
        let shape = [geo.batch, geo.out_channels, geo.out_h().unwrap_or(0), geo.out_w().unwrap_or(0)];
        let len = shape.iter().product();
        // T is f32 here (checked above): the pooled buffer is one of f32.
        let mut dx = pool.take_f32_or_zeroed(len, outlives_pass);
        conv2d_forward_packed(geo, &contiguous(dy), &packed, Clamp::NONE, dx.values());
        let dx = dx.into_tensor(&shape).map_err(|e| wrap(OpError::Invalid(e.to_string())))?;
        from_f32(dx).ok_or_else(|| wrap(not_f32()))
    }

    /// Constant weights `id` as f32, and the precision they are held in: packed weights keep it, so 16-bit weights
    /// stay 16-bit (transposing and flipping move values, they round nothing).
    fn weights_f32(&self, id: super::ValueId) -> (Vec<f32>, Precision) {
        let w = self
            .constant_value(id)
            .map(|t| t.iter().map(|v| v.to_f32().unwrap_or(f32::NAN)).collect())
            .unwrap_or_default();
        (w, self.half_constant(id).map_or(Precision::F32, |h| h.precision()))
    }
}

fn conv_error(node: &str, source: OpError) -> GraphError {
    GraphError::Op { node: node.to_string(), op: "Conv", source }
}

fn not_f32() -> OpError {
    OpError::Invalid("packed convolution gradient on a non-f32 graph".into())
}

impl<T: Element> Graph<T> {
    /// `∂L/∂x` of strided convolution `geo` (ungrouped), which is no convolution of `∂L/∂y`: per image, the columns
    /// `Wᵀ·∂L/∂y` (`k × pixels`) as a 1×1 convolution on the packed kernels with `Wᵀ` packed once, then col2im adds
    /// them into the input gradient. The generic rule makes the same product with the portable GEMM in tiles and
    /// zero-fills its columns; a ResNet-18 stem's input gradient took about 15 % longer that way (BENCHMARKS.md,
    /// tenth pass).
    fn run_columns(
        &self,
        n: usize,
        geo: &ConvGeometry,
        (oh, ow): (usize, usize),
        grad_output: &Tensor<T>,
        pool: &mut super::pool::BufferPool<T>,
        outlives_pass: bool,
    ) -> Result<Tensor<T>> {
        let (node, wrap) = (&self.nodes[n], |source| conv_error(&self.nodes[n].name, source));
        let dy = f32_view(grad_output).ok_or_else(|| wrap(not_f32()))?;
        let (k, pixels) = (geo.k(), oh * ow);
        let level = simd::level();
        let key = PackKey {
            conv: n,
            batch_norm: None,
            level,
            winograd: false,
            transposed: true,
            pixel_rows: false,
            columns: true,
        };
        let packed = self.packed.get_or_make(key, || {
            let (w, precision) = self.weights_f32(node.inputs[1]);
            let transposed = transpose(&w, geo.out_channels, k);
            PackedConv::new_as(level, &transposed, None, None, k, geo.out_channels, [1, 1], 1, precision)
        });
        // The columns of one image: a pointwise convolution of its output gradient, C_out channels to k.
        let columns = ConvGeometry {
            batch: 1,
            in_channels: geo.out_channels,
            in_h: oh,
            in_w: ow,
            out_channels: k,
            kernel_h: 1,
            kernel_w: 1,
            stride_h: 1,
            stride_w: 1,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 0,
            pad_left: 0,
            pad_bottom: 0,
            pad_right: 0,
            groups: 1,
        };
        let image_in = geo.in_channels * geo.in_h * geo.in_w;
        let shape = [geo.batch, geo.in_channels, geo.in_h, geo.in_w];
        // T is f32 here (checked above): the pooled buffers are of f32.
        let mut dcol = pool.take_f32_or_zeroed(k * pixels, false);
        let mut dx = pool.take_f32_or_zeroed(geo.batch * image_in, outlives_pass);
        let dxs = dx.values();
        dxs.fill(0.0);
        let dy = contiguous(dy);
        for (dy, dx) in dy.chunks_exact(geo.out_channels * pixels).zip(dxs.chunks_exact_mut(image_in)) {
            conv2d_forward_packed(&columns, dy, &packed, Clamp::NONE, dcol.values());
            col2im_image(geo, dcol.values(), dx);
        }
        if let Ok(Some(scratch)) = dcol.into_tensor(&[k * pixels]).map(from_f32::<T>) {
            pool.recycle(scratch);
        }
        let dx = dx.into_tensor(&shape).map_err(|e| wrap(OpError::Invalid(e.to_string())))?;
        from_f32(dx).ok_or_else(|| wrap(not_f32()))
    }
}

/// `[rows, cols]` row-major → `[cols, rows]` row-major.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    out
}

/// `[C_out, C_in, KH, KW]` weights (with `C_out = out_channels` of the forward convolution, here `c_in` of the
/// transposed one) → `[C_in, C_out, KH, KW]`, flipped in both spatial axes.
fn flip_transpose(w: &[f32], fwd_out: usize, fwd_in: usize, kh: usize, kw: usize) -> Vec<f32> {
    let taps = kh * kw;
    let mut out = vec![0.0f32; w.len()];
    for co in 0..fwd_out {
        for ci in 0..fwd_in {
            for t in 0..taps {
                out[(ci * fwd_out + co) * taps + (taps - 1 - t)] = w[(co * fwd_in + ci) * taps + t];
            }
        }
    }
    out
}
