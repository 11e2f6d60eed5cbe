//! What an explanation explains: a score computed from one image's model output. A classifier's output `[classes]`
//! gives a class's logit or softmax probability; a segmentation model's output `[classes, H, W]` gives the sum of a
//! class's logits over a region (pytorch-grad-cam's `SemanticSegmentationTarget`): a mask the user draws, or the
//! pixels predicted as that class.

use crate::error::{Error, Result};
use crate::tensor::softmax_row;
use ndarray::{Array2, ArrayD, ArrayViewD, Axis, IxDyn};
use std::sync::Arc;

/// The score whose gradient the explanations follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The class's logit (pytorch-grad-cam's `ClassifierOutputTarget`); for a segmentation model, the sum of the
    /// class's logits over the region (`SemanticSegmentationTarget`).
    #[default]
    Logit,
    /// The class's softmax probability (`ClassifierOutputSoftmaxTarget`): its gradient is the logit gradient
    /// weighted by `p_c·(e_c − p)`, so classes competing for the same evidence count against it. Classifiers only.
    Probability,
}

/// One image's objective: a class, how it is scored, and for a segmentation output the pixels summed (row-major
/// over the output's `H × W`).
#[derive(Clone, Debug)]
pub(crate) struct Objective {
    pub class: usize,
    pub target: Target,
    pub region: Option<Arc<Vec<bool>>>,
}

impl Objective {
    /// The objective of `class` for one image whose output is `item`: for a segmentation output, over `mask`
    /// (any size, resized nearest-neighbour to the output's; non-zero = in) or else over the pixels predicted as
    /// `class`.
    pub(crate) fn new(
        item: ArrayViewD<'_, f32>,
        class: usize,
        target: Target,
        mask: Option<&Array2<f32>>,
    ) -> Result<Self> {
        match item.ndim() {
            // Class scores, also as [classes, 1, 1] (SqueezeNet's output).
            1 => Ok(Objective { class, target, region: None }),
            3 if item.shape()[1] * item.shape()[2] == 1 => Ok(Objective { class, target, region: None }),
            3 => {
                if target == Target::Probability {
                    return Err(Error::NothingToExplain(
                        "the softmax probability target is for classifiers; a segmentation output sums a class's logits"
                            .into(),
                    ));
                }
                let (h, w) = (item.shape()[1], item.shape()[2]);
                let region: Vec<bool> = match mask {
                    Some(m) => {
                        let (mh, mw) = m.dim();
                        if mh == 0 || mw == 0 {
                            return Err(Error::NothingToExplain("the segmentation mask is empty".into()));
                        }
                        (0..h * w).map(|p| m[[(p / w) * mh / h, (p % w) * mw / w]] != 0.0).collect()
                    }
                    None => (0..h * w)
                        .map(|p| {
                            let (y, x) = (p / w, p % w);
                            let mut best = 0;
                            for c in 1..item.shape()[0] {
                                if item[[c, y, x]] > item[[best, y, x]] {
                                    best = c;
                                }
                            }
                            best == class
                        })
                        .collect(),
                };
                if !region.iter().any(|&r| r) {
                    return Err(Error::NothingToExplain(format!(
                        "class {class} is predicted at no pixel and no mask covers any: nothing to explain (give a mask)"
                    )));
                }
                Ok(Objective { class, target, region: Some(Arc::new(region)) })
            }
            n => Err(Error::ModelInterface(format!(
                "a model output per image of rank {n} ({:?}): explaining needs [classes] or [classes, H, W]",
                item.shape()
            ))),
        }
    }

    /// The score of one image's output.
    pub(crate) fn score(&self, item: ArrayViewD<'_, f32>) -> f32 {
        match &self.region {
            None => {
                let row: Vec<f32> = item.iter().copied().collect();
                match self.target {
                    Target::Logit => row[self.class],
                    Target::Probability => softmax_row(&row)[self.class],
                }
            }
            Some(region) => {
                let plane = item.index_axis(Axis(0), self.class);
                plane.iter().zip(region.iter()).filter(|(_, &r)| r).map(|(&v, _)| v as f64).sum::<f64>() as f32
            }
        }
    }

