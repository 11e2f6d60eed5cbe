//! Fused convolutions: `[Pad →] Conv [→ BatchNormalization] [→ Relu | Clip]` run as one kernel call, planned per
//! request.
//!
//! A chain is fused only where nothing needs the values inside it: an intermediate value may not be a requested
//! layer, a seed, a `wrt` value, or read by a backward rule that the plan runs (the plan's `retain`), and must have
//! no other reader. So `gradcam layers` names, Grad-CAM targets and every backward rule keep working: where a value
//! is needed, the chain is simply cut there. The backward pass still runs the original ops' rules — a ReLU's mask
//! comes from the fused output, batch-norm's input gradient reads only its constants.
//!
//! A zero `Pad` of the spatial axes in front (TF-style "SAME" padding exported as its own node) becomes the
//! convolution's own padding; the chain then runs where the `Pad` ran, since the convolution's other inputs are
//! constants.
//!
//! The batch-norm is folded into the convolution's weights and bias (`W' = W·a`, `b' = (b − mean)·a + β` with
//! `a = γ/√(var + ε)`, computed in f64), and the clamp runs in the GEMM epilogue. Folded and packed weights are made
//! on first use and cached in the graph for its lifetime, per SIMD level. Fusion applies to f32 graphs; f64 graphs
//! (gradient checks) always run op by op.

use super::pool::BufferPool;
use super::{Graph, ValueId};
use crate::error::{GraphError, GraphResult as Result, OpError};
use crate::ops::{Conv, Fusable};
use crate::tensor::{contiguous, Tensor};
use crate::Element;
use gradcam_kernels::conv_packed::{conv2d_forward_packed, conv2d_forward_packed_residual};
use gradcam_kernels::{simd, winograd, Clamp, ConvGeometry, PackedConv, Precision, SimdLevel};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Moves a folded zero `Pad`'s `[top, left, bottom, right]` into `geo`, the geometry of the convolution on the
/// padded input: the same convolution, on the `Pad`'s input.
pub(super) fn fold_pad(geo: &mut ConvGeometry, [top, left, bottom, right]: [usize; 4]) {
    geo.in_h = geo.in_h.saturating_sub(top + bottom);
    geo.in_w = geo.in_w.saturating_sub(left + right);
    geo.pad_top += top;
    geo.pad_left += left;
    geo.pad_bottom += bottom;
    geo.pad_right += right;
}

/// One fused chain, planned for one request.
#[derive(Clone, Debug)]
pub(crate) struct FusedConv {
    /// The convolution node (where the chain runs unless a `Pad` leads it).
    pub conv: usize,
    /// A leading zero `Pad` folded into the convolution's padding: its output value (never materialized) and the
    /// extra `[top, left, bottom, right]` padding.
    pub pad: Option<(ValueId, [usize; 4])>,
    pub attrs: Conv,
    /// The batch-norm node folded into the weights, with its ε.
    pub batch_norm: Option<(usize, f64)>,
    /// The other operand of a residual `Add` after the convolution (and batch-norm), added in the epilogue before
    /// the clamp; made before the chain runs, shaped like its output.
    pub residual: Option<ValueId>,
    /// The clamp's bounds.
    pub clamp: Option<Clamp>,
    /// The value the chain writes.
    pub output: ValueId,
    /// Values after the convolution, never materialized (their run-time shape equals the output's).
    pub skipped_values: Vec<ValueId>,
    /// Nodes after the one the chain runs at that it replaces (the convolution too where a `Pad` leads).
    pub skipped_nodes: Vec<usize>,
}

impl FusedConv {
    /// The shape of the convolution's data input as the graph has it: `x` with the folded `Pad` applied.
    pub(crate) fn padded_input_shape(&self, x: &[usize]) -> Vec<usize> {
        let mut shape = x.to_vec();
        if let (Some((_, [top, left, bottom, right])), 4) = (self.pad, shape.len()) {
            shape[2] += top + bottom;
            shape[3] += left + right;
        }
        shape
    }
}

/// Which packed weights: the convolution node, whether its batch-norm is folded in, the SIMD level, whether they
/// are transformed for Winograd, and whether they are the flipped, transposed weights of the input gradient.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(super) struct PackKey {
    pub conv: usize,
    pub batch_norm: Option<usize>,
    pub level: SimdLevel,
    pub winograd: bool,
    pub transposed: bool,
    /// Packed for the transposed product of a small plane (`conv_pixel_rows`).
    pub pixel_rows: bool,
    /// `Wᵀ` alone (`k × C_out`, neither flipped nor transformed): the product that makes a strided convolution's
    /// input-gradient columns (`graph::conv_backward`).
    pub columns: bool,
}

