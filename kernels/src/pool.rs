//! Max and average pooling over NCHW planes, forward and backward.
//!
//! Max pooling records the flat in-plane index of each window's maximum, so the backward pass routes gradients
//! exactly, for any kernel, stride, padding and dilation (overlapping windows such as ResNet's 3×3/2 included).

use crate::im2col::valid_range;
use crate::Element;
use rayon::prelude::*;

/// Marks an output whose window covers no input pixel (possible only with `ceil_mode`).
pub const NO_ARGMAX: u32 = u32::MAX;

/// Geometry of a 2-D pooling window applied to `planes` planes of `in_h × in_w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    pub planes: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub dilation_h: usize,
    pub dilation_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
    pub pad_bottom: usize,
    pub pad_right: usize,
}

impl PoolGeometry {
    fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Input rows (or columns) `lo..hi` and tap range read by output `o` along one axis.
    fn taps(o: usize, stride: usize, dilation: usize, pad: usize, kernel: usize, len: usize) -> (usize, usize) {
        let (lo, hi) = valid_range(kernel, dilation, (o * stride) as isize - pad as isize, len);
        (lo, hi)
    }

    fn check(&self, input: usize, output: usize) {
        assert_eq!(input, self.planes * self.in_plane(), "pool: input length");
        assert_eq!(output, self.planes * self.out_plane(), "pool: output length");
    }
}

/// Max pooling; `argmax` receives the in-plane index of each maximum. NaN wins (it propagates, like PyTorch).
pub fn max_pool2d_forward<T: Element>(geo: &PoolGeometry, input: &[T], output: &mut [T], argmax: &mut [u32]) {
    geo.check(input.len(), output.len());
    assert_eq!(argmax.len(), output.len());
    let (ip, op) = (geo.in_plane(), geo.out_plane());
    if op == 0 {
        return;
    }
    output.par_chunks_mut(op).zip(argmax.par_chunks_mut(op)).enumerate().for_each(|(p, (out, arg))| {
        let x = &input[p * ip..(p + 1) * ip];
        for oy in 0..geo.out_h {
            let (ky0, ky1) = PoolGeometry::taps(oy, geo.stride_h, geo.dilation_h, geo.pad_top, geo.kernel_h, geo.in_h);
            for ox in 0..geo.out_w {
                let (kx0, kx1) =
                    PoolGeometry::taps(ox, geo.stride_w, geo.dilation_w, geo.pad_left, geo.kernel_w, geo.in_w);
                let mut best = T::neg_infinity();
                let mut best_index = NO_ARGMAX;
                for ky in ky0..ky1 {
                    let iy = oy * geo.stride_h + ky * geo.dilation_h - geo.pad_top;
                    for kx in kx0..kx1 {
                        let ix = ox * geo.stride_w + kx * geo.dilation_w - geo.pad_left;
                        let v = x[iy * geo.in_w + ix];
                        if best_index == NO_ARGMAX || v > best || (v.is_nan() && !best.is_nan()) {
                            best = v;
                            best_index = (iy * geo.in_w + ix) as u32;
                        }
                    }
                }
                let o = oy * geo.out_w + ox;
                out[o] = if best_index == NO_ARGMAX { T::zero() } else { best };
                arg[o] = best_index;
            }
        }
    });
}

/// Routes each output gradient to its window's maximum (overwrites `grad_input`).
pub fn max_pool2d_backward<T: Element>(geo: &PoolGeometry, argmax: &[u32], grad_output: &[T], grad_input: &mut [T]) {
    geo.check(grad_input.len(), grad_output.len());
    let (ip, op) = (geo.in_plane(), geo.out_plane());
    grad_input.fill(T::zero());
    if ip == 0 {
        return;
    }
    grad_input.par_chunks_mut(ip).enumerate().for_each(|(p, dx)| {
        for (&i, &g) in argmax[p * op..(p + 1) * op].iter().zip(&grad_output[p * op..(p + 1) * op]) {
            if i != NO_ARGMAX {
                dx[i as usize] += g;
            }
        }
    });
}

/// The divisor of an average-pool window: taps inside the padded input (`count_include_pad`) or inside the image.
fn divisor(geo: &PoolGeometry, oy: usize, ox: usize, count_include_pad: bool) -> usize {
    let (ry, rx) = if count_include_pad {
        let padded_h = geo.in_h + geo.pad_top + geo.pad_bottom;
        let padded_w = geo.in_w + geo.pad_left + geo.pad_right;
        (
            PoolGeometry::taps(oy, geo.stride_h, geo.dilation_h, 0, geo.kernel_h, padded_h),
            PoolGeometry::taps(ox, geo.stride_w, geo.dilation_w, 0, geo.kernel_w, padded_w),
        )
    } else {
        (
            PoolGeometry::taps(oy, geo.stride_h, geo.dilation_h, geo.pad_top, geo.kernel_h, geo.in_h),
            PoolGeometry::taps(ox, geo.stride_w, geo.dilation_w, geo.pad_left, geo.kernel_w, geo.in_w),
        )
    };
    (ry.1 - ry.0) * (rx.1 - rx.0)
}

