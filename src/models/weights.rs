//! Named weight tensors for building a model: from safetensors (f32 / f16 / bf16, held in f32 or — with
//! `--weights f16|bf16` — in 16 bits), or a deterministic synthetic formula that the PyTorch reference script reproduces bit for bit (for parity tests on
//! architectures whose real weights are too large to commit).

use crate::error::{Error, Result};
use crate::tensor::{HalfTensor, Tensor};
use gradcam_kernels::{HalfVec, Precision};
use half::{bf16, f16};
use ndarray::IxDyn;
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;

/// How a parameter is initialised by the synthetic formula (ignored for real weights).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Conv / linear weight: uniform ±√(6 / fan_in) (Kaiming uniform for ReLU nets).
    Weight { fan_in: usize },
    /// Conv / linear bias: uniform ±1/√fan_in.
    Bias { fan_in: usize },
    /// Batch-norm scale: 0.75 + 0.5·u.
    BnScale,
    /// Batch-norm shift and running mean: ±0.2.
    BnShift,
    /// Batch-norm running variance: 0.5 + u.
    BnVar,
}

/// One parameter, as a model holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    F32(Tensor<f32>),
    /// A weight (rank ≥ 2) held in 16 bits.
    Half(HalfTensor),
}

impl Param {
    pub fn shape(&self) -> &[usize] {
        match self {
            Param::F32(t) => t.shape(),
            Param::Half(h) => h.shape(),
        }
    }

    /// The values as f32 (widened if held in 16 bits).
    pub fn to_f32(&self) -> Tensor<f32> {
        match self {
            Param::F32(t) => t.clone(),
            Param::Half(h) => h.widen(),
        }
    }
}

enum Origin {
    Tensors(HashMap<String, Param>),
    Synthetic,
}

/// A source of named weights that records which ones an architecture used.
pub struct Weights {
    origin_name: String,
    origin: Origin,
    /// How weights of rank ≥ 2 are held.
    precision: Precision,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Weights").field("origin", &self.origin_name).finish()
    }
}

