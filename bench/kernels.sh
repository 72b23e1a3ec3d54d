#!/usr/bin/env bash
# Kernel throughput table for bench/kernels.md: nb_matmul on Q4_0, Q8_0 and Q4_K at Llama-2-7B shapes,
# decode (1 token) and prefill (64 tokens), on the best instruction-set path, with THREADS threads (default 2).
# Usage: bench/kernels.sh [THREADS]   (builds kernels-c/tools/nb_kernel_bench into target/kernel-bench)
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
build=target/kernel-bench
cmake -S kernels-c -B "$build" -DCMAKE_BUILD_TYPE=Release -DNB_NO_CUDA=ON --log-level=WARNING >/dev/null
cmake --build "$build" --target nb_kernel_bench >/dev/null
lib="$(dirname "$(find "$build/native" -name 'libnibble_cpu.*' | head -1)")"
echo "# $(date -u +%FT%TZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load: $(cut -d' ' -f1-3 /proc/loadavg)"
for type in 2 8 12; do            # Q4_0, Q8_0, Q4_K (GGUF type ids)
  for shape in "4096 4096" "11008 4096"; do
    for tok in 1 64; do
      reps=$([ "$tok" = 1 ] && echo 20 || echo 5)
      LD_LIBRARY_PATH="$lib" ./"$build"/nb_kernel_bench "$type" $shape "$tok" "$threads" "$reps"
    done
  done
done
