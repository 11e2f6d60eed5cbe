//! `gradcam infer`: run an ONNX model on `.npy` inputs, write every output as `.npy`.

use anyhow::Context;
use clap::Args;
use gradcam::models::imagenet_labels;
use gradcam::onnx;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct InferArgs {
    /// The ONNX model.
    #[arg(long, value_name = "M.onnx")]
    pub model: PathBuf,
    /// Input tensors (.npy, f32), bound to the graph's non-initializer inputs in order (repeatable).
    #[arg(long = "input", value_name = "X.npy", required = true)]
    pub inputs: Vec<PathBuf>,
    /// Directory for the outputs (created if missing).
    #[arg(long, default_value = "gradcam-out", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Items (along axis 0 of the inputs) run per forward pass (default: as many as fit in 1 GiB of activations, at
    /// most 16); the outputs are joined back along axis 0.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Memory budget of the run (e.g. 2G, 512M; default: the model's weights + 1 GiB): a model whose weights and
    /// activations would not fit is refused before it runs.
    #[arg(long, value_name = "SIZE", value_parser = super::parse_size)]
    pub max_memory: Option<u64>,
    /// How weights are held in memory: f32, f16 or bf16 (see `gradcam explain --help`).
    #[arg(long, value_name = "PRECISION", default_value = "f32", value_parser = super::parse_precision)]
    pub weights: gradcam::Precision,
    /// Shape of an input whose sizes are symbolic, `[NAME=]D0,D1,…`, repeatable (default: each `--input`'s shape).
    #[arg(long = "input-shape", value_name = "[NAME=]DIMS", value_parser = super::parse_input_shape)]
    pub input_shapes: Vec<(Option<String>, Vec<usize>)>,
    /// Where the model runs: cpu (the default), cuda or cuda:N (see `gradcam explain --help`).
    #[arg(long, value_name = "DEVICE", default_value = "cpu", value_parser = super::parse_device)]
    pub device: super::DeviceChoice,
}

/// A file name for a value name (ONNX names may contain `/` and `:`).
/// An output name as a file stem: letters, digits, `-`, `_` and `.` kept, anything else `_`, no leading dots.
fn file_stem(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let s = s.trim_start_matches('.');
    if s.is_empty() {
        "output".to_string()
    } else {
        s.to_string()
    }
}

/// Forward options that make a non-finite value an error naming the first node that produced it.
fn finite() -> gradcam::ForwardOptions {
    gradcam::ForwardOptions { check_finite: true, ..Default::default() }
}

/// Runs `plan` on `inputs` split along axis 0 into batches of at most `batch` items, joining each output back along
/// axis 0. Inputs that fit one batch (or do not share a leading size) run whole.
fn run_in_batches(
    graph: &gradcam::Graph<f32>,
    plan: &gradcam::Plan,
    inputs: Vec<(&str, ndarray::ArrayD<f32>)>,
    outputs: &[&str],
    batch: usize,
) -> anyhow::Result<Vec<ndarray::ArrayD<f32>>> {
    // A small model's batch on the CPU runs as its items, side by side (`Graph::runs_items_apart`; memory for one
    // item per thread, whatever the batch size); outputs that do not follow the batch need the whole batch.
    if let [(name, x)] = &inputs[..] {
        if graph.runs_items_apart(x.shape().first().copied().unwrap_or(0)) {
            match graph.forward_items_with(plan, name, x, outputs, finite()) {
                Err(gradcam::GraphError::NotPerItem { .. }) => {}
                done => return Ok(done?),
            }
        }
    }
    let leading: Vec<Option<usize>> = inputs.iter().map(|(_, t)| t.shape().first().copied()).collect();
    let n = match leading.first() {
        Some(&Some(n)) if n > batch && leading.iter().all(|&l| l == Some(n)) => n,
        _ => {
            let acts = graph.forward_with(plan, inputs, finite())?;
            return outputs.iter().map(|name| Ok(acts.get(name)?.clone())).collect();
        }
    };
    let mut parts: Vec<Vec<ndarray::ArrayD<f32>>> = vec![Vec::new(); outputs.len()];
    for start in (0..n).step_by(batch) {
        let end = (start + batch).min(n);
        let chunk: Vec<(&str, ndarray::ArrayD<f32>)> = inputs
            .iter()
            .map(|(name, t)| (*name, t.slice_axis(ndarray::Axis(0), (start..end).into()).to_owned()))
            .collect();
        let acts = graph.forward_with(plan, chunk, finite()).with_context(|| {
            format!("items {start}..{end} of {n} (a model exported for one fixed batch size needs --batch-size 1)")
        })?;
        for (part, name) in parts.iter_mut().zip(outputs) {
            let t = acts.get(name)?;
            if t.shape().first() != Some(&(end - start)) {
                anyhow::bail!(
                    "output '{name}' (shape {:?}) does not keep the batch axis of the inputs: run with --batch-size {n}",
                    t.shape()
                );
            }
            part.push(t.clone());
        }
    }
    parts
        .into_iter()
        .map(|p| {
            let views: Vec<_> = p.iter().map(|t| t.view()).collect();
            Ok(ndarray::concatenate(ndarray::Axis(0), &views)?)
        })
        .collect()
}

