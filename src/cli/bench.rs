//! `gradcam bench`: how long the work takes after the model is loaded, so every speed change is measured the way a
//! user would run it.

use super::ModelArgs;
use anyhow::Context;
use clap::Args;
use gradcam::attack::objective_gradient;
use gradcam::cam::{explain, ClassChoice, Method, Request};
use gradcam::input::load_image;
use gradcam::{Model, Tensor};
use gradcam_kernels::simd;
use ndarray::{Array4, Axis, IxDyn};
use serde_json::json;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// What to time: forward, gradcam, saliency, pgd-step, or any explain method (gradcampp, guided-gradcam, …).
    #[arg(long, default_value = "gradcam")]
    pub method: String,
    /// Target layer (repeatable) for CAM methods. Default: the last spatial activation before the classifier.
    #[arg(long = "layer", value_name = "NAME")]
    pub layers: Vec<String>,
    /// Images per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Timed repetitions.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed repetitions first (caches, page faults, lazily packed weights).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// An image to run on (default: a fixed synthetic image; the work does not depend on the pixels).
    #[arg(long, value_name = "IMAGE")]
    pub input: Option<PathBuf>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Also time every node of one forward pass and print the time per operator type (to stderr with --json).
    #[arg(long)]
    pub profile: bool,
    /// How many profiled passes `--profile` takes the median of (per node; this machine kind is noisy).
    #[arg(long, value_name = "N", default_value_t = 21)]
    pub profile_passes: usize,
    /// How many of the slowest nodes `--profile` lists after the per-operator totals.
    #[arg(long, value_name = "N", default_value_t = 15)]
    pub profile_nodes: usize,
}

/// The work of one timed repetition.
enum Work {
    Forward(Box<gradcam::Plan>),
    Explain(Request),
    PgdStep,
}

/// A smooth, deterministic image in [0, 1]: gradients through ReLUs are not all zero, unlike a constant image.
fn synthetic_pixels(h: usize, w: usize) -> Tensor<f32> {
    Array4::from_shape_fn((1, 3, h, w), |(_, c, y, x)| {
        let (u, v) = (x as f32 / w.max(1) as f32, y as f32 / h.max(1) as f32);
        0.5 + 0.4 * ((6.0 * u + 2.0 * c as f32).sin() * (5.0 * v - c as f32).cos())
    })
    .into_dyn()
}

