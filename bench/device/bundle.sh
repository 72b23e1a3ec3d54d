#!/usr/bin/env bash
# Builds, on this machine, everything a GPU round needs into .device/ (git-ignored, carried by the device tool):
#   jre.tar.xz   a small JDK 25 runtime (the GPU machine has no Java)
#   app.tar.xz   nibble's classes (main and test) and every dependency, unpacked into one class path, the native
#                libraries, JUnit's console launcher, and the CUDA self-check programs
# The tracked tree already takes ~43 MiB of the 64 MiB a call may carry, so both archives are made as small as xz can:
# the runtime is linked uncompressed (compressed modules do not compress again) and the jars are unpacked.
# usage: bench/device/bundle.sh [CUDA_ARCHS]   (default 90: the H200; the normal build makes all four)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$ROOT/scripts/find-jdk.sh"
cd "$ROOT"
archs=${1:-90}
out="$ROOT/.device"
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

if [ ! -f "$out/jre.tar.xz" ]; then
  "$JAVA_HOME/bin/jlink" --add-modules java.base,java.logging,java.management,jdk.management,jdk.unsupported \
    --compress zip-0 --strip-debug --no-header-files --no-man-pages --output "$tmp/jre"
  tar -C "$tmp" -cf - jre | xz -9e -T0 > "$out/jre.tar.xz"
fi

# Java: compile everything and the test classes; the normal CMake build of the kernels runs too (all archs, as CI).
mvn -B -q -DskipTests install >/dev/null
# The CUDA library and its self-checks for the device's architecture, in a build of their own.
cmake -S kernels-c -B "$tmp/cmake" -DCMAKE_BUILD_TYPE=Release -DNB_CUDA_ARCHS="$archs" -DNB_OUT_DIR="$tmp/native" \
  --log-level=WARNING >/dev/null
cmake --build "$tmp/cmake" --parallel --target nibble_cpu nibble_cuda nb_cuda_checks >/dev/null

app="$tmp/app"
mkdir -p "$app/cp" "$app/bin"
mvn -B -q dependency:build-classpath -pl cli,runtime -Dmdep.includeScope=test -Dmdep.outputFile="$tmp/cp.txt" \
  -Dmdep.appendOutput=true >/dev/null
# Every jar of both modules' test class paths (ours are reactor jars: their classes folders go in below), except
# what a GPU round never loads and the size limit cannot afford: the Jinja engine behind chat templates (and the
# libraries only it uses), terminal line editing, and compile-time annotations.
for f in $(tr ':' '\n' < "$tmp/cp.txt" | sort -u); do
  case "$f" in
    */dev/nibble/*) ;;
    *junit*|*opentest4j*|*apiguardian*) ;; # the console launcher below brings its own JUnit
    */jinjava/*|*/guava/*|*/failureaccess/*|*/jline*|*/checker-qual/*|*/error_prone*|*/j2objc*|*/javassist/*) ;;
    */derive4j*|*/immutables/*|*/jsr305/*|*/re2j/*|*/snakeyaml/*|*/jsoup/*|*/listenablefuture/*) ;;
    */commons-net/*) ;; # jinjava's
    */langchain4j/*|*/jtokkit/*|*/slf4j*|*/jazzer*|*/kotlin*) ;; # test-only clients and fuzzing: not run there
    *.jar) (cd "$app/cp" && unzip -qo "$f" -x 'META-INF/*' 2>/dev/null || true) ;;
  esac
done
(cd "$app/cp" && unzip -qo "$HOME/.m2/repository/org/junit/platform/junit-platform-console-standalone/1.14.1/junit-platform-console-standalone-1.14.1.jar" -x 'META-INF/*.SF' 'META-INF/*.RSA')
for m in formats converter kernels-c runtime cli test-support; do
  cp -r "$m/target/classes/." "$app/cp/"
done
cp -r runtime/target/test-classes/. "$app/cp/"
rm -rf "$app/cp/native"
mkdir -p "$app/cp/native"
cp -r "$tmp/native/." "$app/cp/native/"
cp "$tmp"/cmake/nb_cuda_check_* "$app/bin/" 2>/dev/null || true
strip --strip-unneeded "$app/bin/"* "$app/cp/native/"*/*.so
tar -C "$tmp" -cf - app | xz -9 -T0 > "$out/app.tar.xz"
ls -la "$out"
