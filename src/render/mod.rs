//! Turning maps into pictures: colormaps, overlays on the original image, boxes, gradient images, signal plots, volume montages.

mod byte;
mod colormap;
mod montage;
mod overlay;
mod signal_plot;

pub use byte::to_byte;
pub use colormap::Colormap;
pub use montage::{enlarge, grey_picture, montage, montage_grid, montage_scale, MIN_MONTAGE_SIDE};
pub use overlay::{draw_box, gradient_image, overlay, save_png};
pub use signal_plot::{plot_signal, plot_width, MAX_LANES, PLOT_HEIGHT};