/// Folded and packed weights of a graph's convolutions, made on first use.
#[derive(Default)]
pub(crate) struct PackCache(Mutex<HashMap<PackKey, Arc<PackedConv>>>);

impl std::fmt::Debug for PackCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map(|m| m.len()).unwrap_or(0);
        write!(f, "PackCache({n} packed convolutions)")
    }
}

impl PackCache {
    /// The weights under `key`, made by `make` on first use. The lock is not held while they are made: packing runs on
    /// the thread pool, whose threads may meanwhile take up a pass that asks for the same lock. Passes running side by
    /// side (a batch's items) may so pack the same weight twice on their first call; one copy is kept.
    pub(super) fn get_or_make(&self, key: PackKey, make: impl FnOnce() -> PackedConv) -> Arc<PackedConv> {
        if let Some(p) = self.0.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return p;
        }
        let p = Arc::new(make());
        if let Ok(mut m) = self.0.lock() {
            m.insert(key, p.clone());
        }
        p
    }

    /// Drops every packed weight (a constant changed).
    pub(crate) fn clear(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }

    /// Bytes held by packed weights.
    pub(crate) fn bytes(&self) -> usize {
        self.0.lock().map(|m| m.values().map(|p| p.bytes()).sum()).unwrap_or(0)
    }
}

/// Whether Winograd F(2×2, 3×3) beats im2col + GEMM for convolution `geo` (measured with `cargo bench --bench
/// conv`, see BENCHMARKS.md): it must apply (3×3, stride 1, no dilation or groups), with enough channels that the
/// transforms cost less than the multiplications saved, and enough 2×2 tiles to fill the GEMM's column panels (at
/// 7×7, 16 tiles, im2col wins). `GRADCAM_WINOGRAD=0` turns it off, to compare.
pub(super) fn winograd_wins(geo: &ConvGeometry) -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let enabled = *ENABLED.get_or_init(|| std::env::var("GRADCAM_WINOGRAD").map_or(true, |v| v.trim() != "0"));
    let tiles = geo.out_h().unwrap_or(0).div_ceil(2) * geo.out_w().unwrap_or(0).div_ceil(2);
    enabled && winograd::applies(geo) && geo.out_channels >= 16 && geo.in_channels >= 16 && tiles >= 32
}

pub(super) fn is_f32<T: 'static>() -> bool {
    TypeId::of::<T>() == TypeId::of::<f32>()
}

/// `t` as the f32 tensor it is on an f32 graph (the one the f32 kernels run on), else `None`.
pub(super) fn f32_view<T: Element>(t: &Tensor<T>) -> Option<&Tensor<f32>> {
    (t as &dyn Any).downcast_ref::<Tensor<f32>>()
}

/// An f32 tensor as the graph's element type, where that is f32, else `None`.
pub(super) fn from_f32<T: Element>(t: Tensor<f32>) -> Option<Tensor<T>> {
    (Box::new(t) as Box<dyn Any>).downcast::<Tensor<T>>().ok().map(|b| *b)
}

impl<T: Element> Graph<T> {
    /// Whether convolution `geo`, whose weight is value `weight`, runs as the pixel-row product
    /// (`conv_pixel_rows::wins`) rather than Winograd or the packed GEMM: f32 weights only (16-bit ones are read in
    /// place by the packed path).
    pub(super) fn pixel_rows_win(&self, weight: ValueId, geo: &ConvGeometry, level: SimdLevel) -> bool {
        !winograd_wins(geo)
            && self.half_constant(weight).is_none()
            && gradcam_kernels::conv_pixel_rows::wins(geo, level)
    }

    fn all_constant(&self, ids: &[ValueId]) -> bool {
        ids.iter().all(|&i| self.is_constant(i))
    }

