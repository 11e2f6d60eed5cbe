"""Writes the 3-D (volume) fixtures for tests/volume_cam.rs: a small seeded 3-D CNN exported to ONNX, an input
volume, and reference maps.

Dev-only. Needs torch, onnx, numpy, grad-cam==1.5.7.

    python tools/make_volume_fixtures.py

Model `volume_cnn`: input [N, 1, 8, 16, 16] → Conv3d 1→4 (k3, pad 1) → ReLU → MaxPool3d 2 → Conv3d 4→8 (k3, pad 1) →
ReLU → AdaptiveAvgPool3d(1) → Flatten → Linear 8→3; seeded weights, exported with `torch.onnx.export(opset_version=17)`.
Input: a seeded volume with a bright blob. Target layer: the second ReLU ([N, 8, 4, 8, 8]); class = top-1.

References: pytorch-grad-cam 1.5.7 handles 5-D activations itself: its GradCAM, GradCAMPlusPlus, LayerCAM and
HiResCAM raw maps (`get_cam_image`, before ReLU, [4, 8, 8]). Its final 3-D map goes through scipy's cubic-spline
`zoom`; the reference final map is instead made the way torchcam upsamples 3-D maps (and the issue asks for):
ReLU, min-max, `F.interpolate(mode="trilinear", align_corners=False)` to [8, 16, 16], min-max. Score-CAM's raw map is
written out in torch as pytorch-grad-cam computes it in 2-D (trilinear masks with aligned corners). The input gradient
of the class logit is the saliency reference.
Output: fixtures/onnx/volume/volume_cnn.onnx, fixtures/cam/volume/{x,logits,<method>_raw,scorecam_raw,gradcam_cam,
saliency}.npy.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_cam_fixtures import record_raw_maps, save  # noqa: E402
from make_model_fixtures import ROOT  # noqa: E402

METHODS = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "layercam": LayerCAM, "hirescam": HiResCAM}


class VolumeCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.relu1 = torch.nn.ReLU()
        self.pool = torch.nn.MaxPool3d(2)
        self.conv2 = torch.nn.Conv3d(4, 8, 3, padding=1)
        self.relu2 = torch.nn.ReLU()
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        x = self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))
        return self.head(F.adaptive_avg_pool3d(x, 1).flatten(1))


def main():
    torch.manual_seed(5)
    model = VolumeCnn().eval()
    g = torch.Generator().manual_seed(6)
    x = 0.3 * torch.randn(1, 1, 8, 16, 16, generator=g)
    z, y, w = torch.meshgrid(torch.arange(8.0), torch.arange(16.0), torch.arange(16.0), indexing="ij")
    x[0, 0] += 2.0 * torch.exp(-((z - 5) ** 2 / 4 + (y - 4) ** 2 / 8 + (w - 11) ** 2 / 8))
    d = os.path.join(ROOT, "onnx", "volume")
    os.makedirs(d, exist_ok=True)
    torch.onnx.export(
        model, (x,), os.path.join(d, "volume_cnn.onnx"), opset_version=17, dynamo=False,
        input_names=["volume"], output_names=["logits"],
    )
    with torch.no_grad():
        logits = model(x)
    cls = int(logits[0].argmax())
    print("class", cls, logits[0].numpy().round(3))
    save("volume", "x", x[0].numpy())
    save("volume", "logits", logits[0].numpy())
    for name, cam_class in METHODS.items():
        cam = cam_class(model=model, target_layers=[model.relu2])
        raws = record_raw_maps(cam, lambda args: False)
        cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
        raw = raws[0][0]
        save("volume", f"{name}_raw", raw)
        if name == "gradcam":
            m = torch.from_numpy(np.maximum(raw, 0)).double()
            m = (m - m.min()) / (m.max() - m.min() + 1e-7)
            up = F.interpolate(m[None, None], size=(8, 16, 16), mode="trilinear", align_corners=False)[0, 0]
            up = (up - up.min()) / (up.max() - up.min() + 1e-7)
            save("volume", "gradcam_cam", up.numpy())
    # Score-CAM in 3-D, written out as pytorch-grad-cam's ScoreCAM computes it in 2-D (which it only supports):
    # each channel upsampled with aligned corners (trilinear here, as UpsamplingBilinear2d is bilinear), min-max
    # scaled, multiplied into the input; the channel weights are the softmax of the class scores of those inputs.
    acts = {}
    handle = model.relu2.register_forward_hook(lambda m, i, o: acts.__setitem__("a", o.detach()))
    with torch.no_grad():
        model(x)
        handle.remove()
        a = acts["a"]
        up = F.interpolate(a, size=x.shape[-3:], mode="trilinear", align_corners=True)[0]
        flat = up.reshape(up.shape[0], -1)
        mins, maxs = flat.min(dim=1).values, flat.max(dim=1).values
        masks = (up - mins[:, None, None, None]) / (maxs - mins + 1e-8)[:, None, None, None]
        scores = model(x * masks[:, None])[:, cls]
        w = torch.softmax(scores, dim=0)
        save("volume", "scorecam_raw", (w[:, None, None, None] * a[0]).sum(0).numpy())
    xg = x.clone().requires_grad_(True)
    model(xg)[0, cls].backward()
    save("volume", "saliency", xg.grad[0].numpy())


if __name__ == "__main__":
    main()