/// Peak resident set size of this process in MB (Linux; `None` elsewhere).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The CPU's marketing name (Linux), else the architecture.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|n| n.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn run_once(model: &Model, work: &Work, x: &Tensor<f32>, pixels: &Tensor<f32>) -> anyhow::Result<f32> {
    Ok(match work {
        Work::Forward(plan) => {
            let batch = x.shape().first().copied().unwrap_or(1);
            if model.graph.runs_items_apart(batch) {
                let logits = model.graph.forward_items(plan, &model.input, x, &[&model.logits])?;
                logits.iter().map(|l| l.sum()).sum()
            } else {
                let acts = model.graph.forward(plan, vec![(&model.input, x.clone())])?;
                acts.get(&model.logits)?.sum()
            }
        }
        Work::Explain(req) => {
            let results = explain(model, x.clone(), req)?;
            results.iter().flat_map(|r| &r.explanations).map(|e| e.cam.sum()).sum()
        }
        Work::PgdStep => {
            // One gradient per image (the attack works image by image), then the signed step.
            let mut total = 0.0;
            for img in pixels.axis_iter(Axis(0)) {
                let img = img.insert_axis(Axis(0)).to_owned();
                let (_, g) = objective_gradient(model, &img, 0, None)?;
                let stepped = &img + &g.mapv(|v| v.signum() * (1.0 / 255.0));
                total += stepped.sum();
            }
            total
        }
    })
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    if args.iters == 0 {
        anyhow::bail!("--iters must be at least 1");
    }
    if let Some(Err(msg)) = simd::env_override() {
        anyhow::bail!("{msg}");
    }
    let mut pool = rayon::ThreadPoolBuilder::new();
    if let Some(t) = args.threads {
        if t == 0 {
            anyhow::bail!("--threads must be at least 1");
        }
        pool = pool.num_threads(t);
    }
    let pool = pool.build().context("starting the thread pool")?;
    let threads = pool.current_num_threads();
    let loading = Instant::now();
    let model = args.model.load()?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    super::check_budget(&model.graph, args.batch, args.model.max_memory)?;
    let [h, w] = model.input_size;
    let one = match &args.input {
        Some(path) => load_image(path, model.input_size)?.pixels,
        None => synthetic_pixels(h, w),
    };
    let views: Vec<_> = (0..args.batch).map(|_| one.view()).collect();
    let pixels = ndarray::concatenate(Axis(0), &views).context("stacking the batch")?.into_dimensionality::<IxDyn>()?;
    let x = model.normalization.apply(&pixels);
    let work = match args.method.as_str() {
        "forward" => Work::Forward(Box::new(model.graph.inference_plan(&[&model.logits])?)),
        "pgd-step" => Work::PgdStep,
        name => Work::Explain(Request {
            layers: args.layers.clone(),
            classes: ClassChoice::Top(1),
            methods: vec![
                Method::parse(name).map_err(|e| anyhow::anyhow!("{e} (bench also takes 'forward' and 'pgd-step')"))?
            ],
            counterfactual: false,
            eigen_smooth: false,
            aug_smooth: false,
            target: Default::default(),
            batch_size: gradcam::cam::DEFAULT_PERTURBATION_BATCH,
            samples: gradcam::cam::DEFAULT_SAMPLES,
            noise: gradcam::cam::DEFAULT_NOISE,
            steps: gradcam::cam::DEFAULT_STEPS,
            seg_mask: None,
            tokens: Default::default(),
        }),
    };
    let simd_level = simd::level();
    // The first run also packs the weights (made on first use): reported apart, as onnxruntime's session creation
    // does that work before its first run.
    let mut first_ms = None;
    let times = pool.install(|| -> anyhow::Result<Vec<f64>> {
        for _ in 0..args.warmup {
            let t = Instant::now();
            black_box(run_once(&model, &work, &x, &pixels)?);
            first_ms.get_or_insert(t.elapsed().as_secs_f64() * 1e3);
        }
        let mut times = Vec::with_capacity(args.iters);
        for _ in 0..args.iters {
            let t = Instant::now();
            black_box(run_once(&model, &work, &x, &pixels)?);
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(times)
    })?;
    if args.profile {
        let rounds = args.profile_passes.max(1);
        let mut report = pool.install(|| profile_forward(&model, &x, rounds, args.profile_nodes))?;
        if args.method == "saliency" {
            report += &pool.install(|| profile_backward(&model, &x, rounds, args.profile_nodes))?;
        }
        if args.json {
            eprint!("{report}");
        } else {
            say!("{}", report.trim_end());
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let (med, min, max) = (median(&sorted), sorted[0], sorted[sorted.len() - 1]);
    let images_per_s = args.batch as f64 / (med / 1e3);
    let rss = peak_rss_mb();
    let cpu = cpu_name();
    // Nodes whose rule ran on the host because the device has no lowering for it: each costs two copies.
    let fallbacks: Vec<String> = model
        .graph
        .device_host_fallbacks()
        .into_iter()
        .map(|f| format!("{} ({}, {})", f.node, f.op, if f.backward { "backward" } else { "forward" }))
        .collect();
    if args.json {
        say!(
            "{}",
            json!({
                "model": model.name,
                "method": args.method,
                "batch": args.batch,
                "threads": threads,
                "simd": simd_level.name(),
                "cpu": cpu,
                "device": model.graph.device().map_or_else(|| "cpu".to_string(), |d| d.name()),
                "host_fallbacks": fallbacks,
                "median_ms": med,
                "min_ms": min,
                "max_ms": max,
                "images_per_s": images_per_s,
                "peak_rss_mb": rss,
                "load_ms": load_ms,
                "first_run_ms": first_ms,
                "weights": args.model.weights.name(),
                "weight_bytes": model.graph.constant_bytes(),
            })
        );
    } else {
        say!("model    {}", model.name);
        say!(
            "method   {} (batch {}, {} threads, {} iterations after {} warm-up)",
            args.method,
            args.batch,
            threads,
            args.iters,
            args.warmup
        );
        say!("cpu      {cpu} (kernels: {simd_level})");
        if let Some(device) = model.graph.device() {
            say!("device   {}", device.name());
            match fallbacks.as_slice() {
                [] => say!("fallback none: every rule ran on the device"),
                some => say!("fallback {} rule(s) ran on the host: {}", some.len(), some.join(", ")),
            }
        }
        say!(
            "weights  {:.1} MB in {} (loaded in {load_ms:.1} ms{})",
            model.graph.constant_bytes() as f64 / 1e6,
            args.model.weights,
            first_ms.map_or(String::new(), |f| format!(", first run with packing {f:.1} ms"))
        );
        say!("time     median {med:.2} ms, min {min:.2} ms, max {max:.2} ms per batch");
        say!("rate     {images_per_s:.1} images/s");
        if let Some(r) = rss {
            say!("peak rss {r:.1} MB");
        }
    }
    Ok(())
}

/// Per-node times of `rounds` forward passes: the per-operator totals, then the `top` slowest nodes.
fn profile_forward(model: &Model, x: &Tensor<f32>, rounds: usize, top: usize) -> anyhow::Result<String> {
    let plan = model.graph.inference_plan(&[&model.logits])?;
    let options = gradcam::ForwardOptions { profile: true, ..Default::default() };
    let mut passes = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let acts = model.graph.forward_with(&plan, vec![(&model.input, x.clone())], options)?;
        passes.push(acts.profile().to_vec());
    }
    Ok(profile_report("forward", &passes, top))
}

/// Per-node times of `rounds` backward sweeps from the top-1 logit of each image to the input: a saliency map's work
/// after its forward pass. (A PGD step seeds every logit, image by image, so its classifier costs more.)
fn profile_backward(model: &Model, x: &Tensor<f32>, rounds: usize, top: usize) -> anyhow::Result<String> {
    let plan = model.graph.plan(&[&model.logits], &[&model.input], &[&model.logits])?;
    let options = gradcam::BackwardOptions { profile: true, ..Default::default() };
    let mut passes = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let acts = model.graph.forward(&plan, vec![(&model.input, x.clone())])?;
        let logits = acts.get(&model.logits)?;
        // One-hot at each image's top class (logits without a batch axis are one image).
        let images = if logits.ndim() >= 2 { logits.shape()[0] } else { 1 };
        let per_image = logits.len() / images.max(1);
        let mut seed = vec![0.0f32; logits.len()];
        let values: Vec<f32> = logits.iter().copied().collect();
        for (s, row) in seed.chunks_mut(per_image.max(1)).zip(values.chunks(per_image.max(1))) {
            if let Some((best, _)) = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)) {
                s[best] = 1.0;
            }
        }
        let seed = Tensor::from_shape_vec(logits.raw_dim(), seed)?;
        let grads = acts.backward_with(vec![(&model.logits, seed)], options)?;
        passes.push(grads.profile);
    }
    Ok(profile_report("backward", &passes, top))
}

