#!/usr/bin/env python3
"""Speed of 16-bit weights (issue #10, dev-only): `gradcam bench` with --weights f32, f16 and bf16 on the same ONNX
exports, interleaved (f32, f16, bf16, f32, ...) so that the machine's drift hits every precision alike.

Each cell is the median over rounds of the per-round median ms (`gradcam bench --json`, 2 threads, batch 1, 224²).
Models come from the cache that tools/bench_peers.py fills (/work/bench-models by default). Usage:
  python tools/bench_weights.py [--models-dir DIR] [--binary target/release/gradcam] [--rounds 3] [--write]
"""

import argparse
import datetime
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "efficientnet_lite0"]
PRECISIONS = ["f32", "f16", "bf16"]
METHODS = ["forward", "gradcam"]


def bench(binary, model, method, weights, iters):
    cmd = [binary, "bench", "--model", model, "--method", method, "--weights", weights, "--threads", "2",
           "--iters", str(iters), "--warmup", "3", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"failed: {' '.join(cmd)}\n{r.stderr[-1000:]}", file=sys.stderr)
        return None
    return json.loads(r.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default="/work/bench-models")
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "gradcam"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=15)
    p.add_argument("--write", action="store_true", help="append a dated section to BENCHMARKS.md")
    args = p.parse_args()
    results = {}
    cpu = simd = None
    for name in MODELS:
        path = os.path.join(args.models_dir, f"{name}.onnx")
        if not os.path.exists(path):
            print(f"skipping {name}: {path} missing", file=sys.stderr)
            continue
        for method in METHODS:
            for _ in range(args.rounds):
                for w in PRECISIONS:
                    j = bench(args.binary, path, method, w, args.iters)
                    if j:
                        cpu, simd = j["cpu"], j["simd"]
                        results.setdefault((name, method, w), []).append(j["median_ms"])
            cells = {w: sorted(results.get((name, method, w), [float("nan")])) for w in PRECISIONS}
            print(f"{name} {method}: " + ", ".join(f"{w} {v[len(v) // 2]:.1f} ms" for w, v in cells.items()),
                  file=sys.stderr)

    def med(key):
        v = sorted(results.get(key, []))
        return v[len(v) // 2] if v else None

    lines = ["| model | method | f32 ms | f16 ms | bf16 ms | f16 / f32 | bf16 / f32 |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in MODELS:
        for method in METHODS:
            f32, f16, bf16 = (med((name, method, w)) for w in PRECISIONS)
            if f32 is None:
                continue
            r = lambda v: "—" if v is None else f"{v / f32:.2f}"  # noqa: E731
            f = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
            lines.append(f"| {name} | {method} | {f(f32)} | {f(f16)} | {f(bf16)} | {r(f16)} | {r(bf16)} |")
    table = "\n".join(lines)
    note = (f"Median ms per image (median over {args.rounds} interleaved rounds of `gradcam bench --json`, "
            f"{args.iters} iterations after 3 warm-up), 2 threads, batch 1, 224²; {cpu}, kernels: {simd}; "
            f"{datetime.date.today()}.")
    print(table)
    print()
    print(note)
    if args.write:
        with open(os.path.join(ROOT, "BENCHMARKS.md"), "a") as fh:
            fh.write(f"\n## 16-bit weights: speed (issue #10) — {datetime.date.today()}\n\n"
                     f"`tools/bench_weights.py`: the same ONNX exports with `--weights f32`, `f16`, `bf16`.\n\n"
                     f"{table}\n\n{note}\n")


if __name__ == "__main__":
    main()
