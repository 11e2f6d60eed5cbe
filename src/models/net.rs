//! Layer helpers shared by the architectures: each reads its parameters by PyTorch `state_dict` key and names its
//! output value by the module path, so that `target_layers` names from PyTorch address the same activations.

use super::weights::{Init, Param, Weights};
use crate::error::Result;
use crate::graph::{GraphBuilder, ValueId};
use crate::ops::{self, Clip, Conv, Gemm, Op, Relu};

/// A graph under construction plus the weights it draws from.
pub(crate) struct Net<'w> {
    pub b: GraphBuilder<f32>,
    pub w: &'w mut Weights,
}

/// Convolution hyper-parameters (kernel from the weight shape).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvSpec {
    pub out: usize,
    pub kernel: usize,
    pub stride: usize,
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    pub groups: usize,
    pub bias: bool,
}

impl ConvSpec {
    /// A `k × k` convolution with PyTorch's symmetric padding `(k − 1) / 2`.
    pub fn same(out: usize, kernel: usize, stride: usize) -> Self {
        ConvSpec { out, kernel, stride, pads: [(kernel - 1) / 2; 4], groups: 1, bias: false }
    }

    pub fn groups(self, groups: usize) -> Self {
        ConvSpec { groups, ..self }
    }

    pub fn bias(self) -> Self {
        ConvSpec { bias: true, ..self }
    }

    pub fn pads(self, pads: [usize; 4]) -> Self {
        ConvSpec { pads, ..self }
    }
}

impl Net<'_> {
    pub fn shape(&self, x: ValueId) -> Vec<usize> {
        self.b.shape(x).to_vec()
    }

    /// Places the parameter `key` (of `shape`) in the graph, in the precision the weights hold it.
    fn param(&mut self, key: &str, shape: &[usize], init: Init) -> Result<ValueId> {
        match self.w.take(key, shape, init)? {
            Param::F32(t) => Ok(self.b.constant(key, t)?),
            Param::Half(h) => Ok(self.b.constant_half(key, h)?),
        }
    }

    pub fn node(&mut self, name: &str, op: impl Op<f32> + 'static, inputs: &[ValueId]) -> Result<ValueId> {
        Ok(self.b.node(name, op, inputs)?)
    }

    /// `name.weight` (and `name.bias`) convolution.
    pub fn conv(&mut self, name: &str, x: ValueId, s: ConvSpec) -> Result<ValueId> {
        let cin = self.shape(x)[1];
        let fan_in = cin / s.groups * s.kernel * s.kernel;
        let w = self.param(
            &format!("{name}.weight"),
            &[s.out, cin / s.groups, s.kernel, s.kernel],
            Init::Weight { fan_in },
        )?;
        let mut inputs = vec![x, w];
        if s.bias {
            inputs.push(self.param(&format!("{name}.bias"), &[s.out], Init::Bias { fan_in })?);
        }
        let op = Conv { strides: [s.stride; 2], dilations: [1, 1], pads: s.pads, groups: s.groups };
        Ok(self.b.node(name, op, &inputs)?)
    }

    /// Inference batch-norm with `name.{weight,bias,running_mean,running_var}`.
    pub fn bn(&mut self, name: &str, x: ValueId, epsilon: f64) -> Result<ValueId> {
        let c = self.shape(x)[1];
        let mut inputs = vec![x];
        for (suffix, init) in [
            ("weight", Init::BnScale),
            ("bias", Init::BnShift),
            ("running_mean", Init::BnShift),
            ("running_var", Init::BnVar),
        ] {
            inputs.push(self.param(&format!("{name}.{suffix}"), &[c], init)?);
        }
        Ok(self.b.node(name, ops::BatchNormalization { epsilon }, &inputs)?)
    }

    /// `nn.Linear` with `name.weight` `[out, in]` and `name.bias`.
    pub fn linear(&mut self, name: &str, x: ValueId, out: usize) -> Result<ValueId> {
        let fan_in = self.shape(x)[1];
        let w = self.param(&format!("{name}.weight"), &[out, fan_in], Init::Weight { fan_in })?;
        let bias = self.param(&format!("{name}.bias"), &[out], Init::Bias { fan_in })?;
        Ok(self.b.node(name, Gemm::linear(), &[x, w, bias])?)
    }

    pub fn relu(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        Ok(self.b.node(name, Relu, &[x])?)
    }

    pub fn relu6(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        Ok(self.b.node(name, Clip::relu6(), &[x])?)
    }

    pub fn alias(&mut self, name: &str, x: ValueId) -> Result<ValueId> {
        self.b.alias(name, x)?;
        Ok(x)
    }
}
