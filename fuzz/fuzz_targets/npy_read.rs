//! Fuzz target: any byte string read as a `.npy` input yields a tensor of exactly the bytes the file holds, or a
//! typed error — never a panic or an allocation the file's size does not justify. Seed corpus:
//! `fixtures/**/*.npy`.
#![no_main]

#[path = "scratch.rs"]
mod scratch;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = scratch::file_with(data, "npy");
    if let Ok(t) = gradcam::input::read_npy_f32(&path) {
        // Whatever was accepted is backed by the file: 4 bytes per element at most.
        assert!(t.len() * 4 <= data.len(), "{} elements from {} bytes", t.len(), data.len());
    }
    let _ = gradcam::input::load_npy(&path);
});
