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

/// Pearson correlation (0 when either map is constant).
pub fn pearson(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let (ma, mb) = (a.iter().map(|&v| v as f64).sum::<f64>() / n, b.iter().map(|&v| v as f64).sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        (sab / (saa * sbb).sqrt()) as f32
    }
}

/// Ranks with ties sharing their average rank.
fn ranks(v: &[f32]) -> Vec<f32> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0f32; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f32 / 2.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman rank correlation (Pearson of average ranks).
pub fn spearman(a: &[f32], b: &[f32]) -> f32 {
    pearson(&ranks(a), &ranks(b))
}

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
    fn correlations_of_known_vectors() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&a, &[2.0, 4.0, 6.0, 8.0]) - 1.0).abs() < 1e-6);
        assert!((pearson(&a, &[4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-6);
        // Monotone but not linear: Spearman 1, Pearson < 1.
        let b = [1.0, 10.0, 100.0, 1000.0];
        assert!((spearman(&a, &b) - 1.0).abs() < 1e-6 && pearson(&a, &b) < 0.99);
        assert_eq!(ranks(&[3.0, 1.0, 3.0]), vec![1.5, 0.0, 1.5]);
        assert_eq!(pearson(&a, &[1.0; 4]), 0.0);
    }

    #[test]
    fn iou_of_top_regions() {
        let a: Vec<f32> = (0..20).map(|i| i as f32).collect();
        assert_eq!(iou_top(&a, &a, 0.15), 1.0);
        let rev: Vec<f32> = a.iter().rev().copied().collect();
        assert_eq!(iou_top(&a, &rev, 0.15), 0.0);
    }
}
