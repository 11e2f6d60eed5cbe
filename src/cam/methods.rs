//! Class activation maps from an activation `A` (`[C, H, W]`) and its gradient `G = ∂y^c/∂A`, one formula per
//! method, exactly as pytorch-grad-cam 1.5.7 computes them (`get_cam_image` of each class). Score-CAM and
//! Ablation-CAM weigh `A` with channel weights measured by running the model (`score.rs`, `ablation.rs`).

use crate::error::{Error, Result};
use ndarray::{Array2, Array3, ArrayView3, Axis, Zip};

/// The gradient-weighted CAM methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CamMethod {
    /// Selvaraju et al.: `w_k = mean_ij G`, `raw = Σ_k w_k A_k`.
    GradCam,
    /// Chattopadhay et al., in pytorch-grad-cam's form (its eq. 19):
    /// `α = G² / (2G² + (Σ_ab A_k)·G³ + 1e-6)` (0 where `G = 0`), `w_k = Σ_ij α·ReLU(G)`.
    GradCamPlusPlus,
    /// Fu et al.: `w_k = Σ_ij G·A / (Σ_ij A + 1e-7)`.
    XGradCam,
    /// Draelos & Carin: `raw = Σ_k G_k ⊙ A_k`.
    HiResCam,
    /// Jiang et al.: `raw = Σ_k ReLU(G_k) ⊙ A_k`.
    LayerCam,
    /// pytorch-grad-cam's GradCAMElementWise: `raw = Σ_k ReLU(G_k ⊙ A_k)`.
    GradCamElementWise,
    /// Muhammad & Yeasin: the first principal component of the activations (no gradient), signed to agree with
    /// `Σ_k A_k` (see [`super::principal`]).
    EigenCam,
    /// Eigen-CAM of `G ⊙ A` (signed by `Σ_k A_k` as well).
    EigenGradCam,
    /// Fuad et al.'s Feature Explanation Method (no gradient): `w_k` = the fraction of channel k's pixels above its
    /// mean + 2 standard deviations, `raw = Σ_k w_k A_k`.
    Fem,
    /// A baseline: `raw = Σ_k w_k A_k` with `w_k` uniform in [−1, 1). Seeded — channel k always gets the same
    /// weight, so runs are reproducible (pytorch-grad-cam draws new ones on every call).
    RandomCam,
    /// Finer-CAM: Grad-CAM of a target that compares the class with the three classes nearest by logit (see
    /// `finer.rs`) — what sets it apart from the classes it is confused with.
    FinerCam,
    /// Wang et al.: `w_k` = softmax over channels of the class score on the input masked by channel k (upsampled,
    /// min-max scaled); one forward pass per channel, no gradient (see `score.rs`).
    ScoreCam,
    /// Desai & Ramaswamy: `w_k = (y − y_¬k) / y`, the score's relative drop when channel k is ablated; one pass of
    /// the layers after the target per channel, no gradient (see `ablation.rs`).
    AblationCam,
}

/// FEM's threshold: mean + `FEM_K`·std (pytorch-grad-cam's default `k`).
const FEM_K: f64 = 2.0;

fn weighted_sum(a: ArrayView3<'_, f32>, weights: &[f32]) -> Array2<f32> {
    let mut raw = Array2::<f32>::zeros((a.shape()[1], a.shape()[2]));
    for (plane, &w) in a.axis_iter(Axis(0)).zip(weights) {
        raw.scaled_add(w, &plane);
    }
    raw
}

/// The terms `w_k A_k`, `[C, H, W]`.
fn weighted_terms(a: ArrayView3<'_, f32>, weights: &[f32]) -> Array3<f32> {
    let mut t = a.to_owned();
    for (mut plane, &w) in t.axis_iter_mut(Axis(0)).zip(weights) {
        plane.mapv_inplace(|v| v * w);
    }
    t
}

