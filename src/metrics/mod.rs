//! How faithful and how well placed an explanation map is: confidence change when the image is masked by the map
//! (Average Drop / Increase in Confidence, pytorch-grad-cam's Drop/IncreaseInConfidence), deletion and insertion
//! curves (RISE), ROAD with noisy linear imputation, localization against boxes (pointing game, energy-based pointing, IoU of the 15 % box), and the
//! model-randomization sanity check (Adebayo et al.).
//!
//! Every metric scores altered copies of one preprocessed image `[C, H, W]` with the model, in batches, and reads
//! a map `[H, W]` in [0, 1] at the model's input resolution (an [`crate::cam::Explanation`]'s `cam`).

mod confidence;
mod deletion;
mod localization;
mod road;
mod sanity;
mod similarity;

pub use confidence::{confidence_change, ConfidenceChange};
pub use deletion::{deletion_insertion, gaussian_blur, DeletionInsertion, DEFAULT_STEPS};
pub use localization::{energy_pointing, iou, localization_iou, pointing_hit, BoxXyxy, POINTING_TOLERANCE};
pub use road::{road, Road, ROAD_PERCENTILES};
pub use sanity::{cascading_randomization, SanityStep};
pub use similarity::{pearson, spearman, ssim};

use crate::cam::target::Objective;
use crate::cam::Target;
use crate::error::{Error, Result};
use crate::models::Model;
use ndarray::{Array3, ArrayView3};

/// Scores copies of one image with a model: the target's score of one class on each, `batch` copies per forward
/// pass.
pub struct Scorer<'m> {
    model: &'m Model,
    plan: crate::graph::Plan,
    /// The score the metrics follow: the softmax probability by default (as RISE and the Grad-CAM++ paper).
    pub target: Target,
    pub batch: usize,
}

impl<'m> Scorer<'m> {
    pub fn new(model: &'m Model, target: Target, batch: usize) -> Result<Self> {
        if batch == 0 {
            return Err(Error::InvalidArgument { name: "batch size", why: "the batch size must be at least 1".into() });
        }
        let shape = &model.graph.value(model.graph.find(&model.logits)?).shape;
        if shape.len() != 2 && !(shape.len() == 4 && shape[2] * shape[3] == 1) {
            return Err(Error::ModelInterface(format!(
                "the metrics score classifiers ([N, classes] outputs); '{}' has shape {shape:?}",
                model.logits
            )));
        }
        Ok(Scorer { model, plan: model.graph.inference_plan(&[&model.logits])?, target, batch })
    }

    /// The target's score of `class` on each of `count` copies, copy `k` made by `make(k)`.
    pub fn scores(&self, count: usize, class: usize, make: impl Fn(usize) -> Array3<f32>) -> Result<Vec<f32>> {
        if class >= self.model.classes() {
            return Err(Error::ClassOutOfRange { class, classes: self.model.classes() });
        }
        let first = make(0);
        let objective = Objective { class, target: self.target, region: None };
        let scores = crate::cam::perturb::batched_scores(
            self.model,
            &self.plan,
            &[(&self.model.input, first.view().into_dyn())],
            count,
            self.batch,
            std::slice::from_ref(&objective),
            |k, mut copy| {
                if k > 0 {
                    copy.assign(&make(k).into_dyn());
                }
            },
        )?;
        Ok(scores.column(0).to_vec())
    }

    /// The score of `class` on one image.
    pub fn score(&self, image: ArrayView3<'_, f32>, class: usize) -> Result<f32> {
        Ok(self.scores(1, class, |_| image.to_owned())?[0])
    }
}

/// Checks that a map fits an image `[C, H, W]`.
fn check_map(image: ArrayView3<'_, f32>, map: &ndarray::Array2<f32>) -> Result<()> {
    if map.dim() != (image.shape()[1], image.shape()[2]) {
        return Err(Error::InvalidArgument {
            name: "map",
            why: format!(
                "a map of {:?} for an image of {:?}: the map must have the model's input size",
                map.shape(),
                image.shape()
            ),
        });
    }
    Ok(())
}
