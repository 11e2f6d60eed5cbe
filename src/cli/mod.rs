//! Command-line arguments and dispatch.

/// `println!` that returns the write error instead of panicking (e.g. when piped into `head`).
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($t)*)?
    }};
}

mod attack;
mod bench;
mod evaluate;
mod explain;
mod infer;
mod layers;
mod sanity;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Visual explanations (Grad-CAM and family) for convolutional networks, on the CPU.
#[derive(Parser, Debug)]
#[command(name = "gradcam", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Explain the predictions of a model for images or .npy tensors.
    Explain(explain::ExplainArgs),
    /// List a model's addressable layers with their output shapes.
    Layers(layers::LayersArgs),
    /// Run an ONNX model on .npy inputs and write every output as .npy.
    Infer(infer::InferArgs),
    /// Attack an input (FGSM / PGD) and compare its explanations before and after.
    Attack(attack::AttackArgs),
    /// Time forward passes, explanations or attack steps after the model is loaded (median/min/max, images/s).
    Bench(bench::BenchArgs),
    /// Score explanation methods with faithfulness and localization metrics over images (mean ± std).
    Evaluate(evaluate::EvaluateArgs),
    /// Model-randomization sanity check (Adebayo et al.): how each method's map changes as the layers are randomized.
    Sanity(sanity::SanityArgs),
}

/// Which model to use.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model file: .onnx, or .safetensors with --arch. Default: the bundled ImageNet EfficientNet-Lite0.
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Architecture of --model: resnet18, resnet34, resnet50, vgg11, vgg16, vgg16_bn, mobilenet_v2,
    /// efficientnet_lite0.
    #[arg(long, value_name = "NAME")]
    pub arch: Option<String>,
    /// Memory budget of the run (e.g. 2G, 512M; default: the model's weights + 1 GiB): a model whose weights and
    /// activations would not fit is refused before it runs, and the default --batch-size fits within it.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<u64>,
    /// How weights are held in memory: f32, or f16 / bf16 (half the memory; products still accumulate in f32,
    /// activations stay f32). The bundled model ships in f16: with f16 it is used as it is.
    #[arg(long, value_name = "PRECISION", default_value = "f32", value_parser = parse_precision)]
    pub weights: gradcam::Precision,
    /// Per-channel mean for normalizing image pixels in [0, 1] (default: the model's, ImageNet for the bundled one).
    #[arg(long, value_name = "R,G,B", value_parser = parse_triple)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation for normalizing image pixels (default: the model's).
    #[arg(long, value_name = "R,G,B", value_parser = parse_triple)]
    pub std: Option<[f32; 3]>,
    /// Class names, one per line, in class order (default: the ImageNet names for 1000-class models, else
    /// "class N"). The file must name every class.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Shape of an ONNX input whose sizes are symbolic, `[NAME=]D0,D1,…` (e.g. 1,3,224,224), repeatable; unnamed
    /// shapes go to the inputs in order. Default: taken from the first input file (an image's size, a .npy's shape).
    #[arg(long = "input-shape", value_name = "[NAME=]DIMS", value_parser = parse_input_shape)]
    pub input_shapes: Vec<(Option<String>, Vec<usize>)>,
    /// Where the model runs: cpu (the default), or cuda / cuda:N for NVIDIA GPU N (needs a build with
    /// `--features cuda`, and the NVIDIA driver, NVRTC and cuBLAS at run time).
    #[arg(long, value_name = "DEVICE", default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceChoice,
}

/// The `--device` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

/// Runs `graph` on the chosen device (the CPU needs nothing).
fn use_device(graph: &mut gradcam::Graph<f32>, choice: DeviceChoice) -> anyhow::Result<()> {
    if let DeviceChoice::Cuda(ordinal) = choice {
        let device = gradcam::Device::cuda(ordinal).map_err(|e| anyhow::anyhow!("--device cuda:{ordinal}: {e}"))?;
        graph.set_device(Some(std::sync::Arc::new(device)));
    }
    Ok(())
}

/// `cpu`, `cuda` or `cuda:N`.
fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    match s.trim() {
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Ok(DeviceChoice::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(DeviceChoice::Cuda)
            .ok_or_else(|| format!("'{s}' is not a device: cpu, cuda or cuda:N")),
    }
}

