"""Writes the vision-transformer fixtures for tests/transformer_parity.rs: two small seeded transformers exported to
ONNX and pytorch-grad-cam 1.5.7 reference maps computed through its documented `reshape_transform`s.

Dev-only. Needs torch, torchvision, onnx, numpy, grad-cam==1.5.7.

    python tools/make_transformer_fixtures.py

Models (seeded weights; the op set of the full-size models, smaller depth and width so the files stay ~200 KB):
- `vit`: torchvision `VisionTransformer` shaped like `vit_b_16` (224² input, 16² patches, a class token, 14×14
  grid) with 2 layers, hidden 32, 2 heads, MLP 64, 10 classes. Target layer `encoder.layers[-1].ln_1`, tokens
  reshaped as pytorch-grad-cam's ViT tutorial does: class token dropped, [N, 196, C] → [N, C, 14, 14].
- `swin`: torchvision `SwinTransformer` shaped like `swin_t` (4² patches, 7² windows, shifted windows, patch merging)
  with depths [2, 2], embed 16, heads [1, 2], 10 classes. Target layer `features[-1][-1].norm1`, whose output is
  channels-last [N, 28, 28, C] → permuted to [N, C, 28, 28] (pytorch-grad-cam's Swin `reshape_transform`).
Both exported with `torch.onnx.export(opset_version=17, dynamo=False)`, weights inside the file.

Input: fixtures/models/inputs/chelsea.npy; class = top-1. Output per model in fixtures/cam/<model>/:
logits.npy; <method>_raw.npy (the map before ReLU as `get_cam_image` returns it) for GradCAM, GradCAMPlusPlus,
LayerCAM, HiResCAM, ScoreCAM and AblationCAM (batch 32, `AblationLayerVit`); gradcam_cam.npy (the final 224×224 map); saliency.npy (the input
gradient of the class logit, every 11th value of the flattened [3, 224, 224] image).
"""

import os
import sys

import numpy as np
import onnx
import torch
from pytorch_grad_cam import AblationCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM
from pytorch_grad_cam.ablation_layer import AblationLayerVit
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_cam_fixtures import record_raw_maps, save  # noqa: E402
from make_model_fixtures import ROOT  # noqa: E402

METHODS = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "layercam": LayerCAM, "hirescam": HiResCAM}


def seeded(model, seed):
    """Every parameter drawn again from a seeded normal scaled by its fan-in (torchvision zero-initializes the heads,
    which would make every gradient zero); layer-norm scales near 1."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name or "ln" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                scale = 1.0 / fan_in**0.5 if "pos_embedding" not in name and "class_token" not in name else 0.5
                p.copy_(scale * torch.randn(p.shape, generator=g))
    return model.eval()


def vit_tokens(tensor):
    """pytorch-grad-cam's ViT reshape_transform: drop the class token, [N, 196, C] → [N, C, 14, 14]."""
    r = tensor[:, 1:, :].reshape(tensor.size(0), 14, 14, tensor.size(2))
    return r.transpose(2, 3).transpose(1, 2)


def channels_last(tensor):
    """pytorch-grad-cam's Swin reshape_transform for an [N, H, W, C] layer."""
    return tensor.permute(0, 3, 1, 2)


def export(model, name, x, layer_node):
    d = os.path.join(ROOT, "onnx", "transformers")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name + ".onnx")
    torch.onnx.export(model, (x,), path, opset_version=17, dynamo=False, input_names=["input"], output_names=["logits"])
    names = [o for n in onnx.load(path).graph.node for o in n.output]
    assert layer_node in names, f"{name}: no value '{layer_node}' in the export"


def run(name, model, module, transform, x):
    with torch.no_grad():
        logits = model(x)
    cls = int(logits[0].argmax())
    print(name, "class", cls, "logits", logits[0].numpy().round(3))
    save(name, "logits", logits[0].numpy())
    for method, cam_class in METHODS.items():
        cam = cam_class(model=model, target_layers=[module], reshape_transform=transform)
        raws = record_raw_maps(cam, lambda args: False)
        final = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
        save(name, f"{method}_raw", raws[0][0])
        if method == "gradcam":
            save(name, "gradcam_cam", final[0])
    cam = ScoreCAM(model=model, target_layers=[module], reshape_transform=transform)
    cam.batch_size = 32
    raws = record_raw_maps(cam, lambda args: False)
    cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
    save(name, "scorecam_raw", raws[0][0])
    # Ablation-CAM with the token-aware ablation layer pytorch-grad-cam documents for transformers (a channel is
    # ablated in every token).
    cam = AblationCAM(model=model, target_layers=[module], reshape_transform=transform, ablation_layer=AblationLayerVit())
    cam.batch_size = 32
    raws = record_raw_maps(cam, lambda args: False)
    cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
    save(name, "ablationcam_raw", raws[0][0])
    xg = x.clone().requires_grad_(True)
    model(xg)[0, cls].backward()
    save(name, "saliency", xg.grad[0].numpy().ravel()[::11])


def main():
    x = torch.from_numpy(np.load(os.path.join(ROOT, "models", "inputs", "chelsea.npy")))
    torch.manual_seed(0)
    vit = VisionTransformer(
        image_size=224, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=10
    )
    vit = seeded(vit, 1)
    export(vit, "vit", x, "/encoder/layers/encoder_layer_1/ln_1/LayerNormalization_output_0")
    run("vit", vit, vit.encoder.layers[-1].ln_1, vit_tokens, x)

    swin = SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[1, 2], window_size=[7, 7], num_classes=10
    )
    swin = seeded(swin, 2)
    export(swin, "swin", x, "/features/features.3/features.3.1/norm1/LayerNormalization_output_0")
    run("swin", swin, swin.features[-1][-1].norm1, channels_last, x)


if __name__ == "__main__":
    main()
