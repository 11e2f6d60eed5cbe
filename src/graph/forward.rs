//! The forward executor.

use super::pool::BufferPool;
use super::{Graph, Source, ValueId};
use crate::error::{GraphError, GraphResult as Result};
use crate::ops::Saved;
use crate::tensor::Tensor;
use crate::Element;

/// Options of a forward pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardOptions {
    /// Fail with [`GraphError::NonFinite`] naming the first input or node that yields NaN or ±inf. Off by default: NaN
    /// then simply propagates, as in PyTorch.
    pub check_finite: bool,
    /// Record how long each node (or fused chain) took, in [`Activations::profile`].
    pub profile: bool,
}

/// Time spent in one node of a forward pass.
#[derive(Clone, Debug)]
pub struct NodeTime {
    pub node: String,
    /// Operator type; a fused chain reads like `Conv+BatchNormalization+Relu`.
    pub op: String,
    pub seconds: f64,
}

/// The values a forward pass kept, ready for any number of backward sweeps.
pub struct Activations<'g, T: Element> {
    pub(crate) graph: &'g Graph<T>,
    pub(crate) plan: super::Plan,
    pub(crate) values: Vec<Option<Tensor<T>>>,
    pub(crate) saved: Vec<Option<Saved>>,
    /// Run-time shape of every value that was computed or bound (the batch may differ from the declared one).
    pub(crate) shapes: Vec<Vec<usize>>,
    pub(crate) profile: Vec<NodeTime>,
    /// The values left on the device, when the pass ran on one.
    pub(crate) device: Option<super::device::DeviceActivations>,
}

impl<T: Element> std::fmt::Debug for Activations<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept: Vec<&str> = self
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| self.graph.values[i].name.as_str())
            .collect();
        f.debug_struct("Activations").field("kept", &kept).finish()
    }
}

impl<'g, T: Element> Activations<'g, T> {
    /// A kept value (or a constant of the graph).
    pub fn get(&self, name: &str) -> Result<&Tensor<T>> {
        let id = self.graph.find(name)?;
        self.by_id(id).ok_or_else(|| GraphError::NotRetained { name: name.to_string() })
    }

    pub(crate) fn by_id(&self, id: ValueId) -> Option<&Tensor<T>> {
        match &self.graph.values[id.0].source {
            Source::Constant(c) => Some(c),
            _ => self.values[id.0].as_ref(),
        }
    }

    /// Names of the values kept in memory (constants excluded).
    pub fn kept(&self) -> Vec<&str> {
        self.values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_some())
            .map(|(i, _)| self.graph.values[i].name.as_str())
            .collect()
    }

    /// Bytes kept for the backward sweeps and the caller: the values still held (constants excluded) and the
    /// ops' saved states (one-bit activation masks, max-pooling indices).
    pub fn kept_bytes(&self) -> usize {
        let values: usize = self.values.iter().flatten().map(|t| t.len() * std::mem::size_of::<T>()).sum();
        values + self.saved.iter().flatten().map(|s| saved_bytes(s.as_ref())).sum::<usize>()
    }

    /// Per-node forward times, when [`ForwardOptions::profile`] asked for them.
    pub fn profile(&self) -> &[NodeTime] {
        &self.profile
    }

    /// The plan this pass ran.
    pub fn plan(&self) -> &super::Plan {
        &self.plan
    }
}

/// Bytes of an op's saved state, for the types ops save.
fn saved_bytes(s: &(dyn std::any::Any + Send + Sync)) -> usize {
    if let Some(m) = s.downcast_ref::<crate::ops::Mask>() {
        m.bytes()
    } else if let Some(v) = s.downcast_ref::<Vec<u32>>() {
        v.len() * 4
    } else if let Some(v) = s.downcast_ref::<Vec<usize>>() {
        v.len() * std::mem::size_of::<usize>()
    } else {
        0
    }
}

/// The one-bit mask an activation's backward reads (see `Op::mask_interval`), from its output.
fn mask_of<T: Element>(interval: Option<(f64, f64)>, y: &Tensor<T>) -> Option<Saved> {
    let (lo, hi) = interval?;
    Some(Box::new(crate::ops::Mask::open_interval(y, T::lit(lo), T::lit(hi))))
}

fn non_finite<T: Element>(t: &Tensor<T>) -> bool {
    crate::tensor::has_non_finite(t)
}