/// The median time per node and per operator type (each the median of its per-pass sums) and the `top` slowest
/// nodes over several profiled passes. Medians, not means: one pass that a neighbour on the machine slowed down
/// should not move the report.
fn profile_report(what: &str, passes: &[Vec<gradcam::graph::NodeTime>], top: usize) -> String {
    // Per op and per node, its time in each pass (0 where a pass did not run it); an op's count is its nodes.
    let n = passes.len().max(1);
    let mut per_op: std::collections::BTreeMap<&str, (Vec<f64>, usize)> = Default::default();
    let mut per_node: std::collections::BTreeMap<(&str, &str), Vec<f64>> = Default::default();
    for (i, pass) in passes.iter().enumerate() {
        for t in pass {
            per_op.entry(&t.op).or_insert_with(|| (vec![0.0; n], 0)).0[i] += t.seconds;
            per_node.entry((&t.node, &t.op)).or_insert_with(|| vec![0.0; n])[i] += t.seconds;
        }
    }
    for (_, op) in per_node.keys() {
        if let Some(e) = per_op.get_mut(op) {
            e.1 += 1;
        }
    }
    let median_of = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        median(&v)
    };
    let per_op: Vec<(&str, f64, usize)> =
        per_op.into_iter().map(|(op, (sums, count))| (op, median_of(sums), count)).collect();
    let per_node: Vec<((&str, &str), f64)> = per_node.into_iter().map(|(k, v)| (k, median_of(v))).collect();
    let total: f64 = per_op.iter().map(|v| v.1).sum();
    let share = |secs: f64| 100.0 * secs / total.max(1e-12);
    let mut rows = per_op;
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut report = format!(
        "{what} profile (median of {} passes; {:.2} ms in nodes, the sum of the per-operator medians):\n",
        passes.len(),
        total * 1e3
    );
    for (op, secs, count) in rows {
        report += &format!("  {:>8.3} ms {:>5.1} %  {count:>4} × {op}\n", secs * 1e3, share(secs));
    }
    let mut nodes: Vec<_> = per_node.into_iter().collect();
    nodes.sort_by(|a, b| b.1.total_cmp(&a.1));
    report += "slowest nodes:\n";
    for ((node, op), secs) in nodes.into_iter().take(top) {
        report += &format!("  {:>8.3} ms {:>5.1} %  {node} ({op})\n", secs * 1e3, share(secs));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::profile_report;
    use gradcam::graph::NodeTime;

    fn t(node: &str, op: &str, ms: f64) -> NodeTime {
        NodeTime { node: node.into(), op: op.into(), seconds: ms / 1e3 }
    }

    #[test]
    fn profile_takes_medians_and_counts_a_missing_node_as_zero() {
        // Conv "a" is slow in one pass of three; Relu "r" ran in one pass only (0 ms in the others).
        let passes = vec![
            vec![t("a", "Conv", 1.0), t("b", "Conv", 2.0), t("r", "Relu", 9.0)],
            vec![t("a", "Conv", 5.0), t("b", "Conv", 2.0)],
            vec![t("a", "Conv", 1.0), t("b", "Conv", 2.0)],
        ];
        let report = profile_report("forward", &passes, 3);
        assert!(report.contains("median of 3 passes; 3.00 ms in nodes"), "{report}");
        assert!(report.contains("3.000 ms 100.0 %     2 × Conv"), "{report}");
        assert!(report.contains("0.000 ms   0.0 %     1 × Relu"), "{report}");
        assert!(report.contains("1.000 ms  33.3 %  a (Conv)"), "{report}");
    }
}
