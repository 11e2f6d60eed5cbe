//! Times each node of the bundled model's forward pass and sums the time per op type.
//!
//! `cargo run --release --example profile_forward`

use gradcam::input::load_image;
use gradcam::Model;
use std::collections::BTreeMap;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::bundled()?;
    let img = load_image(std::path::Path::new("fixtures/images/chelsea.png"), model.input_size)?;
    let x = model.normalization.apply(&img.pixels);
    let g = &model.graph;
    // Re-run node by node on the same inputs, timing each op's forward.
    let plan = g.inference_plan(&[&model.logits])?;
    let mut totals: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for _ in 0..5 {
        let acts = g.forward(&plan, vec![(&model.input, x.clone())])?;
        drop(acts);
    }
    let mut keep: Vec<&str> =
        g.nodes().iter().flat_map(|n| n.outputs.iter().map(|o| g.value(*o).name.as_str())).collect();
    keep.push(&model.input);
    let all = g.inference_plan(&keep)?;
    let acts = g.forward(&all, vec![(&model.input, x.clone())])?;
    for _ in 0..10 {
        for node in g.nodes() {
            let args: Vec<&gradcam::Tensor<f32>> =
                node.inputs.iter().map(|&i| acts.get(&g.value(i).name).unwrap()).collect();
            let t = Instant::now();
            let out = node.op.forward(&args)?;
            let dt = t.elapsed().as_secs_f64();
            drop(out);
            let kind = match (node.op.op_type(), args.get(1).map(|w| w.shape().to_vec())) {
                ("Conv", Some(w)) if w[1] == 1 && w[0] > 1 => "Conv (depthwise)",
                ("Conv", Some(w)) if w[2] * w[3] == 1 => "Conv (1×1)",
                (op, _) => op,
            };
            let e = totals.entry(kind).or_default();
            e.0 += dt / 10.0;
            e.1 += 1;
        }
    }
    let total: f64 = totals.values().map(|v| v.0).sum();
    for (op, (t, n)) in &totals {
        println!("{op:<20} {:>8.2} ms  ({} nodes)  {:>5.1}%", t * 1e3, n / 10, 100.0 * t / total);
    }
    println!("total {:.2} ms", total * 1e3);
    Ok(())
}
