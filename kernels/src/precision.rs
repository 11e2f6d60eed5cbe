//! Weights held in 16 bits (IEEE half or bfloat16) and widened to f32 only where a kernel reads them.
//!
//! Models are stored in f16 more and more (the bundled EfficientNet-Lite0 is), and on an edge device the weights
//! are most of the memory. Activations and gradients stay f32: only constant weights shrink, and every product still
//! accumulates in f32. Widening is exact (every f16 and bf16 value is an f32 value); the one rounding is at load,
//! from f32 to 16 bits (nearest, ties to even).
//!
//! The SIMD levels widen f16 with the hardware conversion (F16C `vcvtph2ps`, detected at run time by the `half`
//! crate); the portable level uses the software conversion, so both paths are tested. bf16 widening is a shift.

use crate::simd::SimdLevel;
use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// How constant weights are held in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// 32-bit floats: exactly the file's values (f16/bf16 files are widened at load).
    #[default]
    F32,
    /// IEEE 754 half precision: 11 significant bits, largest finite value 65504.
    F16,
    /// bfloat16: 8 significant bits, the range of f32.
    Bf16,
}

impl Precision {
    /// Bytes per stored weight.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 | Precision::Bf16 => 2,
        }
    }

    /// Relative rounding error of one stored value (half a unit in the last place): 2⁻²⁴, 2⁻¹¹, 2⁻⁸.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::F32 => 2f64.powi(-24),
            Precision::F16 => 2f64.powi(-11),
            Precision::Bf16 => 2f64.powi(-8),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(format!("'{s}' is not a weight precision (f32, f16 or bf16)")),
        }
    }
}

