# Sourced by ./nibble and ./run-tests: exports JAVA_HOME pointing at a JDK >= 22 (needed for java.lang.foreign).
jdk_feature() { "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = \([0-9]*\).*/\1/p'; }
jdk_ok() { [ -x "$1/bin/java" ] && [ -x "$1/bin/javac" ] && [ "$(jdk_feature "$1")" -ge 22 ] 2>/dev/null; }
find_jdk() {
  local c
  if [ -n "${JAVA_HOME:-}" ] && jdk_ok "$JAVA_HOME"; then echo "$JAVA_HOME"; return 0; fi
  for c in /usr/lib/jvm/temurin-25* /usr/lib/jvm/*25* /usr/lib/jvm/* /opt/java/* /opt/jdk* "$HOME"/.sdkman/candidates/java/* /Library/Java/JavaVirtualMachines/*/Contents/Home; do
    if jdk_ok "$c"; then echo "$c"; return 0; fi
  done
  if command -v java >/dev/null; then
    c="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
    if jdk_ok "$c"; then echo "$c"; return 0; fi
  fi
  return 1
}
JAVA_HOME="$(find_jdk)" || { echo "nibble: no JDK >= 22 found; install one (e.g. Temurin 25) or set JAVA_HOME" >&2; exit 1; }
export JAVA_HOME
# Maven 3.8's bundled Guava calls sun.misc.Unsafe, which JDK 24+ warns about on every run.
export MAVEN_OPTS="${MAVEN_OPTS:-} --sun-misc-unsafe-memory-access=allow"
