//! Operators. One operator per file: its attributes, shape rule, forward, vector-Jacobian product and tests.
//!
//! An operator implements [`Op`]; the graph calls [`Op::output_shapes`] at build time and before every forward (so
//! bad shapes become typed errors naming the node), [`Op::forward`], and, during a backward sweep,
//! [`Op::backward`] with only the input gradients that lie on a path to a requested value marked as wanted.

use crate::error::OpError;
use crate::tensor::Tensor;
use crate::Element;
use std::any::Any;
use std::fmt::Debug;

mod mask;
mod pointwise;
pub use mask::Mask;
pub use pointwise::Pointwise;
pub mod view;

pub mod abs;
pub mod adaptive_avg_pool;
pub mod add;
pub mod avg_pool;
pub mod batch_norm;
pub mod clip;
pub mod compare;
pub mod concat;
pub mod conv;
pub mod conv3d;
pub mod conv_transpose;
pub mod conv_transpose3d;
pub mod cross_entropy;
pub mod div;
pub mod dropout;
pub mod einsum;
pub mod elu;
pub mod erf;
pub mod exp;
pub mod expand;
pub mod flatten;
pub mod gather;
pub mod gather_runtime;
pub mod gelu;
pub mod gemm;
pub mod global_average_pool;
pub mod global_max_pool;
pub mod hard_sigmoid;
pub mod hard_swish;
pub mod identity;
pub mod instance_norm;
pub mod layer_norm;
pub mod leaky_relu;
pub mod log_softmax;
pub mod lrn;
pub mod matmul;
pub mod max;
pub mod max_pool;
pub mod min;
pub mod mul;
pub mod pad;
pub mod pool3d;
pub mod pow;
pub mod prelu;
pub mod reduce;
pub mod relu;
pub mod reshape;
pub mod resize;
pub mod selu;
pub mod sigmoid;
pub mod silu;
pub mod slice;
pub mod softmax;
pub mod softplus;
pub mod split;
pub mod sqrt;
pub mod squeeze;
pub mod sub;
pub mod tanh;
pub mod tile;
pub mod transpose;
pub mod unsqueeze;
pub mod where_select;
pub mod window3d;

mod binary;
mod pool_attrs;
#[cfg(test)]
pub(crate) mod testing;
pub mod thin_matmul;

pub use abs::Abs;
pub use adaptive_avg_pool::AdaptiveAvgPool;
pub use add::Add;
pub use avg_pool::AveragePool;
pub use batch_norm::BatchNormalization;
pub use clip::Clip;
pub use compare::{Compare, Comparison};
pub use concat::Concat;
pub use conv::Conv;
pub use conv3d::Conv3d;
pub use conv_transpose::ConvTranspose;
pub use conv_transpose3d::ConvTranspose3d;
pub use cross_entropy::CrossEntropyLoss;
pub use div::Div;
pub use dropout::Dropout;
pub use einsum::Einsum;
pub use elu::Elu;
pub use erf::Erf;
pub use exp::Exp;
pub use expand::Expand;
pub use flatten::Flatten;
pub use gather::Gather;
pub use gather_runtime::GatherRuntime;
pub use gelu::Gelu;
pub use gemm::Gemm;
pub use global_average_pool::GlobalAveragePool;
pub use global_max_pool::GlobalMaxPool;
pub use hard_sigmoid::HardSigmoid;
pub use hard_swish::HardSwish;
pub use identity::Identity;
pub use instance_norm::InstanceNormalization;
pub use layer_norm::LayerNormalization;
pub use leaky_relu::LeakyRelu;
pub use log_softmax::LogSoftmax;
pub use lrn::Lrn;
pub use matmul::MatMul;
pub use max::Max;
pub use max_pool::MaxPool;
pub use min::Min;
pub use mul::Mul;
pub use pad::{Pad, PadMode};
pub use pool3d::{Pool3d, Pool3dKind};
pub use pool_attrs::PoolAttrs;
pub use pow::Pow;
pub use prelu::PRelu;
pub use reduce::{ReduceAxes, ReduceMean, ReduceSum};
pub use relu::Relu;
pub use reshape::Reshape;
pub use resize::{CoordinateMode, NearestRounding, Resize, ResizeMode};
pub use selu::Selu;
pub use sigmoid::Sigmoid;
pub use silu::Silu;
pub use slice::Slice;
pub use softmax::Softmax;
pub use softplus::Softplus;
pub use split::Split;
pub use sqrt::Sqrt;
pub use squeeze::Squeeze;
pub use sub::Sub;
pub use tanh::Tanh;
pub use tile::Tile;
pub use transpose::Transpose;
pub use unsqueeze::Unsqueeze;
pub use where_select::Where;
pub use window3d::Window3d;

/// State an op keeps from its forward for its backward (e.g. max-pool argmax indices).
pub type Saved = Box<dyn Any + Send + Sync>;

/// What a forward pass returns.
pub struct Outputs<T> {
    pub values: Vec<Tensor<T>>,
    pub saved: Option<Saved>,
}

impl<T> Outputs<T> {
    /// A single output and nothing saved.
    pub fn one(value: Tensor<T>) -> Self {
        Outputs { values: vec![value], saved: None }
    }
}

/// Which forward values an op's backward reads; the executor keeps exactly these (for nodes on a backward path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saves {
    pub inputs: Vec<bool>,
    pub outputs: bool,
}

