//! FGSM and projected gradient descent in pixel space.

use crate::error::{Error, Result};
use crate::models::Model;
use crate::ops::abs::sign;
use crate::random::{unit24, SplitMix64};
use crate::tensor::{softmax_row, Tensor};
use ndarray::{Axis, IxDyn, Zip};

/// The norm bounding the perturbation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    Linf,
    L2,
}

/// An attack's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackConfig {
    /// Radius of the allowed perturbation, in pixel units ([0, 1] images).
    pub eps: f32,
    pub norm: Norm,
    /// Iterations (1 with `step_size = eps` and no random start is FGSM).
    pub steps: usize,
    pub step_size: f32,
    /// Targeted attack towards this class; untargeted (away from the true class) when `None`.
    pub target: Option<usize>,
    /// Start from a uniformly random point of the ε-ball (seeded).
    pub random_start: bool,
    pub seed: u64,
    /// Stop as soon as the goal is met.
    pub early_stop: bool,
    /// For targeted attacks: the goal also needs this probability of the target class.
    pub min_confidence: f32,
}

impl AttackConfig {
    /// Untargeted L∞ PGD with the usual `2.5·ε / steps` step size.
    pub fn pgd(eps: f32, steps: usize) -> Self {
        AttackConfig {
            eps,
            norm: Norm::Linf,
            steps,
            step_size: 2.5 * eps / steps.max(1) as f32,
            target: None,
            random_start: false,
            seed: 0,
            early_stop: true,
            min_confidence: 0.0,
        }
    }
}

/// The model's state after one step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    pub top1: usize,
    /// Probability of the true class.
    pub true_prob: f32,
    /// Probability of the target class (targeted attacks).
    pub target_prob: Option<f32>,
}

/// The adversarial image and how it was reached.
#[derive(Clone, Debug)]
pub struct AttackResult {
    /// `[1, 3, H, W]` pixels in [0, 1].
    pub pixels: Tensor<f32>,
    pub linf: f32,
    pub l2: f32,
    pub steps: usize,
    pub success: bool,
    /// State before the first step, then after each step.
    pub history: Vec<StepRecord>,
}

/// The random start's generator: uniform in `[0, 1)` with 24 bits, seeded, portable, bit-reproducible.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> f32 {
        unit24(self.0.next_u64()) as f32
    }
}

/// Probabilities and the gradient, w.r.t. the pixels, of the attack objective: `CE(true)` (untargeted, to ascend)
/// or `−CE(target)` (targeted). One PGD step is this plus a projection; `gradcam bench --method pgd-step` times it.
pub fn objective_gradient(
    model: &Model,
    pixels: &Tensor<f32>,
    true_class: usize,
    target: Option<usize>,
) -> Result<(Vec<f32>, Tensor<f32>)> {
    let g = &model.graph;
    let plan = g.plan(&[&model.logits], &[&model.input], &[])?;
    let x = model.normalization.apply(pixels);
    let acts = g.forward(&plan, vec![(&model.input, x)])?;
    let logits = acts.get(&model.logits)?;
    let row: Vec<f32> = logits.iter().copied().collect();
    let p = softmax_row(&row);
    // ∂CE(c)/∂logits = softmax − onehot(c).
    let (class, sign) = match target {
        Some(t) => (t, -1.0),
        None => (true_class, 1.0),
    };
    let mut seed = Tensor::from_shape_vec(IxDyn(logits.shape()), p.clone()).expect("same length");
    seed[[0, class]] -= 1.0;
    seed.mapv_inplace(|v| sign * v);
    let mut grads = acts.backward(vec![(&model.logits, seed)])?;
    let mut gx = grads.take(&model.input)?;
    // x = (p − mean) / std ⇒ ∂/∂p = ∂/∂x / std.
    for (c, mut plane) in gx.axis_iter_mut(Axis(1)).enumerate() {
        let s = model.normalization.std[c % 3];
        plane.mapv_inplace(|v| v / s);
    }
    Ok((p, gx))
}

fn record(p: &[f32], true_class: usize, target: Option<usize>) -> StepRecord {
    let top1 = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap_or(0);
    StepRecord { top1, true_prob: p[true_class], target_prob: target.map(|t| p[t]) }
}

fn goal_met(r: &StepRecord, cfg: &AttackConfig, true_class: usize) -> bool {
    match (cfg.target, r.target_prob) {
        (Some(t), Some(pt)) => r.top1 == t && pt >= cfg.min_confidence,
        _ => r.top1 != true_class,
    }
}

/// The sign of the pixel gradient of `CE(class)`: FGSM's (untargeted) direction.
pub fn fgsm_direction(model: &Model, pixels: &Tensor<f32>, class: usize) -> Result<Tensor<f32>> {
    let (_, g) = objective_gradient(model, pixels, class, None)?;
    Ok(g.mapv(sign))
}

/// Fast gradient sign method: one L∞ step of size ε (towards `target` when given, else away from `true_class`).
pub fn fgsm(
    model: &Model,
    pixels: &Tensor<f32>,
    true_class: usize,
    target: Option<usize>,
    eps: f32,
) -> Result<AttackResult> {
    let cfg = AttackConfig {
        eps,
        norm: Norm::Linf,
        steps: 1,
        step_size: eps,
        target,
        random_start: false,
        seed: 0,
        early_stop: false,
        min_confidence: 0.0,
    };
    pgd(model, pixels, true_class, &cfg)
}

