//! `gradcam sanity`: Adebayo et al.'s model-randomization sanity check for one image — per method, how similar the
//! map stays as the model's layers are randomized from the logits down.

use super::ModelArgs;
use clap::Args;
use gradcam::cam::{ClassChoice, Method, Request};
use gradcam::input::load_image_limited;
use gradcam::metrics::cascading_randomization;
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SanityArgs {
    /// The image.
    #[arg(value_name = "IMAGE")]
    pub input: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Method (repeatable; any `explain` method).
    #[arg(long = "method", value_name = "NAME", default_value = "gradcam")]
    pub methods: Vec<String>,
    /// Target layer (repeatable) for the CAM methods. Default: the last spatial activation before the classifier.
    #[arg(long = "layer", value_name = "NAME")]
    pub layers: Vec<String>,
    /// Class to explain. Default: the top-1 prediction.
    #[arg(long, value_name = "ID")]
    pub class: Option<usize>,
    /// Randomize at most this many parameter layers (default: all, from the logits down to the input).
    #[arg(long, value_name = "N")]
    pub max_layers: Option<usize>,
    /// One JSON object per method and step (`{"method", "step", "layer", "spearman", "ssim"}`) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Largest image accepted, in pixels (checked from the file's header before decoding; default 64 Mpx).
    #[arg(long, value_name = "PIXELS", default_value_t = gradcam::input::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
}

pub fn run(args: SanityArgs) -> anyhow::Result<()> {
    let methods = args.methods.iter().map(|m| Method::parse(m)).collect::<Result<Vec<_>, _>>()?;
    if args.max_layers == Some(0) {
        anyhow::bail!("--max-layers must be at least 1");
    }
    let mut model = args.model.load()?;
    let img = load_image_limited(&args.input, model.input_size, args.max_pixels)?;
    let x = model.normalization.apply(&img.pixels);
    let req = Request {
        layers: args.layers.clone(),
        classes: match args.class {
            Some(c) => ClassChoice::Classes(vec![c]),
            None => ClassChoice::Top(1),
        },
        ..Request::default()
    };
    for method in methods {
        let steps = cascading_randomization(&mut model, &x, method, &req, args.max_layers)?;
        if args.json {
            for (k, s) in steps.iter().enumerate() {
                let line = json!({"method": method.name(), "step": k + 1, "layer": s.layer, "spearman": s.spearman, "ssim": s.ssim});
                say!("{line}");
            }
        } else {
            say!("{} (similarity to the original map as layers are randomized from the logits down)", method.name());
            say!("  {:>4}  {:<48} {:>9} {:>7}", "step", "layer randomized", "spearman", "ssim");
            for (k, s) in steps.iter().enumerate() {
                say!("  {:>4}  {:<48} {:>9.3} {:>7.3}", k + 1, s.layer, s.spearman, s.ssim);
            }
        }
    }
    Ok(())
}
