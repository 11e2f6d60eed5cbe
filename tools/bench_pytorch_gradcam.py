"""PyTorch / pytorch-grad-cam timings for the same work as benches/explain.rs (dev-only).

    OMP_NUM_THREADS=2 python tools/bench_pytorch_gradcam.py

Prints the median of 30 runs (after 5 warm-up runs) for: forward, GradCAM (pytorch-grad-cam 1.5.7, class = top-1,
head activation), and saliency (input gradient), on EfficientNet-Lite0 with the bundled weights, 224×224, batch 1.
"""

import os
import statistics
import sys
import time

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_cam_fixtures import LiteWithHeadActivation  # noqa: E402
from make_model_fixtures import ROOT, efficientnet_lite0  # noqa: E402


def median_ms(fn, runs=30, warmup=5):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    x = torch.from_numpy(np.load(os.path.join(ROOT, "models", "inputs", "chelsea.npy")))
    model = LiteWithHeadActivation(efficientnet_lite0()).eval()
    with torch.no_grad():
        print(f"forward   {median_ms(lambda: model(x)):.1f} ms")
    cam = GradCAM(model=model, target_layers=[model.head_act])
    print(f"gradcam   {median_ms(lambda: cam(input_tensor=x, targets=[ClassifierOutputTarget(285)])):.1f} ms")

    def saliency():
        xi = x.clone().requires_grad_(True)
        model(xi)[0, 285].backward()
        return xi.grad

    print(f"saliency  {median_ms(saliency):.1f} ms")
    print("threads", torch.get_num_threads(), "torch", torch.__version__)


if __name__ == "__main__":
    main()
