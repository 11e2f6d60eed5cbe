//! What the methods that run the model on altered copies of an image share (Score-CAM, Ablation-CAM, SmoothGrad,
//! Integrated Gradients, the metrics): the copies run in batches through a plan, and each copy's output is scored
//! (or differentiated) for each objective.

use super::target::Objective;
use crate::error::{Error, Result};
use crate::graph::{Activations, Plan};
use crate::models::Model;
use crate::tensor::Tensor;
use ndarray::{Array2, ArrayView3, ArrayViewD, ArrayViewMut3, ArrayViewMutD, Axis, Ix3, IxDyn};

/// The model's output of a forward pass over `n` copies, checked to have one item per copy.
fn batch_output<'a>(model: &Model, acts: &'a Activations<'_, f32>, n: usize) -> Result<&'a Tensor<f32>> {
    let out = acts.get(&model.logits)?;
    if out.shape().first() != Some(&n) {
        return Err(Error::ModelInterface(format!(
            "the model's output '{}' has shape {:?} for a batch of {n}",
            model.logits,
            out.shape()
        )));
    }
    Ok(out)
}

/// `copies` (`[n, …]`) in the shape the graph's value `name` has per item: a volume's stacked slices
/// `[C, D·H, W]` back to `[C, D, H, W]` (the same elements in the same order); other values unchanged.
fn as_fed(model: &Model, name: &str, copies: Tensor<f32>) -> Result<Tensor<f32>> {
    let id = model.graph.find(name)?;
    let item = &model.graph.value(id).shape[1..];
    if copies.shape()[1..] == *item || copies.shape()[1..].iter().product::<usize>() != item.iter().product::<usize>() {
        return Ok(copies);
    }
    let mut shape = vec![copies.shape()[0]];
    shape.extend_from_slice(item);
    copies.into_shape_with_order(IxDyn(&shape)).map_err(|e| Error::Internal(format!("{e}")))
}

