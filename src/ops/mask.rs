//! One bit per element: what the backward of a clamp-like activation (ReLU, ReLU6, Clip) needs of its forward.
//!
//! Their gradient passes exactly where the output lies strictly inside the clamp's interval, so instead of keeping
//! the whole output (32 bits per element) until the backward pass, the executor keeps this mask (1 bit) — for a
//! saliency or PGD pass that is most of the activation memory of a CNN. The mask is made from the output, which the
//! fused convolution chains also produce, so it does not matter whether the activation ran alone or fused.

use crate::tensor::Tensor;
use crate::Element;
use rayon::prelude::*;

/// Elements per parallel task (whole 64-bit words).
const TASK: usize = 64 * 1024;

/// Where the gradient passes, bit-packed in element order.
#[derive(Clone, Debug)]
pub struct Mask {
    bits: Vec<u64>,
    len: usize,
}

impl Mask {
    /// Bit `i` set where `lo < y_i < hi` (an infinite `hi` is no upper bound).
    pub fn open_interval<T: Element>(y: &Tensor<T>, lo: T, hi: T) -> Mask {
        let unbounded = hi == T::infinity();
        let pass = move |v: T| (v > lo) & (unbounded | (v < hi));
        let len = y.len();
        let mut bits = vec![0u64; len.div_ceil(64)];
        if let (Some(ys), Some(lo), Some(hi)) = (
            (y as &dyn std::any::Any).downcast_ref::<Tensor<f32>>().and_then(|y| y.as_slice()),
            lo.to_f32(),
            hi.to_f32(),
        ) {
            // f32: the kernels' compare into lane masks, per SIMD level.
            bits.par_chunks_mut(TASK / 64)
                .zip(ys.par_chunks(TASK))
                .for_each(|(words, ys)| gradcam_kernels::vector::interval_bits(ys, lo, hi, words));
            return Mask { bits, len };
        }
        match y.as_slice() {
            Some(ys) => bits.par_chunks_mut(TASK / 64).zip(ys.par_chunks(TASK)).for_each(|(words, ys)| {
                for (word, ys) in words.iter_mut().zip(ys.chunks(64)) {
                    *word = pack(ys, pass);
                }
            }),
            None => {
                for (i, &v) in y.iter().enumerate() {
                    bits[i / 64] |= u64::from(pass(v)) << (i % 64);
                }
            }
        }
        Mask { bits, len }
    }

    /// Elements covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it covers no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bits.len() * 8
    }

    /// `g` where the mask is set, else 0, in the gradient's own buffer (the executor owns the gradient of a value
    /// whose only reader was this activation: no second buffer, no zero fill).
    ///
    /// # Panics
    /// If `g` has another length.
    pub fn apply_in_place<T: Element>(&self, g: &mut Tensor<T>) {
        assert_eq!(g.len(), self.len, "mask: gradient of another size");
        if !g.is_standard_layout() {
            *g = g.as_standard_layout().into_owned();
        }
        if let Some(g32) = (&mut *g as &mut dyn std::any::Any).downcast_mut::<Tensor<f32>>() {
            // f32: the kernels' in-place select, vectorized per SIMD level.
            let xs = g32.as_slice_mut().expect("standard layout is contiguous");
            xs.par_chunks_mut(TASK)
                .zip(self.bits.par_chunks(TASK / 64))
                .for_each(|(xs, words)| gradcam_kernels::vector::keep_bits(words, xs));
            return;
        }
        let xs = g.as_slice_mut().expect("standard layout is contiguous");
        let zero = T::zero();
        xs.par_chunks_mut(TASK).zip(self.bits.par_chunks(TASK / 64)).for_each(|(xs, words)| {
            for (xs, &word) in xs.chunks_mut(64).zip(words) {
                for (b, v) in xs.iter_mut().enumerate() {
                    if (word >> b) & 1 == 0 {
                        *v = zero;
                    }
                }
            }
        });
    }

    /// `g` where the mask is set, else 0, in a new buffer.
    ///
    /// # Panics
    /// If `g` has another length.
    pub fn apply<T: Element>(&self, g: &Tensor<T>) -> Tensor<T> {
        let mut out = g.as_standard_layout().into_owned();
        self.apply_in_place(&mut out);
        out
    }
}

