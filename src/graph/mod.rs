//! The computation graph: named values produced by operator nodes.
//!
//! Nodes are stored in topological order (the builder only lets a node read values that already exist), which the
//! forward executor walks front to back and the backward sweep back to front.

mod backward;
mod builder;
mod conv_backward;
mod device;
mod device_backward;
mod device_layout;
mod device_resample;
mod device_tokens;
mod forward;
mod fuse;
mod items;
mod keeper;
mod plan;
mod pool;
mod stored_linear;
mod threads;

pub use backward::{BackwardOptions, GradientFilter, Gradients, VjpRecord};
pub use builder::GraphBuilder;
pub use device::HostFallback;
pub use forward::{Activations, ForwardOptions, NodeTime};
pub(crate) use items::side_by_side;
pub use items::ITEMS_APART_MAX_WEIGHT_BYTES;
pub use plan::Plan;

use crate::error::{GraphError, GraphResult as Result};
use crate::ops::Op;
use crate::tensor::{HalfTensor, Tensor};
use crate::Element;
use std::borrow::Cow;
use std::collections::HashMap;

/// Index of a value in its graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

/// Where a value comes from.
#[derive(Debug)]
pub enum Source<T> {
    /// Bound by the caller at run time.
    Input,
    /// Stored in the graph (weights, constant tensors).
    Constant(Tensor<T>),
    /// A weight stored in 16 bits (`--weights f16|bf16`).
    HalfConstant(HalfTensor),
    /// Output `output` of node `node`.
    Node { node: usize, output: usize },
}

/// A named value with its statically inferred shape.
#[derive(Debug)]
pub struct Value<T> {
    pub name: String,
    pub shape: Vec<usize>,
    pub source: Source<T>,
}

/// One operator application.
#[derive(Debug)]
pub struct Node<T: Element> {
    pub name: String,
    pub op: Box<dyn Op<T>>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

/// A computation graph over scalars of type `T`.
#[derive(Debug)]
pub struct Graph<T: Element> {
    values: Vec<Value<T>>,
    nodes: Vec<Node<T>>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
    by_name: HashMap<String, ValueId>,
    aliases: Vec<(String, ValueId)>,
    /// Plans fuse convolution chains (f32 graphs only); off makes every op run on its own, as a reference.
    fusion: bool,
    /// Folded and packed convolution weights, made on first use.
    packed: fuse::PackCache,
    /// Buffers the last forward pass freed, handed to the next one (see [`pool`]).
    spare: pool::SparePool<T>,
    /// Where plans run: `None` is the CPU.
    device: Option<device::DeviceState>,
}

impl<T: Element> Graph<T> {
    /// All values, indexed by [`ValueId`].
    pub fn values(&self) -> &[Value<T>] {
        &self.values
    }

    /// All nodes in topological order.
    pub fn nodes(&self) -> &[Node<T>] {
        &self.nodes
    }

    /// The graph's inputs, in declaration order.
    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    /// The graph's declared outputs.
    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    /// Turns the fusion of `Conv → BatchNorm → ReLU/Clip` chains, and the packed convolution input gradients, on
    /// (the default) or off for plans made later.
    /// Off, every op runs on its own: the reference the fused path is tested against.
    pub fn set_fusion(&mut self, enabled: bool) {
        self.fusion = enabled;
    }

    /// Runs later forward passes and backward sweeps on `device` (`None`: the CPU, the default). Weights are
    /// uploaded on first use and stay there while the device is set.
    pub fn set_device(&mut self, device: Option<std::sync::Arc<gradcam_kernels::device::Device>>) {
        self.device = device.map(device::DeviceState::new);
    }

    /// The device plans run on (`None`: the CPU).
    pub fn device(&self) -> Option<&gradcam_kernels::device::Device> {
        self.device.as_ref().map(|d| d.device.as_ref())
    }