/// The 64-bit FNV-1a hash of a key: seeds the synthetic formula per tensor.
fn fnv1a(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// Uniform in [0, 1) with 24 bits: SplitMix64 of `(hash, index)`, exact in f32 and reproducible in numpy.
fn unit(hash: u64, index: u64) -> f64 {
    crate::random::unit24(crate::random::at(hash, index))
}

/// A value uniform in [−1, 1) for element `index` of stream `key`, from the same generator as the synthetic weights
/// (reproducible in numpy by `tools/make_model_fixtures.py: unit`).
pub(crate) fn uniform_symmetric(key: &str, index: usize) -> f32 {
    (2.0 * unit(fnv1a(key), index as u64) - 1.0) as f32
}

/// A standard normal value for element `index` of stream `key` (Box–Muller on elements `2·index` and
/// `2·index + 1` of the uniform stream, in f64): seeded noise that numpy reproduces exactly (SmoothGrad's fixtures).
pub(crate) fn standard_normal(key: &str, index: usize) -> f32 {
    let hash = fnv1a(key);
    let (u1, u2) = (unit(hash, 2 * index as u64), unit(hash, 2 * index as u64 + 1));
    ((-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

/// The synthetic value of element `i` of tensor `key` (see `tools/make_model_fixtures.py`).
pub fn synthetic_value(key: &str, i: usize, init: Init) -> f32 {
    let u = unit(fnv1a(key), i as u64);
    let v = match init {
        Init::Weight { fan_in } => (2.0 * u - 1.0) * (6.0 / fan_in as f64).sqrt(),
        Init::Bias { fan_in } => (2.0 * u - 1.0) / (fan_in as f64).sqrt(),
        Init::BnScale => 0.75 + 0.5 * u,
        Init::BnShift => 0.2 * (2.0 * u - 1.0),
        Init::BnVar => 0.5 + u,
    };
    v as f32
}

/// Largest safetensors header accepted (the format's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Bytes read and converted at a time (a multiple of every element width).
const READ_PIECE: usize = 4 << 20;

/// Reads one tensor's bytes, piece by piece, into the parameter a model holds: f32, or 16 bits for weights (rank
/// ≥ 2) when asked — copied as they are when the file has that format, else rounded a piece at a time, so a weight
/// never exists whole in f32. NaN is refused, and so is a finite value that overflows f16.
struct ParamReader<'a> {
    origin: &'a str,
    key: &'a str,
    dtype: Dtype,
    shape: Vec<usize>,
    f32s: Vec<f32>,
    half: Option<HalfVec>,
    /// Index of the first NaN, or of the first finite value rounded to ±∞.
    nan: Option<usize>,
    overflow: Option<usize>,
}

impl<'a> ParamReader<'a> {
    fn new(origin: &'a str, key: &'a str, dtype: Dtype, shape: &[usize], precision: Precision) -> Result<Self> {
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(Error::WeightDtype { origin: origin.into(), key: key.into(), dtype: format!("{dtype:?}") });
        }
        let count = shape.iter().product::<usize>();
        let half = if shape.len() >= 2 { HalfVec::with_capacity(precision, count) } else { None };
        let f32s = if half.is_some() { Vec::new() } else { Vec::with_capacity(count) };
        Ok(ParamReader { origin, key, dtype, shape: shape.to_vec(), f32s, half, nan: None, overflow: None })
    }

    /// Bytes per element in the file.
    fn width(dtype: Dtype) -> usize {
        if dtype == Dtype::F32 {
            4
        } else {
            2
        }
    }

    /// Appends whole little-endian elements.
    fn push(&mut self, data: &[u8]) {
        let done = self.half.as_ref().map_or(self.f32s.len(), HalfVec::len);
        match (&mut self.half, self.dtype) {
            (Some(HalfVec::F16(v)), Dtype::F16) => {
                v.extend(data.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])))
            }
            (Some(HalfVec::Bf16(v)), Dtype::BF16) => {
                v.extend(data.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]])))
            }
            (half, dtype) => {
                let wide = widen_bytes(dtype, data);
                match half {
                    Some(h) => {
                        let over = h.extend_checked(&wide);
                        self.overflow = self.overflow.or(over);
                    }
                    None => self.f32s.extend_from_slice(&wide),
                }
            }
        }
        if self.nan.is_none() {
            let n = self.half.as_ref().map_or(self.f32s.len(), HalfVec::len);
            self.nan = (done..n).find(|&i| match &self.half {
                Some(h) => h.get(i).is_nan(),
                None => self.f32s[i].is_nan(),
            });
        }
    }

    fn finish(self) -> Result<Param> {
        let bad = |why: String| Error::Safetensors { origin: self.origin.to_string(), why };
        if self.nan.is_some() {
            return Err(bad(format!("tensor '{}' holds NaN values", self.key)));
        }
        if let (Some(i), Some(h)) = (self.overflow, &self.half) {
            let why = format!(
                "tensor '{}': value {i} is beyond the range of {} (largest finite: 65504)",
                self.key,
                h.precision()
            );
            return Err(bad(format!("{why}; load it with --weights bf16 or f32")));
        }
        let shape_err = |e: String| bad(format!("tensor '{}': {e}", self.key));
        Ok(match self.half {
            Some(h) => Param::Half(HalfTensor::new(self.shape.clone(), h).ok_or_else(|| shape_err("length".into()))?),
            None => {
                Param::F32(Tensor::from_shape_vec(IxDyn(&self.shape), self.f32s).map_err(|e| shape_err(e.to_string()))?)
            }
        })
    }
}

