//! Reading a layer's value as per-image `[C, H, W]` maps: convolutional layers are `[N, C, H, W]` already (a signal
//! model's `[N, C, L]`, read as one row); a vision
//! transformer's are tokens `[N, T, C]` (ViT, DeiT: class and distillation tokens first, then a row-major grid of
//! patches) or channels-last grids `[N, H, W, C]` (Swin, ConvNeXt blocks). pytorch-grad-cam asks its users for a
//! `reshape_transform`; here the grid is inferred from the shape and the input's aspect ratio, or given.

use crate::error::{Error, Result};
use crate::graph::{Graph, Source, ValueId};
use crate::tensor::Tensor;
use ndarray::{Array3, Axis, Ix3};

/// Most leading non-grid tokens inferred automatically (class, distillation and register tokens).
pub const MAX_AUTO_SKIP: usize = 8;

/// The user's say on token layers (`--tokens`, `--skip-tokens`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenOptions {
    /// The patch grid `(h, w)`; `None`: inferred.
    pub grid: Option<(usize, usize)>,
    /// Leading tokens that are not patches; `None`: inferred (all tokens beyond the grid).
    pub skip: Option<usize>,
}

impl TokenOptions {
    /// Parses `--tokens auto|HxW`.
    pub fn parse_grid(s: &str) -> Result<Option<(usize, usize)>> {
        if s == "auto" {
            return Ok(None);
        }
        let bad = || Error::InvalidArgument {
            name: "--tokens",
            why: format!("--tokens takes 'auto' or HxW (e.g. 14x14), got '{s}'"),
        };
        let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let (h, w): (usize, usize) = (h.trim().parse().map_err(|_| bad())?, w.trim().parse().map_err(|_| bad())?);
        if h == 0 || w == 0 || h.checked_mul(w).is_none() {
            return Err(bad());
        }
        Ok(Some((h, w)))
    }
}

/// How one layer's value is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerLayout {
    /// `[N, C, H, W]`.
    ChannelsFirst,
    /// `[N, H, W, C]`.
    ChannelsLast,
    /// `[N, T, C]`: `skip` leading tokens, then an `h × w` row-major grid.
    Tokens { skip: usize, h: usize, w: usize },
    /// `[N, C, L]` of a signal model: a one-row map `[C, 1, L]`.
    Signal,
    /// `[N, C, D, H, W]` of a volume model: its slices stacked, `[C, D·H, W]` (the CAM methods treat positions
    /// as a set, so the stack serves them; upsampling uses the depth).
    Volume { depth: usize },
}

impl LayerLayout {
    /// Image `i` of `t` (a value of this layout) as `[C, H, W]`.
    pub fn image(self, t: &Tensor<f32>, i: usize) -> Result<Array3<f32>> {
        let item = t.index_axis(Axis(0), i);
        let wrong = || Error::InvalidArgument {
            name: "layer layout",
            why: format!("layer value of shape {:?} does not fit {self:?}", t.shape()),
        };
        let chw = match self {
            LayerLayout::ChannelsFirst => item.into_dimensionality::<Ix3>().map_err(|_| wrong())?.to_owned(),
            LayerLayout::ChannelsLast => {
                item.into_dimensionality::<Ix3>().map_err(|_| wrong())?.permuted_axes([2, 0, 1]).to_owned()
            }
            LayerLayout::Volume { depth } => {
                let v = item.into_dimensionality::<ndarray::Ix4>().map_err(|_| wrong())?;
                let (c, d, h, w) = v.dim();
                if d != depth {
                    return Err(wrong());
                }
                v.as_standard_layout().into_owned().into_shape_with_order((c, d * h, w)).map_err(|_| wrong())?
            }
            LayerLayout::Signal => {
                item.into_dimensionality::<ndarray::Ix2>().map_err(|_| wrong())?.insert_axis(Axis(1)).to_owned()
            }
            LayerLayout::Tokens { skip, h, w } => {
                let tokens = item.into_dimensionality::<ndarray::Ix2>().map_err(|_| wrong())?;
                if tokens.nrows() != skip + h * w {
                    return Err(wrong());
                }
                let grid = tokens.slice(ndarray::s![skip.., ..]);
                let c = grid.ncols();
                // [h·w, C] → [C, h·w] → [C, h, w].
                grid.t().as_standard_layout().into_owned().into_shape_with_order((c, h, w)).map_err(|_| wrong())?
            }
        };
        Ok(chw.as_standard_layout().into_owned())
    }

