//! Turning maps into pictures: colormaps, overlays on the original image, boxes, gradient images, signal plots.

mod colormap;
mod overlay;
mod signal_plot;

pub use colormap::Colormap;
pub use overlay::{draw_box, gradient_image, overlay, save_png};
pub use signal_plot::{plot_signal, plot_width, MAX_LANES, PLOT_HEIGHT};