    /// Bytes of all computed values for one item of a batch (axis 0 taken as the batch axis): an upper bound of the
    /// activations a forward pass holds per image (the executor frees each value after its last reader).
    pub fn value_bytes_per_item(&self) -> usize {
        self.values
            .iter()
            .filter(|v| !matches!(v.source, Source::Constant(_) | Source::HalfConstant(_)))
            .map(|v| v.shape.iter().skip(1).product::<usize>() * std::mem::size_of::<T>())
            .sum()
    }

    /// Bytes of the graph's constants (the weights).
    pub fn constant_bytes(&self) -> usize {
        self.values
            .iter()
            .filter_map(|v| match &v.source {
                Source::Constant(c) => Some(c.len() * std::mem::size_of::<T>()),
                Source::HalfConstant(h) => Some(h.bytes()),
                _ => None,
            })
            .sum()
    }

    /// Bytes of folded and packed weights made so far (they are made on first use, per SIMD level).
    pub fn packed_bytes(&self) -> usize {
        self.packed.bytes()
    }

    /// Whether `id` is a constant (in any precision).
    pub fn is_constant(&self, id: ValueId) -> bool {
        matches!(self.values[id.0].source, Source::Constant(_) | Source::HalfConstant(_))
    }

    /// The constant `id` in `T`: borrowed, or widened from 16 bits (a copy that lives as long as the caller keeps
    /// it); `None` if `id` is not a constant.
    pub fn constant_value(&self, id: ValueId) -> Option<Cow<'_, Tensor<T>>> {
        match &self.values[id.0].source {
            Source::Constant(c) => Some(Cow::Borrowed(c)),
            Source::HalfConstant(h) => Some(Cow::Owned(h.widen())),
            _ => None,
        }
    }

    /// Replaces the constant `id` by `value` (same shape), held in `T` from then on; weights packed from the old
    /// value are dropped (made again on next use). The sanity check randomizes a model's parameters this way.
    pub fn replace_constant(&mut self, id: ValueId, value: Tensor<T>) -> Result<()> {
        self.swap_constant(id, Source::Constant(value)).map(|_| ())
    }

    /// Puts `source` (a constant, f32 or 16-bit, of the same shape) in place of the constant `id` and returns the
    /// one it replaces, so that a caller can restore a weight exactly as it was held.
    pub fn swap_constant(&mut self, id: ValueId, source: Source<T>) -> Result<Source<T>> {
        let v = self
            .values
            .get_mut(id.0)
            .ok_or_else(|| GraphError::UnknownValue { name: format!("#{}", id.0), hint: String::new() })?;
        if !matches!(v.source, Source::Constant(_) | Source::HalfConstant(_)) {
            return Err(GraphError::Constant { name: v.name.clone(), why: "not a constant".into() });
        }
        let shape = match &source {
            Source::Constant(c) => c.shape().to_vec(),
            Source::HalfConstant(h) => h.shape().to_vec(),
            _ => {
                return Err(GraphError::Constant {
                    name: v.name.clone(),
                    why: "the replacement is not a constant".into(),
                })
            }
        };
        if shape != v.shape {
            return Err(GraphError::Constant {
                name: v.name.clone(),
                why: format!("has shape {:?}, the replacement {shape:?}", v.shape),
            });
        }
        let old = std::mem::replace(&mut v.source, source);
        self.packed.clear();
        if let Some(d) = &self.device {
            d.forget();
        }
        Ok(old)
    }

    /// Per value: whether it is one of `targets` or feeds one of them (walking the nodes backwards).
    pub fn leads_to(&self, targets: &[ValueId]) -> Vec<bool> {
        let mut leads = vec![false; self.values.len()];
        for t in targets {
            leads[t.0] = true;
        }
        for node in self.nodes.iter().rev() {
            if node.outputs.iter().any(|o| leads[o.0]) {
                for i in &node.inputs {
                    leads[i.0] = true;
                }
            }
        }
        leads
    }