/// `[NAME=]D0,D1,…` with positive sizes.
fn parse_input_shape(s: &str) -> Result<(Option<String>, Vec<usize>), String> {
    let (name, dims) = match s.rsplit_once('=') {
        Some((n, d)) if !n.trim().is_empty() => (Some(n.trim().to_string()), d),
        Some(_) => return Err(format!("'{s}': an input name before '='")),
        None => (None, s),
    };
    let dims: Vec<usize> = dims
        .split(',')
        .map(|d| {
            d.trim().parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(|| format!("'{d}' is not a positive size"))
        })
        .collect::<Result<_, _>>()?;
    if dims.is_empty() || dims.len() > 8 {
        return Err(format!("'{s}': 1 to 8 sizes"));
    }
    if dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|n| n > gradcam::onnx::MAX_ELEMENTS) {
        return Err(format!("'{s}': more elements than any input accepted"));
    }
    Ok((name, dims))
}

/// Three comma-separated finite numbers.
fn parse_triple(s: &str) -> Result<[f32; 3], String> {
    let v: Vec<f32> =
        s.split(',').map(|p| p.trim().parse::<f32>().map_err(|e| format!("'{p}': {e}"))).collect::<Result<_, _>>()?;
    match v.as_slice() {
        [a, b, c] if v.iter().all(|x| x.is_finite()) => Ok([*a, *b, *c]),
        _ => Err(format!("expected three comma-separated finite numbers, got '{s}'")),
    }
}

/// Labels from a file of one name per line (at most 16 MiB; blank trailing lines ignored).
fn read_labels(path: &std::path::Path, classes: usize) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let len = std::fs::metadata(path).with_context(|| format!("cannot read labels {}", path.display()))?.len();
    if len > 16 << 20 {
        anyhow::bail!("{}: a labels file of {len} bytes is larger than 16 MiB", path.display());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read labels {}", path.display()))?;
    let labels: Vec<String> = text.trim_end().lines().map(|l| l.trim().to_string()).collect();
    if labels.len() != classes {
        anyhow::bail!("{}: {} labels for a model of {classes} classes", path.display(), labels.len());
    }
    Ok(labels)
}

/// `f32`, `f16` or `bf16`.
fn parse_precision(s: &str) -> Result<gradcam::Precision, String> {
    s.parse()
}

impl ModelArgs {
    /// Loads the model and checks that one image fits the memory budget.
    pub fn load(&self) -> anyhow::Result<gradcam::Model> {
        self.load_for(None)
    }

    /// [`ModelArgs::load`]; an ONNX input with symbolic sizes and no `--input-shape` takes its shape from
    /// `first_input` (an image's size or a `.npy`'s shape, batch 1).
    pub fn load_for(&self, first_input: Option<&std::path::Path>) -> anyhow::Result<gradcam::Model> {
        let mut options = gradcam::LoadOptions {
            weights: self.weights,
            max_memory: self.max_memory,
            input_shapes: self.input_shapes.clone(),
            normalization: None,
        };
        let load = |o: gradcam::LoadOptions| gradcam::Model::load_with(self.model.as_deref(), self.arch.as_deref(), o);
        let loaded = match (load(options.clone()), first_input) {
            (Err(gradcam::Error::SymbolicInput { .. }), Some(path)) if self.input_shapes.is_empty() => {
                let mut shape = gradcam::input::input_shape_of(path)?;
                if let Some(n) = shape.first_mut() {
                    *n = 1;
                }
                options.input_shapes = vec![(None, shape)];
                load(options)
            }
            (result, _) => result,
        };
        let mut model = loaded?;
        check_budget(&model.graph, 1, self.max_memory)?;
        if let Some(mean) = self.mean {
            model.normalization.mean = mean;
        }
        if let Some(std) = self.std {
            if std.iter().any(|&v| v <= 0.0) {
                anyhow::bail!("--std values must be positive, got {std:?}");
            }
            model.normalization.std = std;
        }
        if self.mean.is_some() && self.std.is_some() {
            model.normalization_assumed = false;
        }
        if let Some(path) = &self.labels {
            model.labels = Some(read_labels(path, model.classes())?);
        }
        use_device(&mut model.graph, self.device)?;
        Ok(model)
    }
}

/// Memory a run may use beyond its weights when `--max-memory` is not given.
const DEFAULT_HEADROOM: u64 = 1 << 30;

/// Largest default batch: beyond it a CPU gains nothing from batching.
const MAX_DEFAULT_BATCH: usize = 16;

const MB: f64 = (1u64 << 20) as f64;

/// The memory budget of a run: `--max-memory`, or the model's weights + 1 GiB.
fn budget(graph: &gradcam::Graph<f32>, max_memory: Option<u64>) -> u64 {
    max_memory.unwrap_or(graph.constant_bytes() as u64 + DEFAULT_HEADROOM)
}

