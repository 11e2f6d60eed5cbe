//! Convolution forward with weights prepared once: packed for the GEMM microkernels (or kept flat for the depthwise
//! kernel), bias (or a folded batch-norm shift) and a clamp applied in the epilogue, so a `Conv → BatchNorm →
//! ReLU/ReLU6` chain is one pass that writes only its final output.
//!
//! Tiling follows [`crate::conv`] (column tiles of [`COL_TILE`] — wider or narrower for some shapes, see
//! `column_tiles` — and row blocks aligned to the microkernel's panels); it depends only on the layer's shape, and no
//! output's sum depends on it, so results are bit-identical on any number of threads for a given SIMD level.

use crate::conv::{column_tile, rows_per_packed_task, rows_per_task, DisjointOutput, TARGET_TASKS};
#[cfg(target_arch = "x86_64")]
use crate::conv_broadcast::{self, BroadcastWeights};
use crate::conv_pixel_rows::{self, PixelRowWeights};
use crate::depthwise_flat;
use crate::gemm::MatRef;
use crate::geometry::ConvGeometry;
use crate::im2col::{im2col_panels, im2col_panels_phased, phase_split, split_phases, subsample};
use crate::packed_gemm::{pack_b_into, Clamp, PackedA, RightPanels};
use crate::precision::{Precision, Stored};
use crate::simd::SimdLevel;
use crate::winograd::{self, WinogradWeights};
use rayon::prelude::*;

#[cfg(doc)]
use crate::conv::COL_TILE;

/// Output columns per task of a pointwise layer whose stores decide its time: a 4 KB run of each output row (see
/// [`stores_decide`]). Its `K × 1024` right operand (K ≤ 64) is 256 KB at most, read in place.
const WIDE_COL_TILE: usize = 1024;

/// Most `K` of a layer whose stores decide its time (see [`stores_decide`]).
const STORES_DECIDE_MAX_K: usize = 64;

/// Least output per image and group, in values, of a layer whose stores decide its time: 512 KB, past the caches
/// that a recycled output buffer is still warm in.
const STORES_DECIDE_MIN_OUTPUT: usize = 1 << 17;

/// Whether writing a layer's output, rather than its multiply-adds, decides its time: a pointwise expansion (more
/// output channels than `K ≤ 64`) with a large output. MobileNets' 16 → 96 at 112² writes 4.8 MB for 16 FMAs per
/// value, ResNet's 64 → 256 at 56² 3.2 MB for 64. Such a layer runs row panel by row panel
/// ([`PackedA::gemm_rows_by_row_panels`]) on wide column tiles, so that each output row is written in runs of whole
/// pages that the prefetcher follows. Intel Xeon, one thread, kernel times in the graph:
/// - 16 → 96 at 112²: 1.1–1.4 → 0.64–0.70 ms (onnxruntime: 0.50);
/// - ResNet-50's 64 → 256 at 56²: 1.14–1.90 → 0.78–1.23 ms per layer.
///
/// The same order on 64 → 384 at 14² (a 294 KB output) was 15 % slower, hence the output bound.
fn stores_decide(geo: &ConvGeometry, out_per_group: usize) -> bool {
    let k = geo.k();
    geo.is_pointwise()
        && (1..=STORES_DECIDE_MAX_K).contains(&k)
        && out_per_group > k
        && out_per_group.saturating_mul(geo.out_plane()) >= STORES_DECIDE_MIN_OUTPUT
}

