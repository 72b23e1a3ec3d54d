#!/usr/bin/env bash
# Serving speed on the CPU: `nibble serve --parallel N` next to llama.cpp's `llama-server --parallel N` on the same
# synthetic Llama-2-7B Q4_0 file, run alternately (nibble, llama-server, nibble batch for each N), with N concurrent
# streaming clients (bench/ServeLoad.java); and `nibble batch --parallel N` on the same requests (same prompts,
# max_tokens, greedy), which gives the server's overhead.
#
# Usage: bench/serve-cpu.sh [N ...]                         (default: 1 4 16)
# Environment (defaults): MAX_TOKENS=64 (per request)  PER_CLIENT=2 (requests per client: N × PER_CLIENT in all)
#   PROMPT_WORDS=24  CTX=256 (positions per request, prompt and answer)  ROUNDS=1  THREADS=$(nproc)
#   PORT=18080 (nibble's; llama-server's is PORT+1: the TIME_WAIT connections llama-server leaves keep its port
#   from being bound by another program for a minute)
#   SPEC=7b:q4_0 (the synthetic model, written once to bench/out/ by nibble bench --synthetic)
#   LLAMA_SERVER (else peers/llama.cpp/build/bin/llama-server, else the PATH; none: nibble only)
#   NIBBLE_JAR (else cli/target/nibble.jar, which ./nibble builds first when absent or older than the sources)
# Prints each run's line and a Markdown table (tokens/s aggregate, time to first token, serve against batch);
# logs in bench/out/serve-*.log. Each server starts fresh for each N and nothing is warmed up (llama-server runs
# with --no-warmup), so every figure includes its first pass, as nibble batch's does. Run it on a quiet machine:
# every figure shares the CPU with whatever else runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/find-jdk.sh"
LEVELS=("$@"); [ ${#LEVELS[@]} -gt 0 ] || LEVELS=(1 4 16)
MAX_TOKENS="${MAX_TOKENS:-64}"; PER_CLIENT="${PER_CLIENT:-2}"; PROMPT_WORDS="${PROMPT_WORDS:-24}"; CTX="${CTX:-256}"
ROUNDS="${ROUNDS:-1}"; THREADS="${THREADS:-$(nproc)}"; PORT="${PORT:-18080}"; SPEC="${SPEC:-7b:q4_0}"
OUT="$ROOT/bench/out"; MODEL="$OUT/synthetic-${SPEC/:/-}.gguf"
mkdir -p "$OUT"
LLAMA_SERVER="${LLAMA_SERVER:-$ROOT/peers/llama.cpp/build/bin/llama-server}"
[ -x "$LLAMA_SERVER" ] || LLAMA_SERVER="$(command -v llama-server || true)"
[ -n "$LLAMA_SERVER" ] || echo "llama-server not found (set LLAMA_SERVER=/path/to/llama-server): nibble only" >&2

if [ -z "${NIBBLE_JAR:-}" ]; then # ./nibble builds the jar if needed; then it runs directly (no rebuild mid-run)
  "$ROOT/nibble" --version >/dev/null
  NIBBLE_JAR="$ROOT/cli/target/nibble.jar"
fi
NIBBLE=("$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED ${NIBBLE_JAVA_OPTS:-} -jar "$NIBBLE_JAR")
LOAD=("$JAVA_HOME/bin/java" "$ROOT/bench/ServeLoad.java")
if [ ! -f "$MODEL" ]; then
  echo "== writing $MODEL (nibble bench --synthetic $SPEC --save)"
  "${NIBBLE[@]}" bench --synthetic "$SPEC" --save "$MODEL" -p 1 -n 1 -r 1 --device cpu >/dev/null
fi

SERVER_PID=""
# stops the server with SIGTERM (a background job of a script ignores SIGINT, and so does the JVM then), at most 60 s
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 120); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=""
  fi
}
trap stop_server EXIT

# start_server PORT LOG COMMAND...: starts it in the background and waits until its GET /health answers 200
start_server() {
  local port="$1" log="$2"; shift 2
  if curl -s -o /dev/null "http://127.0.0.1:$port/health" 2>/dev/null; then
    echo "something already listens on port $port: stop it, or set PORT" >&2; exit 1
  fi
  "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 1 600); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server exited; see $log" >&2; tail -5 "$log" >&2; exit 1; }
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "the server did not become ready in 300 s; see $log" >&2; exit 1
}

