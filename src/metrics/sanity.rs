//! The model-randomization sanity check of Adebayo et al. (NeurIPS 2018), cascading: the model's parameters are
//! re-drawn layer by layer from the logits down (seeded), and after each layer the map is made again and compared
//! with the original one by Spearman's rank correlation and SSIM. A map that explains the model must change once
//! the layers it depends on are random; one that stays the same (Guided Backpropagation, the paper's finding) shows
//! the image, not the model.

use super::similarity::{spearman, ssim};
use crate::cam::{explain, ClassChoice, Method, Request};
use crate::error::{Error, Result};
use crate::graph::{Source, ValueId};
use crate::models::weights::uniform_symmetric;
use crate::models::Model;
use crate::ops::Fusable;
use crate::tensor::Tensor;

/// The map's similarity to the original once the parameters of `layer` and of every layer above it are random.
#[derive(Clone, Debug, PartialEq)]
pub struct SanityStep {
    /// The node whose parameters were randomized at this step.
    pub layer: String,
    pub spearman: f32,
    pub ssim: f32,
}

/// The parameter layers (convolutions, batch-norms, fully connected layers) from the logits down, each with the
/// constant inputs that are learned: weight and bias, or a batch-norm's scale and shift (its running statistics
/// are left alone, as the paper re-initializes learned weights).
fn parameter_layers(model: &Model) -> Vec<(String, Vec<ValueId>)> {
    let g = &model.graph;
    let mut layers = Vec::new();
    for node in g.nodes().iter().rev() {
        let learned: &[usize] = match node.op.fusion() {
            Some(Fusable::Conv(_)) | Some(Fusable::Linear(_)) => &[1, 2],
            Some(Fusable::BatchNorm { .. }) => &[1, 2],
            _ => continue,
        };
        let ids: Vec<ValueId> =
            learned.iter().filter_map(|&k| node.inputs.get(k).copied()).filter(|&id| g.is_constant(id)).collect();
        if !ids.is_empty() {
            layers.push((node.name.clone(), ids));
        }
    }
    layers
}

/// `value` re-drawn with the same mean and standard deviation, uniformly, from a stream named after it.
fn redrawn(name: &str, value: &Tensor<f32>) -> Tensor<f32> {
    let n = value.len().max(1) as f64;
    let mean = value.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (value.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let key = format!("sanity/{name}");
    let mut i = 0;
    value.mapv(|_| {
        let u = uniform_symmetric(&key, i) as f64;
        i += 1;
        (mean + std * 3f64.sqrt() * u) as f32
    })
}

fn flat(map: &ndarray::Array2<f32>) -> Vec<f32> {
    map.iter().copied().collect()
}

/// The map of `req`'s first method for image `x` (`[1, C, H, W]`), at the model's input resolution.
fn map_of(model: &Model, x: &Tensor<f32>, req: &Request) -> Result<(usize, ndarray::Array2<f32>)> {
    let mut results = explain(model, x.clone(), req)?;
    let e = results
        .first_mut()
        .and_then(|r| r.explanations.first_mut())
        .ok_or_else(|| Error::NothingToExplain("the sanity check needs one image, one class and one method".into()))?;
    Ok((e.class, std::mem::take(&mut e.cam)))
}

/// Runs the cascade for `method` on image `x` (`[1, C, H, W]`, one class: `req.classes`' first) over at most
/// `max_layers` layers (all when `None`). The model's parameters are restored before it returns, error or not.
pub fn cascading_randomization(
    model: &mut Model,
    x: &Tensor<f32>,
    method: Method,
    req: &Request,
    max_layers: Option<usize>,
) -> Result<Vec<SanityStep>> {
    if model.is_segmentation() {
        // The class's region would follow the randomized model's own prediction from step to step.
        return Err(Error::Unsupported("the sanity check is for classifiers, not segmentation outputs".into()));
    }
    if x.ndim() != 4 || x.shape()[0] != 1 {
        return Err(Error::InvalidArgument {
            name: "input",
            why: format!("the sanity check takes one image [1, C, H, W], got {:?}", x.shape()),
        });
    }
    let mut req = Request { methods: vec![method], aug_smooth: false, ..req.clone() };
    let (class, original) = map_of(model, x, &req)?;
    // The class stays the one explained first (the randomized model predicts something else).
    req.classes = ClassChoice::Classes(vec![class]);
    let layers = parameter_layers(model);
    let count = max_layers.unwrap_or(layers.len()).min(layers.len());
    let mut saved: Vec<(ValueId, Source<f32>)> = Vec::new();
    let mut steps = Vec::with_capacity(count);
    let mut outcome: Result<()> = Ok(());
    for (layer, ids) in layers.into_iter().take(count) {
        for id in ids {
            let Some(old) = model.graph.constant_value(id).map(|c| c.into_owned()) else { continue };
            let name = model.graph.value(id).name.clone();
            match model.graph.swap_constant(id, Source::Constant(redrawn(&name, &old))) {
                Ok(held) => saved.push((id, held)),
                Err(e) => {
                    outcome = Err(e.into());
                    break;
                }
            }
        }
        if outcome.is_err() {
            break;
        }
        match map_of(model, x, &req) {
            Ok((_, map)) => {
                let rho = spearman(&flat(&original), &flat(&map));
                steps.push(SanityStep { layer, spearman: rho, ssim: ssim(&original, &map) })
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    // Every weight goes back as it was held (16-bit ones stay 16-bit), even if one of them fails.
    for (id, held) in saved.into_iter().rev() {
        if let Err(e) = model.graph.swap_constant(id, held) {
            outcome = outcome.and(Err(e.into()));
        }
    }
    outcome.map(|_| steps)
}
