#!/usr/bin/env bash
# Runs nibble's fuzz targets in fuzzing mode (coverage-guided, Jazzer through JUnit) for a while each.
#
#   bench/fuzz.sh [DURATION] [TARGET...]
#
# DURATION: time per target as Jazzer writes it (30s, 10m, 1h; default 10m). TARGET: any of
#   gguf safetensors zip pickle tokenizer-json sentencepiece chat-template   (default: all, one after another)
#
# A plain test run (`mvn test`, ./run-tests, CI) replays each target's inputs only: its seeds (the project's bad-input
# files) and every finding kept so far, in src/test/resources/<package>/<Class>Inputs/<method>/. Here each target is
# fuzzed from those inputs. A finding (an exception other than the documented refusal, a message of more than one
# line, an input slower than 5 s or allocating beyond the target's bound, an OutOfMemoryError or StackOverflowError) is
# written into that inputs directory: fix it, keep the input there as a regression seed, and record it in
# bench/RESULTS.md ("Fuzzing"). The coverage corpus of each target is kept in bench/out/fuzz-corpus/ for the next run.
# Logs: bench/out/fuzz-<target>.log; the summary line of each run is printed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/find-jdk.sh"
cd "$ROOT"

DURATION="${1:-10m}"
shift || true
ALL=(gguf safetensors zip pickle tokenizer-json sentencepiece chat-template)
if [ "$#" -eq 0 ]; then TARGETS=("${ALL[@]}"); else TARGETS=("$@"); fi

# target -> module, test class, method, classes to instrument for coverage (besides nibble's own)
spec() {
  case "$1" in
    gguf)           echo "formats dev.nibble.formats.gguf.GgufFuzzTest gguf" ;;
    safetensors)    echo "formats dev.nibble.formats.safetensors.SafetensorsFuzzTest safetensors com.fasterxml.jackson.core.**" ;;
    zip)            echo "formats dev.nibble.formats.torch.TorchZipFuzzTest zip org.apache.commons.compress.archivers.zip.**" ;;
    pickle)         echo "formats dev.nibble.formats.torch.TorchZipFuzzTest pickle" ;;
    tokenizer-json) echo "runtime dev.nibble.runtime.tokenizer.TokenizerFilesFuzzTest tokenizerJson com.fasterxml.jackson.core.**" ;;
    sentencepiece)  echo "runtime dev.nibble.runtime.tokenizer.TokenizerFilesFuzzTest sentencePieceModel" ;;
    chat-template)  echo "runtime dev.nibble.runtime.chat.ChatTemplateFuzzTest template com.hubspot.jinjava.**" ;;
    *) echo "fuzz.sh: unknown target '$1'; targets are: ${ALL[*]}" >&2; exit 2 ;;
  esac
}
for t in "${TARGETS[@]}"; do spec "$t" >/dev/null; done

mkdir -p bench/out/fuzz-corpus
echo "fuzz.sh: building formats and runtime" >&2
mvn -B -q -o install -pl formats,runtime -Dexec.skip=true -DskipTests

SUMMARY=()
for t in "${TARGETS[@]}"; do
  read -r module cls method extra <<<"$(spec "$t")"
  instrument="dev.nibble.**${extra:+,$extra}"
  kept="bench/out/fuzz-corpus/$cls/$method"
  live="$module/.cifuzz-corpus/$cls/$method"
  # Jazzer keeps the corpus under the module; it lives in bench/out between runs.
  if [ -d "$kept" ]; then mkdir -p "$(dirname "$live")"; rm -rf "$live"; mv "$kept" "$live"; fi
  modules="formats"
  if [ "$module" != formats ]; then modules="formats,$module"; fi
  log="bench/out/fuzz-$t.log"
  echo "fuzz.sh: $t for $DURATION (log $log)" >&2
  set +e
  # formats is in the reactor even for runtime's targets, so that they run against this tree's parsers rather than
  # whatever nibble-formats jar the local repository holds.
  JAZZER_FUZZ=1 mvn -B -o test -pl "$modules" -Dexec.skip=true -Dtest="$cls#$method" -Dsurefire.failIfNoSpecifiedTests=false \
      -Djazzer.max_duration="$DURATION" -Djazzer.keep_going=20 -Djazzer.instrument="$instrument" >"$log" 2>&1
  rc=$?
  set -e
  if [ -d "$live" ]; then mkdir -p "$(dirname "$kept")"; rm -rf "$kept"; mv "$live" "$kept"; fi
  rm -rf "$module/.cifuzz-corpus"
  runs="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)"
  findings="$(grep -c '== Java Exception\|ERROR: libFuzzer' "$log" || true)"
  SUMMARY+=("$t: ${runs:-no run count (see $log)}, $findings finding(s), exit $rc")
done
printf '%s\n' "${SUMMARY[@]}"
