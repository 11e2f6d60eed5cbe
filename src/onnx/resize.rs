//! `Resize` (opsets 10–21) and `Upsample` (7–9): scales or sizes, modes and coordinate conventions of each opset.

use super::attrs::Attrs;
use super::constant::MAX_ELEMENTS;
use super::convert::{const_floats, const_ints, unsupported};
use super::import::Importer;
use super::proto::NodeProto;
use crate::error::Result;
use crate::ops::{CoordinateMode, NearestRounding, Resize, ResizeMode};

pub(crate) fn lower(im: &mut Importer, n: &NodeProto, x: &str) -> Result<Resize> {
    let a = Attrs::of(n);
    let shape = im.shape(x, n)?;
    if shape.len() != 4 {
        return Err(unsupported(im, n, "only NCHW inputs"));
    }
    let legacy = n.op_type == "Upsample" || im.opset < 11;
    let scales = if n.op_type == "Upsample" && im.opset < 9 {
        a.floats("scales")
    } else if legacy {
        const_floats(im, n, 1)?
    } else {
        const_floats(im, n, 2)?.filter(|v| !v.is_empty())
    };
    let sizes = if legacy { None } else { const_ints(im, n, 3)?.filter(|v| !v.is_empty()) };
    let (out_h, out_w, given) = match (sizes, scales) {
        (Some(s), _) if s.len() == 4 => {
            let side = |v: i64| usize::try_from(v).map_err(|_| im.err(format!("node '{}': Resize size {v}", n.name)));
            (side(s[2])?, side(s[3])?, None)
        }
        (_, Some(sc)) if sc.len() == 4 => {
            if sc[0] != 1.0 || sc[1] != 1.0 {
                return Err(unsupported(im, n, "scaling the batch or channel axes"));
            }
            if let Some(bad) = sc[2..].iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(im.err(format!("node '{}': Resize scale {bad}", n.name)));
            }
            let (h, w) = ((shape[2] as f32 * sc[2]).floor() as usize, (shape[3] as f32 * sc[3]).floor() as usize);
            (h, w, Some([sc[2] as f64, sc[3] as f64]))
        }
        _ => return Err(im.err(format!("node '{}': Resize needs 4 scales or 4 sizes", n.name))),
    };
    if out_h.checked_mul(out_w).and_then(|hw| hw.checked_mul(shape[0] * shape[1])).is_none_or(|c| c > MAX_ELEMENTS) {
        return Err(im.err(format!("node '{}': resize to {out_h}×{out_w} is too large", n.name)));
    }
    let mode = a.string("mode", "nearest");
    let coordinates = match (legacy, a.string("coordinate_transformation_mode", "half_pixel").as_str()) {
        (true, _) | (false, "asymmetric") => CoordinateMode::Asymmetric,
        (false, "half_pixel") => CoordinateMode::HalfPixel,
        (false, "pytorch_half_pixel") => CoordinateMode::PytorchHalfPixel,
        (false, "align_corners") => CoordinateMode::AlignCorners,
        (false, other) => return Err(unsupported(im, n, &format!("coordinate_transformation_mode '{other}'"))),
    };
    let mode = match mode.as_str() {
        "nearest" => {
            let rounding = match (legacy, a.string("nearest_mode", "round_prefer_floor").as_str()) {
                (true, _) | (false, "floor") => NearestRounding::Floor,
                (false, "ceil") => NearestRounding::Ceil,
                (false, "round_prefer_ceil") => NearestRounding::RoundPreferCeil,
                _ => NearestRounding::RoundPreferFloor,
            };
            ResizeMode::Nearest(rounding)
        }
        "linear" | "bilinear" => ResizeMode::Linear,
        other => return Err(unsupported(im, n, &format!("mode '{other}'"))),
    };
    Ok(Resize { out_h, out_w, mode, coordinates, scales: given })
}
