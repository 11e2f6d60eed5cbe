//! The typed launches of [`Device`]: each checks its buffers against its shapes, fills the argument block the
//! kernel reads (the layouts are documented at each kernel in `kernels/cuda/*.cu`) and launches it.

use super::{Buffer, Device, DeviceError, GemmCall, RawArgs, Result};
use crate::geometry::ConvGeometry;
use crate::pool::PoolGeometry;

/// Largest tensor rank the broadcasting and box kernels take (`MAX_RANK` in `prelude.cuh`).
pub const MAX_RANK: usize = 6;

/// Most elements of one convolution call's im2col columns (256 MB): a batch's columns share one product up to
/// this, so a large layer at a large batch does not take gigabytes.
#[cfg(not(test))]
const MAX_COLUMNS: usize = 64 << 20;
/// Two images' columns of the emulation tests' first 3×3 case (27 taps × 9·8 pixels), so that they cover groups.
#[cfg(test)]
const MAX_COLUMNS: usize = 2 * 27 * 72;

/// An element-wise activation (codes as in `elementwise.cu`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// `min(max(x, lo), hi)`: ReLU is `Clamp(0, ∞)`.
    Clamp(f32, f32),
    LeakyRelu(f32),
    Sigmoid,
    Silu,
    HardSwish,
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    Tanh,
    Elu(f32),
    /// The exact (erf) form.
    Gelu,
    Selu {
        alpha: f32,
        gamma: f32,
    },
    Softplus,
    Erf,
    /// `x > 0 ? x : 0`, NaN to 0 (unlike `Clamp(0, ∞)`, which keeps NaN): guided backpropagation's filter of the
    /// gradients entering rectifiers.
    PositivePart,
}

impl Activation {
    fn code(self) -> (i64, f32, f32) {
        match self {
            Activation::Clamp(lo, hi) => (0, lo, hi),
            Activation::LeakyRelu(a) => (1, a, 0.0),
            Activation::Sigmoid => (2, 0.0, 0.0),
            Activation::Silu => (3, 0.0, 0.0),
            Activation::HardSwish => (4, 0.0, 0.0),
            Activation::HardSigmoid { alpha, beta } => (5, alpha, beta),
            Activation::Tanh => (6, 0.0, 0.0),
            Activation::Elu(a) => (7, a, 0.0),
            Activation::Gelu => (8, 0.0, 0.0),
            Activation::Selu { alpha, gamma } => (9, alpha, gamma),
            Activation::Softplus => (10, 0.0, 0.0),
            Activation::Erf => (11, 0.0, 0.0),
            Activation::PositivePart => (12, 0.0, 0.0),
        }
    }
}

/// A broadcasting binary op (codes as in `elementwise.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

pub(super) fn size_error(what: impl Into<String>) -> DeviceError {
    DeviceError::Size(what.into())
}

pub(super) fn to_i64(v: usize) -> i64 {
    v as i64
}

/// Largest size, stride, padding or dilation a launch accepts: small enough that no index a kernel forms from them
/// (products of two such values, plus sums) overflows or wraps negative in 64 bits.
pub(super) const MAX_PARAMETER: usize = i32::MAX as usize;

fn count(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| size_error("shape overflows"))
}

/// Row-major strides of `shape` as read from an output of `out` (rank-aligned at the end): 0 along axes where
/// `shape` is 1 and the output is not (broadcast).
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Result<[i64; MAX_RANK]> {
    if shape.len() > out.len() {
        return Err(size_error(format!("operand of rank {} broadcast to rank {}", shape.len(), out.len())));
    }
    let lead = out.len() - shape.len();
    let mut strides = [0i64; MAX_RANK];
    let mut stride = 1i64;
    for d in (0..out.len()).rev() {
        if d < lead {
            continue;
        }
        let s = shape[d - lead];
        if s == out[d] {
            strides[d] = stride;
        } else if s != 1 {
            return Err(size_error(format!("shape {shape:?} does not broadcast to {out:?}")));
        }
        stride *= to_i64(s);
    }
    Ok(strides)
}

/// Writes geometry parameters, refusing any above [`MAX_PARAMETER`].
pub(super) fn put(dst: &mut [i64], values: &[usize]) -> Result<()> {
    for (d, &v) in dst.iter_mut().zip(values) {
        if v > MAX_PARAMETER {
            return Err(size_error(format!("parameter {v} is above {MAX_PARAMETER}")));
        }
        *d = to_i64(v);
    }
    Ok(())
}

