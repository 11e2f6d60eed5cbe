//! Every operator's forward against an independent reference (fixtures/ops, made by tools/make_op_fixtures.py:
//! PyTorch's functional ops in float64, `onnx.reference` for ONNX-only Resize and Slice semantics, closed forms for
//! attribute variants PyTorch lacks). Each case runs the op's `Op::forward` directly on the stored float32 inputs,
//! in f64 (only rounding may differ) and in f32, and compares every output with the float64 reference.
//!
//! The VJP tests in `src/ops/` check each backward against the op's own forward, so a forward that is wrong in a
//! way its derivative shares (HardSwish dividing by 5 in both) passes them; these cases catch it. The last test
//! reads `src/ops/` and fails when a file that implements an op has no case here.

mod common;

use common::{fixture, npy_f64};
use gradcam::ops::window3d::Window3d;
use gradcam::ops::*;
use gradcam::{Element, Tensor};
use ndarray::ArrayD;
use std::any::type_name;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// f64: the reference is float64 PyTorch on the same values, so only the order of operations differs.
const F64_TOL: Tol = Tol { rtol: 1e-12, atol: 1e-13 };
/// f32: the op's own rounding in single precision.
const F32_TOL: Tol = Tol { rtol: 2e-6, atol: 1e-6 };

#[derive(Clone, Copy, Debug)]
struct Tol {
    rtol: f64,
    atol: f64,
}

/// Reads `ops/<case>/<name>.npy` as the element type: float32 data, or int64 (indices, class targets).
fn read_input<T: Element>(case: &str, name: &str) -> Result<Tensor<T>, String> {
    let path = fixture(&format!("ops/{case}/{name}.npy"));
    if let Ok(a) = ndarray_npy::read_npy::<_, ArrayD<f32>>(&path) {
        return Ok(a.mapv(|v| T::lit(v as f64)));
    }
    let a: ArrayD<i64> =
        ndarray_npy::read_npy(&path).map_err(|e| format!("{case}: {name}.npy is neither float32 nor int64 ({e})"))?;
    Ok(a.mapv(|v| T::lit(v as f64)))
}

/// The files `<prefix>0.npy`, `<prefix>1.npy`, … of a case, in order.
fn numbered(case: &str, prefix: &str) -> Vec<String> {
    (0..).map(|k| format!("{prefix}{k}")).take_while(|n| fixture(&format!("ops/{case}/{n}.npy")).is_file()).collect()
}

/// The largest `|got − want| / (atol + rtol·|want|)` (≤ 1: within tolerance), and where it is; NaN counts as ∞.
fn worst<T: Element>(got: &Tensor<T>, want: &ArrayD<f64>, tol: Tol) -> Result<(f64, usize, f64, f64), String> {
    if got.shape() != want.shape() {
        return Err(format!("shape {:?}, reference {:?}", got.shape(), want.shape()));
    }
    if got.len() != want.len() {
        return Err(format!("{} values, reference {}", got.len(), want.len()));
    }
    let mut w = (0.0, 0, 0.0, 0.0);
    for (i, (&g, &r)) in got.iter().zip(want.iter()).enumerate() {
        let g = g.to_f64().unwrap_or(f64::NAN);
        let ratio = (g - r).abs() / (tol.atol + tol.rtol * r.abs());
        let ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
        if ratio > w.0 {
            w = (ratio, i, g, r);
        }
    }
    Ok(w)
}

