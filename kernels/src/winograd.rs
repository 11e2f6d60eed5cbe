//! 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3): 16 multiplications per 2×2 output tile and
//! input channel instead of 36, so 2.25× fewer FLOPs in the GEMMs that dominate VGG- and ResNet-style networks.
//!
//! With `U = G·g·Gᵀ` (each 3×3 filter → 4×4, done once when the weights are packed), `V = Bᵀ·d·B` (each overlapping
//! 4×4 input patch → 4×4) and `Y = Aᵀ·M·A` (4×4 → the 2×2 output tile), the convolution becomes 16 independent
//! products `M_ξ = U_ξ · V_ξ` (`C_out × C_in` by `C_in × tiles`, one per element ξ of the 4×4 transform) that run on
//! the packed-weight GEMM microkernels. F(2×2, 3×3)'s transforms use only 0, ±1 and ±½, so its rounding error stays
//! close to direct convolution's (larger tiles such as F(4×4, 3×3) save more but lose digits in f32).
//!
//! Work is done in chunks of whole tile rows, each in three parallel phases (input transform per input channel, the
//! 16 GEMMs per row block, output transform per output channel); chunk sizes depend only on the layer's shape, and
//! every output value is computed by one fixed sequence of operations, so results do not depend on thread count.

use crate::gemm::MatRef;
use crate::geometry::ConvGeometry;
use crate::packed_gemm::{pack_b_into, Clamp, PackedA};
use crate::precision::Precision;
use crate::simd::SimdLevel;
use rayon::prelude::*;

/// Elements of the 4×4 transform domain.
const XI: usize = 16;

/// Input-channel × tile values per chunk that the transformed input aims for (4 MB of f32).
const CHUNK_VALUES: usize = 1 << 20;

/// 3×3 filters transformed to 4×4 (`U = G·g·Gᵀ`) and packed for one SIMD level: one `C_out × C_in` matrix per ξ.
#[derive(Clone, Debug)]
pub struct WinogradWeights {
    out_channels: usize,
    in_channels: usize,
    u: Vec<PackedA>,
    bias: Vec<f32>,
}

impl WinogradWeights {
    /// Transforms OIHW 3×3 `weight` (`[out_channels, in_channels, 3, 3]`, in f64) and keeps `bias`.
    ///
    /// # Panics
    /// If the lengths disagree with the dimensions (the graph layer validated them).
    pub fn new(
        level: SimdLevel,
        weight: &[f32],
        bias: Option<&[f32]>,
        out_channels: usize,
        in_channels: usize,
    ) -> WinogradWeights {
        WinogradWeights::new_as(level, weight, bias, None, out_channels, in_channels, Precision::F32)
    }

    /// [`WinogradWeights::new`] with the transformed weights held in `precision` (rounded after the transform) and
    /// an optional per-output-channel `scale` of the product (the transforms are linear: scaling each of the 16
    /// products scales the output).
    ///
    /// # Panics
    /// As [`WinogradWeights::new`].
    pub fn new_as(
        level: SimdLevel,
        weight: &[f32],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        out_channels: usize,
        in_channels: usize,
        precision: Precision,
    ) -> WinogradWeights {
        assert_eq!(weight.len(), out_channels * in_channels * 9, "winograd: weight length");
        const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
        // u[ξ][co · C_in + ci]
        let mut u = vec![vec![0.0f32; out_channels * in_channels]; XI];
        for (f, g) in weight.chunks_exact(9).enumerate() {
            // G·g (4×3), then (G·g)·Gᵀ (4×4).
            let mut gg = [[0.0f64; 3]; 4];
            for (i, row) in gg.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = (0..3).map(|k| G[i][k] * g[k * 3 + j] as f64).sum();
                }
            }
            for i in 0..4 {
                for j in 0..4 {
                    u[i * 4 + j][f] = (0..3).map(|k| gg[i][k] * G[j][k]).sum::<f64>() as f32;
                }
            }
        }
        let u = u
            .iter()
            .map(|m| {
                PackedA::pack_scaled(level, MatRef::row_major(m, out_channels, in_channels), None, scale, precision)
            })
            .collect();
        let bias = bias.map_or_else(|| vec![0.0; out_channels], <[f32]>::to_vec);
        assert_eq!(bias.len(), out_channels, "winograd: bias length");
        WinogradWeights { out_channels, in_channels, u, bias }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.u.iter().map(PackedA::bytes).sum::<usize>() + self.bias.len() * 4
    }

    /// Whether these weights compute a convolution of geometry `geo` (3×3, stride 1, no dilation, no groups).
    pub fn fits(&self, geo: &ConvGeometry) -> bool {
        applies(geo) && geo.in_channels == self.in_channels && geo.out_channels == self.out_channels
    }
}

