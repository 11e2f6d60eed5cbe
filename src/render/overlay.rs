//! Overlays at the original image's resolution, bounding boxes and gradient images.

use super::{to_byte, Colormap};
use crate::cam::postprocess::{resize_bilinear, resize_channels};
use crate::error::Result;
use image::{Rgb, RgbImage};
use ndarray::{Array2, Array3};
use std::path::Path;

/// Blends `colormap(map)` over `img`: `(1 − alpha)·img + alpha·colour`. `map` is resized to the image.
pub fn overlay(img: &RgbImage, map: &Array2<f32>, colormap: Colormap, alpha: f32) -> RgbImage {
    let (w, h) = img.dimensions();
    // At the image's size already (the CLI resizes it first): read in place, not copied.
    let resized;
    let map = if map.dim() == (h as usize, w as usize) {
        map.view()
    } else {
        resized = resize_bilinear(map, h as usize, w as usize);
        resized.view()
    };
    let a = alpha.clamp(0.0, 1.0);
    let mut out = img.clone();
    if w == 0 || h == 0 {
        return out;
    }
    // Row by row over slices: per-pixel indexing (bounds checks, a closure per pixel) took most of the time.
    let map = map.as_standard_layout();
    let values = map.as_slice().expect("a standard-layout array is one slice");
    for (pixels, row) in out.chunks_exact_mut(3 * w as usize).zip(values.chunks_exact(w as usize)) {
        for (p, &v) in pixels.chunks_exact_mut(3).zip(row) {
            let c = colormap.rgb(v);
            for (p, c) in p.iter_mut().zip(c) {
                *p = to_byte((1.0 - a) * *p as f32 + a * 255.0 * c);
            }
        }
    }
    out
}

/// Draws the outline of `[x0, y0, x1, y1]` (inclusive) in `color`, `thickness` pixels wide, clipped to the image.
pub fn draw_box(img: &mut RgbImage, bbox: [usize; 4], color: [u8; 3], thickness: usize) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w == 0 || h == 0 {
        return;
    }
    let [x0, y0, x1, y1] = [bbox[0].min(w - 1), bbox[1].min(h - 1), bbox[2].min(w - 1), bbox[3].min(h - 1)];
    for t in 0..thickness {
        for x in x0..=x1 {
            for y in [y0.saturating_add(t).min(h - 1), y1.saturating_sub(t)] {
                img.put_pixel(x as u32, y as u32, Rgb(color));
            }
        }
        for y in y0..=y1 {
            for x in [x0.saturating_add(t).min(w - 1), x1.saturating_sub(t)] {
                img.put_pixel(x as u32, y as u32, Rgb(color));
            }
        }
    }
}

/// A `[3, H, W]` RGB array in [0, 1] as an image of `width × height`.
pub fn gradient_image(rgb: &Array3<f32>, width: u32, height: u32) -> RgbImage {
    let r = resize_channels(rgb, height as usize, width as usize);
    RgbImage::from_fn(width, height, |x, y| {
        Rgb(std::array::from_fn(|k| to_byte(r[[k, y as usize, x as usize]] * 255.0)))
    })
}

/// Writes a PNG; the error names the path.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    crate::output::write_atomic(path, |w| {
        img.write_to(w, image::ImageFormat::Png).map_err(|e| std::io::Error::other(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_zero_keeps_the_image_and_one_shows_the_map() {
        let img = RgbImage::from_pixel(4, 3, Rgb([10, 20, 30]));
        let map = Array2::from_elem((2, 2), 1.0f32);
        assert_eq!(overlay(&img, &map, Colormap::Jet, 0.0), img);
        let full = overlay(&img, &map, Colormap::Jet, 1.0);
        assert_eq!(full.dimensions(), (4, 3));
        assert_eq!(full.get_pixel(1, 1)[2], 0, "jet(1) has no blue");
    }

    #[test]
    fn box_is_drawn_inside_the_image() {
        let mut img = RgbImage::new(10, 8);
        draw_box(&mut img, [2, 1, 20, 6], [0, 255, 0], 1);
        assert_eq!(img.get_pixel(2, 1)[1], 255);
        assert_eq!(img.get_pixel(9, 6)[1], 255);
        assert_eq!(img.get_pixel(5, 4)[1], 0);
    }
}
