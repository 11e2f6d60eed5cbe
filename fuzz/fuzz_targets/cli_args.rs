//! Fuzz target: combinations of the command line's sub-commands, flags and values, run through the same `cli::run`
//! as the binary (compiled in from `src/cli/`) on a tiny classifier, a tiny image and a tiny `.npy` made at start-up.
//! Every combination must end in `Ok` or an error — never a panic, a hang or a runaway allocation.
//!
//! The fuzz input is read as a program: its first byte picks the sub-command, then each pair of bytes picks a flag
//! of that sub-command and a value (a table of edge cases: 0, -1, huge, NaN, fractions, empty, unknown names) or
//! the next few input bytes as a free-form string. Counts that only make a run longer (`--iters`, `--steps`,
//! `--warmup`) are drawn from small values, so that a slow run is not mistaken for a hang.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/cli/mod.rs"]
mod cli;

use clap::Parser;
use gradcam::onnx::proto::*;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Files every run reads, made once per process.
struct Files {
    dir: PathBuf,
    model: String,
    image: String,
    npy: String,
}

fn files() -> &'static Files {
    static FILES: OnceLock<Files> = OnceLock::new();
    FILES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("gradcam-fuzz-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let model = dir.join("tiny.onnx");
        std::fs::write(&model, tiny_classifier()).expect("write model");
        let image = dir.join("tiny.png");
        image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([(x * 6) as u8, (y * 8) as u8, 128]))
            .save(&image)
            .expect("write image");
        let npy = dir.join("tiny.npy");
        std::fs::write(&npy, npy_bytes(&[1, 3, 16, 16])).expect("write npy");
        let s = |p: &PathBuf| p.to_str().expect("utf-8 temp path").to_string();
        Files { model: s(&model), image: s(&image), npy: s(&npy), dir }
    })
}

/// `x [1,3,16,16] → Conv 3×3 (4 channels, pad 1) "conv" → Relu → GlobalAveragePool → Flatten → Gemm (5 classes)`.
fn tiny_classifier() -> Vec<u8> {
    let floats = |name: &str, dims: Vec<i64>| {
        let n: i64 = dims.iter().product();
        let float_data = (0..n).map(|i| ((i * 37 % 17) as f32 - 8.0) / 16.0).collect();
        TensorProto { name: name.into(), dims, data_type: dtype::FLOAT, float_data, ..Default::default() }
    };
    let node = |op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>| NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    };
    let ints = |name: &str, v: &[i64]| AttributeProto {
        name: name.into(),
        r#type: 7, // INTS
        ints: v.to_vec(),
        ..Default::default()
    };
    let int = |name: &str, v: i64| AttributeProto { name: name.into(), r#type: 2, i: v, ..Default::default() }; // type INT
    let value = |name: &str, dims: &[i64]| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: dtype::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|&d| Dimension { dim_value: Some(d), dim_param: None }).collect(),
                }),
            }),
        }),
        ..Default::default()
    };
    let graph = GraphProto {
        name: "tiny".into(),
        node: vec![
            node("Conv", &["x", "w", "b"], "conv", vec![ints("kernel_shape", &[3, 3]), ints("pads", &[1, 1, 1, 1])]),
            node("Relu", &["conv"], "relu", vec![]),
            node("GlobalAveragePool", &["relu"], "pool", vec![]),
            node("Flatten", &["pool"], "flat", vec![int("axis", 1)]),
            node("Gemm", &["flat", "fc_w", "fc_b"], "logits", vec![int("transB", 1)]),
        ],
        initializer: vec![floats("w", vec![4, 3, 3, 3]), floats("b", vec![4]), floats("fc_w", vec![5, 4]), floats("fc_b", vec![5])],
        input: vec![value("x", &[1, 3, 16, 16])],
        output: vec![value("logits", &[1, 5])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}

/// A little-endian f32 `.npy` of `shape` with values in [0, 1).
fn npy_bytes(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}), }}", dims.join(", "));
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    let n: usize = shape.iter().product();
    bytes.extend((0..n).flat_map(|i| ((i % 10) as f32 / 10.0).to_le_bytes()));
    bytes
}

/// How a flag's value is drawn.
#[derive(Clone, Copy)]
enum Kind {
    /// A switch without a value.
    Switch,
    /// A count or size (edge-case integers).
    Count,
    /// A count that only makes the run longer: small values.
    SmallCount,
    /// A real number or fraction.
    Real,
    /// A name (layer, method, colormap, attack kind...).
    Name,
    /// An `R,G,B` triple.
    Triple,
    /// A memory size (`512M`...).
    Size,
    /// A path.
    Path,
    /// A token grid (`auto`, `HxW`) or an input shape (`[NAME=]D0,D1,…`).
    Shape,
}

const EXPLAIN: &[(&str, Kind)] = &[
    ("--layer", Kind::Name),
    ("--class", Kind::Count),
    ("--top", Kind::Count),
    ("--method", Kind::Name),
    ("--counterfactual", Kind::Switch),
    ("--colormap", Kind::Name),
    ("--alpha", Kind::Real),
    ("--npy", Kind::Switch),
    ("--json", Kind::Switch),
    ("--batch-size", Kind::Count),
    ("--fail-fast", Kind::Switch),
    ("--max-pixels", Kind::Count),
    ("--box", Kind::Switch),
    ("--mean", Kind::Triple),
    ("--std", Kind::Triple),
    ("--max-memory", Kind::Size),
    ("--arch", Kind::Name),
    ("--tokens", Kind::Shape),
    ("--skip-tokens", Kind::Count),
    ("--input-shape", Kind::Shape),
];
const LAYERS: &[(&str, Kind)] =
    &[("--all", Kind::Switch), ("--json", Kind::Switch), ("--max-memory", Kind::Size), ("--arch", Kind::Name)];
