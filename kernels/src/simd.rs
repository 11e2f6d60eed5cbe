//! Which instruction set the hand-written kernels use, decided once per process.
//!
//! The best level the CPU supports is detected at first use. `GRADCAM_SIMD=avx512|avx2|portable` (read once) or
//! [`set_level`] pick another, so that every path can be tested and benchmarked on one machine. `portable` is the
//! reference path (matrixmultiply GEMM and plain Rust loops) and the only one on non-x86 CPUs.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// A family of kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SimdLevel {
    /// matrixmultiply and plain loops: the reference every other level is tested against.
    Portable,
    /// 256-bit AVX2 with FMA.
    Avx2,
    /// 512-bit AVX-512F.
    Avx512,
}

impl SimdLevel {
    /// Every level, slowest first.
    pub const ALL: [SimdLevel; 3] = [SimdLevel::Portable, SimdLevel::Avx2, SimdLevel::Avx512];

    /// The name used by `GRADCAM_SIMD` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    /// Parses `avx512`, `avx2` or `portable`.
    pub fn parse(name: &str) -> Option<SimdLevel> {
        SimdLevel::ALL.into_iter().find(|l| l.name() == name.trim().to_ascii_lowercase())
    }

    /// Whether this CPU can run the level.
    pub fn supported(self) -> bool {
        match self {
            SimdLevel::Portable => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }

    fn from_code(code: u8) -> Option<SimdLevel> {
        SimdLevel::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The best level this CPU supports.
pub fn detected() -> SimdLevel {
    SimdLevel::ALL.into_iter().rev().find(|l| l.supported()).unwrap_or(SimdLevel::Portable)
}

/// Levels this CPU supports, slowest first.
pub fn supported_levels() -> Vec<SimdLevel> {
    SimdLevel::ALL.into_iter().filter(|l| l.supported()).collect()
}

/// 0: not decided yet; otherwise `SimdLevel::code`.
static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// Why a level cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedLevel(pub SimdLevel);

impl fmt::Display for UnsupportedLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this CPU does not support the {} kernels (it supports: {})", self.0, {
            supported_levels().iter().map(|l| l.name()).collect::<Vec<_>>().join(", ")
        })
    }
}

impl std::error::Error for UnsupportedLevel {}

/// The level the kernels use: [`set_level`]'s, else `GRADCAM_SIMD`'s, else [`detected`]. An unknown or unsupported
/// `GRADCAM_SIMD` falls back to the detected level (the CLI reports it through [`env_override`]).
pub fn level() -> SimdLevel {
    if let Some(l) = SimdLevel::from_code(ACTIVE.load(Ordering::Relaxed)) {
        return l;
    }
    let l = match env_override() {
        Some(Ok(l)) => l,
        _ => detected(),
    };
    // Another thread may have decided meanwhile (same answer unless set_level raced us; theirs wins).
    match ACTIVE.compare_exchange(0, l.code(), Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => l,
        Err(code) => SimdLevel::from_code(code).unwrap_or(l),
    }
}

/// What `GRADCAM_SIMD` asks for: `None` when unset, an error message when it names no usable level.
pub fn env_override() -> Option<Result<SimdLevel, String>> {
    let v = std::env::var("GRADCAM_SIMD").ok()?;
    Some(match SimdLevel::parse(&v) {
        Some(l) if l.supported() => Ok(l),
        Some(l) => Err(format!("GRADCAM_SIMD={v}: {}", UnsupportedLevel(l))),
        None => Err(format!("GRADCAM_SIMD={v}: expected avx512, avx2 or portable")),
    })
}

/// Makes every later kernel call use `level` (process-wide). Tests and benchmarks use it to compare levels.
pub fn set_level(level: SimdLevel) -> Result<(), UnsupportedLevel> {
    if !level.supported() {
        return Err(UnsupportedLevel(level));
    }
    ACTIVE.store(level.code(), Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_portable_is_always_supported() {
        for l in SimdLevel::ALL {
            assert_eq!(SimdLevel::parse(l.name()), Some(l));
        }
        assert_eq!(SimdLevel::parse("AVX2"), Some(SimdLevel::Avx2));
        assert_eq!(SimdLevel::parse("sse"), None);
        assert!(SimdLevel::Portable.supported());
        assert!(supported_levels().contains(&detected()));
    }
}
