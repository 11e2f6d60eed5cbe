//! Nodes that exist to compute shapes and constants (`Constant`, `Shape`, `ConstantOfShape`, `Cast`, `Range`):
//! evaluated at import time, never placed in the graph.

use super::attrs::Attrs;
use super::constant::{checked_shape, decode, Const, MAX_ELEMENTS};
use super::context::{const_ints, need_input, unsupported, Importer};
use super::proto::NodeProto;
use crate::error::Result;
use ndarray::{ArrayD, IxDyn};

/// Shape-arithmetic nodes that only make sense on constants.
pub(crate) fn shape_arithmetic(im: &mut Importer, n: &NodeProto) -> Result<Option<Const>> {
    let a = Attrs::of(n);
    Ok(Some(match n.op_type.as_str() {
        "Constant" => {
            if let Some(t) = a.tensor("value") {
                decode(t, im.dir, im.origin)?
            } else if a.has("value_float") {
                Const::F(ArrayD::from_elem(IxDyn(&[]), a.float("value_float", 0.0)))
            } else if let Some(v) = a.floats("value_floats") {
                Const::F(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"))
            } else if a.has("value_int") {
                Const::I(ArrayD::from_elem(IxDyn(&[]), a.int("value_int", 0)))
            } else if let Some(v) = a.ints("value_ints") {
                Const::I(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"))
            } else {
                return Err(unsupported(im, n, "a value kind other than tensor, float(s) or int(s)"));
            }
        }
        "Shape" => {
            let s = im.shape(need_input(im, n, 0)?, n)?;
            let rank = s.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let (start, end) = (clamp(a.int("start", 0)), clamp(a.int("end", rank)));
            let dims: Vec<i64> = s[start..end.max(start)].iter().map(|&d| d as i64).collect();
            Const::I(ArrayD::from_shape_vec(IxDyn(&[dims.len()]), dims).expect("1-D"))
        }
        "ConstantOfShape" => {
            let dims = const_ints(im, n, 0)?.unwrap_or_default();
            let shape =
                checked_shape(&dims, "ConstantOfShape").map_err(|e| im.err(format!("node '{}': {e}", n.name)))?;
            let value = a.tensor("value").map(|t| decode(t, im.dir, im.origin)).transpose()?;
            let width = if matches!(value, Some(Const::I(_))) { 8 } else { 4 };
            im.reserve_folded(n, shape.iter().product::<usize>() as u64 * width)?;
            match value {
                Some(Const::I(v)) => Const::I(ArrayD::from_elem(IxDyn(&shape), v.iter().next().copied().unwrap_or(0))),
                Some(c) => Const::F(ArrayD::from_elem(IxDyn(&shape), c.to_f32().iter().next().copied().unwrap_or(0.0))),
                None => Const::F(ArrayD::zeros(IxDyn(&shape))),
            }
        }
        "Cast" => {
            let input = need_input(im, n, 0)?;
            let Some(elements) = im.constant(input).map(|c| c.shape().iter().product::<usize>() as u64) else {
                return Ok(None);
            };
            // The copy, its conversion and the result.
            im.reserve_folded(n, elements * 16)?;
            let Some(c) = im.constant(input).cloned() else { return Ok(None) };
            let to = a.int("to", 1) as i32;
            use super::proto::dtype;
            match to {
                dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 | dtype::BFLOAT16 => Const::F(c.to_f32()),
                _ => match c {
                    Const::I(v) => Const::I(v),
                    other => Const::I(other.to_f32().mapv(|x| x.trunc() as i64)),
                },
            }
        }
        "Range" => {
            let vals: Vec<f64> = (0..3)
                .map(|i| {
                    let c = im
                        .constant(need_input(im, n, i)?)
                        .ok_or_else(|| unsupported(im, n, "inputs must be constant"))?;
                    Ok(c.to_f32().iter().next().copied().unwrap_or(0.0) as f64)
                })
                .collect::<Result<_>>()?;
            let (start, limit, delta) = (vals[0], vals[1], vals[2]);
            if delta == 0.0 {
                return Err(im.err(format!("node '{}': Range with delta 0", n.name)));
            }
            let count = ((limit - start) / delta).ceil().max(0.0);
            if count > MAX_ELEMENTS as f64 {
                return Err(im.err(format!("node '{}': Range of {count} elements", n.name)));
            }
            // The f64 values, then the constant (8 bytes per element each).
            im.reserve_folded(n, count as u64 * 16)?;
            let all_int = im.constant(&n.input[0]).is_some_and(|c| matches!(c, Const::I(_)));
            let v: Vec<f64> = (0..count as usize).map(|i| start + i as f64 * delta).collect();
            if all_int {
                Const::I(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.iter().map(|&x| x as i64).collect()).expect("1-D"))
            } else {
                Const::F(ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.iter().map(|&x| x as f32).collect()).expect("1-D"))
            }
        }
        _ => return Ok(None),
    }))
}