/// Runs `op.forward` on the case's inputs in `T` and compares every output; the worst ratio to the tolerance.
fn run<T: Element, O: Op<T>>(op: &O, case: &str, tol: Tol) -> Result<f64, String> {
    let inputs = numbered(case, "in").iter().map(|n| read_input::<T>(case, n)).collect::<Result<Vec<_>, _>>()?;
    let wants: Vec<ArrayD<f64>> =
        numbered(case, "out").iter().map(|n| npy_f64(&format!("ops/{case}/{n}.npy"))).collect();
    if inputs.is_empty() || wants.is_empty() {
        return Err(format!("{case}: no fixtures (run tools/make_op_fixtures.py)"));
    }
    let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
    let declared = op.output_shapes(&shapes).map_err(|e| format!("shape rule: {e}"))?;
    let refs: Vec<&Tensor<T>> = inputs.iter().collect();
    let got = op.forward(&refs).map_err(|e| format!("forward: {e}"))?.values;
    if got.len() != wants.len() || declared.len() != wants.len() {
        return Err(format!("{} outputs ({} by the shape rule), reference {}", got.len(), declared.len(), wants.len()));
    }
    let mut worst_ratio = 0f64;
    for (k, ((g, want), shape)) in got.iter().zip(&wants).zip(&declared).enumerate() {
        if shape.as_slice() != want.shape() {
            return Err(format!("output {k}: shape rule says {shape:?}, reference {:?}", want.shape()));
        }
        let (ratio, at, g, r) = worst(g, want, tol).map_err(|e| format!("output {k}: {e}"))?;
        // NaN fails too: it is not within any tolerance.
        if ratio.is_nan() || ratio > 1.0 {
            return Err(format!(
                "output {k}: flat index {at}: {g:e} vs reference {r:e} ({ratio:.3e}× the tolerance {tol:?})"
            ));
        }
        worst_ratio = worst_ratio.max(ratio);
    }
    Ok(worst_ratio)
}

/// Runs every case, recording which op types passed.
#[derive(Default)]
struct Checker {
    /// `type_name` of every op type with a passing case.
    covered: BTreeSet<&'static str>,
    cases: BTreeSet<String>,
    failures: Vec<String>,
    /// Worst ratio to the tolerance per case: (f64, f32).
    ratios: BTreeMap<String, (f64, f64)>,
}

impl Checker {
    fn check<O: Op<f64> + Op<f32> + 'static>(&mut self, case: &str, op: O) {
        assert!(self.cases.insert(case.to_string()), "case {case} is listed twice");
        let name = type_name::<O>();
        match (run::<f64, O>(&op, case, F64_TOL), run::<f32, O>(&op, case, F32_TOL)) {
            (Ok(r64), Ok(r32)) => {
                self.covered.insert(name);
                self.ratios.insert(case.to_string(), (r64, r32));
            }
            (r64, r32) => {
                for (t, r) in [("f64", r64), ("f32", r32)] {
                    if let Err(e) = r {
                        self.failures.push(format!("{case} ({name}, {t}): {e}"));
                    }
                }
            }
        }
    }
}

fn window(kernel: [usize; 3], strides: [usize; 3], dilations: [usize; 3], pads: [usize; 6], ceil: bool) -> Window3d {
    Window3d { kernel, strides, dilations, pads, ceil_mode: ceil }
}

fn pointwise(c: &mut Checker) {
    c.check("abs", Abs);
    c.check("relu", Relu);
    c.check("clip_range", Clip { min: -0.5, max: 0.8 });
    c.check("clip_relu6", Clip::relu6());
    c.check("clip_min_only", Clip { min: -0.25, max: f64::INFINITY });
    c.check("clip_max_only", Clip { min: f64::NEG_INFINITY, max: 0.3 });
    c.check("elu", Elu { alpha: 0.7 });
    c.check("erf", Erf);
    c.check("exp", Exp);
    c.check("gelu_exact", Gelu { tanh: false });
    c.check("gelu_tanh", Gelu { tanh: true });
    c.check("hard_sigmoid_pytorch", HardSigmoid::pytorch());
    c.check("hard_sigmoid_onnx_default", HardSigmoid::default());
    c.check("hard_sigmoid_custom", HardSigmoid { alpha: 0.35, beta: 0.4 });
    c.check("hard_swish", HardSwish);
    c.check("leaky_relu", LeakyRelu { alpha: 0.1 });
    c.check("selu_default", Selu::default());
    c.check("selu_custom", Selu { alpha: 1.3, gamma: 0.9 });
    c.check("sigmoid", Sigmoid);
    c.check("silu", Silu);
    c.check("softplus", Softplus);
    c.check("sqrt", Sqrt);
    c.check("tanh", Tanh);
}

