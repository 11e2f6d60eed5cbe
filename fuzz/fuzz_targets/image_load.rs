//! Fuzz target: any byte string given as an image (PNG, JPEG, GIF, BMP, WebP, TIFF — the format is sniffed from the
//! bytes) is decoded within the pixel budget and resized to the model's input, or refused with a typed error —
//! never a panic, a hang or a decoder allocation beyond the budget. The budget here is 1 Mpx so that each run stays
//! fast; the default (64 Mpx) is checked the same way. Seed corpus: `fixtures/images/` and small files of every
//! format (`fuzz/README.md`).
#![no_main]

#[path = "scratch.rs"]
mod scratch;

use libfuzzer_sys::fuzz_target;

const MAX_PIXELS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let path = scratch::file_with(data, "img");
    if let Ok(loaded) = gradcam::input::load_image_limited(&path, [64, 64], MAX_PIXELS) {
        let (w, h) = loaded.original.dimensions();
        assert!(u64::from(w) * u64::from(h) <= MAX_PIXELS, "{w}x{h} decoded past the budget");
        assert_eq!(loaded.pixels.shape(), &[1, 3, 64, 64]);
        assert!(loaded.pixels.iter().all(|v| (0.0..=1.0).contains(v)));
    }
});
