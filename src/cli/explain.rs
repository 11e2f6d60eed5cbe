//! `gradcam explain`: overlays, maps and a summary (or JSON lines) for each input.

use super::ModelArgs;
use anyhow::Context;
use clap::Args;
use gradcam::cam::postprocess::resize_bilinear;
use gradcam::cam::{explain, localize, ClassChoice, Explanation, ImageResult, Method, Request, Target, TokenOptions};
use gradcam::input::{load_image_limited, load_npy};
use gradcam::render::{draw_box, gradient_image, overlay, save_png, Colormap};
use gradcam::{Model, Tensor};
use image::RgbImage;
use ndarray::{Array2, Axis};
use rayon::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Image files (PNG, JPEG, …) or .npy NCHW f32 tensors (already preprocessed).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Target layer (repeatable; several are averaged). Default: the last spatial activation before the classifier.
    #[arg(long = "layer", value_name = "NAME")]
    pub layers: Vec<String>,
    /// Class to explain (repeatable). Default: the top-1 prediction.
    #[arg(long = "class", value_name = "ID")]
    pub classes: Vec<usize>,
    /// Explain the K highest-scoring classes.
    #[arg(long, value_name = "K", conflicts_with = "classes")]
    pub top: Option<usize>,
    /// Segmentation models (output [N, classes, H, W]): explain the sum of class C's logits over the pixels the
    /// model predicts as C (pytorch-grad-cam's SemanticSegmentationTarget), or over --mask.
    #[arg(long, value_name = "C", conflicts_with_all = ["classes", "top"])]
    pub seg_class: Option<usize>,
    /// With --seg-class: the region whose logits are summed, as an image (its non-black pixels; resized to the
    /// model's output).
    #[arg(long, value_name = "MASK", requires = "seg_class")]
    pub mask: Option<PathBuf>,
    /// Method (repeatable): gradcam, gradcampp, xgradcam, hirescam, layercam, gradcam-elementwise, eigencam,
    /// eigengradcam, fem, randomcam, finercam, scorecam, ablationcam, saliency, guided-backprop, guided-gradcam,
    /// fullgrad, smoothgrad, integrated-gradients.
    #[arg(long = "method", value_name = "NAME", default_value = "gradcam")]
    pub methods: Vec<String>,
    /// Explain what speaks against the class (negated gradients).
    #[arg(long)]
    pub counterfactual: bool,
    /// pytorch-grad-cam's eigen_smooth: each CAM map is the first principal component of the terms it would sum
    /// (w_k·A_k, G_k⊙A_k, …), signed to agree with the activations' channel sum. Less noise, more blur.
    #[arg(long)]
    pub eigen_smooth: bool,
    /// pytorch-grad-cam's aug_smooth: each CAM map averaged over six augmented inputs (horizontal flip × input
    /// multiplied by 0.9, 1, 1.1), flipped back. Six times the work; steadier maps.
    #[arg(long)]
    pub aug_smooth: bool,
    /// Explain the class's softmax probability instead of its logit (pytorch-grad-cam's
    /// ClassifierOutputSoftmaxTarget): evidence shared with competing classes counts less.
    #[arg(long)]
    pub target_prob: bool,
    /// SmoothGrad: noisy copies of each image (1 to 10000; default 50, the paper's).
    #[arg(long, value_name = "N", default_value_t = gradcam::cam::DEFAULT_SAMPLES)]
    pub samples: usize,
    /// SmoothGrad: the noise's standard deviation as a fraction of the image's value range (default 0.15, the
    /// paper's 15 %).
    #[arg(long, value_name = "FRACTION", default_value_t = gradcam::cam::DEFAULT_NOISE)]
    pub noise: f32,
    /// Integrated Gradients: points on the path from the black baseline (Gauss–Legendre, Captum's default
    /// quadrature; 1 to 10000; default 50).
    #[arg(long, value_name = "N", default_value_t = gradcam::cam::DEFAULT_STEPS)]
    pub steps: usize,
    /// Heat-map colours: jet, turbo, viridis.
    #[arg(long, default_value = "jet")]
    pub colormap: String,
    /// Weight of the heat map in the overlay, in [0, 1].
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f32,
    /// Directory for the outputs (created if missing).
    #[arg(long, default_value = "gradcam-out", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Also write the map (`cam`, input resolution, [0, 1]) and the raw map (`raw`) as .npy files.
    #[arg(long)]
    pub npy: bool,
    /// Print one JSON object per input on stdout instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Images explained together in one batch (default: as many as fit in 1 GiB of activations, at most 16).
    /// Inputs and .npy batches of any size are processed in batches of this many. Score-CAM, Ablation-CAM, SmoothGrad
    /// and Integrated Gradients also run their altered copies of each image this many at a time (default 32, as
    /// pytorch-grad-cam).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Stop at the first input that fails (by default every input is tried, each failure reported, and the exit
    /// status is non-zero at the end).
    #[arg(long)]
    pub fail_fast: bool,
    /// Largest image accepted, in pixels (checked from the file's header before decoding; default 64 Mpx).
    #[arg(long, value_name = "PIXELS", default_value_t = gradcam::input::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Draw the localization box (largest region above 15 % of the peak) on the overlay.
    #[arg(long = "box")]
    pub draw_box: bool,
    /// Token layers of vision transformers ([N, T, C]): the patch grid, `auto` (from the token count and the input's
    /// aspect ratio) or HxW such as 14x14. Also tells a channels-last [N, H, W, C] layer from [N, C, H, W].
    #[arg(long, value_name = "auto|HxW", default_value = "auto")]
    pub tokens: String,
    /// Leading tokens that are not patches (class, distillation, register tokens); default: every token beyond the
    /// grid (1 for ViT, 2 for distilled DeiT).
    #[arg(long, value_name = "N")]
    pub skip_tokens: Option<usize>,
}

