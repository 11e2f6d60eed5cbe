"""Writes 1-D and 3-D layer cases for tests/nd_layers.rs: tiny models (`F.interpolate`, a transposed 3-D
convolution) exported to ONNX with their input and PyTorch's output.

Dev-only. Needs torch, onnx, numpy.

    python tools/make_nd_layer_fixtures.py

Cases (fixtures/onnx/nd_layers/<case>/{model.onnx, input.npy, output.npy}): a signal [1, 2, 7] and a volume
[1, 2, 3, 4, 5] (seeded), resized by scale 2 and by size, linear/trilinear (align_corners False and True) and nearest;
the volume through a seeded ConvTranspose3d (kernel (2, 3, 2), stride (2, 1, 2), padding (0, 1, 0), output padding
(1, 0, 0)); a sequence [2, 3, 4] through `torch.einsum("bid,bjd->bij")` (ONNX Einsum).
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


class SelfScores(torch.nn.Module):
    """Attention scores of a sequence with itself, written as an einsum (exported as ONNX Einsum)."""

    def forward(self, x):
        return torch.einsum("bid,bjd->bij", x, 2.0 * x)


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
    torch.manual_seed(10)
    transposed = torch.nn.ConvTranspose3d(2, 3, (2, 3, 2), stride=(2, 1, 2), padding=(0, 1, 0), output_padding=(1, 0, 0))
    models = {name: ([shape], Interp(**kw)) for name, (shape, kw) in CASES.items()}
    models["volume_conv_transpose"] = ([[1, 2, 3, 4, 5]], transposed)
    models["einsum_attention"] = ([[2, 3, 4]], SelfScores())
    for name, (shapes, m) in models.items():
        d = os.path.join(ROOT, "onnx", "nd_layers", name)
        os.makedirs(d, exist_ok=True)
        x = torch.randn(*shapes[0], generator=g)
        m = m.eval()
        torch.onnx.export(m, (x,), os.path.join(d, "model.onnx"), opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["y"])
        np.save(os.path.join(d, "input.npy"), x.numpy())
        with torch.no_grad():
            np.save(os.path.join(d, "output.npy"), m(x).numpy())
        print(name, tuple(x.shape))


if __name__ == "__main__":
    main()