pub fn run(args: InferArgs) -> anyhow::Result<()> {
    let mut import = onnx::ImportOptions { weights: args.weights, ..Default::default() };
    if let Some(max) = args.max_memory {
        import.fold_budget = max;
    }
    import.input_shapes = args.input_shapes.clone();
    let mut m = match onnx::load_with_options(&args.model, &import) {
        // Symbolic sizes: each input file's shape (batch 1), in order.
        Err(gradcam::Error::SymbolicInput { .. }) if args.input_shapes.is_empty() => {
            import.input_shapes = args
                .inputs
                .iter()
                .map(|p| {
                    let mut shape = gradcam::input::input_shape_of(p)?;
                    if let Some(n) = shape.first_mut() {
                        *n = 1;
                    }
                    Ok((None, shape))
                })
                .collect::<gradcam::Result<_>>()?;
            onnx::load_with_options(&args.model, &import)?
        }
        other => other?,
    };
    if args.inputs.len() != m.inputs.len() {
        anyhow::bail!(
            "{} takes {} inputs ({:?}), {} given",
            args.model.display(),
            m.inputs.len(),
            m.inputs,
            args.inputs.len()
        );
    }
    super::use_device(&mut m.graph, args.device)?;
    let mut bound = Vec::new();
    for (name, path) in m.inputs.iter().zip(&args.inputs) {
        let t = gradcam::input::read_npy_f32(path)?;
        if gradcam::tensor::has_non_finite(&t) {
            anyhow::bail!("{}: the input holds NaN or infinite values", path.display());
        }
        bound.push((name.as_str(), t));
    }
    let outs: Vec<&str> = m.outputs.iter().map(String::as_str).collect();
    let plan = m.graph.inference_plan(&outs)?;
    let batch = super::batch_size(args.batch_size, &m.graph, args.max_memory)?;
    let results = run_in_batches(&m.graph, &plan, bound, &outs, batch)?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create output directory {}", args.out_dir.display()))?;
    let mut listed = Vec::new();
    let mut top5 = None;
    // Sanitized names made unique ('a/b' and 'a:b' both become a_b), and never one of the inputs.
    let inputs: Vec<PathBuf> = args.inputs.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
    let mut stems = std::collections::HashMap::new();
    for (name, t) in outs.iter().zip(&results) {
        let mut stem = gradcam::output::unique_stem(&mut stems, &file_stem(name));
        let mut path = args.out_dir.join(format!("{stem}.npy"));
        while std::fs::canonicalize(&path).is_ok_and(|p| inputs.contains(&p)) {
            stem = gradcam::output::unique_stem(&mut stems, &stem);
            path = args.out_dir.join(format!("{stem}.npy"));
        }
        gradcam::output::write_npy(&path, t)?;
        listed.push(json!({"name": name, "shape": t.shape(), "npy": path.display().to_string()}));
        // Class scores: [1, C] (or [1, C, 1, 1]) with at least 5 classes.
        let squeezed: Vec<usize> = t.shape().iter().copied().filter(|&d| d != 1).collect();
        if top5.is_none() && t.shape().first() == Some(&1) && squeezed.len() == 1 && squeezed[0] >= 5 {
            let scores: Vec<f32> = t.iter().copied().collect();
            let is_prob =
                scores.iter().all(|&v| (0.0..=1.0).contains(&v)) && (scores.iter().sum::<f32>() - 1.0).abs() < 1e-3;
            let probs: Vec<f32> = if is_prob { scores.clone() } else { gradcam::tensor::softmax_row(&scores) };
            let labels = (scores.len() == 1000).then(imagenet_labels);
            let mut idx: Vec<usize> = (0..scores.len()).collect();
            idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            top5 = Some(
                idx.iter()
                    .take(5)
                    .map(|&c| json!({"class": c, "label": labels.as_ref().map(|l| l[c].clone()), "score": scores[c], "prob": probs[c]}))
                    .collect::<Vec<_>>(),
            );
        }
    }
    if args.json {
        let mut obj = json!({"outputs": listed});
        if let Some(t) = top5 {
            obj["top5"] = json!(t);
        }
        say!("{obj}");
    } else {
        for o in &listed {
            say!("{} {} → {}", o["name"].as_str().unwrap_or(""), o["shape"], o["npy"].as_str().unwrap_or(""));
        }
        if let Some(t) = top5 {
            for e in t {
                say!(
                    "  {:>4}  {:.4}  {}",
                    e["class"],
                    e["prob"].as_f64().unwrap_or(0.0),
                    e["label"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
