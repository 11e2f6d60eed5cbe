"""Writes PyTorch reference outputs for the engine's conv, pooling and batch-norm ops.

Dev-only: needs torch (CPU is enough). Run from the repository root:

    python tools/make_engine_fixtures.py

For every case it stores, under fixtures/engine/<case>/, the float32 inputs (x, w, b, ...), a float32 output
cotangent gy, and float64 references computed by PyTorch from those exact float32 values: the forward output y and
the input gradient gx = d<y, gy>/dx. The Rust test tests/pytorch_parity.rs lists the same cases with the same
attributes.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "engine")
gen = torch.Generator().manual_seed(20261125)


def rand(*shape):
    return (torch.rand(*shape, generator=gen) * 2 - 1).to(torch.float32)


def save(case, **arrays):
    d = os.path.join(ROOT, case)
    os.makedirs(d, exist_ok=True)
    for name, a in arrays.items():
        a = a.detach().numpy()
        np.save(os.path.join(d, name + ".npy"), np.ascontiguousarray(a))


def run(case, fn, x, **params):
    """Evaluates fn in float64 on the float32 inputs and stores inputs, y, gy and gx."""
    x64 = x.to(torch.float64).requires_grad_(True)
    p64 = {k: v.to(torch.float64) for k, v in params.items()}
    y = fn(x64, **p64)
    gy = rand(*y.shape)
    (gx,) = torch.autograd.grad(y, x64, gy.to(torch.float64))
    save(case, x=x, y=y, gy=gy, gx=gx, **params)


def conv(case, n, cin, h, w, cout, k, stride=1, pad=(0, 0, 0, 0), dilation=1, groups=1, bias=True):
    """pad = (top, left, bottom, right); asymmetric pads go through F.pad like a TF-SAME export."""
    x = rand(n, cin, h, w)
    weight = rand(cout, cin // groups, k[0], k[1])
    params = {"w": weight}
    if bias:
        params["b"] = rand(cout)

    def fn(x, w, b=None):
        top, left, bottom, right = pad
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, w, b, stride=stride, dilation=dilation, groups=groups)

    run(case, fn, x, **params)


def main():
    conv("conv_basic", 2, 3, 9, 11, 4, (3, 3), pad=(1, 1, 1, 1))
    conv("conv_stride2_asym", 1, 4, 12, 10, 6, (3, 3), stride=2, pad=(0, 0, 1, 1))
    conv("conv_dilated", 1, 3, 13, 13, 5, (3, 2), pad=(2, 1, 2, 1), dilation=2)
    conv("conv_groups", 2, 6, 8, 8, 9, (3, 3), pad=(1, 1, 1, 1), groups=3, bias=False)
    conv("conv_depthwise", 1, 8, 15, 15, 8, (5, 5), stride=2, pad=(1, 1, 2, 2), groups=8)
    conv("conv_depthwise_mult", 2, 4, 7, 9, 12, (3, 3), pad=(1, 1, 1, 1), groups=4)
    conv("conv_pointwise", 1, 16, 14, 14, 24, (1, 1))
    conv("conv_resnet_stem", 1, 3, 64, 64, 8, (7, 7), stride=2, pad=(3, 3, 3, 3))

    run("maxpool_resnet", lambda x: F.max_pool2d(x, 3, 2, 1), rand(2, 3, 17, 16))
    run("maxpool_ceil", lambda x: F.max_pool2d(x, 3, 2, 0, ceil_mode=True), rand(1, 2, 14, 13))
    run("maxpool_dilated", lambda x: F.max_pool2d(x, (2, 3), (1, 2), (1, 1), dilation=(2, 1)), rand(1, 2, 9, 10))
    run("avgpool_include_pad", lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True), rand(1, 3, 11, 10))
    run("avgpool_exclude_pad", lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False), rand(1, 3, 11, 10))
    run("avgpool_ceil", lambda x: F.avg_pool2d(x, 2, 2, 0, ceil_mode=True), rand(1, 2, 7, 9))

    c = 5
    mean, var = rand(c), rand(c).abs() + 0.5
    scale, shift = rand(c), rand(c)

    def bn(x, scale, shift, mean, var):
        return F.batch_norm(x, mean, var, scale, shift, training=False, eps=1e-3)

    run("batchnorm", bn, rand(2, c, 6, 7), scale=scale, shift=shift, mean=mean, var=var)


if __name__ == "__main__":
    main()
