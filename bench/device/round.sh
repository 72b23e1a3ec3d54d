#!/usr/bin/env bash
# One GPU round on the device machine, in one call (the machine starts bare and has no Java):
#   unpack the bundle made by bench/device/bundle.sh, print the card's state, then run the steps named:
#   checks   the C self-checks of the CUDA kernels (nb_cuda_check_*), with their timings
#   tests    the Java GPU tests (CUDA kernels against the Java references, the tiny model end to end; TESTS="Class ..."
#            runs only those classes of dev.nibble.runtime)
#   sanitize the CUDA kernel tests once more under compute-sanitizer
#   bench    nibble bench on synthetic Llama-2 shapes (BENCH="7b:q4_0 7b:q4_k ..." overrides the list)
#   batch    batched generation, 7B Q4_0: 128-token prompts, 128 tokens each, 1 to 64 sequences together
#   big      70B Q4_0 and q4_k_m-type Q4_K with a 4,096-token context under --gpu-memory 48G, peak recorded
#   split    70B Q4_0 with a 4,096-token context under --gpu-memory 24G: the layers that fit on the GPU, the rest on
#            the CPU (SPLIT_MEMORY overrides 24G), peak recorded
#   copy     device-to-device copy bandwidth (the ceiling for decode), through PyTorch
# usage, through the device tool, from the repository root with carry [".device"]:
#   bash bench/device/round.sh checks tests bench copy
# Logs go to $OUT (or /tmp/out); the end of the output is a short summary.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
tar -xJf .device/jre.tar.xz -C /tmp && tar -xJf .device/app.tar.xz -C /tmp || { echo "bundle missing: run bench/device/bundle.sh"; exit 2; }
JAVA="/tmp/jre/bin/java --enable-native-access=ALL-UNNAMED -Dnibble.native.dir=/tmp/app/cp/native/linux-x86_64"
export LD_LIBRARY_PATH=/tmp/app/cp/native/linux-x86_64
nibble() { $JAVA -cp /tmp/app/cp dev.nibble.cli.Nibble "$@"; }
summary="$OUT/summary.txt"
: > "$summary"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.mem,temperature.gpu --format=csv \
  | tee -a "$summary"

