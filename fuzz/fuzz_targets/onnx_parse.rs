//! Fuzz target: any byte string given to the ONNX importer yields a model or a typed error — no panic, no hang,
//! no unbounded allocation. Seed corpus: `fixtures/onnx/**/*.onnx`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = gradcam::onnx::parse(data, None, "fuzz.onnx");
});