fn binary(c: &mut Checker) {
    c.check("add", Add);
    c.check("sub", Sub);
    c.check("mul", Mul);
    c.check("div", Div);
    c.check("max", Max);
    c.check("min", Min);
    c.check("max_ties", Max);
    c.check("pow", Pow);
    c.check("pow_integer_exponent", Pow);
    c.check("compare_equal", Compare(Comparison::Equal));
    c.check("compare_less", Compare(Comparison::Less));
    c.check("compare_greater", Compare(Comparison::Greater));
    c.check("compare_less_or_equal", Compare(Comparison::LessOrEqual));
    c.check("compare_greater_or_equal", Compare(Comparison::GreaterOrEqual));
    c.check("prelu_channel", PRelu);
    c.check("prelu_broadcast", PRelu);
    c.check("where", Where);
}

fn shapes(c: &mut Checker) {
    c.check("concat", Concat { axis: -2 });
    c.check("split", Split { axis: 1, lengths: vec![2, 4, 1] });
    c.check("split_negative_axis", Split { axis: -1, lengths: vec![3, 3] });
    let steps = Slice {
        starts: vec![1, -1, 4],
        ends: vec![1000, -100, 0],
        axes: Some(vec![0, 1, -1]),
        steps: Some(vec![2, -2, -3]),
    };
    c.check("slice_steps", steps);
    c.check("slice_default_axes", Slice { starts: vec![-4, 1], ends: vec![4, -1], axes: None, steps: None });
    c.check("gather", Gather { axis: -2, indices: vec![0, -1, 2, 4, 1, -5], index_shape: vec![2, 3] });
    c.check("gather_scalar_index", Gather { axis: 0, indices: vec![2], index_shape: vec![] });
    c.check("gather_runtime_embedding", GatherRuntime { axis: 0 });
    c.check("gather_runtime_axis1", GatherRuntime { axis: 1 });
    c.check("expand", Expand { shape: vec![2, 1, 4, 1] });
    c.check("tile", Tile { repeats: vec![2, 1, 3] });
    c.check("transpose", Transpose { perm: Some(vec![2, 0, 3, 1]) });
    c.check("transpose_default", Transpose { perm: None });
    c.check("reshape", Reshape { shape: vec![0, -1, 5] });
    c.check("flatten", Flatten { axis: -2 });
    c.check("squeeze", Squeeze { axes: Some(vec![0, -1]) });
    c.check("squeeze_all", Squeeze { axes: None });
    c.check("unsqueeze", Unsqueeze { axes: vec![0, -1] });
    c.check("identity", Identity);
    c.check("dropout", Dropout { ratio: 0.3 });
    c.check("pad_constant", Pad { pads: vec![0, 1, 2, 0, 1, 0, 1, 3], mode: PadMode::Constant, value: 0.5 });
    c.check("pad_reflect", Pad { pads: vec![0, 0, 2, 1, 0, 0, 1, 3], mode: PadMode::Reflect, value: 0.0 });
    c.check("pad_edge", Pad { pads: vec![0, 0, 3, 0, 0, 0, 1, 7], mode: PadMode::Edge, value: 0.0 });
    c.check("reduce_sum_axes", ReduceSum(ReduceAxes { axes: Some(vec![-1, 1]), keepdims: true }));
    c.check("reduce_sum_all", ReduceSum(ReduceAxes { axes: None, keepdims: true }));
    c.check("reduce_mean_axes", ReduceMean(ReduceAxes { axes: Some(vec![0, 2]), keepdims: false }));
    c.check("reduce_mean_all", ReduceMean(ReduceAxes { axes: None, keepdims: false }));
}

