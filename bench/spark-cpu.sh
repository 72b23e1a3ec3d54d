#!/usr/bin/env bash
# Batch generation on Spark, local mode, against `nibble batch` on the same requests and the same model (the
# synthetic Llama-2-7B Q4_0 file): Spark's overhead in aggregate tokens/s. Both runs use every CPU for one engine of
# --parallel N sequences (Spark: local[T] with spark.task.cpus=T, so one task runs at a time, as on an executor
# configured per the README), greedy, the same max_tokens; the script checks that both wrote the same texts.
#
# Usage: bench/spark-cpu.sh
# Environment (defaults): REQUESTS=64  MAX_TOKENS=64  PARALLEL=16  PROMPT_WORDS=8  ROUNDS=1 (each round runs
#   nibble batch, then the Spark job)  THREADS=$(nproc)  FORMAT=jsonl (or parquet: no text check)
#   MODEL=/tmp/syn7b.gguf (written when absent: nibble bench --synthetic 7b:q4_0 --save MODEL -p 1 -n 1 -r 1)
#   SPARK_SUBMIT (else spark-submit on the PATH; none: the job runs in a plain JVM in local mode, on the Spark jars
#   Maven resolved for the spark module, with Spark's own JVM options)
#   NIBBLE_JAR (else cli/target/nibble.jar, which ./nibble builds when needed); the Spark jar spark/target/nibble-spark.jar
#   is built when absent or older than the module's sources.
# Prints, per run, the wall time of the whole command (JVM and Spark start, model mapping, generation, writing) and
# each tool's own figure (nibble batch: from its first request; the Spark job: its write, model mapping included),
# then a Markdown table. Logs and outputs in bench/out/spark-*. Run it on a quiet machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/find-jdk.sh"
REQUESTS="${REQUESTS:-64}"; MAX_TOKENS="${MAX_TOKENS:-64}"; PARALLEL="${PARALLEL:-16}"
PROMPT_WORDS="${PROMPT_WORDS:-8}"; ROUNDS="${ROUNDS:-1}"; THREADS="${THREADS:-$(nproc)}"; FORMAT="${FORMAT:-jsonl}"
MODEL="${MODEL:-/tmp/syn7b.gguf}"
OUT="$ROOT/bench/out"; mkdir -p "$OUT"

if [ -z "${NIBBLE_JAR:-}" ]; then # ./nibble builds the jar if needed; then it runs directly (no rebuild mid-run)
  "$ROOT/nibble" --version >/dev/null
  NIBBLE_JAR="$ROOT/cli/target/nibble.jar"
fi
NIBBLE=("$JAVA_HOME/bin/java" --enable-native-access=ALL-UNNAMED ${NIBBLE_JAVA_OPTS:-} -jar "$NIBBLE_JAR")
if [ ! -f "$MODEL" ]; then
  echo "== writing $MODEL (nibble bench --synthetic 7b:q4_0 --save)"
  "${NIBBLE[@]}" bench --synthetic 7b:q4_0 --save "$MODEL" -p 1 -n 1 -r 1 --device cpu >/dev/null
fi

SPARK_JAR="$ROOT/spark/target/nibble-spark.jar"
if [ ! -f "$SPARK_JAR" ] || [ -n "$(find "$ROOT/spark/src/main" "$ROOT/spark/pom.xml" -newer "$SPARK_JAR" -type f -print -quit)" ]; then
  echo "== building $SPARK_JAR"
  (cd "$ROOT" && mvn -B -q -DskipTests package -pl spark -am) >"$OUT/spark-build.log" 2>&1 </dev/null \
    || { tail -20 "$OUT/spark-build.log" >&2; exit 1; }
fi
SPARK_SUBMIT="${SPARK_SUBMIT:-$(command -v spark-submit || true)}"
MASTER="local[$THREADS]"
if [ -n "$SPARK_SUBMIT" ]; then
  SPARK=("$SPARK_SUBMIT" --master "$MASTER" --conf "spark.task.cpus=$THREADS" --driver-memory 2g
    --conf spark.ui.enabled=false --class dev.nibble.spark.SparkBatchJob "$SPARK_JAR")
else
  CLASSPATH_FILE="$OUT/spark-classpath.txt"
  if [ ! -s "$CLASSPATH_FILE" ] || [ "$ROOT/spark/pom.xml" -nt "$CLASSPATH_FILE" ]; then
    (cd "$ROOT" && mvn -B -q dependency:build-classpath -pl spark -Dmdep.includeScope=provided \
      -Dmdep.outputFile="$CLASSPATH_FILE") >"$OUT/spark-build.log" 2>&1 </dev/null \
      || { tail -20 "$OUT/spark-build.log" >&2; exit 1; }
  fi
  # what spark-submit adds by itself: org.apache.spark.launcher.JavaModuleOptions of Spark 4.2
  SPARK_JAVA_OPTS=(-XX:+IgnoreUnrecognizedVMOptions --add-modules=jdk.incubator.vector
    --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED
    --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED
    --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED
    --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
    --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/sun.nio.cs=ALL-UNNAMED
    --add-opens=java.base/sun.security.action=ALL-UNNAMED --add-opens=java.base/sun.util.calendar=ALL-UNNAMED
    --add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED -Dio.netty.tryReflectionSetAccessible=true
    --sun-misc-unsafe-memory-access=allow --enable-native-access=ALL-UNNAMED)
  SPARK=("$JAVA_HOME/bin/java" "${SPARK_JAVA_OPTS[@]}" -Xmx2g -Dspark.master="$MASTER" -Dspark.task.cpus="$THREADS"
    -Dspark.ui.enabled=false -cp "$SPARK_JAR:$(cat "$CLASSPATH_FILE")" dev.nibble.spark.SparkBatchJob)