fn validate(model: &Model, pixels: &Tensor<f32>, true_class: usize, cfg: &AttackConfig) -> Result<()> {
    let classes = model.classes();
    for c in std::iter::once(true_class).chain(cfg.target) {
        if c >= classes {
            return Err(Error::ClassOutOfRange { class: c, classes });
        }
    }
    if !(cfg.eps.is_finite() && cfg.eps >= 0.0 && cfg.step_size.is_finite() && cfg.step_size >= 0.0) {
        return Err(Error::InvalidArgument {
            name: "eps",
            why: format!("eps ({}) and step size ({}) must be finite and ≥ 0", cfg.eps, cfg.step_size),
        });
    }
    if crate::tensor::has_non_finite(pixels) {
        return Err(Error::NonFiniteInput { origin: "the image to attack".into(), shape: pixels.shape().to_vec() });
    }
    if pixels.ndim() != 4 || pixels.shape()[0] != 1 {
        return Err(Error::InvalidArgument {
            name: "image",
            why: format!("attacks take one image [1, 3, H, W], got {:?}", pixels.shape()),
        });
    }
    Ok(())
}

fn l2(t: &Tensor<f32>) -> f32 {
    t.iter().map(|v| v * v).sum::<f32>().sqrt()
}

/// Projects `delta` onto the ε-ball of the norm, then makes `x0 + delta` a valid image.
fn project(x0: &Tensor<f32>, delta: &mut Tensor<f32>, cfg: &AttackConfig) {
    match cfg.norm {
        Norm::Linf => delta.mapv_inplace(|d| d.clamp(-cfg.eps, cfg.eps)),
        Norm::L2 => {
            let n = l2(delta);
            if n > cfg.eps {
                let s = cfg.eps / n;
                delta.mapv_inplace(|d| d * s);
            }
        }
    }
    Zip::from(delta).and(x0).for_each(|d, &x| *d = (x + *d).clamp(0.0, 1.0) - x);
}

/// Projected gradient descent (Madry et al.) in pixel space.
pub fn pgd(model: &Model, pixels: &Tensor<f32>, true_class: usize, cfg: &AttackConfig) -> Result<AttackResult> {
    validate(model, pixels, true_class, cfg)?;
    let x0 = pixels.mapv(|v| v.clamp(0.0, 1.0));
    let mut delta = Tensor::<f32>::zeros(x0.raw_dim());
    if cfg.random_start && cfg.eps > 0.0 {
        let mut rng = Rng(SplitMix64::new(cfg.seed));
        delta.mapv_inplace(|_| (2.0 * rng.next() - 1.0) * cfg.eps);
        if cfg.norm == Norm::L2 {
            // A uniform direction with radius ε·u^(1/d) would need a Gaussian; a scaled box sample is in the ball.
            let n = l2(&delta).max(1e-12);
            let r = cfg.eps * rng.next();
            delta.mapv_inplace(|d| d * r / n);
        }
        project(&x0, &mut delta, cfg);
    }
    let mut history = Vec::with_capacity(cfg.steps + 1);
    let mut steps = 0;
    let mut success = false;
    for step in 0..=cfg.steps {
        let current = &x0 + &delta;
        let (p, g) = objective_gradient(model, &current, true_class, cfg.target)?;
        let r = record(&p, true_class, cfg.target);
        success = goal_met(&r, cfg, true_class);
        history.push(r);
        if step == cfg.steps || (cfg.early_stop && success) {
            break;
        }
        match cfg.norm {
            Norm::Linf => Zip::from(&mut delta).and(&g).for_each(|d, &gv| *d += cfg.step_size * sign(gv)),
            Norm::L2 => {
                let n = l2(&g);
                if n > 0.0 {
                    let s = cfg.step_size / n;
                    Zip::from(&mut delta).and(&g).for_each(|d, &gv| *d += s * gv);
                }
            }
        }
        project(&x0, &mut delta, cfg);
        steps += 1;
    }
    let linf = delta.iter().fold(0f32, |m, v| m.max(v.abs()));
    Ok(AttackResult { pixels: &x0 + &delta, linf, l2: l2(&delta), steps, success, history })
}

/// The smallest ε (within `tolerance`) in `[0, max_eps]` for which the attack succeeds, by bisection (like
/// Captum's MinParamPerturbation); the step size scales with ε. `None` if it fails even at `max_eps`.
pub fn min_epsilon(
    model: &Model,
    pixels: &Tensor<f32>,
    true_class: usize,
    cfg: &AttackConfig,
    max_eps: f32,
    tolerance: f32,
) -> Result<Option<(f32, AttackResult)>> {
    let ratio = if cfg.eps > 0.0 { cfg.step_size / cfg.eps } else { 1.0 };
    let run = |eps: f32| pgd(model, pixels, true_class, &AttackConfig { eps, step_size: eps * ratio, ..cfg.clone() });
    let top = run(max_eps)?;
    if !top.success {
        return Ok(None);
    }
    let (mut lo, mut hi, mut best) = (0.0f32, max_eps, top);
    while hi - lo > tolerance.max(1e-6) {
        let mid = 0.5 * (lo + hi);
        let r = run(mid)?;
        if r.success {
            hi = mid;
            best = r;
        } else {
            lo = mid;
        }
    }
    Ok(Some((hi, best)))
}
