"""Writes 1-D and 3-D Resize cases for tests/resize_nd.rs: tiny models around `F.interpolate` exported to ONNX with
their input and PyTorch's output.

Dev-only. Needs torch, onnx, numpy.

    python tools/make_resize_fixtures.py

Cases (fixtures/onnx/resize_nd/<case>/{model.onnx, input.npy, output.npy}): a signal [1, 2, 7] and a volume
[1, 2, 3, 4, 5] (seeded), resized by scale 2 and by size, linear/trilinear (align_corners False and True) and nearest.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_fixtures import ROOT  # noqa: E402


class Interp(torch.nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.kw = kw

    def forward(self, x):
        return F.interpolate(x, **self.kw)


CASES = {
    "signal_linear_x2": ([1, 2, 7], dict(scale_factor=2.0, mode="linear", align_corners=False)),
    "signal_linear_size_corners": ([1, 2, 7], dict(size=11, mode="linear", align_corners=True)),
    "signal_nearest_size": ([1, 2, 7], dict(size=12, mode="nearest")),
    "volume_trilinear_x2": ([1, 2, 3, 4, 5], dict(scale_factor=2.0, mode="trilinear", align_corners=False)),
    "volume_trilinear_size": ([1, 2, 3, 4, 5], dict(size=(5, 7, 9), mode="trilinear", align_corners=False)),
    "volume_nearest_x2": ([1, 2, 3, 4, 5], dict(scale_factor=2.0, mode="nearest")),
}


def main():
    g = torch.Generator().manual_seed(9)
    for name, (shape, kw) in CASES.items():
        d = os.path.join(ROOT, "onnx", "resize_nd", name)
        os.makedirs(d, exist_ok=True)
        x = torch.randn(*shape, generator=g)
        m = Interp(**kw).eval()
        torch.onnx.export(m, (x,), os.path.join(d, "model.onnx"), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])
        np.save(os.path.join(d, "input.npy"), x.numpy())
        np.save(os.path.join(d, "output.npy"), m(x).numpy())
        print(name, tuple(m(x).shape))


if __name__ == "__main__":
    main()