    /// `∂(sign·score)/∂item`: the seed of a backward pass for one image.
    pub(crate) fn seed(&self, item: ArrayViewD<'_, f32>, sign: f32) -> ArrayD<f32> {
        let mut seed = ArrayD::<f32>::zeros(IxDyn(item.shape()));
        match &self.region {
            // Class scores, `[classes]` or `[classes, 1, 1]`: the seed in class order (it is freshly made, so
            // its elements are in standard order).
            None => {
                let flat: Vec<&mut f32> = seed.iter_mut().collect();
                match self.target {
                    Target::Logit => {
                        if let Some(s) = flat.into_iter().nth(self.class) {
                            *s = sign;
                        }
                    }
                    Target::Probability => {
                        // ∂p_c/∂z_j = p_c·(δ_cj − p_j).
                        let row: Vec<f32> = item.iter().copied().collect();
                        let p = softmax_row(&row);
                        for ((j, s), &pj) in flat.into_iter().enumerate().zip(&p) {
                            let delta = if j == self.class { 1.0 } else { 0.0 };
                            *s = sign * p[self.class] * (delta - pj);
                        }
                    }
                }
            }
            Some(region) => {
                let mut plane = seed.index_axis_mut(Axis(0), self.class);
                for (s, &r) in plane.iter_mut().zip(region.iter()) {
                    if r {
                        *s = sign;
                    }
                }
            }
        }
        seed
    }
}

/// A class summary of one image's output for ranking and predictions: the output itself for a classifier, each
/// class's mean logit over the pixels for a segmentation model.
pub(crate) fn class_row(item: ArrayViewD<'_, f32>) -> Vec<f32> {
    if item.ndim() <= 1 {
        return item.iter().copied().collect();
    }
    item.axis_iter(Axis(0)).map(|plane| plane.mean().unwrap_or(0.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, Array3};

    #[test]
    fn a_region_sums_the_class_logits_it_covers() {
        // Two classes on 2×2: class 1 wins on the right column.
        let out = Array3::from_shape_vec((2, 2, 2), vec![1.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 3.0]).unwrap().into_dyn();
        let o = Objective::new(out.view(), 1, Target::Logit, None).unwrap();
        assert_eq!(o.score(out.view()), 5.0);
        let seed = o.seed(out.view(), 1.0);
        assert_eq!(seed.iter().copied().collect::<Vec<_>>(), vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0]);
        // A mask of the top row (given at 4×4) instead.
        let mut mask = Array2::zeros((4, 4));
        mask.row_mut(0).fill(1.0);
        mask.row_mut(1).fill(1.0);
        let m = Objective::new(out.view(), 1, Target::Logit, Some(&mask)).unwrap();
        assert_eq!(m.score(out.view()), 2.0);
        assert!(Objective::new(out.view(), 1, Target::Probability, None).is_err());
        // Class 0 at the predicted pixels of class 0 (left column); a class predicted nowhere is an error.
        let out3 = Array3::from_shape_vec((3, 2, 2), [vec![1.0; 4], vec![0.0; 4], vec![-1.0; 4]].concat()).unwrap();
        assert!(Objective::new(out3.into_dyn().view(), 2, Target::Logit, None).is_err());
    }

    #[test]
    fn class_scores_shaped_c_1_1_seed_like_a_row() {
        let out = Array3::from_shape_vec((3, 1, 1), vec![1.0f32, 3.0, 2.0]).unwrap().into_dyn();
        let o = Objective::new(out.view(), 2, Target::Logit, None).unwrap();
        assert_eq!(o.score(out.view()), 2.0);
        assert_eq!(o.seed(out.view(), 1.0).iter().copied().collect::<Vec<_>>(), vec![0.0, 0.0, 1.0]);
        let p = Objective::new(out.view(), 1, Target::Probability, None).unwrap();
        assert_eq!(p.seed(out.view(), 1.0).shape(), [3, 1, 1]);
    }

    #[test]
    fn classifier_scores_and_seeds() {
        let row = arr1(&[1.0f32, 3.0]).into_dyn();
        let o = Objective::new(row.view(), 1, Target::Logit, None).unwrap();
        assert_eq!(o.score(row.view()), 3.0);
        assert_eq!(o.seed(row.view(), -1.0).iter().copied().collect::<Vec<_>>(), vec![0.0, -1.0]);
        let p = Objective::new(row.view(), 1, Target::Probability, None).unwrap();
        let e = (2.0f32).exp();
        assert!((p.score(row.view()) - e / (1.0 + e)).abs() < 1e-6);
    }
}
