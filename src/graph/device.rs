//! Running a plan on a device (`--device cuda`): the forward pass and the backward sweep of the CPU executor, with
//! activations resident in device memory.
//!
//! The plan is the CPU's: the same nodes run, the same values reach the caller. Each op is lowered to the device
//! kernels of `gradcam_kernels::device` where a lowering exists (convolutions, batch-norm, activations, broadcasting
//! arithmetic, pooling, resizing, LRN, products, layout copies, views); any other op runs its CPU rule on copies of
//! its operands and its results go back to the device, so every model runs — and the node is recorded, so that
//! [`Graph::device_host_fallbacks`] can say which ops did. Only the graph inputs go to the device and only the values the
//! caller reads (seeds, `wrt` and kept values, graph outputs, the requested gradients) come back. Fusion is a CPU
//! matter: on the device every op runs on its own, and every value a backward rule reads stays on the device.
//!
//! Weights are uploaded once per graph (and folded batch-norm scales once per node) and reused by every pass.
//!
//! `ForwardOptions::check_finite` reads every output back and names the first node whose output is not finite;
//! since nothing is fused here, that may be a node inside a chain the CPU names by its last node.

use super::{Activations, Graph, ValueId};
use crate::error::{GraphError, GraphResult as Result};
use crate::ops::{self, Op, Saved};
use crate::tensor::Tensor;
use crate::Element;
use gradcam_kernels::device::{Activation, BinaryOp, Buffer, Device, DeviceError, LrnParameters, MAX_RANK};
use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// A value in device memory: views (reshapes) share the buffer.
#[derive(Clone, Debug)]
pub(crate) struct DeviceValue {
    buffer: Arc<Buffer>,
    shape: Vec<usize>,
}

impl DeviceValue {
    pub(super) fn new(buffer: Buffer, shape: Vec<usize>) -> DeviceValue {
        DeviceValue { buffer: Arc::new(buffer), shape }
    }

    pub(super) fn upload<T: Element>(dev: &Device, t: &Tensor<T>) -> std::result::Result<DeviceValue, DeviceError> {
        Ok(DeviceValue::new(dev.upload(&to_f32(t))?, t.shape().to_vec()))
    }

    pub(super) fn download<T: Element>(&self, dev: &Device) -> std::result::Result<Tensor<T>, DeviceError> {
        Ok(from_f32(dev.download(&self.buffer)?, &self.shape))
    }

    pub(super) fn buffer(&self) -> &Buffer {
        &self.buffer
    }

    pub(super) fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The same elements with another shape (a view: no copy).
    pub(super) fn reshaped(&self, shape: Vec<usize>) -> DeviceValue {
        DeviceValue { buffer: self.buffer.clone(), shape }
    }
}

/// A batch-norm node folded to a per-channel scale and shift, in device memory.
type ChannelAffine = (Arc<Buffer>, Arc<Buffer>);

/// What a graph keeps for its device: the device and the weights already uploaded.
#[derive(Debug)]
pub(crate) struct DeviceState {
    pub(crate) device: Arc<Device>,
    /// Constants by value id.
    constants: Mutex<HashMap<usize, Arc<Buffer>>>,
    /// Per batch-norm node: the per-channel scale and shift it folds to.
    affine: Mutex<HashMap<usize, ChannelAffine>>,
    /// The nodes (by index) whose forward (`false`) or backward (`true`) rule ran on the host.
    host_runs: Mutex<BTreeSet<(usize, bool)>>,
}

/// A node whose rule ran on the host because the device has no lowering for it (see
/// [`Graph::device_host_fallbacks`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFallback {
    pub node: String,
    pub op: &'static str,
    /// The backward rule (`false`: the forward).
    pub backward: bool,
}

impl DeviceState {
    pub(crate) fn new(device: Arc<Device>) -> DeviceState {
        DeviceState { device, constants: Mutex::default(), affine: Mutex::default(), host_runs: Mutex::default() }
    }

    /// Records that node `n`'s forward (or backward) rule ran on the host.
    pub(super) fn note_host_run(&self, n: usize, backward: bool) {
        self.host_runs.lock().unwrap_or_else(|e| e.into_inner()).insert((n, backward));
    }

    /// Forgets uploaded weights (a constant was replaced).
    pub(crate) fn forget(&self) {
        if let Ok(mut c) = self.constants.lock() {
            c.clear();
        }
        if let Ok(mut a) = self.affine.lock() {
            a.clear();
        }
    }
}

/// The device side of [`Activations`].
pub(crate) struct DeviceActivations {
    values: Vec<Option<DeviceValue>>,
}

