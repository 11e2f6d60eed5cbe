//! Ready-made architectures with torchvision / `efficientnet-lite-pytorch` parameter names, weight loading, and
//! the bundled pretrained EfficientNet-Lite0.

mod efficientnet_lite;
mod mobilenet_v2;
mod net;
mod resnet;
mod vgg;
pub mod weights;

pub use efficientnet_lite::same_pads;
pub use weights::{Init, Param, Weights};

use crate::error::{Error, Result};
use crate::graph::{Graph, GraphBuilder};
use crate::input::Normalization;
pub use gradcam_kernels::Precision;
use net::Net;

/// The bundled model's weights (f16 safetensors, converted by `tools/convert_efficientnet_lite0.py`).
static BUNDLED_WEIGHTS: &[u8] = include_bytes!("../../fixtures/models/efficientnet_lite0.safetensors");
/// ImageNet class names, one per line.
static IMAGENET_CLASSES: &str = include_str!("../../fixtures/models/imagenet_classes.txt");

/// Architectures that can be built by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Resnet18,
    Resnet34,
    Resnet50,
    Vgg11,
    Vgg16,
    Vgg16Bn,
    MobilenetV2,
    EfficientnetLite0,
}

impl Arch {
    /// Every architecture, for listings and errors.
    pub const ALL: [Arch; 8] = [
        Arch::Resnet18,
        Arch::Resnet34,
        Arch::Resnet50,
        Arch::Vgg11,
        Arch::Vgg16,
        Arch::Vgg16Bn,
        Arch::MobilenetV2,
        Arch::EfficientnetLite0,
    ];

    /// The name used on the command line (torchvision's function name).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18",
            Arch::Resnet34 => "resnet34",
            Arch::Resnet50 => "resnet50",
            Arch::Vgg11 => "vgg11",
            Arch::Vgg16 => "vgg16",
            Arch::Vgg16Bn => "vgg16_bn",
            Arch::MobilenetV2 => "mobilenet_v2",
            Arch::EfficientnetLite0 => "efficientnet_lite0",
        }
    }

    /// Parses a name such as `resnet50` (also accepts `efficientnet-lite0`).
    pub fn from_name(name: &str) -> Result<Arch> {
        let norm = name.to_ascii_lowercase().replace('-', "_");
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == norm)
            .ok_or_else(|| Error::UnknownArch { name: name.to_string(), known: Arch::ALL.map(|a| a.name()).join(", ") })
    }

    /// The value name of the logits.
    pub fn logits(self) -> &'static str {
        match self {
            Arch::Resnet18 | Arch::Resnet34 | Arch::Resnet50 => "fc",
            Arch::Vgg11 | Arch::Vgg16 | Arch::Vgg16Bn => "classifier.6",
            Arch::MobilenetV2 => "classifier.1",
            Arch::EfficientnetLite0 => "_fc",
        }
    }

    /// The layer Grad-CAM users conventionally pick (pytorch-grad-cam's README).
    pub fn conventional_layer(self) -> &'static str {
        match self {
            Arch::Resnet18 | Arch::Resnet34 | Arch::Resnet50 => "layer4",
            Arch::Vgg11 | Arch::Vgg16 | Arch::Vgg16Bn => "features",
            Arch::MobilenetV2 | Arch::EfficientnetLite0 => "features",
        }
    }
}

/// How a model is loaded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadOptions {
    /// How weights (tensors of rank ≥ 2: convolution and classifier weights) are held in memory. f16/bf16 halve
    /// them; products still accumulate in f32 and activations stay f32. Biases and batch-norm statistics (1-D,
    /// well under 1 % of the bytes) stay f32.
    pub weights: Precision,
    /// Memory budget of the run (`--max-memory`): bounds what ONNX constant folding may allocate beyond the file's
    /// own weights (default 1 GiB).
    pub max_memory: Option<u64>,
    /// Shapes of ONNX inputs whose sizes are symbolic (see [`crate::onnx::ImportOptions::input_shapes`]).
    pub input_shapes: Vec<(Option<String>, Vec<usize>)>,
    /// Pixel normalization the weights expect, where the caller knows it. An ONNX file does not say: without this
    /// it is assumed to be ImageNet's, and [`Model::preprocess`] reports the assumption.
    pub normalization: Option<Normalization>,
}

