#!/usr/bin/env python3
"""Peak memory side by side (issue #10, dev-only): ours beside onnxruntime and PyTorch on the same ONNX exports.

Every cell is the peak resident set size (VmHWM, via `/usr/bin/time -f %M`) of one fresh process:
  ours load      `gradcam layers --model M`              (import only)
  ours infer     `gradcam bench --method forward`        (load + 4 forward passes)
  ours Grad-CAM  `gradcam explain --model M <cat photo>` (load, Grad-CAM, overlay written)
  onnxruntime    Python: InferenceSession(M) + one run   (2 intra-op threads)
  PyTorch        Python: the torchvision module (random weights) + one forward under no_grad
  Python base    Python: `import numpy, onnxruntime` only — what the interpreter alone costs the two peers

Models come from the cache that tools/bench_peers.py fills (/work/bench-models by default). Usage:
  python tools/bench_memory.py [--models-dir DIR] [--binary target/release/gradcam] [--write]
"""

import argparse
import datetime
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "efficientnet_lite0"]
PHOTO = os.path.join(ROOT, "fixtures", "images", "chelsea.png")

ORT = """
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
s.run(None, {s.get_inputs()[0].name: np.random.rand(1, 3, 224, 224).astype(np.float32)})
"""

TORCH = """
import sys, torch
torch.set_num_threads(2)
name = sys.argv[1]
if name == "efficientnet_lite0":
    sys.path.insert(0, sys.argv[2])
    sys.dont_write_bytecode = True
    from make_model_fixtures import efficientnet_lite0
    model = efficientnet_lite0().eval()
else:
    import torchvision
    model = getattr(torchvision.models, name)(weights=None).eval()
with torch.no_grad():
    model(torch.rand(1, 3, 224, 224))
"""

BASE = "import numpy, onnxruntime"


def peak_mb(cmd):
    """Peak RSS of `cmd` in MB (None if it failed)."""
    r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}", file=sys.stderr)
        return None
    return int(r.stderr.strip().splitlines()[-1]) / 1024


def fmt(v):
    return "—" if v is None else f"{v:.0f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default="/work/bench-models")
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gradcam"))
    p.add_argument("--write", action="store_true", help="append a dated section to BENCHMARKS.md")
    args = p.parse_args()
    py = sys.executable
    base = peak_mb([py, "-c", BASE])
    rows = []
    with tempfile.TemporaryDirectory() as out:
        for name in MODELS:
            path = os.path.join(args.models_dir, f"{name}.onnx")
            if not os.path.exists(path):
                print(f"skipping {name}: {path} missing (run tools/bench_peers.py first)", file=sys.stderr)
                continue
            weights = os.path.getsize(path) / 2**20
            load = peak_mb([args.binary, "layers", "--model", path])
            infer = peak_mb([args.binary, "bench", "--model", path, "--method", "forward", "--iters", "4",
                             "--warmup", "1", "--threads", "2", "--json"])
            cam = peak_mb([args.binary, "explain", "--model", path, PHOTO, "--out-dir", out])
            ort = peak_mb([py, "-c", ORT, path])
            torch = peak_mb([py, "-c", TORCH, name, HERE])
            rows.append((name, weights, load, infer, cam, ort, torch))
            print(f"{name}: file {weights:.0f} MB, ours load {fmt(load)}, infer {fmt(infer)}, Grad-CAM {fmt(cam)}, "
                  f"onnxruntime {fmt(ort)}, PyTorch {fmt(torch)} MB", file=sys.stderr)
    lines = [
        "| model | file MB | ours load | ours infer | ours Grad-CAM | onnxruntime infer | PyTorch infer | "
        "ours infer / ort | ours Grad-CAM / ort |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, weights, load, infer, cam, ort, torch in rows:
        ratio = lambda a: "—" if a is None or not ort else f"{a / ort:.2f}"  # noqa: E731
        lines.append(f"| {name} | {weights:.0f} | {fmt(load)} | {fmt(infer)} | {fmt(cam)} | {fmt(ort)} | "
                     f"{fmt(torch)} | {ratio(infer)} | {ratio(cam)} |")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    note = (f"Peak RSS in MB of one fresh process per cell (`/usr/bin/time -f %M`), f32 weights, batch 1, 224², "
            f"2 threads; {cpu}; {datetime.date.today()}. The two Python peers include the interpreter: "
            f"`import numpy, onnxruntime` alone peaks at {fmt(base)} MB.")
    table = "\n".join(lines)
    print(table)
    print()
    print(note)
    if args.write:
        with open(os.path.join(ROOT, "BENCHMARKS.md"), "a") as f:
            f.write(f"\n## Peak memory side by side (issue #10) — {datetime.date.today()}\n\n"
                    f"`tools/bench_memory.py`: ours beside onnxruntime and PyTorch on the same ONNX exports.\n\n"
                    f"{table}\n\n{note}\n")


if __name__ == "__main__":
    main()
