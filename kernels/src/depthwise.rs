//! Direct depthwise convolution (each group reads one input channel; `C_out = multiplier · C_in`).
//!
//! As a GEMM per channel these are `1 × KH·KW` by `KH·KW × OH·OW` products — far too thin for a GEMM to pay off —
//! so they run as direct loops over planes instead: for each tap, a contiguous run of output pixels is updated from
//! a (strided) run of input pixels, with the valid range computed once per row rather than tested per pixel.

use crate::geometry::ConvGeometry;
use crate::im2col::valid_range;
use crate::Element;
use rayon::prelude::*;

struct Dims {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    mult: usize,
}

fn dims(geo: &ConvGeometry) -> Dims {
    Dims {
        h: geo.in_h,
        w: geo.in_w,
        oh: geo.out_h().unwrap_or(0),
        ow: geo.out_w().unwrap_or(0),
        mult: geo.out_channels / geo.in_channels,
    }
}

/// Calls `f(oy, iy, ox_lo, ox_hi, ix_lo)` for every output row that tap `(ky, kx)` reads from inside the image.
fn for_each_tap_row(
    geo: &ConvGeometry,
    d: &Dims,
    ky: usize,
    kx: usize,
    mut f: impl FnMut(usize, usize, usize, usize, usize),
) {
    let row_off = (ky * geo.dilation_h) as isize - geo.pad_top as isize;
    let col_off = (kx * geo.dilation_w) as isize - geo.pad_left as isize;
    let (ylo, yhi) = valid_range(d.oh, geo.stride_h, row_off, d.h);
    let (xlo, xhi) = valid_range(d.ow, geo.stride_w, col_off, d.w);
    if xlo >= xhi {
        return;
    }
    for oy in ylo..yhi {
        let iy = ((oy * geo.stride_h) as isize + row_off) as usize;
        let ix = ((xlo * geo.stride_w) as isize + col_off) as usize;
        f(oy, iy, xlo, xhi, ix);
    }
}

/// The generic (any element type) forward: f64 gradient checks, and the reference of the f32 kernels.
pub(crate) fn forward<T: Element>(geo: &ConvGeometry, input: &[T], weight: &[T], bias: Option<&[T]>, output: &mut [T]) {
    let d = dims(geo);
    let taps = geo.kernel_h * geo.kernel_w;
    let (in_plane, out_plane) = (d.h * d.w, d.oh * d.ow);
    if out_plane == 0 {
        return;
    }
    output.par_chunks_mut(out_plane).enumerate().for_each(|(plane_index, out)| {
        let (n, co) = (plane_index / geo.out_channels, plane_index % geo.out_channels);
        let c = co / d.mult;
        let x = &input[(n * geo.in_channels + c) * in_plane..(n * geo.in_channels + c + 1) * in_plane];
        // With a column stride s, every tap reads columns ix, ix + s, ix + 2s …: regroup each input row by column
        // phase (ix mod s) once, so that those reads become contiguous and the inner loop vectorizes.
        let s = geo.stride_w;
        let starts: Vec<usize> = (0..s)
            .scan(0, |acc, p| {
                let start = *acc;
                *acc += (d.w + s - 1 - p) / s;
                Some(start)
            })
            .collect();
        let phased: Vec<T> = if s == 1 {
            Vec::new()
        } else {
            let mut buf = vec![T::zero(); in_plane];
            for (row_in, row_out) in x.chunks_exact(d.w).zip(buf.chunks_exact_mut(d.w)) {
                for (ix, &v) in row_in.iter().enumerate() {
                    row_out[starts[ix % s] + ix / s] = v;
                }
            }
            buf
        };
        out.fill(bias.map_or(T::zero(), |b| b[co]));
        for ky in 0..geo.kernel_h {
            for kx in 0..geo.kernel_w {
                let wv = weight[co * taps + ky * geo.kernel_w + kx];
                for_each_tap_row(geo, &d, ky, kx, |oy, iy, lo, hi, ix| {
                    let dst = &mut out[oy * d.ow + lo..oy * d.ow + hi];
                    let src = if s == 1 { &x[iy * d.w + ix..] } else { &phased[iy * d.w + starts[ix % s] + ix / s..] };
                    T::axpy(wv, &src[..dst.len()], dst);
                });
            }
        }
    });
}

pub(crate) fn backward_data<T: Element>(geo: &ConvGeometry, weight: &[T], grad_output: &[T], grad_input: &mut [T]) {
    let d = dims(geo);
    let taps = geo.kernel_h * geo.kernel_w;
    let (in_plane, out_plane) = (d.h * d.w, d.oh * d.ow);
    if out_plane == 0 {
        return;
    }
    grad_input.par_chunks_mut(in_plane).enumerate().for_each(|(plane_index, dx)| {
        let (n, c) = (plane_index / geo.in_channels, plane_index % geo.in_channels);
        for co in c * d.mult..(c + 1) * d.mult {
            let dy = &grad_output[(n * geo.out_channels + co) * out_plane..(n * geo.out_channels + co + 1) * out_plane];
            for ky in 0..geo.kernel_h {
                for kx in 0..geo.kernel_w {
                    let wv = weight[co * taps + ky * geo.kernel_w + kx];
                    for_each_tap_row(geo, &d, ky, kx, |oy, iy, lo, hi, ix| {
                        let src = &dy[oy * d.ow + lo..oy * d.ow + hi];
                        let dst = &mut dx[iy * d.w + ix..];
                        if geo.stride_w == 1 {
                            let len = src.len();
                            T::axpy(wv, src, &mut dst[..len]);
                        } else {
                            for (i, &g) in src.iter().enumerate() {
                                dst[i * geo.stride_w] += wv * g;
                            }
                        }
                    });
                }
            }
        }
    });
}

pub(crate) fn backward_weight<T: Element>(geo: &ConvGeometry, input: &[T], grad_output: &[T], grad_weight: &mut [T]) {
    let d = dims(geo);
    let taps = geo.kernel_h * geo.kernel_w;
    let (in_plane, out_plane) = (d.h * d.w, d.oh * d.ow);
    grad_weight.par_chunks_mut(taps).enumerate().for_each(|(co, dw)| {
        let c = co / d.mult;
        for n in 0..geo.batch {
            let x = &input[(n * geo.in_channels + c) * in_plane..(n * geo.in_channels + c + 1) * in_plane];
            let dy = &grad_output[(n * geo.out_channels + co) * out_plane..(n * geo.out_channels + co + 1) * out_plane];
            for ky in 0..geo.kernel_h {
                for kx in 0..geo.kernel_w {
                    let mut acc = T::zero();
                    for_each_tap_row(geo, &d, ky, kx, |oy, iy, lo, hi, ix| {
                        let g = &dy[oy * d.ow + lo..oy * d.ow + hi];
                        let src = &x[iy * d.w + ix..];
                        for (i, &gv) in g.iter().enumerate() {
                            acc += gv * src[i * geo.stride_w];
                        }
                    });
                    dw[ky * geo.kernel_w + kx] += acc;
                }
            }
        }
    });
}
