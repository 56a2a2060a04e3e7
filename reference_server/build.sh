#!/usr/bin/env bash
# Builds the reference server: the jar (Maven; the first build downloads HAPI FHIR, ~150 MB, into
# ~/.m2) and a class-data-sharing archive that makes the JVM start it about a third sooner.
# Quiet, and a no-op when both are newer than the sources. Used by .ci/setup and by the harness
# (kt2conformance.target._server) when the jar is missing or stale.
set -euo pipefail
cd "$(dirname "$0")"
jar=target/kt2-reference-server.jar
archive=target/kt2-reference-server.jsa
jvm=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xmx768m)   # as the launcher runs it

if [ ! -f "$jar" ] || [ -n "$(find pom.xml src -newer "$jar" -print -quit)" ]; then
  rm -f "$archive"
  mvn -q -B -Dstyle.color=never package 2>&1 | sed "s/\x1b\[[0-9;]*m//g" | { grep -v "^\s*$" || true; }
  touch "$jar"
fi
if [ ! -f "$archive" ] || [ "$jar" -nt "$archive" ]; then
  # One training start records the classes a start and a first validation load, then the JVM
  # dumps them into the archive. Failure here only costs start-up time, never the build.
  list=target/classes.lst out=target/training.out
  rm -f "$list" "$archive"
  java "${jvm[@]}" -XX:DumpLoadedClassList="$list" -jar "$jar" --port 0 >"$out" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do grep -qs '^Serving' "$out" && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  classpath="$jar:$(printf '%s:' target/lib/*.jar)"
  java -Xshare:dump -XX:SharedClassListFile="$list" -XX:SharedArchiveFile="$archive" -cp "$classpath" \
    >/dev/null 2>&1 || { rm -f "$archive"; echo "note: no class-data archive (the server starts slower)" >&2; }
fi
