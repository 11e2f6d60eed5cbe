//! Compute kernels for `gradcam`.
//!
//! Everything here works on plain slices in NCHW layout and knows nothing about graphs, autodiff or models: the
//! graph crate validates shapes and attributes, then calls these functions. All kernels are generic over
//! [`Element`] (f32 for real work, f64 so that finite-difference tests can check gradients tightly).
//!
//! Threading: GEMMs run single-threaded inside `matrixmultiply` (its `threading` feature is *off*); parallelism
//! comes from rayon over independent tiles of the output. Tile shapes depend only on the problem shape, never on
//! the number of threads, so every output element is computed by the same sequence of floating-point operations
//! whatever the thread count: results are bit-identical on 1, 2 or 64 threads.

#![deny(clippy::undocumented_unsafe_blocks)]

/// Defines `fn $name` (with the given visibility) that runs `$simd` compiled for the active SIMD level
/// ([`simd::level`]), or `$portable` on the portable one: plain Rust loops that LLVM vectorizes with the level's
/// instructions instead of the SSE2 baseline.
macro_rules! per_level {
    ($(#[$doc:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?; simd: $simd:ident, portable: $portable:ident) => {
        $(#[$doc])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                $simd($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                $simd($($arg),*)
            }
            match $crate::simd::level() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: level() only returns levels this CPU supports.
                $crate::simd::SimdLevel::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                $crate::simd::SimdLevel::Avx2 => unsafe { avx2($($arg),*) },
                _ => $portable($($arg),*),
            }
        }
    };
}

pub mod conv;
#[cfg(target_arch = "x86_64")]
mod conv_broadcast;
pub mod conv_packed;
pub mod conv_pixel_rows;
pub mod depthwise;
#[cfg(target_arch = "x86_64")]
mod depthwise_blocked;
pub mod depthwise_flat;
mod depthwise_plane;
mod depthwise_rows;
pub mod device;
pub mod element;
pub mod gemm;
pub mod geometry;
pub mod half_vector;
pub mod im2col;
#[cfg(target_arch = "x86_64")]
mod lanes8;
pub mod memory;
mod microkernel;
pub mod packed_gemm;
pub mod peak;
pub mod pool;
pub mod precision;
pub mod simd;
pub mod stored_matmul;
pub mod vector;
pub mod winograd;

pub use conv::{col2im_image, conv2d_backward_data, conv2d_backward_weight, conv2d_forward};
pub use conv_packed::PackedConv;
pub use element::Element;
pub use geometry::ConvGeometry;
pub use packed_gemm::{Clamp, PackedA};
pub use pool::{
    avg_pool2d_backward, avg_pool2d_forward, max_pool2d_argmax, max_pool2d_backward, max_pool2d_forward, PoolGeometry,
};
pub use precision::{HalfVec, Precision, Stored, Widen};
pub use simd::SimdLevel;
