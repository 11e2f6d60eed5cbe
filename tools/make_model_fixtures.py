"""Writes PyTorch reference outputs for whole models (tests/model_parity.rs).

Dev-only. Needs torch, torchvision, numpy, Pillow, safetensors and efficientnet-lite-pytorch==0.1.0.

    python tools/make_model_fixtures.py

Models:
- efficientnet_lite0 with the bundled weights (fixtures/models/efficientnet_lite0.safetensors, i.e. the pretrained
  weights rounded to f16), on the two test photos;
- torchvision resnet18/34/50, vgg11/16/16_bn and mobilenet_v2 with *synthetic* weights: every parameter is a
  deterministic function of its state-dict key and index (see `synthetic` below and `models/weights.rs`), so the
  Rust side rebuilds bit-identical weights without committing hundreds of MB.

Inputs (the test photos preprocessed as the Rust side does) go to fixtures/models/inputs/{chelsea,coffee}.npy; the
torchvision cases all use chelsea. Per case, under fixtures/models/<case>/: logits.npy; for the cases with
a Grad-CAM layer also act.npy and act_grad.npy (the activation at that layer and d logit[class] / d activation),
input_grad.npy (d logit[class] / d x, computed in float32) and input_grad_f64.npy (the same computed in float64,
stored as float32), with class = the top-1 prediction.
"""

import copy
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image
from safetensors.torch import load_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")
MEAN = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
M64 = (1 << 64) - 1


def fnv1a(key):
    h = 0xCBF29CE484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def unit(key, n):
    """SplitMix64 of (hash(key), index) -> 24-bit uniform in [0, 1), as float64."""
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(fnv1a(key)) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(40)).astype(np.float64) / float(1 << 24)


def synthetic(model):
    """Fills every parameter and BN statistic with the formula of models/weights.rs."""
    state = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            u = unit(f"{name}.weight", m.weight.numel())
            state[f"{name}.weight"] = ((2 * u - 1) * np.sqrt(6.0 / fan_in)).reshape(m.weight.shape)
            if m.bias is not None:
                u = unit(f"{name}.bias", m.bias.numel())
                state[f"{name}.bias"] = (2 * u - 1) / np.sqrt(float(fan_in))
        elif isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            state[f"{name}.weight"] = 0.75 + 0.5 * unit(f"{name}.weight", c)
            state[f"{name}.bias"] = 0.2 * (2 * unit(f"{name}.bias", c) - 1)
            state[f"{name}.running_mean"] = 0.2 * (2 * unit(f"{name}.running_mean", c) - 1)
            state[f"{name}.running_var"] = 0.5 + unit(f"{name}.running_var", c)
    tensors = {k: torch.from_numpy(v.astype(np.float32)) for k, v in state.items()}
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    return model.eval()


def photo(name, size=224):
    """The Rust preprocessing: RGB [0,1] -> antialiased bilinear resize -> ImageNet normalization."""
    img = np.asarray(Image.open(os.path.join(ROOT, "images", name)).convert("RGB")).astype(np.float32) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return ((x - MEAN) / STD).contiguous()


def save(case, **arrays):
    d = os.path.join(ROOT, "models", case)
    os.makedirs(d, exist_ok=True)
    for k, v in arrays.items():
        np.save(os.path.join(d, k + ".npy"), np.ascontiguousarray(v.detach().numpy().astype(np.float32)))


def save_input(name, x):
    """Inputs are shared by several cases: fixtures/models/inputs/<name>.npy."""
    d = os.path.join(ROOT, "models", "inputs")
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, name + ".npy"), np.ascontiguousarray(x.numpy().astype(np.float32)))


def run(case, model, x, layer_module=None, pick_last=False):
    """Saves logits, and with a layer: its activation, d logit[top1] / d activation and d logit[top1] / d x."""
    captured = []

    def hook(_module, _inputs, out):
        out.retain_grad()
        captured.append(out)

    handle = layer_module.register_forward_hook(hook) if layer_module is not None else None
    x = x.clone().requires_grad_(True)
    logits = model(x)
    if handle is None:
        save(case, logits=logits)
        return
    handle.remove()
    act = captured[-1] if pick_last else captured[0]
    cls = int(logits[0].argmax())
    logits[0, cls].backward()
    # The input gradient crosses every ReLU kink of the network, so float32 rounding flips some masks; the float64
    # gradient is the reference, and the float32 one shows how far PyTorch itself lands from it.
    x64 = x.detach().double().requires_grad_(True)
    copy.deepcopy(model).double()(x64)[0, cls].backward()
    save(case, logits=logits, act=act, act_grad=act.grad, input_grad=x.grad, input_grad_f64=x64.grad)
    print(case, "class", cls, "act", tuple(act.shape))


def efficientnet_lite0():
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    state = {k: v.float() for k, v in load_file(os.path.join(ROOT, "models", "efficientnet_lite0.safetensors")).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)
    return model.eval()


def main():
    torch.manual_seed(0)
    lite = efficientnet_lite0()
    for image in ["chelsea", "coffee"]:
        save_input(image, photo(image + ".png"))
        # `_swish` (ReLU6) is shared by all layers; its last call is the head activation.
        run(f"efficientnet_lite0_{image}", lite, photo(image + ".png"), lite._swish, pick_last=True)

    cat = photo("chelsea.png")
    tv = torchvision.models
    r18 = synthetic(tv.resnet18())
    run("resnet18_synthetic", r18, cat, r18.layer4)
    vgg = synthetic(tv.vgg16())
    run("vgg16_synthetic", vgg, cat, vgg.features[29])
    mnet = synthetic(tv.mobilenet_v2())
    run("mobilenet_v2_synthetic", mnet, cat, mnet.features[18])
    for arch in ["resnet34", "resnet50", "vgg11", "vgg16_bn"]:
        run(f"{arch}_synthetic", synthetic(getattr(tv, arch)()), cat)


if __name__ == "__main__":
    main()
