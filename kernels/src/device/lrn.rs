//! Cross-channel local response normalization (`lrn_forward` / `lrn_backward` in `kernels/cuda/lrn.cu`).

use super::kernels::{put, size_error, to_i64};
use super::{Buffer, Device, RawArgs, Result};

/// `y_c = x_c / (bias + alpha/size · Σ_{c' ∈ [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉]} x_{c'}²)^beta`, over
/// tensors viewed as `[batch, channels, inner]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrnParameters {
    pub channels: usize,
    pub inner: usize,
    pub size: usize,
    pub alpha: f32,
    pub beta: f32,
    pub bias: f32,
}

impl LrnParameters {
    fn args(&self, len: usize) -> Result<RawArgs> {
        let plane = self.channels.checked_mul(self.inner).filter(|&p| p > 0);
        if self.size == 0 || plane.is_none_or(|p| !len.is_multiple_of(p)) {
            return Err(size_error(format!(
                "{len} elements are not whole [{}, {}] LRN planes",
                self.channels, self.inner
            )));
        }
        let before = (self.size - 1) / 2;
        let mut a = RawArgs { n: to_i64(len), ..RawArgs::default() };
        put(&mut a.i[..4], &[self.channels, self.inner, before, self.size - 1 - before])?;
        a.f[..3].copy_from_slice(&[self.bias, self.alpha / self.size as f32, self.beta]);
        Ok(a)
    }
}

impl Device {
    /// Local response normalization of `x` into `y` (same length).
    pub fn lrn(&self, p: &LrnParameters, x: &Buffer, y: &mut Buffer) -> Result<()> {
        let mut a = p.args(x.len())?;
        a.x[0] = self.exact(x, x.len(), "LRN input")?;
        a.y[0] = self.exact(y, x.len(), "LRN output")?;
        self.run("lrn_forward", &a)
    }

    /// The input gradient of [`Device::lrn`] from its input `x` and output gradient `dy`.
    pub fn lrn_backward(&self, p: &LrnParameters, x: &Buffer, dy: &Buffer, dx: &mut Buffer) -> Result<()> {
        let mut a = p.args(x.len())?;
        a.x[0] = self.exact(x, x.len(), "LRN input")?;
        a.x[1] = self.exact(dy, x.len(), "LRN output gradient")?;
        a.y[0] = self.exact(dx, x.len(), "LRN input gradient")?;
        self.run("lrn_backward", &a)
    }
}
