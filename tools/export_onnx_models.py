"""Exports resnet18, mobilenet_v2 (synthetic weights) and EfficientNet-Lite0 (bundled weights) to ONNX, opset 17,
for tests/onnx_gradcam.rs (Grad-CAM through ONNX equals Grad-CAM through the safetensors path).

Dev-only. Needs torch, torchvision, onnx, numpy, efficientnet-lite-pytorch (see make_model_fixtures.py).

    python tools/export_onnx_models.py

Writes fixtures/onnx/exported/<name>.onnx with every weight stored as *external data* in <name>.weights, which is
NOT committed: the weights are the synthetic formula's or the bundled file's, so the Rust test rebuilds the
.weights file byte for byte from the same source (initializer names are the state-dict keys), and the repository
stays small. The script checks that every external initializer is a state-dict key.
"""

import os
import sys

import onnx
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_fixtures import ROOT, efficientnet_lite0, synthetic  # noqa: E402

OUT = os.path.join(ROOT, "onnx", "exported")


def export(name, model):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name + ".onnx")
    x = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(model, x, path, opset_version=17, input_names=["input"], output_names=["logits"], dynamo=False,
                      do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    m = onnx.load(path)
    keys = set(model.state_dict())
    for t in m.graph.initializer:
        assert t.name in keys or t.raw_data == b"" or len(t.raw_data) < 1024, f"{name}: initializer {t.name} is not a state-dict key"
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=name + ".weights", size_threshold=1024)
    external = [t.name for t in onnx.load(path, load_external_data=False).graph.initializer if t.data_location == 1]
    assert all(n in keys for n in external), [n for n in external if n not in keys]
    os.remove(os.path.join(OUT, name + ".weights"))
    print(name, len(external), "external initializers")


def main():
    export("resnet18", synthetic(torchvision.models.resnet18()))
    export("mobilenet_v2", synthetic(torchvision.models.mobilenet_v2()))
    export("efficientnet_lite0", efficientnet_lite0())


if __name__ == "__main__":
    main()