impl Device {
    /// The address of `buffer`, after checking that it lives on this device and holds exactly `len` elements.
    pub(super) fn exact(&self, buffer: &Buffer, len: usize, what: &str) -> Result<u64> {
        self.at(buffer, 0, len, what)?;
        if buffer.len() != len {
            return Err(size_error(format!("{what}: {} elements, expected {len}", buffer.len())));
        }
        Ok(buffer.ptr)
    }

    /// The address of element `at` of `buffer`, after checking that it lives on this device and that `count`
    /// elements from there lie inside it.
    fn at(&self, buffer: &Buffer, at: usize, count: usize, what: &str) -> Result<u64> {
        if buffer.space != self.space {
            return Err(size_error(format!("{what}: a buffer of another device")));
        }
        buffer.at(at, count, what)
    }

    pub(super) fn run(&self, kernel: &'static str, args: &RawArgs) -> Result<()> {
        if args.n == 0 {
            return Ok(());
        }
        // SAFETY: every public method below (and those of lrn.rs and resample.rs) checks each address it puts in `args` against its buffer's length
        // for everything the kernel touches with these parameters (see the kernel's comment in kernels/cuda).
        unsafe { self.backend.launch(kernel, args) }
    }

    /// `y = act(x)`.
    pub fn activation(&self, act: Activation, x: &Buffer, y: &mut Buffer) -> Result<()> {
        let (code, p0, p1) = act.code();
        let mut a = RawArgs { n: to_i64(x.len()), ..RawArgs::default() };
        a.x[0] = self.exact(x, x.len(), "activation input")?;
        a.y[0] = self.exact(y, x.len(), "activation output")?;
        a.i[0] = code;
        a.f[0] = p0;
        a.f[1] = p1;
        self.run("activation_forward", &a)
    }

    /// `dx = dy · act'(x)`.
    pub fn activation_backward(&self, act: Activation, x: &Buffer, dy: &Buffer, dx: &mut Buffer) -> Result<()> {
        let (code, p0, p1) = act.code();
        let mut a = RawArgs { n: to_i64(x.len()), ..RawArgs::default() };
        a.x[0] = self.exact(x, x.len(), "activation input")?;
        a.x[1] = self.exact(dy, x.len(), "activation output gradient")?;
        a.y[0] = self.exact(dx, x.len(), "activation input gradient")?;
        a.i[0] = code;
        a.f[0] = p0;
        a.f[1] = p1;
        self.run("activation_backward", &a)
    }

    /// The broadcast layout shared by the binary kernels, written from `a.i[at]`.
    fn broadcast_layout(a: &mut RawArgs, at: usize, a_shape: &[usize], b_shape: &[usize], out: &[usize]) -> Result<()> {
        if out.len() > MAX_RANK {
            return Err(size_error(format!("rank {} is above {MAX_RANK}", out.len())));
        }
        a.i[at] = to_i64(out.len());
        put(&mut a.i[at + 1..at + 1 + MAX_RANK], out)?;
        a.i[at + 1 + MAX_RANK..at + 1 + 2 * MAX_RANK].copy_from_slice(&broadcast_strides(a_shape, out)?);
        a.i[at + 1 + 2 * MAX_RANK..at + 1 + 3 * MAX_RANK].copy_from_slice(&broadcast_strides(b_shape, out)?);
        Ok(())
    }

    /// `y = a (op) b`, NumPy broadcasting to `out`.
    #[allow(clippy::too_many_arguments)]
    pub fn binary(
        &self,
        op: BinaryOp,
        lhs: &Buffer,
        lhs_shape: &[usize],
        rhs: &Buffer,
        rhs_shape: &[usize],
        y: &mut Buffer,
        out: &[usize],
    ) -> Result<()> {
        let mut a = RawArgs { n: to_i64(count(out)?), ..RawArgs::default() };
        a.x[0] = self.exact(lhs, count(lhs_shape)?, "left operand")?;
        a.x[1] = self.exact(rhs, count(rhs_shape)?, "right operand")?;
        a.y[0] = self.exact(y, count(out)?, "binary output")?;
        a.i[0] = op as i64;
        Self::broadcast_layout(&mut a, 1, lhs_shape, rhs_shape, out)?;
        self.run("binary_forward", &a)
    }

