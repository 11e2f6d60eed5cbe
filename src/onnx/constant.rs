//! Tensors known at import time: initializers, `Constant` nodes and everything folded from them.

use super::proto::{dtype, TensorProto};
use crate::error::{Error, Result};
use crate::tensor::HalfTensor;
use gradcam_kernels::{HalfVec, Precision};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::path::{Path, PathBuf};

/// Most elements a single tensor may claim (256 Mi elements, 1 GiB of f32; the largest layer of VGG-16 has 103 M):
/// anything larger is taken for a corrupt file.
pub const MAX_ELEMENTS: usize = 1 << 28;

/// A constant: floats (computed in f32), a weight held in 16 bits (`--weights f16|bf16`), or integers (shapes,
/// indices).
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    F(ArrayD<f32>),
    H(HalfTensor),
    I(ArrayD<i64>),
}

impl Const {
    pub fn shape(&self) -> &[usize] {
        match self {
            Const::F(a) => a.shape(),
            Const::H(h) => h.shape(),
            Const::I(a) => a.shape(),
        }
    }

    /// As floats (integers converted, 16-bit values widened).
    pub fn to_f32(&self) -> ArrayD<f32> {
        match self {
            Const::F(a) => a.clone(),
            Const::H(h) => h.widen(),
            Const::I(a) => a.mapv(|v| v as f32),
        }
    }

    /// As a flat list of integers (floats must be integral).
    pub fn to_i64s(&self) -> std::result::Result<Vec<i64>, String> {
        match self {
            Const::I(a) => Ok(a.iter().copied().collect()),
            Const::H(h) => Const::F(h.widen()).to_i64s(),
            Const::F(a) => a
                .iter()
                .map(|&v| {
                    if v.fract() == 0.0 && v.is_finite() {
                        Ok(v as i64)
                    } else {
                        Err(format!("{v} is not an integer"))
                    }
                })
                .collect(),
        }
    }
}

/// Validated shape of a tensor: non-negative dims, element count within [`MAX_ELEMENTS`].
pub fn checked_shape(dims: &[i64], what: &str) -> std::result::Result<Vec<usize>, String> {
    let mut count: usize = 1;
    let mut shape = Vec::with_capacity(dims.len());
    for &d in dims {
        if d < 0 {
            return Err(format!("{what} has a negative dimension {d} in {dims:?}"));
        }
        // Zero-sized dimensions count as 1 here: the other dimensions must stay addressable all the same.
        count = count
            .checked_mul((d as usize).max(1))
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| format!("{what} claims shape {dims:?}, more than {MAX_ELEMENTS} elements"))?;
        shape.push(d as usize);
    }
    Ok(shape)
}

/// A tensor's raw bytes in a file (external data, or the model file itself when its weights are left on disk).
#[derive(Clone, Debug)]
pub(crate) struct FileRange {
    pub path: PathBuf,
    pub offset: u64,
    pub length: u64,
}

/// Bytes read and converted at a time from a file: the raw bytes never exist whole.
const PIECE: usize = 4 << 20;

/// Where an externally stored tensor's bytes are, refusing paths outside the model's directory (that the range
/// lies inside a regular file is checked where it is read, as for every file range).
fn external_range(t: &TensorProto, dir: Option<&Path>) -> std::result::Result<FileRange, String> {
    let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.as_str());
    let location = get("location").ok_or("external tensor without a location")?;
    let rel = Path::new(location);
    if rel.is_absolute() || rel.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(format!("external data location '{location}' leaves the model's directory"));
    }
    let dir = dir.ok_or("external data needs the model's directory")?;
    // Resolved for real: a symbolic link inside the model's folder may not lead out of it.
    let real_dir = std::fs::canonicalize(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = std::fs::canonicalize(dir.join(rel)).map_err(|e| format!("{}: {e}", dir.join(rel).display()))?;
    if !path.starts_with(&real_dir) {
        return Err(format!("external data location '{location}' resolves outside the model's directory"));
    }
    let parse =
        |k: &str| get(k).map(|v| v.parse::<u64>().map_err(|e| format!("external data {k} '{v}': {e}"))).transpose();
    let offset = parse("offset")?.unwrap_or(0);
    let size = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?.len();
    let length = parse("length")?.unwrap_or(size.saturating_sub(offset));
    Ok(FileRange { path, offset, length })
}

/// Decoded values, before they get their shape.
enum Values {
    F(Vec<f32>),
    /// Floats rounded to 16 bits as they are read (never held whole in f32), and the index of the first finite
    /// value that overflowed the format.
    H(HalfVec, Option<usize>),
    I(Vec<i64>),
}

fn le<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    raw.chunks_exact(N).map(|c| std::array::from_fn(|i| c[i]))
}

