#!/usr/bin/env bash
# Dev-only: checks, on a machine without a GPU, that the CUDA kernel sources (kernels/cuda/*.cu) compile with NVRTC
# and that the PTX assembles for real GPUs with ptxas. NVRTC and ptxas come from NVIDIA's PyPI wheels in a venv
# outside the repo (no GPU, driver or toolkit needed):
#   python3 -m venv /work/venv && /work/venv/bin/pip install nvidia-cuda-nvrtc-cu12 nvidia-cuda-nvcc-cu12
# Usage: tools/nvrtc_check.sh [venv] [sm_XX ...]   (default: /work/venv; sm_70 sm_80 sm_86 sm_89 sm_90)
set -euo pipefail
venv=${1:-/work/venv}
shift || true
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(sm_70 sm_80 sm_86 sm_89 sm_90)
site=$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
nvrtc="$site/nvidia/cuda_nvrtc/lib"
ptxas="$site/nvidia/cuda_nvcc/bin/ptxas"
[ -e "$nvrtc/libnvrtc.so.12" ] || { echo "no libnvrtc.so.12 under $nvrtc: pip install nvidia-cuda-nvrtc-cu12" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$(dirname "$0")/.."
LD_LIBRARY_PATH="$nvrtc${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" GRADCAM_PTX_OUT="$out/gradcam.ptx" \
    cargo test --release -p gradcam-kernels --features cuda nvrtc_compiles -- --nocapture > "$out/test.log" 2>&1 || true
grep -E "NVRTC|test result" "$out/test.log" || true
[ -s "$out/gradcam.ptx" ] || { echo "NVRTC produced no PTX; the test's output ends:" >&2; tail -20 "$out/test.log" >&2; exit 1; }
if [ -x "$ptxas" ]; then
    for arch in "${archs[@]}"; do
        "$ptxas" -arch="$arch" -O3 "$out/gradcam.ptx" -o "$out/gradcam_$arch.cubin"
        echo "ptxas $arch: ok ($(stat -c %s "$out/gradcam_$arch.cubin") bytes)"
    done
else
    echo "ptxas not found at $ptxas (pip install nvidia-cuda-nvcc-cu12): PTX not assembled"
fi
