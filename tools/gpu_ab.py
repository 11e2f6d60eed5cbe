"""A/B of two `gradcam` builds on one GPU, interleaved in one run (dev-only, issue #15): `--old` and `--new` are
binaries built with `--features cuda` (e.g. carried to a GPU machine without Rust), timed with `gradcam bench
--device cuda --json` on the bundled EfficientNet-Lite0 and on torchvision resnet50 / mobilenet_v2 (random weights,
exported to ONNX at batch 8 here), 3 rounds. Prints each case's median of the per-run medians and new/old.

    python3 tools/gpu_ab.py --old /tmp/b/old/gradcam --new /tmp/b/new/gradcam
"""
import argparse, glob, json, os, statistics, subprocess, torch, torchvision

p = argparse.ArgumentParser()
p.add_argument("--old", default="/tmp/b/old/gradcam")
p.add_argument("--new", default="/tmp/b/new/gradcam")
a = p.parse_args()
binaries = {"old": a.old, "new": a.new}
# cudarc opens the unversioned library names; a CUDA-13-only toolkit has versioned ones (see tools/gpu_check.sh).
os.makedirs("/tmp/links", exist_ok=True)
for lib in ("nvrtc", "cublas"):
    found = sorted(glob.glob(f"/usr/local/cuda*/targets/x86_64-linux/lib/lib{lib}.so.*"))
    if not found:
        raise SystemExit(f"lib{lib}.so: not found under /usr/local/cuda*")
    real = os.path.realpath(found[0])
    if not os.path.exists(f"/tmp/links/lib{lib}.so"):
        os.symlink(real, f"/tmp/links/lib{lib}.so")
    libdir = os.path.dirname(real)
env = dict(os.environ, LD_LIBRARY_PATH=f"/tmp/links:{libdir}:" + os.environ.get("LD_LIBRARY_PATH", ""))
models = {}
for name in ("resnet50", "mobilenet_v2"):
    torch.manual_seed(0)
    m = getattr(torchvision.models, name)(weights=None).eval()
    path = f"/tmp/{name}_b8.onnx"
    torch.onnx.export(m, torch.randn(8, 3, 224, 224), path, input_names=["input"], output_names=["logits"], opset_version=17, dynamo=False)
    models[name] = path
cases = [("bundled", "forward", 1), ("bundled", "forward", 8), ("bundled", "gradcam", 8), ("bundled", "saliency", 8),
         ("resnet50", "forward", 8), ("resnet50", "gradcam", 8), ("mobilenet_v2", "forward", 8), ("mobilenet_v2", "saliency", 8)]
res = {}
for rnd in range(3):
    for model, method, batch in cases:
        for b in ("old", "new"):
            cmd = [binaries[b], "bench", "--device", "cuda", "--method", method, "--batch", str(batch), "--iters", "20", "--warmup", "3", "--json"]
            if model != "bundled":
                cmd += ["--model", models[model]]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            try:
                ms = json.loads(out.stdout.strip().splitlines()[-1])["median_ms"]
            except Exception:
                print("error", cmd, out.stderr[-300:], flush=True)
                continue
            res.setdefault((model, method, batch, b), []).append(ms)
print("| model | method | batch | old median of medians (ms) | new | new/old |")
for model, method, batch in cases:
    o, n = res.get((model, method, batch, "old"), []), res.get((model, method, batch, "new"), [])
    if o and n:
        mo, mn = statistics.median(o), statistics.median(n)
        print(f"| {model} | {method} | {batch} | {mo:.2f} ({', '.join(f'{v:.2f}' for v in o)}) | {mn:.2f} ({', '.join(f'{v:.2f}' for v in n)}) | {mn/mo:.2f} |", flush=True)
