//! Test helpers: a seeded generator and the finite-difference check every op's VJP must pass.

use super::{Op, Vjp};
use crate::tensor::Tensor;
use ndarray::IxDyn;

/// Seeded test data from the library's SplitMix64.
pub struct Rng(crate::random::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(crate::random::SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `lo..=hi`.
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// A tensor with entries uniform in `[lo, hi)`.
    pub fn tensor(&mut self, shape: &[usize], lo: f64, hi: f64) -> Tensor<f64> {
        Tensor::from_shape_fn(IxDyn(shape), |_| self.uniform(lo, hi))
    }
}

fn loss(op: &dyn Op<f64>, inputs: &[Tensor<f64>], cotangents: &[Tensor<f64>]) -> f64 {
    let refs: Vec<&Tensor<f64>> = inputs.iter().collect();
    let out = op.forward(&refs).expect("forward");
    out.values.iter().zip(cotangents).map(|(y, r)| (y * r).sum()).sum()
}

/// Checks `op`'s vector-Jacobian product against central finite differences, in f64, for the inputs flagged in
/// `check`. Also checks that forward agrees with the shape rule. Up to 40 entries per input are probed.
pub fn check_vjp(op: &dyn Op<f64>, inputs: &[Tensor<f64>], check: &[bool], seed: u64) {
    let mut rng = Rng::new(seed);
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let expected = op.output_shapes(&shapes).expect("shape rule accepts the inputs");
    let refs: Vec<&Tensor<f64>> = inputs.iter().collect();
    let out = op.forward(&refs).expect("forward");
    for (y, s) in out.values.iter().zip(&expected) {
        assert_eq!(y.shape(), s.as_slice(), "{}: forward shape disagrees with the shape rule", op.op_type());
    }
    let cotangents: Vec<Tensor<f64>> = out.values.iter().map(|y| rng.tensor(y.shape(), -1.0, 1.0)).collect();
    let saves = op.saves(check);
    // What the executor keeps for the backward: the op's own saved state, or the one-bit mask it asks for.
    let mask = op.mask_interval().map(|(lo, hi)| crate::ops::Mask::open_interval(&out.values[0], lo, hi));
    let saved: Option<&(dyn std::any::Any + Send + Sync)> = match (&out.saved, &mask) {
        (Some(s), _) => Some(s.as_ref()),
        (None, Some(m)) => Some(m),
        (None, None) => None,
    };
    let cx = Vjp {
        inputs: inputs.iter().zip(&saves.inputs).map(|(t, &keep)| keep.then_some(t)).collect(),
        input_shapes: shapes.clone(),
        outputs: out.values.iter().map(|y| saves.outputs.then_some(y)).collect(),
        saved,
        output_grads: cotangents.iter().map(Some).collect(),
        wanted: check,
    };
    let grads = op.backward(&cx).expect("backward");
    let h = 1e-6;
    for (i, &wanted) in check.iter().enumerate() {
        if !wanted {
            continue;
        }
        let g = grads
            .get(i)
            .and_then(|g| g.as_ref())
            .unwrap_or_else(|| panic!("{}: no gradient for input {i}", op.op_type()));
        assert_eq!(g.shape(), inputs[i].shape(), "{}: gradient shape of input {i}", op.op_type());
        let g = g.as_standard_layout();
        let len = inputs[i].len();
        let probes: Vec<usize> =
            if len <= 40 { (0..len).collect() } else { (0..40).map(|_| rng.int(0, len - 1)).collect() };
        for flat in probes {
            let mut plus = inputs.to_vec();
            let mut minus = inputs.to_vec();
            plus[i].as_slice_mut().expect("standard layout")[flat] += h;
            minus[i].as_slice_mut().expect("standard layout")[flat] -= h;
            let numeric = (loss(op, &plus, &cotangents) - loss(op, &minus, &cotangents)) / (2.0 * h);
            let analytic = g.as_slice().expect("standard layout gradient")[flat];
            assert!(
                (analytic - numeric).abs() <= 1e-6 + 1e-5 * numeric.abs(),
                "{}: d/d input {i}[{flat}]: analytic {analytic} vs finite difference {numeric}",
                op.op_type()
            );
        }
    }
}

/// The checks every numpy-broadcasting binary op gets: VJP against finite differences on equal, broadcast and scalar
/// shapes, and a typed error naming both shapes when they cannot be broadcast.
pub fn check_broadcasting_binary(op: &dyn Op<f64>, lo: f64, hi: f64, seed: u64) {
    let mut rng = Rng::new(seed);
    for (a, b) in
        [(vec![2, 3, 4], vec![2, 3, 4]), (vec![2, 3, 4], vec![3, 1]), (vec![1, 4], vec![2, 3, 1]), (vec![], vec![2, 2])]
    {
        let x = rng.tensor(&a, lo, hi);
        let y = rng.tensor(&b, lo, hi);
        // Both gradients, then each alone: an operand the op did not keep must not be read.
        for check in [[true, true], [true, false], [false, true]] {
            check_vjp(op, &[x.clone(), y.clone()], &check, seed);
        }
    }
    let err = op.output_shapes(&[&[2, 3], &[4, 3]]).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4, 3]"), "{}: {err}", op.op_type());
}
