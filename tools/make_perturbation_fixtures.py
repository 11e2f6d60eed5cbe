"""Writes pytorch-grad-cam 1.5.7 reference raw maps of the methods that run the model per channel (ScoreCAM,
AblationCAM) for tests/cam_parity.rs.

Dev-only. Needs what tools/make_cam_fixtures.py needs.

    python tools/make_perturbation_fixtures.py

Cases: the models and layers of make_cam_fixtures.py (the bundled EfficientNet-Lite0: `head_act`, `_bn1`; the
synthetic-weight resnet18: `layer4`, `layer3`) on fixtures/models/inputs/chelsea.npy, class = top-1, batch size 32.
Output: fixtures/cam/<model>/{scorecam,ablationcam}_<layer>_raw.npy (the map before ReLU, as `get_cam_image` returns
it). Their post-processing is GradCAM's, whose final maps make_cam_fixtures.py records.
"""

import os
import sys

import numpy as np
import torch
import torchvision
from pytorch_grad_cam import AblationCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_cam_fixtures import LiteWithHeadActivation, record_raw_maps, save  # noqa: E402
from make_model_fixtures import ROOT, efficientnet_lite0, synthetic  # noqa: E402

BATCH = 32


def run(model_name, model, layers, x):
    cls = int(model(x)[0].argmax())
    print(model_name, "class", cls, flush=True)
    for layer_name, module in layers.items():
        for name, make in [("scorecam", ScoreCAM), ("ablationcam", AblationCAM)]:
            cam = make(model=model, target_layers=[module])
            cam.batch_size = BATCH
            raws = record_raw_maps(cam, lambda args: False)
            cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
            save(model_name, f"{name}_{layer_name}_raw", raws[0][0])
            print(" ", name, layer_name, flush=True)


def main():
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(os.path.join(ROOT, "models", "inputs", "chelsea.npy")))
    lite = LiteWithHeadActivation(efficientnet_lite0()).eval()
    run("efficientnet_lite0", lite, {"head_act": lite.head_act, "_bn1": lite.lite._bn1}, x)
    r18 = synthetic(torchvision.models.resnet18()).eval()
    run("resnet18", r18, {"layer4": r18.layer4, "layer3": r18.layer3}, x)


if __name__ == "__main__":
    main()
