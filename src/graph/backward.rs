//! The backward sweep: a plain loop over the planned nodes in reverse topological order.

use super::{Activations, ValueId};
use crate::error::{GraphError, GraphResult as Result, OpError};
use crate::ops::{Op, Vjp};
use crate::tensor::Tensor;
use crate::Element;
use std::collections::HashMap;

/// A change to the incoming gradient of some ops, made before their own backward rule runs: how a method with rules
/// of its own (guided backpropagation: only positive gradients pass a rectifier) plugs into the engine, which knows
/// nothing of it. The op's rule — and the sweep's shortcuts for it, such as a mask applied in place — then run on
/// the filtered gradient.
pub trait GradientFilter<T: Element>: Sync {
    /// Whether this filter changes `op`'s incoming gradient.
    fn applies_to(&self, op: &dyn Op<T>) -> bool;

    /// Rewrites an output gradient of such an op, in place (the sweep owns it).
    fn filter(&self, gradient: &mut Tensor<T>);

    /// Whether [`GradientFilter::filter`] keeps exactly the positive part of the gradient (`g > 0 ? g : 0`, NaN to
    /// 0): a device then applies it with its own kernel and runs the op's rule there, instead of on the host.
    fn keeps_positive_part(&self) -> bool {
        false
    }
}

/// Options of a backward sweep.
pub struct BackwardOptions<'a, T> {
    /// A filter of some ops' incoming gradients (none: every op's true derivative).
    pub filter: Option<&'a dyn GradientFilter<T>>,
    /// Record how long each node's backward rule took, in [`Gradients::profile`].
    pub profile: bool,
}

impl<T> Default for BackwardOptions<'_, T> {
    fn default() -> Self {
        BackwardOptions { filter: None, profile: false }
    }
}

impl<T> Clone for BackwardOptions<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for BackwardOptions<'_, T> {}

impl<T> std::fmt::Debug for BackwardOptions<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackwardOptions")
            .field("filter", &self.filter.is_some())
            .field("profile", &self.profile)
            .finish()
    }
}

/// One vector-Jacobian product that ran: for tests, profiling and showing that a sweep was partial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VjpRecord {
    pub node: String,
    pub op: &'static str,
    /// Names of the values that received a gradient: the node's inputs — or, for a convolution whose leading zero
    /// `Pad` was folded in, that `Pad`'s input in place of its output (the `Pad`'s own rule then does not run).
    pub input_grads: Vec<String>,
}

/// Gradients of the requested values, plus a trace of the backward rules that ran.
#[derive(Debug)]
pub struct Gradients<T> {
    pub(super) grads: HashMap<ValueId, Tensor<T>>,
    /// Every name (aliases included) of every requested value.
    pub(super) names: HashMap<String, ValueId>,
    pub trace: Vec<VjpRecord>,
    /// Per-node backward times (the rule and the accumulation of its input gradients), when
    /// [`BackwardOptions::profile`] asked for them.
    pub profile: Vec<super::forward::NodeTime>,
}

impl<T> Gradients<T> {
    fn id(&self, name: &str) -> Result<ValueId> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| GraphError::NotPlanned { name: name.to_string(), role: "a `wrt` value" })
    }

    /// The gradient of a requested value (by any of its names).
    pub fn get(&self, name: &str) -> Result<&Tensor<T>> {
        let id = self.id(name)?;
        self.grads.get(&id).ok_or_else(|| GraphError::NotPlanned { name: name.to_string(), role: "a `wrt` value" })
    }

    /// Takes the gradient of a requested value out.
    pub fn take(&mut self, name: &str) -> Result<Tensor<T>> {
        let id = self.id(name)?;
        self.grads.remove(&id).ok_or_else(|| GraphError::NotPlanned { name: name.to_string(), role: "a `wrt` value" })
    }
}

/// `t` over a buffer of exactly its length. A gradient handed to the caller may have been made in a longer pool
/// buffer (graph::pool: a mask applied in place, a sum into a pooled gradient), which it would pin for as long as the
/// caller holds it, and copy whole when cloned.
fn exact_storage<T: Element>(t: Tensor<T>) -> Tensor<T> {
    if !t.is_standard_layout() {
        return t;
    }
    let (len, shape) = (t.len(), t.shape().to_vec());
    let (data, offset) = t.into_raw_vec_and_offset();
    let exact = match offset {
        // Standard layout: the elements are the `len` values from the offset.
        Some(start) if data.len() != len => data[start..start + len].to_vec(),
        _ => data,
    };
    Tensor::from_shape_vec(ndarray::IxDyn(&shape), exact).expect("a standard-layout tensor's elements fill its shape")
}

fn accumulate<T: Element>(slot: &mut Option<Tensor<T>>, g: Tensor<T>) {
    match slot {
        Some(acc) => *acc += &g,
        None => *slot = Some(g),
    }
}

