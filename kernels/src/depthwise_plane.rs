//! f32 stride-1 "same" depthwise convolution of a small plane (at most [`MAX_PLANE`] pixels) as one flat run of
//! vectors, on AVX-512.
//!
//! When the output plane has the input's size and the stride is 1, output pixel `j` (row-major) reads tap `t` at
//! input index `j + offset_t`, with `offset_t = dy·W + dx`: the same shift for every pixel. So the whole plane —
//! 49 pixels at 7² — is four 16-lane vectors, and each tap is one masked load and one fused multiply-add per vector,
//! the mask (fixed by the geometry, computed once per call) zeroing the lanes whose source lies outside the plane or
//! across a row's edge. [`crate::depthwise_rows`] instead covers each 7-pixel row with a vector of its own: 7 masked
//! loads per tap for the 4 needed here.
//!
//! Every output is `bias`, then `+ w_t · x_t` for the taps in row-major order by fused multiply-add (padding reads
//! as 0), then the clamp: the operations of the other depthwise kernels' SIMD levels, so all are bit-identical.

use crate::geometry::ConvGeometry;
use crate::packed_gemm::Clamp;
use crate::simd::SimdLevel;

/// Most pixels of a plane this kernel takes: four AVX-512 vectors (MobileNets' and EfficientNets' 7² planes, 8²).
pub(crate) const MAX_PLANE: usize = 4 * LANES;

/// Lanes of a vector.
const LANES: usize = 16;

/// A small plane's filter: the input offset of each tap and, per tap and vector, the lanes that read inside.
pub(crate) struct FlatPlane {
    pixels: usize,
    vectors: usize,
    /// Input index of tap `t` for output pixel `j` is `j + offsets[t]` (row-major taps).
    offsets: Vec<isize>,
    /// `masks[t·vectors + v]`: bit `l` set when pixel `16v + l` is an output whose tap `t` reads inside the plane.
    masks: Vec<u16>,
    /// Per vector, the lanes that are output pixels.
    outputs: Vec<u16>,
}

impl FlatPlane {
    /// The filter of `geo` on `level`, or `None` where this kernel does not apply: a level other than AVX-512, a
    /// stride above 1, an output plane of another size than the input's, or a plane above [`MAX_PLANE`] pixels.
    pub(crate) fn of(geo: &ConvGeometry, level: SimdLevel) -> Option<FlatPlane> {
        if !FlatPlane::applies(geo, level) {
            return None;
        }
        let (h, w) = (geo.in_h, geo.in_w);
        let pixels = h * w;
        let vectors = pixels.div_ceil(LANES);
        let taps = geo.kernel_h * geo.kernel_w;
        let (mut offsets, mut masks) = (Vec::with_capacity(taps), Vec::with_capacity(taps * vectors));
        for ky in 0..geo.kernel_h {
            for kx in 0..geo.kernel_w {
                // Source of output (y, x): (y + dy, x + dx), in isize (a plane of at most 64 pixels; the kernel's
                // reach and padding are a geometry's sizes, far below isize's range).
                let dy = (ky * geo.dilation_h) as isize - geo.pad_top as isize;
                let dx = (kx * geo.dilation_w) as isize - geo.pad_left as isize;
                offsets.push(dy * w as isize + dx);
                for v in 0..vectors {
                    let mut bits = 0u16;
                    for l in 0..LANES {
                        let j = v * LANES + l;
                        let (y, x) = ((j / w) as isize + dy, (j % w) as isize + dx);
                        if j < pixels && (0..h as isize).contains(&y) && (0..w as isize).contains(&x) {
                            bits |= 1 << l;
                        }
                    }
                    masks.push(bits);
                }
            }
        }
        let outputs = (0..vectors).map(|v| lane_bits(pixels.saturating_sub(v * LANES).min(LANES))).collect();
        Some(FlatPlane { pixels, vectors, offsets, masks, outputs })
    }

    /// Whether [`FlatPlane::of`] gives a filter for `geo` on `level` (without building its masks).
    pub(crate) fn applies(geo: &ConvGeometry, level: SimdLevel) -> bool {
        let (h, w) = (geo.in_h, geo.in_w);
        let same = geo.out_h() == Some(h) && geo.out_w() == Some(w);
        level == SimdLevel::Avx512
            && level.supported()
            && geo.stride_h == 1
            && geo.stride_w == 1
            && same
            && h * w > 0
            && h * w <= MAX_PLANE
    }