for step in "$@"; do
  t0=$(date +%s)
  case "$step" in
    checks)
      for c in /tmp/app/bin/nb_cuda_check_*; do
        "$c" > "$OUT/$(basename "$c").log" 2>&1; rc=$?
        echo "$(basename "$c"): exit $rc; $(grep -c PASS "$OUT/$(basename "$c").log") PASS, $(grep -c FAIL "$OUT/$(basename "$c").log") FAIL" | tee -a "$summary"
        grep FAIL "$OUT/$(basename "$c").log" | head -5 | tee -a "$summary"
      done ;;
    tests|sanitize)
      classes="--select-class dev.nibble.runtime.nativelib.CudaKernelTest"
      [ "$step" = tests ] && classes="$classes --select-class dev.nibble.runtime.TinyLlamaOnCudaTest --select-class dev.nibble.runtime.TinyLlamaOnCpuTest --select-class dev.nibble.runtime.TinyLlamaOnCudaAndCpuTest --select-class dev.nibble.runtime.LayerSplitTest"
      # TESTS="A B": only these classes of dev.nibble.runtime (a round that changed no kernel)
      [ -n "${TESTS:-}" ] && classes=$(for c in $TESTS; do printf -- '--select-class dev.nibble.runtime.%s ' "$c"; done)
      prefix=""
      [ "$step" = sanitize ] && prefix="compute-sanitizer --tool memcheck --leak-check no --report-api-errors no --print-limit 20 --error-exitcode 9"
      $prefix $JAVA -cp /tmp/app/cp org.junit.platform.console.ConsoleLauncher execute $classes \
        --details=tree --disable-banner > "$OUT/$step.log" 2>&1; rc=$?
      echo "$step: exit $rc" | tee -a "$summary"
      grep -E "tests (successful|failed|skipped|aborted)|ERROR SUMMARY" "$OUT/$step.log" | tee -a "$summary"
      grep -B1 -A3 "✘" "$OUT/$step.log" | head -40 | tee -a "$summary" ;;
    bench)
      for spec in ${BENCH:-7b:q4_0 7b:q4_k}; do
        name=${spec//:/-}
        nibble bench --synthetic "$spec" --device cuda -p 512 -n 128 -r 5 --json > "/tmp/bench-$name.json" 2> "/tmp/bench-$name.err"
        echo "bench $spec: exit $?" | tee -a "$summary"
        grep -E '"test"|median|peak' "/tmp/bench-$name.json" | tr -d ' \n' | sed 's/,"/ /g' | tee -a "$summary"; echo | tee -a "$summary"
        tail -3 "/tmp/bench-$name.err" | tee -a "$summary"
      done ;;
    batch)
      nibble bench --synthetic 7b:q4_0 --device cuda -p 128 -n 128 -r 3 --parallel ${PARALLEL:-1,8,16,32,64} --json \
        > /tmp/bench-batch.json 2> /tmp/bench-batch.err
      echo "batch 7b:q4_0: exit $?" | tee -a "$summary"
      grep -E '"test"|median' /tmp/bench-batch.json | tr -d ' \n' | sed 's/,"/ /g; s/"test"/\n"test"/g' | tee -a "$summary"
      echo | tee -a "$summary"
      tail -3 /tmp/bench-batch.err | tee -a "$summary" ;;
    big)
      for spec in 70b:q4_0 70b:q4_k; do
        name=${spec//:/-}
        # the device's own view of memory in use, sampled while nibble runs: the peak goes in the summary
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "/tmp/big-$name.mem" &
        sampler=$!
        nibble bench --synthetic "$spec" --device cuda --gpu-memory 48G --ctx 4096 -p 512 -n 128 -r 3 --json \
          > "/tmp/big-$name.json" 2> "/tmp/big-$name.err"
        rc=$?
        kill $sampler
        echo "big $spec: exit $rc; device memory in use at most $(sort -n "/tmp/big-$name.mem" | tail -1) MiB (nvidia-smi)" | tee -a "$summary"
        grep -E '"test"|median|peak' "/tmp/big-$name.json" | tr -d ' \n' | sed 's/,"/ /g' | tee -a "$summary"; echo | tee -a "$summary"
        tail -3 "/tmp/big-$name.err" | tee -a "$summary"
      done ;;
    split)
      nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > /tmp/split.mem &
      sampler=$!
      nibble bench --synthetic 70b:q4_0 --device cuda --gpu-memory "${SPLIT_MEMORY:-24G}" --ctx 4096 -p 64 -n 32 -r 3 \
        --json > /tmp/split.json 2> /tmp/split.err
      rc=$?
      kill $sampler
      echo "split 70b:q4_0 under --gpu-memory ${SPLIT_MEMORY:-24G}: exit $rc; device memory in use at most $(sort -n /tmp/split.mem | tail -1) MiB (nvidia-smi)" | tee -a "$summary"
      grep -E '"test"|median|peak|"backend"' /tmp/split.json | tr -d ' \n' | sed 's/,"/ /g' | tee -a "$summary"; echo | tee -a "$summary"
      grep -E "layers|device:" /tmp/split.err | tee -a "$summary"
      tail -3 /tmp/split.err | tee -a "$summary" ;;
    copy)
      python3 - <<'PY' 2>&1 | tee -a "$summary"
import torch
n = 4 << 30
a = torch.empty(n, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
ts = []
for _ in range(10):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); b.copy_(a); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
ts.sort(); ms = ts[len(ts) // 2]
print(f"copy: {2 * n / ms / 1e6:.0f} GB/s (read + write, 4 GiB, median of 10)")
PY
      ;;
    *) echo "unknown step $step" ;;
  esac
  echo "  ($step took $(( $(date +%s) - t0 )) s)" | tee -a "$summary"
done
# the full results in one file (the device tool brings back at most 8)
for f in /tmp/bench-*.json /tmp/bench-*.err /tmp/big-*.json /tmp/big-*.err; do
  [ -f "$f" ] && { echo "=== $f"; cat "$f"; } >> "$OUT/results.txt"
done
echo "=== summary ==="
cat "$summary"