    /// The gradient of operand `which` (0 = left, 1 = right) of `a (op) b` given `dy` of shape `out`: summed over
    /// the axes that operand was broadcast along. `Add`/`Sub` read neither operand (pass `None`); `Mul` reads
    /// the other one, `Div` both.
    #[allow(clippy::too_many_arguments)]
    pub fn binary_backward(
        &self,
        op: BinaryOp,
        which: usize,
        lhs: Option<&Buffer>,
        lhs_shape: &[usize],
        rhs: Option<&Buffer>,
        rhs_shape: &[usize],
        dy: &Buffer,
        out: &[usize],
        dx: &mut Buffer,
    ) -> Result<()> {
        let target = if which == 0 { lhs_shape } else { rhs_shape };
        let needs = match (op, which) {
            (BinaryOp::Add | BinaryOp::Sub, _) => (false, false),
            (BinaryOp::Mul, 0) => (false, true),
            (BinaryOp::Mul, _) => (true, false),
            (BinaryOp::Div, 0) => (false, true),
            (BinaryOp::Div, _) => (true, true),
        };
        let mut a = RawArgs { n: to_i64(count(target)?), ..RawArgs::default() };
        a.x[0] = match (lhs, needs.0) {
            (Some(l), _) => self.exact(l, count(lhs_shape)?, "left operand")?,
            (None, false) => 0,
            (None, true) => return Err(size_error(format!("{op:?} backward needs the left operand"))),
        };
        a.x[1] = match (rhs, needs.1) {
            (Some(r), _) => self.exact(r, count(rhs_shape)?, "right operand")?,
            (None, false) => 0,
            (None, true) => return Err(size_error(format!("{op:?} backward needs the right operand"))),
        };
        a.x[2] = self.exact(dy, count(out)?, "output gradient")?;
        a.y[0] = self.exact(dx, count(target)?, "operand gradient")?;
        a.i[0] = op as i64;
        a.i[1] = to_i64(which.min(1));
        Self::broadcast_layout(&mut a, 2, lhs_shape, rhs_shape, out)?;
        // Which output axes the target is broadcast along.
        let lead = out.len() - target.len();
        let spread = 3 + 3 * MAX_RANK;
        for d in 0..out.len() {
            let own = if d < lead { 1 } else { target[d - lead] };
            a.i[spread + d] = i64::from(own != out[d]);
        }
        self.run("binary_backward", &a)
    }

    /// `y[n, c, …] = x[n, c, …] · scale[c] + shift[c]` over `channels` channels of `spatial` elements each.
    pub fn channel_affine(
        &self,
        x: &Buffer,
        scale: Option<&Buffer>,
        shift: Option<&Buffer>,
        channels: usize,
        spatial: usize,
        y: &mut Buffer,
    ) -> Result<()> {
        let plane = channels.checked_mul(spatial).filter(|&p| p > 0 && x.len().is_multiple_of(p));
        if plane.is_none() {
            return Err(size_error(format!("{} elements are not whole planes of {channels}×{spatial}", x.len())));
        }
        let mut a = RawArgs { n: to_i64(x.len()), ..RawArgs::default() };
        a.x[0] = self.exact(x, x.len(), "affine input")?;
        a.x[1] = scale.map(|s| self.exact(s, channels, "channel scale")).transpose()?.unwrap_or(0);
        a.x[2] = shift.map(|s| self.exact(s, channels, "channel shift")).transpose()?.unwrap_or(0);
        a.y[0] = self.exact(y, x.len(), "affine output")?;
        a.i[0] = to_i64(channels);
        a.i[1] = to_i64(spatial);
        self.run("channel_affine", &a)
    }