/// Bytes one item of a batch may take: every value of the graph (as if none were freed), plus the copies of the
/// input the commands hold beside the graph (decoded pixels, the normalized tensor, the batch they are stacked
/// into). Found by fuzzing: counting the graph's values alone let `bench --batch 77738` on a tiny model pass the
/// budget and take more than 2 GB.
fn per_item_bytes(graph: &gradcam::Graph<f32>) -> u64 {
    let input: usize = graph
        .inputs()
        .iter()
        .map(|&id| graph.value(id).shape.iter().skip(1).product::<usize>() * std::mem::size_of::<f32>())
        .sum();
    graph.value_bytes_per_item() as u64 + 3 * input as u64
}

/// Refuses a run whose weights and activations for `batch` items (an upper bound: every value of the graph, as if
/// none were freed) exceed the budget — before anything runs.
fn check_budget(graph: &gradcam::Graph<f32>, batch: usize, max_memory: Option<u64>) -> anyhow::Result<()> {
    let weights = graph.constant_bytes() as u64;
    let activations = per_item_bytes(graph).saturating_mul(batch as u64);
    let limit = budget(graph, max_memory);
    if weights.saturating_add(activations) > limit {
        anyhow::bail!(
            "the model needs up to {:.0} MB ({:.0} MB of weights, {:.0} MB of activations for {batch} image(s)), above \
             the memory budget of {:.0} MB (--max-memory)",
            (weights.saturating_add(activations)) as f64 / MB,
            weights as f64 / MB,
            activations as f64 / MB,
            limit as f64 / MB
        );
    }
    Ok(())
}

/// `--batch-size` (checked against the budget), or by default as many items as the budget leaves room for beside
/// the weights (at least 1, at most [`MAX_DEFAULT_BATCH`]).
fn batch_size(given: Option<usize>, graph: &gradcam::Graph<f32>, max_memory: Option<u64>) -> anyhow::Result<usize> {
    let batch = match given {
        Some(0) => anyhow::bail!("--batch-size must be at least 1"),
        Some(b) => b,
        None => {
            let room = budget(graph, max_memory).saturating_sub(graph.constant_bytes() as u64);
            let fit = room / per_item_bytes(graph).max(1);
            (fit as usize).clamp(1, MAX_DEFAULT_BATCH)
        }
    };
    check_budget(graph, batch, max_memory)?;
    if batch > 1 && !graph.accepts_batch(batch) {
        // An export traced at batch 1 whose reshapes name that size (and could not be untied at import) runs one
        // input at a time.
        if given.is_some() {
            eprintln!("note: this model's graph takes one input at a time; --batch-size {batch} runs as 1");
        }
        return Ok(1);
    }
    Ok(batch)
}

/// A size in bytes: a number with an optional binary unit, `K`, `M`, `G` or `T` (`512M`, `1.5G`).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, unit) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&s[..i], s[i..].trim_end_matches(['B', 'b', 'i']).to_ascii_uppercase()),
        None => (s, String::new()),
    };
    let scale: u64 = match unit.as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        other => return Err(format!("unknown unit '{other}' (use K, M, G or T)")),
    };
    let v: f64 = number.trim().parse().map_err(|_| format!("'{s}' is not a size (e.g. 2G, 512M)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("'{s}' is not a positive size"));
    }
    Ok((v * scale as f64) as u64)
}

/// `e` and its causes joined by ": ", leaving out a cause whose text the message already contains (a typed error
/// that quotes its source is not followed by the source again): the CLI's one line per error.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line = format!("{line}: {text}");
        }
    }
    line
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Explain(a) => explain::run(a),
        Command::Layers(a) => layers::run(a),
        Command::Infer(a) => infer::run(a),
        Command::Attack(a) => attack::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Sanity(a) => sanity::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert!(parse_size("0").is_err() && parse_size("-1G").is_err() && parse_size("3X").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn one_line_says_each_cause_once() {
        let inner = gradcam::GraphError::NotAnInput { name: "x".into(), expected: "input".into() };
        let quoted = inner.to_string();
        let wrapped = gradcam::GraphError::InItem { item: 1, items: 3, source: Box::new(inner) };
        let e = anyhow::Error::new(wrapped).context("photo.png");
        let line = super::one_line(&e);
        assert_eq!(line.matches(&quoted).count(), 1, "{line}");
        assert!(line.starts_with("photo.png: item 2 of 3: "), "{line}");
    }
}