    /// The channel axis of one image's value (the batch axis removed).
    pub fn channel_axis(self) -> usize {
        match self {
            LayerLayout::ChannelsFirst | LayerLayout::Signal | LayerLayout::Volume { .. } => 0,
            LayerLayout::ChannelsLast => 2,
            LayerLayout::Tokens { .. } => 1,
        }
    }
}

/// Whether the value is normalized over its last axis alone by a LayerNormalization (as its output or its input):
/// the evidence that a 4-D value is channels-last. The scale's shape tells the normalized axes: `[C]` for the last.
fn channels_last_evidence(graph: &Graph<f32>, id: ValueId) -> bool {
    let last = graph.value(id).shape.last().copied();
    graph.nodes().iter().any(|n| {
        n.op.op_type() == "LayerNormalization"
            && (n.outputs.contains(&id) || n.inputs.first() == Some(&id))
            && n.inputs.get(1).is_some_and(|&scale| graph.value(scale).shape.as_slice() == last.as_slice())
    })
}

/// The grid `(h, w)` of `n` patches with exactly the input's aspect `ih : iw` (`h·iw = w·ih`).
fn exact_grid_for(n: usize, ih: usize, iw: usize) -> Option<(usize, usize)> {
    grid_for(n, ih, iw).filter(|&(h, w)| h * iw == w * ih)
}

/// The grid `(h, w)` of `n` patches for an input of aspect `ih : iw`, if one fits: `h·w = n` and the grid's aspect
/// within one patch of the input's (`|h·iw − w·ih| ≤ max(ih, iw)`, which allows inputs cropped to a multiple of the
/// patch size).
fn grid_for(n: usize, ih: usize, iw: usize) -> Option<(usize, usize)> {
    if n < 2 || ih == 0 || iw == 0 {
        return None;
    }
    let h = ((n as f64) * ih as f64 / iw as f64).sqrt().round() as usize;
    if h == 0 || !n.is_multiple_of(h) {
        return None;
    }
    let w = n / h;
    ((h * iw).abs_diff(w * ih) <= iw.max(ih)).then_some((h, w))
}

