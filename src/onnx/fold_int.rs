//! Integer and boolean arithmetic on constants (`Mod`, `Not`, `And`, `Or`, `Xor`, comparisons, `Where`,
//! `ScatterND`): the shape logic that transformer exports compute at run time in PyTorch (`Shape` → `Equal` →
//! `Where` → `Reshape`, Swin's attention mask by `ScatterND`) and that is known once the input size is. Evaluated
//! exactly in i64 here; the same ops on floats go through the engine's ops (folded or run).

use super::attrs::Attrs;
use super::constant::Const;
use super::context::{input, unsupported, Importer};
use super::proto::NodeProto;
use crate::error::Result;
use crate::ops::Comparison;
use crate::tensor::broadcast_shapes;
use ndarray::{ArrayD, IxDyn, Zip};

/// The node's value when it is one of the ops above and its inputs allow exact evaluation, else `None`.
pub(crate) fn fold(im: &mut Importer, n: &NodeProto) -> Result<Option<Const>> {
    let op = n.op_type.as_str();
    if !matches!(
        op,
        "Mod"
            | "Not"
            | "And"
            | "Or"
            | "Xor"
            | "Equal"
            | "Less"
            | "Greater"
            | "LessOrEqual"
            | "GreaterOrEqual"
            | "Where"
            | "ScatterND"
    ) {
        return Ok(None);
    }
    let consts: Option<Vec<Const>> =
        (0..n.input.len()).map(|i| input(n, i).and_then(|name| im.constant(name)).cloned()).collect();
    let Some(consts) = consts else {
        return match op {
            "Mod" | "Not" | "And" | "Or" | "Xor" | "ScatterND" => {
                Err(unsupported(im, n, "only on constants (shape logic known at import)"))
            }
            // Comparisons and Where on computed values are engine ops.
            _ => Ok(None),
        };
    };
    let logical = matches!(op, "Not" | "And" | "Or" | "Xor");
    let ints: Option<Vec<ArrayD<i64>>> = consts
        .iter()
        .map(|c| match c {
            Const::I(a) => Some(a.clone()),
            // Booleans that went through a float op are still booleans.
            other if logical => Some(other.to_f32().mapv(|v| (v != 0.0) as i64)),
            _ => None,
        })
        .collect();
    let elements: u64 = consts.iter().map(|c| c.shape().iter().product::<usize>() as u64).sum();
    // The result's size before anything is computed: broadcasting two small constants can make a huge one.
    let shapes: Vec<&[usize]> = consts.iter().map(|c| c.shape()).collect();
    let result: u64 = match op {
        "ScatterND" => shapes.first().map_or(0, |s| s.iter().product::<usize>() as u64),
        _ => {
            let shape = shapes.iter().try_fold(Vec::new(), |acc: Vec<usize>, s| broadcast_shapes(&acc, s));
            match shape.map(|s| s.iter().try_fold(1usize, |a, &d| a.checked_mul(d))) {
                Some(Some(count)) if count <= super::constant::MAX_ELEMENTS => count as u64,
                _ => {
                    return Err(im.err(format!("node '{}' ({op}): folding would make a constant of {shapes:?}", n.name)))
                }
            }
        }
    };
    // The operands' copies (and their broadcast copies, Where's three) and the 8-byte result.
    im.reserve_folded(n, elements * 16 + result * 32)?;
    let wrong = |why: String| im.err(format!("node '{}' ({op}): {why}", n.name));
    let arity = |k: usize| if consts.len() == k { Ok(()) } else { Err(wrong(format!("needs {k} inputs"))) };
    let value = match (op, ints) {
        ("ScatterND", _) => {
            arity(3)?;
            return scatter_nd(&consts).map(Some).map_err(wrong);
        }
        ("Where", Some(v)) => {
            arity(3)?;
            Const::I(broadcast3(&v[0], &v[1], &v[2], |c, x, y| if c != 0 { x } else { y }).map_err(wrong)?)
        }
        ("Not", Some(v)) => {
            arity(1)?;
            Const::I(v[0].mapv(|x| (x == 0) as i64))
        }
        ("Mod", Some(v)) => {
            arity(2)?;
            let c_style = Attrs::of(n).int("fmod", 0) != 0;
            if v[1].iter().any(|&d| d == 0) {
                return Err(wrong("division by zero".into()));
            }
            Const::I(broadcast2(&v[0], &v[1], |a, b| modulo(a, b, c_style)).map_err(wrong)?)
        }
        ("And" | "Or" | "Xor", Some(v)) => {
            arity(2)?;
            let f = match op {
                "And" => |a: bool, b: bool| a && b,
                "Or" => |a: bool, b: bool| a || b,
                _ => |a: bool, b: bool| a != b,
            };
            Const::I(broadcast2(&v[0], &v[1], |a, b| f(a != 0, b != 0) as i64).map_err(wrong)?)
        }
        (_, Some(v)) if op != "Where" => {
            arity(2)?;
            let kind = comparison(op);
            Const::I(broadcast2(&v[0], &v[1], |a, b| kind.holds(a, b) as i64).map_err(wrong)?)
        }
        ("Mod", None) => {
            arity(2)?;
            let (a, b) = (consts[0].to_f32(), consts[1].to_f32());
            let c_style = Attrs::of(n).int("fmod", 0) != 0;
            if !c_style {
                return Err(unsupported(im, n, "floating-point operands need fmod=1"));
            }
            let out = broadcast2(&a, &b, |x, y| x % y).map_err(wrong)?;
            Const::F(out)
        }
        // Mixed or floating operands of a comparison or Where: the engine op folds them.
        _ => return Ok(None),
    };
    Ok(Some(value))
}