/// One image to explain: the model input and what to draw on.
struct Item {
    /// Name used for output files.
    stem: String,
    /// Shown in messages and JSON.
    input: String,
    x: Tensor<f32>,
    original: RgbImage,
    /// For a volume: `(D, H, W)` and the montage's enlargement (its maps are drawn as a montage of slices).
    volume: Option<([usize; 3], usize)>,
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "input".into())
}

/// Reads one INPUT into items (a .npy batch gives several).
fn read_input(path: &Path, model: &Model, max_pixels: u64) -> anyhow::Result<Vec<Item>> {
    if model.is_signal() {
        return read_signal(path, model);
    }
    if model.volume_depth().is_some() {
        return read_volume(path, model);
    }
    let is_npy = gradcam::input::is_npy(path);
    if !is_npy {
        let img = load_image_limited(path, model.input_size, max_pixels)?;
        let x = model.normalization.apply(&img.pixels);
        return Ok(vec![Item {
            stem: stem(path),
            input: path.display().to_string(),
            x,
            original: img.original,
            volume: None,
        }]);
    }
    let t = load_npy(path)?;
    let [h, w] = model.input_size;
    if t.shape()[1..] != [3, h, w] {
        anyhow::bail!(
            "{}: tensor shape {:?} does not fit the model's input [N, 3, {h}, {w}]",
            path.display(),
            t.shape()
        );
    }
    let n = t.shape()[0];
    if n == 0 {
        anyhow::bail!("{}: the tensor holds no image (shape {:?})", path.display(), t.shape());
    }
    Ok((0..n)
        .map(|i| {
            let x = t.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned();
            let norm = model.normalization;
            let original = RgbImage::from_fn(w as u32, h as u32, |px, py| {
                image::Rgb(std::array::from_fn(|c| {
                    let v = x[[0, c, py as usize, px as usize]] * norm.std[c] + norm.mean[c];
                    gradcam::render::to_byte(v * 255.0)
                }))
            });
            let stem = if n == 1 { stem(path) } else { format!("{}_{i}", stem(path)) };
            Item { stem, input: path.display().to_string(), x, original, volume: None }
        })
        .collect())
}