/// How `id`'s value is read as maps, or why it cannot be. `input_hw` is the model input's spatial size (the
/// aspect ratio a token grid must have when it is inferred).
pub fn layer_layout(
    graph: &Graph<f32>,
    id: ValueId,
    input_hw: (usize, usize),
    opts: &TokenOptions,
) -> std::result::Result<LayerLayout, String> {
    let v = graph.value(id);
    if !matches!(v.source, Source::Node { .. }) {
        return Err("it is not computed by a node".into());
    }
    let s = &v.shape;
    match s.len() {
        4 => {
            let first = (s[2], s[3]);
            let last = (s[1], s[2]);
            let layout = match opts.grid {
                Some(g) if g == last && (g != first || channels_last_evidence(graph, id)) => LayerLayout::ChannelsLast,
                Some(g) if g == first => LayerLayout::ChannelsFirst,
                Some((h, w)) => {
                    return Err(format!("neither [N, C, {h}, {w}] nor [N, {h}, {w}, C] (--tokens {h}x{w})"))
                }
                None if channels_last_evidence(graph, id) => LayerLayout::ChannelsLast,
                None => LayerLayout::ChannelsFirst,
            };
            let (h, w) = if layout == LayerLayout::ChannelsLast { last } else { first };
            if h * w < 2 {
                return Err(format!(
                    "it has a single spatial position (H × W = {}; CAM methods need H × W > 1)",
                    h * w
                ));
            }
            Ok(layout)
        }
        // A signal model (input `[N, C, 1, L]`): its 3-D values are `[N, C, L]` feature maps, not tokens.
        3 if input_hw.0 == 1 => {
            if s[2] < 2 {
                return Err(format!("it has a single position (L = {}; CAM methods need L > 1)", s[2]));
            }
            Ok(LayerLayout::Signal)
        }
        3 => {
            let t = s[1];
            let fit_with = |skip: usize, grid: Option<(usize, usize)>, exact: bool| -> Option<LayerLayout> {
                let n = t.checked_sub(skip)?;
                let (h, w) = match grid {
                    Some((h, w)) => (h * w == n).then_some((h, w))?,
                    None if exact => exact_grid_for(n, input_hw.0, input_hw.1)?,
                    None => grid_for(n, input_hw.0, input_hw.1)?,
                };
                (h * w >= 2).then_some(LayerLayout::Tokens { skip, h, w })
            };
            // A grid of the input's exact aspect first (4×4 patches + 4 register tokens are not a 4×5 grid), then
            // one within a patch of it.
            let fit = |skip: usize, grid: Option<(usize, usize)>| {
                fit_with(skip, grid, true).or_else(|| fit_with(skip, grid, false))
            };
            match (opts.skip, opts.grid) {
                (Some(skip), grid) => fit(skip, grid).ok_or_else(|| match grid {
                    Some((h, w)) => format!("{t} tokens are not {skip} + {h}×{w}"),
                    None => format!("{t} − {skip} tokens make no grid of the input's aspect; give --tokens HxW"),
                }),
                (None, Some((h, w))) => {
                    t.checked_sub(h * w).and_then(|skip| fit(skip, Some((h, w)))).ok_or_else(|| format!("{t} tokens cannot hold a {h}×{w} grid"))
                }
                (None, None) => (0..=MAX_AUTO_SKIP.min(t))
                    .find_map(|skip| fit_with(skip, None, true))
                    .or_else(|| (0..=MAX_AUTO_SKIP.min(t)).find_map(|skip| fit_with(skip, None, false)))
                    .ok_or_else(|| {
                    format!("no grid of the input's aspect fits {t} tokens after up to {MAX_AUTO_SKIP} leading ones; give --tokens HxW and --skip-tokens N")
                }),
            }
        }
        5 if s[2] * s[3] * s[4] > 1 => Ok(LayerLayout::Volume { depth: s[2] }),
        5 => Err("it has a single position (D × H × W = 1; CAM methods need more)".into()),
        _ => Err("CAM methods need [N, C, H, W], channels-last [N, H, W, C] or tokens [N, T, C]".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    #[test]
    fn grids_parse_and_bad_ones_are_refused() {
        assert_eq!(TokenOptions::parse_grid("auto").unwrap(), None);
        assert_eq!(TokenOptions::parse_grid("14x14").unwrap(), Some((14, 14)));
        assert_eq!(TokenOptions::parse_grid("7X9").unwrap(), Some((7, 9)));
        for bad in ["", "14", "0x4", "x", "-1x2", "4x4x4", "99999999999x99999999999"] {
            assert!(TokenOptions::parse_grid(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inferred_grids_follow_the_input_aspect() {
        assert_eq!(grid_for(196, 224, 224), Some((14, 14)));
        assert_eq!(grid_for(197, 224, 224), None);
        assert_eq!(grid_for(14 * 21, 224, 336), Some((14, 21)));
        assert_eq!(grid_for(21 * 14, 336, 224), Some((21, 14)));
        assert_eq!(grid_for(1, 224, 224), None);
        // A grid within a patch of the aspect is accepted, but an exact one is preferred (16 patches + 4 register
        // tokens must not read as a 4×5 grid).
        assert_eq!(grid_for(20, 64, 64), Some((4, 5)));
        assert_eq!(exact_grid_for(20, 64, 64), None);
        assert_eq!(exact_grid_for(16, 64, 64), Some((4, 4)));
    }

    #[test]
    fn each_layout_reads_the_same_map() {
        // One image, 2 channels on a 2×3 grid: value c·100 + y·10 + x.
        let (c, h, w) = (2, 2, 3);
        let want = Array3::from_shape_fn((c, h, w), |(k, y, x)| (k * 100 + y * 10 + x) as f32);
        let first = want.clone().insert_axis(Axis(0)).into_dyn();
        let last =
            want.view().permuted_axes([1, 2, 0]).insert_axis(Axis(0)).as_standard_layout().into_owned().into_dyn();
        // Tokens: one class token (−1s), then the grid row-major, channels last.
        let mut tokens = Tensor::<f32>::from_elem(IxDyn(&[1, 1 + h * w, c]), -1.0);
        for y in 0..h {
            for x in 0..w {
                for k in 0..c {
                    tokens[[0, 1 + y * w + x, k]] = want[[k, y, x]];
                }
            }
        }
        let layouts = [
            (LayerLayout::ChannelsFirst, first.clone()),
            (LayerLayout::ChannelsLast, last),
            (LayerLayout::Tokens { skip: 1, h, w }, tokens),
        ];
        for (layout, value) in layouts {
            assert_eq!(layout.image(&value, 0).unwrap(), want, "{layout:?}");
        }
        assert!(LayerLayout::Tokens { skip: 2, h, w }.image(&first, 0).is_err(), "a 4-D value is not tokens");
    }
}
