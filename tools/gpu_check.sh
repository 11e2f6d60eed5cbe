#!/usr/bin/env bash
# The GPU check of issue 15, for a machine with an NVIDIA GPU (dev-only; run from the repository root):
# the device tests on the GPU, then `gradcam bench` on the CPU and on the GPU for the bundled model, side by side.
# Prints the device, the driver / library versions it found, and one JSON line per bench run.
set -uo pipefail
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"
ls /usr/local/cuda*/lib64/libnvrtc.so* /usr/local/cuda*/lib64/libcublas.so* 2>/dev/null | head -4
cargo build --release --features cuda 2>&1 | tail -1
cargo test --release --features cuda --test device -- --nocapture 2>&1 | grep -E "test |skipped|panicked|result"
cargo test --release --features cuda -p gradcam-kernels device 2>&1 | grep -E "CUDA|result"
for method in forward gradcam saliency; do
    for device in cpu cuda; do
        ./target/release/gradcam bench --method "$method" --device "$device" --iters 20 --warmup 3 --json 2>&1 | tail -1
    done
done