/// Values stored in 16 bits.
#[derive(Clone, Debug, PartialEq)]
pub enum HalfVec {
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl HalfVec {
    /// `values` rounded to `precision` (`None` for [`Precision::F32`]). Finite values beyond f16's range become ±∞:
    /// callers that must refuse that check [`HalfVec::first_overflow`].
    pub fn from_f32(precision: Precision, values: &[f32]) -> Option<HalfVec> {
        match precision {
            Precision::F32 => None,
            Precision::F16 => {
                let mut v = vec![f16::ZERO; values.len()];
                v.convert_from_f32_slice(values);
                Some(HalfVec::F16(v))
            }
            Precision::Bf16 => {
                let mut v = vec![bf16::ZERO; values.len()];
                v.convert_from_f32_slice(values);
                Some(HalfVec::Bf16(v))
            }
        }
    }

    /// An empty vector of `precision` with room for `capacity` values (`None` for f32).
    pub fn with_capacity(precision: Precision, capacity: usize) -> Option<HalfVec> {
        match precision {
            Precision::F32 => None,
            Precision::F16 => Some(HalfVec::F16(Vec::with_capacity(capacity))),
            Precision::Bf16 => Some(HalfVec::Bf16(Vec::with_capacity(capacity))),
        }
    }

    /// Appends `values`, rounded.
    pub fn extend_from_f32(&mut self, values: &[f32]) {
        match self {
            HalfVec::F16(v) => {
                let start = v.len();
                v.resize(start + values.len(), f16::ZERO);
                v[start..].convert_from_f32_slice(values);
            }
            HalfVec::Bf16(v) => {
                let start = v.len();
                v.resize(start + values.len(), bf16::ZERO);
                v[start..].convert_from_f32_slice(values);
            }
        }
    }

    /// [`HalfVec::extend_from_f32`], returning the index (in the whole vector) of the first appended value that
    /// was finite and overflowed the format: what loaders refuse.
    pub fn extend_checked(&mut self, values: &[f32]) -> Option<usize> {
        let start = self.len();
        self.extend_from_f32(values);
        (0..values.len()).find(|&i| values[i].is_finite() && !self.get(start + i).is_finite()).map(|i| start + i)
    }

    pub fn precision(&self) -> Precision {
        match self {
            HalfVec::F16(_) => Precision::F16,
            HalfVec::Bf16(_) => Precision::Bf16,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            HalfVec::F16(v) => v.len(),
            HalfVec::Bf16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.len() * 2
    }

    /// Index of the first value that is infinite although `original` (the f32 values it was rounded from) is
    /// finite: a weight beyond f16's range.
    pub fn first_overflow(&self, original: &[f32]) -> Option<usize> {
        (0..self.len()).find(|&i| original[i].is_finite() && !self.get(i).is_finite())
    }

    /// Value `i`, widened.
    pub fn get(&self, i: usize) -> f32 {
        match self {
            HalfVec::F16(v) => v[i].to_f32(),
            HalfVec::Bf16(v) => v[i].to_f32(),
        }
    }

    /// Widens `self[start .. start + dst.len()]` into `dst`, with the conversion of `level` (hardware F16C on the
    /// SIMD levels, the software conversion on the portable one).
    ///
    /// # Panics
    /// If the range lies outside the vector.
    pub fn widen(&self, start: usize, dst: &mut [f32], level: SimdLevel) {
        let end = start + dst.len();
        match self {
            HalfVec::F16(v) if level == SimdLevel::Portable => {
                dst.iter_mut().zip(&v[start..end]).for_each(|(d, s)| *d = s.to_f32_const());
            }
            HalfVec::F16(v) => v[start..end].convert_to_f32_slice(dst),
            // bf16 → f32 is the 16 bits shifted up: the same on every level.
            HalfVec::Bf16(v) => dst.iter_mut().zip(&v[start..end]).for_each(|(d, s)| *d = s.to_f32()),
        }
    }

    /// All values, widened.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.len()];
        self.widen(0, &mut out, crate::simd::level());
        out
    }
}

/// Weights the classifier products read in place, f32 or 16-bit: dot products and `axpy` over a range of them.
pub trait Widen: Sync {
    /// Number of values.
    fn count(&self) -> usize;
    /// `Σ x_i · self[start + i]` (16-bit values widened in registers).
    fn dot_range(&self, start: usize, x: &[f32]) -> f32;
    /// `y_i += a · self[start + i]`.
    fn axpy_range(&self, a: f32, start: usize, y: &mut [f32]);
}

impl Widen for [f32] {
    fn count(&self) -> usize {
        self.len()
    }
    fn dot_range(&self, start: usize, x: &[f32]) -> f32 {
        crate::vector::dot(&self[start..start + x.len()], x)
    }
    fn axpy_range(&self, a: f32, start: usize, y: &mut [f32]) {
        crate::vector::axpy(a, &self[start..start + y.len()], y);
    }
}

impl Widen for HalfVec {
    fn count(&self) -> usize {
        self.len()
    }
    fn dot_range(&self, start: usize, x: &[f32]) -> f32 {
        crate::half_vector::dot(self, start, x)
    }
    fn axpy_range(&self, a: f32, start: usize, y: &mut [f32]) {
        crate::half_vector::axpy(a, self, start, y);
    }
}

impl Widen for Stored {
    fn count(&self) -> usize {
        self.len()
    }
    fn dot_range(&self, start: usize, x: &[f32]) -> f32 {
        match self {
            Stored::F32(v) => v.dot_range(start, x),
            Stored::Half(h) => h.dot_range(start, x),
        }
    }
    fn axpy_range(&self, a: f32, start: usize, y: &mut [f32]) {
        match self {
            Stored::F32(v) => v.axpy_range(a, start, y),
            Stored::Half(h) => h.axpy_range(a, start, y),
        }
    }
}

/// Values held in f32 or in 16 bits (shared: a model's 16-bit weights can be read by kernels in place).
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    F32(Vec<f32>),
    Half(std::sync::Arc<HalfVec>),
}