/// How an image becomes the model's input: resized (antialiased) to `input_size`, pixels in [0, 1] normalized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocess {
    /// `[H, W]`.
    pub input_size: [usize; 2],
    pub normalization: Normalization,
    /// Whether the normalization is a guess (ImageNet statistics for an ONNX file loaded without one), not known
    /// from the architecture or given by the caller.
    pub normalization_assumed: bool,
}

impl LoadOptions {
    /// Weights held in `precision`.
    pub fn weights(precision: Precision) -> Self {
        LoadOptions { weights: precision, ..LoadOptions::default() }
    }
}

/// A classifier ready to explain: its graph and how to feed it.
#[derive(Debug)]
pub struct Model {
    pub graph: Graph<f32>,
    /// Human-readable name (architecture and weight origin).
    pub name: String,
    pub arch: Option<Arch>,
    /// Name of the input value (NCHW).
    pub input: String,
    /// Name of the pre-softmax class scores `[N, classes]`.
    pub logits: String,
    /// Input height and width the graph was built for.
    pub input_size: [usize; 2],
    /// Class names, if known.
    pub labels: Option<Vec<String>>,
    /// Pixel normalization the weights expect.
    pub normalization: Normalization,
    /// Whether `normalization` is assumed (see [`Preprocess::normalization_assumed`]); setting `normalization`
    /// yourself should clear it.
    pub normalization_assumed: bool,
}

impl Model {
    /// Builds `arch` for `input_size` images from `weights`. Every tensor must be used, with the right shape.
    pub fn build(arch: Arch, mut weights: Weights, input_size: [usize; 2], classes: usize) -> Result<Model> {
        let origin = weights.origin().to_string();
        let mut net = Net { b: GraphBuilder::new(), w: &mut weights };
        let x = net.b.input("input", &[1, 3, input_size[0], input_size[1]])?;
        let logits = match arch {
            Arch::Resnet18 => resnet::build(&mut net, x, resnet::Depth::R18, classes)?,
            Arch::Resnet34 => resnet::build(&mut net, x, resnet::Depth::R34, classes)?,
            Arch::Resnet50 => resnet::build(&mut net, x, resnet::Depth::R50, classes)?,
            Arch::Vgg11 => vgg::build(&mut net, x, vgg::Variant::Vgg11, classes)?,
            Arch::Vgg16 => vgg::build(&mut net, x, vgg::Variant::Vgg16, classes)?,
            Arch::Vgg16Bn => vgg::build(&mut net, x, vgg::Variant::Vgg16Bn, classes)?,
            Arch::MobilenetV2 => mobilenet_v2::build(&mut net, x, classes)?,
            Arch::EfficientnetLite0 => efficientnet_lite::build(&mut net, x, classes)?,
        };
        net.b.alias("logits", logits)?;
        net.b.output(logits);
        let graph = net.b.build();
        weights.finish(arch.name())?;
        let labels = (classes == 1000).then(imagenet_labels);
        Ok(Model {
            graph,
            name: format!("{} ({origin})", arch.name()),
            arch: Some(arch),
            input: "input".into(),
            logits: arch.logits().into(),
            input_size,
            labels,
            normalization: Normalization::imagenet(),
            normalization_assumed: false,
        })
    }

    /// The bundled ImageNet-pretrained EfficientNet-Lite0 at 224×224.
    pub fn bundled() -> Result<Model> {
        Model::bundled_with(LoadOptions::default())
    }

    /// [`Model::bundled`] with load options. The file holds f16 weights: with `--weights f16` they are used as
    /// they are, never widened whole.
    pub fn bundled_with(options: LoadOptions) -> Result<Model> {
        let weights =
            Weights::from_safetensors_as(BUNDLED_WEIGHTS, "bundled efficientnet_lite0.safetensors", options.weights)?;
        let mut m = Model::build(Arch::EfficientnetLite0, weights, [224, 224], 1000)?;
        m.name = "efficientnet_lite0 (bundled, ImageNet-pretrained)".into();
        Ok(m)
    }

