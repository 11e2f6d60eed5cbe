"""Writes the 1-D (signal) fixtures for tests/signal_cam.rs: a small seeded 1-D CNN exported to ONNX, an input
signal, and reference maps.

Dev-only. Needs torch, onnx, numpy, grad-cam==1.5.7.

    python tools/make_signal_fixtures.py

Model `signal_cnn`: input [N, 2, 128] → Conv1d 2→8 (k5, pad 2) → ReLU → MaxPool1d 2 → Conv1d 8→16 (k3, pad 1) →
ReLU → BatchNorm1d → AdaptiveAvgPool1d(1) → Flatten → Linear 16→4; seeded weights, exported with
`torch.onnx.export(opset_version=17)`. Input: two channels of noisy sines (seeded). Target layer: the second ReLU
([N, 16, 64]); class = top-1.

References: pytorch-grad-cam 1.5.7 is written for images, so it is given the signal as a one-row image: the model
wrapped to take [N, C, 1, L], the layer through a `reshape_transform` that adds the unit height ([N, C, L] →
[N, C, 1, L]). Its GradCAM, GradCAMPlusPlus, LayerCAM, HiResCAM and ScoreCAM raw maps (`get_cam_image`, before
ReLU) are then the 1-D maps, and its final Grad-CAM map (ReLU, min-max, OpenCV's linear resize to 1 × L, min-max)
the linear upsampling torchcam uses for 1-D. The input gradient of the class logit is the saliency reference.
Output: fixtures/onnx/signal/signal_cnn.onnx, fixtures/cam/signal/{x,logits,<method>_raw,gradcam_cam,saliency}.npy
(x is the [2, 128] signal; maps are 1-D).
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_cam_fixtures import record_raw_maps, save  # noqa: E402
from make_model_fixtures import ROOT  # noqa: E402

METHODS = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "layercam": LayerCAM,
    "hirescam": HiResCAM,
    "scorecam": ScoreCAM,
}


class AsImage(torch.nn.Module):
    """The signal model fed a one-row image [N, C, 1, L]."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x.squeeze(2))


class SignalCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv1d(2, 8, 5, padding=2)
        self.relu1 = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool1d(2)
        self.conv2 = torch.nn.Conv1d(8, 16, 3, padding=1)
        self.relu2 = torch.nn.ReLU()
        self.bn = torch.nn.BatchNorm1d(16)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x):
        x = self.pool(self.relu1(self.conv1(x)))
        x = self.bn(self.relu2(self.conv2(x)))
        return self.head(F.adaptive_avg_pool1d(x, 1).flatten(1))


def main():
    torch.manual_seed(3)
    model = SignalCnn()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
    model.eval()
    t = torch.arange(128, dtype=torch.float32)
    g = torch.Generator().manual_seed(4)
    x = torch.stack([torch.sin(t / 6.0), torch.sin(t / 11.0 + 1.0) * (t > 64)]) + 0.1 * torch.randn(2, 128, generator=g)
    x = x.unsqueeze(0)
    d = os.path.join(ROOT, "onnx", "signal")
    os.makedirs(d, exist_ok=True)
    torch.onnx.export(
        model, (x,), os.path.join(d, "signal_cnn.onnx"), opset_version=17, dynamo=False,
        input_names=["signal"], output_names=["logits"],
    )
    with torch.no_grad():
        logits = model(x)
    cls = int(logits[0].argmax())
    print("class", cls, logits[0].numpy().round(3))
    save("signal", "x", x[0].numpy())
    save("signal", "logits", logits[0].numpy())
    wrapped = AsImage(model).eval()
    for name, cam_class in METHODS.items():
        cam = cam_class(model=wrapped, target_layers=[model.relu2], reshape_transform=lambda a: a.unsqueeze(2))
        cam.batch_size = 32
        raws = record_raw_maps(cam, lambda args: False)
        final = cam(input_tensor=x.unsqueeze(2), targets=[ClassifierOutputTarget(cls)])
        save("signal", f"{name}_raw", raws[0][0][0])  # [1, 64] → [64]
        if name == "gradcam":
            save("signal", "gradcam_cam", final[0][0])  # [1, 128] → [128]
    xg = x.clone().requires_grad_(True)
    model(xg)[0, cls].backward()
    save("signal", "saliency", xg.grad[0].numpy())


if __name__ == "__main__":
    main()
