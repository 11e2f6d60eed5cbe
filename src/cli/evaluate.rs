//! `gradcam evaluate`: every image × every method × every metric — a table of mean ± std per method and metric,
//! or JSON lines per image.

use super::ModelArgs;
use anyhow::Context;
use clap::Args;
use gradcam::cam::{explain, ClassChoice, Method, Request, Target};
use gradcam::input::load_image_limited;
use gradcam::metrics::{self, BoxXyxy, Scorer};
use gradcam::Model;
use ndarray::{Axis, Ix3};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct EvaluateArgs {
    /// Images, or directories of images (their PNG, JPEG, GIF, BMP, WebP and TIFF files, in name order).
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Method to evaluate (repeatable; any `explain` method).
    #[arg(long = "method", value_name = "NAME", default_value = "gradcam")]
    pub methods: Vec<String>,
    /// Metric (repeatable): avg-drop, avg-increase (Grad-CAM++'s Average Drop % and % Increase in Confidence),
    /// drop-in-confidence, increase-in-confidence (pytorch-grad-cam's), deletion, insertion (RISE AUCs), road-morf,
    /// road-lerf, road-combined (pytorch-grad-cam's ROAD averaged over percentiles 10…90), and with --boxes
    /// pointing, energy-pointing, iou. Default: all that apply.
    #[arg(long = "metric", value_name = "NAME")]
    pub metrics: Vec<String>,
    /// JSON object mapping an image's file name (or its path as given) to its boxes `[[x0, y0, x1, y1], …]` in
    /// image pixels, for the localization metrics.
    #[arg(long, value_name = "FILE")]
    pub boxes: Option<PathBuf>,
    /// Target layer (repeatable) for the CAM methods. Default: the last spatial activation before the classifier.
    #[arg(long = "layer", value_name = "NAME")]
    pub layers: Vec<String>,
    /// Class to evaluate. Default: each image's top-1 prediction.
    #[arg(long, value_name = "ID")]
    pub class: Option<usize>,
    /// Deletion and insertion steps (1 to 10000; default 100: 1 % of the pixels per step).
    #[arg(long, value_name = "N", default_value_t = metrics::DEFAULT_STEPS)]
    pub steps: usize,
    /// Integrated Gradients' path points, when it is one of the methods.
    #[arg(long, value_name = "N", default_value_t = gradcam::cam::DEFAULT_STEPS)]
    pub ig_steps: usize,
    /// Score the class's logit instead of its softmax probability (the default, as RISE and Grad-CAM++).
    #[arg(long)]
    pub target_logit: bool,
    /// Altered copies scored per forward pass (default 32, fewer if the memory budget says so).
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// One JSON object per image on stdout (`{"input", "class", "label", "scores": {method: {metric: value}}}`),
    /// then a `{"summary": …}` line, instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Largest image accepted, in pixels (checked from the file's header before decoding; default 64 Mpx).
    #[arg(long, value_name = "PIXELS", default_value_t = gradcam::input::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
}

const IMAGE_EXTENSIONS: [&str; 8] = ["png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"];
const SCORE_METRICS: [&str; 9] = [
    "avg-drop",
    "avg-increase",
    "drop-in-confidence",
    "increase-in-confidence",
    "deletion",
    "insertion",
    "road-morf",
    "road-lerf",
    "road-combined",
];
const BOX_METRICS: [&str; 3] = ["pointing", "energy-pointing", "iou"];

