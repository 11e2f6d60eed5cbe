"""Times Score-CAM and Ablation-CAM per image: gradcam (`gradcam bench`) beside pytorch-grad-cam 1.5.7, same
architecture, same batch size of masked/ablated copies (32), same thread count, interleaved rounds; prints a
Markdown table for BENCHMARKS.md.

Dev-only. Needs torch, torchvision, grad-cam==1.5.7 and a release build of gradcam.

    python tools/bench_cam_family.py --onnx /path/resnet18.onnx --arch resnet18 --rounds 3

The ONNX file is a torchvision export of the same architecture (tools/bench_peers.py makes them); the timing does
not depend on the weights, so PyTorch runs torchvision's model with its default initialization.
"""

import argparse
import json
import platform
import statistics
import subprocess
import time

import torch
import torchvision
from pytorch_grad_cam import AblationCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

LAYERS = {"resnet18": lambda m: m.layer4, "resnet50": lambda m: m.layer4, "mobilenet_v2": lambda m: m.features}


def ours(binary, onnx, method, threads):
    out = subprocess.run(
        [binary, "bench", "--model", onnx, "--method", method, "--iters", "1", "--warmup", "0",
         "--threads", str(threads), "--json"],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["median_ms"] / 1000.0


def theirs(model, layer, method, x, cls):
    cam = {"scorecam": ScoreCAM, "ablationcam": AblationCAM}[method](model=model, target_layers=[layer])
    cam.batch_size = 32
    start = time.perf_counter()
    cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--onnx", required=True)
    p.add_argument("--arch", default="resnet18", choices=sorted(LAYERS))
    p.add_argument("--binary", default="target/release/gradcam")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = getattr(torchvision.models, a.arch)().eval()
    layer = LAYERS[a.arch](model)
    x = torch.rand(1, 3, 224, 224)
    cls = int(model(x)[0].argmax())
    rows = []
    for method in ["scorecam", "ablationcam"]:
        t_ours, t_theirs = [], []
        for _ in range(a.rounds):
            t_ours.append(ours(a.binary, a.onnx, method, a.threads))
            t_theirs.append(theirs(model, layer, method, x, cls))
        mo, mt = statistics.median(t_ours), statistics.median(t_theirs)
        rows.append(f"| {a.arch} | {method} | {mo:.2f} | {mt:.2f} | {mt / mo:.1f}× |")
    print(f"CPU: {platform.processor() or platform.machine()}, {a.threads} threads, batch 32, medians of {a.rounds}")
    print("| model | method | gradcam s/image | pytorch-grad-cam s/image | speed-up |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