/// Appends the elements of little-endian `raw` (whole elements) of ONNX type `data_type` to `out`.
fn convert(data_type: i32, raw: &[u8], out: &mut Values) {
    match out {
        Values::F(v) => match data_type {
            dtype::FLOAT => v.extend(le::<4>(raw).map(f32::from_le_bytes)),
            dtype::DOUBLE => v.extend(le::<8>(raw).map(|b| f64::from_le_bytes(b) as f32)),
            dtype::FLOAT16 => v.extend(le::<2>(raw).map(|b| f16::from_le_bytes(b).to_f32())),
            _ => v.extend(le::<2>(raw).map(|b| bf16::from_le_bytes(b).to_f32())),
        },
        // Stored as the file has them when the formats agree; otherwise through f32, a piece at a time.
        Values::H(HalfVec::F16(v), _) if data_type == dtype::FLOAT16 => v.extend(le::<2>(raw).map(f16::from_le_bytes)),
        Values::H(HalfVec::Bf16(v), _) if data_type == dtype::BFLOAT16 => {
            v.extend(le::<2>(raw).map(bf16::from_le_bytes))
        }
        Values::H(h, overflow) => {
            // A piece at a time (raw data held in memory can be a whole tensor): never the tensor in f32.
            let width = match data_type {
                dtype::DOUBLE => 8,
                dtype::FLOAT => 4,
                _ => 2,
            };
            for piece in raw.chunks(PIECE / 8 * width) {
                let mut wide = Values::F(Vec::with_capacity(piece.len() / width));
                convert(data_type, piece, &mut wide);
                if let Values::F(w) = wide {
                    let over = h.extend_checked(&w);
                    *overflow = overflow.or(over);
                }
            }
        }
        Values::I(v) => match data_type {
            dtype::INT64 => v.extend(le::<8>(raw).map(i64::from_le_bytes)),
            dtype::INT32 => v.extend(le::<4>(raw).map(|b| i32::from_le_bytes(b) as i64)),
            dtype::INT8 => v.extend(raw.iter().map(|&b| b as i8 as i64)),
            _ => v.extend(raw.iter().map(|&b| b as i64)),
        },
    }
}

/// Reads `range` (whose length the caller checked) piece by piece, converting as it goes.
fn convert_file(range: &FileRange, data_type: i32, width: usize, out: &mut Values) -> std::result::Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let shown = range.path.display();
    let mut f = crate::input::open_regular(&range.path).map_err(|e| format!("{shown}: {e}"))?;
    if !f.metadata().map_err(|e| format!("{shown}: {e}"))?.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    f.seek(SeekFrom::Start(range.offset)).map_err(|e| format!("{shown}: {e}"))?;
    let mut buf = vec![0u8; PIECE / width * width];
    let mut left = range.length as usize;
    while left > 0 {
        let n = left.min(buf.len());
        f.read_exact(&mut buf[..n]).map_err(|e| format!("{shown}: {e}"))?;
        convert(data_type, &buf[..n], out);
        left -= n;
    }
    Ok(())
}

/// Decodes a `TensorProto` (raw, typed or external storage).
pub fn decode(t: &TensorProto, dir: Option<&Path>, origin: &str) -> Result<Const> {
    decode_with(t, None, dir, origin, Precision::F32)
}

