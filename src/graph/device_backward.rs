//! The backward sweep on a device: [`Activations::backward_with`] for a forward pass that ran there (see
//! `device`). Rules with a device lowering run on the device kernels (products and concatenations for any operand;
//! the others for their first input); any other rule — one asked for a weight gradient the device does not
//! compute, and one whose incoming gradient a [`super::GradientFilter`] rewrites (guided backpropagation) — runs on
//! the CPU on copies of what it reads.

use super::device::{DeviceActivations, DeviceValue};
use super::{Activations, BackwardOptions, Gradients, ValueId, VjpRecord};
use crate::error::{GraphError, GraphResult as Result};
use crate::ops::{self, Vjp};
use crate::tensor::Tensor;
use crate::Element;
use gradcam_kernels::device::{Activation, BinaryOp, Buffer, Device, DeviceError, MAX_RANK};
use std::any::Any;
use std::collections::HashMap;

fn device_error(node: &str, op: &str, e: DeviceError) -> GraphError {
    GraphError::Device(format!("node '{node}' ({op}) on the device, backward: {e}"))
}

impl<T: Element> Activations<'_, T> {
    pub(crate) fn backward_on_device(
        &self,
        on_device: &DeviceActivations,
        seeds: Vec<(&str, Tensor<T>)>,
        options: BackwardOptions<'_, T>,
    ) -> Result<Gradients<T>> {
        let (graph, plan) = (self.graph, &self.plan);
        let state = graph.device.as_ref().expect("a device pass has a device");
        let dev = &state.device;
        let mut grads: Vec<Option<DeviceValue>> = (0..graph.values.len()).map(|_| None).collect();
        for (name, seed) in seeds {
            let id = self.planned_seed(name)?;
            let expected = &self.shapes[id.0];
            if expected.as_slice() != seed.shape() {
                return Err(GraphError::SeedShape {
                    name: name.to_string(),
                    expected: expected.clone(),
                    got: seed.shape().to_vec(),
                });
            }
            let g = DeviceValue::upload(dev, &seed).map_err(|e| device_error(name, "seed", e))?;
            accumulate(dev, &mut grads[id.0], g).map_err(|e| device_error(name, "seed", e))?;
        }
        let mut trace = Vec::new();
        let mut profile = Vec::new();
        for (n, node) in graph.nodes.iter().enumerate().rev() {
            if !plan.run_backward[n] || node.outputs.iter().all(|o| grads[o.0].is_none()) {
                continue;
            }
            let started = options.profile.then(std::time::Instant::now);
            let op_type = node.op.op_type();
            let derr = |e| device_error(&node.name, op_type, e);
            let filtered = options.filter.filter(|f| f.applies_to(node.op.as_ref()));
            let lowered = match (filtered, node.outputs.as_slice()) {
                (None, [out]) => match &grads[out.0] {
                    Some(dy) => self.lower_backward(on_device, dev, n, dy).map_err(derr)?,
                    None => None,
                },
                // A positive-part filter (guided backpropagation) runs as a device kernel before the op's rule.
                (Some(f), [out]) if f.keeps_positive_part() => match &grads[out.0] {
                    Some(dy) => {
                        let mut kept = dev.zeros(dy.buffer().len()).map_err(derr)?;
                        dev.activation(Activation::PositivePart, dy.buffer(), &mut kept).map_err(derr)?;
                        let kept = DeviceValue::new(kept, dy.shape().to_vec());
                        self.lower_backward(on_device, dev, n, &kept).map_err(derr)?
                    }
                    None => None,
                },
                _ => None,
            };
            let input_grads = match lowered {
                Some(g) => g,
                None => {
                    state.note_host_run(n, true);
                    self.host_rule(on_device, dev, n, &grads, filtered)?
                }
            };
            let mut record = VjpRecord { node: node.name.clone(), op: op_type, input_grads: Vec::new() };
            for (k, (&i, g)) in node.inputs.iter().zip(input_grads).enumerate() {
                let Some(g) = g.filter(|_| plan.wanted[n][k]) else { continue };
                if g.shape() != self.shapes[i.0].as_slice() {
                    let what = format!("internal error: gradient of input {k} has shape {:?}", g.shape());
                    return Err(GraphError::Op {
                        node: node.name.clone(),
                        op: op_type,
                        source: crate::OpError::Invalid(what),
                    });
                }
                record.input_grads.push(graph.values[i.0].name.clone());
                accumulate(dev, &mut grads[i.0], g).map_err(derr)?;
            }
            trace.push(record);
            // Its output gradients are used up (unless requested): their memory goes back at once.
            for &o in &node.outputs {
                if !plan.wrt.contains(&o) {
                    grads[o.0] = None;
                }
            }
            if let Some(t) = started {
                dev.synchronize().map_err(derr)?;
                let (node, op) = (node.name.clone(), op_type.to_string());
                profile.push(super::forward::NodeTime { node, op, seconds: t.elapsed().as_secs_f64() });
            }
        }
        let names = self.wrt_names();
        let mut out = HashMap::new();
        for &w in &plan.wrt {
            let g = match grads[w.0].take() {
                Some(g) => g.download(dev).map_err(|e| device_error(&graph.values[w.0].name, "download", e))?,
                None => Tensor::zeros(self.shapes[w.0].clone()),
            };
            out.insert(w, g);
        }
        Ok(Gradients { grads: out, names, trace, profile })
    }

    /// The input gradients of node `n` on the device kernels (`None` where not wanted), or `None` when the rule
    /// has no lowering for what is wanted.
    fn lower_backward(
        &self,
        on_device: &DeviceActivations,
        dev: &Device,
        n: usize,
        dy: &DeviceValue,
    ) -> std::result::Result<Option<Vec<Option<DeviceValue>>>, DeviceError> {
        let graph = self.graph;
        let node = &graph.nodes[n];
        let wanted = &self.plan.wanted[n];
        let op = node.op.as_ref();
        let any: &dyn Any = op;
        let shape_of = |k: usize| self.shapes[node.inputs[k].0].clone();
        let input = |k: usize| on_device.value(graph, node.inputs[k]);
        let only_first = wanted.iter().skip(1).all(|w| !w);
        let first = |buffer: Buffer| {
            let mut out = vec![None; node.inputs.len()];
            out[0] = Some(DeviceValue::new(buffer, shape_of(0)));
            Ok(Some(out))
        };
        let fresh = |k: usize| dev.zeros(super::device::count(&self.shapes[node.inputs[k].0]));
        if super::device::is_view(op) && only_first {
            let mut out = vec![None; node.inputs.len()];
            out[0] = Some(dy.reshaped(shape_of(0)));
            return Ok(Some(out));
        }
        if let (Some(act), true) = (super::device::activation_of(op), only_first) {
            let Some(x) = input(0)? else { return Ok(None) };
            let mut dx = fresh(0)?;
            dev.activation_backward(act, x.buffer(), dy.buffer(), &mut dx)?;
            return first(dx);
        }
        if let (Some(bin), true) = (super::device::binary_of(op), dy.shape().len() <= MAX_RANK) {
            let (Some(a), Some(b)) = (input(0)?, input(1)?) else { return Ok(None) };
            let mut out = vec![None; node.inputs.len()];
            for (k, slot) in out.iter_mut().enumerate().take(2) {
                if !wanted[k] {
                    continue;
                }
                let mut dx = fresh(k)?;
                let out_shape = dy.shape().to_vec();
                dev.binary_backward(
                    bin,
                    k,
                    Some(a.buffer()),
                    a.shape(),
                    Some(b.buffer()),
                    b.shape(),
                    dy.buffer(),
                    &out_shape,
                    &mut dx,
                )?;
                *slot = Some(DeviceValue::new(dx, shape_of(k)));
            }
            return Ok(Some(out));
        }
        let shapes: Vec<Vec<usize>> = (0..node.inputs.len()).map(shape_of).collect();
        if let Some(out) = super::device_layout::backward(dev, op, &shapes, wanted, dy)? {
            return Ok(Some(out));
        }
        let output = || match node.outputs.as_slice() {
            [o] => on_device.value(graph, *o),
            _ => Ok(None),
        };
        if let Some(out) = super::device_tokens::backward(dev, op, (&shapes, wanted), &input, &output, dy)? {
            return Ok(Some(out));
        }
        if !only_first {
            return Ok(None);
        }
        let shape_refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        if let Some(conv) = any.downcast_ref::<ops::Conv>() {
            let (Ok(geo), Some(w)) = (conv.geometry(&shape_refs), input(1)?) else { return Ok(None) };
            let mut dx = fresh(0)?;
            dev.conv_backward_data(&geo, dy.buffer(), w.buffer(), &mut dx)?;
            return first(dx);
        }
        if let Some(bn) = any.downcast_ref::<ops::BatchNormalization>() {
            let state = graph.device.as_ref().expect("a device pass has a device");
            let Some(pair) = graph.device_affine(state, n, bn.epsilon) else { return Ok(None) };
            let (scale, _) = pair?;
            let [_, channels, rest @ ..] = shapes[0].as_slice() else { return Ok(None) };
            let mut dx = fresh(0)?;
            dev.channel_affine(dy.buffer(), Some(&scale), None, *channels, rest.iter().product(), &mut dx)?;
            return first(dx);
        }
        if let Some(pool) = any.downcast_ref::<ops::MaxPool>() {
            let (Ok(geo), Some(x)) = (pool.0.geometry(&shape_refs), input(0)?) else { return Ok(None) };
            let mut dx = fresh(0)?;
            dev.max_pool_backward(&geo, x.buffer(), dy.buffer(), &mut dx)?;
            return first(dx);
        }
        if let Some(pool) = any.downcast_ref::<ops::AveragePool>() {
            let Ok(geo) = pool.attrs.geometry(&shape_refs) else { return Ok(None) };
            let mut dx = fresh(0)?;
            dev.avg_pool_backward(&geo, pool.count_include_pad, dy.buffer(), &mut dx)?;
            return first(dx);
        }
        let to_one = any.downcast_ref::<ops::AdaptiveAvgPool>().is_some_and(|p| p.output == [1, 1]);
        if any.is::<ops::GlobalAveragePool>() || to_one {
            let plane: usize = shapes[0].iter().skip(2).product();
            let mut dx = fresh(0)?;
            dev.plane_mean_backward(plane, dy.buffer(), &mut dx)?;
            return first(dx);
        }
        if let Some(dx) = super::device_resample::backward(dev, op, &shapes[0], dy)? {
            let mut out = vec![None; node.inputs.len()];
            out[0] = Some(dx);
            return Ok(Some(out));
        }
        if let Some(lrn) = any.downcast_ref::<ops::Lrn>() {
            let (Some(p), Some(x)) = (super::device::lrn_parameters(lrn, &shapes[0]), input(0)?) else {
                return Ok(None);
            };
            let mut dx = fresh(0)?;
            dev.lrn_backward(&p, x.buffer(), dy.buffer(), &mut dx)?;
            return first(dx);
        }
        if let Some(gemm) = any.downcast_ref::<ops::Gemm>() {
            // dA (m×k) = alpha · dY (m×n) · op(B)ᵀ, op(B)ᵀ being B as stored when B is transposed.
            let ([m, n_cols], [b0, b1]) = (dy.shape(), shapes[1].as_slice()) else { return Ok(None) };
            let Some(b) = input(1)? else { return Ok(None) };
            if gemm.trans_a {
                return Ok(None);
            }
            let k = if gemm.trans_b { *b1 } else { *b0 };
            let mut dx = fresh(0)?;
            dev.gemm(
                (*m, k, *n_cols),
                (dy.buffer(), 0, false),
                (b.buffer(), 0, !gemm.trans_b),
                (&mut dx, 0),
                gemm.alpha as f32,
                0.0,
            )?;
            return first(dx);
        }
        Ok(None)
    }

    /// Node `n`'s own CPU rule on host copies of what it reads.
    fn host_rule(
        &self,
        on_device: &DeviceActivations,
        dev: &Device,
        n: usize,
        grads: &[Option<DeviceValue>],
        filter: Option<&dyn super::GradientFilter<T>>,
    ) -> Result<Vec<Option<DeviceValue>>> {
        let (graph, plan) = (self.graph, &self.plan);
        let node = &graph.nodes[n];
        let op_type = node.op.op_type();
        let derr = |e| device_error(&node.name, op_type, e);
        let fetch = |id: ValueId| -> Result<Option<Tensor<T>>> {
            // Constants from the graph itself, in T (no download, no rounding to f32).
            if let Some(c) = graph.constant_value(id) {
                return Ok(Some(c.into_owned()));
            }
            match on_device.value(graph, id).map_err(derr)? {
                Some(v) => Ok(Some(v.download(dev).map_err(derr)?)),
                None => Ok(None),
            }
        };
        let inputs: Vec<Option<Tensor<T>>> = node
            .inputs
            .iter()
            .zip(&plan.saves_inputs[n])
            .map(|(&i, &keep)| if keep { fetch(i) } else { Ok(None) })
            .collect::<Result<_>>()?;
        let mask_rule = node.op.mask_interval().is_some() && self.saved[n].is_none();
        let outputs: Vec<Option<Tensor<T>>> = node
            .outputs
            .iter()
            .map(|&o| if plan.saves_outputs[n] || mask_rule { fetch(o) } else { Ok(None) })
            .collect::<Result<_>>()?;
        // A clamp that ran on the device saved no mask; its rule reads one, made here from its output.
        let made_mask: Option<ops::Saved> = match (node.op.mask_interval(), outputs.first()) {
            (Some((lo, hi)), Some(Some(y))) if mask_rule => {
                Some(Box::new(ops::Mask::open_interval(y, T::lit(lo), T::lit(hi))))
            }
            _ => None,
        };
        let mut out_grads: Vec<Option<Tensor<T>>> = node
            .outputs
            .iter()
            .map(|&o| grads[o.0].as_ref().map(|g| g.download(dev)).transpose())
            .collect::<std::result::Result<_, _>>()
            .map_err(derr)?;
        if let Some(f) = filter {
            out_grads.iter_mut().flatten().for_each(|g| f.filter(g));
        }
        let input_shapes: Vec<&[usize]> = node.inputs.iter().map(|&i| self.shapes[i.0].as_slice()).collect();
        let cx = Vjp {
            inputs: inputs.iter().map(Option::as_ref).collect(),
            input_shapes,
            outputs: outputs.iter().map(|o| o.as_ref().filter(|_| plan.saves_outputs[n])).collect(),
            saved: self.saved[n].as_deref().or(made_mask.as_deref()),
            output_grads: out_grads.iter().map(Option::as_ref).collect(),
            wanted: &plan.wanted[n],
        };
        let wrap = |source| GraphError::Op { node: node.name.clone(), op: op_type, source };
        let host = node.op.backward(&cx).map_err(wrap)?;
        host.into_iter().map(|g| g.map(|g| DeviceValue::upload(dev, &g)).transpose().map_err(derr)).collect()
    }
}

/// `slot += g` on the device.
fn accumulate(dev: &Device, slot: &mut Option<DeviceValue>, g: DeviceValue) -> std::result::Result<(), DeviceError> {
    *slot = Some(match slot.take() {
        None => g,
        Some(acc) => {
            // Same shapes: added as flat vectors (any rank).
            let flat = [acc.buffer().len()];
            let mut sum = dev.zeros(flat[0])?;
            dev.binary(BinaryOp::Add, acc.buffer(), &flat, g.buffer(), &flat, &mut sum, &flat)?;
            DeviceValue::new(sum, acc.shape().to_vec())
        }
    });
    Ok(())
}
