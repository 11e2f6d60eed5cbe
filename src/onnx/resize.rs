//! `Resize` (opsets 10–21) and `Upsample` (7–9): scales or sizes, modes and coordinate conventions of each opset.

use super::attrs::Attrs;
use super::constant::MAX_ELEMENTS;
use super::context::{const_floats, const_ints, unsupported, Importer, Val};
use super::proto::NodeProto;
use crate::error::Result;
use crate::ops::{CoordinateMode, NearestRounding, Reshape, Resize, ResizeMode};

/// What a Resize node asks for: the output size and scale of every spatial axis (the axes after N and C), the
/// interpolation and the coordinate convention.
struct Request {
    sizes: Vec<usize>,
    scales: Option<Vec<f64>>,
    mode: ResizeMode,
    coordinates: CoordinateMode,
}

fn request(im: &mut Importer, n: &NodeProto, shape: &[usize]) -> Result<Request> {
    let a = Attrs::of(n);
    let rank = shape.len();
    let legacy = n.op_type == "Upsample" || im.opset < 11;
    let scales = if n.op_type == "Upsample" && im.opset < 9 {
        a.floats("scales")
    } else if legacy {
        const_floats(im, n, 1)?
    } else {
        const_floats(im, n, 2)?.filter(|v| !v.is_empty())
    };
    let sizes = if legacy { None } else { const_ints(im, n, 3)?.filter(|v| !v.is_empty()) };
    let (out, given) = match (sizes, scales) {
        (Some(s), _) if s.len() == rank => {
            let side = |v: i64| usize::try_from(v).map_err(|_| im.err(format!("node '{}': Resize size {v}", n.name)));
            (s[2..].iter().map(|&v| side(v)).collect::<Result<Vec<_>>>()?, None)
        }
        (_, Some(sc)) if sc.len() == rank => {
            if sc[0] != 1.0 || sc[1] != 1.0 {
                return Err(unsupported(im, n, "scaling the batch or channel axes"));
            }
            if let Some(bad) = sc[2..].iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                return Err(im.err(format!("node '{}': Resize scale {bad}", n.name)));
            }
            let out = shape[2..].iter().zip(&sc[2..]).map(|(&l, &f)| (l as f32 * f).floor() as usize).collect();
            (out, Some(sc[2..].iter().map(|&f| f as f64).collect()))
        }
        _ => return Err(im.err(format!("node '{}': Resize needs {rank} scales or {rank} sizes", n.name))),
    };
    let total = out.iter().try_fold(shape[0] * shape[1], |acc, &d| acc.checked_mul(d));
    if total.is_none_or(|c| c > MAX_ELEMENTS) {
        return Err(im.err(format!("node '{}': resize to {out:?} is too large", n.name)));
    }
    let coordinates = match (legacy, a.string("coordinate_transformation_mode", "half_pixel").as_str()) {
        (true, _) | (false, "asymmetric") => CoordinateMode::Asymmetric,
        (false, "half_pixel") => CoordinateMode::HalfPixel,
        (false, "pytorch_half_pixel") => CoordinateMode::PytorchHalfPixel,
        (false, "align_corners") => CoordinateMode::AlignCorners,
        (false, other) => return Err(unsupported(im, n, &format!("coordinate_transformation_mode '{other}'"))),
    };
    let mode = match a.string("mode", "nearest").as_str() {
        "nearest" => {
            let rounding = match (legacy, a.string("nearest_mode", "round_prefer_floor").as_str()) {
                (true, _) | (false, "floor") => NearestRounding::Floor,
                (false, "ceil") => NearestRounding::Ceil,
                (false, "round_prefer_ceil") => NearestRounding::RoundPreferCeil,
                _ => NearestRounding::RoundPreferFloor,
            };
            ResizeMode::Nearest(rounding)
        }
        "linear" | "bilinear" | "trilinear" => ResizeMode::Linear,
        other => return Err(unsupported(im, n, &format!("mode '{other}'"))),
    };
    Ok(Request { sizes: out, scales: given, mode, coordinates })
}

/// The engine Resize of a 4-D (NCHW) node.
pub(crate) fn lower(im: &mut Importer, n: &NodeProto, x: &str) -> Result<Resize> {
    let shape = im.shape(x, n)?;
    if shape.len() != 4 {
        return Err(unsupported(im, n, "only NCHW inputs here"));
    }
    let r = request(im, n, &shape)?;
    Ok(Resize {
        out_h: r.sizes[0],
        out_w: r.sizes[1],
        mode: r.mode,
        coordinates: r.coordinates,
        scales: r.scales.map(|s| [s[0], s[1]]),
    })
}

/// A Resize of a 1-D (`[N, C, L]`) or 3-D (`[N, C, D, H, W]`) input as 2-D resizes, which are separable: a signal
/// as a one-row image; a volume first in its slices (`[N, C·D, H, W]`), then along its depth (`[N, C, D, H·W]`,
/// the other axis kept by a scale of 1). Emits the nodes and returns `true`, or `false` for other ranks.
pub(crate) fn lower_nd(im: &mut Importer, n: &NodeProto, x: &str) -> Result<bool> {
    let shape = im.shape(x, n)?;
    if shape.len() != 3 && shape.len() != 5 {
        return Ok(false);
    }
    let r = request(im, n, &shape)?;
    let out = n.output.first().cloned().unwrap_or_default();
    let scale = |i: usize, len: usize| r.scales.as_ref().map_or(r.sizes[i] as f64 / len.max(1) as f64, |s| s[i]);
    let resize = |out_h: usize, out_w: usize, scales: [f64; 2]| Resize {
        out_h,
        out_w,
        mode: r.mode,
        coordinates: r.coordinates,
        scales: Some(scales),
    };
    let as_i64 = |v: &[usize]| v.iter().map(|&d| d as i64).collect::<Vec<_>>();
    let mut at = im.value(x, n)?;
    let mut step = |im: &mut Importer, name: &str, op: Box<dyn crate::ops::Op<f32>>| -> Result<()> {
        at = im.b.node_with_outputs(name, op, &[at], &[name])?[0];
        Ok(())
    };
    let (c, last) = (shape[1], format!("{out}::resized"));
    if let [_, _, len] = shape[..] {
        let l2 = r.sizes[0];
        step(im, &format!("{out}::as_2d"), Box::new(Reshape { shape: vec![0, c as i64, 1, len as i64] }))?;
        step(im, &last, Box::new(resize(1, l2, [1.0, scale(0, len)])))?;
        step(im, &out, Box::new(Reshape { shape: as_i64(&[0, c, l2]) }))?;
    } else {
        let (d, h, w) = (shape[2], shape[3], shape[4]);
        let (d2, h2, w2) = (r.sizes[0], r.sizes[1], r.sizes[2]);
        step(im, &format!("{out}::slices"), Box::new(Reshape { shape: as_i64(&[0, c * d, h, w]) }))?;
        step(im, &format!("{out}::slices_resized"), Box::new(resize(h2, w2, [scale(1, h), scale(2, w)])))?;
        step(im, &format!("{out}::depth_rows"), Box::new(Reshape { shape: as_i64(&[0, c, d, h2 * w2]) }))?;
        step(im, &last, Box::new(resize(d2, h2 * w2, [scale(0, d), 1.0])))?;
        step(im, &out, Box::new(Reshape { shape: as_i64(&[0, c, d2, h2, w2]) }))?;
    }
    im.vals.insert(out, Val::Dyn(at));
    Ok(true)
}
