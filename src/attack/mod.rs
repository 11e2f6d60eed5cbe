//! Adversarial perturbations (FGSM, PGD under L∞ / L2, targeted or not, minimal-ε search) and robustness reports:
//! does the explanation survive an attack?
//!
//! Perturbations live in **pixel space**: images in [0, 1] before normalization, ε in pixel units (8/255 is one
//! eighth of a grey level step × 8), every iterate clamped to valid pixels. Gradients flow through the model and
//! through the normalization `(p − mean) / std`.

mod compare;
mod pgd;

pub use compare::{compare_cams, iou_top, pearson, spearman, CamComparison};
pub use pgd::{
    fgsm, fgsm_direction, min_epsilon, objective_gradient, pgd, AttackConfig, AttackResult, Norm, StepRecord,
};