thread_local! {
    /// Packed column panels of one tile, reused by the tasks that run on this thread (a fresh buffer per task
    /// would be fresh pages per task).
    static PANELS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The input of a strided layer split into its stride phases, reused likewise.
    static PHASES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The pixels a 1×1 strided layer reads, gathered (see `forward`), reused likewise.
    static SUBSAMPLED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How the weights are held.
#[derive(Clone, Debug)]
enum Layout {
    /// One packed `C_out/groups × C_in/groups·KH·KW` matrix (with its bias) per group.
    Gemm(Vec<PackedA>),
    /// Depthwise: OIHW weights and a bias as they are; the direct kernel reads them tap by tap (16-bit weights
    /// are widened per call: a few taps per channel).
    Depthwise { weight: Stored, shared: bool, scale: Vec<f32>, bias: Vec<f32> },
    /// 3×3 stride-1 filters transformed for Winograd F(2×2, 3×3).
    Winograd(WinogradWeights),
    /// Packed for the transposed product of small planes (see [`crate::conv_pixel_rows`]).
    PixelRows(PixelRowWeights),
    /// Laid out for the direct kernel of convolutions with few input channels (see [`crate::conv_broadcast`]).
    #[cfg(target_arch = "x86_64")]
    Broadcast(BroadcastWeights),
}

/// The dimensions a convolution's weights are laid out for.
#[derive(Clone, Copy)]
struct Dims {
    out_channels: usize,
    in_per_group: usize,
    kernel: [usize; 2],
    groups: usize,
}

/// A convolution's constant weights and bias, ready for [`conv2d_forward_packed`].
#[derive(Clone, Debug)]
pub struct PackedConv {
    level: SimdLevel,
    out_channels: usize,
    in_per_group: usize,
    kernel: [usize; 2],
    groups: usize,
    layout: Layout,
}

impl PackedConv {
    /// Prepares OIHW `weight` (`[out_channels, in_per_group, kernel[0], kernel[1]]`) and `bias` for `level`.
    ///
    /// # Panics
    /// If the lengths disagree with the dimensions (the graph layer validated them).
    pub fn new(
        level: SimdLevel,
        weight: &[f32],
        bias: Option<&[f32]>,
        out_channels: usize,
        in_per_group: usize,
        kernel: [usize; 2],
        groups: usize,
    ) -> PackedConv {
        PackedConv::new_as(level, weight, bias, None, out_channels, in_per_group, kernel, groups, Precision::F32)
    }

    /// [`PackedConv::new`] with the weights held in `precision` (biases stay f32) and an optional per-output-channel
    /// `scale` of the product: `y = clamp(scale·conv(x, w) + bias)`. A batch-norm folds into 16-bit weights through
    /// it, so the weights keep the exact values they were loaded with.
    ///
    /// # Panics
    /// As [`PackedConv::new`], or if `scale` has the wrong length.
    #[allow(clippy::too_many_arguments)]
    pub fn new_as(
        level: SimdLevel,
        weight: &[f32],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        out_channels: usize,
        in_per_group: usize,
        kernel: [usize; 2],
        groups: usize,
        precision: Precision,
    ) -> PackedConv {
        let k = in_per_group * kernel[0] * kernel[1];
        assert_eq!(weight.len(), out_channels * k, "packed conv: weight length");
        // Stems (few input channels) run direct, with the GEMM's operations: f32 weights without a scale only, the
        // ones that path reads as they are.
        #[cfg(target_arch = "x86_64")]
        if let Some(w) = (precision == Precision::F32 && scale.is_none())
            .then(|| BroadcastWeights::new(level, weight, bias, out_channels, in_per_group, kernel, groups))
            .flatten()
        {
            return PackedConv { level, out_channels, in_per_group, kernel, groups, layout: Layout::Broadcast(w) };
        }
        let dims = Dims { out_channels, in_per_group, kernel, groups };
        PackedConv::build(
            level,
            dims,
            bias,
            scale,
            || (Stored::new(precision, weight.to_vec()), false),
            |rows, b, s| {
                let w = MatRef::row_major(&weight[rows.start * k..rows.end * k], rows.len(), k);
                PackedA::pack_scaled(level, w, b, s, precision)
            },
        )
    }

    /// [`PackedConv::new`] on the GEMM layout whatever the shape: the reference of the direct stem kernel.
    #[cfg(test)]
    pub(crate) fn new_gemm(
        level: SimdLevel,
        weight: &[f32],
        bias: Option<&[f32]>,
        out_channels: usize,
        in_per_group: usize,
        kernel: [usize; 2],
    ) -> PackedConv {
        let k = in_per_group * kernel[0] * kernel[1];
        let dims = Dims { out_channels, in_per_group, kernel, groups: 1 };
        let weights = || (Stored::new(Precision::F32, weight.to_vec()), false);
        PackedConv::build(level, dims, bias, None, weights, |rows, b, s| {
            let w = MatRef::row_major(&weight[rows.start * k..rows.end * k], rows.len(), k);
            PackedA::pack_scaled(level, w, b, s, Precision::F32)
        })
    }

    /// Whether the weights are laid out for the direct kernel of few input channels.
    #[cfg(all(test, target_arch = "x86_64"))]
    pub(crate) fn is_broadcast(&self) -> bool {
        matches!(self.layout, Layout::Broadcast(_))
    }

    /// A convolution whose OIHW weights are a model's 16-bit tensor, read in place: the GEMM layouts gather and
    /// widen row panels block by block from it (see [`PackedA::from_rows`]) and depthwise widens it per call, so the
    /// weights exist once in memory. Bias and per-output-channel scale as in [`PackedConv::new_as`].
    ///
    /// # Panics
    /// As [`PackedConv::new`].
    #[allow(clippy::too_many_arguments)]
    pub fn shared(
        level: SimdLevel,
        weight: std::sync::Arc<crate::precision::HalfVec>,
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        out_channels: usize,
        in_per_group: usize,
        kernel: [usize; 2],
        groups: usize,
    ) -> PackedConv {
        let k = in_per_group * kernel[0] * kernel[1];
        assert_eq!(weight.len(), out_channels * k, "packed conv: weight length");
        let dims = Dims { out_channels, in_per_group, kernel, groups };
        let depthwise = weight.clone();
        PackedConv::build(
            level,
            dims,
            bias,
            scale,
            || (Stored::Half(depthwise), true),
            |rows, b, s| PackedA::from_rows(level, weight.clone(), rows.start * k, rows.len(), k, b, s),
        )
    }

    /// The layout for `dims`: depthwise from `depthwise()` (the weights, and whether they are shared), else one
    /// GEMM matrix per group from `group(output rows, bias, scale)`.
    ///
    /// # Panics
    /// If the groups do not divide the output channels, or bias / scale have the wrong length.
    fn build(
        level: SimdLevel,
        dims: Dims,
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        depthwise: impl FnOnce() -> (Stored, bool),
        group: impl Fn(std::ops::Range<usize>, Option<&[f32]>, Option<&[f32]>) -> PackedA,
    ) -> PackedConv {
        let Dims { out_channels, in_per_group, kernel, groups } = dims;
        assert!(groups > 0 && out_channels.is_multiple_of(groups), "packed conv: groups");
        for v in [bias, scale].into_iter().flatten() {
            assert_eq!(v.len(), out_channels, "packed conv: bias or scale length");
        }
        let layout = if groups > 1 && in_per_group == 1 {
            let (weight, shared) = depthwise();
            Layout::Depthwise {
                weight,
                shared,
                scale: scale.map_or_else(Vec::new, <[f32]>::to_vec),
                bias: bias.map_or_else(|| vec![0.0; out_channels], <[f32]>::to_vec),
            }
        } else {
            let cog = out_channels / groups;
            Layout::Gemm(
                (0..groups)
                    .map(|g| {
                        let rows = g * cog..(g + 1) * cog;
                        let (b, s) = (bias.map(|b| &b[rows.clone()]), scale.map(|s| &s[rows.clone()]));
                        group(rows, b, s)
                    })
                    .collect(),
            )
        };
        PackedConv { level, out_channels, in_per_group, kernel, groups, layout }
    }

    /// Like [`PackedConv::new`] for an ungrouped 3×3 convolution that will run with stride 1 and no dilation: the
    /// weights are transformed for Winograd F(2×2, 3×3) (2.25× fewer multiplications).
    ///
    /// # Panics
    /// If the lengths disagree with the dimensions.
    pub fn winograd(
        level: SimdLevel,
        weight: &[f32],
        bias: Option<&[f32]>,
        out_channels: usize,
        in_channels: usize,
    ) -> PackedConv {
        PackedConv::winograd_as(level, weight, bias, None, out_channels, in_channels, Precision::F32)
    }

    /// [`PackedConv::winograd`] with the transformed weights held in `precision` and an optional per-output-channel
    /// scale of the product (see [`PackedConv::new_as`]).
    ///
    /// # Panics
    /// As [`PackedConv::winograd`].
    pub fn winograd_as(
        level: SimdLevel,
        weight: &[f32],
        bias: Option<&[f32]>,
        scale: Option<&[f32]>,
        out_channels: usize,
        in_channels: usize,
        precision: Precision,
    ) -> PackedConv {
        let weights = WinogradWeights::new_as(level, weight, bias, scale, out_channels, in_channels, precision);
        let layout = Layout::Winograd(weights);
        PackedConv { level, out_channels, in_per_group: in_channels, kernel: [3, 3], groups: 1, layout }
    }

    /// Like [`PackedConv::new`] for an ungrouped convolution on a small plane (where
    /// [`conv_pixel_rows::wins`]): the weights packed for the transposed product, output pixels on the
    /// microkernel's rows. `None` where `level` has no such tile (only AVX-512 has).
    ///
    /// # Panics
    /// If the lengths disagree with the dimensions.
    pub fn pixel_rows(
        level: SimdLevel,
        weight: &[f32],
        bias: Option<&[f32]>,
        out_channels: usize,
        in_channels: usize,
        kernel: [usize; 2],
    ) -> Option<PackedConv> {
        let k = in_channels * kernel[0] * kernel[1];
        let weights = PixelRowWeights::new(level, weight, bias, out_channels, k)?;
        let layout = Layout::PixelRows(weights);
        Some(PackedConv { level, out_channels, in_per_group: in_channels, kernel, groups: 1, layout })
    }

    /// Whether this is the Winograd layout.
    pub fn is_winograd(&self) -> bool {
        matches!(self.layout, Layout::Winograd(_))
    }

    /// The SIMD level the weights were packed for.
    pub fn level(&self) -> SimdLevel {
        self.level
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match &self.layout {
            Layout::Gemm(p) => p.iter().map(PackedA::bytes).sum(),
            // Shared 16-bit weights are the model's own: not counted here.
            Layout::Depthwise { weight, shared, scale, bias } => {
                let own = if *shared { 0 } else { weight.bytes() };
                own + (scale.len() + bias.len()) * 4
            }
            Layout::Winograd(w) => w.bytes(),
            Layout::PixelRows(w) => w.bytes(),
            #[cfg(target_arch = "x86_64")]
            Layout::Broadcast(w) => w.bytes(),
        }
    }

    /// Whether these weights belong to a convolution of geometry `geo`.
    pub fn fits(&self, geo: &ConvGeometry) -> bool {
        geo.out_channels == self.out_channels
            && geo.groups == self.groups
            && geo.in_channels == self.in_per_group * self.groups
            && [geo.kernel_h, geo.kernel_w] == self.kernel
            && (!self.is_winograd() || winograd::applies(geo))
    }
}

/// `output ← clamp(conv(input, packed weights) + bias)`.
///
/// # Panics
/// If `packed` does not fit `geo` or a buffer length disagrees with it (programming errors of the caller).
pub fn conv2d_forward_packed(geo: &ConvGeometry, input: &[f32], packed: &PackedConv, clamp: Clamp, output: &mut [f32]) {
    forward(geo, input, packed, clamp, None, output)
}

/// `output ← clamp(conv(input, packed weights) + bias + residual)`: a residual connection (`Add`, then ReLU) in the
/// convolution's epilogue, summed in the order of a separate `Add` (the convolution's value first), so the result
/// is bit-identical to the unfused ops. GEMM (SIMD levels) and Winograd layouts add each tile while it is in cache,
/// the pixel-row layout while writing its products out; the others (depthwise, the portable level) add in one pass
/// after the convolution.
///
/// # Panics
/// As [`conv2d_forward_packed`], and if `residual` is not as long as `output`.
pub fn conv2d_forward_packed_residual(
    geo: &ConvGeometry,
    input: &[f32],
    packed: &PackedConv,
    clamp: Clamp,
    residual: &[f32],
    output: &mut [f32],
) {
    assert_eq!(residual.len(), output.len(), "packed conv: residual length");
    forward(geo, input, packed, clamp, Some(residual), output)
}

/// Whether the kernels behind `packed` add a residual in their epilogue (see [`conv2d_forward_packed_residual`]).
fn adds_in_epilogue(packed: &PackedConv) -> bool {
    match &packed.layout {
        Layout::Gemm(_) => packed.level != SimdLevel::Portable,
        Layout::Winograd(_) | Layout::PixelRows(_) => true,
        Layout::Depthwise { .. } => false,
        #[cfg(target_arch = "x86_64")]
        Layout::Broadcast(_) => false,
    }
}

/// The column tiles `(p0, p1)` of a packed convolution's output plane, for an image and group of `rows` output
/// channels, on the SIMD levels' column panels of `nr` (`None`: the portable level). Only the tasks' shapes follow
/// from them: every output's sum is the same whatever the tiles.
///
/// - Mostly [`crate::conv::COL_TILE`] columns.
/// - A pointwise layer whose stores decide its time (an expansion over few channels) takes wide tiles: each output
///   row is then written in runs of whole pages (see [`stores_decide`]). Its right operand is read in place, so the
///   width costs no packing.
/// - A plane of one tile with more pixels than output channels (MobileNets' projections at 14², 672 → 112) is cut
///   into tiles of one column panel. Tasks then split the input by columns, each reading its own part, rather than
///   by rows of weights, each reading all the input — which the other core had just written. Intel Xeon, two
///   threads: 672 → 112 at 14² ran 0.27 ms split by rows (no faster than one thread), 0.17–0.19 by columns.
///
/// `by_rows`: the layer runs row panel by row panel ([`stores_decide`], on a SIMD level).
fn column_tiles(geo: &ConvGeometry, rows: usize, nr: Option<usize>, by_rows: bool) -> Vec<(usize, usize)> {
    let plane = geo.out_plane();
    let width = match nr {
        Some(_) if by_rows => WIDE_COL_TILE,
        Some(nr) if plane <= crate::conv::COL_TILE && rows < plane => nr,
        _ => crate::conv::COL_TILE,
    };
    (0..plane).step_by(width).map(|p0| (p0, (p0 + width).min(plane))).collect()
}

fn forward(
    geo: &ConvGeometry,
    input: &[f32],
    packed: &PackedConv,
    clamp: Clamp,
    residual: Option<&[f32]>,
    output: &mut [f32],
) {
    assert!(packed.fits(geo), "packed conv: weights do not fit {geo:?}");
    geo.check(input.len(), packed.out_channels * geo.k(), output.len());
    let out_plane = geo.out_plane();
    if out_plane == 0 {
        return;
    }
    if let Some(res) = residual.filter(|_| !adds_in_epilogue(packed)) {
        forward(geo, input, packed, Clamp::NONE, None, output);
        output.par_chunks_mut(out_plane).zip(res.par_chunks(out_plane)).for_each(|(o, r)| {
            o.iter_mut().zip(r).for_each(|(o, &r)| *o = clamp.apply(*o + r));
        });
        return;
    }
    // A 1×1 strided layer (a ResNet's downsampling shortcut) reads every s-th pixel: gathered once, a quarter of
    // the input at stride 2, it runs as the pointwise layer over them, whose input is read in place — rather than
    // splitting the whole input into its s² phases to pack one of them. The products are the same.
    if let (Some(dense), Layout::Gemm(_) | Layout::PixelRows(_)) = (geo.subsampled_pointwise(), &packed.layout) {
        let len = geo.batch * geo.in_channels * dense.in_plane();
        let mut gathered = SUBSAMPLED.with(|b| std::mem::take(&mut *b.borrow_mut()));
        if gathered.len() < len {
            gathered.resize(len, 0.0);
        }
        let (stride, out) = ((geo.stride_h, geo.stride_w), (dense.in_h, dense.in_w));
        subsample(input, (geo.in_h, geo.in_w), stride, out, &mut gathered[..len]);
        forward(&dense, &gathered[..len], packed, clamp, residual, output);
        SUBSAMPLED.with(|b| *b.borrow_mut() = gathered);
        return;
    }
    let groups = match &packed.layout {
        Layout::Depthwise { weight, scale, bias, .. } => {
            // Widened (16-bit weights) and scaled (a folded batch-norm) per call: a few taps per channel.
            let mut weight = weight.widened(packed.level);
            if !scale.is_empty() {
                let taps = weight.len() / scale.len().max(1);
                for (w, &s) in weight.to_mut().chunks_mut(taps.max(1)).zip(scale) {
                    w.iter_mut().for_each(|v| *v *= s);
                }
            }
            return depthwise_flat::forward(geo, input, &weight, bias, clamp, output, packed.level);
        }
        Layout::Winograd(weights) => return winograd::forward(geo, input, weights, clamp, residual, output),
        Layout::PixelRows(weights) => {
            return conv_pixel_rows::forward(geo, input, weights, clamp, residual, output);
        }
        #[cfg(target_arch = "x86_64")]
        Layout::Broadcast(weights) => return conv_broadcast::forward(geo, input, weights, clamp, output),
        Layout::Gemm(groups) => groups,
    };
    let (cig, cog) = (geo.in_per_group(), geo.out_per_group());
    let in_plane = geo.in_plane();
    let win = geo.window();
    let by_rows = groups[0].b_panel_width().is_some() && stores_decide(geo, cog);
    let col_tiles = column_tiles(geo, cog, groups[0].b_panel_width(), by_rows);
    let mr = groups[0].panel_rows();
    let rows = match groups[0].b_panel_width() {
        Some(_) => rows_per_packed_task(cog, col_tiles.len(), mr),
        // The portable level packs per task (matrixmultiply).
        None => rows_per_task(cog, col_tiles.len()).div_ceil(mr) * mr,
    };
    let row_blocks: Vec<usize> = (0..cog).step_by(rows.max(1)).collect();
    output.par_chunks_mut(geo.out_channels * out_plane).enumerate().for_each(|(n, out_n)| {
        let out = DisjointOutput::new(out_n);
        for (g, weights) in groups.iter().enumerate() {
            let x =
                &input[(n * geo.in_channels + g * cig) * in_plane..(n * geo.in_channels + (g + 1) * cig) * in_plane];
            // A strided layer whose input splits into stride phases reads them contiguously (see `phase_split`).
            let stride = weights.b_panel_width().and(phase_split(&win)).filter(|_| !geo.is_pointwise());
            let mut phased = PHASES.with(|p| std::mem::take(&mut *p.borrow_mut()));
            if let Some(s) = stride {
                if phased.len() < x.len() {
                    phased.resize(x.len(), 0.0);
                }
                phased[..x.len()]
                    .par_chunks_mut(in_plane)
                    .zip(x.par_chunks(in_plane))
                    .for_each(|(o, plane)| split_phases(plane, 1, geo.in_h, geo.in_w, s, o));
            }
            let phased_x = &phased[..stride.map_or(0, |_| x.len())];
            col_tiles.par_iter().for_each(|&(p0, p1)| {
                let tw = p1 - p0;
                if let Some(nr) = weights.b_panel_width() {
                    // The tile's columns packed once, straight from the input, and shared by its row blocks. A 1×1
                    // layer's input rows are the right operand as they are: only a partial last panel is packed.
                    let mut panels = PANELS.with(|p| std::mem::take(&mut *p.borrow_mut()));
                    let in_place = geo.is_pointwise();
                    let k = geo.k();
                    let len = if in_place { (tw % nr).min(1) * nr * k } else { tw.div_ceil(nr) * nr * k };
                    if panels.len() < len {
                        panels.resize(len, 0.0);
                    }
                    // Columns q0..q1 (whole panels from q0) packed into `out`.
                    let pack = |q0: usize, q1: usize, out: &mut [f32]| {
                        if in_place {
                            let mut unused = Vec::new();
                            let view = column_tile(geo, &win, x, (q0, q1), &mut unused);
                            pack_b_into(view, nr, out);
                        } else if stride.is_some() {
                            im2col_panels_phased(phased_x, cig, &win, q0, q1, nr, out);
                        } else {
                            im2col_panels(x, cig, &win, q0, q1, nr, out);
                        }
                    };
                    if in_place {
                        // The one panel packed is the tail: the columns past the whole panels.
                        if len > 0 {
                            pack(p0 + tw / nr * nr, p1, &mut panels[..len]);
                        }
                    } else if col_tiles.len() < TARGET_TASKS {
                        // With few tiles the packing itself is split by panel, or it would run on one thread while
                        // the others wait for it (a choice of the shape only: packing moves data, the results are
                        // equal).
                        panels[..len]
                            .par_chunks_mut(k.max(1) * nr)
                            .enumerate()
                            .for_each(|(jp, panel)| pack(p0 + jp * nr, (p0 + (jp + 1) * nr).min(p1), panel));
                    } else {
                        pack(p0, p1, &mut panels[..len]);
                    }
                    let right = if in_place {
                        RightPanels::InPlace { data: &x[p0..], row_stride: in_plane, tail: &panels[..len] }
                    } else {
                        RightPanels::Packed(&panels[..len])
                    };
                    row_blocks.par_iter().for_each(|&r0| {
                        let r1 = (r0 + rows).min(cog);
                        let offset = (g * cog + r0) * out_plane + p0;
                        let block = out.block(offset, r1 - r0, tw, out_plane);
                        // The residual's block at the same place as the output's.
                        let res = residual.map(|r| r[n * geo.out_channels * out_plane + offset..].as_ptr());
                        // SAFETY: as below; `panels` holds this tile's columns packed for `weights`; `res` has the
                        // output's length and layout, so the block lies inside it, and it is a separate buffer.
                        unsafe {
                            if by_rows {
                                weights.gemm_rows_by_row_panels(r0, r1, right, tw, block, out_plane, false, clamp, res)
                            } else {
                                weights
                                    .gemm_rows_packed_residual(r0, r1, right, tw, block, out_plane, false, clamp, res)
                            }
                        };
                    });
                    PANELS.with(|p| *p.borrow_mut() = panels);
                    return;
                }
                let mut buf = Vec::new();
                let col = column_tile(geo, &win, x, (p0, p1), &mut buf);
                row_blocks.par_iter().for_each(|&r0| {
                    let r1 = (r0 + rows).min(cog);
                    let offset = (g * cog + r0) * out_plane + p0;
                    let block = out.block(offset, r1 - r0, tw, out_plane);
                    // SAFETY: task (tile p0..p1, rows r0..r1) of group g is the only one writing output rows
                    // g·cog + r0 .. g·cog + r1, columns p0..p1 of this image (tiles and row blocks partition them),
                    // and `block` checked that this block lies inside the image's output.
                    unsafe { weights.gemm_rows(r0, r1, col, block, out_plane, false, clamp) };
                });
            });
            PHASES.with(|p| *p.borrow_mut() = phased);
        }
    });
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::conv::conv2d_forward;
    use crate::conv::tests::variants;
    use crate::conv::tests::{base_3x3, data_f32 as data, on_threads};
    use crate::simd::supported_levels;

    /// The shared convolution test geometries around a base with more output channels than one AVX2 panel, plus
    /// one with more than one AVX-512 panel.
    fn geometries() -> Vec<ConvGeometry> {
        let base = base_3x3(6, 14, 1);
        let mut all = variants(base);
        all.push(ConvGeometry { batch: 1, in_channels: 40, out_channels: 37, in_h: 23, in_w: 25, ..base });
        // 1×1 layers read their input in place, packing only a partial last panel: two column tiles with a tail
        // (20·21 = 256 + 164), a 7×7 plane (one whole panel and a tail at both tile widths), and whole panels only.
        let pointwise =
            ConvGeometry { kernel_h: 1, kernel_w: 1, pad_top: 0, pad_left: 0, pad_bottom: 0, pad_right: 0, ..base };
        all.push(ConvGeometry { in_channels: 40, out_channels: 37, in_h: 20, in_w: 21, ..pointwise });
        all.push(ConvGeometry { in_channels: 40, out_channels: 37, in_h: 7, in_w: 7, ..pointwise });
        all.push(ConvGeometry { in_channels: 16, out_channels: 30, in_h: 16, in_w: 16, ..pointwise });
        // Expansions whose stores decide their time: wide column tiles, the last one short, with a partial panel
        // (50·57 = 2·1024 + 802 pixels), row panel by row panel; K = 16 and K = 64.
        all.push(ConvGeometry { in_channels: 16, out_channels: 48, in_h: 50, in_w: 57, ..pointwise });
        all.push(ConvGeometry { in_channels: 64, out_channels: 80, in_h: 41, in_w: 41, ..pointwise });
        assert!(
            all.iter().rev().take(2).all(|g| stores_decide(g, g.out_channels)),
            "the expansions take the row order"
        );
        // Strided layers that split into stride phases (even sizes): 3×3/2, grouped, the 7×7/2 stem, 1×1/2.
        let strided = ConvGeometry { in_h: 12, in_w: 10, stride_h: 2, stride_w: 2, ..base };
        all.push(strided);
        all.push(ConvGeometry { groups: 2, ..strided });
        all.push(ConvGeometry {
            in_h: 16,
            in_w: 16,
            kernel_h: 7,
            kernel_w: 7,
            pad_top: 3,
            pad_left: 3,
            pad_bottom: 3,
            pad_right: 3,
            ..strided
        });
        all.push(ConvGeometry {
            kernel_h: 1,
            kernel_w: 1,
            pad_top: 0,
            pad_left: 0,
            pad_bottom: 0,
            pad_right: 0,
            ..strided
        });
        // 1×1 with unequal strides on odd sizes, grouped: run as the pointwise layer over the gathered pixels.
        all.push(ConvGeometry { in_h: 13, in_w: 11, stride_h: 3, stride_w: 2, groups: 2, ..pointwise });
        all
    }

    #[test]
    fn every_level_matches_the_unpacked_convolution_with_bias_and_clamp() {
        for level in supported_levels() {
            for geo in geometries() {
                let x = data(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 1);
                let w = data(geo.out_channels * geo.k(), 2);
                let b = data(geo.out_channels, 3);
                let mut want = vec![0.0f32; geo.batch * geo.out_channels * geo.out_plane()];
                conv2d_forward(&geo, &x, &w, Some(&b), &mut want);
                let clamp = Clamp { lo: 0.0, hi: 6.0 };
                let packed = PackedConv::new(
                    level,
                    &w,
                    Some(&b),
                    geo.out_channels,
                    geo.in_channels / geo.groups,
                    [geo.kernel_h, geo.kernel_w],
                    geo.groups,
                );
                let mut got = vec![f32::NAN; want.len()];
                conv2d_forward_packed(&geo, &x, &packed, clamp, &mut got);
                for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                    let e = clamp.apply(e);
                    assert!(
                        (g - e).abs() <= 1e-5 * (1.0 + e.abs()) * (geo.k() as f32).sqrt(),
                        "{level} {geo:?} at {i}: {g} vs {e}"
                    );
                }
            }
        }
    }

    #[test]
    fn bit_identical_on_one_two_and_four_threads() {
        // The wide ungrouped layer (many tasks) and the strided ones (the phase split runs in parallel too).
        let many_tasks = |g: &ConvGeometry| g.in_channels == 40 || g.stride_h == 2 || g.out_plane() > WIDE_COL_TILE;
        for geo in geometries().into_iter().filter(|g| g.groups == 1 && many_tasks(g)) {
            bit_identical_on_threads(geo);
        }
    }

    /// The packed forward of `geo` (whatever layout it packs to) is bit-identical on 1, 2 and 4 threads, on every level.
    pub(crate) fn bit_identical_on_threads(geo: ConvGeometry) {
        let x = data(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 4);
        let w = data(geo.out_channels * geo.k(), 5);
        for level in supported_levels() {
            let kernel = [geo.kernel_h, geo.kernel_w];
            let packed = PackedConv::new(level, &w, None, geo.out_channels, geo.in_channels, kernel, 1);
            let run = |threads: usize| {
                let mut y = vec![0.0f32; geo.batch * geo.out_channels * geo.out_plane()];
                on_threads(threads, || conv2d_forward_packed(&geo, &x, &packed, Clamp::RELU, &mut y));
                y
            };
            let one = run(1);
            assert_eq!(one, run(2), "{level} {geo:?}");
            assert_eq!(one, run(4), "{level} {geo:?}");
        }
    }

    /// A residual added in the epilogue is bit-identical to the convolution, then the addition, then the clamp — on
    /// every level and layout: GEMM (strided, grouped, 1×1), a 16-bit product scaled by a folded batch-norm,
    /// depthwise, Winograd.
    #[test]
    fn residual_in_the_epilogue_equals_adding_after_the_convolution() {
        let wino =
            ConvGeometry { batch: 1, in_channels: 16, out_channels: 20, in_h: 12, in_w: 13, ..base_3x3(1, 1, 1) };
        let clamp = Clamp { lo: 0.0, hi: 6.0 };
        for level in supported_levels() {
            let mut layouts = Vec::new();
            for geo in geometries() {
                let (co, cig, kernel) = (geo.out_channels, geo.in_channels / geo.groups, [geo.kernel_h, geo.kernel_w]);
                let (w, b) = (data(co * geo.k(), 11), data(co, 12));
                layouts.push((geo, PackedConv::new(level, &w, Some(&b), co, cig, kernel, geo.groups)));
                let scale = data(co, 13);
                let scaled =
                    PackedConv::new_as(level, &w, Some(&b), Some(&scale), co, cig, kernel, geo.groups, Precision::F16);
                layouts.push((geo, scaled));
            }
            let (w, b) = (data(20 * wino.k(), 14), data(20, 15));
            layouts.push((wino, PackedConv::winograd(level, &w, Some(&b), 20, 16)));
            assert!(layouts.iter().any(|(_, p)| p.is_winograd()) && layouts.iter().any(|(_, p)| !adds_in_epilogue(p)));
            for (geo, packed) in layouts {
                let x = data(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 16);
                let residual = data(geo.batch * geo.out_channels * geo.out_plane(), 17);
                let mut want = vec![f32::NAN; residual.len()];
                conv2d_forward_packed(&geo, &x, &packed, Clamp::NONE, &mut want);
                want.iter_mut().zip(&residual).for_each(|(y, &r)| *y = clamp.apply(*y + r));
                let mut got = vec![f32::NAN; residual.len()];
                conv2d_forward_packed_residual(&geo, &x, &packed, clamp, &residual, &mut got);
                assert_eq!(got, want, "{level} {geo:?}");
                assert!(got.contains(&0.0) && got.iter().any(|&v| v > 0.0), "the clamp acted");
            }
        }
    }

    /// Every layout (GEMM, grouped, depthwise, Winograd) with 16-bit weights is bit-identical to the same layout
    /// built from the weights rounded beforehand: widening is exact and the kernels are the same.
    #[test]
    fn sixteen_bit_weights_equal_f32_weights_rounded_first() {
        use crate::precision::HalfVec;
        let mut cases: Vec<(ConvGeometry, bool)> = geometries().into_iter().map(|g| (g, false)).collect();
        let wino =
            ConvGeometry { batch: 1, in_channels: 16, out_channels: 20, in_h: 12, in_w: 13, ..base_3x3(1, 1, 1) };
        cases.push((wino, true));
        for precision in [Precision::F16, Precision::Bf16] {
            for level in supported_levels() {
                for &(geo, winograd) in &cases {
                    let x = data(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 6);
                    let w = data(geo.out_channels * geo.k(), 7);
                    let b = data(geo.out_channels, 8);
                    let (co, cig, kernel) =
                        (geo.out_channels, geo.in_channels / geo.groups, [geo.kernel_h, geo.kernel_w]);
                    let (half, full) = if winograd {
                        // The transform runs on f32 weights, then rounds: compare against the f32 layout, within
                        // the format's precision.
                        (
                            PackedConv::winograd_as(level, &w, Some(&b), None, co, geo.in_channels, precision),
                            PackedConv::winograd(level, &w, Some(&b), co, geo.in_channels),
                        )
                    } else {
                        let rounded = HalfVec::from_f32(precision, &w).unwrap().to_f32_vec();
                        (
                            PackedConv::new_as(level, &w, Some(&b), None, co, cig, kernel, geo.groups, precision),
                            PackedConv::new(level, &rounded, Some(&b), co, cig, kernel, geo.groups),
                        )
                    };
                    assert!(half.bytes() < full.bytes(), "{precision} {level} {geo:?}");
                    // Read in place from a shared 16-bit tensor: the same layouts, the same bits.
                    let shared = (!winograd).then(|| {
                        let h = std::sync::Arc::new(HalfVec::from_f32(precision, &w).unwrap());
                        PackedConv::shared(level, h, Some(&b), None, co, cig, kernel, geo.groups)
                    });
                    let mut want = vec![0.0f32; geo.batch * co * geo.out_plane()];
                    conv2d_forward_packed(&geo, &x, &full, Clamp::NONE, &mut want);
                    let mut got = vec![f32::NAN; want.len()];
                    conv2d_forward_packed(&geo, &x, &half, Clamp::NONE, &mut got);
                    if winograd {
                        // |x| ≤ 1, |w| ≤ 1: each of the k products errs by at most |x·w|·u (about 4u after the
                        // transform's sums); a sum of k of them by ≤ 4·k·u.
                        let tol = 4.0 * geo.k() as f64 * precision.unit_roundoff();
                        for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                            assert!(((g - e).abs() as f64) <= tol, "{precision} {level} winograd at {i}: {g} vs {e}");
                        }
                    } else {
                        assert_eq!(got, want, "{precision} {level} {geo:?}");
                        let mut in_place = vec![f32::NAN; want.len()];
                        conv2d_forward_packed(&geo, &x, shared.as_ref().unwrap(), Clamp::NONE, &mut in_place);
                        assert_eq!(in_place, want, "{precision} {level} {geo:?} in place");
                    }
                }
            }
        }
    }

    /// A per-output-channel scale of the product (a batch-norm folded into 16-bit weights) equals scaling the
    /// weights beforehand, in every layout, with bias and clamp.
    #[test]
    fn a_scaled_product_equals_prescaled_weights() {
        let mut cases: Vec<(ConvGeometry, bool)> = geometries().into_iter().map(|g| (g, false)).collect();
        let wino =
            ConvGeometry { batch: 1, in_channels: 16, out_channels: 20, in_h: 12, in_w: 13, ..base_3x3(1, 1, 1) };
        cases.push((wino, true));
        let clamp = Clamp { lo: -0.3, hi: 0.8 };
        for precision in [Precision::F32, Precision::F16] {
            for level in supported_levels() {
                for &(geo, winograd) in &cases {
                    let (co, cig, kernel) =
                        (geo.out_channels, geo.in_channels / geo.groups, [geo.kernel_h, geo.kernel_w]);
                    let x = data(geo.batch * geo.in_channels * geo.in_h * geo.in_w, 9);
                    let w = data(co * geo.k(), 10);
                    let b = data(co, 11);
                    let scale: Vec<f32> = data(co, 12).iter().map(|v| 0.5 + v.abs()).collect();
                    // The stored weights (rounded when 16-bit), scaled beforehand in f32.
                    let stored = match crate::precision::HalfVec::from_f32(precision, &w) {
                        Some(h) => h.to_f32_vec(),
                        None => w.clone(),
                    };
                    let per = stored.len() / co;
                    let pre: Vec<f32> = stored.iter().enumerate().map(|(i, v)| v * scale[i / per]).collect();
                    let (scaled, reference) = if winograd {
                        (
                            PackedConv::winograd_as(level, &w, Some(&b), Some(&scale), co, geo.in_channels, precision),
                            PackedConv::winograd(level, &pre, Some(&b), co, geo.in_channels),
                        )
                    } else {
                        (
                            PackedConv::new_as(
                                level,
                                &w,
                                Some(&b),
                                Some(&scale),
                                co,
                                cig,
                                kernel,
                                geo.groups,
                                precision,
                            ),
                            PackedConv::new(level, &pre, Some(&b), co, cig, kernel, geo.groups),
                        )
                    };
                    let mut want = vec![0.0f32; geo.batch * co * geo.out_plane()];
                    conv2d_forward_packed(&geo, &x, &reference, clamp, &mut want);
                    let mut got = vec![f32::NAN; want.len()];
                    conv2d_forward_packed(&geo, &x, &scaled, clamp, &mut got);
                    // Winograd rounds its transformed weights (not the scaled ones) to 16 bits: within the format.
                    let rel =
                        if winograd && precision != Precision::F32 { 8.0 * precision.unit_roundoff() } else { 2e-6 };
                    for (i, (&g, &e)) in got.iter().zip(&want).enumerate() {
                        let tol = rel as f32 * (geo.k() as f32).sqrt() * 4.0 * (1.0 + e.abs());
                        assert!(
                            (g - e).abs() <= tol,
                            "{precision} {level} {geo:?} winograd={winograd} at {i}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }
}
