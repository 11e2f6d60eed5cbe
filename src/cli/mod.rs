//! Command-line arguments and dispatch.

mod explain;
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
}

/// Which model to use.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Weights file (.safetensors with --arch). Default: the bundled ImageNet EfficientNet-Lite0.
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

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Explain(a) => explain::run(a),
        Command::Layers(a) => layers::run(a),
    }
}
