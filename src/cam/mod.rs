//! Grad-CAM and its family, gradient maps (saliency, guided backpropagation, guided Grad-CAM), localization.

mod ablation;
mod aug_smooth;
mod explainer;
mod finer;
mod full_grad;
mod guided;
mod integrated_gradients;
mod layer;
mod localize;
mod methods;
pub(crate) mod perturb;
pub mod postprocess;
mod principal;
mod score;
mod smooth_grad;
pub(crate) mod target;
pub mod tokens;

pub use explainer::{
    explain, ClassChoice, Explanation, ImageResult, Prediction, Request, Target, DEFAULT_NOISE,
    DEFAULT_PERTURBATION_BATCH, DEFAULT_SAMPLES, DEFAULT_STEPS, MAX_COPIES,
};
pub use layer::{cam_layout, default_layer, default_layer_with, is_spatial};
pub use localize::{localize, Localization, THRESHOLD};
pub use methods::CamMethod;
pub use tokens::{LayerLayout, TokenOptions};

use crate::error::{Error, Result};

/// Every explanation method the tool offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// A gradient-weighted class activation map at the target layer(s).
    Cam(CamMethod),
    /// Vanilla gradient `∂y^c/∂x` (Simonyan et al.).
    Saliency,
    /// The gradient through rectifiers that pass only positive gradients where the input was positive.
    GuidedBackprop,
    /// Guided backpropagation ⊙ the upsampled Grad-CAM: high-resolution and class-discriminative.
    GuidedGradCam,
    /// Srinivas & Fleuret: `|∂y/∂x ⊙ x|` plus the bias-gradient terms of every convolution and batch-norm, as
    /// pytorch-grad-cam computes it (see `full_grad.rs`). Ignores the target layers.
    FullGrad,
    /// Smilkov et al., as Captum defines it: the mean absolute input gradient over noisy copies of the input
    /// (see `smooth_grad.rs`).
    SmoothGrad,
    /// Sundararajan et al., as Captum defines it: the input minus a black baseline times the path integral of the
    /// input gradient (see `integrated_gradients.rs`).
    IntegratedGradients,
}

impl Method {
    /// All methods in a stable order.
    pub const ALL: [Method; 19] = [
        Method::Cam(CamMethod::GradCam),
        Method::Cam(CamMethod::GradCamPlusPlus),
        Method::Cam(CamMethod::XGradCam),
        Method::Cam(CamMethod::HiResCam),
        Method::Cam(CamMethod::LayerCam),
        Method::Cam(CamMethod::GradCamElementWise),
        Method::Cam(CamMethod::EigenCam),
        Method::Cam(CamMethod::EigenGradCam),
        Method::Cam(CamMethod::Fem),
        Method::Cam(CamMethod::RandomCam),
        Method::Cam(CamMethod::FinerCam),
        Method::Cam(CamMethod::ScoreCam),
        Method::Cam(CamMethod::AblationCam),
        Method::Saliency,
        Method::GuidedBackprop,
        Method::GuidedGradCam,
        Method::FullGrad,
        Method::SmoothGrad,
        Method::IntegratedGradients,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Method::Cam(CamMethod::GradCam) => "gradcam",
            Method::Cam(CamMethod::GradCamPlusPlus) => "gradcampp",
            Method::Cam(CamMethod::XGradCam) => "xgradcam",
            Method::Cam(CamMethod::HiResCam) => "hirescam",
            Method::Cam(CamMethod::LayerCam) => "layercam",
            Method::Cam(CamMethod::GradCamElementWise) => "gradcam-elementwise",
            Method::Cam(CamMethod::EigenCam) => "eigencam",
            Method::Cam(CamMethod::EigenGradCam) => "eigengradcam",
            Method::Cam(CamMethod::Fem) => "fem",
            Method::Cam(CamMethod::RandomCam) => "randomcam",
            Method::Cam(CamMethod::FinerCam) => "finercam",
            Method::Cam(CamMethod::ScoreCam) => "scorecam",
            Method::Cam(CamMethod::AblationCam) => "ablationcam",
            Method::Saliency => "saliency",
            Method::GuidedBackprop => "guided-backprop",
            Method::GuidedGradCam => "guided-gradcam",
            Method::FullGrad => "fullgrad",
            Method::SmoothGrad => "smoothgrad",
            Method::IntegratedGradients => "integrated-gradients",
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Result<Method> {
        Method::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| Error::UnknownMethod {
            name: name.to_string(),
            known: Method::ALL.map(|m| m.name()).join(", "),
        })
    }

    /// Whether `eigen_smooth` changes the method's map (CAM methods that sum per-channel terms; not Eigen-CAM,
    /// Eigen-Grad-CAM or FEM, which pytorch-grad-cam does not smooth either).
    pub fn eigen_smoothable(self) -> bool {
        matches!(self, Method::Cam(m) if !matches!(m, CamMethod::EigenCam | CamMethod::EigenGradCam | CamMethod::Fem))
    }

    /// Whether `aug_smooth` changes the method's map (the CAM methods and FullGrad, as in pytorch-grad-cam; not the
    /// gradient maps).
    pub fn aug_smoothable(self) -> bool {
        matches!(self, Method::Cam(_) | Method::FullGrad)
    }

    /// Whether the method reads the target layer (and so reports one).
    pub fn uses_layer(self) -> bool {
        matches!(self, Method::Cam(_) | Method::GuidedGradCam)
    }

    /// Whether the method reads the backward pass of the image itself (a gradient at the layer or at the input).
    /// SmoothGrad and Integrated Gradients differentiate altered copies of the image instead.
    pub fn needs_gradient(self) -> bool {
        match self {
            Method::Cam(m) => m.needs_gradient(),
            Method::SmoothGrad | Method::IntegratedGradients => false,
            _ => true,
        }
    }

    /// Whether the method reads the image's gradient with respect to the input.
    pub fn needs_input_gradient(self) -> bool {
        matches!(self, Method::Saliency | Method::GuidedBackprop | Method::GuidedGradCam | Method::FullGrad)
    }

    /// Whether the method runs the model on many altered copies of each image (Score-CAM, Ablation-CAM, SmoothGrad,
    /// Integrated Gradients), [`Request::batch_size`] at a time.
    pub fn runs_copies(self) -> bool {
        match self {
            Method::Cam(c) => c.runs_model(),
            _ => matches!(self, Method::SmoothGrad | Method::IntegratedGradients),
        }
    }
}
