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
mod explain;
mod infer;
mod layers;

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
}

impl ModelArgs {
    pub fn load(&self) -> anyhow::Result<gradcam::Model> {
        Ok(gradcam::Model::load(self.model.as_deref(), self.arch.as_deref())?)
    }
}

/// Activation memory the default `--batch-size` aims to stay within.
const BATCH_ACTIVATION_BUDGET: usize = 1 << 30;

/// Largest default batch: beyond it a CPU gains nothing from batching.
const MAX_DEFAULT_BATCH: usize = 16;

/// `--batch-size`, or by default as many items as fit [`BATCH_ACTIVATION_BUDGET`] of activations (at least 1, at most
/// [`MAX_DEFAULT_BATCH`]), from the graph's per-item value bytes.
fn batch_size(given: Option<usize>, graph: &gradcam::Graph<f32>) -> anyhow::Result<usize> {
    match given {
        Some(0) => anyhow::bail!("--batch-size must be at least 1"),
        Some(b) => Ok(b),
        None => Ok((BATCH_ACTIVATION_BUDGET / graph.value_bytes_per_item().max(1)).clamp(1, MAX_DEFAULT_BATCH)),
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Explain(a) => explain::run(a),
        Command::Layers(a) => layers::run(a),
        Command::Infer(a) => infer::run(a),
        Command::Attack(a) => attack::run(a),
        Command::Bench(a) => bench::run(a),
    }
}
