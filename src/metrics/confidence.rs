//! The score change when the image is multiplied by the map (what the map keeps): Average Drop % and % Increase in
//! Confidence (Chattopadhay et al., Grad-CAM++, §6.1), and pytorch-grad-cam's `DropInConfidence` /
//! `IncreaseInConfidence` (its `CamMultImageConfidenceChange`: the preprocessed input times the map).

use super::{check_map, Scorer};
use crate::error::Result;
use ndarray::{Array2, ArrayView3, Axis};

/// The scores of one image and class before and after masking by the map.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConfidenceChange {
    /// `Y`: the score on the image.
    pub original: f32,
    /// `O`: the score on image ⊙ map.
    pub masked: f32,
}

impl ConfidenceChange {
    /// Grad-CAM++'s per-image drop, `max(0, Y − O) / Y · 100` (its mean over images is the Average Drop %).
    pub fn average_drop(&self) -> f32 {
        (self.original - self.masked).max(0.0) / self.original * 100.0
    }

    /// Grad-CAM++'s per-image increase: 100 if `O > Y`, else 0 (its mean is the % Increase in Confidence).
    pub fn increase(&self) -> f32 {
        if self.masked > self.original {
            100.0
        } else {
            0.0
        }
    }

    /// pytorch-grad-cam's `DropInConfidence`: `max(0, Y − O)`.
    pub fn drop_in_confidence(&self) -> f32 {
        (self.original - self.masked).max(0.0)
    }

    /// pytorch-grad-cam's `IncreaseInConfidence`: 1 if `O > Y`, else 0.
    pub fn increase_in_confidence(&self) -> f32 {
        if self.masked > self.original {
            1.0
        } else {
            0.0
        }
    }
}

/// Scores `image` and `image ⊙ map` (every channel multiplied by the map) for `class`.
pub fn confidence_change(
    scorer: &Scorer<'_>,
    image: ArrayView3<'_, f32>,
    map: &Array2<f32>,
    class: usize,
) -> Result<ConfidenceChange> {
    check_map(image, map)?;
    let scores = scorer.scores(2, class, |k| {
        let mut copy = image.to_owned();
        if k == 1 {
            for mut channel in copy.axis_iter_mut(Axis(0)) {
                channel *= map;
            }
        }
        copy
    })?;
    Ok(ConfidenceChange { original: scores[0], masked: scores[1] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_image_values_follow_the_definitions() {
        let c = ConfidenceChange { original: 0.8, masked: 0.2 };
        assert!((c.average_drop() - 75.0).abs() < 1e-4);
        assert_eq!(c.increase(), 0.0);
        assert!((c.drop_in_confidence() - 0.6).abs() < 1e-6);
        let up = ConfidenceChange { original: 0.2, masked: 0.5 };
        assert_eq!((up.average_drop(), up.increase(), up.increase_in_confidence()), (0.0, 100.0, 1.0));
    }
}
