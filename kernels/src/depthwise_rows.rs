//! f32 stride-1 depthwise convolution straight from the input rows, with masked vector loads at the borders.
//!
//! [`crate::depthwise_flat`] copies every plane into a zero-padded scratch and copies the valid columns back out:
//! on MobileNet-sized planes those two copies cost more than the arithmetic. With a stride of 1 no phase split is
//! needed, so this kernel reads the taps from the input itself: each output row is cut into vectors of `L` lanes,
//! and the load of tap `(ky, kx)` for a vector masks off the lanes whose source column lies outside the row (a
//! source row outside the plane is read from a row of zeros with the same masks), which reads those lanes as zero —
//! the padding — without touching memory outside the plane. Results are written to the output row with a masked store.
//!
//! Every output is `bias`, then `+ w_t · x_t` for the taps in row-major order by fused multiply-add (padding reads
//! as 0), then the clamp: exactly the operations of the flat kernel's SIMD levels, so the two are bit-identical.

use crate::geometry::ConvGeometry;
use crate::packed_gemm::Clamp;
use crate::simd::SimdLevel;

/// The geometry of one plane's filter (stride 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RowFilter {
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    kernel: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 2],
}

/// Per output vector of a row and tap column: which lanes read inside the row — the same for every row and plane,
/// computed once per call.
pub(crate) struct Lanes {
    /// The filter the masks were computed for, which [`Lanes::run`] runs (its reads stay inside the plane only with
    /// its own masks).
    filter: RowFilter,
    /// The SIMD level the table was made for, which [`Lanes::run`] runs.
    level: SimdLevel,
    lanes: usize,
    vectors: usize,
    /// `(lo, hi)` per `(vector, kx)`.
    ranges: Vec<(usize, usize)>,
    /// The same ranges as AVX-512 lane masks (bit l set for lane l).
    bits: Vec<u16>,
    /// The same ranges as AVX2 lane masks (−1 for a lane read, 0 otherwise).
    words: Vec<[i32; 8]>,
    /// Per block of [`VECTORS`] vectors from vector `4·b`: whether every lane of every tap column reads inside the
    /// row (no masks needed).
    whole: Vec<bool>,
    /// Zeros standing in for a source row outside the plane (read with the same masks as a real row).
    zeros: Vec<f32>,
}

impl Lanes {
    fn new(f: &RowFilter, level: SimdLevel, lanes: usize) -> Lanes {
        let kw = f.kernel[1];
        let vectors = f.out_w.div_ceil(lanes);
        let ranges: Vec<(usize, usize)> =
            (0..vectors * kw).map(|i| f.lane_range(i / kw * lanes, i % kw, lanes)).collect();
        let bits = ranges.iter().map(|&(lo, hi)| (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16).collect();
        let words = ranges
            .iter()
            .map(|&(lo, hi)| std::array::from_fn(|l| if (lo..hi).contains(&l) { -1 } else { 0 }))
            .collect();
        let whole = (0..vectors.div_ceil(VECTORS))
            .map(|b| {
                let vs = b * VECTORS..((b + 1) * VECTORS).min(vectors);
                ranges[vs.start * kw..vs.end * kw].iter().all(|&(lo, hi)| lo == 0 && hi == lanes)
            })
            .collect();
        Lanes { filter: f.clone(), level, lanes, vectors, ranges, bits, words, whole, zeros: vec![0.0; f.in_w] }
    }
}

/// Vectors per register block: four independent accumulator chains per tap.
const VECTORS: usize = 4;

impl RowFilter {
    /// The forward filter of `geo`, or `None` where this kernel does not apply (a stride above 1).
    pub(crate) fn of(geo: &ConvGeometry) -> Option<RowFilter> {
        (geo.stride_h == 1 && geo.stride_w == 1).then(|| RowFilter {
            in_h: geo.in_h,
            in_w: geo.in_w,
            out_h: geo.out_h().unwrap_or(0),
            out_w: geo.out_w().unwrap_or(0),
            kernel: [geo.kernel_h, geo.kernel_w],
            dilation: [geo.dilation_h, geo.dilation_w],
            pad: [geo.pad_top, geo.pad_left],
        })
    }

