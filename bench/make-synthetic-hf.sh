#!/usr/bin/env bash
# Writes a random-weight checkpoint shaped like Llama-2-7B (13.5 GB of fp16 safetensors) into OUT_DIR, for timing
# `nibble convert`. Usage: bench/make-synthetic-hf.sh OUT_DIR [layers]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/find-jdk.sh"
cd "$ROOT"
exec "$JAVA_HOME/bin/java" "$ROOT/bench/MakeSyntheticHf.java" "$@"
