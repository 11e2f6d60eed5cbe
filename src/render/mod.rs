//! Turning maps into pictures: colormaps, overlays on the original image, boxes, gradient images.

mod colormap;
mod overlay;

pub use colormap::Colormap;
pub use overlay::{draw_box, gradient_image, overlay, save_png};
