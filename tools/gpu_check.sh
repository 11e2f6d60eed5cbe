#!/usr/bin/env bash
# The GPU check of issue 15, for a machine with an NVIDIA GPU (dev-only; run from the repository root):
# the device tests on the GPU, then `gradcam bench` on the CPU and on the GPU for the bundled model side by side,
# PyTorch on the same GPU (tools/gpu_peers.py), and compute-sanitizer's memcheck over one saliency run.
#
#   tools/gpu_check.sh              builds with cargo (--features cuda) and runs what it built
#   tools/gpu_check.sh BUNDLE_DIR   runs binaries built elsewhere with --features cuda, for GPU machines without
#                                   Rust: BUNDLE_DIR holds gradcam, device-* (tests/device.rs),
#                                   gradcam_kernels-* (the kernels' unit tests) and manifest_dir (the repository
#                                   path the tests were built in, which they read their fixtures from)
#
# cudarc opens libnvrtc.so / libcublas.so or their CUDA 12 names; on a CUDA-13-only machine the script links the
# unversioned names to the toolkit's libraries in a folder of its own and puts it on LD_LIBRARY_PATH.
set -uo pipefail
bundle=${1:-}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
echo "host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"

links=/tmp/gradcam-cuda-libs
mkdir -p "$links"
for lib in nvrtc cublas; do
    found=""
    for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-*/lib64 \
        /usr/lib/x86_64-linux-gnu $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, d, "lib") for p in nvidia.__path__ for d in os.listdir(p)))' 2>/dev/null); do
        found=$(ls "$dir"/lib$lib.so* 2>/dev/null | grep -v stubs | head -1)
        [ -n "$found" ] && break
    done
    if [ -n "$found" ]; then
        ln -sfn "$(readlink -f "$found")" "$links/lib$lib.so"
        export LD_LIBRARY_PATH="$links:$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "lib$lib.so -> $(readlink -f "$found")"
    else
        echo "lib$lib.so: not found"
    fi
done

if [ -z "$bundle" ]; then
    cargo build --release --features cuda 2>&1 | tail -1
    binary=target/release/gradcam
    device_tests() { cargo test --release --features cuda --test device -- --nocapture; }
    kernel_tests() { cargo test --release --features cuda -p gradcam-kernels device; }
else
    manifest=$(cat "$bundle/manifest_dir")
    if [ ! -e "$manifest" ]; then
        mkdir -p "$(dirname "$manifest")" && ln -s "$PWD" "$manifest"
    fi
    binary=$bundle/gradcam
    device_tests() { timeout 180 "$bundle"/device-* --nocapture; }
    kernel_tests() { timeout 60 "$bundle"/gradcam_kernels-* device; }
fi

echo "== device tests (GPU 0)"
time device_tests 2>&1 | grep -E "^test |skipped|GPU|panicked|result|left|right"
echo "== kernels' device tests"
kernel_tests 2>&1 | grep -E "^test |CUDA|panicked|result"

echo "== gradcam bench, bundled EfficientNet-Lite0, cpu (all cores) against cuda"
for method in forward gradcam saliency; do
    for device in cpu cuda; do
        timeout 60 "$binary" bench --method "$method" --device "$device" --iters 20 --warmup 3 --json 2>&1 | tail -1
    done
    timeout 60 "$binary" bench --method "$method" --device cuda --batch 8 --iters 20 --warmup 3 --json 2>&1 | tail -1
done

echo "== PyTorch on the same GPU"
timeout 200 python3 tools/gpu_peers.py --binary "$binary" --models-dir /tmp/gpu-models 2>&1 | grep -v Warning

echo "== compute-sanitizer memcheck: one saliency and one Grad-CAM run, at batch 1 and 2 (batched products)"
if command -v compute-sanitizer > /dev/null; then
    for method in saliency gradcam; do
        for batch in 1 2; do
            timeout 120 compute-sanitizer --tool memcheck --print-limit 5 "$binary" bench --method "$method" \
                --device cuda --batch "$batch" --iters 1 --warmup 0 2>&1 | tail -4
        done
    done
else
    echo "compute-sanitizer: not found"
fi