impl<T: Element> Activations<'_, T> {
    /// The id of seed `name`, which the plan must name as a seed.
    pub(super) fn planned_seed(&self, name: &str) -> Result<ValueId> {
        let id = self.graph.find(name)?;
        if !self.plan.seeds.contains(&id) {
            return Err(GraphError::NotPlanned { name: name.to_string(), role: "a seed" });
        }
        Ok(id)
    }

    /// Every name (aliases included) of every `wrt` value, as [`Gradients`] answers to them.
    pub(super) fn wrt_names(&self) -> HashMap<String, ValueId> {
        self.graph
            .names()
            .into_iter()
            .filter(|(_, id)| self.plan.wrt.contains(id))
            .map(|(n, id)| (n.to_string(), id))
            .collect()
    }

    /// The input gradient of node `n` made from its output gradient in place, where `n` is a clamp-like activation
    /// with a saved mask (and its own rule applies); else `None` (the op's own backward runs). The output gradient
    /// is the sweep's own (taken, or cloned for a `wrt`), so overwriting it is safe.
    fn mask_in_place(&self, n: usize, out_grads: &mut [Option<Tensor<T>>]) -> Option<Tensor<T>> {
        let node = &self.graph.nodes[n];
        if !self.wants_first_input_only(n) || node.op.mask_interval().is_none() {
            return None;
        }
        let mask = self.saved[n].as_deref().and_then(|s| s.downcast_ref::<crate::ops::Mask>())?;
        let [slot] = out_grads else { return None };
        if slot.as_ref().is_none_or(|g| g.len() != mask.len()) {
            return None;
        }
        let mut g = slot.take()?;
        mask.apply_in_place(&mut g);
        Some(g)
    }

    /// Whether node `n`'s backward is asked for its first input's gradient alone.
    fn wants_first_input_only(&self, n: usize) -> bool {
        matches!(self.plan.wanted[n].as_slice(), [true, rest @ ..] if rest.iter().all(|w| !w))
    }

    /// The input gradient of node `n` made in place from its output gradient by the op's
    /// [`crate::ops::Op::input_gradient_in_place`], where the first input alone wants one and has the output's
    /// shape; else `None`, with `out_grads` untouched. Like [`Self::mask_in_place`], the output gradient is the
    /// sweep's own.
    fn in_place(
        &self,
        n: usize,
        out_grads: &mut [Option<Tensor<T>>],
        cx: &Vjp<'_, T>,
    ) -> Option<std::result::Result<Tensor<T>, OpError>> {
        let [slot] = out_grads else { return None };
        let same_shape = slot.as_ref().is_some_and(|g| cx.input_shapes.first() == Some(&g.shape()));
        if !self.wants_first_input_only(n) || !same_shape {
            return None;
        }
        let mut g = slot.take()?;
        match self.graph.nodes[n].op.input_gradient_in_place(cx, &mut g) {
            Some(done) => Some(done.map(|()| g)),
            None => {
                *slot = Some(g);
                None
            }
        }
    }

    /// `∂L/∂x` of convolution node `n` (any geometry; weights from the graph or the forward pass) written into a
    /// pooled buffer, which saves the allocation and its page faults (the kernel zeroes the buffer itself where it
    /// accumulates). `None` for other ops (or weights the pass did not keep): the caller runs the op's own rule.
    /// `fold` and `outlives_pass` as for [`super::Graph::packed_conv_input_gradient`].
    fn conv_input_gradient(
        &self,
        n: usize,
        input_shapes: &[&[usize]],
        grad_output: &Tensor<T>,
        pool: &mut super::pool::BufferPool<T>,
        fold: Option<[usize; 4]>,
        outlives_pass: bool,
    ) -> Option<Result<Tensor<T>>> {
        let node = &self.graph.nodes[n];
        let Some(crate::ops::Fusable::Conv(attrs)) = node.op.fusion() else { return None };
        let weight = match self.graph.constant_value(node.inputs[1]) {
            Some(w) => w,
            None => std::borrow::Cow::Borrowed(self.by_id(node.inputs[1])?),
        };
        let wrap = |source| GraphError::Op { node: node.name.clone(), op: node.op.op_type(), source };
        let mut geo = match attrs.geometry(input_shapes) {
            Ok(g) => g,
            Err(e) => return Some(Err(wrap(e))),
        };
        if let Some(pads) = fold {
            super::fuse::fold_pad(&mut geo, pads);
        }
        let shape = [geo.batch, geo.in_channels, geo.in_h, geo.in_w];
        let mut dx = pool.take_or_zeroed(shape.iter().product(), outlives_pass);
        let (w, dy) = (crate::tensor::contiguous(&weight), crate::tensor::contiguous(grad_output));
        gradcam_kernels::conv2d_backward_data(&geo, &w, &dy, dx.values());
        Some(dx.into_tensor(&shape).map_err(|e| wrap(OpError::Invalid(e.to_string()))))
    }

    /// Backpropagates `seeds` (value name, gradient of that value) to the plan's `wrt` values.
    ///
    /// Call it as often as needed (one class after another) without re-running the forward pass.
    pub fn backward(&self, seeds: Vec<(&str, Tensor<T>)>) -> Result<Gradients<T>> {
        self.backward_with(seeds, BackwardOptions::default())
    }

    /// [`Activations::backward`] with options.
    pub fn backward_with(
        &self,
        seeds: Vec<(&str, Tensor<T>)>,
        options: BackwardOptions<'_, T>,
    ) -> Result<Gradients<T>> {
        if let Some(on_device) = &self.device {
            return self.backward_on_device(on_device, seeds, options);
        }
        super::threads::on_pool(|| self.backward_on_cpu(seeds, options))
    }

    /// The backward sweep on the CPU.
    fn backward_on_cpu(&self, seeds: Vec<(&str, Tensor<T>)>, options: BackwardOptions<'_, T>) -> Result<Gradients<T>> {
        let (graph, plan) = (self.graph, &self.plan);
        let mut grads: Vec<Option<Tensor<T>>> = (0..graph.values.len()).map(|_| None).collect();
        for (name, seed) in seeds {
            let id = self.planned_seed(name)?;
            let value = self.by_id(id).ok_or_else(|| GraphError::NotRetained { name: name.to_string() })?;
            if value.shape() != seed.shape() {
                return Err(GraphError::SeedShape {
                    name: name.to_string(),
                    expected: value.shape().to_vec(),
                    got: seed.shape().to_vec(),
                });
            }
            accumulate(&mut grads[id.0], seed.as_standard_layout().into_owned());
        }

        let is_wrt = |id: ValueId| plan.wrt.contains(&id);
        // Gradients used up by their rule go back to the graph's buffer pool (they have the sizes of activations),
        // and the convolution input gradients — which overwrite every element — come from it: no zero fill, no
        // fresh pages.
        let keepers = super::keeper::Keepers::for_pass();
        let mut pool = graph.spare.lend();
        // Convolutions whose leading zero `Pad` the forward pass folded in (graph::fuse): their input gradient is
        // taken for the `Pad`'s input directly, with the folded padding, so the `Pad`'s own rule — a crop, a copy of
        // the gradient (15 % of EfficientNet-Lite0's saliency backward) — never runs. Not where the caller wants the
        // `Pad` output's gradient, or a filter changes the `Pad`'s.
        let folds: HashMap<usize, (ValueId, [usize; 4])> = plan
            .fusion
            .iter()
            .enumerate()
            .filter_map(|(p, chain)| {
                let chain = chain.as_ref()?;
                let (pad_out, pads) = chain.pad?;
                let pad = &graph.nodes[p];
                let filtered = options.filter.is_some_and(|f| f.applies_to(pad.op.as_ref()));
                let foldable = plan.run_backward[p] && plan.wanted[p].first() == Some(&true) && !is_wrt(pad_out);
                (foldable && !filtered).then_some((chain.conv, (*pad.inputs.first()?, pads)))
            })
            .collect();
        let mut trace = Vec::new();
        let mut profile = Vec::new();
        for (n, node) in graph.nodes.iter().enumerate().rev() {
            if !plan.run_backward[n] || node.outputs.iter().all(|o| grads[o.0].is_none()) {
                continue;
            }
            keepers.refresh();
            let started = options.profile.then(std::time::Instant::now);
            let wrap = |source| GraphError::Op { node: node.name.clone(), op: node.op.op_type(), source };
            let input_shapes: Vec<&[usize]> = node.inputs.iter().map(|&i| self.shapes[i.0].as_slice()).collect();
            let mut out_grads: Vec<Option<Tensor<T>>> =
                node.outputs.iter().map(|&o| if is_wrt(o) { grads[o.0].clone() } else { grads[o.0].take() }).collect();
            if let Some(filter) = options.filter.filter(|f| f.applies_to(node.op.as_ref())) {
                out_grads.iter_mut().flatten().for_each(|g| filter.filter(g));
            }
            // A convolution or a product with a 16-bit weight, asked only for its input gradient, runs it on the
            // packed / stored kernels where it can.
            // The value the input gradient goes to: the convolution's input, or the input of a folded `Pad`.
            let mut first_input = node.inputs.first().copied();
            let direct = match (plan.wanted[n].as_slice(), &out_grads[..]) {
                ([true, rest @ ..], [Some(dy)]) if plan.packed_backward && rest.iter().all(|w| !w) => {
                    let fold = folds.get(&n).copied();
                    let pads = fold.map(|(_, pads)| pads);
                    let folded_target = fold.map(|(pad_in, _)| pad_in).or(first_input);
                    let outlives = |target: Option<ValueId>| target.is_some_and(is_wrt);
                    let mut packed = |pads, target| {
                        graph.packed_conv_input_gradient(n, &input_shapes, dy, &mut pool, pads, outlives(target))
                    };
                    // Folded padding can exceed the kernel's reach where the convolution's own fits (a 1×1 after
                    // a Pad): the packed kernel at the padded size and the Pad's crop then still beat the generic
                    // kernel.
                    let conv = match packed(pads, folded_target) {
                        Some(dx) => Some((dx, folded_target)),
                        None => fold.and_then(|_| packed(None, first_input)).map(|dx| (dx, first_input)),
                    };
                    let conv = conv.or_else(|| {
                        let to_caller = outlives(folded_target);
                        let dx = self.conv_input_gradient(n, &input_shapes, dy, &mut pool, pads, to_caller)?;
                        Some((dx, folded_target))
                    });
                    match conv {
                        Some((dx, target)) => {
                            first_input = target;
                            Some(dx)
                        }
                        None => graph.stored_linear_input_gradient(node, dy),
                    }
                }
                _ => None,
            };
            // A clamp-like activation (ReLU, ReLU6, Clip) whose output gradient we own: its mask clears the gradient
            // in place — no new buffer, no zero fill (fresh buffers were ≈ 10 % of a MobileNet saliency pass).
            let direct = direct.or_else(|| self.mask_in_place(n, &mut out_grads).map(Ok));
            let input_grads = match direct {
                Some(dx) => {
                    let mut grads = vec![None; node.inputs.len()];
                    grads[0] = Some(dx?);
                    grads
                }
                None => {
                    // Saved 16-bit weights are widened for this rule only.
                    let widened: Vec<Option<Tensor<T>>> = node
                        .inputs
                        .iter()
                        .zip(&plan.saves_inputs[n])
                        .map(|(&i, &keep)| graph.half_constant(i).filter(|_| keep).map(|h| h.widen()))
                        .collect();
                    let inputs: Vec<Option<&Tensor<T>>> = node
                        .inputs
                        .iter()
                        .zip(&plan.saves_inputs[n])
                        .zip(&widened)
                        .map(|((&i, &keep), w)| if keep { w.as_ref().or_else(|| self.by_id(i)) } else { None })
                        .collect();
                    let outputs: Vec<Option<&Tensor<T>>> = node
                        .outputs
                        .iter()
                        .map(|&o| if plan.saves_outputs[n] { self.by_id(o) } else { None })
                        .collect();
                    let cx = |output_grads| Vjp {
                        inputs: inputs.clone(),
                        input_shapes: input_shapes.clone(),
                        outputs: outputs.clone(),
                        saved: self.saved[n].as_deref(),
                        output_grads,
                        wanted: &plan.wanted[n],
                    };
                    match self.in_place(n, &mut out_grads, &cx(vec![None])) {
                        Some(dx) => {
                            let mut grads = vec![None; node.inputs.len()];
                            grads[0] = Some(dx.map_err(wrap)?);
                            grads
                        }
                        None => node.op.backward(&cx(out_grads.iter().map(|g| g.as_ref()).collect())).map_err(wrap)?,
                    }
                }
            };
            out_grads.into_iter().flatten().for_each(|g| pool.recycle(g));
            let mut record = VjpRecord { node: node.name.clone(), op: node.op.op_type(), input_grads: Vec::new() };
            for (k, (&i, g)) in node.inputs.iter().zip(input_grads).enumerate() {
                let Some(g) = g.filter(|_| plan.wanted[n][k]) else { continue };
                let i = if k == 0 { first_input.unwrap_or(i) } else { i };
                let expected = self.shapes[i.0].as_slice();
                if g.shape() != expected {
                    let what = format!(
                        "internal error: gradient of input {k} has shape {:?}, input has {:?}",
                        g.shape(),
                        expected
                    );
                    return Err(wrap(crate::OpError::Invalid(what)));
                }
                record.input_grads.push(graph.values[i.0].name.clone());
                accumulate(&mut grads[i.0], g);
            }
            trace.push(record);
            if let Some(t) = started {
                let (node, op) = (node.name.clone(), node.op.op_type().to_string());
                profile.push(super::forward::NodeTime { node, op, seconds: t.elapsed().as_secs_f64() });
            }
        }

        drop(pool);
        let mut out = HashMap::new();
        let names = self.wrt_names();
        for &w in &plan.wrt {
            let g = match grads[w.0].take() {
                Some(g) => exact_storage(g),
                None => {
                    // Not connected to any seed: the gradient is zero.
                    Tensor::zeros(self.shapes[w.0].clone())
                }
            };
            out.insert(w, g);
        }
        Ok(Gradients { grads: out, names, trace, profile })
    }
}