/// Whether F(2×2, 3×3) computes a convolution of geometry `geo`.
pub fn applies(geo: &ConvGeometry) -> bool {
    [geo.kernel_h, geo.kernel_w, geo.stride_h, geo.stride_w, geo.dilation_h, geo.dilation_w, geo.groups]
        == [3, 3, 1, 1, 1, 1, 1]
}

/// Tile rows per chunk for a layer with `in_channels` inputs and `tiles_w` tiles per row.
fn rows_per_chunk(in_channels: usize, tiles_w: usize) -> usize {
    (CHUNK_VALUES / XI / in_channels.max(1) / tiles_w.max(1)).max(1)
}

/// `output ← clamp(conv3×3(input, weights) + bias [+ residual])` (the residual added to the convolution's value,
/// as a separate `Add` would).
///
/// # Panics
/// If the weights do not fit `geo` or a buffer length disagrees with it (programming errors of the caller).
pub fn forward(
    geo: &ConvGeometry,
    input: &[f32],
    weights: &WinogradWeights,
    clamp: Clamp,
    residual: Option<&[f32]>,
    output: &mut [f32],
) {
    assert!(weights.fits(geo), "winograd: weights do not fit {geo:?}");
    geo.check(input.len(), weights.out_channels * geo.k(), output.len());
    let (oh, ow) = (geo.out_h().unwrap_or(0), geo.out_w().unwrap_or(0));
    if oh == 0 || ow == 0 {
        return;
    }
    let (cin, cout) = (geo.in_channels, geo.out_channels);
    let (tiles_h, tiles_w) = (oh.div_ceil(2), ow.div_ceil(2));
    let chunk_rows = rows_per_chunk(cin, tiles_w).min(tiles_h);
    let max_tiles = chunk_rows * tiles_w;
    // The transformed input, its packed panels and the products, kept by the calling thread from one call to the
    // next: fresh multi-megabyte buffers would be page-faulted in (and zeroed by the kernel) on every layer.
    thread_local! {
        static BUFFERS: std::cell::RefCell<[Vec<f32>; 3]> = const { std::cell::RefCell::new([Vec::new(), Vec::new(), Vec::new()]) };
    }
    let [mut v, mut m, mut packed] = BUFFERS.with(|b| std::mem::take(&mut *b.borrow_mut()));
    v.resize(v.len().max(cin * XI * max_tiles), 0.0);
    m.resize(m.len().max(XI * cout * max_tiles), 0.0);
    let mr = weights.u[0].panel_rows();
    let block_rows = cout.div_ceil(crate::conv::TARGET_TASKS / 2).div_ceil(mr).max(1) * mr;
    for n in 0..geo.batch {
        let x = &input[n * cin * geo.in_plane()..(n + 1) * cin * geo.in_plane()];
        let y = &mut output[n * cout * oh * ow..(n + 1) * cout * oh * ow];
        for ty0 in (0..tiles_h).step_by(chunk_rows) {
            let rows = chunk_rows.min(tiles_h - ty0);
            let tw = rows * tiles_w;
            // Phase 1: V[ci][ξ][t].
            v[..cin * XI * tw].par_chunks_mut(XI * tw).enumerate().for_each(|(ci, vc)| {
                let plane = &x[ci * geo.in_plane()..(ci + 1) * geo.in_plane()];
                let mut rows_buf = InputRows::new(tiles_w);
                for r in 0..rows {
                    rows_buf.transform(geo, plane, ty0 + r, vc, tw, r * tiles_w);
                }
            });
            // Phase 2: M[ξ][co][t] = U_ξ · V_ξ, each V_ξ packed once for all its row blocks.
            let vv = &v[..cin * XI * tw];
            let v_xi =
                |xi: usize| MatRef { data: &vv[xi * tw..], rows: cin, cols: tw, row_stride: XI * tw, col_stride: 1 };
            let nr = weights.u[0].b_panel_width();
            let per_xi = nr.map_or(0, |nr| tw.div_ceil(nr) * nr * cin);
            if packed.len() < XI * per_xi {
                packed.resize(XI * per_xi, 0.0);
            }
            if let Some(nr) = nr {
                packed[..XI * per_xi]
                    .par_chunks_mut(per_xi.max(1))
                    .enumerate()
                    .for_each(|(xi, out)| pack_b_into(v_xi(xi), nr, out));
            }
            let pk = &packed[..XI * per_xi];
            m[..XI * cout * tw].par_chunks_mut(cout * tw).enumerate().for_each(|(xi, mx)| {
                mx.par_chunks_mut(block_rows * tw).enumerate().for_each(|(blk, block)| {
                    let r0 = blk * block_rows;
                    let r1 = (r0 + block_rows).min(cout);
                    let u = &weights.u[xi];
                    // SAFETY: `block` is this task's own (r1 − r0) × tw slice of M_ξ, row stride tw; r0 is a
                    // multiple of the panel rows; `pk` holds V_ξ packed for u's level.
                    unsafe {
                        match nr {
                            Some(_) => u.gemm_rows_packed(
                                r0,
                                r1,
                                &pk[xi * per_xi..(xi + 1) * per_xi],
                                tw,
                                block.as_mut_ptr(),
                                tw,
                                false,
                                Clamp::NONE,
                            ),
                            None => u.gemm_rows(r0, r1, v_xi(xi), block.as_mut_ptr(), tw, false, Clamp::NONE),
                        }
                    }
                });
            });
            // Phase 3: Y = Aᵀ·M·A + bias, clamped, into the output planes.
            let mm = &m[..XI * cout * tw];
            let res_n = residual.map(|r| &r[n * cout * oh * ow..(n + 1) * cout * oh * ow]);
            y.par_chunks_mut(oh * ow).enumerate().for_each(|(co, plane)| {
                let res_plane = res_n.map(|r| &r[co * oh * ow..(co + 1) * oh * ow]);
                let mut row = vec![0.0f32; 2 * tiles_w];
                for r in 0..rows {
                    let m: [&[f32]; XI] =
                        std::array::from_fn(|xi| &mm[(xi * cout + co) * tw + r * tiles_w..][..tiles_w]);
                    transform_output_row(&m, weights.bias[co], clamp, ty0 + r, oh, ow, &mut row, plane, res_plane);
                }
            });
        }
    }
    BUFFERS.with(|b| *b.borrow_mut() = [v, m, packed]);
}

