//! Running the model once and explaining any number of classes with any number of methods.

use super::full_grad::bias_layers;
pub use super::integrated_gradients::DEFAULT_STEPS;
use super::integrated_gradients::{black_baseline, integrated_gradients};
use super::methods::CamMethod;
use super::postprocess::{aggregate, deprocess, magnitude_map, minmax, scale_layer_map, scale_volume_map};
use super::smooth_grad::smooth_grad;
pub use super::smooth_grad::{DEFAULT_NOISE, DEFAULT_SAMPLES};
pub use super::target::Target;
use super::target::{class_row, Objective};
use super::{cam_layout, default_layer_with, LayerLayout, Method, TokenOptions};
use crate::error::{Error, Result};
use crate::graph::{BackwardOptions, Plan};
use crate::models::Model;
use crate::tensor::{softmax_row, Tensor};
use ndarray::{Array2, Array3, ArrayD, Axis, Ix3, IxDyn};
use std::collections::HashMap;

/// Which classes to explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassChoice {
    /// These classes for every image.
    Classes(Vec<usize>),
    /// The `k` highest-scoring classes of each image.
    Top(usize),
}

/// What to explain.
#[derive(Clone, Debug)]
pub struct Request {
    /// Target layers; empty means [`default_layer_with`].
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
    /// Inputs per forward pass for the methods that run the model many times per image (Score-CAM: one masked input
    /// per channel; Ablation-CAM: one ablated copy of the layer per channel). pytorch-grad-cam's default, 32.
    pub batch_size: usize,
    /// SmoothGrad's noisy copies per image ([`DEFAULT_SAMPLES`], at most [`MAX_COPIES`]).
    pub samples: usize,
    /// SmoothGrad's noise level: σ as a fraction of the image's value range ([`DEFAULT_NOISE`]).
    pub noise: f32,
    /// Integrated Gradients' path points ([`DEFAULT_STEPS`], at most [`MAX_COPIES`]).
    pub steps: usize,
    /// For a segmentation model (output `[N, classes, H, W]`): the pixels whose class logits are summed, any size
    /// (resized nearest-neighbour to the output; non-zero = in). `None`: the pixels predicted as the class.
    pub seg_mask: Option<Array2<f32>>,
    /// How token-shaped layers (vision transformers) become maps: the patch grid and the leading non-patch tokens,
    /// inferred when not given (see [`super::tokens`]).
    pub tokens: TokenOptions,
}

impl Request {
    /// Whether explaining one image runs the model on many copies of it: a method that does
    /// ([`Method::runs_copies`]), or `aug_smooth`'s six augmented inputs.
    pub fn runs_copies(&self) -> bool {
        self.aug_smooth || self.methods.iter().any(|m| m.runs_copies())
    }
}

/// Most copies of one image that `samples` and `steps` may ask for: each is a forward and a backward pass.
pub const MAX_COPIES: usize = 10_000;

/// [`Request::batch_size`]'s default.
pub const DEFAULT_PERTURBATION_BATCH: usize = 32;

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
            batch_size: DEFAULT_PERTURBATION_BATCH,
            samples: DEFAULT_SAMPLES,
            noise: DEFAULT_NOISE,
            steps: DEFAULT_STEPS,
            seg_mask: None,
            tokens: TokenOptions::default(),
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

/// `items` without repeats, each kept at its first place.
fn first_occurrences<T: PartialEq + Clone>(items: &[T]) -> Vec<T> {
    let mut unique: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !unique.contains(item) {
            unique.push(item.clone());
        }
    }
    unique
}

fn ranking(row: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx
}

/// Image `i` of a model input (or its gradient) as `[C, H, W]`; a volume `[C, D, H, W]` as its stacked slices
/// `[C, D·H, W]`, the form its maps take.
fn image3(t: &Tensor<f32>, i: usize) -> Array3<f32> {
    let item = t.index_axis(Axis(0), i);
    match *item.shape() {
        [c, d, h, w] => item.as_standard_layout().into_owned().into_shape_with_order((c, d * h, w)).expect("same size"),
        _ => item.to_owned().into_dimensionality::<Ix3>().expect("4-D or 5-D model input"),
    }
}