fn numerics(c: &mut Checker) {
    c.check("softmax", Softmax { axis: 1 });
    c.check("log_softmax", LogSoftmax { axis: -1 });
    c.check("cross_entropy", CrossEntropyLoss);
    c.check("batch_norm", BatchNormalization { epsilon: 1e-3 });
    c.check("batch_norm_rank3", BatchNormalization { epsilon: 1e-3 });
    c.check("instance_norm", InstanceNormalization { epsilon: 1e-4 });
    c.check("layer_norm", LayerNormalization { axis: -2, epsilon: 1e-5 });
    c.check("layer_norm_no_bias", LayerNormalization { axis: 1, epsilon: 1e-3 });
    c.check("lrn", Lrn { size: 3, alpha: 0.3, beta: 0.75, bias: 1.5 });
    c.check("lrn_even_size", Lrn { size: 4, alpha: 0.5, beta: 0.6, bias: 2.0 });
    c.check("gemm_transposed", Gemm { alpha: 0.7, beta: -1.3, trans_a: true, trans_b: true });
    c.check("gemm", Gemm::default());
    c.check("gemm_no_c", Gemm { alpha: 2.5, beta: 1.0, trans_a: false, trans_b: true });
    c.check("matmul_batched", MatMul);
    c.check("matmul_vector_left", MatMul);
    c.check("matmul_vector_right", MatMul);
    let einsum = |e: &str| Einsum { equation: e.into() };
    c.check("einsum_attention", einsum("bhid,bhjd->bhij"));
    c.check("einsum_ellipsis", einsum("...ij,...jk->...ik"));
    c.check("einsum_implicit", einsum("ij,jk"));
    c.check("einsum_three", einsum("ab,bc,cd->da"));
    c.check("einsum_sum_axis", einsum("abc->ca"));
}

fn convolutions(c: &mut Checker) {
    c.check("conv_groups_asymmetric", Conv { strides: [2, 1], dilations: [1, 2], pads: [1, 2, 0, 1], groups: 2 });
    c.check("conv_depthwise_no_bias", Conv { strides: [1, 1], dilations: [1, 1], pads: [1; 4], groups: 3 });
    let w = window([2, 2, 3], [1, 2, 1], [2, 1, 1], [1, 0, 1, 0, 1, 2], false);
    c.check("conv3d_groups", Conv3d { window: w, groups: 2 });
    c.check("conv3d_strided_no_bias", Conv3d { window: window([2; 3], [2; 3], [1; 3], [0; 6], false), groups: 1 });
    let ct =
        ConvTranspose { strides: [2, 3], dilations: [1, 2], pads: [1, 0, 0, 2], output_padding: [1, 2], groups: 2 };
    c.check("conv_transpose_groups", ct);
    c.check("conv_transpose_no_bias", ConvTranspose { pads: [1; 4], ..ConvTranspose::default() });
    let w = window([2, 3, 2], [2, 1, 2], [1, 2, 1], [0, 1, 1, 1, 0, 0], false);
    c.check("conv_transpose3d", ConvTranspose3d { window: w, output_padding: [1, 0, 1], groups: 2 });
    let w = window([3; 3], [2; 3], [1; 3], [1; 6], false);
    c.check("conv_transpose3d_no_bias", ConvTranspose3d { window: w, output_padding: [0; 3], groups: 1 });
}

