//! 3-D convolutions and pools (`[N, C, D, H, W]`: volumes, video): ONNX window attributes over three axes, with
//! `auto_pad` resolved, mapped onto [`Conv3d`] and [`Pool3d`].

use super::attrs::Attrs;
use super::context::{input, need_input, op, unsupported, usize_list, Importer, Lowered};
use super::proto::NodeProto;
use crate::error::Result;
use crate::ops::{Conv3d, ConvTranspose3d, Pool3d, Pool3dKind, Window3d};

/// The 3-D window of `n` on an input of shape `x`; `kernel` from the weight for a convolution.
fn window(im: &Importer, n: &NodeProto, x: &[usize], kernel: Option<[usize; 3]>, ceil_mode: bool) -> Result<Window3d> {
    if x.len() != 5 {
        return Err(unsupported(im, n, &format!("input shape {x:?} with a 3-D window: [N, C, D, H, W] is needed")));
    }
    let a = Attrs::of(n);
    let triple = |name: &str, default: usize| -> Result<[usize; 3]> {
        match a.ints(name) {
            None => Ok([default; 3]),
            Some(v) if v.len() == 3 => {
                let u = usize_list(im, n, &v, name)?;
                Ok([u[0], u[1], u[2]])
            }
            Some(v) => Err(unsupported(im, n, &format!("{name} {v:?} for a 3-D window"))),
        }
    };
    let kernel = match kernel {
        Some(k) => k,
        None => triple("kernel_shape", 0)?,
    };
    let (strides, dilations) = (triple("strides", 1)?, triple("dilations", 1)?);
    let mut pads = match a.ints("pads") {
        None => [0; 6],
        Some(v) if v.len() == 6 => {
            let u = usize_list(im, n, &v, "pads")?;
            [u[0], u[1], u[2], u[3], u[4], u[5]]
        }
        Some(v) => return Err(unsupported(im, n, &format!("pads {v:?} for a 3-D window"))),
    };
    match a.string("auto_pad", "NOTSET").as_str() {
        "NOTSET" => {}
        "VALID" => pads = [0; 6],
        mode @ ("SAME_UPPER" | "SAME_LOWER") => {
            for axis in 0..3 {
                (pads[axis], pads[axis + 3]) = gradcam_kernels::geometry::same_padding(
                    x[2 + axis],
                    kernel[axis],
                    strides[axis],
                    dilations[axis],
                    mode == "SAME_UPPER",
                );
            }
        }
        other => return Err(im.err(format!("node '{}': unknown auto_pad '{other}'", n.name))),
    }
    Ok(Window3d { kernel, strides, dilations, pads, ceil_mode })
}

/// A Conv whose weight is `[M, C/groups, kd, kh, kw]`.
pub(crate) fn conv(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let (x, w) = (need_input(im, n, 0)?, need_input(im, n, 1)?);
    let ws = im.shape(w, n)?;
    let win = window(im, n, &im.shape(x, n)?, Some([ws[2], ws[3], ws[4]]), false)?;
    let groups = Attrs::of(n).int("group", 1).max(1) as usize;
    let mut ins = vec![x, w];
    ins.extend(input(n, 2));
    Ok(op(Conv3d { window: win, groups }, &ins))
}

/// A MaxPool or AveragePool on a 5-D input.
pub(crate) fn pool(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let x = need_input(im, n, 0)?;
    let a = Attrs::of(n);
    if n.op_type == "MaxPool" && n.output.len() > 1 && !n.output[1].is_empty() {
        return Err(unsupported(im, n, "the Indices output"));
    }
    let win = window(im, n, &im.shape(x, n)?, None, a.int("ceil_mode", 0) != 0)?;
    let kind = if n.op_type == "MaxPool" {
        Pool3dKind::Max
    } else {
        Pool3dKind::Average { count_include_pad: a.int("count_include_pad", 0) != 0 }
    };
    Ok(op(Pool3d { window: win, kind }, &[x]))
}

/// A ConvTranspose whose weight is `[C, M/groups, kd, kh, kw]` (`output_shape` is not supported: give pads).
pub(crate) fn conv_transpose(im: &mut Importer, n: &NodeProto) -> Result<Lowered> {
    let (x, w) = (need_input(im, n, 0)?, need_input(im, n, 1)?);
    let ws = im.shape(w, n)?;
    let a = Attrs::of(n);
    if a.ints("output_shape").is_some() {
        return Err(unsupported(im, n, "output_shape on a 3-D transposed convolution"));
    }
    if a.string("auto_pad", "NOTSET") != "NOTSET" {
        return Err(unsupported(im, n, "auto_pad on a 3-D transposed convolution"));
    }
    let win = window(im, n, &im.shape(x, n)?, Some([ws[2], ws[3], ws[4]]), false)?;
    let output_padding = match a.ints("output_padding") {
        None => [0; 3],
        Some(v) if v.len() == 3 => {
            let u = usize_list(im, n, &v, "output_padding")?;
            [u[0], u[1], u[2]]
        }
        Some(v) => return Err(unsupported(im, n, &format!("output_padding {v:?}"))),
    };
    let groups = a.int("group", 1).max(1) as usize;
    let mut ins = vec![x, w];
    ins.extend(input(n, 2));
    Ok(op(ConvTranspose3d { window: win, output_padding, groups }, &ins))
}