/// Reads a `.npy` of signals `[N, C, L]` for a signal model: each becomes `[1, C, 1, L]`, drawn as a line plot
/// for the overlays.
fn read_signal(path: &Path, model: &Model) -> anyhow::Result<Vec<Item>> {
    let is_npy = gradcam::input::is_npy(path);
    let id = model.graph.find(&model.input)?;
    let (c, l) = match model.graph.value(id).shape.as_slice() {
        &[_, c, 1, l] => (c, l),
        other => anyhow::bail!("internal: signal model input of shape {other:?}"),
    };
    if !is_npy {
        anyhow::bail!("{}: this model takes signals [N, {c}, {l}]: give them as a .npy file", path.display());
    }
    let t = gradcam::input::read_npy_f32(path)?;
    if t.ndim() != 3 || t.shape()[1..] != [c, l] {
        anyhow::bail!("{}: tensor shape {:?} does not fit the model's input [N, {c}, {l}]", path.display(), t.shape());
    }
    let n = t.shape()[0];
    if n == 0 {
        anyhow::bail!("{}: the tensor holds no signal (shape {:?})", path.display(), t.shape());
    }
    Ok((0..n)
        .map(|i| {
            let signal = t.index_axis(Axis(0), i).into_dimensionality::<ndarray::Ix2>().expect("3-D tensor");
            let x = signal.to_owned().insert_axis(Axis(1)).insert_axis(Axis(0)).into_dyn();
            let original = gradcam::render::plot_signal(signal);
            let stem = if n == 1 { stem(path) } else { format!("{}_{i}", stem(path)) };
            Item { stem, input: path.display().to_string(), x, original, volume: None }
        })
        .collect())
}

/// Reads a `.npy` of volumes `[N, C, D, H, W]` for a volume model; each is drawn as a montage of its slices (the
/// channel mean, grey) for the overlays.
fn read_volume(path: &Path, model: &Model) -> anyhow::Result<Vec<Item>> {
    let is_npy = gradcam::input::is_npy(path);
    let id = model.graph.find(&model.input)?;
    let want = model.graph.value(id).shape[1..].to_vec();
    if !is_npy {
        anyhow::bail!("{}: this model takes volumes [N, {}]: give them as a .npy file", path.display(), dims(&want));
    }
    let t = gradcam::input::read_npy_f32(path)?;
    if t.ndim() != 5 || t.shape()[1..] != want[..] {
        anyhow::bail!(
            "{}: tensor shape {:?} does not fit the model's input [N, {}]",
            path.display(),
            t.shape(),
            dims(&want)
        );
    }
    let n = t.shape()[0];
    if n == 0 {
        anyhow::bail!("{}: the tensor holds no volume (shape {:?})", path.display(), t.shape());
    }
    let (d, h, w) = (want[1], want[2], want[3]);
    let scale = gradcam::render::montage_scale(gradcam::render::montage_grid(d).1 * w);
    Ok((0..n)
        .map(|i| {
            let x = t.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned();
            let mean =
                x.index_axis(Axis(0), 0).mean_axis(Axis(0)).expect("channels").into_dimensionality().expect("3-D");
            let grid = gradcam::render::enlarge(&gradcam::render::montage(mean.view()), scale);
            let original = image::DynamicImage::ImageLuma8(gradcam::render::grey_picture(&grid)).to_rgb8();
            let stem = if n == 1 { stem(path) } else { format!("{}_{i}", stem(path)) };
            Item { stem, input: path.display().to_string(), x, original, volume: Some(([d, h, w], scale)) }
        })
        .collect())
}