fn per_channel(
    a: ArrayView3<'_, f32>,
    g: ArrayView3<'_, f32>,
    f: impl Fn(ArrayView3<'_, f32>, ArrayView3<'_, f32>) -> f32,
) -> Vec<f32> {
    (0..a.shape()[0])
        .map(|k| {
            let s = ndarray::s![k..k + 1, .., ..];
            f(a.slice(s), g.slice(s))
        })
        .collect()
}

impl CamMethod {
    /// The raw map `[H, W]` (before ReLU) for one image.
    pub fn raw_map(self, a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>) -> Result<Array2<f32>> {
        self.raw_map_with(a, g, false)
    }

    /// Whether the method reads the gradient `G` (Eigen-CAM, FEM, RandomCAM, Score-CAM and Ablation-CAM do not).
    pub fn needs_gradient(self) -> bool {
        !matches!(
            self,
            CamMethod::EigenCam | CamMethod::Fem | CamMethod::RandomCam | CamMethod::ScoreCam | CamMethod::AblationCam
        )
    }

    /// Whether the channel weights come from running the model on altered inputs (Score-CAM, Ablation-CAM): such
    /// maps are made by [`super::explain`], or from the measured weights by [`CamMethod::raw_map_weighted`].
    pub fn runs_model(self) -> bool {
        matches!(self, CamMethod::ScoreCam | CamMethod::AblationCam)
    }

    /// [`CamMethod::raw_map`], or with `eigen_smooth` (pytorch-grad-cam's option) the first principal component of
    /// the per-channel terms the map would sum (`w_k·A_k`, `G_k ⊙ A_k`, …) instead of their sum, signed like
    /// Eigen-CAM. Eigen-CAM, Eigen-Grad-CAM and FEM ignore it, as in pytorch-grad-cam. Methods that do not read the
    /// gradient ignore `g`; those that run the model (see [`CamMethod::runs_model`]) are an error here.
    pub fn raw_map_with(
        self,
        a: ArrayView3<'_, f32>,
        g: ArrayView3<'_, f32>,
        eigen_smooth: bool,
    ) -> Result<Array2<f32>> {
        if a.shape() != g.shape() && self.needs_gradient() {
            return Err(Error::InvalidArgument {
                name: "gradient",
                why: format!("activation {:?} and gradient {:?} differ in shape", a.shape(), g.shape()),
            });
        }
        Ok(match self {
            CamMethod::ScoreCam | CamMethod::AblationCam => {
                return Err(Error::Unsupported(format!(
                    "{self:?} weighs channels by running the model: use cam::explain or raw_map_weighted"
                )))
            }
            CamMethod::EigenCam => super::principal::principal_projection(a, a),
            CamMethod::EigenGradCam => super::principal::principal_projection((&g * &a).view(), a),
            CamMethod::Fem => {
                let w = per_channel(a, a, |a, _| {
                    let n = a.len().max(1) as f64;
                    let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
                    let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                    let threshold = mean + FEM_K * var.sqrt();
                    a.iter().filter(|&&v| v as f64 > threshold).count() as f32 / n as f32
                });
                weighted_sum(a, &w)
            }
            _ if eigen_smooth => super::principal::principal_projection(self.terms(a, g).view(), a),
            CamMethod::HiResCam | CamMethod::LayerCam | CamMethod::GradCamElementWise => {
                self.terms(a, g).sum_axis(Axis(0))
            }
            _ => weighted_sum(a, &self.channel_weights(a, g)),
        })
    }

    /// `Σ_k w_k A_k` for channel weights measured elsewhere (Score-CAM's, Ablation-CAM's), or with `eigen_smooth`
    /// the first principal component of the terms `w_k A_k`.
    pub fn raw_map_weighted(a: ArrayView3<'_, f32>, weights: &[f32], eigen_smooth: bool) -> Result<Array2<f32>> {
        if weights.len() != a.shape()[0] {
            return Err(Error::InvalidArgument {
                name: "weights",
                why: format!("{} channel weights for an activation of {} channels", weights.len(), a.shape()[0]),
            });
        }
        Ok(if eigen_smooth {
            super::principal::principal_projection(weighted_terms(a, weights).view(), a)
        } else {
            weighted_sum(a, weights)
        })
    }