fi

# the requests: string ids (both tools then write "id":"rN"), varied prompts of about PROMPT_WORDS words, greedy
REQS="$OUT/spark-requests.jsonl"
WORDS=(the jury said in its report that the city council had done a fine job of handling the election which was
  held on a cold day in the north of the state while the mayor spoke to reporters about taxes and schools)
: >"$REQS"
for i in $(seq 1 "$REQUESTS"); do
  prompt=""
  for w in $(seq 1 "$PROMPT_WORDS"); do prompt+="${WORDS[$(( (i * 7 + w * 3) % ${#WORDS[@]} ))]} "; done
  echo "{\"id\": \"r$i\", \"prompt\": \"Story $i: ${prompt% }\", \"max_tokens\": $MAX_TOKENS, \"temperature\": 0}" >>"$REQS"
done

now() { date +%s.%N; }
tokens() { grep -oh '"completion_tokens":[0-9]*' "$@" | awk -F: '{s += $2} END {print s + 0}'; }
rate() { awk -v t="$1" -v s="$2" 'BEGIN { printf "%.2f", t / s }'; }

declare -a NIB_WALL SPK_WALL NIB_OWN SPK_OWN
echo "== $(date -u '+%F %T') UTC, $(nproc) CPUs, $THREADS threads, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $MODEL; $REQUESTS requests of ~$PROMPT_WORDS words, max_tokens $MAX_TOKENS, greedy, --parallel $PARALLEL"
echo "== Spark: ${SPARK[0]##*/} --master $MASTER (spark.task.cpus=$THREADS), output $FORMAT"
for round in $(seq 1 "$ROUNDS"); do
  echo "-- round $round: nibble batch"
  rm -f "$OUT/spark-nibble-results.jsonl"
  t0=$(now)
  "${NIBBLE[@]}" batch -m "$MODEL" -i "$REQS" -o "$OUT/spark-nibble-results.jsonl" --parallel "$PARALLEL" \
    -t "$THREADS" --device cpu --seed 1 >"$OUT/spark-nibble.log" 2>&1
  t1=$(now)
  n=$(tokens "$OUT/spark-nibble-results.jsonl"); wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  own="$(sed -n 's/.*generated [0-9]* tokens, \([0-9.]*\) tok\/s.*/\1/p' "$OUT/spark-nibble.log" | tail -1)"
  NIB_WALL+=("$(rate "$n" "$wall")"); NIB_OWN+=("$own")
  echo "   $n tokens in $(printf %.1f "$wall") s: ${NIB_WALL[-1]} tok/s (its own figure: $own tok/s)"

  echo "-- round $round: Spark job"
  t0=$(now)
  "${SPARK[@]}" --model "$MODEL" --input "$REQS" --output "$OUT/spark-job-results" --format "$FORMAT" \
    --parallel "$PARALLEL" --threads "$THREADS" --device cpu --seed 1 --overwrite >"$OUT/spark-job.log" 2>&1 \
    || { tail -30 "$OUT/spark-job.log" >&2; exit 1; }
  t1=$(now)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  summary="$(grep 'tokens generated in' "$OUT/spark-job.log" | tail -1)"
  n="$(echo "$summary" | sed -n 's/.*; \([0-9]*\) tokens generated.*/\1/p')"
  own="$(echo "$summary" | sed -n 's/.*: \([0-9.]*\) tokens\/s$/\1/p')"
  SPK_WALL+=("$(rate "$n" "$wall")"); SPK_OWN+=("$own")
  echo "   $n tokens in $(printf %.1f "$wall") s: ${SPK_WALL[-1]} tok/s (its own figure: $own tok/s)"
done
echo "== done, load average: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "$FORMAT" = jsonl ] && command -v python3 >/dev/null; then
  python3 - "$OUT/spark-nibble-results.jsonl" "$OUT/spark-job-results" <<'EOF'
import glob, json, sys
def texts(paths):
    out = {}
    for p in paths:
        for line in open(p, encoding="utf-8"):
            if line.strip():
                r = json.loads(line); out[str(r["id"])] = r.get("text")
    return out
a = texts([sys.argv[1]]); b = texts(glob.glob(sys.argv[2] + "/part-*"))
same = sum(1 for k in a if b.get(k) == a[k])
print(f"== same texts: {same} of {len(a)} requests (Spark wrote {len(b)} results)")
EOF
fi

median() { tr ' ' '\n' | { grep . || true; } | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
nw="$(echo "${NIB_WALL[*]}" | median)"; sw="$(echo "${SPK_WALL[*]}" | median)"
no="$(echo "${NIB_OWN[*]}" | median)"; so="$(echo "${SPK_OWN[*]}" | median)"
over() { awk -v s="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%+.1f%%", (s / b - 1) * 100 }'; }
echo
echo "| figure (tok/s, median of $ROUNDS) | nibble batch | Spark job | Spark against nibble batch |"
echo "|---|---:|---:|---:|"
echo "| whole command (wall) | $nw | $sw | $(over "$sw" "$nw") |"
echo "| each tool's own | $no | $so | $(over "$so" "$no") |"