/// `[a, b, c]` as `a, b, c`.
fn dims(shape: &[usize]) -> String {
    shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
}

fn write_npy(path: &Path, a: &ndarray::ArrayD<f32>) -> anyhow::Result<()> {
    Ok(gradcam::output::write_npy(path, a)?)
}

/// Bytes per pixel an overlay takes while it is made: the map at its size (f32), the picture (RGB) and the encoded
/// file (at most about as large).
const OVERLAY_BYTES_PER_PIXEL: u64 = 12;

/// The size an overlay of a `w × h` image is drawn at: the image's own, or scaled down (aspect kept) so that it
/// takes at most `room` bytes.
fn overlay_size(w: u32, h: u32, room: u64) -> (u32, u32) {
    let need = u64::from(w) * u64::from(h) * OVERLAY_BYTES_PER_PIXEL;
    if need <= room {
        return (w, h);
    }
    let f = (room as f64 / need as f64).sqrt();
    (((w as f64 * f) as u32).max(1), ((h as f64 * f) as u32).max(1))
}

/// Files written for one explanation, and where it points.
struct Written {
    overlay: PathBuf,
    /// Size of the overlay when it was scaled down to fit the memory budget.
    downscaled: Option<[u32; 2]>,
    cam_npy: Option<PathBuf>,
    raw_npy: Vec<PathBuf>,
    peak: [usize; 2],
    bbox: [usize; 4],
}

/// Draws and writes one explanation. The overlay is drawn at the image's size while it fits in `room` bytes of the
/// memory budget, else scaled down (peak and box are still given in the image's pixels).
fn write_explanation(
    args: &ExplainArgs,
    item: &Item,
    e: &Explanation,
    colormap: Colormap,
    room: u64,
) -> anyhow::Result<Written> {
    let (iw, ih) = item.original.dimensions();
    let (w, h) = overlay_size(iw, ih, room);
    let scaled;
    let background = if (w, h) == (iw, ih) {
        &item.original
    } else {
        scaled = image::imageops::resize(&item.original, w, h, image::imageops::FilterType::Triangle);
        &scaled
    };
    let suffix = if args.counterfactual { "_cf" } else { "" };
    // Smoothed maps get names of their own: a run with and one without --eigen-smooth do not overwrite each other.
    let smoothed = if args.eigen_smooth && e.method.eigen_smoothable() { "_es" } else { "" };
    let augmented = if args.aug_smooth && e.method.aug_smoothable() { "_as" } else { "" };
    let prob = if args.target_prob { "_prob" } else { "" };
    let base = format!("{}_{}_{}{prob}{smoothed}{augmented}{suffix}", item.stem, e.class, e.method.name());
    // A volume's map (stacked slices [D·H, W]) is drawn as the montage its picture is.
    let at_size: Array2<f32> = match item.volume {
        Some(([d, sh, sw], scale)) => {
            let stack = e.cam.view().into_shape_with_order((d, sh, sw)).map_err(|e| anyhow::anyhow!("map: {e}"))?;
            let grid = gradcam::render::enlarge(&gradcam::render::montage(stack), scale);
            resize_bilinear(&grid, h as usize, w as usize)
        }
        None => resize_bilinear(&e.cam, h as usize, w as usize),
    };
    let mut loc = localize(&at_size);
    let mut picture = match (&e.rgb, e.method) {
        (Some(rgb), Method::GuidedBackprop | Method::GuidedGradCam) if rgb.shape()[0] == 3 => gradient_image(rgb, w, h),
        _ => overlay(background, &at_size, colormap, args.alpha),
    };
    if args.draw_box {
        let thickness = ((w.min(h) / 150) as usize).max(2);
        draw_box(&mut picture, loc.bbox, [0, 255, 0], thickness);
    }
    let overlay_path = args.out_dir.join(format!("{base}.png"));
    save_png(&picture, &overlay_path)?;
    let (mut cam_npy, mut raw_npy) = (None, Vec::new());
    if args.npy {
        let p = args.out_dir.join(format!("{base}_cam.npy"));
        let cam = match item.volume {
            Some((shape, _)) => e.cam.clone().into_shape_with_order(shape.to_vec())?.into_dyn(),
            None => e.cam.clone().into_dyn(),
        };
        write_npy(&p, &cam)?;
        cam_npy = Some(p);
        for (k, raw) in e.raw.iter().enumerate() {
            let name = if e.raw.len() == 1 { format!("{base}_raw.npy") } else { format!("{base}_raw{k}.npy") };
            let p = args.out_dir.join(name);
            write_npy(&p, raw)?;
            raw_npy.push(p);
        }
    }
    let downscaled = ((w, h) != (iw, ih)).then_some([w, h]);
    if downscaled.is_some() {
        // Back to the image's pixels: x by iw/w, y by ih/h (peak is (x, y); box is [x0, y0, x1, y1]); a pixel maps
        // to the centre of the block it stands for.
        let (sx, sy) = (iw as f64 / w as f64, ih as f64 / h as f64);
        let fx = |v: usize| (((v as f64 + 0.5) * sx) as usize).min(iw as usize - 1);
        let fy = |v: usize| (((v as f64 + 0.5) * sy) as usize).min(ih as usize - 1);
        loc.peak = [fx(loc.peak[0]), fy(loc.peak[1])];
        // The box covers whole blocks: its first pixel's block from the start, its last pixel's to the end.
        let lo = |v: usize, s: f64| (v as f64 * s).floor() as usize;
        let hi = |v: usize, s: f64, size: u32| (((v + 1) as f64 * s).ceil() as usize).clamp(1, size as usize) - 1;
        let [x0, y0, x1, y1] = loc.bbox;
        loc.bbox = [lo(x0, sx), lo(y0, sy), hi(x1, sx, iw), hi(y1, sy, ih)];
    }
    Ok(Written { overlay: overlay_path, downscaled, cam_npy, raw_npy, peak: loc.peak, bbox: loc.bbox })
}

