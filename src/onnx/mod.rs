//! ONNX import: any CNN exported from PyTorch, TensorFlow or a model zoo becomes an engine graph, so that every
//! explanation method and gradients generally work on it.
//!
//! The protobuf messages are declared in [`proto`] with `prost` derive macros (no `protoc`, no copied `.proto`).
//! Shape arithmetic (Shape / Gather / Concat / Slice / Cast / ConstantOfShape … chains) and any node whose inputs
//! are all constant is folded at load time; ONNX value names stay the layer names.

mod attrs;
mod constant;
mod context;
mod convert;
mod fold;
mod fold_int;
mod import;
mod lift_1d;
mod lower_3d;
mod lower_layer;
mod lower_pointwise;
mod lower_shape;
pub mod proto;
mod resize;
mod stream;

pub use constant::{Const, MAX_ELEMENTS};
pub use context::SUPPORTED_OPS;
pub use import::{load, load_with, load_with_options, parse, read_tensor, ImportOptions, OnnxGraph};