/// The comparison an ONNX op name stands for (only called with one of them).
pub(crate) fn comparison(op: &str) -> Comparison {
    match op {
        "Equal" => Comparison::Equal,
        "Less" => Comparison::Less,
        "Greater" => Comparison::Greater,
        "LessOrEqual" => Comparison::LessOrEqual,
        _ => Comparison::GreaterOrEqual,
    }
}

/// ONNX Mod on integers: the sign of the divisor (Python's `%`) unless `fmod`, the sign of the dividend (C's `%`).
fn modulo(a: i64, b: i64, c_style: bool) -> i64 {
    let r = a.wrapping_rem(b);
    if c_style || r == 0 || (r < 0) == (b < 0) {
        r
    } else {
        r + b
    }
}

fn broadcast2<A: Copy, B: Copy>(
    a: &ArrayD<A>,
    b: &ArrayD<A>,
    f: impl Fn(A, A) -> B,
) -> std::result::Result<ArrayD<B>, String> {
    let shape = broadcast_shapes(a.shape(), b.shape()).ok_or("shapes cannot be broadcast together")?;
    let (av, bv) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape)));
    let (av, bv) = av.zip(bv).ok_or("shapes cannot be broadcast together")?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

fn broadcast3(
    c: &ArrayD<i64>,
    x: &ArrayD<i64>,
    y: &ArrayD<i64>,
    f: impl Fn(i64, i64, i64) -> i64,
) -> std::result::Result<ArrayD<i64>, String> {
    let shape = broadcast_shapes(c.shape(), x.shape())
        .and_then(|s| broadcast_shapes(&s, y.shape()))
        .ok_or("condition, x and y cannot be broadcast together")?;
    let view = |t: &ArrayD<i64>| t.broadcast(IxDyn(&shape)).map(|v| v.to_owned());
    let (cv, xv, yv) = match (view(c), view(x), view(y)) {
        (Some(c), Some(x), Some(y)) => (c, x, y),
        _ => return Err("condition, x and y cannot be broadcast together".into()),
    };
    Ok(Zip::from(&cv).and(&xv).and(&yv).map_collect(|&c, &x, &y| f(c, x, y)))
}