impl<T: Element> Graph<T> {
    /// Runs the forward pass of `plan` with the given inputs.
    pub fn forward(&self, plan: &super::Plan, inputs: Vec<(&str, Tensor<T>)>) -> Result<Activations<'_, T>> {
        self.forward_with(plan, inputs, ForwardOptions::default())
    }

    /// [`Graph::forward`] with options.
    pub fn forward_with(
        &self,
        plan: &super::Plan,
        inputs: Vec<(&str, Tensor<T>)>,
        options: ForwardOptions,
    ) -> Result<Activations<'_, T>> {
        if plan.retain.len() != self.values.len() {
            return Err(GraphError::PlanMismatch);
        }
        let mut values: Vec<Option<Tensor<T>>> = (0..self.values.len()).map(|_| None).collect();
        let mut run_shapes: Vec<Vec<usize>> = self.values.iter().map(|v| v.shape.clone()).collect();
        for (name, tensor) in inputs {
            let id = self.find(name).ok().filter(|id| self.inputs.contains(id) || plan.feeds.contains(id));
            let id =
                id.ok_or_else(|| GraphError::NotAnInput { name: name.to_string(), expected: self.input_names() })?;
            let declared = &self.values[id.0].shape;
            let got = tensor.shape();
            if got.len() != declared.len() || got.iter().zip(declared).skip(1).any(|(a, b)| a != b) {
                return Err(GraphError::InputShape {
                    name: name.to_string(),
                    expected: declared.clone(),
                    got: got.to_vec(),
                });
            }
            if options.check_finite && non_finite(&tensor) {
                return Err(GraphError::NonFinite { origin: format!("graph input '{name}'"), shape: got.to_vec() });
            }
            run_shapes[id.0] = got.to_vec();
            // Moved in as it is when already in standard order (no copy of the input).
            let tensor = if tensor.is_standard_layout() { tensor } else { tensor.as_standard_layout().into_owned() };
            values[id.0] = Some(tensor);
        }
        for &id in self.inputs.iter().chain(&plan.feeds) {
            let used = plan.last_use[id.0].is_some() || plan.retain[id.0];
            if used && values[id.0].is_none() {
                return Err(GraphError::MissingInput {
                    name: self.values[id.0].name.clone(),
                    expected: self.input_names(),
                });
            }
        }

        if self.device.is_some() {
            return self.forward_on_device(plan, values, run_shapes, options);
        }
        super::threads::on_pool(|| self.forward_on_cpu(plan, values, run_shapes, options))
    }

    /// The forward pass on the CPU, from the bound inputs.
    fn forward_on_cpu(
        &self,
        plan: &super::Plan,
        mut values: Vec<Option<Tensor<T>>>,
        mut run_shapes: Vec<Vec<usize>>,
        options: ForwardOptions,
    ) -> Result<Activations<'_, T>> {
        let keepers = super::keeper::Keepers::for_pass();
        let mut saved: Vec<Option<Saved>> = (0..self.nodes.len()).map(|_| None).collect();
        let mut pool = self.spare.lend();
        // Nodes replaced by a fused chain that already ran.
        let mut absorbed = vec![false; self.nodes.len()];
        let mut profile = Vec::new();
        // Stands in for a 16-bit weight that the kernel reads in place.
        let placeholder = Tensor::<T>::zeros(ndarray::IxDyn(&[0]));
        for (n, node) in self.nodes.iter().enumerate() {
            let started = options.profile.then(std::time::Instant::now);
            if !plan.run_forward[n] {
                continue;
            }
            keepers.refresh();
            let free_inputs = |values: &mut Vec<Option<Tensor<T>>>, pool: &mut BufferPool<T>| {
                for &i in &node.inputs {
                    if plan.last_use[i.0] == Some(n) && !plan.retain[i.0] {
                        if let Some(t) = values[i.0].take() {
                            pool.recycle(t);
                        }
                    }
                }
            };
            if absorbed[n] {
                free_inputs(&mut values, &mut pool);
                continue;
            }
            let fused = plan.fusion.get(n).and_then(Option::as_ref);
            // 16-bit weights are read in place by fused convolutions (packed from the graph) and by products on
            // the stored path; any other op gets a widened copy for this call only.
            let stored = plan.packed_backward && fused.is_none() && self.stored_linear(node).is_some();
            let widened: Vec<Option<Tensor<T>>> = node
                .inputs
                .iter()
                .enumerate()
                .map(|(k, &i)| {
                    let h = self.half_constant(i)?;
                    let in_place = (fused.is_some() && k > 0) || (stored && k == 1);
                    (!in_place).then(|| h.widen())
                })
                .collect();
            let args: Vec<&Tensor<T>> = node
                .inputs
                .iter()
                .zip(&widened)
                .map(|(&i, w)| match (&self.values[i.0].source, w) {
                    (Source::Constant(c), _) | (_, Some(c)) => c,
                    (Source::HalfConstant(_), None) => &placeholder,
                    _ => values[i.0].as_ref().expect("plan keeps every input of a running node until its last use"),
                })
                .collect();
            if let Some(chain) = fused {
                // The plan made the residual before this chain and keeps it until the Add it replaces.
                let residual = match chain.residual {
                    Some(r) => Some(values[r.0].as_ref().ok_or_else(|| GraphError::Op {
                        node: node.name.clone(),
                        op: "Conv",
                        source: crate::OpError::Invalid(format!(
                            "fused residual '{}' is not available",
                            self.values[r.0].name
                        )),
                    })?),
                    None => None,
                };
                let y = self.run_fused(chain, args[0], residual, &mut pool, plan.retain[chain.output.0])?;
                if let Some(t) = started {
                    let ops: Vec<&str> = std::iter::once(node.op.op_type())
                        .chain(chain.skipped_nodes.iter().map(|&m| self.nodes[m].op.op_type()))
                        .collect();
                    profile.push(NodeTime {
                        node: node.name.clone(),
                        op: ops.join("+"),
                        seconds: t.elapsed().as_secs_f64(),
                    });
                }
                if options.check_finite && non_finite(&y) {
                    let last = chain.skipped_nodes.last().map_or(node, |&m| &self.nodes[m]);
                    return Err(GraphError::NonFinite {
                        origin: format!("node '{}' ({}, fused)", last.name, last.op.op_type()),
                        shape: y.shape().to_vec(),
                    });
                }
                for &v in &chain.skipped_values {
                    run_shapes[v.0] = y.shape().to_vec();
                }
                if let Some((padded, _)) = chain.pad {
                    run_shapes[padded.0] = chain.padded_input_shape(args[0].shape());
                }
                for &m in &chain.skipped_nodes {
                    absorbed[m] = true;
                    // A fused clamp's backward reads its mask, made from the chain's output (the clamp is last).
                    if plan.run_backward[m] {
                        saved[m] = mask_of(self.nodes[m].op.mask_interval(), &y);
                    }
                }
                run_shapes[chain.output.0] = y.shape().to_vec();
                if plan.retain[chain.output.0] || plan.last_use[chain.output.0].is_some() {
                    values[chain.output.0] = Some(y);
                }
                free_inputs(&mut values, &mut pool);
                continue;
            }
            let wrap = |source| GraphError::Op { node: node.name.clone(), op: node.op.op_type(), source };
            let shapes: Vec<&[usize]> = node
                .inputs
                .iter()
                .zip(&args)
                .map(|(&i, a)| self.half_constant(i).map_or(a.shape(), |h| h.shape()))
                .collect();
            let expected = node.op.output_shapes(&shapes).map_err(wrap)?;
            let out = match stored.then(|| self.stored_linear_forward(node, args[0], args.get(2).copied())).flatten() {
                Some(y) => crate::ops::Outputs::one(y?),
                None => node.op.forward(&args).map_err(wrap)?,
            };
            if let Some(t) = started {
                profile.push(NodeTime {
                    node: node.name.clone(),
                    op: node.op.op_type().to_string(),
                    seconds: t.elapsed().as_secs_f64(),
                });
            }
            for (value, shape) in out.values.iter().zip(&expected) {
                if value.shape() != shape.as_slice() {
                    let what = format!(
                        "internal error: forward produced shape {:?}, shape rule says {shape:?}",
                        value.shape()
                    );
                    return Err(wrap(crate::OpError::Invalid(what)));
                }
            }
            if options.check_finite {
                if let Some(bad) = out.values.iter().find(|v| non_finite(v)) {
                    return Err(GraphError::NonFinite {
                        origin: format!("node '{}' ({})", node.name, node.op.op_type()),
                        shape: bad.shape().to_vec(),
                    });
                }
            }
            if plan.run_backward[n] {
                saved[n] = out.saved.or_else(|| mask_of(node.op.mask_interval(), &out.values[0]));
            }
            for (&id, value) in node.outputs.iter().zip(out.values) {
                run_shapes[id.0] = value.shape().to_vec();
                if plan.retain[id.0] || plan.last_use[id.0].is_some() {
                    values[id.0] = Some(value);
                }
            }
            // Free what no later node and no backward rule reads.
            free_inputs(&mut values, &mut pool);
        }
        drop(pool);
        Ok(Activations { graph: self, plan: plan.clone(), values, saved, shapes: run_shapes, profile, device: None })
    }
}
