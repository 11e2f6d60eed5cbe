//! `gradcam`: Grad-CAM and gradient-based explanations for convolutional networks on the CPU.
//!
//! The foundation is a small reverse-mode autodiff engine over `ndarray`:
//! - [`graph`]: a graph of named values built with [`GraphBuilder`], a [`Plan`] that decides up front which nodes
//!   run forward, which run backward and which activations are kept, a forward executor and a backward sweep that
//!   starts at any seeds and stops at the deepest requested value.
//! - [`ops`]: every operator as one file with its shape rule, forward, vector-Jacobian product and tests.
//! - Compute kernels (GEMM, im2col convolution, depthwise, pooling) live in the `gradcam-kernels` crate.

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
pub mod render;
pub mod tensor;

pub use error::{Error, OpError, Result};
pub use gradcam_kernels::Element;
pub use graph::{Activations, BackwardOptions, ForwardOptions, Gradients, Graph, GraphBuilder, Plan, ValueId};
pub use models::{Arch, LoadOptions, Model, Precision};
pub use tensor::Tensor;