/// The files to evaluate: each file as given, each directory's image files in name order.
fn expand(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read directory {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && f.extension()
                            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str()))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                anyhow::bail!("{}: no image files in this directory", p.display());
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// Boxes per image, keyed by file name or path as given.
fn read_boxes(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<BoxXyxy>>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > 64 << 20 {
        anyhow::bail!("{}: a boxes file of {} bytes is larger than 64 MiB", path.display(), meta.len());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    let obj = value
        .as_object()
        .with_context(|| format!("{}: expected an object {{file: [[x0, y0, x1, y1], …]}}", path.display()))?;
    let mut boxes = BTreeMap::new();
    for (file, list) in obj {
        let parsed: Option<Vec<BoxXyxy>> = list.as_array().and_then(|l| {
            l.iter()
                .map(|b| {
                    let v: Vec<f32> =
                        b.as_array()?.iter().map(|x| x.as_f64().map(|x| x as f32)).collect::<Option<_>>()?;
                    let b: BoxXyxy = v.try_into().ok()?;
                    (b.iter().all(|x| x.is_finite()) && b[2] >= b[0] && b[3] >= b[1]).then_some(b)
                })
                .collect()
        });
        let parsed = parsed.with_context(|| {
            format!("{}: boxes of '{file}' must be a list of [x0, y0, x1, y1] with x0 ≤ x1 and y0 ≤ y1", path.display())
        })?;
        boxes.insert(file.clone(), parsed);
    }
    Ok(boxes)
}

/// Mean and sample standard deviation of the finite values.
fn mean_std(values: &[f64]) -> (f64, f64) {
    let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n.max(1.0);
    let var = if values.len() > 1 { values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// The scores of one image: per method, per metric.
type Scores = BTreeMap<String, BTreeMap<String, f64>>;

#[allow(clippy::too_many_arguments)]
fn evaluate_one(
    model: &Model,
    scorer: &Scorer<'_>,
    req: &Request,
    metrics: &[String],
    path: &Path,
    boxes: Option<&Vec<BoxXyxy>>,
    args: &EvaluateArgs,
) -> anyhow::Result<(usize, String, Scores)> {
    let img = load_image_limited(path, model.input_size, args.max_pixels)?;
    let x = model.normalization.apply(&img.pixels);
    let result = explain(model, x.clone(), req)?.remove(0);
    let image = x.index_axis(Axis(0), 0).into_dimensionality::<Ix3>()?;
    let size = [img.original.width(), img.original.height()];
    let mut scores = Scores::new();
    let (class, label) = match result.explanations.first() {
        Some(e) => (e.class, e.label.clone()),
        None => anyhow::bail!("no explanation was made"),
    };
    for e in &result.explanations {
        let mut per_metric = BTreeMap::new();
        let wants = |m: &str| metrics.iter().any(|x| x == m);
        if SCORE_METRICS[..4].iter().any(|m| wants(m)) {
            let c = metrics::confidence_change(scorer, image, &e.cam, e.class)?;
            for (name, v) in [
                ("avg-drop", c.average_drop()),
                ("avg-increase", c.increase()),
                ("drop-in-confidence", c.drop_in_confidence()),
                ("increase-in-confidence", c.increase_in_confidence()),
            ] {
                if wants(name) {
                    per_metric.insert(name.to_string(), v as f64);
                }
            }
        }
        if wants("deletion") || wants("insertion") {
            let d = metrics::deletion_insertion(scorer, image, &e.cam, e.class, args.steps)?;
            for (name, v) in [("deletion", d.deletion_auc), ("insertion", d.insertion_auc)] {
                if wants(name) {
                    per_metric.insert(name.to_string(), v as f64);
                }
            }
        }
        if ["road-morf", "road-lerf", "road-combined"].iter().any(|m| wants(m)) {
            let r = metrics::road(scorer, image, &e.cam, e.class, &metrics::ROAD_PERCENTILES)?;
            for (name, v) in [("road-morf", r.morf_mean), ("road-lerf", r.lerf_mean), ("road-combined", r.combined)] {
                if wants(name) {
                    per_metric.insert(name.to_string(), v as f64);
                }
            }
        }
        if let Some(b) = boxes {
            if wants("pointing") {
                let hit = metrics::pointing_hit(&e.cam, size, b, metrics::POINTING_TOLERANCE);
                per_metric.insert("pointing".into(), if hit { 1.0 } else { 0.0 });
            }
            if wants("energy-pointing") {
                per_metric.insert("energy-pointing".into(), metrics::energy_pointing(&e.cam, size, b) as f64);
            }
            if wants("iou") {
                per_metric.insert("iou".into(), metrics::localization_iou(&e.cam, size, b) as f64);
            }
        }
        scores.insert(e.method.name().to_string(), per_metric);
    }
    Ok((class, label, scores))
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    let methods = args.methods.iter().map(|m| Method::parse(m)).collect::<Result<Vec<_>, _>>()?;
    let boxes = args.boxes.as_deref().map(read_boxes).transpose()?;
    let metrics: Vec<String> = if args.metrics.is_empty() {
        let mut all: Vec<&str> = SCORE_METRICS.to_vec();
        if boxes.is_some() {
            all.extend(BOX_METRICS);
        }
        all.into_iter().map(String::from).collect()
    } else {
        for m in &args.metrics {
            if BOX_METRICS.contains(&m.as_str()) && boxes.is_none() {
                anyhow::bail!("--metric {m} needs --boxes");
            }
            if !SCORE_METRICS.contains(&m.as_str()) && !BOX_METRICS.contains(&m.as_str()) {
                anyhow::bail!("unknown metric '{m}' (known: {}, {})", SCORE_METRICS.join(", "), BOX_METRICS.join(", "));
            }
        }
        args.metrics.clone()
    };
    let cap = gradcam::cam::MAX_COPIES;
    if args.steps == 0 || args.steps > cap {
        anyhow::bail!("--steps must be in 1..={cap}, got {}", args.steps);
    }
    if args.ig_steps == 0 || args.ig_steps > cap {
        anyhow::bail!("--ig-steps must be in 1..={cap}, got {}", args.ig_steps);
    }
    let files = expand(&args.inputs)?;
    let model = args.model.load()?;
    // One image at a time; its altered copies run `copies` per pass beside it.
    let copies = match args.batch_size {
        Some(0) => anyhow::bail!("--batch-size must be at least 1"),
        Some(b) => b,
        None => super::batch_size(None, &model.graph, args.model.max_memory)?
            .saturating_sub(1)
            .clamp(1, gradcam::cam::DEFAULT_PERTURBATION_BATCH),
    };
    super::check_budget(&model.graph, copies.saturating_add(1), args.model.max_memory)?;
    if args.target_logit && metrics.iter().any(|m| m == "avg-drop") {
        // (Y − O)/Y needs a positive score: a logit can be zero or negative.
        anyhow::bail!("avg-drop is a relative drop of a probability: leave out --target-logit or that metric");
    }
    let target = if args.target_logit { Target::Logit } else { Target::Probability };
    let scorer = Scorer::new(&model, target, copies)?;
    let req = Request {
        layers: args.layers.clone(),
        classes: match args.class {
            Some(c) => ClassChoice::Classes(vec![c]),
            None => ClassChoice::Top(1),
        },
        methods,
        batch_size: copies,
        steps: args.ig_steps,
        ..Request::default()
    };
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(files.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut all: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut failed = 0usize;
    for path in &files {
        let input = path.display().to_string();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let image_boxes = boxes.as_ref().and_then(|b| b.get(&input).or_else(|| b.get(&name)));
        // A hidden bar prints nothing: messages then go straight to stderr.
        let note = |line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
        if boxes.is_some() && image_boxes.is_none() {
            note(format!("{input}: no boxes in --boxes: localization metrics skipped"));
        }
        match evaluate_one(&model, &scorer, &req, &metrics, path, image_boxes, &args) {
            Ok((class, label, scores)) => {
                for (method, per_metric) in &scores {
                    for (metric, &v) in per_metric {
                        all.entry(method.clone()).or_default().entry(metric.clone()).or_default().push(v);
                    }
                }
                if args.json {
                    say!("{}", json!({"input": input, "class": class, "label": label, "scores": scores}));
                }
            }
            Err(e) => {
                failed += 1;
                if args.json {
                    say!("{}", json!({"input": input, "error": super::one_line(&e)}));
                } else {
                    note(format!("{input}: {}", super::one_line(&e)));
                }
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let summary: BTreeMap<&String, BTreeMap<&String, serde_json::Value>> = all
        .iter()
        .map(|(method, per_metric)| {
            let stats = per_metric
                .iter()
                .map(|(metric, v)| {
                    let (mean, std) = mean_std(v);
                    (metric, json!({"mean": mean, "std": std, "n": v.len()}))
                })
                .collect();
            (method, stats)
        })
        .collect();
    if args.json {
        say!("{}", json!({ "summary": summary }));
    } else {
        let columns: Vec<&String> = metrics.iter().filter(|m| all.values().any(|pm| pm.contains_key(*m))).collect();
        let mut header = format!("{:<22}", "method");
        for c in &columns {
            header.push_str(&format!(" {c:>22}"));
        }
        say!("{header}");
        for (method, per_metric) in &all {
            let mut line = format!("{method:<22}");
            for c in &columns {
                let cell = per_metric.get(*c).map(|v| {
                    let (m, s) = mean_std(v);
                    format!("{m:.4} ± {s:.4}")
                });
                line.push_str(&format!(" {:>22}", cell.unwrap_or_else(|| "—".into())));
            }
            say!("{line}");
        }
        let n = files.len() - failed;
        say!(
            "({n} image{} evaluated; target: {})",
            if n == 1 { "" } else { "s" },
            if args.target_logit { "logit" } else { "probability" }
        );
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} inputs failed", files.len());
    }
    Ok(())
}
