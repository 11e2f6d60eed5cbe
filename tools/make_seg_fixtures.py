"""Writes a small segmentation model and pytorch-grad-cam 1.5.7 references for its explanations (tests/segmentation.rs).

Dev-only. Needs torch, torchvision, onnx, grad-cam==1.5.7.

    python tools/make_seg_fixtures.py

The model: torchvision's LRASPP head (`torchvision.models.segmentation.lraspp.LRASPP`, as in
lraspp_mobilenet_v3_large) on a MobileNetV3-Small backbone at width 0.5, 4 classes, weights from torch.manual_seed(s) (PyTorch's
default initialization; s the first seed whose prediction on the photo is mixed), exported to ONNX (opset 17) for 224×224 inputs:
fixtures/onnx/segmentation/lraspp_mnv3s.onnx. On fixtures/models/inputs/chelsea.npy, GradCAM with
SemanticSegmentationTarget on the backbone's last block (its HardSwish output) for
- the class predicted at most pixels, over the pixels predicted as it (seg_pred_raw.npy),
- class 1 over a mask: the left half of the image (seg_mask_raw.npy; the mask as fixtures/images/left_half_mask.png),
each the raw map before ReLU (as `get_cam_image` returns it, 7×7); seg_classes.npy = [predicted class, pixels].
"""

import os
import sys

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.mobilenetv3 import mobilenet_v3_small
from torchvision.models.segmentation.lraspp import LRASPP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_cam_fixtures import record_raw_maps  # noqa: E402
from make_model_fixtures import ROOT  # noqa: E402


class Out(torch.nn.Module):
    """LRASPP returns a dict; the ONNX model (and pytorch-grad-cam) take its "out"."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x)["out"]


def model(seed):
    torch.manual_seed(seed)
    features = mobilenet_v3_small(width_mult=0.5).features
    stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    low, high = stages[-4], stages[-1]
    backbone = IntermediateLayerGetter(features, return_layers={str(low): "low", str(high): "high"})
    head = LRASPP(backbone, features[low].out_channels, features[high].out_channels, 4, inter_channels=32)
    return Out(head).eval(), features[high]


def main():
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(os.path.join(ROOT, "models", "inputs", "chelsea.npy")))
    # The first seed whose prediction on the photo is mixed (no class on more than 70 % of the pixels), so that
    # "the pixels predicted as the class" is a real region.
    for seed in range(100):
        net, last_block = model(seed)
        with torch.no_grad():
            counts = np.bincount(net(x)[0].argmax(0).numpy().ravel(), minlength=4)
        if counts.max() < 0.7 * counts.sum():
            break
    d = os.path.join(ROOT, "onnx", "segmentation")
    os.makedirs(d, exist_ok=True)
    torch.onnx.export(net, x, os.path.join(d, "lraspp_mnv3s.onnx"), opset_version=17, input_names=["input"],
                      output_names=["out"], dynamo=False)
    with torch.no_grad():
        out = net(x)[0]
    pred = out.argmax(0).numpy()
    counts = np.bincount(pred.ravel(), minlength=4)
    cls = int(counts.argmax())
    layer = last_block[2]  # Conv2dNormActivation: conv, batch-norm, HardSwish
    cam = GradCAM(model=net, target_layers=[layer])
    raws = record_raw_maps(cam, lambda args: False)
    cam(input_tensor=x, targets=[SemanticSegmentationTarget(cls, np.float32(pred == cls))])
    out_dir = os.path.join(ROOT, "cam", "segmentation")
    os.makedirs(out_dir, exist_ok=True)
    np.save(os.path.join(out_dir, "seg_pred_raw.npy"), np.float32(raws[0][0]))
    mask = np.zeros((224, 224), dtype=np.float32)
    mask[:, :112] = 1
    Image.fromarray(np.uint8(mask * 255)).save(os.path.join(ROOT, "images", "left_half_mask.png"))
    cam = GradCAM(model=net, target_layers=[layer])
    raws = record_raw_maps(cam, lambda args: False)
    cam(input_tensor=x, targets=[SemanticSegmentationTarget(1, mask)])
    np.save(os.path.join(out_dir, "seg_mask_raw.npy"), np.float32(raws[0][0]))
    np.save(os.path.join(out_dir, "seg_classes.npy"), np.float32([cls, counts[cls]]))
    print("seed", seed, "predicted class", cls, "pixels", counts, "layer", layer)


if __name__ == "__main__":
    main()