    /// `out ← clamp(bias + Σ_t weights[t] · tap_t(src))` over one plane.
    ///
    /// # Panics
    /// If `src` or `out` is shorter than the plane or `weights` than the taps.
    pub(crate) fn run(&self, src: &[f32], weights: &[f32], bias: f32, clamp: Clamp, out: &mut [f32]) {
        assert!(src.len() >= self.pixels && out.len() >= self.pixels, "depthwise plane: plane too short");
        assert!(weights.len() >= self.offsets.len(), "depthwise plane: too few weights");
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `of` built this filter only where the CPU has AVX-512F; the lengths were checked above, and the
        // masks are this filter's own (lanes that read inside the plane, lanes that are outputs).
        unsafe {
            match self.vectors {
                1 => self.plane_avx512::<1>(src, weights, bias, clamp, out),
                2 => self.plane_avx512::<2>(src, weights, bias, clamp, out),
                3 => self.plane_avx512::<3>(src, weights, bias, clamp, out),
                _ => self.plane_avx512::<4>(src, weights, bias, clamp, out),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("FlatPlane::of builds filters on x86-64 only ({:?})", (src, weights, bias, clamp, out));
    }

    /// [`FlatPlane::run`] with `V` vectors.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `src` and `out` hold the plane's pixels, `weights` the taps; `V == self.vectors`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn plane_avx512<const V: usize>(
        &self,
        src: &[f32],
        weights: &[f32],
        bias: f32,
        clamp: Clamp,
        out: &mut [f32],
    ) {
        use std::arch::x86_64::*;
        debug_assert_eq!(V, self.vectors);
        let mut acc = [_mm512_set1_ps(bias); V];
        for ((&offset, &w), masks) in self.offsets.iter().zip(weights).zip(self.masks.chunks_exact(V)) {
            let w = _mm512_set1_ps(w);
            for v in 0..V {
                let at = src.as_ptr().wrapping_offset((v * LANES) as isize + offset);
                // SAFETY: the mask selects only lanes whose source index j + offset lies inside the plane, which
                // `src` holds (checked by `run`); other lanes are not accessed and read as 0 (the padding). The
                // address itself may lie outside `src` when lanes are masked off: hence `wrapping_offset`.
                let x = unsafe { _mm512_maskz_loadu_ps(masks[v], at) };
                acc[v] = _mm512_fmadd_ps(w, x, acc[v]);
            }
        }
        let (lo, hi) = (_mm512_set1_ps(clamp.lo), _mm512_set1_ps(clamp.hi));
        for (v, (&acc, &lanes)) in acc.iter().zip(&self.outputs).enumerate() {
            // max(lo, x) and min(hi, x) return x when x is NaN (the second operand), as in the other kernels.
            let y = if clamp.is_none() { acc } else { _mm512_min_ps(hi, _mm512_max_ps(lo, acc)) };
            // SAFETY: the mask selects pixels below the plane's size, which `out` holds (checked by `run`).
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(v * LANES), lanes, y) };
        }
    }
}

