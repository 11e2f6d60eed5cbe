//! Einsum: a sum of products over named axes (`"bhid,bhjd->bhij"`), as some transformer exports write attention.
//! Each operand's axes carry distinct letters (no diagonals); `...` stands for the same leading axes in every
//! operand and broadcasts; without `->` the output is every letter used once, in alphabetical order (numpy's rule).
//! The gradient of an operand is itself an einsum of the output gradient and the other operands.

use super::{Op, Outputs, Saves, Vjp};
use crate::error::OpError;
use crate::tensor::{broadcast_shapes, sum_to_shape, Tensor};
use crate::Element;
use ndarray::IxDyn;
use rayon::prelude::*;
use std::collections::BTreeMap;

/// A parsed einsum equation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Einsum {
    pub equation: String,
}

/// Letters for `...` axes (digits never appear in an equation's own letters).
const ELLIPSIS_LETTERS: &[u8] = b"0123456789";

/// Operand and output subscripts with `...` expanded for the given ranks.
fn parse(equation: &str, ranks: &[usize]) -> Result<(Vec<Vec<u8>>, Vec<u8>), OpError> {
    let bad = |why: String| OpError::attribute("equation", format!("'{equation}': {why}"));
    let eq: String = equation.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(bad(format!("{} operands for {} inputs", terms.len(), ranks.len())));
    }
    let ellipsis_rank = terms
        .iter()
        .zip(ranks)
        .filter(|(t, _)| t.contains("..."))
        .map(|(t, &r)| r.checked_sub(t.replace("...", "").len()).ok_or_else(|| bad("more letters than axes".into())))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(0);
    if ellipsis_rank > ELLIPSIS_LETTERS.len() {
        return Err(bad("too many axes under '...'".into()));
    }
    let expand = |term: &str, rank: usize| -> Result<Vec<u8>, OpError> {
        let letters = term.replace("...", "");
        if !letters.bytes().all(|b| b.is_ascii_alphabetic()) || term.matches("...").count() > 1 {
            return Err(bad(format!("subscripts '{term}'")));
        }
        let own = if term.contains("...") { rank - letters.len() } else { 0 };
        let dots = &ELLIPSIS_LETTERS[ellipsis_rank - own..ellipsis_rank];
        let subs: Vec<u8> = match term.split_once("...") {
            Some((a, b)) => a.bytes().chain(dots.iter().copied()).chain(b.bytes()).collect(),
            None => letters.bytes().collect(),
        };
        if subs.len() != rank {
            return Err(bad(format!("'{term}' names {} axes of an operand of rank {rank}", subs.len())));
        }
        let mut seen = subs.clone();
        seen.sort_unstable();
        if seen.windows(2).any(|w| w[0] == w[1]) {
            return Err(bad(format!("'{term}' repeats a letter (diagonals are not supported)")));
        }
        Ok(subs)
    };
    let inputs: Vec<Vec<u8>> = terms.iter().zip(ranks).map(|(t, &r)| expand(t, r)).collect::<Result<_, _>>()?;
    let output = match rhs {
        Some(r) => expand(&r, r.replace("...", "").len() + if r.contains("...") { ellipsis_rank } else { 0 })?,
        None => {
            let mut count: BTreeMap<u8, usize> = BTreeMap::new();
            for &l in inputs.iter().flatten() {
                *count.entry(l).or_default() += 1;
            }
            let dots = ELLIPSIS_LETTERS[..ellipsis_rank].iter().copied();
            dots.chain(count.into_iter().filter(|&(l, c)| c == 1 && l.is_ascii_alphabetic()).map(|(l, _)| l)).collect()
        }
    };
    if let Some(&l) = output.iter().find(|l| !inputs.iter().flatten().any(|x| x == *l)) {
        return Err(bad(format!("output letter '{}' names no input axis", l as char)));
    }
    Ok((inputs, output))
}

/// Each letter's size: equal across operands, or 1 (broadcast).
fn sizes(subs: &[Vec<u8>], shapes: &[&[usize]]) -> Result<BTreeMap<u8, usize>, OpError> {
    let mut size: BTreeMap<u8, usize> = BTreeMap::new();
    for (s, shape) in subs.iter().zip(shapes) {
        for (&l, &d) in s.iter().zip(shape.iter()) {
            let e = size.entry(l).or_insert(d);
            match broadcast_shapes(&[*e], &[d]) {
                Some(b) => *e = b[0],
                None => return Err(OpError::shape(format!("axis '{}' has sizes {e} and {d}", l as char), shapes)),
            }
        }
    }
    Ok(size)
}