    /// The per-channel weights `w_k` of the methods whose map is `Σ_k w_k A_k`.
    fn channel_weights(self, a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>) -> Vec<f32> {
        match self {
            CamMethod::GradCamPlusPlus => per_channel(a, g, |a, g| {
                let sum_a = a.sum();
                g.iter()
                    .map(|&g| {
                        if g == 0.0 {
                            return 0.0;
                        }
                        let (g2, g3) = (g * g, g * g * g);
                        let alpha = g2 / (2.0 * g2 + sum_a * g3 + 1e-6);
                        alpha * g.max(0.0)
                    })
                    .sum()
            }),
            CamMethod::XGradCam => per_channel(a, g, |a, g| {
                let denom = a.sum() + 1e-7;
                Zip::from(&a).and(&g).fold(0.0, |acc, &a, &g| acc + g * a / denom)
            }),
            CamMethod::RandomCam => {
                (0..a.shape()[0]).map(|k| crate::models::weights::uniform_symmetric("randomcam", k)).collect()
            }
            _ => per_channel(a, g, |_, g| g.mean().unwrap_or(0.0)),
        }
    }

    /// The per-channel terms `[C, H, W]` whose sum over channels is the raw map (what `eigen_smooth` projects).
    fn terms(self, a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>) -> Array3<f32> {
        match self {
            CamMethod::HiResCam => &g * &a,
            CamMethod::LayerCam => &g.mapv(|v| v.max(0.0)) * &a,
            CamMethod::GradCamElementWise => (&g * &a).mapv(|v| v.max(0.0)),
            _ => weighted_terms(a, &self.channel_weights(a, g)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn data() -> (Array3<f32>, Array3<f32>) {
        let a = Array3::from_shape_fn((3, 2, 2), |(k, i, j)| ((k * 4 + i * 2 + j) as f32 * 0.37).sin().abs());
        let g = Array3::from_shape_fn((3, 2, 2), |(k, i, j)| ((k * 4 + i * 2 + j) as f32 * 0.91).cos());
        (a, g)
    }

    #[test]
    fn gradcam_is_mean_gradient_weighted_sum() {
        let (a, g) = data();
        let raw = CamMethod::GradCam.raw_map(a.view(), g.view()).unwrap();
        for i in 0..2 {
            for j in 0..2 {
                let want: f32 = (0..3).map(|k| g.index_axis(Axis(0), k).mean().unwrap() * a[[k, i, j]]).sum();
                assert!((raw[[i, j]] - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn hirescam_and_layercam_are_elementwise() {
        let (a, g) = data();
        let h = CamMethod::HiResCam.raw_map(a.view(), g.view()).unwrap();
        let l = CamMethod::LayerCam.raw_map(a.view(), g.view()).unwrap();
        let want_h: f32 = (0..3).map(|k| g[[k, 1, 0]] * a[[k, 1, 0]]).sum();
        let want_l: f32 = (0..3).map(|k| g[[k, 1, 0]].max(0.0) * a[[k, 1, 0]]).sum();
        assert!((h[[1, 0]] - want_h).abs() < 1e-6 && (l[[1, 0]] - want_l).abs() < 1e-6);
    }

    #[test]
    fn gradcampp_ignores_zero_gradients() {
        let a = Array3::from_elem((1, 1, 2), 1.0f32);
        let g = ndarray::arr3(&[[[0.0f32, 2.0]]]);
        let raw = CamMethod::GradCamPlusPlus.raw_map(a.view(), g.view()).unwrap();
        // α = 4 / (8 + 2·8 + 1e-6) for the non-zero entry; w = α·2.
        let w = 4.0 / (8.0 + 16.0 + 1e-6) * 2.0;
        assert!((raw[[0, 0]] - w).abs() < 1e-6);
    }
}
