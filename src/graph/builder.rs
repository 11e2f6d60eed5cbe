//! Building graphs in Rust.

use super::{Graph, Node, Source, Value, ValueId};
use crate::error::{GraphError, GraphResult as Result};
use crate::ops::Op;
use crate::tensor::{HalfTensor, Tensor};
use crate::Element;
use std::collections::HashMap;

/// Largest number of elements a value may have (8 GiB of f32): a bound that turns absurd shapes from corrupt
/// files into errors instead of allocations or overflows.
pub const MAX_VALUE_ELEMENTS: usize = 1 << 31;

/// Builds a [`Graph`] node by node, inferring shapes as it goes so that a wrong shape is reported at the node that
/// introduces it.
///
/// ```
/// use gradcam::{GraphBuilder, ops::{Relu, GlobalAveragePool}};
/// let mut b = GraphBuilder::<f32>::new();
/// let x = b.input("x", &[1, 3, 8, 8]).unwrap();
/// let r = b.node("relu", Relu, &[x]).unwrap();
/// let p = b.node("pool", GlobalAveragePool, &[r]).unwrap();
/// b.output(p);
/// let graph = b.build();
/// assert_eq!(graph.value(p).shape, vec![1, 3, 1, 1]);
/// ```
#[derive(Debug)]
pub struct GraphBuilder<T: Element> {
    graph: Graph<T>,
}

impl<T: Element> Default for GraphBuilder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Element> GraphBuilder<T> {
    /// An empty graph.
    pub fn new() -> Self {
        GraphBuilder {
            graph: Graph {
                values: Vec::new(),
                nodes: Vec::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                by_name: HashMap::new(),
                aliases: Vec::new(),
                fusion: true,
                packed: Default::default(),
                spare: Default::default(),
                device: None,
            },
        }
    }

    fn add_value(&mut self, name: &str, shape: Vec<usize>, source: Source<T>) -> Result<ValueId> {
        if self.graph.by_name.contains_key(name) {
            return Err(GraphError::DuplicateName { name: name.to_string() });
        }
        let id = ValueId(self.graph.values.len());
        self.graph.values.push(Value { name: name.to_string(), shape, source });
        self.graph.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    /// Declares a graph input. Its first dimension is the batch and may differ at run time.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> Result<ValueId> {
        let id = self.add_value(name, shape.to_vec(), Source::Input)?;
        self.graph.inputs.push(id);
        Ok(id)
    }

    /// Adds a constant (a weight).
    pub fn constant(&mut self, name: &str, value: Tensor<T>) -> Result<ValueId> {
        let shape = value.shape().to_vec();
        // Keep the caller's buffer when it is already row-major: model weights are then held exactly once.
        let value = if value.is_standard_layout() { value } else { value.as_standard_layout().into_owned() };
        self.add_value(name, shape, Source::Constant(value))
    }

    /// Adds a constant held in 16 bits (a weight loaded with `--weights f16|bf16`).
    pub fn constant_half(&mut self, name: &str, value: HalfTensor) -> Result<ValueId> {
        let shape = value.shape().to_vec();
        self.add_value(name, shape, Source::HalfConstant(value))
    }

    /// Adds a single-output node; its output value is named like the node.
    pub fn node(&mut self, name: &str, op: impl Op<T> + 'static, inputs: &[ValueId]) -> Result<ValueId> {
        Ok(self.node_with_outputs(name, Box::new(op), inputs, &[name])?[0])
    }

    /// Adds a node with explicitly named outputs (multi-output ops, or imported graphs whose value names differ from
    /// node names).
    pub fn node_with_outputs(
        &mut self,
        name: &str,
        op: Box<dyn Op<T>>,
        inputs: &[ValueId],
        outputs: &[&str],
    ) -> Result<Vec<ValueId>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|i| self.graph.values[i.0].shape.as_slice()).collect();
        let out_shapes = op.output_shapes(&shapes).map_err(|source| GraphError::Op {
            node: name.to_string(),
            op: op.op_type(),
            source,
        })?;
        for shape in &out_shapes {
            if shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1))).is_none_or(|n| n > MAX_VALUE_ELEMENTS)
            {
                let why = format!("output shape {shape:?} exceeds {MAX_VALUE_ELEMENTS} elements");
                return Err(GraphError::Op {
                    node: name.to_string(),
                    op: op.op_type(),
                    source: crate::OpError::Invalid(why),
                });
            }
        }
        if out_shapes.len() != outputs.len() {
            return Err(GraphError::Op {
                node: name.to_string(),
                op: op.op_type(),
                source: crate::OpError::Invalid(format!(
                    "produces {} outputs, {} names given",
                    out_shapes.len(),
                    outputs.len()
                )),
            });
        }
        let node = self.graph.nodes.len();
        let mut ids = Vec::with_capacity(outputs.len());
        for (output, (out_name, shape)) in outputs.iter().zip(out_shapes).enumerate() {
            ids.push(self.add_value(out_name, shape, Source::Node { node, output })?);
        }
        self.graph.nodes.push(Node { name: name.to_string(), op, inputs: inputs.to_vec(), outputs: ids.clone() });
        Ok(ids)
    }

    /// Gives an existing value a second name (PyTorch module paths: `layer4` is the output of `layer4.1`).
    pub fn alias(&mut self, name: &str, id: ValueId) -> Result<()> {
        if self.graph.by_name.contains_key(name) {
            return Err(GraphError::DuplicateName { name: name.to_string() });
        }
        self.graph.by_name.insert(name.to_string(), id);
        self.graph.aliases.push((name.to_string(), id));
        Ok(())
    }

    /// Marks a value as a graph output.
    pub fn output(&mut self, id: ValueId) {
        if !self.graph.outputs.contains(&id) {
            self.graph.outputs.push(id);
        }
    }

    /// The shape inferred for a value so far.
    pub fn shape(&self, id: ValueId) -> &[usize] {
        &self.graph.values[id.0].shape
    }

    /// Finishes the graph.
    pub fn build(self) -> Graph<T> {
        self.graph
    }
}