fn report(
    args: &ExplainArgs,
    model: &Model,
    item: &Item,
    result: &ImageResult,
    written: &[Written],
    auto_layer: bool,
) -> anyhow::Result<()> {
    let layer = (!result.layers.is_empty()).then(|| result.layers.join("+"));
    if args.json {
        let predictions: Vec<_> = result
            .predictions
            .iter()
            .map(|p| json!({"class": p.class, "label": p.label, "prob": p.prob, "logit": p.logit}))
            .collect();
        let explanations: Vec<_> = result
            .explanations
            .iter()
            .zip(written)
            .map(|(e, w)| {
                json!({
                    "class": e.class, "label": e.label, "method": e.method.name(),
                    "layer": (!e.layers.is_empty()).then(|| e.layers.join("+")),
                    "peak": w.peak, "bbox": w.bbox,
                    "overlay": w.overlay.display().to_string(),
                    "overlay_downscaled_to": w.downscaled,
                    "cam_npy": w.cam_npy.as_ref().map(|p| p.display().to_string()),
                    "raw_npy": w.raw_npy.first().map(|p| p.display().to_string()),
                    "counterfactual": args.counterfactual,
                    "eigen_smooth": args.eigen_smooth && e.method.eigen_smoothable(),
                    "aug_smooth": args.aug_smooth && e.method.aug_smoothable(),
                    "target": if args.target_prob { "probability" } else { "logit" },
                    "samples": (e.method == Method::SmoothGrad).then_some(args.samples),
                    "noise": (e.method == Method::SmoothGrad).then_some(args.noise),
                    "steps": (e.method == Method::IntegratedGradients).then_some(args.steps),
                })
            })
            .collect();
        let (w, h) = item.original.dimensions();
        let obj = json!({
            "input": item.input, "model": model.name, "layer": layer,
            "input_size": [w, h], "cam_size": [model.input_size[1], model.input_size[0]],
            "normalization": {
                "mean": model.normalization.mean, "std": model.normalization.std,
                "assumed": model.normalization_assumed,
            },
            "predictions": predictions, "explanations": explanations,
        });
        say!("{obj}");
        return Ok(());
    }
    say!("{} — {}", item.input, model.name);
    if model.normalization_assumed && !model.is_signal() {
        say!("  (pixels normalized with ImageNet's mean and std: the model file does not say; --mean/--std to change)");
    }
    for p in &result.predictions {
        say!("  {:>5.1}%  {:>4}  {}", 100.0 * p.prob, p.class, p.label);
    }
    if let Some(l) = layer {
        let g = &model.graph;
        let layer_norm =
            g.find(&l).ok().and_then(|id| g.producer(id)).is_some_and(|n| n.op.op_type() == "LayerNormalization");
        let how = match (auto_layer, layer_norm) {
            (false, _) => "",
            (true, true) => " (chosen: the last normalization that attention reads)",
            (true, false) => " (chosen: last spatial activation before the classifier)",
        };
        say!("  layer: {l}{how}");
    }
    for (e, w) in result.explanations.iter().zip(written) {
        let cf = if args.counterfactual { " counterfactual" } else { "" };
        say!(
            "  {}{cf} for {} ({}): peak ({}, {}), box [{}, {}, {}, {}] → {}",
            e.method.name(),
            e.class,
            e.label,
            w.peak[0],
            w.peak[1],
            w.bbox[0],
            w.bbox[1],
            w.bbox[2],
            w.bbox[3],
            w.overlay.display()
        );
        if let Some([dw, dh]) = w.downscaled {
            say!("    (overlay drawn at {dw}×{dh} to stay within the memory budget, --max-memory)");
        }
    }
    Ok(())
}