    /// The filter that computes the input gradient of a stride-1 `geo` from its output gradient (run with the
    /// flipped kernel): the output gradient padded by the kernel's reach less the forward padding, so that input
    /// pixel `(iy, ix)` sees exactly the outputs whose windows covered it. `None` for a stride above 1 or a padding
    /// wider than the reach (the caller falls back).
    pub(crate) fn backward_of(geo: &ConvGeometry) -> Option<RowFilter> {
        let reach_h = (geo.kernel_h - 1) * geo.dilation_h;
        let reach_w = (geo.kernel_w - 1) * geo.dilation_w;
        let fits = geo.stride_h == 1 && geo.stride_w == 1 && geo.pad_top <= reach_h && geo.pad_left <= reach_w;
        fits.then(|| RowFilter {
            in_h: geo.out_h().unwrap_or(0),
            in_w: geo.out_w().unwrap_or(0),
            out_h: geo.in_h,
            out_w: geo.in_w,
            kernel: [geo.kernel_h, geo.kernel_w],
            dilation: [geo.dilation_h, geo.dilation_w],
            pad: [reach_h - geo.pad_top, reach_w - geo.pad_left],
        })
    }

    /// The lane table of `level` (empty on the portable level, which has no row kernel).
    pub(crate) fn lanes(&self, level: SimdLevel) -> Lanes {
        let width = match level {
            SimdLevel::Avx512 => 16,
            SimdLevel::Avx2 => 8,
            _ => {
                let (ranges, bits, words, whole, zeros) = Default::default();
                let filter = self.clone();
                return Lanes { filter, level, lanes: 0, vectors: 0, ranges, bits, words, whole, zeros };
            }
        };
        Lanes::new(self, level, width)
    }

