#!/usr/bin/env python3
"""Peak memory side by side (issue #10, dev-only): ours beside onnxruntime and PyTorch on the same ONNX exports.

Every cell is the peak resident set size (VmHWM, via `/usr/bin/time -f %M`) of one fresh process:
  ours load      `gradcam layers --model M`              (import only)
  ours infer     `gradcam bench --method forward`        (load + 4 forward passes)
  ours Grad-CAM  `gradcam explain --model M <cat photo>` (load, Grad-CAM, overlay written)
  ... f16        the same two with `--weights f16`
  onnxruntime    Python: InferenceSession(M) + one run   (2 intra-op threads)
  PyTorch        Python: the torchvision module (random weights) + one forward under no_grad
  Python base    Python: `import numpy, onnxruntime` only — what the interpreter alone costs the two peers

Models come from the cache that tools/bench_peers.py fills (/work/bench-models by default). Usage:
  python tools/bench_memory.py [--models-dir DIR] [--binary target/release/gradcam] [--write]
"""

import argparse
import json
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
import time
so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.inter_op_num_threads = 1
t = time.perf_counter()
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
created = time.perf_counter() - t
t = time.perf_counter()
s.run(None, {s.get_inputs()[0].name: np.random.rand(1, 3, 224, 224).astype(np.float32)})
print(created * 1e3, (time.perf_counter() - t) * 1e3)
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


def run_peak(cmd):
    """Peak RSS of `cmd` in MB and its stdout (None, None if it failed)."""
    r = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}", file=sys.stderr)
        return None, None
    return int(r.stderr.strip().splitlines()[-1]) / 1024, r.stdout


def peak_mb(cmd):
    return run_peak(cmd)[0]


def median(v):
    v = sorted(x for x in v if x is not None)
    return v[len(v) // 2] if v else None


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
            infer, cam, times = {}, {}, {}
            for w in ["f32", "f16"]:
                # Three runs each: peak RSS of the last, load and first-run times as medians.
                runs = []
                for _ in range(3):
                    peak, out_json = run_peak([args.binary, "bench", "--model", path, "--method", "forward",
                                               "--iters", "4", "--warmup", "1", "--threads", "2", "--json",
                                               "--weights", w])
                    j = json.loads(out_json) if out_json else {}
                    runs.append((peak, j.get("load_ms"), j.get("first_run_ms")))
                infer[w] = runs[-1][0]
                times[w] = (median([r[1] for r in runs]), median([r[2] for r in runs]))
                cam[w] = peak_mb([args.binary, "explain", "--model", path, PHOTO, "--out-dir", out, "--weights", w])
            ort_runs = [run_peak([py, "-c", ORT, path]) for _ in range(3)]
            ort = ort_runs[-1][0]
            ort_times = [tuple(float(x) for x in o.split()) for _, o in ort_runs if o]
            ort_create = median([t[0] for t in ort_times])
            ort_first = median([t[1] for t in ort_times])
            torch = peak_mb([py, "-c", TORCH, name, HERE])
            rows.append((name, weights, load, infer, cam, ort, torch, times, (ort_create, ort_first)))
            print(f"{name}: file {weights:.0f} MB, ours load {fmt(load)}, infer {infer}, Grad-CAM {cam}, "
                  f"onnxruntime {fmt(ort)}, PyTorch {fmt(torch)} MB; load ms {times}, ort {ort_create} / {ort_first}",
                  file=sys.stderr)
    lines = [
        "| model | file MB | ours load | ours infer f32 | ours Grad-CAM f32 | ours infer f16 | ours Grad-CAM f16 | "
        "onnxruntime infer | PyTorch infer | infer / ort f32 · f16 | Grad-CAM / ort f32 · f16 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, weights, load, infer, cam, ort, torch, _, _ in rows:
        ratio = lambda a: "—" if a is None or not ort else f"{a / ort:.2f}"  # noqa: E731
        lines.append(f"| {name} | {weights:.0f} | {fmt(load)} | {fmt(infer['f32'])} | {fmt(cam['f32'])} | "
                     f"{fmt(infer['f16'])} | {fmt(cam['f16'])} | {fmt(ort)} | {fmt(torch)} | "
                     f"{ratio(infer['f32'])} · {ratio(infer['f16'])} | {ratio(cam['f32'])} · {ratio(cam['f16'])} |")
    lines += [
        "",
        "| model | ours load f32 ms | ours load f16 ms | ours first run (packs weights) f32 · f16 ms | "
        "ort session creation ms | ort first run ms | load / ort creation f32 · f16 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _, _, _, _, _, _, times, (oc, of) in rows:
        r = lambda a: "—" if a is None or not oc else f"{a / oc:.2f}"  # noqa: E731
        f = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
        lines.append(f"| {name} | {f(times['f32'][0])} | {f(times['f16'][0])} | {f(times['f32'][1])} · "
                     f"{f(times['f16'][1])} | {f(oc)} | {f(of)} | {r(times['f32'][0])} · {r(times['f16'][0])} |")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    note = (f"Peak RSS in MB of one fresh process per cell (`/usr/bin/time -f %M`), batch 1, 224², "
            f"2 threads; {cpu}; {datetime.date.today()}. The two Python peers include the interpreter: "
            f"`import numpy, onnxruntime` alone peaks at {fmt(base)} MB. Times: medians of 3 fresh processes; "
            f"our load is `Model::from_onnx` (import, no packing), onnxruntime's session creation includes its graph "
            f"optimization and weight prepacking, which we do on first use (the first-run column).")
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
