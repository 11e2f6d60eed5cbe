//! `gradcam layers`: every addressable value of a model, its op and output shape.

use super::ModelArgs;
use clap::Args;
use gradcam::cam::{default_layer, is_spatial};
use gradcam::graph::Source;

#[derive(Args, Debug)]
pub struct LayersArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Also list constants (weights).
    #[arg(long)]
    pub all: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: LayersArgs) -> anyhow::Result<()> {
    let model = args.model.load()?;
    let g = &model.graph;
    let default = default_layer(g, &model.logits).ok();
    if !args.json {
        say!("{}", model.name);
        say!("{:<48} {:<20} {:<20} cam", "layer", "op", "shape");
    }
    for (name, id) in g.names() {
        let v = g.value(id);
        let op = match &v.source {
            Source::Input => "input",
            Source::Constant(_) | Source::HalfConstant(_) if !args.all => continue,
            Source::Constant(_) | Source::HalfConstant(_) => "constant",
            Source::Node { .. } => g.producer(id).map(|n| n.op.op_type()).unwrap_or("?"),
        };
        let alias_of = (name != v.name).then_some(v.name.as_str());
        let spatial = is_spatial(g, id);
        let is_default = default.as_deref() == Some(v.name.as_str());
        if args.json {
            let obj = serde_json::json!({
                "layer": name, "op": op, "shape": v.shape, "alias_of": alias_of,
                "cam_candidate": spatial, "default": is_default,
            });
            say!("{obj}");
        } else {
            let shape = format!("{:?}", v.shape);
            let mark = match (spatial, is_default) {
                (_, true) => "default",
                (true, false) => "yes",
                _ => "",
            };
            let name = match alias_of {
                Some(of) => format!("{name} (= {of})"),
                None => name.to_string(),
            };
            say!("{name:<48} {op:<20} {shape:<20} {mark}");
        }
    }
    Ok(())
}