/// Explains a batch `x` (`[N, C, H, W]`, preprocessed) with `model`: one forward pass, then one backward sweep per
/// requested class (two when guided methods are asked for). On the CPU a small model's batch runs as its images, each
/// so explained, side by side (see [`crate::Graph::runs_items_apart`]): each image's results are then those it gets
/// alone, bit for bit.
pub fn explain(model: &Model, x: Tensor<f32>, req: &Request) -> Result<Vec<ImageResult>> {
    let n = x.shape().first().copied().unwrap_or(0);
    let g = &model.graph;
    if crate::tensor::has_non_finite(&x) {
        return Err(Error::NonFiniteInput { origin: format!("input '{}'", model.input), shape: x.shape().to_vec() });
    }
    // On the CPU a batch of a small model runs as its images, side by side on the threads (see
    // `Graph::runs_items_apart`); a graph traced for one item runs the batch one image at a time wherever it runs.
    // One traced for a fixed batch whose reshapes could not be untied at import runs that batch as it is: split, its
    // items would not fit.
    let apart = n > 1 && g.runs_items_apart(n);
    if apart || (n > 1 && !g.accepts_batch(n) && g.accepts_batch(1)) {
        // Each image copied out as it is explained, not all of them up front.
        let explain_item = |i: usize| explain(model, x.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned(), req);
        // Methods that run many copies of each image already fill the threads with one image: side by side, their
        // copies would take that memory once per thread.
        let explained: Vec<Vec<ImageResult>> = if apart && !req.runs_copies() {
            crate::graph::side_by_side(n, explain_item)?
        } else {
            (0..n).map(explain_item).collect::<Result<_>>()?
        };
        return Ok(explained.into_iter().flatten().collect());
    }
    // A volume [N, C, D, H, W]: maps are held as stacked slices [D·H, W]; the methods that resize or alter the input
    // itself are not ported to volumes.
    let volume_depth = (x.ndim() == 5).then(|| x.shape()[2]);
    if volume_depth.is_some() {
        let unported = |m: &Method| matches!(m, Method::FullGrad);
        if let Some(m) = req.methods.iter().find(|m| unported(m)) {
            return Err(Error::Unsupported(format!("{} is not available for volumes [N, C, D, H, W] yet", m.name())));
        }
        if req.aug_smooth {
            return Err(Error::Unsupported("aug_smooth is not available for volumes [N, C, D, H, W] yet".into()));
        }
    }
    if req.aug_smooth {
        if model.is_segmentation() {
            // The six augmented copies would need the region flipped and fixed from the original image.
            return Err(Error::Unsupported("aug_smooth is for classifiers, not segmentation outputs".into()));
        }
        return super::aug_smooth::explain_smoothed(model, x, req);
    }
    if req.methods.is_empty() {
        return Err(Error::InvalidArgument { name: "methods", why: "no method requested".into() });
    }
    for (what, n) in [("batch size", req.batch_size), ("samples", req.samples), ("steps", req.steps)] {
        if n == 0 || n > MAX_COPIES {
            return Err(Error::InvalidArgument {
                name: "copies",
                why: format!("{what} must be in 1..={MAX_COPIES}, got {n}"),
            });
        }
    }
    if !(req.noise.is_finite() && req.noise >= 0.0) {
        return Err(Error::InvalidArgument {
            name: "noise",
            why: format!("the noise level must be finite and non-negative, got {}", req.noise),
        });
    }
    let uses_layer = req.methods.iter().any(|m| m.uses_layer());
    let layers = if !uses_layer {
        Vec::new()
    } else if req.layers.is_empty() {
        vec![default_layer_with(g, &model.logits, &req.tokens)?]
    } else {
        // A layer named twice is explained once: the average of two equal maps is the map (found by the CLI
        // fuzzer: `--layer relu` sixteen times on a batch of 4101 made sixteen times the work).
        first_occurrences(&req.layers)
    };
    let layouts: Vec<LayerLayout> = layers
        .iter()
        .map(|l| {
            let id = g.find(l)?;
            let not_spatial =
                |why: String| Error::NotSpatial { layer: l.clone(), shape: g.value(id).shape.clone(), why };
            let layout = cam_layout(g, id, &req.tokens).map_err(not_spatial)?;
            // A volume's maps come from volume layers, an image's from image layers.
            match (layout, volume_depth) {
                (LayerLayout::Volume { .. }, None) => {
                    Err(not_spatial("a 5-D layer of a model whose input is not a volume".into()))
                }
                (LayerLayout::Volume { .. }, Some(_)) => Ok(layout),
                (_, Some(_)) => Err(not_spatial("the model takes volumes: its CAM layers are [N, C, D, H, W]".into())),
                _ => Ok(layout),
            }
        })
        .collect::<Result<_>>()?;
    let classes = model.classes();
    if let ClassChoice::Classes(cs) = &req.classes {
        if let Some(&c) = cs.iter().find(|&&c| c >= classes) {
            return Err(Error::ClassOutOfRange { class: c, classes });
        }
    }
    let needs_input = req.methods.iter().any(|m| m.needs_input_gradient());
    let needs_gradient = req.methods.iter().any(|m| m.needs_gradient());
    let mut wrt: Vec<&str> = Vec::new();
    if needs_gradient {
        wrt.extend(layers.iter().map(String::as_str));
    }
    if needs_input {
        wrt.push(&model.input);
    }
    // FullGrad reads the gradient at every bias layer's output.
    let full_grad_layers =
        if req.methods.contains(&Method::FullGrad) { bias_layers(g, g.find(&model.logits)?) } else { Vec::new() };
    wrt.extend(full_grad_layers.iter().map(|l| l.output.as_str()));
    let wants = |m: CamMethod| req.methods.contains(&Method::Cam(m));
    // Ablation-CAM re-runs the layers after each target: their plans, and the values they are fed.
    let suffixes: Vec<Plan> = if wants(CamMethod::AblationCam) {
        layers.iter().map(|l| g.suffix_plan(&[l], &[&model.logits])).collect::<crate::error::GraphResult<_>>()?
    } else {
        Vec::new()
    };
    let mut keep: Vec<String> = layers.clone();
    for s in &suffixes {
        keep.extend(s.feeds().iter().map(|&v| g.value(v).name.clone()));
    }
    let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
    let plan = g.plan(&[&model.logits], &wrt, &keep)?;
    let (in_h, in_w) = match volume_depth {
        Some(d) => (d * x.shape()[3], x.shape()[4]),
        None => (x.shape()[2], x.shape()[3]),
    };
    // Score-CAM masks the input itself.
    let input_copy = (wants(CamMethod::ScoreCam)
        || req
            .methods
            .iter()
            .any(|m| matches!(m, Method::FullGrad | Method::SmoothGrad | Method::IntegratedGradients)))
    .then(|| x.clone());
    let acts = g.forward(&plan, vec![(&model.input, x)])?;
    let logits = acts.get(&model.logits)?.clone();
    if logits.ndim() != 2 && logits.ndim() != 4 {
        return Err(Error::ModelInterface(format!(
            "the model's output '{}' has shape {:?}: class scores [N, classes] or a segmentation [N, classes, H, W] \
             is needed",
            model.logits,
            logits.shape()
        )));
    }
    if model.is_segmentation() && req.methods.contains(&Method::Cam(CamMethod::FinerCam)) {
        return Err(Error::Unsupported("finercam compares a class with its nearest classes: classifiers only".into()));
    }
    // Per image, a class summary (a segmentation's mean logit per class) for predictions and top-k.
    let rows: Vec<Vec<f32>> = logits.axis_iter(Axis(0)).map(|item| class_row(item.view())).collect();
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
            // A class named twice is explained once (as a layer named twice).
            ClassChoice::Classes(cs) => first_occurrences(cs),
            ClassChoice::Top(k) => ranking(row).into_iter().take((*k).max(1)).collect(),
        })
        .collect();
    // Per image, the objective of each class it explains (for a segmentation, the region is fixed here, from the
    // image's own prediction or the mask).
    let objectives: Vec<Vec<Objective>> = per_image
        .iter()
        .enumerate()
        .map(|(i, cs)| {
            let item = logits.index_axis(Axis(0), i);
            cs.iter().map(|&c| Objective::new(item.view(), c, req.target, req.seg_mask.as_ref())).collect()
        })
        .collect::<Result<_>>()?;
    let sign = if req.counterfactual { -1.0 } else { 1.0 };
    // Each objective's score on each altered copy, per (method, layer, image): measured once for all classes.
    let mut perturbed: HashMap<(CamMethod, usize, usize), Array2<f32>> = HashMap::new();
    if let (Some(input), true) = (&input_copy, wants(CamMethod::ScoreCam)) {
        let forward_only = g.inference_plan(&[&model.logits])?;
        for (li, l) in layers.iter().enumerate() {
            let a = acts.get(l)?;
            for (i, objs) in objectives.iter().enumerate() {
                let (image, act, batch) = (image3(input, i), layouts[li].image(a, i)?, req.batch_size);
                let depths = match (layouts[li], volume_depth) {
                    (LayerLayout::Volume { depth }, Some(d)) => Some((depth, d)),
                    _ => None,
                };
                let (image, act) = (image.view(), act.view());
                let scores = super::score::masked_scores(model, &forward_only, image, act, depths, objs, batch)?;
                perturbed.insert((CamMethod::ScoreCam, li, i), scores);
            }
        }
    }
    for (li, suffix) in suffixes.iter().enumerate() {
        // The layer first (the value that is ablated), then whatever else the later layers read.
        let layer = g.find(&layers[li])?;
        let mut feed_ids = vec![layer];
        feed_ids.extend(suffix.feeds().iter().copied().filter(|&v| v != layer));
        for (i, objs) in objectives.iter().enumerate() {
            let items: Vec<(&str, ArrayD<f32>)> = feed_ids
                .iter()
                .map(|&v| {
                    let name = g.value(v).name.as_str();
                    let value = acts.get(name)?;
                    // Each fed value is one image's slice of a batch; a value without the batch axis (computed
                    // from constants alone) cannot be repeated per copy.
                    if value.ndim() == 0 || value.shape()[0] != logits.shape()[0] {
                        return Err(Error::Unsupported(format!(
                            "Ablation-CAM: the layers after '{}' also read '{name}' of shape {:?}, which has no batch \
                             axis; choose another layer",
                            layers[li],
                            value.shape()
                        )));
                    }
                    Ok((name, value.index_axis(Axis(0), i).to_owned()))
                })
                .collect::<Result<_>>()?;
            let views: Vec<(&str, ndarray::ArrayViewD<'_, f32>)> = items.iter().map(|(n, t)| (*n, t.view())).collect();
            let axis = layouts[li].channel_axis();
            let scores = super::ablation::ablated_scores(model, suffix, &views, axis, objs, req.batch_size)?;
            perturbed.insert((CamMethod::AblationCam, li, i), scores);
        }
    }
    // SmoothGrad and Integrated Gradients, per (method, image, class): their copies serve every class.
    let mut path_maps: HashMap<(Method, usize, usize), Array3<f32>> = HashMap::new();
    let path_methods: Vec<Method> =
        req.methods.iter().copied().filter(|m| matches!(m, Method::SmoothGrad | Method::IntegratedGradients)).collect();
    if let (Some(input), false) = (&input_copy, path_methods.is_empty()) {
        let input_plan = g.plan(&[&model.logits], &[&model.input], &[])?;
        for (i, classes) in per_image.iter().enumerate() {
            let (image, objs, batch) = (image3(input, i), &objectives[i], req.batch_size);
            for &method in &path_methods {
                let maps = if method == Method::SmoothGrad {
                    let (samples, noise) = (req.samples, req.noise);
                    smooth_grad(model, &input_plan, image.view(), objs, sign, samples, noise, batch)?
                } else {
                    let baseline = black_baseline(model, image.shape());
                    let (base, steps) = (baseline.view(), req.steps);
                    integrated_gradients(model, &input_plan, image.view(), base, objs, sign, steps, batch)?
                };
                for (&c, m) in classes.iter().zip(maps) {
                    path_maps.insert((method, i, c), m);
                }
            }
        }
    }
    let rounds = per_image.iter().map(Vec::len).max().unwrap_or(0);
    let guided = req.methods.iter().any(|m| matches!(m, Method::GuidedBackprop | Method::GuidedGradCam));

    for round in 0..rounds {
        // One seed for the whole batch: image i's row is one-hot on its class of this round.
        let mut seed = Tensor::<f32>::zeros(IxDyn(logits.shape()));
        for (i, objs) in objectives.iter().enumerate() {
            let Some(o) = objs.get(round) else { continue };
            seed.index_axis_mut(Axis(0), i).assign(&o.seed(logits.index_axis(Axis(0), i), sign));
        }
        let exact = if needs_gradient { Some(acts.backward(vec![(&model.logits, seed.clone())])?) } else { None };
        // Finer-CAM follows a target of its own: one more backward pass when it is asked for.
        let finer_grads = if req.methods.contains(&Method::Cam(CamMethod::FinerCam)) {
            let mut finer = Tensor::<f32>::zeros(IxDyn(logits.shape()));
            for (i, cs) in per_image.iter().enumerate() {
                let Some(&c) = cs.get(round) else { continue };
                let mut item = finer.index_axis_mut(Axis(0), i);
                for (s, v) in item.iter_mut().zip(super::finer::seed(&rows[i], c)) {
                    *s = sign * v;
                }
            }
            Some(acts.backward(vec![(&model.logits, finer)])?)
        } else {
            None
        };
        let guided_grads = if guided {
            Some(acts.backward_with(
                vec![(&model.logits, seed)],
                BackwardOptions { filter: Some(&super::guided::GuidedRectifiers), ..Default::default() },
            )?)
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
                for (li, l) in layers.iter().enumerate() {
                    let a = layouts[li].image(acts.get(l)?, i)?;
                    let raw = if method.runs_model() {
                        let column = perturbed[&(method, li, i)].column(round).to_owned();
                        let w = match method {
                            CamMethod::ScoreCam => super::score::weights(column.view(), sign),
                            _ => {
                                let original = objectives[i][round].score(logits.index_axis(Axis(0), i));
                                super::ablation::weights(original, column.view(), sign)?
                            }
                        };
                        CamMethod::raw_map_weighted(a.view(), &w, req.eigen_smooth)?
                    } else if method.needs_gradient() {
                        let grads = match (method, finer_grads.as_ref(), exact.as_ref()) {
                            (CamMethod::FinerCam, Some(f), _) => f,
                            (_, _, Some(e)) => e,
                            _ => return Err(Error::Internal("no backward pass ran".into())),
                        };
                        let gr = layouts[li].image(grads.get(l)?, i)?;
                        method.raw_map_with(a.view(), gr.view(), req.eigen_smooth)?
                    } else {
                        method.raw_map_with(a.view(), Array3::zeros(a.raw_dim()).view(), req.eigen_smooth)?
                    };
                    match (layouts[li], volume_depth) {
                        (LayerLayout::Volume { depth }, Some(d)) => {
                            scaled.push(scale_volume_map(&raw, depth, d, in_h / d, in_w));
                            let (rows, w) = raw.dim();
                            raws.push(
                                raw.into_shape_with_order((depth, rows / depth, w))
                                    .map_err(|e| Error::Internal(format!("volume map of {rows} rows: {e}")))?
                                    .into_dyn(),
                            );
                        }
                        _ => {
                            scaled.push(scale_layer_map(&raw, in_h, in_w));
                            raws.push(raw.into_dyn());
                        }
                    }
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
                        let gx = image3(exact.as_ref().expect("saliency needs the gradient").get(&model.input)?, i);
                        (magnitude_map(&gx), vec![gx.clone().into_dyn()], Some(deprocess(&gx)))
                    }
                    Method::FullGrad => {
                        let (Some(input), Some(grads)) = (&input_copy, exact.as_ref()) else {
                            return Err(Error::Internal("FullGrad's backward pass did not run".into()));
                        };
                        let (xi, gx) = (image3(input, i), image3(grads.get(&model.input)?, i));
                        let layer_grads: Vec<Array3<f32>> = full_grad_layers
                            .iter()
                            .map(|l| Ok(image3(grads.get(&l.output)?, i)))
                            .collect::<Result<_>>()?;
                        let layers = full_grad_layers.iter().zip(&layer_grads).map(|(l, g)| (&l.bias, g.view()));
                        let raw = super::full_grad::raw_map(xi.view(), gx.view(), layers);
                        (minmax(&raw), vec![raw.into_dyn()], None)
                    }
                    Method::SmoothGrad | Method::IntegratedGradients => {
                        let Some(m) = path_maps.remove(&(method, i, class)) else {
                            return Err(Error::Internal(format!("no {} map", method.name())));
                        };
                        (magnitude_map(&m), vec![m.clone().into_dyn()], Some(deprocess(&m)))
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
