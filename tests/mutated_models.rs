//! Mutated ONNX files: `Ok` or a typed error, no panic, and resident memory bounded while parsing — measured as the
//! process's peak RSS (Linux: `VmHWM`, reset through `/proc/self/clear_refs`), which is why this test has a binary
//! of its own (no other test shares its process).

mod common;

use gradcam::onnx::parse;

/// Resident memory a parse may add to what was resident before it. The seeds are under 20 KB; a mutant that
/// needs more asked for a length its bytes do not have.
const PARSE_MEMORY_BOUND: usize = 64 << 20;

/// Peak resident set size in bytes since the last [`reset_peak_rss`] (None where `/proc` cannot tell).
fn peak_rss() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: usize = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak to the current resident size (`echo 5 > /proc/self/clear_refs`) and returns it.
fn reset_peak_rss() -> Option<usize> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    peak_rss()
}

/// Mutation fuzzing of real models: flipped bytes, truncations and insertions must yield `Ok` or a typed error —
/// never a panic, and never more live memory than a bound. (A cargo-fuzz target over the same entry point lives in
/// `fuzz/`.)
#[test]
fn mutated_models_parse_without_panic_within_bounded_memory() {
    let seeds: Vec<Vec<u8>> = [
        "onnx/light/light_squeezenet.onnx",
        "onnx/pytorch-operator/test_operator_addmm/model.onnx",
        "onnx/pytorch-converted/test_Conv2d_depthwise_strided/model.onnx",
    ]
    .iter()
    .map(|p| std::fs::read(common::fixture(p)).unwrap())
    .collect();
    let seed = std::env::var("GRADCAM_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x2545_F491_4F6C_DD1Du64);
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let iterations = std::env::var("GRADCAM_FUZZ_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let measurable = reset_peak_rss().is_some();
    if !measurable {
        eprintln!("no peak RSS on this system: only panics are checked");
    }
    let mut worst = 0;
    for i in 0..iterations {
        let mut bytes = seeds[i % seeds.len()].clone();
        for _ in 0..1 + next() % 8 {
            let pos = (next() as usize) % bytes.len().max(1);
            match next() % 4 {
                0 => bytes[pos] ^= 1 << (next() % 8),
                1 => bytes[pos] = next() as u8,
                2 => bytes.truncate(pos.max(1)),
                _ => bytes.insert(pos, next() as u8),
            }
            if bytes.is_empty() {
                break;
            }
        }
        let baseline = reset_peak_rss();
        let result = std::panic::catch_unwind(|| parse(&bytes, None, "mutant.onnx").map(|_| ()));
        assert!(result.is_ok(), "iteration {i}: the parser panicked");
        let Some((before, after)) = baseline.zip(peak_rss()).filter(|_| measurable) else {
            continue;
        };
        let grew = after.saturating_sub(before);
        worst = worst.max(grew);
        assert!(
            grew <= PARSE_MEMORY_BOUND,
            "iteration {i}: parsing a {} B mutant held {grew} B at its peak",
            bytes.len()
        );
    }
    eprintln!("largest peak RSS growth over {iterations} mutants: {:.1} MB", worst as f64 / 1e6);
}