fn pools(c: &mut Checker) {
    let asym = PoolAttrs { kernel: [3, 2], strides: [2, 1], pads: [1, 0, 0, 1], dilations: [1, 2], ceil_mode: false };
    c.check("max_pool_asymmetric", MaxPool(asym));
    let ceil = PoolAttrs { ceil_mode: true, ..PoolAttrs::square(3, 2, 1) };
    c.check("max_pool_ceil", MaxPool(ceil));
    let attrs = PoolAttrs { kernel: [2, 3], strides: [1, 2], pads: [1; 4], dilations: [1, 1], ceil_mode: false };
    c.check("avg_pool_include_pad", AveragePool { attrs, count_include_pad: true });
    c.check("avg_pool_exclude_pad_ceil", AveragePool { attrs: ceil, count_include_pad: false });
    c.check("avg_pool_include_pad_ceil", AveragePool { attrs: ceil, count_include_pad: true });
    let dropped = PoolAttrs { ceil_mode: true, ..PoolAttrs::square(2, 2, 1) };
    c.check("max_pool_ceil_last_window_dropped", MaxPool(dropped));
    c.check("avg_pool_ceil_last_window_dropped", AveragePool { attrs: dropped, count_include_pad: true });

    let max = |window| Pool3d { window, kind: Pool3dKind::Max };
    let avg = |window, count_include_pad| Pool3d { window, kind: Pool3dKind::Average { count_include_pad } };
    c.check("pool3d_max", max(window([2, 3, 2], [1, 2, 2], [1, 1, 2], [1, 1, 0, 1, 1, 0], false)));
    c.check("pool3d_max_ceil", max(window([2; 3], [2; 3], [1; 3], [0; 6], true)));
    c.check("pool3d_avg_include_pad", avg(window([3, 3, 2], [2, 1, 2], [1; 3], [1; 6], false), true));
    c.check("pool3d_avg_exclude_pad_ceil", avg(window([2; 3], [2; 3], [1; 3], [1, 0, 1, 1, 0, 1], true), false));
    c.check("pool3d_avg_ceil_last_window_dropped", avg(window([2; 3], [2; 3], [1; 3], [1; 6], true), true));

    c.check("adaptive_avg_pool", AdaptiveAvgPool { output: [3, 4] });
    c.check("adaptive_avg_pool_upsample", AdaptiveAvgPool { output: [4, 7] });
    c.check("global_average_pool", GlobalAveragePool);
    c.check("global_average_pool_3d", GlobalAveragePool);
    c.check("global_max_pool", GlobalMaxPool);
    c.check("global_max_pool_3d", GlobalMaxPool);
}

fn resizes(c: &mut Checker) {
    use CoordinateMode::*;
    use NearestRounding::*;
    let resize = |out_h, out_w, mode, coordinates| Resize { out_h, out_w, mode, coordinates, scales: None };
    let nearest =
        |out_h, out_w, rounding, coordinates| resize(out_h, out_w, ResizeMode::Nearest(rounding), coordinates);
    let linear = |out_h, out_w, coordinates| resize(out_h, out_w, ResizeMode::Linear, coordinates);
    // Scales as a model stores them (float32), and the output size the importer derives from them.
    let scaled = |resize: Resize, [sh, sw]: [f32; 2], [h, w]: [usize; 2]| Resize {
        out_h: (h as f32 * sh).floor() as usize,
        out_w: (w as f32 * sw).floor() as usize,
        scales: Some([sh as f64, sw as f64]),
        ..resize
    };

    c.check("resize_nearest_asymmetric_round_prefer_floor", nearest(6, 8, RoundPreferFloor, Asymmetric));
    c.check("resize_nearest_asymmetric_round_prefer_ceil", nearest(6, 8, RoundPreferCeil, Asymmetric));
    c.check("resize_nearest_half_pixel_floor", nearest(3, 4, Floor, HalfPixel));
    c.check("resize_nearest_half_pixel_ceil", nearest(3, 4, Ceil, HalfPixel));
    c.check("resize_nearest_half_pixel_round_prefer_floor", nearest(8, 12, RoundPreferFloor, HalfPixel));
    c.check("resize_nearest_align_corners_round_prefer_ceil", nearest(9, 4, RoundPreferCeil, AlignCorners));
    c.check("resize_nearest_pytorch_half_pixel_one_column", nearest(4, 1, RoundPreferFloor, PytorchHalfPixel));
    let by_scales = scaled(nearest(0, 0, RoundPreferFloor, HalfPixel), [1.7, 1.3], [5, 7]);
    c.check("resize_nearest_half_pixel_scales", by_scales);
    c.check("resize_nearest_asymmetric_floor", nearest(7, 10, Floor, Asymmetric));

    c.check("resize_linear_half_pixel_up", linear(8, 12, HalfPixel));
    c.check("resize_linear_half_pixel_down", linear(3, 4, HalfPixel));
    c.check("resize_linear_align_corners", linear(9, 3, AlignCorners));
    c.check("resize_linear_asymmetric", linear(7, 9, Asymmetric));
    c.check("resize_linear_pytorch_half_pixel", linear(4, 8, PytorchHalfPixel));
    c.check("resize_linear_pytorch_half_pixel_one_row", linear(1, 8, PytorchHalfPixel));
    c.check("resize_linear_scales", scaled(linear(0, 0, HalfPixel), [1.7, 0.6], [5, 10]));
}

