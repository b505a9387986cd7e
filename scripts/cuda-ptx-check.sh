#!/usr/bin/env bash
# Checks the CUDA toolchain of scripts/cuda-llvm.sh without a GPU: links Debian's static LLVM 22
# (NVPTX back end) into a small C program on this machine, lowers an axpy kernel to PTX for
# sm_90 (H100/H200), and assembles it with NVIDIA's ptxas (from PyPI's nvidia-cuda-nvcc-cu12,
# in target/cuda-ptx-check/). Needs gcc, g++ and libzstd-dev libz3-dev libxml2-dev zlib1g-dev.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/scripts/cuda-ptx-check"
work="$root/target/cuda-ptx-check"
mkdir -p "$work"
llvm_config="$("$root/scripts/cuda-llvm.sh")/bin/llvm-config"

gcc -c "$src/axpy.c" $("$llvm_config" --cflags) -o "$work/axpy.o"
gcc -c "$src/glibc-c23-shim.c" -o "$work/shim.o"
g++ "$work/axpy.o" "$work/shim.o" -o "$work/axpy" $("$llvm_config" --ldflags) \
    $("$llvm_config" --link-static --libs nvptx irreader) $("$llvm_config" --link-static --system-libs)
"$work/axpy" >"$work/axpy.ptx"

ptxas=$(find "$work/nvcc" -name ptxas -type f 2>/dev/null | head -1 || true)
if [[ -z $ptxas ]]; then
    python3 -m pip download --no-deps -q "nvidia-cuda-nvcc-cu12==12.9.86" -d "$work/wheels"
    python3 -m zipfile -e "$work"/wheels/nvidia_cuda_nvcc_cu12-*.whl "$work/nvcc"
    ptxas=$(find "$work/nvcc" -name ptxas -type f | head -1)
    chmod +x "$ptxas"
fi
"$ptxas" -arch=sm_90 -v "$work/axpy.ptx" -o "$work/axpy.cubin"
echo "cuda-ptx-check: LLVM $("$llvm_config" --version) PTX for sm_90 assembled by $("$ptxas" --version | tail -1)"
