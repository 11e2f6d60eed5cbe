//! One streaming pass over an `.onnx` file that leaves the weights on disk.
//!
//! The model's structure (nodes, attributes, names, small tensors) is copied into a buffer for the protobuf decoder,
//! while the raw data of every initializer is skipped and only its position recorded: the weights are then read
//! straight from the file into their f32 tensors, a few megabytes at a time. So the file, the decoded message and
//! the tensors never coexist — loading needs little more memory than the weights themselves.
//!
//! Only the path `ModelProto.graph (7) → GraphProto.initializer (5) → TensorProto.raw_data (9)` is rewritten
//! (enclosing lengths recomputed); every other field is copied as it is and validated by the decoder afterwards.
//! Every length is checked against the enclosing message before anything is read or allocated.

use std::fs::File;
use std::io::{BufReader, Read};

/// Where an initializer's raw data lies in the file: `(offset, length)` in bytes.
pub(crate) type RawRange = (u64, u64);

/// The file without its initializers' raw data, and where each initializer's raw data is (in initializer order;
/// `None` for an initializer whose data is typed, external or absent).
pub(crate) struct Pruned {
    pub message: Vec<u8>,
    pub raw: Vec<Option<RawRange>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Model,
    Graph,
    Tensor,
}

struct Reader {
    r: BufReader<File>,
    pos: u64,
}

impl Reader {
    fn byte(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.r.read_exact(&mut b).map_err(|e| format!("truncated protobuf at byte {}: {e}", self.pos))?;
        self.pos += 1;
        Ok(b[0])
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    /// Copies `n` bytes (which the caller checked lie inside the enclosing message) to `out`.
    fn copy(&mut self, n: u64, out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        self.r.by_ref().take(n).read_to_end(out).map_err(|e| e.to_string())?;
        if (out.len() - start) as u64 != n {
            return Err(format!("truncated protobuf at byte {}", self.pos));
        }
        self.pos += n;
        Ok(())
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        let n = i64::try_from(n).map_err(|_| "length out of range".to_string())?;
        self.r.seek_relative(n).map_err(|e| e.to_string())?;
        self.pos += n as u64;
        Ok(())
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field's length, checked against the end of the enclosing message.
fn length(rd: &mut Reader, end: u64) -> Result<u64, String> {
    let len = rd.varint()?;
    if rd.pos.checked_add(len).is_none_or(|e| e > end) {
        return Err(format!("field of {len} bytes at byte {} runs past its message (ends at {end})", rd.pos));
    }
    Ok(len)
}

fn message(
    rd: &mut Reader,
    end: u64,
    level: Level,
    out: &mut Vec<u8>,
    raw: &mut Vec<Option<RawRange>>,
) -> Result<(), String> {
    while rd.pos < end {
        let key = rd.varint()?;
        let (field, wire) = (key >> 3, key & 7);
        let nested = match (level, field, wire) {
            (Level::Model, 7, 2) => Some(Level::Graph),
            (Level::Graph, 5, 2) => Some(Level::Tensor),
            _ => None,
        };
        if let Some(inner_level) = nested {
            let len = length(rd, end)?;
            if inner_level == Level::Tensor {
                raw.push(None);
            }
            let mut inner = Vec::new();
            message(rd, rd.pos + len, inner_level, &mut inner, raw)?;
            put_varint(out, key);
            put_varint(out, inner.len() as u64);
            out.extend_from_slice(&inner);
            continue;
        }
        if (level, field, wire) == (Level::Tensor, 9, 2) {
            let len = length(rd, end)?;
            if let Some(slot) = raw.last_mut() {
                *slot = Some((rd.pos, len));
            }
            rd.skip(len)?;
            continue;
        }
        put_varint(out, key);
        match wire {
            0 => put_varint(out, rd.varint()?),
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if rd.pos + n > end {
                    return Err(format!("fixed-width field at byte {} runs past its message", rd.pos));
                }
                rd.copy(n, out)?;
            }
            2 => {
                let len = length(rd, end)?;
                put_varint(out, len);
                rd.copy(len, out)?;
            }
            other => return Err(format!("unsupported protobuf wire type {other} at byte {}", rd.pos)),
        }
    }
    if rd.pos != end {
        return Err(format!("a field runs past its message at byte {end}"));
    }
    Ok(())
}

/// Reads `file` once, keeping everything but the initializers' raw data.
pub(crate) fn prune(file: File) -> Result<Pruned, String> {
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut rd = Reader { r: BufReader::with_capacity(1 << 16, file), pos: 0 };
    let (mut message_bytes, mut raw) = (Vec::new(), Vec::new());
    message(&mut rd, len, Level::Model, &mut message_bytes, &mut raw)?;
    Ok(Pruned { message: message_bytes, raw })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{GraphProto, ModelProto, NodeProto, TensorProto};
    use prost::Message;

    #[test]
    fn keeps_the_structure_and_finds_every_raw_range() {
        let raw = |n: usize, seed: u8| -> Vec<u8> { (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect() };
        let tensors = vec![
            TensorProto {
                name: "a".into(),
                dims: vec![3],
                data_type: 1,
                raw_data: raw(12, 3).into(),
                ..Default::default()
            },
            TensorProto {
                name: "typed".into(),
                dims: vec![2],
                data_type: 1,
                float_data: vec![1.0, 2.0],
                ..Default::default()
            },
            TensorProto {
                name: "big".into(),
                dims: vec![100_000],
                data_type: 1,
                raw_data: raw(400_000, 7).into(),
                ..Default::default()
            },
        ];
        let model = ModelProto {
            ir_version: 8,
            producer_name: "test".into(),
            graph: Some(GraphProto {
                name: "g".into(),
                node: vec![NodeProto {
                    op_type: "Relu".into(),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                initializer: tensors.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = model.encode_to_vec();
        let path = std::env::temp_dir().join(format!("gradcam-prune-{}.onnx", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let pruned = prune(File::open(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).ok();
        assert!(pruned.message.len() < 1000, "raw data left out: {} bytes", pruned.message.len());
        let decoded = ModelProto::decode(&pruned.message[..]).unwrap();
        let g = decoded.graph.unwrap();
        assert_eq!(g.node, model.graph.as_ref().unwrap().node);
        assert_eq!(g.initializer.len(), 3);
        assert_eq!(g.initializer[1], tensors[1]);
        assert_eq!(pruned.raw.len(), 3);
        assert!(pruned.raw[1].is_none());
        for i in [0, 2] {
            let (offset, len) = pruned.raw[i].unwrap();
            let want = &tensors[i].raw_data;
            assert_eq!(&bytes[offset as usize..(offset + len) as usize], &want[..]);
            assert!(g.initializer[i].raw_data.is_empty());
            assert_eq!(g.initializer[i].dims, tensors[i].dims);
        }
    }

    #[test]
    fn lengths_past_their_message_are_errors() {
        let path = std::env::temp_dir().join(format!("gradcam-prune-bad-{}.onnx", std::process::id()));
        // graph field (7, wire 2) claiming 1000 bytes in a 5-byte file; then a 12-byte varint.
        for bad in
            [vec![0x3a, 0xe8, 0x07, 0, 0], vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]]
        {
            std::fs::write(&path, &bad).unwrap();
            assert!(prune(File::open(&path).unwrap()).is_err());
        }
        std::fs::remove_file(&path).ok();
    }
}
