//! The scalar types the kernels compute in.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A floating-point scalar with a GEMM routine.
///
/// Implemented for `f32` (what models run in) and `f64` (what gradient checks run in).
pub trait Element:
    num_traits::Float
    + num_traits::FromPrimitive
    + Default
    + Debug
    + Display
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Send
    + Sync
    + 'static
{
    /// Short name used in error messages and benchmark ids.
    const NAME: &'static str;

    /// `C ← alpha·A·B + beta·C` through `matrixmultiply`.
    ///
    /// # Safety
    /// Same contract as `matrixmultiply::sgemm`: `a` must be valid for reads of an `m×k` matrix with strides
    /// `(rsa, csa)`, `b` of a `k×n` matrix with `(rsb, csb)`, and `c` valid for reads and writes of an `m×n`
    /// matrix with `(rsc, csc)` that no other thread touches during the call.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// `y += a·x` element-wise over the shorter of the two (the depthwise kernels' inner loop).
    fn axpy(a: Self, x: &[Self], y: &mut [Self]) {
        for (o, &v) in y.iter_mut().zip(x) {
            *o += a * v;
        }
    }

    /// `Σ x_i·y_i` over the shorter of the two, in a fixed order that depends only on the length.
    fn dot(x: &[Self], y: &[Self]) -> Self {
        x.iter().zip(y).fold(Self::zero(), |acc, (&a, &b)| acc + a * b)
    }

    /// Four [`Element::axpy`]s in order, in one pass over `y`.
    fn axpy4(a: [Self; 4], x: [&[Self]; 4], y: &mut [Self]) {
        for (ar, r) in a.iter().zip(x) {
            Self::axpy(*ar, r, y);
        }
    }

    /// Depthwise forward by a type-specific fast kernel (`output ← conv + bias`), or `false` (nothing written) where
    /// there is none: the generic loops then run.
    fn depthwise_forward(
        _geo: &crate::ConvGeometry,
        _input: &[Self],
        _weight: &[Self],
        _bias: Option<&[Self]>,
        _output: &mut [Self],
    ) -> bool {
        false
    }

    /// Depthwise input gradient by a type-specific fast kernel (overwrites `grad_input`), or `false` (nothing
    /// written) where there is none.
    fn depthwise_backward_data(
        _geo: &crate::ConvGeometry,
        _weight: &[Self],
        _grad_output: &[Self],
        _grad_input: &mut [Self],
    ) -> bool {
        false
    }

    /// Converts an `f64` literal (constants in formulas) to this type.
    fn lit(v: f64) -> Self {
        <Self as num_traits::NumCast>::from(v).unwrap_or_else(Self::nan)
    }
}

impl Element for f32 {
    const NAME: &'static str = "f32";

    fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        crate::vector::axpy(a, x, y)
    }

    fn dot(x: &[f32], y: &[f32]) -> f32 {
        crate::vector::dot(x, y)
    }

    fn axpy4(a: [f32; 4], x: [&[f32]; 4], y: &mut [f32]) {
        crate::vector::axpy4(a, x, y)
    }

    fn depthwise_forward(
        geo: &crate::ConvGeometry,
        input: &[f32],
        weight: &[f32],
        bias: Option<&[f32]>,
        output: &mut [f32],
    ) -> bool {
        let zeros;
        let bias = match bias {
            Some(b) => b,
            None => {
                zeros = vec![0.0; geo.out_channels];
                &zeros
            }
        };
        let clamp = crate::Clamp::NONE;
        crate::depthwise_flat::forward(geo, input, weight, bias, clamp, output, crate::simd::level());
        true
    }

    fn depthwise_backward_data(
        geo: &crate::ConvGeometry,
        weight: &[f32],
        grad_output: &[f32],
        grad_input: &mut [f32],
    ) -> bool {
        crate::depthwise_flat::backward_data(geo, weight, grad_output, grad_input, crate::simd::level())
    }

    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded verbatim; the caller upholds matrixmultiply's contract (see trait docs).
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

impl Element for f64 {
    const NAME: &'static str = "f64";

    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded verbatim; the caller upholds matrixmultiply's contract (see trait docs).
        unsafe { matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}