/// Little-endian elements of `dtype` (F32, F16 or BF16) as f32.
fn widen_bytes(dtype: Dtype, data: &[u8]) -> Vec<f32> {
    let chunks = |n: usize| data.chunks_exact(n);
    match dtype {
        Dtype::F32 => chunks(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => chunks(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        _ => chunks(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
    }
}

impl Weights {
    /// Parses safetensors bytes into f32 parameters. `origin` names the file in errors; the caller may drop
    /// `bytes` afterwards.
    pub fn from_safetensors(bytes: &[u8], origin: &str) -> Result<Self> {
        Weights::from_safetensors_as(bytes, origin, Precision::F32)
    }

    /// [`Weights::from_safetensors`] with weights (rank ≥ 2) held in `precision`.
    pub fn from_safetensors_as(bytes: &[u8], origin: &str, precision: Precision) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::Safetensors { origin: origin.to_string(), why: e.to_string() })?;
        let mut tensors = HashMap::new();
        for (key, view) in st.tensors() {
            // Bookkeeping, not a weight.
            if key.ends_with("num_batches_tracked") {
                continue;
            }
            let mut reader = ParamReader::new(origin, &key, view.dtype(), view.shape(), precision)?;
            // In pieces, so a 16-bit conversion never holds a whole tensor in f32.
            view.data().chunks(READ_PIECE).for_each(|piece| reader.push(piece));
            let param = reader.finish()?;
            tensors.insert(key, param);
        }
        Ok(Weights { origin_name: origin.to_string(), origin: Origin::Tensors(tensors), precision })
    }

    /// Reads a safetensors file into f32 parameters (see [`Weights::from_file_as`]).
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        Weights::from_file_as(path, Precision::F32)
    }

    /// Reads a safetensors file: its header, then each tensor's bytes piecewise straight into the parameter it
    /// becomes (weights of rank ≥ 2 held in `precision`) — the file is never held whole, so loading needs little
    /// more memory than the parameters themselves.
    pub fn from_file_as(path: &std::path::Path, precision: Precision) -> Result<Self> {
        use std::io::{Read, Seek, SeekFrom};
        let origin = path.display().to_string();
        let io = |e: std::io::Error| Error::Io { path: origin.clone(), why: e.to_string() };
        let bad = |why: String| Error::Safetensors { origin: origin.clone(), why };
        let mut file = crate::input::open_regular(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(bad("not a regular file".into()));
        }
        let mut len_bytes = [0u8; 8];
        file.read_exact(&mut len_bytes).map_err(|_| bad("too short for a safetensors header".into()))?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER_BYTES || 8 + header_len > meta.len() {
            return Err(bad(format!("header of {header_len} bytes in a file of {} bytes", meta.len())));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        let header = std::str::from_utf8(&header).map_err(|e| bad(format!("header: {e}")))?;
        let metadata: safetensors::tensor::Metadata =
            serde_json::from_str(header).map_err(|e| bad(format!("header: {e}")))?;
        let data_start = 8 + header_len;
        let data_len = meta.len() - data_start;
        let mut tensors = HashMap::new();
        let mut entries: Vec<_> = metadata.tensors().into_iter().collect();
        entries.sort_by_key(|(_, info)| info.data_offsets.0);
        let mut piece = vec![0u8; READ_PIECE];
        for (key, info) in entries {
            // Bookkeeping, not a weight.
            if key.ends_with("num_batches_tracked") {
                continue;
            }
            if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                let dtype = format!("{:?}", info.dtype);
                return Err(Error::WeightDtype { origin: origin.clone(), key, dtype });
            }
            let width = ParamReader::width(info.dtype);
            let count = info.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let (begin, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
            if count.and_then(|c| c.checked_mul(width)) != Some((end.saturating_sub(begin)) as usize)
                || begin > end
                || end > data_len
            {
                let why = format!("tensor '{key}': shape {:?} and bytes {begin}..{end} disagree", info.shape);
                return Err(bad(why));
            }
            // Only now, with the shape backed by the file's bytes, is anything allocated for it.
            let mut reader = ParamReader::new(&origin, &key, info.dtype, &info.shape, precision)?;
            file.seek(SeekFrom::Start(data_start + begin)).map_err(io)?;
            let mut left = (end - begin) as usize;
            while left > 0 {
                let n = left.min(READ_PIECE);
                file.read_exact(&mut piece[..n]).map_err(io)?;
                reader.push(&piece[..n]);
                left -= n;
            }
            let param = reader.finish()?;
            tensors.insert(key, param);
        }
        Ok(Weights { origin_name: origin, origin: Origin::Tensors(tensors), precision })
    }

    /// Deterministic synthetic weights (see [`synthetic_value`]).
    pub fn synthetic() -> Self {
        Weights::synthetic_as(Precision::F32)
    }

    /// [`Weights::synthetic`] with weights (rank ≥ 2) held in `precision`.
    pub fn synthetic_as(precision: Precision) -> Self {
        Weights { origin_name: "the synthetic formula".into(), origin: Origin::Synthetic, precision }
    }

    /// Where these weights come from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin_name
    }

    /// Number of classes of the classifier `{logits}.weight` (`[classes, features]`), if present.
    pub fn classes(&self, logits: &str) -> Option<usize> {
        match &self.origin {
            Origin::Tensors(map) => {
                map.get(&format!("{logits}.weight")).filter(|t| t.shape().len() == 2).map(|t| t.shape()[0])
            }
            Origin::Synthetic => None,
        }
    }

    /// Takes the tensor `key`, which must have `shape`.
    pub fn take(&mut self, key: &str, shape: &[usize], init: Init) -> Result<Param> {
        match &mut self.origin {
            Origin::Synthetic => {
                let n: usize = shape.iter().product();
                let data = (0..n).map(|i| synthetic_value(key, i, init)).collect();
                let t = Tensor::from_shape_vec(IxDyn(shape), data).expect("length matches shape");
                // Synthetic weights are within ±√6, far inside f16's range.
                Ok(match HalfTensor::from_f32(&t, self.precision).filter(|_| shape.len() >= 2) {
                    Some(Ok(h)) => Param::Half(h),
                    _ => Param::F32(t),
                })
            }
            Origin::Tensors(map) => {
                let t = map.remove(key).ok_or_else(|| Error::MissingWeight {
                    origin: self.origin_name.clone(),
                    key: key.to_string(),
                    expected: shape.to_vec(),
                })?;
                if t.shape() != shape {
                    return Err(Error::WeightShape {
                        origin: self.origin_name.clone(),
                        key: key.to_string(),
                        expected: shape.to_vec(),
                        got: t.shape().to_vec(),
                    });
                }
                Ok(t)
            }
        }
    }

    /// Fails if tensors were left unused: the file belongs to another architecture or variant.
    pub fn finish(self, arch: &str) -> Result<()> {
        if let Origin::Tensors(map) = self.origin {
            if !map.is_empty() {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let examples = keys.iter().take(3).map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ");
                return Err(Error::UnexpectedWeights {
                    origin: self.origin_name,
                    arch: arch.to_string(),
                    count: map.len(),
                    examples,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_formula_matches_reference_values() {
        // Values computed independently in Python (arbitrary-precision integers, masked to 64 bits).
        assert_eq!(fnv1a("conv1.weight"), 0x69a2_9a2c_ee47_d254);
        assert_eq!(unit(fnv1a("conv1.weight"), 0), 0.5450749397277832);
        assert_eq!(unit(fnv1a("conv1.weight"), 1), 0.7451617121696472);
        assert_eq!(
            synthetic_value("bn1.running_var", 3, Init::BnVar),
            (0.5 + unit(fnv1a("bn1.running_var"), 3)) as f32
        );
    }

    #[test]
    fn garbage_and_truncated_files_are_errors() {
        assert!(matches!(Weights::from_safetensors(b"", "x"), Err(Error::Safetensors { .. })));
        // A header length of 2^60 bytes must not allocate.
        let mut absurd = (1u64 << 60).to_le_bytes().to_vec();
        absurd.extend_from_slice(b"{}");
        assert!(matches!(Weights::from_safetensors(&absurd, "x"), Err(Error::Safetensors { .. })));
    }

    #[test]
    fn a_header_claiming_a_huge_tensor_is_refused_before_allocating() {
        // The reader reserves a tensor's size only after the header's claim is checked against the file.
        let header = br#"{"w":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0u8; 4]);
        let path = std::env::temp_dir().join(format!("gradcam-huge-claim-{}.safetensors", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        for precision in [Precision::F32, Precision::F16] {
            let e = Weights::from_file_as(&path, precision).unwrap_err().to_string();
            // The header's own validation or the byte-range check: either way an error, never an allocation.
            assert!(e.contains("invalid shape") || (e.contains("'w'") && e.contains("disagree")), "{e}");
        }
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn a_file_read_piecewise_equals_the_same_bytes_in_memory() {
        let bytes = super::super::BUNDLED_WEIGHTS;
        let path = std::env::temp_dir().join(format!("gradcam-weights-{}.safetensors", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        let from_file = Weights::from_file(&path);
        // Truncated: the last tensor's bytes are missing.
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let truncated = Weights::from_file(&path);
        std::fs::remove_file(&path).ok();
        let (a, b) = (from_file.unwrap(), Weights::from_safetensors(bytes, "memory").unwrap());
        match (&a.origin, &b.origin) {
            (Origin::Tensors(x), Origin::Tensors(y)) => {
                assert_eq!(x.len(), y.len());
                assert!(x.len() > 100);
                for (k, t) in x {
                    assert_eq!(Some(t), y.get(k), "{k}");
                }
            }
            _ => panic!("tensors expected"),
        }
        assert!(matches!(truncated, Err(Error::Safetensors { .. })), "{truncated:?}");
    }
}
