//! Shared machinery for element-wise activations: each one states `f(x)` and `f'(x)`; this file turns that into an
//! [`Op`](super::Op) whose forward and backward run in parallel over the elements.

use crate::tensor::Tensor;
use crate::Element;
use ndarray::Zip;
use rayon::prelude::*;

/// An element-wise function with its derivative.
pub trait Pointwise: std::fmt::Debug + Send + Sync + 'static {
    /// Operator name.
    const OP: &'static str;
    /// `f(x)`.
    fn f<T: Element>(&self, x: T) -> T;
    /// `f'(x)`, given `x`.
    fn df<T: Element>(&self, x: T) -> T;

    /// Whether `df` gives the same value from the output `f(x)` as from `x` (true for clips), so the backward can
    /// keep the output instead of the input, which then need not exist (a fused convolution never writes it).
    const DERIVATIVE_FROM_OUTPUT: bool = false;

    /// The role in a fused convolution, if any.
    fn fusion(&self) -> Option<super::Fusable> {
        None
    }
}

/// Elements per parallel task of the element-wise loops.
const MIN_TASK: usize = 16 * 1024;

/// `f(x_i)` over a tensor.
pub(crate) fn map1<T: Element>(x: &Tensor<T>, f: impl Fn(T) -> T + Sync + Send) -> Tensor<T> {
    match x.as_slice() {
        // Contiguous: plain slices, which the compiler vectorizes (an n-D `Zip` indexes dynamic dimensions).
        Some(xs) => {
            // Chunks with a plain inner loop: rayon's per-item collect would not vectorize.
            let mut out = vec![T::zero(); xs.len()];
            out.par_chunks_mut(MIN_TASK).zip(xs.par_chunks(MIN_TASK)).for_each(|(o, x)| {
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = f(v);
                }
            });
            Tensor::from_shape_vec(x.raw_dim(), out).expect("same length as the input")
        }
        None => Zip::from(x).par_map_collect(|&v| f(v)),
    }
}

/// `f(x_i, g_i)` over two tensors of one shape.
pub(crate) fn map2<T: Element>(x: &Tensor<T>, g: &Tensor<T>, f: impl Fn(T, T) -> T + Sync + Send) -> Tensor<T> {
    match (x.as_slice(), g.as_slice()) {
        (Some(xs), Some(gs)) if x.shape() == g.shape() => {
            let mut out = vec![T::zero(); xs.len()];
            out.par_chunks_mut(MIN_TASK).zip(xs.par_chunks(MIN_TASK).zip(gs.par_chunks(MIN_TASK))).for_each(
                |(o, (x, g))| {
                    for ((o, &v), &gv) in o.iter_mut().zip(x).zip(g) {
                        *o = f(v, gv);
                    }
                },
            );
            Tensor::from_shape_vec(x.raw_dim(), out).expect("same length as the input")
        }
        _ => Zip::from(x).and(g).par_map_collect(|&v, &gv| f(v, gv)),
    }
}

/// The bounds of a clamp-like activation (ReLU, Clip) in the element type, converted once rather than per element.
fn clamp_bounds<T: Element, P: Pointwise>(p: &P) -> Option<(T, T)> {
    match p.fusion() {
        Some(super::Fusable::Clamp { lo, hi }) => Some((T::lit(lo), T::lit(hi))),
        _ => None,
    }
}

pub(crate) fn forward<T: Element, P: Pointwise>(p: &P, x: &Tensor<T>) -> Tensor<T> {
    if let Some((lo, hi)) = clamp_bounds::<T, P>(p) {
        // NaN fails both comparisons and passes through, as in `f`.
        return map1(x, move |v| {
            if v < lo {
                lo
            } else if v > hi {
                hi
            } else {
                v
            }
        });
    }
    map1(x, |v| p.f(v))
}

pub(crate) fn backward<T: Element, P: Pointwise>(p: &P, x: &Tensor<T>, g: &Tensor<T>) -> Tensor<T> {
    let zero = T::zero();
    if let Some((lo, hi)) = clamp_bounds::<T, P>(p) {
        // The gradient flows strictly inside (lo, hi), as in `df`. (`move`: bounds held by value, in registers —
        // by reference they would be reloaded after every store.)
        return map2(x, g, move |v, gv| {
            // `&` and `|`, not `&&`/`||`: no branches, so the loop vectorizes to compares and a blend.
            let inside = (v > lo) & (v < hi);
            if inside {
                gv
            } else {
                zero
            }
        });
    }
    map2(x, g, |v, gv| gv * p.df(v))
}

/// Implements [`Op`](super::Op) for a [`Pointwise`] type.
macro_rules! pointwise_op {
    ($ty:ty) => {
        impl<T: $crate::Element> $crate::ops::Op<T> for $ty {
            fn op_type(&self) -> &'static str {
                <$ty as $crate::ops::Pointwise>::OP
            }

            fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, $crate::OpError> {
                $crate::ops::arity(inputs, 1, 1)?;
                Ok(vec![inputs[0].to_vec()])
            }

            fn forward(&self, inputs: &[&$crate::Tensor<T>]) -> Result<$crate::ops::Outputs<T>, $crate::OpError> {
                Ok($crate::ops::Outputs::one($crate::ops::pointwise::forward(self, inputs[0])))
            }

            fn saves(&self, wanted: &[bool]) -> $crate::ops::Saves {
                if $crate::ops::Op::<T>::mask_interval(self).is_some() {
                    // The executor keeps a one-bit mask instead.
                    return $crate::ops::Saves { inputs: vec![false; wanted.len()], outputs: false };
                }
                let from_output = <$ty as $crate::ops::Pointwise>::DERIVATIVE_FROM_OUTPUT;
                $crate::ops::Saves { inputs: vec![!from_output; wanted.len()], outputs: from_output }
            }

            fn mask_interval(&self) -> Option<(f64, f64)> {
                match <$ty as $crate::ops::Pointwise>::fusion(self) {
                    Some($crate::ops::Fusable::Clamp { lo, hi }) => Some((lo, hi)),
                    _ => None,
                }
            }

            fn backward(
                &self,
                cx: &$crate::ops::Vjp<'_, T>,
            ) -> Result<Vec<Option<$crate::Tensor<T>>>, $crate::OpError> {
                if $crate::ops::Op::<T>::mask_interval(self).is_some() {
                    return Ok(vec![Some(cx.saved::<$crate::ops::Mask>()?.apply(cx.grad()?))]);
                }
                let at =
                    if <$ty as $crate::ops::Pointwise>::DERIVATIVE_FROM_OUTPUT { cx.output(0)? } else { cx.input(0)? };
                Ok(vec![Some($crate::ops::pointwise::backward(self, at, cx.grad()?))])
            }

            fn fusion(&self) -> Option<$crate::ops::Fusable> {
                <$ty as $crate::ops::Pointwise>::fusion(self)
            }
        }
    };
}
pub(crate) use pointwise_op;