const INFER: &[(&str, Kind)] = &[
    ("--input", Kind::Path),
    ("--json", Kind::Switch),
    ("--batch-size", Kind::Count),
    ("--max-memory", Kind::Size),
    ("--input-shape", Kind::Shape),
];
const ATTACK: &[(&str, Kind)] = &[
    ("--attack", Kind::Name),
    ("--eps", Kind::Real),
    ("--norm", Kind::Name),
    ("--steps", Kind::SmallCount),
    ("--step-size", Kind::Real),
    ("--target", Kind::Count),
    ("--seed", Kind::Count),
    ("--max-pixels", Kind::Count),
    ("--random-start", Kind::Switch),
    ("--confidence", Kind::Real),
    ("--explain", Kind::Count),
    ("--method", Kind::Name),
    ("--min-eps", Kind::Switch),
    ("--json", Kind::Switch),
    ("--max-memory", Kind::Size),
];
const BENCH: &[(&str, Kind)] = &[
    ("--method", Kind::Name),
    ("--layer", Kind::Name),
    ("--batch", Kind::SmallCount),
    ("--iters", Kind::SmallCount),
    ("--warmup", Kind::SmallCount),
    ("--input", Kind::Path),
    ("--json", Kind::Switch),
    ("--profile", Kind::Switch),
    ("--max-memory", Kind::Size),
];

fn pick<'a>(list: &[&'a str], b: u8) -> &'a str {
    list[b as usize % list.len()]
}

fn value(kind: Kind, b: u8, free: &mut impl Iterator<Item = u8>) -> Option<String> {
    let f = files();
    let v = match kind {
        Kind::Switch => return None,
        Kind::Count => pick(&["0", "1", "2", "4", "5", "999", "-1", "18446744073709551615", "1e3", "x", ""], b),
        Kind::SmallCount => pick(&["0", "1", "2", "3", "-1", "x", ""], b),
        Kind::Real => pick(&["0", "0.5", "1", "2", "-1", "8/255", "1/0", "0/0", "NaN", "inf", "1e-30", "/", ""], b),
        Kind::Name => pick(
            &[
                "conv", "relu", "pool", "flat", "logits", "x", "nosuch", "gradcam", "gradcam++", "xgradcam",
                "layercam", "hirescam", "saliency", "guided-backprop", "guided-gradcam", "fgsm", "pgd", "l2", "linf",
                "jet", "viridis", "resnet18", "efficientnet_lite0", "",
            ],
            b,
        ),
        Kind::Triple => pick(&["0.5,0.5,0.5", "1,1,1", "0,0,0", "1,2", "a,b,c", "NaN,1,1", "-1,-1,-1"], b),
        Kind::Shape => pick(
            &[
                "auto", "2x2", "0x4", "4x4", "1x1", "99999999x99999999", "x", "1,3,8,8", "x=1,3,8,8", "1,3,0,8",
                "1,3,99999,99999", "=1", "nosuch=1,3,8,8", "1,3,8", "",
            ],
            b,
        ),
        Kind::Size => pick(&["1", "1K", "64M", "2G", "0", "-1G", "1e30", "3X"], b),
        Kind::Path => {
            let list = [f.npy.as_str(), f.image.as_str(), f.model.as_str(), "/nonexistent.npy", "/dev/null", "/"];
            list[b as usize % list.len()]
        }
    };
    // Now and then a free-form value from the next input bytes instead (not for counts that only lengthen a run:
    // `--batch 4101` on the tiny model took 10 s under ASAN, 0.4 s in release — slow, not hung).
    if b >= 0xF0 && !matches!(kind, Kind::SmallCount) {
        let s: Vec<u8> = free.take(8).filter(|&c| c != 0).collect();
        return Some(String::from_utf8_lossy(&s).into_owned());
    }
    Some(v.to_string())
}

fuzz_target!(|data: &[u8]| {
    let f = files();
    let Some((&which, rest)) = data.split_first() else { return };
    let out = f.dir.join("out").to_str().expect("utf-8").to_string();
    let (mut args, table): (Vec<String>, &[(&str, Kind)]) = match which % 5 {
        0 => (vec!["explain".into(), f.image.clone(), "--model".into(), f.model.clone(), "--out-dir".into(), out], EXPLAIN),
        1 => (vec!["layers".into(), "--model".into(), f.model.clone()], LAYERS),
        2 => (vec!["infer".into(), "--model".into(), f.model.clone(), "--input".into(), f.npy.clone(), "--out-dir".into(), out], INFER),
        3 => (vec!["attack".into(), f.image.clone(), "--model".into(), f.model.clone(), "--out-dir".into(), out], ATTACK),
        _ => (vec!["bench".into(), "--model".into(), f.model.clone(), "--iters".into(), "1".into(), "--warmup".into(), "0".into()], BENCH),
    };
    let mut bytes = rest.iter().copied();
    while let (Some(flag), Some(v)) = (bytes.next(), bytes.next()) {
        let (name, kind) = table[flag as usize % table.len()];
        args.push(name.to_string());
        if let Some(v) = value(kind, v, &mut bytes) {
            args.push(v);
        }
        if args.len() > 40 {
            break;
        }
    }
    // GRADCAM_FUZZ_PRINT=1: show the command line an input decodes to (to reproduce a finding with the binary).
    if std::env::var_os("GRADCAM_FUZZ_PRINT").is_some() {
        eprintln!("gradcam {}", args.join(" "));
    }
    let Ok(parsed) = cli::Cli::try_parse_from(std::iter::once("gradcam".to_string()).chain(args)) else { return };
    // Output goes to stdout; errors are the expected outcome of most combinations.
    let _ = cli::run(parsed);
});
