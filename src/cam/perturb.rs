//! What Score-CAM and Ablation-CAM share: many altered copies of one image's input (or of an inner value) run in
//! batches through a forward-only plan, and the score every class gets on each copy.

use super::explainer::Target;
use crate::error::{Error, Result};
use crate::graph::Plan;
use crate::models::Model;
use crate::tensor::{softmax_row, Tensor};
use ndarray::{Array2, ArrayView3, ArrayViewD, ArrayViewMut3, ArrayViewMutD, Axis, Ix3, IxDyn};

/// Runs `count` copies of the values in `feeds` (one item each, without the batch axis) through `plan`, `batch`
/// copies at a time; before each runs, `alter(k, copy)` changes copy `k` of the first feed (the others stay as they
/// are: e.g. a skip connection around an ablated layer). Returns the logits of every copy, `[count, classes]`.
pub(crate) fn batched_logits(
    model: &Model,
    plan: &Plan,
    feeds: &[(&str, ArrayViewD<'_, f32>)],
    count: usize,
    batch: usize,
    alter: impl Fn(usize, ArrayViewMutD<'_, f32>),
) -> Result<Array2<f32>> {
    if batch == 0 {
        return Err(Error::BadRequest("the batch size must be at least 1".into()));
    }
    let classes = model.classes();
    let mut logits = Array2::<f32>::zeros((count, classes));
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
                (*name, copies)
            })
            .collect();
        let acts = model.graph.forward(plan, inputs)?;
        let out = acts.get(&model.logits)?;
        if out.shape() != [n, classes] {
            return Err(Error::BadRequest(format!(
                "the model's output '{}' has shape {:?}, expected [{n}, {classes}]",
                model.logits,
                out.shape()
            )));
        }
        for (j, row) in out.axis_iter(Axis(0)).enumerate() {
            logits.row_mut(start + j).assign(&row);
        }
        start += n;
    }
    Ok(logits)
}

/// The score of `class` that a target explains, from one row of logits.
pub(crate) fn target_score(row: &[f32], class: usize, target: Target) -> f32 {
    match target {
        Target::Logit => row[class],
        Target::Probability => softmax_row(row)[class],
    }
}

/// Runs `count` altered copies of one image `[C, H, W]` through `plan` (which differentiates the logits with
/// respect to the model's input), `batch` copies at a time: `alter(k, copy)` makes copy `k` from the image, and
/// `take(k, j, gradient)` receives copy `k`'s input gradient of the target of `classes[j]` (one forward pass per
/// batch, one backward pass per batch and class). SmoothGrad and Integrated Gradients are sums over such copies.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batched_input_gradients(
    model: &Model,
    plan: &Plan,
    image: ArrayView3<'_, f32>,
    count: usize,
    batch: usize,
    classes: &[usize],
    (target, sign): (Target, f32),
    alter: impl Fn(usize, ArrayViewMut3<'_, f32>),
    mut take: impl FnMut(usize, usize, ArrayView3<'_, f32>),
) -> Result<()> {
    if batch == 0 {
        return Err(Error::BadRequest("the batch size must be at least 1".into()));
    }
    let mut start = 0;
    while start < count {
        let n = batch.min(count - start);
        let mut shape = vec![n];
        shape.extend_from_slice(image.shape());
        let mut copies = Tensor::<f32>::zeros(IxDyn(&shape));
        for (j, mut copy) in copies.axis_iter_mut(Axis(0)).enumerate() {
            copy.assign(&image);
            let copy = copy.into_dimensionality::<Ix3>().expect("an image is 3-D");
            alter(start + j, copy);
        }
        let acts = model.graph.forward(plan, vec![(&model.input, copies)])?;
        let logits = acts.get(&model.logits)?;
        for (ci, &class) in classes.iter().enumerate() {
            let mut seed = Tensor::<f32>::zeros(IxDyn(logits.shape()));
            for (j, row) in logits.axis_iter(Axis(0)).enumerate() {
                let row: Vec<f32> = row.iter().copied().collect();
                for (c, v) in target.seed_row(&row, class, sign).into_iter().enumerate() {
                    seed[[j, c]] = v;
                }
            }
            let grads = acts.backward(vec![(&model.logits, seed)])?;
            let gx = grads.get(&model.input)?;
            for (j, g) in gx.axis_iter(Axis(0)).enumerate() {
                take(start + j, ci, g.into_dimensionality::<Ix3>().expect("an image is 3-D"));
            }
        }
        start += n;
    }
    Ok(())
}