    /// Whether every node accepts the graph's inputs with `batch` items (shape rules only, nothing computed). An
    /// export whose reshapes spell the batch size out (transformers traced at batch 1: `Reshape` to `[1, 197, 2,
    /// 16]`) accepts only that size, unless the importer could untie them (see `untie_batch_from_reshapes`); one traced
    /// at batch 1 is then run one item at a time.
    pub fn accepts_batch(&self, batch: usize) -> bool {
        if self.inputs.iter().any(|i| self.values[i.0].shape.is_empty()) {
            return batch == 1;
        }
        // The outputs must keep one item per input item (a Reshape folding the batch into tokens mixes images).
        self.shapes_at(batch, |_, _| None)
            .is_some_and(|shapes| self.outputs.iter().all(|o| shapes[o.0].first() == Some(&batch)))
    }

    /// Every value's shape with each graph input at `batch` items, node by node (shape rules only); `rewrite(n,
    /// inputs)` may give node `n`'s output shapes instead of its op. `None` if an input has no batch axis or a node
    /// refuses its inputs.
    pub(super) fn shapes_at(
        &self,
        batch: usize,
        mut rewrite: impl FnMut(usize, &[&[usize]]) -> Option<std::result::Result<Vec<Vec<usize>>, crate::OpError>>,
    ) -> Option<Vec<Vec<usize>>> {
        let mut shapes: Vec<Vec<usize>> = self.values.iter().map(|v| v.shape.clone()).collect();
        for &i in &self.inputs {
            *shapes[i.0].first_mut()? = batch;
        }
        for (n, node) in self.nodes.iter().enumerate() {
            let ins: Vec<&[usize]> = node.inputs.iter().map(|i| shapes[i.0].as_slice()).collect();
            let outs = rewrite(n, &ins).unwrap_or_else(|| node.op.output_shapes(&ins)).ok()?;
            for (o, s) in node.outputs.iter().zip(outs) {
                shapes[o.0] = s;
            }
        }
        Some(shapes)
    }

    /// The constant `id` if it is held in 16 bits.
    pub fn half_constant(&self, id: ValueId) -> Option<&HalfTensor> {
        match &self.values[id.0].source {
            Source::HalfConstant(h) => Some(h),
            _ => None,
        }
    }

    /// The value with this id.
    pub fn value(&self, id: ValueId) -> &Value<T> {
        &self.values[id.0]
    }

    /// Looks a value up by name; the error lists the closest existing names.
    pub fn find(&self, name: &str) -> Result<ValueId> {
        self.by_name.get(name).copied().ok_or_else(|| GraphError::UnknownValue {
            name: name.to_string(),
            hint: match self.closest_names(name, 3).as_slice() {
                [] => String::new(),
                names => {
                    format!("; did you mean {}?", names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "))
                }
            },
        })
    }

    /// Every name a value can be addressed by, in graph order, aliases right after the value they name.
    pub fn names(&self) -> Vec<(&str, ValueId)> {
        let mut out = Vec::with_capacity(self.values.len() + self.aliases.len());
        for (i, v) in self.values.iter().enumerate() {
            out.push((v.name.as_str(), ValueId(i)));
            out.extend(self.aliases.iter().filter(|(_, id)| id.0 == i).map(|(n, id)| (n.as_str(), *id)));
        }
        out
    }

    /// Up to `count` value names closest to `name` (edit distance), nearest first.
    pub fn closest_names(&self, name: &str, count: usize) -> Vec<String> {
        let mut scored: Vec<(usize, &str)> =
            self.by_name.keys().map(|n| (edit_distance(name, n), n.as_str())).collect();
        scored.sort();
        scored.into_iter().take(count).map(|(_, n)| n.to_string()).collect()
    }

    /// The node producing `id`, if any.
    pub fn producer(&self, id: ValueId) -> Option<&Node<T>> {
        match self.values[id.0].source {
            Source::Node { node, .. } => Some(&self.nodes[node]),
            _ => None,
        }
    }

    fn input_names(&self) -> String {
        self.inputs.iter().map(|&i| format!("'{}'", self.values[i.0].name)).collect::<Vec<_>>().join(", ")
    }
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(super::edit_distance("layer4", "layer3"), 1);
        assert_eq!(super::edit_distance("", "abc"), 3);
        assert_eq!(super::edit_distance("kitten", "sitting"), 3);
    }
}
