//! Fuzz target: any byte string read as safetensors weights — from memory (the bundled model's path) and piecewise
//! from a file (the `--model x.safetensors` path) — yields weights or a typed error, never a panic, a hang or an
//! allocation beyond the file's size; both readers agree on which inputs are valid. Seed corpus: a few small
//! safetensors files (`fuzz/README.md`).
#![no_main]

#[path = "scratch.rs"]
mod scratch;

use gradcam::models::Weights;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let in_memory = Weights::from_safetensors(data, "fuzz.safetensors");
    let path = scratch::file_with(data, "safetensors");
    let from_file = Weights::from_file(&path);
    if let Ok(w) = &from_file {
        let _ = w.classes("classifier");
    }
    // The piecewise reader must refuse nothing the reference reader accepts.
    if in_memory.is_ok() && from_file.is_err() {
        panic!("from_file refused what from_safetensors accepted: {:?}", from_file.err());
    }
});
