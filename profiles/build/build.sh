#!/usr/bin/env bash
# Rebuild profiles/koppeltaalv2.00-0.16.2 from the Koppeltaal IG's FSH sources, offline.
#   usage: profiles/build/build.sh IG_GIT_DIR [COMMIT]
# IG_GIT_DIR is a clone (bare or not) of the IG's source repository (vzvznl/Koppeltaal-2.0-FHIR);
# COMMIT defaults to the v0.16.2 tag's commit. Needs Java 17, Maven, Node 20 and npm; reaches only
# Maven Central (HAPI's R4 definitions) and npm (SUSHI). Everything else happens in a temporary
# folder (SUSHI's package cache included, via HOME), which is removed at the end.
set -euo pipefail
IG=${1:?usage: build.sh IG_GIT_DIR [COMMIT]}
COMMIT=${2:-5d77654d440740c3fe74d18a03f6878821ee6fb0}
SUSHI_VERSION=3.21.0
HERE=$(cd "$(dirname "$0")" && pwd)
DEST=$(cd "$HERE/.." && pwd)/koppeltaalv2.00-0.16.2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

CORE="$WORK/home/.fhir/packages/hl7.fhir.r4.core#4.0.1/package"
mkdir -p "$CORE" "$WORK/conv" "$WORK/ig"
cp "$HERE/pom.xml" "$HERE/R4CorePackage.java" "$WORK/conv/"
(cd "$WORK/conv" && mvn -q dependency:build-classpath -Dmdep.outputFile=cp.txt \
   && javac -cp "$(cat cp.txt)" R4CorePackage.java \
   && java -cp "$(cat cp.txt):." R4CorePackage "$CORE")
cat > "$CORE/package.json" <<JSON
{"name":"hl7.fhir.r4.core","version":"4.0.1","fhirVersions":["4.0.1"],"type":"Core","dependencies":{}}
JSON
python3 "$HERE/nictiz_stubs.py" "$CORE" "$WORK/home/.fhir/packages"

git -C "$IG" archive "$COMMIT" input/fsh sushi-config.yaml | tar -x -C "$WORK/ig"
(cd "$WORK" && npm install --silent --no-audit --no-fund "fsh-sushi@$SUSHI_VERSION" >/dev/null)
# SUSHI reports errors for the nl-core based profiles (their parents are stand-ins): expected.
HOME="$WORK/home" "$WORK/node_modules/.bin/sushi" build "$WORK/ig" --snapshot > "$WORK/sushi.log" 2>&1 || true
grep -q "Exported .* FHIR resources" "$WORK/sushi.log" || { cat "$WORK/sushi.log"; exit 1; }

find "$DEST" -name '*.json' ! -name BUILD-INFO.json -delete
python3 "$HERE/collect.py" "$WORK/ig/fsh-generated/resources" "$CORE" \
  "$DEST/../r4/profiles-types.json" "$DEST"
echo "rebuilt $DEST ($(find "$DEST" -name '*.json' | wc -l) files); SUSHI: $(grep -c '^error' "$WORK/sushi.log") errors"
