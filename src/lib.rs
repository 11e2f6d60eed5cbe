//! `gradcam`: Grad-CAM and gradient-based explanations for convolutional networks on the CPU.
//!
//! The foundation is a small reverse-mode autodiff engine over `ndarray`:
//! - [`graph`]: a graph of named values built with [`GraphBuilder`], a [`Plan`] that decides up front which nodes
//!   run forward, which run backward and which activations are kept, a forward executor and a backward sweep that
//!   starts at any seeds and stops at the deepest requested value.
//! - [`ops`]: every operator as one file with its shape rule, forward, vector-Jacobian product and tests.
//! - Compute kernels (GEMM, im2col convolution, depthwise, pooling) live in the `gradcam-kernels` crate.
//! - [`cam`]: the explanation methods; [`metrics`]: how faithful a map is; [`attack`]: adversarial perturbations.
//!
//! Explaining an ONNX model takes a few lines. Here the repository's small segmentation model explains class 1 over
//! the pixels it predicts as class 1; a classifier works the same way (`ClassChoice::Top(1)` for its top class):
//!
//! ```
//! use gradcam::cam::{explain, ClassChoice, Method, CamMethod, Request};
//! use gradcam::input::load_image;
//! use gradcam::Model;
//!
//! let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
//! let model = Model::from_onnx(&root.join("fixtures/onnx/segmentation/lraspp_mnv3s.onnx"))?;
//! let image = load_image(&root.join("fixtures/images/chelsea.png"), model.input_size)?;
//! let x = model.normalization.apply(&image.pixels);
//! let request = Request {
//!     classes: ClassChoice::Classes(vec![1]),
//!     methods: vec![Method::Cam(CamMethod::GradCam), Method::Cam(CamMethod::ScoreCam)],
//!     ..Request::default()
//! };
//! let result = explain(&model, x, &request)?.remove(0);
//! for e in &result.explanations {
//!     // `cam` is the map at the model's input resolution, in [0, 1].
//!     assert_eq!(e.cam.dim(), (model.input_size[0], model.input_size[1]));
//!     println!("{} for class {}: peak at {:?}", e.method.name(), e.class, gradcam::cam::localize(&e.cam).peak);
//! }
//! # Ok::<(), gradcam::error::Error>(())
//! ```

// No `unsafe` outside the kernels crate. `deny`, not `forbid`: ndarray's `s!` macro expands to an
// `#[allow(unsafe_code)]` of its own, which `forbid` rejects.
#![deny(unsafe_code)]

pub mod attack;
pub mod cam;
pub mod error;
pub mod graph;
pub mod input;
pub mod metrics;
pub mod models;
pub mod onnx;
pub mod ops;
pub mod output;
pub mod random;
pub mod render;
pub mod tensor;

pub use error::{Error, GraphError, GraphResult, OpError, Result};
pub use gradcam_kernels::device::{Device, DeviceError};
pub use gradcam_kernels::Element;
pub use graph::{
    Activations, BackwardOptions, ForwardOptions, GradientFilter, Gradients, Graph, GraphBuilder, HostFallback, Plan,
    ValueId,
};
pub use models::{Arch, LoadOptions, Model, Precision};
pub use tensor::Tensor;
