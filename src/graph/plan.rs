//! Deciding, before anything runs, which nodes execute and which values are kept.
//!
//! A backward sweep from `seeds` to `wrt` only needs the nodes that lie on a path between them: a node runs its
//! vector-Jacobian product only if one of its outputs leads to a seed *and* one of its inputs depends on a
//! requested value, and it is asked only for the input gradients that depend on a requested value. Nothing below the
//! deepest requested value is visited, and weights get gradients only if they are requested. The forward pass keeps
//! exactly the activations those backward rules read, plus the values the caller asked to keep; everything else is
//! freed right after its last consumer.

use super::{Graph, ValueId};
use crate::error::GraphResult as Result;
use crate::Element;

/// What to run and keep for one kind of request. Make it once, use it for many forward and backward passes.
#[derive(Clone, Debug)]
pub struct Plan {
    pub(crate) seeds: Vec<ValueId>,
    pub(crate) wrt: Vec<ValueId>,
    pub(crate) keep: Vec<ValueId>,
    /// Per node: needed to compute the requested values.
    pub(crate) run_forward: Vec<bool>,
    /// Per node: on a path from a `wrt` value to a seed.
    pub(crate) run_backward: Vec<bool>,
    /// Per node and input: that input's gradient is wanted.
    pub(crate) wanted: Vec<Vec<bool>>,
    /// Per node: what its backward reads (inputs, outputs).
    pub(crate) saves_inputs: Vec<Vec<bool>>,
    pub(crate) saves_outputs: Vec<bool>,
    /// Per value: kept after the forward pass.
    pub(crate) retain: Vec<bool>,
    /// Per value: index of the last forward node that reads it (`None`: no reader runs).
    pub(crate) last_use: Vec<Option<usize>>,
    /// Per node: the fused chain that starts at this convolution.
    pub(crate) fusion: Vec<Option<super::fuse::FusedConv>>,
    /// Input gradients of convolutions on the packed kernels (see `conv_backward`) where they apply.
    pub(crate) packed_backward: bool,
    /// Inner values the forward pass is given instead of computing them (see [`Graph::suffix_plan`]).
    pub(crate) feeds: Vec<ValueId>,
}

impl Plan {
    /// Names of the values the backward sweep differentiates with respect to.
    pub fn wrt(&self) -> &[ValueId] {
        &self.wrt
    }

    /// Values kept for the caller besides seeds and `wrt`.
    pub fn keep(&self) -> &[ValueId] {
        &self.keep
    }

    /// The values besides graph inputs that [`Graph::forward`] must be given (empty unless made by
    /// [`Graph::suffix_plan`]).
    pub fn feeds(&self) -> &[ValueId] {
        &self.feeds
    }

    /// Number of nodes whose backward the plan runs. A zero `Pad` folded into the convolution after it counts,
    /// though the sweep usually takes the convolution's input gradient straight to the `Pad`'s input instead.
    pub fn backward_nodes(&self) -> usize {
        self.run_backward.iter().filter(|&&b| b).count()
    }

    /// The same plan with every op run on its own (no fused chains, every backward rule the op's own): the
    /// reference for the fused and packed paths.
    pub fn unfused(mut self) -> Plan {
        self.fusion.iter_mut().for_each(|f| *f = None);
        self.packed_backward = false;
        self
    }

    /// Number of fused convolution chains, and how many ops they absorb besides the convolutions.
    pub fn fused_chains(&self) -> (usize, usize) {
        let chains = self.fusion.iter().flatten();
        (chains.clone().count(), chains.map(|c| c.skipped_nodes.len()).sum())
    }
}

impl<T: Element> Graph<T> {
    /// Per value, the last node among those that run that reads it.
    fn last_uses(&self, run_forward: &[bool]) -> Vec<Option<usize>> {
        let mut last_use = vec![None; self.values.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            if run_forward[n] {
                for i in &node.inputs {
                    last_use[i.0] = Some(n);
                }
            }
        }
        last_use
    }

    fn ids(&self, names: &[&str]) -> Result<Vec<ValueId>> {
        names.iter().map(|n| self.find(n)).collect()
    }

    /// A plan for inference only: computes and keeps `keep` (the graph outputs if empty).
    pub fn inference_plan(&self, keep: &[&str]) -> Result<Plan> {
        self.plan(&[], &[], keep)
    }

