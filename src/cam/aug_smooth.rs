//! Test-time augmentation smoothing (pytorch-grad-cam's `aug_smooth`, after ttach): each CAM map is the mean of the
//! maps of six augmented inputs — horizontal flip or not × the input multiplied by 0.9, 1 or 1.1 — each map flipped
//! back before averaging. The classes are those chosen on the original image; the six inputs run as one batch.

use super::explainer::{explain, ClassChoice, ImageResult, Request};
use super::Method;
use crate::error::Result;
use crate::models::Model;
use crate::tensor::Tensor;
use ndarray::{Array2, Axis, IxDyn};

/// ttach's `Multiply` factors.
const FACTORS: [f32; 3] = [0.9, 1.0, 1.1];

/// The augmentations in ttach's order: (flipped, factor).
fn augmentations() -> impl Iterator<Item = (bool, f32)> {
    [false, true].into_iter().flat_map(|flip| FACTORS.into_iter().map(move |f| (flip, f)))
}

/// [`explain`] with the CAM maps averaged over the augmentations; everything else (predictions, raw maps, gradient
/// maps) is the original image's.
pub(crate) fn explain_smoothed(model: &Model, x: Tensor<f32>, req: &Request) -> Result<Vec<ImageResult>> {
    let plain = Request { aug_smooth: false, ..req.clone() };
    let mut results = explain(model, x.clone(), &plain)?;
    let cam_methods: Vec<Method> = req.methods.iter().copied().filter(|m| m.aug_smoothable()).collect();
    if cam_methods.is_empty() {
        return Ok(results);
    }
    for (i, result) in results.iter_mut().enumerate() {
        let mut classes: Vec<usize> = Vec::new();
        for e in &result.explanations {
            if !classes.contains(&e.class) {
                classes.push(e.class);
            }
        }
        let image = x.index_axis(Axis(0), i);
        let mut batch_shape = vec![6];
        batch_shape.extend_from_slice(image.shape());
        let mut batch = Tensor::<f32>::zeros(IxDyn(&batch_shape));
        for (k, (flip, factor)) in augmentations().enumerate() {
            let mut augmented = image.mapv(|v| v * factor);
            if flip {
                // A reversed view of the width axis, copied in below.
                let last = augmented.ndim() - 1;
                augmented.invert_axis(Axis(last));
            }
            batch.index_axis_mut(Axis(0), k).assign(&augmented);
        }
        let aug_req = Request {
            classes: ClassChoice::Classes(classes),
            methods: cam_methods.clone(),
            counterfactual: req.counterfactual,
            aug_smooth: false,
            ..req.clone()
        };
        let augmented = explain(model, batch.as_standard_layout().into_owned(), &aug_req)?;
        for e in result.explanations.iter_mut().filter(|e| e.method.aug_smoothable()) {
            let (mut sum, mut count): (Option<Array2<f32>>, usize) = (None, 0);
            for (a, (flip, _)) in augmented.iter().zip(augmentations()) {
                let Some(m) = a.explanations.iter().find(|m| m.class == e.class && m.method == e.method) else {
                    continue;
                };
                let mut cam = m.cam.clone();
                if flip {
                    cam.invert_axis(Axis(1));
                }
                match sum.as_mut() {
                    Some(s) => *s += &cam,
                    None => sum = Some(cam.as_standard_layout().into_owned()),
                }
                count += 1;
            }
            // Every augmentation explains the same classes and methods: six maps (the mean of those found).
            if let Some(s) = sum {
                e.cam = s.mapv(|v| v / count as f32);
            }
        }
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_augmentations_in_ttach_order() {
        let all: Vec<(bool, f32)> = augmentations().collect();
        assert_eq!(all, [(false, 0.9), (false, 1.0), (false, 1.1), (true, 0.9), (true, 1.0), (true, 1.1)]);
    }
}