    /// The fused chains of a plan, indexed by the node they run at (the convolution, or the `Pad` leading it).
    pub(crate) fn plan_fusion(&self, run_forward: &[bool], retain: &[bool]) -> Vec<Option<FusedConv>> {
        let mut fused = vec![None; self.nodes.len()];
        if !is_f32::<T>() {
            return fused;
        }
        // Readers of each value among the nodes that run, and the node that makes it.
        let mut readers: Vec<Vec<usize>> = vec![Vec::new(); self.values.len()];
        let mut producer: Vec<Option<usize>> = vec![None; self.values.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            if run_forward[n] {
                for i in &node.inputs {
                    readers[i.0].push(n);
                }
                for o in &node.outputs {
                    producer[o.0] = Some(n);
                }
            }
        }
        for (n, node) in self.nodes.iter().enumerate() {
            let Some(Fusable::Conv(attrs)) = node.op.fusion() else { continue };
            if !run_forward[n] || !self.all_constant(&node.inputs[1..]) || node.outputs.len() != 1 {
                continue;
            }
            // A leading zero Pad read only by this convolution, whose output nothing needs: the chain runs there.
            let data = node.inputs[0];
            let leading_pad = producer[data.0]
                .filter(|&p| readers[data.0].as_slice() == [n] && !retain[data.0] && self.nodes[p].inputs.len() == 1)
                .and_then(|p| match self.nodes[p].op.fusion() {
                    Some(Fusable::ZeroPad2d(pads)) => Some((p, pads)),
                    _ => None,
                });
            let anchor = leading_pad.map_or(n, |(p, _)| p);
            let mut chain = FusedConv {
                conv: n,
                pad: None,
                attrs,
                batch_norm: None,
                residual: None,
                clamp: None,
                output: node.outputs[0],
                skipped_values: Vec::new(),
                skipped_nodes: Vec::new(),
            };
            loop {
                let cur = chain.output;
                let [next] = readers[cur.0].as_slice() else { break };
                let next_node = &self.nodes[*next];
                if retain[cur.0] || next_node.outputs.len() != 1 {
                    break;
                }
                // A residual Add takes the chain's value on either side (the other operand: not the chain's own
                // value, the same shape — no broadcasting — and made before the chain runs); everything else on
                // the first.
                let first = next_node.inputs.first() == Some(&cur);
                let residual = match next_node.inputs.as_slice() {
                    &[a, b] if (a == cur) != (b == cur) => Some(if a == cur { b } else { a }),
                    _ => None,
                }
                .filter(|&o| {
                    producer[o.0].is_none_or(|p| p < anchor)
                        && !self.is_constant(o)
                        && self.values[o.0].shape == self.values[cur.0].shape
                });
                match next_node.op.fusion() {
                    Some(Fusable::BatchNorm { epsilon })
                        if first
                            && chain.batch_norm.is_none()
                            && chain.clamp.is_none()
                            && chain.residual.is_none()
                            && next_node.inputs.len() == 5
                            && self.all_constant(&next_node.inputs[1..]) =>
                    {
                        chain.batch_norm = Some((*next, epsilon));
                    }
                    Some(Fusable::Add) if residual.is_some() && chain.residual.is_none() && chain.clamp.is_none() => {
                        chain.residual = residual;
                    }
                    Some(Fusable::Clamp { lo, hi })
                        if first && chain.clamp.is_none() && next_node.inputs.len() == 1 =>
                    {
                        chain.clamp = Some(Clamp { lo: lo as f32, hi: hi as f32 });
                    }
                    _ => break,
                }
                chain.skipped_values.push(cur);
                chain.skipped_nodes.push(*next);
                chain.output = next_node.outputs[0];
            }
            if let Some((_, pads)) = leading_pad {
                chain.pad = Some((data, pads));
                chain.skipped_nodes.insert(0, n);
            }
            fused[anchor] = Some(chain);
        }
        fused
    }

    /// Runs a fused chain on `x` (the convolution's data input) into a buffer from `pool` where one fits; returns
    /// the chain's output (`kept`: the plan keeps it past the pass).
    pub(super) fn run_fused(
        &self,
        chain: &FusedConv,
        x: &Tensor<T>,
        residual: Option<&Tensor<T>>,
        pool: &mut BufferPool<T>,
        kept: bool,
    ) -> Result<Tensor<T>> {
        let node = &self.nodes[chain.conv];
        let wrap = |source| GraphError::Op { node: node.name.clone(), op: "Conv", source };
        let not_f32 = || wrap(OpError::Invalid("fused convolution on a non-f32 graph".into()));
        let x32 = f32_view(x).ok_or_else(not_f32)?;
        // The geometry of the convolution as the graph has it (on the padded input where a Pad leads), then the
        // folded padding moved into the convolution.
        let padded = chain.padded_input_shape(x.shape());
        let mut shapes: Vec<&[usize]> = vec![&padded];
        for &i in &node.inputs[1..] {
            shapes.push(&self.values[i.0].shape);
        }
        let mut geo = chain.attrs.geometry(&shapes).map_err(wrap)?;
        if let Some((_, pads)) = chain.pad {
            fold_pad(&mut geo, pads);
        }
        let level = simd::level();
        let winograd = winograd_wins(&geo);
        let pixel_rows = self.pixel_rows_win(node.inputs[1], &geo, level);
        let batch_norm = chain.batch_norm.map(|b| b.0);
        let key =
            PackKey { conv: chain.conv, batch_norm, level, winograd, transposed: false, pixel_rows, columns: false };
        let packed = self.packed.get_or_make(key, || self.pack_conv(chain, level, winograd, pixel_rows));
        let clamp = chain.clamp.unwrap_or(Clamp::NONE);
        let out_shape = [geo.batch, geo.out_channels, geo.out_h().unwrap_or(0), geo.out_w().unwrap_or(0)];
        let len = out_shape.iter().product();
        // Every kernel behind conv2d_forward_packed writes every output element: a recycled buffer needs no zeroing.
        // A value the plan keeps takes a buffer of its own length (see graph::pool).
        let mut buffer = pool.take_f32_or_zeroed(len, kept);
        let y = buffer.values();
        match residual {
            Some(r) => {
                // Added in the convolution's epilogue, in the order of the Add it replaces.
                let r32 =
                    f32_view(r).ok_or_else(|| wrap(OpError::Invalid("fused residual on a non-f32 graph".into())))?;
                if r32.shape() != out_shape {
                    let what = format!("fused residual shaped {:?}, output {:?}", r32.shape(), out_shape);
                    return Err(wrap(OpError::Invalid(what)));
                }
                conv2d_forward_packed_residual(&geo, &contiguous(x32), &packed, clamp, &contiguous(r32), y);
            }
            None => conv2d_forward_packed(&geo, &contiguous(x32), &packed, clamp, y),
        }
        let y = buffer.into_tensor(&out_shape).map_err(|e| wrap(OpError::Invalid(e.to_string())))?;
        from_f32(y).ok_or_else(not_f32)
    }