/// The bits of up to 64 values: bit `b` is `pass(ys[b])`.
#[inline(always)]
fn pack<T: Element>(ys: &[T], pass: impl Fn(T) -> bool) -> u64 {
    match <&[T; 64]>::try_from(ys) {
        // A whole word: 64 compares into a byte array, then 8 bytes at a time into the word (both vectorize).
        Ok(ys) => {
            let mut flags = [0u8; 64];
            for b in 0..64 {
                flags[b] = u8::from(pass(ys[b]));
            }
            let mut word = 0u64;
            for (k, byte) in flags.chunks_exact(8).enumerate() {
                let lanes = u64::from_le_bytes(byte.try_into().expect("8 bytes"));
                // Each byte is 0 or 1: gather bit 0 of each into 8 consecutive bits.
                let gathered = (lanes.wrapping_mul(0x0102_0408_1020_4080) >> 56) & 0xff;
                word |= gathered << (8 * k);
            }
            word
        }
        Err(_) => ys.iter().enumerate().fold(0u64, |w, (b, &v)| w | (u64::from(pass(v)) << b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    /// The element-wise rule written out, for f32 (the kernels' select), f64 and a transposed gradient.
    #[test]
    fn keeps_the_gradient_where_the_bit_is_set_for_f32_f64_and_strided_gradients() {
        let n = 2 * TASK + 131;
        let y = Tensor::<f32>::from_shape_fn(IxDyn(&[n]), |i| (i[0] % 7) as f32 - 2.0);
        let g = Tensor::<f32>::from_shape_fn(IxDyn(&[n]), |i| i[0] as f32 * 0.25 - 3.0);
        let want = Tensor::<f32>::from_shape_fn(IxDyn(&[n]), |i| {
            if y[i.clone()] > 0.0 && y[i.clone()] < 3.0 {
                g[i]
            } else {
                0.0
            }
        });
        let m = Mask::open_interval(&y, 0.0, 3.0);
        let mut got = g.clone();
        m.apply_in_place(&mut got);
        assert_eq!(got, want);
        assert!(got.iter().any(|&v| v == 0.0) && got.iter().any(|&v| v != 0.0));
        let (y64, g64) = (y.mapv(f64::from), g.mapv(f64::from));
        let mut got64 = g64.clone();
        Mask::open_interval(&y64, 0.0, 3.0).apply_in_place(&mut got64);
        assert_eq!(got64, want.mapv(f64::from));
        // A transposed (non-standard) gradient of a 2-D value: element (i, j) of the logical view is masked by bit
        // i·5 + j.
        let y2 = Tensor::<f32>::from_shape_fn(IxDyn(&[3, 5]), |i| (i[0] * 5 + i[1]) as f32 - 6.0);
        let m2 = Mask::open_interval(&y2, 0.0, 5.0);
        let g2t = Tensor::<f32>::from_shape_fn(IxDyn(&[5, 3]), |i| (i[0] * 3 + i[1]) as f32 + 1.0).reversed_axes();
        let want2 = Tensor::<f32>::from_shape_fn(IxDyn(&[3, 5]), |i| {
            let v = y2[i.clone()];
            if v > 0.0 && v < 5.0 {
                g2t[i]
            } else {
                0.0
            }
        });
        let mut got2 = g2t.clone();
        m2.apply_in_place(&mut got2);
        assert_eq!(got2, want2);
        assert_eq!(m2.apply(&g2t), want2);
    }

    #[test]
    fn passes_the_gradient_strictly_inside_the_interval() {
        let n = 3 * TASK + 77;
        let y = Tensor::<f32>::from_shape_fn(IxDyn(&[n]), |i| (i[0] % 9) as f32 - 1.0);
        let g = Tensor::<f32>::from_shape_fn(IxDyn(&[n]), |i| if i[0] % 4 == 0 { -1.5 } else { 2.0 });
        for (lo, hi) in [(0.0, 6.0), (0.0, f32::INFINITY), (-0.5, 3.0)] {
            let m = Mask::open_interval(&y, lo, hi);
            assert_eq!(m.len(), n);
            assert!(m.bytes() * 32 <= n * 4 + 32 * 8, "one bit per element");
            let got = m.apply(&g);
            for i in 0..n {
                let inside = y[i] > lo && y[i] < hi;
                let want = if inside { g[i] } else { 0.0 };
                assert_eq!(got[i], want, "{lo}..{hi} at {i}");
            }
        }
        // NaN never passes; +∞ passes an unbounded interval only.
        let y = Tensor::<f32>::from_shape_vec(IxDyn(&[3]), vec![f32::NAN, f32::INFINITY, 1.0]).unwrap();
        let g = Tensor::<f32>::from_elem(IxDyn(&[3]), 1.0);
        assert_eq!(
            Mask::open_interval(&y, 0.0, f32::INFINITY).apply(&g).into_raw_vec_and_offset().0,
            vec![0.0, 1.0, 1.0]
        );
        assert_eq!(Mask::open_interval(&y, 0.0, 6.0).apply(&g).into_raw_vec_and_offset().0, vec![0.0, 0.0, 1.0]);
    }
}