    /// A plan for `∂seeds/∂wrt`, also keeping the values named in `keep` (e.g. the activation Grad-CAM weights).
    /// With no seeds and no `keep`, the graph outputs are kept.
    pub fn plan(&self, seeds: &[&str], wrt: &[&str], keep: &[&str]) -> Result<Plan> {
        let (seeds, wrt, mut keep) = (self.ids(seeds)?, self.ids(wrt)?, self.ids(keep)?);
        if seeds.is_empty() && keep.is_empty() {
            keep = self.outputs.clone();
        }
        let (nv, nn) = (self.values.len(), self.nodes.len());

        // Values that lead to a seed, walking backwards.
        let leads_to_seed = self.leads_to(&seeds);
        // Values that depend on a requested value, walking forwards.
        let mut depends_on_wrt = vec![false; nv];
        for w in &wrt {
            depends_on_wrt[w.0] = true;
        }
        for node in &self.nodes {
            if node.inputs.iter().any(|i| depends_on_wrt[i.0]) {
                for o in &node.outputs {
                    depends_on_wrt[o.0] = true;
                }
            }
        }

        let mut run_backward = vec![false; nn];
        let mut wanted = Vec::with_capacity(nn);
        let mut saves_inputs = Vec::with_capacity(nn);
        let mut saves_outputs = vec![false; nn];
        let mut retain = vec![false; nv];
        for v in seeds.iter().chain(&wrt).chain(&keep) {
            retain[v.0] = true;
        }
        for (n, node) in self.nodes.iter().enumerate() {
            let on_path = node.outputs.iter().any(|o| leads_to_seed[o.0] && depends_on_wrt[o.0]);
            let w: Vec<bool> =
                node.inputs.iter().map(|i| on_path && depends_on_wrt[i.0] && leads_to_seed[i.0]).collect();
            run_backward[n] = on_path && w.iter().any(|&b| b);
            if run_backward[n] {
                let saves = node.op.saves(&w);
                for (i, &s) in node.inputs.iter().zip(&saves.inputs) {
                    retain[i.0] |= s;
                }
                if saves.outputs {
                    for o in &node.outputs {
                        retain[o.0] = true;
                    }
                }
                saves_outputs[n] = saves.outputs;
                saves_inputs.push(saves.inputs);
            } else {
                saves_inputs.push(vec![false; node.inputs.len()]);
            }
            wanted.push(w);
        }

        // Nodes needed to produce every retained value, walking backwards.
        let mut needed = retain.clone();
        let mut run_forward = vec![false; nn];
        for (n, node) in self.nodes.iter().enumerate().rev() {
            if node.outputs.iter().any(|o| needed[o.0]) {
                run_forward[n] = true;
                for i in &node.inputs {
                    needed[i.0] = true;
                }
            }
        }
        let last_use = self.last_uses(&run_forward);
        let fusion = if self.fusion { self.plan_fusion(&run_forward, &retain) } else { vec![None; nn] };
        Ok(Plan {
            seeds,
            wrt,
            keep,
            run_forward,
            run_backward,
            wanted,
            saves_inputs,
            saves_outputs,
            retain,
            last_use,
            fusion,
            packed_backward: self.fusion,
            feeds: Vec::new(),
        })
    }

    /// A forward-only plan for the part of the graph after the values `from`: it computes and keeps `keep`,
    /// running only the nodes that depend on `from`. Its [`Plan::feeds`] are the values the pass must be given —
    /// `from` (those that `keep` depends on) and any value that does not depend on `from` but that the nodes which
    /// run also read (a skip connection around the layer: the same as in a full forward pass). Ablation-CAM re-runs
    /// only this part with one channel changed.
    pub fn suffix_plan(&self, from: &[&str], keep: &[&str]) -> Result<Plan> {
        let (from, keep) = (self.ids(from)?, self.ids(keep)?);
        let (nv, nn) = (self.values.len(), self.nodes.len());
        let mut is_from = vec![false; nv];
        for f in &from {
            is_from[f.0] = true;
        }
        let mut retain = vec![false; nv];
        for k in &keep {
            retain[k.0] = true;
        }
        let mut depends = is_from.clone();
        for node in &self.nodes {
            if node.inputs.iter().any(|i| depends[i.0]) {
                for o in &node.outputs {
                    depends[o.0] = true;
                }
            }
        }
        let mut needed = retain.clone();
        let mut run_forward = vec![false; nn];
        let mut produced = vec![false; nv];
        for (n, node) in self.nodes.iter().enumerate().rev() {
            let on_path = node.inputs.iter().any(|i| depends[i.0]);
            if on_path && node.outputs.iter().any(|o| needed[o.0] && !is_from[o.0]) {
                run_forward[n] = true;
                for o in &node.outputs {
                    produced[o.0] = true;
                }
                for i in &node.inputs {
                    needed[i.0] = true;
                }
            }
        }
        let feeds: Vec<ValueId> =
            (0..nv).map(ValueId).filter(|&v| needed[v.0] && !produced[v.0] && !self.is_constant(v)).collect();
        let last_use = self.last_uses(&run_forward);
        let fusion = if self.fusion { self.plan_fusion(&run_forward, &retain) } else { vec![None; nn] };
        Ok(Plan {
            seeds: Vec::new(),
            wrt: Vec::new(),
            keep,
            run_forward,
            run_backward: vec![false; nn],
            wanted: self.nodes.iter().map(|n| vec![false; n.inputs.len()]).collect(),
            saves_inputs: self.nodes.iter().map(|n| vec![false; n.inputs.len()]).collect(),
            saves_outputs: vec![false; nn],
            retain,
            last_use,
            fusion,
            packed_backward: self.fusion,
            feeds,
        })
    }
}