impl Stored {
    /// `values` held in `precision`.
    pub fn new(precision: Precision, values: Vec<f32>) -> Stored {
        match HalfVec::from_f32(precision, &values) {
            Some(h) => Stored::Half(std::sync::Arc::new(h)),
            None => Stored::F32(values),
        }
    }

    /// An empty store of `precision` with room for `capacity` values.
    pub fn with_capacity(precision: Precision, capacity: usize) -> Stored {
        match HalfVec::with_capacity(precision, capacity) {
            Some(h) => Stored::Half(std::sync::Arc::new(h)),
            None => Stored::F32(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `values` (rounded when held in 16 bits).
    pub fn extend_from_f32(&mut self, values: &[f32]) {
        match self {
            Stored::F32(v) => v.extend_from_slice(values),
            Stored::Half(h) => std::sync::Arc::make_mut(h).extend_from_f32(values),
        }
    }

    pub fn precision(&self) -> Precision {
        match self {
            Stored::F32(_) => Precision::F32,
            Stored::Half(h) => h.precision(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Stored::F32(v) => v.len(),
            Stored::Half(h) => h.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.len() * self.precision().bytes()
    }

    /// All values as f32: borrowed when held in f32, widened (with `level`'s conversion) otherwise.
    pub fn widened(&self, level: SimdLevel) -> std::borrow::Cow<'_, [f32]> {
        match self {
            Stored::F32(v) => std::borrow::Cow::Borrowed(v),
            Stored::Half(h) => {
                let mut out = vec![0.0; h.len()];
                h.widen(0, &mut out, level);
                std::borrow::Cow::Owned(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::supported_levels;

    #[test]
    fn widening_is_exact_and_rounding_is_within_half_an_ulp() {
        let values: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.7361).sin() * 10f32.powi(i % 7 - 3)).collect();
        for precision in [Precision::F16, Precision::Bf16] {
            let h = HalfVec::from_f32(precision, &values).unwrap();
            assert_eq!(h.len(), values.len());
            for level in supported_levels() {
                let mut wide = vec![0.0; values.len()];
                h.widen(0, &mut wide, level);
                for (i, (&w, &v)) in wide.iter().zip(&values).enumerate() {
                    // Exact widening: the same as the scalar conversion on every level.
                    assert_eq!(w.to_bits(), h.get(i).to_bits(), "{precision} {level} at {i}");
                    // Normal numbers round to within half a unit in the last place (f16 subnormals: absolute 2⁻²⁵).
                    let tol = (v.abs() as f64 * precision.unit_roundoff()).max(2f64.powi(-25));
                    assert!(((w - v).abs() as f64) <= tol, "{precision} at {i}: {v} stored as {w}");
                }
            }
        }
    }

    #[test]
    fn a_partial_range_widens_only_that_range() {
        let values: Vec<f32> = (0..40).map(|i| i as f32 - 20.0).collect();
        let h = HalfVec::from_f32(Precision::F16, &values).unwrap();
        for level in supported_levels() {
            let mut dst = [0.0f32; 13];
            h.widen(17, &mut dst, level);
            assert_eq!(dst.to_vec(), values[17..30].to_vec(), "{level}");
        }
    }

    #[test]
    fn values_beyond_f16_range_are_reported() {
        let values = [1.0, 70000.0, -3.0, f32::INFINITY];
        let h = HalfVec::from_f32(Precision::F16, &values).unwrap();
        assert_eq!(h.first_overflow(&values), Some(1));
        let b = HalfVec::from_f32(Precision::Bf16, &values).unwrap();
        assert_eq!(b.first_overflow(&values), None);
        assert_eq!(b.get(1), 70144.0);
    }

    #[test]
    fn names_parse() {
        assert_eq!("F16".parse::<Precision>(), Ok(Precision::F16));
        assert_eq!("bfloat16".parse::<Precision>(), Ok(Precision::Bf16));
        assert!("f8".parse::<Precision>().is_err());
        assert_eq!(Precision::Bf16.to_string(), "bf16");
    }
}
