"""Writes the references of FullGrad (pytorch-grad-cam 1.5.7), SmoothGrad and Integrated Gradients (Captum) for
tests/cam_parity.rs.

Dev-only. Needs what tools/make_cam_fixtures.py needs, plus captum (0.9.0 was used).

    python tools/make_attribution_fixtures.py

Input: fixtures/models/inputs/chelsea.npy, class = top-1. To keep fixtures/ small, each 224×224 (or 3×224×224)
map is stored as every STRIDE-th value of the flattened map (`map.ravel()[::STRIDE]`).
- fullgrad_cam.npy: pytorch-grad-cam's FullGrad final map, on the bundled EfficientNet-Lite0 and the synthetic
  resnet18 (fixtures/cam/<model>/); fullgrad_augsmooth_cam.npy: with aug_smooth, on resnet18.
- smoothgrad_{f32,f64}.npy, integrated_gradients_{f32,f64}.npy (synthetic resnet18 only; float32 and float64
  runs of the same model): Captum's
  NoiseTunnel(Saliency).attribute(nt_type="smoothgrad", nt_samples=SAMPLES, stdevs=σ) with σ = NOISE · (max x −
  min x), and IntegratedGradients.attribute(n_steps=STEPS, baselines=black), its default Gauss–Legendre rule. The
  black baseline is the pixel value 0 normalized with ImageNet's mean and std. Captum draws its noise with
  torch.normal; here torch.normal is replaced, for that call, by gradcam's seeded noise (standard_normal below,
  the generator of src/models/weights.rs: Box–Muller on the synthetic-weight uniform stream "smoothgrad", element
  e of sample s at index s·len + e), so that both sides add the same noise.
"""

import copy
import os
import sys

import numpy as np
import torch
import torchvision
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from pytorch_grad_cam import FullGrad
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_cam_fixtures import LiteWithHeadActivation, save  # noqa: E402
from make_model_fixtures import ROOT, efficientnet_lite0, synthetic, unit  # noqa: E402

STRIDE = 11
SAMPLES = 8
NOISE = 0.15
STEPS = 16
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def standard_normal(key, n):
    u = unit(key, 2 * n)
    u1, u2 = u[0::2], u[1::2]
    return (np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)


def sampled(a):
    return np.asarray(a, dtype=np.float32).ravel()[::STRIDE]


def full_grad(model_name, model, x):
    cls = int(model(x)[0].argmax())
    final = FullGrad(model=model, target_layers=[])(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
    save(model_name, "fullgrad_cam", sampled(final[0]))
    if model_name == "resnet18":
        smoothed = FullGrad(model=model, target_layers=[])(
            input_tensor=x, targets=[ClassifierOutputTarget(cls)], aug_smooth=True
        )
        save(model_name, "fullgrad_augsmooth_cam", sampled(smoothed[0]))
    print(model_name, "fullgrad, class", cls, flush=True)


def captum(model, x, suffix):
    """SmoothGrad and Integrated Gradients of `model` at `x` (float32 or float64), saved as <name>_<suffix>.npy."""
    cls = int(model(x)[0].argmax())
    xs = x.numpy()[0]
    sigma = float(np.float32(NOISE) * np.float32(xs.max() - xs.min()))
    noise = torch.from_numpy(standard_normal("smoothgrad", SAMPLES * xs.size).reshape((SAMPLES,) + xs.shape))
    noise = noise.to(x.dtype)
    original = torch.normal

    def seeded_normal(mean, std, *args, **kwargs):
        assert tuple(std.shape) == tuple(noise.shape), (std.shape, noise.shape)
        return mean + std * noise

    torch.normal = seeded_normal
    try:
        sg = NoiseTunnel(Saliency(model)).attribute(
            x.clone().requires_grad_(), nt_type="smoothgrad", nt_samples=SAMPLES, stdevs=sigma, target=cls
        )
    finally:
        torch.normal = original
    save("resnet18", f"smoothgrad_{suffix}", sampled(sg[0].detach().numpy()))
    black = torch.from_numpy(np.broadcast_to((-MEAN / STD)[:, None, None], xs.shape)[None].copy()).to(x.dtype)
    ig = IntegratedGradients(model).attribute(x.clone(), baselines=black, target=cls, n_steps=STEPS)
    save("resnet18", f"integrated_gradients_{suffix}", sampled(ig[0].detach().numpy()))
    print("resnet18 smoothgrad and integrated gradients,", suffix, "class", cls, "sigma", sigma, flush=True)


def main():
    torch.set_num_threads(1)
    x = torch.from_numpy(np.load(os.path.join(ROOT, "models", "inputs", "chelsea.npy")))
    r18 = synthetic(torchvision.models.resnet18()).eval()
    captum(r18, x, "f32")
    # ReLU and max-pool decisions near a tie flip under float32 rounding in any implementation, more often on noisy
    # copies: the float64 result is the reference both float32 results are measured against.
    captum(copy.deepcopy(r18).double(), x.double(), "f64")
    full_grad("resnet18", r18, x)
    lite = LiteWithHeadActivation(efficientnet_lite0()).eval()
    full_grad("efficientnet_lite0", lite, x)


if __name__ == "__main__":
    main()