    /// Loads a safetensors file for `arch`, for 224×224 inputs and as many classes as the file's classifier has.
    pub fn from_safetensors(arch: Arch, path: &std::path::Path) -> Result<Model> {
        Model::from_safetensors_with(arch, path, LoadOptions::default())
    }

    /// [`Model::from_safetensors`] with load options.
    pub fn from_safetensors_with(arch: Arch, path: &std::path::Path, options: LoadOptions) -> Result<Model> {
        let weights = Weights::from_file_as(path, options.weights)?;
        let classes = weights.classes(arch.logits()).unwrap_or(1000);
        let mut m = Model::build(arch, weights, [224, 224], classes)?;
        m.name = format!("{} ({})", arch.name(), path.display());
        Ok(m)
    }

    /// The model a command line asks for: the bundled one when `path` is `None`, else a safetensors file of `arch`.
    pub fn load(path: Option<&std::path::Path>, arch: Option<&str>) -> Result<Model> {
        Model::load_with(path, arch, LoadOptions::default())
    }

    /// [`Model::load`] with load options.
    pub fn load_with(path: Option<&std::path::Path>, arch: Option<&str>, options: LoadOptions) -> Result<Model> {
        let Some(path) = path else {
            return match arch {
                None => Model::bundled_with(options),
                Some(a) if Arch::from_name(a)? == Arch::EfficientnetLite0 => Model::bundled_with(options),
                Some(a) => Err(Error::InvalidArgument {
                    name: "--arch",
                    why: format!("--arch {a} needs --model <weights.safetensors>"),
                }),
            };
        };
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "onnx" => Model::from_onnx_with(path, options),
            _ => {
                let arch = arch.ok_or_else(|| Error::InvalidArgument {
                    name: "--arch",
                    why: format!(
                        "{}: say which architecture these weights are for with --arch (one of: {})",
                        path.display(),
                        Arch::ALL.map(|a| a.name()).join(", ")
                    ),
                })?;
                Model::from_safetensors_with(Arch::from_name(arch)?, path, options)
            }
        }
    }

    /// Imports an ONNX classifier: one `[N, 3, H, W]` input, class scores `[N, classes]` as first output. When that
    /// output is a Softmax, explanations use its input, the pre-softmax scores.
    pub fn from_onnx(path: &std::path::Path) -> Result<Model> {
        Model::from_onnx_with(path, LoadOptions::default())
    }

    /// [`Model::from_onnx`] with load options.
    pub fn from_onnx_with(path: &std::path::Path, options: LoadOptions) -> Result<Model> {
        let mut import = crate::onnx::ImportOptions {
            weights: options.weights,
            input_shapes: options.input_shapes.clone(),
            signals_as_images: true,
            ..Default::default()
        };
        if let Some(max) = options.max_memory {
            import.fold_budget = max;
        }
        let m = crate::onnx::load_with_options(path, &import)?;
        let shown = path.display().to_string();
        let [input] = m.inputs.as_slice() else {
            return Err(Error::ModelInterface(format!(
                "{shown}: explaining needs a model with exactly one input, this one has {:?} (use `gradcam infer`)",
                m.inputs
            )));
        };
        let g = &m.graph;
        let in_shape = g.value(g.find(input)?).shape.clone();
        // Images [N, 3, H, W]; signals [N, C, L] arrive as [N, C, 1, L] (ImportOptions::signals_as_images);
        // volumes [N, C, D, H, W] (medical scans, video clips).
        let signal = in_shape.len() == 4 && in_shape[2] == 1 && input.ends_with("::as_2d");
        let volume = in_shape.len() == 5;
        if in_shape[1..].contains(&0) {
            return Err(Error::ModelInterface(format!(
                "{shown}: input '{input}' has shape {in_shape:?}: an empty axis"
            )));
        }
        if !volume && (in_shape.len() != 4 || (in_shape[1] != 3 && !signal)) {
            return Err(Error::ModelInterface(format!(
                "{shown}: input '{input}' has shape {in_shape:?}, not [N, 3, H, W] (an image), [N, C, L] (a signal) \
                 or [N, C, D, H, W] (a volume)"
            )));
        }
        let first =
            m.outputs.first().ok_or_else(|| Error::ModelInterface(format!("{shown}: the model has no output")))?;
        // Explanations follow the scores before a final softmax, also when reshapes follow it (SqueezeNet:
        // Flatten → Softmax → Reshape to [N, 1000, 1, 1]).
        let mut logits = first.clone();
        let mut at = g.find(first)?;
        while let Some(node) = g.producer(at) {
            match node.op.op_type() {
                "Softmax" | "LogSoftmax" => {
                    logits = g.value(node.inputs[0]).name.clone();
                    break;
                }
                "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" | "Identity" => at = node.inputs[0],
                _ => break,
            }
        }
        let shape = &g.value(g.find(&logits)?).shape;
        if shape.len() != 2 && shape.len() != 4 {
            return Err(Error::ModelInterface(format!(
                "{shown}: class scores '{logits}' have shape {shape:?}, not [N, classes] (a classifier) or [N, classes, \
                 H, W] (a segmentation)"
            )));
        }
        let classes = shape[1];
        let graph = m.graph;
        Ok(Model {
            graph,
            name: shown,
            arch: None,
            input: input.clone(),
            logits,
            // A volume's maps are its slices stacked: [D·H, W].
            input_size: if volume { [in_shape[2] * in_shape[3], in_shape[4]] } else { [in_shape[2], in_shape[3]] },
            labels: (classes == 1000).then(imagenet_labels),
            normalization: options.normalization.unwrap_or_else(Normalization::imagenet),
            // Signals are fed as they are: no pixel normalization to assume.
            normalization_assumed: options.normalization.is_none() && !signal && !volume,
        })
    }

    /// How images are prepared for this model, and whether the normalization is an assumption.
    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            input_size: self.input_size,
            normalization: self.normalization,
            normalization_assumed: self.normalization_assumed,
        }
    }

    /// The label of class `c` (or its number).
    pub fn label(&self, c: usize) -> String {
        self.labels.as_ref().and_then(|l| l.get(c)).cloned().unwrap_or_else(|| format!("class {c}"))
    }

    /// Whether the output is a segmentation (`[N, classes, H, W]` with more than one pixel); `[N, classes, 1, 1]`
    /// is a classifier's.
    pub fn is_segmentation(&self) -> bool {
        let shape = self.graph.find(&self.logits).map(|id| self.graph.value(id).shape.clone()).unwrap_or_default();
        shape.len() == 4 && shape[2] * shape[3] > 1
    }

    /// Whether the graph runs only one item at a time (an export traced at batch 1 whose reshapes name that size and
    /// could not be untied at import; see [`Graph::accepts_batch`]).
    pub fn single_item(&self) -> bool {
        !self.graph.accepts_batch(2) && self.graph.accepts_batch(1)
    }

    /// `wanted` items per pass, or 1 where the graph takes only one.
    pub fn batch_limit(&self, wanted: usize) -> usize {
        if wanted > 1 && self.single_item() {
            1
        } else {
            wanted
        }
    }

    /// Whether the model takes signals `[N, C, L]` (held as one-row images `[N, C, 1, L]`) rather than images.
    pub fn is_signal(&self) -> bool {
        self.input_size[0] == 1 && self.input.ends_with("::as_2d")
    }

    /// The depth of the model's volume input `[N, C, D, H, W]`, or `None` for images and signals.
    pub fn volume_depth(&self) -> Option<usize> {
        let shape = &self.graph.value(self.graph.find(&self.input).ok()?).shape;
        (shape.len() == 5).then(|| shape[2])
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.graph.find(&self.logits).map(|id| self.graph.value(id).shape[1]).unwrap_or(0)
    }
}

/// The 1000 ImageNet class names in index order.
pub fn imagenet_labels() -> Vec<String> {
    IMAGENET_CLASSES.lines().map(str::to_string).collect()
}
