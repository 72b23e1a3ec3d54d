#!/usr/bin/env bash
# CPU speed, nibble against llama.cpp on the same synthetic Llama-2-7B Q4_0 file (written by nibble, standard GGUF).
# Usage: bench/bench-cpu.sh [SIZE:TYPE] [PROMPT] [GEN] [RUNS]    (defaults: 7b:q4_0 64 32 3)
# llama-bench is taken from $LLAMA_BENCH, else peers/llama.cpp/build/bin/llama-bench, else the PATH.
# Both run with one thread per CPU; other load on the machine shows in both figures alike, so run them back to back.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPEC="${1:-7b:q4_0}"; P="${2:-64}"; N="${3:-32}"; R="${4:-3}"
THREADS="$(nproc)"
OUT="$ROOT/bench/out"
MODEL="$OUT/synthetic-${SPEC/:/-}.gguf"
mkdir -p "$OUT"

LLAMA_BENCH="${LLAMA_BENCH:-$ROOT/peers/llama.cpp/build/bin/llama-bench}"
[ -x "$LLAMA_BENCH" ] || LLAMA_BENCH="$(command -v llama-bench || true)"

echo "== nibble bench --synthetic $SPEC -p $P -n $N -r $R -t $THREADS (writes $MODEL)"
if [ -f "$MODEL" ]; then
  "$ROOT/nibble" bench -m "$MODEL" -p "$P" -n "$N" -r "$R" -t "$THREADS" --device cpu
else
  "$ROOT/nibble" bench --synthetic "$SPEC" --save "$MODEL" -p "$P" -n "$N" -r "$R" -t "$THREADS" --device cpu
fi

if [ -n "$LLAMA_BENCH" ]; then
  echo "== llama-bench -m $MODEL -p $P -n $N -r $R -t $THREADS"
  "$LLAMA_BENCH" -m "$MODEL" -p "$P" -n "$N" -r "$R" -t "$THREADS"
else
  echo "llama-bench not found: set LLAMA_BENCH=/path/to/llama-bench" >&2
fi
echo "(the model stays in $MODEL for reruns; delete it to free $(du -h "$MODEL" | cut -f1))"
