//! How much an explanation changes between the clean and the adversarial image.

use crate::cam::{explain, localize, ClassChoice, Method, Request};
use crate::error::Result;
use crate::models::Model;
use crate::tensor::Tensor;
use ndarray::Array2;

/// One class's map on the clean and on the adversarial image.
#[derive(Clone, Debug)]
pub struct CamComparison {
    pub class: usize,
    pub label: String,
    pub clean_peak: [usize; 2],
    pub adv_peak: [usize; 2],
    pub pearson: f32,
    pub spearman: f32,
    /// Intersection over union of the 15 % highest-valued pixels of each map.
    pub iou_top15: f32,
    pub clean_map: Array2<f32>,
    pub adv_map: Array2<f32>,
}

pub use crate::metrics::{pearson, spearman};

/// IoU of the `fraction` highest-valued pixels of two maps.
pub fn iou_top(a: &[f32], b: &[f32], fraction: f32) -> f32 {
    let mask = |v: &[f32]| {
        let k = ((v.len() as f32 * fraction).ceil() as usize).clamp(1, v.len().max(1));
        let mut sorted = v.to_vec();
        sorted.sort_by(|x, y| y.total_cmp(x));
        let cut = sorted.get(k - 1).copied().unwrap_or(f32::INFINITY);
        v.iter().map(|&x| x >= cut && x > 0.0).collect::<Vec<bool>>()
    };
    let (ma, mb) = (mask(a), mask(b));
    let inter = ma.iter().zip(&mb).filter(|(x, y)| **x && **y).count();
    let union = ma.iter().zip(&mb).filter(|(x, y)| **x || **y).count();
    if union == 0 {
        0.0
    } else {
        inter as f32 / union as f32
    }
}

/// Explains `classes` on both images with `method` (default layer) and compares the maps.
pub fn compare_cams(
    model: &Model,
    clean: &Tensor<f32>,
    adv: &Tensor<f32>,
    classes: &[usize],
    method: Method,
) -> Result<Vec<CamComparison>> {
    let request = Request {
        layers: Vec::new(),
        classes: ClassChoice::Classes(classes.to_vec()),
        methods: vec![method],
        counterfactual: false,
        eigen_smooth: false,
        aug_smooth: false,
        target: Default::default(),
        batch_size: crate::cam::DEFAULT_PERTURBATION_BATCH,
        samples: crate::cam::DEFAULT_SAMPLES,
        noise: crate::cam::DEFAULT_NOISE,
        steps: crate::cam::DEFAULT_STEPS,
        seg_mask: None,
        tokens: Default::default(),
    };
    let a = explain(model, model.normalization.apply(clean), &request)?.remove(0);
    let b = explain(model, model.normalization.apply(adv), &request)?.remove(0);
    Ok(a.explanations
        .into_iter()
        .zip(b.explanations)
        .map(|(e, f)| {
            let (x, y) =
                (e.cam.as_slice().expect("contiguous").to_vec(), f.cam.as_slice().expect("contiguous").to_vec());
            CamComparison {
                class: e.class,
                label: e.label.clone(),
                clean_peak: localize(&e.cam).peak,
                adv_peak: localize(&f.cam).peak,
                pearson: pearson(&x, &y),
                spearman: spearman(&x, &y),
                iou_top15: iou_top(&x, &y, 0.15),
                clean_map: e.cam,
                adv_map: f.cam,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_top_regions() {
        let a: Vec<f32> = (0..20).map(|i| i as f32).collect();
        assert_eq!(iou_top(&a, &a, 0.15), 1.0);
        let rev: Vec<f32> = a.iter().rev().copied().collect();
        assert_eq!(iou_top(&a, &rev, 0.15), 0.0);
    }
}