/// Every case, once.
fn all_cases() -> Checker {
    let mut c = Checker::default();
    pointwise(&mut c);
    binary(&mut c);
    shapes(&mut c);
    numerics(&mut c);
    convolutions(&mut c);
    pools(&mut c);
    resizes(&mut c);
    c
}

#[test]
fn every_op_matches_its_reference_in_f64_and_f32() {
    let c = all_cases();
    let (w64, w32) = c.ratios.values().fold((0f64, 0f64), |(a, b), &(x, y)| (a.max(x), b.max(y)));
    eprintln!("{} cases; worst ratio to the tolerance: f64 {w64:.3}, f32 {w32:.3}", c.cases.len());
    for (case, (r64, r32)) in &c.ratios {
        eprintln!("  {case:48} f64 {r64:8.3}  f32 {r32:8.3}");
    }
    assert!(
        c.failures.is_empty(),
        "{} of {} cases disagree with their reference:\n{}",
        c.failures.len(),
        c.cases.len(),
        c.failures.join("\n")
    );
}

/// The op types a source file implements `Op` for: `impl … Op<…> for Type` headers and `<name>_op!(Type)`
/// invocations (the Pointwise and View macros), outside comments and the trailing `#[cfg(test)] mod`.
fn op_types(source: &str) -> Vec<String> {
    let lines: Vec<&str> = source.lines().map(|l| l.split("//").next().unwrap_or("").trim()).collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i] == "#[cfg(test)]"
                && lines[i + 1..].iter().find(|l| !l.is_empty()).is_some_and(|l| l.starts_with("mod "))
        })
        .unwrap_or(lines.len());
    // One line per item header, whatever the formatting.
    let code = lines[..end].join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut types = Vec::new();
    for (at, _) in code.match_indices("impl") {
        let word_start = at == 0 || !code[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        let header = &code[at..];
        let header = &header[..header.find(['{', ';']).unwrap_or(header.len())];
        let Some((head, ty)) = header.split_once(" for ") else { continue };
        let is_op = head.match_indices("Op<").any(|(i, _)| head[..i].ends_with([' ', ':']));
        let ty = ident(ty.trim_start());
        if word_start && is_op && !ty.is_empty() && ty.starts_with(|c: char| c.is_ascii_uppercase()) {
            types.push(ty);
        }
    }
    for (at, _) in code.match_indices("_op!(") {
        let name_start = code[..at].rfind(|c: char| !(c.is_ascii_lowercase() || c == '_')).map_or(0, |i| i + 1);
        let ty = ident(&code[at + "_op!(".len()..]);
        if at > name_start && !ty.is_empty() && code[at + "_op!(".len() + ty.len()..].starts_with(')') {
            types.push(ty);
        }
    }
    types.sort();
    types.dedup();
    types
}

/// Module path (`hard_swish`, `a::b`) → op types, for every file under `dir` that implements an op.
fn op_files(dir: &Path, prefix: &str, found: &mut BTreeMap<String, Vec<String>>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
        if path.is_dir() {
            op_files(&path, &format!("{prefix}{stem}::"), found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let source = std::fs::read_to_string(&path).unwrap();
            let types = op_types(&source);
            if !types.is_empty() {
                let module =
                    if stem == "mod" { prefix.trim_end_matches("::").to_string() } else { format!("{prefix}{stem}") };
                found.insert(module, types);
            }
        }
    }
}