/// ScatterND (reduction "none"): a copy of `data` with the slices addressed by `indices` replaced by `updates`.
fn scatter_nd(consts: &[Const]) -> std::result::Result<Const, String> {
    let indices = consts[1].to_i64s()?;
    let index_shape = consts[1].shape();
    let depth = *index_shape.last().ok_or("indices must have rank ≥ 1")?;
    let data_shape = consts[0].shape().to_vec();
    if depth == 0 || depth > data_shape.len() {
        return Err(format!("index depth {depth} for data of rank {}", data_shape.len()));
    }
    let slice: usize = data_shape[depth..].iter().product();
    let count = indices.len() / depth;
    let updates_shape = consts[2].shape();
    let want: Vec<usize> = index_shape[..index_shape.len() - 1].iter().chain(&data_shape[depth..]).copied().collect();
    if updates_shape != want.as_slice() {
        return Err(format!("updates shape {updates_shape:?}, expected {want:?}"));
    }
    // Row-major offset of each addressed slice.
    let offsets: Vec<usize> = indices
        .chunks(depth)
        .map(|idx| {
            idx.iter().enumerate().try_fold(0usize, |acc, (axis, &i)| {
                let d = data_shape[axis] as i64;
                let i = if i < 0 { i + d } else { i };
                if !(0..d).contains(&i) {
                    return Err(format!("index {i} out of range for axis {axis} of size {d}"));
                }
                Ok(acc * data_shape[axis] + i as usize)
            })
        })
        .collect::<std::result::Result<_, String>>()?;
    debug_assert_eq!(offsets.len(), count);
    fn scatter<T: Copy>(data: &ArrayD<T>, updates: &ArrayD<T>, offsets: &[usize], slice: usize) -> ArrayD<T> {
        let mut out = data.as_standard_layout().into_owned();
        let dst = out.as_slice_mut().expect("standard layout");
        let src: Vec<T> = updates.iter().copied().collect();
        for (k, &o) in offsets.iter().enumerate() {
            dst[o * slice..(o + 1) * slice].copy_from_slice(&src[k * slice..(k + 1) * slice]);
        }
        out
    }
    Ok(match (&consts[0], &consts[2]) {
        (Const::I(d), Const::I(u)) => Const::I(scatter(d, u, &offsets, slice)),
        (d, u) => Const::F(scatter(&d.to_f32(), &u.to_f32(), &offsets, slice)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modulo_follows_the_divisor_or_the_dividend() {
        assert_eq!(
            [modulo(7, 3, false), modulo(-7, 3, false), modulo(7, -3, false), modulo(-7, -3, false)],
            [1, 2, -2, -1]
        );
        assert_eq!([modulo(7, 3, true), modulo(-7, 3, true), modulo(7, -3, true)], [1, -1, 1]);
    }

    #[test]
    fn scatter_nd_replaces_addressed_slices() {
        let data = Const::I(ArrayD::from_shape_vec(IxDyn(&[3, 2]), vec![0, 0, 0, 0, 0, 0]).unwrap());
        let idx = Const::I(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![2, 0]).unwrap());
        let upd = Const::I(ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![5, 6, 7, 8]).unwrap());
        let Const::I(out) = scatter_nd(&[data, idx, upd]).unwrap() else { panic!("integer data stays integer") };
        assert_eq!(out.iter().copied().collect::<Vec<_>>(), [7, 8, 0, 0, 5, 6]);
    }

    #[test]
    fn scatter_nd_refuses_out_of_range_indices() {
        let data = Const::F(ArrayD::zeros(IxDyn(&[2])));
        let idx = Const::I(ArrayD::from_shape_vec(IxDyn(&[1, 1]), vec![5]).unwrap());
        let upd = Const::F(ArrayD::zeros(IxDyn(&[1])));
        assert!(scatter_nd(&[data, idx, upd]).unwrap_err().contains("out of range"));
    }
}