/// [`decode`], with the raw data at `in_file` when the message's own was left on disk.
pub(crate) fn decode_with(
    t: &TensorProto,
    in_file: Option<FileRange>,
    dir: Option<&Path>,
    origin: &str,
    weights: Precision,
) -> Result<Const> {
    let err = |why: String| Error::Onnx { origin: origin.to_string(), why: format!("tensor '{}': {why}", t.name) };
    let shape = checked_shape(&t.dims, "tensor").map_err(err)?;
    let count: usize = shape.iter().product();
    let file = if t.data_location == 1 { Some(external_range(t, dir).map_err(err)?) } else { in_file };
    let have_raw = file.is_some() || !t.raw_data.is_empty();
    let width = match t.data_type {
        dtype::FLOAT | dtype::INT32 => 4,
        dtype::INT64 | dtype::DOUBLE => 8,
        dtype::FLOAT16 | dtype::BFLOAT16 => 2,
        dtype::INT8 | dtype::UINT8 | dtype::BOOL => 1,
        other => return Err(err(format!("data type {other} is not supported"))),
    };
    let is_float = matches!(t.data_type, dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 | dtype::BFLOAT16);
    let values = if have_raw {
        let raw_len = file.as_ref().map_or(t.raw_data.len() as u64, |f| f.length);
        // Checked before anything is read or allocated.
        if raw_len != (count * width) as u64 {
            return Err(err(format!("holds {raw_len} bytes, shape {shape:?} needs {}", count * width)));
        }
        if let Some(f) = &file {
            let size = std::fs::metadata(&f.path).map_err(|e| err(format!("{}: {e}", f.path.display())))?.len();
            if f.offset.checked_add(f.length).is_none_or(|end| end > size) {
                let why =
                    format!("{}: range {}+{} exceeds the file's {size} bytes", f.path.display(), f.offset, f.length);
                return Err(err(why));
            }
        }
        // Float weights (rank ≥ 2) are read straight into 16 bits when asked to.
        let half = (is_float && shape.len() >= 2).then(|| HalfVec::with_capacity(weights, count)).flatten();
        let mut out = match half {
            Some(h) => Values::H(h, None),
            None if is_float => Values::F(Vec::with_capacity(count)),
            None => Values::I(Vec::with_capacity(count)),
        };
        match &file {
            Some(f) => convert_file(f, t.data_type, width, &mut out).map_err(err)?,
            None => convert(t.data_type, &t.raw_data, &mut out),
        }
        out
    } else {
        match t.data_type {
            dtype::FLOAT => Values::F(t.float_data.clone()),
            dtype::DOUBLE => Values::F(t.double_data.iter().map(|&v| v as f32).collect()),
            dtype::FLOAT16 => Values::F(t.int32_data.iter().map(|&v| f16::from_bits(v as u16).to_f32()).collect()),
            dtype::BFLOAT16 => Values::F(t.int32_data.iter().map(|&v| bf16::from_bits(v as u16).to_f32()).collect()),
            dtype::INT64 => Values::I(t.int64_data.clone()),
            _ => Values::I(t.int32_data.iter().map(|&v| v as i64).collect()),
        }
    };
    let len = match &values {
        Values::F(v) => v.len(),
        Values::H(h, _) => h.len(),
        Values::I(v) => v.len(),
    };
    if len != count {
        return Err(err(format!("holds {len} values, shape {shape:?} needs {count}")));
    }
    Ok(match values {
        Values::F(v) => Const::F(ArrayD::from_shape_vec(IxDyn(&shape), v).expect("count checked")),
        Values::H(h, Some(i)) => {
            let why = format!("value {i} is beyond the range of {} (largest finite: 65504)", h.precision());
            return Err(err(format!("{why}; load it with --weights bf16 or f32")));
        }
        Values::H(h, None) => Const::H(HalfTensor::new(shape, h).expect("count checked")),
        Values::I(v) => Const::I(ArrayD::from_shape_vec(IxDyn(&shape), v).expect("count checked")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_storage_form_decodes() {
        let typed =
            TensorProto { dims: vec![2], data_type: dtype::FLOAT, float_data: vec![1.5, -2.0], ..Default::default() };
        assert_eq!(
            decode(&typed, None, "t").unwrap(),
            Const::F(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.5, -2.0]).unwrap())
        );
        let raw = TensorProto {
            dims: vec![2],
            data_type: dtype::FLOAT16,
            raw_data: [f16::from_f32(0.5).to_le_bytes(), f16::from_f32(-3.0).to_le_bytes()].concat().into(),
            ..Default::default()
        };
        assert_eq!(decode(&raw, None, "t").unwrap().to_f32().iter().copied().collect::<Vec<_>>(), vec![0.5, -3.0]);
        let ints =
            TensorProto { dims: vec![3], data_type: dtype::INT64, int64_data: vec![1, -1, 7], ..Default::default() };
        assert_eq!(decode(&ints, None, "t").unwrap().to_i64s().unwrap(), vec![1, -1, 7]);
        let doubles =
            TensorProto { dims: vec![], data_type: dtype::DOUBLE, double_data: vec![0.25], ..Default::default() };
        assert_eq!(decode(&doubles, None, "t").unwrap().to_f32()[[]], 0.25);
        // Found by fuzzing: a zero dimension beside absurd ones is still refused.
        assert!(checked_shape(&[0, 1 << 40, 1 << 40], "t").is_err());
        let strings = TensorProto { dims: vec![1], data_type: 8, ..Default::default() };
        assert!(decode(&strings, None, "t").is_err());
    }

    #[test]
    fn external_data_reads_the_given_range() {
        let dir = std::env::temp_dir().join(format!("gradcam-ext-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes: Vec<u8> = [9.0f32, 1.0, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join("w.bin"), &bytes).unwrap();
        let entry = |k: &str, v: &str| super::super::proto::StringStringEntryProto { key: k.into(), value: v.into() };
        let t = TensorProto {
            dims: vec![2],
            data_type: dtype::FLOAT,
            data_location: 1,
            external_data: vec![entry("location", "w.bin"), entry("offset", "4"), entry("length", "8")],
            ..Default::default()
        };
        assert_eq!(decode(&t, Some(&dir), "t").unwrap().to_f32().iter().copied().collect::<Vec<_>>(), vec![1.0, 2.0]);
        let beyond = TensorProto {
            external_data: vec![entry("location", "w.bin"), entry("offset", "8"), entry("length", "8")],
            ..t
        };
        assert!(decode(&beyond, Some(&dir), "t").unwrap_err().to_string().contains("exceeds"));
    }
}