    /// Folds the chain's batch-norm (if any) into the convolution's weights and bias, and packs them for `level`
    /// (transformed for Winograd F(2×2, 3×3) if `winograd`, for the transposed product if `pixel_rows`).
    fn pack_conv(&self, chain: &FusedConv, level: SimdLevel, winograd: bool, pixel_rows: bool) -> PackedConv {
        let node = &self.nodes[chain.conv];
        let f64s = |id: ValueId| -> Vec<f64> {
            self.constant_value(id)
                .map(|t| t.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).collect())
                .unwrap_or_default()
        };
        // Weights held in 16 bits stay so: a batch-norm becomes a scale of the product, never rounding them again.
        let precision = self.half_constant(node.inputs[1]).map_or(Precision::F32, |h| h.precision());
        let w_shape = self.values[node.inputs[1].0].shape.clone();
        let half = self.half_constant(node.inputs[1]);
        // 16-bit weights outside Winograd are read in place: only bias and scale are made here.
        let in_place = half.is_some() && !winograd;
        let mut w = if in_place { Vec::new() } else { f64s(node.inputs[1]) };
        let out_channels = w_shape[0];
        let mut b = node.inputs.get(2).map_or_else(|| vec![0.0; out_channels], |&id| f64s(id));
        // 16-bit weights keep their values: the batch-norm's scale is applied to the product instead (see
        // `PackedA::pack_scaled`), so nothing is rounded twice.
        let mut scale = None;
        if let Some((bn, eps)) = chain.batch_norm {
            let bn_inputs = &self.nodes[bn].inputs;
            let (gamma, shift, mean, var) =
                (f64s(bn_inputs[1]), f64s(bn_inputs[2]), f64s(bn_inputs[3]), f64s(bn_inputs[4]));
            let per_out = w_shape[1..].iter().product::<usize>();
            let a: Vec<f64> = (0..out_channels).map(|co| gamma[co] / (var[co] + eps).sqrt()).collect();
            for co in 0..out_channels {
                if precision == Precision::F32 {
                    w[co * per_out..(co + 1) * per_out].iter_mut().for_each(|v| *v *= a[co]);
                }
                b[co] = (b[co] - mean[co]) * a[co] + shift[co];
            }
            if precision != Precision::F32 {
                scale = Some(a.into_iter().map(|v| v as f32).collect::<Vec<f32>>());
            }
        }
        let w: Vec<f32> = w.into_iter().map(|v| v as f32).collect();
        let b: Vec<f32> = b.into_iter().map(|v| v as f32).collect();
        let has_bias = node.inputs.len() > 2 || chain.batch_norm.is_some();
        let (bias, scale) = (has_bias.then_some(&b[..]), scale.as_deref());
        if let (Some(h), true) = (half, in_place) {
            let kernel = [w_shape[2], w_shape[3]];
            return PackedConv::shared(
                level,
                h.shared(),
                bias,
                scale,
                out_channels,
                w_shape[1],
                kernel,
                chain.attrs.groups,
            );
        }
        if winograd {
            return PackedConv::winograd_as(level, &w, bias, scale, out_channels, w_shape[1], precision);
        }
        let kernel = [w_shape[2], w_shape[3]];
        // (`None` only on a level without the tile, which `conv_pixel_rows::wins` already ruled out.)
        let pixel = pixel_rows.then(|| PackedConv::pixel_rows(level, &w, bias, out_channels, w_shape[1], kernel));
        if let Some(p) = pixel.flatten() {
            return p;
        }
        PackedConv::new_as(level, &w, bias, scale, out_channels, w_shape[1], kernel, chain.attrs.groups, precision)
    }
}
