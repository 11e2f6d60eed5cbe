//! Running the model once and explaining any number of classes with any number of methods.

use super::methods::CamMethod;
use super::postprocess::{aggregate, deprocess, magnitude_map, scale_layer_map};
use super::{default_layer, is_spatial, Method};
use crate::error::{Error, Result};
use crate::graph::BackwardOptions;
use crate::models::Model;
use crate::ops::ReluRule;
use crate::tensor::{softmax_row, Tensor};
use ndarray::{Array2, Array3, ArrayD, Axis, Ix3, IxDyn};

/// Which classes to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassChoice {
    /// These classes for every image.
    Classes(Vec<usize>),
    /// The `k` highest-scoring classes of each image.
    Top(usize),
}

/// The score whose gradient the explanations follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The class's logit (pytorch-grad-cam's `ClassifierOutputTarget`).
    #[default]
    Logit,
    /// The class's softmax probability (`ClassifierOutputSoftmaxTarget`): its gradient is the logit gradient
    /// weighted by `p_c·(e_c − p)`, so classes competing for the same evidence count against it.
    Probability,
}

/// What to explain.
#[derive(Clone, Debug)]
pub struct Request {
    /// Target layers; empty means [`default_layer`].
    pub layers: Vec<String>,
    pub classes: ClassChoice,
    pub methods: Vec<Method>,
    /// Explain what speaks *against* the class (negated gradients, Grad-CAM paper §3).
    pub counterfactual: bool,
    /// pytorch-grad-cam's `eigen_smooth`: each CAM map is the first principal component of its per-channel terms
    /// instead of their sum (see [`CamMethod::raw_map_with`]).
    pub eigen_smooth: bool,
    /// pytorch-grad-cam's `aug_smooth`: each CAM map is the mean over six augmented inputs (horizontal flip ×
    /// multiplied by 0.9 / 1 / 1.1), flipped back (see `aug_smooth.rs`).
    pub aug_smooth: bool,
    /// The score to explain: a class's logit (default) or its softmax probability.
    pub target: Target,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            layers: Vec::new(),
            classes: ClassChoice::Top(1),
            methods: vec![Method::Cam(CamMethod::GradCam)],
            counterfactual: false,
            eigen_smooth: false,
            aug_smooth: false,
            target: Target::Logit,
        }
    }
}

/// One of the model's top predictions.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub class: usize,
    pub label: String,
    pub prob: f32,
    pub logit: f32,
}

/// One map: an image, a class, a method.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub class: usize,
    pub label: String,
    pub method: Method,
    /// Target layers used (empty for saliency and guided backpropagation).
    pub layers: Vec<String>,
    /// The map at model-input resolution, in [0, 1].
    pub cam: Array2<f32>,
    /// Before ReLU: one `[H, W]` map per layer for CAM methods; one `[C, H, W]` gradient image otherwise.
    pub raw: Vec<ArrayD<f32>>,
    /// Gradient image rendered as RGB in [0, 1] (`[3, H, W]`) for saliency and guided methods.
    pub rgb: Option<Array3<f32>>,
}

/// Predictions and explanations of one image of the batch.
#[derive(Clone, Debug)]
pub struct ImageResult {
    /// Top-5 (or fewer) predictions.
    pub predictions: Vec<Prediction>,
    pub layers: Vec<String>,
    pub explanations: Vec<Explanation>,
}

fn ranking(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx
}

fn image3(t: &Tensor<f32>, i: usize) -> Array3<f32> {
    t.index_axis(Axis(0), i).to_owned().into_dimensionality::<Ix3>().expect("4-D tensor")
}