pub fn run(args: ExplainArgs) -> anyhow::Result<()> {
    let methods = args.methods.iter().map(|m| Method::parse(m)).collect::<Result<Vec<_>, _>>()?;
    let colormap = Colormap::parse(&args.colormap)?;
    if !(0.0..=1.0).contains(&args.alpha) {
        anyhow::bail!("--alpha must be in [0, 1], got {}", args.alpha);
    }
    let model = args.model.load_for(args.inputs.first().map(PathBuf::as_path))?;
    if args.top == Some(0) {
        anyhow::bail!("--top must be at least 1");
    }
    if args.seg_class.is_some() && !model.is_segmentation() {
        anyhow::bail!("--seg-class is for segmentation models (output [N, classes, H, W]); use --class");
    }
    let seg_mask = match &args.mask {
        Some(path) => {
            let img = gradcam::input::decode_image_limited(path, args.max_pixels)?;
            let (w, h) = img.dimensions();
            Some(Array2::from_shape_fn((h as usize, w as usize), |(y, x)| {
                let p = img.get_pixel(x as u32, y as u32).0;
                if p.iter().any(|&v| v > 0) {
                    1.0
                } else {
                    0.0
                }
            }))
        }
        None => None,
    };
    let classes = match (args.seg_class, args.top, args.classes.is_empty()) {
        (Some(c), _, _) => ClassChoice::Classes(vec![c]),
        (None, Some(k), _) => ClassChoice::Top(k),
        (None, None, false) => ClassChoice::Classes(args.classes.clone()),
        (None, None, true) => ClassChoice::Top(1),
    };
    let request = Request {
        layers: args.layers.clone(),
        classes,
        methods,
        counterfactual: args.counterfactual,
        eigen_smooth: args.eigen_smooth,
        aug_smooth: args.aug_smooth,
        target: if args.target_prob { Target::Probability } else { Target::Logit },
        batch_size: gradcam::cam::DEFAULT_PERTURBATION_BATCH,
        samples: args.samples,
        noise: args.noise,
        steps: args.steps,
        seg_mask,
        tokens: TokenOptions { grid: TokenOptions::parse_grid(&args.tokens)?, skip: args.skip_tokens },
    };
    let mut batch = super::batch_size(args.batch_size, &model.graph, args.model.max_memory)?;
    // Score-CAM, Ablation-CAM, SmoothGrad and Integrated Gradients run many altered copies of each image,
    // `--batch-size` at a time (default 32, or
    // fewer if the budget says so), beside the batch of images; the default then explains one image at a time (the
    // copies are the work).
    if args.samples == 0 || args.samples > gradcam::cam::MAX_COPIES {
        anyhow::bail!("--samples must be in 1..={}, got {}", gradcam::cam::MAX_COPIES, args.samples);
    }
    if args.steps == 0 || args.steps > gradcam::cam::MAX_COPIES {
        anyhow::bail!("--steps must be in 1..={}, got {}", gradcam::cam::MAX_COPIES, args.steps);
    }
    if !(args.noise.is_finite() && args.noise >= 0.0) {
        anyhow::bail!("--noise must be finite and non-negative, got {}", args.noise);
    }
    // Methods that run many altered copies of each image.
    let runs_model = request.methods.iter().any(|m| m.runs_copies());
    let copies = match (runs_model, args.batch_size) {
        (false, _) => 0,
        (true, Some(b)) => b,
        (true, None) => {
            let copies = batch.saturating_sub(1).clamp(1, gradcam::cam::DEFAULT_PERTURBATION_BATCH);
            batch = 1;
            copies
        }
    };
    let request = Request { batch_size: copies.max(1), ..request };
    // --aug-smooth runs each image's six augmented copies as a batch of their own, beside the batch: the default
    // batch leaves room for them.
    if args.aug_smooth && args.batch_size.is_none() {
        batch = batch.saturating_sub(6).max(1);
    }
    let in_flight = batch.saturating_add(if args.aug_smooth { 6 } else { 0 }).saturating_add(copies);
    if args.aug_smooth || runs_model {
        super::check_budget(&model.graph, in_flight, args.model.max_memory)?;
    }
    // What the budget leaves for drawing once the weights and a batch's activations are counted.
    let room = super::budget(&model.graph, args.model.max_memory)
        .saturating_sub(model.graph.constant_bytes() as u64)
        .saturating_sub(super::per_item_bytes(&model.graph).saturating_mul(in_flight as u64));
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create output directory {}", args.out_dir.display()))?;
    let mut pending: Vec<Item> = Vec::with_capacity(batch);
    // Inputs with the same file stem (a/img.png, b/img.png) get distinct output names.
    let mut stems = std::collections::HashMap::new();
    // One input alone fails as before: one line, non-zero exit. Several are each tried, unless --fail-fast.
    let mut run = Run { fail_fast: args.fail_fast || args.inputs.len() == 1, failed: 0, stdout_closed: false };
    for path in &args.inputs {
        let items = match read_input(path, &model, args.max_pixels) {
            Ok(items) => items,
            Err(e) => {
                run.failure(args.json, &path.display().to_string(), e)?;
                continue;
            }
        };
        for mut item in items {
            item.stem = gradcam::output::unique_stem(&mut stems, &item.stem);
            pending.push(item);
            if pending.len() == batch {
                explain_batch(&args, &model, &request, colormap, room, &mut pending, &mut run)?;
            }
        }
    }
    explain_batch(&args, &model, &request, colormap, room, &mut pending, &mut run)?;
    if run.failed > 0 {
        anyhow::bail!("{} of {} inputs failed", run.failed, args.inputs.len());
    }
    Ok(())
}