/// Calls `f(output index, input index)` for every tap inside the image of every window, then `g(output index,
/// divisor)`.
fn for_each_window<T: Element>(
    geo: &PoolGeometry,
    count_include_pad: bool,
    mut tap: impl FnMut(usize, usize),
    mut done: impl FnMut(usize, T),
) {
    for oy in 0..geo.out_h {
        let (ky0, ky1) = PoolGeometry::taps(oy, geo.stride_h, geo.dilation_h, geo.pad_top, geo.kernel_h, geo.in_h);
        for ox in 0..geo.out_w {
            let (kx0, kx1) = PoolGeometry::taps(ox, geo.stride_w, geo.dilation_w, geo.pad_left, geo.kernel_w, geo.in_w);
            let o = oy * geo.out_w + ox;
            for ky in ky0..ky1 {
                let iy = oy * geo.stride_h + ky * geo.dilation_h - geo.pad_top;
                for kx in kx0..kx1 {
                    tap(o, iy * geo.in_w + ox * geo.stride_w + kx * geo.dilation_w - geo.pad_left);
                }
            }
            let count = divisor(geo, oy, ox, count_include_pad);
            done(o, if count == 0 { T::zero() } else { T::one() / T::lit(count as f64) });
        }
    }
}

/// Average pooling.
pub fn avg_pool2d_forward<T: Element>(geo: &PoolGeometry, count_include_pad: bool, input: &[T], output: &mut [T]) {
    geo.check(input.len(), output.len());
    let (ip, op) = (geo.in_plane(), geo.out_plane());
    if op == 0 {
        return;
    }
    output.par_chunks_mut(op).enumerate().for_each(|(p, out)| {
        let x = &input[p * ip..(p + 1) * ip];
        out.fill(T::zero());
        let sums = std::cell::RefCell::new(out);
        for_each_window(
            geo,
            count_include_pad,
            |o, i| sums.borrow_mut()[o] += x[i],
            |o, scale: T| sums.borrow_mut()[o] *= scale,
        );
    });
}

/// Spreads each output gradient evenly over its window (overwrites `grad_input`).
pub fn avg_pool2d_backward<T: Element>(
    geo: &PoolGeometry,
    count_include_pad: bool,
    grad_output: &[T],
    grad_input: &mut [T],
) {
    geo.check(grad_input.len(), grad_output.len());
    let (ip, op) = (geo.in_plane(), geo.out_plane());
    grad_input.fill(T::zero());
    if ip == 0 || op == 0 {
        return;
    }
    grad_input.par_chunks_mut(ip).enumerate().for_each(|(p, dx)| {
        let dy = &grad_output[p * op..(p + 1) * op];
        // Scales are known only after a window's taps, so collect them first.
        let mut scale = vec![T::zero(); op];
        for_each_window(geo, count_include_pad, |_, _| {}, |o, s: T| scale[o] = s);
        for_each_window::<T>(geo, count_include_pad, |o, i| dx[i] += dy[o] * scale[o], |_, _| {});
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> PoolGeometry {
        PoolGeometry {
            planes: 2,
            in_h: 5,
            in_w: 5,
            out_h: 3,
            out_w: 3,
            kernel_h: 3,
            kernel_w: 3,
            stride_h: 2,
            stride_w: 2,
            dilation_h: 1,
            dilation_w: 1,
            pad_top: 1,
            pad_left: 1,
            pad_bottom: 1,
            pad_right: 1,
        }
    }

    #[test]
    fn overlapping_max_pool_routes_gradient_to_argmax() {
        let g = geo();
        let x: Vec<f64> = (0..50).map(|i| ((i * 37) % 50) as f64).collect();
        let mut y = vec![0.0; 18];
        let mut arg = vec![0; 18];
        max_pool2d_forward(&g, &x, &mut y, &mut arg);
        for p in 0..2 {
            for o in 0..9 {
                assert_eq!(y[p * 9 + o], x[p * 25 + arg[p * 9 + o] as usize]);
            }
        }
        let dy = vec![1.0; 18];
        let mut dx = vec![0.0; 50];
        max_pool2d_backward(&g, &arg, &dy, &mut dx);
        assert_eq!(dx.iter().sum::<f64>(), 18.0);
    }

    #[test]
    fn avg_pool_divisors_follow_count_include_pad() {
        let g = geo();
        let x = vec![1.0f64; 50];
        let mut y = vec![0.0; 18];
        avg_pool2d_forward(&g, false, &x, &mut y);
        assert!(y.iter().all(|&v| (v - 1.0).abs() < 1e-15));
        avg_pool2d_forward(&g, true, &x, &mut y);
        // Corner window sees 4 of 9 taps.
        assert!((y[0] - 4.0 / 9.0).abs() < 1e-15);
        assert!((y[4] - 1.0).abs() < 1e-15);
    }

    #[test]
    fn nan_propagates_through_max_pool() {
        let g = PoolGeometry { planes: 1, ..geo() };
        let mut x = vec![0.0f32; 25];
        x[12] = f32::NAN;
        let mut y = vec![0.0; 9];
        let mut arg = vec![0; 9];
        max_pool2d_forward(&g, &x, &mut y, &mut arg);
        assert!(y[4].is_nan());
    }
}
