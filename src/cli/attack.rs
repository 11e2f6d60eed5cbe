//! `gradcam attack`: an adversarial image, and how the explanation changed.

use super::ModelArgs;
use anyhow::Context;
use clap::{Args, ValueEnum};
use gradcam::attack::{compare_cams, min_epsilon, pgd, AttackConfig, Norm};
use gradcam::cam::Method;
use gradcam::input::{image_to_tensor, load_image_limited, load_npy};
use gradcam::render::{overlay, save_png, Colormap};
use gradcam::Tensor;
use image::RgbImage;
use ndarray::Axis;
use serde_json::json;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AttackKind {
    Fgsm,
    Pgd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NormArg {
    Linf,
    L2,
}

#[derive(Args, Debug)]
pub struct AttackArgs {
    /// An image, or a .npy NCHW f32 tensor (already normalized).
    #[arg(value_name = "INPUT")]
    pub input: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, value_enum, default_value = "pgd")]
    pub attack: AttackKind,
    /// Perturbation budget in pixel units of [0, 1] images; fractions like 8/255 are accepted.
    #[arg(long, default_value = "8/255", value_parser = parse_fraction)]
    pub eps: f32,
    #[arg(long, value_enum, default_value = "linf")]
    pub norm: NormArg,
    /// PGD iterations (at most 10000).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// PGD step size (default 2.5·eps/steps); fractions accepted.
    #[arg(long, value_parser = parse_fraction)]
    pub step_size: Option<f32>,
    /// Targeted attack towards this class (untargeted when absent).
    #[arg(long)]
    pub target: Option<usize>,
    /// Seed of the random start.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Largest image accepted, in pixels (checked from the file's header before decoding; default 64 Mpx).
    #[arg(long, value_name = "PIXELS", default_value_t = gradcam::input::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Start PGD from a random point of the ε-ball.
    #[arg(long)]
    pub random_start: bool,
    /// For targeted attacks, keep going until the target has this probability (in [0, 1]; 0: no requirement).
    #[arg(long, default_value_t = 0.0)]
    pub confidence: f32,
    /// Class whose explanation to compare (repeatable; default: the clean top-1). The adversarial top-1 is added.
    #[arg(long = "explain", value_name = "CLASS")]
    pub explain: Vec<usize>,
    /// CAM method for the comparison.
    #[arg(long, default_value = "gradcam")]
    pub method: String,
    #[arg(long, default_value = "gradcam-out", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Search the smallest ε ≤ --eps at which the attack succeeds (bisection to 0.1/255) and report that attack.
    #[arg(long)]
    pub min_eps: bool,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

fn parse_fraction(s: &str) -> Result<f32, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f32, f32) = (
                a.trim().parse().map_err(|e| format!("'{a}': {e}"))?,
                b.trim().parse().map_err(|e| format!("'{b}': {e}"))?,
            );
            a / b
        }
        None => s.trim().parse().map_err(|e| format!("'{s}': {e}"))?,
    };
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("'{s}' is not a finite non-negative number"))
    }
}

fn to_image(pixels: &Tensor<f32>) -> RgbImage {
    let (h, w) = (pixels.shape()[2], pixels.shape()[3]);
    RgbImage::from_fn(w as u32, h as u32, |x, y| {
        image::Rgb(std::array::from_fn(|c| gradcam::render::to_byte(pixels[[0, c, y as usize, x as usize]] * 255.0)))
    })
}

fn side_by_side(a: &RgbImage, b: &RgbImage) -> RgbImage {
    let gap = 8;
    let mut out =
        RgbImage::from_pixel(a.width() + gap + b.width(), a.height().max(b.height()), image::Rgb([255, 255, 255]));
    image::imageops::replace(&mut out, a, 0, 0);
    image::imageops::replace(&mut out, b, (a.width() + gap) as i64, 0);
    out
}

/// Most PGD iterations `--steps` accepts (a documented cap, so that a typo cannot run for days).
const MAX_STEPS: usize = 10_000;

fn top1(model: &gradcam::Model, pixels: &Tensor<f32>) -> anyhow::Result<(usize, f32)> {
    let plan = model.graph.inference_plan(&[&model.logits])?;
    let acts = model.graph.forward(&plan, vec![(&model.input, model.normalization.apply(pixels))])?;
    let row: Vec<f32> = acts.get(&model.logits)?.iter().copied().collect();
    if row.is_empty() {
        anyhow::bail!("the model's output '{}' has no classes", model.logits);
    }
    let p = gradcam::tensor::softmax_row(&row);
    let c = (0..row.len()).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0);
    Ok((c, p[c]))
}