/// How a run with several inputs is going.
struct Run {
    fail_fast: bool,
    /// Inputs (or items of a .npy batch) that failed.
    failed: usize,
    /// Stdout was closed (`| head -1`): the files are still written for every input.
    stdout_closed: bool,
}

impl Run {
    /// Records a failed input: an error line (a JSON line with `--json`) and the run goes on — or, fail-fast, the
    /// error ends the run.
    fn failure(&mut self, json: bool, input: &str, e: anyhow::Error) -> anyhow::Result<()> {
        if self.fail_fast {
            // Named once: most errors already name their file.
            let named = super::one_line(&e).contains(input);
            return Err(if named { e } else { e.context(input.to_string()) });
        }
        self.failed += 1;
        if json && !self.stdout_closed {
            let line = json!({"input": input, "error": super::one_line(&e)});
            self.print(|| {
                say!("{line}");
                Ok(())
            });
        } else {
            eprintln!("error: {input}: {}", super::one_line(&e));
        }
        Ok(())
    }

    /// Runs `print` (stdout output) unless stdout was closed; a closed pipe is remembered, not an error.
    fn print(&mut self, print: impl FnOnce() -> anyhow::Result<()>) {
        if self.stdout_closed {
            return;
        }
        if let Err(e) = print() {
            if e.downcast_ref::<std::io::Error>().is_none_or(|io| io.kind() != std::io::ErrorKind::BrokenPipe) {
                eprintln!("error: writing to stdout: {e:#}");
            }
            self.stdout_closed = true;
        }
    }
}

