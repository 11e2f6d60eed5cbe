"""Reference for FGSM's direction (tests/adversarial.rs): PyTorch's gradient, w.r.t. the *pixels* (the [0, 1] image
before normalization), of the cross-entropy of class 285 (Egyptian cat) on the cat photo, EfficientNet-Lite0 with the
bundled weights.

Dev-only. Needs what make_model_fixtures.py needs.

    python tools/make_attack_fixtures.py

Writes fixtures/attack/chelsea_pixels.npy ([1, 3, 224, 224], antialiased resize as the Rust side does) and
fixtures/attack/chelsea_ce_grad_285.npy.
"""

import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_fixtures import MEAN, ROOT, STD, efficientnet_lite0  # noqa: E402


def main():
    img = np.asarray(Image.open(os.path.join(ROOT, "images", "chelsea.png")).convert("RGB")).astype(np.float32) / 255.0
    p = torch.from_numpy(img).permute(2, 0, 1)[None]
    p = F.interpolate(p, size=(224, 224), mode="bilinear", align_corners=False, antialias=True).contiguous()
    p.requires_grad_(True)
    model = efficientnet_lite0()
    loss = F.cross_entropy(model((p - MEAN) / STD), torch.tensor([285]))
    loss.backward()
    d = os.path.join(ROOT, "attack")
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "chelsea_pixels.npy"), p.detach().numpy().astype(np.float32))
    np.save(os.path.join(d, "chelsea_ce_grad_285.npy"), p.grad.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