/// `Σ Π operands` over the letters not in `out`, for every index of `out` (each operand read with stride 0 along
/// its size-1 axes).
fn contract<T: Element>(ops: &[(&Tensor<T>, &[u8])], out: &[u8], size: &BTreeMap<u8, usize>) -> Tensor<T> {
    let summed: Vec<u8> =
        size.keys().copied().filter(|l| !out.contains(l) && ops.iter().any(|(_, s)| s.contains(l))).collect();
    let dims = |ls: &[u8]| ls.iter().map(|l| size[l]).collect::<Vec<_>>();
    let (out_dims, sum_dims) = (dims(out), dims(&summed));
    let data: Vec<Vec<T>> = ops.iter().map(|(t, _)| t.iter().copied().collect()).collect();
    // Per operand, the stride of every output and summed letter (0 when absent or of size 1).
    let strides = |ls: &[u8]| -> Vec<Vec<usize>> {
        ops.iter()
            .map(|(t, s)| {
                let mut st = vec![0usize; s.len()];
                let mut acc = 1;
                for k in (0..s.len()).rev() {
                    st[k] = if t.shape()[k] == 1 { 0 } else { acc };
                    acc *= t.shape()[k];
                }
                ls.iter().map(|l| s.iter().position(|x| x == l).map_or(0, |k| st[k])).collect()
            })
            .collect()
    };
    let (out_strides, sum_strides) = (strides(out), strides(&summed));
    let total: usize = out_dims.iter().product();
    let sum_total: usize = sum_dims.iter().product();
    let values: Vec<T> = (0..total)
        .into_par_iter()
        .map(|flat| {
            // Operand offsets at this output index.
            let mut rest = flat;
            let mut base = vec![0usize; ops.len()];
            for k in (0..out_dims.len()).rev() {
                let i = rest % out_dims[k];
                rest /= out_dims[k];
                for (b, st) in base.iter_mut().zip(&out_strides) {
                    *b += i * st[k];
                }
            }
            let mut acc = T::zero();
            for s in 0..sum_total {
                let mut rest = s;
                let mut off = base.clone();
                for k in (0..sum_dims.len()).rev() {
                    let i = rest % sum_dims[k];
                    rest /= sum_dims[k];
                    for (o, st) in off.iter_mut().zip(&sum_strides) {
                        *o += i * st[k];
                    }
                }
                acc += off.iter().zip(&data).fold(T::one(), |p, (&o, d)| p * d[o]);
            }
            acc
        })
        .collect();
    Tensor::from_shape_vec(IxDyn(&out_dims), values).expect("output size")
}