/// Everything a vector-Jacobian product may read.
pub struct Vjp<'a, T> {
    /// Forward inputs (those the op listed in [`Op::saves`]; others are `None`).
    pub inputs: Vec<Option<&'a Tensor<T>>>,
    /// Shapes of all inputs, always available.
    pub input_shapes: Vec<&'a [usize]>,
    /// Forward outputs, if the op asked for them.
    pub outputs: Vec<Option<&'a Tensor<T>>>,
    /// What the forward saved.
    pub saved: Option<&'a (dyn Any + Send + Sync)>,
    /// Gradients of the outputs (`None` means zero).
    pub output_grads: Vec<Option<&'a Tensor<T>>>,
    /// Which input gradients are requested; the op may return `None` for the others.
    pub wanted: &'a [bool],
}

impl<'a, T> Vjp<'a, T> {
    /// Forward input `i`; an error if the op did not declare it in [`Op::saves`].
    pub fn input(&self, i: usize) -> Result<&'a Tensor<T>, OpError> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| OpError::Invalid(format!("backward needs input {i}, which was not kept")))
    }

    /// Forward output `i`; an error if the op did not ask for outputs.
    pub fn output(&self, i: usize) -> Result<&'a Tensor<T>, OpError> {
        self.outputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| OpError::Invalid(format!("backward needs output {i}, which was not kept")))
    }

    /// Gradient of the single output.
    pub fn grad(&self) -> Result<&'a Tensor<T>, OpError> {
        self.output_grads
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| OpError::Invalid("backward called without an output gradient".into()))
    }

    /// Saved forward state of type `S`.
    pub fn saved<S: 'static>(&self) -> Result<&'a S, OpError> {
        self.saved
            .and_then(|s| s.downcast_ref::<S>())
            .ok_or_else(|| OpError::Invalid("backward needs state saved by forward".into()))
    }

    /// Whether input `i`'s gradient is requested.
    pub fn wants(&self, i: usize) -> bool {
        self.wanted.get(i).copied().unwrap_or(false)
    }
}

/// An operator, generic over the scalar type so that every op can be checked in f64.
pub trait Op<T: Element>: Debug + Send + Sync + Any {
    /// The ONNX-style operator name ("Conv", "Relu", …).
    fn op_type(&self) -> &'static str;

    /// Output shapes for the given input shapes, or an error explaining which shapes disagree.
    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError>;

    /// Computes the outputs. Called only after [`Op::output_shapes`] accepted the input shapes.
    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError>;

    /// Gradients of the inputs given the gradients of the outputs; `None` where not wanted (or zero).
    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError>;

    /// Which forward values the backward needs, given which input gradients are wanted. Default: all inputs.
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![true; wanted.len()], outputs: false }
    }

    /// For clamp-like activations: the open interval `(lo, hi)` of outputs where the gradient passes (an infinite
    /// `hi` is no upper bound). The executor then keeps a one-bit [`Mask`] of the output as the op's saved state
    /// — which its backward reads instead of the output — whether the op ran alone or fused into a convolution.
    fn mask_interval(&self) -> Option<(f64, f64)> {
        None
    }

    /// The first input's gradient made from the output gradient `g` in place, for ops where it is `g` changed
    /// element by element (same shape): a long backward sweep then needs no new buffer and no second pass over
    /// memory at such a node. Asked only when the first input alone wants a gradient; `cx` has the kept inputs and
    /// saved state but no output gradients. `None`, with `g` untouched: [`Op::backward`] runs instead.
    fn input_gradient_in_place(&self, _cx: &Vjp<'_, T>, _g: &mut Tensor<T>) -> Option<Result<(), OpError>> {
        None
    }

    /// The part this op can play in a fused convolution (see `graph::fuse`); `None` for most ops.
    fn fusion(&self) -> Option<Fusable> {
        None
    }
}

/// Ops that a `Conv → BatchNormalization → clamp` chain is made of, as the fusion planner sees them.
#[derive(Clone, Debug, PartialEq)]
pub enum Fusable {
    Conv(Conv),
    BatchNorm {
        epsilon: f64,
    },
    /// `min(max(x, lo), hi)`: ReLU (`[0, ∞)`), ReLU6 and other constant clips.
    Clamp {
        lo: f64,
        hi: f64,
    },
    /// An element-wise sum: a residual connection joining a convolution's output (its other operand read in the
    /// convolution's epilogue when the shapes agree).
    Add,
    /// Zero padding of the two spatial axes of an NCHW tensor, `[top, left, bottom, right]`: folds into a following
    /// convolution's own padding.
    ZeroPad2d([usize; 4]),
    /// A matrix product `alpha·A·B' (+ beta·C)` that can read a constant `B` held in 16 bits directly (`MatMul`
    /// is `Gemm` with `alpha = 1` and no `C`, when both operands are matrices).
    Linear(Gemm),
}

/// Checks the number of inputs.
pub(crate) fn arity(inputs: &[&[usize]], min: usize, max: usize) -> Result<(), OpError> {
    if inputs.len() < min || inputs.len() > max {
        let expected = if min == max { min.to_string() } else { format!("{min} to {max}") };
        return Err(OpError::Arity { expected, got: inputs.len() });
    }
    Ok(())
}
