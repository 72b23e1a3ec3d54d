#!/usr/bin/env bash
# nibble and llama.cpp side by side on the GPU machine, in one call, on the same synthetic GGUF files.
# Here: fetch a llama.cpp snapshot (not committed), pack its sources into .device/llama.tar.xz (see the README's GPU
# section), run bench/device/bundle.sh; there: bash bench/device/peer.sh, carrying .device.
# Each model: nibble bench writes it (--save) and measures, then llama-bench measures the same file (-ngl 99).
# Steps (arguments; default: single): single = tg128/pp512 on 7B Q4_0, Q4_K and 70B Q4_0; batched = aggregate
# generation of 1-64 sequences together (128-token prompts, 128 tokens each) against llama-batched-bench (fa on).
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
log="$OUT/peer.txt"
tar -xJf .device/jre.tar.xz -C /tmp && tar -xJf .device/app.tar.xz -C /tmp && tar -xJf .device/llama.tar.xz -C /tmp || exit 2
nibble() { /tmp/jre/bin/java --enable-native-access=ALL-UNNAMED -Dnibble.native.dir=/tmp/app/cp/native/linux-x86_64 \
  -cp /tmp/app/cp dev.nibble.cli.Nibble "$@"; }
t0=$(date +%s)
(cd /tmp/lc && cmake -B b -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release > /tmp/cmake.log 2>&1 \
  && cmake --build b -j"$(nproc)" --target llama-bench llama-batched-bench > /tmp/build.log 2>&1) || { tail -20 /tmp/cmake.log /tmp/build.log; exit 3; }
echo "llama.cpp built in $(( $(date +%s) - t0 )) s" | tee -a "$log"
LB=/tmp/lc/b/bin/llama-bench
run() { # SPEC NIBBLE_ARGS LLAMA_ARGS
  f=/tmp/model-${1//:/-}.gguf
  nibble bench --synthetic "$1" --save "$f" --device cuda $2 2>&1 | grep -E '^\||error' | tee -a "$log"
  $LB -m "$f" -ngl 99 $3 2>&1 | grep -E '^\||error' | tee -a "$log"
  rm -f "$f"
}
for step in "${@:-single}"; do
  case "$step" in
    single)
      run 7b:q4_0 "-p 512 -n 128 -r 5" "-p 512 -n 128 -r 5 -fa 0,1"
      run 7b:q4_k "-p 512 -n 128 -r 5" "-p 512 -n 128 -r 5 -fa 1"
      run 70b:q4_0 "-p 512 -n 128 -r 3 --ctx 4096 --gpu-memory 48G" "-p 512 -n 128 -r 3 -fa 1" ;;
    batched)
      f=/tmp/model-7b-q4_0.gguf
      nibble bench --synthetic 7b:q4_0 --save "$f" --device cuda -p 128 -n 128 -r 3 --parallel 1,8,16,32,64 2>&1 \
        | grep -E '^\||error' | tee -a "$log"
      /tmp/lc/b/bin/llama-batched-bench -m "$f" -ngl 99 -fa -c 16384 -b 2048 -ub 512 -npp 128 -ntg 128 \
        -npl 1,8,16,32,64 2>&1 | grep -E '^\||error' | tee -a "$log"
      rm -f "$f" ;;
    *) echo "unknown step $step" ;;
  esac
done
echo "all done in $(( $(date +%s) - t0 )) s" | tee -a "$log"
