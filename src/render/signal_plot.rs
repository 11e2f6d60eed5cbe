//! A signal `[C, L]` drawn as a line plot, the picture a 1-D explanation is overlaid on: the map's columns line up
//! with the samples, so the overlay shows which stretch of the signal the class score depends on.

use image::{Rgb, RgbImage};
use ndarray::{Array1, ArrayView2, Axis};

/// Most channels drawn each in a lane of its own; beyond this their mean is drawn.
pub const MAX_LANES: usize = 8;
/// Plot height in pixels.
pub const PLOT_HEIGHT: u32 = 240;

/// Plot width for `len` samples: one column per sample between 256 and 4096 columns, else scaled.
pub fn plot_width(len: usize) -> u32 {
    len.clamp(256, 4096) as u32
}

/// `signal` (`[C, L]`) on a white background: one lane per channel (the mean of all when there are more than
/// [`MAX_LANES`]), each scaled to its own range, dark lines joining consecutive samples.
pub fn plot_signal(signal: ArrayView2<'_, f32>) -> RgbImage {
    let len = signal.ncols();
    let (width, height) = (plot_width(len), PLOT_HEIGHT);
    let mut img = RgbImage::from_pixel(width, height, Rgb([255, 255, 255]));
    if len == 0 {
        return img;
    }
    let lanes: Vec<Array1<f32>> = if signal.nrows() <= MAX_LANES {
        signal.axis_iter(Axis(0)).map(|r| r.to_owned()).collect()
    } else {
        signal.mean_axis(Axis(0)).into_iter().collect()
    };
    let lane_h = height as f32 / lanes.len().max(1) as f32;
    for (k, lane) in lanes.iter().enumerate() {
        let finite = lane.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let top = k as f32 * lane_h;
        let point = |i: usize| -> (f32, f32) {
            let x = if len == 1 { 0.0 } else { i as f32 * (width - 1) as f32 / (len - 1) as f32 };
            let v = if lane[i].is_finite() { lane[i] } else { lo };
            let y = top + lane_h * (0.9 - 0.8 * (v - lo) / span);
            (x, y)
        };
        for i in 1..len {
            draw_line(&mut img, point(i - 1), point(i), Rgb([20, 20, 20]));
        }
    }
    img
}

/// A straight line by sampling it once per pixel of its longer extent.
fn draw_line(img: &mut RgbImage, (x0, y0): (f32, f32), (x1, y1): (f32, f32), color: Rgb<u8>) {
    let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
    for s in 0..=steps {
        let t = s as f32 / steps as f32;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        let (x, y) = (x.round() as i64, y.round() as i64);
        if (0..img.width() as i64).contains(&x) && (0..img.height() as i64).contains(&y) {
            img.put_pixel(x as u32, y as u32, color);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn a_rising_signal_runs_from_bottom_left_to_top_right() {
        let ramp = Array2::from_shape_fn((1, 300), |(_, i)| i as f32);
        let img = plot_signal(ramp.view());
        assert_eq!(img.dimensions(), (300, PLOT_HEIGHT));
        let dark = |x: u32| (0..PLOT_HEIGHT).find(|&y| img.get_pixel(x, y)[0] < 128).expect("a line in every column");
        assert!(dark(0) > dark(299), "the line rises: {} vs {}", dark(0), dark(299));
        assert!(dark(0) > PLOT_HEIGHT / 2 && dark(299) < PLOT_HEIGHT / 2);
    }

    #[test]
    fn channels_get_lanes_and_many_channels_their_mean() {
        let two = Array2::from_shape_fn((2, 50), |(c, i)| if c == 0 { i as f32 } else { -(i as f32) });
        let img = plot_signal(two.view());
        let dark_rows = |x: u32| (0..PLOT_HEIGHT).filter(|&y| img.get_pixel(x, y)[0] < 128).collect::<Vec<_>>();
        let rows = dark_rows(0);
        assert!(rows.iter().any(|&y| y < PLOT_HEIGHT / 2) && rows.iter().any(|&y| y >= PLOT_HEIGHT / 2), "{rows:?}");
        let many = Array2::from_elem((20, 10), f32::NAN);
        assert_eq!(plot_signal(many.view()).dimensions(), (256, PLOT_HEIGHT), "NaN and flat signals still draw");
    }
}