    /// Lanes `[lo, hi)` of the vector of `lanes` outputs starting at output column `x0` whose tap `kx` reads a
    /// column inside the row (and that are outputs at all).
    fn lane_range(&self, x0: usize, kx: usize, lanes: usize) -> (usize, usize) {
        // Source column of lane l: x0 + l + kx·dilation − pad_left.
        let shift = x0 + kx * self.dilation[1];
        let lo = self.pad[1].saturating_sub(shift).min(lanes);
        let hi = (self.in_w + self.pad[1]).saturating_sub(shift).min(lanes).min(self.out_w - x0);
        (lo, hi.max(lo))
    }
}

impl Lanes {
    /// `out ← clamp(bias + Σ_t w_t · tap_t(src))` over one plane of the filter this table was made for (by
    /// [`RowFilter::lanes`]), on its level, or `false` (nothing written) on a level without this kernel (the
    /// portable one).
    ///
    /// # Panics
    /// If `src`, `weights` or `out` are shorter than the geometry needs.
    pub(crate) fn run(&self, src: &[f32], weights: &[f32], bias: f32, clamp: Clamp, out: &mut [f32]) -> bool {
        let (f, level) = (&self.filter, self.level);
        assert!(src.len() >= f.in_h * f.in_w, "depthwise rows: input plane too short");
        assert!(weights.len() >= f.kernel[0] * f.kernel[1], "depthwise rows: too few weights");
        assert!(out.len() >= f.out_h * f.out_w, "depthwise rows: output plane too short");
        let kw = f.kernel[1];
        assert!(self.ranges.len() == self.vectors * kw && self.vectors * self.lanes >= f.out_w);
        match level {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the guard checked that the CPU runs AVX-512F; the lengths were checked above, and the masks are
            // the filter's own (this table was made from it).
            SimdLevel::Avx512 if level.supported() => unsafe { f.plane_avx512(src, weights, bias, clamp, out, self) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for AVX2 and FMA.
            SimdLevel::Avx2 if level.supported() => unsafe { f.plane_avx2(src, weights, bias, clamp, out, self) },
            _ => return false,
        }
        true
    }

    /// Whether the output rows fit `vectors` vectors on a level that has this kernel.
    pub(crate) fn rows_fit(&self, vectors: usize) -> bool {
        self.lanes > 0 && self.vectors <= vectors
    }
}

/// Defines one level's plane kernel from the one template; only the vector width and the masked memory
/// operations differ.
#[cfg(target_arch = "x86_64")]
macro_rules! plane_kernel {
    (
        fn $name:ident, feature = $feature:literal, lanes = $lanes:literal,
        table_mask = |$table:ident, $i:ident| $table_mask:expr, tail_mask = |$n:ident| $tail_mask:expr,
        load = |$mload:ident, $ptr:ident| $masked_load:expr, store = |$mstore:ident, $dst:ident, $val:ident| $masked_store:expr,
        loadu = $loadu:ident, storeu = $storeu:ident, splat = $splat:ident, fma = $fma:ident, min = $min:ident,
        max = $max:ident
    ) => {
        impl RowFilter {
            /// One plane, `$lanes` lanes per vector.
            ///
            /// # Safety
            /// The CPU supports the target features; `src`, `weights` and `out` hold what [`RowFilter::run`]
            /// checks.
            #[target_feature(enable = $feature)]
            #[allow(clippy::needless_range_loop)]
            unsafe fn $name(
                &self,
                src: &[f32],
                weights: &[f32],
                bias: f32,
                clamp: Clamp,
                out: &mut [f32],
                table: &Lanes,
            ) {
                /// `NV` vectors from vector `v0` of the `NR` output rows from `oy`: independent accumulator chains; returns `NR`.
                ///
                /// # Safety
                /// As the caller's; `v0 + NV ≤ table.vectors`, `oy + NR ≤ out_h`.
                #[target_feature(enable = $feature)]
                #[inline]
                #[allow(clippy::too_many_arguments)]
                unsafe fn block<const NR: usize, const NV: usize>(
                    f: &RowFilter,
                    src: &[f32],
                    weights: &[f32],
                    bias: f32,
                    clamp: Option<Clamp>,
                    out: *mut f32,
                    table: &Lanes,
                    oy: usize,
                    v0: usize,
                ) -> usize {
                    const L: usize = $lanes;
                    let [kh, kw] = f.kernel;
                    let [dy, dx] = f.dilation;
                    let mut acc = [[$splat(bias); NV]; NR];
                    let whole = table.whole[v0 / VECTORS];
                    let masks = v0 * kw..(v0 + NV) * kw;
                    assert!(masks.end <= table.ranges.len());
                    for ky in 0..kh {
                        // Lane 0 of vector v0 for tap column 0 of each row of the block (may lie before the row:
                        // wrapping arithmetic, and those lanes are masked off). A tap row outside the plane reads the
                        // zero row, with the same masks.
                        let starts: [*const f32; NR] = std::array::from_fn(|r| {
                            let row = match (oy + r + ky * dy).checked_sub(f.pad[0]).filter(|&i| i < f.in_h) {
                                Some(iy) => src[iy * f.in_w..].as_ptr(),
                                None => table.zeros.as_ptr(),
                            };
                            row.wrapping_add(v0 * L).wrapping_sub(f.pad[1])
                        });
                        for kx in 0..kw {
                            let w = $splat(weights[ky * kw + kx]);
                            for (acc, start) in acc.iter_mut().zip(&starts) {
                                let at = start.wrapping_add(kx * dx);
                                if whole {
                                    for v in 0..NV {
                                        // SAFETY: every lane of this block reads inside the row (`Lanes::whole`).
                                        let x = unsafe { $loadu(at.add(v * L)) };
                                        acc[v] = $fma(w, x, acc[v]);
                                    }
                                } else {
                                    for v in 0..NV {
                                        let $i = masks.start + v * kw + kx;
                                        let $table = table;
                                        // SAFETY: $i < masks.end ≤ the tables' length (asserted above).
                                        let $mload = unsafe { $table_mask };
                                        let $ptr = at.wrapping_add(v * L);
                                        // SAFETY: only the lanes the mask selects are read, and their columns lie
                                        // inside the row (`lane_range`); masked-off lanes never fault.
                                        let x = unsafe { $masked_load };
                                        acc[v] = $fma(w, x, acc[v]);
                                    }
                                }
                            }
                        }
                    }
                    for (r, acc) in acc.iter().enumerate() {
                        // SAFETY: row oy + r < out_h of the output plane (the caller's block).
                        let out_row = unsafe { out.add((oy + r) * f.out_w) };
                        for v in 0..NV {
                            let x0 = (v0 + v) * L;
                            let y = match clamp {
                                Some(c) => $min($splat(c.hi), $max($splat(c.lo), acc[v])),
                                None => acc[v],
                            };
                            // SAFETY: columns x0.. of the output row, L of them when they all exist.
                            let $dst = unsafe { out_row.add(x0) };
                            let $val = y;
                            if x0 + L <= f.out_w {
                                // SAFETY: all L columns exist in the row.
                                unsafe { $storeu($dst, $val) };
                            } else {
                                let $n = f.out_w - x0;
                                let $mstore = $tail_mask;
                                // SAFETY: only the out_w − x0 lanes inside the row are written.
                                unsafe { $masked_store };
                            }
                        }
                    }
                    NR
                }
                debug_assert_eq!(table.lanes, $lanes);
                let clamp = (!clamp.is_none()).then_some(clamp);
                let out = out.as_mut_ptr();
                if table.vectors <= 2 {
                    // Narrow rows: the accumulator chains come from several rows at once (eight vectors in all).
                    let mut oy = 0;
                    while oy < self.out_h {
                        let left = self.out_h - oy;
                        // SAFETY: rows oy.. oy + NR exist (NR ≤ left), vectors 0.. vectors; the rest is the caller's.
                        let nr = unsafe {
                            match (table.vectors, left) {
                                (1, 8..) => block::<8, 1>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (1, 7) => block::<7, 1>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (1, 6) => block::<6, 1>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (1, 5) => block::<5, 1>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (1, 4) => block::<4, 1>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (1, 3) => block::<3, 1>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (1, 2) => block::<2, 1>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (1, _) => block::<1, 1>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (_, 4..) => block::<4, 2>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (_, 2..) => block::<2, 2>(self, src, weights, bias, clamp, out, table, oy, 0),
                                (_, _) => block::<1, 2>(self, src, weights, bias, clamp, out, table, oy, 0),
                            }
                        };
                        oy += nr;
                    }
                    return;
                }
                for oy in 0..self.out_h {
                    let mut v0 = 0;
                    while v0 < table.vectors {
                        let nv = VECTORS.min(table.vectors - v0);
                        // SAFETY: v0 + nv ≤ vectors, row oy exists; the rest is the caller's contract.
                        unsafe {
                            match nv {
                                4 => block::<1, 4>(self, src, weights, bias, clamp, out, table, oy, v0),
                                3 => block::<1, 3>(self, src, weights, bias, clamp, out, table, oy, v0),
                                2 => block::<1, 2>(self, src, weights, bias, clamp, out, table, oy, v0),
                                _ => block::<1, 1>(self, src, weights, bias, clamp, out, table, oy, v0),
                            };
                        }
                        v0 += nv;
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
plane_kernel! {
    fn plane_avx512, feature = "avx512f", lanes = 16,
    table_mask = |t, i| *t.bits.get_unchecked(i),
    tail_mask = |n| ((1u32 << n) - 1) as __mmask16,
    load = |mask, ptr| _mm512_maskz_loadu_ps(mask, ptr),
    store = |mask, dst, val| _mm512_mask_storeu_ps(dst, mask, val),
    loadu = _mm512_loadu_ps, storeu = _mm512_storeu_ps, splat = _mm512_set1_ps, fma = _mm512_fmadd_ps,
    min = _mm512_min_ps, max = _mm512_max_ps
}

#[cfg(target_arch = "x86_64")]
plane_kernel! {
    fn plane_avx2, feature = "avx2,fma", lanes = 8,
    table_mask = |t, i| _mm256_loadu_si256(t.words.get_unchecked(i).as_ptr().cast()),
    tail_mask = |n| _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
    load = |mask, ptr| _mm256_maskload_ps(ptr, mask),
    store = |mask, dst, val| _mm256_maskstore_ps(dst, mask, val),
    loadu = _mm256_loadu_ps, storeu = _mm256_storeu_ps, splat = _mm256_set1_ps, fma = _mm256_fmadd_ps,
    min = _mm256_min_ps, max = _mm256_max_ps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::tests::data_f32 as data;
    use crate::simd::supported_levels;

    fn geometry(in_h: usize, in_w: usize, kernel: usize, dilation: usize, pad: [usize; 4]) -> ConvGeometry {
        ConvGeometry {
            batch: 1,
            in_channels: 1,
            in_h,
            in_w,
            out_channels: 1,
            kernel_h: kernel,
            kernel_w: kernel,
            stride_h: 1,
            stride_w: 1,
            pad_top: pad[0],
            pad_left: pad[1],
            pad_bottom: pad[2],
            pad_right: pad[3],
            dilation_h: dilation,
            dilation_w: dilation,
            groups: 1,
        }
    }

    /// The reference: bias, then every tap in row-major order by fused multiply-add (padding as 0), then the clamp —
    /// the operations the kernel must perform, so the comparison is exact.
    fn reference(geo: &ConvGeometry, src: &[f32], w: &[f32], bias: f32, clamp: Clamp) -> Vec<f32> {
        let (oh, ow) = (geo.out_h().unwrap(), geo.out_w().unwrap());
        let mut out = vec![0.0; oh * ow];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = bias;
                for ky in 0..geo.kernel_h {
                    for kx in 0..geo.kernel_w {
                        let iy = (oy + ky * geo.dilation_h) as isize - geo.pad_top as isize;
                        let ix = (ox + kx * geo.dilation_w) as isize - geo.pad_left as isize;
                        let inside = (0..geo.in_h as isize).contains(&iy) && (0..geo.in_w as isize).contains(&ix);
                        let x = if inside { src[iy as usize * geo.in_w + ix as usize] } else { 0.0 };
                        acc = w[ky * geo.kernel_w + kx].mul_add(x, acc);
                    }
                }
                out[oy * ow + ox] = clamp.apply_fast(acc);
            }
        }
        out
    }

    #[test]
    fn every_level_is_bit_identical_to_fused_taps_in_order() {
        let mut cases = Vec::new();
        // Row widths around every vector width (1…40), 3×3 "same"; then 5×5, dilation, pads beyond the reach,
        // asymmetric and no padding, MobileNet's 7², 14², 56² planes.
        for w in 1..=40 {
            cases.push(geometry(5, w, 3, 1, [1, 1, 1, 1]));
        }
        cases.push(geometry(7, 7, 5, 1, [2, 2, 2, 2]));
        cases.push(geometry(9, 23, 3, 2, [2, 2, 2, 2]));
        cases.push(geometry(6, 19, 3, 1, [3, 4, 0, 2]));
        cases.push(geometry(6, 19, 3, 1, [0, 0, 0, 0]));
        cases.push(geometry(14, 14, 3, 1, [1, 1, 1, 1]));
        cases.push(geometry(56, 56, 3, 1, [1, 1, 1, 1]));
        let levels: Vec<SimdLevel> = supported_levels().into_iter().filter(|&l| l != SimdLevel::Portable).collect();
        for level in levels {
            for (i, geo) in cases.iter().enumerate() {
                let f = RowFilter::of(geo).expect("stride 1");
                let lanes = f.lanes(level);
                let src = data(geo.in_h * geo.in_w, i);
                let w = data(geo.kernel_h * geo.kernel_w, i + 1);
                for clamp in [Clamp::NONE, Clamp { lo: -0.25, hi: 0.5 }] {
                    let want = reference(geo, &src, &w, 0.125, clamp);
                    let mut got = vec![f32::NAN; want.len()];
                    assert!(lanes.run(&src, &w, 0.125, clamp, &mut got));
                    let same = got.iter().zip(&want).all(|(g, e)| g.to_bits() == e.to_bits());
                    assert!(same && got.len() == want.len(), "{level} {geo:?} {clamp:?}: {got:?} vs {want:?}");
                }
            }
        }
    }

    #[test]
    fn writes_nothing_past_the_plane_and_reads_padding_as_zero() {
        // The plane is a slice of a larger buffer filled with NaN around it: a lane read outside the plane would
        // bring a NaN into the result, a write past the output plane would overwrite the NaN guard after it.
        let geo = geometry(3, 5, 3, 1, [1, 1, 1, 1]);
        let plane = data(15, 7);
        let mut buffer = vec![f32::NAN; 64];
        buffer[24..39].copy_from_slice(&plane);
        let w = [1.0f32; 9];
        let want = reference(&geo, &plane, &w, 0.0, Clamp::NONE);
        for level in supported_levels().into_iter().filter(|&l| l != SimdLevel::Portable) {
            let mut out = [f32::NAN; 15 + 20];
            let f = RowFilter::of(&geo).unwrap();
            assert!(f.lanes(level).run(&buffer[24..39], &w, 0.0, Clamp::NONE, &mut out[..15]));
            assert_eq!(&out[..15], &want[..], "{level}");
            assert!(out[15..].iter().all(|v| v.is_nan()), "{level}: wrote past the plane");
        }
    }
}