impl<T: Element> Op<T> for Einsum {
    fn op_type(&self) -> &'static str {
        "Einsum"
    }

    fn output_shapes(&self, inputs: &[&[usize]]) -> Result<Vec<Vec<usize>>, OpError> {
        if inputs.is_empty() {
            return Err(OpError::shape("at least one operand", inputs));
        }
        let ranks: Vec<usize> = inputs.iter().map(|s| s.len()).collect();
        let (subs, out) = parse(&self.equation, &ranks)?;
        let size = sizes(&subs, inputs)?;
        Ok(vec![out.iter().map(|l| size[l]).collect()])
    }

    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<Outputs<T>, OpError> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let ranks: Vec<usize> = shapes.iter().map(|s| s.len()).collect();
        let (subs, out) = parse(&self.equation, &ranks)?;
        let size = sizes(&subs, &shapes)?;
        let ops: Vec<(&Tensor<T>, &[u8])> = inputs.iter().copied().zip(subs.iter().map(Vec::as_slice)).collect();
        Ok(Outputs::one(contract(&ops, &out, &size)))
    }

    /// Every operand's gradient reads the others.
    fn saves(&self, wanted: &[bool]) -> Saves {
        Saves { inputs: vec![true; wanted.len()], outputs: false }
    }

    fn backward(&self, cx: &Vjp<'_, T>) -> Result<Vec<Option<Tensor<T>>>, OpError> {
        let ranks: Vec<usize> = cx.input_shapes.iter().map(|s| s.len()).collect();
        let (subs, out) = parse(&self.equation, &ranks)?;
        let size = sizes(&subs, &cx.input_shapes)?;
        let g = cx.grad()?;
        let inputs: Vec<&Tensor<T>> = (0..ranks.len()).map(|i| cx.input(i)).collect::<Result<_, _>>()?;
        (0..ranks.len())
            .map(|k| {
                if !cx.wants(k) {
                    return Ok(None);
                }
                // ∂/∂operand k: the output gradient times every other operand, summed onto k's letters that they
                // name; a letter only k has is a plain sum, so its gradient repeats along it.
                let mut ops: Vec<(&Tensor<T>, &[u8])> = vec![(g, out.as_slice())];
                ops.extend((0..ranks.len()).filter(|&j| j != k).map(|j| (inputs[j], subs[j].as_slice())));
                let named: Vec<u8> =
                    subs[k].iter().copied().filter(|l| ops.iter().any(|(_, s)| s.contains(l))).collect();
                let partial = contract(&ops, &named, &size);
                let full: Vec<usize> = subs[k].iter().map(|l| size[l]).collect();
                let mut view_shape = full.clone();
                for (d, l) in view_shape.iter_mut().zip(&subs[k]) {
                    if !named.contains(l) {
                        *d = 1;
                    }
                }
                let shaped = partial
                    .into_shape_with_order(IxDyn(&view_shape))
                    .map_err(|e| OpError::Invalid(e.to_string()))?
                    .broadcast(IxDyn(&full))
                    .ok_or_else(|| OpError::Invalid("gradient broadcast".into()))?
                    .to_owned();
                Ok(Some(sum_to_shape(shaped, cx.input_shapes[k])))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{check_vjp, Rng};

    fn run(eq: &str, inputs: &[&Tensor<f64>]) -> Tensor<f64> {
        Op::<f64>::forward(&Einsum { equation: eq.into() }, inputs).unwrap().values.remove(0)
    }

    #[test]
    fn matches_matrix_products_transposes_traces_and_outer_products() {
        let mut rng = Rng::new(75);
        let a = rng.tensor(&[2, 3], -1.0, 1.0);
        let b = rng.tensor(&[3, 4], -1.0, 1.0);
        let a2 = a.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
        let b2 = b.clone().into_dimensionality::<ndarray::Ix2>().unwrap();
        let close = |x: &Tensor<f64>, y: &Tensor<f64>| {
            x.shape() == y.shape() && x.iter().zip(y.iter()).all(|(p, q)| (p - q).abs() < 1e-12)
        };
        assert!(close(&run("ij,jk->ik", &[&a, &b]), &a2.dot(&b2).into_dyn()));
        assert!(close(&run("ij,jk", &[&a, &b]), &a2.dot(&b2).into_dyn()), "implicit output");
        assert!(close(&run("ij->ji", &[&a]), &a2.t().to_owned().into_dyn()));
        assert!((run("ij->", &[&a])[[]] - a.sum()).abs() < 1e-12);
        let outer = run(
            "i,j->ij",
            &[&a.index_axis(ndarray::Axis(0), 0).to_owned(), &b.index_axis(ndarray::Axis(1), 0).to_owned()],
        );
        assert_eq!(outer.shape(), [3, 3]);
        // Batched attention scores with an ellipsis: [..., i, d] × [..., j, d] → [..., i, j].
        let q = rng.tensor(&[2, 2, 3, 4], -1.0, 1.0);
        let k = rng.tensor(&[2, 2, 5, 4], -1.0, 1.0);
        let s = run("...id,...jd->...ij", &[&q, &k]);
        assert_eq!(s.shape(), [2, 2, 3, 5]);
        let want: f64 = (0..4).map(|d| q[[1, 0, 2, d]] * k[[1, 0, 4, d]]).sum();
        assert!((s[[1, 0, 2, 4]] - want).abs() < 1e-12);
    }

    #[test]
    fn vjp_matches_finite_differences() {
        let mut rng = Rng::new(76);
        let cases: Vec<(&str, Vec<Vec<usize>>)> = vec![
            ("bhid,bhjd->bhij", vec![vec![1, 2, 3, 4], vec![1, 2, 5, 4]]),
            ("ij,j->i", vec![vec![3, 4], vec![4]]),
            ("ij->", vec![vec![2, 3]]),
            ("ik,jk->", vec![vec![2, 3], vec![4, 3]]),
            ("...d,d->...", vec![vec![2, 3, 4], vec![4]]),
            ("ab,cb->ac", vec![vec![1, 3], vec![2, 3]]),
            ("bij,bjk->bik", vec![vec![1, 2, 3], vec![3, 3, 2]]),
        ];
        for (eq, shapes) in cases {
            let inputs: Vec<Tensor<f64>> = shapes.iter().map(|s| rng.tensor(s, -1.0, 1.0)).collect();
            let wanted = vec![true; inputs.len()];
            check_vjp(&Einsum { equation: eq.into() }, &inputs, &wanted, 3);
        }
    }

    #[test]
    fn bad_equations_are_errors() {
        for (eq, shapes) in [
            ("ii->i", vec![vec![2, 2]]),
            ("ij,jk->ik", vec![vec![2, 3]]),
            ("ij->k", vec![vec![2, 3]]),
            ("ij,jk->ik", vec![vec![2, 3], vec![4, 2]]),
            ("i1->i", vec![vec![2, 3]]),
        ] {
            let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
            assert!(Op::<f64>::output_shapes(&Einsum { equation: eq.into() }, &refs).is_err(), "{eq}");
        }
    }
}