/// Runs `count` copies of the values in `feeds` (one item each, without the batch axis) through `plan`, `batch`
/// copies at a time; before each runs, `alter(k, copy)` changes copy `k` of the first feed (the others stay as they
/// are: e.g. a skip connection around an ablated layer). Returns each copy's score for each objective,
/// `[count, objectives]`.
pub(crate) fn batched_scores(
    model: &Model,
    plan: &Plan,
    feeds: &[(&str, ArrayViewD<'_, f32>)],
    count: usize,
    batch: usize,
    objectives: &[Objective],
    alter: impl Fn(usize, ArrayViewMutD<'_, f32>),
) -> Result<Array2<f32>> {
    if batch == 0 {
        return Err(Error::InvalidArgument { name: "batch size", why: "the batch size must be at least 1".into() });
    }
    let batch = model.batch_limit(batch);
    let mut scores = Array2::<f32>::zeros((count, objectives.len()));
    let mut start = 0;
    while start < count {
        let n = batch.min(count - start);
        let inputs: Vec<(&str, Tensor<f32>)> = feeds
            .iter()
            .enumerate()
            .map(|(f, (name, item))| {
                let mut shape = vec![n];
                shape.extend_from_slice(item.shape());
                let mut copies = Tensor::<f32>::zeros(IxDyn(&shape));
                for (j, mut copy) in copies.axis_iter_mut(Axis(0)).enumerate() {
                    copy.assign(item);
                    if f == 0 {
                        alter(start + j, copy);
                    }
                }
                Ok((*name, as_fed(model, name, copies)?))
            })
            .collect::<Result<_>>()?;
        let mut score = |out: &Tensor<f32>| {
            for (j, item) in out.axis_iter(Axis(0)).enumerate() {
                for (o, objective) in objectives.iter().enumerate() {
                    scores[[start + j, o]] = objective.score(item.view());
                }
            }
        };
        match &inputs[..] {
            // Copies of the model's input on the CPU run as their items, side by side, where the model is small
            // (see `Graph::runs_items_apart`): a batch of 32 copies' activations outgrows the cache.
            [(name, copies)] if *name == model.input && model.graph.runs_items_apart(n) => {
                let out = model.graph.forward_items(plan, name, copies, &[&model.logits])?;
                score(&out[0]);
            }
            _ => {
                let acts = model.graph.forward(plan, inputs)?;
                score(batch_output(model, &acts, n)?);
            }
        }
        start += n;
    }
    Ok(scores)
}

/// Runs `count` altered copies of one image `[C, H, W]` through `plan` (which differentiates the model's output
/// with respect to its input), `batch` copies at a time: `alter(k, copy)` makes copy `k` from the image, and
/// `take(k, j, gradient)` receives copy `k`'s input gradient of `objectives[j]` (one forward pass per batch, one
/// backward pass per batch and objective). SmoothGrad and Integrated Gradients are sums over such copies.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batched_input_gradients(
    model: &Model,
    plan: &Plan,
    image: ArrayView3<'_, f32>,
    count: usize,
    batch: usize,
    objectives: &[Objective],
    sign: f32,
    alter: impl Fn(usize, ArrayViewMut3<'_, f32>) + Sync,
    mut take: impl FnMut(usize, usize, ArrayView3<'_, f32>),
) -> Result<()> {
    if batch == 0 {
        return Err(Error::InvalidArgument { name: "batch size", why: "the batch size must be at least 1".into() });
    }
    let batch = model.batch_limit(batch);
    let item = image.raw_dim();
    let mut start = 0;
    while start < count {
        let n = batch.min(count - start);
        if model.graph.runs_items_apart(n) {
            // A small model's copies on the CPU run as their items, side by side (see `Graph::runs_items_apart`):
            // each copy's gradients, then handed over in the copies' order.
            let per_copy = crate::graph::side_by_side(n, |j| {
                let mut copy = image.to_owned();
                alter(start + j, copy.view_mut());
                let x = as_fed(model, &model.input, copy.insert_axis(Axis(0)).into_dyn())?;
                let acts = model.graph.forward(plan, vec![(&model.input, x)])?;
                let out = batch_output(model, &acts, 1)?.index_axis(Axis(0), 0);
                objectives
                    .iter()
                    .map(|objective| {
                        let seed = objective.seed(out.view(), sign).insert_axis(Axis(0));
                        let grads = acts.backward(vec![(&model.logits, seed)])?;
                        let g = grads.get(&model.input)?.index_axis(Axis(0), 0).as_standard_layout().into_owned();
                        // A volume's gradient [C, D, H, W] as its stacked slices, like the image it was given.
                        g.into_shape_with_order(item).map_err(|e| Error::Internal(format!("{e}")))
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            for (j, grads) in per_copy.iter().enumerate() {
                for (oi, g) in grads.iter().enumerate() {
                    take(start + j, oi, g.view());
                }
            }
            start += n;
            continue;
        }
        let mut shape = vec![n];
        shape.extend_from_slice(image.shape());
        let mut copies = Tensor::<f32>::zeros(IxDyn(&shape));
        for (j, mut copy) in copies.axis_iter_mut(Axis(0)).enumerate() {
            copy.assign(&image);
            let copy = copy.into_dimensionality::<Ix3>().expect("an image is 3-D");
            alter(start + j, copy);
        }
        let acts = model.graph.forward(plan, vec![(&model.input, as_fed(model, &model.input, copies)?)])?;
        let out = batch_output(model, &acts, n)?;
        for (oi, objective) in objectives.iter().enumerate() {
            let mut seed = Tensor::<f32>::zeros(IxDyn(out.shape()));
            for (j, item) in out.axis_iter(Axis(0)).enumerate() {
                seed.index_axis_mut(Axis(0), j).assign(&objective.seed(item, sign));
            }
            let grads = acts.backward(vec![(&model.logits, seed)])?;
            let gx = grads.get(&model.input)?;
            for (j, g) in gx.axis_iter(Axis(0)).enumerate() {
                // A volume's gradient [C, D, H, W] as its stacked slices, like the image it was given.
                let g = g.as_standard_layout();
                let g = g.view().into_shape_with_order(item).map_err(|e| Error::Internal(format!("{e}")))?;
                take(start + j, oi, g);
            }
        }
        start += n;
    }
    Ok(())
}
