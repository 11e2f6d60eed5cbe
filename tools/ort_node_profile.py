"""Per-node times of onnxruntime's forward pass (dev-only), to set beside `gradcam bench --profile`.

Runs an ONNX model on onnxruntime's CPU provider with the same settings as tools/bench_peers.py (T intra-op threads,
sequential execution, all graph optimizations), first without profiling (the wall-clock median), then, with -p,
with onnxruntime's own profiler on, and prints the median time of every node (by the name of its output in the
optimized graph, e.g. `/features/features.2/conv/conv.0/conv.0.2/Clip_output_0_nchwc` for a fused Conv+Clip) and the
totals per operator type. Profiling adds a little per node; compare per-node times, not totals, with ours:

    T=2 /work/venv/bin/python tools/ort_node_profile.py /work/bench-models/mobilenet_v2.onnx 100 -p -v | sort -rn
    target/release/gradcam bench --model /work/bench-models/mobilenet_v2.onnx --method forward \\
        --profile --profile-nodes 200

The input is seeded N(0, 1) noise of the model's input shape (symbolic dimensions become 1, or B from the
environment for the batch dimension: `B=8` to set beside `gradcam bench --batch 8`).
"""

import collections
import json
import os
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    path = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 30
    profile, verbose = "-p" in sys.argv, "-v" in sys.argv
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(os.environ.get("T", "2"))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = profile
    so.profile_file_prefix = "/tmp/ort_node_profile"
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = int(os.environ.get("B", "1"))
    shape = [d if isinstance(d, int) else (batch if i == 0 else 1) for i, d in enumerate(session.get_inputs()[0].shape)]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(10):
        session.run(None, {name: x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t)
    print(f"wall median {statistics.median(times) * 1e3:.2f} ms over {runs} runs")
    if not profile:
        return
    trace = session.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    per_node, op_of = collections.defaultdict(list), {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            node = e["name"][: -len("_kernel_time")]
            per_node[node].append(e["dur"])
            op_of[node] = e["args"].get("op_name")
    rows = [(statistics.median(d[-runs:]) / 1e3, n, op_of[n]) for n, d in per_node.items()]
    per_op = collections.defaultdict(float)
    for ms, _, op in rows:
        per_op[op] += ms
    print(f"nodes {sum(r[0] for r in rows):.2f} ms (median per node, profiler on)")
    for op, ms in sorted(per_op.items(), key=lambda kv: -kv[1]):
        print(f"  {ms:8.3f} ms {op}")
    if verbose:
        for ms, node, op in rows:
            print(f"{ms:8.3f} {op:24s} {node}")


if __name__ == "__main__":
    main()