/// The first `n ≤ 16` lanes.
fn lane_bits(n: usize) -> u16 {
    ((1u32 << n) - 1) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::{base_3x3, data_f32 as data};
    use crate::depthwise_flat;

    fn geometry(side: [usize; 2], kernel: usize, dilation: usize) -> ConvGeometry {
        let pad = (kernel - 1) * dilation / 2;
        ConvGeometry {
            batch: 2,
            in_channels: 3,
            out_channels: 3,
            groups: 3,
            in_h: side[0],
            in_w: side[1],
            kernel_h: kernel,
            kernel_w: kernel,
            dilation_h: dilation,
            dilation_w: dilation,
            pad_top: pad,
            pad_left: pad,
            pad_bottom: pad,
            pad_right: pad,
            ..base_3x3(3, 7, 1)
        }
    }

    #[test]
    fn forward_and_input_gradient_bit_identical_to_the_flat_kernel() {
        if !SimdLevel::Avx512.supported() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        // 7² with 3×3 and 5×5 (MobileNet, EfficientNet), 8² (four whole vectors), 1 to 3 vectors, dilation, a
        // 1-pixel plane, and the NaN / infinity a clamp must pass through.
        let cases = [
            geometry([7, 7], 3, 1),
            geometry([7, 7], 5, 1),
            geometry([8, 8], 3, 1),
            geometry([4, 4], 3, 1),
            geometry([5, 6], 3, 2),
            geometry([3, 9], 5, 1),
            geometry([1, 1], 3, 1),
            // Non-square kernels and planes of 64 pixels that are not square.
            ConvGeometry { kernel_h: 1, kernel_w: 3, pad_top: 0, pad_bottom: 0, ..geometry([7, 7], 3, 1) },
            ConvGeometry { kernel_h: 3, kernel_w: 5, pad_left: 2, pad_right: 2, ..geometry([2, 32], 3, 1) },
            ConvGeometry { kernel_w: 1, pad_left: 0, pad_right: 0, ..geometry([64, 1], 3, 1) },
            // TensorFlow's SAME padding of an even kernel: one more row and column after than before.
            ConvGeometry {
                kernel_h: 4,
                kernel_w: 4,
                pad_top: 1,
                pad_left: 1,
                pad_bottom: 2,
                pad_right: 2,
                ..geometry([6, 6], 3, 1)
            },
        ];
        for geo in cases {
            let plane = FlatPlane::of(&geo, SimdLevel::Avx512).expect("applies");
            let mut x = data(geo.batch * geo.in_channels * geo.in_plane(), 1);
            x[5] = f32::NAN;
            x[geo.in_plane() + 2] = f32::INFINITY;
            let w = data(geo.out_channels * geo.kernel_h * geo.kernel_w, 2);
            let b = data(geo.out_channels, 3);
            for clamp in [Clamp::NONE, Clamp { lo: 0.0, hi: 6.0 }] {
                // The dispatching forward (which now takes this kernel) against the flat kernel run plane by plane.
                let mut got = vec![0.0f32; x.len()];
                depthwise_flat::forward(&geo, &x, &w, &b, clamp, &mut got, SimdLevel::Avx512);
                let mut mine = vec![0.0f32; x.len()];
                let taps = geo.kernel_h * geo.kernel_w;
                for (p, (src, out)) in x.chunks(geo.in_plane()).zip(mine.chunks_mut(geo.in_plane())).enumerate() {
                    let c = p % geo.in_channels;
                    plane.run(src, &w[c * taps..(c + 1) * taps], b[c], clamp, out);
                }
                let want = depthwise_flat::tests::flat_only(&geo, &x, &w, &b, clamp);
                assert_eq!(bits(&mine), bits(&want), "{geo:?} {clamp:?}");
                assert_eq!(bits(&got), bits(&want), "{geo:?} {clamp:?}");
            }
            // The input gradient (the flipped filter, padding mirrored) takes this kernel too.
            let mut dx = vec![f32::NAN; x.len()];
            assert!(depthwise_flat::backward_data(&geo, &w, &x, &mut dx, SimdLevel::Avx512));
            assert_eq!(bits(&dx), bits(&depthwise_flat::tests::flat_backward_only(&geo, &w, &x)), "{geo:?} backward");
        }
    }

    #[test]
    fn applies_to_small_same_stride_one_planes_only() {
        let level = SimdLevel::Avx512;
        if !level.supported() {
            eprintln!("skipped: this CPU has no AVX-512F");
            return;
        }
        assert!(FlatPlane::of(&geometry([7, 7], 3, 1), level).is_some());
        assert!(FlatPlane::of(&geometry([9, 9], 3, 1), level).is_none(), "81 pixels: five vectors");
        assert!(FlatPlane::of(&geometry([7, 7], 3, 1), SimdLevel::Avx2).is_none());
        let strided = ConvGeometry { stride_h: 2, stride_w: 2, ..geometry([8, 8], 3, 1) };
        assert!(FlatPlane::of(&strided, level).is_none());
        let valid = ConvGeometry { pad_top: 0, pad_left: 0, pad_bottom: 0, pad_right: 0, ..geometry([7, 7], 3, 1) };
        assert!(FlatPlane::of(&valid, level).is_none(), "a smaller output plane");
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }
}
