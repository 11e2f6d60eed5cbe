"""GPU peers side by side (issue #15, dev-only): `gradcam bench --device cuda` beside PyTorch on the same GPU.

For torchvision resnet50 and mobilenet_v2 with random weights (seed 0), exported once to ONNX (opset 17, fixed
shape Bx3x224x224, TorchScript exporter), at each batch size given: PyTorch's forward (inference_mode) and a
Grad-CAM of the top-1 class at the last spatial activation (one forward with a hook that keeps the activation,
one backward of the summed top-1 scores to it with `torch.autograd.grad`, then the channel-weighted sum, its
positive part and the upsampling to 224²), each timed with `torch.cuda.synchronize()` around every run; and ours,
`gradcam bench --model <m>.onnx --device cuda --method forward|gradcam --batch B --json` (its own warm-up and
median), plus ours on the host CPU for scale. Medians in ms; the table goes to stdout.

    python3 tools/gpu_peers.py --binary target/release/gradcam --models-dir /tmp/gpu-models --batch 1,8
"""

import argparse
import json
import os
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F
import torchvision


def build(name):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    layer = model.layer4 if name == "resnet50" else model.features[-1]
    return model, layer


def export(model, path, batch):
    if os.path.exists(path):
        return
    x = torch.randn(batch, 3, 224, 224)
    torch.onnx.export(model, x, path, input_names=["input"], output_names=["logits"], opset_version=17, dynamo=False)


DEV = "cuda" if torch.cuda.is_available() else "cpu"


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def timed(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def torch_times(model, layer, batch, iters, warmup):
    model = model.to(DEV)
    x = torch.randn(batch, 3, 224, 224, device=DEV)

    def forward():
        with torch.inference_mode():
            model(x)

    kept = {}
    layer.register_forward_hook(lambda _m, _i, out: kept.__setitem__("act", out))

    def gradcam():
        logits = model(x)
        top = logits.argmax(dim=1)
        score = logits.gather(1, top[:, None]).sum()
        (grad,) = torch.autograd.grad(score, kept["act"])
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * kept["act"]).sum(dim=1, keepdim=True))
        F.interpolate(cam, size=(224, 224), mode="bilinear", align_corners=False)

    return timed(forward, iters, warmup), timed(gradcam, iters, warmup)


def ours(binary, model_path, device, method, batch, iters, warmup):
    cmd = [binary, "bench", "--model", model_path, "--device", device, "--method", method, "--batch", str(batch),
           "--iters", str(iters), "--warmup", str(warmup), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return f"error: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}"
    return json.loads(out.stdout.strip().splitlines()[-1])["median_ms"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default="target/release/gradcam")
    p.add_argument("--models-dir", default="/tmp/gpu-models")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--models", default="resnet50,mobilenet_v2")
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--ours-device", default="cuda", help="where ours runs in the cuda columns (cpu for a smoke test)")
    a = p.parse_args()
    os.makedirs(a.models_dir, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if DEV == "cuda" else "no GPU: torch on the CPU (smoke test only)"
    print(f"torch {torch.__version__}, {gpu}", flush=True)
    print("| model | batch | ours cuda fwd | torch cuda fwd | ours cuda Grad-CAM | torch cuda Grad-CAM "
          "| ours cpu fwd | ours cpu Grad-CAM |", flush=True)
    print("|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for name in a.models.split(","):
        for batch in [int(b) for b in a.batch.split(",")]:
            model, layer = build(name)
            path = os.path.join(a.models_dir, f"{name}_b{batch}.onnx")
            export(model, path, batch)
            t_fwd, t_cam = torch_times(model, layer, batch, a.iters, a.warmup)
            row = [ours(a.binary, path, a.ours_device, m, batch, a.iters, a.warmup) for m in ("forward", "gradcam")]
            cpu = [ours(a.binary, path, "cpu", m, batch, 10, 2) for m in ("forward", "gradcam")] if batch == 1 else ["", ""]
            cells = [row[0], t_fwd, row[1], t_cam, *cpu]
            text = [f"{c:.2f}" if isinstance(c, float) else str(c) for c in cells]
            print(f"| {name} | {batch} | " + " | ".join(text) + " |", flush=True)


if __name__ == "__main__":
    main()