/// Scratch rows for the input transform of one channel.
struct InputRows {
    tiles_w: usize,
    /// One zero-padded input row, `2·tiles_w + 2` wide.
    padded: Vec<f32>,
    even: Vec<f32>,
    odd: Vec<f32>,
    /// `d·B` of the 4 input rows: `[row][j][tx]`.
    horizontal: Vec<f32>,
}

impl InputRows {
    fn new(tiles_w: usize) -> InputRows {
        InputRows {
            tiles_w,
            padded: vec![0.0; 2 * tiles_w + 2],
            even: vec![0.0; tiles_w + 1],
            odd: vec![0.0; tiles_w + 1],
            horizontal: vec![0.0; 16 * tiles_w],
        }
    }

    /// Writes `V = Bᵀ·d·B` of every tile in tile row `ty` of one input channel into `vc[ξ · tw + at + tx]`.
    fn transform(&mut self, geo: &ConvGeometry, plane: &[f32], ty: usize, vc: &mut [f32], tw: usize, at: usize) {
        let tiles_w = self.tiles_w;
        // Each of the 4 input rows, zero-padded and split into even and odd padded columns, so that d·B (columns
        // 2tx … 2tx + 3 of each tile) is four contiguous loops over tiles.
        let width = self.padded.len();
        let first = geo.pad_left.min(width);
        let count = geo.in_w.min(width - first);
        for r in 0..4 {
            let iy = (2 * ty + r).checked_sub(geo.pad_top).filter(|&iy| iy < geo.in_h);
            // Only these columns are ever written: the padding around them stays zero.
            match iy {
                Some(iy) => self.padded[first..first + count].copy_from_slice(&plane[iy * geo.in_w..][..count]),
                None => self.padded[first..first + count].fill(0.0),
            }
            for ((pair, e), o) in self.padded.chunks_exact(2).zip(self.even.iter_mut()).zip(self.odd.iter_mut()) {
                *e = pair[0];
                *o = pair[1];
            }
            let (even, odd) = (&self.even, &self.odd);
            let (h0, rest) = self.horizontal[r * 4 * tiles_w..(r + 1) * 4 * tiles_w].split_at_mut(tiles_w);
            let (h1, rest) = rest.split_at_mut(tiles_w);
            let (h2, h3) = rest.split_at_mut(tiles_w);
            for tx in 0..tiles_w {
                let (e0, o0, e1, o1) = (even[tx], odd[tx], even[tx + 1], odd[tx + 1]);
                h0[tx] = e0 - e1;
                h1[tx] = o0 + e1;
                h2[tx] = e1 - o0;
                h3[tx] = o0 - o1;
            }
        }
        // Bᵀ·(d·B): rows (1, 0, −1, 0), (0, 1, 1, 0), (0, −1, 1, 0), (0, 1, 0, −1) over the four rows.
        for j in 0..4 {
            let row = |r: usize| &self.horizontal[(r * 4 + j) * tiles_w..][..tiles_w];
            let (d0, d1, d2, d3) = (row(0), row(1), row(2), row(3));
            let (v0, rest) = vc[j * tw + at..].split_at_mut(4 * tw);
            let (v1, rest) = rest.split_at_mut(4 * tw);
            let (v2, v3) = rest.split_at_mut(4 * tw);
            for tx in 0..tiles_w {
                v0[tx] = d0[tx] - d2[tx];
                v1[tx] = d1[tx] + d2[tx];
                v2[tx] = d2[tx] - d1[tx];
                v3[tx] = d1[tx] - d3[tx];
            }
        }
    }
}