pub fn run(args: AttackArgs) -> anyhow::Result<()> {
    let method = Method::parse(&args.method)?;
    if !matches!(method, Method::Cam(_)) {
        let cams: Vec<&str> = Method::ALL.iter().filter(|m| matches!(m, Method::Cam(_))).map(|m| m.name()).collect();
        anyhow::bail!("--method must be a CAM method ({})", cams.join(", "));
    }
    if !(0.0..=1.0).contains(&args.confidence) {
        anyhow::bail!("--confidence must be a probability in [0, 1] (0: no requirement), got {}", args.confidence);
    }
    if args.steps > MAX_STEPS {
        anyhow::bail!("--steps {} is above the limit of {MAX_STEPS}", args.steps);
    }
    let model = args.model.load()?;
    let classes_n = model.classes();
    if classes_n == 0 {
        anyhow::bail!("the model's output '{}' has no classes", model.logits);
    }
    if let Some(&c) = args.explain.iter().chain(&args.target).find(|&&c| c >= classes_n) {
        anyhow::bail!("class {c} is out of range: the model has {classes_n} classes");
    }
    let is_npy = gradcam::input::is_npy(&args.input);
    let pixels = if is_npy {
        let x = load_npy(&args.input)?;
        if x.shape()[0] != 1 {
            anyhow::bail!("{}: attack takes one image, the .npy holds {}", args.input.display(), x.shape()[0]);
        }
        let n = model.normalization;
        let mut p = x.index_axis(Axis(0), 0).insert_axis(Axis(0)).to_owned();
        for (c, mut plane) in p.axis_iter_mut(Axis(1)).enumerate() {
            plane.mapv_inplace(|v| v * n.std[c % 3] + n.mean[c % 3]);
        }
        p
    } else {
        let img = load_image_limited(&args.input, model.input_size, args.max_pixels)?;
        image_to_tensor(&img.original, model.input_size)
    };
    let (clean_class, clean_prob) = top1(&model, &pixels)?;
    let steps = match args.attack {
        AttackKind::Fgsm => 1,
        AttackKind::Pgd => args.steps.max(1),
    };
    let step_size = match args.attack {
        AttackKind::Fgsm => args.eps,
        AttackKind::Pgd => args.step_size.unwrap_or(2.5 * args.eps / steps as f32),
    };
    let cfg = AttackConfig {
        eps: args.eps,
        norm: match args.norm {
            NormArg::Linf => Norm::Linf,
            NormArg::L2 => Norm::L2,
        },
        steps,
        step_size,
        target: args.target,
        random_start: args.random_start && matches!(args.attack, AttackKind::Pgd),
        seed: args.seed,
        early_stop: matches!(args.attack, AttackKind::Pgd),
        min_confidence: args.confidence,
    };
    let (adv, min_eps) = if args.min_eps {
        match min_epsilon(&model, &pixels, clean_class, &cfg, args.eps, 0.1 / 255.0)? {
            Some((eps, adv)) => (adv, Some(eps)),
            None => (pgd(&model, &pixels, clean_class, &cfg)?, None),
        }
    } else {
        (pgd(&model, &pixels, clean_class, &cfg)?, None)
    };
    let (adv_class, adv_prob) = top1(&model, &adv.pixels)?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create output directory {}", args.out_dir.display()))?;
    let stem = args.input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "input".into());
    let png = args.out_dir.join(format!("{stem}_adv.png"));
    save_png(&to_image(&adv.pixels), &png)?;
    let npy = args.out_dir.join(format!("{stem}_adv.npy"));
    gradcam::output::write_npy(&npy, &model.normalization.apply(&adv.pixels))?;

    let mut classes = if args.explain.is_empty() { vec![clean_class] } else { args.explain.clone() };
    if !classes.contains(&adv_class) {
        classes.push(adv_class);
    }
    let report = compare_cams(&model, &pixels, &adv.pixels, &classes, method)?;
    let (clean_img, adv_img) = (to_image(&pixels), to_image(&adv.pixels));
    let mut cams = Vec::new();
    for c in &report {
        let path = args.out_dir.join(format!("{stem}_{}_{}_clean_vs_adv.png", c.class, method.name()));
        let picture = side_by_side(
            &overlay(&clean_img, &c.clean_map, Colormap::Jet, 0.5),
            &overlay(&adv_img, &c.adv_map, Colormap::Jet, 0.5),
        );
        save_png(&picture, &path)?;
        cams.push(json!({
            "class": c.class, "label": c.label, "clean_peak": c.clean_peak, "adv_peak": c.adv_peak,
            "pearson": c.pearson, "spearman": c.spearman, "iou_top15": c.iou_top15, "overlay": path.display().to_string(),
        }));
    }
    if args.json {
        let obj = json!({
            "clean": {"top1": clean_class, "label": model.label(clean_class), "prob": clean_prob},
            "adversarial": {"top1": adv_class, "label": model.label(adv_class), "prob": adv_prob,
                            "png": png.display().to_string(), "npy": npy.display().to_string()},
            "linf": adv.linf, "l2": adv.l2, "cam": cams,
            "attack": format!("{:?}", args.attack).to_lowercase(), "eps": args.eps, "steps": adv.steps,
            "success": adv.success, "target": args.target, "min_eps": min_eps,
        });
        say!("{obj}");
        return Ok(());
    }
    say!("{} — {}", args.input.display(), model.name);
    say!("  clean:       {:>4} {} ({:.1}%)", clean_class, model.label(clean_class), 100.0 * clean_prob);
    say!(
        "  adversarial: {:>4} {} ({:.1}%) after {} steps → {}",
        adv_class,
        model.label(adv_class),
        100.0 * adv_prob,
        adv.steps,
        png.display()
    );
    say!("  perturbation: L∞ {:.4} ({:.2}/255), L2 {:.3}", adv.linf, adv.linf * 255.0, adv.l2);
    if args.min_eps {
        match min_eps {
            Some(e) => say!("  smallest successful ε: {:.4} ({:.2}/255)", e, e * 255.0),
            None => say!("  the attack fails even at ε = {:.4}", args.eps),
        }
    }
    for c in &report {
        say!(
            "  {} for {} ({}): pearson {:.3}, spearman {:.3}, IoU(top 15%) {:.3}, peak {:?} → {:?}",
            method.name(),
            c.class,
            c.label,
            c.pearson,
            c.spearman,
            c.iou_top15,
            c.clean_peak,
            c.adv_peak
        );
    }
    Ok(())
}