#[test]
fn type_name_reports_the_defining_module_of_a_reexported_op() {
    assert_eq!(type_name::<gradcam::ops::HardSwish>(), "gradcam::ops::hard_swish::HardSwish");
    assert_eq!(type_name::<gradcam::ops::ReduceMean>(), "gradcam::ops::reduce::ReduceMean");
    assert_eq!(type_name::<gradcam::ops::Pool3d>(), "gradcam::ops::pool3d::Pool3d");
    assert_eq!(type_name::<gradcam::ops::Where>(), "gradcam::ops::where_select::Where");
}

#[test]
fn op_detection_reads_every_way_an_op_is_written() {
    assert_eq!(op_types("impl<T: Element> Op<T> for Conv {"), ["Conv"]);
    assert_eq!(op_types("impl<T: Element>\n    Op<T>\n    for Conv\n{"), ["Conv"]);
    assert_eq!(op_types("impl Op<f32> for Probe {}"), ["Probe"]);
    assert_eq!(op_types("pointwise_op!(HardSwish);\nview_op!(Reshape);"), ["HardSwish", "Reshape"]);
    // Not ops: the macros' own definitions, other traits, comments, test modules.
    assert!(op_types("macro_rules! pointwise_op {\n impl<T: $crate::Element> $crate::ops::Op<T> for $ty {").is_empty());
    assert!(op_types("impl<T: Element> PoolOp<T> for Conv {} impl Default for Conv {}").is_empty());
    assert!(op_types("// impl<T: Element> Op<T> for Conv {\n/// pointwise_op!(Relu);").is_empty());
    assert!(op_types("struct A;\n#[cfg(test)]\nmod tests {\n impl Op<f64> for Fake {}\n}").is_empty());
}

#[test]
fn every_op_file_has_a_reference_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join("ops");
    let mut files = BTreeMap::new();
    op_files(&dir, "", &mut files);
    // The detection must see ops written each way: a plain impl, a Pointwise and a View.
    for (module, ty) in
        [("conv", "Conv"), ("hard_swish", "HardSwish"), ("reshape", "Reshape"), ("reduce", "ReduceMean")]
    {
        assert!(files.get(module).is_some_and(|t| t.iter().any(|t| t == ty)), "{ty} not found in src/ops/{module}.rs");
    }
    assert!(files.len() >= 60, "only {} op files found in {}: is the detection broken?", files.len(), dir.display());
    for helper in ["mod", "pointwise", "view", "binary", "mask", "pool_attrs", "window3d", "thin_matmul", "testing"] {
        assert!(!files.contains_key(helper), "src/ops/{helper}.rs is taken for an op");
    }

    let c = all_cases();
    let mut missing = Vec::new();
    for (module, types) in &files {
        let path = format!("gradcam::ops::{module}::");
        let file_covered = c.covered.iter().any(|n| n.starts_with(&path));
        let uncovered: Vec<&String> =
            types.iter().filter(|t| !c.covered.contains(format!("{path}{t}").as_str())).collect();
        if !file_covered || !uncovered.is_empty() {
            let rs = module.replace("::", "/");
            missing.push(format!("src/ops/{rs}.rs (no passing case for {uncovered:?})"));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} op files have no passing forward reference in tests/op_references.rs \
         (add a case to tools/make_op_fixtures.py and here):\n{}",
        missing.len(),
        files.len(),
        missing.join("\n")
    );
    eprintln!("{} op files, {} op types, all covered by {} cases", files.len(), c.covered.len(), c.cases.len());
}

#[test]
fn every_fixture_directory_belongs_to_a_case() {
    let c = all_cases();
    let dirs: BTreeSet<String> = std::fs::read_dir(fixture("ops"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let unused: Vec<&String> = dirs.difference(&c.cases).collect();
    assert!(unused.is_empty(), "fixtures/ops has directories no case reads: {unused:?}");
    let absent: Vec<&String> = c.cases.difference(&dirs).collect();
    assert!(absent.is_empty(), "cases without fixtures: {absent:?}");
}