# load PORT N: N clients, N × PER_CLIENT requests; prints the load generator's summary, sets RESULT
load() {
  local lines
  lines="$("${LOAD[@]}" "http://127.0.0.1:$1" "$2" $(( $2 * PER_CLIENT )) "$MAX_TOKENS" "$PROMPT_WORDS")"
  echo "   $(echo "$lines" | grep -v '^RESULT')"
  RESULT="$(echo "$lines" | grep '^RESULT')"
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

declare -A NIB LLA BAT TTFT_N TTFT_L
echo "== $(date -u '+%F %T') UTC, $(nproc) CPUs, $THREADS threads, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $MODEL; requests: ~$PROMPT_WORDS-word prompts, max_tokens $MAX_TOKENS, greedy, $PER_CLIENT per client"
for round in $(seq 1 "$ROUNDS"); do
  for n in "${LEVELS[@]}"; do
    echo "-- round $round, $n client(s): nibble serve --parallel $n"
    start_server "$PORT" "$OUT/serve-nibble-$n.log" "${NIBBLE[@]}" serve -m "$MODEL" --port "$PORT" \
      --parallel "$n" --ctx "$CTX" -t "$THREADS" --device cpu
    load "$PORT" "$n"; stop_server
    NIB[$n]="${NIB[$n]:-} $(field "$RESULT" tok_s)"; TTFT_N[$n]="${TTFT_N[$n]:-} $(field "$RESULT" ttft_median)/$(field "$RESULT" ttft_p90)"

    if [ -n "$LLAMA_SERVER" ]; then
      echo "-- round $round, $n client(s): llama-server --parallel $n"
      start_server $(( PORT + 1 )) "$OUT/serve-llama-$n.log" "$LLAMA_SERVER" -m "$MODEL" --port $(( PORT + 1 )) \
        --parallel "$n" -c $(( CTX * n )) -t "$THREADS" --no-webui --no-warmup
      load $(( PORT + 1 )) "$n"; stop_server
      LLA[$n]="${LLA[$n]:-} $(field "$RESULT" tok_s)"; TTFT_L[$n]="${TTFT_L[$n]:-} $(field "$RESULT" ttft_median)/$(field "$RESULT" ttft_p90)"
    fi

    echo "-- round $round, $n client(s): nibble batch --parallel $n (the same requests)"
    "${LOAD[@]}" --jsonl "$OUT/serve-requests-$n.jsonl" $(( n * PER_CLIENT )) "$MAX_TOKENS" "$PROMPT_WORDS"
    rm -f "$OUT/serve-results-$n.jsonl"
    "${NIBBLE[@]}" batch -m "$MODEL" -i "$OUT/serve-requests-$n.jsonl" -o "$OUT/serve-results-$n.jsonl" \
      --parallel "$n" --ctx "$CTX" -t "$THREADS" --device cpu >"$OUT/serve-batch-$n.log" 2>&1
    summary="$(grep 'generated .* tok/s' "$OUT/serve-batch-$n.log" | tail -1)"
    echo "   $summary"
    # generated tokens over the run's seconds (its own tok/s has one decimal)
    BAT[$n]="${BAT[$n]:-} $(echo "$summary" | sed -n 's/.* in \([0-9.]*\) s .*generated \([0-9]*\) tokens.*/\2 \1/p' \
      | awk '{ printf "%.3f", $1 / $2 }')"
  done
done
echo "== done, load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# the median of a list of numbers
median() { tr ' ' '\n' | { grep . || true; } | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo
echo "| clients | nibble serve tok/s | llama-server tok/s | nibble batch tok/s | serve vs batch | TTFT median/p90 s, nibble | TTFT median/p90 s, llama-server |"
echo "|---:|---:|---:|---:|---:|---|---|"
for n in "${LEVELS[@]}"; do
  s="$(echo "${NIB[$n]}" | median)"; l="$(echo "${LLA[$n]:-}" | median)"; b="$(echo "${BAT[$n]}" | median)"
  over="$(awk -v s="$s" -v b="$b" 'BEGIN { if (b > 0) printf "%+.1f%%", (s / b - 1) * 100 }')"
  tn="${TTFT_N[$n]:-}"; tl="${TTFT_L[$n]:-}"
  echo "| $n | $s | ${l:--} | $b | $over | ${tn# } | ${tl:+${tl# }} |"
done
