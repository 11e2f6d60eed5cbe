"""Writes independent forward references for every operator in src/ops/.

Dev-only: needs torch (CPU is enough), numpy and onnx. Run from the repository root:

    python tools/make_op_fixtures.py

For every case it stores, under fixtures/ops/<case>/, the inputs in the op's input order (in0.npy, in1.npy, ...:
float32, or int64 for inputs that hold indices — GatherRuntime's indices, CrossEntropyLoss's targets) and the
outputs (out0.npy, ...: float64 references computed from those exact float32 values). References come from PyTorch's
functional ops in float64 where PyTorch has the op; ONNX-only semantics (Resize's nearest rounding modes and
asymmetric / pytorch_half_pixel coordinates, Slice's clamping) from `onnx.reference.ReferenceEvaluator` on a one-node
model; a few attribute variants PyTorch lacks (HardSigmoid with ONNX's alpha/beta, Selu with ONNX's constants) from
their closed forms. Attributes (axes, pads, strides, ...) are not stored: tests/op_references.rs lists every case with
the same attributes, and its last test fails when an op file in src/ops/ has no case here.
"""

import os
import shutil

import numpy as np
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "ops")
gen = torch.Generator().manual_seed(20260514)
CASES = []


def rand(*shape, lo=-1.0, hi=1.0):
    """Uniform float32 in [lo, hi)."""
    return (torch.rand(*shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).to(torch.float32)


def away_from_zero(*shape, lo=0.3, hi=2.0):
    """float32 with |v| in [lo, hi) and a random sign (denominators, bases)."""
    sign = torch.where(torch.rand(*shape, generator=gen) < 0.5, -1.0, 1.0)
    return (sign * rand(*shape, lo=lo, hi=hi)).to(torch.float32)


def grid(*shape, values):
    """float32 drawn from a small set of values (comparisons and Max/Min get ties)."""
    v = torch.tensor(values, dtype=torch.float32)
    return v[torch.randint(len(values), shape, generator=gen)]


def with_points(x, points):
    """x with its first entries replaced by the given exact values (kinks, clamps, zero)."""
    flat = x.clone().reshape(-1)
    flat[: len(points)] = torch.tensor(points, dtype=torch.float32)
    return flat.reshape(x.shape)


def f64(t):
    return t.to(torch.float64) if t.is_floating_point() else t


def save(case, inputs, outputs):
    assert case not in CASES, f"duplicate case {case}"
    CASES.append(case)
    d = os.path.join(ROOT, case)
    os.makedirs(d, exist_ok=True)
    for i, t in enumerate(inputs):
        a = t.numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        assert a.dtype in (np.float32, np.int64), (case, a.dtype)
        np.save(os.path.join(d, f"in{i}.npy"), np.require(a, requirements="C"))
    for i, t in enumerate(outputs):
        a = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        assert a.dtype == np.float64, (case, a.dtype)
        assert np.all(np.isfinite(a)), case
        np.save(os.path.join(d, f"out{i}.npy"), np.require(a, requirements="C"))


def case(name, fn, *inputs):
    """Evaluates fn in float64 on the float32 inputs (integer inputs as they are) and stores inputs and outputs."""
    out = fn(*[f64(t) for t in inputs])
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    save(name, inputs, [o.to(torch.float64) if isinstance(o, torch.Tensor) else o for o in outs])


def onnx_run(op_type, x, consts=(), **attrs):
    """One ONNX node on a float64 input, evaluated by onnx.reference. consts: (name, TensorProto type, values)
    initializers after X; an empty name leaves that input out."""
    names = ["X"] + [c[0] for c in consts]
    inits = [helper.make_tensor(n, ty, [len(v)], v) for n, ty, v in consts if n]
    node = helper.make_node(op_type, names, ["Y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.DOUBLE, None)],
        [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, None)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    (y,) = ReferenceEvaluator(model).run(None, {"X": x.numpy().astype(np.float64)})
    assert y.dtype == np.float64
    return torch.from_numpy(np.ascontiguousarray(y))


# ---------------------------------------------------------------- element-wise


def pointwise():
    x = rand(5, 13, lo=-4, hi=4)
    case("abs", torch.abs, with_points(x, [0.0, -0.0, -2.5]))
    case("relu", F.relu, with_points(x, [0.0, -1e-3, 1e-3]))
    case("clip_range", lambda v: torch.clamp(v, -0.5, 0.8), with_points(x, [-0.5, 0.8]))
    case("clip_relu6", lambda v: torch.clamp(v, 0.0, 6.0), with_points(rand(5, 13, lo=-8, hi=8), [0.0, 6.0]))
    case("clip_min_only", lambda v: torch.clamp(v, min=-0.25), x)
    case("clip_max_only", lambda v: torch.clamp(v, max=0.3), x)
    case("elu", lambda v: F.elu(v, alpha=0.7), with_points(x, [0.0]))
    case("erf", torch.erf, rand(5, 13, lo=-3, hi=3))
    case("exp", torch.exp, rand(5, 13, lo=-6, hi=6))
    case("gelu_exact", lambda v: F.gelu(v, approximate="none"), with_points(x, [0.0]))
    case("gelu_tanh", lambda v: F.gelu(v, approximate="tanh"), with_points(x, [0.0]))
    hs = with_points(rand(5, 13, lo=-6, hi=6), [-3.0, 3.0, 0.0, -1.5, 2.999, -2.999])
    case("hard_sigmoid_pytorch", F.hardsigmoid, hs)

    def hard_sigmoid(alpha, beta):
        return lambda v: torch.clamp(alpha * v + beta, 0.0, 1.0)

    case("hard_sigmoid_onnx_default", hard_sigmoid(0.2, 0.5), with_points(hs, [-2.5, 2.5]))
    case("hard_sigmoid_custom", hard_sigmoid(0.35, 0.4), hs)
    case("hard_swish", F.hardswish, hs)
    case("leaky_relu", lambda v: F.leaky_relu(v, 0.1), with_points(x, [0.0]))
    # ONNX's defaults are PyTorch's constants rounded to float32.
    alpha, gamma = float(np.float32(1.6732632423543772)), float(np.float32(1.0507009873554805))
    case("selu_default", lambda v: gamma * F.elu(v, alpha=alpha), x)
    case("selu_custom", lambda v: 0.9 * F.elu(v, alpha=1.3), x)
    case("sigmoid", torch.sigmoid, with_points(rand(5, 13, lo=-12, hi=12), [0.0, -40.0, 40.0]))
    case("silu", F.silu, with_points(rand(5, 13, lo=-8, hi=8), [0.0, -30.0, 30.0]))
    case("softplus", lambda v: F.softplus(v, threshold=1000.0), with_points(x, [0.0, -30.0, 30.0]))
    case("sqrt", torch.sqrt, rand(5, 13, lo=0.01, hi=4))
    case("tanh", torch.tanh, with_points(x, [0.0, -20.0, 20.0]))


def binary():
    a, b = rand(3, 1, 5), away_from_zero(4, 1)
    case("add", torch.add, a, b)
    case("sub", torch.sub, b, a)
    case("mul", torch.mul, a, b)
    case("div", torch.div, a, b)
    ta, tb = grid(3, 1, 5, values=[-1, -0.5, 0, 0.5, 1]), grid(4, 1, values=[-1, -0.5, 0, 0.5, 1])
    case("max", torch.maximum, ta, rand(4, 5))
    case("min", torch.minimum, rand(4, 5), ta)
    case("max_ties", torch.maximum, ta, tb)
    case("pow", torch.pow, rand(3, 1, 5, lo=0.1, hi=2.5), rand(4, 1, lo=-2, hi=2))
    case("pow_integer_exponent", torch.pow, away_from_zero(2, 4, lo=0.5, hi=2), grid(4, values=[-2, 0, 1, 3]))
    for name, fn in [
        ("equal", torch.eq),
        ("less", torch.lt),
        ("greater", torch.gt),
        ("less_or_equal", torch.le),
        ("greater_or_equal", torch.ge),
    ]:
        case(f"compare_{name}", lambda u, v, fn=fn: fn(u, v).to(torch.float64), ta, tb)
    x = rand(2, 3, 4, 5)
    case("prelu_channel", lambda v, s: F.prelu(v, s.reshape(-1)), x, rand(3, 1, 1, lo=0, hi=0.5))
    case("prelu_broadcast", lambda v, s: torch.where(v < 0, s * v, v), x, rand(4, 5, lo=-0.5, hi=0.5))
    cond = grid(3, 1, 5, values=[0, 1, 2, -1, 0])
    case("where", lambda c, u, v: torch.where(c != 0, u, v), cond, rand(1, 4, 5), rand(5))


# ---------------------------------------------------------------- shapes and indexing


def shapes():
    case("concat", lambda *t: torch.cat(t, dim=-2), rand(2, 3, 4), rand(2, 1, 4), rand(2, 2, 4))
    case("split", lambda v: torch.split(v, [2, 4, 1], dim=1), rand(2, 7, 3))
    case("split_negative_axis", lambda v: torch.split(v, [3, 3], dim=-1), rand(2, 3, 6))

    # Slice: ONNX semantics from onnx.reference, checked against the same slice written by hand.
    x = rand(4, 6, 5)
    starts, ends, axes, steps = [1, -1, 4], [1000, -100, 0], [0, 1, -1], [2, -2, -3]
    consts = [
        ("starts", TensorProto.INT64, starts),
        ("ends", TensorProto.INT64, ends),
        ("axes", TensorProto.INT64, axes),
        ("steps", TensorProto.INT64, steps),
    ]
    y = onnx_run("Slice", x, consts)
    assert np.array_equal(y.numpy(), f64(x).numpy()[1::2, ::-2, 4:0:-3])
    save("slice_steps", [x], [y])
    x = rand(5, 7)
    y = onnx_run("Slice", x, [("starts", TensorProto.INT64, [-4, 1]), ("ends", TensorProto.INT64, [4, -1])])
    assert torch.equal(y, f64(x)[1:4, 1:6])
    save("slice_default_axes", [x], [y])

    x = rand(4, 5, 6)
    idx = torch.tensor([[0, -1, 2], [4, 1, -5]])
    case("gather", lambda v: torch.index_select(v, 1, (idx % 5).reshape(-1)).reshape(4, 2, 3, 6), x)
    case("gather_scalar_index", lambda v: v[2], x)
    ids = torch.randint(0, 9, (2, 3), generator=gen)
    case("gather_runtime_embedding", lambda table, i: F.embedding(i, table), rand(9, 4), ids)
    ids = torch.tensor([3, -1, 0, -7, 3])
    case("gather_runtime_axis1", lambda v, i: torch.index_select(v, 1, i % 7), rand(3, 7, 2), ids)

    case("expand", lambda v: v.expand(2, 3, 4, 5), rand(3, 1, 5))
    case("tile", lambda v: torch.tile(v, (2, 1, 3)), rand(2, 3, 1))
    case("transpose", lambda v: v.permute(2, 0, 3, 1), rand(2, 3, 4, 5))
    case("transpose_default", lambda v: v.permute(3, 2, 1, 0), rand(2, 3, 1, 4))
    case("reshape", lambda v: v.reshape(2, 12, 5), rand(2, 3, 4, 5))
    case("flatten", lambda v: v.reshape(6, 20), rand(2, 3, 4, 5))
    case("squeeze", lambda v: v.reshape(3, 1, 4), rand(1, 3, 1, 4, 1))
    case("squeeze_all", lambda v: v.reshape(3, 4), rand(1, 3, 1, 4, 1))
    case("unsqueeze", lambda v: v.unsqueeze(0).unsqueeze(-1), rand(3, 4))
    case("identity", lambda v: v.clone(), rand(3, 4, 5))
    case("dropout", lambda v: v.clone(), rand(3, 4, 5))

    # Pad: ONNX pads [begin_0, ..., begin_r, end_0, ..., end_r]; F.pad takes (begin, end) pairs from the last axis.
    x = rand(2, 3, 4, 5)
    case("pad_constant", lambda v: F.pad(v, (0, 3, 2, 1, 1, 0, 0, 1), value=0.5), x)
    x = rand(1, 2, 5, 6)
    case("pad_reflect", lambda v: F.pad(v, (1, 3, 2, 1), mode="reflect"), x)
    case("pad_edge", lambda v: F.pad(v, (0, 7, 3, 1), mode="replicate"), x)

    x = rand(3, 4, 5, 2)
    case("reduce_sum_axes", lambda v: v.sum(dim=(-1, 1), keepdim=True), x)
    case("reduce_sum_all", lambda v: v.sum(dim=(0, 1, 2, 3), keepdim=True), x)
    case("reduce_mean_axes", lambda v: v.mean(dim=(0, 2)), x)
    case("reduce_mean_all", lambda v: v.mean(), x)


# ---------------------------------------------------------------- normalizations, softmax, linear algebra


def numerics():
    x = rand(3, 4, 5, lo=-8, hi=8)
    case("softmax", lambda v: F.softmax(v, dim=1), with_points(x, [60.0]))
    case("log_softmax", lambda v: F.log_softmax(v, dim=-1), with_points(x, [-60.0]))
    targets = torch.tensor([2, 0, 6, 6, 3])
    case("cross_entropy", F.cross_entropy, rand(5, 7, lo=-3, hi=3), targets)

    c = 3
    params = [rand(c), rand(c), rand(c), rand(c, lo=0.3, hi=1.5)]  # scale, bias, mean, var

    def bn(v, scale, bias, mean, var):
        return F.batch_norm(v, mean, var, weight=scale, bias=bias, training=False, eps=1e-3)

    case("batch_norm", bn, rand(2, c, 4, 3, lo=-3, hi=3), *params)
    case("batch_norm_rank3", bn, rand(2, c, 7, lo=-3, hi=3), *params)
    instance_norm = lambda v, s, b: F.instance_norm(v, weight=s, bias=b, eps=1e-4)  # noqa: E731
    case("instance_norm", instance_norm, rand(2, c, 4, 5), rand(c), rand(c))
    case(
        "layer_norm",
        lambda v, s, b: F.layer_norm(v, (4, 5), weight=s, bias=b.expand(4, 5), eps=1e-5),
        rand(2, 3, 4, 5, lo=-2, hi=3),
        rand(4, 5),
        rand(5),
    )
    case("layer_norm_no_bias", lambda v, s: F.layer_norm(v, (7,), weight=s, eps=1e-3), rand(3, 7), rand(7))

    x = rand(2, 7, 3, 2, lo=-2, hi=2)
    case("lrn", lambda v: F.local_response_norm(v, 3, alpha=0.3, beta=0.75, k=1.5), x)

    # Even sizes: ONNX's window is [c - 1, c + 2] for size 4, PyTorch's [c - 2, c + 1]; flipping the channels
    # swaps the two. Checked against the ONNX formula written out.
    def lrn_even(v):
        return F.local_response_norm(v.flip(1), 4, alpha=0.5, beta=0.6, k=2.0).flip(1)

    y = lrn_even(f64(x))
    sq = f64(x) ** 2
    for ch in range(x.shape[1]):
        s = sq[:, max(0, ch - 1) : ch + 3].sum(dim=1)
        assert torch.allclose(y[:, ch], f64(x)[:, ch] / (2.0 + 0.5 / 4 * s) ** 0.6, rtol=1e-14, atol=0)
    save("lrn_even_size", [x], [y])

    a, b = rand(5, 3), rand(4, 5)
    case("gemm_transposed", lambda u, v, w: 0.7 * u.T @ v.T - 1.3 * w, a, b, rand(4))
    case("gemm", lambda u, v, w: u @ v + w, rand(3, 5), rand(5, 4), rand(3, 1))
    case("gemm_no_c", lambda u, v: 2.5 * u @ v.T, rand(3, 5), rand(4, 5))
    case("matmul_batched", torch.matmul, rand(2, 1, 3, 4), rand(3, 4, 5))
    case("matmul_vector_left", torch.matmul, rand(4), rand(2, 4, 3))
    case("matmul_vector_right", torch.matmul, rand(2, 3, 4), rand(4))
    case("einsum_attention", lambda u, v: torch.einsum("bhid,bhjd->bhij", u, v), rand(2, 2, 3, 4), rand(2, 2, 5, 4))
    case("einsum_ellipsis", lambda u, v: torch.einsum("...ij,...jk->...ik", u, v), rand(2, 1, 3, 4), rand(3, 4, 2))
    case("einsum_implicit", lambda u, v: torch.einsum("ij,jk", u, v), rand(3, 4), rand(4, 5))
    case(
        "einsum_three",
        lambda u, v, w: torch.einsum("ab,bc,cd->da", u, v, w),
        rand(2, 3),
        rand(3, 4),
        rand(4, 5),
    )
    case("einsum_sum_axis", lambda u: torch.einsum("abc->ca", u), rand(2, 3, 4))


# ---------------------------------------------------------------- convolutions and pooling


def conv_like():
    def conv2d(pads, **kw):
        top, left, bottom, right = pads
        return lambda v, w, b=None: F.conv2d(F.pad(v, (left, right, top, bottom)), w, b, **kw)

    case(
        "conv_groups_asymmetric",
        conv2d((1, 2, 0, 1), stride=(2, 1), dilation=(1, 2), groups=2),
        rand(1, 4, 7, 6),
        rand(6, 2, 3, 3),
        rand(6),
    )
    case("conv_depthwise_no_bias", conv2d((1, 1, 1, 1), groups=3), rand(1, 3, 5, 6), rand(6, 1, 3, 3))

    def conv3d(pads, **kw):
        db, hb, wb, de, he, we = pads
        return lambda v, w, b=None: F.conv3d(F.pad(v, (wb, we, hb, he, db, de)), w, b, **kw)

    case(
        "conv3d_groups",
        conv3d((1, 0, 1, 0, 1, 2), stride=(1, 2, 1), dilation=(2, 1, 1), groups=2),
        rand(1, 4, 4, 5, 3),
        rand(4, 2, 2, 2, 3),
        rand(4),
    )
    case("conv3d_strided_no_bias", conv3d((0,) * 6, stride=2), rand(2, 2, 4, 5, 4), rand(3, 2, 2, 2, 2))

    def crop(y, pads):
        """Removes ONNX pads ([begins..., ends...]) from the spatial axes of a full transposed convolution."""
        k = len(pads) // 2
        idx = [slice(None), slice(None)] + [slice(pads[i], y.shape[2 + i] - pads[k + i]) for i in range(k)]
        return y[tuple(idx)]

    def conv_t2d(pads, **kw):
        return lambda v, w, b=None: crop(F.conv_transpose2d(v, w, b, **kw), pads)

    case(
        "conv_transpose_groups",
        conv_t2d((1, 0, 0, 2), stride=(2, 3), dilation=(1, 2), output_padding=(1, 2), groups=2),
        rand(1, 4, 3, 4),
        rand(4, 3, 3, 2),
        rand(6),
    )
    case("conv_transpose_no_bias", conv_t2d((1, 1, 1, 1)), rand(2, 3, 4, 4), rand(3, 2, 3, 3))

    def conv_t3d(pads, **kw):
        return lambda v, w, b=None: crop(F.conv_transpose3d(v, w, b, **kw), pads)

    case(
        "conv_transpose3d",
        conv_t3d((0, 1, 1, 1, 0, 0), stride=(2, 1, 2), dilation=(1, 2, 1), output_padding=(1, 0, 1), groups=2),
        rand(1, 4, 2, 3, 2),
        rand(4, 2, 2, 3, 2),
        rand(4),
    )
    case("conv_transpose3d_no_bias", conv_t3d((1,) * 6, stride=2), rand(1, 2, 2, 2, 3), rand(2, 3, 3, 3, 3))

    # 2-D pools. Asymmetric max-pool pads through F.pad with -inf (PyTorch pads symmetrically).
    x = rand(1, 2, 7, 8)
    case(
        "max_pool_asymmetric",
        lambda v: F.max_pool2d(F.pad(v, (0, 1, 1, 0), value=-np.inf), (3, 2), stride=(2, 1), dilation=(1, 2)),
        x,
    )
    case("max_pool_ceil", lambda v: F.max_pool2d(v, 3, 2, 1, ceil_mode=True), rand(1, 2, 8, 6))
    case(
        "avg_pool_include_pad",
        lambda v: F.avg_pool2d(v, (2, 3), (1, 2), 1, count_include_pad=True),
        x,
    )
    case(
        "avg_pool_exclude_pad_ceil",
        lambda v: F.avg_pool2d(v, 3, 2, 1, ceil_mode=True, count_include_pad=False),
        rand(1, 2, 8, 6),
    )
    case(
        "avg_pool_include_pad_ceil",
        lambda v: F.avg_pool2d(v, 3, 2, 1, ceil_mode=True, count_include_pad=True),
        rand(1, 2, 8, 6),
    )

    # ceil_mode where the last window would start in the trailing padding: it is dropped.
    x = rand(1, 2, 5, 5)
    case("max_pool_ceil_last_window_dropped", lambda v: F.max_pool2d(v, 2, 2, 1, ceil_mode=True), x)
    case(
        "avg_pool_ceil_last_window_dropped",
        lambda v: F.avg_pool2d(v, 2, 2, 1, ceil_mode=True, count_include_pad=True),
        x,
    )

    x = rand(1, 2, 4, 5, 6)
    case(
        "pool3d_max",
        lambda v: F.max_pool3d(v, (2, 3, 2), (1, 2, 2), (1, 1, 0), dilation=(1, 1, 2)),
        x,
    )
    case("pool3d_max_ceil", lambda v: F.max_pool3d(v, 2, 2, ceil_mode=True), rand(1, 2, 5, 5, 3))
    case(
        "pool3d_avg_include_pad",
        lambda v: F.avg_pool3d(v, (3, 3, 2), (2, 1, 2), (1, 1, 1), count_include_pad=True),
        x,
    )
    case(
        "pool3d_avg_exclude_pad_ceil",
        lambda v: F.avg_pool3d(v, 2, 2, (1, 0, 1), ceil_mode=True, count_include_pad=False),
        x,
    )

    case(
        "pool3d_avg_ceil_last_window_dropped",
        lambda v: F.avg_pool3d(v, 2, 2, 1, ceil_mode=True, count_include_pad=True),
        rand(1, 1, 5, 3, 5),
    )

    case("adaptive_avg_pool", lambda v: F.adaptive_avg_pool2d(v, (3, 4)), rand(2, 2, 7, 9))
    case("adaptive_avg_pool_upsample", lambda v: F.adaptive_avg_pool2d(v, (4, 7)), rand(1, 2, 3, 5))
    case("global_average_pool", lambda v: F.adaptive_avg_pool2d(v, 1), rand(2, 3, 5, 7))
    case("global_average_pool_3d", lambda v: F.adaptive_avg_pool3d(v, 1), rand(1, 2, 3, 4, 5))
    case("global_max_pool", lambda v: F.adaptive_max_pool2d(v, 1), rand(2, 3, 5, 7))
    case("global_max_pool_3d", lambda v: v.amax(dim=(2, 3, 4), keepdim=True), rand(1, 2, 3, 4, 5))


# ---------------------------------------------------------------- resize


def resize_onnx(x, size=None, scales=None, **attrs):
    """ONNX Resize (opset 19) of an NCHW input by output size [H, W] or scales [sh, sw] (float32, as in a model)."""
    consts = [("roi", TensorProto.FLOAT, [])]
    if scales is not None:
        consts.append(("scales", TensorProto.FLOAT, [1.0, 1.0, *scales]))
    else:
        consts += [("", None, None), ("sizes", TensorProto.INT64, [*x.shape[:2], *size])]
    return onnx_run("Resize", x, consts, **attrs)


def resize():
    def nearest(name, x, size, coordinates, rounding, scales=None):
        y = resize_onnx(
            x,
            size,
            scales,
            mode="nearest",
            coordinate_transformation_mode=coordinates,
            nearest_mode=rounding,
        )
        save(f"resize_nearest_{name}", [x], [y])
        return y

    # Upscaling by 2 with asymmetric coordinates (x / 2) and downscaling by 2 with half-pixel ones (2x + 0.5)
    # land on exact halves: the rounding modes give different answers.
    small = rand(2, 2, 3, 4)
    up_floor = nearest("asymmetric_round_prefer_floor", small, (6, 8), "asymmetric", "round_prefer_floor")
    up_ceil = nearest("asymmetric_round_prefer_ceil", small, (6, 8), "asymmetric", "round_prefer_ceil")
    assert not torch.equal(up_floor, up_ceil)
    large = rand(1, 2, 6, 8)
    down_floor = nearest("half_pixel_floor", large, (3, 4), "half_pixel", "floor")
    down_ceil = nearest("half_pixel_ceil", large, (3, 4), "half_pixel", "ceil")
    assert not torch.equal(down_floor, down_ceil)
    x = rand(1, 2, 5, 7)
    nearest("half_pixel_round_prefer_floor", x, (8, 12), "half_pixel", "round_prefer_floor")
    nearest("align_corners_round_prefer_ceil", x, (9, 4), "align_corners", "round_prefer_ceil")
    nearest("pytorch_half_pixel_one_column", x, (4, 1), "pytorch_half_pixel", "round_prefer_floor")
    nearest("half_pixel_scales", x, None, "half_pixel", "round_prefer_floor", scales=(1.7, 1.3))
    # The legacy Upsample convention (asymmetric, floor) is PyTorch's "nearest".
    y = nearest("asymmetric_floor", small, (7, 10), "asymmetric", "floor")
    assert torch.equal(y, F.interpolate(f64(small), size=(7, 10), mode="nearest"))

    def linear(name, x, size=None, coordinates="half_pixel", scales=None, torch_ref=None):
        y = resize_onnx(x, size, scales, mode="linear", coordinate_transformation_mode=coordinates)
        if torch_ref is not None:
            ref = torch_ref(f64(x))
            assert torch.allclose(y, ref, rtol=1e-12, atol=1e-14), name
            y = ref  # PyTorch's own value is the stored reference; onnx.reference agrees
        save(f"resize_linear_{name}", [x], [y])

    def bilinear(**kw):
        return lambda v: F.interpolate(v, mode="bilinear", **kw)

    linear("half_pixel_up", x, (8, 12), torch_ref=bilinear(size=(8, 12), align_corners=False))
    linear("half_pixel_down", rand(2, 1, 7, 9), (3, 4), torch_ref=bilinear(size=(3, 4), align_corners=False))
    linear("align_corners", x, (9, 3), "align_corners", torch_ref=bilinear(size=(9, 3), align_corners=True))
    linear("asymmetric", rand(1, 2, 4, 5), (7, 9), "asymmetric")
    linear(
        "pytorch_half_pixel",
        rand(1, 2, 6, 5),
        (4, 8),
        "pytorch_half_pixel",
        torch_ref=bilinear(size=(4, 8), align_corners=False),
    )
    # One output row: pytorch_half_pixel reads row 0 (PyTorch's own interpolate reads the middle).
    linear("pytorch_half_pixel_one_row", rand(1, 2, 6, 5), (1, 8), "pytorch_half_pixel")
    s = (float(np.float32(1.7)), float(np.float32(0.6)))
    linear(
        "scales",
        rand(1, 2, 5, 10),
        None,
        scales=(1.7, 0.6),
        torch_ref=bilinear(scale_factor=s, align_corners=False, recompute_scale_factor=False),
    )


def main():
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    pointwise()
    binary()
    shapes()
    numerics()
    conv_like()
    resize()
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"{len(CASES)} cases, {size / 1024:.0f} KiB in {os.path.normpath(ROOT)}")


if __name__ == "__main__":
    main()