/// Writes `Aᵀ·M·A + bias` (clamped) of every tile in tile row `ty` of one output channel into its plane; `m[ξ]`
/// holds the tile row's values of element ξ, `row` is scratch of `2·tiles_w`.
#[allow(clippy::too_many_arguments)]
fn transform_output_row(
    m: &[&[f32]; XI],
    bias: f32,
    clamp: Clamp,
    ty: usize,
    oh: usize,
    ow: usize,
    row: &mut [f32],
    plane: &mut [f32],
    residual: Option<&[f32]>,
) {
    let tiles_w = m[0].len();
    for r in 0..2 {
        let oy = 2 * ty + r;
        if oy >= oh {
            break;
        }
        // Aᵀ row r, (1, 1, 1, 0) or (0, 1, −1, −1), down each column j; then (1, 1, 1, 0), (0, 1, −1, −1) across.
        let column = |j: usize, tx: usize| {
            let (m0, m1, m2, m3) = (m[j][tx], m[4 + j][tx], m[8 + j][tx], m[12 + j][tx]);
            if r == 0 {
                m0 + m1 + m2
            } else {
                m1 - m2 - m3
            }
        };
        for (tx, pair) in row.chunks_exact_mut(2).enumerate().take(tiles_w) {
            let (s0, s1, s2, s3) = (column(0, tx), column(1, tx), column(2, tx), column(3, tx));
            pair[0] = s0 + s1 + s2 + bias;
            pair[1] = s1 - s2 - s3 + bias;
        }
        let out = &mut plane[oy * ow..(oy + 1) * ow];
        match residual {
            // The residual joins the convolution's value, then the clamp.
            Some(r) => {
                let r = &r[oy * ow..(oy + 1) * ow];
                out.iter_mut().zip(&row[..ow]).zip(r).for_each(|((o, &v), &r)| *o = clamp.apply_fast(v + r));
            }
            None => out.iter_mut().zip(&row[..ow]).for_each(|(o, &v)| *o = clamp.apply_fast(v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::conv2d_forward;
    use crate::conv::tests::{base_3x3, data_f32 as data, on_threads};
    use crate::simd::supported_levels;

    fn geometries() -> Vec<ConvGeometry> {
        let base = base_3x3(7, 13, 1);
        vec![
            base,
            ConvGeometry { pad_top: 0, pad_left: 0, pad_bottom: 0, pad_right: 0, ..base },
            ConvGeometry { pad_top: 0, pad_left: 2, pad_bottom: 2, pad_right: 1, in_h: 8, in_w: 12, ..base },
            ConvGeometry { batch: 1, in_h: 3, in_w: 3, ..base },
            ConvGeometry { batch: 1, in_h: 1, in_w: 2, ..base },
            ConvGeometry { batch: 1, in_channels: 40, out_channels: 37, in_h: 23, in_w: 25, ..base },
            // Several chunks of tile rows.
            ConvGeometry { batch: 1, in_channels: 300, out_channels: 20, in_h: 30, in_w: 60, ..base },
        ]
    }

    #[test]
    fn every_level_matches_direct_convolution_with_bias_and_clamp() {
        for level in supported_levels() {
            for geo in geometries() {
                assert!(applies(&geo));
                let x = data(geo.batch * geo.in_channels * geo.in_plane(), 1);
                let w = data(geo.out_channels * geo.k(), 2);
                let b = data(geo.out_channels, 3);
                let mut want = vec![0.0f32; geo.batch * geo.out_channels * geo.out_plane()];
                conv2d_forward(&geo, &x, &w, Some(&b), &mut want);
                let clamp = Clamp { lo: -1.0, hi: 6.0 };
                let weights = WinogradWeights::new(level, &w, Some(&b), geo.out_channels, geo.in_channels);
                let mut got = vec![f32::NAN; want.len()];
                forward(&geo, &x, &weights, clamp, None, &mut got);
                // Relative to the sum of |terms| of each output (here ≤ k), F(2×2, 3×3) is as exact as direct.
                let k = geo.k() as f32;
                for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                    let e = clamp.apply(e);
                    assert!((g - e).abs() <= 2e-6 * k, "{level} {geo:?} at {i}: {g} vs {e}");
                }
            }
        }
    }

    #[test]
    fn bit_identical_on_one_two_and_four_threads() {
        let geo = *geometries().last().expect("geometries");
        let x = data(geo.in_channels * geo.in_plane(), 4);
        let w = data(geo.out_channels * geo.k(), 5);
        for level in supported_levels() {
            let weights = WinogradWeights::new(level, &w, None, geo.out_channels, geo.in_channels);
            let run = |threads: usize| {
                let mut y = vec![0.0f32; geo.out_channels * geo.out_plane()];
                on_threads(threads, || forward(&geo, &x, &weights, Clamp::RELU, None, &mut y));
                y
            };
            let one = run(1);
            assert_eq!(one, run(2), "{level}");
            assert_eq!(one, run(4), "{level}");
        }
    }
}