impl DeviceActivations {
    /// Value `id` as the forward pass left it on the device (constants from the graph's weight cache); `None`
    /// when it was not kept.
    pub(super) fn value<T: Element>(
        &self,
        graph: &Graph<T>,
        id: ValueId,
    ) -> std::result::Result<Option<DeviceValue>, DeviceError> {
        if graph.is_constant(id) {
            let state = graph.device_state().expect("a device pass has a device");
            return graph.device_constant(state, id).map(Some);
        }
        Ok(self.values[id.0].clone())
    }
}

fn device_error(node: &str, op: &str, e: DeviceError) -> GraphError {
    GraphError::Device(format!("node '{node}' ({op}) on the device: {e}"))
}

fn to_f32<T: Element>(t: &Tensor<T>) -> Vec<f32> {
    t.iter().map(|v| v.to_f32().unwrap_or(f32::NAN)).collect()
}

fn from_f32<T: Element>(data: Vec<f32>, shape: &[usize]) -> Tensor<T> {
    let data: Vec<T> = data.into_iter().map(|v| T::lit(f64::from(v))).collect();
    Tensor::from_shape_vec(ndarray::IxDyn(shape), data).expect("the buffer holds the shape's elements")
}

/// Elements of a tensor of `shape`.
pub(super) fn count(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The activation an op computes, if it is one the device kernels know.
pub(super) fn activation_of<T: Element>(op: &dyn Op<T>) -> Option<Activation> {
    let any: &dyn Any = op;
    let f = |v: f64| v as f32;
    if any.is::<ops::Relu>() {
        Some(Activation::Clamp(0.0, f32::INFINITY))
    } else if let Some(c) = any.downcast_ref::<ops::Clip>() {
        Some(Activation::Clamp(f(c.min), f(c.max)))
    } else if let Some(l) = any.downcast_ref::<ops::LeakyRelu>() {
        Some(Activation::LeakyRelu(f(l.alpha)))
    } else if any.is::<ops::Sigmoid>() {
        Some(Activation::Sigmoid)
    } else if any.is::<ops::Silu>() {
        Some(Activation::Silu)
    } else if any.is::<ops::HardSwish>() {
        Some(Activation::HardSwish)
    } else if let Some(h) = any.downcast_ref::<ops::HardSigmoid>() {
        Some(Activation::HardSigmoid { alpha: f(h.alpha), beta: f(h.beta) })
    } else if any.is::<ops::Tanh>() {
        Some(Activation::Tanh)
    } else if let Some(e) = any.downcast_ref::<ops::Elu>() {
        Some(Activation::Elu(f(e.alpha)))
    } else if let Some(g) = any.downcast_ref::<ops::Gelu>() {
        (!g.tanh).then_some(Activation::Gelu)
    } else if let Some(s) = any.downcast_ref::<ops::Selu>() {
        Some(Activation::Selu { alpha: f(s.alpha), gamma: f(s.gamma) })
    } else if any.is::<ops::Softplus>() {
        Some(Activation::Softplus)
    } else if any.is::<ops::Erf>() {
        Some(Activation::Erf)
    } else {
        None
    }
}

pub(super) fn binary_of<T: Element>(op: &dyn Op<T>) -> Option<BinaryOp> {
    let any: &dyn Any = op;
    if any.is::<ops::Add>() {
        Some(BinaryOp::Add)
    } else if any.is::<ops::Sub>() {
        Some(BinaryOp::Sub)
    } else if any.is::<ops::Mul>() {
        Some(BinaryOp::Mul)
    } else if any.is::<ops::Div>() {
        Some(BinaryOp::Div)
    } else {
        None
    }
}

/// The device form of LRN over an input of `shape` (`[N, C, spatial…]`).
pub(super) fn lrn_parameters(lrn: &ops::Lrn, shape: &[usize]) -> Option<LrnParameters> {
    let [_, channels, rest @ ..] = shape else { return None };
    Some(LrnParameters {
        channels: *channels,
        inner: rest.iter().product(),
        size: lrn.size,
        alpha: lrn.alpha as f32,
        beta: lrn.beta as f32,
        bias: lrn.bias as f32,
    })
}

/// Ops whose output is their first input with another shape.
pub(super) fn is_view<T: Element>(op: &dyn Op<T>) -> bool {
    let any: &dyn Any = op;
    any.is::<ops::Flatten>()
        || any.is::<ops::Reshape>()
        || any.is::<ops::Squeeze>()
        || any.is::<ops::Unsqueeze>()
        || any.is::<ops::Identity>()
        || any.is::<ops::Dropout>()
}

impl<T: Element> Graph<T> {
    fn device_state(&self) -> Option<&DeviceState> {
        self.device.as_ref()
    }

    /// Every node whose forward or backward rule has run on the host (on copies of its operands) since the device
    /// was set, in node order: the ops and rules the device has no lowering for. Empty on the CPU.
    pub fn device_host_fallbacks(&self) -> Vec<HostFallback> {
        let Some(state) = self.device.as_ref() else { return Vec::new() };
        // A poisoned lock only means a pass panicked: what it recorded is still right.
        let runs = state.host_runs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        runs.into_iter()
            .map(|(n, backward)| HostFallback {
                node: self.nodes[n].name.clone(),
                op: self.nodes[n].op.op_type(),
                backward,
            })
            .collect()
    }

    /// Constant `id` in device memory, uploaded on first use.
    fn device_constant(&self, state: &DeviceState, id: ValueId) -> std::result::Result<DeviceValue, DeviceError> {
        let shape = self.values[id.0].shape.clone();
        let mut cache = state.constants.lock().map_err(|_| DeviceError::Size("poisoned weight cache".into()))?;
        if let Some(buffer) = cache.get(&id.0) {
            return Ok(DeviceValue { buffer: buffer.clone(), shape });
        }
        let value = self.constant_value(id).expect("called for constants only");
        let buffer = Arc::new(state.device.upload(&to_f32(&value))?);
        cache.insert(id.0, buffer.clone());
        Ok(DeviceValue { buffer, shape })
    }

    /// The per-channel scale and shift of inference batch-norm node `n` (inputs: x, scale, bias, mean, var, all
    /// but x constants), made on the host once.
    pub(super) fn device_affine(
        &self,
        state: &DeviceState,
        n: usize,
        epsilon: f64,
    ) -> Option<std::result::Result<ChannelAffine, DeviceError>> {
        let node = &self.nodes[n];
        if node.inputs.len() != 5 || !node.inputs[1..].iter().all(|&i| self.is_constant(i)) {
            return None;
        }
        let mut cache = match state.affine.lock() {
            Ok(c) => c,
            Err(_) => return Some(Err(DeviceError::Size("poisoned weight cache".into()))),
        };
        if let Some(pair) = cache.get(&n) {
            return Some(Ok(pair.clone()));
        }
        let get = |k: usize| {
            self.constant_value(node.inputs[k])
                .map(|c| c.iter().map(|v| v.to_f64().unwrap_or(f64::NAN)).collect::<Vec<f64>>())
        };
        let (gamma, beta, mean, var) = (get(1)?, get(2)?, get(3)?, get(4)?);
        let scale: Vec<f64> = gamma.iter().zip(&var).map(|(g, v)| g / (v + epsilon).sqrt()).collect();
        let shift: Vec<f32> = beta.iter().zip(&mean).zip(&scale).map(|((b, m), s)| (b - m * s) as f32).collect();
        let scale: Vec<f32> = scale.iter().map(|&s| s as f32).collect();
        let made = state.device.upload(&scale).and_then(|s| Ok((Arc::new(s), Arc::new(state.device.upload(&shift)?))));
        if let Ok(pair) = &made {
            cache.insert(n, pair.clone());
        }
        Some(made)
    }

    /// The forward pass of `plan` on the device, from inputs already bound and checked by the caller.
    pub(crate) fn forward_on_device(
        &self,
        plan: &super::Plan,
        host_inputs: Vec<Option<Tensor<T>>>,
        mut run_shapes: Vec<Vec<usize>>,
        options: super::ForwardOptions,
    ) -> Result<Activations<'_, T>> {
        let state = self.device_state().expect("called with a device");
        let dev = &state.device;
        let mut values: Vec<Option<DeviceValue>> = (0..self.values.len()).map(|_| None).collect();
        for (id, t) in host_inputs.into_iter().enumerate() {
            if let Some(t) = t {
                values[id] = Some(DeviceValue::upload(dev, &t).map_err(|e| device_error("input", "upload", e))?);
            }
        }
        // Every input and output of a node whose backward runs stays on the device (its rule may read any).
        let mut keep = plan.retain.clone();
        for (n, node) in self.nodes.iter().enumerate() {
            if plan.run_backward[n] {
                node.inputs.iter().chain(&node.outputs).for_each(|v| keep[v.0] = true);
            }
        }
        let mut saved: Vec<Option<Saved>> = (0..self.nodes.len()).map(|_| None).collect();
        let mut profile = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            if !plan.run_forward[n] {
                continue;
            }
            let started = options.profile.then(std::time::Instant::now);
            let op_type = node.op.op_type();
            let derr = |e| device_error(&node.name, op_type, e);
            let mut args: Vec<DeviceValue> = Vec::with_capacity(node.inputs.len());
            for &i in &node.inputs {
                let v = if self.is_constant(i) {
                    self.device_constant(state, i).map_err(derr)?
                } else {
                    values[i.0].clone().expect("plan keeps every input of a running node until its last use")
                };
                args.push(v);
            }
            let shapes: Vec<&[usize]> = args.iter().map(|a| a.shape.as_slice()).collect();
            let wrap = |source| GraphError::Op { node: node.name.clone(), op: op_type, source };
            let expected = node.op.output_shapes(&shapes).map_err(wrap)?;
            let outputs = match self.lower_forward(state, n, &args, &expected).map_err(derr)? {
                Some(out) => out,
                None => {
                    // The op's CPU rule on host copies of its operands.
                    state.note_host_run(n, false);
                    let host: Vec<Tensor<T>> =
                        args.iter().map(|a| a.download(dev)).collect::<std::result::Result<_, _>>().map_err(derr)?;
                    let refs: Vec<&Tensor<T>> = host.iter().collect();
                    let out = node.op.forward(&refs).map_err(wrap)?;
                    if plan.run_backward[n] {
                        saved[n] = out.saved;
                    }
                    out.values
                        .iter()
                        .map(|t| DeviceValue::upload(dev, t))
                        .collect::<std::result::Result<Vec<_>, DeviceError>>()
                        .map_err(derr)?
                }
            };
            if let Some(t) = started {
                dev.synchronize().map_err(derr)?;
                profile.push(super::NodeTime {
                    node: node.name.clone(),
                    op: op_type.to_string(),
                    seconds: t.elapsed().as_secs_f64(),
                });
            }
            if options.check_finite {
                // A diagnostic mode: each output is read back to name the first node that yields NaN or ±inf.
                for value in &outputs {
                    let data = dev.download(&value.buffer).map_err(derr)?;
                    if data.iter().any(|v| !v.is_finite()) {
                        return Err(GraphError::NonFinite {
                            origin: format!("node '{}' ({op_type})", node.name),
                            shape: value.shape.clone(),
                        });
                    }
                }
            }
            for (&id, value) in node.outputs.iter().zip(outputs) {
                run_shapes[id.0] = value.shape.clone();
                if keep[id.0] || plan.last_use[id.0].is_some() {
                    values[id.0] = Some(value);
                }
            }
            for &i in &node.inputs {
                if plan.last_use[i.0] == Some(n) && !keep[i.0] {
                    values[i.0] = None;
                }
            }
        }
        // The values the caller reads come back to the host.
        let mut host: Vec<Option<Tensor<T>>> = (0..self.values.len()).map(|_| None).collect();
        let read = plan.seeds.iter().chain(&plan.wrt).chain(&plan.keep).chain(&self.outputs);
        for &id in read {
            if let (Some(v), true) = (&values[id.0], plan.retain[id.0]) {
                host[id.0] = Some(v.download(dev).map_err(|e| device_error(&self.values[id.0].name, "download", e))?);
            }
        }
        Ok(Activations {
            graph: self,
            plan: plan.clone(),
            values: host,
            saved,
            shapes: run_shapes,
            profile,
            device: Some(DeviceActivations { values }),
        })
    }

    /// Node `n` on the device kernels, or `None` when it has no lowering (the caller runs its CPU rule).
    fn lower_forward(
        &self,
        state: &DeviceState,
        n: usize,
        args: &[DeviceValue],
        expected: &[Vec<usize>],
    ) -> std::result::Result<Option<Vec<DeviceValue>>, DeviceError> {
        let dev = &state.device;
        let node = &self.nodes[n];
        let op = node.op.as_ref();
        let any: &dyn Any = op;
        let out_shape = match expected {
            [one] => one.clone(),
            _ => return Ok(None),
        };
        let fresh = || dev.zeros(count(&out_shape));
        let done = |buffer: Buffer| Ok(Some(vec![DeviceValue::new(buffer, out_shape.clone())]));
        if is_view(op) {
            return Ok(Some(vec![args[0].reshaped(out_shape.clone())]));
        }
        if let Some(act) = activation_of(op) {
            let mut y = fresh()?;
            dev.activation(act, &args[0].buffer, &mut y)?;
            return done(y);
        }
        if let (Some(bin), [a, b], true) = (binary_of(op), args, out_shape.len() <= MAX_RANK) {
            let mut y = fresh()?;
            dev.binary(bin, &a.buffer, &a.shape, &b.buffer, &b.shape, &mut y, &out_shape)?;
            return done(y);
        }
        let shapes: Vec<&[usize]> = args.iter().map(|a| a.shape.as_slice()).collect();
        if let Some(conv) = any.downcast_ref::<ops::Conv>() {
            let Ok(geo) = conv.geometry(&shapes) else { return Ok(None) };
            let mut y = fresh()?;
            dev.conv(&geo, &args[0].buffer, &args[1].buffer, args.get(2).map(|b| b.buffer.as_ref()), &mut y)?;
            return done(y);
        }
        if let Some(bn) = any.downcast_ref::<ops::BatchNormalization>() {
            let Some(pair) = self.device_affine(state, n, bn.epsilon) else { return Ok(None) };
            let (scale, shift) = pair?;
            let x = &args[0];
            let (channels, spatial) = match x.shape.as_slice() {
                [_, c, rest @ ..] => (*c, rest.iter().product()),
                _ => return Ok(None),
            };
            let mut y = fresh()?;
            dev.channel_affine(&x.buffer, Some(&scale), Some(&shift), channels, spatial, &mut y)?;
            return done(y);
        }
        if let Some(pool) = any.downcast_ref::<ops::MaxPool>() {
            let Ok(geo) = pool.0.geometry(&shapes) else { return Ok(None) };
            let mut y = fresh()?;
            dev.max_pool(&geo, &args[0].buffer, &mut y)?;
            return done(y);
        }
        if let Some(pool) = any.downcast_ref::<ops::AveragePool>() {
            let Ok(geo) = pool.attrs.geometry(&shapes) else { return Ok(None) };
            let mut y = fresh()?;
            dev.avg_pool(&geo, pool.count_include_pad, &args[0].buffer, &mut y)?;
            return done(y);
        }
        let to_one = any.downcast_ref::<ops::AdaptiveAvgPool>().is_some_and(|p| p.output == [1, 1]);
        if any.is::<ops::GlobalAveragePool>() || to_one {
            let plane: usize = args[0].shape.iter().skip(2).product();
            let mut y = fresh()?;
            dev.plane_mean(plane, &args[0].buffer, &mut y)?;
            return done(y);
        }
        if let Some(y) = super::device_resample::forward(dev, op, args)? {
            return Ok(Some(vec![y]));
        }
        if let Some(lrn) = any.downcast_ref::<ops::Lrn>() {
            let Some(p) = lrn_parameters(lrn, &args[0].shape) else { return Ok(None) };
            let mut y = fresh()?;
            dev.lrn(&p, &args[0].buffer, &mut y)?;
            return done(y);
        }
        if let Some(gemm) = any.downcast_ref::<ops::Gemm>() {
            return self.gemm_forward(dev, gemm, args, &out_shape);
        }
        if let Some(y) = super::device_tokens::forward(dev, op, args, &out_shape)? {
            return Ok(Some(vec![y]));
        }
        Ok(super::device_layout::forward(dev, op, args, &out_shape)?.map(|y| vec![y]))
    }

    /// `Gemm` with 2-D operands, `alpha` on the product and `beta = 1` on a bias that broadcasts.
    fn gemm_forward(
        &self,
        dev: &Device,
        gemm: &ops::Gemm,
        args: &[DeviceValue],
        out_shape: &[usize],
    ) -> std::result::Result<Option<Vec<DeviceValue>>, DeviceError> {
        let ([m, k], [b0, b1]) = (args[0].shape.as_slice(), args[1].shape.as_slice()) else { return Ok(None) };
        let (m, k) = if gemm.trans_a { (*k, *m) } else { (*m, *k) };
        let n = if gemm.trans_b { *b0 } else { *b1 };
        if args.len() > 2 && gemm.beta != 1.0 {
            return Ok(None);
        }
        let mut y = dev.zeros(m * n)?;
        dev.gemm(
            (m, n, k),
            (&args[0].buffer, 0, gemm.trans_a),
            (&args[1].buffer, 0, gemm.trans_b),
            (&mut y, 0),
            gemm.alpha as f32,
            0.0,
        )?;
        if let Some(c) = args.get(2) {
            let mut sum = dev.zeros(m * n)?;
            dev.binary(BinaryOp::Add, &y, &[m, n], &c.buffer, &c.shape, &mut sum, &[m, n])?;
            y = sum;
        }
        Ok(Some(vec![DeviceValue::new(y, out_shape.to_vec())]))
    }
}