    /// A matrix product on checked buffers: see [`GemmCall`]; `a`, `b`, `c` start at the given element offsets.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        (m, n, k): (usize, usize, usize),
        a: (&Buffer, usize, bool),
        b: (&Buffer, usize, bool),
        c: (&mut Buffer, usize),
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        self.gemm_batched((m, n, k), (1, [0; 3]), a, b, c, alpha, beta)
    }

    /// `count` products as [`Device::gemm`], the i-th on matrices `i·strides` elements further (`[a, b, c]`; 0
    /// shares one): one launch for a batch. C's matrices may not overlap, since the device writes them at once.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm_batched(
        &self,
        (m, n, k): (usize, usize, usize),
        (count, [stride_a, stride_b, stride_c]): (usize, [usize; 3]),
        (a, a_at, trans_a): (&Buffer, usize, bool),
        (b, b_at, trans_b): (&Buffer, usize, bool),
        (c, c_at): (&mut Buffer, usize),
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let (mk, kn, mn) = (m.checked_mul(k), k.checked_mul(n), m.checked_mul(n));
        let (Some(mk), Some(kn), Some(mn)) = (mk, kn, mn) else {
            return Err(size_error("product sizes overflow"));
        };
        if mn == 0 || count == 0 {
            return Ok(());
        }
        if count > 1 && stride_c < mn {
            return Err(size_error(format!("batched products' outputs overlap (stride {stride_c} < {mn})")));
        }
        // The first and the last product of the batch lie inside the buffers, so every one between does.
        let last = |at: usize, stride: usize, what: &str| {
            let offset = (count - 1).checked_mul(stride).and_then(|o| o.checked_add(at));
            offset.ok_or_else(|| size_error(format!("{what}: batch offsets overflow")))
        };
        let call = GemmCall {
            m,
            n,
            k,
            a: self.at(a, a_at, mk, "product A")?,
            trans_a,
            b: self.at(b, b_at, kn, "product B")?,
            trans_b,
            c: self.at(c, c_at, mn, "product C")?,
            alpha,
            beta,
            count,
            stride_a,
            stride_b,
            stride_c,
        };
        self.at(a, last(a_at, stride_a, "product A")?, mk, "product A")?;
        self.at(b, last(b_at, stride_b, "product B")?, kn, "product B")?;
        self.at(c, last(c_at, stride_c, "product C")?, mn, "product C")?;
        // SAFETY: the first and the last product's addresses were checked above to hold m×k, k×n and m×n elements;
        // the strides are not negative, so every product between lies inside the buffers too.
        unsafe { self.backend.gemm(&call) }
    }

    /// Checks a convolution's buffers: input, weight, output element counts.
    fn conv_sizes(geo: &ConvGeometry) -> Result<(usize, usize, usize, usize, usize)> {
        let (oh, ow) = match (geo.out_h(), geo.out_w()) {
            (Some(h), Some(w)) => (h, w),
            _ => return Err(size_error(format!("no convolution window fits in {geo:?}"))),
        };
        if geo.groups == 0
            || !geo.in_channels.is_multiple_of(geo.groups)
            || !geo.out_channels.is_multiple_of(geo.groups)
        {
            return Err(size_error(format!("groups {} do not divide the channels", geo.groups)));
        }
        let input = count(&[geo.batch, geo.in_channels, geo.in_h, geo.in_w])?;
        let weight = count(&[geo.out_channels, geo.in_channels / geo.groups, geo.kernel_h, geo.kernel_w])?;
        let output = count(&[geo.batch, geo.out_channels, oh, ow])?;
        Ok((input, weight, output, oh, ow))
    }

    fn conv_args(geo: &ConvGeometry, oh: usize, ow: usize) -> Result<RawArgs> {
        let mut a = RawArgs::default();
        put(
            &mut a.i[..16],
            &[
                geo.in_channels,
                geo.in_h,
                geo.in_w,
                geo.kernel_h,
                geo.kernel_w,
                geo.stride_h,
                geo.stride_w,
                geo.dilation_h,
                geo.dilation_w,
                geo.pad_top,
                geo.pad_left,
                oh,
                ow,
                geo.groups,
                geo.out_channels,
                geo.batch,
            ],
        )?;
        Ok(a)
    }

    /// How many images' columns one product takes: all of the batch, unless their columns would pass
    /// [`MAX_COLUMNS`] elements (a large layer at a large batch; at least one image).
    fn images_per_columns(image_columns: usize, batch: usize) -> usize {
        (MAX_COLUMNS / image_columns.max(1)).clamp(1, batch.max(1))
    }

    /// A 2-D convolution (NCHW, OIHW weights, optional per-output-channel bias). Ungrouped: the batch's columns
    /// (one im2col launch; a plain 1×1 reads its input as they are) and one batched GEMM; grouped (depthwise
    /// included): the direct kernel.
    pub fn conv(
        &self,
        geo: &ConvGeometry,
        x: &Buffer,
        w: &Buffer,
        bias: Option<&Buffer>,
        y: &mut Buffer,
    ) -> Result<()> {
        let (input, weight, output, oh, ow) = Self::conv_sizes(geo)?;
        let mut a = Self::conv_args(geo, oh, ow)?;
        a.x[0] = self.exact(x, input, "convolution input")?;
        a.x[1] = self.exact(w, weight, "convolution weight")?;
        a.x[2] = bias.map(|b| self.exact(b, geo.out_channels, "convolution bias")).transpose()?.unwrap_or(0);
        a.y[0] = self.exact(y, output, "convolution output")?;
        if geo.groups > 1 {
            a.n = to_i64(output);
            return self.run("conv_direct", &a);
        }
        let taps = geo.in_channels * geo.kernel_h * geo.kernel_w;
        let pixels = oh * ow;
        let (image_in, image_out) = (geo.in_channels * geo.in_h * geo.in_w, geo.out_channels * pixels);
        let product = (geo.out_channels, pixels, taps);
        if geo.is_pointwise() {
            // An ungrouped 1×1 without stride or padding: each image's input is its own columns, so one product
            // for the batch and no im2col.
            let batch = (geo.batch, [0, image_in, image_out]);
            self.gemm_batched(product, batch, (w, 0, false), (x, 0, false), (y, 0), 1.0, 0.0)?;
        } else {
            // The columns of a group of images (one im2col launch), then one product for the group.
            let image_columns = count(&[taps, pixels])?;
            let group = Self::images_per_columns(image_columns, geo.batch);
            let columns = self.zeros(count(&[group, image_columns])?)?;
            for first in (0..geo.batch).step_by(group) {
                let images = group.min(geo.batch - first);
                let mut im = a;
                im.x[0] = self.at(x, first * image_in, images * image_in, "convolution images")?;
                im.y[0] = self.at(&columns, 0, images * image_columns, "columns")?;
                im.n = to_i64(images * image_columns);
                self.run("im2col", &im)?;
                let batch = (images, [0, image_columns, image_out]);
                let out = (&mut *y, first * image_out);
                self.gemm_batched(product, batch, (w, 0, false), (&columns, 0, false), out, 1.0, 0.0)?;
            }
        }
        if let Some(bias) = bias {
            // In place: the affine kernel reads each element before it writes it.
            let mut shifted = RawArgs { n: to_i64(output), ..RawArgs::default() };
            shifted.x[0] = self.exact(y, output, "convolution output")?;
            shifted.x[2] = self.exact(bias, geo.out_channels, "convolution bias")?;
            shifted.y[0] = shifted.x[0];
            shifted.i[0] = to_i64(geo.out_channels);
            shifted.i[1] = to_i64(pixels);
            self.run("channel_affine", &shifted)?;
        }
        Ok(())
    }

    /// The input gradient of [`Device::conv`] given the output gradient `dy`.
    pub fn conv_backward_data(&self, geo: &ConvGeometry, dy: &Buffer, w: &Buffer, dx: &mut Buffer) -> Result<()> {
        let (input, weight, output, oh, ow) = Self::conv_sizes(geo)?;
        let mut a = Self::conv_args(geo, oh, ow)?;
        a.x[0] = self.exact(dy, output, "convolution output gradient")?;
        a.x[1] = self.exact(w, weight, "convolution weight")?;
        a.y[0] = self.exact(dx, input, "convolution input gradient")?;
        if geo.groups > 1 {
            a.n = to_i64(input);
            return self.run("conv_direct_backward_data", &a);
        }
        let taps = geo.in_channels * geo.kernel_h * geo.kernel_w;
        let pixels = oh * ow;
        let (image_in, image_out) = (geo.in_channels * geo.in_h * geo.in_w, geo.out_channels * pixels);
        // columns (taps × pixels) = Wᵀ (taps × out) · dy_b (out × pixels), for every image in one product.
        let product = (taps, pixels, geo.out_channels);
        if geo.is_pointwise() {
            // An ungrouped 1×1 without stride or padding: the columns are the input gradient itself.
            let batch = (geo.batch, [0, image_out, image_in]);
            return self.gemm_batched(product, batch, (w, 0, true), (dy, 0, false), (dx, 0), 1.0, 0.0);
        }
        let image_columns = count(&[taps, pixels])?;
        let group = Self::images_per_columns(image_columns, geo.batch);
        let mut columns = self.zeros(count(&[group, image_columns])?)?;
        for first in (0..geo.batch).step_by(group) {
            let images = group.min(geo.batch - first);
            let batch = (images, [0, image_out, image_columns]);
            let gradient = (dy, first * image_out, false);
            self.gemm_batched(product, batch, (w, 0, true), gradient, (&mut columns, 0), 1.0, 0.0)?;
            let mut back = a;
            back.x[0] = self.at(&columns, 0, images * image_columns, "columns")?;
            back.y[0] = self.at(dx, first * image_in, images * image_in, "convolution images' gradient")?;
            back.n = to_i64(images * image_in);
            self.run("col2im", &back)?;
        }
        Ok(())
    }

    fn pool_args(geo: &PoolGeometry, include_pad: bool) -> Result<(RawArgs, usize, usize)> {
        let input = count(&[geo.planes, geo.in_h, geo.in_w])?;
        let output = count(&[geo.planes, geo.out_h, geo.out_w])?;
        if geo.stride_h == 0 || geo.stride_w == 0 || geo.dilation_h == 0 || geo.dilation_w == 0 {
            return Err(size_error("pooling with a zero stride or dilation"));
        }
        let mut a = RawArgs::default();
        put(
            &mut a.i[..16],
            &[
                geo.planes,
                geo.in_h,
                geo.in_w,
                geo.out_h,
                geo.out_w,
                geo.kernel_h,
                geo.kernel_w,
                geo.stride_h,
                geo.stride_w,
                geo.dilation_h,
                geo.dilation_w,
                geo.pad_top,
                geo.pad_left,
                geo.pad_bottom,
                geo.pad_right,
                usize::from(include_pad),
            ],
        )?;
        Ok((a, input, output))
    }

    /// Max pooling (the first maximum of each window; NaN wins; a window over padding only gives 0).
    pub fn max_pool(&self, geo: &PoolGeometry, x: &Buffer, y: &mut Buffer) -> Result<()> {
        let (mut a, input, output) = Self::pool_args(geo, false)?;
        a.x[0] = self.exact(x, input, "pool input")?;
        a.y[0] = self.exact(y, output, "pool output")?;
        a.n = to_i64(output);
        self.run("max_pool_forward", &a)
    }

    /// The input gradient of [`Device::max_pool`]: each window's gradient goes to its maximum.
    pub fn max_pool_backward(&self, geo: &PoolGeometry, x: &Buffer, dy: &Buffer, dx: &mut Buffer) -> Result<()> {
        let (mut a, input, output) = Self::pool_args(geo, false)?;
        a.x[0] = self.exact(x, input, "pool input")?;
        a.x[1] = self.exact(dy, output, "pool output gradient")?;
        a.y[0] = self.exact(dx, input, "pool input gradient")?;
        a.n = to_i64(input);
        self.run("max_pool_backward", &a)
    }

    /// Average pooling.
    pub fn avg_pool(&self, geo: &PoolGeometry, include_pad: bool, x: &Buffer, y: &mut Buffer) -> Result<()> {
        let (mut a, input, output) = Self::pool_args(geo, include_pad)?;
        a.x[0] = self.exact(x, input, "pool input")?;
        a.y[0] = self.exact(y, output, "pool output")?;
        a.n = to_i64(output);
        self.run("avg_pool_forward", &a)
    }

    /// The input gradient of [`Device::avg_pool`].
    pub fn avg_pool_backward(&self, geo: &PoolGeometry, include_pad: bool, dy: &Buffer, dx: &mut Buffer) -> Result<()> {
        let (mut a, input, output) = Self::pool_args(geo, include_pad)?;
        a.x[0] = self.exact(dy, output, "pool output gradient")?;
        a.y[0] = self.exact(dx, input, "pool input gradient")?;
        a.n = to_i64(input);
        self.run("avg_pool_backward", &a)
    }

    /// `y[p]` = the mean of the `size` elements of plane `p` of `x`.
    pub fn plane_mean(&self, size: usize, x: &Buffer, y: &mut Buffer) -> Result<()> {
        if size == 0 || !x.len().is_multiple_of(size) {
            return Err(size_error(format!("{} elements are not whole planes of {size}", x.len())));
        }
        let mut a = RawArgs { n: to_i64(x.len() / size), ..RawArgs::default() };
        a.x[0] = self.exact(x, x.len(), "plane input")?;
        a.y[0] = self.exact(y, x.len() / size, "plane means")?;
        a.i[0] = to_i64(size);
        self.run("plane_mean", &a)
    }

    /// The gradient of [`Device::plane_mean`]: `dx[k] = dy[k / size] / size`.
    pub fn plane_mean_backward(&self, size: usize, dy: &Buffer, dx: &mut Buffer) -> Result<()> {
        let planes = dy.len();
        let mut a = RawArgs { n: to_i64(dx.len()), ..RawArgs::default() };
        a.x[0] = self.exact(dy, planes, "plane mean gradient")?;
        a.y[0] = self.exact(dx, planes.checked_mul(size).ok_or_else(|| size_error("overflow"))?, "plane gradient")?;
        a.i[0] = to_i64(size);
        self.run("plane_mean_backward", &a)
    }

    /// The box layout shared by [`Device::box_read`] and [`Device::box_write`].
    fn box_args(out: &[usize], input: &[usize], origin: &[i64]) -> Result<RawArgs> {
        if out.len() != input.len() || origin.len() != out.len() || out.len() > MAX_RANK || out.is_empty() {
            return Err(size_error(format!("box of ranks {} / {} / {}", out.len(), input.len(), origin.len())));
        }
        let mut a = RawArgs::default();
        a.i[0] = to_i64(out.len());
        put(&mut a.i[1..1 + MAX_RANK], out)?;
        put(&mut a.i[1 + MAX_RANK..1 + 2 * MAX_RANK], input)?;
        if origin.iter().any(|o| o.unsigned_abs() > MAX_PARAMETER as u64) {
            return Err(size_error(format!("box origin {origin:?} is out of range")));
        }
        a.i[1 + 2 * MAX_RANK..1 + 2 * MAX_RANK + origin.len()].copy_from_slice(origin);
        Ok(a)
    }

    /// `y` (shape `out`) read from `x` (shape `input`, its origin at `origin` in `y`'s coordinates); elements
    /// outside `x` are `fill`. Padding has a positive origin, cropping and slicing a negative one.
    pub fn box_read(
        &self,
        out: &[usize],
        input: &[usize],
        origin: &[i64],
        fill: f32,
        x: &Buffer,
        y: &mut Buffer,
    ) -> Result<()> {
        let mut a = Self::box_args(out, input, origin)?;
        a.x[0] = self.exact(x, count(input)?, "box source")?;
        a.y[0] = self.exact(y, count(out)?, "box output")?;
        a.f[0] = fill;
        a.n = to_i64(count(out)?);
        self.run("box_read", &a)
    }

    /// Writes all of `x` (shape `input`) into `y` (shape `out`) at `origin`; the box must lie inside `y`.
    pub fn box_write(&self, out: &[usize], input: &[usize], origin: &[i64], x: &Buffer, y: &mut Buffer) -> Result<()> {
        let inside = input
            .iter()
            .zip(out)
            .zip(origin)
            .all(|((&i, &o), &at)| at >= 0 && (at as usize).checked_add(i).is_some_and(|end| end <= o));
        if !inside {
            return Err(size_error(format!("box {input:?} at {origin:?} does not fit in {out:?}")));
        }
        let mut a = Self::box_args(out, input, origin)?;
        a.x[0] = self.exact(x, count(input)?, "box source")?;
        a.y[0] = self.exact(y, count(out)?, "box target")?;
        a.n = to_i64(count(input)?);
        self.run("box_write", &a)
    }

    /// `y` = `x` (shape `shape`) with its axes permuted: output axis `d` is input axis `perm[d]`.
    pub fn permute(&self, shape: &[usize], perm: &[usize], x: &Buffer, y: &mut Buffer) -> Result<()> {
        let rank = shape.len();
        let mut seen = [false; MAX_RANK];
        let valid = rank > 0
            && rank <= MAX_RANK
            && perm.len() == rank
            && perm.iter().all(|&p| p < rank && !std::mem::replace(&mut seen[p], true));
        if !valid {
            return Err(size_error(format!("permutation {perm:?} of a rank-{rank} tensor")));
        }
        let len = count(shape)?;
        let mut in_strides = [0usize; MAX_RANK];
        let mut stride = 1;
        for d in (0..rank).rev() {
            in_strides[d] = stride;
            stride *= shape[d];
        }
        let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
        let mut a = RawArgs { n: to_i64(len), ..RawArgs::default() };
        a.x[0] = self.exact(x, len, "permute input")?;
        a.y[0] = self.exact(y, len, "permute output")?;
        a.i[0] = to_i64(rank);
        put(&mut a.i[1..1 + MAX_RANK], &out)?;
        put(&mut a.i[1 + MAX_RANK..1 + 2 * MAX_RANK], &strides)?;
        self.run("permute", &a)
    }

    /// The row layout shared by the row kernels: rows of `m` elements filling `len`.
    fn rows(len: usize, m: usize) -> Result<RawArgs> {
        if m == 0 || m > MAX_PARAMETER || !len.is_multiple_of(m) {
            return Err(size_error(format!("{len} elements are not whole rows of {m}")));
        }
        let mut a = RawArgs { n: to_i64(len / m), ..RawArgs::default() };
        a.i[0] = to_i64(m);
        Ok(a)
    }

    /// `y` = the softmax of each row of `m` elements of `x`.
    pub fn softmax_rows(&self, m: usize, x: &Buffer, y: &mut Buffer) -> Result<()> {
        let mut a = Self::rows(x.len(), m)?;
        a.x[0] = self.exact(x, x.len(), "softmax input")?;
        a.y[0] = self.exact(y, x.len(), "softmax output")?;
        self.run("softmax_rows", &a)
    }

    /// The input gradient of [`Device::softmax_rows`] from its output `y` and output gradient `dy`.
    pub fn softmax_rows_backward(&self, m: usize, y: &Buffer, dy: &Buffer, dx: &mut Buffer) -> Result<()> {
        let mut a = Self::rows(y.len(), m)?;
        a.x[0] = self.exact(y, y.len(), "softmax output")?;
        a.x[1] = self.exact(dy, y.len(), "softmax output gradient")?;
        a.y[0] = self.exact(dx, y.len(), "softmax input gradient")?;
        self.run("softmax_rows_backward", &a)
    }

    /// Layer normalization of each row of `m` elements of `x`, with a per-element `scale` and optional `bias`.
    pub fn layer_norm_rows(
        &self,
        m: usize,
        epsilon: f32,
        x: &Buffer,
        (scale, bias): (&Buffer, Option<&Buffer>),
        y: &mut Buffer,
    ) -> Result<()> {
        let mut a = Self::rows(x.len(), m)?;
        a.x[0] = self.exact(x, x.len(), "layer norm input")?;
        a.x[1] = self.exact(scale, m, "layer norm scale")?;
        a.x[2] = bias.map(|b| self.exact(b, m, "layer norm bias")).transpose()?.unwrap_or(0);
        a.y[0] = self.exact(y, x.len(), "layer norm output")?;
        a.f[0] = epsilon;
        self.run("layer_norm_rows", &a)
    }

    /// The input gradient of [`Device::layer_norm_rows`].
    pub fn layer_norm_rows_backward(
        &self,
        m: usize,
        epsilon: f32,
        (x, scale): (&Buffer, &Buffer),
        dy: &Buffer,
        dx: &mut Buffer,
    ) -> Result<()> {
        let mut a = Self::rows(x.len(), m)?;
        a.x[0] = self.exact(x, x.len(), "layer norm input")?;
        a.x[1] = self.exact(scale, m, "layer norm scale")?;
        a.x[2] = self.exact(dy, x.len(), "layer norm output gradient")?;
        a.y[0] = self.exact(dx, x.len(), "layer norm input gradient")?;
        a.f[0] = epsilon;
        self.run("layer_norm_rows_backward", &a)
    }

    /// The layout of the strided kernels: a slice `small` of `large` taking element `start + o·step` per axis.
    fn strided_args(small: &[usize], large: &[usize], start: &[usize], step: &[usize]) -> Result<RawArgs> {
        let rank = small.len();
        let fits = rank > 0
            && rank <= MAX_RANK
            && [large.len(), start.len(), step.len()].iter().all(|&r| r == rank)
            && (0..rank).all(|d| {
                step[d] > 0
                    && (small[d] == 0
                        || start[d].checked_add((small[d] - 1).saturating_mul(step[d])).is_some_and(|e| e < large[d]))
            });
        if !fits {
            return Err(size_error(format!("slice {small:?} from {start:?} by {step:?} does not fit {large:?}")));
        }
        let mut a = RawArgs { n: to_i64(count(small)?), ..RawArgs::default() };
        a.i[0] = to_i64(rank);
        put(&mut a.i[1..1 + MAX_RANK], small)?;
        put(&mut a.i[1 + MAX_RANK..1 + 2 * MAX_RANK], large)?;
        put(&mut a.i[1 + 2 * MAX_RANK..1 + 3 * MAX_RANK], start)?;
        put(&mut a.i[1 + 3 * MAX_RANK..1 + 4 * MAX_RANK], step)?;
        Ok(a)
    }

    /// `y` (shape `small`) = the elements `start + o·step` of `x` (shape `large`): a slice with positive steps.
    pub fn strided_read(
        &self,
        (small, large): (&[usize], &[usize]),
        (start, step): (&[usize], &[usize]),
        x: &Buffer,
        y: &mut Buffer,
    ) -> Result<()> {
        let mut a = Self::strided_args(small, large, start, step)?;
        a.x[0] = self.exact(x, count(large)?, "slice source")?;
        a.y[0] = self.exact(y, count(small)?, "slice")?;
        self.run("strided_read", &a)
    }

    /// Writes `x` (shape `small`) to the elements `start + o·step` of `y` (shape `large`); the rest of `y` is
    /// left as it is. Distinct elements of `x` land on distinct elements of `y` (positive steps).
    pub fn strided_write(
        &self,
        (small, large): (&[usize], &[usize]),
        (start, step): (&[usize], &[usize]),
        x: &Buffer,
        y: &mut Buffer,
    ) -> Result<()> {
        let mut a = Self::strided_args(small, large, start, step)?;
        a.x[0] = self.exact(x, count(small)?, "slice")?;
        a.y[0] = self.exact(y, count(large)?, "slice target")?;
        self.run("strided_write", &a)
    }
}