/// Explains a batch `x` (`[N, C, H, W]`, preprocessed) with `model`: one forward pass, then one backward sweep per
/// requested class (two when guided methods are asked for).
pub fn explain(model: &Model, x: Tensor<f32>, req: &Request) -> Result<Vec<ImageResult>> {
    if req.aug_smooth {
        return super::aug_smooth::explain_smoothed(model, x, req);
    }
    let g = &model.graph;
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::NonFinite { origin: format!("input '{}'", model.input), shape: x.shape().to_vec() });
    }
    if req.methods.is_empty() {
        return Err(Error::BadRequest("no method requested".into()));
    }
    let uses_layer = req.methods.iter().any(|m| m.uses_layer());
    let layers = if !uses_layer {
        Vec::new()
    } else if req.layers.is_empty() {
        vec![default_layer(g, &model.logits)?]
    } else {
        // A layer named twice is explained once: the average of two equal maps is the map (found by the CLI
        // fuzzer: `--layer relu` sixteen times on a batch of 4101 made sixteen times the work).
        let mut unique: Vec<String> = Vec::with_capacity(req.layers.len());
        for l in &req.layers {
            if !unique.contains(l) {
                unique.push(l.clone());
            }
        }
        unique
    };
    for l in &layers {
        let id = g.find(l)?;
        if !is_spatial(g, id) {
            return Err(Error::NotSpatial { layer: l.clone(), shape: g.value(id).shape.clone() });
        }
    }
    let classes = model.classes();
    if let ClassChoice::Classes(cs) = &req.classes {
        if let Some(&c) = cs.iter().find(|&&c| c >= classes) {
            return Err(Error::ClassOutOfRange { class: c, classes });
        }
    }
    let needs_input = req.methods.iter().any(|m| m.needs_input_gradient());
    let mut wrt: Vec<&str> = layers.iter().map(String::as_str).collect();
    if needs_input {
        wrt.push(&model.input);
    }
    let keep: Vec<&str> = layers.iter().map(String::as_str).collect();
    let plan = g.plan(&[&model.logits], &wrt, &keep)?;
    let (in_h, in_w) = (x.shape()[2], x.shape()[3]);
    let acts = g.forward(&plan, vec![(&model.input, x)])?;
    let logits = acts.get(&model.logits)?.clone();

    let rows: Vec<Vec<f32>> = logits.axis_iter(Axis(0)).map(|r| r.iter().copied().collect()).collect();
    let mut results: Vec<ImageResult> = rows
        .iter()
        .map(|row| {
            let p = softmax_row(row);
            let predictions = ranking(row)
                .into_iter()
                .take(5)
                .map(|c| Prediction { class: c, label: model.label(c), prob: p[c], logit: row[c] })
                .collect();
            ImageResult { predictions, layers: layers.clone(), explanations: Vec::new() }
        })
        .collect();
    // Per image, the classes to explain, in order.
    let per_image: Vec<Vec<usize>> = rows
        .iter()
        .map(|row| match &req.classes {
            ClassChoice::Classes(cs) => cs.clone(),
            ClassChoice::Top(k) => ranking(row).into_iter().take((*k).max(1)).collect(),
        })
        .collect();
    let rounds = per_image.iter().map(Vec::len).max().unwrap_or(0);
    let sign = if req.counterfactual { -1.0 } else { 1.0 };
    let guided = req.methods.iter().any(|m| matches!(m, Method::GuidedBackprop | Method::GuidedGradCam));

    for round in 0..rounds {
        // One seed for the whole batch: image i's row is one-hot on its class of this round.
        let mut seed = Tensor::<f32>::zeros(IxDyn(logits.shape()));
        for (i, cs) in per_image.iter().enumerate() {
            let Some(&c) = cs.get(round) else { continue };
            match req.target {
                Target::Logit => seed[[i, c]] = sign,
                Target::Probability => {
                    // ∂p_c/∂z_j = p_c·(δ_cj − p_j).
                    let p = softmax_row(&rows[i]);
                    for (j, &pj) in p.iter().enumerate() {
                        let delta = if j == c { 1.0 } else { 0.0 };
                        seed[[i, j]] = sign * p[c] * (delta - pj);
                    }
                }
            }
        }
        let exact = acts.backward(vec![(&model.logits, seed.clone())])?;
        // Finer-CAM follows a target of its own: one more backward pass when it is asked for.
        let finer_grads = if req.methods.contains(&Method::Cam(CamMethod::FinerCam)) {
            let mut finer = Tensor::<f32>::zeros(IxDyn(logits.shape()));
            for (i, cs) in per_image.iter().enumerate() {
                let Some(&c) = cs.get(round) else { continue };
                for (j, v) in super::finer::seed(&rows[i], c).into_iter().enumerate() {
                    finer[[i, j]] = sign * v;
                }
            }
            Some(acts.backward(vec![(&model.logits, finer)])?)
        } else {
            None
        };
        let guided_grads = if guided {
            Some(acts.backward_with(vec![(&model.logits, seed)], BackwardOptions { relu_rule: ReluRule::Guided })?)
        } else {
            None
        };
        for (i, cs) in per_image.iter().enumerate() {
            let Some(&class) = cs.get(round) else { continue };
            // Grad-CAM at input resolution, shared by guided Grad-CAM.
            let mut gradcam_map: Option<Array2<f32>> = None;
            let cam_maps = |method: CamMethod| -> Result<(Array2<f32>, Vec<ArrayD<f32>>)> {
                let mut scaled = Vec::new();
                let mut raws = Vec::new();
                for l in &layers {
                    let grads = match (method, finer_grads.as_ref()) {
                        (CamMethod::FinerCam, Some(f)) => f,
                        _ => &exact,
                    };
                    let (a, gr) = (image3(acts.get(l)?, i), image3(grads.get(l)?, i));
                    let raw = method.raw_map_with(a.view(), gr.view(), req.eigen_smooth);
                    scaled.push(scale_layer_map(&raw, in_h, in_w));
                    raws.push(raw.into_dyn());
                }
                Ok((aggregate(&scaled), raws))
            };
            for &method in &req.methods {
                let (cam, raw, rgb) = match method {
                    Method::Cam(m) => {
                        let (cam, raw) = cam_maps(m)?;
                        if m == CamMethod::GradCam {
                            gradcam_map = Some(cam.clone());
                        }
                        (cam, raw, None)
                    }
                    Method::Saliency => {
                        let gx = image3(exact.get(&model.input)?, i);
                        (magnitude_map(&gx), vec![gx.clone().into_dyn()], Some(deprocess(&gx)))
                    }
                    Method::GuidedBackprop => {
                        let gx = image3(guided_grads.as_ref().expect("guided pass ran").get(&model.input)?, i);
                        (magnitude_map(&gx), vec![gx.clone().into_dyn()], Some(deprocess(&gx)))
                    }
                    Method::GuidedGradCam => {
                        let gc = match &gradcam_map {
                            Some(m) => m.clone(),
                            None => cam_maps(CamMethod::GradCam)?.0,
                        };
                        let gb = image3(guided_grads.as_ref().expect("guided pass ran").get(&model.input)?, i);
                        let raw = &gb * &gc.view().insert_axis(Axis(0));
                        (magnitude_map(&raw), vec![raw.clone().into_dyn()], Some(deprocess(&raw)))
                    }
                };
                let used = if method.uses_layer() { layers.clone() } else { Vec::new() };
                results[i].explanations.push(Explanation {
                    class,
                    label: model.label(class),
                    method,
                    layers: used,
                    cam,
                    raw,
                    rgb,
                });
            }
        }
    }
    Ok(results)
}
