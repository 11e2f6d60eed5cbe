//! Fuzz target: any byte string given to the ONNX importer yields a model or a typed error — no panic, no hang,
//! no unbounded allocation — through both entry points: `onnx::parse` (bytes in memory) and `onnx::load` (a file:
//! the streaming pass that leaves raw weights on disk and reads them piecewise), which must agree on what they
//! accept. Seed corpus: `fixtures/onnx/light/*.onnx`.
#![no_main]

#[path = "scratch.rs"]
mod scratch;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = gradcam::onnx::parse(data, None, "fuzz.onnx");
    let path = scratch::file_with(data, "onnx");
    let loaded = gradcam::onnx::load(&path);
    // The streaming reader accepts exactly what the in-memory one does (external data aside: none here resolves
    // the same way, so only that error may differ).
    if let (Ok(_), Err(e)) = (&parsed, &loaded) {
        let why = e.to_string();
        assert!(why.contains("external") || why.contains("resolves"), "load refused what parse accepted: {why}");
    }
    if let Ok(g) = loaded {
        let _ = g.graph.constant_bytes();
    }
});