/// Explains `items` (emptied) as one batch and writes each item's files and report. If the batch fails, each
/// item is tried alone, so that one bad input does not take the others down.
#[allow(clippy::too_many_arguments)]
fn explain_batch(
    args: &ExplainArgs,
    model: &Model,
    request: &Request,
    colormap: Colormap,
    room: u64,
    items: &mut Vec<Item>,
    run: &mut Run,
) -> anyhow::Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    let views: Vec<_> = items.iter().map(|i| i.x.view()).collect();
    let x = ndarray::concatenate(Axis(0), &views).context("stacking the batch")?;
    let batch = explain(model, x, request);
    let results: Vec<anyhow::Result<ImageResult>> = match batch {
        Ok(results) => results.into_iter().map(Ok).collect(),
        Err(e) if items.len() == 1 || run.fail_fast => vec![Err(e.into())],
        Err(_) => items.iter().map(|i| Ok(explain(model, i.x.clone(), request)?.remove(0))).collect(),
    };
    let write = |item: &Item, result: anyhow::Result<ImageResult>| {
        result.and_then(|result| {
            let written = result
                .explanations
                .iter()
                .map(|e| write_explanation(args, item, e, colormap, room))
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((result, written))
        })
    };
    // Drawing and PNG encoding take longer than a small model's pass: the items' pictures are made side by side
    // when each item's fit the budget at full size with one item per thread (the same pictures as one at a time),
    // then reported in order. A fail-fast run writes one item at a time, so nothing is written after a failure.
    let threads = rayon::current_num_threads().max(1) as u64;
    let side_by_side = !run.fail_fast
        && items.len() > 1
        && items.iter().all(|i| {
            let (w, h) = i.original.dimensions();
            overlay_size(w, h, room / threads) == (w, h)
        });
    let made: Box<dyn Iterator<Item = anyhow::Result<(ImageResult, Vec<Written>)>>> = if side_by_side {
        let made: Vec<_> = items.par_iter().zip(results).map(|(item, result)| write(item, result)).collect();
        Box::new(made.into_iter())
    } else {
        // Lazily, item by item.
        Box::new(items.iter().zip(results).map(|(item, result)| write(item, result)))
    };
    for (item, done) in items.iter().zip(made) {
        match done {
            Ok((result, written)) => {
                run.print(|| report(args, model, item, &result, &written, args.layers.is_empty()));
            }
            Err(e) => run.failure(args.json, &item.input, e)?,
        }
    }
    items.clear();
    Ok(())
}
