"""Peers side by side (issue #9): our `gradcam bench` beside onnxruntime, PyTorch and pytorch-grad-cam (dev-only).

What it measures, per model (torchvision resnet18, resnet50, vgg16, mobilenet_v2 with random weights, and
EfficientNet-Lite0 with the bundled weights), all on the same T threads (default 2), 224x224, batch B (default 1):

- ours forward / ours Grad-CAM: `target/release/gradcam bench --model <m>.onnx --method forward|gradcam --json`
  (its own warm-up and median), once per SIMD level given with --simd (GRADCAM_SIMD=<level>; "auto" = unset);
- onnxruntime forward of the same .onnx file (intra_op_num_threads=T, inter_op_num_threads=1, sequential
  execution, all graph optimizations, CPU provider);
- PyTorch forward (torch.set_num_threads(T), torch.inference_mode());
- pytorch-grad-cam `GradCAM`, class = the model's top-1 (ClassifierOutputTarget), target layer = the last spatial
  activation, following the pytorch-grad-cam README: resnet `layer4[-1]`, vgg16 `features[-1]` (the last max-pool,
  7x7), mobilenet_v2 `features[-1]` (the head conv+BN+ReLU6); EfficientNet-Lite0 the head ReLU6, made a module
  of its own by `LiteWithHeadActivation` (tools/make_cam_fixtures.py), as in tools/bench_pytorch_gradcam.py.

Input for the peers: the cat photo fixtures/images/chelsea.png, preprocessed as the Rust side does (antialiased
bilinear resize to 224, ImageNet normalization; `photo()` in tools/make_model_fixtures.py), repeated B times;
`--input random` uses a fixed seeded N(0,1) tensor instead. Timings do not depend on the pixel values.

Noise control: the work runs in R rounds (--rounds, default 4); each round visits every model and every cell in
turn (the order rotates from round to round) and times a block of ceil(N / R) runs after W warm-up runs, so a
burst of load from elsewhere on the machine hits all cells alike. A peer's number is the median of all its N
timed runs (time.perf_counter); ours is the median of the per-round `median_ms` that the binary reports (each
invocation also loads the model, which is not timed). `--stat min` shows minima instead (the minimum of all runs;
for ours the smallest `min_ms`): on a shared machine a build running next to the benchmark can slow PyTorch's
OpenMP barriers by tens of times for whole rounds, which shifts medians but rarely minima. The script warns when
the load average is high at the start, and the notes line records it at the start and the end.

Models are exported once (opset 17, input "input", output "logits", fixed shape Bx3x224x224, TorchScript exporter
`dynamo=False`, torch's default eval-mode export: constants folded, batch-norm fused into the convolutions) to
a cache outside the repository (--models-dir, default /work/bench-models) and reused. Weights are stored inside
the .onnx file (all these models are far below the 2 GB protobuf limit).

Run (the venv needs onnxruntime onnx numpy torch torchvision grad-cam efficientnet-lite-pytorch safetensors
pillow; no network is needed besides installing those packages; the binary comes from `cargo build --release`):

    /work/venv/bin/python tools/bench_peers.py --write          # full run, appends a section to BENCHMARKS.md
    /work/venv/bin/python tools/bench_peers.py --only resnet18 --iters 3 --rounds 1     # quick smoke test
    /work/venv/bin/python tools/bench_peers.py --skip-ours      # peers only
    /work/venv/bin/python tools/bench_peers.py --simd avx512,avx2,portable --batch 8

The table's ratio columns use the first SIMD level given with --simd.
"""

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, ".."))
PHOTO = os.path.join(REPO, "fixtures", "images", "chelsea.png")
MODELS = ["resnet18", "resnet50", "vgg16", "mobilenet_v2", "efficientnet_lite0"]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default="/work/bench-models", help="ONNX cache, outside the repository")
    p.add_argument("--binary", default=os.path.join(REPO, "target", "release", "gradcam"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=20, help="timed runs per cell, over all rounds (N)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up runs per cell and round (W)")
    p.add_argument("--rounds", type=int, default=4, help="round-robin rounds (R); each times ceil(N/R) runs per cell")
    p.add_argument("--simd", default="auto", help="comma-separated GRADCAM_SIMD levels for ours, e.g. avx512,avx2,portable; "
                   "'auto' = no env var (default)")
    p.add_argument("--only", default=None, help="comma-separated subset of " + ",".join(MODELS))
    p.add_argument("--skip-peers", action="store_true", help="only ours")
    p.add_argument("--skip-ours", action="store_true", help="only onnxruntime / PyTorch / pytorch-grad-cam")
    p.add_argument("--stat", choices=["median", "min"], default="median",
                   help="what the table shows: the median (default), or the minimum, which a busy machine disturbs less")
    p.add_argument("--input", choices=["photo", "random"], default="photo")
    p.add_argument("--write", action="store_true", help="append a dated section to --benchmarks-file")
    p.add_argument("--benchmarks-file", default=os.path.join(REPO, "BENCHMARKS.md"))
    p.add_argument("--raw-json", default=None, help="also dump every sample and every JSON line of ours here")
    p.add_argument("--timeout", type=float, default=900, help="seconds per `gradcam bench` invocation")
    a = p.parse_args()
    a.models = MODELS if a.only is None else [m.strip() for m in a.only.split(",") if m.strip()]
    bad = [m for m in a.models if m not in MODELS]
    if bad:
        p.error(f"unknown model(s) {bad}; known: {MODELS}")
    a.simd_levels = [s.strip() for s in a.simd.split(",") if s.strip()]
    if a.skip_ours:
        a.simd_levels = []
    if a.iters < 1 or a.rounds < 1 or a.threads < 1 or a.batch < 1 or a.warmup < 0:
        p.error("--iters, --rounds, --threads, --batch must be >= 1 and --warmup >= 0")
    a.rounds = min(a.rounds, a.iters)
    return a


ARGS = parse_args()
# Thread pools read these when the libraries load, so they are set before numpy / torch / onnxruntime are imported.
for var in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"]:
    os.environ[var] = str(ARGS.threads)

sys.dont_write_bytecode = True  # importing the tools/ helpers must not leave tools/__pycache__ in the repository
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import torch  # noqa: E402


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


# ---------------------------------------------------------------------------------------------------------- models

def torch_model(name):
    """The PyTorch module for `name` (eval mode) and the pytorch-grad-cam target layer. Random torchvision weights
    come from torch.manual_seed(0), so a cached .onnx and a freshly built module hold the same weights."""
    import torchvision

    torch.manual_seed(0)
    if name == "efficientnet_lite0":
        from make_cam_fixtures import LiteWithHeadActivation
        from make_model_fixtures import efficientnet_lite0

        model = LiteWithHeadActivation(efficientnet_lite0()).eval()
        return model, model.head_act, model.lite
    model = getattr(torchvision.models, name)(weights=None).eval()
    layer = model.layer4[-1] if name.startswith("resnet") else model.features[-1]
    return model, layer, model


def onnx_path(name):
    suffix = "" if ARGS.batch == 1 else f"_b{ARGS.batch}"
    return os.path.join(ARGS.models_dir, f"{name}{suffix}.onnx")


def export(name, module):
    """Exports `module` to the cache unless the file is already there. Returns the path."""
    path = onnx_path(name)
    if os.path.exists(path):
        return path
    import onnx

    os.makedirs(ARGS.models_dir, exist_ok=True)
    tmp = path + ".part"
    x = torch.zeros(ARGS.batch, 3, 224, 224)
    t = time.perf_counter()
    with torch.no_grad():
        torch.onnx.export(module, x, tmp, opset_version=17, input_names=["input"], output_names=["logits"], dynamo=False)
    m = onnx.load(tmp, load_external_data=False)
    external = [i.name for i in m.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL]
    ops = {}
    for n in m.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    os.replace(tmp, path)
    print(f"exported {path} ({os.path.getsize(path) / 1e6:.1f} MB, {time.perf_counter() - t:.1f} s, "
          f"{len(external)} external initializers) ops: {dict(sorted(ops.items()))}", file=sys.stderr)
    return path


def peer_input():
    if ARGS.input == "photo":
        from make_model_fixtures import photo

        x = photo(os.path.basename(PHOTO))
    else:
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    return x.repeat(ARGS.batch, 1, 1, 1).contiguous()


# ------------------------------------------------------------------------------------------------------- measuring

def timed_block(fn, runs, warmup):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


class Peers:
    """onnxruntime session, PyTorch module and a pytorch-grad-cam factory for one model."""

    def __init__(self, name, x):
        import onnxruntime as ort

        self.model, self.layer, exportable = torch_model(name)
        self.path = export(name, exportable)
        self.x = x
        self.x_np = x.numpy()
        so = ort.SessionOptions()
        so.intra_op_num_threads = ARGS.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(self.path, so, providers=["CPUExecutionProvider"])
        with torch.inference_mode():
            logits = self.model(x)
        self.classes = [int(c) for c in logits.argmax(1)]
        ort_logits = self.sess.run(["logits"], {"input": self.x_np})[0]
        diff = float(np.abs(ort_logits - logits.numpy()).max())
        scale = float(np.abs(logits.numpy()).max())
        if not diff <= 1e-3 * max(scale, 1.0):
            print(f"warning: {name}: onnxruntime and PyTorch logits differ by {diff:.3g} (max |logit| {scale:.3g}); "
                  f"stale cache in {ARGS.models_dir}?", file=sys.stderr)

    def ort_forward(self):
        self.sess.run(["logits"], {"input": self.x_np})

    def torch_forward(self):
        with torch.inference_mode():
            self.model(self.x)

    def gradcam_block(self, runs, warmup):
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        # Built per block and released after it: its hooks would otherwise keep recording activations during the
        # plain forward timings.
        cam = GradCAM(model=self.model, target_layers=[self.layer])
        targets = [ClassifierOutputTarget(c) for c in self.classes]
        try:
            return timed_block(lambda: cam(input_tensor=self.x, targets=targets), runs, warmup)
        finally:
            cam.activations_and_grads.release()


OURS_TAKES_INPUT = False  # set by check_binary(): whether `gradcam bench` has --input <IMAGE>


def ours(path, method, simd, runs):
    """One `gradcam bench` invocation. Returns (parsed JSON or None, error line or None)."""
    cmd = [ARGS.binary, "bench", "--model", path, "--method", method, "--iters", str(runs), "--warmup",
           str(ARGS.warmup), "--threads", str(ARGS.threads), "--batch", str(ARGS.batch), "--json"]
    if ARGS.input == "photo" and OURS_TAKES_INPUT:
        cmd += ["--input", PHOTO]
    env = dict(os.environ)
    env.pop("GRADCAM_SIMD", None)
    if simd != "auto":
        env["GRADCAM_SIMD"] = simd
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=ARGS.timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {ARGS.timeout:.0f} s: {' '.join(cmd)}"
    lines = [line for line in r.stdout.splitlines() if line.strip().startswith("{")]
    if r.returncode != 0 or not lines:
        err = [line for line in (r.stderr + "\n" + r.stdout).splitlines() if line.strip()]
        return None, f"exit {r.returncode}: " + (err[-1] if err else "(no output)")
    try:
        return json.loads(lines[-1]), None
    except json.JSONDecodeError as e:
        return None, f"unparsable JSON ({e}): {lines[-1][:200]}"


def check_binary():
    global OURS_TAKES_INPUT
    if not os.path.exists(ARGS.binary):
        sys.exit(f"{ARGS.binary} not found: build it (cargo build --release) or pass --skip-ours")
    r = subprocess.run([ARGS.binary, "bench", "--help"], capture_output=True, text=True)
    if r.returncode != 0 or "--method" not in r.stdout + r.stderr:
        sys.exit(f"`{ARGS.binary} bench --help` failed (exit {r.returncode}); the bench subcommand is missing? "
                 "Use --skip-ours.\n" + (r.stderr or r.stdout)[-500:])
    OURS_TAKES_INPUT = "--input" in r.stdout


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# -------------------------------------------------------------------------------------------------------- reporting

def fmt_ms(v):
    if v is None:
        return "—"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def fmt_load(v):
    return "?" if v is None else f"{v:.2f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}"


def table(results, levels, reported):
    def label(level):
        got = sorted(reported.get(level, []))
        return level if got in ([], [level]) else f"{level}→{'/'.join(got)}"

    head = ["model"]
    for lv in levels:
        suffix = f" [{label(lv)}]" if len(levels) > 1 else ""
        head += [f"ours forward ms{suffix}", f"ours Grad-CAM ms{suffix}"]
    head += ["onnxruntime forward ms", "PyTorch forward ms", "pytorch-grad-cam ms",
             "ours fwd / ort", "ours Grad-CAM / ort fwd", "pytorch-grad-cam / ours Grad-CAM"]
    rows = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    first = levels[0] if levels else None
    for name, r in results.items():
        cells = [name]
        for lv in levels:
            cells += [fmt_ms(r.get(("ours", "forward", lv))), fmt_ms(r.get(("ours", "gradcam", lv)))]
        ort_f, pgc = r.get("ort"), r.get("pgc")
        of, og = r.get(("ours", "forward", first)), r.get(("ours", "gradcam", first))
        cells += [fmt_ms(ort_f), fmt_ms(r.get("torch")), fmt_ms(pgc),
                  fmt_ratio(of, ort_f), fmt_ratio(og, ort_f), fmt_ratio(pgc, og)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main():
    a = ARGS
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    if not a.skip_ours:
        check_binary()
    load_start = loadavg()
    if load_start is not None and load_start > 0.5:
        print(f"warning: 1-minute load average is {load_start:.2f} before starting; with {a.threads} threads on "
              f"{os.cpu_count()} CPUs, other work (a build, a cargo bench) makes PyTorch's OpenMP barriers in "
              "particular far slower (tens of times on small-op models): numbers are only comparable on an idle machine",
              file=sys.stderr)
    per_round = math.ceil(a.iters / a.rounds)

    x = peer_input()
    peers, paths = {}, {}
    for name in a.models:
        if a.skip_peers:
            if not os.path.exists(onnx_path(name)):
                export(name, torch_model(name)[2])
            paths[name] = onnx_path(name)
        else:
            peers[name] = Peers(name, x)
            paths[name] = peers[name].path

    # Cells: ("ours", method, simd) and the three peers.
    cells = []
    for lv in a.simd_levels:
        cells += [("ours", "forward", lv), ("ours", "gradcam", lv)]
    if not a.skip_peers:
        cells += ["ort", "torch", "pgc"]
    samples = {(n, c): [] for n in a.models for c in cells}
    errors, reported, raw_ours = {}, {}, []

    for rnd in range(a.rounds):
        runs = min(per_round, a.iters - rnd * per_round)
        if runs <= 0:
            break
        order = cells[rnd % len(cells):] + cells[:rnd % len(cells)] if cells else []
        t0 = time.perf_counter()
        for name in a.models:
            for c in order:
                if (name, c) in errors:
                    continue
                if c == "ort":
                    samples[(name, c)] += timed_block(peers[name].ort_forward, runs, a.warmup)
                elif c == "torch":
                    samples[(name, c)] += timed_block(peers[name].torch_forward, runs, a.warmup)
                elif c == "pgc":
                    samples[(name, c)] += peers[name].gradcam_block(runs, a.warmup)
                else:
                    _, method, lv = c
                    res, err = ours(paths[name], method, lv, runs)
                    if err:
                        errors[(name, c)] = err
                        print(f"ours {name} {method} simd={lv}: {err}", file=sys.stderr)
                        continue
                    raw_ours.append({"round": rnd, "simd_requested": lv, **res})
                    reported.setdefault(lv, set()).add(str(res.get("simd")))
                    samples[(name, c)].append(float(res["min_ms" if a.stat == "min" else "median_ms"]))
        print(f"round {rnd + 1}/{a.rounds}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    results = {}
    for name in a.models:
        results[name] = {}
        for c in cells:
            s = samples[(name, c)]
            stat = min if a.stat == "min" else statistics.median
            results[name][c] = stat(s) if s and (name, c) not in errors else None

    levels = a.simd_levels
    if levels:
        for lv in levels:
            if lv != "auto" and reported.get(lv) and reported[lv] != {lv}:
                print(f"warning: GRADCAM_SIMD={lv} but ours reported simd={sorted(reported[lv])}", file=sys.stderr)
    today = datetime.date.today().isoformat()
    cpu = cpu_name()
    simd_note = "; ".join(f"{lv} → {'/'.join(sorted(reported.get(lv, {'?'})))}" for lv in levels) or "—"
    notes = (f"CPU: {cpu} ({os.cpu_count()} logical CPUs visible); ours SIMD (requested → reported): {simd_note}; "
             f"threads {a.threads}, batch {a.batch}, 224×224; input: "
             f"{'the cat photo (chelsea.png, Rust preprocessing)' if a.input == 'photo' else 'seeded N(0,1) tensor'}; "
             f"{a.iters} timed runs per cell in {a.rounds} round-robin rounds, {a.warmup} warm-up runs per round, "
             f"{'median' if a.stat == 'median' else 'minimum'} shown; "
             f"onnxruntime {version('onnxruntime')}, torch {torch.__version__}, grad-cam {version('grad-cam')}, "
             f"Python {platform.python_version()}; 1-minute load average {fmt_load(load_start)} at the start, "
             f"{fmt_load(loadavg())} at the end; {today}.")
    tab = table(results, levels, reported)
    err_lines = [f"- ours failed on {n} ({c[1]}, simd {c[2]}): `{e}`" for (n, c), e in errors.items()]

    print(tab)
    print()
    print(notes)
    for line in err_lines:
        print(line)

    if a.raw_json:
        with open(a.raw_json, "w") as f:
            json.dump({"samples": {f"{n}|{c if isinstance(c, str) else ':'.join(c)}": s for (n, c), s in samples.items()},
                       "ours": raw_ours, "errors": {f"{n}|{':'.join(c)}": e for (n, c), e in errors.items()},
                       "notes": notes}, f, indent=1)

    if a.write:
        section = [
            "", f"## Peers side by side (issue #9) — {today}", "",
            f"`tools/bench_peers.py`: ours (`gradcam bench --json`, {a.stat}) beside onnxruntime (forward), PyTorch "
            "(forward, inference mode) and pytorch-grad-cam (`GradCAM`, top-1 class, last spatial activation), all on "
            "the same ONNX export / module, same thread count, interleaved round by round. Random torchvision weights; "
            "EfficientNet-Lite0 with the bundled weights. Ratios below 1 in the first two ratio columns mean ours is "
            "faster than onnxruntime's forward; above 1 in the last, ours is faster than pytorch-grad-cam.", "",
            tab, "", notes,
        ]
        # Prose wrapped like the rest of BENCHMARKS.md; table rows stay whole.
        section = [line if line.startswith("|") else textwrap.fill(line, 116, break_long_words=False,
                                                                     break_on_hyphens=False) for line in section]
        if err_lines:
            section += [""] + err_lines
        with open(a.benchmarks_file, "a") as f:
            f.write("\n".join(section) + "\n")
        print(f"appended to {a.benchmarks_file}", file=sys.stderr)


if __name__ == "__main__":
    main()
