//! The forward executor.

use super::{Graph, Source, ValueId};
use crate::error::{Error, Result};
use crate::ops::Saved;
use crate::tensor::Tensor;
use crate::Element;

/// Options of a forward pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardOptions {
    /// Fail with [`Error::NonFinite`] naming the first input or node that yields NaN or ±inf. Off by default: NaN
    /// then simply propagates, as in PyTorch.
    pub check_finite: bool,
}

/// The values a forward pass kept, ready for any number of backward sweeps.
pub struct Activations<'g, T: Element> {
    pub(crate) graph: &'g Graph<T>,
    pub(crate) plan: super::Plan,
    pub(crate) values: Vec<Option<Tensor<T>>>,
    pub(crate) saved: Vec<Option<Saved>>,
    /// Run-time shape of every value that was computed or bound (the batch may differ from the declared one).
    pub(crate) shapes: Vec<Vec<usize>>,
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
        self.by_id(id).ok_or_else(|| Error::NotRetained { name: name.to_string() })
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

    /// The plan this pass ran.
    pub fn plan(&self) -> &super::Plan {
        &self.plan
    }
}

fn non_finite<T: Element>(t: &Tensor<T>) -> bool {
    t.iter().any(|v| !v.is_finite())
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
            return Err(Error::PlanMismatch);
        }
        let mut values: Vec<Option<Tensor<T>>> = (0..self.values.len()).map(|_| None).collect();
        let mut run_shapes: Vec<Vec<usize>> = self.values.iter().map(|v| v.shape.clone()).collect();
        for (name, tensor) in inputs {
            let id = self.find(name).ok().filter(|id| self.inputs.contains(id));
            let id = id.ok_or_else(|| Error::NotAnInput { name: name.to_string(), expected: self.input_names() })?;
            let declared = &self.values[id.0].shape;
            let got = tensor.shape();
            if got.len() != declared.len() || got.iter().zip(declared).skip(1).any(|(a, b)| a != b) {
                return Err(Error::InputShape {
                    name: name.to_string(),
                    expected: declared.clone(),
                    got: got.to_vec(),
                });
            }
            if options.check_finite && non_finite(&tensor) {
                return Err(Error::NonFinite { origin: format!("graph input '{name}'"), shape: got.to_vec() });
            }
            run_shapes[id.0] = got.to_vec();
            values[id.0] = Some(tensor.as_standard_layout().into_owned());
        }
        for &id in &self.inputs {
            let used = plan.last_use[id.0].is_some() || plan.retain[id.0];
            if used && values[id.0].is_none() {
                return Err(Error::MissingInput { name: self.values[id.0].name.clone(), expected: self.input_names() });
            }
        }

        let mut saved: Vec<Option<Saved>> = (0..self.nodes.len()).map(|_| None).collect();
        for (n, node) in self.nodes.iter().enumerate() {
            if !plan.run_forward[n] {
                continue;
            }
            let wrap = |source| Error::Op { node: node.name.clone(), op: node.op.op_type(), source };
            let args: Vec<&Tensor<T>> = node
                .inputs
                .iter()
                .map(|&i| match &self.values[i.0].source {
                    Source::Constant(c) => c,
                    _ => values[i.0].as_ref().expect("plan keeps every input of a running node until its last use"),
                })
                .collect();
            let shapes: Vec<&[usize]> = args.iter().map(|a| a.shape()).collect();
            let expected = node.op.output_shapes(&shapes).map_err(wrap)?;
            let out = node.op.forward(&args).map_err(wrap)?;
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
                    return Err(Error::NonFinite {
                        origin: format!("node '{}' ({})", node.name, node.op.op_type()),
                        shape: bad.shape().to_vec(),
                    });
                }
            }
            if plan.run_backward[n] {
                saved[n] = out.saved;
            }
            for (&id, value) in node.outputs.iter().zip(out.values) {
                run_shapes[id.0] = value.shape().to_vec();
                if plan.retain[id.0] || plan.last_use[id.0].is_some() {
                    values[id.0] = Some(value);
                }
            }
            // Free what no later node and no backward rule reads.
            for &i in &node.inputs {
                if plan.last_use[i.0] == Some(n) && !plan.retain[i.0] {
                    values[i.0] = None;
                }
            }
        }
        Ok(Activations { graph: self, plan: plan.clone(), values, saved, shapes: run_shapes })
    }
}
